//! `bench [OPTIONS]` runs the matrix; `bench report results/<run>` renders
//! README.md and charts again from results.json. Exit status: 0 when every
//! cell succeeded, 1 when any failed (the run still completes), 2 for bad
//! usage (checked before anything runs), 130 when stopped by SIGINT/SIGTERM
//! (after writing the report of the cells finished).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Args, Parser, Subcommand};
use echo_bench::host::cpu_list;
use echo_bench::hosts::HostsSpec;
use echo_bench::hosts::netns::Topology;
use echo_bench::load::Name;
use echo_bench::matrix;
use echo_bench::models;
use echo_bench::plan::{LoadHosts, LoadPath, RunConfig};
use echo_bench::results::Results;
use echo_bench::runner;
use echo_bench::scenario::Scenario as _;
use echo_bench::scenarios;
use echo_common::Transport;
use loadgen::report::fmt_count;
use nix::sched::{CpuSet, sched_getaffinity};
use nix::unistd::Pid;

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    version,
    about = "Runs every server model × the load matrix and records the results",
    args_conflicts_with_subcommands = true,
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

const EXAMPLES: &str = "Examples:
  bench                                        the full default matrix (≈ 29–31 min on 2 CPUs)
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
enum Command {
    /// Render README.md and charts again from a run's results.json.
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
struct Rig {
    /// CPUs for the server [default: the first half of the CPUs available].
    #[arg(long)]
    server_cpus: Option<String>,
    /// CPUs for the client [default: the other half].
    #[arg(long)]
    client_cpus: Option<String>,
    /// The echo-server binary [default: next to this one].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// The loadgen binary [default: next to this one].
    #[arg(long)]
    loadgen_bin: Option<PathBuf>,
    /// Message size, bytes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=(16 << 20)))]
    size: u32,
    /// Warm-up of each run, ≥ 0.
    #[arg(long, value_parser = loadgen::opts::parse_duration)]
    warmup: Option<Duration>,
    /// Measured time of each run, > 0.
    #[arg(long, value_parser = positive_duration)]
    duration: Option<Duration>,
}

#[derive(Debug, Args)]
struct FloorArgs {
    /// The models against the floor, each `MODEL[,OPTION…]` (`prefork,--workers,128`).
    #[arg(default_values = ["reactor", "reactors", "tokio", "uring"])]
    models: Vec<String>,
    /// Rounds: every server once per connection count in each [default: 3].
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,
    /// Connection counts.
    #[arg(long, value_delimiter = ',', default_values = ["100", "1000"], value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: Vec<u32>,
    /// Leave the floor out (nothing is divided by it).
    #[arg(long)]
    no_floor: bool,
    /// The floor's binary [default: examples/minimal_mio_echo next to this one].
    #[arg(long)]
    floor_bin: Option<PathBuf>,
    #[command(flatten)]
    rig: Rig,
}

#[derive(Debug, Args)]
struct OverheadArgs {
    /// Pairs (minimal, loadgen) [default: 5].
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,
    /// Connections of both clients.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: u32,
    /// The minimal client's binary [default: examples/minimal_client next to this one].
    #[arg(long)]
    minimal_bin: Option<PathBuf>,
    #[command(flatten)]
    rig: Rig,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// A small matrix that finishes within 3 minutes on 2 CPUs (its cells
    /// and their time: `echo_bench::matrix::default_shape`).
    #[arg(long)]
    quick: bool,
    /// Repeats per cell, interleaved across models [default: 3, the throughput, udp and
    /// work scenarios 2, the work scenario's ladder 1; 1 with --quick]. Given, it applies to
    /// every scenario but the work ladder (at most 1).
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: Option<u32>,
    /// Models to run [default: every model the server registers; see
    /// `echo-server list-models`].
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Scenarios to run [default: all].
    #[arg(long, value_delimiter = ',', value_parser = scenario_names())]
    scenarios: Vec<String>,
    /// Transports of every scenario but `transport` (which compares both):
    /// tcp, unix [default: tcp].
    #[arg(long, value_delimiter = ',', value_parser = stream_transport)]
    transports: Vec<Transport>,
    /// The network between the load generator and the server, for TCP and
    /// UDP cells: loopback, veth (the server in a network namespace of its
    /// own, reached over a veth pair and a bridge: needs root and `ip`);
    /// both: each load over each. With --load-hosts netns:N the server's
    /// namespace joins the agents' bridge. The transport scenario adds veth
    /// cells to its pairs when veth is given [default: loopback].
    #[arg(long, value_delimiter = ',', value_parser = link_name)]
    link: Vec<Name>,
    /// Throughput scenario: connection counts [default: 1,10,100,1000; 1,100 with --quick].
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: Vec<u32>,
    /// Throughput scenario: message sizes in bytes [default: 64,4096; 64 with --quick].
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=(16 << 20)))]
    sizes: Vec<u32>,
    /// Capacity scenario: idle connections held [default: 1000,10000; 1000 with --quick].
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    capacity: Vec<u32>,
    /// Measured time of each load cell, > 0 [default: 2s; 1s with --quick].
    #[arg(long, value_parser = positive_duration)]
    duration: Option<Duration>,
    /// Warm-up of each load cell, ≥ 0 [default: 0.5s; 0.25s with --quick].
    #[arg(long, value_parser = loadgen::opts::parse_duration)]
    warmup: Option<Duration>,
    /// Latency scenario: the ladder's offered rates in msg/s, the same for every
    /// model, e.g. 10k,20k,40k [default: 10k,20k,30k,40k,50k,60k,80k,100k,130k; 20k,60k with --quick].
    #[arg(long, value_parser = |t: &str| echo_bench::climb::parse_rates(t).map(Rates))]
    rates: Option<Rates>,
    /// Udp scenario: the offered rates of its sustained-rate steps, datagrams/s
    /// [default: 10k,25k,50k,75k,100k,150k,200k; 50k with --quick].
    #[arg(long, value_parser = |t: &str| echo_bench::climb::parse_rates(t).map(Rates))]
    udp_rates: Option<Rates>,
    /// Work scenario: what each message costs the server, levels of cpu:DURATION (a compute
    /// loop) or block:DURATION (a blocking call), e.g. cpu:50us,block:2ms [default:
    /// cpu:20us,cpu:200us,block:1ms,block:10ms].
    #[arg(long, value_delimiter = ',')]
    work_levels: Vec<String>,
    /// Cost scenario: the pinned offered rates in msg/s, the same for every model
    /// [default: 5k,20k,50k; 20k with --quick].
    #[arg(long, value_parser = |t: &str| echo_bench::climb::parse_rates(t).map(Rates))]
    cost_rates: Option<Rates>,
    /// Latency, udp and work scenarios: a step is sustained while its CO-corrected p99 stays
    /// within this (the work scenario's ladder: this plus its work per message) and ≥ 99 % of
    /// the offered rate is achieved.
    #[arg(long, default_value = "1ms", value_parser = positive_duration)]
    slo_p99: Duration,
    /// CPUs for the server, e.g. 0 or 0-3 [default: the first half of the CPUs available].
    #[arg(long)]
    server_cpus: Option<String>,
    /// CPUs for the load generator [default: the other half].
    #[arg(long)]
    client_cpus: Option<String>,
    /// The server's CPU quota in the throughput and transport scenarios (a
    /// cgroup per server), CPUs, e.g. 0.5; `none`: unthrottled. Without
    /// cgroups here, the run says so and goes unthrottled [default: half the
    /// load generator's CPUs, at most the server's: 0.5 with one CPU each].
    #[arg(long, value_name = "CPUS|none", allow_negative_numbers = true)]
    server_quota: Option<String>,
    /// The control cell (reactor, or the run's first model; 100
    /// connections, 64 B, closed loop, TCP), run at the start, every
    /// --control-every and at the end; its drift heads the README. `none`:
    /// no control cell.
    #[arg(long, default_value = "on", value_parser = ["on", "none"])]
    control: String,
    /// How often the control cell runs between the start and the end, > 0.
    #[arg(long, default_value = "5min", value_parser = positive_duration)]
    control_every: Duration,
    /// The echo-server binary [default: next to this one].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// The loadgen binary [default: next to this one].
    #[arg(long)]
    loadgen_bin: Option<PathBuf>,
    /// How the load generator runs: `process` (loadgen --control, a
    /// process of its own; the bench owns the measured window) or
    /// `in-process` (the loadgen library inside the bench, as before).
    #[arg(long, default_value = "process", value_parser = ["process", "in-process"])]
    load_path: String,
    /// Run each cell's load from several `loadgen agent`s, the bench their
    /// coordinator (counts and histograms merged exactly; one agent failing
    /// fails the cell): local:N (N processes on this host), netns:N (each in
    /// a network namespace of its own on a bridge with this host: needs root
    /// and `ip`; on this host's CPUs, so it checks correctness and overhead,
    /// not scaling), or ssh:HOST[,HOST…] (one agent per host, over OpenSSH in
    /// batch mode; loadgen copied over if missing; the server listens on the
    /// address the first host reaches this one at). See
    /// scripts/bench/README.md [default: one loadgen process].
    #[arg(long, value_name = "SPEC")]
    load_hosts: Option<String>,
    /// The port the coordinator of --load-hosts listens on, for agents
    /// behind a firewall or started by someone else (scripts/k8s); 0: any
    /// free port.
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    coordinator_port: u16,
    /// Where run folders are created.
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// `--scenarios`' values: the registry's names, each with what it measures;
/// not the control cell's, which `--control` runs beside the matrix.
fn scenario_names() -> PossibleValuesParser {
    let chosen = scenarios::ALL.iter().filter(|s| s.name() != scenarios::control::Control.name());
    PossibleValuesParser::new(chosen.map(|s| PossibleValue::new(s.name()).help(s.about())))
}

/// A `--link` value.
fn link_name(text: &str) -> Result<Name, String> {
    Name::link_named(text).ok_or_else(|| format!("{text:?} is not a link (expected loopback or veth)"))
}

/// `--rates` (a newtype: clap would take a bare Vec for a repeated option).
#[derive(Debug, Clone)]
struct Rates(Vec<f64>);

/// `--duration`, `--slo-p99`: a duration above zero.
fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = loadgen::opts::parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!("{text:?} is zero: it must be above zero"));
    }
    Ok(duration)
}

/// Bad usage found after parsing (exit 2, one line).
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// How the run ended.
enum Ended {
    AllOk,
    SomeFailed,
    Interrupted,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(Ended::AllOk) => ExitCode::SUCCESS,
        Ok(Ended::SomeFailed) => ExitCode::FAILURE,
        Ok(Ended::Interrupted) => ExitCode::from(130),
        Err(err) => {
            eprintln!("bench: {err:#}");
            if err.downcast_ref::<Usage>().is_some() { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

/// SIGINT/SIGTERM: the first sets the flag (the runner stops after the
/// current cell and writes its report), the second exits at once with 130.
/// Installed explicitly, so a runner started with SIGINT ignored (from a
/// script, `nohup`) still stops on it.
fn install_signal_handlers() -> anyhow::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as it was before this signal:
        // it exits only when an earlier signal had set it already.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&flag))
            .context("cannot install a signal handler")?;
        signal_hook::flag::register(signal, Arc::clone(&flag)).context("cannot install a signal handler")?;
    }
    Ok(flag)
}

fn run(cli: Cli) -> anyhow::Result<Ended> {
    if let Some(Command::Report { dir }) = cli.command {
        let json = dir.join("results.json");
        let mut results = Results::load(&json).with_context(|| format!("cannot read {}", json.display()))?;
        if let Some(cell) = results.cells.iter().find(|c| scenarios::of(&c.spec.load.scenario).is_none()) {
            bail!(
                "cannot read {}: a cell of scenario {:?}, which this bench does not have: render it with the bench \
                 of its commit",
                json.display(),
                cell.spec.load.scenario.name()
            );
        }
        echo_bench::validity::annotate(&mut results);
        echo_bench::report::write_report(&results, &dir)
            .with_context(|| format!("cannot write to {}", dir.display()))?;
        println!("wrote {}", dir.join("README.md").display());
        println!("{}", echo_bench::render::marks::console_line(&results));
        return Ok(Ended::AllOk);
    }
    match cli.command {
        Some(Command::Floor(args)) => return floor(args).map(|()| Ended::AllOk),
        Some(Command::Overhead(args)) => return overhead(args).map(|()| Ended::AllOk),
        _ => {}
    }
    let args = cli.run;
    let quick = args.quick;
    // Namespaces and links that benches killed before they could remove
    // them left behind (none where `ip` is missing or not permitted).
    let swept = echo_bench::hosts::netns::sweep();
    if !swept.is_empty() {
        eprintln!("bench: removed what an earlier bench left: {}", swept.join(", "));
    }
    // Every check on the command line before anything runs.
    let available = available_cpus()?;
    let server_cpus = args.server_cpus.as_deref().map(|t| cpus_flag("--server-cpus", t, &available)).transpose()?;
    let client_cpus = args.client_cpus.as_deref().map(|t| cpus_flag("--client-cpus", t, &available)).transpose()?;
    // Read now, made later: namespaces and ssh sessions only once every
    // usage check has passed.
    let load_hosts = args.load_hosts.as_deref().map(HostsSpec::parse).transpose().map_err(Usage)?;
    let server_bin = match args.server_bin {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("echo-server"),
    };
    if !server_bin.is_file() {
        bail!("no echo-server at {} (build it: cargo build --release -p echo-servers)", server_bin.display());
    }
    let load_path = match args.load_path.as_str() {
        "in-process" => LoadPath::InProcess,
        _ => {
            let bin = match args.loadgen_bin {
                Some(path) => path,
                None => std::env::current_exe()?.with_file_name("loadgen"),
            };
            if !bin.is_file() {
                bail!("no loadgen at {} (build it: cargo build --release -p loadgen)", bin.display());
            }
            LoadPath::Process(bin)
        }
    };
    if load_hosts.is_none() && args.coordinator_port != 0 {
        return Err(Usage("--coordinator-port is the coordinator's of --load-hosts: give --load-hosts".into()).into());
    }
    if load_hosts.is_some() && load_path == LoadPath::InProcess {
        return Err(Usage("--load-hosts drives loadgen agents: it needs --load-path process".into()).into());
    }
    // The models come from the server's own registry, never from a list here.
    let catalogue = models::catalogue(&server_bin)?;
    // An unknown name is bad usage like any other bad option (exit 2), not a failed run.
    let selected = models::select(&catalogue, &args.models).map_err(|err| Usage(format!("--models: {err}")))?;
    let mut shape = matrix::default_shape(selected, quick, available.len());
    let given = |list: Vec<u32>, default: &mut Vec<u32>| {
        if !list.is_empty() {
            *default = list;
        }
    };
    given(args.connections, &mut shape.connections);
    given(args.sizes, &mut shape.sizes);
    given(args.capacity, &mut shape.capacity);
    if !args.scenarios.is_empty() {
        // Every name is one of the registry's: clap checked them.
        shape.scenarios = matrix::scenarios_named(&args.scenarios).map_err(|n| Usage(format!("--scenarios: {n}?")))?;
    }
    if !args.transports.is_empty() {
        shape.transports = args.transports;
        shape.transports.sort();
        shape.transports.dedup();
    }
    if !args.link.is_empty() {
        // In the order given, each once.
        shape.links.clear();
        for link in args.link {
            if !shape.links.contains(&link) {
                shape.links.push(link);
            }
        }
    }
    if let Some(repeat) = args.repeat {
        // An explicit --repeat applies to every scenario.
        shape.repeat = repeat;
        shape.throughput_repeat = repeat;
        shape.udp_repeat = repeat;
        shape.work_repeat = repeat;
    }
    if let Some(Rates(rates)) = args.rates {
        shape.rates = rates;
    }
    if let Some(Rates(rates)) = args.udp_rates {
        shape.udp_rates = rates;
    }
    if let Some(Rates(rates)) = args.cost_rates {
        shape.cost_rates = rates;
    }
    if !args.work_levels.is_empty() {
        shape.work_levels = scenarios::work::levels(&args.work_levels)
            .map_err(|err| Usage(format!("--work-levels {}: {err}", args.work_levels.join(","))))?;
    }
    let (server_cpus, client_cpus) = cpu_sets(server_cpus, client_cpus, &available);
    let shared: Vec<usize> = server_cpus.iter().copied().filter(|c| client_cpus.contains(c)).collect();
    if !shared.is_empty() {
        eprintln!(
            "bench: warning: the server and the load generator share CPU(s) {}: they compete for it, and \
             every figure is a joint one",
            cpu_list(&shared)
        );
    }
    let server_quota = match args.server_quota.as_deref() {
        Some(text) => {
            echo_bench::quota::parse(text, server_cpus.len()).map_err(|err| Usage(format!("--server-quota {err}")))?
        }
        None => Some(echo_bench::quota::default_cpus(server_cpus.len(), client_cpus.len())),
    };
    // Installed before the namespaces are made: a signal from here on is the runner's.
    let interrupt = install_signal_handlers()?;
    // The server's namespace, made before anything runs: a machine without
    // them is told so at once (exit 2), and it is removed when `config` goes.
    let veth = shape.links.contains(&Name::veth());
    if veth && shape.transports.contains(&Transport::Unix) {
        eprintln!("bench: note: a Unix socket has no link: its cells run once; --link veth applies to TCP and UDP");
    }
    // The agents' launcher: `netns:N` makes its namespaces here, with the
    // server's among them for --link veth (one topology), ssh dials every
    // host once.
    let load_hosts = match &load_hosts {
        Some(spec) => {
            let launcher = spec.launch(veth).map_err(|err| Usage(format!("--load-hosts: {err}")))?;
            Some(LoadHosts(Arc::from(launcher)))
        }
        None => None,
    };
    let topology = match load_hosts.as_ref().and_then(|hosts| hosts.0.topology()) {
        Some(shared) => Some(shared),
        None if veth => {
            let topology = Topology::new(0, true).map_err(|err| Usage(format!("--link veth: {err}")))?;
            Some(Arc::new(topology))
        }
        None => None,
    };
    let config = RunConfig {
        shape,
        duration: args.duration.unwrap_or(if quick { Duration::from_secs(1) } else { Duration::from_secs(2) }),
        warmup: args.warmup.unwrap_or(if quick { Duration::from_millis(250) } else { Duration::from_millis(500) }),
        server_cpus,
        client_cpus,
        available_cpus: available.clone(),
        server_bin,
        load_path,
        load_hosts,
        coordinator_port: args.coordinator_port,
        results_root: args.results,
        quick,
        progress: !args.no_progress,
        slo_p99: args.slo_p99,
        server_quota,
        control_every: (args.control == "on").then_some(args.control_every),
        interrupt,
        topology,
    };
    // scripts/bench.sh says how it was called; otherwise, our own command line.
    let command =
        std::env::var("ECHO_ARENA_COMMAND").unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" "));
    for note in matrix::notes(&config.shape, available.len()) {
        eprintln!("bench: {note}");
    }
    let outcome = runner::run(&config, command)?;
    let failed: Vec<_> = outcome.results.cells.iter().filter(|c| !c.ok).collect();
    if outcome.interrupted {
        println!("interrupted: the report covers the cells finished before the signal");
    }
    println!(
        "{} cells, {} failed; results in {}",
        fmt_count(outcome.results.cells.len() as f64),
        fmt_count(failed.len() as f64),
        outcome.dir.join("README.md").display()
    );
    for cell in &failed {
        println!(
            "  FAILED {} (repeat {}): {}",
            scenarios::describe(&cell.spec.load),
            cell.spec.repeat + 1,
            cell.failure.as_deref().unwrap_or("?")
        );
    }
    // The console ends, as the README does, with the count of flags by kind.
    println!("{}", echo_bench::render::marks::console_line(&outcome.results));
    Ok(if outcome.interrupted {
        Ended::Interrupted
    } else if failed.is_empty() {
        Ended::AllOk
    } else {
        Ended::SomeFailed
    })
}

/// A binary given, or the one named `name` next to this one; a missing one
/// is an error saying how to build it.
fn binary(given: Option<PathBuf>, name: &str, build: &str) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name(name),
    };
    if !path.is_file() {
        bail!("no {name} at {} (build it: {build})", path.display());
    }
    Ok(path)
}

/// The server's and the client's CPUs of `floor` and `overhead`, as a run's.
fn rig_cpus(rig: &Rig) -> anyhow::Result<(Vec<usize>, Vec<usize>)> {
    let available = available_cpus()?;
    let server = rig.server_cpus.as_deref().map(|t| cpus_flag("--server-cpus", t, &available)).transpose()?;
    let client = rig.client_cpus.as_deref().map(|t| cpus_flag("--client-cpus", t, &available)).transpose()?;
    Ok(cpu_sets(server, client, &available))
}

/// `bench floor`.
fn floor(args: FloorArgs) -> anyhow::Result<()> {
    let (server_cpus, client_cpus) = rig_cpus(&args.rig)?;
    let server_bin = binary(args.rig.server_bin, "echo-server", "cargo build --release -p echo-servers")?;
    let catalogue = models::catalogue(&server_bin)?;
    let mut specs = Vec::new();
    for text in &args.models {
        let spec: Vec<String> = text.split(',').map(str::to_owned).collect();
        if !catalogue.iter().any(|m| m.name() == spec[0]) {
            let names: Vec<&str> = catalogue.iter().map(|m| m.name()).collect();
            return Err(Usage(format!("floor: no model {:?}; the server has {}", spec[0], names.join(", "))).into());
        }
        specs.push(spec);
    }
    let floor_bin = if args.no_floor {
        None
    } else {
        let given = args.floor_bin.or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.join("examples").join("minimal_mio_echo"))
        });
        let build = "cargo build --release -p echo-servers --example minimal_mio_echo, or --no-floor";
        Some(binary(given, "minimal_mio_echo", build)?)
    };
    let loadgen_bin = binary(args.rig.loadgen_bin, "loadgen", "cargo build --release -p loadgen")?;
    echo_bench::measure::floor(&echo_bench::measure::Floor {
        models: specs,
        floor_bin,
        server_bin,
        loadgen_bin,
        connections: args.connections,
        size: args.rig.size,
        repeats: args.repeat,
        duration: args.rig.duration.unwrap_or(Duration::from_secs(5)),
        warmup: args.rig.warmup.unwrap_or(Duration::from_millis(500)),
        server_cpus,
        client_cpus,
    })
}

/// `bench overhead`.
fn overhead(args: OverheadArgs) -> anyhow::Result<()> {
    let (server_cpus, client_cpus) = rig_cpus(&args.rig)?;
    let server_bin = binary(args.rig.server_bin, "echo-server", "cargo build --release -p echo-servers")?;
    let loadgen_bin = binary(args.rig.loadgen_bin, "loadgen", "cargo build --release -p loadgen")?;
    let given = args.minimal_bin.or_else(|| {
        let exe = std::env::current_exe().ok()?;
        Some(exe.parent()?.join("examples").join("minimal_client"))
    });
    let minimal_bin = binary(given, "minimal_client", "cargo build --release -p loadgen --example minimal_client")?;
    echo_bench::measure::overhead(&echo_bench::measure::Overhead {
        minimal_bin,
        server_bin,
        loadgen_bin,
        connections: args.connections,
        size: args.rig.size,
        repeats: args.repeat,
        duration: args.rig.duration.unwrap_or(Duration::from_secs(10)),
        warmup: args.rig.warmup.unwrap_or(Duration::from_secs(2)),
        server_cpus,
        client_cpus,
    })
}

/// The CPUs this process may run on.
fn available_cpus() -> anyhow::Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0)).context("cannot read the CPU affinity")?;
    Ok((0..CpuSet::count()).filter(|&cpu| set.is_set(cpu).unwrap_or(false)).collect())
}

/// The server's and the client's CPUs: as given; one set given, the other
/// gets the rest of the CPUs (all of them if nothing is left); neither: the
/// first half for the server.
fn cpu_sets(server: Option<Vec<usize>>, client: Option<Vec<usize>>, available: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let rest = |of: &[usize]| {
        let rest: Vec<usize> = available.iter().copied().filter(|c| !of.contains(c)).collect();
        if rest.is_empty() { available.to_vec() } else { rest }
    };
    match (server, client) {
        (Some(server), Some(client)) => (server, client),
        (Some(server), None) => {
            let client = rest(&server);
            (server, client)
        }
        (None, Some(client)) => (rest(&client), client),
        (None, None) => split_cpus(available),
    }
}

/// First half for the server, the rest for the client (both all of one CPU alone).
fn split_cpus(cpus: &[usize]) -> (Vec<usize>, Vec<usize>) {
    if cpus.len() < 2 {
        return (cpus.to_vec(), cpus.to_vec());
    }
    let half = cpus.len() / 2;
    (cpus[..half].to_vec(), cpus[half..].to_vec())
}

/// `--server-cpus`/`--client-cpus`: a CPU list of CPUs this process may
/// use; otherwise a usage error naming the flag and the CPUs there are.
fn cpus_flag(flag: &str, text: &str, available: &[usize]) -> anyhow::Result<Vec<usize>> {
    let here = format!("this process may use CPU(s) {}", cpu_list(available));
    let cpus = parse_cpus(text)
        .ok_or_else(|| Usage(format!("{flag} {text}: not a CPU list such as 0, 0-3 or 0,2; {here}")))?;
    let missing: Vec<usize> = cpus.iter().copied().filter(|c| !available.contains(c)).collect();
    if !missing.is_empty() {
        return Err(Usage(format!("{flag} {text}: no CPU {} here; {here}", cpu_list(&missing))).into());
    }
    Ok(cpus)
}

/// `0`, `0-3`, `0,2,4-5` → the CPUs, ascending, each once.
fn parse_cpus(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        let parse = |s: &str| s.trim().parse::<usize>().ok();
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse(a)?, parse(b)?);
                if a > b || b >= CpuSet::count() {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(parse(part)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    (!cpus.is_empty()).then_some(cpus)
}

/// A `--transports` entry: a stream transport (udp is not a stream: the
/// `udp` scenario runs it, with its own contract).
fn stream_transport(text: &str) -> Result<Transport, String> {
    let transport: Transport = text.parse()?;
    if transport.is_stream() {
        Ok(transport)
    } else {
        Err(format!("{transport} is not a stream transport (expected tcp or unix)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_and_print() {
        assert_eq!(parse_cpus("0"), Some(vec![0]));
        assert_eq!(parse_cpus("3,0-1, 1"), Some(vec![0, 1, 3]));
        for bad in ["", "x", "1-0", "0,", "-1", "0-", "0-99999999"] {
            assert_eq!(parse_cpus(bad), None, "{bad:?}");
        }
        assert_eq!(cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
    }

    #[test]
    fn cpus_outside_the_affinity_mask_are_a_usage_error_naming_the_flag_and_the_cpus() {
        let err = cpus_flag("--server-cpus", "5", &[0, 1]).unwrap_err();
        assert!(err.downcast_ref::<Usage>().is_some());
        assert_eq!(err.to_string(), "--server-cpus 5: no CPU 5 here; this process may use CPU(s) 0-1");
        let err = cpus_flag("--client-cpus", "zero", &[0, 1]).unwrap_err();
        assert!(err.to_string().starts_with("--client-cpus zero: not a CPU list"), "{err}");
        assert_eq!(cpus_flag("--client-cpus", "1", &[0, 1]).unwrap(), [1]);
    }
}
