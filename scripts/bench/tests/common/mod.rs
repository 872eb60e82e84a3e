//! Helpers the bench's integration tests share: the binaries beside the
//! bench's, a run's folder, and whether this machine can make network
//! namespaces. (Each test target uses some of them.)
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use echo_bench::hosts::netns::Topology;

/// The bench binary under test.
pub const BENCH: &str = env!("CARGO_BIN_EXE_bench");

/// The workspace binary `name` built beside the bench (`echo-server`, `loadgen`).
pub fn sibling(name: &str) -> PathBuf {
    let path = Path::new(BENCH).with_file_name(name);
    assert!(path.is_file(), "{} missing: run the workspace tests (cargo test --workspace)", path.display());
    path
}

/// The echo server binary.
pub fn server_bin() -> PathBuf {
    sibling("echo-server")
}

/// `bench` with the echo server and the results folder `results`, without
/// the control cell (the tests count the matrix's cells).
pub fn bench(results: &Path) -> Command {
    let mut command = Command::new(BENCH);
    command.args(["--control", "none"]);
    command.arg("--server-bin").arg(server_bin()).arg("--results").arg(results);
    command
}

/// Waits (bounded) for the bench `child` to exit: killed and reaped, and
/// the test failed, if it is still running after `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bench still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The one run folder under `root`.
pub fn run_dir(root: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(dirs.len(), 1, "one run folder expected in {}", root.display());
    dirs.pop().unwrap()
}

/// Says `line` on the test's stderr even when the harness captures output
/// (it captures `eprintln!`, not writes to the stream): a skipped check is
/// never silent.
pub fn unavailable(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Why this machine cannot make network namespaces, or `None` if it can:
/// only `ip` missing or a refusal (not root, no CAP_NET_ADMIN) counts. Any
/// other failure to make one is the bench's, and fails the test.
pub fn netns_unavailable() -> Option<String> {
    const REFUSALS: [&str; 3] = ["is not installed", "Operation not permitted", "Permission denied"];
    match Topology::new(0, false) {
        Ok(_) => None,
        Err(err) if REFUSALS.iter().any(|w| err.contains(w)) => Some(err),
        Err(err) => panic!("network namespaces are allowed here, yet: {err}"),
    }
}
