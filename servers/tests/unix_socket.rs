//! The rules of a Unix socket path, which every model shares (binding is
//! common code, so one model exercises them): a stale socket file is
//! replaced, a live one is "address in use", anything else at the path is
//! left alone, a path too long for `sun_path` is refused with one line.

mod common;

use std::os::unix::net::UnixListener;
use std::time::Duration;

use common::*;

fn model() -> &'static ModelInfo {
    echo_servers::models::ALL.iter().find(|m| m.name == echo_servers::models::thread::MODEL.name).unwrap()
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    // A listener dropped without unlinking leaves its file, as a crashed server does.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let addr = format!("unix:{}", path.display());
    let server = Server::start_with(model(), Transport::Unix, Launch { addr: Some(&addr), ..Launch::default() });
    let mut client = connect(&server.endpoint);
    roundtrip(&mut client, b"over a replaced socket file").unwrap();
}

#[test]
fn a_live_socket_is_address_in_use_and_keeps_serving() {
    let server = Server::start(model(), Transport::Unix, &[]);
    let (status, stderr) = run_to_exit(model(), &server.endpoint.to_string(), Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use") && stderr.trim_end().lines().count() == 1, "{stderr:?}");
    let mut client = connect(&server.endpoint);
    roundtrip(&mut client, b"the first server still owns its socket").unwrap();
}

#[test]
fn a_file_that_is_not_a_socket_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precious.txt");
    std::fs::write(&path, b"keep me").unwrap();
    let (status, stderr) = run_to_exit(model(), &format!("unix:{}", path.display()), Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not a socket") && stderr.trim_end().lines().count() == 1, "{stderr:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
}

#[test]
fn a_path_too_long_for_sun_path_is_one_line_and_exit_1() {
    let addr = format!("unix:/tmp/{}", "x".repeat(120));
    let (status, stderr) = run_to_exit(model(), &addr, Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the limit is 107") && stderr.trim_end().lines().count() == 1, "{stderr:?}");
}

#[test]
fn a_clean_shutdown_leaves_a_newer_servers_socket_file_alone() {
    // (That a clean shutdown removes its own file is checked for every model
    // by the contract's sigterm case.)
    let mut server = Server::start(model(), Transport::Unix, &[]);
    let Endpoint::Unix(path) = server.endpoint.clone() else { unreachable!("a unix server") };
    // Another server took the path over (removed and re-created the file):
    // ours must not remove the newcomer's socket when it stops.
    std::fs::remove_file(&path).unwrap();
    let newcomer = UnixListener::bind(&path).unwrap();
    let (status, _) = server.terminate(Duration::from_secs(5));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert!(path.exists(), "the newer socket file was removed");
    drop(newcomer);
}

#[test]
fn a_live_socket_with_a_full_backlog_is_address_in_use_not_a_hang() {
    use socket2::{Domain, SockAddr, Socket, Type};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.sock");
    let addr = SockAddr::unix(&path).unwrap();
    let listener = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    listener.bind(&addr).unwrap();
    listener.listen(1).unwrap(); // never accepts
    // Fill the backlog: non-blocking connects succeed until it is full.
    let mut queued = Vec::new();
    for _ in 0..8 {
        let client = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        client.set_nonblocking(true).unwrap();
        if client.connect(&addr).is_err() {
            break; // EAGAIN: full
        }
        queued.push(client);
    }
    let (status, stderr) = run_to_exit(model(), &format!("unix:{}", path.display()), Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr:?}");
    drop(queued);
}
