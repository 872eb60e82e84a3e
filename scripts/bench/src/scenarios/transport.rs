//! The transport scenario: TCP loopback against a Unix domain socket, for
//! every model, closed loop; the two cells of a model run back to back and
//! each ratio is taken within such a pair.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use echo_common::Transport;
use loadgen::report::fmt_count;

use crate::flags::Figure;
use crate::load::LoadKey;
use crate::plan::Shape;
use crate::render::charts::{self, Frame, Row, Rule};
use crate::render::doc::Doc;
use crate::render::format::{count, grouped, ratio, show};
use crate::render::series;
use crate::results::{Cell, Results};
use crate::scenario::{Chart, Report, SMALL, Scenario, Window, every_model};
use crate::stats::Stat;

/// Connection counts of the transport scenario (`--quick`: 100 only).
pub const CONNECTIONS: [u32; 2] = [1, 100];
/// The measured window and warm-up are at most these: the scenario
/// compares two transports cell by cell, back to back, so short windows
/// keep the pairs close in time, and the full matrix within its budget.
pub const WINDOW: (Duration, Duration) = (Duration::from_secs(3), Duration::from_millis(500));

/// The transports compared (the name `Transport` is the transport's own).
#[derive(Debug)]
pub struct Transports;

impl Scenario for Transports {
    fn name(&self) -> &'static str {
        "transport"
    }

    fn about(&self) -> &'static str {
        "TCP loopback against a Unix socket: 1 and 100 connections, 64 B, closed loop, the two transports back \
         to back for each model"
    }

    fn defaults(&self, shape: &mut Shape, quick: bool, _cpus: usize) -> bool {
        // --quick keeps its 3-minute budget with the 100-connection pair only.
        shape.transport_connections = if quick { vec![100] } else { CONNECTIONS.to_vec() };
        true
    }

    /// Over both stream transports whatever `--transports` says: each
    /// model over TCP and then over a Unix socket, so the two cells of a
    /// pair are adjacent.
    fn loads(&self, shape: &Shape) -> Vec<Vec<LoadKey>> {
        let pair = |connections| {
            every_model(shape, |m| {
                Transport::STREAMS.map(|t| LoadKey::new(self.id(), m.clone(), t, connections, SMALL)).to_vec()
            })
        };
        shape.transport_connections.iter().map(|&n| pair(n)).collect()
    }

    fn window(&self) -> Window {
        Window::Capped { at_most: WINDOW, cells: "transport", beside: Some("the transport scenario") }
    }

    fn per_transport(&self) -> bool {
        false
    }

    fn server_quota(&self) -> bool {
        true
    }

    fn place(&self) -> u8 {
        60
    }

    fn section(&self, r: &Report<'_>, transport: Option<Transport>, doc: &mut Doc) {
        if transport.is_some() {
            return;
        }
        let pairs = transport_pairs(r.results);
        if pairs.is_empty() {
            return;
        }
        doc.heading(2, "Transport: TCP loopback against a Unix domain socket");
        doc.push_str(
            "Every model at 1 and 100 connections, 64 B, closed loop; for each model the TCP cell and the Unix \
             socket cell run back to back, and each ratio is taken within such a pair (unix ÷ tcp), then the \
             median over repeats. Above 1 for msg/s, below 1 for CPU per message: the Unix socket is cheaper.\n\n",
        );
        let mut table = r.table([
            "connections:",
            "model",
            "tcp msg/s:",
            "unix msg/s:",
            "unix/tcp msg/s:",
            "tcp CPU µs/msg:",
            "unix CPU µs/msg:",
            "unix/tcp CPU/msg:",
        ]);
        for pair in &pairs {
            let rate = |c: &Cell| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec);
            let cpu = |c: &Cell| c.server_cpu_us_per_msg;
            let row = [
                count(f64::from(pair.connections)),
                pair.model.clone(),
                table.mark(show(Stat::over(&pair.tcp, rate), count), &pair.tcp, &[Figure::Rate]),
                table.mark(show(Stat::over(&pair.unix, rate), count), &pair.unix, &[Figure::Rate]),
                show(pair.ratio(rate), ratio),
                table.mark(show(Stat::over(&pair.tcp, cpu), |v| grouped(v, 2)), &pair.tcp, &[Figure::Cpu]),
                table.mark(show(Stat::over(&pair.unix, cpu), |v| grouped(v, 2)), &pair.unix, &[Figure::Cpu]),
                show(pair.ratio(cpu), ratio),
            ];
            table.row(row);
        }
        doc.push_str(&table.finish());
    }

    /// unix ÷ tcp msg/s per model and connection count: a dot each, its
    /// whisker the min–max of the per-repeat ratios, the line of 1 (no
    /// difference) across; hollow when a flag puts either transport's rate
    /// in doubt.
    fn charts(&self, r: &Report<'_>, transport: Option<Transport>, dir: &Path) -> Result<Vec<Chart>, String> {
        if transport.is_some() {
            return Ok(Vec::new());
        }
        let pairs = transport_pairs(r.results);
        let mut rows = Vec::new();
        for model in &r.models {
            for pair in pairs.iter().filter(|p| p.model == model.name()) {
                let Some(s) = pair.ratio(|c| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec)) else { continue };
                let both: Vec<&Cell> = pair.tcp.iter().chain(&pair.unix).copied().collect();
                rows.push(Row {
                    label: format!("{}, {} conn.", pair.model, fmt_count(f64::from(pair.connections))),
                    colour: series::colour(model),
                    value: s.median,
                    range: (s.n > 1 && s.min != s.max).then_some((s.min, s.max)),
                    hollow: r.doubtful(&both, Figure::Rate),
                    text: r.lookup.notes().figure(ratio(s.median), &both, &[Figure::Rate]),
                });
            }
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let frame = Frame {
            title: "Unix domain socket ÷ TCP loopback, msg/s (closed loop, 64 B)".into(),
            subtitle: "per model and connection count: the median of the per-repeat ratios, whiskers: min–max; \
                       right of 1, the Unix socket is faster"
                .into(),
            rules: vec![Rule { at: 1.0, label: "1×".into() }],
            notes: series::hollow_notes(rows.iter().any(|d| d.hollow), "dot"),
            ..Frame::default()
        };
        let file = "transport-ratio.svg".to_owned();
        charts::dots(&dir.join(&file), &frame, "unix msg/s ÷ tcp msg/s", |x| format!("{x:.1}×"), rows)?;
        Ok(vec![Chart { title: "Unix socket ÷ TCP loopback, msg/s".into(), file }])
    }
}

/// One model's transport cells at one connection count: the TCP and Unix
/// cells, by repeat.
#[derive(Debug)]
pub struct TransportPair<'a> {
    pub model: String,
    pub colour: (u8, u8, u8),
    pub connections: u32,
    pub tcp: Vec<&'a Cell>,
    pub unix: Vec<&'a Cell>,
}

impl TransportPair<'_> {
    /// unix ÷ tcp of `figure`, within each repeat that has both cells.
    pub fn ratio(&self, figure: impl Fn(&Cell) -> Option<f64>) -> Option<Stat> {
        let ratios = self.tcp.iter().filter_map(|t| {
            let u = self.unix.iter().find(|u| u.spec.repeat == t.spec.repeat)?;
            let (t, u) = (figure(t)?, figure(u)?);
            (t > 0.0).then(|| u / t)
        });
        Stat::of(ratios.collect())
    }
}

/// The transport scenario's pairs, by connections then model: the ok
/// cells grouped by their load but for the transport, each group split by
/// transport.
pub fn transport_pairs(results: &Results) -> Vec<TransportPair<'_>> {
    let mine = results.cells.iter().filter(|c| c.ok && c.spec.load.scenario == Transports.id());
    let mut pairs: BTreeMap<LoadKey, TransportPair<'_>> = BTreeMap::new();
    for cell in mine {
        let load = &cell.spec.load;
        let pair = pairs.entry(LoadKey { transport: Transport::Tcp, ..load.clone() }).or_insert_with(|| TransportPair {
            model: load.model.name().to_owned(),
            colour: load.model.info().rgb(),
            connections: load.connections,
            tcp: Vec::new(),
            unix: Vec::new(),
        });
        match load.transport {
            Transport::Tcp => pair.tcp.push(cell),
            Transport::Unix => pair.unix.push(cell),
            Transport::Udp => {}
        }
    }
    pairs.into_values().collect()
}
