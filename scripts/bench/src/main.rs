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
use clap::Parser as _;
use cli::{Cli, Command, FloorArgs, OverheadArgs, Rates, Rig};
use echo_bench::host::cpu_list;
use echo_bench::hosts::HostsSpec;
use echo_bench::hosts::netns::Topology;
use echo_bench::load::Name;
use echo_bench::matrix;
use echo_bench::models;
use echo_bench::plan::{LoadHosts, LoadPath, RunConfig};
use echo_bench::results::Results;
use echo_bench::runner;
use echo_bench::scenarios;
use echo_common::Transport;
use loadgen::report::fmt_count;
use nix::sched::{CpuSet, sched_getaffinity};
use nix::unistd::Pid;

mod cli;

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
        // The flags are derived: recomputed by this bench's rules and
        // written back, figures untouched, so that results.json's flags and
        // the README's agree.
        echo_bench::validity::annotate(&mut results);
        results.save_flags(&json).with_context(|| format!("cannot write the flags into {}", json.display()))?;
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
    // Every check on the command line before anything runs.
    let available = available_cpus()?;
    let server_cpus = args.server_cpus.as_deref().map(|t| cpus_flag("--server-cpus", t, &available)).transpose()?;
    let client_cpus = args.client_cpus.as_deref().map(|t| cpus_flag("--client-cpus", t, &available)).transpose()?;
    // Read now, made later: namespaces and ssh sessions only once every
    // usage check has passed.
    let mut load_hosts = args.load_hosts.as_deref().map(HostsSpec::parse).transpose().map_err(Usage)?;
    match &mut load_hosts {
        Some(HostsSpec::External(external)) => {
            if args.coordinator_bind.is_none() {
                let why = "--load-hosts external:N needs --coordinator-bind IP:PORT, the address its agents dial";
                return Err(Usage(why.into()).into());
            }
            external.bind = args.coordinator_bind;
            external.wait = args.agent_wait.unwrap_or(external.wait);
        }
        _ if args.coordinator_bind.is_some() || args.agent_wait.is_some() => {
            let why = "--coordinator-bind and --agent-wait are for --load-hosts external:N (the other launchers \
                       start their agents; --coordinator-port sets their coordinator's port)";
            return Err(Usage(why.into()).into());
        }
        _ => {}
    }
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
    // Every usage check has passed. A run that makes namespaces first
    // removes those (and their links) that benches killed before they could
    // remove them left behind (none where `ip` is missing or not permitted).
    if veth || matches!(load_hosts, Some(HostsSpec::Netns(_))) {
        let swept = echo_bench::hosts::netns::sweep();
        if !swept.is_empty() {
            eprintln!("bench: removed what an earlier bench left: {}", swept.join(", "));
        }
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
    // Held open until the run ends: closing the file drops the request.
    let keep_cpus_awake = args.keep_cpus_awake == "on";
    let held = if keep_cpus_awake { echo_bench::host::keep_cpus_awake() } else { Err(String::new()) };
    let cpu_wakeup = echo_bench::host::cpu_wakeup_words(keep_cpus_awake, &held);
    if keep_cpus_awake && held.is_err() {
        eprintln!("bench: idle CPUs not kept awake: {cpu_wakeup}");
    }
    let config = RunConfig {
        shape,
        duration: args.duration.unwrap_or(if quick { Duration::from_secs(1) } else { matrix::WINDOW }),
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
        keep_cpus_awake,
        cpu_wakeup,
    };
    // scripts/bench.sh says how it was called; otherwise, our own command line.
    let command =
        std::env::var("ECHO_ARENA_COMMAND").unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" "));
    for note in matrix::notes(&config.shape, available.len()) {
        eprintln!("bench: {note}");
    }
    let outcome = runner::run(&config, command)?;
    drop(held);
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
