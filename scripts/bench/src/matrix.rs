//! The model × load matrix: which cells run, in which order.

use std::time::Duration;

use echo_common::Transport;

pub use crate::load::Scenario;
use crate::load::{CellSpec, LoadKey, Rate};
use crate::models::Model;

/// Message size of the latency, churn and transport scenarios.
pub const SMALL: u32 = 64;
/// Concurrent clients of the churn scenario.
pub const CHURN_CONNECTIONS: u32 = 10;
/// Repeats of the throughput scenario in the default matrix (the others
/// run 3): its 88 cells per repeat are the bulk of the run, and the time
/// saved pays for the latency ladder (see [`crate::ladder`]'s budget).
pub const THROUGHPUT_REPEAT: u32 = 2;
/// Connection counts of the transport scenario (`--quick`: 100 only).
pub const TRANSPORT_CONNECTIONS: [u32; 2] = [1, 100];
/// The transport scenario's measured window and warm-up are at most these:
/// it compares two transports cell by cell, back to back, so short windows
/// keep the pairs close in time, and the full matrix within its budget.
pub const TRANSPORT_WINDOW: (Duration, Duration) = (Duration::from_secs(3), Duration::from_millis(500));

/// Connections per server CPU in the scaling scenario.
pub const SCALING_CONNECTIONS_PER_CPU: u32 = 100;
/// The scaling scenario is in the default matrix only on machines with at
/// least this many CPUs: below it, there is no second step to compare.
pub const SCALING_DEFAULT_MIN_CPUS: usize = 8;

/// The server CPU counts of the scaling scenario on a machine where this
/// process may use `cpus` CPUs: 1, 2, 4, … up to half of them (the load
/// generator takes the other half). Never empty: one CPU is the first step
/// even on a 1-CPU machine (where server and client then share it).
pub fn scaling_steps(cpus: usize) -> Vec<u32> {
    let mut steps = vec![1u32];
    while (steps[steps.len() - 1] as usize) * 2 <= cpus / 2 {
        let next = steps[steps.len() - 1] * 2;
        steps.push(next);
    }
    steps
}

/// Why the scaling scenario stops where it does, for the console and the README.
pub fn scaling_limit(cpus: usize) -> String {
    let steps = scaling_steps(cpus);
    let last = steps[steps.len() - 1];
    format!(
        "the server gets at most half of the {cpus} CPU(s) this run may use, the load generator the rest, \
         so the scaling scenario stops at {last} server CPU(s)"
    )
}

/// Splits `available` CPUs for a scaling step of `server` CPUs: the first
/// `server` for the server, the rest for the load generator (all of them
/// shared if nothing is left).
pub fn scaling_split(available: &[usize], server: u32) -> (Vec<usize>, Vec<usize>) {
    let k = (server as usize).min(available.len());
    let (s, c) = available.split_at(k);
    if c.is_empty() { (s.to_vec(), s.to_vec()) } else { (s.to_vec(), c.to_vec()) }
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
}

impl Shape {
    /// The default matrix over `models` (or the `--quick` one) on a machine
    /// where the run may use `cpus` CPUs: every scenario (scaling only from
    /// [`SCALING_DEFAULT_MIN_CPUS`] CPUs), TCP only, the connection counts,
    /// sizes and capacities the README describes.
    pub fn default_for(models: Vec<Model>, quick: bool, cpus: usize) -> Shape {
        let mut scenarios = Scenario::ALL.to_vec();
        if cpus < SCALING_DEFAULT_MIN_CPUS {
            scenarios.retain(|s| *s != Scenario::Scaling);
        }
        Shape {
            models,
            scenarios,
            transports: vec![Transport::Tcp],
            connections: if quick { vec![1, 100, 1000] } else { vec![1, 10, 100, 1000] },
            sizes: if quick { vec![64] } else { vec![64, 4096] },
            capacity: if quick { vec![1000] } else { vec![1000, 10_000] },
            scaling: scaling_steps(cpus),
            // --quick keeps its 3-minute budget with the 100-connection pair only.
            transport_connections: if quick { vec![100] } else { TRANSPORT_CONNECTIONS.to_vec() },
            rates: if quick { crate::ladder::QUICK_RATES.to_vec() } else { crate::ladder::DEFAULT_RATES.to_vec() },
            repeat: if quick { 1 } else { 3 },
            throughput_repeat: if quick { 1 } else { THROUGHPUT_REPEAT },
            udp_rates: if quick { crate::udp::QUICK_RATES.to_vec() } else { crate::udp::RATES.to_vec() },
            udp_repeat: if quick { 1 } else { crate::udp::REPEAT },
        }
    }
}

/// (scenario, transports in the order they run for each model, connections,
/// size, server CPUs, offered rate): one load, run for every model.
type Load = (Scenario, Vec<Transport>, u32, u32, Option<u32>, Option<f64>);

/// Every cell, repeats interleaved across models: repeat 0 of every cell
/// (models A B C … for each load), then repeat 1, … — never one model's
/// repeats back to back. In the transport scenario each model runs over
/// TCP and then over a Unix socket, so the two cells of a pair are adjacent.
/// The latency ladder's steps come in ascending order, each step for every
/// model it does not exclude ([`crate::ladder::excluded`]); the runner skips
/// the steps above one a model failed. The throughput scenario runs
/// `throughput_repeat` repeats, the others `repeat`.
pub fn cells(shape: &Shape) -> Vec<CellSpec> {
    let mut loads: Vec<Load> = Vec::new();
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
                            loads.push((scenario, one.clone(), connections, size, None, None));
                        }
                    }
                }
                Scenario::Latency => loads.extend(
                    shape
                        .rates
                        .iter()
                        .map(|&r| (scenario, one.clone(), crate::ladder::CONNECTIONS, SMALL, None, Some(r))),
                ),
                Scenario::Churn => loads.push((scenario, one, CHURN_CONNECTIONS, SMALL, None, None)),
                Scenario::Capacity => {
                    let probe = crate::capacity::PROBE.len() as u32;
                    loads.extend(shape.capacity.iter().map(|&n| (scenario, one.clone(), n, probe, None, None)));
                }
                Scenario::Scaling => {
                    for &cpus in &shape.scaling {
                        let connections = SCALING_CONNECTIONS_PER_CPU * cpus;
                        loads.push((scenario, one.clone(), connections, SMALL, Some(cpus), None));
                    }
                }
                Scenario::Transport | Scenario::Udp => {}
            }
        }
        if scenario == Scenario::Udp {
            // Over UDP whatever --transports says: the datagram contract.
            let udp = vec![Transport::Udp];
            for &size in &crate::udp::SIZES {
                for &flows in &crate::udp::FLOWS {
                    loads.push((scenario, udp.clone(), flows, size, None, None));
                }
            }
            for &rate in &shape.udp_rates {
                loads.push((scenario, udp.clone(), crate::udp::STEP_FLOWS, SMALL, None, Some(rate)));
            }
        }
        if scenario == Scenario::Transport {
            for &connections in &shape.transport_connections {
                loads.push((scenario, Transport::STREAMS.to_vec(), connections, SMALL, None, None));
            }
        }
    }
    let mut cells = Vec::new();
    for repeat in 0..shape.repeat {
        for (scenario, transports, connections, size, server_cpus, rate) in &loads {
            if *scenario == Scenario::Throughput && repeat >= shape.throughput_repeat.min(shape.repeat) {
                continue;
            }
            if *scenario == Scenario::Udp && repeat >= shape.udp_repeat.min(shape.repeat) {
                continue;
            }
            for model in &shape.models {
                if *scenario == Scenario::Latency && crate::ladder::excluded(model).is_some() {
                    continue;
                }
                // The udp scenario runs each datagram variant of a model;
                // the others run the model once.
                let variants = if *scenario == Scenario::Udp { crate::udp::variants(model) } else { vec![None] };
                for batch in variants {
                    for &transport in transports {
                        let connections = if *scenario == Scenario::Capacity {
                            model.capacity_for(*connections)
                        } else {
                            *connections
                        };
                        let load = LoadKey {
                            rate: rate.map(Rate),
                            server_cpus: *server_cpus,
                            batch,
                            ..LoadKey::new(*scenario, model.clone(), transport, connections, *size)
                        };
                        cells.push(CellSpec { load, repeat });
                    }
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
            baseline: false,
            reuse_port: false,
            colour: "#000000".into(),
            datagrams: None,
            datagram_batch: false,
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
            scaling: vec![1],
            transport_connections: TRANSPORT_CONNECTIONS.to_vec(),
            rates: vec![1000.0, 2000.0],
            repeat: 2,
            throughput_repeat: 2,
            udp_rates: vec![1000.0],
            udp_repeat: 1,
        }
    }

    #[test]
    fn repeats_are_interleaved_never_back_to_back() {
        let order: Vec<(String, u32, u32)> = cells(&shape(vec![Scenario::Throughput]))
            .iter()
            .map(|c| (c.load.model.name().to_owned(), c.load.connections, c.repeat))
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
            .filter(|c| c.load.scenario == Scenario::Transport && c.repeat == 0)
            .map(|c| (c.load.model.name().to_owned(), c.load.transport, c.load.connections))
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
        let capacity: Vec<u32> = all
            .iter()
            .filter(|c| c.load.scenario == Scenario::Capacity && c.repeat == 0)
            .map(|c| c.load.connections)
            .collect();
        assert_eq!(capacity, [10_000, 1024], "b declares a cap of 1,024");
    }
}

#[cfg(test)]
mod ladder_tests {
    use echo_common::ModelInfo;

    use super::*;

    fn model(name: &str, serves_at_once: Option<u64>) -> Model {
        Model::new(ModelInfo {
            name: name.to_owned().into(),
            summary: "".into(),
            default_max_connections: 10_000,
            child_processes: false,
            serves_at_once,
            baseline: false,
            reuse_port: false,
            colour: "#000000".into(),
            datagrams: None,
            datagram_batch: false,
        })
    }

    #[test]
    fn ladder_steps_ascend_per_repeat_interleaved_and_skip_models_serving_too_few() {
        let mut shape =
            Shape::default_for(vec![model("a", None), model("one", Some(1)), model("b", Some(128))], false, 2);
        shape.scenarios = vec![Scenario::Throughput, Scenario::Latency];
        shape.rates = vec![10.0, 20.0];
        shape.connections = vec![1];
        shape.sizes = vec![64];
        let cells = cells(&shape);
        let ladder: Vec<(String, f64, u32)> = cells
            .iter()
            .filter(|c| c.load.scenario == Scenario::Latency)
            .map(|c| (c.load.model.name().to_owned(), c.load.offered().unwrap(), c.repeat))
            .collect();
        let expected: Vec<(String, f64, u32)> = (0..3)
            .flat_map(|r| [("a", 10.0, r), ("b", 10.0, r), ("a", 20.0, r), ("b", 20.0, r)])
            .map(|(m, rate, r)| (m.to_owned(), rate, r))
            .collect();
        assert_eq!(ladder, expected);
        assert!(cells.iter().filter(|c| c.load.scenario == Scenario::Latency).all(|c| c.load.connections == 100));
        // the throughput scenario runs its own (smaller) number of repeats
        let repeats: std::collections::BTreeSet<u32> =
            cells.iter().filter(|c| c.load.scenario == Scenario::Throughput).map(|c| c.repeat).collect();
        assert_eq!(repeats.into_iter().collect::<Vec<_>>(), (0..THROUGHPUT_REPEAT).collect::<Vec<_>>());
    }
}

#[cfg(test)]
mod scaling_tests {
    use super::*;

    #[test]
    fn steps_double_up_to_half_the_machine() {
        assert_eq!(scaling_steps(1), [1]);
        assert_eq!(scaling_steps(2), [1]);
        assert_eq!(scaling_steps(3), [1]);
        assert_eq!(scaling_steps(4), [1, 2]);
        assert_eq!(scaling_steps(8), [1, 2, 4]);
        assert_eq!(scaling_steps(12), [1, 2, 4]);
        assert_eq!(scaling_steps(16), [1, 2, 4, 8]);
        assert_eq!(scaling_steps(64), [1, 2, 4, 8, 16, 32]);
        assert!(scaling_limit(2).contains("stops at 1 server CPU"));
    }

    #[test]
    fn split_gives_the_server_the_first_cpus_and_the_client_the_rest() {
        let machine: Vec<usize> = (0..16).collect();
        for step in scaling_steps(machine.len()) {
            let (server, client) = scaling_split(&machine, step);
            assert_eq!(server.len(), step as usize);
            assert_eq!(server.len() + client.len(), 16);
            assert!(server.iter().all(|c| !client.contains(c)), "disjoint at {step}");
            assert!(client.len() >= server.len(), "the client keeps at least half");
        }
        // a 1-CPU machine: both on the one CPU
        assert_eq!(scaling_split(&[3], 1), (vec![3], vec![3]));
        // an affinity mask with holes: CPU numbers are taken from the mask
        assert_eq!(scaling_split(&[2, 5, 7, 9], 2), (vec![2, 5], vec![7, 9]));
    }

    #[test]
    fn scaling_is_in_the_default_matrix_only_on_large_machines() {
        assert!(!Shape::default_for(vec![], false, 2).scenarios.contains(&Scenario::Scaling));
        assert!(!Shape::default_for(vec![], false, 4).scenarios.contains(&Scenario::Scaling));
        let big = Shape::default_for(vec![], false, 8);
        assert!(big.scenarios.contains(&Scenario::Scaling));
        assert_eq!(big.scaling, [1, 2, 4]);
    }
}
