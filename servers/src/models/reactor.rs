//! # `reactor`: one thread, one epoll instance, every connection
//!
//! The event loop behind nginx's worker, Redis and Node.js, written by hand
//! so that a reader sees what tokio hides. One thread owns one epoll
//! instance (through `mio`, a thin safe wrapper over `epoll_ctl` and
//! `epoll_wait`) and registers with it the listener, the shutdown signal's
//! descriptor and every connection. Then it loops:
//!
//! 1. `epoll_wait`: sleep until some registered descriptor is ready.
//! 2. For each ready descriptor: the listener → accept until `WouldBlock`;
//!    a connection → drive its echo ([`EchoState`]) until the socket would
//!    block; the signal → return.
//!
//! Sockets are non-blocking, so no call ever sleeps except `epoll_wait`.
//! Registrations are **edge-triggered** (mio always sets `EPOLLET`): epoll
//! reports a socket when it *becomes* ready, not while it *is* ready. So a
//! connection must be read until `WouldBlock` — stopping earlier with data
//! still queued means no new event for it, ever (the connection hangs). The
//! one exception is `Conn::drive`'s budget: a connection that could keep
//! the thread busy for long (a client streaming megabytes) is stopped after
//! `READS_PER_TURN` (16) reads and put on a run queue, so that the others
//! get their turn first; the loop then polls with a zero timeout and
//! drives it again.
//!
//! Flow control, as in every model: one buffer per connection. While a
//! write is pending (the client does not read its echo), the connection is
//! not read, and only then is it registered for `WRITABLE` — a socket is
//! writable almost always, so write interest held permanently would wake
//! the loop for nothing — and then *instead of* `READABLE`: the socket of
//! a client that does not read stays readable (its next bytes wait unread),
//! so read interest would wake the loop for nothing too. A reset or hang-up
//! is reported either way (epoll always reports `EPOLLERR` and `EPOLLHUP`).
//! When the write completes, the registration goes back to `READABLE` and
//! reading resumes in the same turn. So a client that sends and never
//! reads costs no CPU: its connection sleeps until the client reads or
//! leaves. When the client
//! half-closes (a read of 0 bytes), everything read is already written back:
//! the socket is closed (which also removes it from the epoll set, since no
//! other descriptor refers to it).
//!
//! Accept errors: a per-connection error (the client reset before we took
//! it) is skipped. EMFILE and its kind (see [`AcceptErrors`]) leave the
//! connection in the backlog — and with edge-triggered epoll the listener
//! will not be reported again for it. So the loop stops accepting for
//! [`ACCEPT_BACKOFF`](crate::listen::ACCEPT_BACKOFF), uses that as the
//! `epoll_wait` timeout, and accepts again when it expires: it never spins,
//! and it never forgets the backlog.
//!
//! What a connection costs: an entry in a slab (a `Vec` indexed by the
//! epoll token), its [`EchoState`] with its one buffer (`--buffer-size`,
//! 4 KiB by default), and an epoll registration in the kernel (about 160
//! bytes). No thread, no stack, no task: between messages an idle
//! connection costs no CPU at all, and a message costs no context switch —
//! one `epoll_wait` serves every connection that became ready.
//!
//! Good at: many connections, mostly idle or with small messages, on one
//! CPU; predictable (nothing is shared, nothing is locked). Bad at: using
//! more than one CPU (see `reactors` and `reactor-pool`), and at anything
//! slow done per message — every connection waits for it, because the loop
//! is the only thread.
//!
//! ```text
//! echo-server reactor --addr 127.0.0.1:7000
//! ```

use std::borrow::Cow::Borrowed;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args as ClapArgs;
use crossbeam_channel::{Receiver, Sender, unbounded};
use echo_common::ModelInfo;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use tracing::warn;

use crate::Ready;
use crate::models::Datagrams;
use crate::cli::Common;
use crate::echo::{self, EchoState, Next};
use crate::listen::{AcceptErrors, Connection, ConnectionLimit, LogThrottle, Permit, admit};
use crate::shutdown::Shutdown;
use crate::transport::{Listener, Peer, Stream};

pub static INFO: ModelInfo = ModelInfo {
    name: Borrowed("reactor"),
    summary: Borrowed("One thread, one epoll instance (mio), every connection on it"),
    default_max_connections: 10_000,
    child_processes: false,
    serves_at_once: None,
    baseline: false,
    reuse_port: false,
    colour: Borrowed("#17becf"),
    datagrams: None,
    datagram_batch: false,
};

/// `echo-server reactor` options.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
}

/// Streams only: `--addr udp:…` is refused.
pub const DATAGRAMS: Option<Datagrams<Args>> = None;

/// Runs the event loop on this thread until a shutdown signal.
pub fn serve(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
    let mut reactor = Reactor::new(args.common.buffer_size()).context("cannot create the epoll instance")?;
    let limit = ConnectionLimit::new(args.common.max_connections());
    reactor.listen(listener, limit).context("cannot register the listener with epoll")?;
    reactor.stop_on(shutdown).context("cannot register the shutdown signal with epoll")?;
    ready.announce()?;
    reactor.run().context("the event loop failed")
}

/// Reads one connection may do per turn before the others get theirs.
/// 16 reads are 64 KiB at the default buffer size: enough that the turn's
/// overhead (a zero-timeout `epoll_wait`) is small next to its work, few
/// enough that a bulk sender holds the others up for one short burst, not
/// for its whole transfer. A judgement, not a measured optimum.
pub(crate) const READS_PER_TURN: usize = 16;

/// Events taken from the kernel per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 1024;

// Tokens of the loop's own descriptors, far above any slab index.
pub(crate) const LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const SIGNAL: Token = Token(usize::MAX - 2);
pub(crate) const WAKER: Token = Token(usize::MAX - 3);

/// A `Vec` of entries indexed by token, with a free list so that a closed
/// connection's slot (and token) is reused. What the `slab` crate does, in
/// a screenful; not worth a dependency.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    entries: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Slab<T> {
        Slab { entries: Vec::new(), free: Vec::new() }
    }

    /// Stores `value`; returns its index, the connection's token.
    pub(crate) fn insert(&mut self, value: T) -> usize {
        match self.free.pop() {
            Some(index) => {
                self.entries[index] = Some(value);
                index
            }
            None => {
                self.entries.push(Some(value));
                self.entries.len() - 1
            }
        }
    }

    pub(crate) fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.entries.get_mut(index).and_then(Option::as_mut)
    }

    /// Takes the value out; its index becomes free for the next insert.
    pub(crate) fn remove(&mut self, index: usize) -> Option<T> {
        let value = self.entries.get_mut(index).and_then(Option::take);
        if value.is_some() {
            self.free.push(index);
        }
        value
    }

    /// Live entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }
}

/// One connection of a reactor: its non-blocking socket, its echo and its
/// slot under the cap. The echo over readiness is [`Conn::drive`], the one
/// copy every reactor model uses.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: Stream,
    peer: Peer,
    state: EchoState,
    /// What it is registered for with epoll (`None`: not registered yet).
    armed: Option<Interest>,
    _permit: Permit,
}

/// Where [`Conn::drive`] left a connection.
#[derive(Debug)]
pub(crate) enum Drive {
    /// The socket would block: wait for the event [`Conn::interest`] names.
    Blocked,
    /// The read budget is spent with the socket maybe still readable:
    /// drive it again soon, without waiting for an event (there may be none).
    Yielded,
    /// The echo is over (the client half-closed, or an error): close it.
    Closed(io::Result<u64>),
}

impl Conn {
    /// Makes an accepted stream non-blocking and gives it its buffer.
    pub(crate) fn open(stream: Stream, peer: Peer, permit: Permit, buffer_size: usize) -> io::Result<Conn> {
        stream.set_nonblocking(true)?;
        Ok(Conn { stream, peer, state: EchoState::new(buffer_size), armed: None, _permit: permit })
    }

    pub(crate) fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Reads and writes until the socket would block, the echo ends, or
    /// `budget` reads are done — the whole echo over readiness. Safe with
    /// edge-triggered epoll because it stops only at `WouldBlock` (an event
    /// will come when that changes), at the end, or when asked to yield
    /// (the caller then drives it again without an event).
    pub(crate) fn drive(&mut self, budget: usize) -> Drive {
        let mut reads = 0;
        loop {
            match self.state.next() {
                Next::Read => {
                    if reads == budget {
                        return Drive::Yielded;
                    }
                    reads += 1;
                    match self.stream.read(self.state.read_buf()) {
                        Ok(n) => self.state.received(n),
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Drive::Blocked,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                        Err(err) => return Drive::Closed(Err(err)),
                    }
                }
                Next::Write => match self.stream.write(self.state.pending()) {
                    Ok(0) => return Drive::Closed(Err(io::ErrorKind::WriteZero.into())),
                    Ok(n) => self.state.wrote(n),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Drive::Blocked,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => return Drive::Closed(Err(err)),
                },
                Next::Close => return Drive::Closed(Ok(self.state.echoed())),
            }
        }
    }

    /// What to wait for: readable while the echo waits to read, writable
    /// *only* while part of it waits to be written. Not both: the socket
    /// of a client that does not read stays readable (the bytes the server
    /// will not read while its echo is pending), so readable interest then
    /// would report it at every re-arm — `EPOLL_CTL_MOD` re-evaluates
    /// readiness — and `reactor-pool`, which re-arms each connection that
    /// comes back from its pool, would spin on it. A reset or hang-up is
    /// still reported: epoll always reports `EPOLLERR` and `EPOLLHUP`,
    /// whatever the interest.
    pub(crate) fn interest(&self) -> Interest {
        match self.state.next() {
            Next::Write => Interest::WRITABLE,
            Next::Read | Next::Close => Interest::READABLE,
        }
    }

    /// Registers the socket under `token` (`EPOLL_CTL_ADD`). A socket that
    /// already has data is reported at once: no event is lost.
    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = self.interest();
        registry.register(&mut SourceFd(&self.stream.as_raw_fd()), token, interest)?;
        self.armed = Some(interest);
        Ok(())
    }

    /// Changes the registration to [`Conn::interest`] (`EPOLL_CTL_MOD`),
    /// if it differs, or always if `force` (`EPOLL_CTL_MOD` re-evaluates
    /// readiness, so it reports what happened while nobody listened).
    pub(crate) fn rearm(&mut self, registry: &Registry, token: Token, force: bool) -> io::Result<()> {
        let interest = self.interest();
        if force || self.armed != Some(interest) {
            registry.reregister(&mut SourceFd(&self.stream.as_raw_fd()), token, interest)?;
            self.armed = Some(interest);
        }
        Ok(())
    }
}

/// A non-blocking listener registered with a reactor, and what is needed to
/// accept from it without spinning on EMFILE.
#[derive(Debug)]
pub(crate) struct Accept {
    listener: Listener,
    limit: ConnectionLimit,
    errors: AcceptErrors,
    /// Set after an error such as EMFILE: listener events are ignored, and
    /// the loop accepts again at this instant.
    paused_until: Option<Instant>,
}

impl Accept {
    /// Makes `listener` non-blocking and registers it (edge-triggered) under `LISTENER`.
    pub(crate) fn register(listener: Listener, limit: ConnectionLimit, registry: &Registry) -> io::Result<Accept> {
        listener.set_nonblocking(true)?;
        registry.register(&mut SourceFd(&listener.as_raw_fd()), LISTENER, Interest::READABLE)?;
        Ok(Accept { listener, limit, errors: AcceptErrors::default(), paused_until: None })
    }

    /// Accepts until `WouldBlock` (the edge is consumed only then) or an
    /// error that pauses accepting; `take` gets each admitted connection.
    /// Over the cap, a connection is dropped, i.e. closed at once.
    /// Does nothing while paused: the timeout resumes it.
    pub(crate) fn accept_all(&mut self, mut take: impl FnMut(Stream, Peer, Permit)) {
        if self.paused_until.is_some() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    if let Some(permit) = admit(&stream, &peer, &self.limit) {
                        take(stream, peer, permit);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) => {
                    let pause = self.errors.backoff(&err);
                    if !pause.is_zero() {
                        self.paused_until = Some(Instant::now() + pause);
                        return;
                    }
                }
            }
        }
    }

    /// How long `epoll_wait` may sleep before accepting must resume.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.paused_until.map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Ends an expired pause; true if the caller should accept now.
    pub(crate) fn resume_if_due(&mut self) -> bool {
        let due = self.paused_until.is_some_and(|at| Instant::now() >= at);
        if due {
            self.paused_until = None;
        }
        due
    }
}

/// The sending side of a reactor's inbox: hands it connections accepted
/// elsewhere (the `reactors` model over Unix sockets).
#[derive(Debug, Clone)]
pub(crate) struct Mailbox {
    sender: Sender<Connection>,
    waker: Arc<Waker>,
}

impl Mailbox {
    /// Queues `conn` and wakes the reactor. `Err(Lost)`: the reactor is
    /// gone and the connection was dropped (closed); `Err(Queued)`: it is
    /// queued but the wake-up failed, so it waits for the reactor's next turn.
    pub(crate) fn deliver(&self, conn: Connection) -> Result<(), Undelivered> {
        self.sender.send(conn).map_err(|_| Undelivered::Lost)?;
        self.waker.wake().map_err(Undelivered::Queued)
    }
}

/// Why [`Mailbox::deliver`] did not hand a connection over cleanly.
#[derive(Debug)]
pub(crate) enum Undelivered {
    /// The reactor thread has ended; the connection is closed.
    Lost,
    /// Queued, but the wake-up failed: served at the reactor's next turn.
    Queued(io::Error),
}

/// One thread's event loop: an epoll instance, the connections registered
/// with it, and where new connections come from — a listener, an inbox, or
/// both. `reactor` runs one; `reactors` runs one per worker thread.
#[derive(Debug)]
pub(crate) struct Reactor<'s> {
    poll: Poll,
    conns: Slab<Conn>,
    buffer_size: usize,
    accept: Option<Accept>,
    inbox: Option<Receiver<Connection>>,
    shutdown: Option<&'s Shutdown>,
    /// Connections that spent their budget and must be driven again.
    runnable: VecDeque<Token>,
    register_errors: LogThrottle,
}

impl<'s> Reactor<'s> {
    /// An event loop with nothing registered yet.
    pub(crate) fn new(buffer_size: usize) -> io::Result<Reactor<'s>> {
        Ok(Reactor {
            poll: Poll::new()?,
            conns: Slab::new(),
            buffer_size,
            accept: None,
            inbox: None,
            shutdown: None,
            runnable: VecDeque::new(),
            register_errors: LogThrottle::default(),
        })
    }

    /// Accepts from `listener`, under `limit`.
    pub(crate) fn listen(&mut self, listener: Listener, limit: ConnectionLimit) -> io::Result<()> {
        self.accept = Some(Accept::register(listener, limit, self.poll.registry())?);
        Ok(())
    }

    /// Takes connections from others too: through the returned mailbox.
    pub(crate) fn inbox(&mut self) -> io::Result<Mailbox> {
        // The waker is an eventfd registered under WAKER: writing to it
        // makes `epoll_wait` return, wherever this thread sleeps.
        let waker = Arc::new(Waker::new(self.poll.registry(), WAKER)?);
        let (sender, receiver) = unbounded();
        self.inbox = Some(receiver);
        Ok(Mailbox { sender, waker })
    }

    /// Returns from [`Reactor::run`] once SIGINT or SIGTERM arrives.
    pub(crate) fn stop_on(&mut self, shutdown: &'s Shutdown) -> io::Result<()> {
        self.poll.registry().register(&mut SourceFd(&shutdown.fd().as_raw_fd()), SIGNAL, Interest::READABLE)?;
        self.shutdown = Some(shutdown);
        Ok(())
    }

    /// The loop: wait, dispatch, repeat. Returns on a shutdown signal (if
    /// [`Reactor::stop_on`] was called; else never) or if epoll fails.
    pub(crate) fn run(&mut self) -> io::Result<()> {
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
        let registered = Conn::open(stream, peer.clone(), permit, self.buffer_size).and_then(|conn| {
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

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn the_slab_reuses_freed_slots() {
        let mut slab = Slab::new();
        let a = slab.insert('a');
        let b = slab.insert('b');
        assert_eq!((a, b, slab.len()), (0, 1, 2));
        assert_eq!(slab.remove(a), Some('a'));
        assert_eq!(slab.remove(a), None, "removed twice");
        assert_eq!(slab.get_mut(a), None);
        assert_eq!(slab.insert('c'), a, "the freed slot is reused");
        assert_eq!(slab.get_mut(b), Some(&mut 'b'));
        assert_eq!(slab.len(), 2);
        assert_eq!(slab.get_mut(99), None);
    }

    /// A connection over a socket pair: the server side and the client side.
    fn pair(buffer_size: usize) -> (Conn, UnixStream) {
        let (server, client) = UnixStream::pair().unwrap();
        let permit = ConnectionLimit::new(1).try_acquire(&Peer::Unix(None)).unwrap();
        (Conn::open(Stream::Unix(server), Peer::Unix(None), permit, buffer_size).unwrap(), client)
    }

    #[test]
    fn drive_echoes_until_would_block_then_closes_on_half_close() {
        let (mut conn, mut client) = pair(4);
        assert!(matches!(conn.drive(READS_PER_TURN), Drive::Blocked), "nothing to read yet");
        client.write_all(b"hello, reactor").unwrap();
        assert!(matches!(conn.drive(READS_PER_TURN), Drive::Blocked));
        assert_eq!(conn.interest(), Interest::READABLE, "everything was written back");
        let mut back = [0u8; 14];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello, reactor");
        client.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(matches!(conn.drive(READS_PER_TURN), Drive::Closed(Ok(14))));
    }

    #[test]
    fn drive_yields_after_its_budget() {
        let (mut conn, mut client) = pair(1);
        client.write_all(b"abc").unwrap();
        assert!(matches!(conn.drive(2), Drive::Yielded), "two reads of one byte, one left");
        assert!(matches!(conn.drive(2), Drive::Blocked));
        let mut back = [0u8; 3];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"abc");
    }

    /// Fills both directions of `conn` from a client that never reads: the
    /// server's writes block, then its reads stop. Returns the bytes sent.
    fn stall(conn: &mut Conn, client: &mut UnixStream) -> usize {
        client.set_nonblocking(true).unwrap();
        let chunk = [7u8; 64 * 1024];
        let mut sent = 0;
        for _ in 0..1000 {
            match client.write(&chunk) {
                Ok(n) => sent += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    assert!(matches!(conn.drive(READS_PER_TURN), Drive::Blocked | Drive::Yielded));
                    if conn.state.next() == Next::Write {
                        break;
                    }
                }
                Err(err) => panic!("{err}"),
            }
        }
        sent
    }

    #[test]
    fn a_client_that_does_not_read_stops_the_reading_and_asks_for_writable_only() {
        let (mut conn, mut client) = pair(64 * 1024);
        let sent = stall(&mut conn, &mut client);
        // Not READABLE too: the socket stays readable (what the server will
        // not read while its echo waits), so that interest would report it
        // at once at every re-arm.
        assert_eq!(conn.interest(), Interest::WRITABLE, "sent {sent} B and never read");
        assert!(!conn.state.pending().is_empty());
    }

    /// `reactor-pool` re-arms every connection that comes back blocked
    /// (`force`): one blocked on its write must then stay quiet until the
    /// client reads, not be reported again at once (a spin).
    #[test]
    fn a_forced_rearm_of_a_blocked_write_reports_nothing_until_the_client_reads() {
        let (mut conn, mut client) = pair(64 * 1024);
        let mut poll = Poll::new().unwrap();
        conn.register(poll.registry(), Token(0)).unwrap();
        stall(&mut conn, &mut client);
        assert!(matches!(conn.drive(READS_PER_TURN), Drive::Blocked));
        let mut events = Events::with_capacity(8);
        for _ in 0..3 {
            conn.rearm(poll.registry(), Token(0), true).unwrap();
            poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
            assert!(events.is_empty(), "a blocked connection was reported at once: {events:?}");
        }
        // The client reads: the socket becomes writable and is reported.
        client.set_nonblocking(false).unwrap();
        let mut drained = vec![0u8; 1 << 20];
        let _ = client.read(&mut drained).unwrap();
        poll.poll(&mut events, Some(Duration::from_secs(5))).unwrap();
        assert!(events.iter().any(|e| e.token() == Token(0) && e.is_writable()), "{events:?}");
    }
}
