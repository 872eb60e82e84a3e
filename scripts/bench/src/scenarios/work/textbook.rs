//! What the textbook expects of a variant at a `block:` level, and the
//! verdict on what it measured.

use super::*;

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
