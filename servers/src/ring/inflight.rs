//! The memory a stream worker lends the kernel: each connection's one
//! buffer, owned by the operation in flight on it.
//!
//! ## The rule: an operation in flight owns its buffer
//!
//! While a receive or a send is in flight the kernel may write into (or
//! read from) its buffer at any moment, and no Rust reference says so. So
//! for that time the buffer is not the connection's. [`InFlight::receive`]
//! and [`InFlight::send`] take it — the `Box<[u8]>` that the connection's
//! [`EchoState`] gives up with [`EchoState::lend`] — turn it into a raw
//! pointer (`Box::into_raw`: while the kernel holds the memory no `Box`,
//! and so no unique reference, to it exists anywhere) and keep it in a
//! table, under a key that is the operation's `user_data`. Only the
//! operation's CQE gives it back ([`InFlight::complete`]): the pointer
//! becomes a `Box` again, for the connection to put back into its state
//! ([`EchoState::restore`]). Meanwhile the connection's state has no buffer
//! at all: the echo's code cannot touch the memory even by mistake.
//!
//! A connection that ends while its operation is in flight
//! ([`InFlight::abandon`]) leaves the buffer, and its descriptor, with the
//! operation and asks the kernel to cancel it. Both are freed when the CQE
//! arrives (the operation completed, or was cancelled), never before: the
//! kernel never writes into freed memory, and a descriptor number is never
//! reused by a new connection while a request still names it. If the table
//! itself is dropped with operations in flight, whose CQEs will never be
//! seen, their buffers are leaked rather than freed: at most one per
//! connection, once, when a worker goes away without draining its ring
//! ([`InFlight::drain`] is how it drains).
//!
//! ## Why a moved buffer, not a provided buffer ring
//!
//! The datagram workers receive into a provided buffer ring
//! ([`super::BufferRing`]): the kernel picks a buffer per datagram. For
//! streams that would split each connection's echo over two buffers (the
//! ring's for receiving, one of its own for what is being sent back), or
//! copy from one into the other, and the receive would no longer go through
//! the [`EchoState`] every model shares. Moving the connection's own buffer
//! into the operation keeps the echo as it is for every model — one buffer
//! of `--buffer-size` per connection, the same [`EchoState`] (`next`,
//! `received`, the `--work` step, `wrote`) — and memory per connection stays
//! that one buffer: the state's while idle, its operation's while in
//! flight, never both, never more.

use std::ops::Range;
use std::os::fd::OwnedFd;
use std::time::Instant;

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use nix::sys::socket::MsgFlags;
use tracing::warn;

#[cfg(doc)]
use crate::echo::EchoState;
use crate::slab::Slab;

use super::Token;

/// One operation in flight: the buffer it owns, and whose it is.
#[derive(Debug)]
struct Op {
    /// From `Box::into_raw`; made a `Box` again once, at the CQE.
    buf: *mut [u8],
    /// The connection (its index in the worker's table) waiting for the
    /// buffer back; `None` once it has ended.
    conn: Option<usize>,
    /// The descriptor of a connection that ended meanwhile, closed only
    /// after the CQE.
    fd: Option<OwnedFd>,
}

/// What an operation's CQE hands back.
#[derive(Debug)]
pub struct Completed {
    /// The connection to give the buffer back to; `None` if it has ended
    /// (the buffer, and the descriptor it left, are freed with this value).
    pub conn: Option<usize>,
    /// The buffer, the worker's again: the kernel is done with it.
    pub buf: Box<[u8]>,
    /// The ended connection's descriptor, if any, closed on drop.
    _fd: Option<OwnedFd>,
}

/// The operations in flight on one ring, each with the buffer it owns,
/// keyed by `user_data`. (Not `Send`: each worker has its own.)
#[derive(Debug, Default)]
pub struct InFlight {
    ops: Slab<Op>,
}

impl InFlight {
    /// An empty table.
    pub fn new() -> InFlight {
        InFlight::default()
    }

    /// Operations in flight.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// None in flight?
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// A `Recv` on `fd` into `buf[range]` for connection `conn`; the
    /// operation owns `buf` until its CQE. Returns the entry to push (its
    /// `user_data` set) and its key, for [`InFlight::abandon`].
    pub fn receive(&mut self, conn: usize, fd: types::Fd, buf: Box<[u8]>, range: Range<usize>) -> (squeue::Entry, u64) {
        let (ptr, len, key) = self.lend(conn, buf, range);
        (opcode::Recv::new(fd, ptr, len).build().user_data(key), key)
    }

    /// A `Send` on `fd` of `buf[range]` for connection `conn`, as
    /// [`InFlight::receive`]. MSG_NOSIGNAL: a peer gone away is an EPIPE
    /// result, not a SIGPIPE.
    pub fn send(&mut self, conn: usize, fd: types::Fd, buf: Box<[u8]>, range: Range<usize>) -> (squeue::Entry, u64) {
        let (ptr, len, key) = self.lend(conn, buf, range);
        let entry = opcode::Send::new(fd, ptr, len).flags(MsgFlags::MSG_NOSIGNAL.bits()).build();
        (entry.user_data(key), key)
    }

    /// Takes `buf` into a new operation: a pointer to `range` in it (made
    /// from the raw allocation, not from a reference), its length, the key.
    fn lend(&mut self, conn: usize, buf: Box<[u8]>, range: Range<usize>) -> (*mut u8, u32, u64) {
        assert!(range.start <= range.end && range.end <= buf.len(), "{range:?} beyond {} bytes", buf.len());
        // The kernel takes at most u32::MAX bytes per operation; a short
        // receive or send is as usual then.
        let len = u32::try_from(range.len()).unwrap_or(u32::MAX);
        let buf = Box::into_raw(buf);
        // SAFETY: `range.start` is within the allocation or one past its
        // end (checked above).
        let ptr = unsafe { buf.cast::<u8>().add(range.start) };
        let key = self.ops.insert(Op { buf, conn: Some(conn), fd: None });
        (ptr, len, Token::Op(key).user_data())
    }

    /// The CQE of operation `key` has arrived: its buffer, and whose it is;
    /// `None` for no operation in flight under that key.
    pub fn complete(&mut self, key: usize) -> Option<Completed> {
        let op = self.ops.remove(key)?;
        // SAFETY: `op.buf` came from `Box::into_raw` in `lend` and is made a
        // `Box` once, here, as the operation leaves the table; the kernel is
        // done with it — this is its CQE.
        let buf = unsafe { Box::from_raw(op.buf) };
        Some(Completed { conn: op.conn, buf, _fd: op.fd })
    }

    /// Connection `conn`'s operation `key` is in flight as it ends: the
    /// operation keeps the buffer and takes the descriptor `fd`, both freed
    /// at its CQE. Returns the cancellation to push (its own CQE carries
    /// [`Token::Cancel`]); `None` if no such operation is in flight, and
    /// then `fd` is closed at once.
    pub fn abandon(&mut self, key: u64, fd: OwnedFd) -> Option<squeue::Entry> {
        let Token::Op(index) = Token::of(key) else { return None };
        let op = self.ops.get_mut(index)?;
        op.conn = None;
        op.fd = Some(fd);
        Some(opcode::AsyncCancel::new(key).build().user_data(Token::Cancel.user_data()))
    }

    /// Cancels every request in flight on `ring` and reaps the CQEs until
    /// no operation of this table is in flight ([`super::cancel_all`]);
    /// other CQEs are dropped. For a worker going away: what has not
    /// completed by `deadline` is leaked when the table drops, never freed.
    pub fn drain(&mut self, ring: &mut IoUring, deadline: Instant) -> anyhow::Result<()> {
        let reap = |ops: &mut InFlight, cqe: &cqueue::Entry| {
            if let Token::Op(key) = Token::of(cqe.user_data()) {
                drop(ops.complete(key));
            }
        };
        super::cancel_all(ring, deadline, self, reap, InFlight::is_empty)
    }
}

impl Drop for InFlight {
    /// Leaks the buffer, and the descriptor, of every operation still in
    /// flight: its CQE was never seen, so the kernel may still write into
    /// the buffer, and a descriptor closed now could be reused by a new
    /// connection while the request still names its number.
    fn drop(&mut self) {
        if !self.is_empty() {
            warn!(operations = self.len(), "buffers and descriptors still lent to the kernel are leaked, not freed");
        }
        let keys: Vec<usize> = self.ops.keys().collect();
        for key in keys {
            if let Some(op) = self.ops.remove(key) {
                // The buffer is a raw pointer: dropping it frees nothing.
                std::mem::forget(op.fd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use super::*;

    /// A ring as the workers build it; a machine without io_uring fails
    /// the test with the reason.
    fn ring() -> IoUring {
        match super::super::new() {
            Ok(ring) => ring,
            Err(err) => panic!("{err:#}"),
        }
    }

    /// Submits and waits for one CQE.
    fn next_cqe(ring: &mut IoUring) -> cqueue::Entry {
        ring.submit_and_wait(1).expect("io_uring_enter");
        ring.completion().next().expect("a CQE after waiting for one")
    }

    #[test]
    fn a_completed_receive_hands_the_filled_buffer_back_to_its_connection() {
        let mut ring = ring();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut ops = InFlight::new();
        let (entry, key) = ops.receive(7, types::Fd(ours.as_raw_fd()), vec![0u8; 16].into_boxed_slice(), 0..16);
        // SAFETY: the buffer is owned by `ops` until the CQE; `ours` outlives it.
        unsafe { ring.submission().push(&entry) }.unwrap();
        theirs.write_all(b"hello").unwrap();
        let cqe = next_cqe(&mut ring);
        assert_eq!((cqe.user_data(), cqe.result()), (key, 5));
        let Token::Op(index) = Token::of(key) else { panic!("an operation's key") };
        let done = ops.complete(index).expect("the operation was in flight");
        assert_eq!((done.conn, &done.buf[..5]), (Some(7), &b"hello"[..]));
        assert!(ops.is_empty() && ops.complete(index).is_none(), "completed once");
    }

    /// The path of a connection ending with a receive in flight: the buffer
    /// and descriptor stay with the operation until its cancellation's CQE.
    #[test]
    fn an_abandoned_receive_keeps_its_buffer_until_cancelled_and_drained() {
        let mut ring = ring();
        let mut ops = InFlight::new();
        let mut peers = Vec::new();
        for conn in 0..8 {
            let (ours, theirs) = UnixStream::pair().unwrap();
            let (entry, key) = ops.receive(conn, types::Fd(ours.as_raw_fd()), vec![0u8; 64].into_boxed_slice(), 0..64);
            // SAFETY: as above; `ours` goes to the operation when abandoned.
            unsafe { ring.submission().push(&entry) }.unwrap();
            ring.submit().unwrap(); // in flight in the kernel, waiting for data
            let cancel = ops.abandon(key, OwnedFd::from(ours)).expect("in flight");
            // SAFETY: a cancellation points to no memory.
            unsafe { ring.submission().push(&cancel) }.unwrap();
            peers.push(theirs);
        }
        assert_eq!(ops.len(), 8, "abandoned operations still own their buffers");
        ops.drain(&mut ring, Instant::now() + Duration::from_secs(10)).expect("every cancelled receive completes");
        assert!(ops.is_empty());
    }

    /// A table dropped with an operation in flight closes nothing: the
    /// kernel may still hold the request naming the descriptor.
    #[test]
    fn a_table_dropped_in_flight_leaks_the_descriptor_not_closes_it() {
        use std::io::{ErrorKind, Read};
        use std::os::fd::FromRawFd;
        let mut ops = InFlight::new();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let raw = ours.as_raw_fd();
        let (_entry, key) = ops.receive(0, types::Fd(raw), vec![0u8; 16].into_boxed_slice(), 0..16);
        assert!(ops.abandon(key, OwnedFd::from(ours)).is_some());
        drop(ops);
        // Still open: the peer reads no end of stream.
        theirs.set_nonblocking(true).unwrap();
        let read = theirs.read(&mut [0u8; 1]);
        assert!(matches!(&read, Err(err) if err.kind() == ErrorKind::WouldBlock), "{read:?}");
        // SAFETY: `raw` was leaked by the table, and no request was ever
        // submitted: this test owns it again, and closes it.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
        assert_eq!(theirs.read(&mut [0u8; 1]).unwrap(), 0, "closed now");
    }

    #[test]
    fn abandoning_what_is_not_in_flight_closes_the_descriptor_at_once() {
        let mut ops = InFlight::new();
        let (ours, _theirs) = UnixStream::pair().unwrap();
        assert!(ops.abandon(Token::Op(3).user_data(), OwnedFd::from(ours)).is_none());
        assert!(ops.abandon(Token::Accept.user_data(), OwnedFd::from(UnixStream::pair().unwrap().0)).is_none());
    }
}
