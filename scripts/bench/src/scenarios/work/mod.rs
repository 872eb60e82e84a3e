//! The work scenario: requests that cost the server something besides the
//! echo (the servers' `--work`, issue 18). Every other scenario measures
//! requests that cost nothing beyond their socket; real requests compute,
//! or block (a disk read, a legacy driver), and that is where the
//! concurrency models part ways.
//!
//! Two parts, over TCP whatever `--transports` says, at [`CONNECTIONS`]
//! connections × 64 B:
//!
//! 1. **Closed loop** at each work level of `--work-levels` (default
//!    [`LEVELS`]: `cpu:` a compute loop that long, `block:` a `nanosleep`
//!    that long): msg/s, p50/p99, server CPU per message, the server's
//!    threads. Every model runs, also those that serve fewer connections at
//!    once than [`CONNECTIONS`] (`iterative`, `prefork`): the textbook's
//!    arithmetic covers them (min(connections, workers)), and the tables
//!    show their starved connections. A model that takes `--blocking`
//!    (tokio) runs the `block:` levels a second time with
//!    `--blocking inline` ([`variants`]).
//! 2. **A latency ladder** at [`LADDER_WORK`]: open loop at
//!    [`LADDER_RATES`], a climb per variant as in the latency scenario
//!    ([`crate::climb`]), judged against the run's SLO plus the work itself
//!    (a `block:1ms` request cannot answer in less than 1 ms). The models
//!    the latency ladder leaves out are left out here, for its reason
//!    ([`super::latency::excluded`]).
//!
//! The section then checks the textbook at `block:` levels: a model
//! answers at most (blocking calls at once) × (1 s ÷ the call) msg/s, the
//! calls at once computed from the model's declaration
//! ([`echo_common::BlocksAtOnce`]), the connections and the server's CPUs
//! ([`expectation`]); and says which model for which requests, from the
//! medians ([`most_rate`], [`least_cpu`]).
//!
//! ## Windows
//!
//! A cell measures at most [`WINDOW`] (2 s after 0.25 s, shorter if the
//! run's are). A level whose slowest model — one thread, one call at a
//! time — would count fewer than [`MIN_MESSAGES`] in half of it gets more
//! of it, up to all of it ([`stretch`]): `block:10ms` runs 2 s (≥ 200
//! messages even for `reactor`), the others 1 s.
//!
//! ## Budget (the default matrix on the 2-CPU reference machine)
//!
//! 11 models, tokio twice at the `block:` levels: 11 + 11 + 12 + 12 = 46
//! loads × [`REPEAT`] = 92 closed-loop cells; a 1 s cell takes ≈ 1.4 s with
//! server start and stop, a 2 s one ≈ 2.4 s: 68 × 1.4 + 24 × 2.4 ≈ 153 s.
//! The ladder, one repeat ([`LADDER_REPEAT`]): 9 models on it plus the
//! inline variant, at most 3 steps each, ≈ 25 cells (those limited to one
//! call at a time stop at the second) × 1.4 ≈ 35 s. About 3.1 min in all.
//! Not in `--quick`'s matrix (its 3 minutes are spent); `--quick
//! --scenarios work` runs it with one repeat. The whole default matrix
//! grows by these ≈ 3 min.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use echo_common::{BlocksAtOnce, ModelInfo, Transport};
use loadgen::Opts;
use loadgen::report::{fmt_count, fmt_us};

use super::latency;
use crate::climb::{self, Climb, climbs_of};
use crate::flags::{Figure, FlagKind};
use crate::load::{LoadKey, Name, Rate};
use crate::models::Model;
use crate::plan::{RunConfig, Shape};
use crate::render::charts::{self, Frame, Line, Point, XAxis, YAxis};
use crate::render::doc::{Doc, TableId};
use crate::render::figures::{latency as latency_of, load_stat, server_cpu, throughput};
use crate::render::format::{count, show, us};
use crate::render::series::{self, hollow_notes, repeats_words};
use crate::results::{Cell, Excluded, Settings, WorkSettings};
use crate::scenario::{Chart, Drive, Headline, Report, SMALL, Scenario, Window, every_model};
use crate::stats::Stat;

/// Connections of every cell: the latency ladder's, so that its exclusions
/// hold here too.
pub const CONNECTIONS: u32 = latency::CONNECTIONS;
/// Repeats of the closed-loop cells in the default matrix (`--repeat`
/// sets them too).
pub const REPEAT: u32 = 2;
/// The longest window (and warm-up) of a cell.
pub const WINDOW: (Duration, Duration) = (Duration::from_secs(2), Duration::from_millis(250));
/// The messages a level's window should hold from one thread making one
/// call at a time (the slowest model).
pub const MIN_MESSAGES: f64 = 200.0;
/// The share of [`WINDOW`] a level short enough to need no more gets.
pub const SHORTEST_SHARE: f64 = 0.5;
/// The work level of the latency ladder.
pub const LADDER_WORK: &str = "block:1ms";
/// The ladder's offered rates, msg/s: half of what one thread blocking 1 ms
/// a message can answer, then five and fifty times that.
pub const LADDER_RATES: [f64; 3] = [500.0, 5_000.0, 50_000.0];
/// Repeats of the ladder's steps, whatever `--repeat` says (at most it).
pub const LADDER_REPEAT: u32 = 1;
/// `--blocking` of the variant that runs `block:` work on its workers.
pub const INLINE: &str = "inline";
/// Measured ÷ expected within this range: "as expected".
pub const AS_EXPECTED: (f64, f64) = (0.7, 1.3);
/// Server CPU busy ≥ this share of its CPUs: CPU-bound.
pub const CPU_BOUND: f64 = 0.9;

mod tables;
mod textbook;
mod variants;

pub use crate::work_level::*;
use tables::*;
pub use textbook::*;
pub use variants::*;

#[derive(Debug)]
pub struct Work;

impl Scenario for Work {
    fn name(&self) -> &'static str {
        "work"
    }

    fn about(&self) -> &'static str {
        "Requests that compute or block (the servers' --work): closed loop at 100 connections over the work levels \
         (msg/s, p50/p99, server CPU per message, threads; tokio also with --blocking inline), the textbook's \
         msg/s checked, and a latency ladder at block:1ms"
    }

    fn defaults(&self, shape: &mut Shape, quick: bool, _cpus: usize) -> bool {
        shape.work_levels = default_levels();
        shape.work_repeat = if quick { 1 } else { REPEAT };
        !quick
    }

    /// Over TCP: each level for every variant of every model, then the
    /// ladder's steps.
    fn loads(&self, shape: &Shape) -> Vec<Vec<LoadKey>> {
        let key = |m: &Model, level: Level, blocking: Option<Name>, rate: Option<f64>| LoadKey {
            work: level.name(),
            blocking,
            rate: rate.map(Rate),
            ..LoadKey::new(self.id(), m.clone(), Transport::Tcp, CONNECTIONS, SMALL)
        };
        let mut loads = Vec::new();
        for &level in &shape.work_levels {
            loads
                .push(every_model(shape, |m| variants(m, level).into_iter().map(|b| key(m, level, b, None)).collect()));
        }
        let ladder = ladder_level();
        for &rate in &LADDER_RATES {
            loads.push(every_model(shape, |m| {
                if latency::excluded(m).is_some() {
                    return Vec::new();
                }
                variants(m, ladder).into_iter().map(|b| key(m, ladder, b, Some(rate))).collect()
            }));
        }
        loads
    }

    fn repeats(&self, shape: &Shape) -> u32 {
        shape.work_repeat.min(shape.repeat)
    }

    fn load_repeats(&self, shape: &Shape, keys: &[LoadKey]) -> u32 {
        if keys.iter().any(|k| k.rate.is_some()) { LADDER_REPEAT.min(shape.repeat) } else { self.repeats(shape) }
    }

    fn record(&self, cfg: &RunConfig, settings: &mut Settings) {
        let (window, warmup) = cfg.capped(WINDOW);
        let ladder = ladder_level();
        let excluded = cfg.shape.models.iter();
        settings.work = Some(WorkSettings {
            levels: cfg.shape.work_levels.iter().map(Level::to_string).collect(),
            connections: CONNECTIONS,
            size: SMALL,
            repeat: self.repeats(&cfg.shape),
            window_secs: cfg.shape.work_levels.iter().map(|&l| window.as_secs_f64() * stretch(l)).collect(),
            warmup_secs: warmup.as_secs_f64(),
            server_cpus: cfg.server_cpus.len() as u32,
            ladder_work: ladder.to_string(),
            ladder_rates: LADDER_RATES.to_vec(),
            ladder_repeat: LADDER_REPEAT.min(cfg.shape.repeat),
            ladder_window_secs: window.as_secs_f64() * stretch(ladder),
            ladder_slo_p99_us: (cfg.slo_p99 + ladder.duration).as_micros() as u64,
            ladder_excluded: excluded
                .filter_map(|m| Some(Excluded { model: m.name().to_owned(), reason: latency::excluded(m)? }))
                .collect(),
        });
    }

    fn window(&self) -> Window {
        Window::Capped { at_most: WINDOW, cells: "work", beside: None }
    }

    /// A ladder step's p99 includes its work: the SLO is the run's plus it.
    fn slo_p99(&self, load: &LoadKey, run: Duration) -> Duration {
        match Level::parse(&load.work.0) {
            Ok(level) if load.rate.is_some() => run + level.duration,
            _ => run,
        }
    }

    /// The window of a cell at a long level is stretched ([`stretch`]).
    fn drive(&self, load: &LoadKey, opts: Opts) -> Drive {
        let share = Level::parse(&load.work.0).map_or(1.0, stretch);
        Drive::Load(Opts { duration: opts.duration.mul_f64(share), ..opts })
    }

    fn describe(&self, load: &LoadKey) -> String {
        let mut text = format!(
            "work {} {}, {} connections, {} B",
            load.variant(),
            load.transport,
            fmt_count(f64::from(load.connections)),
            load.size
        );
        if let Some(rate) = load.offered() {
            let _ = write!(text, ", {} msg/s offered", fmt_count(rate));
        }
        text
    }

    fn headline(&self, load: &LoadKey) -> Headline {
        // A step's rate is imposed: its latency is the figure.
        if load.rate.is_some() { Headline::P99 } else { Headline::RATE }
    }

    fn per_transport(&self) -> bool {
        false
    }

    fn place(&self) -> u8 {
        80
    }

    fn repeat_note(&self, settings: &Settings) -> Option<String> {
        settings.work.as_ref().filter(|w| w.repeat != settings.repeat).map(|w| format!("{} for work", w.repeat))
    }

    fn section(&self, r: &Report<'_>, transport: Option<Transport>, doc: &mut Doc) {
        if transport.is_none() {
            section(r, doc);
        }
    }

    fn charts(&self, r: &Report<'_>, transport: Option<Transport>, dir: &Path) -> Result<Vec<Chart>, String> {
        if transport.is_some() {
            return Ok(Vec::new());
        }
        chart(r, dir).map(|c| c.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(blocks: Option<BlocksAtOnce>, serves_at_once: Option<u64>, blocking_choice: bool) -> ModelInfo {
        ModelInfo {
            name: "m".into(),
            summary: "".into(),
            default_max_connections: 10_000,
            child_processes: false,
            serves_at_once,
            baseline: false,
            reuse_port: false,
            colour: "#000000".into(),
            datagrams: None,
            datagram_batch: false,
            blocks_at_once: blocks,
            blocking_choice,
        }
    }

    #[test]
    fn levels_parse_print_and_refuse() {
        let all = levels(&["block:10ms", "cpu:20us", "block:1ms", "cpu:200µs", "cpu:20us"]).unwrap();
        let names: Vec<String> = all.iter().map(Level::to_string).collect();
        assert_eq!(names, ["cpu:20us", "cpu:200us", "block:1ms", "block:10ms"], "sorted, each once");
        assert_eq!(Level::parse("block:1.5ms").unwrap().to_string(), "block:1500us");
        assert_eq!(Level::parse("cpu:1s").unwrap().to_string(), "cpu:1s");
        assert_eq!(Level::parse("cpu:250ns").unwrap().to_string(), "cpu:250ns");
        for bad in ["", "none", "cpu", "cpu:", "cpu:20", "io:1ms", "block:0ms", "block:-1ms", "block:2s", "cpu:1e400s"]
        {
            assert!(Level::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(levels::<&str>(&[]).is_err());
        assert_eq!(default_levels().len(), LEVELS.len(), "the defaults parse");
        assert!(default_levels().contains(&ladder_level()) && ladder_level().to_string() == LADDER_WORK);
    }

    #[test]
    fn a_long_level_gets_a_longer_window_up_to_the_cap() {
        let at = |t: &str| stretch(Level::parse(t).unwrap());
        assert_eq!(at("cpu:20us"), SHORTEST_SHARE);
        assert_eq!(at("block:1ms"), SHORTEST_SHARE);
        assert_eq!(at("block:10ms"), 1.0, "200 messages of 10 ms fill the 2 s window");
        assert_eq!(at("block:100ms"), 1.0, "never beyond the cap");
        assert!((at("block:7500us") - 0.75).abs() < 1e-9);
    }

    #[test]
    fn the_textbook_expectation_follows_the_declaration() {
        let block_1ms = Level::parse("block:1ms").unwrap();
        let rate = |i: &ModelInfo, blocking: Option<&str>| expectation(i, blocking, 100, 1, block_1ms).map(|e| e.rate);
        // thread: one per connection, 100 × 1,000 msg/s
        assert_eq!(rate(&info(Some(BlocksAtOnce::PerConnection), None, false), None), Some(100_000.0));
        // pool of 128 serves all 100; prefork's 16 only 16
        assert_eq!(rate(&info(Some(BlocksAtOnce::PerConnection), Some(128), false), None), Some(100_000.0));
        assert_eq!(rate(&info(Some(BlocksAtOnce::PerConnection), Some(16), false), None), Some(16_000.0));
        // one event loop: 1,000
        assert_eq!(rate(&info(Some(BlocksAtOnce::Threads(1)), None, false), None), Some(1_000.0));
        // tokio: connections × 1,000 within its pool, its workers' when inline
        let tokio = info(Some(BlocksAtOnce::PerConnectionUpTo(512)), None, true);
        assert_eq!(rate(&tokio, None), Some(100_000.0));
        assert_eq!(rate(&tokio, Some(INLINE)), Some(1_000.0));
        let e = expectation(&tokio, None, 1000, 1, block_1ms).unwrap();
        assert_eq!((e.at_once, e.rate), (512, 512_000.0), "the pool caps it");
        assert_eq!(expectation(&tokio, Some(INLINE), 100, 4, block_1ms).unwrap().at_once, 4);
        // 10 ms calls: a tenth of it
        let block_10ms = Level::parse("block:10ms").unwrap();
        assert_eq!(expectation(&tokio, None, 100, 1, block_10ms).unwrap().rate, 10_000.0);
        // compute is the CPUs' figure, and an old declaration says nothing
        assert_eq!(expectation(&tokio, None, 100, 1, Level::parse("cpu:20us").unwrap()), None);
        assert_eq!(rate(&info(None, None, false), None), None);
    }

    #[test]
    fn the_verdict_says_how_far_and_why() {
        assert!(judge(950.0, 1000.0, Some(0.1), 1, false).starts_with("as expected (95 %"));
        assert!(judge(20_000.0, 100_000.0, Some(0.97), 1, false).contains("CPU-bound, 0.97 of its 1 CPU(s) busy"));
        assert!(judge(20_000.0, 100_000.0, Some(0.3), 1, false).contains("CPU to spare"));
        assert!(judge(20_000.0, 100_000.0, Some(0.97), 1, true).contains("the load generator ran out first"));
        assert!(judge(2_000.0, 1_000.0, None, 1, true).starts_with("**above**"));
        assert!(judge(10.0, 1_000.0, None, 2, false).starts_with("**below** (1 %"));
        assert!(judge(1_900.0, 4_000.0, Some(1.85), 2, false).contains("CPU-bound"), "busy counts all its CPUs");
        assert!(judge(1_900.0, 4_000.0, Some(0.95), 2, false).contains("CPU to spare"), "one CPU of two is not all");
    }

    #[test]
    fn which_model_for_what_is_read_off_the_medians() {
        let s = |v: &str, rate: [Option<f64>; 3], cpu: [Option<f64>; 3]| Scores {
            variant: v.into(),
            rate: rate.to_vec(),
            cpu: cpu.to_vec(),
        };
        // levels: cpu:200us, block:1ms, block:10ms
        let scores = [
            s("reactor", [Some(4_800.0), Some(990.0), Some(99.0)], [Some(190.0), Some(20.0), Some(30.0)]),
            s("thread", [Some(4_500.0), Some(60_000.0), Some(9_000.0)], [Some(210.0), Some(15.0), Some(12.0)]),
            // the best at block:1ms, but far behind at block:10ms: the mean weighs both
            s("pool", [Some(4_400.0), Some(70_000.0), Some(2_000.0)], [Some(205.0), Some(14.0), Some(13.0)]),
            // no block:10ms cell: not ranked on blocking
            s("uring", [Some(5_000.0), Some(990.0), None], [Some(200.0), None, None]),
        ];
        let block = most_rate(&scores, &[1, 2]);
        let names: Vec<&str> = block.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(names, ["thread", "pool", "reactor"]);
        assert!((block[0].1 - (60_000.0f64 * 9_000.0).sqrt()).abs() < 1e-6, "the geometric mean");
        assert_eq!(most_rate(&scores, &[0])[0].0, "uring");
        assert_eq!(least_cpu(&scores, 0)[0].0, "reactor");
        assert_eq!(least_cpu(&scores, 2).len(), 3, "a variant without the figure is not ranked");
        assert!(most_rate(&scores, &[]).is_empty());
    }
}
