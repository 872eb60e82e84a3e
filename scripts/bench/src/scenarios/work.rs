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
use std::fmt::{self, Write as _};
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
/// The default work levels: short and long compute, short and long blocking.
pub const LEVELS: [&str; 4] = ["cpu:20us", "cpu:200us", "block:1ms", "block:10ms"];
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
/// The longest work the servers take (their `MAX_WORK`).
pub const MAX_WORK: Duration = Duration::from_secs(1);
/// `--blocking` of the variant that runs `block:` work on its workers.
pub const INLINE: &str = "inline";
/// Measured ÷ expected within this range: "as expected".
pub const AS_EXPECTED: (f64, f64) = (0.7, 1.3);
/// Server CPU busy ≥ this share of its CPUs: CPU-bound.
pub const CPU_BOUND: f64 = 0.9;

/// What a level's work is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A compute loop (`cpu:`).
    Cpu,
    /// A blocking call (`block:`).
    Block,
}

/// One work level: what each message costs the server (`cpu:20us`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Level {
    pub kind: Kind,
    pub duration: Duration,
}

impl Level {
    /// Parses `cpu:DURATION` or `block:DURATION` (a number and `ns`, `us`
    /// or `µs`, `ms`, `s`), above zero and at most [`MAX_WORK`].
    pub fn parse(text: &str) -> Result<Level, String> {
        let expected = || format!("{text:?}: expected cpu:DURATION or block:DURATION, e.g. cpu:20us, block:1ms");
        let (kind, duration) = text.trim().split_once(':').ok_or_else(expected)?;
        let kind = match kind {
            "cpu" => Kind::Cpu,
            "block" => Kind::Block,
            _ => return Err(expected()),
        };
        let duration = parse_duration(duration).ok_or_else(expected)?;
        if duration.is_zero() {
            return Err(format!("{text:?}: the work must take longer than 0"));
        }
        if duration > MAX_WORK {
            return Err(format!("{text:?}: more than the {} s a message's work may take", MAX_WORK.as_secs()));
        }
        Ok(Level { kind, duration })
    }

    /// The level as a load carries it and the server takes it.
    pub fn name(&self) -> Name {
        Name(Cow::Owned(self.to_string()))
    }

    /// Messages per second one thread answers, one call at a time.
    pub fn one_thread_rate(&self) -> f64 {
        1.0 / self.duration.as_secs_f64()
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Cpu => "cpu",
            Kind::Block => "block",
        };
        let ns = self.duration.as_nanos();
        let (value, unit) = [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")]
            .into_iter()
            .find(|(per, _)| ns % per == 0)
            .map_or((ns, "ns"), |(per, unit)| (ns / per, unit));
        write!(f, "{kind}:{value}{unit}")
    }
}

/// `20us`, `1.5ms`: a number and a unit, rounded to the nanosecond.
fn parse_duration(text: &str) -> Option<Duration> {
    let units = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)];
    let (number, scale) = units.iter().find_map(|(unit, scale)| Some((text.strip_suffix(unit)?, *scale)))?;
    let value: f64 = number.trim().parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
    Duration::try_from_secs_f64(value * scale).ok().map(|d| Duration::from_nanos(d.as_nanos() as u64))
}

/// `--work-levels`: each parsed, then in table order (compute before
/// blocking, shortest first), each once.
pub fn levels<S: AsRef<str>>(texts: &[S]) -> Result<Vec<Level>, String> {
    let mut levels = texts.iter().map(|t| Level::parse(t.as_ref())).collect::<Result<Vec<_>, _>>()?;
    if levels.is_empty() {
        return Err("no work level given".into());
    }
    levels.sort();
    levels.dedup();
    Ok(levels)
}

/// The default levels.
pub fn default_levels() -> Vec<Level> {
    levels(&LEVELS).unwrap_or_default()
}

/// The ladder's level.
pub fn ladder_level() -> Level {
    Level { kind: Kind::Block, duration: Duration::from_millis(1) }
}

/// The `--blocking` variants of `model` at `level`: its default, and
/// `inline` at a `block:` level if it takes `--blocking`.
pub fn variants(model: &Model, level: Level) -> Vec<Option<Name>> {
    let mut out = vec![None];
    if model.info().blocking_choice && level.kind == Kind::Block {
        out.push(Some(Name(Cow::Borrowed(INLINE))));
    }
    out
}

/// The share of `window` a cell at `level` measures: enough for one thread
/// making one call at a time to count [`MIN_MESSAGES`] over [`WINDOW`],
/// between [`SHORTEST_SHARE`] and all of it.
pub fn stretch(level: Level) -> f64 {
    let needed = MIN_MESSAGES * level.duration.as_secs_f64() / WINDOW.0.as_secs_f64();
    needed.clamp(SHORTEST_SHARE, 1.0)
}

/// How many blocking calls a variant runs at once, what it should answer
/// for it, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    pub at_once: u64,
    /// msg/s.
    pub rate: f64,
    /// How `at_once` follows: "one per connection, 16 served at once".
    pub how: String,
}

/// The textbook's msg/s for `info` (run with `--blocking blocking`, if
/// given) at a `block:` `level`, `connections` connections, on `cpus`
/// server CPUs: (calls at once) × (1 s ÷ the call). None for a `cpu:`
/// level (its figure is the CPUs', not the model's), or a model whose
/// declaration does not say.
pub fn expectation(
    info: &ModelInfo,
    blocking: Option<&str>,
    connections: u32,
    cpus: u32,
    level: Level,
) -> Option<Expectation> {
    if level.kind != Kind::Block {
        return None;
    }
    // Inline, the call runs on the worker thread, one per CPU by default.
    let rule = if blocking == Some(INLINE) { BlocksAtOnce::PerCpu } else { info.blocks_at_once? };
    let at_once = rule.at(u64::from(connections), info.serves_at_once, u64::from(cpus));
    let served = info.serves_at_once.filter(|&n| n < u64::from(connections));
    let how = match (rule, served) {
        (BlocksAtOnce::PerConnection, None) => "one per connection".to_owned(),
        (BlocksAtOnce::PerConnection, Some(n)) => format!("one per connection, {} served at once", count(n as f64)),
        (BlocksAtOnce::PerConnectionUpTo(pool), _) => {
            format!("one per connection, on a pool of up to {} threads", count(pool as f64))
        }
        (BlocksAtOnce::PerCpu, _) => format!("one per worker, a worker per server CPU ({cpus})"),
        (BlocksAtOnce::Threads(n), _) => format!("{n} thread(s), whatever the connections"),
    };
    Some(Expectation { at_once, rate: at_once as f64 * level.one_thread_rate(), how })
}

/// Measured against expected msg/s, in words: "as expected", or below or
/// above, and for below what ran out: the server's CPUs (`busy`: CPUs its
/// tree kept busy, of `cpus`), or the load generator (`client_bound`).
pub fn judge(measured: f64, expected: f64, busy: Option<f64>, cpus: u32, client_bound: bool) -> String {
    let ratio = measured / expected;
    let percent = format!("{:.0} % of it", 100.0 * ratio);
    if (AS_EXPECTED.0..=AS_EXPECTED.1).contains(&ratio) {
        return format!("as expected ({percent})");
    }
    if ratio > AS_EXPECTED.1 {
        return format!("**above** ({percent})");
    }
    match busy {
        _ if client_bound => format!("**below** ({percent}): the load generator ran out first (client-bound)"),
        Some(b) if b >= CPU_BOUND * f64::from(cpus) => {
            format!("**below** ({percent}): CPU-bound, {b:.2} of its {cpus} CPU(s) busy")
        }
        Some(b) => format!("**below** ({percent}), with CPU to spare ({b:.2} of {cpus} busy)"),
        None => format!("**below** ({percent})"),
    }
}

/// A variant's medians at each level of the run (in its order); `None`
/// where it has no cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub variant: String,
    pub rate: Vec<Option<f64>>,
    pub cpu: Vec<Option<f64>>,
}

/// The variants ranked by msg/s over the levels `at` (indices), most
/// first: the geometric mean of their medians there, so that each level
/// weighs the same whatever its scale. A variant missing one of them is
/// not ranked.
pub fn most_rate(scores: &[Scores], at: &[usize]) -> Vec<(String, f64)> {
    if at.is_empty() {
        return Vec::new();
    }
    let mean = |s: &Scores| {
        let logs = at.iter().map(|&i| s.rate.get(i).copied().flatten().filter(|v| *v > 0.0).map(f64::ln));
        let logs: Option<Vec<f64>> = logs.collect();
        logs.map(|l| (l.iter().sum::<f64>() / l.len() as f64).exp())
    };
    let mut ranked: Vec<(String, f64)> = scores.iter().filter_map(|s| Some((s.variant.clone(), mean(s)?))).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked
}

/// The variants ranked by server CPU per message at level `at`, least first.
pub fn least_cpu(scores: &[Scores], at: usize) -> Vec<(String, f64)> {
    let mut ranked: Vec<(String, f64)> =
        scores.iter().filter_map(|s| Some((s.variant.clone(), s.cpu.get(at).copied().flatten()?))).collect();
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
    ranked
}

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

/// A variant: a model and its `--blocking`.
type Variant = (Model, Option<Name>);

fn variant_name((model, blocking): &Variant) -> String {
    LoadKey { blocking: blocking.clone(), ..LoadKey::new(Work.id(), model.clone(), Transport::Tcp, 0, 0) }.variant()
}

/// The variant's line through `points`: its model's colour and marker,
/// dashed for `--blocking inline`.
fn variant_line(v: &Variant, points: Vec<Point>) -> Line {
    let line = series::line(&v.0, points);
    Line { name: variant_name(v), dashed: v.1.is_some(), ..line }
}

/// The closed-loop groups of the run: each (level, variant) with its cells.
struct Closed<'a> {
    levels: Vec<Level>,
    variants: Vec<Variant>,
    groups: Vec<(Level, Variant, Vec<&'a Cell>)>,
}

impl<'a> Closed<'a> {
    fn of(r: &Report<'a>, settings: &WorkSettings) -> Closed<'a> {
        let levels: Vec<Level> = settings.levels.iter().filter_map(|l| Level::parse(l).ok()).collect();
        let mut groups = Vec::new();
        let mut variants: Vec<Variant> = Vec::new();
        let work = r.groups.iter().filter(|(k, _)| k.scenario == Work.id() && k.rate.is_none());
        for (k, cells) in work {
            let Ok(level) = Level::parse(&k.work.0) else { continue };
            let v = (k.model.clone(), k.blocking.clone());
            if !variants.contains(&v) {
                variants.push(v.clone());
            }
            groups.push((level, v, cells.clone()));
        }
        variants.sort();
        Closed { levels, variants, groups }
    }

    fn cells(&self, level: Level, v: &Variant) -> Option<&[&'a Cell]> {
        self.groups.iter().find(|(l, w, _)| *l == level && w == v).map(|(_, _, c)| c.as_slice())
    }

    fn scores(&self) -> Vec<Scores> {
        let median = |cells: Option<&[&Cell]>, f: &dyn Fn(&Cell) -> Option<f64>| {
            cells.and_then(|c| Stat::over(c, f)).map(|s| s.median)
        };
        self.variants
            .iter()
            .map(|v| Scores {
                variant: variant_name(v),
                rate: self.levels.iter().map(|&l| median(self.cells(l, v), &rate)).collect(),
                cpu: self.levels.iter().map(|&l| median(self.cells(l, v), &|c| c.server_cpu_us_per_msg)).collect(),
            })
            .collect()
    }
}

fn rate(cell: &Cell) -> Option<f64> {
    cell.loadgen.as_ref().map(|r| r.throughput.requests_per_sec)
}

/// The README section (nothing when the run has no work cells).
fn section(r: &Report<'_>, doc: &mut Doc) {
    let Some(settings) = &r.results.settings.work else { return };
    let closed = Closed::of(r, settings);
    let climbs = climbs_of(r.results, &Work.id(), settings.ladder_slo_p99_us);
    if closed.groups.is_empty() && climbs.is_empty() {
        return;
    }
    let cpus = settings.server_cpus;
    doc.heading(2, "Requests that compute, requests that block (`--work`)");
    let windows: Vec<String> =
        settings.levels.iter().zip(&settings.window_secs).map(|(l, w)| format!("{l} {w} s")).collect();
    let _ = writeln!(
        doc,
        "Each message costs the server some work before its echo: `cpu:` a compute loop that long, `block:` a \
         blocking call (`nanosleep`) that long. {connections} connections, {size} B, closed loop, TCP, the server \
         on {cpus} CPU(s); every model with its defaults, and a model that takes `--blocking` also with \
         `--blocking inline` at the `block:` levels (the call on its worker thread instead of its blocking pool). \
         Each cell measures, after a {warmup} s warm-up: {windows} (a long level gets a longer window, so that a \
         model making one call at a time still counts ≥ {MIN_MESSAGES} messages). Figures are medians over \
         {repeats}, min–max in parentheses; *threads* is the server's peak.\n",
        connections = settings.connections,
        size = settings.size,
        windows = windows.join(", "),
        warmup = settings.warmup_secs,
        repeats = repeats_words(settings.repeat),
    );
    if !closed.groups.is_empty() {
        table(r, settings, &closed, doc);
        textbook(r, settings, &closed, doc);
        which(&closed, doc);
    }
    ladder(r, settings, &climbs, doc);
}

/// The closed-loop table: a row per level and variant.
fn table(r: &Report<'_>, settings: &WorkSettings, closed: &Closed<'_>, doc: &mut Doc) {
    let id = TableId { scenario: Work.id(), transport: Transport::Tcp, part: None };
    doc.table_heading(3, "Closed loop by work level", id);
    let mut table = r.table([
        "work",
        "variant",
        "msg/s:",
        "textbook msg/s:",
        "p50:",
        "p99:",
        "server CPU µs/msg:",
        "threads:",
        "starved:",
    ]);
    for &level in &closed.levels {
        for v in &closed.variants {
            let Some(cells) = closed.cells(level, v) else { continue };
            let (model, blocking) = v;
            let expected = expectation(
                model.info(),
                blocking.as_ref().map(|b| b.0.as_ref()),
                CONNECTIONS,
                settings.server_cpus,
                level,
            );
            let row = [
                level.to_string(),
                variant_name(v),
                table.mark(throughput(cells), cells, &[Figure::Rate]),
                expected.map_or("–".into(), |e| count(e.rate)),
                latency_of(cells, |l| l.p50),
                table.mark(latency_of(cells, |l| l.p99), cells, &[Figure::Latency]),
                table.mark(server_cpu(cells, 1), cells, &[Figure::Cpu]),
                show(Stat::over(cells, |c| c.server.map(|s| s.threads_peak as f64)), count),
                show(load_stat(cells, |r| r.per_connection.starved as f64), count),
            ];
            table.row(row);
        }
    }
    doc.push_str(&table.finish());
}

/// The textbook checked at each `block:` level: per variant, the calls it
/// runs at once, the msg/s that gives, the msg/s measured, and whether
/// they agree.
fn textbook(r: &Report<'_>, settings: &WorkSettings, closed: &Closed<'_>, doc: &mut Doc) {
    let cpus = settings.server_cpus;
    for &level in closed.levels.iter().filter(|l| l.kind == Kind::Block) {
        doc.heading(3, &format!("The textbook, checked: {level}, {} connections", settings.connections));
        let _ = writeln!(
            doc,
            "A call takes {}, so a model answers at most (calls at once) × {} msg/s: thread and pool about \
             min(connections, workers) × that, one event loop about that, tokio with `spawn_blocking` about \
             connections × that within its blocking pool. The calls at once come from each model's declaration \
             (`blocks_at_once`, `echo-server list-models --json`), {} connections and the server's {cpus} CPU(s). \
             *As expected* within {:.0}–{:.0} % of it; *CPU-bound* when the server kept ≥ {:.0} % of its CPUs \
             busy; *client-bound* when the cells carry that flag (a load generator thread busy most of the \
             window).\n",
            fmt_us(level.duration.as_secs_f64() * 1e6),
            count(level.one_thread_rate()),
            settings.connections,
            100.0 * AS_EXPECTED.0,
            100.0 * AS_EXPECTED.1,
            100.0 * CPU_BOUND,
        );
        let mut table = r.table(["variant", "calls at once:", "how", "expected msg/s:", "measured msg/s:", "verdict"]);
        for v in &closed.variants {
            let Some(cells) = closed.cells(level, v) else { continue };
            let (model, blocking) = v;
            let name = variant_name(v);
            let blocking = blocking.as_ref().map(|b| b.0.as_ref());
            let Some(e) = expectation(model.info(), blocking, settings.connections, cpus, level) else {
                table.row([
                    name,
                    "?".into(),
                    "its declaration does not say".into(),
                    "–".into(),
                    throughput(cells),
                    "–".into(),
                ]);
                continue;
            };
            let measured = Stat::over(cells, rate).map(|s| s.median);
            let busy = Stat::over(cells, |c| c.server.map(|s| s.cpu_utilisation)).map(|s| s.median);
            let client_bound = cells.iter().any(|c| c.flags.iter().any(|f| f.kind == FlagKind::ClientBound));
            let verdict = measured.map_or("no figure".into(), |m| judge(m, e.rate, busy, cpus, client_bound));
            let measured = table.mark(throughput(cells), cells, &[Figure::Rate]);
            table.row([name, count(e.at_once as f64), e.how, count(e.rate), measured, verdict]);
        }
        doc.push_str(&table.finish());
    }
}

/// "Which model for what": for requests that block, for requests that
/// compute, from the medians.
fn which(closed: &Closed<'_>, doc: &mut Doc) {
    let scores = closed.scores();
    let at = |kind: Kind| -> Vec<usize> {
        closed.levels.iter().enumerate().filter(|(_, l)| l.kind == kind).map(|(i, _)| i).collect()
    };
    let figures = |variant: &str, at: &[usize]| -> String {
        let s = scores.iter().find(|s| s.variant == variant);
        at.iter()
            .filter_map(|&i| Some(format!("{} msg/s at {}", count(s?.rate[i]?), closed.levels[i])))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let others = |ranked: &[(String, f64)], at: &[usize]| -> String {
        ranked.iter().skip(1).take(2).map(|(v, _)| format!("`{v}` ({})", figures(v, at))).collect::<Vec<_>>().join(", ")
    };
    let mut lines = Vec::new();
    let block = at(Kind::Block);
    let ranked = most_rate(&scores, &block);
    if let Some((best, _)) = ranked.first() {
        let last = ranked
            .last()
            .filter(|_| ranked.len() > 3)
            .map_or(String::new(), |(v, _)| format!("; fewest: `{v}` ({})", figures(v, &block)));
        lines.push(format!(
            "- **For requests that block**: `{best}`: {}, the most over the `block:` levels; then {}{last}.",
            figures(best, &block),
            others(&ranked, &block)
        ));
    }
    let cpu = at(Kind::Cpu);
    if let Some(&heaviest) = cpu.iter().max_by_key(|&&i| closed.levels[i].duration) {
        let ranked = most_rate(&scores, &[heaviest]);
        let frugal = least_cpu(&scores, heaviest);
        if let (Some((best, _)), Some((least, cpu_us))) = (ranked.first(), frugal.first()) {
            lines.push(format!(
                "- **For requests that compute**: `{best}`: {}, the most at the heaviest `cpu:` level; then {}. The \
                 least server CPU per message there: `{least}` ({cpu_us:.1} µs).",
                figures(best, &[heaviest]),
                others(&ranked, &[heaviest])
            ));
        }
    }
    if lines.is_empty() {
        return;
    }
    doc.heading(3, "Which model for what");
    let _ = writeln!(
        doc,
        "From the medians above (a flag in the table may put one in doubt); the `block:` ranking is by the \
         geometric mean over those levels, so that each weighs the same.\n\n{}\n",
        lines.join("\n")
    );
}

/// The latency ladder at the ladder's level: each variant's knee and steps.
fn ladder(r: &Report<'_>, settings: &WorkSettings, climbs: &[Climb<'_>], doc: &mut Doc) {
    if climbs.is_empty() {
        return;
    }
    doc.heading(3, &format!("Latency against offered load at {}", settings.ladder_work));
    let _ = writeln!(
        doc,
        "Open loop at {} msg/s offered, {} connections, {} s measured per step, {}. A step is sustained when it \
         achieved ≥ 99 % of the offered rate with a CO-corrected p99 ≤ {} (the run's SLO plus the {} of work \
         every message waits); a variant climbs until its first failed step.\n",
        settings.ladder_rates.iter().map(|r| fmt_count(*r)).collect::<Vec<_>>().join(", "),
        settings.connections,
        settings.ladder_window_secs,
        repeats_words(settings.ladder_repeat),
        fmt_us(settings.ladder_slo_p99_us as f64),
        settings.ladder_work.trim_start_matches("block:"),
    );
    for excluded in &settings.ladder_excluded {
        let _ = writeln!(doc, "- `{}` is left out: it {}.", excluded.model, excluded.reason);
    }
    if !settings.ladder_excluded.is_empty() {
        doc.push('\n');
    }
    let mut variants: Vec<Variant> = climbs.iter().map(|c| (c.load.model.clone(), c.load.blocking.clone())).collect();
    variants.dedup();
    let mut table = r.table(["variant", "knee msg/s:", "offered msg/s:", "achieved msg/s:", "p50:", "p99:", "step"]);
    for v in &variants {
        let mine: Vec<&Climb<'_>> = climbs.iter().filter(|c| c.load.model == v.0 && c.load.blocking == v.1).collect();
        let summary = climb::summary(&mine, settings.ladder_rates.last().copied(), "msg/s");
        for (i, &rate) in settings.ladder_rates.iter().enumerate() {
            let steps: Vec<(&Cell, &climb::Verdict)> = mine
                .iter()
                .flat_map(|c| c.steps.iter().filter(|(s, _)| s.spec.load.offered() == Some(rate)).map(|(s, v)| (*s, v)))
                .collect();
            if steps.is_empty() {
                continue;
            }
            let cells: Vec<&Cell> = steps.iter().map(|(c, _)| *c).collect();
            let verdicts: Vec<String> = steps.iter().map(|(_, v)| v.words()).collect();
            table.row([
                variant_name(v),
                if i == 0 { summary.words.clone() } else { String::new() },
                fmt_count(rate),
                throughput(&cells),
                latency_of(&cells, |l| l.p50),
                show(load_stat(&cells, |r| r.latency_us.p99 as f64), us),
                verdicts.join(" · "),
            ]);
        }
    }
    doc.push_str(&table.finish());
}

/// msg/s (log) against the work levels, a line per variant.
fn chart(r: &Report<'_>, dir: &Path) -> Result<Option<Chart>, String> {
    let Some(settings) = &r.results.settings.work else { return Ok(None) };
    let closed = Closed::of(r, settings);
    let mut lines = Vec::new();
    for v in &closed.variants {
        let points: Vec<Point> = closed
            .levels
            .iter()
            .enumerate()
            .filter_map(|(slot, &level)| {
                let cells = closed.cells(level, v)?;
                let s = Stat::over(cells, rate)?;
                let range = (s.n > 1).then_some((s.min, s.max));
                Some(Point { x: slot as f64, y: s.median, range, hollow: r.doubtful(cells, Figure::Rate) })
            })
            .collect();
        if !points.is_empty() {
            lines.push(variant_line(v, points));
        }
    }
    if lines.is_empty() {
        return Ok(None);
    }
    let mut notes = hollow_notes(lines.iter().flat_map(|l| &l.points).any(|p| p.hollow), "point");
    if lines.iter().any(|l| l.dashed) {
        notes.push("dashed: --blocking inline".into());
    }
    let frame = Frame {
        title: format!(
            "Throughput against work per message, {} connections, closed loop (log scale)",
            settings.connections
        ),
        subtitle: format!(
            "{} B, TCP, server on {} CPU(s); {}",
            settings.size,
            settings.server_cpus,
            repeats_words(settings.repeat)
        ),
        x_desc: "work per message (cpu: compute, block: blocking call)".into(),
        y_desc: "messages / s (log)".into(),
        rules: Vec::new(),
        notes,
        ring: None,
    };
    let file = "work.svg".to_owned();
    let names = closed.levels.iter().map(Level::to_string).collect();
    charts::lines(&dir.join(&file), &frame, &lines, XAxis::Categories(names), YAxis::LogCount)?;
    Ok(Some(Chart { title: "Throughput against work per message".into(), file }))
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
