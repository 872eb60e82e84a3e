//! The bench over several loadgen agents (`--load-hosts`): a tiny run with
//! two agents on this host, an agent killed during the window, the
//! refusal of a bad value, and the coordinator's fixed port.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;

use common::{BENCH, sibling};
use echo_bench::hosts::{AgentProcess, Launcher};
use echo_bench::results::Results;
use loadgen::Opts;

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
        .args(["--connections", "1,5", "--sizes", "64", "--repeat", "1"])
        .args(["--duration", "1s", "--warmup", "0.2s", "--no-progress", "--load-hosts", "local:2", "--control", "none"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "bench failed: {stdout}\n{stderr}");
    let dir = std::fs::read_dir(root.path()).unwrap().flatten().next().unwrap().path();
    let results = Results::load(&dir.join("results.json")).unwrap();
    assert_eq!(results.cells.len(), 2, "a 1-connection and a 5-connection cell");
    for cell in &results.cells {
        assert!(cell.ok, "{:?}", cell.failure);
        // One connection is one agent's: the other is not started.
        let agents = cell.spec.load.connections.min(2);
        assert_eq!(cell.spec.load.agents, agents, "the load key counts the agents that ran");
        assert_eq!(cell.agents.len(), agents as usize, "each agent's report is kept");
        let coordination = cell.coordination.as_ref().expect("how the agents were coordinated");
        assert_eq!(coordination.hosts, "local:2");
        assert_eq!(results.settings.load_hosts.as_deref(), Some("local:2"));
        let merged = cell.loadgen.as_ref().unwrap();
        let sum = |f: &dyn Fn(&loadgen::Report) -> u64| cell.agents.iter().map(|a| f(&a.report)).sum::<u64>();
        assert!(merged.requests.ok > 0);
        assert_eq!(merged.requests.ok, sum(&|r| r.requests.ok), "totals are the sum of the agents'");
        assert_eq!(merged.latency_us.count, sum(&|r| r.latency_us.count), "histograms added exactly");
        assert_eq!(merged.connections.established, sum(&|r| r.connections.established));
        assert_eq!(merged.config.connections, cell.spec.load.connections);
        let mut shares: Vec<u32> = cell.agents.iter().map(|a| a.report.config.connections).collect();
        shares.sort_unstable();
        let expected: &[u32] = if cell.spec.load.connections == 5 { &[2, 3] } else { &[1] };
        assert_eq!(shares, expected, "the connections are divided between the agents");
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

#[test]
fn the_coordinator_listens_on_the_port_given_and_the_port_needs_load_hosts() {
    // The port taken: a bench that uses it cannot listen there, and says so in the cell.
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let root = tempfile::tempdir().unwrap();
    let output = Command::new(BENCH)
        .arg("--server-bin")
        .arg(sibling("echo-server"))
        .arg("--loadgen-bin")
        .arg(sibling("loadgen"))
        .arg("--results")
        .arg(root.path())
        .args(["--models", "thread", "--scenarios", "throughput", "--transports", "tcp"])
        .args(["--connections", "2", "--sizes", "64", "--repeat", "1", "--duration", "0.2s", "--warmup", "0s"])
        .args(["--no-progress", "--load-hosts", "local:1", "--coordinator-port", &port])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "a failed cell: {}", String::from_utf8_lossy(&output.stderr));
    let dir = std::fs::read_dir(root.path()).unwrap().flatten().next().unwrap().path();
    let results = Results::load(&dir.join("results.json")).unwrap();
    let failure = results.cells[0].failure.as_deref().unwrap_or_default();
    assert!(failure.contains(&format!("cannot listen for agents on 127.0.0.1:{port}")), "{failure}");
    drop(taken);
    // Without --load-hosts there is no coordinator: bad usage, nothing run.
    let output = Command::new(BENCH).args(["--coordinator-port", "7070"]).arg("--results").arg(root.path()).output();
    let output = output.unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.trim_end().lines().count() == 1 && stderr.contains("--coordinator-port"), "{stderr}");
}

/// Agents on this host, the second of which is killed (SIGKILL) `after`
/// its start: a launcher that fails on purpose.
struct OneKilled {
    after: &'static str,
    /// The coordinator's address, as the agents were given it.
    coordinator: Mutex<Option<String>>,
}

impl Launcher for OneKilled {
    fn describe(&self) -> String {
        "local:2 (one killed)".into()
    }
    fn agents(&self) -> usize {
        2
    }
    fn coordinator_ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
    fn server_ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
    fn spawn(&self, index: usize, loadgen: &Path, args: &[OsString]) -> Result<Option<AgentProcess>, String> {
        let at = args.iter().position(|a| a == "--coordinator").and_then(|i| args.get(i + 1));
        *self.coordinator.lock().unwrap() = at.and_then(|a| a.to_str()).map(str::to_owned);
        let mut command = if index == 1 {
            // The shell starts the agent, waits, kills it, and waits for it.
            let mut c = Command::new("sh");
            c.arg("-c").arg(format!("\"$0\" \"$@\" & pid=$!; sleep {}; kill -9 $pid; wait $pid", self.after));
            c.arg(loadgen).args(args);
            c
        } else {
            let mut c = Command::new(loadgen);
            c.args(args);
            c
        };
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().map_err(|e| e.to_string())?;
        Ok(Some(AgentProcess { child, host: format!("test-{index}") }))
    }
}

/// An echo server on 127.0.0.1:0, a thread per connection; lives as long as the test.
fn echo() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// An agent killed during the window fails the run with the agent named,
/// at once; the run returns with every agent process gone.
#[test]
fn an_agent_killed_during_the_window_fails_the_cell_with_its_name() {
    let opts = Opts {
        addr: echo(),
        connections: 4,
        duration: Duration::from_secs(3),
        warmup: Duration::from_millis(200),
        rate: Some(1_000.0),
        threads: Some(1),
        progress: false,
        ..Opts::default()
    };
    let started = Instant::now();
    let mut marks = Vec::new();
    let launcher = OneKilled { after: "1.2", coordinator: Mutex::new(None) };
    let err =
        echo_bench::agents::run(&launcher, &sibling("loadgen"), &opts, &|| false, |mark| marks.push(mark)).unwrap_err();
    assert!(err.starts_with("agent 1 (agent-1) closed the control channel"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "failed at once, not at the window's end");
    assert!(marks.len() <= 1, "the window never closed: {marks:?}");
    // No process is left that was told this run's coordinator address.
    let coordinator = launcher.coordinator.lock().unwrap().clone().unwrap();
    let left: Vec<_> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let alive = std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| !s.contains(") Z "));
            alive && cmdline.split(|b| *b == 0).any(|arg| arg == coordinator.as_bytes())
        })
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "processes left: {left:?}");
}
