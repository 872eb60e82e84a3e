//! The echo contract, checked for every model by one harness: each case is a
//! function taking a [`Model`], and `every_model!` makes one `#[test]` per
//! (model, case) pair, e.g. `tokio::half_close`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use socket2::SockRef;

/// Payloads from 1 B to 4 MiB, each echoed byte-for-byte.
fn payloads_up_to_4mib(model: Model) {
    let server = Server::start(model, &[]);
    let mut rng = fastrand::Rng::with_seed(0xEC40);
    let mut sizes = vec![1, 2, 4095, 4096, 4097, 65_537, 1 << 20, 4 << 20];
    sizes.extend((0..4).map(|_| rng.usize(1..=4 << 20)));
    for size in sizes {
        let payload = random_bytes(&mut rng, size);
        let received = echo_all(server.addr, payload.clone());
        assert_eq!(received.len(), size, "{model}: echo of {size} B has the wrong length");
        assert!(received == payload, "{model}: echo of {size} B differs");
    }
}

/// 200 concurrent clients × 100 messages each, every echo verified.
fn concurrent_clients(model: Model) {
    let server = Server::start(model, &[]);
    let clients: Vec<_> = (0..200u64)
        .map(|id| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(id);
                let mut stream = connect(addr);
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
fn half_close(model: Model) {
    let server = Server::start(model, &[]);
    let mut stream = connect(server.addr);
    let msg = b"half-close: everything sent before the FIN comes back".repeat(100);
    stream.write_all(&msg).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).expect("read to EOF");
    assert!(back == msg, "{model}: half-closed echo differs");
    // read_to_end returned, so EOF was seen; another read stays at EOF
    assert_eq!(stream.read(&mut [0u8; 16]).unwrap(), 0);
}

/// A client resetting mid-stream (SO_LINGER 0) ends its connection only.
fn reset_client_leaves_others_served(model: Model) {
    let mut server = Server::start(model, &[]);
    let mut survivor = connect(server.addr);
    roundtrip(&mut survivor, b"before").unwrap();
    for _ in 0..20 {
        let mut rude = connect(server.addr);
        rude.write_all(&[7u8; 100_000]).unwrap();
        SockRef::from(&rude).set_linger(Some(Duration::ZERO)).unwrap();
        drop(rude); // RST, with echo data unread
    }
    roundtrip(&mut survivor, b"after").unwrap();
    let mut fresh = connect(server.addr);
    roundtrip(&mut fresh, b"fresh").unwrap();
    assert!(server.is_running(), "{model}: server died after client resets");
}

/// A client that sends up to 64 MiB and never reads is held back by TCP, not
/// by server memory; others are still served.
fn non_reading_client_bounded_memory(model: Model) {
    let server = Server::start(model, &[]);
    let mut warm = connect(server.addr);
    roundtrip(&mut warm, b"warm up").unwrap();
    let before_kib = server.rss_kib();

    let mut hog = connect(server.addr);
    hog.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    let chunk = vec![0x5Au8; 64 * 1024];
    let mut sent = 0usize;
    while sent < 64 << 20 {
        match hog.write(&chunk) {
            Ok(n) => sent += n,
            // the socket buffers on both sides are full: backpressure reached
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("{model}: writing to the server failed: {e}"),
        }
    }
    assert!(sent < 64 << 20, "{model}: server absorbed 64 MiB from a client that never reads");
    let after_kib = server.rss_kib();
    let grown_kib = after_kib.saturating_sub(before_kib);
    assert!(grown_kib < 16 * 1024, "{model}: RSS grew by {grown_kib} KiB (sent {sent} B)");

    let mut other = connect(server.addr);
    roundtrip(&mut other, b"still served").unwrap();
    roundtrip(&mut warm, b"and so is the old one").unwrap();
    drop(hog);
}

/// Connections over `--max-connections` are closed at once; those under it
/// are served, and a freed slot is reused.
fn max_connections(model: Model) {
    let server = Server::start(model, &["--max-connections", "4"]);
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect(server.addr)).collect();
    for stream in &mut held {
        roundtrip(stream, b"under the limit").unwrap();
    }
    let mut over = connect(server.addr);
    let mut buf = [0u8; 16];
    match over.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("{model}: connection over the limit was not closed: {other:?}"),
    }
    for stream in &mut held {
        roundtrip(stream, b"still served").unwrap();
    }
    drop(held.pop());
    // The slot frees once the server sees the close; retry until it has.
    eventually(Duration::from_secs(10), || {
        let mut stream = connect(server.addr);
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        roundtrip(&mut stream, b"freed slot")
    })
    .unwrap_or_else(|e| panic!("{model}: a freed slot was not reused: {e}"));
}

/// Under RLIMIT_NOFILE 64, 200 connections: no spinning on EMFILE, and the
/// server recovers once they are closed.
fn fd_exhaustion(model: Model) {
    let server = Server::start_with(model, Launch { nofile: Some(64), ..Launch::default() });
    let flood: Vec<TcpStream> = (0..200).map(|_| connect(server.addr)).collect();
    std::thread::sleep(Duration::from_millis(500)); // let the server run into the limit
    let window = Duration::from_secs(1);
    let start_cpu = server.cpu_secs();
    std::thread::sleep(window); // measurement window, not synchronisation
    let used = server.cpu_secs() - start_cpu;
    assert!(used < 0.5 * window.as_secs_f64(), "{model}: server used {used:.2} s of CPU in 1 s at EMFILE (spinning?)");
    drop(flood);
    eventually(Duration::from_secs(15), || {
        let mut stream = TcpStream::connect_timeout(&server.addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        roundtrip(&mut stream, b"after exhaustion")
    })
    .unwrap_or_else(|e| panic!("{model}: not serving after fd exhaustion: {e}"));
}

/// SIGTERM with many live connections: exit 0 within 2 s, nothing left behind.
fn sigterm_with_live_connections(model: Model) {
    let mut server = Server::start(model, &[]);
    let live = if model == Model::Process { 100 } else { 1000 };
    // `pool` serves only as many connections as it has workers (128 by
    // default); the rest wait in its queue, so only those get an echo.
    let served = if model == Model::Pool { 100 } else { live };
    let mut conns: Vec<TcpStream> = (0..live).map(|_| connect(server.addr)).collect();
    for stream in conns.iter_mut().take(served) {
        roundtrip(stream, b"live").unwrap();
    }
    let tree = server.tree();
    if model == Model::Process {
        assert!(tree.len() > live, "{model}: expected {live} children, tree is {}", tree.len());
    }
    let (status, took) = server.terminate(Duration::from_secs(5));
    let status = status.unwrap_or_else(|| panic!("{model}: still running 5 s after SIGTERM"));
    assert_eq!(status.code(), Some(0), "{model}: exit status {status:?}");
    assert!(took <= Duration::from_secs(2), "{model}: took {took:?} to exit");
    eventually(Duration::from_secs(2), || match tree.iter().find(|&&pid| alive(pid)) {
        Some(pid) => Err(std::io::Error::other(format!("pid {pid} still alive"))),
        None => Ok(()),
    })
    .unwrap_or_else(|e| panic!("{model}: {e} after shutdown"));
    drop(conns);
}

/// IPv6 loopback works.
fn ipv6_loopback(model: Model) {
    let server = Server::start_with(model, Launch { addr: Some("[::1]:0"), ..Launch::default() });
    assert!(server.addr.is_ipv6());
    let mut stream = connect(server.addr);
    roundtrip(&mut stream, b"over ::1").unwrap();
}

/// An address in use, or unparsable: exit 1 and one line on stderr.
fn bad_address_exits_1(model: Model) {
    let server = Server::start(model, &[]);
    let (status, stderr) = run_to_exit(model, &server.addr.to_string(), Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{model}: address in use: {status:?}, stderr {stderr:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{model}: expected one line, got {stderr:?}");
    assert!(stderr.contains("in use") && !stderr.contains("panicked"), "{model}: {stderr:?}");

    let (status, stderr) = run_to_exit(model, "not-an-address", Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{model}: bad address: {status:?}, stderr {stderr:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{model}: expected one line, got {stderr:?}");
}

macro_rules! every_model {
    ($($module:ident => $model:ident),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[test] fn payloads_up_to_4mib() { super::payloads_up_to_4mib(Model::$model) }
            #[test] fn concurrent_clients() { super::concurrent_clients(Model::$model) }
            #[test] fn half_close() { super::half_close(Model::$model) }
            #[test] fn reset_client_leaves_others_served() { super::reset_client_leaves_others_served(Model::$model) }
            #[test] fn non_reading_client_bounded_memory() { super::non_reading_client_bounded_memory(Model::$model) }
            #[test] fn max_connections() { super::max_connections(Model::$model) }
            #[test] fn fd_exhaustion() { super::fd_exhaustion(Model::$model) }
            #[test] fn sigterm_with_live_connections() { super::sigterm_with_live_connections(Model::$model) }
            #[test] fn ipv6_loopback() { super::ipv6_loopback(Model::$model) }
            #[test] fn bad_address_exits_1() { super::bad_address_exits_1(Model::$model) }
        }
    )*};
}

every_model!(process => Process, thread => Thread, pool => Pool, tokio => Tokio, may => May);

#[test]
fn unknown_model_is_a_usage_error() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_echo-server")).arg("fibers").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid value"));
}
