//! A stream worker's multishot accept (`IORING_OP_ACCEPT` with
//! `IORING_ACCEPT_MULTISHOT`, Linux 5.19): one request that yields a CQE
//! per accepted connection until it ends, re-armed when it does — at once,
//! or after the shared back-off for errors such as EMFILE, so that a full
//! descriptor table never spins.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use io_uring::{IoUring, cqueue, opcode, types};
use nix::sys::socket::SockFlag;

use crate::listen::AcceptErrors;

use super::{Pause, Token};

/// The multishot accept on one listener, and its back-off.
#[derive(Debug)]
pub struct Accept {
    listener: RawFd,
    pause: Pause,
}

impl Accept {
    /// The accept of `listener`, a descriptor that stays open as long as
    /// the ring the accept is armed on (both are the worker's).
    pub fn new(listener: RawFd) -> Accept {
        Accept { listener, pause: Pause::default() }
    }

    /// Queues the multishot accept (again, at the end of a back-off: the
    /// CQE of [`Token::AcceptPause`]).
    pub fn arm(&self, ring: &mut IoUring) -> anyhow::Result<()> {
        // The listener is in blocking mode (as bound): io_uring tries the
        // accept without blocking and, when nothing is pending, waits on a
        // poll of the socket — no thread blocks. Accepted sockets are
        // blocking too, for the same reason; close-on-exec like std's.
        let entry = opcode::AcceptMulti::new(types::Fd(self.listener))
            .flags(SockFlag::SOCK_CLOEXEC.bits())
            .build()
            .user_data(Token::Accept.user_data());
        // SAFETY: no buffer: a multishot accept passes no address out.
        unsafe { super::push(ring, entry) }
    }

    /// A CQE of the accept ([`Token::Accept`]): the new connection's
    /// descriptor, or `None` for an error (counted and logged by `errors`).
    /// If the multishot has ended, re-arms it, or queues the back-off.
    pub fn accepted(
        &mut self,
        ring: &mut IoUring,
        cqe: &cqueue::Entry,
        errors: &AcceptErrors,
    ) -> anyhow::Result<Option<OwnedFd>> {
        let (res, mut pause) = (cqe.result(), std::time::Duration::ZERO);
        let accepted = if res >= 0 {
            // SAFETY: the kernel just installed this descriptor for us;
            // nothing else owns it.
            Some(unsafe { OwnedFd::from_raw_fd(res) })
        } else {
            pause = errors.backoff(&io::Error::from_raw_os_error(-res));
            None
        };
        if !cqueue::more(cqe.flags()) {
            // The multishot ended (an error, or the kernel could not post a
            // CQE): re-arm it, after the back-off for errors like EMFILE —
            // re-arming at once would fail at once, forever.
            if pause.is_zero() {
                self.arm(ring)?;
            } else {
                let entry = self.pause.entry(pause, Token::AcceptPause);
                // SAFETY: the time is boxed in `self.pause`, which outlives
                // the ring's use; the kernel copies it when this SQE is
                // submitted, and it is not rewritten before then (one
                // back-off at a time: the accept is not armed meanwhile).
                unsafe { super::push(ring, entry) }?;
            }
        }
        Ok(accepted)
    }
}
