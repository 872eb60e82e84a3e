//! One connection of an event loop: the echo over readiness, written once.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::echo::{EchoOptions, EchoState, Next};
use crate::listen::Permit;
use crate::transport::{Peer, Stream};

/// One connection of an event loop: its non-blocking socket, its echo and
/// its slot under the cap. The echo over readiness is [`Conn::drive`], the
/// one copy every event-loop model uses.
#[derive(Debug)]
pub struct Conn {
    stream: Stream,
    peer: Peer,
    state: EchoState,
    /// What it is registered for with epoll (`None`: not registered yet).
    armed: Option<Interest>,
    _permit: Permit,
}

/// Where [`Conn::drive`] left a connection.
#[derive(Debug)]
pub enum Drive {
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
    pub fn open(stream: Stream, peer: Peer, permit: Permit, options: EchoOptions) -> io::Result<Conn> {
        stream.set_nonblocking(true)?;
        Ok(Conn { stream, peer, state: EchoState::new(options), armed: None, _permit: permit })
    }

    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Reads and writes until the socket would block, the echo ends, or
    /// `budget` reads are done — the whole echo over readiness, each
    /// message's work (`--work`) included, on the calling thread: the event
    /// loop's own (`reactor`, `reactors`: every other connection of the
    /// loop waits meanwhile), or a pool worker's (`reactor-pool`). Safe with
    /// edge-triggered epoll because it stops only at `WouldBlock` (an event
    /// will come when that changes), at the end, or when asked to yield
    /// (the caller then drives it again without an event).
    pub fn drive(&mut self, budget: usize) -> Drive {
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
                Next::Work => self.state.run_work(),
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
    pub fn interest(&self) -> Interest {
        match self.state.next() {
            Next::Write => Interest::WRITABLE,
            // `drive` never stops between a read and its work. Were it to,
            // writable is reported at once and the next drive does the work.
            Next::Work => Interest::WRITABLE,
            Next::Read | Next::Close => Interest::READABLE,
        }
    }

    /// Registers the socket under `token` (`EPOLL_CTL_ADD`). A socket that
    /// already has data is reported at once: no event is lost.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let interest = self.interest();
        registry.register(&mut SourceFd(&self.stream.as_raw_fd()), token, interest)?;
        self.armed = Some(interest);
        Ok(())
    }

    /// Changes the registration to [`Conn::interest`] (`EPOLL_CTL_MOD`),
    /// if it differs, or always if `force` (`EPOLL_CTL_MOD` re-evaluates
    /// readiness, so it reports what happened while nobody listened).
    pub fn rearm(&mut self, registry: &Registry, token: Token, force: bool) -> io::Result<()> {
        let interest = self.interest();
        if force || self.armed != Some(interest) {
            registry.reregister(&mut SourceFd(&self.stream.as_raw_fd()), token, interest)?;
            self.armed = Some(interest);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use mio::{Events, Poll};

    use super::*;
    use crate::event_loop::READS_PER_TURN;
    use crate::listen::ConnectionLimit;

    /// A connection over a socket pair: the server side and the client side.
    fn pair(buffer_size: usize) -> (Conn, UnixStream) {
        let (server, client) = UnixStream::pair().unwrap();
        let permit = ConnectionLimit::new(1).try_acquire(&Peer::Unix(None)).unwrap();
        (Conn::open(Stream::Unix(server), Peer::Unix(None), permit, EchoOptions::plain(buffer_size)).unwrap(), client)
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
