//! Requests that do work (`--work`, issue 18), checked for every registered
//! model, generated from the registry as the contracts are
//! (`tests/contract.rs`, `tests/udp.rs`): one `#[test]` per (model,
//! transport, case), e.g. `tokio::udp::cpu_work_costs_its_duration`.
//!
//! - The echo is unchanged: the bytes come back identical with `cpu:` and
//!   `block:` work, over TCP and, for the models with a datagram design, UDP.
//! - The work is real: one connection (or one UDP flow) sends 64-byte
//!   messages one at a time to a server pinned to one CPU, and the server's
//!   CPU time is read from its process tree's CPU clocks (exact to the
//!   nanosecond) between every two; the median of [`ROUND_TRIPS`] is what
//!   a message costs it. With `cpu:200us`, the CPU a message costs above the
//!   same model's with `--work none` is 200 µs ± 40 % (in one of up to
//!   [`ATTEMPTS`] attempts: see [`cpu_work_costs_its_duration`]). With
//!   `block:5ms`, every round trip takes at least 5 ms and a message costs
//!   little CPU: the server sleeps, it does not spin.
//! - `--work` is every model's option: `none` by default, listed in its
//!   help; a zero or malformed value is one line and exit status 2.
//!
//! And where a model runs blocking work, shown with two clients whose
//! messages arrive together: a model with a thread (or process) per
//! connection, a pool, or tokio's `spawn_blocking` serves both in one
//! work's time; an event loop, `may`'s scheduler thread and tokio with
//! `--blocking inline` serve them one after the other.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::*;
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

/// Attempts at a CPU figure before a case fails (see
/// [`cpu_work_costs_its_duration`]).
const ATTEMPTS: usize = 5;
/// Messages timed one after another, after a warm-up one.
const ROUND_TRIPS: usize = 50;
/// The size of each timed message.
const MESSAGE: usize = 64;
/// The `cpu:` work whose cost is checked.
const CPU_WORK: Duration = Duration::from_micros(200);
/// The `block:` work whose wall time is checked.
const BLOCK_WORK: Duration = Duration::from_millis(5);
/// How far the CPU a message's work costs may be from what was asked: ± 40 %
/// tells work done once from work not done (0), done twice (2×) or
/// calibrated wrong by half or more. It was ± 20 %, and a clean clone's
/// `.ci/run` on the reference VM saw `pool` miss it in all 5 attempts (241–357
/// µs for 200, the plain echo's own cost moving 17–126 µs between servers);
/// how precise the calibration is, the bench measures (each work cell keeps
/// its server's calibration line), not a timed test.
const CPU_TOLERANCE: f64 = 0.4;

/// `tokio over udp`, for messages.
fn who(model: &ModelInfo, transport: Transport) -> String {
    format!("{} over {transport}", model.name)
}

/// `--work <work>` and `args`, as the server's arguments.
fn with_work<'a>(work: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--work", work];
    all.extend_from_slice(args);
    all
}

/// One client of a server: a stream connection, or a UDP socket of its own
/// (its own flow).
enum Client {
    Stream(common::Client),
    Datagram(UdpSocket, SocketAddr),
}

/// How long a UDP client waits for an echo before sending the datagram
/// again (loopback loses almost nothing; a lost one must not hang the test).
const ECHO_TIMEOUT: Duration = Duration::from_secs(2);

impl Client {
    fn connect(server: &Server) -> Client {
        match server.endpoint {
            Endpoint::Udp(addr) => {
                let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a client socket");
                socket.set_read_timeout(Some(ECHO_TIMEOUT)).unwrap();
                Client::Datagram(socket, addr)
            }
            ref endpoint => Client::Stream(connect(endpoint)),
        }
    }

    /// Sends `msg` and reads back its echo, which must be identical.
    fn round_trip(&mut self, msg: &[u8]) -> io::Result<()> {
        match self {
            Client::Stream(stream) => roundtrip(stream, msg),
            Client::Datagram(socket, server) => {
                let mut buf = vec![0u8; msg.len() + 1];
                for _ in 0..3 {
                    socket.send_to(msg, *server)?;
                    match socket.recv_from(&mut buf) {
                        Ok((n, from)) if from == *server && buf[..n] == *msg => return Ok(()),
                        Ok((n, from)) => return Err(io::Error::other(format!("{n} B from {from}: not the echo"))),
                        Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                        Err(err) => return Err(err),
                    }
                }
                Err(io::Error::other("no echo after 3 sends"))
            }
        }
    }
}

/// What [`ROUND_TRIPS`] sequential messages cost a server.
#[derive(Debug)]
struct Measured {
    /// The median of the server's CPU time from one message's send to the
    /// next's: what one message costs it, its work included, without the
    /// odd interval that also holds a timer tick or a child's wake-up.
    cpu_per_message: Duration,
    /// The shortest round trip.
    fastest: Duration,
}

/// Sends [`ROUND_TRIPS`] messages of [`MESSAGE`] bytes one at a time on
/// one connection (or flow), after a warm-up message that makes sure the
/// connection is served (its thread, child or task exists), and reads the
/// server's CPU time between every two: the CPU clocks of the processes of
/// its tree (two system calls each; scanning /proc for the tree at every
/// message would cost the machine more than the server's echo does).
fn measure(server: &Server, who: &str) -> Measured {
    let _elsewhere = ClientElsewhere::new();
    let mut client = Client::connect(server);
    let mut rng = fastrand::Rng::with_seed(0x18);
    client.round_trip(b"warm up").unwrap_or_else(|e| panic!("{who}: warm-up: {e}"));
    let tree = server.tree();
    let cpu_secs = || -> f64 { tree.iter().filter_map(|&pid| echo_common::procfs::process_cpu_secs(pid)).sum() };
    let messages: Vec<Vec<u8>> = (0..ROUND_TRIPS).map(|_| random_bytes(&mut rng, MESSAGE)).collect();
    let mut fastest = Duration::MAX;
    let mut cpu = Vec::with_capacity(ROUND_TRIPS);
    let mut cpu_before = cpu_secs();
    for (n, msg) in messages.iter().enumerate() {
        let start = Instant::now();
        client.round_trip(msg).unwrap_or_else(|e| panic!("{who}: message {n}: {e}"));
        fastest = fastest.min(start.elapsed());
        let cpu_after = cpu_secs();
        cpu.push(cpu_after - cpu_before);
        cpu_before = cpu_after;
    }
    cpu.sort_by(f64::total_cmp);
    Measured { cpu_per_message: Duration::from_secs_f64(cpu[cpu.len() / 2].max(0.0)), fastest }
}

/// One server at a time in this test binary: the others' servers and
/// clients would take the CPUs from under a measurement, or delay an echo
/// whose time is checked.
fn alone() -> MutexGuard<'static, ()> {
    static ALONE: Mutex<()> = Mutex::new(());
    // A case that failed poisoned it; the next ones still run.
    ALONE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A server whose threads and children all run on one CPU, the first this
/// test may use: its calibration at start-up and its work then run on the
/// same CPU. (Measured on the 2-CPU VM these tests were written on: a
/// server left to wander between the CPUs, while other processes come and
/// go on them, spends 10 to 25 % more CPU on its work than its calibration
/// said; pinned, within 5 % on a quiet machine, as in the benchmark, which
/// pins servers too.)
fn pinned(model: &ModelInfo, transport: Transport, args: &[&str]) -> Server {
    Server::start_with(model, transport, Launch { args, cpu: cpus().first().copied(), ..Launch::default() })
}

/// The CPUs this test may run on, in order.
fn cpus() -> Vec<usize> {
    let mask = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
    (0..CpuSet::count()).filter(|&cpu| mask.is_set(cpu).unwrap_or(false)).collect()
}

/// While it lives, the calling thread (the client) runs on another CPU
/// than [`pinned`] servers, if there is one: else the client's wake-ups
/// and its loopback sends land on the server's CPU some messages and not
/// others, and the server's CPU per message moves by tens of µs with it.
struct ClientElsewhere(Option<CpuSet>);

impl ClientElsewhere {
    fn new() -> ClientElsewhere {
        let before = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
        let Some(&other) = cpus().get(1) else { return ClientElsewhere(None) };
        let mut mask = CpuSet::new();
        mask.set(other).expect("a CPU of the mask");
        sched_setaffinity(Pid::from_raw(0), &mask).expect("sched_setaffinity");
        ClientElsewhere(Some(before))
    }
}

impl Drop for ClientElsewhere {
    fn drop(&mut self) {
        if let Some(before) = &self.0 {
            let _ = sched_setaffinity(Pid::from_raw(0), before);
        }
    }
}

/// The bytes come back identical with work: a payload of many reads (or
/// datagrams of every size up to 1 KiB), and a few clients at once.
fn echo_is_unchanged(model: &ModelInfo, transport: Transport) {
    if refuses_udp(model, transport) {
        return;
    }
    let who = who(model, transport);
    let _alone = alone();
    for work in ["cpu:50us", "block:1ms"] {
        let server = Server::start(model, transport, &["--work", work]);
        let mut rng = fastrand::Rng::with_seed(0xB10C);
        if transport == Transport::Udp {
            let mut client = Client::connect(&server);
            for len in [0, 1, 17, 64, 1000, 1024] {
                let msg = random_bytes(&mut rng, len);
                client.round_trip(&msg).unwrap_or_else(|e| panic!("{who} --work {work}: {len} B: {e}"));
            }
        } else {
            // 24 reads at least, each with its work.
            let payload = random_bytes(&mut rng, 96 * 1024);
            let received = echo_all(&server.endpoint, payload.clone());
            assert!(received == payload, "{who} --work {work}: the echo of 96 KiB differs");
        }
        let clients: Vec<_> = (0..3u64)
            .map(|id| {
                let mut client = Client::connect(&server);
                let who = format!("{who} --work {work}, client {id}");
                std::thread::spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(id);
                    for n in 0..10 {
                        let len = rng.usize(1..=512);
                        let msg = random_bytes(&mut rng, len);
                        client.round_trip(&msg).unwrap_or_else(|e| panic!("{who}: message {n}: {e}"));
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().expect("client thread");
        }
    }
}

/// `cpu:200us`: the CPU a message costs above the model's plain echo is
/// 200 µs ± 40 % ([`CPU_TOLERANCE`]; the echo's own cost, system calls and wake-ups, is
/// subtracted: it is the model's, not the work's), and the whole is not
/// less than the work.
///
/// An attempt is a pair of fresh servers, one with no work and one with,
/// each calibrating at its start. On the shared 2-CPU VM these tests were
/// written on, the CPU time of the same loop moves by up to ±30 % from one
/// second to the next (the hypervisor, other tenants, other processes on
/// the two CPUs), so one attempt in five or so lands outside ± 20 % by that
/// alone: an attempt that does is made again, up to [`ATTEMPTS`], and the
/// case fails only if every one does. Work that is not done, done twice or
/// miscalibrated misses every time.
fn cpu_work_costs_its_duration(model: &ModelInfo, transport: Transport) {
    if refuses_udp(model, transport) {
        return;
    }
    let who = who(model, transport);
    let _alone = alone();
    let work = format!("cpu:{}us", CPU_WORK.as_micros());
    let asked = CPU_WORK.as_secs_f64();
    let within = (1.0 - CPU_TOLERANCE) * asked..=(1.0 + CPU_TOLERANCE) * asked;
    let mut attempts = Vec::new();
    for _ in 0..ATTEMPTS {
        let plain = measure(&pinned(model, transport, &[]), &who).cpu_per_message.as_secs_f64();
        let loaded = measure(&pinned(model, transport, &["--work", &work]), &who).cpu_per_message.as_secs_f64();
        let of_work = loaded - plain;
        attempts.push(format!(
            "{:.1} µs ({:.1} with the work, {:.1} without)",
            of_work * 1e6,
            loaded * 1e6,
            plain * 1e6
        ));
        if within.contains(&of_work) && loaded >= *within.start() {
            eprintln!("{who}: --work {work}: CPU per message for the work: {}", attempts.join(", then "));
            return;
        }
    }
    panic!("{who}: --work {work}: CPU per message for the work, in {ATTEMPTS} attempts: {}", attempts.join(", "));
}

/// `block:5ms`: every round trip takes at least 5 ms, and a message costs
/// far less CPU than its wall time: the server sleeps, it does not spin.
fn block_work_adds_its_wall_time(model: &ModelInfo, transport: Transport) {
    if refuses_udp(model, transport) {
        return;
    }
    let who = who(model, transport);
    let work = format!("block:{}ms", BLOCK_WORK.as_millis());
    let _alone = alone();
    let measured = measure(&pinned(model, transport, &["--work", &work]), &who);
    let figures = format!(
        "{who}: --work {work}: fastest round trip {:.2} ms, CPU per message {:.1} µs",
        measured.fastest.as_secs_f64() * 1e3,
        measured.cpu_per_message.as_secs_f64() * 1e6
    );
    eprintln!("{figures}");
    assert!(measured.fastest >= BLOCK_WORK, "{figures}");
    assert!(measured.cpu_per_message < BLOCK_WORK / 5, "{figures}");
}

/// A stream-only model refuses `udp:` whatever its work (exit 2, one
/// line: `tests/udp.rs` checks the refusal); `true` if it did.
fn refuses_udp(model: &ModelInfo, transport: Transport) -> bool {
    if transport != Transport::Udp || model.datagrams.is_some() {
        return false;
    }
    let (status, stderr) = run_to_exit_with(model, "udp:127.0.0.1:0", &["--work", "cpu:1ms"], Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{}: udp: with --work: {stderr:?}", model.name);
    true
}

/// A zero, empty, unknown or malformed `--work` is one line and exit 2,
/// before anything runs.
fn malformed_work_exits_2_with_one_line(model: &ModelInfo) {
    for (work, needle) in [
        ("cpu:0", "longer than 0"),
        ("block:", "block:"),
        ("foo:1ms", "expected none, cpu:DURATION or block:DURATION"),
        ("cpu:abc", "cpu:\"abc\""),
        ("block:5s", "more than the 1s"),
    ] {
        let (status, stderr) = run_to_exit_with(model, "127.0.0.1:0", &["--work", work], Duration::from_secs(10));
        let who = format!("{} --work {work}", model.name);
        assert_eq!(status.code(), Some(2), "{who}: {status:?}, stderr {stderr:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{who}: one line: {stderr:?}");
        assert!(stderr.contains("'--work <WORK>'") && stderr.contains(needle), "{who}: {stderr:?}");
    }
}

/// `none` is the default, and the help says so.
fn none_is_the_default(model: &ModelInfo) {
    use clap::Parser;
    let cli = echo_servers::Cli::try_parse_from(["echo-server", model.name.as_ref()]).expect("parses");
    let common = cli.command.common().expect("a model has the common options");
    assert_eq!(common.work, echo_servers::work::Work::None, "{}", model.name);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .args([model.name.as_ref(), "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    let work = help.split("--work <WORK>").nth(1).unwrap_or_else(|| panic!("{}: no --work in {help}", model.name));
    let work = work.split("\n  -").next().unwrap_or_default();
    assert!(work.contains("[default: none]") && work.contains("block:DURATION"), "{}: {work}", model.name);
}

/// Every case, for one model over one transport.
macro_rules! every_case {
    ($info:expr, $transport:expr) => {
        #[test]
        fn echo_is_unchanged() {
            super::super::echo_is_unchanged($info, $transport)
        }
        #[test]
        fn cpu_work_costs_its_duration() {
            super::super::cpu_work_costs_its_duration($info, $transport)
        }
        #[test]
        fn block_work_adds_its_wall_time() {
            super::super::block_work_adds_its_wall_time($info, $transport)
        }
    };
}

/// One module per registered model, one per transport inside it.
macro_rules! work_tests {
    ($($model:ident),* $(,)?) => {
        $(
            mod $model {
                fn info() -> echo_common::ModelInfo {
                    echo_servers::models::$model::MODEL.info()
                }
                mod tcp {
                    use super::info;
                    every_case!(&info(), echo_common::Transport::Tcp);
                }
                mod udp {
                    use super::info;
                    every_case!(&info(), echo_common::Transport::Udp);
                }
                #[test]
                fn malformed_work_exits_2_with_one_line() {
                    super::malformed_work_exits_2_with_one_line(&info())
                }
                #[test]
                fn none_is_the_default() {
                    super::none_is_the_default(&info())
                }
            }
        )*
    };
}

echo_servers::for_each_model!(work_tests);

/// `cpu:` work is calibrated once, at start-up, before `listening on`:
/// one log line with what was measured; and the children of `process`
/// take their parent's figure rather than each measuring again (one line
/// for the whole server).
#[test]
fn the_calibration_is_measured_once_at_start_up_and_logged() {
    for model in ["thread", "process"] {
        let info = echo_servers::models::ALL.iter().find(|m| m.name == model).expect("a registered model");
        let launch = Launch { args: &["--work", "cpu:100us"], log: Some("info"), ..Launch::default() };
        let mut server = Server::start_with(info, Transport::Tcp, launch);
        for _ in 0..3 {
            roundtrip(&mut connect(&server.endpoint), b"a connection").unwrap();
        }
        server.terminate(Duration::from_secs(5));
        let stderr = server.stderr();
        let lines: Vec<&str> = stderr.lines().filter(|line| line.contains("cpu work calibrated")).collect();
        assert_eq!(lines.len(), 1, "{model}: {stderr}");
        for field in ["work=cpu:100us", "iterations=", "ns_per_iteration="] {
            assert!(lines[0].contains(field), "{model}: {field} in {}", lines[0]);
        }
        let listening = stderr.find("listening on").expect("the readiness line is logged too");
        assert!(stderr.find("cpu work calibrated").unwrap() < listening, "{model}: {stderr}");
    }
}

/// The blocking work of each message, in the tests below: long enough that
/// a second one waiting for the first is plain, whatever the machine.
const STALL_WORK: Duration = Duration::from_millis(100);

/// Two clients, each served (a warm-up round trip each), send one message
/// at the same moment; returns how long the later of the two echoes took.
/// One work's time if the model runs both works at once; two if one
/// waits for the other.
fn two_at_once(model: &str, args: &[&str]) -> Duration {
    let info = echo_servers::models::ALL.iter().find(|m| m.name == model).expect("a registered model");
    let _alone = alone();
    let work = format!("block:{}ms", STALL_WORK.as_millis());
    let server = Server::start(info, Transport::Tcp, &with_work(&work, args));
    let mut clients: Vec<common::Client> = (0..2).map(|_| connect(&server.endpoint)).collect();
    for client in &mut clients {
        roundtrip(client, b"warm up").unwrap();
    }
    let start = Instant::now();
    for client in &mut clients {
        client.write_all(b"at once").unwrap();
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            std::thread::spawn(move || {
                let mut back = [0u8; 7];
                client.read_exact(&mut back).unwrap();
                assert_eq!(&back, b"at once");
                start.elapsed()
            })
        })
        .collect();
    readers.into_iter().map(|reader| reader.join().expect("reader")).max().expect("two readers")
}

/// A thread per connection, a process per connection, a pool's workers,
/// `reactor-pool`'s rayon pool and tokio's `spawn_blocking`: the two works
/// run at once.
#[test]
fn blocking_work_is_absorbed_by_threads_processes_pools_and_spawn_blocking() {
    for (model, args) in [
        ("thread", &[][..]),
        ("pool", &[][..]),
        ("process", &[][..]),
        ("prefork", &[][..]),
        ("reactor-pool", &["--workers", "2"][..]),
        ("tokio", &["--workers", "1"][..]),
    ] {
        let later = two_at_once(model, args);
        eprintln!("{model} {args:?}: both echoes after {later:?}");
        assert!(later < 2 * STALL_WORK, "{model} {args:?}: the second echo after {later:?}");
    }
}

/// An event loop, one io_uring, may's one scheduler thread, tokio with
/// `--blocking inline` on one worker: one thread runs both works, one after
/// the other, and the second client waits for the first's.
#[test]
fn blocking_work_stalls_an_event_loop_and_a_scheduler_thread() {
    for (model, args) in [
        ("reactor", &[][..]),
        ("reactors", &["--workers", "1"][..]),
        ("uring", &["--workers", "1"][..]),
        ("may", &["--workers", "1"][..]),
        ("tokio", &["--workers", "1", "--blocking", "inline"][..]),
    ] {
        let later = two_at_once(model, args);
        eprintln!("{model} {args:?}: both echoes after {later:?}");
        assert!(later >= 2 * STALL_WORK, "{model} {args:?}: the second echo after only {later:?}");
    }
}
