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
//! ```text
//! echo-server pool --workers 128 --queue 1024 [--stack-size BYTES]
//! ```

use std::io;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use crossbeam_channel::{TrySendError, bounded};
use tracing::warn;

use crate::Config;
use crate::echo::serve_connection;
use crate::listen::{Acceptor, Connection};
use crate::shutdown::Shutdown;

/// Starts the workers, then accepts on this thread and feeds the queue.
pub fn serve(listener: TcpListener, config: &Config, shutdown: &Shutdown) -> io::Result<()> {
    let (queue, jobs) = bounded::<Connection>(config.queue);
    for id in 0..config.workers {
        let jobs = jobs.clone();
        let buffer_size = config.buffer_size;
        let mut builder = thread::Builder::new().name(format!("echo-pool-{id}"));
        if let Some(bytes) = config.stack_size {
            builder = builder.stack_size(bytes);
        }
        // Workers are detached and live until the process exits; the loop
        // ends early only if the sender is dropped.
        builder.spawn(move || {
            for conn in jobs.iter() {
                serve_connection(conn, buffer_size);
            }
        })?;
    }

    let dropped = AtomicU64::new(0);
    let acceptor = Acceptor::new(&listener, shutdown, config.max_connections)?;
    for conn in acceptor {
        match queue.try_send(conn) {
            Ok(()) => {}
            Err(TrySendError::Full(conn)) => {
                // Every worker busy and the queue full: close at once
                // (dropping `conn` closes the socket).
                let total = dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if total.is_power_of_two() {
                    warn!(peer = %conn.peer, dropped = total, queue = config.queue, "queue full; closing new connection");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                unreachable!("this function holds `jobs`, so the channel stays connected");
            }
        }
    }
    Ok(())
}
