//! The bench over several loadgen agents (`--load-hosts`): a tiny run with
//! two agents on this host, and the refusal of a bad value.

use std::path::{Path, PathBuf};
use std::process::Command;

use echo_bench::results::Results;

const BENCH: &str = env!("CARGO_BIN_EXE_bench");

fn sibling(name: &str) -> PathBuf {
    let path = Path::new(BENCH).with_file_name(name);
    assert!(path.is_file(), "{} missing: build the workspace first (cargo build)", path.display());
    path
}

#[test]
fn two_local_agents_make_one_cell_whose_totals_are_the_sum_of_theirs() {
    let root = tempfile::tempdir().unwrap();
    let output = Command::new(BENCH)
        .arg("--server-bin")
        .arg(sibling("echo-server"))
        .arg("--loadgen-bin")
        .arg(sibling("loadgen"))
        .arg("--results")
        .arg(root.path())
        .args(["--models", "thread", "--scenarios", "throughput", "--transports", "tcp"])
        .args(["--connections", "5", "--sizes", "64", "--repeat", "1"])
        .args(["--duration", "1s", "--warmup", "0.2s", "--no-progress", "--load-hosts", "local:2"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "bench failed: {stdout}\n{stderr}");
    let dir = std::fs::read_dir(root.path()).unwrap().flatten().next().unwrap().path();
    let results = Results::load(&dir.join("results.json")).unwrap();
    assert!(!results.cells.is_empty());
    for cell in &results.cells {
        assert!(cell.ok, "{:?}", cell.failure);
        assert_eq!(cell.spec.load.agents, 2, "the load key counts the agents");
        assert_eq!(cell.agents.len(), 2, "each agent's report is kept");
        let coordination = cell.coordination.as_ref().expect("how the agents were coordinated");
        assert_eq!(coordination.hosts, "local:2");
        assert_eq!(results.settings.load_hosts.as_deref(), Some("local:2"));
        let merged = cell.loadgen.as_ref().unwrap();
        let sum = |f: &dyn Fn(&loadgen::Report) -> u64| cell.agents.iter().map(|a| f(&a.report)).sum::<u64>();
        assert!(merged.requests.ok > 0);
        assert_eq!(merged.requests.ok, sum(&|r| r.requests.ok), "totals are the sum of the agents'");
        assert_eq!(merged.latency_us.count, sum(&|r| r.latency_us.count), "histograms added exactly");
        assert_eq!(merged.connections.established, sum(&|r| r.connections.established));
        assert_eq!(merged.config.connections, 5);
        let mut shares: Vec<u32> = cell.agents.iter().map(|a| a.report.config.connections).collect();
        shares.sort_unstable();
        assert_eq!(shares, [2, 3], "the connections are divided between the agents");
        assert!(cell.server_cpu_us_per_msg.is_some(), "the server's CPU was read at the window's marks");
    }
}

#[test]
fn a_bad_load_hosts_value_is_one_line_and_exit_2() {
    for bad in ["local:0", "lan:2", "local"] {
        let output = Command::new(BENCH).args(["--load-hosts", bad]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("--load-hosts"), "{stderr}");
    }
}
