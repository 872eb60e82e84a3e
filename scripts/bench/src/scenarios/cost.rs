//! The cost scenario: what a message costs the server at a given rate.
//! Every stream model is driven open loop (loadgen's precise pacer) at the
//! same pinned offered rates, [`CONNECTIONS`] connections of [`SMALL`]
//! bytes, and the figure is the server's CPU µs per message at each rate:
//! the cost curve. At low rates each message pays for its own wake-up; at
//! high rates a wake-up serves several messages (batching), and the cost
//! per message falls. The summary's and the claims' "server CPU per
//! message" comes from here, at the common rate ([`common_rate`]).
//!
//! Unlike the latency ladder, no step ends a model's run: every rate runs
//! for every model (the cost is read at each, whatever the latency). A cell
//! that did not hold its rate — achieved below 99 % of it
//! ([`crate::flags::FlagKind::BelowTargetRate`]) or the load generator sent
//! late ([`crate::flags::FlagKind::SendLate`]) — is marked in the table
//! and drawn hollow, never averaged in unsaid: its CPU is that of another
//! load than the one offered.
//!
//! A model that serves fewer connections at once than [`CONNECTIONS`]
//! (`iterative`: 1, `prefork`: 16 workers by default) is left out, as the
//! latency ladder leaves it out, and the results say so: the connections
//! beyond its workers would wait in the backlog, so it would not be offered
//! the rate at all. (Running `prefork` with 100 workers would be another
//! model than the one the other scenarios run.)
//!
//! ## Budget (the default matrix on the 2-CPU reference machine)
//!
//! A cell measures the run's whole window (1.5 s after 0.5 s), not a ladder
//! step's 1 s after 0.25 s: on the reference VM the host takes the load
//! generator's CPU away for a few ms now and then, and one such stall in a
//! 1 s window is enough to put the pacer's p99 send lateness past its limit
//! (`send_late`). ≈ 2.3 s a cell with server start, 100 connects and stop.
//! 9 of the 11 models serve 100 connections at once; [`DEFAULT_RATES`] has
//! 3 rates; 3 repeats: 9 × 3 × 3 = 81 cells × 2.3 s ≈ 3.1 min. Every cell
//! runs (no climb stops early), so this is also its worst case.
//! `--quick` runs [`QUICK_RATES`] (one rate) once: 9 cells ≈ 13 s.

use std::fmt::Write as _;
use std::path::Path;

use echo_common::Transport;
use loadgen::report::fmt_count;

use crate::flags::{Figure, FlagKind};
use crate::load::LoadKey;
use crate::models::Model;
use crate::plan::{RunConfig, Shape};
use crate::render::charts::{self, Frame, XAxis, YAxis};
use crate::render::doc::{Doc, TableId};
use crate::render::format::{grouped, show, transport_words};
use crate::render::series::{self, repeats_words};
use crate::results::{Cell, CostSettings, Excluded, Settings};
use crate::scenario::{Chart, Claim, Column, Headline, Report, SMALL, Scenario, Summary, Window, ranked};
use crate::stats::Stat;

/// The default offered rates, msg/s: rates every model that serves 100
/// connections sustained on the 2-CPU reference machine (the slowest,
/// `process`, held 40,000 on the ladder's rate criterion), from where each
/// message wakes the server up to where wake-ups are shared.
pub const DEFAULT_RATES: [f64; 3] = [5_000.0, 20_000.0, 50_000.0];
/// `--quick`'s rates.
pub const QUICK_RATES: [f64; 1] = [20_000.0];
/// Connections of every cell.
pub const CONNECTIONS: u32 = 100;
/// The figures a cell's marks are about: its CPU, and the rate and the
/// schedule it was measured at (below target: `Rate`; sent late: `Latency`).
const SHOWN: [Figure; 3] = [Figure::Cpu, Figure::Rate, Figure::Latency];

#[derive(Debug)]
pub struct Cost;

impl Scenario for Cost {
    fn name(&self) -> &'static str {
        "cost"
    }

    fn about(&self) -> &'static str {
        "Open loop at pinned offered rates, the same for every model (100 connections, 64 B): server CPU per \
         message against the rate"
    }

    fn defaults(&self, shape: &mut Shape, quick: bool, _cpus: usize) -> bool {
        shape.cost_rates = if quick { QUICK_RATES.to_vec() } else { DEFAULT_RATES.to_vec() };
        true
    }

    /// Each rate, ascending, for every model it does not leave out.
    fn loads(&self, shape: &Shape) -> Vec<Vec<LoadKey>> {
        super::latency::at_rates(self.id(), shape, &shape.cost_rates, CONNECTIONS, excluded)
    }

    /// Every rate runs, whatever the one below did.
    fn climbs(&self, _load: &LoadKey) -> bool {
        false
    }

    fn record(&self, cfg: &RunConfig, settings: &mut Settings) {
        let (window, warmup) = (cfg.duration, cfg.warmup);
        settings.cost = Some(CostSettings {
            rates: cfg.shape.cost_rates.clone(),
            connections: CONNECTIONS,
            size: SMALL,
            window_secs: window.as_secs_f64(),
            warmup_secs: warmup.as_secs_f64(),
            excluded: cfg
                .shape
                .models
                .iter()
                .filter_map(|m| Some(Excluded { model: m.name().to_owned(), reason: excluded(m)? }))
                .collect(),
        });
    }

    fn window(&self) -> Window {
        Window::Full
    }

    fn headline(&self, _load: &LoadKey) -> Headline {
        Headline::SERVER_CPU
    }

    fn place(&self) -> u8 {
        // Its figure leads the summary: before the throughput scenario's.
        5
    }

    fn section(&self, r: &Report<'_>, transport: Option<Transport>, doc: &mut Doc) {
        if let Some(transport) = transport {
            section(r, transport, doc);
        }
    }

    fn charts(&self, r: &Report<'_>, transport: Option<Transport>, dir: &Path) -> Result<Vec<Chart>, String> {
        let Some(transport) = transport else { return Ok(Vec::new()) };
        chart(r, transport, dir)
    }

    fn summary<'r>(&self, r: &'r Report<'r>) -> Summary<'r> {
        // Over the transport the claim compares models on.
        let Some(transport) = r.main_transport() else { return Summary::default() };
        let Some(rate) = common_rate(r, transport).map(|(rate, _)| rate) else { return Summary::default() };
        let column = Column {
            heading: "server CPU µs/msg",
            intro: Some(format!(
                "server CPU per message at {} msg/s offered to 100 connections, 64 B (open loop, the cost \
                 scenario)",
                fmt_count(rate)
            )),
            leads: true,
            figure: Box::new(move |m, notes| {
                let cells = cells_at(r, transport, m, rate)?;
                Some(notes.figure(
                    show(Stat::over(cells, |c| c.server_cpu_us_per_msg), |v| grouped(v, 2)),
                    cells,
                    &SHOWN,
                ))
            }),
        };
        Summary { columns: vec![column], claims: claim(r).into_iter().collect() }
    }
}

/// Why `model` is left out of the cost scenario, if it is.
pub fn excluded(model: &Model) -> Option<String> {
    let at_once = model.info().serves_at_once?;
    (at_once < u64::from(CONNECTIONS)).then(|| {
        format!(
            "serves {at_once} connection(s) at once: {} of the {CONNECTIONS} would wait in the backlog, so it \
             would not be offered the rate",
            u64::from(CONNECTIONS) - at_once
        )
    })
}

/// Whether the run has cost cells over its main transport
/// ([`Report::main_transport`]): then the summary's and the claims' server
/// CPU per message are this scenario's.
pub fn ran(r: &Report<'_>) -> bool {
    r.main_transport().is_some_and(|transport| r.groups_of(&Cost.id(), transport).next().is_some())
}

/// Whether any of `cells` did not hold its offered rate: achieved below
/// 99 % of it, or the load generator sent late.
pub fn unsustained(cells: &[&Cell]) -> bool {
    let off = |k: FlagKind| matches!(k, FlagKind::BelowTargetRate | FlagKind::SendLate);
    cells.iter().any(|c| c.flags.iter().any(|f| off(f.kind)))
}

/// The offered rates of the run's cost cells over `transport`, ascending.
fn rates(r: &Report<'_>, transport: Transport) -> Vec<f64> {
    let mut rates: Vec<f64> = r.groups_of(&Cost.id(), transport).filter_map(|(k, _)| k.offered()).collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    rates
}

/// `model`'s cells at `rate` over `transport` (at the default axes).
pub fn cells_at<'r>(r: &'r Report<'r>, transport: Transport, model: &Model, rate: f64) -> Option<&'r Vec<&'r Cell>> {
    let of = |k: &LoadKey| k.model == *model && k.offered() == Some(rate) && k.at_defaults();
    r.groups_of(&Cost.id(), transport).find(|(k, _)| of(k)).map(|(_, cells)| cells)
}

/// The rate the summary and the claim quote over `transport`: the highest
/// offered rate every model held in every repeat (no cell below its rate
/// or sent late; a model with no cell at a rate, e.g. an interrupted run,
/// did not hold it), else the lowest rate run; and whether every model
/// held it.
pub fn common_rate(r: &Report<'_>, transport: Transport) -> Option<(f64, bool)> {
    let rates = rates(r, transport);
    let models: std::collections::BTreeSet<&Model> =
        r.groups_of(&Cost.id(), transport).map(|(k, _)| &k.model).collect();
    let held = |rate: f64| {
        let at: Vec<_> = r.groups_of(&Cost.id(), transport).filter(|(k, _)| k.offered() == Some(rate)).collect();
        let there: std::collections::BTreeSet<&Model> = at.iter().map(|(k, _)| &k.model).collect();
        let cells: Vec<&Cell> = at.iter().flat_map(|(_, c)| c.iter().copied()).collect();
        there == models && !unsustained(&cells)
    };
    match rates.iter().rev().find(|&&rate| held(rate)) {
        Some(&rate) => Some((rate, true)),
        None => rates.first().map(|&rate| (rate, false)),
    }
}

/// Lowest server CPU per message at the common rate.
fn claim(r: &Report<'_>) -> Option<Claim> {
    let transport = r.main_transport()?;
    let (rate, held) = common_rate(r, transport)?;
    let cells: Vec<&Cell> = r
        .cells_of(&Cost.id())
        .into_iter()
        .filter(|c| c.spec.load.transport == transport && c.spec.load.offered() == Some(rate))
        .collect();
    let which =
        if held { "the highest rate every model held" } else { "the lowest rate of the run: not every model held it" };
    Some(Claim {
        title: "Lowest server CPU per message",
        conditions: format!(
            "at {} msg/s offered ({which}), {CONNECTIONS} connections, {SMALL} B messages, open loop",
            fmt_count(rate)
        ),
        ranked: ranked(r.entries(&cells, |c| c.server_cpu_us_per_msg, &SHOWN), true),
        left_out: None,
        table: TableId { scenario: Cost.id(), transport, part: None },
        show: |v| format!("{v:.2} µs"),
    })
}

/// The README section over `transport` (nothing without cost cells there).
fn section(r: &Report<'_>, transport: Transport, doc: &mut Doc) {
    let rates = rates(r, transport);
    if rates.is_empty() {
        return;
    }
    let Some(cost) = &r.results.settings.cost else { return };
    let id = TableId { scenario: Cost.id(), transport, part: None };
    doc.table_heading(2, &format!("Server CPU per message at pinned rates, {}", transport_words(transport)), id);
    let _ = writeln!(
        doc,
        "Every model at the same offered rates, open loop ({} connections, {} B messages, {} s measured after {} s \
         per cell), every rate for every model. The figure is the server's CPU time (user + system, its whole \
         process tree) over the window, per message echoed: at low rates each message pays its own wake-up, at \
         high rates a wake-up serves several. A cell that did not hold its rate (achieved below 99 % of it: ‡) or \
         whose load generator sent late (⧗) is marked: its CPU is that of another load than the one offered. \
         Medians over the repeats, min–max in parentheses.\n",
        cost.connections, cost.size, cost.window_secs, cost.warmup_secs
    );
    for excluded in &cost.excluded {
        let _ = writeln!(doc, "- `{}` is left out: it {}.", excluded.model, excluded.reason);
    }
    if !cost.excluded.is_empty() {
        doc.push('\n');
    }
    let columns = std::iter::once("model".to_owned())
        .chain(rates.iter().map(|r| format!("µs/msg at {}/s:", fmt_count(*r))))
        .chain(std::iter::once("held the rate:".to_owned()));
    let mut table = r.table(columns);
    for model in &r.models {
        let mut row = vec![model.name().to_owned()];
        let (mut held, mut ran) = (0, 0);
        for &rate in &rates {
            let Some(cells) = cells_at(r, transport, model, rate) else {
                row.push("–".into());
                continue;
            };
            ran += cells.len();
            held += cells.iter().filter(|c| !unsustained(&[c])).count();
            let cpu = show(Stat::over(cells, |c| c.server_cpu_us_per_msg), |v| grouped(v, 2));
            row.push(table.mark(cpu, cells, &SHOWN));
        }
        if ran > 0 {
            row.push(format!("{held} of {ran} cells"));
            table.row(row);
        }
    }
    doc.push_str(&table.finish());
}

/// Server CPU per message against offered rate over `transport`: a line
/// per model, log scales (the cost falls by a factor, not by an amount); a
/// point hollow when its cells are flagged (below the rate, sent late,
/// CPU unmeasurable, a wide spread).
fn chart(r: &Report<'_>, transport: Transport, dir: &Path) -> Result<Vec<Chart>, String> {
    let groups: Vec<_> = r.groups_of(&Cost.id(), transport).collect();
    let rate = |k: &LoadKey, _: &[&Cell]| k.offered();
    let cpu = |c: &Cell| c.server_cpu_us_per_msg;
    let mut lines = series::lines(&r.lookup, &r.models, &groups, rate, cpu, Figure::Cpu);
    // Hollow also where the rate was not held: the CPU is another load's.
    for line in &mut lines {
        for point in &mut line.points {
            let cells: Vec<&Cell> = groups
                .iter()
                .filter(|(k, _)| k.model.name() == line.name && k.offered() == Some(point.x))
                .flat_map(|(_, c)| c.iter().copied())
                .collect();
            point.hollow |= unsustained(&cells) || r.doubtful(&cells, Figure::Rate);
        }
    }
    if lines.is_empty() {
        return Ok(Vec::new());
    }
    let over = r.over(transport);
    let file = format!("cost{}.svg", r.suffix(transport));
    let repeats = groups.iter().map(|(_, c)| c.len()).max().unwrap_or(1) as u32;
    let frame = Frame {
        title: format!("Server CPU per message against offered rate, open loop, {CONNECTIONS} connections{over}"),
        subtitle: format!("{SMALL} B; {}; log scales", repeats_words(repeats)),
        x_desc: "offered rate, messages / s".into(),
        y_desc: "server CPU per message (log)".into(),
        notes: vec!["hollow too: below its rate, or".into(), "the load generator sent late".into()],
        ..Frame::default()
    };
    charts::lines(&dir.join(&file), &frame, &lines, XAxis::LogAtPoints, YAxis::LogMicros)?;
    Ok(vec![Chart { title: format!("Server CPU per message against offered rate{over}"), file }])
}
