//! What a run is asked to do: the matrix's [`Shape`] (models, scenarios
//! and the loads each scenario takes from it) and the [`RunConfig`] around
//! it (windows, CPUs, binaries, folders). Built by `main` from the command
//! line and the scenarios' defaults ([`crate::matrix::default_shape`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use echo_common::Transport;
use serde::{Deserialize, Serialize};

use crate::hosts::Launcher;
use crate::hosts::netns::Topology;
use crate::load::{Name, ScenarioId};
use crate::models::Model;
use crate::work_level::Level;

/// The shape of a matrix.
#[derive(Debug, Clone)]
pub struct Shape {
    pub models: Vec<Model>,
    /// The scenarios to run, in the order of the registry
    /// ([`crate::scenarios::ALL`]).
    pub scenarios: Vec<ScenarioId>,
    /// Transports of every scenario but `transport` (which always runs both).
    pub transports: Vec<Transport>,
    /// Links of every scenario's TCP and UDP cells (a Unix socket has no
    /// link: its cells run once, as `loopback`); the transport scenario
    /// adds a veth cell to its pairs when this has `veth`.
    pub links: Vec<Name>,
    pub connections: Vec<u32>,
    pub sizes: Vec<u32>,
    pub capacity: Vec<u32>,
    /// Server CPU counts of the scaling scenario.
    pub scaling: Vec<u32>,
    /// Connection counts of the transport scenario.
    pub transport_connections: Vec<u32>,
    /// The latency ladder's offered rates, msg/s, ascending.
    pub rates: Vec<f64>,
    pub repeat: u32,
    /// Repeats of the throughput scenario (at most `repeat`).
    pub throughput_repeat: u32,
    /// The udp scenario's offered rates, datagrams/s, ascending.
    pub udp_rates: Vec<f64>,
    /// Repeats of the udp scenario (at most `repeat`).
    pub udp_repeat: u32,
    /// The work scenario's levels (what each message costs the server).
    pub work_levels: Vec<Level>,
    /// Repeats of the work scenario's closed loop (at most `repeat`).
    pub work_repeat: u32,
    /// Flows and datagram sizes of the udp scenario's closed loop.
    pub udp_flows: Vec<u32>,
    pub udp_sizes: Vec<u32>,
    /// The cost scenario's offered rates, msg/s, ascending.
    pub cost_rates: Vec<f64>,
}

impl Shape {
    /// A shape over `models` with nothing to run yet: the scenarios fill in
    /// their own defaults.
    pub fn empty(models: Vec<Model>) -> Shape {
        Shape {
            models,
            scenarios: Vec::new(),
            transports: vec![Transport::Tcp],
            links: vec![Name::loopback()],
            connections: Vec::new(),
            sizes: Vec::new(),
            capacity: Vec::new(),
            scaling: Vec::new(),
            transport_connections: Vec::new(),
            rates: Vec::new(),
            repeat: 1,
            throughput_repeat: 1,
            udp_rates: Vec::new(),
            udp_repeat: 1,
            work_levels: Vec::new(),
            work_repeat: 1,
            udp_flows: Vec::new(),
            udp_sizes: Vec::new(),
            cost_rates: Vec::new(),
        }
    }

    /// Whether `scenario` runs.
    pub fn runs(&self, scenario: &ScenarioId) -> bool {
        self.scenarios.contains(scenario)
    }
}

/// How the load generator runs (`--load-path`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadPath {
    /// `loadgen --control` as a process of its own: the bench names the
    /// start and reads the server at the window's edges
    /// ([`crate::loadpath`]). The binary.
    Process(PathBuf),
    /// The loadgen library inside the bench, which tells the bench when
    /// its window opens and closes (the earlier way, kept to measure what
    /// the process costs).
    InProcess,
}

/// The agents of `--load-hosts`, shared by every cell of the run.
#[derive(Clone)]
pub struct LoadHosts(pub Arc<dyn Launcher>);

impl std::fmt::Debug for LoadHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.describe())
    }
}

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
    /// How the load generator runs.
    pub load_path: LoadPath,
    /// Several agents instead of one loadgen process (`--load-hosts`);
    /// `None`: one process (or the library), as before.
    pub load_hosts: Option<LoadHosts>,
    /// The port the coordinator of `load_hosts` listens on (0: any free one).
    pub coordinator_port: u16,
    /// The folder that receives `<UTC timestamp>-<hostname>/`.
    pub results_root: PathBuf,
    pub quick: bool,
    pub progress: bool,
    /// The SLO of the open-loop climbs (the latency ladder, the udp
    /// sustained rate) on the CO-corrected p99.
    pub slo_p99: Duration,
    /// The server's CPU quota in the scenarios that take one
    /// ([`crate::scenario::Scenario::server_quota`]), CPUs; `None`:
    /// unthrottled (`--server-quota none`).
    pub server_quota: Option<f64>,
    /// How often the control cell runs (besides the start and the end);
    /// `None`: no control cell (`--control none`).
    pub control_every: Option<Duration>,
    /// Set (by a SIGINT/SIGTERM handler) to stop after the current cell.
    pub interrupt: Arc<AtomicBool>,
    /// The namespaces of a run with `veth` cells: the server's, on a
    /// bridge with the bench (removed when the last holder drops it).
    pub topology: Option<Arc<Topology>>,
    /// `--keep-cpus-awake on`: idle CPUs are asked to stay awake for the run.
    pub keep_cpus_awake: bool,
    /// What came of it, for the environment ([`crate::host::cpu_wakeup_words`]).
    pub cpu_wakeup: String,
}

impl RunConfig {
    /// The CPUs of the server and of the load generator for a cell whose
    /// server runs on `server_cpus` CPUs (the scaling scenario's axis): the
    /// first of the run's CPUs for the server, the rest for the load
    /// generator (all of them shared if nothing is left); the run's own
    /// sets for any other cell.
    pub fn cpus_for(&self, server_cpus: Option<u32>) -> (Vec<usize>, Vec<usize>) {
        match server_cpus {
            Some(k) => split(&self.available_cpus, k),
            None => (self.server_cpus.clone(), self.client_cpus.clone()),
        }
    }

    /// The window and warm-up of a cell capped at `at_most`: the run's, or
    /// shorter.
    pub fn capped(&self, (window, warmup): (Duration, Duration)) -> (Duration, Duration) {
        (self.duration.min(window), self.warmup.min(warmup))
    }
}

/// `available` split for a server of `server` CPUs: the first `server` for
/// the server, the rest for the load generator (all shared if none is left).
fn split(available: &[usize], server: u32) -> (Vec<usize>, Vec<usize>) {
    let k = (server as usize).min(available.len());
    let (s, c) = available.split_at(k);
    if c.is_empty() { (s.to_vec(), s.to_vec()) } else { (s.to_vec(), c.to_vec()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_gives_the_server_the_first_cpus_and_the_client_the_rest() {
        let machine: Vec<usize> = (0..16).collect();
        for step in [1, 2, 4, 8] {
            let (server, client) = split(&machine, step);
            assert_eq!(server.len(), step as usize);
            assert_eq!(server.len() + client.len(), 16);
            assert!(server.iter().all(|c| !client.contains(c)), "disjoint at {step}");
            assert!(client.len() >= server.len(), "the client keeps at least half");
        }
        // a 1-CPU machine: both on the one CPU
        assert_eq!(split(&[3], 1), (vec![3], vec![3]));
        // an affinity mask with holes: CPU numbers are taken from the mask
        assert_eq!(split(&[2, 5, 7, 9], 2), (vec![2, 5], vec![7, 9]));
    }
}
