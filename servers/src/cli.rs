//! The options models share on the command line (`echo-server <MODEL>
//! [OPTIONS]`, [`crate::Cli`]): [`Common`], flattened into every model's
//! `Args` (among them `--work`, [`crate::work`]); [`CpuWorkers`] and
//! [`ThreadStack`], flags several models take.

use clap::Args;

use crate::echo::EchoOptions;
use crate::work::Work;

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

    // `help` rather than a doc comment, as for --addr: rustdoc would read the `|` text as markup.
    #[arg(
        long,
        default_value = "none",
        value_name = "WORK",
        value_parser = Work::parse,
        help = "What each message costs before its echo: none, cpu:DURATION (a hash loop over the message, \
                calibrated at start to take that much CPU) or block:DURATION (a nanosleep); e.g. cpu:20us, \
                block:1ms, at most 1s. A message is what one read returned (up to --buffer-size), or one datagram"
    )]
    pub work: Work,
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

    /// What every connection's echo is given: `--buffer-size` and `--work`.
    pub fn echo(&self) -> EchoOptions {
        EchoOptions { buffer_size: self.buffer_size(), work: self.work }
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
