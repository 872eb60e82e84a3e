//! # `tokio`: one async task per connection
//!
//! A tokio multi-thread runtime with `--workers` worker threads (default: the
//! CPUs in the affinity mask). One task accepts; every connection becomes a
//! task running the async echo loop. A task that would block on a socket
//! instead returns `Pending` and its worker runs another task; epoll wakes it
//! when the socket is ready. The main thread just waits for SIGINT/SIGTERM.
//!
//! What a connection costs: one task (a heap allocation holding the future's
//! state, a few hundred bytes) plus its buffer. No thread, no stack. Between
//! messages a connection costs nothing; many messages are handled per wake-up
//! of a worker, so context switches are shared by many connections.
//!
//! ## Datagrams: one socket, one receive task per worker
//!
//! Over `udp:` there is nothing to accept and no connection to give a task:
//! the socket is one `tokio::net::UdpSocket`, shared (an `Arc`) by
//! `--workers` tasks, each looping on `recv_from(..).await` and
//! `send_to(..).await` — as many receive loops as the runtime has worker
//! threads, so that every worker can be echoing at once. A task that finds
//! the socket empty returns `Pending`; when a datagram arrives, the
//! runtime's epoll reports the socket readable and wakes the waiting tasks,
//! one of which takes it (the others find the socket empty again and go
//! back to waiting: a little wasted work the more workers wait). A full send
//! buffer makes `send_to` wait for room, as a blocking socket would. At
//! shutdown the runtime cancels the tasks.
//!
//! ## Work per message (`--work`)
//!
//! `cpu:` work runs inline in the task, on its worker thread, between the
//! read and the write: short compute is what tokio expects of a task, and
//! a long one holds its worker (tokio does not preempt). `block:` work goes
//! through `spawn_blocking` ([`Work::run_async`](crate::work::Work::run_async)):
//! the task awaits a thread of tokio's blocking pool, and its worker runs
//! the other tasks meanwhile. `--blocking inline` runs the `nanosleep` on
//! the worker thread instead — the mistake tokio's documentation warns
//! against, shown: every task of that worker waits. Over `udp:` the same,
//! in each receive task.
//!
//! ```text
//! echo-server tokio --addr 127.0.0.1:7000 --workers 2
//! echo-server tokio --addr udp:127.0.0.1:7000 --workers 2
//! ```

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use ::tokio::runtime::Builder;
use anyhow::Context;
use clap::Args as ClapArgs;

use crate::cli::{Common, CpuWorkers};
use crate::datagram::{self, DatagramEcho, DatagramOptions};
use crate::echo::{self, EchoOptions};
use crate::listen::{AcceptErrors, ConnectionLimit};
use crate::models::{Datagrams, Model};
use crate::ready::Ready;
use crate::shutdown::Shutdown;
use crate::transport::{Listener, TokioListener};
use crate::work::Blocking;

/// Threads of tokio's blocking pool, where `spawn_blocking` runs `block:`
/// work: tokio's default, set explicitly so that the declaration
/// (`blocks_at_once`) and the runtime say the same.
pub const TOKIO_BLOCKING_POOL: u64 = 512;

pub static MODEL: Model<Args> = Model {
    name: "tokio",
    summary: "One tokio task per connection on a multi-thread runtime",
    default_max_connections: 10_000,
    serves_at_once: None,
    baseline: false,
    reuse_port: false,
    colour: "#d62728",
    blocks_at_once: echo_common::BlocksAtOnce::PerConnectionUpTo(TOKIO_BLOCKING_POOL),
    datagrams: Some(Datagrams {
        design: "One tokio UdpSocket, one receive task per worker thread",
        options: |args| &args.udp,
        serve: serve_datagrams,
    }),
    children: None,
};

/// `echo-server tokio` options.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub workers: CpuWorkers,
    #[command(flatten)]
    pub udp: DatagramOptions,
    /// Where `--work block:` runs: spawn, on tokio's blocking pool
    /// (spawn_blocking: the worker thread serves other tasks meanwhile), or
    /// inline, on the worker thread (every task of that worker waits).
    #[arg(long, value_enum, default_value_t = Blocking::Spawn)]
    pub blocking: Blocking,
}

/// The runtime this model runs on: `--workers` threads, I/O and timers.
fn runtime(args: &Args) -> anyhow::Result<::tokio::runtime::Runtime> {
    Builder::new_multi_thread()
        .worker_threads(args.workers.get())
        .max_blocking_threads(TOKIO_BLOCKING_POOL as usize)
        .thread_name("echo-tokio")
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the tokio runtime")
}

/// Runs the accept task on a runtime until a shutdown signal.
pub fn serve(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
    let runtime = runtime(args)?;
    let listener = {
        // Registering with the reactor needs the runtime's context.
        let _guard = runtime.enter();
        TokioListener::new(listener).context("cannot register the listener with tokio")?
    };
    let limit = ConnectionLimit::new(args.common.max_connections());
    runtime.spawn(accept_loop(listener, limit, args.common.echo(), args.blocking));
    ready.announce()?;

    shutdown.wait();
    // Cancels every task (closing its socket) and the listener; no task
    // blocks, so this is quick, but never wait longer than the timeout.
    runtime.shutdown_timeout(Duration::from_millis(500));
    Ok(())
}

/// Accepts forever; one task per connection.
async fn accept_loop(listener: TokioListener, limit: ConnectionLimit, options: EchoOptions, blocking: Blocking) {
    let errors = AcceptErrors::default();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(permit) = limit.try_acquire(&peer) else {
                    continue; // over the cap: `stream` is dropped, i.e. closed
                };
                ::tokio::spawn(async move {
                    let _permit = permit; // held until the task ends
                    echo::serve_async(stream, &peer, options, blocking).await;
                });
            }
            Err(err) => ::tokio::time::sleep(errors.backoff(&err)).await,
        }
    }
}

/// Runs one receive task per worker thread on the one socket until a
/// shutdown signal.
pub fn serve_datagrams(
    socket: UdpSocket,
    args: &Args,
    echo: DatagramEcho,
    shutdown: &Shutdown,
    ready: Ready,
) -> anyhow::Result<()> {
    let runtime = runtime(args)?;
    socket.set_nonblocking(true)?; // tokio requires it
    let socket = {
        // Registering with the reactor needs the runtime's context.
        let _guard = runtime.enter();
        Arc::new(::tokio::net::UdpSocket::from_std(socket).context("cannot register the socket with tokio")?)
    };
    for _ in 0..args.workers.get() {
        runtime.spawn(datagram::serve_tokio(Arc::clone(&socket), echo.clone(), args.blocking));
    }
    ready.announce()?;
    shutdown.wait();
    runtime.shutdown_timeout(Duration::from_millis(500));
    Ok(())
}
