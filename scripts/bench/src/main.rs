//! `bench [OPTIONS]` runs the matrix; `bench report results/<run>` renders
//! README.md and charts again from results.json. Exit status: 0 when every
//! cell succeeded, 1 when any failed (the run still completes), 2 for bad usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use echo_bench::matrix::{Scenario, Shape};
use echo_bench::models;
use echo_bench::results::Results;
use echo_bench::runner::{self, RunConfig};
use echo_common::Transport;
use nix::sched::{CpuSet, sched_getaffinity};
use nix::unistd::Pid;

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    version,
    about = "Runs every server model × the load matrix and records the results",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Render README.md and charts again from a run's results.json.
    Report {
        /// The run's folder, e.g. results/20261125T160000Z-vm.
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// A small matrix that finishes within 3 minutes on 2 CPUs.
    #[arg(long)]
    quick: bool,
    /// Repeats per cell, interleaved across models [default: 3; 1 with --quick].
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: Option<u32>,
    /// Models to run [default: every model the server registers; see
    /// `echo-server list-models`].
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Scenarios to run [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Transports of every scenario but `transport` (which compares both):
    /// tcp, unix [default: tcp].
    #[arg(long, value_delimiter = ',', value_parser = stream_transport)]
    transports: Vec<Transport>,
    /// Throughput scenario: connection counts [default: 1,10,100,1000; 1,100,1000 with --quick].
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: Vec<u32>,
    /// Throughput scenario: message sizes in bytes [default: 64,4096; 64 with --quick].
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=(16 << 20)))]
    sizes: Vec<u32>,
    /// Capacity scenario: idle connections held [default: 1000,10000; 1000 with --quick].
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    capacity: Vec<u32>,
    /// Measured time of each load cell [default: 2s; 1s with --quick].
    #[arg(long, value_parser = loadgen::opts::parse_duration)]
    duration: Option<Duration>,
    /// Warm-up of each load cell [default: 0.5s; 0.25s with --quick].
    #[arg(long, value_parser = loadgen::opts::parse_duration)]
    warmup: Option<Duration>,
    /// CPUs for the server, e.g. 0 or 0-3 [default: the first half of the CPUs available].
    #[arg(long)]
    server_cpus: Option<String>,
    /// CPUs for the load generator [default: the other half].
    #[arg(long)]
    client_cpus: Option<String>,
    /// The echo-server binary [default: next to this one].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Where run folders are created.
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ok(true): everything succeeded; Ok(false): some cells failed.
fn run(cli: Cli) -> anyhow::Result<bool> {
    if let Some(Command::Report { dir }) = cli.command {
        let json = dir.join("results.json");
        let results = Results::load(&json).with_context(|| format!("cannot read {}", json.display()))?;
        echo_bench::render::write_report(&results, &dir)
            .with_context(|| format!("cannot write to {}", dir.display()))?;
        println!("wrote {}", dir.join("README.md").display());
        return Ok(true);
    }
    let args = cli.run;
    let quick = args.quick;
    let server_bin = match args.server_bin {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("echo-server"),
    };
    if !server_bin.is_file() {
        bail!("no echo-server at {} (build it: cargo build --release -p echo-servers)", server_bin.display());
    }
    // The models come from the server's own registry, never from a list here.
    let catalogue = models::catalogue(&server_bin)?;
    let available = available_cpus()?;
    let mut shape = Shape::default_for(models::select(&catalogue, &args.models)?, quick, available.len());
    let given = |list: Vec<u32>, default: &mut Vec<u32>| {
        if !list.is_empty() {
            *default = list;
        }
    };
    given(args.connections, &mut shape.connections);
    given(args.sizes, &mut shape.sizes);
    given(args.capacity, &mut shape.capacity);
    if !args.scenarios.is_empty() {
        shape.scenarios = args.scenarios;
    }
    if !args.transports.is_empty() {
        shape.transports = args.transports;
        shape.transports.sort();
        shape.transports.dedup();
    }
    if let Some(repeat) = args.repeat {
        shape.repeat = repeat;
    }
    let (server_default, client_default) = split_cpus(&available);
    let server_cpus = match &args.server_cpus {
        Some(text) => parse_cpus(text)?,
        None => server_default,
    };
    let client_cpus = match &args.client_cpus {
        Some(text) => parse_cpus(text)?,
        None => client_default,
    };
    let config = RunConfig {
        shape,
        duration: args.duration.unwrap_or(if quick { Duration::from_secs(1) } else { Duration::from_secs(2) }),
        warmup: args.warmup.unwrap_or(if quick { Duration::from_millis(250) } else { Duration::from_millis(500) }),
        server_cpus,
        client_cpus,
        available_cpus: available.clone(),
        server_bin,
        results_root: args.results,
        quick,
        progress: !args.no_progress,
    };
    // scripts/bench.sh says how it was called; otherwise, our own command line.
    let command =
        std::env::var("ECHO_ARENA_COMMAND").unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" "));
    if config.shape.scenarios.contains(&Scenario::Scaling) {
        eprintln!("bench: scaling: {}", echo_bench::matrix::scaling_limit(available.len()));
    }
    let outcome = runner::run(&config, command)?;
    let failed: Vec<_> = outcome.results.cells.iter().filter(|c| !c.ok).collect();
    println!(
        "{} cells, {} failed; results in {}",
        outcome.results.cells.len(),
        failed.len(),
        outcome.dir.join("README.md").display()
    );
    for cell in &failed {
        println!(
            "  FAILED {} (repeat {}): {}",
            cell.spec.label(),
            cell.spec.repeat + 1,
            cell.failure.as_deref().unwrap_or("?")
        );
    }
    Ok(failed.is_empty())
}

/// The CPUs this process may run on.
fn available_cpus() -> anyhow::Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0)).context("cannot read the CPU affinity")?;
    Ok((0..CpuSet::count()).filter(|&cpu| set.is_set(cpu).unwrap_or(false)).collect())
}

/// First half for the server, the rest for the client (both all of one CPU alone).
fn split_cpus(cpus: &[usize]) -> (Vec<usize>, Vec<usize>) {
    if cpus.len() < 2 {
        return (cpus.to_vec(), cpus.to_vec());
    }
    let half = cpus.len() / 2;
    (cpus[..half].to_vec(), cpus[half..].to_vec())
}

/// `0`, `0-3`, `0,2,4-5`.
fn parse_cpus(text: &str) -> anyhow::Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parse = |s: &str| s.parse::<usize>().with_context(|| format!("invalid CPU list {text:?}"));
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(parse(a)?..=parse(b)?),
            None => cpus.push(parse(part)?),
        }
    }
    if cpus.is_empty() || cpus.iter().any(|&c| c >= CpuSet::count()) {
        bail!("invalid CPU list {text:?}");
    }
    Ok(cpus)
}

/// A `--transports` entry: a stream transport (udp is not a stream: the
/// benchmark has no UDP load yet).
fn stream_transport(text: &str) -> Result<Transport, String> {
    let transport: Transport = text.parse()?;
    if transport.is_stream() {
        Ok(transport)
    } else {
        Err(format!("{transport} is not a stream transport (expected tcp or unix)"))
    }
}
