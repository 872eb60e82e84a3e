//! The throughput scenario: closed loop, each connection sends a message
//! and waits for its echo, again and again, over connection counts ×
//! message sizes. Its figures are msg/s, latency and the server CPU each
//! message costs; it leads the summary with that CPU.

use std::path::Path;

use echo_common::Transport;
use loadgen::report::fmt_count;

use crate::flags::Figure;
use crate::load::LoadKey;
use crate::models::Model;
use crate::plan::Shape;
use crate::render::charts::{self, Frame, Row, Scale, XAxis, YAxis};
use crate::render::doc::{Doc, TableId};
use crate::render::figures::{errors, latency, load_stat, server_busy, server_cpu, throughput};
use crate::render::format::{count, grouped, kib, show, transport_words};
use crate::render::series::{self, axis_trimmed, hollow_notes, repeats_words};
use crate::results::{Cell, Settings};
use crate::scenario::{Chart, Claim, Column, Report, SMALL, Scenario, Summary, Throttled, every_model, ranked};
use crate::stats::Stat;

/// Repeats of the throughput scenario in the default matrix (the others
/// run 3): its 88 cells per repeat are the bulk of the run, and the time
/// saved pays for the latency ladder (see [`super::latency`]'s budget).
pub const THROUGHPUT_REPEAT: u32 = 2;

/// The connections of the figures the summary and the claims quote.
const SUMMARY_CONNECTIONS: u32 = 100;

#[derive(Debug)]
pub struct Throughput;

impl Scenario for Throughput {
    fn name(&self) -> &'static str {
        "throughput"
    }

    fn about(&self) -> &'static str {
        "Closed loop: throughput and latency over connections × sizes"
    }

    fn defaults(&self, shape: &mut Shape, quick: bool, _cpus: usize) -> bool {
        shape.connections = if quick { vec![1, 100] } else { vec![1, 10, 100, 1000] };
        // 4 KiB messages (`--sizes 64,4096`) are not in the default matrix:
        // their 88 cells (≈ 3.8 min) would take the run past 30 minutes.
        shape.sizes = vec![64];
        shape.throughput_repeat = if quick { 1 } else { THROUGHPUT_REPEAT };
        true
    }

    fn loads(&self, shape: &Shape) -> Vec<Vec<LoadKey>> {
        let mut loads = Vec::new();
        for &transport in &shape.transports {
            for &size in &shape.sizes {
                for &connections in &shape.connections {
                    loads.push(every_model(shape, |m| {
                        vec![LoadKey::new(self.id(), m.clone(), transport, connections, size)]
                    }));
                }
            }
        }
        loads
    }

    fn repeats(&self, shape: &Shape) -> u32 {
        shape.throughput_repeat.min(shape.repeat)
    }

    fn server_quota(&self) -> Throttled {
        Throttled::Every
    }

    fn place(&self) -> u8 {
        10
    }

    fn repeat_note(&self, settings: &Settings) -> Option<String> {
        (settings.throughput_repeat != settings.repeat)
            .then(|| format!("{} for the throughput scenario", settings.throughput_repeat))
    }

    fn section(&self, r: &Report<'_>, transport: Option<Transport>, doc: &mut Doc) {
        let Some(transport) = transport else { return };
        let me = self.id();
        if r.groups_of(&me, transport).next().is_none() {
            return;
        }
        doc.heading(2, &format!("Throughput and latency, closed loop, {}", transport_words(transport)));
        doc.push_str(
            "Each connection sends a message and waits for its echo, again and again. `starved`: connections \
             that got no echo in the measured window. Server CPU is user + system time of the server's whole \
             process tree over the window, per completed message; `server busy`: its CPU over the window as \
             a share of its allotment (its quota, or its CPUs when unthrottled).\n\n",
        );
        for size in sizes(r, transport) {
            let id = TableId { scenario: me.clone(), transport, part: Some(size) };
            doc.table_heading(3, &format!("{size} B messages"), id);
            let mut table = r.table([
                "connections:",
                "model",
                "msg/s:",
                "server CPU µs/msg:",
                "server busy:",
                "p50:",
                "p99:",
                "p99.9:",
                "server PSS peak:",
                "errors:",
                "starved:",
            ]);
            for (k, cells) in r.groups_of(&me, transport).filter(|(k, _)| k.size == size) {
                let row = [
                    count(f64::from(k.connections)),
                    k.model.name().to_owned(),
                    table.mark(throughput(cells), cells, &[Figure::Rate]),
                    table.mark(server_cpu(cells, 2), cells, &[Figure::Cpu]),
                    server_busy(cells, &r.results.settings),
                    latency(cells, |l| l.p50),
                    table.mark(latency(cells, |l| l.p99), cells, &[Figure::Latency]),
                    latency(cells, |l| l.p99_9),
                    // A PSS of 0 beside a resident set: not read in the window
                    // (runs before the close edge read it), not a figure.
                    show(
                        Stat::over(cells, |c| {
                            c.server
                                .filter(|s| s.pss_peak_kib > 0 || s.rss_peak_kib == 0)
                                .map(|s| s.pss_peak_kib as f64)
                        }),
                        kib,
                    ),
                    errors(cells),
                    show(load_stat(cells, |r| r.per_connection.starved as f64), count),
                ];
                table.row(row);
            }
            doc.push_str(&table.finish());
        }
    }

    fn charts(&self, r: &Report<'_>, transport: Option<Transport>, dir: &Path) -> Result<Vec<Chart>, String> {
        let Some(transport) = transport else { return Ok(Vec::new()) };
        let me = self.id();
        let (suffix, over) = (r.suffix(transport), r.over(transport));
        let repeats = repeats_words(r.results.settings.throughput_repeat);
        let mut out = Vec::new();
        for size in sizes(r, transport) {
            let groups: Vec<_> = r.groups_of(&me, transport).filter(|(k, _)| k.size == size).collect();
            let connections = |k: &LoadKey, _: &[&Cell]| Some(f64::from(k.connections));
            let rate = |c: &Cell| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec);
            let lines = series::lines(&r.lookup, &r.models, &groups, connections, rate, Figure::Rate);
            if lines.is_empty() {
                continue;
            }
            let file = format!("throughput-{size}B{suffix}.svg");
            let frame = Frame {
                title: format!("Throughput vs connections, {size} B messages (closed loop){over}"),
                subtitle: repeats.clone(),
                x_desc: "connections".into(),
                y_desc: "messages / s".into(),
                ..Frame::default()
            };
            charts::lines(&dir.join(&file), &frame, &lines, XAxis::LogAtPoints, YAxis::Linear(grouped))?;
            out.push(Chart { title: format!("Throughput vs connections, {size} B{over}"), file });

            let panels = cpu_panels(r, &groups);
            if !panels.is_empty() {
                let file = format!("cpu-per-message-{size}B{suffix}.svg");
                let frame = Frame {
                    title: format!("Server CPU per message, {size} B, closed loop{over}"),
                    subtitle: format!(
                        "{}; user + system time of the server's process tree; log scale, shared by the panels",
                        repeats.replace("bars", "whiskers")
                    ),
                    notes: hollow_notes(panels.iter().any(|(_, rows)| rows.iter().any(|r| r.hollow)), "dot"),
                    ..Frame::default()
                };
                charts::dots(&dir.join(&file), &frame, &panels, axis_trimmed, Scale::Log)?;
                out.push(Chart { title: format!("Server CPU per message by connections, {size} B{over}"), file });
            }
        }
        Ok(out)
    }

    /// Server CPU per message and msg/s at 100 connections, 64 B; when the
    /// run has cost cells, the CPU per message (its column and its claim)
    /// is the cost scenario's, at a rate every model is offered, and this
    /// scenario gives its msg/s only.
    fn summary<'r>(&self, r: &'r Report<'r>) -> Summary<'r> {
        let rate = Column {
            heading: "msg/s, 100 connections",
            intro: None,
            leads: false,
            figure: Box::new(move |m, notes| at(r, m).map(|c| notes.figure(throughput(c), c, &[Figure::Rate]))),
        };
        if super::cost::ran(r) {
            let intro = Some("msg/s at 100 connections with 64 B messages (closed loop)".into());
            return Summary { columns: vec![Column { intro, ..rate }], claims: Vec::new() };
        }
        let columns = vec![
            Column {
                heading: "server CPU µs/msg",
                intro: Some(
                    "server CPU per message and msg/s at 100 connections with 64 B messages (closed loop)".into(),
                ),
                leads: true,
                figure: Box::new(move |m, notes| at(r, m).map(|c| notes.figure(server_cpu(c, 2), c, &[Figure::Cpu]))),
            },
            rate,
        ];
        Summary { columns, claims: self.claim(r).into_iter().collect() }
    }
}

/// `model`'s closed-loop cells at 100 connections, 64 B, over the run's
/// main transport ([`Report::main_transport`]): the figures the summary
/// quotes.
fn at<'r>(r: &'r Report<'r>, model: &Model) -> Option<&'r Vec<&'r Cell>> {
    let of =
        |k: &LoadKey| k.connections == SUMMARY_CONNECTIONS && k.size == SMALL && k.model == *model && k.at_defaults();
    r.groups_of(&Throughput.id(), r.main_transport()?).find(|(k, _)| of(k)).map(|(_, cells)| cells)
}

impl Throughput {
    /// Lowest server CPU per message, closed loop: 64 B (or the smallest
    /// size) at 100 connections (or the most the run has).
    fn claim(&self, r: &Report<'_>) -> Option<Claim> {
        let transport = r.main_transport()?;
        let load: Vec<&Cell> =
            r.cells_of(&self.id()).into_iter().filter(|c| c.spec.load.transport == transport).collect();
        let sizes = || load.iter().map(|c| c.spec.load.size);
        let size = sizes().find(|&s| s == SMALL).or(sizes().min())?;
        let counts = || load.iter().map(|c| c.spec.load.connections);
        let connections = counts().find(|&n| n == SUMMARY_CONNECTIONS).or(counts().max())?;
        let cells: Vec<&Cell> =
            load.into_iter().filter(|c| c.spec.load.size == size && c.spec.load.connections == connections).collect();
        Some(Claim {
            title: "Lowest server CPU per message",
            conditions: format!("at {} connections, {size} B messages, closed loop", fmt_count(f64::from(connections))),
            ranked: ranked(r.entries(&cells, |c| c.server_cpu_us_per_msg, &[Figure::Cpu]), true),
            left_out: None,
            table: TableId { scenario: self.id(), transport, part: Some(size) },
            show: |v| format!("{v:.2} µs"),
        })
    }
}

/// Server CPU per message, a panel per connection count of `groups`
/// (one size), a row per model in every panel (its dot, min–max whisker
/// and value; no dot where it has no cells), hollow when flagged.
///
/// A log scale, shared by the panels: the figures span a factor of ten
/// (≈ 5 µs for the event loops at 100 connections, ≈ 44 µs for a pool's
/// hand-offs at 1): on a linear axis the low ones would crowd within a few
/// pixels; on a log one a 6 % difference (4.9 against 5.2 µs) is as wide
/// at 5 µs as at 50, and the rows keep the models apart anyway.
fn cpu_panels(r: &Report<'_>, groups: &[(&LoadKey, &Vec<&Cell>)]) -> Vec<(String, Vec<Row>)> {
    let counts: std::collections::BTreeSet<u32> = groups.iter().map(|(k, _)| k.connections).collect();
    let cpu = |c: &Cell| c.server_cpu_us_per_msg;
    let mut panels = Vec::new();
    for n in counts {
        let mut rows = Vec::new();
        for model in &r.models {
            let cells = groups.iter().find(|(k, _)| k.connections == n && k.model == *model).map(|(_, c)| c.as_slice());
            let text = |v: f64| format!("{v:.1}");
            let row = cells.and_then(|c| {
                series::bar(&r.lookup, model.name().to_owned(), series::style(model), c, cpu, Figure::Cpu, text)
            });
            let (colour, marker) = series::style(model);
            let blank = Row {
                label: model.name().to_owned(),
                colour,
                marker,
                value: f64::NAN,
                range: None,
                hollow: false,
                text: String::new(),
            };
            rows.push(row.unwrap_or(blank));
        }
        if rows.iter().any(|r| r.value.is_finite()) {
            let what = if n == 1 { "connection" } else { "connections" };
            panels.push((format!("µs, {} {what}", fmt_count(f64::from(n))), rows));
        }
    }
    // Models with no figure in any panel are no row at all.
    let keep: Vec<bool> =
        (0..r.models.len()).map(|i| panels.iter().any(|(_, rows)| rows[i].value.is_finite())).collect();
    for (_, rows) in &mut panels {
        let mut i = 0;
        rows.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }
    panels
}

/// The message sizes of the run's throughput cells over `transport`.
fn sizes(r: &Report<'_>, transport: Transport) -> std::collections::BTreeSet<u32> {
    r.groups_of(&Throughput.id(), transport).map(|(k, _)| k.size).collect()
}
