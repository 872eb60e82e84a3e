//! # `process`: one child process per connection
//!
//! The inetd design. The parent only accepts, spawns and reaps: for each
//! connection it re-runs its own executable in a hidden worker mode
//! (`echo-server process --worker-of <PID>`) with the accepted socket as the
//! child's stdin, exactly as inetd hands a socket to a service. The child
//! echoes on descriptor 0 until the client leaves, then exits; the parent
//! reaps it with `waitpid` and frees its slot.
//!
//! What a connection costs: a whole process — `fork`/`exec` of this binary
//! (milliseconds, shown by the churn benchmark), its own address space,
//! page tables, heap and thread. Isolation is total: a crash takes down one
//! connection only. Hence the lower default cap of 1024 children.
//!
//! No zombies: the parent reaps at least every 100 ms and before every
//! accept. No orphans: at shutdown the parent sends SIGTERM to every child,
//! waits, SIGKILLs stragglers and reaps them all; and each child asks the
//! kernel (PR_SET_PDEATHSIG) to kill it should the parent die first.
//!
//! ```text
//! echo-server process --addr 127.0.0.1:7000 [--max-connections 1024]
//! ```

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::Config;
use crate::echo::serve_stream;
use crate::listen::{Acceptor, Connection, Permit};
use crate::shutdown::Shutdown;

/// How long children get to exit after SIGTERM before they are SIGKILLed.
const CHILD_GRACE: Duration = Duration::from_millis(800);

/// Accepts, spawns one child per connection, reaps.
pub fn serve(listener: TcpListener, config: &Config, shutdown: &Shutdown) -> io::Result<()> {
    let exe = std::env::current_exe()?;
    // Live children by PID, each holding its connection's slot under the cap.
    let mut children: HashMap<libc::pid_t, Permit> = HashMap::new();
    let mut acceptor = Acceptor::new(&listener, shutdown, config.max_connections)?;
    // Reaping before each accept frees the slots of finished children first.
    while let Some(conn) = acceptor.next_with(|| reap(&mut children)) {
        let Connection { stream, peer, permit } = conn;
        match spawn_child(&exe, stream, config) {
            // The parent's copy of the socket was moved into `Stdio` and is
            // closed now: only the child holds the connection.
            Ok(pid) => {
                debug!(%peer, pid, "spawned child");
                children.insert(pid, permit);
            }
            Err(err) => warn!(%peer, %err, "cannot spawn a child; closing the connection"),
        }
    }
    drop(listener);
    terminate_all(&mut children);
    Ok(())
}

/// Starts `echo-server process --worker-of <our pid>` with `stream` as stdin.
fn spawn_child(exe: &Path, stream: TcpStream, config: &Config) -> io::Result<libc::pid_t> {
    let child = Command::new(exe)
        .arg("process")
        .arg("--worker-of")
        .arg(std::process::id().to_string())
        .arg("--buffer-size")
        .arg(config.buffer_size.to_string())
        .stdin(Stdio::from(OwnedFd::from(stream)))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    // We reap with waitpid(-1) ourselves; dropping `Child` neither waits nor kills.
    Ok(child.id() as libc::pid_t)
}

/// Reaps every child that has exited, without blocking.
fn reap(children: &mut HashMap<libc::pid_t, Permit>) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid only writes `status`; WNOHANG makes it return at once.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return; // 0: children left, none exited; -1: no children at all
        }
        children.remove(&pid); // drops the Permit: the slot is free again
    }
}

/// SIGTERM to every child, a short grace period, SIGKILL, reap them all.
fn terminate_all(children: &mut HashMap<libc::pid_t, Permit>) {
    signal_all(children, libc::SIGTERM);
    let deadline = Instant::now() + CHILD_GRACE;
    while !children.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        reap(children);
    }
    if !children.is_empty() {
        warn!(left = children.len(), "children ignored SIGTERM; killing them");
        signal_all(children, libc::SIGKILL);
        for pid in children.keys() {
            let mut status = 0;
            // SAFETY: a blocking waitpid on our own (now killed) child.
            unsafe { libc::waitpid(*pid, &mut status, 0) };
        }
        children.clear();
    }
}

fn signal_all(children: &HashMap<libc::pid_t, Permit>, signal: libc::c_int) {
    for &pid in children.keys() {
        // SAFETY: kill only sends a signal; `pid` is a child not yet reaped,
        // so the PID cannot have been reused by another process.
        unsafe { libc::kill(pid, signal) };
    }
}

/// The child's side: serve the socket on stdin, then exit.
pub fn child_main(parent: u32, config: &Config) -> io::Result<()> {
    // Die with the parent, even if it is SIGKILLed. The PID check closes the
    // race where the parent died before the prctl took effect.
    // SAFETY: prctl(PR_SET_PDEATHSIG) only changes this process's attributes.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } as u32 != parent {
        return Ok(());
    }
    // SAFETY: the parent passed the accepted socket as our stdin (descriptor
    // 0) and nothing else in this process uses descriptor 0.
    let stream = unsafe { TcpStream::from_raw_fd(0) };
    let peer = stream.peer_addr().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    serve_stream(stream, peer, config.buffer_size);
    Ok(())
}
