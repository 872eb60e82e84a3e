//! # `prefork`: a fixed set of child processes, started in advance
//!
//! The preforked server of Stevens' *Unix Network Programming* (ch. 30),
//! and of Apache's `prefork` MPM. The parent binds the listener, then starts
//! `--workers` children (default 16) by re-running its own executable in a
//! hidden mode (`echo-server prefork --child-of <PID>`) with the
//! *listening* socket as the child's stdin. Every child is an
//! [`iterative`] server on that shared listener: it
//! accepts one connection, echoes until the client leaves, accepts the
//! next. The parent accepts nothing: it restarts a child that dies and stops
//! them all at shutdown.
//!
//! What a connection costs: nothing is created for it. The processes exist
//! before any client arrives (the `fork`/`exec` that `process` pays per
//! connection is paid once per worker), and a connection is served by a
//! whole process that has nothing else to do. Isolation between the
//! connections of different children is total, as in `process`.
//!
//! Good at: isolation without a spawn per connection; a crash costs one
//! connection and the parent starts a replacement. Bad at: more live
//! connections than children. A child serves one connection to its end, so
//! the `--workers + 1`th client waits in the listen backlog, unserved, until
//! some client leaves — head-of-line blocking as in `pool`, with processes.
//!
//! ## The cap is the number of children
//!
//! Each child serves one connection at a time, so the server's live
//! connections are at most its children. `--max-connections` therefore caps
//! the children: the parent starts `min(--workers, --max-connections)` of
//! them (default cap 1024, as `process`: raise it to run more than 1024
//! workers). Over the cap, connections are never accepted and closed:
//! they wait in the backlog, as under Apache's `MaxRequestWorkers`, and
//! beyond the backlog a Unix socket's connect waits (or fails with EAGAIN
//! when non-blocking) and TCP drops the SYN (the client retries).
//! Inside a child the shared accept loop runs with a cap of 1.
//!
//! ## The thundering herd
//!
//! All the idle children wait for the same listener. For a *blocking*
//! `accept()` Linux queues the waiters exclusively (since 2.6): one
//! connection wakes one of them. This implementation does not block in
//! `accept()`: a child must also notice SIGTERM, so the shared accept loop
//! ([`Acceptor`]) `poll`s the listener next to the shutdown descriptor, then
//! accepts without blocking. `poll` waits are not exclusive, so a new
//! connection wakes **every** idle child; one wins the `accept`, the others
//! get EAGAIN and go back to `poll`. With 16 children that is up to 15 wasted
//! wake-ups per connection (measured nowhere here). The cures are
//! `EPOLLEXCLUSIVE`, a blocking accept with a timeout, or one SO_REUSEPORT
//! listener per child.
//!
//! ## Supervision
//!
//! The parent announces `listening on` only once every child is started
//! (connections that arrive before a child reaches `accept` wait in the
//! backlog). It reaps with `waitpid(WNOHANG)` every 100 ms and restarts the
//! children that died. At shutdown it sends SIGTERM to every child (each
//! child installs its own handlers, finishes its `read`, and exits 0), waits
//! a grace period, SIGKILLs stragglers and reaps them all: no zombies. No
//! orphans either: each child asks the kernel (PR_SET_PDEATHSIG) to kill it
//! should the parent die first.
//!
//! ## Work per message (`--work`)
//!
//! Inline, in the child serving the connection (the iterative loop): a
//! blocking call holds that child, which its client holds anyway; up to
//! `--workers` connections are worked on at once, on as many CPUs as the
//! kernel gives them. The children take the parent's `cpu:` calibration
//! rather than each measuring it.
//!
//! ```text
//! echo-server prefork --addr 127.0.0.1:7000 [--workers 16]
//! echo-server prefork --addr unix:/tmp/echo.sock --workers 64
//! ```

use std::os::fd::AsFd;
use std::path::Path;

use anyhow::Context;
use clap::Args as ClapArgs;
use nix::unistd::Pid;
use tracing::{debug, info, warn};

use super::iterative;
use crate::children::{self, ChildOf, Children};
use crate::cli::Common;
use crate::listen::{ACCEPT_TICK, Acceptor, LogThrottle};
use crate::models::{ChildMode, Model};
use crate::ready::Ready;
use crate::shutdown::Shutdown;
use crate::transport::Listener;

pub static MODEL: Model<Args> = Model {
    name: "prefork",
    summary: "A fixed set of child processes started in advance, each serving one connection at a time",
    // Caps the children (see the page); as `process`, a process per live connection.
    default_max_connections: 1024,
    serves_at_once: Some(DEFAULT_WORKERS as u64),
    baseline: false,
    reuse_port: false,
    colour: "#e377c2",
    blocks_at_once: echo_common::BlocksAtOnce::PerConnection,
    datagrams: None, // streams only: `--addr udp:…` is refused
    children: Some(ChildMode { of: |args| &args.child, main: child_main }),
};

/// `--workers` when not given.
const DEFAULT_WORKERS: u32 = 16;

/// `echo-server prefork` options.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Child processes, each serving one connection at a time (at most
    /// --max-connections of them are started).
    #[arg(long, default_value_t = DEFAULT_WORKERS, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub workers: u32,
    /// Set in a child: `--child-of <PID>`.
    #[command(flatten)]
    pub child: ChildOf,
}

/// Starts the children, then supervises them until shutdown.
pub fn serve(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable to re-run it")?;
    let wanted = (args.workers as usize).min(args.common.max_connections());
    if wanted < args.workers as usize {
        info!(workers = args.workers, max_connections = wanted, "--max-connections caps the children");
    }
    let mut children: Children<()> = Children::default();
    // Whatever happens after the first spawn, the children are stopped and
    // reaped before we return.
    let result = start_and_supervise(&exe, &listener, args, shutdown, ready, wanted, &mut children);
    children.terminate_all();
    result
}

fn start_and_supervise(
    exe: &Path,
    listener: &Listener,
    args: &Args,
    shutdown: &Shutdown,
    ready: Ready,
    wanted: usize,
    children: &mut Children<()>,
) -> anyhow::Result<()> {
    for n in 0..wanted {
        let pid = spawn_child(exe, listener, args)
            .with_context(|| format!("cannot start child process {} of {wanted}", n + 1))?;
        children.insert(pid, ());
    }
    ready.announce()?;
    let deaths = LogThrottle::default();
    let spawn_errors = LogThrottle::default();
    // Wakes at once on a signal; else every tick, to reap and restart.
    while !shutdown.sleep(ACCEPT_TICK) {
        children.reap(|status, ()| {
            // Not shutting down: every death is unexpected.
            if let Some(suppressed) = deaths.allow() {
                warn!(?status, suppressed, "a child died; restarting it");
            }
        });
        while children.len() < wanted && !shutdown.is_requested() {
            match spawn_child(exe, listener, args) {
                Ok(pid) => {
                    debug!(%pid, "restarted a child");
                    children.insert(pid, ());
                }
                Err(err) => {
                    if let Some(suppressed) = spawn_errors.allow() {
                        warn!(%err, suppressed, "cannot restart a child; retrying");
                    }
                    break; // the next tick retries: no tight loop
                }
            }
        }
    }
    Ok(())
}

/// Starts `echo-server prefork --child-of <our pid>` with a copy of the
/// listening socket as its stdin: a new descriptor for the same listening
/// socket (dup, close-on-exec), closed on our side once the child has it.
fn spawn_child(exe: &Path, listener: &Listener, args: &Args) -> std::io::Result<Pid> {
    let socket = listener.as_fd().try_clone_to_owned()?;
    children::spawn_self(exe, MODEL.name, &args.common, socket)
}

/// The child's side (its child mode, in the registry): an iterative server
/// on the listening socket on stdin, until SIGTERM (from the parent at
/// shutdown) or SIGINT.
pub fn child_main(parent: u32, args: &Args) -> anyhow::Result<()> {
    let Some(fd) = children::adopt_stdin(parent)? else { return Ok(()) };
    // Our own handlers: SIGTERM ends the accept loop and the served
    // connection's wait (a SIGTERM before this line kills us, which is fine too).
    let shutdown = Shutdown::install().context("cannot install signal handlers")?;
    let listener = Listener::from_fd(fd).context("stdin is not a listening socket")?;
    // Cap 1: a child serves one connection at a time anyway (see the page).
    let acceptor = Acceptor::new(&listener, &shutdown, 1)?;
    iterative::serve_one_at_a_time(acceptor, &shutdown, args.common.echo());
    Ok(())
}
