//! The figures the load tables show, each the median over a row's repeats
//! with its min–max range, printed: msg/s, server CPU per message, latency
//! percentiles, errors.

use loadgen::report::LatencySummary;

use super::format::{count, grouped, show, us};
use crate::results::Cell;
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

/// Requests that failed, timed out or came back wrong.
pub fn errors(cells: &[&Cell]) -> String {
    show(load_stat(cells, |r| r.requests.errors() as f64), count)
}
