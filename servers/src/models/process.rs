//! # `process`: one child process per connection
//!
//! The inetd design. The parent only accepts, spawns and reaps: for each
//! connection it re-runs its own executable in a hidden worker mode
//! (`echo-server process --worker-of <PID>`) with the accepted socket as the
//! child's stdin, exactly as inetd hands a socket to a service (a TCP or a
//! Unix socket alike: the child finds the transport from the socket). The child
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
//! echo-server process --addr unix:/tmp/echo.sock
//! ```

use std::borrow::Cow::Borrowed;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args as ClapArgs;
use echo_common::ModelInfo;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getppid};
use tracing::{debug, warn};

use crate::Ready;
use crate::cli::Common;
use crate::echo;
use crate::listen::{Acceptor, Connection, LogThrottle, Permit};
use crate::shutdown::Shutdown;
use crate::transport::{Listener, Stream};

pub static INFO: ModelInfo = ModelInfo {
    name: Borrowed("process"),
    summary: Borrowed("One child process per connection (started with std::process)"),
    // Each connection is a whole OS process, so the cap is lower.
    default_max_connections: 1024,
    child_processes: true,
    serves_at_once: None,
    baseline: false,
    reuse_port: false,
    colour: Borrowed("#1f77b4"),
};

/// `echo-server process` options.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Internal: serve the socket on stdin as a child of this PID.
    #[arg(long, hide = true, value_name = "PID")]
    pub worker_of: Option<u32>,
}

/// How long children get to exit after SIGTERM before they are SIGKILLed.
const CHILD_GRACE: Duration = Duration::from_millis(800);

/// Accepts, spawns one child per connection, reaps.
pub fn serve(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable to re-run it")?;
    // Live children by PID, each holding its connection's slot under the cap.
    let mut children: HashMap<Pid, Permit> = HashMap::new();
    let mut acceptor = Acceptor::new(&listener, shutdown, args.common.max_connections())?;
    ready.announce()?;
    let spawn_errors = LogThrottle::default();
    // Reaping before each accept frees the slots of finished children first.
    while let Some(conn) = acceptor.next_with(|| reap(&mut children)) {
        let Connection { stream, peer, permit } = conn;
        match spawn_child(&exe, stream, args) {
            // The parent's copy of the socket was moved into `Stdio` and is
            // closed now: only the child holds the connection.
            Ok(pid) => {
                debug!(%peer, %pid, "spawned child");
                children.insert(pid, permit);
            }
            Err(err) => {
                if let Some(suppressed) = spawn_errors.allow() {
                    warn!(%peer, %err, suppressed, "cannot spawn a child; closing the connection");
                }
            }
        }
    }
    drop(listener);
    terminate_all(&mut children);
    Ok(())
}

/// Starts `echo-server process --worker-of <our pid>` with `stream` as stdin.
fn spawn_child(exe: &Path, stream: Stream, args: &Args) -> std::io::Result<Pid> {
    let child = Command::new(exe)
        .arg(INFO.name.as_ref())
        .arg("--worker-of")
        .arg(std::process::id().to_string())
        .arg("--buffer-size")
        .arg(args.common.buffer_size.to_string())
        .stdin(Stdio::from(OwnedFd::from(stream)))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    // We reap with waitpid(-1) ourselves; dropping `Child` neither waits nor kills.
    Ok(Pid::from_raw(child.id() as i32))
}

/// Reaps every child that has exited, without blocking.
fn reap(children: &mut HashMap<Pid, Permit>) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            // Exited or killed: drop its Permit, the slot is free again.
            Ok(WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)) => {
                children.remove(&pid);
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return, // none exited; or no children at all
            Ok(_) => {}                                                // stopped or continued: not gone
            Err(Errno::EINTR) => {}
            Err(err) => {
                warn!(%err, "waitpid failed");
                return;
            }
        }
    }
}

/// SIGTERM to every child, a short grace period, SIGKILL, reap them all.
fn terminate_all(children: &mut HashMap<Pid, Permit>) {
    signal_all(children, Signal::SIGTERM);
    let deadline = Instant::now() + CHILD_GRACE;
    while !children.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        reap(children);
    }
    if !children.is_empty() {
        warn!(left = children.len(), "children ignored SIGTERM; killing them");
        signal_all(children, Signal::SIGKILL);
        for pid in children.keys() {
            // A blocking wait on our own, now killed, child.
            let _ = waitpid(*pid, None);
        }
        children.clear();
    }
}

fn signal_all(children: &HashMap<Pid, Permit>, signal: Signal) {
    for &pid in children.keys() {
        // `pid` is a child not yet reaped, so it cannot have been reused by
        // another process. It may have exited already: ESRCH is fine.
        let _ = kill(pid, signal);
    }
}

/// The child's side: serve the socket on stdin, then exit.
pub fn child_main(parent: u32, args: &Args) -> anyhow::Result<()> {
    // Die with the parent, even if it is SIGKILLed. The PID check closes the
    // race where the parent died before the prctl took effect.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("prctl(PR_SET_PDEATHSIG)")?;
    if getppid().as_raw() as u32 != parent {
        return Ok(());
    }
    // SAFETY: the parent passed the accepted socket as our stdin (descriptor
    // 0) and nothing else in this process uses descriptor 0.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(0) };
    let stream = Stream::from_fd(fd).context("stdin is not a connected socket")?;
    let peer = stream.peer();
    echo::serve(stream, &peer, args.common.buffer_size());
    Ok(())
}
