//! Steal time: how long the host kept a virtual CPU from running this
//! machine's work (the 8th figure of a `cpuN` line of `/proc/stat`, in
//! clock ticks). Read at the window's edges for the server's and the load
//! generator's CPUs, it says how much of a cell the host took from each
//! side — which side of a late send or a slow repeat ran out: neither, the
//! host. Ticks are 10 ms: over a 1.5 s window a figure is good to ± 10 ms.

use serde::{Deserialize, Serialize};

/// Steal of each CPU, in clock ticks, by CPU number (`None`: no such line).
pub type Ticks = Vec<Option<u64>>;

/// The steal of every CPU now; `None` where /proc/stat cannot be read.
pub fn read() -> Option<Ticks> {
    std::fs::read_to_string("/proc/stat").ok().map(|text| parse(&text))
}

/// The steal figures of `/proc/stat`'s `cpuN` lines.
pub fn parse(text: &str) -> Ticks {
    let mut ticks: Ticks = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields.next().and_then(|f| f.strip_prefix("cpu")).and_then(|n| n.parse::<usize>().ok()) else {
            continue;
        };
        // user nice system idle iowait irq softirq steal
        let steal = fields.nth(7).and_then(|f| f.parse().ok());
        if ticks.len() <= cpu {
            ticks.resize(cpu + 1, None);
        }
        ticks[cpu] = steal;
    }
    ticks
}

/// What the host took from each side over a window, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Steal {
    /// Summed over the server's CPUs.
    pub server_ms: f64,
    /// Summed over the load generator's CPUs; `None` when agents on other
    /// hosts carried the load (their CPUs are not this machine's).
    pub client_ms: Option<f64>,
    /// How many CPUs each sum is over (a share of the window divides by them).
    #[serde(default = "one")]
    pub server_cpus: usize,
    #[serde(default = "one")]
    pub client_cpus: usize,
}

fn one() -> usize {
    1
}

impl Steal {
    /// Between readings `a` and `b`, for the CPUs of each side (no client
    /// CPUs: the load ran elsewhere); `None` if a CPU has no figure in both.
    pub fn between(a: &Ticks, b: &Ticks, server_cpus: &[usize], client_cpus: Option<&[usize]>) -> Option<Steal> {
        let ms_per_tick = 1e3 / echo_common::procfs::ticks_per_sec();
        let side = |cpus: &[usize]| -> Option<f64> {
            cpus.iter().try_fold(0.0, |sum, &cpu| {
                let (a, b) = (a.get(cpu).copied().flatten()?, b.get(cpu).copied().flatten()?);
                Some(sum + b.saturating_sub(a) as f64 * ms_per_tick)
            })
        };
        let client_ms = match client_cpus {
            Some(cpus) => Some(side(cpus)?),
            None => None,
        };
        Some(Steal {
            server_ms: side(server_cpus)?,
            client_ms,
            server_cpus: server_cpus.len(),
            client_cpus: client_cpus.map_or(0, <[usize]>::len),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "cpu  10 0 5 100 0 0 0 7 0 0\ncpu0 5 0 2 50 0 0 0 3 0 0\ncpu1 5 0 3 50 0 0 0 4 0 0\nintr 1\n";
    const AFTER: &str =
        "cpu  20 0 9 180 0 0 0 12 0 0\ncpu0 10 0 4 90 0 0 0 4 0 0\ncpu1 10 0 5 90 0 0 0 8 0 0\nintr 2\n";

    #[test]
    fn steal_is_read_per_cpu_and_summed_per_side() {
        let (a, b) = (parse(BEFORE), parse(AFTER));
        assert_eq!(a, vec![Some(3), Some(4)], "the aggregate `cpu` line is not a CPU");
        let tick = 1e3 / echo_common::procfs::ticks_per_sec();
        let steal = Steal::between(&a, &b, &[0], Some(&[1])).unwrap();
        assert_eq!((steal.server_ms, steal.client_ms), (tick, Some(4.0 * tick)));
        assert_eq!(Steal::between(&a, &b, &[0], Some(&[2])), None, "no CPU 2");
        let both = Steal::between(&a, &b, &[0, 1], None).unwrap();
        assert_eq!((both.server_ms, both.client_ms, both.server_cpus), (5.0 * tick, None, 2), "agents elsewhere");
    }
}
