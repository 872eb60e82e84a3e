//! # `reactors`: one reactor per CPU, sharing nothing
//!
//! Thread-per-core, shared-nothing: `--workers` threads (default: the CPUs
//! in the affinity mask), each running the `reactor` model's event loop —
//! the same code, [`EventLoop`] — with its own epoll instance, its own
//! listener and its own connections. No lock, no queue, no socket passed
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
//! others [`Listener::bind_sibling`]), and builds its event loop in its own
//! thread; the start-up — a socket per worker, the start handshake,
//! `--pin` — is the thread-per-core one [`per_core`] writes once for this
//! model and `uring`. The kernel picks the listener of a
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
//! ## Datagrams: one SO_REUSEPORT socket per worker
//!
//! Over `udp:` each worker binds its own UDP socket on the port, all with
//! SO_REUSEPORT, and runs a small epoll loop of its own on it: wait until
//! the socket is readable (edge-triggered), then receive and echo until it
//! would block. The kernel picks the socket of each datagram by a **hash of
//! its 4-tuple**, as it picks a TCP listener: so all the datagrams of one
//! flow (one client address and port) land on the same socket, in order,
//! and one flow never uses more than one worker — a single busy client is
//! served by one CPU however many workers there are. Many flows spread over
//! the workers as the hash falls, not by load. Nothing is shared (each
//! worker counts on counters of its own): no lock on a common receive
//! queue (the `pool` model's), no wake-up of a thread that finds nothing.
//!
//! The sockets are non-blocking, so an echo that finds the send buffer full
//! (EAGAIN) is dropped and counted instead of stalling the loop: UDP allows
//! the loss, and the worker's other flows do not wait for one slow send.
//! `--batch N` receives up to N datagrams per `recvmmsg` and echoes them
//! with one `sendmmsg`. Like the stream workers, the datagram workers are
//! detached and end with the process; the main thread waits for the signal.
//!
//! A worker's socket closes with the process: datagrams still queued in its
//! receive buffer are discarded, as a closing TCP listener resets its backlog.
//!
//! ## Work per message (`--work`)
//!
//! Inline, in each worker's loop, as in `reactor`: a message's work stalls
//! every connection of its worker (over `udp:`, every flow hashed to its
//! socket); the other workers go on. `cpu:` work shows what one core per
//! reactor costs: a worker whose connections ask for more than a core falls
//! behind while another may idle, and nothing moves a connection over.
//!
//! ```text
//! echo-server reactors --addr 127.0.0.1:7000 --workers 2
//! echo-server reactors --addr udp:127.0.0.1:7000 --workers 2 --batch 32
//! ```

use std::net::UdpSocket;

use anyhow::Context;
use clap::Args as ClapArgs;
use tracing::{error, warn};

use crate::cli::Common;
use crate::datagram::{self, BatchOption, DatagramEcho, DatagramOptions, Receiver, Turn};
use crate::event_loop::{EventLoop, Mailbox, Undelivered};
use crate::listen::{Acceptor, ConnectionLimit, LogThrottle};
use crate::models::{Datagrams, Model};
use crate::per_core::{self, PerCore};
use crate::ready::Ready;
use crate::shutdown::Shutdown;
use crate::transport::Listener;

pub static MODEL: Model<Args> = Model {
    name: "reactors",
    summary: "One epoll reactor per CPU, each with its own SO_REUSEPORT listener",
    default_max_connections: 10_000,
    serves_at_once: None,
    baseline: false,
    reuse_port: true,
    colour: "#aec7e8",
    blocks_at_once: echo_common::BlocksAtOnce::PerCpu,
    datagrams: Some(Datagrams {
        design: "One SO_REUSEPORT socket and epoll per worker (the kernel hashes each flow to one socket); with --batch N, recvmmsg and sendmmsg",
        options: |args| &args.udp,
        serve: serve_datagrams,
    }),
    children: None,
};

/// `echo-server reactors` options.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub per_core: PerCore,
    #[command(flatten)]
    pub udp: DatagramOptions,
    #[command(flatten)]
    pub batch: BatchOption,
}

/// The worker threads' names: `echo-reactor-<id>`.
const THREADS: &str = "echo-reactor";

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
    let backlog = args.common.backlog;
    let listeners = per_core::sockets(listener, args.per_core.workers(), |first| first.bind_sibling(backlog))?;
    // One count for all: the cap is on the server, not per worker.
    let limit = ConnectionLimit::new(args.common.max_connections());
    let echo = args.common.echo();
    per_core::start(
        THREADS,
        args.per_core.pin,
        listeners,
        move |listener| {
            let mut event_loop = EventLoop::new(echo).context("cannot create an epoll instance")?;
            event_loop.listen(listener, limit.clone()).context("cannot register a listener with epoll")?;
            Ok((event_loop, ()))
        },
        run,
    )?;
    ready.announce()?;
    shutdown.wait();
    // The process exits: the kernel closes every listener (resetting what
    // waits in their backlogs) and every connection.
    Ok(())
}

/// No SO_REUSEPORT: this thread accepts and deals connections round-robin.
fn serve_unix(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
    let workers = args.per_core.workers();
    let echo = args.common.echo();
    // Each worker hands back the mailbox of its event loop's inbox.
    let mailboxes: Vec<Mailbox> = per_core::start(
        THREADS,
        args.per_core.pin,
        vec![(); workers],
        move |()| {
            let mut event_loop = EventLoop::new(echo).context("cannot create an epoll instance")?;
            let mailbox = event_loop.inbox().context("cannot create a waker")?;
            Ok((event_loop, mailbox))
        },
        run,
    )?;
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

/// A worker's life after start-up: its event loop, until the process exits.
fn run(id: usize, mut event_loop: EventLoop<'static>) {
    // Without a shutdown registered, `run` returns only if epoll fails.
    if let Err(err) = event_loop.run() {
        error!(worker = id, %err, "the event loop failed; this worker's connections are closed");
    }
}

/// One SO_REUSEPORT socket and one epoll loop per worker; the main thread
/// only waits for a shutdown signal.
pub fn serve_datagrams(
    socket: UdpSocket,
    args: &Args,
    echo: DatagramEcho,
    shutdown: &Shutdown,
    ready: Ready,
) -> anyhow::Result<()> {
    let sockets = per_core::sockets(socket, args.per_core.workers(), |first| datagram::bind_sibling(first, &args.udp))?;
    // Each worker counts on counters of its own: a clone of the echo.
    let inputs = sockets.into_iter().map(|socket| (socket, echo.clone())).collect();
    let batch = args.batch.get();
    per_core::start(
        THREADS,
        args.per_core.pin,
        inputs,
        move |(socket, echo)| Ok((DatagramLoop::new(socket, Receiver::new(echo, batch))?, ())),
        |id, mut worker: DatagramLoop| {
            if let Err(err) = worker.run() {
                error!(worker = id, %err, "the event loop failed; this worker's socket is closed");
            }
        },
    )?;
    ready.announce()?;
    shutdown.wait();
    Ok(())
}

/// A datagram worker: its socket, registered with an epoll instance of its
/// own, and its receiver.
#[derive(Debug)]
struct DatagramLoop {
    poll: mio::Poll,
    socket: mio::net::UdpSocket,
    receiver: Receiver,
}

impl DatagramLoop {
    /// Makes `socket` non-blocking and registers it (edge-triggered).
    fn new(socket: UdpSocket, receiver: Receiver) -> anyhow::Result<DatagramLoop> {
        socket.set_nonblocking(true).context("cannot make a socket non-blocking")?;
        let mut socket = mio::net::UdpSocket::from_std(socket);
        let poll = mio::Poll::new().context("cannot create an epoll instance")?;
        poll.registry()
            .register(&mut socket, mio::Token(0), mio::Interest::READABLE)
            .context("cannot register a socket with epoll")?;
        Ok(DatagramLoop { poll, socket, receiver })
    }

    /// Waits for the socket to become readable, then receives and echoes
    /// until it would block (edge-triggered: what is left unread would not
    /// be reported again). Returns only if epoll fails.
    fn run(&mut self) -> std::io::Result<()> {
        let mut events = mio::Events::with_capacity(1);
        loop {
            match self.poll.poll(&mut events, None) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
            loop {
                match self.receiver.turn(&self.socket) {
                    Turn::Received(_) => {}
                    Turn::Idle => break, // drained (or a signal: the next poll says)
                    Turn::Failed(pause) if pause.is_zero() => {}
                    Turn::Failed(pause) => {
                        // The socket may still be readable: epoll will not say
                        // so again (edge-triggered), so go on after the pause.
                        std::thread::sleep(pause);
                    }
                }
            }
        }
    }
}
