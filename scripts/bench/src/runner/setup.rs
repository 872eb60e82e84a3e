//! What a run sets up around its cells: the server's quota, the settings
//! results.json records, the watcher that stops a cell's server on a
//! signal, and the blank cell each cell starts from.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use crate::load::CellSpec;
use crate::plan::{LoadPath, RunConfig};
use crate::quota::{Cgroups, Quota};
use crate::results::{Cell, QuotaSettings, Settings};
use crate::scenario::{Scenario as _, Throttled};
use crate::scenarios::ALL;
use crate::scenarios::control::Control;

/// The server's CPU quota of a run: the cgroups its throttled servers run
/// in (none when it has no quota, no scenario taking one, or no cgroups
/// here), and what results.json records of it. Without cgroups it says so
/// in one line, and the run goes on unthrottled.
pub(super) fn rig(cfg: &RunConfig) -> (Option<Cgroups>, Option<QuotaSettings>) {
    // The control cell runs beside the matrix's scenarios when it is on.
    let runs = |s: &&&dyn crate::scenario::Scenario| {
        cfg.shape.runs(&s.id()) || (s.id() == Control.id() && cfg.control_every.is_some())
    };
    let scenarios: Vec<String> =
        ALL.iter().filter(|s| s.server_quota() != Throttled::None).filter(runs).map(|s| s.name().to_owned()).collect();
    if scenarios.is_empty() {
        return (None, None);
    }
    let mut record =
        QuotaSettings { cpus: cfg.server_quota, period_us: None, mechanism: None, unavailable: None, scenarios };
    let Some(cpus) = cfg.server_quota else { return (None, Some(record)) };
    let quota = Quota::new(cpus);
    record.period_us = Some(quota.period_us);
    match Cgroups::probe(quota) {
        Ok(cgroups) => {
            eprintln!(
                "bench: server quota {cpus} CPU per {} ms period ({}) for {}",
                quota.period_us as f64 / 1000.0,
                cgroups.mechanism(),
                crate::scenarios::quota_words(&record.scenarios)
            );
            record.mechanism = Some(cgroups.mechanism());
            (Some(cgroups), Some(record))
        }
        Err(why) => {
            eprintln!(
                "bench: server quota unavailable here ({why}): the servers of {} run unthrottled, and the report \
                 says so",
                crate::scenarios::quota_words(&record.scenarios)
            );
            record.unavailable = Some(why);
            (None, Some(record))
        }
    }
}

/// What results.json records of the run's shape: the shape's own fields,
/// and each scenario's records.
pub(super) fn settings(cfg: &RunConfig) -> Settings {
    let shape = &cfg.shape;
    let mut settings = Settings {
        models: shape.models.iter().map(|m| m.info().clone()).collect(),
        scenarios: shape.scenarios.iter().map(|s| s.name().to_owned()).collect(),
        transports: shape.transports.clone(),
        links: shape.links.clone(),
        connections: shape.connections.clone(),
        sizes: shape.sizes.clone(),
        capacity: shape.capacity.clone(),
        repeat: shape.repeat,
        throughput_repeat: shape.throughput_repeat.min(shape.repeat),
        duration_secs: cfg.duration.as_secs_f64(),
        warmup_secs: cfg.warmup.as_secs_f64(),
        server_cpus: cfg.server_cpus.clone(),
        client_cpus: cfg.client_cpus.clone(),
        load_path: Some(match cfg.load_path {
            LoadPath::Process(_) => "process".into(),
            LoadPath::InProcess => "in-process".into(),
        }),
        load_hosts: cfg.load_hosts.as_ref().map(|h| h.0.describe()),
        server_quota: None,
        control_every_secs: cfg.control_every.map(|d| d.as_secs_f64()),
        scaling: None,
        ladder: None,
        udp: None,
        work: None,
        cost: None,
        quick: cfg.quick,
        keep_cpus_awake: cfg.keep_cpus_awake,
    };
    for scenario in ALL.iter().filter(|s| shape.runs(&s.id())) {
        scenario.record(cfg, &mut settings);
    }
    settings
}

/// The PID of the server of the cell under way (0: none), for [`Watcher`].
pub(super) static CURRENT_SERVER: AtomicI32 = AtomicI32::new(0);

/// Watches the interrupt flag during a run: on the first signal it stops
/// the server of the cell under way (SIGTERM), so that cell ends within its
/// window instead of running its course; the runner then drops it (a
/// failed cell after a signal is not a measurement) and writes the report.
pub(super) struct Watcher {
    done: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    pub(super) fn start(interrupt: Arc<AtomicBool>) -> Watcher {
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

pub(super) fn failed(spec: CellSpec, reason: String) -> Cell {
    Cell { failure: Some(reason), ..blank(spec) }
}

/// A cell with nothing recorded yet.
pub(super) fn blank(spec: CellSpec) -> Cell {
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
        agents: Vec::new(),
        coordination: None,
        allotment_cpus: None,
        notes: Vec::new(),
        quota: None,
        steal: None,
    }
}
