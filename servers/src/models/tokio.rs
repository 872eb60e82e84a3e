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
//! ```text
//! echo-server tokio --addr 127.0.0.1:7000 --workers 2
//! ```

use std::io;
use std::net::TcpListener as StdTcpListener;
use std::time::Duration;

use ::tokio::net::TcpListener;
use ::tokio::runtime::Builder;

use crate::Config;
use crate::echo::{echo_async, log_end};
use crate::listen::{AcceptErrors, ConnectionLimit, admit};
use crate::shutdown::Shutdown;

/// Runs the accept task on a runtime until a shutdown signal.
pub fn serve(listener: StdTcpListener, config: &Config, shutdown: &Shutdown) -> io::Result<()> {
    let runtime = Builder::new_multi_thread()
        .worker_threads(config.workers)
        .thread_name("echo-tokio")
        .enable_io()
        .enable_time()
        .build()?;
    listener.set_nonblocking(true)?; // tokio requires it
    let listener = {
        // Registering with the reactor needs the runtime's context.
        let _guard = runtime.enter();
        TcpListener::from_std(listener)?
    };
    let limit = ConnectionLimit::new(config.max_connections);
    runtime.spawn(accept_loop(listener, limit, config.buffer_size));

    shutdown.wait();
    // Cancels every task (closing its socket) and the listener; no task
    // blocks, so this is quick, but never wait longer than the timeout.
    runtime.shutdown_timeout(Duration::from_millis(500));
    Ok(())
}

/// Accepts forever; one task per connection.
async fn accept_loop(listener: TcpListener, limit: ConnectionLimit, buffer_size: usize) {
    let errors = AcceptErrors::default();
    loop {
        match listener.accept().await {
            Ok((mut stream, peer)) => {
                let Some(permit) = admit(&stream, peer, &limit) else {
                    continue; // over the cap: `stream` is dropped, i.e. closed
                };
                ::tokio::spawn(async move {
                    let _permit = permit; // held until the task ends
                    let mut buf = vec![0u8; buffer_size];
                    let result = echo_async(&mut stream, &mut buf).await;
                    log_end(peer, &result);
                });
            }
            Err(err) => ::tokio::time::sleep(errors.backoff(&err)).await,
        }
    }
}
