//! The datagram worker of the `uring` model: one multishot `RECVMSG` into a
//! provided buffer ring ([`BufferRing`]), one `SENDMSG` per echo straight
//! from the buffer the datagram arrived in, the buffer given back to the
//! kernel when the send completes. The page (`models/uring.rs`, "Datagrams")
//! says why; this is the loop and its bookkeeping: which buffers are held by
//! a send, whether the receive is armed, the back-off after an error.

use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::Context;
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use nix::errno::Errno;
use tracing::warn;

use crate::datagram::DatagramEcho;

use super::{BufferRing, Pause, Token};

/// Buffers in each worker's provided buffer ring: how many datagrams a
/// worker holds at once, received and not yet echoed (a power of two, as
/// the kernel requires).
pub const BUFFERS: u16 = 256;

/// The buffer group id of a worker's buffer ring (one per ring).
const BUFFER_GROUP: u16 = 0;

/// One datagram worker: its ring, socket and buffers.
///
/// Dropped, it cancels what is in flight and waits (for a bounded time,
/// `DRAIN`) for the kernel to let go of its buffers before they are
/// freed; in the server it is never dropped (`run` returns only on a fatal
/// error, and the process then exits).
pub struct DatagramWorker {
    ring: IoUring,
    socket: std::net::UdpSocket,
    echo: DatagramEcho,
    /// The provided buffer ring, and the header of each buffer's echo.
    /// Freed by the worker's drop only once the kernel has let go of it.
    buffers: ManuallyDrop<BufferRing>,
    /// The buffer ring is registered with the ring.
    registered: bool,
    /// Buffers held by a send in flight.
    sending: usize,
    /// The multishot receive is active.
    armed: bool,
    /// A receive back-off is running.
    paused: bool,
    pause: Pause,
}

impl DatagramWorker {
    /// Builds the ring (in this, its only thread), registers the buffer
    /// ring and arms the receive.
    pub fn new(socket: std::net::UdpSocket, echo: DatagramEcho) -> anyhow::Result<DatagramWorker> {
        let ring = super::new()?;
        // Room for one byte more than --buffer-size, so that a datagram
        // filling it is known to be too large (MSG_TRUNC says so too).
        let buffers = BufferRing::new(BUFFERS, echo.receive_len()).context("no memory for the buffer ring")?;
        // SAFETY: `buffers` is freed only by the worker's drop, once no
        // request is in flight and the group is unregistered (else never).
        unsafe { buffers.register(&ring, BUFFER_GROUP) }.map_err(|err| {
            super::unavailable(&format!("cannot register a provided buffer ring (Linux 5.19+): {err}"))
        })?;
        let mut worker = DatagramWorker {
            ring,
            socket,
            echo,
            buffers: ManuallyDrop::new(buffers),
            registered: true,
            sending: 0,
            armed: false,
            paused: false,
            pause: Pause::default(),
        };
        worker.rearm()?;
        worker.ring.submit().context("a worker cannot submit its first receive")?;
        Ok(worker)
    }

    /// Submits what is queued (the round's sends, a re-armed receive),
    /// waits for completions, handles them; forever.
    pub fn run(&mut self) -> anyhow::Result<()> {
        let batch = (self.ring.params().sq_entries() / 2) as usize;
        let mut cqes: Vec<cqueue::Entry> = Vec::with_capacity(batch);
        loop {
            super::enter(&mut self.ring, batch, &mut cqes)?;
            for cqe in &cqes {
                match Token::of(cqe.user_data()) {
                    Token::Receive => self.received(cqe.result(), cqe.flags())?,
                    Token::ReceivePause => self.paused = false, // the back-off is over (-ETIME)
                    // A send's key is its buffer id.
                    Token::Op(bid) => self.sent(bid as u16, cqe.result()),
                    token => warn!(?token, "an unexpected completion"),
                }
            }
            self.rearm()?;
        }
    }

    /// Queues `entry`.
    ///
    /// # Safety
    ///
    /// As [`super::push`]: what `entry` points to stays valid until its CQE.
    unsafe fn push(&mut self, entry: squeue::Entry) -> anyhow::Result<()> {
        // SAFETY: the caller's promise is this function's.
        unsafe { super::push(&mut self.ring, entry) }
    }

    /// Arms the multishot receive if it is not active, no back-off runs and
    /// the buffer ring has a buffer for it.
    fn rearm(&mut self) -> anyhow::Result<()> {
        if self.armed || self.paused || self.sending >= usize::from(BUFFERS) {
            return Ok(());
        }
        let socket = types::Fd(self.socket.as_raw_fd());
        let entry = opcode::RecvMsgMulti::new(socket, self.buffers.template(), BUFFER_GROUP)
            .build()
            .user_data(Token::Receive.user_data());
        // SAFETY: the template is boxed in `self.buffers` and the socket
        // lives in `self`, as long as the ring; the buffers are the
        // registered ring's.
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
                        let entry = self.pause.entry(pause, Token::ReceivePause);
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
        // SAFETY: this CQE hands buffer `bid` to us; it goes back to the
        // kernel only below (no echo) or once its echo's send has completed.
        let Some(datagram) = (unsafe { self.buffers.arrived(bid, res as usize) }) else {
            warn!(bid, bytes = res, "cannot parse a received datagram's buffer; dropped");
            self.buffers.give_back(bid);
            return Ok(());
        };
        if !self.echo.received(datagram.len, datagram.cut, datagram.source) {
            self.buffers.give_back(bid); // too large: dropped, counted
            return Ok(());
        }
        let work = self.echo.work();
        if !work.is_none() {
            // Inline, as for streams: the ring waits for it.
            // SAFETY: as for `arrived` above: buffer `bid` is ours until it
            // is given back, which is not before its echo's send completes.
            unsafe { self.buffers.with_payload(&datagram, |payload| work.run(payload)) };
        }
        let entry = self.buffers.echo(&datagram, types::Fd(self.socket.as_raw_fd()));
        self.sending += 1;
        // SAFETY: the send's header, its iovec and the buffer they point
        // into are owned by `self.buffers` at fixed addresses, and stay put
        // and untouched until this send's CQE: the buffer is given back to
        // the kernel only then (`sent`).
        unsafe { self.push(entry) }
    }

    /// The CQE of the echo held in buffer `bid`: count it, give the buffer back.
    fn sent(&mut self, bid: u16, res: i32) {
        let Some((len, to)) = self.buffers.echoed(bid) else {
            warn!(bid, "completion for no send");
            return;
        };
        let result = if res < 0 { Err(io::Error::from_raw_os_error(-res)) } else { Ok(res as usize) };
        self.echo.sent(result, len, to);
        self.sending -= 1;
        self.buffers.give_back(bid);
    }
}

/// How long a dropped worker waits for the kernel to let go of its buffers.
const DRAIN: Duration = Duration::from_secs(5);

/// By hand: `IoUring` has no `Debug`.
impl fmt::Debug for DatagramWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramWorker")
            .field("socket", &self.socket)
            .field("sending", &self.sending)
            .field("armed", &self.armed)
            .field("paused", &self.paused)
            .finish_non_exhaustive()
    }
}

impl DatagramWorker {
    /// Cancels the receive and the sends in flight, reaps their CQEs, then
    /// unregisters the buffer ring: `Ok` once the kernel holds none of the
    /// worker's memory. Idempotent.
    fn release(&mut self) -> anyhow::Result<()> {
        let mut left = (&mut self.sending, &mut self.armed);
        let reap =
            |(sending, armed): &mut (&mut usize, &mut bool), cqe: &cqueue::Entry| match Token::of(cqe.user_data()) {
                Token::Receive if !cqueue::more(cqe.flags()) => **armed = false,
                Token::Op(_) => **sending = sending.saturating_sub(1),
                _ => {}
            };
        let settled = |(sending, armed): &(&mut usize, &mut bool)| **sending == 0 && !**armed;
        super::cancel_all(&mut self.ring, Instant::now() + DRAIN, &mut left, reap, settled)?;
        if self.registered {
            self.ring.submitter().unregister_buf_ring(BUFFER_GROUP).context("cannot unregister the buffer ring")?;
            self.registered = false;
        }
        Ok(())
    }
}

impl Drop for DatagramWorker {
    /// Frees the buffer ring once the kernel has let go of it (`release`);
    /// if it has not in time, the buffers are leaked rather than freed.
    fn drop(&mut self) {
        match self.release() {
            // SAFETY: no request is in flight and the group is unregistered:
            // the kernel holds no buffer, nor the ring of descriptors. Not
            // used again: this is the worker's drop.
            Ok(()) => unsafe { ManuallyDrop::drop(&mut self.buffers) },
            Err(err) => warn!("{err:#}; the datagram buffers are leaked, not freed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;

    use super::*;
    use crate::echo::EchoOptions;

    /// A worker just built has its multishot receive in flight, writing
    /// into the registered buffers: releasing it must end that receive and
    /// take the buffers back before they may be freed (its drop, after).
    #[test]
    fn a_released_worker_holds_nothing_in_the_kernel() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let built = DatagramWorker::new(socket, DatagramEcho::new(EchoOptions::plain(64)));
        let mut worker = built.unwrap_or_else(|err| panic!("{err:#}"));
        assert!(worker.armed && worker.registered);
        worker.release().expect("the receive is cancelled and the buffer ring unregistered");
        assert!(!worker.armed && !worker.registered && worker.sending == 0);
        worker.release().expect("a second release has nothing to do");
    }
}
