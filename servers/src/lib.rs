//! # echo-servers: one echo contract, many concurrency models
//!
//! The crate exists so that concurrency models can be compared fairly:
//! everything except the concurrency strategy is shared code.
//!
//! ## The contract
//!
//! Bind a TCP port or a Unix socket path with a backlog
//! ([`transport::Listener::bind`]), print `listening on <endpoint>` once the
//! model is ready to serve ([`Ready`]), then echo: read up to
//! `--buffer-size` bytes, do the message's work (`--work`, none by
//! default: [`work`]), write them all back, repeat until the client
//! half-closes ([`echo`]). TCP_NODELAY on every TCP connection, one buffer
//! per connection, a connection cap, accept errors retried after a
//! back-off ([`listen`]), SIGINT/SIGTERM stop the server ([`shutdown`]).
//!
//! Over UDP (`--addr udp:IP:PORT`) the contract is the datagram one
//! ([`datagram`]): every datagram echoed once to its source, oversize ones
//! dropped and counted. Models that have a datagram design serve it; the
//! others refuse with one line and exit status 2 ([`Refused`]).
//!
//! ## Reading order
//!
//! 1. [`Cli`] and [`cli`]: the command line, the options several models
//!    share; [`models`]: the one registry, each model's own options.
//! 2. [`transport`]: listeners and streams of every transport behind one type.
//! 3. [`listen`]: the per-connection options, the connection cap and the
//!    accept-error policy every model shares.
//! 4. [`echo`]: the echo as a state machine, and its blocking and async loops;
//!    [`datagram`]: the datagram echo, its counters and its receive loops;
//!    [`work`]: what a message costs before its echo, and where it runs.
//! 5. The machinery some models share, so that each model file stays a
//!    page: [`event_loop`] (the epoll loop of `reactor`, `reactors` and
//!    `reactor-pool`), [`per_core`] (the thread-per-core start-up of
//!    `reactors` and `uring`), [`ring`] (the io_uring plumbing of `uring`),
//!    [`children`] (the child processes of `process` and `prefork`).
//! 6. [`models`]: one file per model, each a page with the same entry point,
//!    `serve(listener, args, shutdown, ready)`. Diff two of them: only the
//!    concurrency strategy differs.

pub mod children;
pub mod cli;
pub mod datagram;
pub mod echo;
pub mod event_loop;
pub mod listen;
pub mod models;
pub mod per_core;
pub mod ready;
pub mod ring;
pub mod shutdown;
pub mod slab;
pub mod transport;
pub mod work;

use std::io::{IsTerminal, Write};

use anyhow::Context;
use clap::Parser;
use echo_common::{Endpoint, ModelInfo};
use tracing::{info, warn};

use crate::models::Command;
use crate::ready::Ready;
use crate::transport::Listener;

/// `echo-server <MODEL> [OPTIONS]`: each model is a subcommand with its own
/// options, declared in its file next to its `serve` ([`models`]), so
/// `echo-server tokio --help` shows tokio's flags only and `echo-server
/// tokio --queue 5` is a usage error. The options several models share are
/// in [`cli`].
#[derive(Debug, Parser)]
#[command(
    name = "echo-server",
    version,
    about = "One echo contract, many concurrency models",
    after_help = "Examples:\n  \
        echo-server tokio --addr 127.0.0.1:7000\n  \
        echo-server pool --workers 128 --queue 1024 --addr [::1]:0\n  \
        echo-server thread --addr unix:/tmp/echo.sock\n  \
        echo-server reactors --addr udp:127.0.0.1:7000 --batch 32\n  \
        echo-server list-models"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// The model's options given on the command line rather than by their
    /// defaults (clap ids, e.g. `batch`), filled in by `main` from clap's
    /// matches ([`given_on_command_line`]): a UDP-only option given with a
    /// stream address is refused.
    #[arg(skip)]
    pub given: Vec<String>,
}

/// The ids of the chosen subcommand's options that were given on the command line.
pub fn given_on_command_line(matches: &clap::ArgMatches) -> Vec<String> {
    let Some((_, sub)) = matches.subcommand() else { return Vec::new() };
    sub.ids()
        .filter(|id| sub.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
        .map(|id| id.as_str().to_owned())
        .collect()
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

/// Runs the command: a model until SIGINT or SIGTERM, or `list-models`.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli { command, given } = cli;
    let (Some(info), Some(common)) = (command.info(), command.common()) else {
        return list_models(&command);
    };
    if let Some(child) = command.run_as_child() {
        // A child of `process` or `prefork` (`--child-of`): its side, then exit.
        return child.with_context(|| format!("{} child", info.name));
    }
    // Before anything is bound: no message pays for the measurement, and
    // its log line comes before `listening on`.
    common.work.calibrate();

    let endpoint = Endpoint::parse(&common.addr)?;
    if let Endpoint::Udp(addr) = endpoint {
        return run_datagrams(&command, info, addr);
    }
    let udp_only: Vec<String> =
        datagram::udp_only_options().into_iter().filter(|(id, _)| given.contains(id)).map(|(_, flag)| flag).collect();
    if !udp_only.is_empty() {
        return Err(Refused(format!(
            "{} applies over udp only, and {endpoint} is a stream address",
            udp_only.join(" and ")
        ))
        .into());
    }
    // Handlers go in before the listener exists, so that a signal arriving
    // during start-up is not lost.
    let shutdown = shutdown::Shutdown::install().context("cannot install signal handlers")?;
    if let Err(err) = echo_common::limits::raise_nofile(u64::MAX) {
        warn!(%err, "cannot raise the open-file limit");
    }
    let (listener, socket_file) = Listener::bind(&endpoint, common.backlog, info.reuse_port)
        .with_context(|| format!("cannot listen on {endpoint}"))?;
    let local = listener.local_endpoint().context("listener has no local address")?;
    info!(model = %info.name, ?common, "bound {local}");

    command.serve(listener, &shutdown, Ready::new(local)).with_context(|| format!("{}", info.name))?;
    // The socket file goes when `socket_file` is dropped: here after a clean
    // shutdown, and on the error return above too. A killed server leaves
    // it; the next start finds nobody listening and removes it as stale.
    drop(socket_file);
    info!("shut down");
    Ok(())
}

/// A request the chosen model cannot serve as asked (a stream-only model
/// given `udp:`, a `--buffer-size` no datagram can fill): a usage error,
/// exit status 2, like a flag the model does not take.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Serves UDP on `addr` with the chosen model's datagram design, or refuses.
fn run_datagrams(command: &Command, info: &ModelInfo, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let (Some(common), Some(options)) = (command.common(), command.datagram_options()) else {
        let with: Vec<&str> = models::ALL.iter().filter(|m| m.datagrams.is_some()).map(|m| m.name.as_ref()).collect();
        return Err(Refused(format!(
            "`{}` serves streams only; the models that serve udp: {}",
            info.name,
            with.join(", ")
        ))
        .into());
    };
    datagram::check_buffer_size(common.buffer_size()).map_err(Refused)?;
    let shutdown = shutdown::Shutdown::install().context("cannot install signal handlers")?;
    let endpoint = Endpoint::Udp(addr);
    let socket = datagram::bind(addr, options, info.reuse_port).with_context(|| format!("cannot bind {endpoint}"))?;
    let local = Endpoint::Udp(socket.local_addr().context("the socket has no local address")?);
    info!(model = %info.name, ?common, ?options, "bound {local}");
    datagram::log_buffers(&socket, options);

    let echo = datagram::DatagramEcho::new(common.echo());
    let served = command.serve_datagrams(socket, echo.clone(), &shutdown, Ready::new(local));
    served.expect("a model with datagram options serves datagrams").with_context(|| format!("{}", info.name))?;
    echo.report();
    info!("shut down");
    Ok(())
}

/// `echo-server list-models [--json]`.
fn list_models(command: &Command) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    if let Command::ListModels { json: true } = command {
        serde_json::to_writer_pretty(&mut stdout, &*models::ALL).context("cannot write to stdout")?;
        writeln!(stdout).context("cannot write to stdout")?;
    } else {
        for info in models::ALL.iter() {
            writeln!(stdout, "{:<14} {}", info.name, info.summary).context("cannot write to stdout")?;
        }
    }
    Ok(())
}
