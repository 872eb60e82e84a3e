//! The run's overview chart: per model, the two figures that belong to the
//! server alone — its CPU per message at the cost scenario's common offered
//! rate (open loop, where neither side is saturated) against the memory an
//! idle connection costs it (the capacity scenario) — one point each, the
//! cheapest models near the origin. The top-level README opens with it.

use std::path::Path;

use crate::flags::Figure;
use crate::render::charts::{self, Frame, Point, XAxis, YAxis};
use crate::render::format::kib;
use crate::render::series;
use crate::scenario::{Chart, Report};
use crate::scenarios::{capacity, cost};
use crate::stats::Stat;

/// Its file in the run's folder.
pub const FILE: &str = "overview.svg";

/// The smallest memory drawn: a model whose idle connection costs nothing
/// measurable (or a negative difference) sits here, on the log axis.
const FLOOR_KIB: f64 = 0.1;

/// Draws the overview into `dir`, when the run has both scenarios' cells
/// over its main transport.
pub fn chart(r: &Report<'_>, dir: &Path) -> Result<Option<Chart>, String> {
    let Some(transport) = r.main_transport() else { return Ok(None) };
    let Some((rate, held)) = cost::common_rate(r, transport) else { return Ok(None) };
    let mut lines = Vec::new();
    let mut left_out = Vec::new();
    for model in &r.models {
        let cpu = cost::cells_at(r, transport, model, rate);
        let idle = capacity::idle_cells(r, transport, model);
        let figures = cpu.zip(idle).and_then(|(cpu, idle)| {
            let c = Stat::over(cpu, |c| c.server_cpu_us_per_msg)?;
            let m = Stat::over(idle, |c| c.capacity.as_ref().map(|c| c.pss_per_connection_kib))?;
            Some((cpu, idle, c, m))
        });
        let Some((cpu, idle, c, m)) = figures else {
            left_out.push(format!("`{}`", model.name()));
            continue;
        };
        let hollow = r.doubtful(cpu, Figure::Cpu) || r.doubtful(idle, Figure::Held) || cost::unsustained(cpu);
        let x = m.median.max(FLOOR_KIB);
        let point = Point { x, y: c.median, range: (c.n > 1).then_some((c.min, c.max)), hollow };
        let mut line = series::line(model, vec![point]);
        line.labels = vec![(x, c.median, model.name().to_owned())];
        lines.push(line);
    }
    if lines.is_empty() {
        return Ok(None);
    }
    // The legend says what a hollow point is.
    let mut notes = Vec::new();
    if !left_out.is_empty() {
        notes.push(format!("not drawn: {}", left_out.join(", ").replace('`', "")));
        notes.push("(no cost cell)".into());
    }
    let frame = Frame {
        title: "What a model costs the server: CPU per message against memory per idle connection".into(),
        subtitle: format!(
            "CPU: open loop, {} msg/s offered to 100 connections{}, whiskers min–max; memory: 1,000 idle \
             connections held; {transport}",
            loadgen::report::fmt_count(rate),
            if held { "" } else { " (not every model held it)" }
        ),
        x_desc: "server memory per idle connection (KiB, log)".into(),
        y_desc: "server CPU per message (log)".into(),
        notes,
        ..Frame::default()
    };
    charts::lines(&dir.join(FILE), &frame, &lines, XAxis::Log(axis_kib), YAxis::LogMicros)?;
    Ok(Some(Chart {
        title: "Overview: server CPU per message against memory per idle connection".into(),
        file: FILE.into(),
    }))
}

/// A KiB tick: `4 KiB`, `0.5 KiB`, `1 MiB`.
fn axis_kib(v: f64, _decimals: usize) -> String {
    let text = kib(v);
    text.replace(".0\u{a0}", "\u{a0}")
}
