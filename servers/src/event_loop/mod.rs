//! The event-loop machinery the readiness models share: one thread, one
//! epoll instance (through `mio`), the connections registered with it.
//!
//! The model pages say what the loop is for and what it costs (`reactor`),
//! how several run side by side (`reactors`) or hand their connections to a
//! pool (`reactor-pool`); this module is the loop itself, written once:
//!
//! - [`EventLoop`]: wait (`epoll_wait`), dispatch each event — the
//!   listener, the shutdown signal, an inbox of connections accepted
//!   elsewhere ([`Mailbox`]), or a connection — and repeat.
//! - [`Conn`]: one connection's echo over readiness ([`Conn::drive`]) and
//!   its registration ([`Conn::interest`]: readable, or writable *only*
//!   while an echo waits to be written).
//! - [`Accept`]: accept until `WouldBlock`, under the cap, pausing on EMFILE.
//! - [`Slab`]: connections by token, slots reused.
//!
//! ## Edge-triggered, and the read budget
//!
//! Registrations are edge-triggered (mio always sets `EPOLLET`): epoll
//! reports a socket when it *becomes* ready, not while it *is* ready. So a
//! connection is read until `WouldBlock` — stopping earlier with data still
//! queued means no new event for it, ever. The one exception is the read
//! budget: a connection that could keep the thread busy for long (a client
//! streaming megabytes) is stopped after [`READS_PER_TURN`] reads and put
//! on a run queue, so that the others get their turn first; the loop then
//! polls with a zero timeout and drives it again.
//!
//! ## Work per message
//!
//! A message's work (`--work`, [`crate::work`]) runs inside
//! [`Conn::drive`], between the read and the write, on whatever thread
//! drives the connection: the loop's own, which stalls every other
//! connection meanwhile (`reactor`, `reactors`), or a pool's
//! (`reactor-pool`).
//!
//! ## Writing a model on it
//!
//! A single loop on the calling thread: [`EventLoop::new`], [`listen`],
//! [`stop_on`], announce, [`run`]. One loop per worker: build each in its
//! worker thread with [`crate::per_core`], one [`listen`] each
//! (SO_REUSEPORT); over a Unix socket (one listener) give each an
//! [`inbox`] instead and deal connections into the mailboxes. A model with its own dispatch (`reactor-pool`) uses
//! [`Accept`], [`Conn`] and the tokens below directly.
//!
//! [`listen`]: EventLoop::listen
//! [`stop_on`]: EventLoop::stop_on
//! [`run`]: EventLoop::run
//! [`inbox`]: EventLoop::inbox

mod accept;
mod conn;

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, unbounded};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use tracing::warn;

pub use self::accept::Accept;
pub use self::conn::{Conn, Drive};
use crate::echo::{self, EchoOptions};
use crate::listen::{Connection, ConnectionLimit, LogThrottle, Permit};
use crate::shutdown::Shutdown;
use crate::slab::Slab;
use crate::transport::{Listener, Peer, Stream};

/// Reads one connection may do per turn before the others get theirs.
/// 16 reads are 64 KiB at the default buffer size: enough that the turn's
/// overhead (a zero-timeout `epoll_wait`) is small next to its work, few
/// enough that a bulk sender holds the others up for one short burst, not
/// for its whole transfer. A judgement, not a measured optimum.
pub const READS_PER_TURN: usize = 16;

/// Events taken from the kernel per `epoll_wait`.
pub const EVENTS_PER_WAIT: usize = 1024;

// Tokens of the loop's own descriptors, far above any slab index.
pub const LISTENER: Token = Token(usize::MAX - 1);
pub const SIGNAL: Token = Token(usize::MAX - 2);
pub const WAKER: Token = Token(usize::MAX - 3);

/// The sending side of an event loop's inbox: hands it connections
/// accepted elsewhere (the `reactors` model over Unix sockets).
#[derive(Debug, Clone)]
pub struct Mailbox {
    sender: Sender<Connection>,
    waker: Arc<Waker>,
}

impl Mailbox {
    /// Queues `conn` and wakes the loop. `Err(Lost)`: the loop is gone and
    /// the connection was dropped (closed); `Err(Queued)`: it is queued but
    /// the wake-up failed, so it waits for the loop's next turn.
    pub fn deliver(&self, conn: Connection) -> Result<(), Undelivered> {
        self.sender.send(conn).map_err(|_| Undelivered::Lost)?;
        self.waker.wake().map_err(Undelivered::Queued)
    }
}

/// Why [`Mailbox::deliver`] did not hand a connection over cleanly.
#[derive(Debug)]
pub enum Undelivered {
    /// The loop's thread has ended; the connection is closed.
    Lost,
    /// Queued, but the wake-up failed: served at the loop's next turn.
    Queued(io::Error),
}

/// One thread's event loop: an epoll instance, the connections registered
/// with it, and where new connections come from — a listener, an inbox, or
/// both. `reactor` runs one; `reactors` runs one per worker thread.
#[derive(Debug)]
pub struct EventLoop<'s> {
    poll: Poll,
    conns: Slab<Conn>,
    echo: EchoOptions,
    accept: Option<Accept>,
    inbox: Option<Receiver<Connection>>,
    shutdown: Option<&'s Shutdown>,
    /// Connections that spent their budget and must be driven again.
    runnable: VecDeque<Token>,
    register_errors: LogThrottle,
}

impl<'s> EventLoop<'s> {
    /// An event loop with nothing registered yet.
    pub fn new(echo: EchoOptions) -> io::Result<EventLoop<'s>> {
        Ok(EventLoop {
            poll: Poll::new()?,
            conns: Slab::new(),
            echo,
            accept: None,
            inbox: None,
            shutdown: None,
            runnable: VecDeque::new(),
            register_errors: LogThrottle::default(),
        })
    }

    /// Accepts from `listener`, under `limit`.
    pub fn listen(&mut self, listener: Listener, limit: ConnectionLimit) -> io::Result<()> {
        self.accept = Some(Accept::register(listener, limit, self.poll.registry())?);
        Ok(())
    }

    /// Takes connections from others too: through the returned mailbox.
    pub fn inbox(&mut self) -> io::Result<Mailbox> {
        // The waker is an eventfd registered under WAKER: writing to it
        // makes `epoll_wait` return, wherever this thread sleeps.
        let waker = Arc::new(Waker::new(self.poll.registry(), WAKER)?);
        let (sender, receiver) = unbounded();
        self.inbox = Some(receiver);
        Ok(Mailbox { sender, waker })
    }

    /// Returns from [`EventLoop::run`] once SIGINT or SIGTERM arrives.
    pub fn stop_on(&mut self, shutdown: &'s Shutdown) -> io::Result<()> {
        self.poll.registry().register(&mut SourceFd(&shutdown.fd().as_raw_fd()), SIGNAL, Interest::READABLE)?;
        self.shutdown = Some(shutdown);
        Ok(())
    }

    /// The loop: wait, dispatch, repeat. Returns on a shutdown signal (if
    /// [`EventLoop::stop_on`] was called; else never) or if epoll fails.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        loop {
            if self.shutdown.is_some_and(Shutdown::is_requested) {
                return Ok(());
            }
            // Sleep until an event — but not past the end of an accept
            // pause, and not at all while some connection waits for its turn.
            let timeout = if self.runnable.is_empty() {
                self.accept.as_ref().and_then(Accept::timeout)
            } else {
                Some(Duration::ZERO)
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
            // Those that yielded in an earlier turn go after this batch of
            // events; those that yield during it, next turn.
            let waiting = self.runnable.len();
            for event in &events {
                match event.token() {
                    // The flag is set before the byte is written: the check
                    // at the top of the loop returns.
                    SIGNAL => {}
                    LISTENER => self.accept_all(),
                    WAKER => self.take_inbox(),
                    token => self.drive(token),
                }
            }
            if self.accept.as_mut().is_some_and(Accept::resume_if_due) {
                self.accept_all();
            }
            // (A connection may be queued and have had an event too: it is
            // then driven twice, and the second drive finds `WouldBlock`.)
            for _ in 0..waiting {
                // The front `waiting` entries are the earlier ones: a drive
                // that yields again pushes to the back.
                if let Some(token) = self.runnable.pop_front() {
                    self.drive(token);
                }
            }
        }
    }

    fn accept_all(&mut self) {
        let Some(accept) = self.accept.as_mut() else { return };
        let mut accepted = Vec::new();
        accept.accept_all(|stream, peer, permit| accepted.push((stream, peer, permit)));
        for (stream, peer, permit) in accepted {
            self.adopt(stream, peer, permit);
        }
    }

    fn take_inbox(&mut self) {
        // The waker is edge-triggered too: drain everything.
        while let Some(conn) = self.inbox.as_ref().and_then(|inbox| inbox.try_recv().ok()) {
            self.adopt(conn.stream, conn.peer, conn.permit);
        }
    }

    /// Gives an accepted connection its slab entry, token and registration.
    fn adopt(&mut self, stream: Stream, peer: Peer, permit: Permit) {
        let registered = Conn::open(stream, peer.clone(), permit, self.echo).and_then(|conn| {
            let index = self.conns.insert(conn);
            // `insert` just returned this index, so the entry is there.
            let conn = self.conns.get_mut(index).expect("the entry was just inserted");
            let registered = conn.register(self.poll.registry(), Token(index));
            if registered.is_err() {
                self.conns.remove(index);
            }
            registered
        });
        // Failing: ENOMEM, or epoll's max_user_watches. The connection is
        // dropped (closed); the others go on.
        if let Err(err) = registered {
            if let Some(suppressed) = self.register_errors.allow() {
                warn!(%peer, %err, suppressed, live = self.conns.len(), "cannot register a connection with epoll; closing it");
            }
        }
    }

    /// Drives the connection of `token` after an event (or its turn).
    fn drive(&mut self, token: Token) {
        // A token of a connection closed earlier in this batch: nothing to do.
        // (If a new connection already took the token, driving it finds
        // `WouldBlock`: harmless.)
        let Some(conn) = self.conns.get_mut(token.0) else { return };
        let end = match conn.drive(READS_PER_TURN) {
            Drive::Closed(result) => result,
            outcome => {
                if matches!(outcome, Drive::Yielded) {
                    self.runnable.push_back(token);
                }
                match conn.rearm(self.poll.registry(), token, false) {
                    Ok(()) => return,
                    Err(err) => Err(err),
                }
            }
        };
        // `get_mut` above found it, so it is there.
        let conn = self.conns.remove(token.0).expect("the connection is in the slab");
        echo::log_end(conn.peer(), &end);
        // Dropping `conn` closes the socket (which leaves the epoll set) and frees its slot.
    }
}
