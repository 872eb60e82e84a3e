//! The command line, shared by every model. The one list of model names is
//! [`Model`]: the same strings appear in the CLI, in benchmark JSON keys, file
//! names and table headers.

use std::fmt;

use clap::{Parser, ValueEnum};

/// Default `--max-connections` for every model but `process`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default `--max-connections` for `process`: each connection is a whole OS
/// process, so the cap is lower.
pub const DEFAULT_MAX_CONNECTIONS_PROCESS: usize = 1024;
/// Default `--workers` for `pool`. A blocking pool must be larger than the CPU
/// count: a worker waiting on a slow client does nothing, yet holds its slot.
pub const DEFAULT_POOL_WORKERS: usize = 128;

/// The concurrency models, in the order the README presents them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Model {
    /// One child process per connection (started with std::process).
    Process,
    /// One OS thread per connection.
    Thread,
    /// A fixed pool of threads fed through a bounded queue.
    Pool,
    /// One tokio task per connection on a multi-thread runtime.
    Tokio,
    /// One `may` stackful coroutine per connection.
    May,
}

impl Model {
    /// Every model, for harnesses that loop over them.
    pub const ALL: [Model; 5] = [Model::Process, Model::Thread, Model::Pool, Model::Tokio, Model::May];

    /// The model's name as typed on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Model::Process => "process",
            Model::Thread => "thread",
            Model::Pool => "pool",
            Model::Tokio => "tokio",
            Model::May => "may",
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `echo-server <MODEL> [OPTIONS]`
#[derive(Debug, Clone, Parser)]
#[command(name = "echo-server", version, about = "A TCP echo server in five concurrency models")]
pub struct Cli {
    /// Concurrency model.
    #[arg(value_enum)]
    pub model: Model,

    /// Address to listen on; port 0 picks a free port, IPv6 as `[::1]:0`.
    /// Parsed by the server itself so that a bad one exits 1 with one line.
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub addr: String,

    /// Listen backlog (pending, not yet accepted connections).
    #[arg(long, default_value_t = 1024)]
    pub backlog: i32,

    /// Bytes read (and so written back) per system call; one buffer per connection.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=(64 << 20)))]
    pub buffer_size: u32,

    /// Live connections beyond this are accepted and closed at once
    /// [default: 10000; 1024 for process].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,

    /// Worker threads (pool, tokio, may) [default: the CPUs this process may
    /// run on, its affinity mask; 128 for pool].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub workers: Option<u32>,

    /// pool: accepted connections waiting for a free worker; beyond it they are closed.
    #[arg(long, default_value_t = 1024)]
    pub queue: usize,

    /// Stack size in bytes of a connection's thread (thread, pool) or coroutine
    /// (may) [default: Rust's 2 MiB for threads, 64 KiB for may].
    #[arg(long, value_parser = clap::value_parser!(u64).range(16_384..=(1 << 30)))]
    pub stack_size: Option<u64>,

    /// Internal: serve the socket on stdin as a `process` child of this PID.
    #[arg(long, hide = true, value_name = "PID")]
    pub worker_of: Option<u32>,
}
