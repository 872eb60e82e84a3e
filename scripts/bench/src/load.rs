//! What a cell measures, as one value: its [`LoadKey`], every axis of the
//! load a model is put under. Two cells with the same key are repeats of
//! one another; any other difference makes them different loads. The
//! runner's climbs, the spread across repeats, the tables and the charts
//! all group cells by it, so an axis added here is never pooled.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use std::fmt::Write as _;

use clap::ValueEnum;
use echo_common::Transport;
use loadgen::report::fmt_count;
use serde::{Deserialize, Serialize};

use crate::models::Model;

/// The scenarios of the default matrix. The latency ladder is
/// [`crate::ladder`], the udp scenario [`crate::udp`].
// The variants' doc comments are `bench --help`'s text for `--scenarios`
// (clap reads them): plain words, no rustdoc links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Closed loop: throughput and latency over connections × sizes.
    Throughput,
    /// Open loop, a ladder of fixed offered rates, the same for every model:
    /// CO-corrected latency against offered load, and each model's knee.
    Latency,
    /// A new connection per message, 10 clients: accepts/s, connect time.
    Churn,
    /// N idle connections held: memory per connection; then one echo each.
    Capacity,
    /// TCP loopback against a Unix socket: 1 and 100 connections, 64 B,
    /// closed loop, the two transports back to back for each model.
    Transport,
    /// The server on 1, 2, 4, … CPUs (up to half the machine, the load
    /// generator on the rest), 100 connections per server CPU, 64 B.
    Scaling,
    /// UDP loopback, every model that serves datagrams (and again with
    /// `--batch` where it takes it): closed loop at 1 and 100 flows × 64 and
    /// 1,400 B, then the highest open-loop rate sustained with loss ≤ 0.1 %
    /// and p99 ≤ the SLO.
    Udp,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Throughput,
        Scenario::Latency,
        Scenario::Churn,
        Scenario::Capacity,
        Scenario::Transport,
        Scenario::Scaling,
        Scenario::Udp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::Latency => "latency",
            Scenario::Churn => "churn",
            Scenario::Capacity => "capacity",
            Scenario::Transport => "transport",
            Scenario::Scaling => "scaling",
            Scenario::Udp => "udp",
        }
    }
}

/// Every axis of a load. Cells are grouped by all of it (a field added here
/// is part of every grouping at once) and sorted by it, field by field: the
/// tables list their rows in this order, so the model, ranked in the run's
/// order, comes after the axes a table lists it under.
///
/// Axes a scenario does not vary keep their defaults; those added after
/// results were recorded take their defaults when such results are read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LoadKey {
    pub scenario: Scenario,
    /// Absent in results written before transports existed: TCP.
    #[serde(default)]
    pub transport: Transport,
    /// The network between the load generator and the server.
    #[serde(default)]
    pub link: Link,
    /// Load-generator processes sharing the load (the connections are split
    /// among them).
    #[serde(default = "one_agent")]
    pub agents: u32,
    pub connections: u32,
    pub size: u32,
    /// Open loop only: the offered rate, msg/s (a climb's step).
    pub rate: Option<Rate>,
    /// What the server does for each message besides echoing it.
    #[serde(default)]
    pub work: Work,
    pub model: Model,
    /// The scaling scenario: CPUs the server runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpus: Option<u32>,
    /// The udp scenario: the server's `--batch` (datagrams per
    /// `recvmmsg`/`sendmmsg`); none: one system call per datagram.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
}

fn one_agent() -> u32 {
    1
}

impl LoadKey {
    /// `model` under `scenario` over `transport`, `connections` × `size` B,
    /// closed loop; every other axis at its default.
    pub fn new(scenario: Scenario, model: Model, transport: Transport, connections: u32, size: u32) -> LoadKey {
        LoadKey {
            scenario,
            transport,
            link: Link::default(),
            agents: one_agent(),
            connections,
            size,
            rate: None,
            work: Work::default(),
            model,
            server_cpus: None,
            batch: None,
        }
    }

    /// The offered rate, msg/s, of an open-loop cell.
    pub fn offered(&self) -> Option<f64> {
        self.rate.map(|r| r.0)
    }

    /// The same load at no particular rate: what the steps of one climb
    /// (the same load at rising rates) have in common.
    pub fn climb(&self) -> LoadKey {
        LoadKey { rate: None, ..self.clone() }
    }
}

/// One cell of the matrix: a load, and which repeat of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellSpec {
    #[serde(flatten)]
    pub load: LoadKey,
    /// 0-based repeat index.
    pub repeat: u32,
}

impl CellSpec {
    /// A cell for a reader, numbers grouped by thousands: `throughput tokio
    /// tcp, 1,000 connections, 64 B`, `capacity pool tcp, 10,000 idle
    /// connections`, `latency thread tcp, 100 connections, 64 B, 7,082 msg/s
    /// offered`.
    pub fn describe(&self) -> String {
        let spec = self;
        let head = format!("{} {} {}", spec.load.scenario.name(), spec.load.model, spec.load.transport);
        let connections = fmt_count(f64::from(spec.load.connections));
        let mut text = match (spec.load.scenario, spec.load.server_cpus) {
            (Scenario::Capacity, _) => format!("{head}, {connections} idle connections"),
            (Scenario::Udp, _) => format!(
                "udp {}, {connections} flows, {} B",
                crate::udp::variant_name(spec.load.model.name(), spec.load.batch),
                fmt_count(f64::from(spec.load.size))
            ),
            (_, Some(cpus)) => format!("{head}, {cpus} server CPU(s), {connections} connections, {} B", spec.load.size),
            _ => format!("{head}, {connections} connections, {} B", spec.load.size),
        };
        if let Some(rate) = spec.load.offered() {
            let unit = if spec.load.scenario == Scenario::Udp { "datagrams/s" } else { "msg/s" };
            let _ = write!(text, ", {} {unit} offered", fmt_count(rate));
        }
        text
    }

    /// The cell in a few words, for the console.
    pub fn label(&self) -> String {
        let load = &self.load;
        let (scenario, model, transport) = (load.scenario.name(), &load.model, load.transport);
        match (load.scenario, load.server_cpus) {
            (Scenario::Capacity, _) => format!("{scenario} {model} {transport} {} idle", load.connections),
            (_, Some(cpus)) => {
                format!("{scenario} {model} {transport} {cpus} CPU(s) c={} s={}B", load.connections, load.size)
            }
            (Scenario::Latency | Scenario::Udp, _) if load.rate.is_some() => format!(
                "{scenario} {} {transport} {} msg/s c={} s={}B",
                crate::udp::variant_name(model.name(), load.batch),
                loadgen::report::fmt_count(load.offered().unwrap_or(0.0)),
                load.connections,
                load.size
            ),
            (Scenario::Udp, _) => format!(
                "{scenario} {} {transport} c={} s={}B",
                crate::udp::variant_name(model.name(), load.batch),
                load.connections,
                load.size
            ),
            _ => format!("{scenario} {model} {transport} c={} s={}B", load.connections, load.size),
        }
    }
}

/// An offered rate, msg/s. Compared by its bits, so that it can be part of
/// a key: a step's rate is set, never computed, so equal rates are equal
/// bit for bit.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rate(pub f64);

impl PartialEq for Rate {
    fn eq(&self, other: &Rate) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Rate {}

impl Hash for Rate {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

impl PartialOrd for Rate {
    fn partial_cmp(&self, other: &Rate) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Rate {
    fn cmp(&self, other: &Rate) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The network a load crosses: `loopback` (the only one so far).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Link(pub Cow<'static, str>);

impl Default for Link {
    fn default() -> Link {
        Link(Cow::Borrowed("loopback"))
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The work a server does per message besides the echo: `none` (the only
/// one so far).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Work(pub Cow<'static, str>);

impl Default for Work {
    fn default() -> Work {
        Work(Cow::Borrowed("none"))
    }
}

impl fmt::Display for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_recorded_before_the_new_axes_reads_back_with_their_defaults() {
        let json = r#"{"scenario": "latency", "model": "tokio", "transport": "unix", "connections": 100,
                       "size": 64, "rate": 2000.0, "repeat": 1}"#;
        let spec: CellSpec = serde_json::from_str(json).expect("an old cell spec");
        let load = &spec.load;
        assert_eq!((load.link.0.as_ref(), load.agents, load.work.0.as_ref()), ("loopback", 1, "none"));
        assert_eq!((load.offered(), load.server_cpus, load.batch, spec.repeat), (Some(2000.0), None, None, 1));
        let again: CellSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(again, spec, "written and read back");
    }

    #[test]
    fn cells_differing_in_any_axis_are_different_loads() {
        let json = r#"{"scenario": "throughput", "model": "tokio", "connections": 100, "size": 64, "rate": null,
                       "repeat": 0}"#;
        let base: CellSpec = serde_json::from_str(json).unwrap();
        let other_repeat = CellSpec { repeat: 1, ..base.clone() };
        assert_eq!(other_repeat.load, base.load, "a repeat is the same load");
        let mut link = base.load.clone();
        link.link = Link(Cow::Borrowed("veth"));
        let agents = LoadKey { agents: 2, ..base.load.clone() };
        let work = LoadKey { work: Work(Cow::Borrowed("hash")), ..base.load.clone() };
        for other in [link, agents, work] {
            assert_ne!(other, base.load);
        }
        let step = LoadKey { rate: Some(Rate(1000.0)), ..base.load.clone() };
        assert_ne!(step, base.load);
        assert_eq!(step.climb(), base.load, "the steps of a climb share all but their rate");
    }
}
