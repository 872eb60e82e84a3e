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
//! ## Work per message (`--work`)
//!
//! Inline, on the connection's thread, between the read and the write
//! ([`echo::serve`]): a blocking call blocks that thread only, while the
//! kernel runs the others; `cpu:` work runs on every CPU at once, the
//! threads beyond the CPUs preempted in turn. The classic answer to
//! blocking calls: absorbed, at a thread's cost per connection.
//!
//! ```text
//! echo-server thread --addr 127.0.0.1:7000 [--stack-size BYTES]
//! ```

use clap::Args as ClapArgs;
use tracing::warn;

use crate::cli::{Common, ThreadStack};
use crate::echo;
use crate::listen::{Acceptor, LogThrottle};
use crate::models::Model;
use crate::ready::Ready;
use crate::shutdown::Shutdown;
use crate::transport::Listener;

pub static MODEL: Model<Args> = Model {
    name: "thread",
    summary: "One OS thread per connection",
    default_max_connections: 10_000,
    serves_at_once: None,
    baseline: false,
    reuse_port: false,
    colour: "#ff7f0e",
    blocks_at_once: echo_common::BlocksAtOnce::PerConnection,
    datagrams: None, // streams only: `--addr udp:…` is refused
    children: None,
};

/// `echo-server thread` options.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub stack: ThreadStack,
}

/// Accepts on this thread; spawns one thread per connection.
pub fn serve(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
    let acceptor = Acceptor::new(&listener, shutdown, args.common.max_connections())?;
    ready.announce()?;
    let spawn_errors = LogThrottle::default();
    for conn in acceptor {
        let options = args.common.echo();
        let peer = conn.peer.clone();
        // The thread is detached: it ends when its client leaves, or with the
        // process at shutdown. If it cannot be created (EAGAIN: out of
        // threads or memory), the closure — and with it the connection — is
        // dropped, which closes the socket.
        let spawned = args.stack.builder("echo-conn".into()).spawn(move || {
            let _permit = conn.permit; // the slot is held until the thread ends
            echo::serve(conn.stream, &conn.peer, options);
        });
        if let Err(err) = spawned {
            if let Some(suppressed) = spawn_errors.allow() {
                warn!(%peer, %err, suppressed, "cannot spawn a thread; closing the connection");
            }
        }
    }
    Ok(())
}
