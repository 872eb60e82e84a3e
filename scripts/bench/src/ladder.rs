//! The latency scenario: a ladder of fixed offered rates.
//!
//! Every model is driven open loop (latency counted from each message's
//! intended send time, coordinated omission corrected) at the same absolute
//! rates, in every run, from the lowest up: a model climbs to the next step
//! only while it sustains the current one — achieved ≥ 99 % of the offered
//! rate ([`crate::flags::BELOW_TARGET_RATE`]) and CO-corrected p99 ≤ the
//! SLO (`--slo-p99`, default 1 ms). The first step it fails ends its ladder
//! in that repeat and is recorded with the reason. Its *knee* is the highest
//! offered rate it sustained; when the step above failed while a load
//! generator thread was ≥ 90 % busy (the cell's `client_bound` flag), the
//! knee is marked client-bound: the load generator, maybe not the server,
//! ran out.
//!
//! Steps run interleaved across models (step k of every model still
//! climbing, then step k + 1), each repeat its own climb.
//!
//! A model that serves fewer connections at once than the ladder opens
//! (`iterative`: 1, `prefork`: 16 by default, of 100) is left out, and the
//! results say so: the connections beyond its workers would wait in the
//! backlog with their scheduled messages piling up, so every step would
//! fail on a backlog, not on the model's latency. Their latency at the
//! loads they do serve is in the throughput tables (1 connection, closed loop).
//!
//! ## Budget (the default matrix on the 2-CPU reference machine)
//!
//! A step is a cell: server start, 100 connects, [`STEP_WINDOW`] (1 s
//! measured after 0.25 s), teardown, server stop: ≈ 1.4 s (measured in
//! short ladder runs here). The default ladder has [`DEFAULT_RATES`].len() =
//! 9 steps, 3 repeats, and runs the 9 of the 11 models that serve 100
//! connections at once:
//!
//! - at most 9 models × 9 steps × 3 repeats = 243 cells ≈ 5.7 min, reached
//!   only if every model sustained every step (the top steps are above what
//!   the load generator itself reaches on one CPU, so in practice a step
//!   fails for each, and the steps above it do not run);
//! - measured in a full run with 7 steps (10k, 20k, 40k, 60k, …): every
//!   climb ended at 60k or below, 4–5 steps each; the 30k and 50k steps
//!   were added to tell the models apart below that, ≈ 6 steps each, 162
//!   cells ≈ 3.8 min.
//!
//! The scenario it replaces (one open-loop cell per model and repeat at
//! half the slowest model's rate, 33 cells) took ≈ 1.7 min of the 25–27 min
//! the default matrix took. With a UDP scenario of ≈ 4 min to come, that
//! would be 25–27 − 1.7 + 4.4 + 4 = 31.7–33.7 min at worst: over the 30
//! minute budget. So the closed-loop throughput scenario runs 2 repeats
//! instead of 3 ([`crate::matrix::THROUGHPUT_REPEAT`]): 88 cells of ≈ 3 s
//! fewer, −4.4 min, 27.3–29.3 min at worst, ≈ 26–28 expected. A full run
//! with the udp scenario and the 7-step ladder took 25.5 min; the two
//! added steps cost ≈ 1 min more.

use std::collections::BTreeMap;
use std::time::Duration;

use echo_common::Transport;

use crate::flags::{BELOW_TARGET_RATE, FlagKind};
use crate::load::LoadKey;
use crate::load::Scenario;
use crate::models::Model;
use crate::results::{Cell, Results};

/// The default offered rates, msg/s: from well below the slowest model's
/// closed-loop rate at 100 connections on the 2-CPU machine (≈ 30 k) to
/// above the fastest (≈ 150 k, where the load generator runs out first).
pub const DEFAULT_RATES: [f64; 9] =
    [10_000.0, 20_000.0, 30_000.0, 40_000.0, 50_000.0, 60_000.0, 80_000.0, 100_000.0, 130_000.0];
/// `--quick`'s rates.
pub const QUICK_RATES: [f64; 3] = [20_000.0, 60_000.0, 100_000.0];
/// The default SLO on the CO-corrected p99.
pub const DEFAULT_SLO_P99: Duration = Duration::from_millis(1);
/// Connections of every step.
pub const CONNECTIONS: u32 = 100;
/// A step's measured window and warm-up are at most these (shorter if the
/// run's `--duration`/`--warmup` are): many short cells, within budget.
pub const STEP_WINDOW: (Duration, Duration) = (Duration::from_secs(1), Duration::from_millis(250));

/// Why `model` is left out of the ladder, if it is.
pub fn excluded(model: &Model) -> Option<String> {
    let at_once = model.info().serves_at_once?;
    (at_once < u64::from(CONNECTIONS)).then(|| {
        format!(
            "serves {at_once} connection(s) at once: {} of the ladder's {CONNECTIONS} would wait in the backlog, \
             so every step would measure the backlog",
            u64::from(CONNECTIONS) - at_once
        )
    })
}

/// How one step went.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Achieved ≥ 99 % of the offered rate with p99 ≤ SLO.
    Sustained,
    /// Achieved less than 99 % of the offered rate.
    MissedRate { achieved: f64 },
    /// p99 above the SLO.
    OverSlo { p99_us: u64 },
    /// UDP: more datagrams lost than [`crate::udp::MAX_LOSS_PERCENT`].
    Lossy { percent: f64 },
    /// The cell failed (the server crashed, loadgen could not run, …).
    Failed(String),
}

impl Verdict {
    pub fn sustained(&self) -> bool {
        *self == Verdict::Sustained
    }

    /// A few words for a table.
    pub fn words(&self) -> String {
        match self {
            Verdict::Sustained => "sustained".into(),
            Verdict::MissedRate { achieved } => {
                format!("missed the rate ({} msg/s)", loadgen::report::fmt_count(*achieved))
            }
            Verdict::OverSlo { p99_us } => format!("p99 {} > SLO", loadgen::report::fmt_us(*p99_us as f64)),
            Verdict::Lossy { percent } => format!("lost {percent:.2} % > {} %", crate::udp::MAX_LOSS_PERCENT),
            Verdict::Failed(reason) => format!("failed: {reason}"),
        }
    }
}

/// The verdict on an open-loop step against an SLO of `slo_p99_us`; over
/// UDP also against the loss limit ([`crate::udp::MAX_LOSS_PERCENT`]), judged
/// first: the percentiles cover delivered datagrams only.
pub fn verdict(cell: &Cell, slo_p99_us: u64) -> Verdict {
    let Some(report) = cell.loadgen.as_ref().filter(|_| cell.ok) else {
        return Verdict::Failed(cell.failure.clone().unwrap_or_else(|| "no load report".into()));
    };
    let target = cell.spec.load.offered().or(report.throughput.target_requests_per_sec).unwrap_or(0.0);
    let achieved = report.throughput.requests_per_sec;
    let lost = report.datagrams.as_ref().map_or(0.0, |d| d.loss_percent);
    if lost > crate::udp::MAX_LOSS_PERCENT {
        Verdict::Lossy { percent: lost }
    } else if achieved < BELOW_TARGET_RATE * target {
        Verdict::MissedRate { achieved }
    } else if report.latency_us.p99 > slo_p99_us {
        Verdict::OverSlo { p99_us: report.latency_us.p99 }
    } else {
        Verdict::Sustained
    }
}

/// One model's climb in one repeat: the steps of one load at rising rates.
#[derive(Debug, Clone)]
pub struct Climb<'a> {
    /// The load every step shares ([`LoadKey::climb`]: all but the rate).
    pub load: LoadKey,
    pub repeat: u32,
    /// Its steps in the order they ran (ascending rates).
    pub steps: Vec<(&'a Cell, Verdict)>,
}

impl Climb<'_> {
    /// The highest offered rate sustained below the first failing step.
    pub fn knee(&self) -> Option<f64> {
        self.steps.iter().take_while(|(_, v)| v.sustained()).filter_map(|(c, _)| c.spec.load.offered()).last()
    }

    /// The step that ended the climb, if one did.
    pub fn stop(&self) -> Option<&(&Cell, Verdict)> {
        self.steps.iter().find(|(_, v)| !v.sustained())
    }

    /// The step that ended the climb had the load generator ≥ 90 % busy.
    pub fn client_bound(&self) -> bool {
        self.stop().is_some_and(|(c, _)| c.flags.iter().any(|f| f.kind == FlagKind::ClientBound))
    }
}

/// The climbs of one model (or variant) over its repeats, summed up for a
/// table: the rate sustained in every repeat and how each climb ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The highest offered rate sustained in every repeat (an offered rate,
    /// never a median between two of them).
    pub every: Option<f64>,
    /// "12,000", "≥ 130,000 (top step)", "none", with ", client-bound in 1
    /// of 3" when a climb stopped on a client-bound step.
    pub words: String,
    /// How each repeat's climb ended: "repeat 2: 80,000 /s, p99 1.3 ms > SLO".
    pub stops: Vec<String>,
}

/// Sums up `climbs` (one model's or variant's, every repeat) of a ladder
/// whose highest offered rate is `top`; `unit` names the rate ("msg/s").
pub fn summary(climbs: &[&Climb<'_>], top: Option<f64>, unit: &str) -> Summary {
    let every = climbs.iter().map(|c| c.knee()).reduce(|a, b| a.zip(b).map(|(a, b)| a.min(b))).flatten();
    let mut words = every.map_or("none".to_owned(), loadgen::report::fmt_count);
    // "Top step" only when every climb ran up to the top rate: a climb cut
    // short by an interrupted run has no failing step either.
    let reached = |c: &&Climb<'_>| top.is_some() && c.steps.last().and_then(|(s, _)| s.spec.load.offered()) == top;
    if climbs.iter().all(|c| c.stop().is_none()) {
        if climbs.iter().all(reached) {
            words = format!("≥ {words} (top step)");
        } else {
            words = format!("≥ {words} (not run higher: the run was interrupted)");
        }
    }
    let bound = climbs.iter().filter(|c| c.client_bound()).count();
    if bound > 0 {
        words = format!("{words}, client-bound in {bound} of {}", climbs.len());
    }
    let stops = climbs
        .iter()
        .map(|c| match c.stop() {
            Some((cell, v)) => format!(
                "repeat {}: {} {unit}, {}",
                c.repeat + 1,
                loadgen::report::fmt_count(cell.spec.load.offered().unwrap_or(0.0)),
                v.words()
            ),
            None if reached(c) => format!("repeat {}: sustained every step", c.repeat + 1),
            None => format!("repeat {}: sustained every step run", c.repeat + 1),
        })
        .collect();
    Summary { every, words, stops }
}

/// The cells of the step at `rate` of the climbs `keep` selects, over
/// their repeats.
pub fn step<'a>(climbs: &[Climb<'a>], keep: impl Fn(&Climb<'a>) -> bool, rate: f64) -> Vec<&'a Cell> {
    climbs
        .iter()
        .filter(|c| keep(c))
        .flat_map(|c| c.steps.iter().filter(|(s, _)| s.spec.load.offered() == Some(rate)).map(|(s, _)| *s))
        .collect()
}

/// Every climb of the latency ladder, by transport, model (run order) and repeat.
pub fn climbs(results: &Results) -> Vec<Climb<'_>> {
    let Some(ladder) = &results.settings.ladder else { return Vec::new() };
    climbs_of(results, Scenario::Latency, ladder.slo_p99_us)
}

/// Every climb of the open-loop steps of `scenario` (the latency ladder, or
/// the udp scenario's sustained-rate steps) judged against `slo_p99_us`, by
/// transport, model (run order), variant and repeat.
pub fn climbs_of(results: &Results, scenario: Scenario, slo_p99_us: u64) -> Vec<Climb<'_>> {
    let steps = results.cells.iter().filter(|c| c.spec.load.scenario == scenario && c.spec.load.rate.is_some());
    let by_climb = steps.map(|cell| ((cell.spec.load.climb(), cell.spec.repeat), (cell, verdict(cell, slo_p99_us))));
    let mut climbs: BTreeMap<(LoadKey, u32), Vec<(&Cell, Verdict)>> = BTreeMap::new();
    for (climb, step) in by_climb {
        climbs.entry(climb).or_default().push(step);
    }
    climbs
        .into_iter()
        .map(|((load, repeat), mut steps)| {
            steps.sort_by_key(|(step, _)| step.spec.load.rate);
            Climb { load, repeat, steps }
        })
        .collect()
}

/// The common load of the ladder over `transport`: the highest offered
/// rate every model on the ladder sustained in every repeat (the load at
/// which all of them can be compared), else the lowest rate run.
pub fn common_rate(results: &Results, transport: Transport) -> Option<f64> {
    let climbs: Vec<Climb<'_>> = climbs(results).into_iter().filter(|c| c.load.transport == transport).collect();
    let lowest =
        climbs.iter().flat_map(|c| c.steps.first()).filter_map(|(s, _)| s.spec.load.offered()).reduce(f64::min)?;
    let all = climbs.iter().map(|c| c.knee()).collect::<Option<Vec<f64>>>();
    Some(all.and_then(|knees| knees.into_iter().reduce(f64::min)).unwrap_or(lowest))
}

/// `10000,20000` or `10k,20k,1.5M` → ascending, distinct rates > 0.
pub fn parse_rates(text: &str) -> Result<Vec<f64>, String> {
    let mut rates = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (digits, scale) = match part.to_ascii_lowercase().chars().last() {
            Some('k') => (&part[..part.len() - 1], 1e3),
            Some('m') => (&part[..part.len() - 1], 1e6),
            _ => (part, 1.0),
        };
        match digits.trim().parse::<f64>() {
            Ok(rate) if rate.is_finite() && rate > 0.0 => rates.push(rate * scale),
            _ => return Err(format!("invalid rate {part:?}: expected messages per second > 0, e.g. 20000 or 20k")),
        }
    }
    if rates.is_empty() {
        return Err("no rate given".into());
    }
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    Ok(rates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_sorted_with_suffixes_and_bad_ones_are_refused() {
        assert_eq!(parse_rates("20k, 5000,1.5M,20000").unwrap(), [5_000.0, 20_000.0, 1_500_000.0]);
        for bad in ["", "0", "-5", "x", "10k,abc", "inf"] {
            assert!(parse_rates(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// The fixture run: thread and tokio, rates 2k, 8k, 32k, SLO 1 ms, 2 repeats.
    fn fixture() -> Results {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results.json");
        let mut results = Results::load(&path).expect("the fixture loads");
        crate::validity::annotate(&mut results);
        results
    }

    #[test]
    fn knees_stops_and_the_client_bound_mark_from_a_recorded_run() {
        let mut results = fixture();
        let slo = results.settings.ladder.as_ref().unwrap().slo_p99_us;
        assert_eq!(slo, 1000);
        // (model, repeat, knee, rate of the stopping step, client-bound)
        type Summary = (usize, u32, Option<f64>, Option<f64>, bool);
        let summary = |results: &Results| -> Vec<Summary> {
            climbs(results)
                .iter()
                .map(|c| {
                    (
                        c.load.model.rank(),
                        c.repeat,
                        c.knee(),
                        c.stop().and_then(|(s, _)| s.spec.load.offered()),
                        c.client_bound(),
                    )
                })
                .collect()
        };
        // thread (model 0), repeat 1: 2k and 8k sustained, 32k achieved 27,052 msg/s;
        // tokio (model 1), repeat 1: 2k sustained, 8k p99 29.8 ms; repeat 2: both
        // stopped at their first step.
        assert_eq!(
            summary(&results),
            [
                (0, 0, Some(8000.0), Some(32000.0), false),
                (0, 1, None, Some(2000.0), false),
                (1, 0, Some(2000.0), Some(8000.0), false),
                (1, 1, None, Some(2000.0), false),
            ]
        );
        let thread = &climbs(&results)[0];
        assert!(matches!(thread.stop(), Some((_, Verdict::MissedRate { achieved })) if *achieved == 27_052.0));
        assert!(matches!(climbs(&results)[2].stop(), Some((_, Verdict::OverSlo { p99_us: 29_775 }))));
        // The same stop with the load generator ≥ 90 % busy: the knee is client-bound.
        let stop = results
            .cells
            .iter_mut()
            .find(|c| c.spec.load.scenario == crate::load::Scenario::Latency && c.spec.load.offered() == Some(32000.0))
            .unwrap();
        stop.loadgen.as_mut().unwrap().client_cpu.max_thread_utilisation = 0.95;
        crate::validity::annotate(&mut results);
        assert!(summary(&results)[0].4, "client-bound");
        // Every model sustained 2k in repeat 1 only: the common rate falls back to the lowest.
        assert_eq!(common_rate(&results, Transport::Tcp), Some(2000.0));
        assert_eq!(common_rate(&results, Transport::Unix), None);
    }

    #[test]
    fn the_verdict_of_a_failed_cell_is_a_failure() {
        let mut results = fixture();
        let cell = results.cells.iter_mut().find(|c| c.spec.load.scenario == crate::load::Scenario::Latency).unwrap();
        assert_eq!(verdict(cell, 1000), Verdict::Sustained);
        assert!(matches!(verdict(cell, 100), Verdict::OverSlo { p99_us: 405 }));
        cell.ok = false;
        cell.failure = Some("server exited during the cell".into());
        assert_eq!(verdict(cell, 1000), Verdict::Failed("server exited during the cell".into()));
    }

    #[test]
    fn default_rates_ascend() {
        assert!(DEFAULT_RATES.windows(2).all(|w| w[0] < w[1]));
        assert!(QUICK_RATES.windows(2).all(|w| w[0] < w[1]));
    }
}
