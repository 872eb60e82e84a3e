//! # `reactors`: one reactor per CPU, sharing nothing
//!
//! Thread-per-core, shared-nothing: `--workers` threads (default: the CPUs
//! in the affinity mask), each running the `reactor` model's event loop —
//! the same code, `Reactor` in `reactor.rs` — with its own epoll
//! instance, its own listener and its own connections. No lock, no queue, no socket passed
//! between threads: a connection lives and dies on the thread that accepted
//! it. The only thing the workers share is the `--max-connections` count
//! (one atomic). The main thread starts them, prints the `listening on`
//! line and waits for SIGINT/SIGTERM. This is nginx with several worker
//! processes, or Seastar's design, in threads.
//!
//! ## One listener per worker: SO_REUSEPORT (TCP)
//!
//! Every worker has its own listening socket on the same port, all bound
//! with SO_REUSEPORT (worker 0 uses the listener the server bound, the
//! others [`Listener::bind_sibling`]). The kernel picks the listener of a
//! new connection by a **hash of its 4-tuple** (source and destination
//! address and port) — not by load: a worker with many busy connections
//! gets as many new ones as an idle one, and a few long-lived heavy
//! connections may happen to land on the same worker while another idles.
//! In exchange there is no shared accept queue to contend on and no
//! thundering herd: a connection wakes exactly one worker.
//!
//! Each listener has its own backlog (`--backlog` each). At shutdown the
//! process exits and the listeners close: connections still queued in a
//! listener's backlog — completed handshakes never accepted — are **reset**
//! by the kernel. Likewise if a worker thread ended on its own (its epoll
//! failed), the connections already queued on its listener would be reset
//! when it closes; later ones go to the listeners that remain.
//!
//! ## Unix sockets: one acceptor, round-robin
//!
//! SO_REUSEPORT does not apply to Unix sockets (one path, one listening
//! socket), so over them the main thread becomes the acceptor: it accepts
//! (with the blocking models' [`Acceptor`], which also watches the signal)
//! and hands each connection to the next worker in turn, through that
//! worker's channel plus a `mio::Waker` (an eventfd registered in the
//! worker's epoll, written to wake it). Round-robin balances connection
//! counts, not load, as the hash does; it costs a channel send and a wake-up
//! per connection, once, and nothing per message.
//!
//! What a connection costs: as in `reactor` — a slab entry, its buffer and
//! an epoll registration, on the worker that owns it — and, per worker, a
//! thread, an epoll instance and (TCP) a listener with its backlog.
//!
//! Good at: using every CPU with the reactor's per-message cost and no
//! cross-thread traffic at all (caches stay warm, nothing is locked).
//! Bad at: balancing — a connection never moves, so an unlucky hash leaves
//! one core busy and another idle; and, like `reactor`, anything slow done
//! per message stalls every connection of that worker.
//!
//! ```text
//! echo-server reactors --addr 127.0.0.1:7000 --workers 2
//! ```

use std::borrow::Cow::Borrowed;

use anyhow::Context;
use clap::Args as ClapArgs;
use echo_common::ModelInfo;
use tracing::{error, warn};

use crate::Ready;
use crate::cli::{Common, CpuWorkers};
use crate::listen::{Acceptor, ConnectionLimit, LogThrottle};
use crate::models::reactor::{Mailbox, Reactor, Undelivered};
use crate::shutdown::Shutdown;
use crate::transport::Listener;

pub static INFO: ModelInfo = ModelInfo {
    name: Borrowed("reactors"),
    summary: Borrowed("One epoll reactor per CPU, each with its own SO_REUSEPORT listener"),
    default_max_connections: 10_000,
    child_processes: false,
    serves_at_once: None,
    baseline: false,
    reuse_port: true,
    colour: Borrowed("#aec7e8"),
};

/// `echo-server reactors` options.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub workers: CpuWorkers,
}

/// Starts one reactor thread per worker, then waits for a shutdown signal
/// (over Unix sockets: accepts for them until then).
pub fn serve(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
    if matches!(listener, Listener::Tcp(_)) {
        serve_tcp(listener, args, shutdown, ready)
    } else {
        serve_unix(listener, args, shutdown, ready)
    }
}

/// One SO_REUSEPORT listener per worker; the main thread only waits.
fn serve_tcp(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
    let workers = args.workers.get();
    // One count for all: the cap is on the server, not per worker.
    let limit = ConnectionLimit::new(args.common.max_connections());
    // The siblings are bound before any worker starts, so that a failure
    // stops the server before it announces anything.
    let mut listeners = vec![listener];
    for id in 1..workers {
        let sibling = listeners[0].bind_sibling(args.common.backlog);
        listeners.push(sibling.with_context(|| format!("cannot open the listener of worker {id}"))?);
    }
    for (id, own) in listeners.into_iter().enumerate() {
        let mut reactor = Reactor::new(args.common.buffer_size()).context("cannot create an epoll instance")?;
        reactor.listen(own, limit.clone()).context("cannot register a listener with epoll")?;
        start(reactor, id)?;
    }
    ready.announce()?;
    shutdown.wait();
    // The process exits: the kernel closes every listener (resetting what
    // waits in their backlogs) and every connection.
    Ok(())
}

/// No SO_REUSEPORT: this thread accepts and deals connections round-robin.
fn serve_unix(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
    let workers = args.workers.get();
    let mut mailboxes: Vec<Mailbox> = Vec::with_capacity(workers);
    for id in 0..workers {
        let mut reactor = Reactor::new(args.common.buffer_size()).context("cannot create an epoll instance")?;
        mailboxes.push(reactor.inbox().context("cannot create a waker")?);
        start(reactor, id)?;
    }
    // The acceptor takes the slot under the cap; the connection carries it
    // to its worker.
    let acceptor = Acceptor::new(&listener, shutdown, args.common.max_connections())?;
    ready.announce()?;
    let lost = LogThrottle::default();
    // Ends when a signal arrives.
    for (n, conn) in acceptor.enumerate() {
        let peer = conn.peer.clone();
        match mailboxes[n % workers].deliver(conn) {
            Ok(()) => {}
            Err(Undelivered::Lost) => {
                if let Some(suppressed) = lost.allow() {
                    warn!(%peer, suppressed, "its worker has ended; closing the connection");
                }
            }
            Err(Undelivered::Queued(err)) => {
                if let Some(suppressed) = lost.allow() {
                    warn!(%peer, %err, suppressed, "cannot wake its worker; the connection waits for its next turn");
                }
            }
        }
    }
    Ok(())
}

/// Runs `reactor` on a detached thread of its own: it serves until the
/// process exits.
fn start(mut reactor: Reactor<'static>, id: usize) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name(format!("echo-reactor-{id}"))
        .spawn(move || {
            // Without a shutdown registered, `run` returns only if epoll fails.
            if let Err(err) = reactor.run() {
                error!(worker = id, %err, "the event loop failed; this worker's connections are closed");
            }
        })
        .with_context(|| format!("cannot start worker thread {id}"))?;
    Ok(())
}
