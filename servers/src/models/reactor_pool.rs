//! # `reactor-pool`: one reactor waits, a thread pool works (half-sync/half-async)
//!
//! One thread — the main thread — owns every socket and one epoll instance,
//! as in `reactor`, but does no echo itself. When a connection becomes
//! ready, the reactor hands it to a `rayon` pool of `--workers` threads
//! (default: the CPUs in the affinity mask); a worker drives its echo (read
//! and write until the socket would block: the same `Conn::drive` as
//! `reactor`) and hands it back. The reactor then re-arms it and waits for
//! its next event. The design of a Java NIO server with a worker pool
//! (Netty's boss and worker groups, Tomcat's NIO connector), and of the
//! *half-sync/half-async* pattern: an asynchronous layer that waits, a
//! synchronous layer that works, a queue between them.
//!
//! Unlike `pool`, no connection holds a thread while idle: a worker is busy
//! only while a connection has bytes to move, so two workers serve
//! thousands of connections.
//!
//! ## The hand-off, and what it costs
//!
//! A connection is *home* (in the reactor's slab, registered) or *away*
//! (moved into a job on the pool). Events for a connection that is away are
//! ignored: its worker is already reading until `WouldBlock`. The worker
//! sends it back through a channel and wakes the reactor with a
//! `mio::Waker` (an eventfd in the reactor's epoll set); the reactor then
//! `reregister`s the socket. With epoll, `EPOLL_CTL_MOD` re-evaluates
//! readiness, so data that arrived after the worker's last read — whose
//! event was ignored — is reported at once: nothing is lost. It would also
//! report at once a socket that is readable but will not be read: one whose
//! echo is blocked because its client does not read. So a connection
//! blocked on its write is re-armed for writable only (`Conn::interest`);
//! with read interest too, every re-arm would report it, a worker would
//! find its write still blocked and send it back, and the reactor would
//! re-arm it again — every CPU spinning for one client that does not read.
//! Per message, compared with `reactor`, that is:
//!
//! - a push onto rayon's queue, and often a futex wake of a sleeping worker;
//! - a channel send back, and an eventfd write to wake the reactor (plus
//!   the reactor's extra `epoll_wait` return and eventfd read);
//! - a `reregister` (`epoll_ctl`) system call;
//! - the connection's state crossing CPUs twice, with its cache lines;
//! - and, at light load, rayon's idle workers spin and yield for a while
//!   looking for work before they sleep: CPU time spent on nothing.
//!
//! For an echo, whose work per message is a copy, that overhead is larger
//! than the work: this model pays off when the work per message is heavy
//! (parsing, compression, a computation), which a single reactor would
//! serialise and which here runs on every CPU while the reactor keeps
//! accepting and waiting. The reactor is the ceiling: one thread does every
//! `epoll_wait`, accept and `reregister`.
//!
//! Accepting, the cap, flow control (write interest only while a write is
//! pending, and then no read interest) and the EMFILE back-off are
//! `reactor`'s, unchanged.
//!
//! What a connection costs: a slab entry, its buffer and an epoll
//! registration, as in `reactor`; while it is being served, also a small
//! rayon job (a heap allocation). Threads: the reactor plus `--workers`.
//!
//! Good at: spreading heavy per-message work over the CPUs without giving
//! every connection a thread. Bad at: light work such as an echo (the
//! hand-off costs more than the echo), and the reactor thread is a single
//! point every message passes through twice.
//!
//! ## Work per message (`--work`)
//!
//! On the pool: a job runs [`Conn::drive`], which does each message's work
//! between its read and its write, so the work runs on a rayon worker while
//! the reactor goes on accepting and waiting — this model's reason to be.
//! `--workers` works run at once; a blocking call holds its rayon thread
//! meanwhile (the pool has as many as the CPUs by default), and ready
//! connections beyond them wait in rayon's queue, not in the reactor.
//!
//! ```text
//! echo-server reactor-pool --addr 127.0.0.1:7000 --workers 2
//! ```

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use anyhow::Context;
use clap::Args as ClapArgs;
use crossbeam_channel::{Receiver, Sender, unbounded};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use rayon::{ThreadPool, ThreadPoolBuilder};
use tracing::warn;

use crate::cli::{Common, CpuWorkers};
use crate::echo::{self, EchoOptions};
use crate::event_loop::{Accept, Conn, Drive, LISTENER, READS_PER_TURN, SIGNAL, WAKER};
use crate::listen::{ConnectionLimit, LogThrottle, Permit};
use crate::models::Model;
use crate::ready::Ready;
use crate::shutdown::Shutdown;
use crate::slab::Slab;
use crate::transport::{Listener, Peer, Stream};

pub static MODEL: Model<Args> = Model {
    name: "reactor-pool",
    summary: "One epoll reactor owns the sockets; a rayon pool does the echo (half-sync/half-async)",
    default_max_connections: 10_000,
    serves_at_once: None,
    baseline: false,
    reuse_port: false,
    colour: "#ffbb78",
    blocks_at_once: echo_common::BlocksAtOnce::PerCpu,
    datagrams: None, // streams only: `--addr udp:…` is refused
    children: None,
};

/// `echo-server reactor-pool` options.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub workers: CpuWorkers,
}

/// Starts the pool, then runs the reactor on this thread until a shutdown signal.
pub fn serve(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
    let workers = args.workers.get();
    let pool = ThreadPoolBuilder::new()
        .num_threads(workers)
        .thread_name(|i| format!("echo-work-{i}"))
        .build()
        .with_context(|| format!("cannot start the pool of {workers} threads"))?;
    let limit = ConnectionLimit::new(args.common.max_connections());
    let mut reactor = HalfAsync::new(listener, limit, shutdown, pool, args.common.echo())
        .context("cannot set up the epoll instance")?;
    ready.announce()?;
    reactor.run().context("the event loop failed")
}

/// A connection's place in the reactor's slab.
#[derive(Debug)]
enum Slot {
    /// In the reactor, registered, waiting for an event.
    Home(Conn),
    /// Moved into a job on the pool; its token stays reserved.
    Away,
}

/// A connection coming back from the pool, with where its drive left it.
#[derive(Debug)]
struct Done {
    token: Token,
    conn: Conn,
    outcome: Drive,
}

/// The way back from the pool to the reactor, shared by every job.
#[derive(Debug)]
struct Handback {
    sender: Sender<Done>,
    waker: Waker,
    wake_errors: LogThrottle,
}

impl Handback {
    /// Runs on a worker: returns the connection and wakes the reactor.
    fn send(&self, done: Done) {
        // The reactor holds the receiver as long as it runs; if it has
        // returned, the process is exiting and the connection is dropped.
        if self.sender.send(done).is_ok() {
            if let Err(err) = self.waker.wake() {
                // The eventfd write failed (it cannot fill: mio resets it);
                // the connection is picked up on the reactor's next wake-up.
                if let Some(suppressed) = self.wake_errors.allow() {
                    warn!(%err, suppressed, "cannot wake the reactor");
                }
            }
        }
    }
}

/// The asynchronous half: the reactor thread, its sockets and the way to the pool.
#[derive(Debug)]
struct HalfAsync<'s> {
    poll: Poll,
    conns: Slab<Slot>,
    accept: Accept,
    echo: EchoOptions,
    shutdown: &'s Shutdown,
    /// The synchronous half.
    pool: ThreadPool,
    handback: Arc<Handback>,
    returned: Receiver<Done>,
    register_errors: LogThrottle,
}

impl<'s> HalfAsync<'s> {
    /// Registers the listener, the signal and the waker with a new epoll instance.
    fn new(
        listener: Listener,
        limit: ConnectionLimit,
        shutdown: &'s Shutdown,
        pool: ThreadPool,
        echo: EchoOptions,
    ) -> io::Result<HalfAsync<'s>> {
        let poll = Poll::new()?;
        let accept = Accept::register(listener, limit, poll.registry())?;
        poll.registry().register(&mut SourceFd(&shutdown.fd().as_raw_fd()), SIGNAL, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let (sender, returned) = unbounded();
        Ok(HalfAsync {
            poll,
            conns: Slab::new(),
            accept,
            echo,
            shutdown,
            pool,
            handback: Arc::new(Handback { sender, waker, wake_errors: LogThrottle::default() }),
            returned,
            register_errors: LogThrottle::default(),
        })
    }

    /// Waits, hands ready connections out, takes them back; returns on a
    /// shutdown signal or if epoll fails.
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            if self.shutdown.is_requested() {
                // Connections out on the pool die with the process.
                return Ok(());
            }
            match self.poll.poll(&mut events, self.accept.timeout()) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
            for event in &events {
                match event.token() {
                    SIGNAL => {} // the flag is set; the check above returns
                    LISTENER => self.accept_all(),
                    WAKER => self.take_back(),
                    token => self.hand_out(token),
                }
            }
            if self.accept.resume_if_due() {
                self.accept_all();
            }
        }
    }

    fn accept_all(&mut self) {
        let mut accepted = Vec::new();
        self.accept.accept_all(|stream, peer, permit| accepted.push((stream, peer, permit)));
        for (stream, peer, permit) in accepted {
            self.adopt(stream, peer, permit);
        }
    }

    /// Gives an accepted connection its slab entry, token and registration.
    fn adopt(&mut self, stream: Stream, peer: Peer, permit: Permit) {
        let registered = Conn::open(stream, peer.clone(), permit, self.echo).and_then(|mut conn| {
            let index = self.conns.insert(Slot::Away);
            match conn.register(self.poll.registry(), Token(index)) {
                Ok(()) => {
                    if let Some(slot) = self.conns.get_mut(index) {
                        *slot = Slot::Home(conn);
                    }
                    Ok(())
                }
                Err(err) => {
                    self.conns.remove(index);
                    Err(err)
                }
            }
        });
        if let Err(err) = registered {
            if let Some(suppressed) = self.register_errors.allow() {
                warn!(%peer, %err, suppressed, "cannot register a connection with epoll; closing it");
            }
        }
    }

    /// An event for `token`: if the connection is home, send it to the pool.
    fn hand_out(&mut self, token: Token) {
        let Some(slot) = self.conns.get_mut(token.0) else { return };
        // Away: its worker reads until `WouldBlock` anyway, and the re-arm
        // on its return reports anything that came after.
        if let Slot::Home(conn) = std::mem::replace(slot, Slot::Away) {
            self.dispatch(token, conn);
        }
    }

    /// The synchronous half's whole job: drive the echo, send the connection back.
    fn dispatch(&self, token: Token, mut conn: Conn) {
        let handback = Arc::clone(&self.handback);
        self.pool.spawn(move || {
            let outcome = conn.drive(READS_PER_TURN);
            handback.send(Done { token, conn, outcome });
        });
    }

    /// Connections back from the pool: close, re-arm, or send out again.
    fn take_back(&mut self) {
        // The waker is edge-triggered: drain everything that came back.
        while let Ok(Done { token, mut conn, outcome }) = self.returned.try_recv() {
            let end = match outcome {
                // Spent its budget and may still be readable: back to the
                // end of the pool's queue, without waiting for an event.
                Drive::Yielded => {
                    self.dispatch(token, conn);
                    continue;
                }
                // Always re-armed (`force`): events while it was away were
                // ignored. Blocked on its write, it is armed for writable
                // only, or its unread bytes would report it again at once.
                Drive::Blocked => match conn.rearm(self.poll.registry(), token, true) {
                    Ok(()) => {
                        // Its `Away` marker held the token: the slot is there.
                        if let Some(slot) = self.conns.get_mut(token.0) {
                            *slot = Slot::Home(conn);
                        }
                        continue;
                    }
                    Err(err) => Err(err),
                },
                Drive::Closed(result) => result,
            };
            self.conns.remove(token.0); // the `Away` marker; its token is free again
            echo::log_end(conn.peer(), &end);
            // `conn` is dropped here: the socket closes and its slot under the cap is freed.
        }
    }
}
