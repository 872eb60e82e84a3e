//! Open-loop climbs: the same load at rising offered rates, from the lowest
//! up, while each step is sustained. The latency ladder
//! ([`crate::scenarios::latency`]) and the udp scenario's sustained rate
//! ([`crate::scenarios::udp`]) climb so: a step is sustained when it
//! achieved ≥ 99 % of the offered rate ([`BELOW_TARGET_RATE`]), kept its
//! CO-corrected p99 within the SLO and (datagrams) lost at most
//! [`MAX_LOSS_PERCENT`]; the first step a climb fails ends it in that
//! repeat, and the runner skips the steps above. A climb's *knee* is the
//! highest offered rate it sustained.

use std::collections::BTreeMap;

use crate::flags::{BELOW_TARGET_RATE, FlagKind};
use crate::load::{LoadKey, ScenarioId};
use crate::results::{Cell, Results};

/// The most datagrams a step may lose and still count as sustained, %.
pub const MAX_LOSS_PERCENT: f64 = 0.1;

/// How one step went.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Achieved ≥ 99 % of the offered rate with p99 ≤ SLO.
    Sustained,
    /// Achieved less than 99 % of the offered rate.
    MissedRate { achieved: f64 },
    /// p99 above the SLO.
    OverSlo { p99_us: u64 },
    /// UDP: more datagrams lost than [`MAX_LOSS_PERCENT`].
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
            Verdict::Lossy { percent } => format!("lost {percent:.2} % > {} %", MAX_LOSS_PERCENT),
            Verdict::Failed(reason) => format!("failed: {reason}"),
        }
    }
}

/// The verdict on an open-loop step against an SLO of `slo_p99_us`; over
/// UDP also against the loss limit ([`MAX_LOSS_PERCENT`]), judged
/// first: the percentiles cover delivered datagrams only.
pub fn verdict(cell: &Cell, slo_p99_us: u64) -> Verdict {
    let Some(report) = cell.loadgen.as_ref().filter(|_| cell.ok) else {
        return Verdict::Failed(cell.failure.clone().unwrap_or_else(|| "no load report".into()));
    };
    let target = cell.spec.load.offered().or(report.throughput.target_requests_per_sec).unwrap_or(0.0);
    let achieved = report.throughput.requests_per_sec;
    let lost = report.datagrams.as_ref().map_or(0.0, |d| d.loss_percent);
    if lost > MAX_LOSS_PERCENT {
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

    /// The step that ended the climb had the load generator ≥ 90 % busy
    /// without a spinning pacer, or sending late: the client, maybe not the
    /// server, ran out.
    pub fn client_bound(&self) -> bool {
        let client = |k: FlagKind| matches!(k, FlagKind::ClientBound | FlagKind::SendLate);
        self.stop().is_some_and(|(c, _)| c.flags.iter().any(|f| client(f.kind)))
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

/// Every climb of the open-loop steps of `scenario` (the latency ladder, or
/// the udp scenario's sustained-rate steps) judged against `slo_p99_us`,
/// ordered by load (transport, …, model, variant) and repeat.
pub fn climbs_of<'a>(results: &'a Results, scenario: &ScenarioId, slo_p99_us: u64) -> Vec<Climb<'a>> {
    let steps = results.cells.iter().filter(|c| c.spec.load.scenario == *scenario && c.spec.load.rate.is_some());
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
}
