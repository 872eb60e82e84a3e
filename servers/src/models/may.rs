//! # `may`: one stackful coroutine per connection
//!
//! `may` gives every coroutine its own small stack and a scheduler with
//! `--workers` threads. Code looks exactly like the blocking `thread` model —
//! the same blocking echo loop runs here unchanged — but may's sockets, when a
//! call would block, switch to another coroutine on the same thread instead
//! of putting the thread to sleep. One coroutine accepts; each connection gets
//! its own; the main thread waits for SIGINT/SIGTERM.
//!
//! What a connection costs: a coroutine stack (`--stack-size`, default here
//! 64 KiB; may's own default is 32 KiB, which `tracing`'s formatting can
//! overflow) of which only touched pages are resident, plus the buffer.
//!
//! Configuration this model runs with: may pins its workers to CPUs by
//! default; we turn that off, so that, like every other model, the OS places
//! the threads within the affinity mask (`taskset` still confines them).
//!
//! ```text
//! echo-server may --addr 127.0.0.1:7000 --workers 2 [--stack-size BYTES]
//! ```

use std::io;
use std::net::TcpListener as StdTcpListener;
use std::os::fd::{FromRawFd, IntoRawFd};

use ::may::coroutine::{self, Builder};
use ::may::net::TcpListener;
use tracing::warn;

use crate::Config;
use crate::echo::{echo, log_end};
use crate::listen::{AcceptErrors, ConnectionLimit, admit};
use crate::shutdown::Shutdown;

/// Default coroutine stack, in bytes.
const DEFAULT_STACK_BYTES: usize = 64 * 1024;

/// Starts the accept coroutine, then waits for a shutdown signal.
pub fn serve(listener: StdTcpListener, config: &Config, shutdown: &Shutdown) -> io::Result<()> {
    let stack_bytes = config.stack_size.unwrap_or(DEFAULT_STACK_BYTES);
    let word = std::mem::size_of::<usize>();
    // must be set before the first coroutine starts the scheduler
    ::may::config()
        .set_workers(config.workers)
        // may counts the stack in machine words, not bytes
        .set_stack_size(stack_bytes / word);
    ::may::config().set_worker_pin(false);

    // SAFETY: the descriptor comes from a listening std socket whose
    // ownership we give up with `into_raw_fd`, so may's listener is its only owner.
    let listener = unsafe { TcpListener::from_raw_fd(listener.into_raw_fd()) };
    let limit = ConnectionLimit::new(config.max_connections);
    let buffer_size = config.buffer_size;
    let accept = Builder::new().name("accept".into());
    // SAFETY: may's spawn contract — the coroutine must not block its worker
    // thread with OS-blocking calls and must not rely on thread-local
    // storage staying put. It only uses may's sockets and may's sleep; the
    // `tracing` dispatcher it logs through is the global one.
    unsafe { accept.spawn(move || accept_loop(listener, limit, buffer_size)) }?;

    shutdown.wait();
    // Coroutines are not joined: the process exits and the kernel closes
    // the listener and every connection.
    Ok(())
}

/// Accepts forever; one coroutine per connection.
fn accept_loop(listener: TcpListener, limit: ConnectionLimit, buffer_size: usize) {
    let errors = AcceptErrors::default();
    loop {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                let Some(permit) = admit(&stream, peer, &limit) else {
                    continue; // over the cap: `stream` is dropped, i.e. closed
                };
                // SAFETY: as for the accept coroutine above — the echo loop
                // only calls may's socket methods.
                let spawned = unsafe {
                    Builder::new().spawn(move || {
                        let _permit = permit;
                        let mut buf = vec![0u8; buffer_size];
                        let result = echo(&mut stream, &mut buf);
                        log_end(peer, &result);
                    })
                };
                if let Err(err) = spawned {
                    warn!(%peer, %err, "cannot start a coroutine; closing the connection");
                }
            }
            Err(err) => coroutine::sleep(errors.backoff(&err)),
        }
    }
}
