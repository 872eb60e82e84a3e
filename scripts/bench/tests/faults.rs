//! The runner's answers to a new user's mistakes and to signals: bad CPU
//! sets and zero durations refused before anything runs; Ctrl-C writes the
//! report of the finished cells and exits 130, a second one at once.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{bench, wait_exit};
use echo_bench::results::Results;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The CPUs this test may use.
fn cpus() -> Vec<usize> {
    let set = nix::sched::sched_getaffinity(Pid::from_raw(0)).unwrap();
    (0..nix::sched::CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).collect()
}

#[test]
fn cpu_sets_outside_the_machine_are_refused_before_anything_runs() {
    let root = tempfile::tempdir().unwrap();
    let absent = cpus().last().unwrap() + 1000;
    for (flag, value) in [("--server-cpus", absent.to_string()), ("--client-cpus", format!("0,{absent}"))] {
        let output = bench(root.path()).args([flag, &value]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(&format!("{flag} {value}: no CPU {absent} here; this process may use CPU(s) ")),
            "{stderr}"
        );
    }
    let output = bench(root.path()).args(["--client-cpus", "one"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--client-cpus one: not a CPU list"));
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0, "nothing ran");
}

#[test]
fn a_server_and_client_sharing_a_cpu_is_warned_about() {
    let root = tempfile::tempdir().unwrap();
    let cpu = cpus()[0].to_string();
    let output = bench(root.path())
        .args(["--server-cpus", &cpu, "--client-cpus", &cpu, "--models", "tokio", "--scenarios", "churn"])
        .args(["--repeat", "1", "--duration", "0.2s", "--warmup", "0s", "--no-progress"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("warning: the server and the load generator share CPU(s) {cpu}")), "{stderr}");
}

#[test]
fn zero_durations_and_rates_are_refused() {
    let root = tempfile::tempdir().unwrap();
    for args in [
        &["--duration", "0s"][..],
        &["--duration", "0"],
        &["--warmup", "-1s"],
        &["--slo-p99", "0ms"],
        &["--rates", "0"],
        &["--rates", "10k,-5"],
    ] {
        let output = bench(root.path()).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0, "nothing ran");
}

/// A bench run of a few 1 s cells, started with SIGINT *ignored* (as from a
/// script or `nohup`): the runner must install its own handlers.
fn start_with_sigint_ignored(results: &Path, duration: &str) -> Child {
    let mut command = bench(results);
    command
        .args(["--models", "tokio", "--scenarios", "throughput", "--connections", "1,10,100"])
        .args(["--sizes", "64", "--repeat", "2", "--duration", duration, "--warmup", "0.1s", "--no-progress"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: signal() is async-signal-safe; nothing else runs in the child
    // between fork and exec.
    unsafe {
        command.pre_exec(|| {
            nix::sys::signal::signal(Signal::SIGINT, nix::sys::signal::SigHandler::SigIgn)?;
            Ok(())
        });
    }
    command.spawn().unwrap()
}

/// Waits (bounded) until the run's results.json exists and holds `cells` cells.
fn wait_for_cells(root: &Path, cells: usize) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "fewer than {cells} finished cell(s) within 60 s");
        if let Some(dir) = std::fs::read_dir(root).unwrap().flatten().next() {
            if Results::load(&dir.path().join("results.json")).is_ok_and(|r| r.cells.len() >= cells) {
                return dir.path();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigint_stops_the_cell_under_way_and_writes_the_report() {
    let root = tempfile::tempdir().unwrap();
    // 4 s windows: a cell that ran its course after the signal would take
    // seconds; the one under way must be stopped instead.
    let mut child = start_with_sigint_ignored(root.path(), "4s");
    let dir = wait_for_cells(root.path(), 1);
    // The second cell is under way once its server is up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tree = echo_bench::procfs::tree(child.id() as i32);
    while tree.len() < 2 {
        assert!(Instant::now() < deadline, "no server started for the second cell");
        std::thread::sleep(Duration::from_millis(20));
        tree = echo_bench::procfs::tree(child.id() as i32);
    }
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(130));
    assert!(signalled.elapsed() < Duration::from_millis(3500), "the cell ran on: {:?}", signalled.elapsed());
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(stdout.contains("interrupted"), "{stdout}");

    let results = Results::load(&dir.join("results.json")).expect("results.json parses");
    assert!(!results.complete);
    assert_eq!(results.cells.len(), 1, "the finished cell only: the one under way is dropped");
    assert!(results.cells.iter().all(|c| c.ok));
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("the README is written");
    assert!(readme.contains("This run was interrupted"), "{readme}");
    assert!(dir.join("throughput-64B.svg").is_file(), "the charts are written");
    // The server of the cell under way was stopped, not left behind.
    assert!(tree.iter().skip(1).all(|&pid| !echo_bench::procfs::alive(pid)), "a server outlived the run");
    // and neither were its cgroups (the throughput servers run under a quota where cgroups exist).
    let name = format!("echo-arena-bench-{}", child.id());
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"] {
        assert!(!Path::new(root).join(&name).exists(), "{root}/{name} left behind");
    }
}

#[test]
fn a_second_signal_exits_at_once() {
    let root = tempfile::tempdir().unwrap();
    // 5 s windows: finishing the cell under way would take seconds.
    let mut child = start_with_sigint_ignored(root.path(), "5s");
    let deadline = Instant::now() + Duration::from_secs(20);
    // The first cell is under way once its server is up.
    while echo_bench::procfs::tree(child.id() as i32).len() < 2 {
        assert!(Instant::now() < deadline, "no server started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let pid = Pid::from_raw(child.id() as i32);
    let tree = echo_bench::procfs::tree(child.id() as i32);
    kill(pid, Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let signalled = Instant::now();
    kill(pid, Signal::SIGINT).unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(130));
    assert!(signalled.elapsed() < Duration::from_secs(2), "took {:?}", signalled.elapsed());
    // Its server goes with it (parent-death signal).
    let deadline = Instant::now() + Duration::from_secs(5);
    while tree.iter().skip(1).any(|&p| echo_bench::procfs::alive(p)) {
        assert!(Instant::now() < deadline, "a server outlived the runner");
        std::thread::sleep(Duration::from_millis(20));
    }
}
