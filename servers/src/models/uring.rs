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
//! closes the rings, the listeners and every connection.
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
//! - on EOF (a receive of 0 bytes, i.e. the client's half-close: everything
//!   received is echoed by then) or any error, the descriptor is closed with
//!   a plain `close(2)` (dropping its `OwnedFd`) — no operation is in flight
//!   on it at that moment, so there is nothing to cancel — and the
//!   connection's slot under `--max-connections` is given back.
//!
//! What a connection costs: its buffer (`--buffer-size`), a slot in its
//! worker's table (the fd, the peer, the [`EchoState`]), and in the kernel
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
//! Every buffer handed to the kernel belongs to a connection kept in the
//! worker's table until that operation's CQE has arrived.
//!
//! ## io_uring features used, and the kernel each needs
//!
//! | feature                                  | since |
//! |------------------------------------------|-------|
//! | `IORING_OP_TIMEOUT` (accept back-off)    | 5.4   |
//! | `IORING_FEAT_NODROP` (overflowing CQEs are kept, not lost) | 5.5 |
//! | `IORING_OP_SEND`, `IORING_OP_RECV`       | 5.6   |
//! | `IORING_REGISTER_PROBE` (start-up probe) | 5.6   |
//! | `IORING_FEAT_FAST_POLL` (a receive on an empty socket waits on a poll, not in a kernel worker thread) | 5.7 |
//! | `IORING_SETUP_SUBMIT_ALL` (a bad SQE does not stop the batch) | 5.18 |
//! | provided buffer rings (`IORING_REGISTER_PBUF_RING`, UDP) | 5.19 |
//! | multishot `IORING_OP_ACCEPT`            | 5.19  |
//! | multishot `IORING_OP_RECVMSG` (UDP)      | 6.0   |
//! | `IORING_SETUP_SINGLE_ISSUER`             | 6.0   |
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
//!   ring of [`DATAGRAM_BUFFERS`] buffers we register once and give back to
//!   one at a time; the CQE says which buffer it took. The kernel writes
//!   into it an `io_uring_recvmsg_out` header (lengths and flags: MSG_TRUNC
//!   for a datagram larger than the buffer), the source address, then the
//!   payload ([`types::RecvMsgOut`] parses it).
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
//! `--buffer-size` plus 45 bytes (header and address), allocated once.
//!
//! ```text
//! echo-server uring --addr 127.0.0.1:7000 --workers 2
//! echo-server uring --addr udp:127.0.0.1:7000 --workers 2
//! ```

use std::borrow::Cow::Borrowed;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Args as ClapArgs;
use echo_common::ModelInfo;
use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, SockFlag};
use socket2::SockRef;
use tracing::warn;

use crate::ready::Ready;
use crate::models::Datagrams;
use crate::per_core::{self, PerCore};
use crate::cli::Common;
use crate::datagram::{self, DatagramEcho, DatagramOptions};
use crate::echo::{EchoState, Next, log_end};
use crate::listen::{AcceptErrors, ConnectionLimit, Permit};
use crate::slab::Slab;
use crate::shutdown::Shutdown;
use crate::transport::{Listener, Peer, tcp_options};

pub static INFO: ModelInfo = ModelInfo {
    name: Borrowed("uring"),
    summary: Borrowed("Completion-based I/O: one io_uring per worker thread, multishot accept"),
    default_max_connections: 10_000,
    child_processes: false,
    serves_at_once: None,
    baseline: false,
    reuse_port: true,
    colour: Borrowed("#7f7f7f"),
    datagrams: Some(Borrowed("One SO_REUSEPORT socket and io_uring per worker: multishot recvmsg into a provided buffer ring, sends batched per submit")),
    datagram_batch: false,
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

/// Serves datagrams: [`serve_datagrams`].
pub const DATAGRAMS: Option<Datagrams<Args>> = Some(Datagrams { options: |args| &args.udp, serve: serve_datagrams });

/// Submission queue entries per ring. A worker handles at most half this
/// many completions between two submits, and each completion queues at most
/// two entries (an accepted connection's first receive, and the re-armed
/// accept), so the submission queue never fills.
const SQ_ENTRIES: u32 = 512;

/// Completion queue entries per ring: room for bursts (up to one CQE per
/// connection of the worker can be ready at once). Beyond it the kernel
/// keeps CQEs on an overflow list (IORING_FEAT_NODROP), not lost.
const CQ_ENTRIES: u32 = 4096;

/// `user_data` of the multishot accept; connections use their table index.
const ACCEPT: u64 = u64::MAX;
/// `user_data` of the accept back-off timer.
const ACCEPT_PAUSE: u64 = u64::MAX - 1;

/// The worker threads' names: `echo-uring-<id>`.
const THREADS: &str = "echo-uring";

/// Probes io_uring, starts the workers (each builds its ring and arms its
/// accept), announces, then waits for a shutdown signal.
pub fn serve(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
    // Before anything else, so that "cannot run here" is the one error line.
    probe(build_ring, &OPCODES)?;

    let backlog = args.common.backlog;
    let listeners = per_core::sockets(listener, args.per_core.workers(), |first| match first {
        Listener::Tcp(_) => first.bind_sibling(backlog),
        // No SO_REUSEPORT for Unix sockets: every ring accepts on the same socket.
        Listener::Unix(_) => first.try_clone(),
    })?;
    let limit = ConnectionLimit::new(args.common.max_connections());
    let buffer_size = args.common.buffer_size();
    // One accept-error policy for all workers, so that its log throttle is
    // the process's: at EMFILE every worker fails at once.
    let errors = Arc::new(AcceptErrors::default());
    per_core::start(
        THREADS,
        args.per_core.pin,
        listeners,
        move |listener| Ok((Worker::new(listener, limit.clone(), Arc::clone(&errors), buffer_size)?, ())),
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

/// A ring with the flags this model runs with. Called in the thread that
/// will use it: SINGLE_ISSUER binds the ring to its creator.
fn build_ring() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_submit_all()
        .setup_cqsize(CQ_ENTRIES)
        .build(SQ_ENTRIES)
}

/// The opcodes this model submits, with the kernel each first appeared in.
const OPCODES: [(u8, &str); 4] = [
    (opcode::AcceptMulti::CODE, "accept (5.5; multishot 5.19)"),
    (opcode::Recv::CODE, "recv (5.6)"),
    (opcode::Send::CODE, "send (5.6)"),
    (opcode::Timeout::CODE, "timeout (5.4)"),
];

/// Can this model run here? Builds a ring with `build` and checks that the
/// kernel supports every opcode used. Taking the builder as a parameter lets
/// the tests feed it the failures of other machines.
fn probe(build: impl FnOnce() -> io::Result<IoUring>, opcodes: &[(u8, &str)]) -> anyhow::Result<()> {
    let ring = build().map_err(|err| unavailable(&ring_error_reason(&err, &SystemFacts::read())))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|err| unavailable(&format!("cannot probe the supported operations ({err})")))?;
    missing_opcodes(opcodes, |op| probe.is_supported(op))
}

/// One turn of a worker's loop: submits what is queued, waits for at least
/// one completion, and takes up to `batch` of them into `cqes`. Shared by
/// the stream and the datagram workers.
fn enter(ring: &mut IoUring, batch: usize, cqes: &mut Vec<cqueue::Entry>) -> anyhow::Result<()> {
    match ring.submit_and_wait(1) {
        Ok(_) => {}
        // A signal, or the kernel asking us to reap completions before it
        // takes more: reap (below), then enter again.
        Err(err) if matches!(err.raw_os_error().map(Errno::from_raw), Some(Errno::EINTR)) => {}
        Err(err) if matches!(err.raw_os_error().map(Errno::from_raw), Some(Errno::EBUSY | Errno::EAGAIN)) => {
            if ring.completion().is_empty() {
                std::thread::sleep(Duration::from_millis(1)); // never spin
            }
        }
        Err(err) => return Err(err).context("io_uring_enter failed"),
    }
    cqes.clear();
    cqes.extend(ring.completion().take(batch));
    Ok(())
}

/// Queues `entry` on `ring`, submitting first if the queue is full.
///
/// # Safety
///
/// Every buffer (and timespec) `entry` points to must stay valid, and not
/// be moved or freed, until its CQE has arrived (for a timespec: until it
/// is submitted).
unsafe fn push(ring: &mut IoUring, entry: squeue::Entry) -> anyhow::Result<()> {
    // SAFETY: the caller's promise is this function's.
    if unsafe { ring.submission().push(&entry) }.is_ok() {
        return Ok(());
    }
    // Cannot happen with the workers' batch sizes; if it does, make room.
    ring.submit().context("cannot submit a full submission queue")?;
    // SAFETY: as above.
    unsafe { ring.submission().push(&entry) }.map_err(|_| anyhow!("the submission queue stays full"))
}

/// The error every failed probe becomes: `io_uring unavailable here: <reason>`.
fn unavailable(reason: &str) -> anyhow::Error {
    anyhow!("io_uring unavailable here: {reason}")
}

/// An error naming the opcodes `supported` says no to; `Ok` if none.
fn missing_opcodes(opcodes: &[(u8, &str)], supported: impl Fn(u8) -> bool) -> anyhow::Result<()> {
    let missing: Vec<&str> = opcodes.iter().filter(|(op, _)| !supported(*op)).map(|(_, name)| *name).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(unavailable(&format!("the kernel lacks the operations {}", missing.join(", "))))
    }
}

/// What the system says about io_uring, for the reason of a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SystemFacts {
    /// `uname -r`.
    kernel: String,
    /// `/proc/sys/kernel/io_uring_disabled` (absent before 6.6).
    disabled: Option<String>,
}

impl SystemFacts {
    fn read() -> SystemFacts {
        let kernel = nix::sys::utsname::uname()
            .map_or_else(|_| "unknown".to_owned(), |u| u.release().to_string_lossy().into_owned());
        let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok().map(|s| s.trim().to_owned());
        SystemFacts { kernel, disabled }
    }
}

/// Why `io_uring_setup` failed with `err`, in words.
fn ring_error_reason(err: &io::Error, facts: &SystemFacts) -> String {
    let kernel = &facts.kernel;
    let errno = err.raw_os_error().map(Errno::from_raw);
    let why = match errno {
        Some(Errno::ENOSYS) => format!(
            "io_uring_setup does not exist (kernel {kernel}: io_uring needs 5.1 and this model 6.1), \
             or a seccomp filter hides it"
        ),
        Some(Errno::EPERM | Errno::EACCES) => {
            let sysctl = match facts.disabled.as_deref() {
                Some("2") => "kernel.io_uring_disabled = 2: disabled for everyone".to_owned(),
                Some("1") => "kernel.io_uring_disabled = 1: only for kernel.io_uring_group and CAP_SYS_ADMIN".to_owned(),
                Some(value) => format!("kernel.io_uring_disabled = {value}"),
                None => "no kernel.io_uring_disabled sysctl".to_owned(),
            };
            format!("io_uring_setup is not permitted ({sysctl}; or a seccomp filter blocks it)")
        }
        Some(Errno::EINVAL) => format!(
            "the kernel rejects the ring's flags (kernel {kernel}; SUBMIT_ALL needs 5.18, \
             SINGLE_ISSUER 6.0, DEFER_TASKRUN 6.1)"
        ),
        Some(Errno::ENOMEM) => {
            "no memory for the ring (RLIMIT_MEMLOCK before kernel 5.12, or the memory cgroup)".to_owned()
        }
        Some(Errno::EMFILE | Errno::ENFILE) => "no file descriptor left for the ring".to_owned(),
        _ => format!("io_uring_setup failed (kernel {kernel})"),
    };
    format!("{why}: {err}")
}

/// One accepted connection, owned by its worker's table from accept to close.
#[derive(Debug)]
struct Conn {
    fd: OwnedFd,
    peer: Peer,
    /// Its buffer is what the pending `Recv` writes into or the pending
    /// `Send` reads from: the connection stays in the table until that
    /// operation's CQE arrives.
    state: EchoState,
    /// Held until the connection is closed.
    _permit: Permit,
}

/// One worker: its ring, its listener, its connections. (No `Debug`:
/// `IoUring` has none.)
///
/// Never dropped while it has operations in flight: [`Worker::run`] returns
/// only on a fatal error, and then the process exits at once — so the
/// buffers the kernel may still write into are never freed under it.
struct Worker {
    ring: IoUring,
    listener: Listener,
    /// Connections by index (the `user_data` of their one operation);
    /// Live connections by slot; the slot is the operations' `user_data`.
    conns: Slab<Conn>,
    limit: ConnectionLimit,
    errors: Arc<AcceptErrors>,
    buffer_size: usize,
    /// The back-off of a `Timeout` SQE. Boxed so its address is stable; the
    /// kernel reads it when the SQE is submitted, and only one such SQE is
    /// ever queued at a time.
    pause: Box<types::Timespec>,
}

impl Worker {
    /// Builds the ring (in this, its only thread) and arms the accept.
    fn new(
        listener: Listener,
        limit: ConnectionLimit,
        errors: Arc<AcceptErrors>,
        buffer_size: usize,
    ) -> anyhow::Result<Worker> {
        let ring = build_ring().map_err(|err| unavailable(&ring_error_reason(&err, &SystemFacts::read())))?;
        let mut worker = Worker {
            ring,
            listener,
            conns: Slab::new(),
            limit,
            errors,
            buffer_size,
            pause: Box::new(types::Timespec::new()),
        };
        worker.arm_accept()?;
        worker.ring.submit().context("a worker cannot submit its first accept")?;
        Ok(worker)
    }

    /// Submits what is queued, waits for completions, handles them; forever.
    fn run(&mut self) -> anyhow::Result<()> {
        let batch = (self.ring.params().sq_entries() / 2) as usize;
        let mut cqes: Vec<cqueue::Entry> = Vec::with_capacity(batch);
        loop {
            enter(&mut self.ring, batch, &mut cqes)?;
            for cqe in &cqes {
                match cqe.user_data() {
                    ACCEPT => self.accepted(cqe.result(), cqe.flags())?,
                    ACCEPT_PAUSE => self.arm_accept()?, // the back-off is over (-ETIME)
                    index => self.completed(index as usize, cqe.result())?,
                }
            }
        }
    }

    /// Queues `entry`.
    ///
    /// # Safety
    ///
    /// Every buffer (and timespec) `entry` points to must stay valid, and
    /// not be moved or freed, until its CQE has arrived (for a timespec:
    /// until it is submitted).
    unsafe fn push(&mut self, entry: squeue::Entry) -> anyhow::Result<()> {
        // SAFETY: the caller's promise is this function's.
        unsafe { push(&mut self.ring, entry) }
    }

    /// Queues the multishot accept on this worker's listener.
    fn arm_accept(&mut self) -> anyhow::Result<()> {
        // The listener is in blocking mode (as bound): io_uring tries the
        // accept without blocking and, when nothing is pending, waits on a
        // poll of the socket — no thread blocks. Accepted sockets are
        // blocking too, for the same reason; close-on-exec like std's.
        let entry = opcode::AcceptMulti::new(types::Fd(self.listener.as_raw_fd()))
            .flags(SockFlag::SOCK_CLOEXEC.bits())
            .build()
            .user_data(ACCEPT);
        // SAFETY: no buffer: multishot accept passes no address out. The
        // listener's descriptor lives in `self` as long as the ring.
        unsafe { self.push(entry) }
    }

    /// A CQE of the multishot accept: a new connection (`res` is its fd),
    /// or an error, which ends the multishot.
    fn accepted(&mut self, res: i32, flags: u32) -> anyhow::Result<()> {
        let mut pause = Duration::ZERO;
        if res >= 0 {
            // SAFETY: the kernel just installed this descriptor for us;
            // nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(res) };
            self.admit(fd)?;
        } else {
            pause = self.errors.backoff(&io::Error::from_raw_os_error(-res));
        }
        if !cqueue::more(flags) {
            // The multishot ended (an error, or the kernel could not post a
            // CQE): re-arm it, after the back-off for errors like EMFILE —
            // re-arming at once would fail at once, forever.
            if pause.is_zero() {
                self.arm_accept()?;
            } else {
                *self.pause = types::Timespec::from(pause);
                let entry = opcode::Timeout::new(&*self.pause).build().user_data(ACCEPT_PAUSE);
                // SAFETY: `self.pause` is boxed in `self`, which outlives the
                // ring's use; the kernel copies it when this SQE is
                // submitted, and it is not rewritten before then (one
                // back-off at a time: the accept is not armed meanwhile).
                unsafe { self.push(entry) }?;
            }
        }
        Ok(())
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
        let conn = Conn { fd, peer, state: EchoState::new(self.buffer_size), _permit: permit };
        let index = self.conns.insert(conn);
        self.advance(index)
    }

    /// The CQE of connection `index`'s one operation (which one, its state
    /// says: a receive if it was waiting to read, else a send).
    fn completed(&mut self, index: usize, res: i32) -> anyhow::Result<()> {
        let Some(conn) = self.conns.get_mut(index) else {
            warn!(index, "completion for no connection");
            return Ok(());
        };
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
        let entry = match conn.state.next() {
            Next::Read => {
                let buf = conn.state.read_buf();
                opcode::Recv::new(fd, buf.as_mut_ptr(), buf.len() as u32).build()
            }
            Next::Write => {
                let pending = conn.state.pending();
                // MSG_NOSIGNAL: a peer gone away is an EPIPE result, not a SIGPIPE.
                opcode::Send::new(fd, pending.as_ptr(), pending.len() as u32)
                    .flags(MsgFlags::MSG_NOSIGNAL.bits())
                    .build()
            }
            Next::Close => {
                let echoed = conn.state.echoed();
                return self.close(index, Ok(echoed));
            }
        };
        // SAFETY: the buffer is the connection's EchoState buffer, a boxed
        // slice whose address never changes; the connection (and so the
        // buffer and the fd) stays in `self.conns` until this operation's
        // CQE has arrived — `close` is only called from a completion or
        // before any operation is posted — and nothing touches the buffer
        // meanwhile: one operation per connection at a time.
        unsafe { self.push(entry.user_data(index as u64)) }
    }

    /// Closes connection `index` (no operation in flight on it): a plain
    /// close(2), as its `OwnedFd` drops, and its permit goes back.
    fn close(&mut self, index: usize, result: io::Result<u64>) -> anyhow::Result<()> {
        if let Some(conn) = self.conns.remove(index) {
            log_end(&conn.peer, &result);
        }
        Ok(())
    }
}


/// The opcodes of the datagram design, with the kernel each first appeared in.
const DATAGRAM_OPCODES: [(u8, &str); 3] = [
    (opcode::RecvMsgMulti::CODE, "recvmsg (5.3; multishot 6.0)"),
    (opcode::SendMsg::CODE, "sendmsg (5.3)"),
    (opcode::Timeout::CODE, "timeout (5.4)"),
];

/// Buffers in each worker's provided buffer ring: how many datagrams a
/// worker holds at once, received and not yet echoed (a power of two, as
/// the kernel requires).
pub const DATAGRAM_BUFFERS: u16 = 256;

/// The buffer group id of a worker's buffer ring (one per ring).
const BUFFER_GROUP: u16 = 0;

/// `user_data` of the multishot receive; a send's is its buffer id.
const RECEIVE: u64 = u64::MAX - 2;
/// `user_data` of the receive back-off timer.
const RECEIVE_PAUSE: u64 = u64::MAX - 3;

/// The room for a source address in each buffer: a `sockaddr_in6`, the
/// larger of the two families.
const NAME_LEN: usize = std::mem::size_of::<nix::libc::sockaddr_in6>();

/// The header the kernel writes at the start of each buffer:
/// `struct io_uring_recvmsg_out`, four `u32` (namelen, controllen,
/// payloadlen, flags).
const OUT_HEADER_LEN: usize = 16;

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
    probe(build_ring, &DATAGRAM_OPCODES)?;
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

/// The `SENDMSG` of one echo: its header and its one iovec, pointing into
/// the buffer the datagram arrived in. One per buffer, at a fixed address
/// (a boxed slice), as the kernel reads it when the send runs.
struct SendSlot {
    header: nix::libc::msghdr,
    iov: nix::libc::iovec,
}

/// A provided buffer ring: the ring of buffer descriptors the kernel takes
/// from (page-aligned memory we own), and the buffers themselves.
struct BufferRing {
    /// `DATAGRAM_BUFFERS` descriptors; the tail lives in the first one's
    /// reserved field.
    ring: std::ptr::NonNull<types::BufRingEntry>,
    layout: std::alloc::Layout,
    /// The buffers, end to end, `buffer_len` bytes each; never moved.
    memory: Box<[u8]>,
    buffer_len: usize,
    /// Our tail: descriptors published so far (wrapping).
    tail: u16,
}

impl BufferRing {
    /// Allocates the ring and `DATAGRAM_BUFFERS` buffers of `buffer_len`
    /// bytes, every buffer in the ring.
    fn new(buffer_len: usize) -> io::Result<BufferRing> {
        let bytes = usize::from(DATAGRAM_BUFFERS) * std::mem::size_of::<types::BufRingEntry>();
        // The kernel wants the ring page-aligned.
        let layout = std::alloc::Layout::from_size_align(bytes, 4096).map_err(io::Error::other)?;
        // SAFETY: the layout has a non-zero size.
        let ring = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<types::BufRingEntry>();
        let ring = std::ptr::NonNull::new(ring).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let memory = vec![0u8; usize::from(DATAGRAM_BUFFERS) * buffer_len].into_boxed_slice();
        let mut buffers = BufferRing { ring, layout, memory, buffer_len, tail: 0 };
        for bid in 0..DATAGRAM_BUFFERS {
            buffers.put(bid);
        }
        buffers.publish();
        Ok(buffers)
    }

    /// Buffer `bid`, whole.
    fn buffer(&self, bid: u16) -> &[u8] {
        &self.memory[usize::from(bid) * self.buffer_len..][..self.buffer_len]
    }

    /// Writes buffer `bid`'s descriptor at the tail (not yet visible to
    /// the kernel: [`BufferRing::publish`]).
    fn put(&mut self, bid: u16) {
        let index = usize::from(self.tail & (DATAGRAM_BUFFERS - 1));
        let addr = self.buffer(bid).as_ptr() as u64;
        // SAFETY: `index` is within the ring's DATAGRAM_BUFFERS entries; the
        // kernel reads only the entries between its head and our published
        // tail, and this one is beyond the tail until `publish`.
        let entry = unsafe { &mut *self.ring.as_ptr().add(index) };
        entry.set_addr(addr);
        entry.set_len(self.buffer_len as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every descriptor put so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: the ring's base is a valid, initialised first entry; its
        // reserved field is the ring's tail (io_uring_buf_ring), a u16 that
        // the kernel reads concurrently: hence the atomic store, with
        // Release so that the descriptors written before it are seen first.
        unsafe {
            let tail = types::BufRingEntry::tail(self.ring.as_ptr()).cast_mut();
            (*tail.cast::<std::sync::atomic::AtomicU16>()).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }

    /// Gives buffer `bid` back to the kernel.
    fn give_back(&mut self, bid: u16) {
        self.put(bid);
        self.publish();
    }
}

impl Drop for BufferRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout. The worker drops its
        // ring (unregistering this buffer ring) before this: see the field
        // order of `DatagramWorker`.
        unsafe { std::alloc::dealloc(self.ring.as_ptr().cast(), self.layout) }
    }
}

/// One datagram worker: its ring, socket and buffers. (No `Debug`:
/// `IoUring` has none.)
///
/// Never dropped while operations are in flight, as for [`Worker`]: `run`
/// returns only on a fatal error, and the process then exits.
struct DatagramWorker {
    /// First, so that it is dropped (the kernel letting go of the buffers)
    /// before the buffers are freed.
    ring: IoUring,
    socket: std::net::UdpSocket,
    echo: DatagramEcho,
    buffers: BufferRing,
    /// The multishot receive's template: only its name and control lengths
    /// matter (the kernel reads it when the SQE is submitted).
    template: Box<nix::libc::msghdr>,
    /// One send per buffer at most: indexed by buffer id.
    sends: Box<[SendSlot]>,
    /// Buffers held by a send in flight.
    sending: usize,
    /// The multishot receive is active.
    armed: bool,
    /// A receive back-off is running.
    paused: bool,
    pause: Box<types::Timespec>,
}

impl DatagramWorker {
    /// Builds the ring (in this, its only thread), registers the buffer
    /// ring and arms the receive.
    fn new(socket: std::net::UdpSocket, echo: DatagramEcho) -> anyhow::Result<DatagramWorker> {
        let ring = build_ring().map_err(|err| unavailable(&ring_error_reason(&err, &SystemFacts::read())))?;
        // Header, address, payload: one byte more than --buffer-size, so that
        // a datagram filling it is known to be too large (MSG_TRUNC says so too).
        let buffer_len = (OUT_HEADER_LEN + NAME_LEN + echo.receive_len()).next_multiple_of(16);
        let buffers = BufferRing::new(buffer_len).context("no memory for the buffer ring")?;
        // SAFETY: the ring's memory is valid for DATAGRAM_BUFFERS entries and
        // lives in `buffers`, dropped after `ring` (which unregisters it).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                buffers.ring.as_ptr() as u64,
                DATAGRAM_BUFFERS,
                BUFFER_GROUP,
                0,
            )
        }
        .map_err(|err| unavailable(&format!("cannot register a provided buffer ring (Linux 5.19+): {err}")))?;
        // SAFETY: an all-zero msghdr is a valid empty one.
        let mut template: Box<nix::libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        template.msg_namelen = NAME_LEN as u32;
        let sends = (0..DATAGRAM_BUFFERS)
            .map(|_| SendSlot {
                // SAFETY: as above; filled in before each send.
                header: unsafe { std::mem::zeroed() },
                iov: nix::libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 },
            })
            .collect();
        let mut worker = DatagramWorker {
            ring,
            socket,
            echo,
            buffers,
            template,
            sends,
            sending: 0,
            armed: false,
            paused: false,
            pause: Box::new(types::Timespec::new()),
        };
        worker.rearm()?;
        worker.ring.submit().context("a worker cannot submit its first receive")?;
        Ok(worker)
    }

    /// Submits what is queued (the round's sends, a re-armed receive),
    /// waits for completions, handles them; forever.
    fn run(&mut self) -> anyhow::Result<()> {
        let batch = (self.ring.params().sq_entries() / 2) as usize;
        let mut cqes: Vec<cqueue::Entry> = Vec::with_capacity(batch);
        loop {
            enter(&mut self.ring, batch, &mut cqes)?;
            for cqe in &cqes {
                match cqe.user_data() {
                    RECEIVE => self.received(cqe.result(), cqe.flags())?,
                    RECEIVE_PAUSE => self.paused = false, // the back-off is over (-ETIME)
                    bid => self.sent(bid as u16, cqe.result()),
                }
            }
            self.rearm()?;
        }
    }

    /// Queues `entry`; as [`Worker::push`].
    ///
    /// # Safety
    ///
    /// As [`Worker::push`]: what `entry` points to stays valid until its CQE.
    unsafe fn push(&mut self, entry: squeue::Entry) -> anyhow::Result<()> {
        // SAFETY: the caller's promise is this function's.
        unsafe { push(&mut self.ring, entry) }
    }

    /// Arms the multishot receive if it is not active, no back-off runs and
    /// the buffer ring has a buffer for it.
    fn rearm(&mut self) -> anyhow::Result<()> {
        if self.armed || self.paused || self.sending >= usize::from(DATAGRAM_BUFFERS) {
            return Ok(());
        }
        let entry = opcode::RecvMsgMulti::new(types::Fd(self.socket.as_raw_fd()), &*self.template, BUFFER_GROUP)
            .build()
            .user_data(RECEIVE);
        // SAFETY: the template is boxed in `self` and the socket lives in
        // `self`, as long as the ring; the buffers are the registered ring's.
        unsafe { self.push(entry) }?;
        self.armed = true;
        Ok(())
    }

    /// A CQE of the multishot receive: a datagram in a buffer of the ring,
    /// or an error (which ends the multishot).
    fn received(&mut self, res: i32, flags: u32) -> anyhow::Result<()> {
        if !cqueue::more(flags) {
            self.armed = false; // re-armed at the end of the round
        }
        if res < 0 {
            match Errno::from_raw(-res) {
                // The buffer ring is empty: every buffer waits for its echo.
                // Re-armed when one comes back.
                Errno::ENOBUFS | Errno::EINTR | Errno::EAGAIN => {}
                errno => {
                    let pause = self.echo.receive_failed(&io::Error::from(errno));
                    if !pause.is_zero() {
                        self.paused = true;
                        *self.pause = types::Timespec::from(pause);
                        let entry = opcode::Timeout::new(&*self.pause).build().user_data(RECEIVE_PAUSE);
                        // SAFETY: `self.pause` is boxed in `self`; one back-off at a time.
                        unsafe { self.push(entry) }?;
                    }
                }
            }
            return Ok(());
        }
        let Some(bid) = cqueue::buffer_select(flags) else {
            warn!("a received datagram without a buffer");
            return Ok(());
        };
        let parsed = types::RecvMsgOut::parse(&self.buffers.buffer(bid)[..res as usize], &self.template);
        let echo_it = match &parsed {
            Ok(out) => {
                let len = out.incoming_payload_len() as usize;
                // Cannot be echoed whole: larger than the buffer (MSG_TRUNC),
                // or (never for an IP address, which NAME_LEN holds) a
                // source address cut short.
                let cut = out.is_payload_truncated() || out.payload_data().len() != len || out.is_name_data_truncated();
                self.echo.received(len, cut, Source(out.name_data()))
            }
            Err(()) => {
                warn!(bid, bytes = res, "cannot parse a received datagram's buffer; dropped");
                false
            }
        };
        let out = match parsed {
            Ok(out) if echo_it => out,
            _ => {
                self.buffers.give_back(bid);
                return Ok(());
            }
        };
        let (name, payload) = (out.name_data(), out.payload_data());
        let slot = &mut self.sends[usize::from(bid)];
        slot.iov = nix::libc::iovec { iov_base: payload.as_ptr().cast_mut().cast(), iov_len: payload.len() };
        slot.header.msg_name = name.as_ptr().cast_mut().cast();
        slot.header.msg_namelen = name.len() as u32;
        slot.header.msg_iov = &mut slot.iov;
        slot.header.msg_iovlen = 1;
        let entry = opcode::SendMsg::new(types::Fd(self.socket.as_raw_fd()), &slot.header).build().user_data(u64::from(bid));
        self.sending += 1;
        // SAFETY: the header, its iovec (in `self.sends`, a boxed slice) and
        // the buffer they point into (taken out of the buffer ring by the
        // kernel, given back only when this send's CQE has arrived) stay put
        // and untouched until then.
        unsafe { self.push(entry) }
    }

    /// The CQE of the echo held in buffer `bid`: count it, give the buffer back.
    fn sent(&mut self, bid: u16, res: i32) {
        let Some(slot) = self.sends.get(usize::from(bid)) else {
            warn!(bid, "completion for no send");
            return;
        };
        let len = slot.iov.iov_len;
        let peer = Source(self.buffers.buffer(bid)[OUT_HEADER_LEN..][..slot.header.msg_namelen as usize].as_ref());
        let result = if res < 0 { Err(io::Error::from_raw_os_error(-res)) } else { Ok(res as usize) };
        self.echo.sent(result, len, peer);
        self.sending -= 1;
        self.buffers.give_back(bid);
    }
}

/// A source address as the kernel wrote it (a `sockaddr_in` or
/// `sockaddr_in6`), for logs: decoded only when printed.
struct Source<'a>(&'a [u8]);

impl std::fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match sockaddr_of(self.0) {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("(unknown)"),
        }
    }
}

/// Decodes a `sockaddr_in` or `sockaddr_in6` from its bytes.
fn sockaddr_of(bytes: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes(bytes.get(..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
    if family == nix::libc::AF_INET {
        let ip: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
        Some(SocketAddr::from((ip, port)))
    } else if family == nix::libc::AF_INET6 {
        let ip: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
        Some(SocketAddr::from((ip, port)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(disabled: Option<&str>) -> SystemFacts {
        SystemFacts { kernel: "5.10.0-test".to_owned(), disabled: disabled.map(str::to_owned) }
    }

    /// What main prints (`{:#}`) for a probe that failed with `errno`.
    fn probe_failing_with(errno: Errno) -> String {
        let err = probe(|| Err(io::Error::from_raw_os_error(errno as i32)), &OPCODES).expect_err("a failed ring build");
        format!("{err:#}")
    }

    #[test]
    fn a_ring_that_cannot_be_built_is_reported_as_unavailable() {
        for errno in [Errno::ENOSYS, Errno::EPERM, Errno::EINVAL, Errno::ENOMEM, Errno::EMFILE, Errno::EIO] {
            let message = probe_failing_with(errno);
            assert!(message.starts_with("io_uring unavailable here: "), "{errno}: {message}");
            assert_eq!(message.lines().count(), 1, "{errno}: one line: {message:?}");
        }
    }

    #[test]
    fn the_reason_names_the_likely_cause() {
        let reason = |errno: Errno, disabled| ring_error_reason(&io::Error::from_raw_os_error(errno as i32), &facts(disabled));
        assert!(reason(Errno::EPERM, Some("2")).contains("io_uring_disabled = 2"));
        assert!(reason(Errno::EPERM, Some("1")).contains("io_uring_group"));
        assert!(reason(Errno::EPERM, None).contains("seccomp"));
        assert!(reason(Errno::ENOSYS, None).contains("5.10.0-test"));
        assert!(reason(Errno::EINVAL, None).contains("DEFER_TASKRUN 6.1"));
        assert!(reason(Errno::ENOMEM, None).contains("RLIMIT_MEMLOCK"));
    }

    #[test]
    fn missing_opcodes_are_named() {
        assert!(missing_opcodes(&OPCODES, |_| true).is_ok());
        let err = missing_opcodes(&OPCODES, |op| op != opcode::Send::CODE).unwrap_err().to_string();
        assert!(err.starts_with("io_uring unavailable here: "), "{err}");
        assert!(err.contains("send (5.6)") && !err.contains("recv"), "{err}");
    }
}

#[cfg(test)]
mod datagram_tests {
    use super::*;

    #[test]
    fn source_addresses_decode_from_the_kernel_bytes() {
        let v4: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        let v6: SocketAddr = "[::1]:7".parse().unwrap();
        for addr in [v4, v6] {
            let storage = nix::sys::socket::SockaddrStorage::from(addr);
            let len = nix::sys::socket::SockaddrLike::len(&storage) as usize;
            // SAFETY: `storage` holds `len` initialised bytes of a sockaddr.
            let bytes = unsafe {
                std::slice::from_raw_parts(nix::sys::socket::SockaddrLike::as_ptr(&storage).cast::<u8>(), len)
            };
            assert_eq!(sockaddr_of(bytes), Some(addr));
        }
        assert_eq!(sockaddr_of(&[0u8; 3]), None);
    }
}
