//! Reading a process tree from /proc — its processes, CPU time, memory,
//! threads and context switches. Used by the benchmark's sampler and by the
//! servers' contract tests.
//!
//! A process that exits while the tree is read is skipped: that is the tree
//! changing, not an error. A file that is there but does not parse is an
//! error ([`ProcError::Parse`]), never a silent 0 that would look like a
//! measurement.

use std::fs;
use std::io;
use std::time::{Duration, Instant};

use thiserror::Error;

/// Why a reading failed.
#[derive(Debug, Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("cannot parse {path}: {what}")]
    Parse { path: String, what: String },
}

/// One reading of a whole process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TreeReading {
    /// CPU time (user + system) of every process of the tree, plus the
    /// root's reaped children, in seconds, exact: each process's own CPU
    /// clock (nanoseconds, [`process_cpu_secs`]) rather than its tick-rounded
    /// utime + stime, which reads 0 for each of a hundred children that used
    /// less than a tick apiece. The reaped children's part (the root's cutime
    /// + cstime) has tick resolution: one tick of error per reading at most.
    pub cpu_secs: f64,
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

/// The fields of `/proc/<pid>/stat` the readings use, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `D`, `Z`, …
    pub state: char,
    pub utime: u64,
    pub stime: u64,
    /// CPU of reaped children.
    pub cutime: u64,
    pub cstime: u64,
    pub num_threads: u64,
}

/// The fields of `/proc/<pid>/status` the readings use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// `VmRSS`; absent (0) for a zombie.
    pub rss_kib: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

/// Parses `/proc/<pid>/stat`. The command may contain spaces and `)`, so
/// fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Result<Stat, String> {
    let (_, rest) = text.rsplit_once(')').ok_or("no `)` after the command")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // 1-based field numbers from proc(5); fields[0] is field 3 (state).
    let field = |number: usize| -> Result<u64, String> {
        let text = fields.get(number - 3).ok_or_else(|| format!("only {} fields", fields.len() + 2))?;
        text.parse().map_err(|_| format!("field {number} is {text:?}, not a number"))
    };
    let state = fields.first().and_then(|s| s.chars().next()).ok_or("no state field")?;
    Ok(Stat {
        state,
        utime: field(14)?,
        stime: field(15)?,
        cutime: field(16)?,
        cstime: field(17)?,
        num_threads: field(20)?,
    })
}

/// Parses `/proc/<pid>/status`. The context-switch lines must be there;
/// `VmRSS` is absent for zombies and kernel threads.
pub fn parse_status(text: &str) -> Result<Status, String> {
    let mut status = Status::default();
    let mut switches = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let target = match key {
            "VmRSS" => &mut status.rss_kib,
            "voluntary_ctxt_switches" => &mut status.voluntary_switches,
            "nonvoluntary_ctxt_switches" => &mut status.involuntary_switches,
            _ => continue,
        };
        let number = value.split_whitespace().next().unwrap_or("");
        *target = number.parse().map_err(|_| format!("{key} is {value:?}, not a number"))?;
        switches += usize::from(key != "VmRSS");
    }
    if switches != 2 {
        return Err("no context-switch counts".into());
    }
    Ok(status)
}

/// Parses the `Pss:` line of `/proc/<pid>/smaps_rollup`, in KiB.
pub fn parse_smaps_rollup_pss(text: &str) -> Result<u64, String> {
    let line = text.lines().find(|l| l.starts_with("Pss:")).ok_or("no Pss line")?;
    let value = line.split_whitespace().nth(1).ok_or("empty Pss line")?;
    value.parse().map_err(|_| format!("Pss is {value:?}, not a number"))
}

/// Reads `path`; `Ok(None)` if the process is gone (ENOENT, ESRCH).
fn read(path: String) -> Result<Option<(String, String)>, ProcError> {
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some((path, text))),
        Err(err) if err.kind() == io::ErrorKind::NotFound || err.raw_os_error() == Some(nix::libc::ESRCH) => Ok(None),
        Err(source) => Err(ProcError::Io { path, source }),
    }
}

fn parsed<T>(path: &str, result: Result<T, String>) -> Result<T, ProcError> {
    result.map_err(|what| ProcError::Parse { path: path.to_owned(), what })
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

/// The distinct sockets (inode numbers) open in the process tree rooted at
/// `root`: what the tree holds, not what the kernel queues for it (a
/// connection waiting in a listener's backlog is in no file table).
pub fn socket_inodes(root: i32) -> std::collections::BTreeSet<u64> {
    let mut inodes = std::collections::BTreeSet::new();
    for pid in tree(root) {
        for entry in fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten() {
            let Ok(target) = fs::read_link(entry.path()) else { continue };
            let target = target.to_string_lossy();
            if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
                inodes.extend(inode.parse::<u64>().ok());
            }
        }
    }
    inodes
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_sec() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as f64,
        _ => 100.0, // the value on every Linux configuration in use
    }
}

/// A reading and the instant its CPU figures stand for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timed {
    pub reading: TreeReading,
    /// The middle of the CPU pass: the figures a window's CPU is made of
    /// are read one process after another, in a tight loop of their own.
    pub at: Instant,
    /// How long that pass took, from the first process's CPU to the
    /// last's: a process's CPU was read within half of it of `at`.
    pub cpu_pass: Duration,
}

/// Reads the tree rooted at `root`; PSS too if `with_pss` (smaps_rollup is
/// the expensive file). `Ok(None)`: the root is gone.
pub fn read_tree(root: i32, with_pss: bool) -> Result<Option<TreeReading>, ProcError> {
    Ok(read_tree_timed(root, with_pss)?.map(|timed| timed.reading))
}

/// [`read_tree`], with the instant its CPU figures stand for.
pub fn read_tree_timed(root: i32, with_pss: bool) -> Result<Option<Timed>, ProcError> {
    read_members(root, tree(root), with_pss)
}

/// Reads `root` alone, as [`read_tree_timed`] reads a tree: for a process
/// known to start no children. Finding the children costs a read of
/// `/proc/<pid>/task/<tid>/children` per thread — about a millisecond for a
/// server of 100 threads — taken from whatever shares the reader's CPU.
pub fn read_process_timed(root: i32, with_pss: bool) -> Result<Option<Timed>, ProcError> {
    read_members(root, vec![root], with_pss)
}

/// Sums the readings of `pids` (`root` first among them; it is read last):
/// their CPU first, every process in one tight pass (a stat and a clock
/// each), then their memory and context switches, so that the time the
/// memory files take does not spread the CPU figures apart. The pass can
/// still be preempted (on a CPU the server keeps busy with 100 processes,
/// a turn can take a hundred milliseconds): its length is returned. The
/// root gone before its memory was read is the root gone: `Ok(None)`.
fn read_members(root: i32, mut pids: Vec<i32>, with_pss: bool) -> Result<Option<Timed>, ProcError> {
    let hz = ticks_per_sec();
    let mut reading = TreeReading { pss_kib: with_pss.then_some(0), ..TreeReading::default() };
    let mut root_seen = false;
    // The root last: a child reaped while the tree is read is then counted
    // live or in the root's cutime (or, between the two, in both: at most
    // that child's CPU over), never in neither.
    pids.rotate_left(1);
    let mut seen = Vec::with_capacity(pids.len());
    let began = Instant::now();
    for pid in pids {
        let Some((path, text)) = read(format!("/proc/{pid}/stat"))? else { continue };
        let stat = parsed(&path, parse_stat(&text))?;
        reading.user_secs += stat.utime as f64 / hz;
        reading.sys_secs += stat.stime as f64 / hz;
        // The exact clock; the tick-rounded figure if the process went in between.
        reading.cpu_secs += process_cpu_secs(pid).unwrap_or((stat.utime + stat.stime) as f64 / hz);
        if pid == root {
            root_seen = true;
            // CPU of children already reaped (the `process` model's finished connections).
            reading.user_secs += stat.cutime as f64 / hz;
            reading.sys_secs += stat.cstime as f64 / hz;
            reading.cpu_secs += (stat.cutime + stat.cstime) as f64 / hz;
        }
        reading.threads += stat.num_threads;
        reading.processes += 1;
        seen.push((pid, stat.state));
    }
    let cpu_pass = began.elapsed();
    if !root_seen {
        return Ok(None);
    }
    for (pid, state) in seen {
        match read(format!("/proc/{pid}/status"))? {
            Some((path, text)) => {
                let status = parsed(&path, parse_status(&text))?;
                reading.rss_kib += status.rss_kib;
                reading.voluntary_switches += status.voluntary_switches;
                reading.involuntary_switches += status.involuntary_switches;
            }
            None if pid == root => return Ok(None),
            None => {}
        }
        if let Some(pss) = reading.pss_kib.as_mut() {
            // A zombie has an empty smaps_rollup: it holds no memory.
            if let Some((path, text)) = read(format!("/proc/{pid}/smaps_rollup"))? {
                if state != 'Z' && !text.is_empty() {
                    *pss += parsed(&path, parse_smaps_rollup_pss(&text))?;
                }
            }
        }
    }
    Ok(Some(Timed { reading, at: began + cpu_pass / 2, cpu_pass }))
}

/// The CPU time (user + system, all threads) `pid` has used so far, in
/// seconds, from its process CPU clock (`clock_getcpuclockid`): exact, where
/// `/proc/<pid>/stat` rounds down to clock ticks. Any process's clock may be
/// read; a zombie's still holds its total until it is reaped. `None` if
/// the process is gone.
pub fn process_cpu_secs(pid: i32) -> Option<f64> {
    use nix::sys::time::TimeValLike;
    let clock = nix::time::clock_getcpuclockid(nix::unistd::Pid::from_raw(pid)).ok()?;
    let now = nix::time::clock_gettime(clock).ok()?;
    Some(now.num_nanoseconds() as f64 * 1e-9)
}

/// Is `pid` alive (and not a zombie)?
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => parse_stat(&text).is_ok_and(|stat| stat.state != 'Z'),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded from a running echo-server on Linux 6.18 (the command holds a
    // space and a parenthesis, as a thread name may).
    const STAT: &str = "4242 (echo (srv) x) S 4200 4242 4200 34816 4242 4194560 1544 0 0 0 \
        731 292 15 4 20 0 3 0 1234567 231563264 2071 18446744073709551615 1 1 0 0 0 0 0 4096 17987 \
        0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
    const STATUS: &str = "Name:\techo-server\nState:\tS (sleeping)\nVmPeak:\t  226136 kB\n\
        VmRSS:\t    8284 kB\nThreads:\t3\nvoluntary_ctxt_switches:\t1203\nnonvoluntary_ctxt_switches:\t17\n";
    const ZOMBIE_STATUS: &str = "Name:\techo-server\nState:\tZ (zombie)\nThreads:\t1\n\
        voluntary_ctxt_switches:\t4\nnonvoluntary_ctxt_switches:\t0\n";
    const ROLLUP: &str = "55d1c0a00000-7ffd8c5fe000 ---p 00000000 00:00 0                          [rollup]\n\
        Rss:                8284 kB\nPss:                6120 kB\nPss_Dirty:          5000 kB\n";

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let stat = parse_stat(STAT).unwrap();
        assert_eq!(stat, Stat { state: 'S', utime: 731, stime: 292, cutime: 15, cstime: 4, num_threads: 3 });
    }

    #[test]
    fn status_and_rollup() {
        assert_eq!(
            parse_status(STATUS).unwrap(),
            Status { rss_kib: 8284, voluntary_switches: 1203, involuntary_switches: 17 }
        );
        assert_eq!(parse_status(ZOMBIE_STATUS).unwrap().rss_kib, 0);
        assert_eq!(parse_smaps_rollup_pss(ROLLUP).unwrap(), 6120);
    }

    #[test]
    fn garbage_is_an_error_not_a_zero() {
        assert!(parse_stat("4242 (cut short) S 1 2").is_err());
        assert!(parse_stat("no parenthesis at all").is_err());
        assert!(parse_stat(&STAT.replace(" 731 ", " x731 ")).is_err());
        assert!(parse_status("Name:\tx\nVmRSS:\tlots kB\n").is_err());
        assert!(parse_status("Name:\tx\n").is_err());
        assert!(parse_smaps_rollup_pss("Rss: 1 kB\n").is_err());
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        let reading = read_tree(me, true).unwrap().expect("this process is alive");
        assert!(reading.rss_kib > 0 && reading.pss_kib.is_some_and(|p| p > 0));
        assert!(reading.threads >= 1 && reading.processes >= 1);
        assert!(reading.cpu_secs > 0.0 && process_cpu_secs(me).is_some_and(|s| s > 0.0));
        assert!(alive(me));
        assert!(read_tree(i32::MAX, false).unwrap().is_none(), "no such process");
    }
}
