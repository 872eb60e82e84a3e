//! The command line: `echo-server <MODEL> [OPTIONS]`.
//!
//! Each model is a subcommand with its own options (declared in its file,
//! next to its `serve`), so `echo-server tokio --help` shows tokio's flags
//! only and `echo-server tokio --queue 5` is a usage error. The options
//! every model shares are [`Common`], flattened into each model's `Args`;
//! [`CpuWorkers`] and [`ThreadStack`] are flags several models share.

use clap::{Args, Parser};

use crate::models::Command;

/// `echo-server <MODEL> [OPTIONS]`
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
    /// matches: a UDP-only option given with a stream address is refused.
    #[arg(skip)]
    pub given: Vec<String>,
}

/// The options that only mean something over udp: given with a stream
/// address they would silently do nothing, so they are refused (exit 2).
pub const UDP_ONLY: &[(&str, &str)] =
    &[("batch", "--batch"), ("recv_buffer", "--recv-buffer"), ("send_buffer", "--send-buffer")];

/// The ids of the chosen subcommand's options that were given on the command line.
pub fn given_on_command_line(matches: &clap::ArgMatches) -> Vec<String> {
    let Some((_, sub)) = matches.subcommand() else { return Vec::new() };
    sub.ids()
        .filter(|id| sub.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
        .map(|id| id.as_str().to_owned())
        .collect()
}

/// Options every model takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    // Where to listen (`help` rather than a doc comment: rustdoc would read
    // the brackets as a link). Parsed by the server itself (echo_common::Endpoint), so that a bad
    // address exits 1 with one line, like one that is in use.
    #[arg(
        long,
        default_value = "127.0.0.1:7000",
        help = "Where to listen: IP:PORT, [IPv6]:PORT or unix:PATH (streams), udp:IP:PORT (datagrams, \
                for the models that have a datagram design); port 0 picks a free port"
    )]
    pub addr: String,

    /// Listen backlog: connections the kernel queues before they are accepted (streams only).
    #[arg(long, default_value_t = 1024, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(1..))]
    pub backlog: i32,

    /// Bytes read (and so written back) per system call; one buffer per connection.
    /// Over udp, the largest datagram echoed (at most 65507); larger ones are dropped.
    #[arg(long, default_value_t = 4096, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=(64 << 20)))]
    pub buffer_size: u32,

    /// Live connections beyond this are accepted and closed at once (streams only).
    // The default is the model's own (ModelInfo::default_max_connections),
    // set by the registry on each model's subcommand.
    #[arg(long, required = false, allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
}

impl Common {
    /// `--buffer-size` in bytes.
    pub fn buffer_size(&self) -> usize {
        self.buffer_size as usize
    }

    /// `--max-connections`.
    pub fn max_connections(&self) -> usize {
        usize::try_from(self.max_connections).unwrap_or(usize::MAX)
    }
}

/// `--workers` for models whose workers are event loops or schedulers:
/// as many as there are CPUs to run them.
#[derive(Debug, Clone, Args)]
pub struct CpuWorkers {
    /// Worker threads [default: the CPUs this process may run on, its affinity mask].
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub workers: Option<u32>,
}

impl CpuWorkers {
    /// `--workers`, or the CPUs this process may run on.
    pub fn get(&self) -> usize {
        self.workers.map_or_else(available_cpus, |n| n as usize)
    }
}

/// `--stack-size` for models that give each connection an OS thread.
#[derive(Debug, Clone, Args)]
pub struct ThreadStack {
    /// Stack size in bytes of each connection's thread [default: Rust's 2 MiB;
    /// only touched pages become resident].
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(16_384..=(1 << 30)))]
    pub stack_size: Option<u64>,
}

impl ThreadStack {
    /// A thread builder named `name` with this stack size.
    pub fn builder(&self, name: String) -> std::thread::Builder {
        let builder = std::thread::Builder::new().name(name);
        match self.stack_size {
            Some(bytes) => builder.stack_size(bytes as usize),
            None => builder,
        }
    }
}

/// The CPUs this process may run on: its affinity mask (so `taskset` is
/// honoured) and cgroup quota, as `std` reports them.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
