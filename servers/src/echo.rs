//! The echo of one connection: a small state machine with no I/O in it
//! ([`EchoState`]), and the two loops that drive it with real sockets — a
//! blocking one ([`echo`]) and an async one ([`echo_async`]). A readiness
//! (epoll) or completion (io_uring) model drives the same state from its own
//! event loop.
//!
//! Read up to one buffer, do the message's work (`--work`, [`Work`]; none by
//! default), write all of it back, repeat. The work is a step of the state
//! ([`Next::Work`]), so every driver does it at the same point — after the
//! read, before the write — on the thread it runs on, except the async
//! driver, which may hand blocking work to tokio's blocking pool. One buffer per
//! connection and nothing else: a client that sends and never reads makes
//! the write block (or pend, or stay unfinished), so the server stops
//! reading from it too — TCP backpressure, not server memory, absorbs the
//! excess. On EOF (the client's half-close) everything read has already been
//! written back, so closing the socket is all that is left.

use std::io::{self, Read, Write};
use std::ops::Range;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use crate::transport::Peer;
use crate::work::{Blocking, Work};

/// What every connection's echo is given: `--buffer-size` and `--work`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoOptions {
    /// Bytes read (and so written back) at most per read: the buffer's size.
    pub buffer_size: usize,
    /// What each message costs before its echo.
    pub work: Work,
}

impl EchoOptions {
    /// A buffer of `buffer_size` bytes and no work: the plain echo.
    pub fn plain(buffer_size: usize) -> EchoOptions {
        EchoOptions { buffer_size, work: Work::None }
    }
}

/// What a connection's driver must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read into [`EchoState::read_buf`], then call [`EchoState::received`].
    Read,
    /// Do the work of the message just read: [`EchoState::run_work`] on this
    /// thread, or [`EchoState::work`] elsewhere and then
    /// [`EchoState::work_done`]. Never with `--work none`.
    Work,
    /// Write [`EchoState::pending`], then call [`EchoState::wrote`].
    Write,
    /// The client has half-closed and everything is echoed: close.
    Close,
}

/// One connection's echo, without I/O ("sans-I/O"): its one buffer, how
/// much of it is filled, whether the message's work is done and how much
/// of it is written back. The driver reports what its socket did ("bytes
/// arrived", "bytes written") and asks [`EchoState::next`] what to do.
#[derive(Debug)]
pub struct EchoState {
    /// Allocated once; its address never changes, so a completion-based
    /// driver may hand it to the kernel.
    buf: Box<[u8]>,
    filled: usize,
    written: usize,
    eof: bool,
    echoed: u64,
    work: Work,
    /// The work of what is filled is done (at once with `--work none`).
    worked: bool,
}

impl EchoState {
    /// A connection with one buffer of `options.buffer_size` bytes.
    pub fn new(options: EchoOptions) -> EchoState {
        EchoState {
            buf: vec![0u8; options.buffer_size].into_boxed_slice(),
            filled: 0,
            written: 0,
            eof: false,
            echoed: 0,
            work: options.work,
            worked: true,
        }
    }

    /// Work, then write, while anything read is not yet written back; then
    /// close if the client has half-closed; else read.
    pub fn next(&self) -> Next {
        if self.written < self.filled {
            if self.worked { Next::Write } else { Next::Work }
        } else if self.eof {
            Next::Close
        } else {
            Next::Read
        }
    }

    /// Where the next read goes: the whole buffer (nothing is pending when
    /// [`EchoState::next`] says [`Next::Read`]).
    pub fn read_buf(&mut self) -> &mut [u8] {
        debug_assert_eq!(self.next(), Next::Read, "read while a write is pending");
        &mut self.buf
    }

    /// `n` bytes arrived in [`EchoState::read_buf`]; 0 is the client's half-close.
    pub fn received(&mut self, n: usize) {
        debug_assert!(n <= self.buf.len());
        if n == 0 {
            self.eof = true;
        } else {
            self.filled = n;
            self.written = 0;
            // With no work the message goes straight to its write: the
            // plain echo's path is one store and one branch longer, no more.
            self.worked = self.work.is_none();
        }
    }

    /// The work each message costs (`--work`).
    pub fn work(&self) -> Work {
        self.work
    }

    /// Does the work of the message read ([`Next::Work`]) on this thread.
    pub fn run_work(&mut self) {
        debug_assert_eq!(self.next(), Next::Work, "work with no message waiting for it");
        self.work.run(&self.buf[..self.filled]);
        self.worked = true;
    }

    /// The work of the message read was done elsewhere ([`Work::run_async`]).
    pub fn work_done(&mut self) {
        self.worked = true;
    }

    /// What is read and not yet written back.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.written..self.filled]
    }

    /// `n` bytes of [`EchoState::pending`] were written (a short write is fine).
    pub fn wrote(&mut self, n: usize) {
        debug_assert!(n <= self.filled - self.written);
        self.written += n;
        self.echoed += n as u64;
        if self.written == self.filled {
            (self.filled, self.written) = (0, 0);
        }
    }

    /// Bytes echoed so far.
    pub fn echoed(&self) -> u64 {
        self.echoed
    }

    /// Takes the buffer out, for a driver that hands it to the kernel for
    /// one operation (the `uring` model, [`crate::ring::InFlight`]): the
    /// buffer, and the part of it that operation uses — the whole buffer
    /// for [`Next::Read`], what is pending for [`Next::Write`]. Until
    /// [`EchoState::restore`] gives it back the state has no buffer, so no
    /// code can read or write the memory the kernel holds (asking for
    /// [`EchoState::read_buf`], [`EchoState::pending`] or the work then
    /// is a bug, and panics); the counters are untouched.
    pub fn lend(&mut self) -> (Box<[u8]>, Range<usize>) {
        let range = match self.next() {
            Next::Read => 0..self.buf.len(),
            next => {
                debug_assert_eq!(next, Next::Write, "only a read or a write uses the buffer");
                self.written..self.filled
            }
        };
        (std::mem::take(&mut self.buf), range)
    }

    /// Puts back the buffer [`EchoState::lend`] took, once the operation
    /// that used it has completed; then [`EchoState::received`] or
    /// [`EchoState::wrote`] as usual.
    pub fn restore(&mut self, buf: Box<[u8]>) {
        debug_assert!(self.buf.is_empty(), "a buffer restored while the state has one");
        self.buf = buf;
    }
}

/// Echoes until the client half-closes; returns the bytes echoed. The
/// blocking driver: `iterative`, `process`, `prefork`, `thread`, `pool` and
/// `may` (whose sockets switch coroutines where these calls would block).
/// The work runs here, on the thread (or coroutine) that serves the connection.
pub fn echo<S: Read + Write>(stream: &mut S, state: &mut EchoState) -> io::Result<u64> {
    loop {
        match state.next() {
            Next::Read => match stream.read(state.read_buf()) {
                Ok(n) => state.received(n),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            },
            Next::Work => state.run_work(),
            Next::Write => match stream.write(state.pending()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => state.wrote(n),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            },
            Next::Close => return Ok(state.echoed()),
        }
    }
}

/// [`echo`] for async sockets (`tokio`). `block:` work goes where
/// `blocking` says ([`Work::run_async`]); `cpu:` work runs inline.
pub async fn echo_async<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    state: &mut EchoState,
    blocking: Blocking,
) -> io::Result<u64> {
    loop {
        match state.next() {
            Next::Read => match stream.read(state.read_buf()).await {
                Ok(n) => state.received(n),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            },
            Next::Work => {
                state.work().run_async(state.pending(), blocking).await?;
                state.work_done();
            }
            Next::Write => match stream.write(state.pending()).await {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => state.wrote(n),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            },
            Next::Close => return Ok(state.echoed()),
        }
    }
}

/// Serves one blocking connection to its end: its one buffer, the echo,
/// the log line. The socket closes when `stream` is dropped on return.
pub fn serve<S: Read + Write>(mut stream: S, peer: &Peer, options: EchoOptions) {
    let mut state = EchoState::new(options);
    let result = echo(&mut stream, &mut state);
    log_end(peer, &result);
}

/// [`serve`] for async sockets.
pub async fn serve_async<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: &Peer,
    options: EchoOptions,
    blocking: Blocking,
) {
    let mut state = EchoState::new(options);
    let result = echo_async(&mut stream, &mut state, blocking).await;
    log_end(peer, &result);
}

/// How every model logs the end of a connection: at debug level, error or not.
/// A per-connection error (reset, broken pipe) ends that connection only.
pub fn log_end(peer: &Peer, result: &io::Result<u64>) {
    match result {
        Ok(bytes) => debug!(%peer, bytes, "connection closed"),
        Err(err) => debug!(%peer, %err, "connection failed"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Drives the state by hand: what arrives, what is written, what next.
    #[test]
    fn reads_then_writes_everything_back_then_reads_again() {
        let mut state = EchoState::new(EchoOptions::plain(8));
        assert_eq!(state.next(), Next::Read);
        assert_eq!(state.read_buf().len(), 8, "the whole buffer is offered");
        state.read_buf()[..5].copy_from_slice(b"hello");
        state.received(5);
        assert_eq!(state.next(), Next::Write);
        assert_eq!(state.pending(), b"hello");
        state.wrote(2); // a short write
        assert_eq!(state.next(), Next::Write);
        assert_eq!(state.pending(), b"llo");
        state.wrote(3);
        assert_eq!(state.next(), Next::Read);
        assert_eq!(state.pending(), b"");
        assert_eq!(state.echoed(), 5);
    }

    /// A completion driver's view: the buffer goes out whole for a read,
    /// comes back filled, goes out again with the pending part named.
    #[test]
    fn a_lent_buffer_comes_back_and_the_state_goes_on() {
        let mut state = EchoState::new(EchoOptions::plain(8));
        let (mut buf, range) = state.lend();
        assert_eq!((buf.len(), range), (8, 0..8));
        buf[..5].copy_from_slice(b"hello");
        state.restore(buf);
        state.received(5);
        state.wrote(2);
        let (buf, range) = state.lend();
        assert_eq!(&buf[range.clone()], b"llo");
        state.restore(buf);
        state.wrote(range.len());
        assert_eq!((state.next(), state.echoed()), (Next::Read, 5));
    }

    #[test]
    fn half_close_never_closes_before_the_pending_write() {
        let mut state = EchoState::new(EchoOptions::plain(4));
        state.read_buf()[..3].copy_from_slice(b"abc");
        state.received(3);
        state.wrote(1);
        // A completion driver may learn of the EOF while a write is still
        // pending: the state must still say "write" until it is done.
        state.received(0);
        assert_eq!(state.next(), Next::Write);
        assert_eq!(state.pending(), b"bc");
        state.wrote(2);
        assert_eq!(state.next(), Next::Close);
        assert_eq!(state.echoed(), 3);
    }

    /// With `--work`, every message read waits for its work before its
    /// write; the bytes are the same. With none, the state never asks for it.
    #[test]
    fn the_work_comes_between_the_read_and_the_write() {
        let work = Work::Block(Duration::from_nanos(1));
        let mut state = EchoState::new(EchoOptions { buffer_size: 8, work });
        state.read_buf()[..3].copy_from_slice(b"abc");
        state.received(3);
        assert_eq!(state.next(), Next::Work);
        assert_eq!(state.work(), work);
        assert_eq!(state.pending(), b"abc", "the work reads the message as it will be echoed");
        state.run_work();
        assert_eq!(state.next(), Next::Write);
        state.wrote(1);
        assert_eq!(state.next(), Next::Write, "a short write does not do the work again");
        state.wrote(2);
        assert_eq!(state.next(), Next::Read);
        state.read_buf()[..2].copy_from_slice(b"de");
        state.received(2);
        assert_eq!(state.next(), Next::Work, "every message has its work");
        state.work_done();
        assert_eq!(state.next(), Next::Write);

        let mut plain = EchoState::new(EchoOptions::plain(8));
        plain.read_buf()[..1].copy_from_slice(b"x");
        plain.received(1);
        assert_eq!(plain.next(), Next::Write);
    }

    /// A socket stand-in: reads come from `input` in chunks of `read_chunk`,
    /// writes accept at most `write_chunk` bytes each.
    struct Scripted {
        input: Vec<u8>,
        at: usize,
        read_chunk: usize,
        write_chunk: usize,
        output: Vec<u8>,
        interrupt_next: bool,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if std::mem::take(&mut self.interrupt_next) {
                return Err(io::ErrorKind::Interrupted.into());
            }
            self.interrupt_next = true;
            let n = buf.len().min(self.read_chunk).min(self.input.len() - self.at);
            buf[..n].copy_from_slice(&self.input[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.write_chunk);
            self.output.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_blocking_driver_echoes_everything_through_short_reads_writes_and_eintr() {
        let input: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        for (buffer, read_chunk, write_chunk) in [(4096, 4096, 4096), (16, 7, 3), (1, 1, 1), (100, 1000, 1)] {
            let mut socket = Scripted {
                input: input.clone(),
                at: 0,
                read_chunk,
                write_chunk,
                output: Vec::new(),
                interrupt_next: false,
            };
            let echoed = echo(&mut socket, &mut EchoState::new(EchoOptions::plain(buffer))).unwrap();
            assert_eq!(echoed, input.len() as u64);
            assert!(socket.output == input, "buffer {buffer}, reads of {read_chunk}, writes of {write_chunk}");
        }
    }

    #[test]
    fn the_blocking_driver_with_work_echoes_the_same_bytes() {
        let input: Vec<u8> = (0..3_000u32).map(|i| (i * 13) as u8).collect();
        let mut socket = Scripted {
            input: input.clone(),
            at: 0,
            read_chunk: 700,
            write_chunk: 300,
            output: Vec::new(),
            interrupt_next: false,
        };
        let options = EchoOptions { buffer_size: 512, work: Work::Block(Duration::from_nanos(1)) };
        assert_eq!(echo(&mut socket, &mut EchoState::new(options)).unwrap(), input.len() as u64);
        assert!(socket.output == input);
    }

    #[test]
    fn a_write_of_zero_bytes_is_an_error_not_a_spin() {
        let mut socket = Scripted {
            input: b"x".to_vec(),
            at: 0,
            read_chunk: 1,
            write_chunk: 0,
            output: vec![],
            interrupt_next: false,
        };
        let err = echo(&mut socket, &mut EchoState::new(EchoOptions::plain(4))).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
    }
}
