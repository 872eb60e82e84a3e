//! The transport scenario: TCP loopback against a Unix domain socket, for
//! every model, closed loop; the two cells of a model run back to back and
//! each ratio is taken within such a pair. With `--link veth`, a third
//! cell follows them: TCP over veth (the server in a network namespace of
//! its own, reached over a veth pair and a bridge), compared with TCP
//! loopback the same way. A Unix socket has no link: it has no veth cell.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use echo_common::Transport;
use loadgen::report::fmt_count;

use crate::flags::Figure;
use crate::load::{LoadKey, Name};
use crate::plan::Shape;
use crate::render::charts::{self, Frame, Row, Rule, Scale};
use crate::render::doc::Doc;
use crate::render::format::{count, grouped, ratio, show};
use crate::render::series;
use crate::results::{Cell, Results};
use crate::scenario::{Chart, Report, SMALL, Scenario, Throttled, Window, every_model};
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
        "TCP loopback against a Unix socket (and TCP over veth with --link veth): 1 and 100 connections, 64 B, \
         closed loop, the transports back to back for each model"
    }

    fn defaults(&self, shape: &mut Shape, quick: bool, _cpus: usize) -> bool {
        // --quick keeps its 3-minute budget with the 100-connection pair only.
        shape.transport_connections = if quick { vec![100] } else { CONNECTIONS.to_vec() };
        true
    }

    /// As many repeats as the throughput scenario's (2 in the default
    /// matrix): its cells are as long, and the run's 30 minutes do not
    /// hold a third (≈ 1.9 min).
    fn repeats(&self, shape: &Shape) -> u32 {
        shape.throughput_repeat.min(shape.repeat)
    }

    /// Over both stream transports whatever `--transports` says: each
    /// model over TCP and then over a Unix socket, so the two cells of a
    /// pair are adjacent; then over TCP across veth when the run's links
    /// have it.
    fn loads(&self, shape: &Shape) -> Vec<Vec<LoadKey>> {
        let veth = shape.links.contains(&Name::veth());
        let pair = |connections| {
            every_model(shape, |m| {
                let mut keys: Vec<LoadKey> =
                    Transport::STREAMS.map(|t| LoadKey::new(self.id(), m.clone(), t, connections, SMALL)).to_vec();
                if veth {
                    let tcp = LoadKey::new(self.id(), m.clone(), Transport::Tcp, connections, SMALL);
                    keys.push(LoadKey { link: Name::veth(), ..tcp });
                }
                keys
            })
        };
        shape.transport_connections.iter().map(|&n| pair(n)).collect()
    }

    fn sets_links(&self) -> bool {
        true
    }

    fn window(&self) -> Window {
        Window::Capped { at_most: WINDOW, cells: "transport", beside: Some("the transport scenario") }
    }

    fn per_transport(&self) -> bool {
        false
    }

    fn server_quota(&self) -> Throttled {
        Throttled::Every
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
        doc.push_str(&versus_table(r, &pairs, Versus::Unix));
        if pairs.iter().any(|p| !p.veth.is_empty()) {
            veth_table(r, &pairs, doc);
        }
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
        let mut drawn = versus_chart(r, &pairs, dir, Versus::Unix)?;
        drawn.extend(versus_chart(r, &pairs, dir, Versus::Veth)?);
        Ok(drawn)
    }
}

/// The veth part of the section: TCP over veth against TCP loopback, per
/// model and connection count, the ratios taken within each repeat.
fn veth_table(r: &Report<'_>, pairs: &[TransportPair<'_>], doc: &mut Doc) {
    doc.heading(3, "TCP over veth against TCP loopback");
    doc.push_str(
        "The same load over TCP with the server in a network namespace of its own, reached over a veth pair \
         and a bridge (the path a packet takes between containers), run right after the model's loopback and \
         Unix socket cells; veth ÷ tcp within each repeat, then the median. Below 1 for msg/s, above 1 for CPU \
         per message: the link costs. A Unix socket has no link, so it has no veth cell.\n\n",
    );
    doc.push_str(&versus_table(r, pairs, Versus::Veth));
}

/// The cells compared with TCP loopback: the Unix socket's, or TCP over veth's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Versus {
    Unix,
    Veth,
}

impl Versus {
    /// Its name in the columns: `unix`, `veth`.
    fn name(self) -> &'static str {
        match self {
            Versus::Unix => "unix",
            Versus::Veth => "veth",
        }
    }

    /// Its cells in `pair`.
    fn cells<'p, 'a>(self, pair: &'p TransportPair<'a>) -> &'p [&'a Cell] {
        match self {
            Versus::Unix => &pair.unix,
            Versus::Veth => &pair.veth,
        }
    }

    /// What its chart is called, and the way faster or slower reads on it.
    fn chart_title(self) -> &'static str {
        match self {
            Versus::Unix => "Unix socket ÷ TCP loopback, msg/s",
            Versus::Veth => "TCP over veth ÷ TCP loopback, msg/s",
        }
    }

    /// The chart's reading of the line of 1, and its file.
    fn reading_and_file(self) -> (&'static str, &'static str) {
        match self {
            Versus::Unix => ("right of 1, the Unix socket is faster", "transport-ratio.svg"),
            Versus::Veth => ("left of 1, the veth link is slower", "transport-veth-ratio.svg"),
        }
    }
}

/// The table of `versus` against TCP loopback: msg/s and CPU per message
/// of both, and their ratios within each repeat, per model and connection
/// count (for veth, only where there are veth cells).
fn versus_table(r: &Report<'_>, pairs: &[TransportPair<'_>], versus: Versus) -> String {
    let v = versus.name();
    let mut table = r.table([
        "connections:".to_owned(),
        "model".to_owned(),
        "tcp msg/s:".to_owned(),
        format!("{v} msg/s:"),
        format!("{v}/tcp msg/s:"),
        "tcp CPU µs/msg:".to_owned(),
        format!("{v} CPU µs/msg:"),
        format!("{v}/tcp CPU/msg:"),
    ]);
    for pair in pairs.iter().filter(|p| versus == Versus::Unix || !versus.cells(p).is_empty()) {
        let rate = |c: &Cell| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec);
        let cpu = |c: &Cell| c.server_cpu_us_per_msg;
        let other = versus.cells(pair);
        let row = [
            count(f64::from(pair.connections)),
            pair.model.clone(),
            table.mark(show(Stat::over(&pair.tcp, rate), count), &pair.tcp, &[Figure::Rate]),
            table.mark(show(Stat::over(other, rate), count), other, &[Figure::Rate]),
            show(ratio_to_tcp(&pair.tcp, other, rate), ratio),
            table.mark(show(Stat::over(&pair.tcp, cpu), |v| grouped(v, 2)), &pair.tcp, &[Figure::Cpu]),
            table.mark(show(Stat::over(other, cpu), |v| grouped(v, 2)), other, &[Figure::Cpu]),
            show(ratio_to_tcp(&pair.tcp, other, cpu), ratio),
        ];
        table.row(row);
    }
    table.finish()
}

/// `versus` ÷ tcp msg/s per model and connection count: a dot each, its
/// whisker the min–max of the per-repeat ratios, the line of 1 (no
/// difference) across; hollow when a flag puts either rate in doubt.
/// Nothing when the run has no such cells.
fn versus_chart(r: &Report<'_>, pairs: &[TransportPair<'_>], dir: &Path, versus: Versus) -> Result<Vec<Chart>, String> {
    let mut rows = Vec::new();
    for model in &r.models {
        for pair in pairs.iter().filter(|p| p.model == model.name()) {
            let other = versus.cells(pair);
            let rate = |c: &Cell| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec);
            let Some(s) = ratio_to_tcp(&pair.tcp, other, rate) else {
                continue;
            };
            let both: Vec<&Cell> = pair.tcp.iter().chain(other).copied().collect();
            rows.push(Row {
                label: format!("{}, {} conn.", pair.model, fmt_count(f64::from(pair.connections))),
                colour: series::colour(model),
                marker: series::marker(model),
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
    let (reading, file) = versus.reading_and_file();
    let frame = Frame {
        title: format!("{} (closed loop, 64 B)", versus.chart_title()),
        subtitle: format!(
            "per model and connection count: the median of the per-repeat ratios, whiskers: min–max; {reading}"
        ),
        rules: vec![Rule { at: 1.0, label: "1×".into() }],
        notes: series::hollow_notes(rows.iter().any(|d| d.hollow), "dot"),
        ..Frame::default()
    };
    let v = versus.name();
    charts::dots(
        &dir.join(file),
        &frame,
        &[(format!("{v} msg/s ÷ tcp msg/s"), rows)],
        |x, d| format!("{x:.d$}×"),
        Scale::Linear,
    )?;
    Ok(vec![Chart { title: versus.chart_title().into(), file: file.to_owned() }])
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
    /// TCP over veth (`--link veth`; empty otherwise).
    pub veth: Vec<&'a Cell>,
}

/// `other` ÷ `tcp` of `figure`, within each repeat that has both cells:
/// unix ÷ tcp, or veth ÷ tcp (loopback).
pub fn ratio_to_tcp(tcp: &[&Cell], other: &[&Cell], figure: impl Fn(&Cell) -> Option<f64>) -> Option<Stat> {
    let ratios = tcp.iter().filter_map(|t| {
        let o = other.iter().find(|o| o.spec.repeat == t.spec.repeat)?;
        let (t, o) = (figure(t)?, figure(o)?);
        (t > 0.0).then(|| o / t)
    });
    Stat::of(ratios.collect())
}

/// The transport scenario's pairs, by connections then model: the ok
/// cells grouped by their load but for the transport and link, each group
/// split by transport and link.
pub fn transport_pairs(results: &Results) -> Vec<TransportPair<'_>> {
    let mine = results.cells.iter().filter(|c| c.ok && c.spec.load.scenario == Transports.id());
    let mut pairs: BTreeMap<LoadKey, TransportPair<'_>> = BTreeMap::new();
    for cell in mine {
        let load = &cell.spec.load;
        let key = LoadKey { transport: Transport::Tcp, link: Name::loopback(), ..load.clone() };
        let pair = pairs.entry(key).or_insert_with(|| TransportPair {
            model: load.model.name().to_owned(),
            colour: load.model.info().rgb(),
            connections: load.connections,
            tcp: Vec::new(),
            unix: Vec::new(),
            veth: Vec::new(),
        });
        match (load.transport, load.link == Name::veth()) {
            (Transport::Tcp, false) => pair.tcp.push(cell),
            (Transport::Tcp, true) => pair.veth.push(cell),
            (Transport::Unix, _) => pair.unix.push(cell),
            (Transport::Udp, _) => {}
        }
    }
    pairs.into_values().collect()
}
