//! # `uring`: completion-based I/O, one io_uring per worker thread
//!
//! The other models ask "is this socket ready?" (readiness: epoll, or a
//! thread blocked in `read`). This one says "read into this buffer and tell
//! me when it is done" (completion): it writes requests — *submission queue
//! entries* (SQEs) — into a ring shared with the kernel, and reads results —
//! *completion queue entries* (CQEs) — from a second ring. One system call,
//! `io_uring_enter`, submits every queued request and sleeps until at least
//! one completes; the data is already in the buffer when the CQE arrives.
//!
//! `--workers` threads (default: the CPUs in the affinity mask), each with
//! its own ring, its own connections and, over TCP, its own SO_REUSEPORT
//! listener on the same port (the kernel spreads new connections over the
//! listeners by a hash of the 4-tuple; a connection stays with the worker
//! that accepted it). A Unix socket has no SO_REUSEPORT, so every worker's
//! ring accepts on a duplicate of the one listener (the same file
//! description): each connection is accepted by exactly one of them,
//! whichever the kernel wakes first. The start-up — a socket per worker,
//! each ring built in its own thread (SINGLE_ISSUER binds a ring to the
//! thread that made it) and reported back before `listening on`, `--pin`
//! — is the thread-per-core one [`per_core`] writes once for this model
//! and `reactors`. The main thread waits for SIGINT or SIGTERM and
//! returns; the workers are detached and die with the process, whose exit
//! closes the rings, the listeners and every connection (the memory lent to
//! the kernel goes with the process: nothing is freed under it before).
//!
//! Each worker keeps, per ring:
//!
//! - one **multishot accept**: a single SQE that yields one CQE per accepted
//!   connection until it ends (an error, or the kernel dropping it). An error
//!   such as EMFILE ends it; it is re-armed after the shared back-off (a
//!   `Timeout` SQE of 50 ms), so a full descriptor table never spins.
//! - per connection, **exactly one** operation in flight: a `Recv` into the
//!   connection's one buffer (the [`EchoState`]'s), or a `Send` of what was
//!   received and not yet echoed. Never both, and never two sends: a short
//!   send followed by a second send could interleave and reorder the echo.
//!   A short send resubmits the rest. While a send is pending no receive is
//!   posted, so a client that never reads stops being read from; TCP's (or
//!   the Unix socket's) flow control holds the excess, not our memory.
//! - the buffer **belongs to the operation in flight**: posting one moves
//!   the buffer out of the connection's state into the worker's table of
//!   operations ([`InFlight`]), as a raw pointer the kernel may write
//!   through; only the operation's CQE moves it back. Meanwhile the
//!   connection has no buffer at all, so no Rust code can touch (or free)
//!   the memory the kernel holds. (Why this and not a provided buffer ring
//!   as for datagrams: [`crate::ring::InFlight`]'s docs.)
//! - on EOF (a receive of 0 bytes, i.e. the client's half-close: everything
//!   received is echoed by then) or any error, the descriptor is closed with
//!   a plain `close(2)` (dropping its `OwnedFd`) and the connection's slot
//!   under `--max-connections` is given back. A connection ends at a CQE,
//!   so nothing is in flight on it then; one ended otherwise (a worker
//!   dropped with live connections) leaves its buffer and descriptor to its
//!   operation, which is cancelled, and both are freed at its CQE.
//!
//! What a connection costs: its buffer (`--buffer-size`), a slot in its
//! worker's table (the fd, the peer, the [`EchoState`]) and one in the
//! table of operations in flight, and in the kernel
//! the one pending request (an `io_kiocb` and a poll entry while the socket
//! has nothing to read). No thread, no stack, no task. Between messages a
//! connection costs nothing; one `io_uring_enter` submits many requests and
//! reaps many completions, so system calls and wake-ups are shared by many
//! connections.
//!
//! Good at: many connections and many small messages per wake-up, with few
//! system calls. Bad at: portability (Linux only, and a recent kernel — see
//! below), and it is the one model whose unsafe code is the whole design:
//! the kernel writes into our buffers while no Rust reference says so.
//! What every ring needs — building and probing it, entering it, queueing
//! on it, naming its requests (`user_data`), the memory lent to it, and the
//! datagram worker — is in [`crate::ring`]; this page is what the model
//! does with its rings.
//!
//! ## io_uring features used, and the kernel each needs
//!
//! | feature                                  | since |
//! |------------------------------------------|-------|
//! | `IORING_OP_TIMEOUT` (accept back-off)    | 5.4   |
//! | `IORING_OP_ASYNC_CANCEL` (an abandoned operation) | 5.5 |
//! | `IORING_FEAT_NODROP` (overflowing CQEs are kept, not lost) | 5.5 |
//! | `IORING_OP_SEND`, `IORING_OP_RECV`       | 5.6   |
//! | `IORING_REGISTER_PROBE` (start-up probe) | 5.6   |
//! | `IORING_FEAT_FAST_POLL` (a receive on an empty socket waits on a poll, not in a kernel worker thread) | 5.7 |
//! | `IORING_SETUP_SUBMIT_ALL` (a bad SQE does not stop the batch) | 5.18 |
//! | provided buffer rings (`IORING_REGISTER_PBUF_RING`, UDP) | 5.19 |
//! | multishot `IORING_OP_ACCEPT`            | 5.19  |
//! | multishot `IORING_OP_RECVMSG` (UDP)      | 6.0   |
//! | `IORING_SETUP_SINGLE_ISSUER`             | 6.0   |
//! | `IORING_REGISTER_SYNC_CANCEL` (a dropped worker's drain) | 6.0 |
//! | `IORING_SETUP_DEFER_TASKRUN`             | 6.1   |
//!
//! So: Linux 6.1 or later. SINGLE_ISSUER promises the kernel that one thread
//! only submits to the ring (each ring is created in, and only used by, its
//! worker thread); DEFER_TASKRUN makes the kernel post completions only when
//! that thread asks for them (in `io_uring_enter` with GETEVENTS), instead
//! of interrupting it with task work at any time. No SQPOLL: its kernel
//! thread would poll the submission ring and take a whole CPU.
//!
//! ## When io_uring is unavailable
//!
//! A kernel older than 6.1, `kernel.io_uring_disabled` = 2 (or 1, for a user
//! outside `kernel.io_uring_group`), a seccomp filter (many container
//! runtimes block io_uring), or no memory for the ring (RLIMIT_MEMLOCK
//! before 5.12): `serve` builds a ring with the flags above and probes the
//! opcodes before announcing that it listens, and fails with one line,
//! `echo-server: uring: io_uring unavailable here: <reason>`, exit status 1.
//! The contract tests of this model then fail (each one reports that line
//! as the server's stderr) — on purpose: a model that cannot run is never a
//! silent pass.
//!
//! ## Datagrams: multishot recvmsg into a provided buffer ring
//!
//! Over `udp:` each worker has its own SO_REUSEPORT UDP socket on the port
//! (the kernel hashes each flow, by its 4-tuple, to one socket: see the
//! `reactors` model) and its own ring, and keeps on it:
//!
//! - one **multishot `RECVMSG`** (`IORING_RECV_MULTISHOT`): a single SQE
//!   that yields one CQE per datagram received, for as long as it lasts.
//!   It names no buffer: each datagram goes into the next free buffer of
//!   the worker's **provided buffer ring** (`IORING_REGISTER_PBUF_RING`), a
//!   ring of [`DATAGRAM_BUFFERS`] buffers we register once and give back
//!   to one at a time; the CQE says which buffer it took. The kernel writes
//!   into it an `io_uring_recvmsg_out` header (lengths and flags: MSG_TRUNC
//!   for a datagram larger than the buffer), the source address, then the
//!   payload ([`BufferRing::arrived`] finds them). The buffers live in
//!   memory the worker owns and lends the kernel through raw pointers only
//!   (see [`BufferRing`]), so the kernel's writes never alias a reference.
//! - per datagram to echo, a **`SENDMSG`** straight from that buffer to
//!   the source address found in it: no copy. The buffer goes back to the
//!   ring when the send's CQE arrives; an oversize datagram's at once.
//!   The sends of every CQE handled in one round are queued and go to the
//!   kernel together, with the next `io_uring_enter`: sends are batched
//!   per submit, as receives are batched per wake-up.
//!
//! The multishot ends when the buffer ring is empty (ENOBUFS: every buffer
//! holds a datagram whose echo is still being sent, or the CQ overflowed);
//! it is re-armed as soon as a buffer comes back. The datagrams that arrive
//! meanwhile wait in the socket's receive buffer (`--recv-buffer`), and
//! beyond it are dropped by the kernel, as for every model. Any other
//! receive error is counted and re-armed after the shared back-off (a
//! `Timeout` SQE): never a spin.
//!
//! Kernel: multishot `RECVMSG` came in 6.0 and provided buffer rings in
//! 5.19, both before DEFER_TASKRUN (6.1), which every ring of this model
//! needs already: a kernel that builds the ring has them. The start-up
//! probe also checks the `RECVMSG`, `SENDMSG` and `TIMEOUT` opcodes, and a
//! kernel that refuses to register the buffer ring is reported as
//! `io_uring unavailable here: cannot register a provided buffer ring`.
//!
//! What it costs: per worker, [`DATAGRAM_BUFFERS`] buffers of
//! `--buffer-size` plus 45 bytes (header and address), allocated once. The
//! worker's loop and its bookkeeping are [`DatagramWorker`].
//!
//! [`DATAGRAM_BUFFERS`]: ring::DATAGRAM_BUFFERS
//! [`BufferRing::arrived`]: ring::BufferRing::arrived
//! [`BufferRing`]: ring::BufferRing
//!
//! ## Work per message (`--work`)
//!
//! Inline, in the worker, between a receive's completion and the send it
//! posts: the ring is not entered while the work runs, so every connection
//! of that worker (over `udp:`, every datagram of its socket) waits, and
//! completions queue in the CQ. As `reactors`, one stalled worker per
//! message's work; the others go on.
//!
//! ```text
//! echo-server uring --addr 127.0.0.1:7000 --workers 2
//! echo-server uring --addr udp:127.0.0.1:7000 --workers 2
//! ```

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args as ClapArgs;
use io_uring::{IoUring, cqueue, opcode, types};
use nix::errno::Errno;
use socket2::SockRef;
use tracing::warn;

use crate::cli::Common;
use crate::datagram::{self, DatagramEcho, DatagramOptions};
use crate::echo::{EchoOptions, EchoState, Next, log_end};
use crate::listen::{AcceptErrors, ConnectionLimit, Permit};
use crate::models::{Datagrams, Model};
use crate::per_core::{self, PerCore};
use crate::ready::Ready;
use crate::ring::{self, Accept, DatagramWorker, InFlight, Token};
use crate::shutdown::Shutdown;
use crate::slab::Slab;
use crate::transport::{Listener, Peer, tcp_options};

pub static MODEL: Model<Args> = Model {
    name: "uring",
    summary: "Completion-based I/O: one io_uring per worker thread, multishot accept",
    default_max_connections: 10_000,
    serves_at_once: None,
    baseline: false,
    reuse_port: true,
    colour: "#7f7f7f",
    blocks_at_once: echo_common::BlocksAtOnce::PerCpu,
    datagrams: Some(Datagrams {
        design: "One SO_REUSEPORT socket and io_uring per worker: multishot recvmsg into a provided buffer ring, sends batched per submit",
        options: |args| &args.udp,
        serve: serve_datagrams,
    }),
    children: None,
};

/// `echo-server uring` options.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub per_core: PerCore,
    #[command(flatten)]
    pub udp: DatagramOptions,
}

/// The worker threads' names: `echo-uring-<id>`.
const THREADS: &str = "echo-uring";

/// Probes io_uring, starts the workers (each builds its ring and arms its
/// accept), announces, then waits for a shutdown signal.
pub fn serve(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
    // Before anything else, so that "cannot run here" is the one error line.
    ring::probe(ring::build, &OPCODES)?;

    let backlog = args.common.backlog;
    let listeners = per_core::sockets(listener, args.per_core.workers(), |first| match first {
        Listener::Tcp(_) => first.bind_sibling(backlog),
        // No SO_REUSEPORT for Unix sockets: every ring accepts on the same socket.
        Listener::Unix(_) => first.try_clone(),
    })?;
    let limit = ConnectionLimit::new(args.common.max_connections());
    let echo = args.common.echo();
    // One accept-error policy for all workers, so that its log throttle is
    // the process's: at EMFILE every worker fails at once.
    let errors = Arc::new(AcceptErrors::default());
    per_core::start(
        THREADS,
        args.per_core.pin,
        listeners,
        move |listener| Ok((Worker::new(listener, limit.clone(), Arc::clone(&errors), echo)?, ())),
        |id, mut worker: Worker| exit_if_failed(id, worker.run()),
    )?;
    ready.announce()?;

    shutdown.wait();
    // Workers are not joined: the process exits, and the kernel tears down
    // the rings (cancelling their pending requests) and closes every socket.
    Ok(())
}

/// The end of a worker's `run`, which returns only on a fatal error. A
/// ring that cannot be entered any more serves nobody, and its socket would
/// keep taking its share of new connections (or flows) with nobody to
/// serve them: end the process, loudly.
fn exit_if_failed(id: usize, ran: anyhow::Result<()>) {
    if let Err(err) = ran {
        eprintln!("echo-server: uring: worker {id}: {err:#}");
        std::process::exit(1);
    }
}

/// The opcodes this model submits, with the kernel each first appeared in.
const OPCODES: [(u8, &str); 5] = [
    (opcode::AcceptMulti::CODE, "accept (5.5; multishot 5.19)"),
    (opcode::AsyncCancel::CODE, "async cancel (5.5)"),
    (opcode::Recv::CODE, "recv (5.6)"),
    (opcode::Send::CODE, "send (5.6)"),
    (opcode::Timeout::CODE, "timeout (5.4)"),
];

/// One accepted connection, owned by its worker's table from accept to close.
#[derive(Debug)]
struct Conn {
    fd: OwnedFd,
    peer: Peer,
    /// Has no buffer while `op` is in flight: the operation owns it then.
    state: EchoState,
    /// The key of its one operation in flight, if any ([`InFlight`]).
    op: Option<u64>,
    /// Held until the connection is closed.
    _permit: Permit,
}

/// One worker: its ring, its listener, its connections, and their
/// operations in flight. (No `Debug`: `IoUring` has none.)
///
/// Dropped, it cancels what is in flight and waits for the CQEs (for a
/// bounded time, [`DRAIN`]) before its buffers are freed; in the server it
/// is never dropped ([`Worker::run`] returns only on a fatal error, and the
/// process then exits, the kernel tearing down the ring).
struct Worker {
    ring: IoUring,
    /// The buffers lent to the kernel, by operation.
    in_flight: InFlight,
    listener: Listener,
    /// Live connections by slot; the slot is what their operations name.
    conns: Slab<Conn>,
    limit: ConnectionLimit,
    errors: Arc<AcceptErrors>,
    echo: EchoOptions,
    /// The multishot accept of `listener`, and its back-off.
    accept: Accept,
}

/// How long a dropped worker waits for its cancelled operations' CQEs.
const DRAIN: Duration = Duration::from_secs(5);

impl Worker {
    /// Builds the ring (in this, its only thread) and arms the accept.
    fn new(
        listener: Listener,
        limit: ConnectionLimit,
        errors: Arc<AcceptErrors>,
        echo: EchoOptions,
    ) -> anyhow::Result<Worker> {
        let ring = ring::new()?;
        let conns = Slab::new();
        let in_flight = InFlight::new();
        let accept = Accept::new(listener.as_raw_fd());
        let mut worker = Worker { ring, in_flight, listener, conns, limit, errors, echo, accept };
        worker.accept.arm(&mut worker.ring)?;
        worker.ring.submit().context("a worker cannot submit its first accept")?;
        Ok(worker)
    }

    /// Submits what is queued, waits for completions, handles them; forever.
    fn run(&mut self) -> anyhow::Result<()> {
        let batch = (self.ring.params().sq_entries() / 2) as usize;
        let mut cqes: Vec<cqueue::Entry> = Vec::with_capacity(batch);
        loop {
            ring::enter(&mut self.ring, batch, &mut cqes)?;
            for cqe in &cqes {
                match Token::of(cqe.user_data()) {
                    Token::Accept => {
                        if let Some(fd) = self.accept.accepted(&mut self.ring, cqe, &self.errors)? {
                            self.admit(fd)?;
                        }
                    }
                    Token::AcceptPause => self.accept.arm(&mut self.ring)?, // the back-off is over (-ETIME)
                    Token::Op(key) => self.completed(key, cqe.result())?,
                    token => warn!(?token, "an unexpected completion"),
                }
            }
        }
    }

    /// Configures an accepted socket, takes a slot under the cap (or closes
    /// it at once), and posts its first receive.
    fn admit(&mut self, fd: OwnedFd) -> anyhow::Result<()> {
        let peer = match self.listener {
            Listener::Tcp(_) => {
                let addr = SockRef::from(&fd).peer_addr().ok().and_then(|a| a.as_socket());
                let peer = Peer::Tcp(addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))));
                tcp_options(fd.as_fd(), &peer);
                peer
            }
            // Clients are usually unbound: no name to ask for.
            Listener::Unix(_) => Peer::Unix(None),
        };
        let Some(permit) = self.limit.try_acquire(&peer) else {
            return Ok(()); // over the cap: `fd` is dropped, i.e. closed
        };
        let conn = Conn { fd, peer, state: EchoState::new(self.echo), op: None, _permit: permit };
        let index = self.conns.insert(conn);
        self.advance(index)
    }

    /// The CQE of operation `key`: the buffer comes back to its connection,
    /// whose state says what the operation was (a receive if it was
    /// waiting to read, else a send).
    fn completed(&mut self, key: usize, res: i32) -> anyhow::Result<()> {
        let Some(done) = self.in_flight.complete(key) else {
            warn!(key, "completion for no operation");
            return Ok(());
        };
        // A connection that ended meanwhile: its buffer (and descriptor)
        // are freed here, with `done`, now that the kernel is done.
        let Some(index) = done.conn else { return Ok(()) };
        let Some(conn) = self.conns.get_mut(index) else {
            warn!(index, "completion for no connection");
            return Ok(());
        };
        conn.op = None;
        conn.state.restore(done.buf);
        let receiving = conn.state.next() == Next::Read;
        match res {
            n if n >= 0 && receiving => conn.state.received(n as usize),
            0 => return self.close(index, Err(io::ErrorKind::WriteZero.into())),
            n if n > 0 => conn.state.wrote(n as usize),
            // Interrupted, or not ready after all: ask again.
            n if matches!(Errno::from_raw(-n), Errno::EINTR | Errno::EAGAIN) => {}
            // A reset, a broken pipe, …: this connection only.
            n => return self.close(index, Err(io::Error::from_raw_os_error(-n))),
        }
        self.advance(index)
    }

    /// Posts connection `index`'s next operation, or closes it.
    fn advance(&mut self, index: usize) -> anyhow::Result<()> {
        let conn = self.conns.get_mut(index).expect("advance on a live connection");
        let fd = types::Fd(conn.fd.as_raw_fd());
        let (entry, key) = match conn.state.next() {
            Next::Read => {
                let (buf, range) = conn.state.lend();
                self.in_flight.receive(index, fd, buf, range)
            }
            Next::Write => {
                let (buf, range) = conn.state.lend();
                self.in_flight.send(index, fd, buf, range)
            }
            Next::Work => {
                // Inline, on this worker's thread: the ring is not entered
                // meanwhile, so every connection of this worker waits.
                conn.state.run_work();
                return self.advance(index);
            }
            Next::Close => {
                let echoed = conn.state.echoed();
                return self.close(index, Ok(echoed));
            }
        };
        conn.op = Some(key);
        // SAFETY: the buffer is owned by `self.in_flight` until this
        // operation's CQE (and leaked, not freed, if that never comes); the
        // descriptor is the connection's until then, or the operation's if
        // the connection ends first (`close`).
        unsafe { ring::push(&mut self.ring, entry) }
    }

    /// Closes connection `index` and gives its permit back. Its descriptor
    /// is closed (a plain close(2), as its `OwnedFd` drops) at once if no
    /// operation is in flight on it — the usual case: a connection ends at
    /// a completion — else it goes, with the buffer, to the operation,
    /// which is cancelled, and is closed at the operation's CQE.
    fn close(&mut self, index: usize, result: io::Result<u64>) -> anyhow::Result<()> {
        let Some(conn) = self.conns.remove(index) else { return Ok(()) };
        log_end(&conn.peer, &result);
        if let Some(cancel) = conn.op.and_then(|key| self.in_flight.abandon(key, conn.fd)) {
            // SAFETY: a cancellation points to no memory.
            unsafe { ring::push(&mut self.ring, cancel) }?;
        }
        Ok(())
    }
}

impl Drop for Worker {
    /// Ends every connection, cancels their operations and waits for the
    /// CQEs, so that no buffer the kernel may still write into is freed.
    fn drop(&mut self) {
        let live: Vec<usize> = self.conns.keys().collect();
        for index in live {
            let ended = Err(io::Error::other("worker stopped"));
            if let Err(err) = self.close(index, ended) {
                warn!("{err:#}");
            }
        }
        if let Err(err) = self.in_flight.drain(&mut self.ring, Instant::now() + DRAIN) {
            warn!("{err:#}");
        }
    }
}

/// The opcodes of the datagram design, with the kernel each first appeared in.
const DATAGRAM_OPCODES: [(u8, &str); 3] = [
    (opcode::RecvMsgMulti::CODE, "recvmsg (5.3; multishot 6.0)"),
    (opcode::SendMsg::CODE, "sendmsg (5.3)"),
    (opcode::Timeout::CODE, "timeout (5.4)"),
];

/// Probes io_uring, binds one socket per worker, starts the workers (each
/// builds its ring and buffer ring and arms its receive), announces, then
/// waits for a shutdown signal.
pub fn serve_datagrams(
    socket: std::net::UdpSocket,
    args: &Args,
    echo: DatagramEcho,
    shutdown: &Shutdown,
    ready: Ready,
) -> anyhow::Result<()> {
    ring::probe(ring::build, &DATAGRAM_OPCODES)?;
    let sockets = per_core::sockets(socket, args.per_core.workers(), |first| datagram::bind_sibling(first, &args.udp))?;
    // Each worker counts on counters of its own: a clone of the echo.
    let inputs = sockets.into_iter().map(|socket| (socket, echo.clone())).collect();
    per_core::start(
        THREADS,
        args.per_core.pin,
        inputs,
        |(socket, echo)| Ok((DatagramWorker::new(socket, echo)?, ())),
        |id, mut worker: DatagramWorker| exit_if_failed(id, worker.run()),
    )?;
    ready.announce()?;
    shutdown.wait();
    Ok(())
}
