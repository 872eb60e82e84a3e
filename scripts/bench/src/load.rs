//! What a cell measures, as one value: its [`LoadKey`], every axis of the
//! load a model is put under. Two cells with the same key are repeats of
//! one another; any other difference makes them different loads. The
//! runner's climbs, the spread across repeats, the tables and the charts
//! all group cells by it, so an axis added here is never pooled.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use echo_common::Transport;
use serde::{Deserialize, Serialize};

use crate::models::Model;

/// A scenario, by name: `throughput`, `latency`, … What it does is its
/// file's under [`crate::scenarios`], which the name finds; results.json
/// records the name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScenarioId(Cow<'static, str>);

impl ScenarioId {
    pub const fn new(name: &'static str) -> ScenarioId {
        ScenarioId(Cow::Borrowed(name))
    }

    pub fn name(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScenarioId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every axis of a load. Cells are grouped by all of it (a field added here
/// is part of every grouping at once) and sorted by it, field by field: the
/// tables list their rows in this order, so the model, ranked in the run's
/// order, comes after the axes a table lists it under.
///
/// Axes a scenario does not vary keep their defaults; those added after
/// results were recorded take their defaults when such results are read.
/// An axis with a default most loads keep is also said in
/// [`LoadKey::other_axes`], so that cells that set it read apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LoadKey {
    pub scenario: ScenarioId,
    /// Absent in results written before transports existed: TCP.
    #[serde(default)]
    pub transport: Transport,
    /// The network between the load generator and the server.
    #[serde(default = "Name::loopback")]
    pub link: Name,
    /// Load-generator processes sharing the load (the connections are split
    /// among them).
    #[serde(default = "one_agent")]
    pub agents: u32,
    pub connections: u32,
    pub size: u32,
    /// Open loop only: the offered rate, msg/s (a climb's step).
    pub rate: Option<Rate>,
    /// What the server does for each message besides echoing it.
    #[serde(default = "Name::none")]
    pub work: Name,
    pub model: Model,
    /// The scaling scenario: CPUs the server runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpus: Option<u32>,
    /// The udp scenario: the server's `--batch` (datagrams per
    /// `recvmmsg`/`sendmmsg`); none: one system call per datagram.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<u32>,
    /// The work scenario: the server's `--blocking` (where tokio runs
    /// `block:` work: `spawn` or `inline`); none: the model's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocking: Option<Name>,
}

fn one_agent() -> u32 {
    1
}

impl LoadKey {
    /// `model` under `scenario` over `transport`, `connections` × `size` B,
    /// closed loop; every other axis at its default.
    pub fn new(scenario: ScenarioId, model: Model, transport: Transport, connections: u32, size: u32) -> LoadKey {
        LoadKey {
            scenario,
            transport,
            link: Name::loopback(),
            agents: one_agent(),
            connections,
            size,
            rate: None,
            work: Name::none(),
            model,
            server_cpus: None,
            batch: None,
            blocking: None,
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

    /// The named and counted axes most loads leave at their defaults (link,
    /// agents, work), in words when a load sets them: `, over veth, 2
    /// agents, work hash`; empty for the others. A scenario's words for a
    /// cell end with these, so two loads that differ only there read apart.
    pub fn other_axes(&self) -> String {
        let mut words = String::new();
        if self.link != Name::loopback() {
            words.push_str(&format!(", over {}", self.link));
        }
        if self.agents != one_agent() {
            words.push_str(&format!(", {} agents", self.agents));
        }
        if self.work != Name::none() {
            words.push_str(&format!(", work {}", self.work));
        }
        words
    }

    /// Whether the axes most loads leave at their defaults are at them: the
    /// load the summary and the claims compare models on (over a link or
    /// with work, a model's figures are another load's). The agents are not
    /// among them: `--load-hosts` drives every cell of a run from the same
    /// agents, and the summary compares the models under that load.
    pub fn at_defaults(&self) -> bool {
        self.link == Name::loopback() && self.work == Name::none()
    }

    /// The model as the cell ran it: `iterative`, `iterative --batch 32`,
    /// `tokio --blocking inline`.
    pub fn variant(&self) -> String {
        let mut words = self.model.name().to_owned();
        if let Some(n) = self.batch {
            words.push_str(&format!(" --batch {n}"));
        }
        if let Some(blocking) = &self.blocking {
            words.push_str(&format!(" --blocking {blocking}"));
        }
        words
    }

    /// The server's options for this load beside `--addr`: `--work`,
    /// `--batch`, `--blocking` where the load sets them.
    pub fn server_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.work != Name::none() {
            args.extend(["--work".to_owned(), self.work.to_string()]);
        }
        if let Some(n) = self.batch {
            args.extend(["--batch".to_owned(), n.to_string()]);
        }
        if let Some(blocking) = &self.blocking {
            args.extend(["--blocking".to_owned(), blocking.to_string()]);
        }
        args
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

/// The value of an axis that is named rather than counted: the link a
/// load crosses (`loopback`, or `veth`: the server in a namespace of its
/// own, reached over a veth pair and a bridge), the work a server does per
/// message besides the echo (`none`, the only one so far).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Name(pub Cow<'static, str>);

impl Name {
    /// The link of every load so far.
    pub fn loopback() -> Name {
        Name(Cow::Borrowed("loopback"))
    }

    /// The server in a network namespace of its own, reached over a veth
    /// pair and a bridge ([`crate::hosts::netns`]).
    pub fn veth() -> Name {
        Name(Cow::Borrowed("veth"))
    }

    /// The links `--link` takes, by name.
    pub fn link_named(name: &str) -> Option<Name> {
        [Name::loopback(), Name::veth()].into_iter().find(|n| n.0 == name)
    }

    /// The work of every load so far.
    pub fn none() -> Name {
        Name(Cow::Borrowed("none"))
    }
}

impl fmt::Display for Name {
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
        assert_eq!(load.blocking, None);
        assert!(load.server_args().is_empty(), "an old cell ran the server with its defaults");
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
        link.link = Name(Cow::Borrowed("veth"));
        let agents = LoadKey { agents: 2, ..base.load.clone() };
        let work = LoadKey { work: Name(Cow::Borrowed("hash")), ..base.load.clone() };
        for other in [link, agents, work.clone()] {
            assert_ne!(other, base.load);
        }
        assert_eq!(base.load.other_axes(), "");
        let all = LoadKey {
            agents: 2,
            link: Name(Cow::Borrowed("veth")),
            work: Name(Cow::Borrowed("hash")),
            ..base.load.clone()
        };
        assert_eq!(all.other_axes(), ", over veth, 2 agents, work hash");
        let inline = LoadKey { blocking: Some(Name(Cow::Borrowed("inline"))), ..work.clone() };
        assert_ne!(inline, work, "a --blocking variant is a load of its own");
        assert_eq!(inline.server_args(), ["--work", "hash", "--blocking", "inline"]);
        assert_eq!(inline.variant(), "tokio --blocking inline");
        let step = LoadKey { rate: Some(Rate(1000.0)), ..base.load.clone() };
        assert_ne!(step, base.load);
        assert_eq!(step.climb(), base.load, "the steps of a climb share all but their rate");
    }
}
