//! Reading a server's process tree from /proc — its processes, CPU time,
//! memory, threads and context switches. Used by the contract tests and by
//! the benchmark runner's sampler.

use std::fs;

/// One reading of a whole process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TreeReading {
    /// utime of every live process, plus the root's reaped children (cutime), in seconds.
    pub user_secs: f64,
    /// stime of every live process, plus the root's reaped children (cstime), in seconds.
    pub sys_secs: f64,
    pub rss_kib: u64,
    /// Proportional set size (shared pages split between sharers); `None` when not read.
    pub pss_kib: Option<u64>,
    pub threads: u64,
    pub processes: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

/// `pid` and all its descendants, from `/proc/<pid>/task/<tid>/children`.
pub fn tree(pid: i32) -> Vec<i32> {
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let tasks = fs::read_dir(format!("/proc/{}/task", tree[i])).into_iter().flatten().flatten();
        for task in tasks {
            if let Ok(children) = fs::read_to_string(task.path().join("children")) {
                tree.extend(children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
        i += 1;
    }
    tree
}

/// Clock ticks per second.
fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Reads the tree rooted at `root`; PSS too if `with_pss` (smaps_rollup is
/// the expensive file).
pub fn read_tree(root: i32, with_pss: bool) -> Option<TreeReading> {
    let pids = tree(root);
    let hz = ticks_per_sec();
    let mut reading = TreeReading { pss_kib: with_pss.then_some(0), ..TreeReading::default() };
    let mut root_seen = false;
    for pid in pids {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After the command: state is field 3 (index 0 here); utime 14,
        // stime 15, cutime 16, cstime 17, num_threads 20 (1-based).
        let num = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        reading.user_secs += num(11) / hz;
        reading.sys_secs += num(12) / hz;
        if pid == root {
            root_seen = true;
            // CPU of children already reaped (the `process` model's finished connections).
            reading.user_secs += num(13) / hz;
            reading.sys_secs += num(14) / hz;
        }
        reading.threads += num(17) as u64;
        reading.processes += 1;
        if let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) {
            for line in status.lines() {
                let value = || line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                if line.starts_with("VmRSS:") {
                    reading.rss_kib += value();
                } else if line.starts_with("voluntary_ctxt_switches:") {
                    reading.voluntary_switches += value();
                } else if line.starts_with("nonvoluntary_ctxt_switches:") {
                    reading.involuntary_switches += value();
                }
            }
        }
        if let Some(pss) = reading.pss_kib.as_mut() {
            if let Ok(rollup) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
                if let Some(line) = rollup.lines().find(|l| l.starts_with("Pss:")) {
                    *pss += line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                }
            }
        }
    }
    root_seen.then_some(reading)
}

/// Is `pid` alive (and not a zombie)?
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
