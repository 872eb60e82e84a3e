//! Runs the matrix cell by cell: start the server pinned to its CPUs, sample
//! it, load it from the client CPUs (or let its scenario measure it), stop
//! it, record — and save after every cell.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use echo_common::Transport;
use indicatif::ProgressBar;
use loadgen::opts::PacerWait;
use loadgen::{Event, Opts};

use crate::climb;
use crate::hosts::netns::{Namespace, Topology};
use crate::load::{CellSpec, LoadKey, Name};
use crate::loadpath::{self, Mark};
use crate::matrix;
use crate::models::Model;
use crate::plan::{LoadPath, RunConfig};
use crate::progress::Progress;
use crate::quota::{Cgroups, Quota, Throttling};
use crate::report;
use crate::results::{Cell, Coordination, Environment, Results, Settings, utc_now};
use crate::sampler::{self, Sample, Sampler};
use crate::scenario::{Drive, Window};
use crate::scenarios;
use crate::server::{self, Server};
use crate::steal::Steal;
use crate::{capacity, control, validity};

mod setup;
use setup::{CURRENT_SERVER, Watcher, blank, failed, rig, settings};

/// A finished (or interrupted) run.
#[derive(Debug)]
pub struct Outcome {
    pub dir: PathBuf,
    pub results: Results,
    /// Stopped by [`RunConfig::interrupt`] before the matrix ended.
    pub interrupted: bool,
}

/// Runs every cell; writes results.json after each (flags recomputed),
/// then README.md and charts — also when interrupted, for the cells done.
pub fn run(cfg: &RunConfig, command: String) -> anyhow::Result<Outcome> {
    let started_at = utc_now();
    let environment = Environment::detect(command, started_at.clone());
    let stamp: String = started_at.chars().filter(|c| c.is_ascii_digit() || *c == 'T').collect();
    let dir = cfg.results_root.join(format!("{stamp}Z-{}", sanitize(&environment.hostname)));
    std::fs::create_dir_all(&dir)?;
    let json = dir.join("results.json");

    // Unix sockets of the servers: one short-lived folder for the run.
    let sockets = tempfile::Builder::new().prefix("echo-bench-").tempdir()?;

    // The load runs on this thread and the threads it starts: pin them all.
    server::pin_current_thread(&cfg.client_cpus)?;
    let (cgroups, quota) = rig(cfg);
    let settings = Settings { server_quota: quota, ..settings(cfg) };
    let reproduce = crate::host::reproduce(&environment.command, &settings);
    let mut results = Results {
        schema_version: crate::results::SCHEMA_VERSION,
        environment: Environment {
            reproduce: Some(reproduce),
            cpu_wakeup: Some(cfg.cpu_wakeup.clone()),
            ..environment
        },
        settings,
        cells: Vec::new(),
        complete: false,
        control: None,
    };
    results.save(&json)?;

    let specs = matrix::cells(&cfg.shape);
    let mut progress = Progress::new(cfg.progress, specs.len());
    let _watcher = Watcher::start(Arc::clone(&cfg.interrupt));
    // The open-loop climbs (latency ladder, udp sustained rate) that have
    // stopped, each named by its load at no particular rate and its repeat.
    let mut stopped: HashSet<Climb> = HashSet::new();
    let mut interrupted = false;
    let mut control = cfg
        .control_every
        .zip(control::model(&cfg.shape.models))
        .filter(|_| !specs.is_empty())
        .map(|(every, model)| ControlPlan { model, every, last: None, n: 0 });
    // Runs the control cell (at the start, when due, at the end); false if
    // a signal came while it ran (the cell is dropped then).
    let run_control = |plan: &mut ControlPlan, results: &mut Results, progress: &mut Progress| {
        let spec = plan.next();
        progress.add();
        progress.bar.set_message(scenarios::label(&spec.load));
        let cell = run_cell(cfg, spec, &progress.bar, sockets.path(), cgroups.as_ref());
        if cfg.interrupt.load(Ordering::SeqCst) {
            return Ok(false);
        }
        record(results, cell, &json, progress)?;
        anyhow::Ok(true)
    };
    for (i, spec) in specs.iter().cloned().enumerate() {
        if cfg.interrupt.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let climb = climb_of(&spec);
        if climb.as_ref().is_some_and(|c| stopped.contains(c)) {
            continue; // counted off the total when the climb stopped
        }
        if let Some(plan) = control.as_mut().filter(|p| p.due()) {
            if !run_control(plan, &mut results, &mut progress)? {
                interrupted = true;
                break;
            }
        }
        progress.bar.set_message(scenarios::label(&spec.load));
        let cell = run_cell(cfg, spec, &progress.bar, sockets.path(), cgroups.as_ref());
        if cfg.interrupt.load(Ordering::SeqCst) {
            // The signal came while it ran: its server was stopped under it
            // (or its figures would mix both): not a measurement.
            interrupted = true;
            break;
        }
        if let Some(climb) = climb {
            let slo = scenarios::of(&cell.spec.load.scenario)
                .map_or(cfg.slo_p99, |s| s.slo_p99(&cell.spec.load, cfg.slo_p99));
            if !climb::verdict(&cell, slo.as_micros() as u64).sustained() {
                // The steps above will not run: one cell fewer each to wait for.
                let ahead = specs[i + 1..].iter().filter(|s| climb_of(s).as_ref() == Some(&climb));
                progress.skip(ahead.count());
                stopped.insert(climb);
            }
        }
        record(&mut results, cell, &json, &mut progress)?;
    }
    // The control's last run, after the matrix's last cell.
    if let Some(plan) = control.as_mut().filter(|_| !interrupted && !cfg.interrupt.load(Ordering::SeqCst)) {
        interrupted = !run_control(plan, &mut results, &mut progress)?;
    }
    progress.bar.finish_and_clear();
    results.complete = !interrupted;
    validity::annotate(&mut results);
    results.save(&json)?;
    report::write_report(&results, &dir)?;
    Ok(Outcome { dir, results, interrupted })
}

/// Adds a finished cell to the run: its flags (and every other cell's
/// spread) recomputed, results.json saved, the progress told.
fn record(results: &mut Results, cell: Cell, json: &Path, progress: &mut Progress) -> anyhow::Result<()> {
    if !cell.ok {
        let label = scenarios::label(&cell.spec.load);
        progress.bar.println(format!("FAILED {label}: {}", cell.failure.as_deref().unwrap_or("?")));
    }
    results.cells.push(cell);
    validity::annotate(results);
    results.save(json)?;
    if let Some(cell) = results.cells.last() {
        progress.done(cell);
    }
    Ok(())
}

/// When the control cell runs: at the start, then once `every` has passed
/// since its last run began (looked at between cells), and at the end.
struct ControlPlan {
    model: Model,
    every: Duration,
    last: Option<Instant>,
    n: u32,
}

impl ControlPlan {
    fn due(&self) -> bool {
        self.last.is_none_or(|at| at.elapsed() >= self.every)
    }

    /// The next control cell's spec (its repeat counts the control's runs).
    fn next(&mut self) -> CellSpec {
        self.last = Some(Instant::now());
        self.n += 1;
        control::spec(self.model.clone(), self.n - 1)
    }
}

/// An open-loop climb: its steps' load but for the rate, and the repeat.
type Climb = (LoadKey, u32);

/// The climb a cell is a step of (an open-loop cell its scenario climbs:
/// the latency ladder's, or the udp scenario's sustained-rate steps;
/// [`crate::scenario::Scenario::climbs`]); `None` for any other cell.
/// Any other axis tells climbs apart: a model's `--batch` variant climbs on
/// its own, one stopping leaves the other going.
fn climb_of(spec: &CellSpec) -> Option<Climb> {
    let climbs = scenarios::of(&spec.load.scenario).map_or(spec.load.rate.is_some(), |s| s.climbs(&spec.load));
    climbs.then(|| (spec.load.climb(), spec.repeat))
}

fn sanitize(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    if clean.is_empty() { "host".into() } else { clean }
}

/// One cell, start to finish, its server in a cgroup of `cgroups` (under
/// the run's quota) when its scenario takes one. Never panics on a
/// misbehaving server: every problem becomes the cell's failure reason.
pub fn run_cell(
    cfg: &RunConfig,
    mut spec: CellSpec,
    bar: &ProgressBar,
    sockets: &Path,
    cgroups: Option<&Cgroups>,
) -> Cell {
    // Set first, so a cell that fails early is of the same load as its
    // repeats that ran.
    spec.load.agents = agents_of(cfg, &spec.load);
    // Over veth, the server listens in its own namespace, on its address there.
    let netns = if spec.load.link == Name::veth() && spec.load.transport != Transport::Unix {
        match cfg.topology.as_deref().map(|t| (t, t.server())) {
            Some((topology, Some(ns))) => Some((topology, ns)),
            _ => return failed(spec, "a veth cell, but the run has no server namespace".into()),
        }
    } else if spec.load.link != Name::loopback() {
        let why = format!("link {} is not one this bench has over {}", spec.load.link, spec.load.transport);
        return failed(spec, why);
    } else {
        None
    };
    // Otherwise where the agents reach it (`--load-hosts`), or loopback.
    let agents_reach = match agent_hosts(cfg, spec.load.transport) {
        Some(hosts) => hosts.0.server_ip(),
        None => std::net::Ipv4Addr::LOCALHOST.into(),
    };
    let ip = netns.map_or(agents_reach, |(_, ns)| ns.ip.into());
    let addr = server::listen_addr_on(spec.load.transport, &spec.load.model, sockets, ip);
    // The scaling scenario gives the server its own share of the machine,
    // and the load generator (this thread and those it starts) the rest.
    let (server_cpus, client_cpus) = cfg.cpus_for(spec.load.server_cpus);
    if let Err(err) = server::pin_current_thread(&client_cpus) {
        return failed(spec, format!("cannot pin the load generator to CPUs {client_cpus:?}: {err}"));
    }
    let cell = run_pinned(cfg, spec, bar, &addr, (&server_cpus, &client_cpus), netns, cgroups);
    if client_cpus != cfg.client_cpus {
        // Back to the run's own client set; it was set once, so this cannot fail now.
        let _ = server::pin_current_thread(&cfg.client_cpus);
    }
    cell
}

/// How many agents drive a cell of `load`: with `--load-hosts`, the
/// launcher's, at most one per connection (an agent needs one); 1 without,
/// and for a scenario that drives no load generator (capacity holds its idle
/// connections from the bench itself, whatever the hosts).
pub fn agents_of(cfg: &RunConfig, load: &LoadKey) -> u32 {
    let Some(hosts) = agent_hosts(cfg, load.transport) else {
        return 1;
    };
    let drives =
        scenarios::of(&load.scenario).is_some_and(|s| matches!(s.drive(load, Opts::default()), Drive::Load(_)));
    if !drives {
        return 1;
    }
    crate::agents::count(hosts.0.agents(), load.connections)
}

/// The load hosts a cell over `transport` runs its load from: none when
/// the run has none, runs loadgen in this process, or its agents cannot
/// reach that transport (a Unix socket from another host: such a cell runs
/// with the local loadgen process).
fn agent_hosts(cfg: &RunConfig, transport: Transport) -> Option<&crate::plan::LoadHosts> {
    let hosts = cfg.load_hosts.as_ref()?;
    (matches!(cfg.load_path, LoadPath::Process(_)) && hosts.0.reaches(transport)).then_some(hosts)
}

/// How the load generator waits between open-loop sends: it spins when it
/// is one process on CPUs the server does not use (its lateness then stays
/// within a few µs at p99 on the reference VM, against 20–80 µs, and
/// milliseconds now and then, when it sleeps between sends: 3 × 2 runs at
/// 500 and 5,000 msg/s; the server's CPU the same); it sleeps when it
/// shares a CPU with the server, or when agents (several processes, maybe
/// on one CPU) carry the load.
fn pacer_wait(cfg: &RunConfig, load: &LoadKey, server_cpus: &[usize], client_cpus: &[usize]) -> PacerWait {
    let own_cpus = !client_cpus.iter().any(|cpu| server_cpus.contains(cpu));
    if own_cpus && agent_hosts(cfg, load.transport).is_none() { PacerWait::Spin } else { PacerWait::Sleep }
}

/// [`run_cell`] once the load generator's CPUs are set.
fn run_pinned(
    cfg: &RunConfig,
    spec: CellSpec,
    bar: &ProgressBar,
    addr: &str,
    (server_cpus, client_cpus): (&[usize], &[usize]),
    netns: Option<(&Topology, &Namespace)>,
    cgroups: Option<&Cgroups>,
) -> Cell {
    let Some(scenario) = scenarios::of(&spec.load.scenario) else {
        return failed(spec.clone(), format!("no scenario {} in this bench", spec.load.scenario));
    };
    // Made before the server and dropped after it: removed once it is stopped.
    let cgroup = match (cgroups, cfg.server_quota.filter(|_| scenario.server_quota().applies(&spec.load))) {
        (Some(cgroups), Some(cpus)) => match cgroups.create(Quota::new(cpus)) {
            Ok(cgroup) => Some(cgroup),
            Err(err) => return failed(spec, format!("cannot make the server's cgroup: {err}")),
        },
        _ => None,
    };
    let args = spec.load.server_args();
    let mut server = match Server::start_in(
        &cfg.server_bin,
        &spec.load.model,
        addr,
        &args,
        server_cpus,
        netns.map(|(_, ns)| ns),
        cgroup.as_ref(),
    ) {
        Ok(server) => server,
        Err(reason) => return failed(spec, reason),
    };
    // The links' carrier counts, to tell whether one went down during the
    // cell: the server's namespace and its bridge, or the agents' legs.
    let agents_topology = agent_hosts(cfg, spec.load.transport).and_then(|hosts| hosts.0.topology());
    let watched = netns.map(|(topology, _)| topology).or(agents_topology.as_deref());
    let carriers = watched.map(|topology| (topology, topology.carriers()));
    CURRENT_SERVER.store(server.pid(), Ordering::SeqCst);
    let children = spec.load.model.info().child_processes;
    let sampler = Sampler::start(server.pid(), children, server_cpus);
    let started = Instant::now();
    let mut cell = blank(spec.clone());
    // Its allotment: the quota, else its CPUs (what client_bound is read against).
    cell.allotment_cpus = Some(cgroup.as_ref().map_or(server_cpus.len() as f64, |g| g.quota.cpus));
    let mut problems: Vec<String> = Vec::new();
    let mut window = (started, started);
    let mut edges: Option<(Sample, Sample)> = None;
    let (duration, warmup) = match scenario.window() {
        Window::Capped { at_most, .. } => cfg.capped(at_most),
        Window::Full | Window::Own => (cfg.duration, cfg.warmup),
    };
    let opts = Opts {
        addr: server.endpoint.to_string(),
        connections: spec.load.connections,
        size: spec.load.size,
        duration,
        warmup,
        threads: None, // the CPUs of the client set
        rate: spec.load.offered(),
        pacer: pacer_wait(cfg, &spec.load, server_cpus, client_cpus),
        progress: false,
        ..Opts::default()
    };
    match scenario.drive(&spec.load, opts) {
        Drive::Idle => match capacity::run(&server.endpoint, server.pid(), u64::from(spec.load.connections)) {
            Ok(capacity) => {
                window = (started, Instant::now());
                cell.capacity = Some(capacity);
            }
            Err(err) => problems.push(format!("capacity: {err}")),
        },
        Drive::Load(opts) => {
            let label = scenarios::label(&spec.load);
            let pid = server.pid();
            // The server's tree read at the instants the window opens and
            // closes: its CPU over exactly the window the messages are counted in.
            // PSS at the close only: the window is over then, and a PSS
            // reading (smaps_rollup, up to ms for a tree of processes) takes
            // no measured send's time; with the sampler reading it only
            // twice a second, it is what makes every window have one.
            // Read from this thread's CPUs, the load generator's, not the
            // server's as the sampler is: a server of 100 busy processes
            // gives a reader on its CPU a turn every 100-300 ms, and an edge
            // whose CPU pass was preempted there read 140 ms of CPU too many
            // (`process`, 1.6 of its one CPU busy). Here a reading takes
            // 0.1 ms for a server of one process and 1.5-5 ms for `process`
            // at 100 connections, once at each edge: at the open edge, a
            // pause of that long in the load generator's sends (the
            // sampler's ten a second were what set its p99 lateness). How
            // long after the edge the CPU pass ended is kept, and flagged
            // past EDGE_READ of the window.
            let edge = |with_pss: bool| sampler::read_server(pid, children, with_pss).ok().flatten();
            // Its cgroup's throttling, read at the same instants.
            let throttle = || cgroup.as_ref().and_then(|g| g.read().ok());
            let (mut opened, mut closed) = (None, None);
            // At each edge of the window: the instant, the server's tree and
            // its throttling; the throttling and the CPUs' steal first, two
            // quick files, before the tree (whose memory pass, PSS at the
            // close, can take milliseconds).
            let mut mark = |mark: Mark| {
                let at = Instant::now();
                let (quota, steal) = (throttle(), crate::steal::read());
                let reading = Some((at, edge(mark == Mark::Close), quota, steal));
                match mark {
                    Mark::Open => opened = reading,
                    Mark::Close => closed = reading,
                }
            };
            let hosts = agent_hosts(cfg, cell.spec.load.transport);
            let result = match (&cfg.load_path, hosts) {
                // Several agents, the bench their coordinator: a cell of their
                // exact merge, each one's part kept beside it.
                (LoadPath::Process(bin), Some(hosts)) => {
                    bar.set_message(label.clone());
                    let stop = || cfg.interrupt.load(Ordering::SeqCst);
                    let port = cfg.coordinator_port;
                    crate::agents::run_on(hosts.0.as_ref(), port, bin, &opts, &stop, &mut mark).and_then(|run| {
                        let merged = run.merged().map_err(|err| format!("cannot merge the agents' reports: {err}"))?;
                        cell.coordination = Some(Coordination {
                            hosts: hosts.0.describe(),
                            t0_ns: run.t0_ns,
                            skew_ns: run.skew_ns,
                            window_secs: opts.duration.as_secs_f64(),
                        });
                        cell.agents = run.agents;
                        Ok(merged)
                    })
                }
                // The bench owns the window: it names the start, and is at
                // each edge when loadgen's clock is.
                (LoadPath::Process(bin), None) => {
                    bar.set_message(label.clone());
                    let stop = || cfg.interrupt.load(Ordering::SeqCst);
                    loadpath::run(bin, &opts, &stop, &mut mark)
                }
                (LoadPath::InProcess, _) => loadgen::run_observed(&opts, &mut |event| match event {
                    Event::Progress { rate, .. } => {
                        bar.set_message(format!("{label}: {} msg/s", loadgen::report::fmt_count(rate)))
                    }
                    Event::WindowOpened => mark(Mark::Open),
                    Event::WindowClosed => mark(Mark::Close),
                })
                .map_err(|err| err.to_string()),
            };
            match result {
                Ok(report) => {
                    if let (Some((open, a, qa, sa)), Some((close, b, qb, sb))) = (opened, closed) {
                        window = (open, close);
                        edges = a.zip(b);
                        // Agents elsewhere: the client's CPUs are not this machine's.
                        let client = hosts.is_none().then_some(client_cpus);
                        cell.steal = sa.zip(sb).and_then(|(sa, sb)| Steal::between(&sa, &sb, server_cpus, client));
                        if let Some(cgroup) = &cgroup {
                            match qa.zip(qb) {
                                Some((qa, qb)) => cell.quota = Some(Throttling::between(cgroup.quota, qa, qb)),
                                None => {
                                    problems.push("the server's cgroup could not be read at the window's edges".into())
                                }
                            }
                        }
                    }
                    cell.loadgen = Some(report);
                }
                Err(err) => problems.push(format!("loadgen: {err}")),
            }
        }
    }
    let samples = sampler.stop();
    // Unregistered before it can be reaped: the watcher never signals a PID
    // the system may have handed to another process.
    CURRENT_SERVER.store(0, Ordering::SeqCst);
    let crashed = server.exited();
    let shutdown = server.stop();
    if let Some(err) = &samples.error {
        problems.push(format!("server not measurable: {err}"));
    }
    if let Some((topology, before)) = &carriers {
        if let Some(down) = topology.went_down(before) {
            problems.push(format!("{down} during the cell: its figures are not the link's"));
        }
    }
    cell.server = sampler::summarise(&samples.samples, window.0, window.1, edges.as_ref().map(|(a, b)| (a, b)));
    if let (Some(stats), Some(report)) = (&cell.server, &cell.loadgen) {
        if report.requests.ok > 0 && edges.is_some() {
            cell.server_cpu_us_per_msg = Some(1e6 * stats.cpu_secs / report.requests.ok as f64);
        }
    }
    if let Some(status) = crashed {
        problems.push(format!("server exited during the cell ({status})"));
    } else if !shutdown.clean() {
        problems.push(format!(
            "unclean shutdown: exit code {:?} after {:.2} s, {} process(es) left",
            shutdown.exit_code, shutdown.stop_secs, shutdown.leftover_processes
        ));
    }
    cell.shutdown = Some(shutdown);
    cell.ok = problems.is_empty();
    cell.failure = (!problems.is_empty()).then(|| problems.join("; "));
    cell
}

#[cfg(test)]
mod tests {
    use echo_common::{ModelInfo, Transport};

    use super::*;
    use crate::load::{Rate, ScenarioId};
    use crate::models::Model;

    fn spec(scenario: &'static str, rate: Option<f64>, batch: Option<u32>) -> CellSpec {
        let model = Model::new(ModelInfo {
            name: "iterative".into(),
            summary: "".into(),
            default_max_connections: 1,
            child_processes: false,
            serves_at_once: Some(1),
            baseline: true,
            reuse_port: false,
            colour: "#000000".into(),
            datagrams: Some("one thread".into()),
            datagram_batch: true,
            blocks_at_once: None,
            blocking_choice: false,
        });
        let load = LoadKey {
            rate: rate.map(Rate),
            batch,
            ..LoadKey::new(ScenarioId::new(scenario), model, Transport::Udp, 100, 64)
        };
        CellSpec { load, repeat: 0 }
    }

    #[test]
    fn a_batch_variant_climbs_apart_from_its_model_and_only_open_loop_steps_climb() {
        let plain = climb_of(&spec("udp", Some(10_000.0), None)).expect("a udp step climbs");
        let batch = climb_of(&spec("udp", Some(10_000.0), Some(32))).expect("so does its batch variant");
        assert_ne!(plain, batch, "one stopping must not stop the other");
        assert_eq!(climb_of(&spec("udp", Some(25_000.0), None)), Some(plain), "the next step, same climb");
        assert_eq!(climb_of(&spec("udp", None, None)), None, "closed loop does not climb");
        assert_eq!(climb_of(&spec("throughput", None, None)), None);
        assert!(climb_of(&spec("latency", Some(10_000.0), None)).is_some_and(|c| c.0.scenario.name() == "latency"));
        assert_eq!(climb_of(&spec("cost", Some(10_000.0), None)), None, "every cost rate runs");
    }
}
