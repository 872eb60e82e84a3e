//! `bench`'s command line: its options, subcommands and their parsers.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Args, Parser, Subcommand};
use echo_bench::load::Name;
use echo_bench::scenario::Scenario as _;
use echo_bench::scenarios;
use echo_common::Transport;

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    version,
    about = "Runs every server model × the load matrix and records the results",
    args_conflicts_with_subcommands = true,
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

pub const EXAMPLES: &str = "Examples:
  bench                                        the full default matrix (≈ 22–30 min on 2 CPUs)
  bench --quick                                a small matrix (≈ 3 min)
  bench --models tokio,reactor --scenarios latency --rates 20k,50k,100k --slo-p99 500us
  bench --scenarios throughput --connections 100 --sizes 64 --repeat 1 --duration 5s
  bench --scenarios work --models thread,reactor,tokio --work-levels block:1ms,block:5ms
  bench --server-cpus 0 --client-cpus 1        pin the server and the load generator
  bench --server-quota none                    no CPU quota: the server may use all of its CPUs
  bench --control none                         no control cell (A/A) at the start, every 5 min and the end
  bench --load-hosts ssh:client1,client2 --scenarios throughput
                                               the load from two client hosts (keys set up for ssh)
  bench --link veth --load-hosts netns:2       two agents in namespaces, the server in its own
  bench report results/<run>                   render a run's README and charts again
  bench floor --repeat 3 reactor tokio         the event-loop models against the mio floor
  bench overhead --repeat 11                   loadgen against the minimal client

Ctrl-C (or SIGTERM) stops the cell under way (its server is stopped, the cell dropped) and writes
results.json, the README and the charts of the finished cells (exit 130); a second one exits at once.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render README.md and charts again from a run's results.json, its
    /// flags recomputed (and saved in it) by this bench's rules.
    Report {
        /// The run's folder, e.g. results/20261125T160000Z-vm.
        dir: PathBuf,
    },
    /// How close the event-loop models come to a textbook mio echo server:
    /// server CPU per message, msg/s and p99, interleaved rounds, medians
    /// and each model's ratio to the floor.
    Floor(FloorArgs),
    /// Is loadgen as cheap as the simplest client? Both in turn against
    /// one tokio server: msg/s and client CPU per message, medians and
    /// per-pair ratios.
    Overhead(OverheadArgs),
}

/// The CPUs and binaries `floor` and `overhead` share.
#[derive(Debug, Args)]
pub struct Rig {
    /// CPUs for the server [default: the first half of the CPUs available].
    #[arg(long)]
    pub server_cpus: Option<String>,
    /// CPUs for the client [default: the other half].
    #[arg(long)]
    pub client_cpus: Option<String>,
    /// The echo-server binary [default: next to this one].
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// The loadgen binary [default: next to this one].
    #[arg(long)]
    pub loadgen_bin: Option<PathBuf>,
    /// Message size, bytes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=(16 << 20)))]
    pub size: u32,
    /// Warm-up of each run, ≥ 0.
    #[arg(long, value_parser = loadgen::opts::parse_duration)]
    pub warmup: Option<Duration>,
    /// Measured time of each run, > 0.
    #[arg(long, value_parser = positive_duration)]
    pub duration: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct FloorArgs {
    /// The models against the floor, each `MODEL[,OPTION…]` (`prefork,--workers,128`).
    #[arg(default_values = ["reactor", "reactors", "tokio", "uring"])]
    pub models: Vec<String>,
    /// Rounds: every server once per connection count in each [default: 3].
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// Connection counts.
    #[arg(long, value_delimiter = ',', default_values = ["100", "1000"], value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: Vec<u32>,
    /// Leave the floor out (nothing is divided by it).
    #[arg(long)]
    pub no_floor: bool,
    /// The floor's binary [default: examples/minimal_mio_echo next to this one].
    #[arg(long)]
    pub floor_bin: Option<PathBuf>,
    #[command(flatten)]
    pub rig: Rig,
}

#[derive(Debug, Args)]
pub struct OverheadArgs {
    /// Pairs (minimal, loadgen) [default: 5].
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// Connections of both clients.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,
    /// The minimal client's binary [default: examples/minimal_client next to this one].
    #[arg(long)]
    pub minimal_bin: Option<PathBuf>,
    #[command(flatten)]
    pub rig: Rig,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A small matrix that finishes within 3 minutes on 2 CPUs (its cells
    /// and their time: `echo_bench::matrix::default_shape`).
    #[arg(long)]
    pub quick: bool,
    /// Repeats per cell, interleaved across models [default: 3, the throughput, udp and
    /// work scenarios 2, the work scenario's ladder 1; 1 with --quick]. Given, it applies to
    /// every scenario but the work ladder (at most 1).
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: Option<u32>,
    /// Models to run [default: every model the server registers; see
    /// `echo-server list-models`].
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Scenarios to run [default: all].
    #[arg(long, value_delimiter = ',', value_parser = scenario_names())]
    pub scenarios: Vec<String>,
    /// Transports of every scenario but `transport` (which compares both):
    /// tcp, unix [default: tcp].
    #[arg(long, value_delimiter = ',', value_parser = stream_transport)]
    pub transports: Vec<Transport>,
    /// The network between the load generator and the server, for TCP and
    /// UDP cells: loopback, veth (the server in a network namespace of its
    /// own, reached over a veth pair and a bridge: needs root and `ip`);
    /// both: each load over each. With --load-hosts netns:N the server's
    /// namespace joins the agents' bridge. The transport scenario adds veth
    /// cells to its pairs when veth is given [default: loopback].
    #[arg(long, value_delimiter = ',', value_parser = link_name)]
    pub link: Vec<Name>,
    /// Throughput scenario: connection counts [default: 1,10,100,1000; 1,100 with --quick].
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: Vec<u32>,
    /// Throughput scenario: message sizes in bytes [default: 64; 4096 is a size worth adding].
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=(16 << 20)))]
    pub sizes: Vec<u32>,
    /// Capacity scenario: idle connections held [default: 1000,10000; 1000 with --quick].
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub capacity: Vec<u32>,
    /// Measured time of each load cell, > 0 (the open-loop scenarios cap theirs)
    /// [default: 1.5s; 1s with --quick].
    #[arg(long, value_parser = positive_duration)]
    pub duration: Option<Duration>,
    /// Warm-up of each load cell, ≥ 0 [default: 0.5s; 0.25s with --quick].
    #[arg(long, value_parser = loadgen::opts::parse_duration)]
    pub warmup: Option<Duration>,
    /// Latency scenario: the ladder's offered rates in msg/s, the same for every
    /// model, e.g. 10k,20k,40k [default: 10k,20k,30k,40k,50k,60k,80k,100k,130k; 20k,60k with --quick].
    #[arg(long, value_parser = |t: &str| echo_bench::climb::parse_rates(t).map(Rates))]
    pub rates: Option<Rates>,
    /// Udp scenario: the offered rates of its sustained-rate steps, datagrams/s
    /// [default: 10k,25k,50k,75k,100k,150k,200k; 50k with --quick].
    #[arg(long, value_parser = |t: &str| echo_bench::climb::parse_rates(t).map(Rates))]
    pub udp_rates: Option<Rates>,
    /// Work scenario: what each message costs the server, levels of cpu:DURATION (a compute
    /// loop) or block:DURATION (a blocking call), e.g. cpu:50us,block:2ms [default:
    /// cpu:20us,cpu:200us,block:1ms,block:10ms].
    #[arg(long, value_delimiter = ',')]
    pub work_levels: Vec<String>,
    /// Cost scenario: the pinned offered rates in msg/s, the same for every model
    /// [default: 5k,20k,50k; 20k with --quick].
    #[arg(long, value_parser = |t: &str| echo_bench::climb::parse_rates(t).map(Rates))]
    pub cost_rates: Option<Rates>,
    /// Latency, udp and work scenarios: a step is sustained while its CO-corrected p99 stays
    /// within this (the work scenario's ladder: this plus its work per message) and ≥ 99 % of
    /// the offered rate is achieved.
    #[arg(long, default_value = "1ms", value_parser = positive_duration)]
    pub slo_p99: Duration,
    /// CPUs for the server, e.g. 0 or 0-3 [default: the first half of the CPUs available].
    #[arg(long)]
    pub server_cpus: Option<String>,
    /// CPUs for the load generator [default: the other half].
    #[arg(long)]
    pub client_cpus: Option<String>,
    /// The server's CPU quota in the throughput and transport scenarios,
    /// the control cell and the closed loops of churn and udp (a cgroup per
    /// server), CPUs, e.g. 0.5; `none`: unthrottled. Without
    /// cgroups here, the run says so and goes unthrottled [default: half the
    /// load generator's CPUs, at most the server's: 0.5 with one CPU each].
    #[arg(long, value_name = "CPUS|none", allow_negative_numbers = true)]
    pub server_quota: Option<String>,
    /// The control cell (reactor, or the run's first model; 100
    /// connections, 64 B, closed loop, TCP), run at the start, every
    /// --control-every and at the end; its drift heads the README. `none`:
    /// no control cell.
    #[arg(long, default_value = "on", value_parser = ["on", "none"])]
    pub control: String,
    /// How often the control cell runs between the start and the end, > 0.
    #[arg(long, default_value = "5min", value_parser = positive_duration)]
    pub control_every: Duration,
    /// Keep idle CPUs awake for the whole run: hold a PM QoS request of 0 µs
    /// on /dev/cpu_dma_latency (as cyclictest and tuned's latency-performance
    /// do), so no CPU halts between messages and wakes late (on a VM with the
    /// haltpoll driver, 1–2.6 ms at p99, which an open loop pays on every send
    /// and reply). Where the file cannot be written, the run says so in one
    /// line and goes on; the README's header says what was done.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub keep_cpus_awake: String,
    /// The echo-server binary [default: next to this one].
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// The loadgen binary [default: next to this one].
    #[arg(long)]
    pub loadgen_bin: Option<PathBuf>,
    /// How the load generator runs: `process` (loadgen --control, a
    /// process of its own; the bench owns the measured window) or
    /// `in-process` (the loadgen library inside the bench, as before).
    #[arg(long, default_value = "process", value_parser = ["process", "in-process"])]
    pub load_path: String,
    /// Run each cell's load from several `loadgen agent`s, the bench their
    /// coordinator (counts and histograms merged exactly; one agent failing
    /// fails the cell): local:N (N processes on this host), netns:N (each in
    /// a network namespace of its own on a bridge with this host: needs root
    /// and `ip`; on this host's CPUs, so it checks correctness and overhead,
    /// not scaling), ssh:HOST[,HOST…] (one agent per host, over OpenSSH in
    /// batch mode; loadgen copied over if missing; the server listens on the
    /// address the first host reaches this one at), or external:N (N agents
    /// the bench does not start, e.g. a Kubernetes Indexed Job: each runs
    /// `loadgen agent --coordinator IP:PORT --index I` and dials
    /// --coordinator-bind; each cell waits --agent-wait for them, and a
    /// missing index fails that cell, not the run). See
    /// scripts/bench/README.md, "Load hosts" [default: one loadgen process].
    #[arg(long, value_name = "SPEC")]
    pub load_hosts: Option<String>,
    /// The port the coordinator of --load-hosts listens on, for agents
    /// behind a firewall; 0: any free port. (external:N: --coordinator-bind.)
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub coordinator_port: u16,
    /// For --load-hosts external:N (required there): the address its
    /// agents dial, listened on for the whole run; the server listens on the
    /// same IP. Port 0 picks one, said on stderr ("waiting for N agents at
    /// IP:PORT").
    #[arg(long, value_name = "IP:PORT", conflicts_with = "coordinator_port")]
    pub coordinator_bind: Option<std::net::SocketAddr>,
    /// For --load-hosts external:N: how long each cell waits for its agents
    /// to dial in before it is invalid, the missing indexes named
    /// [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    pub agent_wait: Option<Duration>,
    /// Where run folders are created.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// `--scenarios`' values: the registry's names, each with what it measures;
/// not the control cell's, which `--control` runs beside the matrix.
pub fn scenario_names() -> PossibleValuesParser {
    let chosen = scenarios::ALL.iter().filter(|s| s.name() != scenarios::control::Control.name());
    PossibleValuesParser::new(chosen.map(|s| PossibleValue::new(s.name()).help(s.about())))
}

/// A `--link` value.
pub fn link_name(text: &str) -> Result<Name, String> {
    Name::link_named(text).ok_or_else(|| format!("{text:?} is not a link (expected loopback or veth)"))
}

/// `--rates` (a newtype: clap would take a bare Vec for a repeated option).
#[derive(Debug, Clone)]
pub struct Rates(pub Vec<f64>);

/// `--duration`, `--slo-p99`: a duration above zero.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = loadgen::opts::parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!("{text:?} is zero: it must be above zero"));
    }
    Ok(duration)
}

/// A `--transports` entry: a stream transport (udp is not a stream: the
/// `udp` scenario runs it, with its own contract).
pub fn stream_transport(text: &str) -> Result<Transport, String> {
    let transport: Transport = text.parse()?;
    if transport.is_stream() {
        Ok(transport)
    } else {
        Err(format!("{transport} is not a stream transport (expected tcp or unix)"))
    }
}
