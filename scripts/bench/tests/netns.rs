//! Network namespaces end to end: a topology made and removed leaves
//! nothing; the netns launcher's processes reach the bridge; a bench run
//! over `--link veth` measures across it; a leg taken down mid-cell fails
//! the cell with its name; Ctrl-C leaves no namespace, link or process;
//! bad values are refused; `--load-hosts netns:N` runs agents in
//! namespaces of their own (with `--link veth`, in the server's topology),
//! an agent's leg taken down fails its cell, and Ctrl-C leaves none of it.
//! Each test that needs root and `ip netns` says "unavailable here" on
//! stderr where it cannot make namespaces.

use std::ffi::OsString;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{BENCH, bench, netns_unavailable, run_dir, sibling, unavailable, wait_exit};
use echo_bench::hosts::Launcher;
use echo_bench::hosts::netns::{NetnsHosts, Topology};
use echo_bench::results::Results;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Whether this machine lets the tests make namespaces; if not, says so
/// visibly and why.
fn netns_here(test: &str) -> bool {
    match netns_unavailable() {
        None => true,
        Some(why) => {
            unavailable(&format!("{test}: UNAVAILABLE HERE (network namespaces): {why}"));
            false
        }
    }
}

/// `ip` output, for looking at what exists.
fn ip(args: &[&str]) -> String {
    let output = Command::new("ip").args(args).output().expect("ip runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The namespaces and links whose name starts with `tag`.
fn left_with(tag: &str) -> Vec<String> {
    let namespaces = ip(&["netns", "list"]);
    let links = ip(&["-o", "link", "show"]);
    let ns = namespaces.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| n.starts_with(tag));
    let links = links.lines().filter_map(|l| l.split(": ").nth(1)).filter(|n| n.starts_with(tag));
    ns.chain(links).map(str::to_owned).collect()
}

/// A tag prefix no later process of this run shares: `ea<pid>` followed by
/// a letter (a bare prefix would also match `ea<pid>7…`).
fn tags_of(pid: u32) -> Vec<String> {
    let tag = format!("ea{pid}");
    let all: Vec<String> = left_with(&tag);
    all.into_iter().filter(|n| n[tag.len()..].starts_with(|c: char| c.is_ascii_lowercase())).collect()
}

#[test]
fn a_topology_made_and_dropped_leaves_nothing_or_says_unavailable_here() {
    if !netns_here("a_topology_made_and_dropped_leaves_nothing") {
        return;
    }
    let topology = Topology::new(2, true).expect("a topology");
    let tag = topology.tag().to_owned();
    let made = left_with(&tag);
    // 3 namespaces, their 3 root-side legs, the bridge.
    assert_eq!(made.len(), 7, "{made:?}");
    assert!(topology.subnet().starts_with("10.203.") && topology.subnet().ends_with(".0/24"), "{}", topology.subnet());
    let addresses = ip(&["-4", "-o", "addr", "show", "dev", &topology.bridge()]);
    assert!(addresses.contains(&format!("inet {}/24", topology.bridge_ip())), "{addresses}");
    // The subnet is the bridge's alone: nothing else on this host is in it.
    let all = ip(&["-4", "-o", "addr", "show"]);
    let prefix = topology.subnet().trim_end_matches("0/24").to_owned();
    assert_eq!(all.lines().filter(|l| l.contains(&format!("inet {prefix}"))).count(), 1, "{all}");
    drop(topology);
    assert_eq!(left_with(&tag), Vec::<String>::new(), "left after drop");
}

#[test]
fn netns_agents_reach_the_coordinator_address_over_the_bridge_or_say_unavailable_here() {
    if !netns_here("netns_agents_reach_the_coordinator_address_over_the_bridge") {
        return;
    }
    let hosts = NetnsHosts::new(2).expect("two agent namespaces");
    assert_eq!((hosts.describe().as_str(), hosts.agents()), ("netns:2", 2));
    let listener = TcpListener::bind((hosts.coordinator_ip(), 0)).expect("bind the bridge address");
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    // Until the coordinator lands: a trivial process in each namespace
    // dials the bridge address and says which agent it is.
    let mut agents = Vec::new();
    for i in 0..2 {
        let script = format!("exec 3<>/dev/tcp/{}/{port} && echo agent{i} >&3", hosts.coordinator_ip());
        let args: Vec<OsString> = ["-c", &script].iter().map(OsString::from).collect();
        agents.push(hosts.spawn(i, Path::new("/bin/bash"), &args).expect("spawned"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut heard = Vec::new();
    while heard.len() < 2 {
        assert!(Instant::now() < deadline, "heard only {heard:?} within 10 s");
        match listener.accept() {
            Ok((mut stream, peer)) => {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut said = String::new();
                stream.read_to_string(&mut said).unwrap();
                heard.push((said.trim().to_owned(), peer.ip()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("accept: {e}"),
        }
    }
    heard.sort();
    let expected: Vec<(String, std::net::IpAddr)> =
        hosts.topology().agents().iter().enumerate().map(|(i, ns)| (format!("agent{i}"), ns.ip.into())).collect();
    assert_eq!(heard, expected, "each agent from its own namespace's address");
    let tag = hosts.topology().tag().to_owned();
    drop(agents);
    drop(hosts);
    assert_eq!(left_with(&tag), Vec::<String>::new());
}

/// `bench` over `--link veth` on one model, TCP, short windows.
fn bench_veth(results: &Path, connections: &str, duration: &str, repeat: &str) -> Command {
    let mut command = bench_on(results, connections, duration, repeat);
    command.args(["--link", "veth"]);
    command
}

/// `bench` on one model, TCP, short windows, its link not given yet.
fn bench_on(results: &Path, connections: &str, duration: &str, repeat: &str) -> Command {
    let mut command = bench(results);
    command
        .arg("--loadgen-bin")
        .arg(sibling("loadgen"))
        .args(["--models", "tokio", "--scenarios", "throughput", "--sizes", "64"])
        .args(["--connections", connections, "--repeat", repeat, "--duration", duration, "--warmup", "0.2s"])
        .arg("--no-progress");
    command
}

/// Waits (bounded) until the bench `pid` has its server's leg, `ea<pid>a-s`.
fn wait_for_leg(pid: u32) -> String {
    let leg = format!("ea{pid}a-s");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Path::new(&format!("/sys/class/net/{leg}")).exists() {
        assert!(Instant::now() < deadline, "no {leg} within 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    leg
}

/// Waits (bounded) until the server the bench `pid` started has an
/// established TCP connection (read in its own namespace's table).
fn wait_for_connections(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let server =
            |p: &i32| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "echo-server");
        let established = children(pid).into_iter().filter(server).any(|p| {
            let table = std::fs::read_to_string(format!("/proc/{p}/net/tcp")).unwrap_or_default();
            // The fourth column is the state: 01 is ESTABLISHED.
            table.lines().skip(1).any(|l| l.split_whitespace().nth(3) == Some("01"))
        });
        if established {
            return;
        }
        assert!(Instant::now() < deadline, "no connection to the server within 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The children of `pid` now but the namespaces' guard (a shell).
fn children(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    let guard = |p: &i32| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sh");
    out.retain(|p| !guard(p));
    out
}

#[test]
fn a_veth_cell_measures_across_the_link_and_leaves_nothing_or_says_unavailable_here() {
    if !netns_here("a_veth_cell_measures_across_the_link") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let mut child =
        bench_veth(root.path(), "10", "0.5s", "1").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    let results = Results::load(&run_dir(root.path()).join("results.json")).expect("results");
    assert_eq!(results.cells.len(), 1);
    let cell = &results.cells[0];
    assert_eq!(cell.spec.load.link.to_string(), "veth");
    let rate = cell.loadgen.as_ref().map_or(0.0, |r| r.throughput.requests_per_sec);
    assert!(cell.ok && rate > 0.0, "{:?} at {rate} msg/s", cell.failure);
    assert!(cell.server_cpu_us_per_msg.is_some(), "the server's CPU was sampled");
    assert!(stderr.contains("over veth"), "{stderr}");
    assert_eq!(tags_of(pid), Vec::<String>::new(), "left after the run");
}

#[test]
fn a_leg_taken_down_mid_cell_fails_the_cell_by_name_or_says_unavailable_here() {
    if !netns_here("a_leg_taken_down_mid_cell_fails_the_cell_by_name") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let mut child =
        bench_veth(root.path(), "10", "2s", "1").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let pid = child.id();
    let leg = wait_for_leg(pid);
    // The cell is under way: the load is connected to the server.
    wait_for_connections(pid);
    let down = Command::new("ip").args(["link", "set", &leg, "down"]).status().unwrap();
    assert!(down.success());
    // loadgen's messages time out (5 s), the cell ends, the run reports.
    let status = wait_exit(&mut child, Duration::from_secs(40));
    assert_eq!(status.code(), Some(1), "a failed cell: exit 1");
    let results = Results::load(&run_dir(root.path()).join("results.json")).expect("results");
    let cell = &results.cells[0];
    let failure = cell.failure.as_deref().unwrap_or_default();
    assert!(!cell.ok && failure.contains(&format!("link {leg} went down")), "{failure}");
    assert_eq!(tags_of(pid), Vec::<String>::new(), "left after the run");
}

#[test]
fn sigint_during_a_veth_run_leaves_no_namespace_link_or_process_or_says_unavailable_here() {
    if !netns_here("sigint_during_a_veth_run_leaves_nothing") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let mut child =
        bench_veth(root.path(), "1,10", "2s", "2").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let pid = child.id();
    wait_for_leg(pid);
    // A server and a loadgen running.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut started = children(pid);
    while started.len() < 2 {
        assert!(Instant::now() < deadline, "no server and loadgen under way within 20 s");
        std::thread::sleep(Duration::from_millis(20));
        started = children(pid);
    }
    kill(Pid::from_raw(pid as i32), Signal::SIGINT).unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(130));
    assert_eq!(tags_of(pid), Vec::<String>::new(), "left after SIGINT");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut alive: Vec<i32> = started.clone();
    while !alive.is_empty() && Instant::now() < deadline {
        alive.retain(|p| Path::new(&format!("/proc/{p}")).exists() && !zombie(*p));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(alive, Vec::<i32>::new(), "processes of the run left after SIGINT (of {started:?})");
}

/// Whether `pid` is a zombie (exited, not reaped yet by its new parent).
fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
}

#[test]
fn bad_links_and_a_machine_without_ip_are_refused_with_exit_2() {
    let root = tempfile::tempdir().unwrap();
    let output = Command::new(BENCH)
        .arg("--server-bin")
        .arg(sibling("echo-server"))
        .arg("--results")
        .arg(root.path())
        .args(["--link", "wifi"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.contains("--link") && first.contains("\"wifi\" is not a link"), "{stderr}");
    // No `ip` on the PATH: one line, exit 2, nothing run.
    let output = Command::new(BENCH)
        .arg("--server-bin")
        .arg(sibling("echo-server"))
        .arg("--results")
        .arg(root.path())
        .args(["--link", "veth", "--models", "tokio", "--scenarios", "throughput"])
        .env("PATH", root.path().join("no-such-dir"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("--link veth: ") && stderr.contains("`ip` (iproute2) is not installed here"), "{stderr}");
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0, "nothing ran");
}

#[test]
fn the_sweep_removes_what_dead_benches_left_and_keeps_a_live_ones_or_says_unavailable_here() {
    if !netns_here("the_sweep_removes_what_dead_benches_left") {
        return;
    }
    // A PID that was a process and is no more.
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let dead = format!("ea{}q", gone.id());
    // This test's own PID is alive: its names are not leftovers (the letter
    // `y` is one no topology of this process reaches in these tests).
    let alive = format!("ea{}y", std::process::id());
    for tag in [&dead, &alive] {
        assert!(Command::new("ip").args(["netns", "add", &format!("{tag}-s")]).status().unwrap().success());
        let bridge = format!("{tag}br");
        assert!(Command::new("ip").args(["link", "add", &bridge, "type", "bridge"]).status().unwrap().success());
    }
    // Another test's topology may sweep them first: either way, gone.
    let removed = echo_bench::hosts::netns::sweep();
    assert!(removed.iter().all(|r| !r.contains(&alive)), "{removed:?}");
    assert_eq!(left_with(&dead), Vec::<String>::new());
    let kept = left_with(&alive);
    let _ = Command::new("ip").args(["netns", "del", &format!("{alive}-s")]).status();
    let _ = Command::new("ip").args(["link", "del", &format!("{alive}br")]).status();
    assert_eq!(kept.len(), 2, "a live bench's names are kept: {kept:?}");
    assert_eq!(left_with(&alive), Vec::<String>::new());
}

/// Waits (bounded) until nothing named after the bench `pid` is left.
fn wait_gone(pid: u32, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let left = tags_of(pid);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_bench_that_exits_at_once_or_is_killed_leaves_nothing_or_says_unavailable_here() {
    if !netns_here("a_bench_that_exits_at_once_or_is_killed_leaves_nothing") {
        return;
    }
    for how in ["a second SIGINT", "SIGKILL"] {
        let root = tempfile::tempdir().unwrap();
        let mut child =
            bench_veth(root.path(), "1,10", "2s", "2").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let pid = child.id();
        wait_for_leg(pid);
        let bench = Pid::from_raw(pid as i32);
        let status = if how == "SIGKILL" {
            kill(bench, Signal::SIGKILL).unwrap();
            wait_exit(&mut child, Duration::from_secs(10))
        } else {
            kill(bench, Signal::SIGINT).unwrap();
            std::thread::sleep(Duration::from_millis(5));
            kill(bench, Signal::SIGINT).unwrap();
            wait_exit(&mut child, Duration::from_secs(10))
        };
        assert!(!status.success(), "{how}: {status}");
        // Its guard removes the topology once the bench is gone.
        assert_eq!(wait_gone(pid, Duration::from_secs(5)), Vec::<String>::new(), "left 5 s after {how}");
    }
}

/// `bench` with `--load-hosts netns:AGENTS` over `link`, on one model, TCP,
/// short windows.
fn bench_agents(results: &Path, agents: usize, link: &str, duration: &str) -> Command {
    let mut command = bench_on(results, "4", duration, "1");
    command.args(["--link", link, "--load-hosts", &format!("netns:{agents}")]);
    command
}

/// Runs `command` to its end (bounded), noting every process the bench
/// started (its children but the guard) while it ran: its exit status,
/// stderr and those PIDs.
fn run_watching(command: &mut Command, limit: Duration) -> (u32, std::process::ExitStatus, String, Vec<i32>) {
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    // Read on a thread of its own: a full pipe must not stall the bench.
    let mut stderr_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let mut seen: Vec<i32> = Vec::new();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bench still running after {limit:?}");
        }
        for p in children(pid) {
            if !seen.contains(&p) {
                seen.push(p);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (pid, status, reader.join().unwrap_or_default(), seen)
}

/// Waits (bounded) until none of `pids` is running; those still running.
fn still_running(pids: &[i32]) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut alive: Vec<i32> = pids.to_vec();
    while !alive.is_empty() && Instant::now() < deadline {
        alive.retain(|p| Path::new(&format!("/proc/{p}")).exists() && !zombie(*p));
        std::thread::sleep(Duration::from_millis(20));
    }
    alive
}

/// One cell of `netns:agents` over `link`: measured by every agent, its
/// totals the sum of theirs, the link and hosts recorded, and nothing of
/// the run (namespace, link, process) left.
fn agents_in_namespaces_measure(agents: usize, link: &str) {
    let root = tempfile::tempdir().unwrap();
    let (pid, status, stderr, started) =
        run_watching(&mut bench_agents(root.path(), agents, link, "0.5s"), Duration::from_secs(60));
    assert!(status.success(), "{status}: {stderr}");
    let results = Results::load(&run_dir(root.path()).join("results.json")).expect("results");
    let hosts = format!("netns:{agents}");
    assert_eq!(results.settings.load_hosts.as_deref(), Some(hosts.as_str()));
    assert_eq!(results.cells.len(), 1);
    let cell = &results.cells[0];
    assert!(cell.ok, "{:?}", cell.failure);
    assert_eq!(cell.spec.load.link.to_string(), link, "the link is recorded");
    assert_eq!(cell.spec.load.agents as usize, agents);
    assert_eq!(cell.coordination.as_ref().map(|c| c.hosts.as_str()), Some(hosts.as_str()));
    assert_eq!(cell.agents.len(), agents, "each agent's report is kept");
    let merged = cell.loadgen.as_ref().expect("a merged report");
    let sum = |f: &dyn Fn(&loadgen::Report) -> u64| cell.agents.iter().map(|a| f(&a.report)).sum::<u64>();
    assert!(cell.agents.iter().all(|a| a.report.requests.ok > 0), "every agent measured");
    assert_eq!(merged.requests.ok, sum(&|r| r.requests.ok), "totals are the sum of the agents'");
    assert_eq!(merged.latency_us.count, sum(&|r| r.latency_us.count), "histograms added exactly");
    assert!(cell.server_cpu_us_per_msg.is_some(), "the server's CPU was read at the window's marks");
    // The server and every agent were seen running, and are gone.
    assert!(started.len() > agents, "the server and {agents} agent(s) seen: {started:?}");
    assert_eq!(still_running(&started), Vec::<i32>::new(), "processes of the run left (of {started:?})");
    assert_eq!(tags_of(pid), Vec::<String>::new(), "left after the run");
}

#[test]
fn two_agents_in_namespaces_measure_one_cell_and_leave_nothing_or_say_unavailable_here() {
    if !netns_here("two_agents_in_namespaces_measure_one_cell") {
        return;
    }
    agents_in_namespaces_measure(2, "loopback");
}

#[test]
fn an_agent_in_a_namespace_loads_a_server_over_veth_in_one_topology_or_says_unavailable_here() {
    if !netns_here("an_agent_in_a_namespace_loads_a_server_over_veth") {
        return;
    }
    agents_in_namespaces_measure(1, "veth");
}

#[test]
fn an_agents_leg_taken_down_mid_cell_fails_the_cell_by_name_or_says_unavailable_here() {
    if !netns_here("an_agents_leg_taken_down_mid_cell_fails_the_cell_by_name") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let mut child =
        bench_agents(root.path(), 1, "loopback", "3s").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let pid = child.id();
    // The agent's leg, on the bridge with the bench (and the server).
    let leg = format!("ea{pid}a-a0");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Path::new(&format!("/sys/class/net/{leg}")).exists() {
        assert!(Instant::now() < deadline, "no {leg} within 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The agent is running: wait for it, then into its window.
    let deadline = Instant::now() + Duration::from_secs(20);
    while children(pid).len() < 2 {
        assert!(Instant::now() < deadline, "no server and agent under way within 20 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(1200));
    let started = children(pid);
    let down = Command::new("ip").args(["link", "set", &leg, "down"]).status().unwrap();
    assert!(down.success());
    // The agent's heartbeats stop: the coordinator gives up on it, the cell ends.
    let status = wait_exit(&mut child, Duration::from_secs(40));
    assert_eq!(status.code(), Some(1), "a failed cell: exit 1");
    let results = Results::load(&run_dir(root.path()).join("results.json")).expect("results");
    let cell = &results.cells[0];
    let failure = cell.failure.as_deref().unwrap_or_default();
    assert!(!cell.ok && failure.contains(&format!("link {leg} went down")), "{failure}");
    assert!(failure.contains("agent"), "the agent is named: {failure}");
    assert!(cell.loadgen.is_none() && cell.agents.is_empty(), "never a partial sum");
    assert_eq!(still_running(&started), Vec::<i32>::new(), "processes of the run left (of {started:?})");
    assert_eq!(tags_of(pid), Vec::<String>::new(), "left after the run");
}

#[test]
fn sigint_during_a_run_of_agents_in_namespaces_leaves_nothing_or_says_unavailable_here() {
    if !netns_here("sigint_during_a_run_of_agents_in_namespaces_leaves_nothing") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let mut child =
        bench_agents(root.path(), 2, "loopback", "3s").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let pid = child.id();
    // The server and both agents running.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut started = children(pid);
    while started.len() < 3 {
        assert!(Instant::now() < deadline, "no server and two agents under way within 30 s: {started:?}");
        std::thread::sleep(Duration::from_millis(20));
        started = children(pid);
    }
    kill(Pid::from_raw(pid as i32), Signal::SIGINT).unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(130));
    assert_eq!(tags_of(pid), Vec::<String>::new(), "left after SIGINT");
    assert_eq!(still_running(&started), Vec::<i32>::new(), "processes of the run left after SIGINT (of {started:?})");
}
