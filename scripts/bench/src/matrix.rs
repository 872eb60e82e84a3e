//! The model × load matrix: which cells run, in which order.

use std::time::Duration;

use clap::ValueEnum;
use echo_common::Transport;
use serde::{Deserialize, Serialize};

use crate::models::Model;

/// The scenarios of the default matrix.
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
    /// TCP loopback against a Unix socket: 1 and 100 connections, 64 B,
    /// closed loop, the two transports back to back for each model.
    Transport,
}

impl Scenario {
    pub const ALL: [Scenario; 5] =
        [Scenario::Throughput, Scenario::Latency, Scenario::Churn, Scenario::Capacity, Scenario::Transport];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::Latency => "latency",
            Scenario::Churn => "churn",
            Scenario::Capacity => "capacity",
            Scenario::Transport => "transport",
        }
    }
}

/// Connections of the latency scenario.
pub const LATENCY_CONNECTIONS: u32 = 100;
/// Message size of the latency, churn and transport scenarios.
pub const SMALL: u32 = 64;
/// Concurrent clients of the churn scenario.
pub const CHURN_CONNECTIONS: u32 = 10;
/// The latency scenario's rate is this share of the slowest model's
/// closed-loop rate at 100 connections, 64 B.
pub const LATENCY_RATE_SHARE: f64 = 0.5;
/// Connection counts of the transport scenario.
pub const TRANSPORT_CONNECTIONS: [u32; 2] = [1, 100];
/// The transport scenario's measured window and warm-up are at most these:
/// it compares two transports cell by cell, back to back, so short windows
/// keep the pairs close in time, and the full matrix within its budget.
pub const TRANSPORT_WINDOW: (Duration, Duration) = (Duration::from_secs(3), Duration::from_millis(500));

/// One cell: a model, a scenario and its parameters, and which repeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellSpec {
    pub scenario: Scenario,
    pub model: Model,
    /// Absent in results written before transports existed: TCP.
    #[serde(default)]
    pub transport: Transport,
    pub connections: u32,
    pub size: u32,
    /// Open loop only; filled in when the cell runs.
    pub rate: Option<f64>,
    /// 0-based repeat index.
    pub repeat: u32,
}

impl CellSpec {
    pub fn label(&self) -> String {
        let (scenario, model, transport) = (self.scenario.name(), &self.model, self.transport);
        match self.scenario {
            Scenario::Capacity => format!("{scenario} {model} {transport} {} idle", self.connections),
            _ => format!("{scenario} {model} {transport} c={} s={}B", self.connections, self.size),
        }
    }
}

/// The shape of a matrix.
#[derive(Debug, Clone)]
pub struct Shape {
    pub models: Vec<Model>,
    pub scenarios: Vec<Scenario>,
    /// Transports of every scenario but `transport` (which always runs both).
    pub transports: Vec<Transport>,
    pub connections: Vec<u32>,
    pub sizes: Vec<u32>,
    pub capacity: Vec<u32>,
    pub repeat: u32,
}

impl Shape {
    /// The default matrix over `models` (or the `--quick` one): every
    /// scenario, TCP only, the connection counts, sizes and capacities the
    /// README describes.
    pub fn default_for(models: Vec<Model>, quick: bool) -> Shape {
        Shape {
            models,
            scenarios: Scenario::ALL.to_vec(),
            transports: vec![Transport::Tcp],
            connections: vec![1, 10, 100, 1000],
            sizes: if quick { vec![64] } else { vec![64, 4096] },
            capacity: if quick { vec![1000] } else { vec![1000, 10_000] },
            repeat: if quick { 1 } else { 3 },
        }
    }
}

/// Every cell, repeats interleaved across models: repeat 0 of every cell
/// (models A B C … for each load), then repeat 1, … — never one model's
/// repeats back to back. In the transport scenario each model runs over
/// TCP and then over a Unix socket, so the two cells of a pair are adjacent.
pub fn cells(shape: &Shape) -> Vec<CellSpec> {
    // (scenario, transports in the order they run for each model, connections, size)
    let mut loads: Vec<(Scenario, Vec<Transport>, u32, u32)> = Vec::new();
    for &scenario in &Scenario::ALL {
        if !shape.scenarios.contains(&scenario) {
            continue;
        }
        for &transport in &shape.transports {
            let one = vec![transport];
            match scenario {
                Scenario::Throughput => {
                    for &size in &shape.sizes {
                        for &connections in &shape.connections {
                            loads.push((scenario, one.clone(), connections, size));
                        }
                    }
                }
                Scenario::Latency => loads.push((scenario, one, LATENCY_CONNECTIONS, SMALL)),
                Scenario::Churn => loads.push((scenario, one, CHURN_CONNECTIONS, SMALL)),
                Scenario::Capacity => {
                    let probe = crate::capacity::PROBE.len() as u32;
                    loads.extend(shape.capacity.iter().map(|&n| (scenario, one.clone(), n, probe)));
                }
                Scenario::Transport => {}
            }
        }
        if scenario == Scenario::Transport {
            for connections in TRANSPORT_CONNECTIONS {
                loads.push((scenario, Transport::ALL.to_vec(), connections, SMALL));
            }
        }
    }
    let mut cells = Vec::new();
    for repeat in 0..shape.repeat {
        for (scenario, transports, connections, size) in &loads {
            for model in &shape.models {
                for &transport in transports {
                    let connections =
                        if *scenario == Scenario::Capacity { model.capacity_for(*connections) } else { *connections };
                    cells.push(CellSpec {
                        scenario: *scenario,
                        model: model.clone(),
                        transport,
                        connections,
                        size: *size,
                        rate: None,
                        repeat,
                    });
                }
            }
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use echo_common::ModelInfo;

    use super::*;

    fn model(name: &str, cap: u64) -> Model {
        Model::new(ModelInfo {
            name: name.to_owned().into(),
            summary: "".into(),
            default_max_connections: cap,
            child_processes: false,
            serves_at_once: None,
            reuse_port: false,
            colour: "#000000".into(),
        })
    }

    fn shape(scenarios: Vec<Scenario>) -> Shape {
        Shape {
            models: vec![model("a", 10_000), model("b", 1024)],
            scenarios,
            transports: vec![Transport::Tcp],
            connections: vec![1, 10],
            sizes: vec![64],
            capacity: vec![10_000],
            repeat: 2,
        }
    }

    #[test]
    fn repeats_are_interleaved_never_back_to_back() {
        let order: Vec<(String, u32, u32)> = cells(&shape(vec![Scenario::Throughput]))
            .iter()
            .map(|c| (c.model.name().to_owned(), c.connections, c.repeat))
            .collect();
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

    #[test]
    fn transport_pairs_are_adjacent_and_capacity_follows_the_declared_cap() {
        let all = cells(&shape(vec![Scenario::Transport, Scenario::Capacity]));
        let pairs: Vec<(String, Transport, u32)> = all
            .iter()
            .filter(|c| c.scenario == Scenario::Transport && c.repeat == 0)
            .map(|c| (c.model.name().to_owned(), c.transport, c.connections))
            .collect();
        let (tcp, unix) = (Transport::Tcp, Transport::Unix);
        assert_eq!(
            pairs,
            [("a", tcp, 1), ("a", unix, 1), ("b", tcp, 1), ("b", unix, 1), ("a", tcp, 100), ("a", unix, 100)]
                .into_iter()
                .chain([("b", tcp, 100), ("b", unix, 100)])
                .map(|(m, t, c)| (m.to_owned(), t, c))
                .collect::<Vec<_>>()
        );
        let capacity: Vec<u32> =
            all.iter().filter(|c| c.scenario == Scenario::Capacity && c.repeat == 0).map(|c| c.connections).collect();
        assert_eq!(capacity, [10_000, 1024], "b declares a cap of 1,024");
    }
}
