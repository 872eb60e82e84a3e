//! results.json: every cell with its config, loadgen result, server samples
//! and exit status, plus the environment. Rewritten after every cell,
//! atomically, so an interrupted run keeps every finished cell.

use std::io;
use std::path::Path;

use echo_common::{ModelInfo, Transport};
use serde::{Deserialize, Serialize};

use crate::capacity::Capacity;
use crate::flags::{Flag, Note};
use crate::load::{CellSpec, Name};
use crate::models::Model;
use crate::quota::Throttling;
use crate::sampler::ServerStats;
use crate::server::Shutdown;
pub use loadgen::coordinator::AgentReport;

/// Bumped whenever a field changes meaning or disappears. 2: `settings.models`
/// holds the models' declarations, not their names; cells name their
/// transport. 3: the latency scenario is a ladder of fixed rates
/// (`settings.ladder` replaces `settings.latency_rates`), cells carry
/// validity `flags`, server CPU is read at the window's edges with exact
/// per-process clocks (`server.cpu_secs`), capacity counts the connections
/// the server `held` and divides memory by them, `settings.throughput_repeat`.
/// 4: the `udp` scenario (`settings.udp`, cells' `batch`), and `held` counts
/// the sockets the server's processes hold, not connections left in its
/// backlog.
pub const SCHEMA_VERSION: u32 = 4;

/// A whole benchmark run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub schema_version: u32,
    pub environment: Environment,
    pub settings: Settings,
    /// Finished cells, in the order they ran.
    pub cells: Vec<Cell>,
    /// Set once the whole matrix has run; false in an interrupted run.
    pub complete: bool,
    /// How far the control cell moved over the run (recomputed with the
    /// flags); absent without two control runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<Drift>,
}

/// Where and with what the run was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub hostname: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpus_online: u64,
    pub rustc: String,
    /// Versions of the crates that shape the models, from Cargo.lock.
    pub crates: Vec<String>,
    pub git_commit: Option<String>,
    /// The exact command line.
    pub command: String,
    /// UTC, ISO 8601.
    pub started_at: String,
    /// The CPU's vendor, family, model and stepping: what its model name
    /// may leave out. Absent in runs before it (as every field below).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_id: Option<String>,
    /// The sysctls that move results ([`crate::host::SYSCTLS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sysctls: Vec<Sysctl>,
    /// The working tree: its commit, and whether it had changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<Tree>,
    /// The command with its CPU sets and quota explicit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reproduce: Option<String>,
    /// What the run did about idle CPUs' wake-up latency
    /// (`--keep-cpus-awake`): `held awake: PM QoS cpu_dma_latency 0 µs`,
    /// `not held (--keep-cpus-awake off)` or `unavailable here: <why>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_wakeup: Option<String>,
    /// The cpuidle driver (`/sys/devices/system/cpu/cpuidle/current_driver`);
    /// `unavailable here` where the kernel has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuidle_driver: Option<String>,
    /// The cpuidle governor (`current_governor`), likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuidle_governor: Option<String>,
}

/// One sysctl and its value (`None`: this kernel has no such file, or it
/// cannot be read: "unavailable here").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sysctl {
    /// Dotted, as `sysctl` names it: `net.core.somaxconn`.
    pub name: String,
    pub value: Option<String>,
}

/// The working tree the run was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// `git rev-parse HEAD`.
    pub commit: String,
    /// `git status --porcelain` said anything: the binaries may not be the
    /// commit's.
    pub dirty: bool,
    /// The first few paths it named.
    pub changed: Vec<String>,
}

/// The matrix's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The models run, as the server declared them (`list-models --json`).
    pub models: Vec<ModelInfo>,
    pub scenarios: Vec<String>,
    /// Transports of every scenario but `transport`, which runs both.
    pub transports: Vec<Transport>,
    /// Links of the TCP and UDP cells (`--link`); absent in results written
    /// before links existed: loopback.
    #[serde(default = "loopback_only")]
    pub links: Vec<Name>,
    pub connections: Vec<u32>,
    pub sizes: Vec<u32>,
    pub capacity: Vec<u32>,
    pub repeat: u32,
    /// Repeats of the throughput scenario (fewer than `repeat` by default).
    pub throughput_repeat: u32,
    pub duration_secs: f64,
    pub warmup_secs: f64,
    pub server_cpus: Vec<usize>,
    pub client_cpus: Vec<usize>,
    /// How the load generator ran: `process` (`loadgen --control`, the bench
    /// owning the window) or `in-process`; absent in runs before the choice
    /// (in-process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_path: Option<String>,
    /// `--load-hosts` as given (`local:2`, …), when the load came from
    /// several agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_hosts: Option<String>,
    /// The scaling scenario's steps and why they stop there, when it ran.
    #[serde(default)]
    pub scaling: Option<Scaling>,
    /// The latency ladder, when the latency scenario ran.
    pub ladder: Option<Ladder>,
    /// The udp scenario's shape, when it ran.
    #[serde(default)]
    pub udp: Option<UdpSettings>,
    /// The work scenario's shape, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work: Option<WorkSettings>,

    /// The cost scenario's shape, when it ran (absent in runs before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostSettings>,
    pub quick: bool,
    /// The server's CPU quota (`--server-quota`); absent in runs before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_quota: Option<QuotaSettings>,
    /// How often the control cell ran besides the start and the end, s;
    /// absent: no control cell (or a run before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_every_secs: Option<f64>,
    /// `--keep-cpus-awake on`: the run asked to keep idle CPUs awake (what
    /// came of it: [`Environment::cpu_wakeup`]); false in runs before it.
    #[serde(default)]
    pub keep_cpus_awake: bool,
}

/// The server's CPU quota of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaSettings {
    /// The quota asked for, CPUs; `None`: `--server-quota none`.
    pub cpus: Option<f64>,
    /// Its period, µs.
    pub period_us: Option<u64>,
    /// How it was applied (`cgroup v1 cpu.cfs_quota_us under …`).
    pub mechanism: Option<String>,
    /// Why it could not be: the servers ran unthrottled.
    pub unavailable: Option<String>,
    /// The scenarios with cells whose servers run under it (which cells:
    /// [`crate::scenario::Scenario::server_quota`]).
    pub scenarios: Vec<String>,
}

impl QuotaSettings {
    /// Whether the servers of [`QuotaSettings::scenarios`] ran throttled.
    pub fn applied(&self) -> bool {
        self.cpus.is_some() && self.unavailable.is_none()
    }

    /// Whether the run asked it for the scenario `name` (some of its cells:
    /// [`crate::scenario::Scenario::server_quota`]).
    pub fn asked_for(&self, name: &str) -> bool {
        self.scenarios.iter().any(|s| s == name)
    }
}

/// The scaling scenario's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    /// Server CPU counts, one step each.
    pub server_cpus: Vec<u32>,
    /// Why the steps stop where they do.
    pub limit: String,
}

/// The ladder a run used, recorded in results.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ladder {
    /// Offered rates, msg/s, ascending.
    pub rates: Vec<f64>,
    /// The SLO on the CO-corrected p99, µs.
    pub slo_p99_us: u64,
    pub connections: u32,
    pub size: u32,
    pub window_secs: f64,
    pub warmup_secs: f64,
    /// Models left out, and why.
    pub excluded: Vec<Excluded>,
}

/// The cost scenario a run used, recorded in results.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostSettings {
    /// Offered rates, msg/s, ascending.
    pub rates: Vec<f64>,
    pub connections: u32,
    pub size: u32,
    pub window_secs: f64,
    pub warmup_secs: f64,
    /// Models left out, and why.
    pub excluded: Vec<Excluded>,
}

/// A model the ladder (or the cost scenario) leaves out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Excluded {
    pub model: String,
    pub reason: String,
}

/// The work scenario a run used, recorded in results.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkSettings {
    /// The work levels of the closed loop, as the servers were given them
    /// (`cpu:20us`, `block:1ms`), in the order the tables show them.
    pub levels: Vec<String>,
    pub connections: u32,
    pub size: u32,
    /// Repeats of each closed-loop cell.
    pub repeat: u32,
    /// Each level's measured window, s (long levels get a longer one), in
    /// the order of `levels`.
    pub window_secs: Vec<f64>,
    pub warmup_secs: f64,
    /// The server's CPUs: the workers of the models that start one per CPU.
    pub server_cpus: u32,
    /// The latency ladder's work level, its offered rates (msg/s,
    /// ascending), repeats and SLO on the CO-corrected p99 (the run's SLO
    /// plus the work itself), µs.
    pub ladder_work: String,
    pub ladder_rates: Vec<f64>,
    pub ladder_repeat: u32,
    pub ladder_window_secs: f64,
    pub ladder_slo_p99_us: u64,
    /// Models left off the ladder, and why.
    pub ladder_excluded: Vec<Excluded>,
}

/// The udp scenario a run used, recorded in results.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UdpSettings {
    /// Flows × sizes of the closed-loop part.
    pub flows: Vec<u32>,
    pub sizes: Vec<u32>,
    /// Offered rates of the sustained-rate part, ascending.
    pub rates: Vec<f64>,
    pub step_flows: u32,
    pub step_size: u32,
    /// `--batch` of the batching variants.
    pub batch: u32,
    pub max_loss_percent: f64,
    pub slo_p99_us: u64,
    pub timeout_ms: u64,
    pub window_secs: f64,
    pub warmup_secs: f64,
    /// Repeats of every udp cell.
    pub repeat: u32,
    /// The server's socket buffers: the kernel's defaults (no
    /// `--recv-buffer`/`--send-buffer`), read from /proc/sys/net/core.
    pub rmem_default: Option<u64>,
    pub wmem_default: Option<u64>,
    /// Models left out (streams only), by name.
    pub stream_only: Vec<String>,
}

/// One cell: one model under one load, once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub spec: CellSpec,
    pub ok: bool,
    /// Why the cell failed.
    pub failure: Option<String>,
    pub loadgen: Option<loadgen::Report>,
    pub capacity: Option<Capacity>,
    /// The server's process tree over the measured window.
    pub server: Option<ServerStats>,
    /// Server CPU time per completed message, µs: the tree's CPU between
    /// the instants loadgen's measured window opened and closed, divided by
    /// the messages completed in that window.
    pub server_cpu_us_per_msg: Option<f64>,
    pub shutdown: Option<Shutdown>,
    /// What makes this cell's figures less than trustworthy; empty when
    /// nothing does.
    #[serde(default)]
    pub flags: Vec<Flag>,
    /// CPUs the server was allotted: its quota (`--server-quota`) when it
    /// ran throttled, else the number of its CPUs. Absent in runs before
    /// it was recorded (then read from the settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allotment_cpus: Option<f64>,
    /// What is worth knowing but puts no figure in doubt (both sides
    /// saturated); recomputed with the flags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
    /// The server's CPU quota and how often it ran out over the window,
    /// when the cell ran throttled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Throttling>,
    /// What the host took (steal time) from the server's and the load
    /// generator's CPUs over the window, when /proc/stat was read at both
    /// edges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steal: Option<crate::steal::Steal>,
    /// Several agents (`--load-hosts`): each one's part as it reported it
    /// (latencies and window on its own clock), with its host and clock;
    /// `loadgen` is their exact merge, its totals the sum of theirs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentReport>,
    /// Several agents: where they ran, and how closely they kept time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordination: Option<Coordination>,
}

/// How far the control moved over a run, as results.json records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// The control's load, in words.
    pub load: String,
    /// Each control run: where it stood among the run's cells, and its msg/s.
    pub runs: Vec<ControlRun>,
    /// The largest distance of a later run's msg/s from the first run's,
    /// as a share of the first's.
    pub drift: f64,
    /// The last run's msg/s against the first's (−0.03: 3 % lower).
    pub end_to_end: f64,
    /// `drift` is above [`crate::control::MOVED`].
    pub moved: bool,
}

/// One control run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlRun {
    /// Its index among the run's cells (0: before every other cell).
    pub cell: usize,
    pub msg_per_sec: f64,
}

/// How a cell's agents were coordinated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coordination {
    /// `--load-hosts` as given: `local:2`, …
    pub hosts: String,
    /// The start instant, on the bench's clock (CLOCK_MONOTONIC, ns).
    pub t0_ns: u64,
    /// The spread of the agents' mark arrivals, ns (the larger edge's).
    pub skew_ns: u64,
    /// The window, s (the skew is flagged above 1 % of it).
    pub window_secs: f64,
}

impl Results {
    /// Writes `path` atomically: a temporary file, then a rename.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        loadgen::write_json(self, path)
    }

    /// Writes this run's flags, notes and control summary into the
    /// results.json at `path` it was read from, and nothing else: the
    /// figures stay exactly as the run wrote them (a field this bench does
    /// not know is kept, one it would fill with a default is not added).
    pub fn save_flags(&self, path: &Path) -> io::Result<()> {
        let invalid = |msg: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {msg}", path.display()));
        let text = std::fs::read_to_string(path)?;
        let mut json: serde_json::Value = serde_json::from_str(&text).map_err(|e| invalid(&e.to_string()))?;
        let cells =
            json.get_mut("cells").and_then(serde_json::Value::as_array_mut).ok_or_else(|| invalid("no cells"))?;
        if cells.len() != self.cells.len() {
            return Err(invalid("its cells changed since it was read"));
        }
        fn value(v: &impl Serialize) -> io::Result<serde_json::Value> {
            serde_json::to_value(v).map_err(io::Error::other)
        }
        for (cell, mine) in cells.iter_mut().zip(&self.cells) {
            let cell = cell.as_object_mut().ok_or_else(|| invalid("a cell that is not an object"))?;
            cell.insert("flags".into(), value(&mine.flags)?);
            if mine.notes.is_empty() {
                cell.remove("notes");
            } else {
                cell.insert("notes".into(), value(&mine.notes)?);
            }
        }
        let top = json.as_object_mut().ok_or_else(|| invalid("not an object"))?;
        match &self.control {
            Some(control) => top.insert("control".into(), value(control)?),
            None => top.remove("control"),
        };
        loadgen::write_json(&json, path)
    }

    /// Reads a run back, each cell's model linked to the declaration the
    /// run recorded.
    pub fn load(path: &Path) -> io::Result<Results> {
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidData, msg);
        let text = std::fs::read_to_string(path)?;
        let version: serde_json::Value = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let version = version.get("schema_version").and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(SCHEMA_VERSION)) {
            return Err(invalid(format!(
                "schema version {version:?}, this bench reads {SCHEMA_VERSION}: render it with the bench of its commit"
            )));
        }
        let mut results: Results = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let models = results.models();
        for cell in &mut results.cells {
            let declared = models.iter().find(|m| m.name() == cell.spec.load.model.name());
            let declared =
                declared.ok_or_else(|| invalid(format!("cell of undeclared model {}", cell.spec.load.model)))?;
            cell.spec.load.model = declared.clone();
        }
        Ok(results)
    }

    /// The run's models, in the order they ran, ranked so.
    pub fn models(&self) -> Vec<Model> {
        Model::listed(self.settings.models.iter().cloned())
    }
}

/// The links of results written before `--link` existed.
fn loopback_only() -> Vec<Name> {
    vec![Name::loopback()]
}

/// Now, UTC, as `2026-11-25T15:40:00Z`.
pub fn utc_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
