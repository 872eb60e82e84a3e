//! `loadgen [OPTIONS]` runs a load; `loadgen merge A.json B.json … --json OUT`
//! merges results. Exit status: 0 with a result (warnings included), 1 when
//! there is no result (unreachable server, bad address, unwritable file),
//! 2 for bad usage.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use loadgen::Opts;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "An honest, cheap echo load generator (TCP, Unix sockets, UDP)",
    after_help = "Examples:\n  \
        loadgen --addr 127.0.0.1:7000 -c 100 -s 64 -d 10s               closed loop, 100 connections\n  \
        loadgen --addr unix:/tmp/echo.sock -c 100 -d 10s                the same over a Unix socket\n  \
        loadgen --addr 127.0.0.1:7000 -c 100 --rate 20000 -d 10s        open loop, CO-corrected latency\n  \
        loadgen --addr 127.0.0.1:7000 -c 10 --reconnect-every 1 -d 5s   churn: a connection per message\n  \
        loadgen --addr udp:127.0.0.1:7000 -c 10 --timeout 100ms -d 5s   UDP: 10 flows, loss counted\n  \
        loadgen merge a.json b.json --json all.json                     merge two loadgen processes\n  \
        loadgen agent --coordinator 10.0.0.1:4000 --index 0             one of several, driven by the bench",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    opts: Opts,
    /// Write the result as JSON to FILE (schema: loadgen/README.md).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Run under a coordinator (the benchmark): once connected, say so on
    /// stdout and wait on stdin for the instant to start; then the report
    /// on stdout. One JSON object per line; the protocol is in
    /// loadgen/README.md.
    #[arg(long)]
    control: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Merge the JSON results of several loadgen processes exactly.
    Merge {
        /// Result files written with --json.
        #[arg(required = true, num_args = 1..)]
        inputs: Vec<PathBuf>,
        /// Where to write the merged result.
        #[arg(long, value_name = "FILE")]
        json: PathBuf,
    },
    /// Run as an agent of a coordinator (the bench): dial it, take the
    /// part of the load it gives, report back. Protocol: loadgen/README.md.
    Agent {
        /// The coordinator's address.
        #[arg(long, value_name = "HOST:PORT", value_parser = loadgen::agent::parse_coordinator)]
        coordinator: String,
        /// The name this agent reports [default: the host name].
        #[arg(long)]
        name: Option<String>,
        /// The part of the load this agent asks for, from 0: agents started
        /// by someone else (`bench --load-hosts external:N`) are told apart
        /// by it, not by the order they dial in [default: the environment's
        /// JOB_COMPLETION_INDEX (a Kubernetes Indexed Job's) when set, else
        /// any free part].
        #[arg(long, value_name = "I")]
        index: Option<u32>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("loadgen: {err:#}");
            // Options that cannot run (at all, or over this transport) are
            // bad usage, as clap's errors are.
            match err.downcast_ref::<loadgen::LoadError>() {
                Some(loadgen::LoadError::Unsupported(_) | loadgen::LoadError::Options(_)) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let (report, json) = match cli.command {
        Some(Command::Merge { inputs, json }) => {
            let mut reports = Vec::with_capacity(inputs.len());
            for path in &inputs {
                reports.push(loadgen::read_json(path).with_context(|| format!("cannot read {}", path.display()))?);
            }
            (loadgen::merge(&reports)?, Some(json))
        }
        Some(Command::Agent { coordinator, name, index }) => {
            let index = match index {
                Some(index) => Some(index),
                None => job_completion_index()?,
            };
            return loadgen::agent::run(&coordinator, name, index).map_err(|reason| anyhow::anyhow!("agent: {reason}"));
        }
        None if cli.control => {
            if let Some(path) = &cli.json {
                check_writable(path)?;
            }
            let report = loadgen::control::run(&cli.opts)?;
            if let Some(path) = &cli.json {
                loadgen::write_json(&report, path).with_context(|| format!("cannot write {}", path.display()))?;
            }
            return Ok(());
        }
        None => {
            if let Some(path) = &cli.json {
                check_writable(path)?;
            }
            (loadgen::run(&cli.opts)?, cli.json)
        }
    };
    // The summary goes out first: nothing measured is lost if writing fails.
    let mut stdout = std::io::stdout().lock();
    report.write_summary(&mut stdout).context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    // The summary already lists the warnings; repeat them on stderr only when
    // stdout goes elsewhere (a file, a pipe), so that they are never missed.
    if !std::io::stdout().is_terminal() {
        for warning in &report.warnings {
            eprintln!("loadgen: warning: {warning}");
        }
    }
    if let Some(path) = json {
        loadgen::write_json(&report, &path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// `JOB_COMPLETION_INDEX`, the index Kubernetes gives each pod of an
/// Indexed Job: none when unset; a value that is not an index is bad usage.
fn job_completion_index() -> anyhow::Result<Option<u32>> {
    let Some(text) = std::env::var_os("JOB_COMPLETION_INDEX") else {
        return Ok(None);
    };
    match text.to_str().and_then(|t| t.trim().parse::<u32>().ok()) {
        Some(index) => Ok(Some(index)),
        None => {
            Err(loadgen::LoadError::Options(format!("JOB_COMPLETION_INDEX={text:?} is not an index (give --index)"))
                .into())
        }
    }
}

/// Fails before the run, not after it, when the JSON file cannot be written.
fn check_writable(path: &std::path::Path) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    anyhow::ensure!(dir.is_dir(), "cannot write {}: {} is not a directory", path.display(), dir.display());
    Ok(())
}
