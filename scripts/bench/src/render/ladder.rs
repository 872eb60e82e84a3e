//! The latency ladder in the README and its chart: per model, the steps it
//! climbed and its knee; p99 against offered rate, one line per model.

use std::fmt::Write as _;
use std::path::Path;

use echo_common::Transport;
use loadgen::report::{fmt_count, fmt_us};
use plotters::prelude::*;

use crate::ladder::{Climb, climbs, verdict};
use crate::render::format::{range as show, us};
use crate::results::{Cell, Results};
use crate::stats::Stat;

/// The climbs of one transport.
fn of(results: &Results, transport: Transport) -> Vec<Climb<'_>> {
    climbs(results).into_iter().filter(|c| c.load.transport == transport).collect()
}

/// The offered rates of a run's ladder that have cells, ascending.
fn rates(climbs: &[Climb<'_>]) -> Vec<f64> {
    let mut rates: Vec<f64> =
        climbs.iter().flat_map(|c| c.steps.iter().filter_map(|(s, _)| s.spec.load.offered())).collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    rates
}

/// The cells of one model's step `rate`, over its repeats.
fn step<'a>(climbs: &[Climb<'a>], model: usize, rate: f64) -> Vec<&'a Cell> {
    crate::ladder::step(climbs, |c| c.load.model.rank() == model, rate)
}

/// The README section of the ladder over `transport` (empty without one).
pub fn markdown(results: &Results, transport: Transport, over: &str) -> String {
    let (Some(ladder), climbs) = (&results.settings.ladder, of(results, transport)) else { return String::new() };
    if climbs.is_empty() {
        return String::new();
    }
    let models = &results.settings.models;
    let slo = ladder.slo_p99_us;
    let mut md = String::new();
    let _ = writeln!(md, "## Latency against offered load, open loop, {over}\n");
    let _ = writeln!(
        md,
        "Every model at the same offered rates ({} msg/s), {} connections, {} B messages, {} s measured after {} s \
         per step, from the lowest rate up. A model's ladder stops at the first step it fails: achieved below 99 % \
         of the offered rate, or a p99 above the SLO of {}. Latency counts from each message's intended send time \
         (coordinated omission corrected). The **knee** is the highest offered rate sustained, in every repeat for \
         the headline; *client-bound* when the step that failed above it had a load generator thread ≥ 90 % busy \
         (the client, maybe not the server, ran out). Step figures are medians over the repeats that ran the \
         step, min–max in parentheses.\n",
        ladder.rates.iter().map(|r| fmt_count(*r)).collect::<Vec<_>>().join(", "),
        ladder.connections,
        ladder.size,
        ladder.window_secs,
        ladder.warmup_secs,
        fmt_us(slo as f64),
    );
    for excluded in &ladder.excluded {
        let _ = writeln!(md, "- `{}` is left out: it {}.", excluded.model, excluded.reason);
    }
    if !ladder.excluded.is_empty() {
        md.push('\n');
    }

    md.push_str(
        "| model | knee msg/s, every repeat | knee per repeat | where the ladder stopped |\n|---|---:|---:|---|\n",
    );
    let mut seen: Vec<usize> = climbs.iter().map(|c| c.load.model.rank()).collect();
    seen.dedup();
    for &m in &seen {
        let mine: Vec<&Climb<'_>> = climbs.iter().filter(|c| c.load.model.rank() == m).collect();
        let summary = crate::ladder::summary(&mine, ladder.rates.last().copied(), "msg/s");
        let knee = summary.words;
        let rate = |k: Option<f64>| k.map_or("none".to_owned(), fmt_count);
        let per_repeat = mine.iter().map(|c| rate(c.knee())).collect::<Vec<_>>().join(" · ");
        let stops = summary.stops;
        let name = models.get(m).map_or("?", |i| i.name.as_ref());
        let _ = writeln!(md, "| {name} | {knee} | {per_repeat} | {} |", stops.join("; "));
    }
    md.push('\n');

    md.push_str("| model | offered msg/s | achieved msg/s | p50 | p99 | p99.9 | server CPU µs/msg | steps sustained | flags |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for &m in &seen {
        let name = models.get(m).map_or("?", |i| i.name.as_ref());
        for rate in rates(&climbs) {
            let cells = step(&climbs, m, rate);
            if cells.is_empty() {
                continue;
            }
            let load = |f: fn(&loadgen::Report) -> f64| {
                Stat::of(cells.iter().filter_map(|c| c.loadgen.as_ref().map(f)).collect())
            };
            let sustained = cells.iter().filter(|c| verdict(c, slo).sustained()).count();
            let mut kinds: Vec<&str> = cells.iter().flat_map(|c| c.flags.iter().map(|f| f.kind.name())).collect();
            kinds.sort_unstable();
            kinds.dedup();
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} | {} | {} | {} of {} | {} |",
                fmt_count(rate),
                show(load(|r| r.throughput.requests_per_sec), fmt_count),
                show(load(|r| r.latency_us.p50 as f64), us),
                show(load(|r| r.latency_us.p99 as f64), us),
                show(load(|r| r.latency_us.p99_9 as f64), us),
                show(Stat::of(cells.iter().filter_map(|c| c.server_cpu_us_per_msg).collect()), |v| format!("{v:.2}")),
                sustained,
                cells.len(),
                kinds.join(", "),
            );
        }
    }
    md.push('\n');
    md
}

/// One model's line: (offered rate, median p99 µs, any cell of the step flagged).
type Line = (String, RGBColor, Vec<(f64, f64, bool)>);

/// The chart's lines over `transport`.
fn lines(results: &Results, transport: Transport) -> Vec<Line> {
    let climbs = of(results, transport);
    let mut lines = Vec::new();
    for (m, info) in results.settings.models.iter().enumerate() {
        let points: Vec<(f64, f64, bool)> = rates(&climbs)
            .into_iter()
            .filter_map(|rate| {
                let cells = step(&climbs, m, rate);
                let p99 = Stat::of(
                    cells.iter().filter_map(|c| c.loadgen.as_ref().map(|r| r.latency_us.p99 as f64)).collect(),
                )?;
                Some((rate, p99.median.max(1.0), crate::render::marks::doubtful(&cells, crate::flags::Figure::Latency)))
            })
            .collect();
        if !points.is_empty() {
            let (r, g, b) = info.rgb();
            lines.push((info.name.to_string(), RGBColor(r, g, b), points));
        }
    }
    lines
}

/// Draws p99 against offered rate into `path`; `Ok(false)` if the run has
/// no ladder over `transport`. The x axis has one slot per offered rate
/// (the ladder's steps, labelled with their rates), the y axis is log; the
/// SLO is a dashed line; a point any of whose cells carries a flag is hollow.
/// The legend has its own panel on the right, never over a line.
pub fn chart(results: &Results, transport: Transport, title_suffix: &str, path: &Path) -> Result<bool, String> {
    let Some(ladder) = &results.settings.ladder else { return Ok(false) };
    let lines = lines(results, transport);
    if lines.is_empty() {
        return Ok(false);
    }
    let rates = rates(&of(results, transport));
    let slot = |rate: f64| rates.iter().position(|r| *r == rate).unwrap_or(0) as f64;
    let slo = ladder.slo_p99_us.max(1) as f64;
    let ys = lines.iter().flat_map(|l| l.2.iter().map(|p| p.1)).chain([slo]);
    let (y_min, y_max) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (plot, legend) = root.split_horizontally(730);
    let title =
        format!("p99 latency against offered load, open loop, {} connections{title_suffix}", ladder.connections);
    let n = rates.len() as f64;
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 19))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5..n - 0.5, (y_min * 0.7..y_max * 1.6).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_labels(rates.len())
        .x_desc("offered rate, messages / s (one ladder step each)")
        .y_desc("CO-corrected p99 (log)")
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                rates.get(i as usize).map_or(String::new(), |r| fmt_count(*r))
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| fmt_us(*y))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(DashedLineSeries::new([(-0.5, slo), (n - 0.5, slo)], 8, 5, BLACK.stroke_width(1)))
        .map_err(|e| e.to_string())?;
    for (_, color, points) in &lines {
        let color = *color;
        chart
            .draw_series(LineSeries::new(points.iter().map(|p| (slot(p.0), p.1)), color.stroke_width(2)))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(points.iter().map(|&(x, y, flagged)| {
                let fill = if flagged { WHITE.filled() } else { color.filled() };
                EmptyElement::at((slot(x), y))
                    + Circle::new((0, 0), 4, fill)
                    + Circle::new((0, 0), 4, color.stroke_width(2))
            }))
            .map_err(|e| e.to_string())?;
    }
    // The legend panel: one entry per model, the SLO, what a hollow point is.
    let font = ("sans-serif", 13).into_font();
    let mut y = 60;
    let entry = |y: i32, color: RGBColor, label: &str, hollow: bool| -> Result<(), String> {
        let fill = if hollow { WHITE.filled() } else { color.filled() };
        legend.draw(&PathElement::new(vec![(8, y), (36, y)], color.stroke_width(2))).map_err(|e| e.to_string())?;
        legend.draw(&Circle::new((22, y), 4, fill)).map_err(|e| e.to_string())?;
        legend.draw(&Circle::new((22, y), 4, color.stroke_width(2))).map_err(|e| e.to_string())?;
        legend.draw(&Text::new(label.to_owned(), (44, y - 7), font.clone())).map_err(|e| e.to_string())
    };
    for (name, color, _) in &lines {
        entry(y, *color, name, false)?;
        y += 20;
    }
    y += 10;
    legend
        .draw(&plotters::element::DashedPathElement::new(vec![(8, y), (36, y)], 6, 4, BLACK.stroke_width(1)))
        .map_err(|e| e.to_string())?;
    legend
        .draw(&Text::new(format!("SLO: p99 ≤ {}", fmt_us(slo)), (44, y - 7), font.clone()))
        .map_err(|e| e.to_string())?;
    y += 20;
    entry(y, RGBColor(0x55, 0x55, 0x55), "flagged (table)", true)?;
    root.present().map_err(|e| e.to_string())?;
    Ok(true)
}
