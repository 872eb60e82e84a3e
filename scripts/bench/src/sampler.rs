//! Samples a server's process tree every 100 ms (less often when a reading
//! is slow: a sample that took long is followed by a longer wait) on a
//! thread of its own, and sums the samples up over the measured window.

use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::procfs::{ProcError, TreeReading, read_process_timed, read_tree_timed};

/// Sampling period.
pub const PERIOD: Duration = Duration::from_millis(100);
/// PSS (smaps_rollup: 0.3–0.8 ms for a server of 100 threads here) is read
/// every 5th sample only, twice a second: a millisecond taken ten times a
/// second from a CPU (the load generator's, where the sampler ran at
/// first) was enough to put the pacer's p99 send lateness past its limit.
const PSS_EVERY: u64 = 5;

/// The sampler's share of the CPU it runs on, at most: a sample that took
/// `took` is followed by `took × STRETCH` before the next, when that is
/// longer than [`PERIOD`]. A server of one process reads in ≈ 0.1–0.4 ms
/// and is sampled every 100 ms; `process` at 100 connections (100 processes,
/// ≈ 4 ms a reading, ≈ 30 ms with PSS) every 0.8 s, at most every
/// [`LONGEST_WAIT`]: on the load generator's CPU, a sampler busy 4 % of the
/// time in 4 ms pieces made the pacer's p99 send lateness milliseconds.
const STRETCH: u32 = 200;
/// The longest wait between two samples.
const LONGEST_WAIT: Duration = Duration::from_secs(1);

/// The wait after a sample that took `took` (see [`STRETCH`]).
fn stretched(took: Duration) -> Duration {
    (took * STRETCH).min(LONGEST_WAIT)
}

/// A reading and when it was taken.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When its CPU figures were read (the middle of their pass).
    pub at: Instant,
    pub reading: TreeReading,
    /// How long the CPU pass took.
    pub cpu_pass: Duration,
}

/// A running sampler; [`Sampler::stop`] returns its samples.
#[derive(Debug)]
pub struct Sampler {
    /// Dropped to stop the sampler (it wakes at once).
    stop: mpsc::Sender<()>,
    handle: JoinHandle<Samples>,
}

/// What a sampler saw.
#[derive(Debug, Default)]
pub struct Samples {
    pub samples: Vec<Sample>,
    /// Why sampling stopped early: /proc could not be read or parsed.
    pub error: Option<String>,
}

impl Sampler {
    /// Starts sampling the tree rooted at `pid`; `pid` alone unless
    /// `children` (see [`read_server`]). The sampler runs on `cpus`, the
    /// server's: a reading (0.1–0.8 ms, milliseconds for a tree of
    /// processes) on the load generator's CPU is a pause in its sends, and
    /// the p99 of their lateness is set by such pauses (a `send_late` flag).
    /// On the server's CPUs it takes about 1/200 of one CPU (its stretch;
    /// more for a reading over 5 ms, whose wait is capped at 1 s),
    /// and none of the server's measured CPU time (per-process clocks) nor
    /// of its quota (the sampler is outside its cgroup).
    pub fn start(pid: i32, children: bool, cpus: &[usize]) -> Sampler {
        let (stop, stopping) = mpsc::channel::<()>();
        let cpus = cpus.to_vec();
        let handle = thread::spawn(move || {
            let mut samples = Vec::new();
            let mut error = None;
            // Best effort: where it fails, it samples from the CPUs it
            // inherited (the load generator's), as before.
            let _ = crate::server::pin_current_thread(&cpus);
            let mut next = Instant::now();
            let mut n = 0u64;
            loop {
                let began = Instant::now();
                let cpu_began = loadgen::cpu::thread_cpu_secs();
                match read_server(pid, children, n % PSS_EVERY == 0) {
                    Ok(Some(sample)) => samples.push(sample),
                    Ok(None) => {} // the server is gone; the runner notices
                    Err(err) => {
                        error = Some(err.to_string());
                        break;
                    }
                }
                n += 1;
                // The reading's own CPU time, not its wall time: on a CPU
                // shared with a spinning load generator the wall time is
                // mostly waiting for a turn.
                let took = Duration::from_secs_f64((loadgen::cpu::thread_cpu_secs() - cpu_began).max(0.0));
                next = (next + PERIOD).max(began + stretched(took));
                // Sleeps until `next`, or until told to stop (the sender
                // dropped), whichever comes first.
                match stopping.recv_timeout(next.saturating_duration_since(Instant::now())) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            }
            Samples { samples, error }
        });
        Sampler { stop, handle }
    }

    /// Stops sampling and returns every sample taken.
    pub fn stop(self) -> Samples {
        drop(self.stop);
        self.handle
            .join()
            .unwrap_or_else(|_| Samples { samples: Vec::new(), error: Some("the sampler panicked".into()) })
    }
}

/// Reads the server's tree rooted at `pid`, or `pid` alone when its model
/// starts no child processes (its declaration's `child_processes`): finding
/// children costs a read per thread, a millisecond for a server of 100
/// threads, taken from the CPU the reading runs on. The sample is of the
/// instant its CPU figures were read at (see [`crate::procfs::Timed`]).
pub fn read_server(pid: i32, children: bool, with_pss: bool) -> Result<Option<Sample>, ProcError> {
    let timed = if children { read_tree_timed(pid, with_pss) } else { read_process_timed(pid, with_pss) }?;
    Ok(timed.map(|t| Sample { at: t.at, reading: t.reading, cpu_pass: t.cpu_pass }))
}

/// The server's figures over a window.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ServerStats {
    pub samples: u64,
    /// CPU time (user + system) of the whole tree over the window, exact
    /// (process CPU clocks, see [`crate::procfs::TreeReading::cpu_secs`]):
    /// the figure CPU per message is made of.
    #[serde(default)]
    pub cpu_secs: f64,
    /// The same split into user and system time, at clock-tick resolution
    /// per process (their sum may fall short of `cpu_secs`).
    pub cpu_user_secs: f64,
    pub cpu_sys_secs: f64,
    /// `cpu_secs` / window: CPUs kept busy.
    pub cpu_utilisation: f64,
    pub rss_peak_kib: u64,
    pub rss_mean_kib: u64,
    pub pss_peak_kib: u64,
    pub pss_mean_kib: u64,
    pub threads_peak: u64,
    pub threads_mean: f64,
    pub processes_peak: u64,
    pub processes_mean: f64,
    /// Context switches over the window (live processes only).
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// The longer of the two edge readings' CPU passes (the time between
    /// reading the first process's CPU and the last's), in seconds; 0 when
    /// the CPU came from the samples, or in a run before it was kept.
    #[serde(default)]
    pub edge_cpu_pass_secs: f64,
    /// The later of the two edge readings: from the instant the window
    /// opened (closed) to the end of that reading's CPU pass, in seconds.
    /// A process's CPU was read up to that long after the edge: a reading
    /// that waited for a turn on its CPU shows here. Absent when the CPU
    /// came from the samples, or in a run before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_lag_secs: Option<f64>,
}

/// Sums `samples` up over `[from, to]`; `None` without two samples in it.
///
/// CPU time comes from `edges` when given — readings taken at the instants
/// the window opened and closed (the runner takes them in loadgen's
/// window callbacks), so it covers the interval whose messages it is
/// divided by, up to the readings' lag ([`ServerStats::edge_lag_secs`]) —,
/// else from the first and last sample inside the window.
/// Memory, threads and processes come from the samples.
pub fn summarise(
    samples: &[Sample],
    from: Instant,
    to: Instant,
    edges: Option<(&Sample, &Sample)>,
) -> Option<ServerStats> {
    let mut inside: Vec<&Sample> = samples.iter().filter(|s| s.at >= from && s.at <= to).collect();
    // The window's edges are readings too: a window shorter than two
    // sampling periods is still measured from them.
    if let Some((a, b)) = edges {
        inside.insert(0, a);
        inside.push(b);
    }
    if inside.len() < 2 {
        return None;
    }
    let n = inside.len() as f64;
    let (a, b) = edges.unwrap_or((inside[0], inside[inside.len() - 1]));
    let secs = (b.at - a.at).as_secs_f64().max(1e-9);
    let (a, b) = (a.reading, b.reading);
    let pss: Vec<u64> = inside.iter().filter_map(|s| s.reading.pss_kib).collect();
    let cpu = window_cpu(&a, &b);
    Some(ServerStats {
        samples: inside.len() as u64,
        cpu_secs: cpu.0,
        cpu_user_secs: cpu.1,
        cpu_sys_secs: cpu.2,
        cpu_utilisation: cpu.0 / secs,
        rss_peak_kib: inside.iter().map(|s| s.reading.rss_kib).max().unwrap_or(0),
        rss_mean_kib: (inside.iter().map(|s| s.reading.rss_kib).sum::<u64>() as f64 / n) as u64,
        pss_peak_kib: pss.iter().copied().max().unwrap_or(0),
        pss_mean_kib: if pss.is_empty() { 0 } else { pss.iter().sum::<u64>() / pss.len() as u64 },
        threads_peak: inside.iter().map(|s| s.reading.threads).max().unwrap_or(0),
        threads_mean: inside.iter().map(|s| s.reading.threads as f64).sum::<f64>() / n,
        processes_peak: inside.iter().map(|s| s.reading.processes).max().unwrap_or(0),
        processes_mean: inside.iter().map(|s| s.reading.processes as f64).sum::<f64>() / n,
        voluntary_switches: b.voluntary_switches.saturating_sub(a.voluntary_switches),
        involuntary_switches: b.involuntary_switches.saturating_sub(a.involuntary_switches),
        edge_cpu_pass_secs: edges.map_or(0.0, |(a, b)| a.cpu_pass.max(b.cpu_pass).as_secs_f64()),
        edge_lag_secs: edges.map(|(a, b)| {
            let lag = |edge: &Sample, at: Instant| (edge.at + edge.cpu_pass / 2).saturating_duration_since(at);
            lag(a, from).max(lag(b, to)).as_secs_f64()
        }),
    })
}

/// The tree's CPU between two readings: (exact total, user, system), in
/// seconds. Complete for a tree whose processes come and go: a process alive
/// at both readings counts its difference; one started in between counts
/// all it used (it was absent, 0, at the first); one that ended in between
/// and was reaped by the root counts through the root's cutime/cstime (its
/// whole total went there, and its part already seen at the first reading
/// is subtracted with that reading); one that ended but is not yet reaped
/// is still read, as a zombie. A child reaped by a process other than the
/// root (a grandchild) is lost with its reaper's exit: no model has those.
pub fn window_cpu(a: &TreeReading, b: &TreeReading) -> (f64, f64, f64) {
    let d = |x: f64, y: f64| (y - x).max(0.0);
    (d(a.cpu_secs, b.cpu_secs), d(a.user_secs, b.user_secs), d(a.sys_secs, b.sys_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_reading_stretches_the_wait_within_a_bound() {
        assert_eq!(
            stretched(Duration::from_micros(100)),
            Duration::from_millis(20),
            "under the period: the period rules"
        );
        assert_eq!(stretched(Duration::from_millis(4)), Duration::from_millis(800));
        assert_eq!(stretched(Duration::from_millis(30)), LONGEST_WAIT);
    }
}
