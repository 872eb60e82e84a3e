//! The echo contract, checked for every registered model over every
//! transport by one harness: each case is a function taking a model's
//! declaration and a transport, and the registry's own list
//! ([`echo_servers::for_each_model!`]) makes one `#[test]` per (model,
//! transport, case), e.g. `tokio::unix::half_close`. A registered model
//! cannot be without contract tests: there is no second list to forget.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use common::*;

/// `tokio over unix`, for messages.
fn who(model: &ModelInfo, transport: Transport) -> String {
    format!("{} over {transport}", model.name)
}

/// Payloads from 1 B to 4 MiB, each echoed byte-for-byte.
fn payloads_up_to_4mib(model: &ModelInfo, transport: Transport) {
    let who = who(model, transport);
    let server = Server::start(model, transport, &[]);
    let mut rng = fastrand::Rng::with_seed(0xEC40);
    let mut sizes = vec![1, 2, 4095, 4096, 4097, 65_537, 1 << 20, 4 << 20];
    sizes.extend((0..4).map(|_| rng.usize(1..=4 << 20)));
    for size in sizes {
        let payload = random_bytes(&mut rng, size);
        let received = echo_all(&server.endpoint, payload.clone());
        assert_eq!(received.len(), size, "{who}: echo of {size} B has the wrong length");
        assert!(received == payload, "{who}: echo of {size} B differs");
    }
}

/// 200 concurrent clients × 100 messages each, every echo verified.
fn concurrent_clients(model: &ModelInfo, transport: Transport) {
    let server = Server::start(model, transport, &[]);
    let clients: Vec<_> = (0..200u64)
        .map(|id| {
            let endpoint = server.endpoint.clone();
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(id);
                let mut stream = connect(&endpoint);
                for seq in 0..100 {
                    let len = rng.usize(1..=512);
                    let msg = random_bytes(&mut rng, len);
                    roundtrip(&mut stream, &msg).unwrap_or_else(|e| panic!("client {id} message {seq}: {e}"));
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
}

/// The client sends, shuts its write side, receives everything, then EOF.
fn half_close(model: &ModelInfo, transport: Transport) {
    let who = who(model, transport);
    let server = Server::start(model, transport, &[]);
    let mut stream = connect(&server.endpoint);
    let msg = b"half-close: everything sent before the FIN comes back".repeat(100);
    stream.write_all(&msg).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).expect("read to EOF");
    assert!(back == msg, "{who}: half-closed echo differs");
    // read_to_end returned, so EOF was seen; another read stays at EOF
    assert_eq!(stream.read(&mut [0u8; 16]).unwrap(), 0);
}

/// A client vanishing mid-stream with unread echo data (a TCP RST with
/// SO_LINGER 0; on a Unix socket, a close with data queued) ends its
/// connection only.
fn reset_client_leaves_others_served(model: &ModelInfo, transport: Transport) {
    let who = who(model, transport);
    let mut server = Server::start(model, transport, &[]);
    let mut survivor = connect(&server.endpoint);
    roundtrip(&mut survivor, b"before").unwrap();
    for _ in 0..20 {
        let mut rude = connect(&server.endpoint);
        rude.write_all(&[7u8; 100_000]).unwrap();
        if transport == Transport::Tcp {
            rude.set_linger(Some(Duration::ZERO)).unwrap();
        }
        drop(rude); // RST (or ECONNRESET for the server), with echo data unread
    }
    roundtrip(&mut survivor, b"after").unwrap();
    if model.serves_at_once == Some(1) {
        // A model that serves one connection at a time (`iterative`) serves
        // `fresh` only after the survivor leaves and the 20 reset
        // connections, queued in the backlog, have been taken and ended.
        drop(survivor);
    }
    let mut fresh = connect(&server.endpoint);
    roundtrip(&mut fresh, b"fresh").unwrap();
    assert!(server.is_running(), "{who}: server died after client resets");
}

/// A client that sends up to 64 MiB and never reads is held back by the
/// transport's flow control, not by server memory; others are still served.
fn non_reading_client_bounded_memory(model: &ModelInfo, transport: Transport) {
    let who = who(model, transport);
    let server = Server::start(model, transport, &[]);
    // A model that serves fewer than three connections at once (`iterative`:
    // one) serves them in turn: the warm-up connection leaves so that the
    // hog is served (its echo blocked by the hog not reading) rather than
    // left in the backlog, and the hog leaves before another client can be
    // served.
    let in_turn = model.serves_at_once.is_some_and(|n| n < 3);
    let mut warm = Some(connect(&server.endpoint));
    roundtrip(warm.as_mut().unwrap(), b"warm up").unwrap();
    let before_kib = server.rss_kib();
    if in_turn {
        warm = None;
    }

    let mut hog = connect(&server.endpoint);
    hog.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    let chunk = vec![0x5Au8; 64 * 1024];
    let mut sent = 0usize;
    while sent < 64 << 20 {
        match hog.write(&chunk) {
            Ok(n) => sent += n,
            // the socket buffers on both sides are full: backpressure reached
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("{who}: writing to the server failed: {e}"),
        }
    }
    assert!(sent < 64 << 20, "{who}: server absorbed 64 MiB from a client that never reads");
    let after_kib = server.rss_kib();
    let grown_kib = after_kib.saturating_sub(before_kib);
    assert!(grown_kib < 16 * 1024, "{who}: RSS grew by {grown_kib} KiB (sent {sent} B)");

    let mut hog = Some(hog);
    if in_turn {
        drop(hog.take()); // served in turn: the hog must leave first
    }
    let mut other = connect(&server.endpoint);
    roundtrip(&mut other, b"still served").unwrap();
    if let Some(warm) = &mut warm {
        roundtrip(warm, b"and so is the old one").unwrap();
    }
    drop(hog);
}

/// A client that sends until its send blocks and never reads costs the
/// server no CPU: its connection waits, asleep, for the client to read or
/// leave — no busy re-arming, no spinning worker.
fn non_reading_client_no_spin(model: &ModelInfo, transport: Transport) {
    let who = who(model, transport);
    let server = Server::start(model, transport, &[]);
    let mut hog = connect(&server.endpoint);
    // A write that waits this long found the buffers of both directions
    // full with nothing moving: the server has stopped reading because its
    // echo is blocked. That is the condition waited for, with a deadline.
    let stalled = Duration::from_millis(500);
    hog.set_write_timeout(Some(stalled)).unwrap();
    let chunk = vec![0x5Au8; 64 * 1024];
    let mut sent = 0usize;
    loop {
        match hog.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("{who}: writing to the server failed: {e}"),
        }
        assert!(sent < 64 << 20, "{who}: server absorbed 64 MiB from a client that never reads");
    }

    // A measurement window, not synchronisation: the server's CPU while
    // nothing can move. Asleep it spends a few ms; a spin, the whole window
    // on every CPU it has.
    let window = Duration::from_millis(1500);
    let start_cpu = server.cpu_secs();
    std::thread::sleep(window);
    let used = server.cpu_secs() - start_cpu;
    assert!(
        used < 0.2,
        "{who}: server used {used:.2} s of CPU in {:.1} s with one client that does not read (sent {sent} B): spinning",
        window.as_secs_f64()
    );

    // The connection is still served: the echo that waited comes back.
    let mut back = vec![0u8; chunk.len()];
    hog.read_exact(&mut back).unwrap_or_else(|e| panic!("{who}: the blocked echo never came back: {e}"));
    assert!(back.iter().all(|&b| b == 0x5A), "{who}: the echo differs");
}

/// Connections over `--max-connections` are closed at once; those under it
/// are served, and a freed slot is reused.
///
/// A model that serves only so many connections at once (`serves_at_once`:
/// `iterative` one, `prefork` one per child) and never accepts more leaves
/// the connections over its cap waiting in the listen backlog instead of
/// closing them. For those, a connection over the cap must get no echo while
/// the cap is reached, and must be served once a slot frees. Either way a
/// connection over the cap is never served.
fn max_connections(model: &ModelInfo, transport: Transport) {
    let who = who(model, transport);
    let cap = 4;
    let server = Server::start(model, transport, &["--max-connections", &cap.to_string()]);
    // `iterative` serves one connection at once whatever the cap.
    let served = model.serves_at_once.map_or(cap, |n| cap.min(n as usize));
    let mut held: Vec<Client> = (0..served).map(|_| connect(&server.endpoint)).collect();
    for stream in &mut held {
        roundtrip(stream, b"under the limit").unwrap();
    }
    let mut over = connect(&server.endpoint);
    // Sent so that a server that wrongly serves it echoes something back.
    // The write fails if the server has closed the connection already: the
    // read below then sees the close.
    let _ = over.write_all(b"over");
    if model.serves_at_once.is_some() {
        // Long enough for a close; a waiting connection stays silent.
        over.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    }
    let mut buf = [0u8; 16];
    let waiting = match over.read(&mut buf) {
        Ok(0) => false,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) && model.serves_at_once.is_some() => {
            true
        }
        Ok(n) => panic!("{who}: a connection over the limit was served ({n} B echoed)"),
        other => panic!("{who}: connection over the limit was not closed: {other:?}"),
    };
    for stream in &mut held {
        roundtrip(stream, b"still served").unwrap();
    }
    drop(held.pop());
    if waiting {
        // The connection that waited in the backlog takes the freed slot.
        over.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut back = [0u8; 4];
        over.read_exact(&mut back).unwrap_or_else(|e| panic!("{who}: the waiting connection was not served: {e}"));
        assert_eq!(&back, b"over", "{who}: the waiting connection's echo differs");
        return;
    }
    // The slot frees once the server sees the close; retry until it has.
    eventually(Duration::from_secs(10), || {
        let mut stream = try_connect(&server.endpoint, Duration::from_secs(1))?;
        roundtrip(&mut stream, b"freed slot")
    })
    .unwrap_or_else(|e| panic!("{who}: a freed slot was not reused: {e}"));
}

/// Under RLIMIT_NOFILE 64, 200 connections: no spinning on EMFILE, and the
/// server recovers once they are closed.
fn fd_exhaustion(model: &ModelInfo, transport: Transport) {
    let who = who(model, transport);
    let nofile = 64;
    let server = Server::start_with(model, transport, Launch { nofile: Some(nofile), ..Launch::default() });
    let mut flood: Vec<Client> = (0..200).map(|_| connect(&server.endpoint)).collect();
    // Wait until the server has taken from the flood all it will take. A
    // model that would hold more connections than its descriptors allow
    // runs into the limit: its accept fails with EMFILE, which it logs (a
    // warning, throttled to one line a second). One that hands each
    // connection to a child, or serves only so many at once, never does:
    // it has taken its share once that share is served.
    let served = model.serves_at_once.map_or(flood.len(), |n| flood.len().min(n as usize));
    let hits_the_limit = !model.child_processes && served as u64 >= nofile;
    if hits_the_limit {
        server
            .wait_for_stderr("accept failed", Duration::from_secs(15))
            .unwrap_or_else(|stderr| panic!("{who}: no EMFILE logged with {} connections: {stderr:?}", flood.len()));
    } else {
        for (n, stream) in flood.iter_mut().take(served).enumerate() {
            roundtrip(stream, b"served").unwrap_or_else(|e| panic!("{who}: connection {n} of {served} served: {e}"));
        }
    }
    let window = Duration::from_secs(1);
    let start_cpu = server.cpu_secs();
    std::thread::sleep(window); // measurement window, not synchronisation
    let used = server.cpu_secs() - start_cpu;
    assert!(used < 0.5 * window.as_secs_f64(), "{who}: server used {used:.2} s of CPU in 1 s at EMFILE (spinning?)");
    drop(flood);
    eventually(Duration::from_secs(15), || {
        let mut stream = try_connect(&server.endpoint, Duration::from_secs(1))?;
        roundtrip(&mut stream, b"after exhaustion")
    })
    .unwrap_or_else(|e| panic!("{who}: not serving after fd exhaustion: {e}"));
}

/// SIGTERM with many live connections: exit 0 within 2 s, nothing left
/// behind — no process, and no socket file.
fn sigterm_with_live_connections(model: &ModelInfo, transport: Transport) {
    let who = who(model, transport);
    let mut server = Server::start(model, transport, &[]);
    let live = if model.child_processes { 100 } else { 1000 };
    // A model that serves only so many connections at once (`pool`: its
    // workers) leaves the rest waiting: only those get an echo.
    let served = model.serves_at_once.map_or(live, |n| live.min(n as usize).min(100));
    let mut conns: Vec<Client> = (0..live).map(|_| connect(&server.endpoint)).collect();
    for stream in conns.iter_mut().take(served) {
        roundtrip(stream, b"live").unwrap();
    }
    let tree = server.tree();
    if model.child_processes {
        // One child per live connection (`process`), or one per connection
        // served at once (`prefork`: its preforked children).
        let children = model.serves_at_once.map_or(live, |n| live.min(n as usize));
        assert!(tree.len() > children, "{who}: expected {children} children, tree is {}", tree.len());
    }
    let (status, took) = server.terminate(Duration::from_secs(5));
    let status = status.unwrap_or_else(|| panic!("{who}: still running 5 s after SIGTERM"));
    assert_eq!(status.code(), Some(0), "{who}: exit status {status:?}");
    assert!(took <= Duration::from_secs(2), "{who}: took {took:?} to exit");
    // Read to the pipe's close: a second line written late would show.
    let stdout = server.stdout();
    assert_eq!(stdout.lines().count(), 1, "{who}: stdout is the `listening on` line alone: {stdout:?}");
    eventually(Duration::from_secs(2), || match tree.iter().find(|&&pid| alive(pid)) {
        Some(pid) => Err(std::io::Error::other(format!("pid {pid} still alive"))),
        None => Ok(()),
    })
    .unwrap_or_else(|e| panic!("{who}: {e} after shutdown"));
    if let Endpoint::Unix(path) = &server.endpoint {
        assert!(!path.exists(), "{who}: the socket file outlived a clean shutdown");
    }
    drop(conns);
}

/// An address in use, or unparsable: exit 1 and one line on stderr.
fn bad_address_exits_1(model: &ModelInfo, transport: Transport) {
    let who = who(model, transport);
    let server = Server::start(model, transport, &[]);
    let (status, stderr) = run_to_exit(model, &server.endpoint.to_string(), Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{who}: address in use: {status:?}, stderr {stderr:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{who}: expected one line, got {stderr:?}");
    assert!(stderr.contains("in use") && !stderr.contains("panicked"), "{who}: {stderr:?}");

    let bad = match transport {
        Transport::Tcp => "not-an-address".to_owned(),
        Transport::Unix => format!("unix:/{}", "x".repeat(200)),
        Transport::Udp => unreachable!("the stream contract runs over tcp and unix; udp: tests/udp.rs"),
    };
    let (status, stderr) = run_to_exit(model, &bad, Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{who}: bad address: {status:?}, stderr {stderr:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{who}: expected one line, got {stderr:?}");
}

/// IPv6 loopback works (TCP only: a Unix socket has no IP version).
fn ipv6_loopback(model: &ModelInfo) {
    let server = Server::start_with(model, Transport::Tcp, Launch { addr: Some("[::1]:0"), ..Launch::default() });
    assert!(matches!(server.endpoint, Endpoint::Tcp(addr) if addr.is_ipv6()));
    let mut stream = connect(&server.endpoint);
    roundtrip(&mut stream, b"over ::1").unwrap();
}

/// Every case, for one model over one transport.
macro_rules! every_case {
    ($info:expr, $transport:expr) => {
        #[test]
        fn payloads_up_to_4mib() {
            super::super::payloads_up_to_4mib($info, $transport)
        }
        #[test]
        fn concurrent_clients() {
            super::super::concurrent_clients($info, $transport)
        }
        #[test]
        fn half_close() {
            super::super::half_close($info, $transport)
        }
        #[test]
        fn reset_client_leaves_others_served() {
            super::super::reset_client_leaves_others_served($info, $transport)
        }
        #[test]
        fn non_reading_client_bounded_memory() {
            super::super::non_reading_client_bounded_memory($info, $transport)
        }
        #[test]
        fn non_reading_client_no_spin() {
            super::super::non_reading_client_no_spin($info, $transport)
        }
        #[test]
        fn max_connections() {
            super::super::max_connections($info, $transport)
        }
        #[test]
        fn fd_exhaustion() {
            super::super::fd_exhaustion($info, $transport)
        }
        #[test]
        fn sigterm_with_live_connections() {
            super::super::sigterm_with_live_connections($info, $transport)
        }
        #[test]
        fn bad_address_exits_1() {
            super::super::bad_address_exits_1($info, $transport)
        }
    };
}

/// One module per registered model, one per transport inside it.
macro_rules! contract_tests {
    ($($model:ident),* $(,)?) => {
        $(
            mod $model {
                /// What the model publishes (`list-models --json`).
                fn info() -> echo_common::ModelInfo {
                    echo_servers::models::$model::MODEL.info()
                }
                mod tcp {
                    use super::info;
                    every_case!(&info(), echo_common::Transport::Tcp);
                    #[test]
                    fn ipv6_loopback() {
                        super::super::ipv6_loopback(&info())
                    }
                }
                mod unix {
                    use super::info;
                    every_case!(&info(), echo_common::Transport::Unix);
                }
            }
        )*
        /// The models this file generated tests for.
        const TESTED: &[&str] = &[$(stringify!($model)),*];
    };
}

echo_servers::for_each_model!(contract_tests);

/// The tests above are generated from the registry's own list, so a model
/// cannot be registered without them. What can still drift is what the
/// binary publishes (the benchmark reads that) against what was compiled,
/// and a module whose name does not match its model's.
#[test]
fn every_registered_model_has_contract_tests_and_is_published() {
    let registered: Vec<String> = echo_servers::models::ALL.iter().map(|m| m.name.replace('-', "_")).collect();
    assert_eq!(registered, TESTED, "a model's module and its declared name disagree");
    let output =
        std::process::Command::new(env!("CARGO_BIN_EXE_echo-server")).args(["list-models", "--json"]).output().unwrap();
    assert!(output.status.success());
    let published: Vec<ModelInfo> = serde_json::from_slice(&output.stdout).expect("list-models --json parses");
    let expected: Vec<ModelInfo> = echo_servers::models::ALL.to_vec();
    assert_eq!(published, expected);
}

/// may's scheduler opens an epoll instance and an eventfd per worker as it
/// starts, and panicked (exit 101, a backtrace) when one failed. Short of
/// descriptors, may must fail like every model: exit 1, one line naming
/// the step. The limits are low enough to fail whatever the test process
/// lets the server inherit: `--workers` is given, since its default (the
/// CPUs) would make the need depend on the machine.
#[test]
fn may_short_of_descriptors_exits_1_with_one_line() {
    let may = &echo_servers::models::may::MODEL.info();
    for (nofile, workers) in [(64, "100"), (7, "2"), (8, "2"), (9, "2"), (10, "2")] {
        let who = format!("may --workers {workers} under RLIMIT_NOFILE {nofile}");
        let launch = Launch { args: &["--workers", workers], nofile: Some(nofile), ..Launch::default() };
        let (status, stderr) = run_launch_to_exit(may, launch, Duration::from_secs(10));
        assert_eq!(status.code(), Some(1), "{who}: {status:?}, stderr {stderr:?}");
        assert!(!stderr.contains("panicked"), "{who}: {stderr:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{who}: expected one line, got {stderr:?}");
        assert!(stderr.starts_with("echo-server: "), "{who}: {stderr:?}");
        if nofile == 64 {
            // The step that failed, and why: not an earlier one.
            assert!(
                stderr.contains("cannot start may's scheduler: 100 workers need 200 descriptors")
                    && stderr.contains("RLIMIT_NOFILE 64"),
                "{who}: {stderr:?}"
            );
        }
    }
}

#[test]
fn unknown_model_is_a_usage_error() {
    let run = |model: &str| std::process::Command::new(env!("CARGO_BIN_EXE_echo-server")).arg(model).output().unwrap();
    let output = run("fibers");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unrecognized subcommand 'fibers'"), "{stderr}");
    // The subcommand is the model: the error says where the models are listed.
    assert!(stderr.contains("`echo-server list-models`"), "{stderr}");
    // A near miss keeps clap's own suggestion, and gets the pointer too.
    let output = run("tokoi");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("'tokio'") && stderr.contains("`echo-server list-models`"), "{stderr}");
}

#[test]
fn a_flag_the_model_does_not_take_is_a_usage_error() {
    let run =
        |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_echo-server")).args(args).output().unwrap();
    let output = run(&["tokio", "--queue", "5"]);
    assert_eq!(output.status.code(), Some(2), "tokio takes no --queue");
    assert!(String::from_utf8_lossy(&output.stderr).contains("unexpected argument '--queue'"));
    let output = run(&["pool", "--backlog", "-1"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("-1 is not in 1.."),
        "a range error, not 'unexpected argument'"
    );
    // Each model's help shows its own flags and defaults.
    let help = String::from_utf8_lossy(&run(&["pool", "--help"]).stdout).into_owned();
    assert!(help.contains("--queue") && help.contains("[default: 128]"), "{help}");
    let help = String::from_utf8_lossy(&run(&["process", "--help"]).stdout).into_owned();
    assert!(help.contains("[default: 1024]") && !help.contains("--workers") && !help.contains("child-of"), "{help}");
}
