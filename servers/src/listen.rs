//! What every model shares around `accept`: the options set on each
//! accepted socket, the connection cap, and the policy for accept errors.
//! Blocking accept loops use [`Acceptor`], which wraps all of it; the event
//! loops call [`admit`] (or, with a runtime's own sockets, `tcp_options` and
//! [`ConnectionLimit::try_acquire`]) and [`AcceptErrors`] themselves. Binding is
//! [`crate::transport::Listener::bind`].

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::shutdown::{Shutdown, poll_readable};
use crate::transport::{Listener, Peer, Stream};

/// How long an accept loop waits after an error that is not about one
/// connection (EMFILE, ENFILE, ENOBUFS, …). Retrying at once would spin: the
/// pending connection keeps the listener readable.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How often [`Acceptor`] wakes up with nothing to accept, so that callers
/// can do housekeeping (the `process` model reaps its children).
pub const ACCEPT_TICK: Duration = Duration::from_millis(100);

/// Admits an accepted stream: sets its transport's options and takes a slot
/// under the connection cap. `None` means "over the cap": dropping the
/// stream closes it at once.
pub fn admit(stream: &Stream, peer: &Peer, limit: &ConnectionLimit) -> Option<Permit> {
    stream.configure(peer);
    limit.try_acquire(peer)
}

/// The `--max-connections` cap, shared by an accept loop and its connections.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    inner: Arc<LimitInner>,
}

#[derive(Debug)]
struct LimitInner {
    max: usize,
    live: AtomicUsize,
    rejected: AtomicU64,
    log: LogThrottle,
}

impl ConnectionLimit {
    /// A cap of `max` live connections.
    pub fn new(max: usize) -> ConnectionLimit {
        ConnectionLimit {
            inner: Arc::new(LimitInner {
                max,
                live: AtomicUsize::new(0),
                rejected: AtomicU64::new(0),
                log: LogThrottle::default(),
            }),
        }
    }

    /// A slot for one more connection, or `None` (counted and logged) at the cap.
    pub fn try_acquire(&self, peer: &Peer) -> Option<Permit> {
        let inner = &self.inner;
        let taken =
            inner.live.fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| (live < inner.max).then_some(live + 1));
        if taken.is_ok() {
            return Some(Permit { inner: Arc::clone(inner) });
        }
        let rejected = inner.rejected.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(suppressed) = inner.log.allow() {
            warn!(%peer, max = inner.max, rejected, suppressed, "connection limit reached; closing new connections");
        }
        None
    }
}

/// One connection's slot under the cap, given back when dropped.
#[derive(Debug)]
pub struct Permit {
    inner: Arc<LimitInner>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inner.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The accept-error policy: errors about one connection are retried at once;
/// anything else (EMFILE, ENFILE, ENOBUFS, ENOMEM, …) is logged, rate-limited,
/// and retried after [`ACCEPT_BACKOFF`]. The server never exits because of them.
#[derive(Debug, Default)]
pub struct AcceptErrors {
    log: LogThrottle,
}

impl AcceptErrors {
    /// Logs `err` and says how long to wait before accepting again.
    pub fn backoff(&self, err: &io::Error) -> Duration {
        use io::ErrorKind::*;
        match err.kind() {
            // The connection died before we took it, or a signal interrupted us.
            ConnectionAborted | ConnectionReset | Interrupted | WouldBlock => {
                debug!(%err, "accept: retrying");
                Duration::ZERO
            }
            _ => {
                if let Some(suppressed) = self.log.allow() {
                    warn!(%err, suppressed, backoff_ms = ACCEPT_BACKOFF.as_millis() as u64, "accept failed; backing off");
                }
                ACCEPT_BACKOFF
            }
        }
    }
}

/// At most one log line per second; counts what it held back. For every
/// error that can repeat once per connection (accept errors, the cap, a
/// failed spawn), so a flood of connections never becomes a flood of logs.
#[derive(Debug)]
pub struct LogThrottle {
    start: Instant,
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for LogThrottle {
    fn default() -> LogThrottle {
        LogThrottle { start: Instant::now(), last_ms: AtomicU64::new(u64::MAX), suppressed: AtomicU64::new(0) }
    }
}

impl LogThrottle {
    /// `Some(suppressed since the last line)` if a line may be logged now.
    pub fn allow(&self) -> Option<u64> {
        let now_ms = self.start.elapsed().as_millis() as u64;
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX || now_ms >= last + 1000;
        if due && self.last_ms.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// An accepted, configured connection holding a slot under the cap.
#[derive(Debug)]
pub struct Connection {
    /// The socket, in blocking mode.
    pub stream: Stream,
    /// The client, for logs.
    pub peer: Peer,
    /// Released when the connection is dropped.
    pub permit: Permit,
}

/// The blocking accept loop (`iterative`, `process`, `prefork`'s children,
/// `thread`, `pool`, and `reactors`' acceptor over a Unix socket):
/// waits for a connection or a shutdown signal, applies [`admit`] and
/// [`AcceptErrors`], and hands out [`Connection`]s.
#[derive(Debug)]
pub struct Acceptor<'a> {
    listener: &'a Listener,
    shutdown: &'a Shutdown,
    limit: ConnectionLimit,
    errors: AcceptErrors,
}

impl<'a> Acceptor<'a> {
    /// An acceptor over `listener` with a cap of `max_connections`.
    pub fn new(listener: &'a Listener, shutdown: &'a Shutdown, max_connections: usize) -> io::Result<Acceptor<'a>> {
        // Non-blocking, so that a connection reset between `poll` and
        // `accept` cannot block us; accepted streams are blocking.
        listener.set_nonblocking(true)?;
        Ok(Acceptor {
            listener,
            shutdown,
            limit: ConnectionLimit::new(max_connections),
            errors: AcceptErrors::default(),
        })
    }

    /// Like `next` (see the `Iterator` impl), calling `housekeeping` before each accept and
    /// at least every [`ACCEPT_TICK`] while idle.
    pub fn next_with(&mut self, mut housekeeping: impl FnMut()) -> Option<Connection> {
        loop {
            housekeeping();
            if self.shutdown.is_requested() {
                return None;
            }
            let ready = match poll_readable([self.listener.as_fd(), self.shutdown.fd()], ACCEPT_TICK) {
                Ok(ready) => ready,
                Err(err) => {
                    warn!(%err, "poll failed");
                    [false, self.shutdown.sleep(ACCEPT_BACKOFF)]
                }
            };
            if ready[1] || !ready[0] {
                continue; // a signal (the check above returns), or nothing to accept yet
            }
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    if let Some(permit) = admit(&stream, &peer, &self.limit) {
                        return Some(Connection { stream, peer, permit });
                    }
                }
                Err(err) => {
                    let pause = self.errors.backoff(&err);
                    if !pause.is_zero() {
                        self.shutdown.sleep(pause);
                    }
                }
            }
        }
    }
}

/// `for conn in acceptor { … }`: connections until shutdown is requested.
impl Iterator for Acceptor<'_> {
    type Item = Connection;

    fn next(&mut self) -> Option<Connection> {
        self.next_with(|| {})
    }
}
