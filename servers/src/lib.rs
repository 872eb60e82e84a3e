//! # echo-servers: one TCP echo contract, five concurrency models
//!
//! The crate exists so that concurrency models can be compared fairly:
//! everything except the concurrency strategy is shared code.
//!
//! ## The contract
//!
//! Bind with SO_REUSEADDR and a backlog ([`listen`]), print `listening on
//! <ip>:<port>` once, then echo: read up to `--buffer-size` bytes, write them
//! all back, repeat until the client half-closes ([`echo`]). TCP_NODELAY on
//! every connection, one buffer per connection, a connection cap, accept
//! errors retried after a back-off, SIGINT/SIGTERM stop the server
//! ([`shutdown`]).
//!
//! ## Reading order
//!
//! 1. [`cli`]: the options and the one list of models.
//! 2. [`listen`]: the listener, the per-connection socket options, the
//!    connection cap and the accept-error policy every model shares.
//! 3. [`echo`]: the echo loop, blocking and async flavours.
//! 4. [`models`]: one file per model, each a page with the same entry point,
//!    `serve(listener, config, shutdown)`. Diff two of them: only the
//!    concurrency strategy differs.

pub mod cli;
pub mod echo;
pub mod listen;
pub mod models;
pub mod procfs;
pub mod shutdown;

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{Context, bail};
use tracing::{info, warn};

use crate::cli::{Cli, Model};

/// What a model needs to know, resolved from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bytes per read; each connection owns exactly one buffer of this size.
    pub buffer_size: usize,
    /// Live connections allowed; more are accepted and closed at once.
    pub max_connections: usize,
    /// Worker threads for `pool`, `tokio` and `may`.
    pub workers: usize,
    /// `pool`: capacity of the queue between the acceptor and the workers.
    pub queue: usize,
    /// Stack size in bytes for `thread`, `pool` and `may`; `None`: the model's default.
    pub stack_size: Option<usize>,
}

impl Config {
    /// Resolves the defaults that depend on the model and the machine.
    pub fn from_cli(cli: &Cli) -> Config {
        let cpus = available_cpus();
        let default_max = match cli.model {
            Model::Process => cli::DEFAULT_MAX_CONNECTIONS_PROCESS,
            _ => cli::DEFAULT_MAX_CONNECTIONS,
        };
        let default_workers = match cli.model {
            Model::Pool => cli::DEFAULT_POOL_WORKERS,
            _ => cpus,
        };
        Config {
            buffer_size: cli.buffer_size as usize,
            max_connections: cli.max_connections.map_or(default_max, |n| n as usize),
            workers: cli.workers.map_or(default_workers, |n| n as usize),
            queue: cli.queue,
            stack_size: cli.stack_size.map(|n| n as usize),
        }
    }
}

/// The CPUs this process may run on: its affinity mask (so `taskset` is
/// honoured) and cgroup quota, as `std` reports them.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Logs go to stderr; `RUST_LOG` filters them (default: `info`, and `warn`
/// for may's own chatter).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,may=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Runs the server described by `cli` until SIGINT or SIGTERM.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::from_cli(&cli);
    if let Some(parent) = cli.worker_of {
        // A `process` child: serve the one connection on stdin, then exit.
        return models::process::child_main(parent, &config).context("process worker");
    }

    let addr = parse_addr(&cli.addr)?;
    // Handlers go in before the listener exists, so that a signal arriving
    // during start-up is not lost.
    let shutdown = shutdown::Shutdown::install().context("cannot install signal handlers")?;
    raise_fd_limit();
    let listener = listen::bind(addr, cli.backlog).with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr().context("listener has no local address")?;

    // The one line scripts and tests wait for.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {local}").context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    drop(stdout);
    info!(model = %cli.model, ?config, "listening on {local}");

    models::serve(cli.model, listener, &config, &shutdown).with_context(|| format!("{} server failed", cli.model))?;
    info!("shut down");
    Ok(())
}

/// `127.0.0.1:7000`, `[::1]:0`, or a host name such as `localhost:0`.
fn parse_addr(text: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => match addrs.next() {
            Some(addr) => Ok(addr),
            None => bail!("invalid address {text:?}: it resolves to nothing"),
        },
        Err(err) => bail!("invalid address {text:?} (expected IP:PORT, e.g. 127.0.0.1:7000): {err}"),
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit: 10,000 connections need
/// 10,000 descriptors, and the usual soft default is 1024.
fn raise_fd_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            warn!(soft = limit.rlim_cur, "cannot raise the open-file limit");
        }
    }
}
