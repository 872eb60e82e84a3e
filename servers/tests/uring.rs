//! The `uring` model's buffers belong to the operation in flight on them
//! (`ring::InFlight`): a connection that goes away while its receive waits,
//! or while the echo of a large message is being sent, must end without the
//! server touching memory or descriptors the kernel still holds. Exercised
//! many times over both stream transports; afterwards the server must still
//! echo a large payload exactly, and hold no descriptor more than before.

mod common;

use std::io::{self, Write};
use std::time::Duration;

use common::*;

/// Rude clients per kind and transport.
const ROUNDS: usize = 150;

/// The model under test, as it publishes itself.
fn uring() -> ModelInfo {
    echo_servers::models::uring::MODEL.info()
}

/// The server's open descriptors.
fn open_fds(server: &Server) -> usize {
    let dir = format!("/proc/{}/fd", server.pid());
    std::fs::read_dir(&dir).unwrap_or_else(|err| panic!("{dir}: {err}")).count()
}

/// Ends `client` abruptly: a TCP RST (SO_LINGER 0), or for a Unix socket a
/// close with data unread (the server's pending operations fail with
/// ECONNRESET or EPIPE).
fn reset(client: Client, transport: Transport) {
    if transport == Transport::Tcp {
        client.set_linger(Some(Duration::ZERO)).expect("SO_LINGER 0");
    }
    drop(client);
}

/// Writes without blocking until the socket takes no more: the server's
/// echo of it then waits in a send it cannot finish (we never read), and
/// its receive side is full too. Returns the bytes written.
fn fill(client: &mut Client, chunk: &[u8]) -> usize {
    client.set_nonblocking(true).expect("non-blocking");
    let mut written = 0;
    // Bounded: the socket buffers on both sides are finite.
    loop {
        match client.write(chunk) {
            Ok(n) => written += n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return written,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => panic!("writing to fill the socket: {err} after {written} bytes"),
        }
    }
}

fn connections_ended_mid_operation_leave_the_server_healthy(transport: Transport) {
    let model = uring();
    // One worker: every connection shares one ring and one table, so slots
    // and operation keys are reused as fast as possible.
    let mut server = Server::start(&model, transport, &["--workers", "1"]);
    let mut survivor = connect(&server.endpoint);
    roundtrip(&mut survivor, b"before").unwrap();
    let baseline = open_fds(&server);
    let chunk = vec![0x5Au8; 64 * 1024];
    for round in 0..ROUNDS {
        // A receive in flight, waiting for data that never comes.
        let idle = connect(&server.endpoint);
        // A message, then gone before its echo is read: the server's send
        // (or its next receive) is in flight as the connection ends.
        let mut short = connect(&server.endpoint);
        short.write_all(&chunk[..1000]).unwrap();
        // Far more than the server can echo while nobody reads: its send
        // is stuck in flight, its receive side full.
        let mut hog = connect(&server.endpoint);
        let written = fill(&mut hog, &chunk);
        assert!(written > 0, "round {round}: nothing could be written");
        // Let the server take the connections and post their operations.
        roundtrip(&mut survivor, b"between").unwrap_or_else(|err| panic!("round {round}: survivor: {err}"));
        reset(idle, transport);
        reset(short, transport);
        reset(hog, transport);
    }
    roundtrip(&mut survivor, b"after").expect("the survivor is still served");
    let mut rng = fastrand::Rng::with_seed(16);
    let payload = random_bytes(&mut rng, 4 << 20);
    assert!(echo_all(&server.endpoint, payload.clone()) == payload, "{transport:?}: a fresh client's echo differs");
    // Every ended connection's descriptor is closed: none is kept by an
    // operation whose completion was missed.
    let settled = eventually(Duration::from_secs(10), || match open_fds(&server) {
        n if n <= baseline => Ok(n),
        n => Err(io::Error::other(format!("{n} descriptors open, {baseline} before the rude clients"))),
    });
    if let Err(err) = settled {
        panic!("{transport:?}: {err}");
    }
    assert!(server.is_running(), "{transport:?}: server died; stderr: {}", server.stderr());
}

#[test]
fn tcp_connections_ended_mid_operation_leave_the_server_healthy() {
    connections_ended_mid_operation_leave_the_server_healthy(Transport::Tcp);
}

#[test]
fn unix_connections_ended_mid_operation_leave_the_server_healthy() {
    connections_ended_mid_operation_leave_the_server_healthy(Transport::Unix);
}
