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
//!    a connection → drive its echo ([`EchoState`](crate::echo::EchoState))
//!    until the socket would block; the signal → return.
//!
//! Sockets are non-blocking, so no call ever sleeps except `epoll_wait`.
//! Registrations are **edge-triggered** (mio always sets `EPOLLET`): epoll
//! reports a socket when it *becomes* ready, not while it *is* ready. So a
//! connection must be read until `WouldBlock` — stopping earlier with data
//! still queued means no new event for it, ever (the connection hangs). The
//! one exception is the read budget: a connection that could keep the
//! thread busy for long (a client streaming megabytes) is stopped after
//! [`READS_PER_TURN`](crate::event_loop::READS_PER_TURN) (16) reads and put
//! on a run queue, so that the others get their turn first; the loop then
//! polls with a zero timeout and drives it again.
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
//! leaves. When the client half-closes (a read of 0 bytes), everything
//! read is already written back: the socket is closed (which also removes
//! it from the epoll set, since no other descriptor refers to it).
//!
//! Accept errors: a per-connection error (the client reset before we took
//! it) is skipped. EMFILE and its kind (see
//! [`AcceptErrors`](crate::listen::AcceptErrors)) leave the connection in
//! the backlog — and with edge-triggered epoll the listener will not be
//! reported again for it. So the loop stops accepting for
//! [`ACCEPT_BACKOFF`](crate::listen::ACCEPT_BACKOFF), uses that as the
//! `epoll_wait` timeout, and accepts again when it expires: it never spins,
//! and it never forgets the backlog.
//!
//! The loop is [`EventLoop`], shared with `reactors` (which runs one per
//! worker); a connection's echo over readiness is
//! [`Conn::drive`](crate::event_loop::Conn::drive), shared with
//! `reactor-pool` too. This page is the model: one loop, on the thread that
//! bound the listener.
//!
//! What a connection costs: an entry in a slab (a `Vec` indexed by the
//! epoll token), its `EchoState` with its one buffer (`--buffer-size`,
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
//! ## Work per message (`--work`)
//!
//! Inline, in the loop: [`Conn::drive`](crate::event_loop::Conn::drive)
//! does each message's work between its read and its write, on the loop's
//! only thread. For as long as it runs — computing or asleep in
//! `nanosleep` — every other connection waits, ready or not, and so does
//! the listener. The textbook lesson, shown rather than hidden: an event
//! loop must not block, and work per message serialises on it. (The
//! cures are the next models: `reactors` on every CPU, `reactor-pool`'s
//! pool, tokio's `spawn_blocking`.)
//!
//! ```text
//! echo-server reactor --addr 127.0.0.1:7000
//! ```

use anyhow::Context;
use clap::Args as ClapArgs;

use crate::cli::Common;
use crate::event_loop::EventLoop;
use crate::listen::ConnectionLimit;
use crate::models::Model;
use crate::ready::Ready;
use crate::shutdown::Shutdown;
use crate::transport::Listener;

pub static MODEL: Model<Args> = Model {
    name: "reactor",
    summary: "One thread, one epoll instance (mio), every connection on it",
    default_max_connections: 10_000,
    serves_at_once: None,
    baseline: false,
    reuse_port: false,
    colour: "#17becf",
    blocks_at_once: echo_common::BlocksAtOnce::Threads(1),
    datagrams: None, // streams only: `--addr udp:…` is refused
    children: None,
};

/// `echo-server reactor` options.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
}

/// Runs the event loop on this thread until a shutdown signal.
pub fn serve(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
    let mut event_loop = EventLoop::new(args.common.echo()).context("cannot create the epoll instance")?;
    let limit = ConnectionLimit::new(args.common.max_connections());
    event_loop.listen(listener, limit).context("cannot register the listener with epoll")?;
    event_loop.stop_on(shutdown).context("cannot register the shutdown signal with epoll")?;
    ready.announce()?;
    event_loop.run().context("the event loop failed")
}
