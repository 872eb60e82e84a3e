//! The datagram echo: UDP's own small program, written once.
//!
//! UDP is not a stream with the connection taken out. There is no accept,
//! no connection, no half-close and no backpressure: one socket receives
//! every client's datagrams, each with the address it came from, and the
//! echo is one datagram sent back to that address. Nothing is owed to a
//! client once its echo is sent, so the server holds no state per client at
//! all; and a datagram may be lost on the way in (the receive buffer was
//! full) or out (the send failed), which the client sees as loss, never as
//! a stall.
//!
//! ## The contract (`--addr udp:IP:PORT`)
//!
//! - Every datagram received is sent back once, unchanged, to its source.
//! - A datagram larger than `--buffer-size` is dropped and counted, never
//!   echoed cut short. How we know: the receive buffer is one byte larger
//!   than `--buffer-size` ([`DatagramEcho::receive_len`]), so a datagram
//!   that fills it did not fit, whatever the receive call (`recvfrom`,
//!   `recvmmsg`, tokio's, may's, io_uring's); where the call reports the
//!   kernel's MSG_TRUNC flag too (`recvmmsg`, io_uring's `RECVMSG`), that
//!   counts as well. The log line is throttled (one a second).
//! - A send error — ENOBUFS, EAGAIN on a non-blocking socket whose send
//!   buffer is full, EPERM from a firewall — drops that one datagram and is
//!   counted; the server goes on at once. An unreachable peer is *not*
//!   seen: Linux reports ICMP errors only to a connected socket or one with
//!   `IP_RECVERR`, and these sockets are neither (one socket answers every
//!   client), so an echo to a client that has gone counts as echoed. The
//!   ICMP branch of [`DatagramEcho::receive_failed`] handles such an error
//!   should a platform report it; on Linux it does not run. A receive error that is not about one datagram is logged and
//!   retried after [`RECEIVE_BACKOFF`]: never a spin, never an exit.
//! - `--recv-buffer`/`--send-buffer` set SO_RCVBUF/SO_SNDBUF (default: the
//!   kernel's, `net.core.rmem_default`/`wmem_default`); the values the
//!   kernel actually grants are logged at start-up ([`log_buffers`]). They
//!   decide where loss begins under load: a burst larger than the receive
//!   buffer is dropped by the kernel before any model sees it (the host's
//!   `Udp: RcvbufErrors` in `/proc/net/snmp`).
//! - At shutdown the counters ([`Counts`]) are logged on stderr: received,
//!   echoed, oversize dropped, send failed, receive failed.
//! - `--backlog` and `--max-connections` mean nothing here: there is nothing
//!   to accept and no connection to cap.
//! - `--work` ([`crate::work`]): each datagram's work runs once it is
//!   received and known to fit, before its echo is sent, on the thread that
//!   received it ([`DatagramEcho::work`]; tokio's may hand `block:` work to
//!   its blocking pool).
//!
//! ## Pieces
//!
//! [`DatagramEcho`] is the echo without I/O: the driver tells it "a datagram
//! of n bytes arrived from p" ([`DatagramEcho::received`]: echo it or not?)
//! and "the echo's send did this" ([`DatagramEcho::sent`]), and it keeps the
//! counters (each worker its own, summed when read) and the throttled
//! logs. [`Receiver`] drives it with a socket that has `recv_from` and
//! `send_to` ([`DatagramSocket`]: std's, mio's, may's), one datagram per
//! system call, or with `recvmmsg`/`sendmmsg`, up to `--batch` datagrams
//! per call ([`Receiver::turn`]). [`serve_tokio`] drives it with tokio's
//! socket, and the `uring` model with completions.
//!
//! ## Segmentation offload (UDP_SEGMENT, UDP_GRO): not used
//!
//! GSO lets one `sendmsg` carry many datagrams *of the same size to the
//! same destination* (the kernel cuts the buffer into segments), and GRO
//! hands one receive several datagrams *of one flow* glued together. An
//! echo server's batch is the opposite: consecutive datagrams come from
//! different clients, with different sizes, and each echo goes to its own
//! source. GRO would need every coalesced receive split again and the
//! echoes regrouped by destination and size before a GSO send could carry
//! them. The one case it helps is a run of same-size datagrams from one
//! flow (a client with many in flight), and then only for that client: it
//! is made for bulk transfer between two ends that both speak it (QUIC),
//! not for many small independent exchanges. `--batch`
//! (`recvmmsg`/`sendmmsg`) is the batching that fits an echo: many
//! datagrams, each with its own address and length, per system call.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clap::Args;
use echo_common::endpoint::UDP_PAYLOAD_MAX;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrLike, SockaddrStorage, recvmmsg};
use socket2::{Domain, SockRef, Socket, Type};
use tracing::{info, warn};

use crate::echo::EchoOptions;
use crate::listen::LogThrottle;
use crate::work::{Blocking, Work};

/// How long a receive loop waits after a receive error that is not about
/// one datagram (ENOMEM, …): retrying at once could spin.
pub const RECEIVE_BACKOFF: Duration = Duration::from_millis(50);

/// The largest `--batch`: 1,024 datagrams per `recvmmsg` (the kernel's
/// UIO_MAXIOV caps a `sendmmsg` there too).
pub const MAX_BATCH: u32 = 1024;

/// The UDP options of every model that serves datagrams.
#[derive(Debug, Clone, Default, Args)]
pub struct DatagramOptions {
    /// Over udp: the socket's receive buffer in bytes, SO_RCVBUF (the kernel
    /// doubles it for its bookkeeping and caps it at net.core.rmem_max)
    /// [default: the kernel's, net.core.rmem_default].
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=(i32::MAX as i64 / 2)))]
    pub recv_buffer: Option<u32>,
    /// Over udp: the socket's send buffer in bytes, SO_SNDBUF (doubled,
    /// capped at net.core.wmem_max) [default: the kernel's, net.core.wmem_default].
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=(i32::MAX as i64 / 2)))]
    pub send_buffer: Option<u32>,
}

/// `--batch`, for the models that receive and send datagrams in batches.
#[derive(Debug, Clone, Args)]
pub struct BatchOption {
    /// Over udp: datagrams taken per `recvmmsg` and echoed per `sendmmsg`;
    /// 1 is one `recvfrom` and one `sendto` per datagram.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH as i64))]
    pub batch: u32,
}

impl BatchOption {
    /// `--batch` as a count.
    pub fn get(&self) -> usize {
        self.batch as usize
    }
}

/// The options that mean something over udp only, as (clap id, flag), read
/// from their option groups ([`BatchOption`], [`DatagramOptions`]): given
/// with a stream address they would silently do nothing, so they are
/// refused.
pub fn udp_only_options() -> Vec<(String, String)> {
    let groups = DatagramOptions::augment_args(BatchOption::augment_args(clap::Command::new("udp")));
    groups
        .get_arguments()
        .filter_map(|arg| Some((arg.get_id().to_string(), format!("--{}", arg.get_long()?))))
        .collect()
}

/// Why `--buffer-size` does not suit a datagram server, if it does not.
pub fn check_buffer_size(buffer_size: usize) -> Result<(), String> {
    if buffer_size > UDP_PAYLOAD_MAX {
        Err(format!(
            "--buffer-size {buffer_size} is too large for udp: a datagram carries at most {UDP_PAYLOAD_MAX} bytes"
        ))
    } else {
        Ok(())
    }
}

/// A UDP socket bound to `addr`, with the buffer sizes of `options` and, if
/// asked, SO_REUSEPORT (one socket per worker on the same port: see
/// [`bind_sibling`]). As for TCP, a port in use is refused even with
/// SO_REUSEPORT, which would otherwise let this server share it with
/// another of the same user and take part of its datagrams.
///
/// Port 0 with SO_REUSEPORT needs care over UDP: the kernel's choice of a
/// free port counts a port held by SO_REUSEPORT sockets of the same user
/// as free for another SO_REUSEPORT socket (TCP's does not, since Linux
/// 4.6), so two servers started at once could be handed the same port and
/// split each other's flows. So the port is picked by a plain bind — a port
/// no socket holds — and SO_REUSEPORT set afterwards, before the siblings
/// join it (the kernel makes the group when the first sibling binds).
///
/// No SO_REUSEADDR: a UDP socket leaves no TIME_WAIT behind, and on UDP
/// the option would let two sockets bind the same port and split its traffic.
pub fn bind(addr: SocketAddr, options: &DatagramOptions, reuse_port: bool) -> io::Result<UdpSocket> {
    if !reuse_port {
        return bind_udp(addr, options, false);
    }
    if addr.port() == 0 {
        let socket = bind_udp(addr, options, false)?;
        SockRef::from(&socket).set_reuse_port(true)?;
        return Ok(socket);
    }
    drop(bind_udp(addr, options, false)?); // EADDRINUSE if anyone holds it
    bind_udp(addr, options, true)
}

/// Another socket on `socket`'s address, for one more worker: both with
/// SO_REUSEPORT. The kernel hands each datagram to one of the sockets by a
/// hash of its 4-tuple (source and destination address and port), so all
/// the datagrams of one flow land on the same socket, in order.
pub fn bind_sibling(socket: &UdpSocket, options: &DatagramOptions) -> io::Result<UdpSocket> {
    bind_udp(socket.local_addr()?, options, true)
}

fn bind_udp(addr: SocketAddr, options: &DatagramOptions, reuse_port: bool) -> io::Result<UdpSocket> {
    // socket2 sets close-on-exec.
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if let Some(bytes) = options.recv_buffer {
        socket.set_recv_buffer_size(bytes as usize)?;
    }
    if let Some(bytes) = options.send_buffer {
        socket.set_send_buffer_size(bytes as usize)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Logs the buffer sizes the kernel granted `socket` (what getsockopt
/// reports: twice the size asked, capped by `net.core.rmem_max` and
/// `wmem_max`), and warns if a size asked for was capped.
pub fn log_buffers(socket: &UdpSocket, options: &DatagramOptions) {
    let socket = SockRef::from(socket);
    let (recv, send) = (socket.recv_buffer_size(), socket.send_buffer_size());
    match (&recv, &send) {
        (Ok(recv), Ok(send)) => info!(recv_buffer_bytes = recv, send_buffer_bytes = send, "udp socket buffers"),
        _ => warn!(?recv, ?send, "cannot read the udp socket buffer sizes"),
    }
    for (name, asked, granted, sysctl) in [
        ("--recv-buffer", options.recv_buffer, recv.ok(), "net.core.rmem_max"),
        ("--send-buffer", options.send_buffer, send.ok(), "net.core.wmem_max"),
    ] {
        if let (Some(asked), Some(granted)) = (asked, granted) {
            if granted / 2 < asked as usize {
                warn!(asked, granted_bytes = granted / 2, "{name} capped by {sysctl}");
            }
        }
    }
}

/// The datagram counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Datagrams received, oversize ones included.
    pub received: u64,
    /// Echoes sent: counted as each is handed to the kernel, and taken back
    /// (into `send_failed`) if the send fails, so that an echo a client
    /// has received is always counted, even at shutdown.
    pub echoed: u64,
    /// Datagrams larger than `--buffer-size`: dropped, not echoed.
    pub oversize_dropped: u64,
    /// Echoes the kernel refused (or an ICMP error reported lost): dropped.
    pub send_failed: u64,
    /// Receive calls that failed (not a timeout or a signal).
    pub receive_failed: u64,
}

/// One worker's counters, on a cache line of their own (two, for CPUs that
/// fetch lines in pairs): workers count every datagram, and counters shared
/// between them would bounce one line between their CPUs at every count —
/// a cost the thread-per-core designs exist to avoid.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Counters {
    received: AtomicU64,
    /// Wrapping: an ICMP error may take back, on one worker, an echo that
    /// another worker counted (a shared socket); the sum is right.
    echoed: AtomicU64,
    oversize_dropped: AtomicU64,
    send_failed: AtomicU64,
    receive_failed: AtomicU64,
}

/// What every worker of a server shares: the list of their counters (read
/// at shutdown, and when a log line is due) and the log throttles.
#[derive(Debug, Default)]
struct Shared {
    workers: Mutex<Vec<Arc<Counters>>>,
    oversize_log: LogThrottle,
    send_log: LogThrottle,
    receive_log: LogThrottle,
}

/// The datagram echo without I/O: told what arrived and what a send did,
/// it says whether to echo, counts, and logs (throttled). One per server,
/// cloned into every worker: each clone counts on counters of its own,
/// and [`DatagramEcho::counts`] sums them all.
#[derive(Debug)]
pub struct DatagramEcho {
    shared: Arc<Shared>,
    mine: Arc<Counters>,
    buffer_size: usize,
    work: Work,
}

/// A clone for another worker: the same server's echo, with counters of its own.
impl Clone for DatagramEcho {
    fn clone(&self) -> DatagramEcho {
        DatagramEcho::joining(Arc::clone(&self.shared), self.buffer_size, self.work)
    }
}

impl DatagramEcho {
    /// An echo of datagrams up to `options.buffer_size` bytes, each with
    /// `options.work` before its echo.
    pub fn new(options: EchoOptions) -> DatagramEcho {
        DatagramEcho::joining(Arc::default(), options.buffer_size, options.work)
    }

    fn joining(shared: Arc<Shared>, buffer_size: usize, work: Work) -> DatagramEcho {
        let mine = Arc::new(Counters::default());
        shared.workers.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::clone(&mine));
        DatagramEcho { shared, mine, buffer_size, work }
    }

    /// The work each datagram costs before its echo (`--work`): the driver
    /// runs it between [`DatagramEcho::received`] saying "echo it" and the
    /// send, on its own thread (every receive loop here), or through
    /// [`Work::run_async`] (tokio's).
    pub fn work(&self) -> Work {
        self.work
    }

    /// `--buffer-size`: the largest datagram echoed.
    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    /// How large a receive buffer must be: one byte more than the largest
    /// datagram echoed, so that a datagram filling it is known to be too large.
    pub fn receive_len(&self) -> usize {
        self.buffer_size + 1
    }

    /// A datagram of `len` bytes (as received into a buffer of
    /// [`DatagramEcho::receive_len`]) arrived from `peer`; `truncated`: the
    /// receive call reported MSG_TRUNC. Returns whether to echo it: not if it
    /// is larger than `--buffer-size` (counted and logged). If so, the echo
    /// is counted now, before it is sent, and the driver must report how the
    /// send went ([`DatagramEcho::sent`]) — a failure takes the count back.
    pub fn received(&self, len: usize, truncated: bool, peer: impl fmt::Display) -> bool {
        let mine = &self.mine;
        mine.received.fetch_add(1, Ordering::Relaxed);
        if truncated || len > self.buffer_size {
            mine.oversize_dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = self.shared.oversize_log.allow() {
                let dropped = self.counts().oversize_dropped;
                warn!(%peer, buffer_size = self.buffer_size, dropped, suppressed,
                      "a datagram larger than --buffer-size: dropped, not echoed");
            }
            return false;
        }
        // Counted before the echo leaves: a worker thread descheduled
        // between its send and the count must not make a shutdown report
        // miss an echo the client already has.
        mine.echoed.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The echo of a `len`-byte datagram to `peer` was sent with `result`.
    pub fn sent(&self, result: io::Result<usize>, len: usize, peer: impl fmt::Display) {
        match result {
            Ok(n) if n == len => {} // counted when received
            // A datagram is sent whole or not at all; a short count is not an echo.
            Ok(n) => self.send_failed(&io::Error::other(format!("sent {n} of {len} bytes")), peer),
            Err(err) => self.send_failed(&err, peer),
        }
    }

    /// An echo to `peer` failed with `err`: dropped, taken back from the
    /// echoes, counted as failed, logged (throttled).
    pub fn send_failed(&self, err: &io::Error, peer: impl fmt::Display) {
        let mine = &self.mine;
        mine.echoed.fetch_sub(1, Ordering::Relaxed); // wrapping: see `Counters`
        mine.send_failed.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.shared.send_log.allow() {
            let failed = self.counts().send_failed;
            warn!(%peer, %err, failed, suppressed, "cannot send an echo; the datagram is dropped");
        }
    }

    /// A receive failed with `err` (not a timeout, an empty non-blocking
    /// socket or a signal: callers handle those). Returns how long to wait
    /// before receiving again.
    ///
    /// An ICMP error (ECONNREFUSED, unreachable) is about an echo sent
    /// earlier, reported on the next call: a send failure, counted as one,
    /// and the socket is fine. (Linux reports none to an unconnected socket
    /// without `IP_RECVERR`, which these are: see the module's contract.) Anything else is counted and logged, and the
    /// caller backs off for [`RECEIVE_BACKOFF`].
    pub fn receive_failed(&self, err: &io::Error) -> Duration {
        let errno = err.raw_os_error().map(Errno::from_raw);
        if matches!(
            errno,
            Some(Errno::ECONNREFUSED | Errno::EHOSTUNREACH | Errno::ENETUNREACH | Errno::EHOSTDOWN | Errno::ENETDOWN)
        ) {
            self.send_failed(err, "(reported by ICMP)");
            return Duration::ZERO;
        }
        self.mine.receive_failed.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.shared.receive_log.allow() {
            let failed = self.counts().receive_failed;
            warn!(%err, failed, suppressed, backoff_ms = RECEIVE_BACKOFF.as_millis() as u64, "receive failed; backing off");
        }
        RECEIVE_BACKOFF
    }

    /// The counters now, summed over every worker.
    pub fn counts(&self) -> Counts {
        let workers = self.shared.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut sum = Counts::default();
        for c in workers.iter() {
            sum.received += c.received.load(Ordering::Relaxed);
            sum.echoed = sum.echoed.wrapping_add(c.echoed.load(Ordering::Relaxed));
            sum.oversize_dropped += c.oversize_dropped.load(Ordering::Relaxed);
            sum.send_failed += c.send_failed.load(Ordering::Relaxed);
            sum.receive_failed += c.receive_failed.load(Ordering::Relaxed);
        }
        sum
    }

    /// Logs the counters: the server's last words at shutdown.
    pub fn report(&self) {
        let c = self.counts();
        info!(
            received = c.received,
            echoed = c.echoed,
            oversize_dropped = c.oversize_dropped,
            send_failed = c.send_failed,
            receive_failed = c.receive_failed,
            "datagram counters"
        );
    }
}

/// A UDP socket with `recv_from` and `send_to`: std's (blocking or not),
/// mio's (non-blocking), may's (which switches coroutines where std's would
/// block).
pub trait DatagramSocket {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;
    fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize>;
}

impl DatagramSocket for UdpSocket {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        UdpSocket::recv_from(self, buf)
    }

    fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        UdpSocket::send_to(self, buf, to)
    }
}

impl DatagramSocket for mio::net::UdpSocket {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        mio::net::UdpSocket::recv_from(self, buf)
    }

    fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        mio::net::UdpSocket::send_to(self, buf, to)
    }
}

impl DatagramSocket for may::net::UdpSocket {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        may::net::UdpSocket::recv_from(self, buf)
    }

    fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        may::net::UdpSocket::send_to(self, buf, to)
    }
}

/// What one [`Receiver::turn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// This many datagrams arrived (and were echoed, or dropped and counted).
    Received(usize),
    /// Nothing arrived: the receive timed out (SO_RCVTIMEO), a non-blocking
    /// socket is drained, or a signal interrupted the call.
    Idle,
    /// The receive failed; wait this long before the next (zero: go on).
    Failed(Duration),
}

/// One worker's receive side: its buffers and the shared [`DatagramEcho`].
/// One datagram per `recv_from`/`send_to`, or with `--batch N`, up to N per
/// `recvmmsg`/`sendmmsg`.
#[derive(Debug)]
pub struct Receiver {
    echo: DatagramEcho,
    /// `batch` buffers of [`DatagramEcho::receive_len`] bytes each, end to end.
    buffers: Box<[u8]>,
    batch: Option<Batch>,
}

/// Sends `datagrams[i]` to `to[i]` with one `sendmmsg`; returns how many
/// left (fewer than all when a later one failed: the caller sends the rest
/// again and meets that failure as the first). Written on libc rather than
/// nix: nix 0.30's `sendmmsg` returns its count only through an iterator
/// that reads the (never written) source addresses of the send headers.
fn send_batch(
    fd: std::os::fd::RawFd,
    datagrams: &[[IoSlice<'_>; 1]],
    to: &[Option<SockaddrStorage>],
) -> Result<usize, Errno> {
    let mut headers: Vec<libc::mmsghdr> = datagrams
        .iter()
        .zip(to)
        .map(|(iov, to)| {
            // SAFETY: an all-zero msghdr is a valid empty one (no name, no
            // iovec, no control data); the fields that matter are set below.
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            if let Some(to) = to {
                header.msg_hdr.msg_name = to.as_ptr().cast_mut().cast();
                header.msg_hdr.msg_namelen = to.len();
            }
            // IoSlice is ABI-compatible with iovec on Unix (std's guarantee).
            header.msg_hdr.msg_iov = iov.as_ptr().cast_mut().cast();
            header.msg_hdr.msg_iovlen = 1;
            header
        })
        .collect();
    // SAFETY: every header points at an address and an iovec borrowed from
    // `to` and `datagrams`, which outlive the call; the kernel only reads
    // them, and writes each header's msg_len, which we own.
    let sent = unsafe { libc::sendmmsg(fd, headers.as_mut_ptr(), headers.len() as libc::c_uint, 0) };
    Errno::result(sent).map(|n| n as usize)
}

/// The `recvmmsg` headers of a batch, allocated once, and the echoes to
/// send. (Not `Send`: nix's headers hold raw pointers. A worker builds its
/// own.)
#[derive(Debug)]
struct Batch {
    recv: MultiHeaders<SockaddrStorage>,
    /// The datagrams of this batch to echo: (buffer index, length).
    echo: Vec<(usize, usize)>,
    /// Their sources, the echoes' destinations.
    to: Vec<Option<SockaddrStorage>>,
}

impl Receiver {
    /// A receiver of up to `batch` datagrams per system call (1: no batching).
    pub fn new(echo: DatagramEcho, batch: usize) -> Receiver {
        let batch_len = batch.max(1);
        let buffers = vec![0u8; echo.receive_len() * batch_len].into_boxed_slice();
        let batch = (batch_len > 1).then(|| Batch {
            recv: MultiHeaders::preallocate(batch_len, None),
            echo: Vec::with_capacity(batch_len),
            to: Vec::with_capacity(batch_len),
        });
        Receiver { echo, buffers, batch }
    }

    /// Receives what there is — blocking or not, as the socket is — and
    /// echoes every datagram that fits. With a batch, blocks only for the
    /// first datagram (MSG_WAITFORONE) and takes the others already queued.
    pub fn turn<S: DatagramSocket + AsRawFd>(&mut self, socket: &S) -> Turn {
        if self.batch.is_some() { self.turn_batch(socket) } else { self.turn_one(socket) }
    }

    fn turn_one<S: DatagramSocket>(&mut self, socket: &S) -> Turn {
        let buf = &mut self.buffers[..];
        match socket.recv_from(buf) {
            Ok((len, peer)) => {
                if self.echo.received(len, false, peer) {
                    self.echo.work().run(&buf[..len]);
                    self.echo.sent(socket.send_to(&buf[..len], peer), len, peer);
                }
                Turn::Received(1)
            }
            Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => Turn::Idle,
            Err(err) => Turn::Failed(self.echo.receive_failed(&err)),
        }
    }

    fn turn_batch<S: AsRawFd>(&mut self, socket: &S) -> Turn {
        let fd = socket.as_raw_fd();
        let (echo, len) = (&self.echo, self.echo.receive_len());
        let batch = self.batch.as_mut().expect("turn_batch with a batch");
        batch.echo.clear();
        batch.to.clear();
        let received = {
            // One iovec per datagram. nix takes them per call, tied to the
            // headers' borrow, so they are built here: a small allocation
            // per batch (tens of nanoseconds), against two system calls.
            let mut slices: Vec<[IoSliceMut<'_>; 1]> =
                self.buffers.chunks_mut(len).map(|chunk| [IoSliceMut::new(chunk)]).collect();
            match recvmmsg(fd, &mut batch.recv, slices.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
                Ok(results) => {
                    let mut n = 0;
                    for (index, msg) in results.enumerate() {
                        n += 1;
                        let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
                        if echo.received(msg.bytes, truncated, Source(&msg.address)) {
                            batch.echo.push((index, msg.bytes));
                            batch.to.push(msg.address);
                        }
                    }
                    n
                }
                Err(Errno::EAGAIN | Errno::EINTR) => return Turn::Idle,
                Err(errno) => return Turn::Failed(echo.receive_failed(&errno.into())),
            }
        };
        // Every datagram's work, one after the other, before the batch's
        // echoes leave together: the last waits for all the others' work.
        let work = echo.work();
        if !work.is_none() {
            for &(index, bytes) in &batch.echo {
                work.run(&self.buffers[index * len..][..bytes]);
            }
        }
        let out: Vec<[IoSlice<'_>; 1]> =
            batch.echo.iter().map(|&(index, bytes)| [IoSlice::new(&self.buffers[index * len..][..bytes])]).collect();
        let mut start = 0;
        while start < out.len() {
            match send_batch(fd, &out[start..], &batch.to[start..]) {
                Ok(sent) => {
                    // Counted when received; only failures are reported.
                    start += sent.max(1); // 0 cannot happen with one to send; never loop on it
                }
                Err(Errno::EINTR) => {}
                // The send buffer is full (a non-blocking socket) or the
                // kernel is out of buffers: the rest of the batch would fail
                // the same way. Drop it all, counted.
                Err(errno @ (Errno::EAGAIN | Errno::ENOBUFS)) => {
                    for to in &batch.to[start..] {
                        echo.send_failed(&errno.into(), Source(to));
                    }
                    break;
                }
                // About this datagram's destination: drop it, send the rest.
                Err(errno) => {
                    echo.send_failed(&errno.into(), Source(&batch.to[start]));
                    start += 1;
                }
            }
        }
        Turn::Received(received)
    }
}

/// A datagram's source as `recvmmsg` reports it, for logs.
struct Source<'a>(&'a Option<SockaddrStorage>);

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("(unknown)"),
        }
    }
}

/// Receives and echoes on a blocking socket until `stop` says so; `pause`
/// waits out a receive error. `stop` is asked before every receive, so the
/// socket needs a receive timeout (SO_RCVTIMEO) for a request to be noticed
/// while idle — or none, in a worker that lives until the process exits.
pub fn serve_blocking<S: DatagramSocket + AsRawFd>(
    socket: &S,
    receiver: &mut Receiver,
    stop: impl Fn() -> bool,
    pause: impl Fn(Duration),
) {
    while !stop() {
        if let Turn::Failed(wait) = receiver.turn(socket) {
            if !wait.is_zero() {
                pause(wait);
            }
        }
    }
}

/// The echo with tokio's socket: receive, echo, repeat, forever (the task
/// is cancelled when the runtime shuts down). `send_to` waits for room in
/// the send buffer rather than dropping, as a blocking socket would.
/// `block:` work goes where `blocking` says ([`Work::run_async`]).
pub async fn serve_tokio(socket: Arc<tokio::net::UdpSocket>, echo: DatagramEcho, blocking: Blocking) {
    let mut buf = vec![0u8; echo.receive_len()];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((len, peer)) => {
                if echo.received(len, false, peer) {
                    let sent = match echo.work().run_async(&buf[..len], blocking).await {
                        Ok(()) => socket.send_to(&buf[..len], peer).await,
                        Err(err) => Err(err), // shutting down: not echoed, counted as such
                    };
                    echo.sent(sent, len, peer);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => tokio::time::sleep(echo.receive_failed(&err)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (UdpSocket, UdpSocket) {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(server.local_addr().unwrap()).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (server, client)
    }

    #[test]
    fn the_echo_drops_what_does_not_fit_and_counts_everything() {
        let echo = DatagramEcho::new(EchoOptions::plain(4));
        assert_eq!(echo.receive_len(), 5);
        for _ in 0..4 {
            assert!(echo.received(4, false, "p"));
        }
        assert!(!echo.received(5, false, "p"), "filled the receive buffer: larger than 4");
        assert!(!echo.received(3, true, "p"), "MSG_TRUNC");
        echo.sent(Ok(4), 4, "p");
        echo.sent(Ok(2), 4, "p");
        echo.sent(Err(io::ErrorKind::WouldBlock.into()), 4, "p");
        echo.sent(Ok(4), 4, "p");
        assert_eq!(echo.counts().echoed, 2, "two of four echoes failed");
        // An ICMP error about an echo sent earlier: that echo did not arrive.
        assert_eq!(echo.receive_failed(&io::Error::from_raw_os_error(Errno::ECONNREFUSED as i32)), Duration::ZERO);
        assert_eq!(echo.receive_failed(&io::Error::from_raw_os_error(Errno::ENOMEM as i32)), RECEIVE_BACKOFF);
        let expected = Counts { received: 6, echoed: 1, oversize_dropped: 2, send_failed: 3, receive_failed: 1 };
        assert_eq!(echo.counts(), expected);
        // Another worker's clone counts on its own, and every clone sums all.
        let other = echo.clone();
        assert!(other.received(1, false, "q"));
        // An ICMP error on this worker about the other's echo: the sum is right.
        assert_eq!(echo.receive_failed(&io::Error::from_raw_os_error(Errno::EHOSTUNREACH as i32)), Duration::ZERO);
        let expected = Counts { received: 7, echoed: 1, oversize_dropped: 2, send_failed: 4, receive_failed: 1 };
        assert_eq!((echo.counts(), other.counts()), (expected, expected));
    }

    /// One call per datagram and batches echo the same way: each datagram
    /// back to its source, whole; oversize ones dropped.
    #[test]
    fn single_and_batched_turns_echo_and_drop_alike() {
        for batch in [1, 4] {
            let (server, client) = pair();
            let echo = DatagramEcho::new(EchoOptions::plain(8));
            let mut receiver = Receiver::new(echo.clone(), batch);
            for msg in [&b"a"[..], b"12345678", b"123456789", b"xy"] {
                client.send(msg).unwrap();
            }
            let mut got = 0;
            while got < 4 {
                match receiver.turn(&server) {
                    Turn::Received(n) => got += n,
                    other => panic!("batch {batch}: {other:?}"),
                }
            }
            let mut buf = [0u8; 16];
            for expected in [&b"a"[..], b"12345678", b"xy"] {
                let n = client.recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], expected, "batch {batch}");
            }
            let counts = echo.counts();
            assert_eq!((counts.received, counts.echoed, counts.oversize_dropped), (4, 3, 1), "batch {batch}");
        }
    }

    #[test]
    fn a_drained_non_blocking_socket_is_idle() {
        for batch in [1, 8] {
            let (server, _client) = pair();
            server.set_nonblocking(true).unwrap();
            let mut receiver = Receiver::new(DatagramEcho::new(EchoOptions::plain(8)), batch);
            assert_eq!(receiver.turn(&server), Turn::Idle, "batch {batch}");
        }
    }

    /// Servers started at once on port 0 each get a port of their own,
    /// though every one binds with SO_REUSEPORT (which over UDP lets the
    /// kernel hand out a port another such socket holds: see `bind`).
    #[test]
    fn reuse_port_sockets_on_port_0_never_share_a_port() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let sockets: Vec<UdpSocket> =
            (0..500).map(|_| bind(any, &DatagramOptions::default(), true).expect("bind")).collect();
        let mut ports: Vec<u16> = sockets.iter().map(|s| s.local_addr().unwrap().port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), sockets.len(), "two servers were handed the same port");
        // And a sibling joins the first socket's port.
        let sibling = bind_sibling(&sockets[0], &DatagramOptions::default()).expect("a sibling binds");
        assert_eq!(sibling.local_addr().unwrap(), sockets[0].local_addr().unwrap());
    }

    #[test]
    fn a_buffer_size_beyond_a_datagram_is_refused() {
        assert!(check_buffer_size(UDP_PAYLOAD_MAX).is_ok());
        assert!(check_buffer_size(UDP_PAYLOAD_MAX + 1).unwrap_err().contains("65507"));
    }
}
