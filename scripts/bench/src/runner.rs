//! Runs the matrix cell by cell: start the server pinned to its CPUs, sample
//! it, load it from the client CPUs, stop it, record — and save after every cell.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use loadgen::{Event, Opts};

use crate::ladder;
use crate::load::{CellSpec, LoadKey};
use crate::matrix::{self, Scenario, Shape};
use crate::results::{Cell, Environment, Excluded, Ladder, Results, Scaling, Settings, UdpSettings, utc_now};
use crate::sampler::{self, Sample, Sampler};
use crate::server::{self, Server};
use crate::udp;
use crate::{capacity, procfs, render, validity};

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub shape: Shape,
    pub duration: Duration,
    pub warmup: Duration,
    pub server_cpus: Vec<usize>,
    pub client_cpus: Vec<usize>,
    /// Every CPU this run may use (the scaling scenario splits them itself).
    pub available_cpus: Vec<usize>,
    pub server_bin: PathBuf,
    /// The folder that receives `<UTC timestamp>-<hostname>/`.
    pub results_root: PathBuf,
    pub quick: bool,
    pub progress: bool,
    /// The latency ladder's SLO on the CO-corrected p99.
    pub slo_p99: Duration,
    /// Set (by a SIGINT/SIGTERM handler) to stop after the current cell.
    pub interrupt: Arc<AtomicBool>,
}

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
    let ladder = cfg.shape.scenarios.contains(&Scenario::Latency).then(|| {
        let (window, warmup) = step_window(cfg);
        Ladder {
            rates: cfg.shape.rates.clone(),
            slo_p99_us: cfg.slo_p99.as_micros() as u64,
            connections: ladder::CONNECTIONS,
            size: matrix::SMALL,
            window_secs: window.as_secs_f64(),
            warmup_secs: warmup.as_secs_f64(),
            excluded: cfg
                .shape
                .models
                .iter()
                .filter_map(|m| Some(Excluded { model: m.name().to_owned(), reason: ladder::excluded(m)? }))
                .collect(),
        }
    });
    let mut results = Results {
        schema_version: crate::results::SCHEMA_VERSION,
        environment,
        settings: Settings {
            models: cfg.shape.models.iter().map(|m| m.info().clone()).collect(),
            scenarios: cfg.shape.scenarios.iter().map(|s| s.name().to_owned()).collect(),
            transports: cfg.shape.transports.clone(),
            connections: cfg.shape.connections.clone(),
            sizes: cfg.shape.sizes.clone(),
            capacity: cfg.shape.capacity.clone(),
            repeat: cfg.shape.repeat,
            throughput_repeat: cfg.shape.throughput_repeat.min(cfg.shape.repeat),
            duration_secs: cfg.duration.as_secs_f64(),
            warmup_secs: cfg.warmup.as_secs_f64(),
            server_cpus: cfg.server_cpus.clone(),
            client_cpus: cfg.client_cpus.clone(),
            scaling: cfg.shape.scenarios.contains(&Scenario::Scaling).then(|| Scaling {
                server_cpus: cfg.shape.scaling.clone(),
                limit: matrix::scaling_limit(cfg.available_cpus.len()),
            }),
            ladder,
            udp: cfg.shape.scenarios.contains(&Scenario::Udp).then(|| {
                let (window, warmup) = step_window(cfg);
                UdpSettings {
                    flows: udp::FLOWS.to_vec(),
                    sizes: udp::SIZES.to_vec(),
                    rates: cfg.shape.udp_rates.clone(),
                    step_flows: udp::STEP_FLOWS,
                    step_size: matrix::SMALL,
                    batch: udp::BATCH,
                    max_loss_percent: udp::MAX_LOSS_PERCENT,
                    slo_p99_us: cfg.slo_p99.as_micros() as u64,
                    timeout_ms: udp::TIMEOUT.as_millis() as u64,
                    window_secs: window.as_secs_f64(),
                    warmup_secs: warmup.as_secs_f64(),
                    repeat: cfg.shape.udp_repeat.min(cfg.shape.repeat),
                    rmem_default: udp::core_default("rmem_default"),
                    wmem_default: udp::core_default("wmem_default"),
                    stream_only: cfg
                        .shape
                        .models
                        .iter()
                        .filter(|m| udp::variants(m).is_empty())
                        .map(|m| m.name().to_owned())
                        .collect(),
                }
            }),
            quick: cfg.quick,
        },
        cells: Vec::new(),
        complete: false,
    };
    results.save(&json)?;

    let specs = matrix::cells(&cfg.shape);
    let mut progress = Progress::new(cfg.progress, specs.len());
    let _watcher = Watcher::start(Arc::clone(&cfg.interrupt));
    // The open-loop climbs (latency ladder, udp sustained rate) that have
    // stopped, each named by its load at no particular rate and its repeat.
    let mut stopped: HashSet<Climb> = HashSet::new();
    let mut interrupted = false;
    for (i, spec) in specs.iter().cloned().enumerate() {
        if cfg.interrupt.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let climb = climb_of(&spec);
        if climb.as_ref().is_some_and(|c| stopped.contains(c)) {
            continue; // counted off the total when the climb stopped
        }
        progress.bar.set_message(spec.label());
        let cell = run_cell(cfg, spec, &progress.bar, sockets.path());
        if cfg.interrupt.load(Ordering::SeqCst) {
            // The signal came while it ran: its server was stopped under it
            // (or its figures would mix both): not a measurement.
            interrupted = true;
            break;
        }
        if let Some(climb) = climb {
            let slo = match cell.spec.load.scenario {
                Scenario::Udp => results.settings.udp.as_ref().map(|u| u.slo_p99_us),
                _ => results.settings.ladder.as_ref().map(|l| l.slo_p99_us),
            };
            if !ladder::verdict(&cell, slo.unwrap_or(u64::MAX)).sustained() {
                // The steps above will not run: one cell fewer each to wait for.
                let ahead = specs[i + 1..].iter().filter(|s| climb_of(s).as_ref() == Some(&climb));
                progress.skip(ahead.count());
                stopped.insert(climb);
            }
        }
        if !cell.ok {
            progress.bar.println(format!("FAILED {}: {}", cell.spec.label(), cell.failure.as_deref().unwrap_or("?")));
        }
        results.cells.push(cell);
        validity::annotate(&mut results);
        results.save(&json)?;
        if let Some(cell) = results.cells.last() {
            progress.done(cell);
        }
    }
    progress.bar.finish_and_clear();
    results.complete = !interrupted;
    validity::annotate(&mut results);
    results.save(&json)?;
    render::write_report(&results, &dir)?;
    Ok(Outcome { dir, results, interrupted })
}

/// An open-loop climb: its steps' load but for the rate, and the repeat.
type Climb = (LoadKey, u32);

/// The climb a cell is a step of (the latency ladder's, or the udp
/// scenario's sustained-rate steps); `None` for any other cell. Any other
/// axis tells climbs apart: a model's `--batch` variant climbs on its own,
/// one stopping leaves the other going.
fn climb_of(spec: &CellSpec) -> Option<Climb> {
    let climbing = matches!(spec.load.scenario, Scenario::Latency | Scenario::Udp) && spec.load.rate.is_some();
    climbing.then(|| (spec.load.climb(), spec.repeat))
}

/// The PID of the server of the cell under way (0: none), for [`Watcher`].
static CURRENT_SERVER: AtomicI32 = AtomicI32::new(0);

/// Watches the interrupt flag during a run: on the first signal it stops
/// the server of the cell under way (SIGTERM), so that cell ends within its
/// window instead of running its course; the runner then drops it (a
/// failed cell after a signal is not a measurement) and writes the report.
struct Watcher {
    done: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(interrupt: Arc<AtomicBool>) -> Watcher {
        let done = Arc::new(AtomicBool::new(false));
        let finished = Arc::clone(&done);
        let handle = std::thread::spawn(move || {
            let mut stopped = 0;
            while !finished.load(Ordering::SeqCst) {
                if interrupt.load(Ordering::SeqCst) {
                    if stopped == 0 {
                        eprintln!(
                            "bench: stopping: the cell under way is dropped, the report of the finished cells is \
                             being written (a second signal exits at once)"
                        );
                        stopped = -1;
                    }
                    // The server of our own cell, still registered as running;
                    // also one registered after the signal (its start was under
                    // way): each is stopped once.
                    let pid = CURRENT_SERVER.load(Ordering::SeqCst);
                    if pid > 0 && pid != stopped {
                        let _ =
                            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
                        stopped = pid;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Watcher { done, handle: Some(handle) }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// The window and warm-up of a latency-ladder step.
fn step_window(cfg: &RunConfig) -> (Duration, Duration) {
    let (window, warmup) = ladder::STEP_WINDOW;
    (cfg.duration.min(window), cfg.warmup.min(warmup))
}

/// The progress display: a bar on a terminal, else (stderr redirected) one
/// line per finished cell with done/total, the ETA and the cell's headline.
struct Progress {
    bar: ProgressBar,
    lines: bool,
    total: usize,
    done: usize,
    started: Instant,
}

impl Progress {
    fn new(enabled: bool, total: usize) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        Progress {
            bar: progress_bar(enabled && terminal, total as u64),
            lines: !terminal,
            total,
            done: 0,
            started: Instant::now(),
        }
    }

    /// Ladder steps that will not run: `n` cells fewer to wait for.
    fn skip(&mut self, n: usize) {
        self.total -= n;
        self.bar.set_length(self.total as u64);
    }

    fn done(&mut self, cell: &Cell) {
        self.done += 1;
        self.bar.inc(1);
        if self.lines {
            eprintln!("{}", self.line(cell));
        }
    }

    /// `[12/180, ETA 14m 2s] throughput tokio tcp c=100 s=64B: 182,113 msg/s (client_bound)`
    fn line(&self, cell: &Cell) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let left = self.total.saturating_sub(self.done) as f64 * elapsed / self.done.max(1) as f64;
        let eta = humantime::format_duration(Duration::from_secs(left.round() as u64));
        let figure = match (cell.ok, validity::headline(cell)) {
            (false, _) => format!("FAILED: {}", cell.failure.as_deref().unwrap_or("?")),
            (true, Some(v)) => validity::headline_name(cell).1(v),
            (true, None) => "ok".into(),
        };
        let mut kinds: Vec<&str> = cell.flags.iter().map(|f| f.kind.name()).collect();
        kinds.dedup();
        let flags = if kinds.is_empty() { String::new() } else { format!(" [{}]", kinds.join(", ")) };
        format!("[{}/{}, ETA {eta}] {}: {figure}{flags}", self.done, self.total, cell.spec.label())
    }
}

fn progress_bar(enabled: bool, cells: u64) -> ProgressBar {
    let target = if enabled { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(cells), target);
    let style = ProgressStyle::with_template("[{elapsed_precise}] {wide_bar} {pos}/{len} cells, ETA {eta} — {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

fn sanitize(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    if clean.is_empty() { "host".into() } else { clean }
}

fn failed(spec: CellSpec, reason: String) -> Cell {
    Cell { failure: Some(reason), ..blank(spec) }
}

/// A cell with nothing recorded yet.
fn blank(spec: CellSpec) -> Cell {
    Cell {
        spec,
        ok: false,
        failure: None,
        loadgen: None,
        capacity: None,
        server: None,
        server_cpu_us_per_msg: None,
        shutdown: None,
        flags: Vec::new(),
    }
}

/// One cell, start to finish. Never panics on a misbehaving server: every
/// problem becomes the cell's failure reason.
pub fn run_cell(cfg: &RunConfig, spec: CellSpec, bar: &ProgressBar, sockets: &Path) -> Cell {
    let addr = server::listen_addr(spec.load.transport, &spec.load.model, sockets);
    // The scaling scenario gives the server its own share of the machine,
    // and the load generator (this thread and those it starts) the rest.
    let (server_cpus, client_cpus) = match spec.load.server_cpus {
        Some(k) => matrix::scaling_split(&cfg.available_cpus, k),
        None => (cfg.server_cpus.clone(), cfg.client_cpus.clone()),
    };
    if let Err(err) = server::pin_current_thread(&client_cpus) {
        return failed(spec, format!("cannot pin the load generator to CPUs {client_cpus:?}: {err}"));
    }
    let cell = run_pinned(cfg, spec, bar, &addr, &server_cpus);
    if client_cpus != cfg.client_cpus {
        // Back to the run's own client set; it was set once, so this cannot fail now.
        let _ = server::pin_current_thread(&cfg.client_cpus);
    }
    cell
}

/// [`run_cell`] once the load generator's CPUs are set.
fn run_pinned(cfg: &RunConfig, spec: CellSpec, bar: &ProgressBar, addr: &str, server_cpus: &[usize]) -> Cell {
    let args: Vec<String> = spec.load.batch.map(|n| vec!["--batch".into(), n.to_string()]).unwrap_or_default();
    let mut server = match Server::start(&cfg.server_bin, &spec.load.model, addr, &args, server_cpus) {
        Ok(server) => server,
        Err(reason) => return failed(spec, reason),
    };
    CURRENT_SERVER.store(server.pid(), Ordering::SeqCst);
    let sampler = Sampler::start(server.pid());
    let started = Instant::now();
    let mut cell = blank(spec.clone());
    let mut problems: Vec<String> = Vec::new();
    let mut window = (started, started);
    let mut edges: Option<(Sample, Sample)> = None;
    match spec.load.scenario {
        Scenario::Capacity => match capacity::run(&server.endpoint, server.pid(), u64::from(spec.load.connections)) {
            Ok(capacity) => {
                window = (started, Instant::now());
                cell.capacity = Some(capacity);
            }
            Err(err) => problems.push(format!("capacity: {err}")),
        },
        _ => {
            let (duration, warmup) = match spec.load.scenario {
                Scenario::Transport => {
                    let (window, warmup) = matrix::TRANSPORT_WINDOW;
                    (cfg.duration.min(window), cfg.warmup.min(warmup))
                }
                Scenario::Latency | Scenario::Udp => step_window(cfg),
                _ => (cfg.duration, cfg.warmup),
            };
            let opts = Opts {
                addr: server.endpoint.to_string(),
                connections: spec.load.connections,
                size: spec.load.size,
                duration,
                warmup,
                threads: None, // the CPUs of the client set
                rate: spec.load.offered(),
                reconnect_every: (spec.load.scenario == Scenario::Churn).then_some(1),
                // UDP: a datagram with no echo by then is lost, and its flow
                // sends the next (loadgen's 5 s would stall a flow for most
                // of a 1 s window).
                timeout: if spec.load.scenario == Scenario::Udp { udp::TIMEOUT } else { Opts::default().timeout },
                progress: false,
                ..Opts::default()
            };
            let label = spec.label();
            let pid = server.pid();
            // The server's tree read at the instants the window opens and
            // closes: its CPU over exactly the window the messages are counted in.
            let edge =
                || procfs::read_tree(pid, false).ok().flatten().map(|reading| Sample { at: Instant::now(), reading });
            let (mut opened, mut closed) = (None, None);
            let result = loadgen::run_observed(&opts, &mut |event| match event {
                Event::Progress { rate, .. } => {
                    bar.set_message(format!("{label}: {} msg/s", loadgen::report::fmt_count(rate)))
                }
                Event::WindowOpened => opened = Some((Instant::now(), edge())),
                Event::WindowClosed => closed = Some((Instant::now(), edge())),
            });
            match result {
                Ok(report) => {
                    if let (Some((open, a)), Some((close, b))) = (opened, closed) {
                        window = (open, close);
                        edges = a.zip(b);
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
    use crate::load::Rate;
    use crate::models::Model;

    fn spec(scenario: Scenario, rate: Option<f64>, batch: Option<u32>) -> CellSpec {
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
        });
        let load = LoadKey { rate: rate.map(Rate), batch, ..LoadKey::new(scenario, model, Transport::Udp, 100, 64) };
        CellSpec { load, repeat: 0 }
    }

    #[test]
    fn a_batch_variant_climbs_apart_from_its_model_and_only_open_loop_steps_climb() {
        let plain = climb_of(&spec(Scenario::Udp, Some(10_000.0), None)).expect("a udp step climbs");
        let batch = climb_of(&spec(Scenario::Udp, Some(10_000.0), Some(32))).expect("so does its batch variant");
        assert_ne!(plain, batch, "one stopping must not stop the other");
        assert_eq!(climb_of(&spec(Scenario::Udp, Some(25_000.0), None)), Some(plain), "the next step, same climb");
        assert_eq!(climb_of(&spec(Scenario::Udp, None, None)), None, "closed loop does not climb");
        assert_eq!(climb_of(&spec(Scenario::Throughput, None, None)), None);
        assert!(
            climb_of(&spec(Scenario::Latency, Some(10_000.0), None)).is_some_and(|c| c.0.scenario == Scenario::Latency)
        );
    }
}
