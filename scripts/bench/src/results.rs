//! results.json: every cell with its config, loadgen result, server samples
//! and exit status, plus the environment. Rewritten after every cell,
//! atomically, so an interrupted run keeps every finished cell.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::capacity::Capacity;
use crate::matrix::CellSpec;
use crate::sampler::ServerStats;
use crate::server::Shutdown;

/// Bumped whenever a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 1;

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
}

/// The matrix's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub models: Vec<String>,
    pub scenarios: Vec<String>,
    pub connections: Vec<u32>,
    pub sizes: Vec<u32>,
    pub capacity: Vec<u32>,
    pub repeat: u32,
    pub duration_secs: f64,
    pub warmup_secs: f64,
    pub server_cpus: Vec<usize>,
    pub client_cpus: Vec<usize>,
    /// The latency scenario's rate, once known (msg/s).
    pub latency_rate: Option<f64>,
    pub quick: bool,
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
    /// Server CPU time per completed message, µs.
    pub server_cpu_us_per_msg: Option<f64>,
    pub shutdown: Option<Shutdown>,
}

impl Results {
    /// Writes `path` atomically: a temporary file, then a rename.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        loadgen::write_json(self, path)
    }

    pub fn load(path: &Path) -> io::Result<Results> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl Environment {
    pub fn detect(command: String, started_at: String) -> Environment {
        let loadgen_env = loadgen::env::Environment::detect();
        Environment {
            hostname: loadgen_env.hostname,
            kernel: loadgen_env.kernel,
            cpu_model: loadgen_env.cpu_model,
            cpus_online: loadgen_env.cpus_online,
            rustc: env!("BENCH_RUSTC_VERSION").to_owned(),
            crates: env!("BENCH_CRATE_VERSIONS").split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            git_commit: loadgen_env.git_commit,
            command,
            started_at,
        }
    }
}

/// Now, UTC, as `2026-11-25T15:40:00Z`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_417), (2025, 11, 25));
    }
}
