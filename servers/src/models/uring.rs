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
//! whichever the kernel wakes first. The main thread waits for SIGINT or
//! SIGTERM and returns; the workers are detached and die with the process,
//! whose exit closes the rings, the listeners and every connection.
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
//! | multishot `IORING_OP_ACCEPT`            | 5.19  |
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
//! ```text
//! echo-server uring --addr 127.0.0.1:7000 --workers 2
//! ```

use std::borrow::Cow::Borrowed;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Args as ClapArgs;
use echo_common::ModelInfo;
use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, SockFlag};
use socket2::SockRef;
use tracing::warn;

use crate::Ready;
use crate::models::Datagrams;
use crate::cli::{Common, CpuWorkers};
use crate::echo::{EchoState, Next, log_end};
use crate::listen::{AcceptErrors, ConnectionLimit, Permit};
use crate::models::reactor::Slab;
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
    pub workers: CpuWorkers,
}

/// Serves datagrams: [`serve_datagrams`].
pub const DATAGRAMS: Option<Datagrams<Args>> = None;

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

/// Probes io_uring, starts the workers (each builds its ring and arms its
/// accept), announces, then waits for a shutdown signal.
pub fn serve(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
    // Before anything else, so that "cannot run here" is the one error line.
    probe(build_ring)?;

    let workers = args.workers.get();
    let limit = ConnectionLimit::new(args.common.max_connections());
    let buffer_size = args.common.buffer_size();
    // One accept-error policy for all workers, so that its log throttle is
    // the process's: at EMFILE every worker fails at once.
    let errors = Arc::new(AcceptErrors::default());

    // Every worker's listener, opened here so that a failure is reported
    // before the `listening on` line.
    let mut listeners = Vec::with_capacity(workers);
    for _ in 1..workers {
        let sibling = match &listener {
            Listener::Tcp(_) => listener.bind_sibling(args.common.backlog),
            // No SO_REUSEPORT for Unix sockets: every ring accepts on the same socket.
            Listener::Unix(_) => listener.try_clone(),
        };
        listeners.push(sibling.context("cannot open a listener for another worker")?);
    }
    listeners.insert(0, listener);

    let (started_tx, started) = mpsc::channel::<anyhow::Result<()>>();
    for (id, listener) in listeners.into_iter().enumerate() {
        let (limit, errors) = (limit.clone(), Arc::clone(&errors));
        let started_tx = started_tx.clone();
        std::thread::Builder::new()
            .name(format!("echo-uring-{id}"))
            .spawn(move || worker_main(id, listener, limit, errors, buffer_size, started_tx))
            .context("cannot start a worker thread")?;
    }
    drop(started_tx);
    for _ in 0..workers {
        started.recv().context("a worker thread died while starting")??;
    }
    ready.announce()?;

    shutdown.wait();
    // Workers are not joined: the process exits, and the kernel tears down
    // the rings (cancelling their pending requests) and closes every socket.
    Ok(())
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
fn probe(build: impl FnOnce() -> io::Result<IoUring>) -> anyhow::Result<()> {
    let ring = build().map_err(|err| unavailable(&ring_error_reason(&err, &SystemFacts::read())))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|err| unavailable(&format!("cannot probe the supported operations ({err})")))?;
    missing_opcodes(|op| probe.is_supported(op))
}

/// The error every failed probe becomes: `io_uring unavailable here: <reason>`.
fn unavailable(reason: &str) -> anyhow::Error {
    anyhow!("io_uring unavailable here: {reason}")
}

/// An error naming the opcodes `supported` says no to; `Ok` if none.
fn missing_opcodes(supported: impl Fn(u8) -> bool) -> anyhow::Result<()> {
    let missing: Vec<&str> = OPCODES.iter().filter(|(op, _)| !supported(*op)).map(|(_, name)| *name).collect();
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

/// A worker thread: builds its ring, reports whether it could, serves.
fn worker_main(
    id: usize,
    listener: Listener,
    limit: ConnectionLimit,
    errors: Arc<AcceptErrors>,
    buffer_size: usize,
    started: mpsc::Sender<anyhow::Result<()>>,
) {
    let worker = Worker::new(listener, limit, errors, buffer_size);
    let mut worker = match worker {
        Ok(worker) => {
            let _ = started.send(Ok(()));
            worker
        }
        Err(err) => {
            // Not wrapped in "worker {id}": an unavailable io_uring must
            // stay the line's first words, whichever ring found out.
            let _ = started.send(Err(err));
            return;
        }
    };
    drop(started);
    if let Err(err) = worker.run() {
        // A ring that cannot be entered any more serves nobody, and its
        // listener would keep taking its share of new connections into a
        // backlog nobody accepts from: end the process, loudly.
        eprintln!("echo-server: uring: worker {id}: {err:#}");
        std::process::exit(1);
    }
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
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                // A signal, or the kernel asking us to reap completions
                // before it takes more: reap (below), then enter again.
                Err(err) if matches!(err.raw_os_error().map(Errno::from_raw), Some(Errno::EINTR)) => {}
                Err(err) if matches!(err.raw_os_error().map(Errno::from_raw), Some(Errno::EBUSY | Errno::EAGAIN)) => {
                    if self.ring.completion().is_empty() {
                        std::thread::sleep(Duration::from_millis(1)); // never spin
                    }
                }
                Err(err) => return Err(err).context("io_uring_enter failed"),
            }
            cqes.clear();
            cqes.extend(self.ring.completion().take(batch));
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
        if unsafe { self.ring.submission().push(&entry) }.is_ok() {
            return Ok(());
        }
        // Cannot happen with the batch size above; if it does, make room.
        self.ring.submit().context("cannot submit a full submission queue")?;
        // SAFETY: as above.
        unsafe { self.ring.submission().push(&entry) }.map_err(|_| anyhow!("the submission queue stays full"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(disabled: Option<&str>) -> SystemFacts {
        SystemFacts { kernel: "5.10.0-test".to_owned(), disabled: disabled.map(str::to_owned) }
    }

    /// What main prints (`{:#}`) for a probe that failed with `errno`.
    fn probe_failing_with(errno: Errno) -> String {
        let err = probe(|| Err(io::Error::from_raw_os_error(errno as i32))).expect_err("a failed ring build");
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
        assert!(missing_opcodes(|_| true).is_ok());
        let err = missing_opcodes(|op| op != opcode::Send::CODE).unwrap_err().to_string();
        assert!(err.starts_with("io_uring unavailable here: "), "{err}");
        assert!(err.contains("send (5.6)") && !err.contains("recv"), "{err}");
    }
}
