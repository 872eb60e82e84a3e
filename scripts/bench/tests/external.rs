//! `--load-hosts external:N`: agents the bench does not start. The test
//! plays the pods of scripts/k8s/loadgen-agents.yaml: each is a loop that
//! runs `loadgen agent --index I`, which dials the bench, serves a cell,
//! exits, and dials again. Everything on 127.0.0.1, port 0.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

mod common;

use common::{bench, run_dir, sibling, wait_exit};
use echo_bench::results::Results;

/// A pod: `loadgen agent --coordinator ADDR --index I --name pod-I`, run
/// again each time it exits, until dropped (the running agent killed).
struct Pod {
    stop: Arc<AtomicBool>,
    agent: Arc<Mutex<Option<Child>>>,
    looping: Option<JoinHandle<()>>,
}

impl Pod {
    /// Starts the loop; returns once its first agent has connected (its
    /// first line on stdout), so that pods started in turn come in that order.
    fn start(coordinator: &str, index: u32) -> Pod {
        let (stop, agent) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(None::<Child>)));
        let (said, lines) = mpsc::channel();
        let args = ["agent", "--coordinator", coordinator, "--index", &index.to_string(), "--name"]
            .map(str::to_owned)
            .into_iter()
            .chain([format!("pod-{index}")])
            .collect::<Vec<_>>();
        let (stopped, running) = (Arc::clone(&stop), Arc::clone(&agent));
        let looping = thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                {
                    // Spawned under the lock: a drop in between finds it and kills it.
                    let mut slot = running.lock().unwrap();
                    if stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    let mut child = Command::new(sibling("loadgen"))
                        .args(&args)
                        .env_remove("JOB_COMPLETION_INDEX")
                        .stdout(Stdio::piped())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap();
                    forward(child.stdout.take().unwrap(), said.clone());
                    *slot = Some(child);
                }
                // Its end, looked at without holding the lock for long.
                while running.lock().unwrap().as_mut().is_some_and(|c| c.try_wait().unwrap().is_none()) {
                    thread::sleep(Duration::from_millis(20));
                }
                // As the manifest's loop: a pause before dialling again.
                thread::sleep(Duration::from_millis(100));
            }
        });
        // Made first: a failed wait below still stops the loop.
        let pod = Pod { stop, agent, looping: Some(looping) };
        let line = lines.recv_timeout(Duration::from_secs(15)).expect("the agent connects");
        assert!(line.contains(&format!("agent {index}: connected")), "{line}");
        pod
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(mut child) = self.agent.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(looping) = self.looping.take() {
            let _ = looping.join();
        }
    }
}

/// The bench under test, killed if the test ends before it did.
struct Bench(Child);

impl Drop for Bench {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A bench with `--load-hosts external:2` listening on 127.0.0.1 (port 0)
/// over `connections`, waiting `wait` per cell; the bench, the address its
/// agents dial (from its one "waiting for" line), and the rest of its stderr.
fn external_bench(root: &std::path::Path, connections: &str, wait: &str) -> (Bench, String, Receiver<String>) {
    let mut child = bench(root)
        .arg("--loadgen-bin")
        .arg(sibling("loadgen"))
        .args(["--models", "thread", "--scenarios", "throughput", "--transports", "tcp"])
        .args(["--connections", connections, "--sizes", "64", "--repeat", "1", "--duration", "0.5s"])
        .args(["--warmup", "0.1s", "--no-progress", "--load-hosts", "external:2"])
        .args(["--coordinator-bind", "127.0.0.1:0", "--agent-wait", wait])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (said, lines) = mpsc::channel();
    forward(child.stderr.take().unwrap(), said);
    let child = Bench(child);
    // Other lines (a warning) may come first.
    let waiting = loop {
        let line = lines.recv_timeout(Duration::from_secs(60)).expect("the bench says where it waits");
        if line.contains("waiting for 2 agents at ") {
            break line;
        }
    };
    let addr = waiting.split(" at ").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap();
    (child, addr.to_owned(), lines)
}

/// The lines `output` says, each sent on `said` (by a thread of its own, until it closes).
fn forward(output: impl Read + Send + 'static, said: Sender<String>) {
    thread::spawn(move || BufReader::new(output).lines().map_while(Result::ok).for_each(|l| drop(said.send(l))));
}

/// Two pods, index 1 first: every cell is valid, its totals the sum of its
/// agents', each agent in the part of its index. A 1-connection cell has
/// one part: index 1 is told it has none, and serves the next cell.
#[test]
fn agents_started_elsewhere_serve_every_cell_by_their_index() {
    let root = tempfile::tempdir().unwrap();
    let (mut child, addr, stderr) = external_bench(root.path(), "1,5", "30s");
    let pods = [Pod::start(&addr, 1), Pod::start(&addr, 0)];
    let status = wait_exit(&mut child.0, Duration::from_secs(120));
    drop(pods);
    assert!(status.success(), "bench: {status}");
    // Its stderr closed with it: the rest of what it said, no second "waiting for" line.
    let rest: Vec<String> = std::iter::from_fn(|| stderr.recv_timeout(Duration::from_secs(5)).ok()).collect();
    assert!(!rest.iter().any(|l| l.contains("waiting for")), "one line per run: {rest:?}");
    let results = Results::load(&run_dir(root.path()).join("results.json")).unwrap();
    assert_eq!(results.settings.load_hosts.as_deref(), Some("external:2"));
    assert_eq!(results.cells.len(), 2);
    for cell in &results.cells {
        assert!(cell.ok, "{:?}", cell.failure);
        let expected: &[(u32, &str, u32)] =
            if cell.spec.load.connections == 1 { &[(0, "pod-0", 1)] } else { &[(0, "pod-0", 3), (1, "pod-1", 2)] };
        let agents: Vec<(u32, &str, u32)> =
            cell.agents.iter().map(|a| (a.index, a.name.as_str(), a.report.config.connections)).collect();
        assert_eq!(agents, expected, "part i, its share of the connections, to index i");
        let merged = cell.loadgen.as_ref().unwrap();
        let sum = |f: &dyn Fn(&loadgen::Report) -> u64| cell.agents.iter().map(|a| f(&a.report)).sum::<u64>();
        assert!(merged.requests.ok > 0);
        assert_eq!(merged.requests.ok, sum(&|r| r.requests.ok), "totals are the sum of the agents'");
        assert_eq!(merged.latency_us.count, sum(&|r| r.latency_us.count), "histograms added exactly");
        assert_eq!(cell.coordination.as_ref().unwrap().hosts, "external:2");
    }
}

/// Only index 0 comes: the cell is invalid once the wait is over, the
/// missing index named, and no partial sum is kept.
#[test]
fn a_missing_agent_makes_the_cell_invalid_within_the_wait_naming_its_index() {
    let root = tempfile::tempdir().unwrap();
    let (mut child, addr, _stderr) = external_bench(root.path(), "2", "2s");
    let started = Instant::now();
    let pod = Pod::start(&addr, 0);
    let status = wait_exit(&mut child.0, Duration::from_secs(60));
    let took = started.elapsed();
    drop(pod);
    assert_eq!(status.code(), Some(1), "a failed cell");
    let results = Results::load(&run_dir(root.path()).join("results.json")).unwrap();
    let cell = &results.cells[0];
    let failure = cell.failure.as_deref().unwrap_or_default();
    assert!(!cell.ok && failure.contains("no agent with index 1 dialled in within 2s"), "{failure}");
    assert!(cell.agents.is_empty() && cell.loadgen.is_none(), "no partial sum");
    assert!(took < Duration::from_secs(30), "bounded by the wait: {took:?}");
}

/// Bad usage, one line and exit 2: external:N without the address its
/// agents dial, or a wildcard one; --coordinator-bind for another launcher.
#[test]
fn external_hosts_need_an_address_to_be_dialled_at() {
    let root = tempfile::tempdir().unwrap();
    for (args, says) in [
        (&["--load-hosts", "external:2"][..], "needs --coordinator-bind"),
        (&["--load-hosts", "external:2", "--coordinator-bind", "0.0.0.0:0"][..], "not a wildcard"),
        (&["--load-hosts", "local:2", "--coordinator-bind", "127.0.0.1:0"][..], "are for --load-hosts external:N"),
    ] {
        let output = bench(root.path()).arg("--loadgen-bin").arg(sibling("loadgen")).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.trim_end().lines().count() == 1 && stderr.contains(says), "{args:?}: {stderr}");
    }
}
