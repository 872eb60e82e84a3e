//! # `thread`: one OS thread per connection
//!
//! The oldest design there is: the main thread accepts, and every connection
//! gets a thread of its own that runs the blocking echo loop until the client
//! leaves. Simple, and each connection is isolated from the others.
//!
//! What a connection costs: a kernel thread (a task_struct, kernel stack and
//! scheduler entry) plus a user stack. The stack is *reserved* at
//! `--stack-size` (Rust's default: 2 MiB) but only the pages actually touched
//! become resident, so an idle echo thread costs tens of KiB of RSS, not
//! 2 MiB. Every message costs a context switch: the thread sleeps in `read`
//! and the kernel wakes it when data arrives.
//!
//! ```text
//! echo-server thread --addr 127.0.0.1:7000 [--stack-size BYTES]
//! ```

use std::io;
use std::net::TcpListener;
use std::thread;

use tracing::warn;

use crate::Config;
use crate::echo::serve_connection;
use crate::listen::Acceptor;
use crate::shutdown::Shutdown;

/// Accepts on this thread; spawns one thread per connection.
pub fn serve(listener: TcpListener, config: &Config, shutdown: &Shutdown) -> io::Result<()> {
    let acceptor = Acceptor::new(&listener, shutdown, config.max_connections)?;
    for conn in acceptor {
        let mut builder = thread::Builder::new().name("echo-conn".into());
        if let Some(bytes) = config.stack_size {
            builder = builder.stack_size(bytes);
        }
        let buffer_size = config.buffer_size;
        let peer = conn.peer;
        // The thread is detached: it ends when its client leaves, or with the
        // process at shutdown. If it cannot be created (EAGAIN: out of
        // threads or memory), the closure — and with it the connection — is
        // dropped, which closes the socket.
        if let Err(err) = builder.spawn(move || serve_connection(conn, buffer_size)) {
            warn!(%peer, %err, "cannot spawn a thread; closing the connection");
        }
    }
    Ok(())
}
