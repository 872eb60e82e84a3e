//! The figures the load tables show, each the median over a row's repeats
//! with its min–max range, printed: msg/s, server CPU per message, latency
//! percentiles, errors.

use loadgen::report::LatencySummary;

use super::format::{count, grouped, range, show, us};
use crate::results::{Cell, Settings};
use crate::stats::Stat;

/// A figure of the load generator's report, over a group's repeats.
pub fn load_stat(cells: &[&Cell], figure: impl Fn(&loadgen::Report) -> f64) -> Option<Stat> {
    Stat::over(cells, |c| c.loadgen.as_ref().map(&figure))
}

/// Messages (or connections) per second.
pub fn throughput(cells: &[&Cell]) -> String {
    show(load_stat(cells, |r| r.throughput.requests_per_sec), count)
}

/// A latency percentile.
pub fn latency(cells: &[&Cell], pick: fn(&LatencySummary) -> u64) -> String {
    show(load_stat(cells, |r| pick(&r.latency_us) as f64), us)
}

/// Server CPU per message, µs, with `digits` decimals.
pub fn server_cpu(cells: &[&Cell], digits: usize) -> String {
    show(Stat::over(cells, |c| c.server_cpu_us_per_msg), |v| grouped(v, digits))
}

/// The server's busy share of its allotment (its quota, or its CPUs), %:
/// `98 % of 0.5 CPU` when every repeat had the same allotment.
pub fn server_busy(cells: &[&Cell], settings: &Settings) -> String {
    let allotment = |c: &Cell| crate::validity::allotment(c, settings);
    let stat =
        Stat::over(cells, |c| c.server.filter(|s| s.cpu_secs > 0.0).map(|s| 100.0 * s.cpu_utilisation / allotment(c)));
    let of = cells.first().map(|c| allotment(c)).filter(|a| cells.iter().all(|c| allotment(c) == *a));
    let shown = range(stat, |v| format!("{v:.0} %"));
    match of {
        Some(cpus) if shown != "–" => format!("{shown} of {} CPU", (cpus * 100.0).round() / 100.0),
        _ => shown,
    }
}

/// Requests that failed, timed out or came back wrong.
pub fn errors(cells: &[&Cell]) -> String {
    show(load_stat(cells, |r| r.requests.errors() as f64), count)
}
