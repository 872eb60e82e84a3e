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
//! Start-up: may starts its scheduler on first use — `--workers` threads,
//! each with an epoll instance and an eventfd — and panics if it cannot
//! (a backtrace, exit status 101). So this model starts it first thing,
//! after checking that the open-file limit leaves the two descriptors per
//! worker it needs, and turns a failure into the one line and exit status 1
//! of every model: `echo-server: may: cannot start may's scheduler: 100
//! workers need 200 descriptors (…), 56 of RLIMIT_NOFILE 64 are free`.
//!
//! ## Datagrams: one socket, one receive coroutine per worker
//!
//! Over `udp:` the blocking datagram loop of the `iterative` and `pool`
//! models runs unchanged in `--workers` coroutines, all on one may
//! `UdpSocket` (each coroutine its own handle, `try_clone`): where
//! `recv_from` would block, the coroutine yields and may's event loop
//! resumes it when the socket is readable. As many receive loops as
//! scheduler threads, so that every thread can be echoing at once. (Each
//! handle is registered with may's epoll on its own, so a datagram makes
//! every waiting coroutine ready; those that lose the race find the socket
//! empty and wait again: a little wasted work per worker.) No
//! `--batch`: `recvmmsg` on may's non-blocking socket would not yield, and
//! may has no batched call of its own. The coroutines end with the process.
//!
//! ## Work per message (`--work`)
//!
//! Inline, in the connection's coroutine ([`echo::serve`]). `cpu:` work
//! holds its scheduler thread for as long as it runs: may does not preempt.
//! A blocking call (`nanosleep`) is not one of may's: it does not yield,
//! it blocks the scheduler thread itself, and every coroutine of that
//! thread waits — the same blocking loop that costs `thread` nothing
//! stalls here. may makes blocking code look right; this is where it is
//! not. (A stall, not unsoundness: may's spawn contract is about
//! thread-local storage and the coroutine's stack, which the work uses
//! neither of beyond a few words.) Over `udp:` the same, in each receive
//! coroutine.
//!
//! ```text
//! echo-server may --addr 127.0.0.1:7000 --workers 2 [--stack-size BYTES]
//! echo-server may --addr udp:127.0.0.1:7000 --workers 2
//! ```

use std::net::UdpSocket;

use ::may::coroutine::{self, Builder};
use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use tracing::warn;

use crate::cli::{Common, CpuWorkers};
use crate::datagram::{self, DatagramEcho, DatagramOptions, Receiver};
use crate::echo::{self, EchoOptions};
use crate::listen::{AcceptErrors, ConnectionLimit, LogThrottle};
use crate::models::{Datagrams, Model};
use crate::ready::Ready;
use crate::shutdown::Shutdown;
use crate::transport::{Listener, MayListener};

pub static MODEL: Model<Args> = Model {
    name: "may",
    summary: "One may stackful coroutine per connection",
    default_max_connections: 10_000,
    serves_at_once: None,
    baseline: false,
    reuse_port: false,
    colour: "#9467bd",
    blocks_at_once: echo_common::BlocksAtOnce::PerCpu,
    datagrams: Some(Datagrams {
        design: "One may UdpSocket, one receive coroutine per worker thread",
        options: |args| &args.udp,
        serve: serve_datagrams,
    }),
    children: None,
};

/// Default coroutine stack, in bytes.
const DEFAULT_STACK_BYTES: u64 = 64 * 1024;

/// `echo-server may` options.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub workers: CpuWorkers,
    /// Stack size in bytes of each connection's coroutine (only touched
    /// pages become resident).
    #[arg(long, default_value_t = DEFAULT_STACK_BYTES, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(16_384..=(1 << 30)))]
    pub stack_size: u64,
    #[command(flatten)]
    pub udp: DatagramOptions,
}

/// Descriptors may's scheduler opens per worker thread: its event loop's
/// epoll instance and the eventfd that wakes it (may 0.3,
/// `SingleSelector::new` in `io/sys/unix/epoll.rs`; its timer thread opens none).
const DESCRIPTORS_PER_WORKER: u64 = 2;

/// Configures may's scheduler and starts it: before anything else uses may.
fn start_scheduler(args: &Args) -> anyhow::Result<()> {
    let workers = args.workers.get();
    let word = std::mem::size_of::<usize>() as u64;
    ::may::config()
        .set_workers(workers)
        // may counts the stack in machine words, not bytes
        .set_stack_size((args.stack_size / word) as usize);
    ::may::config().set_worker_pin(false);

    // may opens its descriptors as it starts and panics if one fails
    // ("can't create event_loop: Too many open files"): so check first,
    // and say what is short.
    match echo_common::limits::headroom() {
        Ok(room) => {
            let needed = workers as u64 * DESCRIPTORS_PER_WORKER;
            if needed > room.free() {
                bail!(
                    "cannot start may's scheduler: {workers} workers need {needed} descriptors (an epoll instance \
                     and an eventfd each), {} of RLIMIT_NOFILE {} are free",
                    room.free(),
                    room.limit
                );
            }
        }
        // Not known: start anyway; a failure is still caught below.
        Err(err) => warn!(%err, "cannot count the open descriptors"),
    }

    // may starts its scheduler — its threads, their epoll instances and
    // eventfds — on first use, and panics if any of that fails (an
    // `expect`, a `thread::spawn`). It does so on the thread that first
    // uses it, inside a `Once`: here, where the panic can be caught and
    // returned as the one-line error of every model instead of a
    // backtrace. The hook is silenced meanwhile, so that the panic prints
    // nothing; nothing else of ours runs yet.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    // SAFETY: may's spawn contract (see `serve`): the coroutine does
    // nothing, so it neither blocks its worker nor uses thread-local storage.
    let started = std::panic::catch_unwind(|| unsafe { Builder::new().name("start".into()).spawn(|| {}) });
    std::panic::set_hook(report);
    match started {
        // The coroutine is detached: it ends at once on a worker.
        Ok(spawned) => spawned.map(drop).context("cannot start a coroutine"),
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("it panicked");
            bail!("cannot start may's scheduler: {why}")
        }
    }
}

/// Starts the accept coroutine, then waits for a shutdown signal.
pub fn serve(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
    start_scheduler(args)?;

    let listener = MayListener::new(listener).context("cannot hand the listener to may")?;
    let limit = ConnectionLimit::new(args.common.max_connections());
    let options = args.common.echo();
    let accept = Builder::new().name("accept".into());
    // SAFETY: may's spawn contract — the coroutine must not rely on
    // thread-local storage staying put (it may resume on another thread),
    // and must not overflow its stack. (It should not block its worker
    // thread with OS-blocking calls either; that stalls the thread's other
    // coroutines but is not unsound.) It only uses may's sockets and may's
    // sleep; the `tracing` dispatcher it logs through is the global one.
    unsafe { accept.spawn(move || accept_loop(listener, limit, options)) }
        .context("cannot start the accept coroutine")?;
    ready.announce()?;

    shutdown.wait();
    // Coroutines are not joined: the process exits and the kernel closes
    // the listener and every connection.
    Ok(())
}

/// Accepts forever; one coroutine per connection.
fn accept_loop(listener: MayListener, limit: ConnectionLimit, options: EchoOptions) {
    let errors = AcceptErrors::default();
    let spawn_errors = LogThrottle::default();
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let Some(permit) = limit.try_acquire(&peer) else {
                    continue; // over the cap: `stream` is dropped, i.e. closed
                };
                let logged_peer = peer.clone();
                // SAFETY: as for the accept coroutine above — the echo loop
                // only calls may's socket methods, and `--work`'s: a hash
                // loop or a `nanosleep`, which use no thread-local storage
                // and a few words of stack. The `nanosleep` blocks the
                // worker thread: the stall the page shows, not unsoundness.
                let spawned = unsafe {
                    Builder::new().spawn(move || {
                        let _permit = permit; // held until the coroutine ends
                        echo::serve(stream, &peer, options);
                    })
                };
                if let Err(err) = spawned {
                    if let Some(suppressed) = spawn_errors.allow() {
                        warn!(peer = %logged_peer, %err, suppressed, "cannot start a coroutine; closing the connection");
                    }
                }
            }
            Err(err) => coroutine::sleep(errors.backoff(&err)),
        }
    }
}

/// Starts one receive coroutine per scheduler thread on the one socket,
/// then waits for a shutdown signal.
pub fn serve_datagrams(
    socket: UdpSocket,
    args: &Args,
    echo: DatagramEcho,
    shutdown: &Shutdown,
    ready: Ready,
) -> anyhow::Result<()> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    start_scheduler(args)?;
    // SAFETY: `into_raw_fd` gives up std's ownership of a bound UDP socket,
    // so may's socket is its only owner.
    let socket = unsafe { ::may::net::UdpSocket::from_raw_fd(socket.into_raw_fd()) };
    for id in 0..args.workers.get() {
        let socket = socket.try_clone().context("cannot clone the socket for a coroutine")?;
        let echo = echo.clone();
        let builder = Builder::new().name(format!("udp-{id}"));
        // SAFETY: may's spawn contract (see `serve`): the loop only calls
        // may's socket methods, may's sleep to back off, and `--work`'s
        // (see `accept_loop`).
        unsafe {
            builder.spawn(move || {
                let mut receiver = Receiver::new(echo, 1);
                datagram::serve_blocking(&socket, &mut receiver, || false, coroutine::sleep);
            })
        }
        .context("cannot start a receive coroutine")?;
    }
    ready.announce()?;
    shutdown.wait();
    Ok(())
}
