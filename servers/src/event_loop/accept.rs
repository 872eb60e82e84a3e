//! Accepting on an event loop: until `WouldBlock`, under the cap, and
//! without spinning on EMFILE.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry};

use super::LISTENER;
use crate::listen::{AcceptErrors, ConnectionLimit, Permit, admit};
use crate::transport::{Listener, Peer, Stream};

/// A non-blocking listener registered with an event loop, and what is
/// needed to accept from it without spinning on EMFILE.
///
/// EMFILE and its kind (see [`AcceptErrors`]) leave the connection in the
/// backlog — and with edge-triggered epoll the listener will not be
/// reported again for it. So accepting pauses for the back-off, the loop
/// uses the pause as its `epoll_wait` timeout ([`Accept::timeout`]), and
/// accepts again when it expires ([`Accept::resume_if_due`]): it never
/// spins, and it never forgets the backlog.
#[derive(Debug)]
pub struct Accept {
    listener: Listener,
    limit: ConnectionLimit,
    errors: AcceptErrors,
    /// Set after an error such as EMFILE: listener events are ignored, and
    /// the loop accepts again at this instant.
    paused_until: Option<Instant>,
}

impl Accept {
    /// Makes `listener` non-blocking and registers it (edge-triggered) under `LISTENER`.
    pub fn register(listener: Listener, limit: ConnectionLimit, registry: &Registry) -> io::Result<Accept> {
        listener.set_nonblocking(true)?;
        registry.register(&mut SourceFd(&listener.as_raw_fd()), LISTENER, Interest::READABLE)?;
        Ok(Accept { listener, limit, errors: AcceptErrors::default(), paused_until: None })
    }

    /// Accepts until `WouldBlock` (the edge is consumed only then) or an
    /// error that pauses accepting; `take` gets each admitted connection.
    /// Over the cap, a connection is dropped, i.e. closed at once.
    /// Does nothing while paused: the timeout resumes it.
    pub fn accept_all(&mut self, mut take: impl FnMut(Stream, Peer, Permit)) {
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
    pub fn timeout(&self) -> Option<Duration> {
        self.paused_until.map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Ends an expired pause; true if the caller should accept now.
    pub fn resume_if_due(&mut self) -> bool {
        let due = self.paused_until.is_some_and(|at| Instant::now() >= at);
        if due {
            self.paused_until = None;
        }
        due
    }
}
