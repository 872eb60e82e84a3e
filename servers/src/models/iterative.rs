//! # `iterative`: one connection at a time, on one thread
//!
//! The server every socket tutorial starts from: accept a connection, echo
//! until the client leaves, accept the next. There is no concurrency at
//! all, which is the point: this is the zero of the benchmark's "CPU per
//! connection" table, and what another model costs above it is the price of
//! its concurrency.
//!
//! What a connection costs: its socket and its one buffer, nothing else —
//! no thread, no process, no task, no event registration. Per message, the
//! two system calls every blocking model makes (`read`, `write`).
//!
//! ## One at a time
//!
//! While a client is served, the next ones wait in the kernel's listen
//! backlog (`--backlog`): their `connect` succeeds, but they get no echo
//! until every client before them has left. A client that stays connected,
//! even idle, stops the whole server. Good at: nothing but being the
//! baseline (and a server whose clients come one after another). Bad at:
//! any second client.
//!
//! `--max-connections` keeps the shared accept loop ([`Acceptor`]) and its
//! cap, but the server accepts only when it is idle, so there is never more
//! than one live connection, and the cap (default 10,000, as for the other
//! models, so that the benchmark asks it to hold as many idle connections
//! and shows all but one starved) changes nothing. Connections never wait
//! *accepted*; they wait in the
//! backlog, and beyond the backlog a Unix socket's connect waits (or fails
//! with EAGAIN when non-blocking) and TCP drops the SYN (the client retries).
//!
//! ## Noticing SIGTERM while serving
//!
//! The accept loop polls the listener next to the shutdown descriptor, so
//! an idle server stops at once. A served connection is the problem: the
//! blocking echo sleeps in `read` while its client is idle, and the signal
//! handlers are installed with SA_RESTART, so the read would resume after a
//! signal and never return. The served socket gets a receive and send
//! timeout (SO_RCVTIMEO, SO_SNDTIMEO) of [`SHUTDOWN_CHECK`], and
//! [`Interruptible`] checks the shutdown flag before every call and after
//! every timeout. Why this and not a `poll` on the socket and the shutdown
//! descriptor before each read: that would add a system call to every
//! message of the baseline, while a timeout costs one `setsockopt` per
//! connection and keeps the hot path at exactly `read` + `write`, like the
//! blocking models it is compared with. It is not a busy loop: an idle
//! connection wakes up a few times a second. In practice the signal even
//! ends the wait at once: a socket call with a timeout is never restarted
//! after a signal handler, it fails with EINTR (signal(7)). The timeout
//! covers the race where the signal lands between the flag check and the
//! call.
//!
//! ## Datagrams: the classic UDP server
//!
//! Over `udp:` the same single thread is the server every UDP tutorial
//! shows: `recvfrom` a datagram, `sendto` it back to where it came from,
//! repeat. Here "one at a time" costs nothing: there is no connection to
//! hold the thread, so every client is served, datagram by datagram, in
//! the order the kernel queued them. One thread and two system calls per
//! datagram are its whole cost, and its limit: one CPU. The socket gets a
//! receive and send timeout of [`SHUTDOWN_CHECK`], so that the idle loop
//! sees a shutdown request (the signal itself usually ends the wait at
//! once, as above); an echo that cannot be sent within it is dropped and
//! counted.
//!
//! `--batch N` takes up to N queued datagrams per `recvmmsg` (blocking for
//! the first only: MSG_WAITFORONE) and sends their echoes with one
//! `sendmmsg`: two system calls per batch instead of per datagram. Under
//! load, when datagrams queue up, a batch fills; at low load it holds one
//! datagram and costs what `recvfrom` does.
//!
//! ## Work per message (`--work`)
//!
//! Inline, on the one thread, between the read and the write
//! ([`echo::serve`]): a message's work, computed or slept, is time nobody
//! else is served — but nobody else is served anyway while this client
//! stays. Over `udp:` every datagram's work delays every datagram queued
//! behind it, whoever sent it; with `--batch`, every datagram of a batch is
//! worked on before the batch's echoes leave together, so the first waits
//! for the last one's work.
//!
//! ```text
//! echo-server iterative --addr 127.0.0.1:7000
//! echo-server iterative --addr unix:/tmp/echo.sock --backlog 4096
//! echo-server iterative --addr udp:127.0.0.1:7000 --batch 32 --recv-buffer 4194304
//! ```

use std::io::{self, Read, Write};
use std::net::UdpSocket;
use std::time::Duration;

use clap::Args as ClapArgs;
use socket2::SockRef;
use tracing::warn;

use crate::cli::Common;
use crate::datagram::{self, BatchOption, DatagramEcho, DatagramOptions, Receiver};
use crate::echo::{self, EchoOptions};
use crate::listen::Acceptor;
use crate::models::{Datagrams, Model};
use crate::ready::Ready;
use crate::shutdown::Shutdown;
use crate::transport::{Listener, Stream};

pub static MODEL: Model<Args> = Model {
    name: "iterative",
    summary: "One connection at a time on one thread: accept, echo until the client leaves, accept the next",
    // It never has more than one live connection.
    default_max_connections: 10_000,
    serves_at_once: Some(1),
    baseline: true,
    reuse_port: false,
    colour: "#8c564b",
    blocks_at_once: echo_common::BlocksAtOnce::PerConnection,
    datagrams: Some(Datagrams {
        design: "One thread: blocking recvfrom, sendto, repeat; with --batch N, recvmmsg and sendmmsg",
        options: |args| &args.udp,
        serve: serve_datagrams,
    }),
    children: None,
};

/// `echo-server iterative` options: the common ones, and over UDP the
/// socket buffers and `--batch`.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub udp: DatagramOptions,
    #[command(flatten)]
    pub batch: BatchOption,
}

/// How long a served connection's `read` or `write` may block before the
/// shutdown flag is checked again: the upper bound on noticing SIGTERM.
pub const SHUTDOWN_CHECK: Duration = Duration::from_millis(250);

/// Accepts and serves one connection after another on this thread.
pub fn serve(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
    let acceptor = Acceptor::new(&listener, shutdown, args.common.max_connections())?;
    ready.announce()?;
    serve_one_at_a_time(acceptor, shutdown, args.common.echo());
    Ok(())
}

/// The iterative loop: serve each connection to its end, then take the
/// next. Also the body of every `prefork` child, which is this server on a
/// listener shared with its siblings.
pub fn serve_one_at_a_time(acceptor: Acceptor<'_>, shutdown: &Shutdown, echo: EchoOptions) {
    for conn in acceptor {
        let _permit = conn.permit; // the slot is held while served
        match Interruptible::new(conn.stream, shutdown) {
            Ok(stream) => echo::serve(stream, &conn.peer, echo),
            // Without the timeouts SIGTERM could go unnoticed: do not serve.
            Err(err) => warn!(peer = %conn.peer, %err, "cannot set socket timeouts; closing the connection"),
        }
    }
}

/// The classic UDP server on this thread: receive, echo, repeat, until a
/// shutdown signal.
pub fn serve_datagrams(
    socket: UdpSocket,
    args: &Args,
    echo: DatagramEcho,
    shutdown: &Shutdown,
    ready: Ready,
) -> anyhow::Result<()> {
    // The idle receive gives up every SHUTDOWN_CHECK to look at the flag;
    // a send that finds the send buffer full for that long is dropped
    // (counted), not waited for past a shutdown request.
    socket.set_read_timeout(Some(SHUTDOWN_CHECK))?;
    socket.set_write_timeout(Some(SHUTDOWN_CHECK))?;
    let mut receiver = Receiver::new(echo, args.batch.get());
    ready.announce()?;
    datagram::serve_blocking(
        &socket,
        &mut receiver,
        || shutdown.is_requested(),
        |pause| {
            shutdown.sleep(pause);
        },
    );
    Ok(())
}

/// A blocking stream whose reads and writes give up once shutdown is
/// requested (see the module page): the error ends the echo of this
/// connection, and the accept loop then sees the request and returns.
#[derive(Debug)]
pub struct Interruptible<'a> {
    stream: Stream,
    shutdown: &'a Shutdown,
}

impl<'a> Interruptible<'a> {
    /// Sets the socket's receive and send timeouts to [`SHUTDOWN_CHECK`].
    pub fn new(stream: Stream, shutdown: &'a Shutdown) -> io::Result<Interruptible<'a>> {
        let socket = SockRef::from(&stream);
        socket.set_read_timeout(Some(SHUTDOWN_CHECK))?;
        socket.set_write_timeout(Some(SHUTDOWN_CHECK))?;
        Ok(Interruptible { stream, shutdown })
    }

    /// Runs `call` until it does something other than time out or be
    /// interrupted, unless shutdown is requested first. The flag is checked
    /// before every call, not only after a timeout, so that a client that
    /// never pauses cannot hold the server past a shutdown request.
    fn retry<T>(&mut self, mut call: impl FnMut(&mut Stream) -> io::Result<T>) -> io::Result<T> {
        loop {
            if self.shutdown.is_requested() {
                return Err(io::Error::other("shutting down"));
            }
            match call(&mut self.stream) {
                // SO_RCVTIMEO/SO_SNDTIMEO expired (EAGAIN), or a signal (EINTR): look at the flag.
                Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                other => return other,
            }
        }
    }
}

impl Read for Interruptible<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.retry(|s| s.read(buf))
    }
}

impl Write for Interruptible<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.retry(|s| s.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
