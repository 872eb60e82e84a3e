//! # `process`: one child process per connection
//!
//! The inetd design. The parent only accepts, spawns and reaps: for each
//! connection it re-runs its own executable in a hidden worker mode
//! (`echo-server process --child-of <PID>`) with the accepted socket as the
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
//! ## Work per message (`--work`)
//!
//! Inline, in the child, between the read and the write ([`echo::serve`]):
//! a blocking call blocks that process only, and `cpu:` work runs on as
//! many CPUs as the kernel gives the children. The parent measures the
//! `cpu:` calibration once, at start-up, and hands it to every child
//! (with `--child-of`), so that a connection does not pay for measuring.
//!
//! ```text
//! echo-server process --addr 127.0.0.1:7000 [--max-connections 1024]
//! echo-server process --addr unix:/tmp/echo.sock
//! ```

use std::os::fd::OwnedFd;

use anyhow::Context;
use clap::Args as ClapArgs;
use tracing::{debug, warn};

use crate::children::{self, ChildOf, Children};
use crate::cli::Common;
use crate::echo;
use crate::listen::{Acceptor, Connection, LogThrottle, Permit};
use crate::models::{ChildMode, Model};
use crate::ready::Ready;
use crate::shutdown::Shutdown;
use crate::transport::{Listener, Stream};

pub static MODEL: Model<Args> = Model {
    name: "process",
    summary: "One child process per connection (started with std::process)",
    // Each connection is a whole OS process, so the cap is lower.
    default_max_connections: 1024,
    serves_at_once: None,
    baseline: false,
    reuse_port: false,
    colour: "#1f77b4",
    blocks_at_once: echo_common::BlocksAtOnce::PerConnection,
    datagrams: None, // streams only: `--addr udp:…` is refused
    children: Some(ChildMode { of: |args| &args.child, main: child_main }),
};

/// `echo-server process` options.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Set in a child: `--child-of <PID>`.
    #[command(flatten)]
    pub child: ChildOf,
}

/// Accepts, spawns one child per connection, reaps.
pub fn serve(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable to re-run it")?;
    // Live children, each holding its connection's slot under the cap.
    let mut children: Children<Permit> = Children::default();
    let mut acceptor = Acceptor::new(&listener, shutdown, args.common.max_connections())?;
    ready.announce()?;
    let spawn_errors = LogThrottle::default();
    // Reaping before each accept frees the slots of finished children first
    // (dropping a reaped child's Permit gives its slot back).
    while let Some(conn) = acceptor.next_with(|| children.reap(|_, _permit| {})) {
        let Connection { stream, peer, permit } = conn;
        // The socket moves into the child's stdin: once spawned, only the
        // child holds the connection.
        match children::spawn_self(&exe, MODEL.name, &args.common, OwnedFd::from(stream)) {
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
    children.terminate_all();
    Ok(())
}

/// The child's side (its child mode, in the registry): serve the socket on
/// stdin, then exit.
pub fn child_main(parent: u32, args: &Args) -> anyhow::Result<()> {
    let Some(fd) = children::adopt_stdin(parent)? else { return Ok(()) };
    let stream = Stream::from_fd(fd).context("stdin is not a connected socket")?;
    let peer = stream.peer();
    echo::serve(stream, &peer, args.common.echo());
    Ok(())
}
