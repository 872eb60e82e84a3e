//! # `pool`: a fixed pool of threads behind a bounded queue
//!
//! `--workers` threads (default 128) are started once. The main thread
//! accepts and pushes each connection into a crossbeam bounded channel of
//! `--queue` slots (default 1024); an idle worker takes the next connection
//! and serves it — with blocking I/O — until the client leaves, then takes
//! another.
//!
//! What a connection costs: nothing while it waits in the queue but its
//! socket; a whole worker while it is served. Threads are never created per
//! connection, so the cost of a thread is paid once.
//!
//! ## Head-of-line blocking (by design, and shown by the benchmark)
//!
//! A worker serves one connection *to its end*. With more live connections
//! than workers, the surplus waits in the queue and gets no echo at all
//! until some served client disconnects: a long-lived connection holds its
//! worker even when idle. When the queue is full too, new connections are
//! accepted and closed at once (counted and logged). The load generator
//! reports such connections as starved.
//!
//! ## Datagrams: workers blocking on one shared socket
//!
//! Over `udp:` there is nothing to accept and nothing to queue: the
//! `--workers` threads all block in `recvfrom` on the one socket, and the
//! kernel wakes one of them per datagram (a socket's waiters are woken
//! one at a time for UDP: no thundering herd). Each echoes its datagram and
//! goes back to wait. No head-of-line blocking here: a worker is held for
//! one datagram, not for a client's lifetime, so every client is served.
//! What the workers share is the socket's receive queue and its lock: under
//! load they take turns at it, and a datagram costs a thread wake-up (a
//! context switch) unless a worker finds the queue non-empty. `--queue` does
//! not apply; the socket's receive buffer (`--recv-buffer`) is the queue.
//! The workers live until the process exits; the main thread waits for the
//! shutdown signal.
//!
//! ## Work per message (`--work`)
//!
//! Inline, on the worker serving the connection ([`echo::serve`]): a
//! blocking call holds that worker, which its client holds anyway. Over
//! `udp:` a worker is held for one datagram and its work; up to `--workers`
//! datagrams are worked on at once while the others wait in the socket's
//! receive queue — what a pool of threads absorbing blocking calls is for.
//!
//! ```text
//! echo-server pool --workers 128 --queue 1024 [--stack-size BYTES]
//! echo-server pool --addr udp:127.0.0.1:7000 --workers 4
//! ```

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use clap::Args as ClapArgs;
use crossbeam_channel::{TrySendError, bounded};
use tracing::warn;

use crate::cli::{Common, ThreadStack};
use crate::datagram::{self, DatagramEcho, DatagramOptions, Receiver};
use crate::echo;
use crate::listen::{Acceptor, Connection};
use crate::models::{Datagrams, Model};
use crate::ready::Ready;
use crate::shutdown::Shutdown;
use crate::transport::Listener;

pub static MODEL: Model<Args> = Model {
    name: "pool",
    summary: "A fixed pool of threads fed through a bounded queue",
    default_max_connections: 10_000,
    serves_at_once: Some(DEFAULT_WORKERS as u64),
    baseline: false,
    reuse_port: false,
    colour: "#2ca02c",
    blocks_at_once: echo_common::BlocksAtOnce::PerConnection,
    datagrams: Some(Datagrams {
        design: "--workers threads blocking in recvfrom on one shared socket",
        options: |args| &args.udp,
        serve: serve_datagrams,
    }),
    children: None,
};

/// `--workers` when not given.
const DEFAULT_WORKERS: u32 = 128;

/// `echo-server pool` options.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Worker threads. A blocking pool must be larger than the CPU count: a
    /// worker waiting on a slow client does nothing, yet holds its slot.
    #[arg(long, default_value_t = DEFAULT_WORKERS, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub workers: u32,
    /// Accepted connections waiting for a free worker; beyond it they are closed.
    #[arg(long, default_value_t = 1024, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub queue: u32,
    #[command(flatten)]
    pub stack: ThreadStack,
    #[command(flatten)]
    pub udp: DatagramOptions,
}

/// Starts the workers, then accepts on this thread and feeds the queue.
pub fn serve(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
    let (queue, jobs) = bounded::<Connection>(args.queue as usize);
    let options = args.common.echo();
    for id in 0..args.workers {
        let jobs = jobs.clone();
        // Workers are detached and live until the process exits; the loop
        // ends early only if the sender is dropped.
        args.stack
            .builder(format!("echo-pool-{id}"))
            .spawn(move || {
                for conn in jobs.iter() {
                    let _permit = conn.permit; // the slot is held while served
                    echo::serve(conn.stream, &conn.peer, options);
                }
            })
            .with_context(|| format!("cannot start worker thread {} of {}", id + 1, args.workers))?;
    }

    let dropped = AtomicU64::new(0);
    let acceptor = Acceptor::new(&listener, shutdown, args.common.max_connections())?;
    ready.announce()?;
    for conn in acceptor {
        match queue.try_send(conn) {
            Ok(()) => {}
            Err(TrySendError::Full(conn)) => {
                // Every worker busy and the queue full: close at once
                // (dropping `conn` closes the socket).
                let total = dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if total.is_power_of_two() {
                    warn!(peer = %conn.peer, dropped = total, queue = args.queue, "queue full; closing new connection");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                unreachable!("this function holds `jobs`, so the channel stays connected");
            }
        }
    }
    Ok(())
}

/// Starts `--workers` threads receiving on the one socket, then waits for a
/// shutdown signal.
pub fn serve_datagrams(
    socket: UdpSocket,
    args: &Args,
    echo: DatagramEcho,
    shutdown: &Shutdown,
    ready: Ready,
) -> anyhow::Result<()> {
    let socket = Arc::new(socket);
    for id in 0..args.workers {
        let (socket, echo) = (Arc::clone(&socket), echo.clone());
        // Detached: a worker blocks in recvfrom (no timeout) until the
        // process exits.
        args.stack
            .builder(format!("echo-pool-{id}"))
            .spawn(move || {
                let mut receiver = Receiver::new(echo, 1);
                datagram::serve_blocking(&*socket, &mut receiver, || false, std::thread::sleep);
            })
            .with_context(|| format!("cannot start worker thread {} of {}", id + 1, args.workers))?;
    }
    ready.announce()?;
    shutdown.wait();
    Ok(())
}
