//! The server's CPU quota (`--server-quota`): a cgroup per server with a
//! CPU bandwidth limit, so that a saturated closed loop is limited by the
//! server and not by the load generator beside it.
//!
//! The bench makes one parent cgroup of its own in the CPU controller's
//! hierarchy (`echo-arena-bench-<pid>`, cgroup v2 `cpu.max`, or v1
//! `cpu.cfs_period_us`/`cpu.cfs_quota_us`), and a child of it for each
//! server that runs throttled. The server moves itself into its child
//! before it executes (so every process it forks later is in it too), the
//! runner reads the child's `cpu.stat` at the window's edges, and the child
//! is removed once its server is stopped; the parent when the run ends.
//! Cgroups a run could not remove (killed by a second signal) are swept by
//! the next run: a parent whose process is gone and whose children are
//! empty.
//!
//! The period ([`period_for`]) is 10 ms for half a CPU: long enough that
//! each period's quota is at least the scheduler's bandwidth slice (5 ms,
//! `kernel.sched_cfs_bandwidth_slice_us`), short enough that a throttled
//! server waits at most 5 ms. Measured here (reactor, 100 connections, 64 B,
//! closed loop, half a CPU): with a 2 ms period the server got 0.40–0.43 of
//! its 0.5 CPU and did 39–53k msg/s in three runs, at 10, 20 and 100 ms it
//! used all of it and did 49–75k (five interleaved runs each, no period
//! better than another): a quota of 1 ms a period is smaller than the slice
//! the scheduler hands out, and the rest of the period went unused.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The period of a quota of half a CPU or more, µs.
pub const PERIOD_US: u64 = 10_000;
/// The kernel's default bandwidth slice (`sched_cfs_bandwidth_slice_us`),
/// µs: the quota of a period is kept at least this large.
pub const SLICE_US: u64 = 5_000;
/// The smallest quota the kernel accepts per period, µs.
pub const MIN_QUOTA_US: u64 = 1_000;
/// The longest period the kernel accepts, µs (1 s): it sets the smallest
/// quota, [`MIN_QUOTA_US`] per such period.
pub const MAX_PERIOD_US: u64 = 1_000_000;
/// The prefix of the bench's parent cgroups.
const PREFIX: &str = "echo-arena-bench-";

/// A CPU quota: `cpus` of CPU time per unit of wall time (0.5: half of
/// one CPU), enforced over periods of `period_us`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quota {
    pub cpus: f64,
    pub period_us: u64,
}

impl Quota {
    /// A quota of `cpus`, over [`period_for`] it.
    pub fn new(cpus: f64) -> Quota {
        Quota { cpus, period_us: period_for(cpus) }
    }

    /// The CPU time allowed per period, µs.
    pub fn quota_us(&self) -> u64 {
        (self.cpus * self.period_us as f64).round() as u64
    }
}

/// The period of a quota of `cpus`: [`PERIOD_US`], longer when the quota
/// of a period would fall under [`SLICE_US`] (20 ms for a quarter CPU), and
/// never longer than the kernel's [`MAX_PERIOD_US`].
pub fn period_for(cpus: f64) -> u64 {
    let shortest = (SLICE_US as f64 / cpus).ceil() as u64;
    PERIOD_US.max(shortest).min(MAX_PERIOD_US)
}

/// `--server-quota`: `none`, or a share of CPU above 0 (`0.5`), at most
/// `server_cpus` (more could never throttle). `Ok(None)`: none.
pub fn parse(text: &str, server_cpus: usize) -> Result<Option<f64>, String> {
    if text.trim() == "none" {
        return Ok(None);
    }
    let cpus: f64 =
        text.trim().parse().map_err(|_| format!("{text:?} is not a share of CPU such as 0.5, or `none` (no quota)"))?;
    // NaN is not above 0 either.
    if cpus.is_nan() || cpus <= 0.0 {
        return Err(format!("{text:?}: a quota must be above 0 (`none` runs the server unthrottled)"));
    }
    // Smaller, its period would exceed the kernel's longest: refused there.
    let smallest = MIN_QUOTA_US as f64 / MAX_PERIOD_US as f64;
    if cpus < smallest {
        return Err(format!(
            "{text:?} is too small: the kernel's longest period ({} s) takes at least {smallest} CPU",
            MAX_PERIOD_US / 1_000_000
        ));
    }
    if cpus > server_cpus as f64 {
        return Err(format!(
            "{text:?} is more than the server's {server_cpus} CPU(s): it would never throttle (`none` runs unthrottled)"
        ));
    }
    Ok(Some(cpus))
}

/// The default quota: half the load generator's CPUs, so that it has at
/// least twice the server's CPU, and no more than the server's own CPUs
/// (0.5 with one CPU each).
pub fn default_cpus(server_cpus: usize, client_cpus: usize) -> f64 {
    (client_cpus as f64 / 2.0).min(server_cpus as f64)
}

/// The two cgroup interfaces of the CPU controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// The bench's parent cgroup, where each throttled server gets a child.
/// Removed when dropped (its children first).
#[derive(Debug)]
pub struct Cgroups {
    version: Version,
    parent: PathBuf,
    next: AtomicU32,
}

/// How many times a child cgroup had its CPU throttled, read from its
/// `cpu.stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reading {
    /// Periods with runnable tasks.
    pub periods: u64,
    /// Of those, periods in which the quota ran out.
    pub throttled: u64,
    /// Time the cgroup spent throttled, µs.
    pub throttled_us: u64,
}

/// A cell's quota and its throttling over the measured window, as
/// results.json records it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Throttling {
    /// The quota, CPUs.
    pub cpus: f64,
    pub period_us: u64,
    /// Periods of the window in which the server had work.
    pub periods: u64,
    /// Of those, the periods in which it ran out of quota.
    pub throttled_periods: u64,
    /// Time it spent throttled, seconds.
    pub throttled_secs: f64,
}

impl Throttling {
    /// The quota and the difference of two readings.
    pub fn between(quota: Quota, a: Reading, b: Reading) -> Throttling {
        Throttling {
            cpus: quota.cpus,
            period_us: quota.period_us,
            periods: b.periods.saturating_sub(a.periods),
            throttled_periods: b.throttled.saturating_sub(a.throttled),
            throttled_secs: b.throttled_us.saturating_sub(a.throttled_us) as f64 / 1e6,
        }
    }
}

impl Cgroups {
    /// Finds the CPU controller, sweeps cgroups earlier runs left, makes
    /// this run's parent and tries a child with `quota` in it; why not, in
    /// one line, when any of it fails (no cgroup with the CPU controller
    /// mounted, no permission).
    pub fn probe(quota: Quota) -> Result<Cgroups, String> {
        let (version, root) = controller().ok_or("no cgroup hierarchy with the cpu controller is mounted")?;
        sweep(&root);
        let parent = root.join(format!("{PREFIX}{}", std::process::id()));
        let words = |what: &str, err: io::Error| format!("cannot {what} ({err})");
        if version == Version::V2 {
            // The parent's children get the cpu controller only if every
            // ancestor down to it delegates it (usually so at the root already).
            enable_cpu(&root).map_err(|e| words(&format!("enable +cpu in {}", root.display()), e))?;
        }
        match fs::create_dir(&parent) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(words(&format!("create {}", parent.display()), err)),
        }
        let cgroups = Cgroups { version, parent, next: AtomicU32::new(0) };
        if version == Version::V2 {
            enable_cpu(&cgroups.parent)
                .map_err(|e| words(&format!("enable +cpu in {}", cgroups.parent.display()), e))?;
        }
        // A child with the quota set and read back: what every cell will need.
        let child = cgroups.create(quota).map_err(|e| words("set a CPU quota", e))?;
        child.read().map_err(|e| words("read cpu.stat", e))?;
        Ok(cgroups)
    }

    /// `cgroup v2` or `cgroup v1`, and where the parent is.
    pub fn mechanism(&self) -> String {
        let version = match self.version {
            Version::V1 => "cgroup v1 cpu.cfs_quota_us",
            Version::V2 => "cgroup v2 cpu.max",
        };
        format!("{version} under {}", self.parent.display())
    }

    /// A new child cgroup with `quota`, ready for a server to join.
    pub fn create(&self, quota: Quota) -> io::Result<Cgroup> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.parent.join(format!("server-{n}"));
        fs::create_dir(&path)?;
        // From here on the child is removed when dropped, also on an error.
        let mut cgroup = Cgroup { path, version: self.version, quota, procs: None };
        match self.version {
            Version::V2 => fs::write(cgroup.path.join("cpu.max"), format!("{} {}", quota.quota_us(), quota.period_us))?,
            Version::V1 => {
                fs::write(cgroup.path.join("cpu.cfs_period_us"), quota.period_us.to_string())?;
                fs::write(cgroup.path.join("cpu.cfs_quota_us"), quota.quota_us().to_string())?;
            }
        }
        cgroup.procs = Some(OpenOptions::new().write(true).open(cgroup.path.join("cgroup.procs"))?);
        Ok(cgroup)
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        remove_tree(&self.parent);
    }
}

/// One server's cgroup. Removed when dropped (once its processes are gone).
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
    version: Version,
    pub quota: Quota,
    /// `cgroup.procs`, open for writing: the server's process writes `0`
    /// into it (itself) between fork and exec.
    procs: Option<File>,
}

impl Cgroup {
    /// The descriptor of `cgroup.procs` that a process joins the cgroup
    /// through by writing `0` to it (see [`crate::server::Server::start_in`]).
    pub fn procs_fd(&self) -> Option<RawFd> {
        self.procs.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Its `cpu.stat` now.
    pub fn read(&self) -> io::Result<Reading> {
        let text = fs::read_to_string(self.path.join("cpu.stat"))?;
        parse_stat(&text, self.version == Version::V1)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "cpu.stat lacks nr_periods or nr_throttled"))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.procs = None;
        remove_dir(&self.path);
    }
}

/// `cpu.stat` → its throttling figures (v1 counts throttled time in ns as
/// `throttled_time`, v2 in µs as `throttled_usec`).
pub fn parse_stat(text: &str, v1: bool) -> Option<Reading> {
    let value = |key: &str| {
        text.lines().find_map(|l| l.split_once(' ').filter(|(k, _)| *k == key).and_then(|(_, v)| v.trim().parse().ok()))
    };
    let throttled_us = if v1 { value("throttled_time").map(|ns: u64| ns / 1000) } else { value("throttled_usec") };
    Some(Reading { periods: value("nr_periods")?, throttled: value("nr_throttled")?, throttled_us: throttled_us? })
}

/// The hierarchy the cpu controller is in: a cgroup2 mount whose
/// `cgroup.controllers` names it, else a v1 mount with the `cpu` option.
fn controller() -> Option<(Version, PathBuf)> {
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    let mut v1 = None;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, point, kind, options, ..] = fields[..] else { continue };
        let point = PathBuf::from(point);
        match kind {
            "cgroup2" => {
                let controllers = fs::read_to_string(point.join("cgroup.controllers")).unwrap_or_default();
                if controllers.split_whitespace().any(|c| c == "cpu") {
                    return Some((Version::V2, point));
                }
            }
            "cgroup" if options.split(',').any(|o| o == "cpu") => v1 = v1.or(Some(point)),
            _ => {}
        }
    }
    v1.map(|point| (Version::V1, point))
}

/// Writes `+cpu` to `dir`'s `cgroup.subtree_control` unless it has it.
fn enable_cpu(dir: &Path) -> io::Result<()> {
    let control = dir.join("cgroup.subtree_control");
    if fs::read_to_string(&control)?.split_whitespace().any(|c| c == "cpu") {
        return Ok(());
    }
    fs::write(control, "+cpu")
}

/// Removes the parents of bench runs whose process is gone.
fn sweep(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            remove_tree(&entry.path());
        }
    }
}

/// Removes `dir`'s child cgroups, then `dir`.
fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dir(&entry.path());
            }
        }
    }
    remove_dir(dir);
}

/// Removes an (empty) cgroup; a process that just exited may keep it busy
/// for a moment, so it tries again for up to a second.
fn remove_dir(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(err) => {
                eprintln!("bench: cannot remove the cgroup {} ({err}): remove it by hand", dir.display());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_periods_quota_is_a_slice_at_least_and_never_under_the_kernels_minimum() {
        assert_eq!((Quota::new(0.5).period_us, Quota::new(0.5).quota_us()), (10_000, 5_000));
        assert_eq!((Quota::new(1.0).period_us, Quota::new(1.0).quota_us()), (10_000, 10_000));
        assert_eq!((Quota::new(0.25).period_us, Quota::new(0.25).quota_us()), (20_000, 5_000));
        for cpus in [0.01, 0.1, 0.3, 0.7, 1.5, 3.0] {
            assert!(Quota::new(cpus).quota_us() >= SLICE_US, "{cpus}");
        }
        // Where the slice would need a period beyond the kernel's longest,
        // the longest, with the kernel's minimum quota still met.
        for cpus in [0.001, 0.003] {
            let quota = Quota::new(cpus);
            assert_eq!(quota.period_us, MAX_PERIOD_US, "{cpus}");
            assert!(quota.quota_us() >= MIN_QUOTA_US, "{cpus}");
        }
    }

    #[test]
    fn the_flag_takes_none_or_a_share_within_the_servers_cpus() {
        assert_eq!(parse("none", 1), Ok(None));
        assert_eq!(parse("0.5", 1), Ok(Some(0.5)));
        assert_eq!(parse("2", 2), Ok(Some(2.0)));
        for bad in ["0", "-1", "x", "", "NaN", "1.5"] {
            assert!(parse(bad, 1).is_err(), "{bad:?}");
        }
        assert_eq!(default_cpus(1, 1), 0.5);
        assert_eq!(default_cpus(1, 4), 1.0);
    }

    #[test]
    fn a_quota_whose_period_the_kernel_would_refuse_is_refused() {
        let err = parse("0.0005", 1).unwrap_err();
        assert!(err.contains("too small"), "{err}");
        assert_eq!(parse("0.001", 1), Ok(Some(0.001)));
        assert!(period_for(0.001) <= MAX_PERIOD_US);
    }

    #[test]
    fn cpu_stat_reads_in_both_versions() {
        let v2 = "usage_usec 100\nuser_usec 60\nsystem_usec 40\nnr_periods 10\nnr_throttled 3\nthrottled_usec 2500\n";
        assert_eq!(parse_stat(v2, false), Some(Reading { periods: 10, throttled: 3, throttled_us: 2500 }));
        let v1 = "nr_periods 7\nnr_throttled 2\nthrottled_time 4000000\n";
        assert_eq!(parse_stat(v1, true), Some(Reading { periods: 7, throttled: 2, throttled_us: 4000 }));
        assert_eq!(parse_stat("nr_periods 1\n", false), None);
        let t = Throttling::between(
            Quota::new(0.5),
            Reading { periods: 7, throttled: 2, throttled_us: 4000 },
            Reading { periods: 17, throttled: 9, throttled_us: 9000 },
        );
        assert_eq!((t.periods, t.throttled_periods, t.throttled_secs), (10, 7, 0.005));
    }
}
