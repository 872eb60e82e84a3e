//! `loadgen agent` and its coordinator: real agent processes on 127.0.0.1
//! (port 0) against an echo server written here, and fake peers that speak
//! the protocol wrongly on purpose. Every run is a second or two.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use loadgen::coordinator::{Coordinator, Mark, Run};
use loadgen::pacer::{Arrivals, Schedule};
use loadgen::protocol::{self, Msg};
use loadgen::{Opts, Report};

const LOOPBACK: &str = "127.0.0.1";

/// An echo server on 127.0.0.1:0, a thread per connection; stops when dropped.
struct Echo {
    addr: String,
    stop: Arc<AtomicBool>,
}

impl Echo {
    fn start() -> Echo {
        let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut buf) {
                        if stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Echo { addr, stop }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        drop(TcpStream::connect(&self.addr));
    }
}

/// A started agent, killed and reaped if the test ends without it exiting.
struct Agent {
    name: String,
    child: Child,
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Agent {
    /// `loadgen agent --coordinator ADDR --name NAME`, behind `prefix` (a
    /// command such as `unshare --time …`) if given.
    fn start(coordinator: &str, name: &str, prefix: &[&str]) -> Agent {
        Agent::launch(coordinator, name, prefix, &[])
    }

    /// [`Agent::start`] with `--index INDEX`, once it has connected (its
    /// first line on stdout): agents started in turn this way come to the
    /// coordinator in that order.
    fn connected(coordinator: &str, name: &str, index: &str) -> Agent {
        let mut agent = Agent::launch(coordinator, name, &[], &["--index", index]);
        let mut line = String::new();
        // The agent dials for a bounded time, then says so or exits (EOF).
        BufReader::new(agent.child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains(&format!("agent {index}: connected")), "{line}");
        agent
    }

    fn launch(coordinator: &str, name: &str, prefix: &[&str], extra: &[&str]) -> Agent {
        let bin = env!("CARGO_BIN_EXE_loadgen");
        let mut command = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = command
            .args(["agent", "--coordinator", coordinator, "--name", name])
            .args(extra)
            .env_remove("JOB_COMPLETION_INDEX")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Agent { name: name.into(), child }
    }

    /// Its exit status and stderr, waiting at most `limit`.
    fn wait(&mut self, limit: Duration) -> Option<(std::process::ExitStatus, String)> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                if let Some(mut err) = self.child.stderr.take() {
                    err.read_to_string(&mut stderr).unwrap();
                }
                return Some((status, stderr));
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

fn opts(addr: &str, connections: u32, duration_ms: u64) -> Opts {
    Opts {
        addr: addr.into(),
        connections,
        size: 64,
        duration: Duration::from_millis(duration_ms),
        warmup: Duration::from_millis(200),
        threads: Some(1),
        timeout: Duration::from_secs(2),
        progress: false,
        ..Opts::default()
    }
}

/// `count` agents (named a, b, …) run `opts` with a coordinator; every
/// agent must exit 0 afterwards. The run and the marks seen, in order.
fn run_agents(opts: &Opts, count: usize, prefix_of: impl Fn(usize) -> Vec<&'static str>) -> (Run, Vec<Mark>) {
    let mut coordinator = Coordinator::bind(LOOPBACK.parse().unwrap()).unwrap();
    let addr = coordinator.addr().to_string();
    let mut agents: Vec<Agent> =
        (0..count).map(|i| Agent::start(&addr, &((b'a' + i as u8) as char).to_string(), &prefix_of(i))).collect();
    coordinator.accept(count, Duration::from_secs(10)).unwrap();
    let mut marks = Vec::new();
    let run = coordinator.run(opts, &|| false, |mark| marks.push(mark)).unwrap();
    for agent in &mut agents {
        let (status, stderr) = agent.wait(Duration::from_secs(10)).expect("the agent exits after its report");
        assert!(status.success(), "agent {}: {status}: {stderr}", agent.name);
    }
    (run, marks)
}

fn histogram_count(report: &Report) -> u64 {
    report.latency_us.count
}

#[test]
fn two_agents_closed_loop_merge_to_the_sum_of_their_parts() {
    let echo = Echo::start();
    let whole = opts(&echo.addr, 5, 1_000);
    let (run, marks) = run_agents(&whole, 2, |_| Vec::new());
    assert_eq!(marks, [Mark::Open, Mark::Close]);
    assert_eq!(run.agents.len(), 2);
    // 5 connections split 3 + 2, each agent its own numbers of the whole.
    let mut shares: Vec<u32> = run.agents.iter().map(|a| a.report.config.connections).collect();
    shares.sort_unstable();
    assert_eq!(shares, [2, 3]);
    for agent in &run.agents {
        assert!(agent.report.requests.ok > 0, "agent {} measured nothing", agent.name);
        assert!(!agent.host.kernel.is_empty() && agent.host.cpus_online > 0, "host facts: {:?}", agent.host);
        assert!(agent.clock.offset_ns.unsigned_abs() < 50_000_000, "one host, one clock: {:?}", agent.clock);
    }
    let merged = run.merged().unwrap();
    let sum = |f: &dyn Fn(&Report) -> u64| run.agents.iter().map(|a| f(&a.report)).sum::<u64>();
    assert_eq!(merged.requests.ok, sum(&|r| r.requests.ok));
    assert_eq!(merged.requests.errors(), sum(&|r| r.requests.errors()));
    assert_eq!(histogram_count(&merged), sum(&histogram_count), "histograms added exactly");
    assert_eq!(merged.connections.established, sum(&|r| r.connections.established));
    assert_eq!(merged.config.connections, 5);
    assert_eq!(merged.config.segment, None);
    assert!(merged.window_monotonic_ns.is_some(), "the agents' windows overlap on the coordinator's clock");
    assert!(run.skew_flag.is_none() || run.skew_ns > 10_000_000, "flagged only above 1 % of the window");
}

/// The parts' schedules, drawn as the engine draws them ([`Opts::numbering`]
/// and [`Schedule::new`]): their union is the single generator's, send for
/// send, for even and Poisson arrivals, whether or not the agents divide
/// the connections.
#[test]
fn the_union_of_the_parts_arrivals_is_one_generators_schedule() {
    let start = Instant::now();
    let sends = |opts: &Opts, per_connection: usize| -> Vec<Instant> {
        let n = opts.numbering();
        let mut all = Vec::new();
        for id in n.ids {
            let mut schedule = Schedule::new(opts.arrivals, opts.seed, start, id, n.connections, n.rate.unwrap());
            all.extend((0..per_connection).map(|_| schedule.advance()));
        }
        all.sort_unstable();
        all
    };
    for arrivals in [Arrivals::Uniform, Arrivals::Poisson] {
        for (connections, agents) in [(12, 3), (10, 4), (5, 5)] {
            let whole = Opts { connections, rate: Some(6_000.0), arrivals, seed: 7, ..Opts::default() };
            let parts = whole.split(agents).unwrap();
            let mut union: Vec<Instant> = parts.iter().flat_map(|p| sends(p, 50)).collect();
            union.sort_unstable();
            assert_eq!(union, sends(&whole, 50), "{arrivals:?}, {connections} connections over {agents} agents");
            let total: f64 = parts.iter().map(|p| p.rate.unwrap()).sum();
            assert!((total - 6_000.0).abs() < 1e-6, "the parts' rates add up: {total}");
            if arrivals == Arrivals::Uniform && connections % agents == 0 {
                // rate/N each, part i shifted by i/N of its own interval (N/R).
                for (i, part) in parts.iter().enumerate() {
                    assert_eq!(part.rate, Some(6_000.0 / f64::from(agents)));
                    let first = sends(part, 1)[0] - start;
                    let own_interval = f64::from(agents) / 6_000.0;
                    let expected = own_interval * i as f64 / f64::from(agents);
                    assert!((first.as_secs_f64() - expected).abs() < 1e-9, "part {i}: {first:?}");
                }
            }
        }
    }
    assert!(Opts { connections: 2, ..Opts::default() }.split(3).is_err(), "an agent with no connection");
}

/// The same at run level: two agents at half the rate each, together the
/// whole rate, each on its shifted schedule.
#[test]
fn two_agents_open_loop_send_the_whole_rate_between_them() {
    let echo = Echo::start();
    let whole = Opts { rate: Some(2_000.0), ..opts(&echo.addr, 4, 1_000) };
    let (run, _) = run_agents(&whole, 2, |_| Vec::new());
    for agent in &run.agents {
        assert_eq!(agent.report.config.rate, Some(1_000.0));
        let segment = agent.report.config.segment.unwrap();
        assert_eq!((segment.count, segment.connections, segment.rate), (2, 4, Some(2_000.0)));
    }
    let merged = run.merged().unwrap();
    assert_eq!(merged.config.rate, Some(2_000.0));
    assert_eq!(merged.config.connections, 4);
    let sent = merged.requests.ok + merged.requests.errors();
    let expected = 2_000.0 * merged.duration_secs;
    assert!((sent as f64 - expected).abs() < 0.1 * expected, "{sent} messages, about {expected:.0} expected");
}

/// An agent of another protocol, or of another loadgen, is refused in one
/// line, and so is the run.
#[test]
fn an_agent_of_another_version_is_refused_with_one_line() {
    for (field, value) in [("protocol", serde_json::json!(999)), ("version", serde_json::json!("0.0.0-other"))] {
        let mut coordinator = Coordinator::bind(LOOPBACK.parse().unwrap()).unwrap();
        let mut fake = TcpStream::connect(coordinator.addr()).unwrap();
        let mut hello = serde_json::json!({
            "msg": "hello", "protocol": protocol::PROTOCOL, "version": protocol::VERSION, "name": "fake",
            "host": loadgen::env::Environment::detect(), "monotonic_ns": 0,
        });
        hello[field] = value;
        writeln!(fake, "{hello}").unwrap();
        let err = coordinator.accept(1, Duration::from_secs(5)).unwrap_err();
        assert!(err.contains(field) && err.contains("refused") && !err.contains('\n'), "{err}");
        let mut line = String::new();
        BufReader::new(&fake).read_line(&mut line).unwrap();
        match serde_json::from_str::<Msg>(&line).unwrap() {
            Msg::Refused { reason } => assert!(reason.contains(field), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}

/// Options whose hash the agent does not compute alike (a field it does
/// not know would do that) are refused: one line on stderr, exit 1, and
/// the coordinator is told why.
#[test]
fn options_of_another_hash_are_refused_by_the_agent() {
    let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
    let mut agent = Agent::start(&listener.local_addr().unwrap().to_string(), "a", &[]);
    let (stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(matches!(serde_json::from_str::<Msg>(&line).unwrap(), Msg::Hello { .. }), "{line}");
    let options =
        Msg::Options { index: 0, count: 1, options: Box::new(Opts::default()), hash: "0123456789abcdef".into() };
    (&stream).write_all(options.line().as_bytes()).unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(
        matches!(serde_json::from_str::<Msg>(&line).unwrap(), Msg::Refused { ref reason } if reason.contains("hash"))
    );
    let (status, stderr) = agent.wait(Duration::from_secs(10)).expect("the agent exits");
    assert_eq!(status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("options hash mismatch"), "{stderr}");
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // After the command's closing parenthesis: state, then the parent.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1) == Some(&pid.to_string().as_str()) {
            children.extend(entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()));
        }
    }
    children
}

/// An agent killed during the window fails the run, with the agent named;
/// the other agent, told to abort, exits by itself: nothing is left.
#[test]
fn an_agent_killed_mid_window_fails_the_run_and_leaves_no_orphan() {
    let echo = Echo::start();
    let mut coordinator = Coordinator::bind(LOOPBACK.parse().unwrap()).unwrap();
    let addr = coordinator.addr().to_string();
    let mut agents = [Agent::start(&addr, "a", &[]), Agent::start(&addr, "b", &[])];
    let pids: Vec<u32> = agents.iter().map(|a| a.child.id()).collect();
    coordinator.accept(2, Duration::from_secs(10)).unwrap();
    let started = Instant::now();
    let victim = &mut agents[1];
    let err = coordinator
        .run(&Opts { rate: Some(1_000.0), ..opts(&echo.addr, 4, 3_000) }, &|| false, |mark| {
            if mark == Mark::Open {
                victim.child.kill().unwrap();
            }
        })
        .unwrap_err();
    assert!(err.contains("(b)") && err.contains("closed the control channel"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "the failure is seen at once, not at the window's end");
    let (status, stderr) = agents[0].wait(Duration::from_secs(5)).expect("the surviving agent exits by itself");
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("aborted by the coordinator"), "{stderr}");
    let _ = agents[1].wait(Duration::from_secs(5)).expect("the killed agent is reaped");
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "agent {pid} is still there");
        assert!(children_of(pid).is_empty(), "agent {pid} left children");
    }
}

/// Whether `unshare --time` can shift CLOCK_MONOTONIC here (root, a
/// kernel with time namespaces, util-linux's unshare).
fn time_namespaces() -> Result<(), String> {
    let out = Command::new("unshare")
        .args(["--time", "--monotonic", "5000", "true"])
        .output()
        .map_err(|err| format!("cannot run unshare: {err}"))?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()) }
}

/// An agent whose CLOCK_MONOTONIC is 5000 s ahead (its own time
/// namespace): its offset is measured, it starts at T0 as the other agent
/// does, and the two windows line up on the coordinator's clock.
#[test]
fn an_agent_with_a_shifted_clock_still_starts_on_time() {
    if let Err(why) = time_namespaces() {
        eprintln!("unshare --time: unavailable here ({why}); the shifted-clock test did not run");
        return;
    }
    let echo = Echo::start();
    let whole = opts(&echo.addr, 4, 2_000);
    let (run, _) =
        run_agents(&whole, 2, |i| if i == 1 { vec!["unshare", "--time", "--monotonic", "5000"] } else { vec![] });
    let shifted = run.agents.iter().find(|a| a.name == "b").unwrap();
    let plain = run.agents.iter().find(|a| a.name == "a").unwrap();
    let ahead = 5_000_000_000_000i64;
    assert!((shifted.clock.offset_ns - ahead).abs() < 50_000_000, "{:?}", shifted.clock);
    assert!(plain.clock.offset_ns.abs() < 50_000_000, "{:?}", plain.clock);
    // T0 hit: each agent opened its window when the coordinator's opened
    // (an agent that ignored its offset would be early by the whole start-ahead, 100 ms).
    let opened = run.t0_ns + whole.warmup.as_nanos() as u64;
    for agent in &run.agents {
        let late = agent.marked_ns[0].abs_diff(opened);
        assert!(late < 50_000_000, "agent {} marked the window {late} ns from its opening", agent.name);
        // Its window on its own clock is 5000 s apart from the other's…
        let [begin, _] = agent.report.window_monotonic_ns.unwrap();
        let apart = agent.clock.to_coordinator(begin).abs_diff(opened);
        assert!(apart < 1_000_000, "…and the same instant on the coordinator's: {apart} ns apart");
    }
    assert!(run.skew_ns > 0, "the skew is recorded");
    let merged = run.merged().unwrap();
    let windows: BTreeSet<_> =
        run.agents.iter().map(|a| a.report.window_monotonic_ns.unwrap()[0] / 1_000_000_000_000).collect();
    assert_eq!(windows.len(), 2, "the agents' own clocks differ by 5000 s");
    assert!(merged.window_monotonic_ns.is_some(), "the timelines line up: a common window");
    assert_eq!(merged.requests.ok, run.agents.iter().map(|a| a.report.requests.ok).sum::<u64>());
}

/// A malformed `--coordinator` is bad usage: one line, exit 2.
#[test]
fn a_malformed_coordinator_address_is_bad_usage() {
    for bad in ["nonsense", "127.0.0.1:", ":4000", "127.0.0.1:99999"] {
        let out = Command::new(env!("CARGO_BIN_EXE_loadgen")).args(["agent", "--coordinator", bad]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("expected HOST:PORT"), "{stderr}");
    }
}

/// An agent that stops answering during the window (SIGSTOP: alive, but
/// silent) fails the run once its heartbeats are missed, with the agent
/// named; resumed, it finds the run aborted and exits by itself.
#[test]
fn a_silent_agent_fails_the_run_after_its_missed_heartbeats() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let echo = Echo::start();
    let mut coordinator = Coordinator::bind(LOOPBACK.parse().unwrap()).unwrap();
    let addr = coordinator.addr().to_string();
    let mut agents = [Agent::start(&addr, "a", &[]), Agent::start(&addr, "b", &[])];
    let stopped = Pid::from_raw(agents[1].child.id() as i32);
    coordinator.accept(2, Duration::from_secs(10)).unwrap();
    let mut opened = None;
    let whole = Opts { rate: Some(500.0), ..opts(&echo.addr, 4, 10_000) };
    let err = coordinator
        .run(&whole, &|| false, |mark| {
            if mark == Mark::Open {
                kill(stopped, Signal::SIGSTOP).unwrap();
                opened = Some(Instant::now());
            }
        })
        .unwrap_err();
    let silent_for = opened.expect("the window opened").elapsed();
    kill(stopped, Signal::SIGCONT).unwrap();
    assert!(err.contains("(b)") && err.contains("no heartbeat"), "{err}");
    assert!(
        // Silence counts from its last heartbeat, up to one period before the stop.
        silent_for >= loadgen::coordinator::SILENCE - loadgen::agent::HEARTBEAT && silent_for < Duration::from_secs(6),
        "failed {silent_for:?} into the window"
    );
    for agent in &mut agents {
        let (status, stderr) = agent.wait(Duration::from_secs(5)).expect("every agent exits by itself");
        assert_eq!(status.code(), Some(1), "agent {}: {stderr}", agent.name);
    }
}

/// Agents are given the parts of their indexes, whatever the order they
/// come in: index 1 dials first and still gets part 1; an index beyond
/// the agents, and a second agent for an index held, are refused with one
/// line each while the coordinator waits on for index 0.
#[test]
fn agents_are_told_apart_by_index_not_by_arrival() {
    let echo = Echo::start();
    let mut coordinator = Coordinator::bind(LOOPBACK.parse().unwrap()).unwrap();
    let addr = coordinator.addr().to_string();
    let mut second = Agent::connected(&addr, "pod-1", "1");
    let mut out_of_range = Agent::connected(&addr, "pod-5", "5");
    let mut twin = Agent::connected(&addr, "pod-1-twin", "1");
    let mut first = Agent::connected(&addr, "pod-0", "0");
    coordinator.accept(2, Duration::from_secs(10)).unwrap();
    for (agent, why) in [(&mut out_of_range, "index 5 is out of range"), (&mut twin, "index 1 is taken by pod-1")] {
        let (status, stderr) = agent.wait(Duration::from_secs(5)).expect("a refused agent exits");
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(stderr.lines().count() == 1 && stderr.contains(why), "{stderr}");
    }
    let run = coordinator.run(&opts(&echo.addr, 3, 500), &|| false, |_| {}).unwrap();
    let names: Vec<(u32, &str, u32)> =
        run.agents.iter().map(|a| (a.index, a.name.as_str(), a.report.config.segment.unwrap().index)).collect();
    assert_eq!(names, [(0, "pod-0", 0), (1, "pod-1", 1)], "part i to index i");
    for agent in [&mut first, &mut second] {
        let (status, stderr) = agent.wait(Duration::from_secs(10)).expect("the agent exits after its report");
        assert!(status.success(), "agent {}: {stderr}", agent.name);
    }
}

/// A coordinator that takes an agent's ready and then says nothing (its
/// host gone): the agent gives up within its bound, in one line, instead
/// of waiting for a start that never comes.
#[test]
fn an_agent_waiting_for_a_silent_coordinator_gives_up_within_its_bound() {
    let echo = Echo::start();
    let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
    let mut agent = Agent::start(&listener.local_addr().unwrap().to_string(), "a", &[]);
    let (stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut said = || {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        serde_json::from_str::<Msg>(&line).unwrap()
    };
    assert!(matches!(said(), Msg::Hello { index: None, .. }));
    let part = opts(&echo.addr, 1, 500);
    let hash = protocol::options_hash(&part);
    let options = Msg::Options { index: 0, count: 1, options: Box::new(part), hash };
    (&stream).write_all(options.line().as_bytes()).unwrap();
    assert!(matches!(said(), Msg::Ready { .. }));
    let ready = Instant::now();
    let bound = protocol::COORDINATOR_SILENCE;
    let (status, stderr) = agent.wait(bound + Duration::from_secs(5)).expect("the agent gives up by itself");
    assert!(ready.elapsed() >= bound - Duration::from_millis(100), "not before its bound: {:?}", ready.elapsed());
    assert_eq!(status.code(), Some(1));
    assert!(stderr.lines().count() == 1 && stderr.contains("said nothing for"), "{stderr}");
}
