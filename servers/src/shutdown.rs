//! SIGINT and SIGTERM, turned into something a model can wait on.
//!
//! A signal handler may do almost nothing, so signal-hook's handler writes one
//! byte into a socket pair. Blocking models `poll` that socket next to their
//! listener; the async models park their main thread in [`Shutdown::wait`]
//! while the runtime serves. Either way, a model's `serve` returns, and the
//! process exits 0: the listener and every live connection are closed by the
//! kernel as the process goes.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use signal_hook::consts::{SIGINT, SIGTERM};

/// A shutdown request: set once SIGINT or SIGTERM has arrived.
#[derive(Debug)]
pub struct Shutdown {
    requested: Arc<AtomicBool>,
    wakeup: UnixStream,
}

impl Shutdown {
    /// Installs the handlers. Call once, before serving.
    pub fn install() -> io::Result<Shutdown> {
        let (wakeup, notify) = UnixStream::pair()?;
        let requested = Arc::new(AtomicBool::new(false));
        for signal in [SIGINT, SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&requested))?;
            signal_hook::low_level::pipe::register(signal, notify.try_clone()?)?;
        }
        Ok(Shutdown { requested, wakeup })
    }

    /// Has a signal arrived?
    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Blocks until a signal arrives.
    pub fn wait(&self) {
        let mut byte = [0u8; 1];
        while !self.is_requested() {
            // Blocking read: the handler's byte wakes us. EINTR and spurious
            // returns loop back to the flag check.
            let _ = (&self.wakeup).read(&mut byte);
        }
    }

    /// Sleeps for `pause` unless a signal arrives first; returns whether one did.
    pub fn sleep(&self, pause: Duration) -> bool {
        // Readable wake-up socket == signal arrived.
        poll_readable([self.fd()], pause).is_ok_and(|ready| ready[0]) || self.is_requested()
    }

    /// The descriptor that becomes readable when a signal arrives.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wakeup.as_fd()
    }
}

/// Waits until one of `fds` is readable or `timeout` passes; returns which are.
/// An interrupted wait (EINTR) returns "none ready".
pub fn poll_readable<const N: usize>(fds: [BorrowedFd<'_>; N], timeout: Duration) -> io::Result<[bool; N]> {
    let mut polled = fds.map(|fd| PollFd::new(fd, PollFlags::POLLIN));
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    match poll(&mut polled, timeout) {
        // Any event counts, POLLERR and POLLHUP too: the caller's next call reports it.
        Ok(_) => Ok(polled.map(|p| p.revents().is_some_and(|r| !r.is_empty()))),
        Err(Errno::EINTR) => Ok([false; N]),
        Err(errno) => Err(errno.into()),
    }
}
