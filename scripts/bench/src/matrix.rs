//! The model × load matrix: which cells run, in which order.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// The four scenarios of the default matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Closed loop: throughput and latency over connections × sizes.
    Throughput,
    /// Open loop at a rate every model sustains: CO-corrected latency.
    Latency,
    /// A new connection per message, 10 clients: accepts/s, connect time.
    Churn,
    /// N idle connections held: memory per connection; then one echo each.
    Capacity,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [Scenario::Throughput, Scenario::Latency, Scenario::Churn, Scenario::Capacity];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::Latency => "latency",
            Scenario::Churn => "churn",
            Scenario::Capacity => "capacity",
        }
    }
}

/// Connections of the latency scenario.
pub const LATENCY_CONNECTIONS: u32 = 100;
/// Message size of the latency and churn scenarios.
pub const SMALL: u32 = 64;
/// Concurrent clients of the churn scenario.
pub const CHURN_CONNECTIONS: u32 = 10;
/// The latency scenario's rate is this share of the slowest model's
/// closed-loop rate at 100 connections, 64 B.
pub const LATENCY_RATE_SHARE: f64 = 0.5;

/// One cell: a model, a scenario and its parameters, and which repeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellSpec {
    pub scenario: Scenario,
    pub model: String,
    pub connections: u32,
    pub size: u32,
    /// Open loop only; filled in when the cell runs.
    pub rate: Option<f64>,
    /// 0-based repeat index.
    pub repeat: u32,
}

impl CellSpec {
    /// Cells with the same key are repeats of one another.
    pub fn key(&self) -> (Scenario, u32, u32, String) {
        (self.scenario, self.connections, self.size, self.model.clone())
    }

    pub fn label(&self) -> String {
        match self.scenario {
            Scenario::Capacity => format!("{} {} {} idle", self.scenario.name(), self.model, self.connections),
            _ => format!("{} {} c={} s={}B", self.scenario.name(), self.model, self.connections, self.size),
        }
    }
}

/// The shape of a matrix.
#[derive(Debug, Clone)]
pub struct Shape {
    pub models: Vec<String>,
    pub scenarios: Vec<Scenario>,
    pub connections: Vec<u32>,
    pub sizes: Vec<u32>,
    pub capacity: Vec<u32>,
    pub repeat: u32,
}

/// The cap `process` puts on live connections by default.
pub fn capacity_for(model: &str, wanted: u32) -> u32 {
    if model == "process" { wanted.min(echo_servers::cli::DEFAULT_MAX_CONNECTIONS_PROCESS as u32) } else { wanted }
}

/// Every cell, repeats interleaved across models: repeat 0 of every cell
/// (models A B C … for each load), then repeat 1, … — never one model's
/// repeats back to back.
pub fn cells(shape: &Shape) -> Vec<CellSpec> {
    let mut loads: Vec<(Scenario, u32, u32)> = Vec::new();
    for &scenario in &Scenario::ALL {
        if !shape.scenarios.contains(&scenario) {
            continue;
        }
        match scenario {
            Scenario::Throughput => {
                for &size in &shape.sizes {
                    for &connections in &shape.connections {
                        loads.push((scenario, connections, size));
                    }
                }
            }
            Scenario::Latency => loads.push((scenario, LATENCY_CONNECTIONS, SMALL)),
            Scenario::Churn => loads.push((scenario, CHURN_CONNECTIONS, SMALL)),
            Scenario::Capacity => {
                let probe = crate::capacity::PROBE.len() as u32;
                loads.extend(shape.capacity.iter().map(|&n| (scenario, n, probe)));
            }
        }
    }
    let mut cells = Vec::new();
    for repeat in 0..shape.repeat {
        for &(scenario, connections, size) in &loads {
            for model in &shape.models {
                let connections =
                    if scenario == Scenario::Capacity { capacity_for(model, connections) } else { connections };
                cells.push(CellSpec { scenario, model: model.clone(), connections, size, rate: None, repeat });
            }
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_interleaved_never_back_to_back() {
        let shape = Shape {
            models: vec!["a".into(), "b".into()],
            scenarios: vec![Scenario::Throughput],
            connections: vec![1, 10],
            sizes: vec![64],
            capacity: vec![],
            repeat: 2,
        };
        let order: Vec<(String, u32, u32)> =
            cells(&shape).iter().map(|c| (c.model.clone(), c.connections, c.repeat)).collect();
        assert_eq!(
            order,
            [
                ("a", 1, 0),
                ("b", 1, 0),
                ("a", 10, 0),
                ("b", 10, 0),
                ("a", 1, 1),
                ("b", 1, 1),
                ("a", 10, 1),
                ("b", 10, 1)
            ]
            .map(|(m, c, r)| (m.to_owned(), c, r))
        );
    }
}
