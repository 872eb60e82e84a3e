//! The datagram contract (`--addr udp:IP:PORT`), checked for every
//! registered model, generated from the registry as the stream contract is
//! (`tests/contract.rs`): one `#[test]` per (model, case), e.g.
//! `tokio::oversize_dropped_and_counted`. A model that declares a datagram
//! design must serve it; a model that does not must refuse `udp:` with one
//! line and exit status 2 — every case checks one or the other, so a model
//! cannot drift from its declaration.
//!
//! UDP on loopback can drop a datagram under a burst (a full receive
//! buffer). The flows here send one datagram at a time (or small bursts well
//! under the buffers) and wait for each echo with a deadline; a datagram
//! with no echo is sent again, at most [`RETRIES`] times, and the retries are
//! counted: a case fails if a flow needs more than that for one datagram,
//! or more than [`MAX_RETRY_SHARE`] of its datagrams needed one.

mod common;

use echo_common::endpoint::UDP_PAYLOAD_MAX;
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;

/// How long a flow waits for one echo before sending the datagram again.
const ECHO_TIMEOUT: Duration = Duration::from_secs(1);
/// Sends of one datagram beyond the first, at most.
const RETRIES: u32 = 3;
/// Datagrams of a case that may need a retry (loopback loses almost none).
const MAX_RETRY_SHARE: f64 = 0.05;

/// The server's address, or a panic naming what it printed.
fn udp_addr(server: &Server) -> SocketAddr {
    match server.endpoint {
        Endpoint::Udp(addr) => addr,
        ref other => panic!("expected `listening on udp:…`, got {other}"),
    }
}

/// One client socket (its own source port) talking to one server.
struct Flow {
    socket: UdpSocket,
    server: SocketAddr,
    /// Everything sent so far: a late echo of an earlier datagram (after a
    /// retry) is recognised and skipped, not taken for a wrong echo.
    sent: Vec<Vec<u8>>,
    retries: u32,
    datagrams: u32,
}

impl Flow {
    fn new(server: SocketAddr) -> Flow {
        let local: SocketAddr = if server.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" }.parse().unwrap();
        let socket = UdpSocket::bind(local).expect("bind a client socket");
        Flow { socket, server, sent: Vec::new(), retries: 0, datagrams: 0 }
    }

    /// Sends `msg` and waits for its echo: from the server's address, with
    /// identical bytes. Retries a lost one, counted.
    fn echo(&mut self, msg: &[u8]) -> io::Result<()> {
        self.datagrams += 1;
        for attempt in 0..=RETRIES {
            if attempt > 0 {
                self.retries += 1;
            }
            self.socket.send_to(msg, self.server)?;
            match self.receive(msg, ECHO_TIMEOUT)? {
                true => {
                    self.sent.push(msg.to_vec());
                    return Ok(());
                }
                false => continue, // no echo in time: send again
            }
        }
        Err(io::Error::other(format!("no echo of a {} B datagram after {} sends", msg.len(), RETRIES + 1)))
    }

    /// Waits up to `timeout` for the echo of `msg`: `Ok(true)` when it
    /// arrives, `Ok(false)` if none did, an error for a wrong datagram.
    fn receive(&self, msg: &[u8], timeout: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        // One byte more than any datagram: a longer echo would show.
        let mut buf = vec![0u8; UDP_PAYLOAD_MAX + 1];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.socket.set_read_timeout(Some(left))?;
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    if from != self.server {
                        return Err(io::Error::other(format!("a datagram from {from}, not the server")));
                    }
                    let got = &buf[..n];
                    if got == msg {
                        return Ok(true);
                    }
                    if self.sent.iter().any(|earlier| earlier == got) {
                        continue; // a late echo of an earlier datagram
                    }
                    return Err(io::Error::other(format!(
                        "echo of {n} B differs from the {} B datagram sent",
                        msg.len()
                    )));
                }
                Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Ok(false);
                }
                Err(err) => return Err(err),
            }
        }
    }
}

/// Checks the retry budget of flows that echoed everything.
fn assert_few_retries(who: &str, flows: &[(u32, u32)]) {
    let (datagrams, retries): (u32, u32) = flows.iter().fold((0, 0), |(d, r), &(fd, fr)| (d + fd, r + fr));
    assert!(
        f64::from(retries) <= MAX_RETRY_SHARE * f64::from(datagrams),
        "{who}: {retries} retries for {datagrams} datagrams (loopback should lose almost none)"
    );
}

/// A model without a datagram design must refuse `udp:` (and any other
/// case is then that refusal): exit 2, one line naming it.
fn refuses(model: &ModelInfo) {
    let name = &model.name;
    let (status, stderr) = run_to_exit(model, "udp:127.0.0.1:0", Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{name}: udp: must be refused with exit 2; stderr {stderr:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: one line, got {stderr:?}");
    assert!(stderr.contains(&format!("`{name}` serves streams only")), "{name}: {stderr:?}");
}

/// Starts `model` on `udp:127.0.0.1:0` (or `addr`) with `args`, or checks
/// its refusal and returns `None`.
fn start(model: &ModelInfo, addr: Option<&str>, args: &[&str], log: Option<&str>) -> Option<Server> {
    if model.datagrams.is_none() {
        refuses(model);
        return None;
    }
    Some(Server::start_with(model, Transport::Udp, Launch { args, addr, log, ..Launch::default() }))
}

/// 32 flows, each its own socket and port, in parallel: datagrams of 1 B up
/// to `--buffer-size`, random bytes, each echo back to its own socket,
/// identical.
fn echo_from_many_flows(model: &ModelInfo) {
    let Some(server) = start(model, None, &["--buffer-size", "4096"], None) else { return };
    let addr = udp_addr(&server);
    let who = model.name.to_string();
    let flows: Vec<_> = (0..32u64)
        .map(|id| {
            let who = who.clone();
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(0x0D06 + id);
                let mut flow = Flow::new(addr);
                let mut sizes = vec![1, 2, 64, 1400, 4095, 4096];
                sizes.extend((0..6).map(|_| rng.usize(1..=4096)));
                for size in sizes {
                    let msg = random_bytes(&mut rng, size);
                    flow.echo(&msg).unwrap_or_else(|e| panic!("{who}: flow {id}, {size} B: {e}"));
                }
                (flow.datagrams, flow.retries)
            })
        })
        .collect();
    let counts: Vec<(u32, u32)> = flows.into_iter().map(|f| f.join().expect("flow thread")).collect();
    assert_few_retries(&who, &counts);
}

/// `--buffer-size 65507`, the largest: a datagram of that size is echoed whole.
fn largest_datagram(model: &ModelInfo) {
    let Some(server) = start(model, None, &["--buffer-size", "65507"], None) else { return };
    let mut rng = fastrand::Rng::with_seed(0xB16);
    let mut flow = Flow::new(udp_addr(&server));
    for size in [UDP_PAYLOAD_MAX, 65_000, 1] {
        let msg = random_bytes(&mut rng, size);
        flow.echo(&msg).unwrap_or_else(|e| panic!("{}: {size} B: {e}", model.name));
    }
    // And one byte more than a datagram can carry is a usage error.
    let (status, stderr) = run_to_exit_with(model, "udp:127.0.0.1:0", &["--buffer-size", "65508"], IO_TIMEOUT);
    assert_eq!(status.code(), Some(2), "{}: --buffer-size 65508: {stderr:?}", model.name);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{}: one line, got {stderr:?}", model.name);
}

/// A port another server holds is refused — exit 1, one line — even by
/// the SO_REUSEPORT models, which would otherwise share it and take part of
/// its flows.
fn address_in_use_exits_1(model: &ModelInfo) {
    let who = model.name.to_string();
    let Some(server) = start(model, None, &[], None) else { return };
    let (status, stderr) = run_to_exit(model, &server.endpoint.to_string(), IO_TIMEOUT);
    assert_eq!(status.code(), Some(1), "{who}: a second server on {}: {stderr:?}", server.endpoint);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{who}: one line, got {stderr:?}");
    assert!(stderr.contains("in use") && !stderr.contains("panicked"), "{who}: {stderr:?}");
}

/// The counters the server logs at shutdown (`datagram counters received=…`).
fn shutdown_counters(server: &mut Server, who: &str) -> HashMap<String, u64> {
    let (status, took) = server.terminate(Duration::from_secs(5));
    let status = status.unwrap_or_else(|| panic!("{who}: still running 5 s after SIGTERM"));
    assert_eq!(status.code(), Some(0), "{who}: exit status {status:?}");
    assert!(took <= Duration::from_secs(2), "{who}: took {took:?} to exit");
    // The server has exited: `stderr` is read to the pipe's close.
    let stderr = server.stderr();
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("datagram counters")).collect();
    let [line] = lines[..] else { panic!("{who}: one counters line expected in {stderr:?}") };
    line.split_whitespace()
        .filter_map(|word| word.split_once('='))
        .filter_map(|(key, value)| Some((key.to_owned(), value.parse().ok()?)))
        .collect()
}

/// Datagrams larger than `--buffer-size` are dropped — never echoed cut
/// short — counted, and logged once a second; the server keeps serving.
fn oversize_dropped_and_counted(model: &ModelInfo) {
    let who = model.name.to_string();
    let Some(mut server) = start(model, None, &["--buffer-size", "512"], Some("info")) else { return };
    let mut flow = Flow::new(udp_addr(&server));
    flow.echo(b"before").unwrap_or_else(|e| panic!("{who}: {e}"));
    for size in [513, 4096] {
        flow.socket.send_to(&vec![0xAB; size], flow.server).unwrap();
    }
    // Nothing comes back for them: not the datagram, not a piece of it.
    let mut buf = vec![0u8; UDP_PAYLOAD_MAX + 1];
    flow.socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    match flow.socket.recv_from(&mut buf) {
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
        Ok((n, _)) => panic!("{who}: an oversize datagram was answered with {n} B"),
        Err(e) => panic!("{who}: {e}"),
    }
    let mut rng = fastrand::Rng::with_seed(0x512);
    for size in [512, 1, 511] {
        flow.echo(&random_bytes(&mut rng, size)).unwrap_or_else(|e| panic!("{who}: after the oversize ones: {e}"));
    }
    let counters = shutdown_counters(&mut server, &who);
    assert_eq!(counters.get("oversize_dropped"), Some(&2), "{who}: {counters:?}");
    let sent = u64::from(flow.datagrams + flow.retries) + 2;
    let (received, echoed) = (counters["received"], counters["echoed"]);
    if flow.retries == 0 {
        assert_eq!(received, sent, "{who}: {counters:?}");
    } else {
        // A datagram lost on the way in was never received; one whose echo
        // was lost was received and echoed.
        assert!(received <= sent && received >= u64::from(flow.datagrams) + 2, "{who}: {counters:?}, sent {sent}");
    }
    // Counted before they leave: an echo this client has is counted.
    assert_eq!(echoed, received - 2, "{who}: {counters:?}");
    assert_eq!(counters.get("send_failed"), Some(&0), "{who}: {counters:?}");
    // Two drops within a second: one log line, the other held back.
    let logged = server.stderr().matches("larger than --buffer-size").count();
    assert_eq!(logged, 1, "{who}: throttled log lines: {}", server.stderr());
}

/// SIGTERM while datagrams keep arriving: exit 0 within 2 s, no process
/// left behind.
fn sigterm_exits_cleanly(model: &ModelInfo) {
    let who = model.name.to_string();
    let Some(mut server) = start(model, None, &[], None) else { return };
    let addr = udp_addr(&server);
    let mut flows: Vec<Flow> = (0..8).map(|_| Flow::new(addr)).collect();
    for flow in &mut flows {
        flow.echo(b"live").unwrap_or_else(|e| panic!("{who}: {e}"));
    }
    let tree = server.tree();
    // A sender that keeps going through the shutdown (paced: a stream, not
    // a flood). It says when the first echo of its stream comes back: the
    // traffic flows through the server, and the signal lands in it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (flowing_tx, flowing) = std::sync::mpsc::channel();
    let sender = {
        let stop = std::sync::Arc::clone(&stop);
        let socket = flows.pop().unwrap().socket;
        socket.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let mut echo = [0u8; 64];
            let mut flowing_tx = Some(flowing_tx);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = socket.send_to(&[7u8; 64], addr);
                if flowing_tx.is_some() && socket.recv_from(&mut echo).is_ok_and(|(n, _)| echo[..n] == [7u8; 64]) {
                    let _ = flowing_tx.take().map(|tx| tx.send(()));
                }
                std::thread::sleep(Duration::from_micros(200)); // pacing
            }
        })
    };
    flowing.recv_timeout(IO_TIMEOUT).unwrap_or_else(|_| panic!("{who}: no echo of the paced stream"));
    let (status, took) = server.terminate(Duration::from_secs(5));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.join().unwrap();
    let status = status.unwrap_or_else(|| panic!("{who}: still running 5 s after SIGTERM"));
    assert_eq!(status.code(), Some(0), "{who}: exit status {status:?}; stderr {}", server.stderr());
    assert!(took <= Duration::from_secs(2), "{who}: took {took:?} to exit");
    eventually(Duration::from_secs(2), || match tree.iter().find(|&&pid| alive(pid)) {
        Some(pid) => Err(io::Error::other(format!("pid {pid} still alive"))),
        None => Ok(()),
    })
    .unwrap_or_else(|e| panic!("{who}: {e} after shutdown"));
}

/// Clients that vanish before their echo arrives (the echo meets a closed
/// port; the kernel answers with an ICMP error) cost the server nothing but
/// those echoes: it keeps serving the others.
fn vanished_clients_leave_others_served(model: &ModelInfo) {
    let who = model.name.to_string();
    let Some(mut server) = start(model, None, &[], Some("info")) else { return };
    let addr = udp_addr(&server);
    let mut survivor = Flow::new(addr);
    survivor.echo(b"before").unwrap_or_else(|e| panic!("{who}: {e}"));
    for _ in 0..50 {
        let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
        gone.send_to(&[1u8; 512], addr).unwrap();
        drop(gone); // its echo, if not already there, finds the port closed
    }
    for i in 0..20u32 {
        survivor.echo(&i.to_be_bytes()).unwrap_or_else(|e| panic!("{who}: after vanished clients: {e}"));
    }
    let counters = shutdown_counters(&mut server, &who);
    // Every datagram received was either echoed or, if the kernel reported
    // the closed port to the server, counted as a failed send. (How many of
    // the 50 arrive is the kernel's business: sent in a burst with no retry,
    // some can be dropped on a loaded machine before the server sees them.)
    let sent = u64::from(survivor.datagrams + survivor.retries) + 50;
    let received = counters["received"];
    assert!(received <= sent && received >= u64::from(survivor.datagrams), "{who}: {counters:?}, sent {sent}");
    assert_eq!(counters["echoed"] + counters["send_failed"], received, "{who}: {counters:?}");
}

/// IPv6 loopback: `udp:[::1]:0`.
fn ipv6_loopback(model: &ModelInfo) {
    let Some(server) = start(model, Some("udp:[::1]:0"), &[], None) else { return };
    let addr = udp_addr(&server);
    assert!(addr.is_ipv6(), "{}: listening on {addr}", model.name);
    let mut rng = fastrand::Rng::with_seed(6);
    let mut flows: Vec<Flow> = (0..4).map(|_| Flow::new(addr)).collect();
    for flow in &mut flows {
        for size in [1, 1400, 4096] {
            flow.echo(&random_bytes(&mut rng, size)).unwrap_or_else(|e| panic!("{} over ::1: {e}", model.name));
        }
    }
}

/// `--batch 8` (models that declare it): bursts of 8 datagrams per flow
/// from 8 flows, every echo back to its flow, whole. (64 datagrams of up
/// to 1 KiB fit the kernel's default receive buffer, 208 KiB counted with
/// the kernel's overhead per datagram: a larger burst would be dropped by
/// the kernel before a one-thread server could take it.) A model that does not
/// declare it must not take the flag (a usage error, exit 2).
fn batch(model: &ModelInfo) {
    let who = model.name.to_string();
    if model.datagrams.is_some() && !model.datagram_batch {
        let (status, stderr) = run_to_exit_with(model, "udp:127.0.0.1:0", &["--batch", "8"], IO_TIMEOUT);
        assert_eq!(status.code(), Some(2), "{who} declares no --batch: {stderr:?}");
        return;
    }
    let Some(server) = start(model, None, &["--batch", "8", "--buffer-size", "1024"], None) else { return };
    let addr = udp_addr(&server);
    let mut rng = fastrand::Rng::with_seed(8);
    let mut flows: Vec<Flow> = (0..8).map(|_| Flow::new(addr)).collect();
    let mut counts = Vec::new();
    for round in 0..4 {
        // Every flow sends its burst first, so that the server finds many
        // datagrams queued; then each flow collects its echoes.
        let bursts: Vec<Vec<Vec<u8>>> = flows
            .iter()
            .map(|flow| {
                let burst: Vec<Vec<u8>> = (0..8)
                    .map(|_| {
                        let len = rng.usize(1..=1024);
                        random_bytes(&mut rng, len)
                    })
                    .collect();
                for msg in &burst {
                    flow.socket.send_to(msg, addr).unwrap();
                }
                burst
            })
            .collect();
        for (id, (flow, burst)) in flows.iter_mut().zip(bursts).enumerate() {
            let mut missing = burst.clone();
            let mut buf = vec![0u8; UDP_PAYLOAD_MAX + 1];
            flow.socket.set_read_timeout(Some(ECHO_TIMEOUT)).unwrap();
            while !missing.is_empty() {
                match flow.socket.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        assert_eq!(from, addr, "{who}: round {round}, flow {id}: an echo from elsewhere");
                        match missing.iter().position(|m| m[..] == buf[..n]) {
                            Some(at) => drop(missing.swap_remove(at)),
                            // A late echo of a datagram sent again earlier.
                            None if flow.sent.iter().any(|m| m[..] == buf[..n]) => {}
                            None => panic!("{who}: round {round}, flow {id}: a wrong {n} B echo"),
                        }
                    }
                    Err(_) => break, // the rest were lost: sent again below, one at a time
                }
            }
            for msg in missing {
                // `echo` counts the resends beyond this one; this one is a retry too.
                flow.retries += 1;
                flow.echo(&msg).unwrap_or_else(|e| panic!("{who}: round {round}, flow {id}: {e}"));
            }
            flow.sent.extend(burst);
            counts.push((8, 0));
        }
    }
    counts.extend(flows.iter().map(|f| (0, f.retries)));
    assert_few_retries(&who, &counts);
}

/// The UDP-only options given with a stream address would do nothing: they
/// are refused (exit 2, one line naming them) by every model that takes them.
fn udp_only_options_refused_on_streams(model: &ModelInfo) {
    let mut cases: Vec<(&[&str], &str)> = Vec::new();
    if model.datagrams.is_some() {
        cases.push((&["--recv-buffer", "65536"], "--recv-buffer"));
        cases.push((&["--send-buffer", "65536"], "--send-buffer"));
    }
    if model.datagram_batch {
        cases.push((&["--batch", "8"], "--batch"));
        cases.push((&["--batch", "8", "--recv-buffer", "65536"], "--batch and --recv-buffer"));
    }
    for (args, named) in cases {
        let (status, stderr) = run_to_exit_with(model, "127.0.0.1:0", args, IO_TIMEOUT);
        assert_eq!(status.code(), Some(2), "{} {args:?} over tcp: {stderr:?}", model.name);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{}: {stderr:?}", model.name);
        assert!(stderr.contains(&format!("{named} applies over udp only")), "{}: {stderr:?}", model.name);
    }
}

/// An idle datagram server sleeps: no CPU over a second (no busy loop).
fn idle_server_uses_no_cpu(model: &ModelInfo) {
    let Some(server) = start(model, None, &[], None) else { return };
    let mut flow = Flow::new(udp_addr(&server));
    flow.echo(b"wake up").unwrap_or_else(|e| panic!("{}: {e}", model.name));
    // Start-up work settled (a runtime's threads park, a pool's spin down):
    // every thread asleep at once.
    server.wait_until_asleep(Duration::from_secs(5)).unwrap_or_else(|e| panic!("{}: {e}", model.name));
    let window = Duration::from_secs(1);
    let start_cpu = server.cpu_secs();
    std::thread::sleep(window); // measurement window, not synchronisation
    let used = server.cpu_secs() - start_cpu;
    assert!(used < 0.05, "{}: an idle server used {used:.3} s of CPU in 1 s (spinning?)", model.name);
}

/// Every case, for one model.
macro_rules! udp_tests {
    ($($model:ident),* $(,)?) => {
        $(
            mod $model {
                /// What the model publishes (`list-models --json`).
                fn info() -> echo_common::ModelInfo {
                    echo_servers::models::$model::MODEL.info()
                }
                #[test]
                fn echo_from_many_flows() {
                    super::echo_from_many_flows(&info())
                }
                #[test]
                fn largest_datagram() {
                    super::largest_datagram(&info())
                }
                #[test]
                fn oversize_dropped_and_counted() {
                    super::oversize_dropped_and_counted(&info())
                }
                #[test]
                fn sigterm_exits_cleanly() {
                    super::sigterm_exits_cleanly(&info())
                }
                #[test]
                fn vanished_clients_leave_others_served() {
                    super::vanished_clients_leave_others_served(&info())
                }
                #[test]
                fn address_in_use_exits_1() {
                    super::address_in_use_exits_1(&info())
                }
                #[test]
                fn ipv6_loopback() {
                    super::ipv6_loopback(&info())
                }
                #[test]
                fn batch() {
                    super::batch(&info())
                }
                #[test]
                fn udp_only_options_refused_on_streams() {
                    super::udp_only_options_refused_on_streams(&info())
                }
                #[test]
                fn idle_server_uses_no_cpu() {
                    super::idle_server_uses_no_cpu(&info())
                }
            }
        )*
    };
}

echo_servers::for_each_model!(udp_tests);

/// At least the models the issue names serve datagrams, and their
/// declarations say how.
#[test]
fn the_datagram_models_are_declared() {
    let serving: Vec<&str> =
        echo_servers::models::ALL.iter().filter(|m| m.datagrams.is_some()).map(|m| m.name.as_ref()).collect();
    for name in ["iterative", "pool", "reactors", "tokio", "may", "uring"] {
        assert!(serving.contains(&name), "{name} must serve datagrams; serving: {serving:?}");
    }
    for name in ["iterative", "reactors"] {
        let info = echo_servers::models::ALL.iter().find(|m| m.name == name).unwrap();
        assert!(info.datagram_batch, "{name} takes --batch");
    }
}
