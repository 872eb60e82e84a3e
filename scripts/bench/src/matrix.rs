//! The model × load matrix: which cells run, in which order. The loads are
//! the scenarios' ([`crate::scenarios`]); the matrix interleaves them.

use echo_common::Transport;

use crate::load::{CellSpec, LoadKey, Name};
use crate::models::Model;
use crate::plan::Shape;
use crate::scenarios::{self, ALL};

/// The measured window of a load cell by default (without `--quick`); its
/// warm-up is 0.5 s.
pub const WINDOW: std::time::Duration = std::time::Duration::from_millis(1500);

/// The default matrix over `models` (or the `--quick` one) on a machine
/// where the run may use `cpus` CPUs: every scenario that is in the default
/// matrix there, TCP only, each scenario's own defaults.
///
/// ## `--quick`'s budget: ≤ 3 minutes on the 2-CPU reference machine
///
/// Every `--quick` cell measures 1 s after 0.25 s; with server start,
/// connects and stop a load cell takes ≈ 1.33 s, a capacity cell ≈ 2 s
/// (its 1 s settle, then ≥ 0.6 s of stable memory readings). 11 models, 9
/// of them serve 100 connections at once (the ladder's and the cost
/// scenario's), 8 udp variants (6 datagram models, 2 also with `--batch`).
///
/// It took 217 s before: throughput 3 connection counts × 11 = 33 cells,
/// ladder 3 rates × 9 (≈ 18 run: the climbs stop at 60k), churn 2 × 11 =
/// 22, capacity 11, transport 11 pairs = 22, udp 4 closed-loop loads × 8 =
/// 32 and 3 rates × 8 (≈ 20 run): ≈ 147 load cells × 1.33 + 11 × 2 ≈ 217 s.
/// The udp closed loop (32 cells, ≈ 43 s) and the throughput scenario's
/// 1,000-connection cells were where the time over 3 minutes went.
///
/// Now, at most (every climb step run): throughput 2 counts (1, 100) × 11 =
/// 22, ladder 2 rates × 9 = 18, cost 1 rate × 9 = 9, churn 22, transport
/// 22, udp 1 closed-loop load (100 flows, 64 B) × 8 + 1 rate × 8 = 16: 109
/// load cells × 1.33 s ≈ 145 s, + capacity 11 × 2 s = 22 s: ≈ 167 s, under
/// 3 minutes with ≈ 13 s to spare.
///
/// ## The default run's budget: ≈ 30 minutes on 2 CPUs
///
/// With 2 s windows the full default matrix came to ≈ 32–35 min: the
/// 28–30 min of the matrix before (see the latency scenario's notes), the
/// work scenario's ≈ 3.1 min and ≈ 7 control cells. The closed-loop cells
/// that take the whole window ([`WINDOW`]) measure 1.5 s now (≈ 2.1 min
/// less). A first full run still counted 1,063 cells and estimated 40 min,
/// so the throughput scenario runs 64 B only (its 4 KiB loads, 88 cells ≈
/// 3.8 min, with `--sizes 64,4096`) and the transport scenario 2 repeats
/// (44 cells ≈ 1.9 min fewer). Measured: 643 cells in 21.7 min; with the
/// cost cells on the whole window since, 676 cells in 22.7 min and 651 in
/// 22.2 min (the ladders' climbs ended early); with udp's 3 repeats, 732 in
/// 23.8 min (results/20261203T232124Z-vm).
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

    /// The reference machine's 11 models as `--quick` sees them: 9 serving
    /// 100 connections at once, 6 serving datagrams, 2 of those with `--batch`.
    fn reference_models() -> Vec<Model> {
        let infos = (0..11).map(|i| ModelInfo {
            serves_at_once: match i {
                0 => Some(1),
                1 => Some(16),
                _ => None,
            },
            datagrams: (i < 6).then(|| "how".into()),
            datagram_batch: i < 2,
            ..model(&format!("m{i}"), 10_000, None)
        });
        Model::listed(infos)
    }

    #[test]
    fn quick_fits_in_three_minutes_by_the_budget_of_its_cells() {
        let cells = cells(&default_shape(reference_models(), true, 2));
        let count = |name: &str| cells.iter().filter(|c| c.load.scenario.name() == name).count();
        let counts: Vec<(&str, usize)> =
            ["throughput", "cost", "latency", "churn", "capacity", "transport", "udp"].map(|n| (n, count(n))).to_vec();
        assert_eq!(
            counts,
            [
                ("throughput", 22),
                ("cost", 9),
                ("latency", 18),
                ("churn", 22),
                ("capacity", 11),
                ("transport", 22),
                ("udp", 16)
            ]
        );
        // The per-cell times of default_shape's budget: every climb step run, the worst case.
        let seconds = (cells.len() - count("capacity")) as f64 * 1.33 + count("capacity") as f64 * 2.0;
        assert!(seconds <= 170.0, "{seconds} s");
    }

    #[test]
    fn cost_cells_are_every_rate_for_every_model_serving_its_connections() {
        let mut shape = default_shape(reference_models(), false, 2);
        shape.scenarios = vec![id("cost")];
        let cells = cells(&shape);
        assert_eq!(shape.cost_rates, crate::scenarios::cost::DEFAULT_RATES);
        assert_eq!(cells.len(), 9 * 3 * 3, "9 models × 3 rates × 3 repeats");
        for model in ["m0", "m1"] {
            assert!(cells.iter().all(|c| c.load.model.name() != model), "{model} serves too few at once");
            let m = &shape.models[if model == "m0" { 0 } else { 1 }];
            assert!(crate::scenarios::cost::excluded(m).is_some_and(|why| why.contains("backlog")));
        }
        let first: Vec<(String, f64)> = cells
            .iter()
            .filter(|c| c.repeat == 0)
            .map(|c| (c.load.model.name().to_owned(), c.load.offered().unwrap()))
            .take(10)
            .collect();
        assert_eq!(first[0], ("m2".to_owned(), 5000.0));
        assert_eq!(first[8], ("m10".to_owned(), 5000.0));
        assert_eq!(first[9], ("m2".to_owned(), 20_000.0), "each rate for every model, then the next");
        assert!(cells.iter().all(|c| (c.load.connections, c.load.size) == (100, 64)));
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
        assert_eq!(names, ["throughput", "cost", "latency", "churn", "capacity", "transport", "udp"]);
    }
}
