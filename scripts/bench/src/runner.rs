//! Runs the matrix cell by cell: start the server pinned to its CPUs, sample
//! it, load it from the client CPUs, stop it, record — and save after every cell.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use echo_common::Transport;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use loadgen::{Event, Opts};

use crate::matrix::{self, CellSpec, LATENCY_RATE_SHARE, Scenario, Shape};
use crate::models::Model;
use crate::results::{Cell, Environment, Results, Scaling, Settings, utc_now};
use crate::sampler::{self, Sampler};
use crate::server::{self, Server};
use crate::{capacity, render};

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
}

/// A finished (or interrupted) run.
#[derive(Debug)]
pub struct Outcome {
    pub dir: PathBuf,
    pub results: Results,
}

/// Runs every cell; writes results.json after each, then README.md and charts.
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
            duration_secs: cfg.duration.as_secs_f64(),
            warmup_secs: cfg.warmup.as_secs_f64(),
            server_cpus: cfg.server_cpus.clone(),
            client_cpus: cfg.client_cpus.clone(),
            scaling: cfg.shape.scenarios.contains(&Scenario::Scaling).then(|| Scaling {
                server_cpus: cfg.shape.scaling.clone(),
                limit: matrix::scaling_limit(cfg.available_cpus.len()),
            }),
            latency_rates: Default::default(),
            quick: cfg.quick,
        },
        cells: Vec::new(),
        complete: false,
    };
    results.save(&json)?;

    let specs = matrix::cells(&cfg.shape);
    let bar = progress_bar(cfg.progress, specs.len() as u64);
    for mut spec in specs {
        bar.set_message(spec.label());
        if spec.scenario == Scenario::Latency {
            spec.rate = latency_rate(cfg, spec.transport, &mut results, &json, &bar, sockets.path())?;
        }
        let cell = match spec.rate {
            None if spec.scenario == Scenario::Latency => failed(spec, "no rate: every calibration cell failed".into()),
            _ => run_cell(cfg, spec, &bar, sockets.path()),
        };
        if !cell.ok {
            bar.println(format!("FAILED {}: {}", cell.spec.label(), cell.failure.as_deref().unwrap_or("?")));
        }
        results.cells.push(cell);
        results.save(&json)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    results.complete = true;
    results.save(&json)?;
    render::write_report(&results, &dir)?;
    Ok(Outcome { dir, results })
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

/// The open-loop rate every model can sustain over `transport`: half the
/// slowest model's median closed-loop rate at 100 connections, 64 B — from
/// the throughput cells already run, or from calibration cells run now.
fn latency_rate(
    cfg: &RunConfig,
    transport: Transport,
    results: &mut Results,
    json: &Path,
    bar: &ProgressBar,
    sockets: &Path,
) -> anyhow::Result<Option<f64>> {
    if let Some(rate) = results.settings.latency_rates.get(&transport) {
        return Ok(Some(*rate));
    }
    for model in &cfg.shape.models {
        if model_rate(results, model, transport).is_none() {
            let spec = CellSpec {
                scenario: Scenario::Throughput,
                model: model.clone(),
                transport,
                connections: matrix::LATENCY_CONNECTIONS,
                size: matrix::SMALL,
                rate: None,
                repeat: 0,
                server_cpus: None,
            };
            bar.set_message(format!("calibrating: {}", spec.label()));
            let cell = run_cell(cfg, spec, bar, sockets);
            results.cells.push(cell);
            results.save(json)?;
        }
    }
    let slowest =
        cfg.shape.models.iter().filter_map(|m| model_rate(results, m, transport)).fold(f64::INFINITY, f64::min);
    let rate = slowest.is_finite().then(|| (slowest * LATENCY_RATE_SHARE).round().max(1.0));
    if let Some(rate) = rate {
        results.settings.latency_rates.insert(transport, rate);
    }
    Ok(rate)
}

/// Median closed-loop throughput of `model` at the latency scenario's load.
fn model_rate(results: &Results, model: &Model, transport: Transport) -> Option<f64> {
    let mut rates: Vec<f64> = results
        .cells
        .iter()
        .filter(|c| {
            c.ok && c.spec.scenario == Scenario::Throughput
                && c.spec.model == *model
                && c.spec.transport == transport
                && c.spec.connections == matrix::LATENCY_CONNECTIONS
                && c.spec.size == matrix::SMALL
        })
        .filter_map(|c| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec))
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len().checked_sub(1)? / 2).copied()
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
    let addr = server::listen_addr(spec.transport, &spec.model, sockets);
    // The scaling scenario gives the server its own share of the machine,
    // and the load generator (this thread and those it starts) the rest.
    let (server_cpus, client_cpus) = match spec.server_cpus {
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
    let mut server = match Server::start(&cfg.server_bin, &spec.model, addr, &[], server_cpus) {
        Ok(server) => server,
        Err(reason) => return failed(spec, reason),
    };
    let sampler = Sampler::start(server.pid());
    let started = Instant::now();
    let mut cell = blank(spec.clone());
    let mut problems: Vec<String> = Vec::new();
    let mut window = (started, started);
    match spec.scenario {
        Scenario::Capacity => match capacity::run(&server.endpoint, server.pid(), u64::from(spec.connections)) {
            Ok(capacity) => {
                window = (started, Instant::now());
                cell.capacity = Some(capacity);
            }
            Err(err) => problems.push(format!("capacity: {err}")),
        },
        _ => {
            let (duration, warmup) = match spec.scenario {
                Scenario::Transport => {
                    let (window, warmup) = matrix::TRANSPORT_WINDOW;
                    (cfg.duration.min(window), cfg.warmup.min(warmup))
                }
                _ => (cfg.duration, cfg.warmup),
            };
            let opts = Opts {
                addr: server.endpoint.to_string(),
                connections: spec.connections,
                size: spec.size,
                duration,
                warmup,
                threads: None, // the CPUs of the client set
                rate: spec.rate,
                reconnect_every: (spec.scenario == Scenario::Churn).then_some(1),
                progress: false,
                ..Opts::default()
            };
            let label = spec.label();
            let (mut opened, mut closed) = (None, None);
            let result = loadgen::run_observed(&opts, &mut |event| match event {
                Event::Progress { rate, .. } => {
                    bar.set_message(format!("{label}: {} msg/s", loadgen::report::fmt_count(rate)))
                }
                Event::WindowOpened => opened = Some(Instant::now()),
                Event::WindowClosed => closed = Some(Instant::now()),
            });
            match result {
                Ok(report) => {
                    if let (Some(open), Some(close)) = (opened, closed) {
                        window = (open, close);
                    }
                    cell.loadgen = Some(report);
                }
                Err(err) => problems.push(format!("loadgen: {err}")),
            }
        }
    }
    let samples = sampler.stop();
    let crashed = server.exited();
    let shutdown = server.stop();
    if let Some(err) = &samples.error {
        problems.push(format!("server not measurable: {err}"));
    }
    cell.server = sampler::summarise(&samples.samples, window.0, window.1);
    if let (Some(stats), Some(report)) = (&cell.server, &cell.loadgen) {
        if report.requests.ok > 0 {
            let cpu = stats.cpu_user_secs + stats.cpu_sys_secs;
            cell.server_cpu_us_per_msg = Some(1e6 * cpu / report.requests.ok as f64);
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
