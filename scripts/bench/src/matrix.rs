//! The model × load matrix: which cells run, in which order. The loads are
//! the scenarios' ([`crate::scenarios`]); the matrix interleaves them.

use echo_common::Transport;

use crate::load::{CellSpec, LoadKey, Name};
use crate::models::Model;
use crate::plan::Shape;
use crate::scenarios::{self, ALL};

/// The default matrix over `models` (or the `--quick` one) on a machine
/// where the run may use `cpus` CPUs: every scenario that is in the default
/// matrix there, TCP only, each scenario's own defaults.
pub fn default_shape(models: Vec<Model>, quick: bool, cpus: usize) -> Shape {
    let mut shape = Shape::empty(models);
    shape.repeat = if quick { 1 } else { 3 };
    for scenario in ALL {
        if scenario.defaults(&mut shape, quick, cpus) {
            shape.scenarios.push(scenario.id());
        }
    }
    shape
}

/// Every cell, repeats interleaved across models: repeat 0 of every cell
/// (models A B C … for each load), then repeat 1, … — never one model's
/// repeats back to back. Each scenario runs its own number of repeats
/// (at most `shape.repeat`), and orders its loads and each model's cells
/// of a load ([`crate::scenario::Scenario::loads`]).
pub fn cells(shape: &Shape) -> Vec<CellSpec> {
    let mut loads = Vec::new();
    for scenario in ALL.iter().filter(|s| shape.runs(&s.id())) {
        let repeats = |keys: &[_]| scenario.load_repeats(shape, keys).min(shape.repeat);
        let own = scenario.loads(shape);
        let own = if scenario.sets_links() { own } else { over_links(shape, own) };
        loads.extend(own.into_iter().map(|keys| (repeats(&keys), keys)));
    }
    let mut cells = Vec::new();
    for repeat in 0..shape.repeat {
        for (repeats, keys) in &loads {
            if repeat < *repeats {
                cells.extend(keys.iter().map(|load| CellSpec { load: load.clone(), repeat }));
            }
        }
    }
    cells
}

/// `loads` over each of the run's links, one link after the other: a TCP
/// or UDP key at the default link once per link; a key of a Unix socket
/// (which has no link) or one whose scenario set its link (the transport
/// scenario's veth cells) once, with the first link.
fn over_links(shape: &Shape, loads: Vec<Vec<LoadKey>>) -> Vec<Vec<LoadKey>> {
    let links = if shape.links.is_empty() { vec![Name::loopback()] } else { shape.links.clone() };
    let mut out = Vec::new();
    for keys in loads {
        for (i, link) in links.iter().enumerate() {
            let over = |k: &LoadKey| {
                if k.transport == Transport::Unix || k.link != Name::loopback() {
                    (i == 0).then(|| k.clone())
                } else {
                    Some(LoadKey { link: link.clone(), ..k.clone() })
                }
            };
            let keys: Vec<LoadKey> = keys.iter().filter_map(over).collect();
            if !keys.is_empty() {
                out.push(keys);
            }
        }
    }
    out
}

/// The scenarios of `shape` that a run announces before it starts, with
/// what they have to say on a machine of `cpus` CPUs.
pub fn notes(shape: &Shape, cpus: usize) -> Vec<String> {
    let run = ALL.iter().filter(|s| shape.runs(&s.id()));
    run.filter_map(|s| s.note(cpus)).collect()
}

/// The scenario of every name in `names`, or the first unknown name.
pub fn scenarios_named(names: &[String]) -> Result<Vec<crate::load::ScenarioId>, String> {
    names.iter().map(|n| scenarios::named(n).map(|s| s.id()).ok_or_else(|| n.clone())).collect()
}

#[cfg(test)]
mod tests {
    use echo_common::{ModelInfo, Transport};

    use super::*;
    use crate::load::ScenarioId;
    use crate::scenarios::throughput::THROUGHPUT_REPEAT;

    fn model(name: &str, cap: u64, serves_at_once: Option<u64>) -> ModelInfo {
        ModelInfo {
            name: name.to_owned().into(),
            summary: "".into(),
            default_max_connections: cap,
            child_processes: false,
            serves_at_once,
            baseline: false,
            reuse_port: false,
            colour: "#000000".into(),
            datagrams: None,
            datagram_batch: false,
            blocks_at_once: None,
            blocking_choice: false,
        }
    }

    fn id(name: &'static str) -> ScenarioId {
        ScenarioId::new(name)
    }

    fn shape(scenarios: &[&'static str]) -> Shape {
        let mut shape = default_shape(Model::listed([model("a", 10_000, None), model("b", 1024, None)]), false, 2);
        shape.scenarios = scenarios.iter().map(|s| id(s)).collect();
        shape.connections = vec![1, 10];
        shape.sizes = vec![64];
        shape.capacity = vec![10_000];
        shape.repeat = 2;
        shape.throughput_repeat = 2;
        shape
    }

    #[test]
    fn repeats_are_interleaved_never_back_to_back() {
        let order: Vec<(String, u32, u32)> = cells(&shape(&["throughput"]))
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
        let all = cells(&shape(&["transport", "capacity"]));
        let pairs: Vec<(String, Transport, u32)> = all
            .iter()
            .filter(|c| c.load.scenario == id("transport") && c.repeat == 0)
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
            .filter(|c| c.load.scenario == id("capacity") && c.repeat == 0)
            .map(|c| c.load.connections)
            .collect();
        assert_eq!(capacity, [10_000, 1024], "b declares a cap of 1,024");
    }

    #[test]
    fn each_tcp_load_runs_over_each_link_a_unix_one_once_and_transport_adds_veth_to_its_pairs() {
        let mut shape = shape(&["throughput", "transport"]);
        shape.transports = vec![Transport::Tcp, Transport::Unix];
        shape.links = vec![Name::loopback(), Name::veth()];
        shape.connections = vec![10];
        shape.repeat = 1;
        let of = |scenario: &'static str| -> Vec<(String, Transport, String)> {
            cells(&shape)
                .iter()
                .filter(|c| c.load.scenario == id(scenario) && c.load.connections != 1)
                .map(|c| (c.load.model.name().to_owned(), c.load.transport, c.load.link.to_string()))
                .collect()
        };
        let row = |m: &str, t, l: &str| (m.to_owned(), t, l.to_owned());
        let (tcp, unix) = (Transport::Tcp, Transport::Unix);
        let mut expected = Vec::new();
        for (t, l) in [(tcp, "loopback"), (tcp, "veth"), (unix, "loopback")] {
            expected.extend([row("a", t, l), row("b", t, l)]);
        }
        let mut throughput = of("throughput");
        throughput.sort_by_key(|(m, t, l)| (*t, l.clone(), m.clone()));
        assert_eq!(throughput, expected, "tcp over both links, unix once");
        let transport: Vec<_> = of("transport");
        let pairs: Vec<_> = ["a", "b"]
            .into_iter()
            .flat_map(|m| [row(m, tcp, "loopback"), row(m, unix, "loopback"), row(m, tcp, "veth")])
            .collect();
        assert_eq!(transport, pairs, "each model's three cells back to back");
    }

    #[test]
    fn ladder_steps_ascend_per_repeat_interleaved_and_skip_models_serving_too_few() {
        let models = [model("a", 10_000, None), model("one", 10_000, Some(1)), model("b", 10_000, Some(128))];
        let mut shape = default_shape(Model::listed(models), false, 2);
        shape.scenarios = vec![id("throughput"), id("latency")];
        shape.rates = vec![10.0, 20.0];
        shape.connections = vec![1];
        shape.sizes = vec![64];
        let cells = cells(&shape);
        let ladder: Vec<(String, f64, u32)> = cells
            .iter()
            .filter(|c| c.load.scenario == id("latency"))
            .map(|c| (c.load.model.name().to_owned(), c.load.offered().unwrap(), c.repeat))
            .collect();
        let expected: Vec<(String, f64, u32)> = (0..3)
            .flat_map(|r| [("a", 10.0, r), ("b", 10.0, r), ("a", 20.0, r), ("b", 20.0, r)])
            .map(|(m, rate, r)| (m.to_owned(), rate, r))
            .collect();
        assert_eq!(ladder, expected);
        assert!(cells.iter().filter(|c| c.load.scenario == id("latency")).all(|c| c.load.connections == 100));
        // the throughput scenario runs its own (smaller) number of repeats
        let repeats: std::collections::BTreeSet<u32> =
            cells.iter().filter(|c| c.load.scenario == id("throughput")).map(|c| c.repeat).collect();
        assert_eq!(repeats.into_iter().collect::<Vec<_>>(), (0..THROUGHPUT_REPEAT).collect::<Vec<_>>());
    }

    #[test]
    fn the_default_matrix_runs_scaling_only_on_large_machines() {
        let scaling = id("scaling");
        assert!(!default_shape(Vec::new(), false, 2).runs(&scaling));
        assert!(!default_shape(Vec::new(), false, 4).runs(&scaling));
        let big = default_shape(Vec::new(), false, 8);
        assert!(big.runs(&scaling));
        assert_eq!(big.scaling, [1, 2, 4]);
        let quick = default_shape(Vec::new(), true, 2);
        let names: Vec<&str> = quick.scenarios.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["throughput", "latency", "churn", "capacity", "transport", "udp"]);
    }
}
