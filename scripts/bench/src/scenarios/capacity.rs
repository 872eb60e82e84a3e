//! The capacity scenario: N idle connections held, what they cost the
//! server in memory (measured by [`crate::capacity`]), then one echo on
//! each, counting those not served.

use std::fmt::Write as _;
use std::path::Path;

use echo_common::Transport;
use loadgen::Opts;
use loadgen::report::fmt_count;

use crate::capacity::{Capacity as Held, PROBE};
use crate::flags::Figure;
use crate::load::LoadKey;
use crate::models::Model;
use crate::plan::Shape;
use crate::render::charts::{self, Frame, Scale};
use crate::render::doc::{Doc, TableId};
use crate::render::format::{count, kib, show, transport_words};
use crate::render::series::{self, hollow_notes, repeats_words};
use crate::results::Cell;
use crate::scenario::{Chart, Claim, Column, Drive, Headline, Report, Scenario, Summary, Window, every_model, ranked};
use crate::stats::Stat;

/// The idle connections the summary quotes (or the model's cap, if lower).
const SUMMARY_HELD: u32 = 1000;

#[derive(Debug)]
pub struct Capacity;

/// A chart's text for memory per connection: `4.1 KiB`, or `≈ 0 KiB` for
/// a figure that prints as zero or below (`≈ 0 KiB (-3.5 measured)`).
pub fn about_zero(v: f64) -> String {
    if v < 0.05 {
        let measured =
            if v <= -0.05 { format!(" ({} measured)", kib(v).replace('\u{a0}', " ")) } else { String::new() };
        format!("≈ 0 KiB{measured}")
    } else {
        kib(v).replace('\u{a0}', " ")
    }
}

impl Scenario for Capacity {
    fn name(&self) -> &'static str {
        "capacity"
    }

    fn about(&self) -> &'static str {
        "N idle connections held: memory per connection; then one echo each"
    }

    fn defaults(&self, shape: &mut Shape, quick: bool, _cpus: usize) -> bool {
        shape.capacity = if quick { vec![1000] } else { vec![1000, 10_000] };
        true
    }

    /// Each count of `--capacity`, or fewer for a model whose default cap
    /// is lower (`process`).
    fn loads(&self, shape: &Shape) -> Vec<Vec<LoadKey>> {
        let probe = PROBE.len() as u32;
        let mut loads = Vec::new();
        for &transport in &shape.transports {
            for &n in &shape.capacity {
                loads.push(every_model(shape, |m| {
                    vec![LoadKey::new(self.id(), m.clone(), transport, m.capacity_for(n), probe)]
                }));
            }
        }
        loads
    }

    fn window(&self) -> Window {
        Window::Own
    }

    fn drive(&self, _load: &LoadKey, _opts: Opts) -> Drive {
        Drive::Idle
    }

    fn label(&self, load: &LoadKey) -> String {
        format!("{} {} {} {} idle", load.scenario, load.model, load.transport, load.connections)
    }

    fn describe(&self, load: &LoadKey) -> String {
        let connections = fmt_count(f64::from(load.connections));
        format!("{} {} {}, {connections} idle connections", load.scenario, load.model, load.transport)
    }

    fn headline(&self, _load: &LoadKey) -> Headline {
        Headline {
            name: "PSS per connection",
            figure: Figure::Held,
            value: |c| c.capacity.as_ref().map(|c| c.pss_per_connection_kib),
            show: |v| format!("{v:.1} KiB per connection"),
        }
    }

    fn place(&self) -> u8 {
        40
    }

    fn section(&self, r: &Report<'_>, transport: Option<Transport>, doc: &mut Doc) {
        let Some(transport) = transport else { return };
        let me = self.id();
        if r.groups_of(&me, transport).next().is_none() {
            return;
        }
        let s = &r.results.settings;
        let id = TableId { scenario: me.clone(), transport, part: None };
        doc.table_heading(2, &format!("Capacity: idle connections held, {}", transport_words(transport)), id);
        let capped: Vec<String> = s
            .models
            .iter()
            .filter(|m| s.capacity.iter().any(|&n| u64::from(n) > m.default_max_connections))
            .map(|m| {
                format!("`{}` is capped at its {} connections", m.name, fmt_count(m.default_max_connections as f64))
            })
            .collect();
        let _ = writeln!(
            doc,
            "N connections are opened and left idle; the server's memory is read from /proc (PSS from \
             smaps_rollup, so pages shared between a model's child processes are counted once), and divided by \
             the connections the server `held`: sockets its processes hold beyond those they held before, \
             and still open at the client's end (a peek: closed ones read end of file); a connection left \
             waiting in the listener's backlog is not held. Then every \
             connection sends one echo; `not served` did not get it back within 5 s.{}\n",
            if capped.is_empty() { String::new() } else { format!(" {}.", capped.join("; ")) }
        );
        let mut table = r.table([
            "model",
            "connections:",
            "held:",
            "PSS / connection:",
            "RSS / connection:",
            "server PSS held:",
            "threads:",
            "processes:",
            "not served:",
        ]);
        for (k, cells) in r.groups_of(&me, transport) {
            let held = |f: fn(&Held) -> f64| Stat::over(cells, move |c| c.capacity.as_ref().map(f));
            let row = [
                k.model.name().to_owned(),
                count(f64::from(k.connections)),
                show(held(|c| c.held as f64), count),
                table.mark(show(held(|c| c.pss_per_connection_kib), kib), cells, &[Figure::Held]),
                show(held(|c| c.rss_per_connection_kib), kib),
                show(held(|c| c.pss_held_kib as f64), kib),
                show(held(|c| c.threads as f64), count),
                show(held(|c| c.processes as f64), count),
                show(held(|c| c.not_served as f64), count),
            ];
            table.row(row);
        }
        doc.push_str(&table.finish());
    }

    /// Memory per idle connection: a dot per model and count held, on a
    /// log scale (from ≈ 0.4 KiB to ≈ 400 KiB a connection: on a linear one
    /// every event loop sat on the axis); a figure at or below zero (the
    /// server's memory fell while it held them: a negative difference) is
    /// drawn at the axis's floor and printed `≈ 0`, with what was measured.
    fn charts(&self, r: &Report<'_>, transport: Option<Transport>, dir: &Path) -> Result<Vec<Chart>, String> {
        let Some(transport) = transport else { return Ok(Vec::new()) };
        let me = self.id();
        let mut rows = Vec::new();
        for model in &r.models {
            for (k, cells) in r.groups_of(&me, transport).filter(|(k, _)| k.model == *model) {
                let label = format!("{}, {}", model.name(), fmt_count(f64::from(k.connections)));
                let pss = |c: &Cell| c.capacity.as_ref().map(|c| c.pss_per_connection_kib);
                rows.extend(series::bar(&r.lookup, label, series::style(model), cells, pss, Figure::Held, about_zero));
            }
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let over = r.over(transport);
        let file = format!("memory-per-connection{}.svg", r.suffix(transport));
        let repeats = repeats_words(r.results.settings.repeat);
        let frame = Frame {
            title: format!("Server memory (PSS) per idle connection{over}"),
            subtitle: format!(
                "a row per model and idle connections held; log scale; {}",
                repeats.replace("bars", "whiskers")
            ),
            notes: hollow_notes(rows.iter().any(|b| b.hollow), "dot")
                .into_iter()
                .chain(
                    ["≈ 0: no memory held per connection, or less than before (drawn at the axis's left end)".into()],
                )
                .collect(),
            ..Frame::default()
        };
        let panels = [("KiB per connection (PSS), log".into(), rows)];
        charts::dots(&dir.join(&file), &frame, &panels, series::axis_trimmed, Scale::Log)?;
        Ok(vec![Chart { title: format!("Server memory per idle connection (PSS){over}"), file }])
    }

    fn summary<'r>(&self, r: &'r Report<'r>) -> Summary<'r> {
        let column = Column {
            heading: "PSS per idle connection",
            intro: Some("server memory (PSS) per idle connection with 1,000 held".into()),
            leads: false,
            figure: Box::new(move |m, notes| {
                let cells = idle_cells(r, Transport::Tcp, m)?;
                let pss = Stat::over(cells, |c| c.capacity.as_ref().map(|c| c.pss_per_connection_kib));
                Some(notes.figure(show(pss, kib), cells, &[Figure::Held]))
            }),
        };
        Summary { columns: vec![column], claims: self.claim(r).into_iter().collect() }
    }
}

/// `model`'s capacity cells over `transport` at the summary's count: 1,000
/// idle connections, or the model's own cap if lower.
pub fn idle_cells<'r>(r: &'r Report<'r>, transport: Transport, model: &Model) -> Option<&'r Vec<&'r Cell>> {
    let held = model.capacity_for(SUMMARY_HELD);
    let of = |k: &LoadKey| k.model == *model && k.connections == held && k.at_defaults();
    r.groups_of(&Capacity.id(), transport).find(|(k, _)| of(k)).map(|(_, cells)| cells)
}

impl Capacity {
    /// Memory per idle connection at the smallest count held, among the
    /// models that served every connection they held.
    fn claim(&self, r: &Report<'_>) -> Option<Claim> {
        let transport = r.main_transport()?;
        let capacity: Vec<&Cell> =
            r.cells_of(&self.id()).into_iter().filter(|c| c.spec.load.transport == transport).collect();
        if capacity.is_empty() {
            return None;
        }
        let mut cells = Vec::new();
        for model in &r.models {
            let own = capacity.iter().copied().filter(|c| c.spec.load.model == *model);
            let fewest = own.clone().map(|c| c.spec.load.connections).min();
            cells.extend(own.filter(|c| Some(c.spec.load.connections) == fewest));
        }
        let held = capacity.iter().map(|c| c.spec.load.connections).min().unwrap_or(0);
        let all = r.entries(&cells, |c| c.capacity.as_ref().map(|c| c.pss_per_connection_kib), &[Figure::Held]);
        let unserved = r.entries(&cells, |c| c.capacity.as_ref().map(|c| c.not_served as f64), &[]);
        let starved: Vec<&str> = unserved.iter().filter(|e| e.stat.median > 0.0).map(|e| e.model.as_str()).collect();
        let served = all.into_iter().filter(|e| !starved.contains(&e.model.as_str())).collect();
        let starved: Vec<String> = starved.iter().map(|m| format!("`{m}`")).collect();
        Some(Claim {
            title: "Cheapest idle connection",
            conditions: format!(
                "server memory (PSS) per connection with {} idle connections held (or the model's cap)",
                fmt_count(f64::from(held))
            ),
            ranked: ranked(served, true),
            left_out: (!starved.is_empty())
                .then(|| format!("not ranked: {} left held connections without an echo", starved.join(", "))),
            table: TableId { scenario: self.id(), transport, part: None },
            show: kib,
        })
    }
}
