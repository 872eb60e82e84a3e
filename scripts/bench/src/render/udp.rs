//! The udp scenario in the README and its charts: closed-loop datagrams per
//! second, latency, loss and kernel drops per variant; the highest offered
//! rate each variant sustained; loss against offered rate.

use std::fmt::Write as _;
use std::path::Path;

use loadgen::report::{fmt_count, fmt_us};

use crate::flags::Figure;
use crate::ladder::{Climb, climbs_of, verdict};
use crate::load::Scenario;
use crate::render::charts::{self, Bar, Frame, Line, Point, XAxis, YAxis};
use crate::render::format::{range as show, us};
use crate::render::marks::{self, Notes};
use crate::results::UdpSettings;
use crate::results::{Cell, Results};
use crate::stats::Stat;
use crate::udp::variant_name;
use plotters::style::RGBColor;

/// A variant of a model: its index in the run's models and its `--batch`.
type Variant = (usize, Option<u32>);

/// The variants that ran, in run order: each model, then its batch variant.
fn variants(results: &Results) -> Vec<Variant> {
    let mut out: Vec<Variant> = Vec::new();
    for cell in results.cells.iter().filter(|c| c.spec.load.scenario == Scenario::Udp) {
        let Some(model) = model_index(results, cell) else { continue };
        if !out.contains(&(model, cell.spec.load.batch)) {
            out.push((model, cell.spec.load.batch));
        }
    }
    out.sort();
    out
}

fn model_index(results: &Results, cell: &Cell) -> Option<usize> {
    results.settings.models.iter().position(|m| m.name == cell.spec.load.model.name())
}

fn name(results: &Results, (model, batch): Variant) -> String {
    variant_name(results.settings.models.get(model).map_or("?", |m| m.name.as_ref()), batch)
}

/// The variant's colour: its model's, darker for the batching variant.
fn colour(results: &Results, (model, batch): Variant) -> RGBColor {
    let (r, g, b) = results.settings.models.get(model).map_or((128, 128, 128), |m| m.rgb());
    let dim = |c: u8| (f64::from(c) * 0.6) as u8;
    if batch.is_some() { RGBColor(dim(r), dim(g), dim(b)) } else { RGBColor(r, g, b) }
}

/// The ok closed-loop cells of one variant at `flows` × `size`, all repeats.
fn closed(results: &Results, v: Variant, flows: u32, size: u32) -> Vec<&Cell> {
    results
        .cells
        .iter()
        .filter(|c| c.ok && c.spec.load.scenario == Scenario::Udp && c.spec.load.offered().is_none())
        .filter(|c| (model_index(results, c), c.spec.load.batch) == (Some(v.0), v.1))
        .filter(|c| c.spec.load.connections == flows && c.spec.load.size == size)
        .collect()
}

/// The sustained-rate climbs, by variant and repeat.
fn climbs<'a>(results: &'a Results, udp: &UdpSettings) -> Vec<Climb<'a>> {
    climbs_of(results, Scenario::Udp, udp.slo_p99_us)
}

fn stat(cells: &[&Cell], f: impl Fn(&Cell) -> Option<f64>) -> Option<Stat> {
    Stat::of(cells.iter().filter_map(|c| f(c)).collect())
}

fn report(cell: &Cell) -> Option<&loadgen::Report> {
    cell.loadgen.as_ref()
}

fn percent(v: f64) -> String {
    if v == 0.0 { "0".into() } else { format!("{v:.3}\u{a0}%") }
}

/// The README section (empty when the run has no udp scenario).
pub fn markdown(results: &Results) -> String {
    let Some(udp) = &results.settings.udp else { return String::new() };
    let variants = variants(results);
    if variants.is_empty() {
        return String::new();
    }
    let mut md = String::from("## UDP echo, loopback\n\n");
    let buffers = match (udp.rmem_default, udp.wmem_default) {
        (Some(r), Some(w)) => format!(
            "the kernel's default socket buffers ({} B receive, {} B send)",
            fmt_count(r as f64),
            fmt_count(w as f64)
        ),
        _ => "the kernel's default socket buffers".into(),
    };
    let _ = writeln!(
        md,
        "Every model that serves datagrams, and again with `--batch {}` (`recvmmsg`/`sendmmsg`) where it takes it. \
         Each flow is its own UDP socket, `connect`ed to the server; a datagram counts as echoed only when its echo \
         came back intact and in order, within {} ms (else it is lost). Latency percentiles cover delivered datagrams \
         only; the loss goes beside them. Server sockets use {buffers}. Kernel drops are the host's UDP counters over \
         the window (`RcvbufErrors` / `SndbufErrors` / `InErrors`), the same for every socket of the host: they tell \
         a full receive buffer from a full send buffer. {} s measured after {} s per cell.\n",
        udp.batch, udp.timeout_ms, udp.window_secs, udp.warmup_secs
    );
    if !udp.stream_only.is_empty() {
        let names: Vec<String> = udp.stream_only.iter().map(|n| format!("`{n}`")).collect();
        let _ = writeln!(md, "Streams only, not run: {}.\n", names.join(", "));
    }

    // Closed loop.
    md.push_str("### Closed loop: datagrams per second, latency, loss\n\n");
    md.push_str("| flows | size | variant | datagrams/s | server CPU µs/datagram | p50 | p99 | loss | kernel drops rcvbuf / sndbuf / in |\n");
    md.push_str("|---:|---:|---|---:|---:|---:|---:|---:|---|\n");
    let mut notes = Notes::default();
    for &size in &udp.sizes {
        for &flows in &udp.flows {
            for &v in &variants {
                let cells = closed(results, v, flows, size);
                if cells.is_empty() {
                    continue;
                }
                let kernel = |f: fn(&echo_common::snmp::UdpCounters) -> u64| {
                    stat(&cells, |c| report(c)?.datagrams.as_ref()?.kernel.as_ref().map(|k| f(&k.counters) as f64))
                };
                let drops = format!(
                    "{} / {} / {}",
                    show(kernel(|k| k.rcvbuf_errors), fmt_count),
                    show(kernel(|k| k.sndbuf_errors), fmt_count),
                    show(kernel(|k| k.in_errors), fmt_count)
                );
                let _ = writeln!(
                    md,
                    "| {} | {} B | {} | {} | {} | {} | {} | {} | {} |",
                    fmt_count(f64::from(flows)),
                    fmt_count(f64::from(size)),
                    name(results, v),
                    notes.figure(
                        show(stat(&cells, |c| Some(report(c)?.throughput.requests_per_sec)), fmt_count),
                        &cells,
                        &[Figure::Rate]
                    ),
                    notes.figure(
                        show(stat(&cells, |c| c.server_cpu_us_per_msg), |v| format!("{v:.2}")),
                        &cells,
                        &[Figure::Cpu]
                    ),
                    show(stat(&cells, |c| Some(report(c)?.latency_us.p50 as f64)), us),
                    notes.figure(
                        show(stat(&cells, |c| Some(report(c)?.latency_us.p99 as f64)), us),
                        &cells,
                        &[Figure::Latency]
                    ),
                    show(stat(&cells, |c| Some(report(c)?.datagrams.as_ref()?.loss_percent)), percent),
                    drops,
                );
            }
        }
    }
    md.push('\n');
    md.push_str(&notes.legend());

    // Sustained rate.
    let climbs = climbs(results, udp);
    if !climbs.is_empty() {
        let _ = writeln!(
            md,
            "### Sustained rate: open loop, {} flows, {} B\n\nThe offered rates ({} datagrams/s) step up from the \
             lowest; a variant climbs while it achieves ≥ 99 % of the rate, loses ≤ {} % and keeps the \
             CO-corrected p99 of its delivered datagrams ≤ {}. The first step it fails ends its climb in that \
             repeat. **Sustained** is the highest rate it kept in every repeat; *client-bound* when the step that \
             failed had a load generator thread ≥ 90 % busy.\n",
            udp.step_flows,
            udp.step_size,
            udp.rates.iter().map(|r| fmt_count(*r)).collect::<Vec<_>>().join(", "),
            udp.max_loss_percent,
            fmt_us(udp.slo_p99_us as f64),
        );
        md.push_str("| variant | sustained datagrams/s | where the climb stopped |\n|---|---:|---|\n");
        for &v in &variants {
            let mine: Vec<&Climb<'_>> = climbs.iter().filter(|c| (c.load.model.rank(), c.load.batch) == v).collect();
            if mine.is_empty() {
                continue;
            }
            let summary = crate::ladder::summary(&mine, udp.rates.last().copied(), "/s");
            let (sustained, stops) = (summary.words, summary.stops);
            let _ = writeln!(md, "| {} | {sustained} | {} |", name(results, v), stops.join("; "));
        }
        md.push('\n');
        md.push_str("Every step that ran (medians over the repeats that ran it):\n\n");
        md.push_str("| variant | offered /s | achieved /s | p99 | loss | kernel rcvbuf drops | server CPU µs/datagram | sustained |\n");
        md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for &v in &variants {
            for &rate in &udp.rates {
                let cells = step(&climbs, v, rate);
                if cells.is_empty() {
                    continue;
                }
                let held = cells.iter().filter(|c| verdict(c, udp.slo_p99_us).sustained()).count();
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {held} of {} |",
                    name(results, v),
                    fmt_count(rate),
                    show(stat(&cells, |c| Some(report(c)?.throughput.requests_per_sec)), fmt_count),
                    show(stat(&cells, |c| Some(report(c)?.latency_us.p99 as f64)), us),
                    show(stat(&cells, |c| Some(report(c)?.datagrams.as_ref()?.loss_percent)), percent),
                    show(
                        stat(&cells, |c| {
                            report(c)?.datagrams.as_ref()?.kernel.as_ref().map(|k| k.counters.rcvbuf_errors as f64)
                        }),
                        fmt_count
                    ),
                    show(stat(&cells, |c| c.server_cpu_us_per_msg), |v| format!("{v:.2}")),
                    cells.len(),
                );
            }
        }
        md.push('\n');
    }
    md
}

/// The cells of one variant's step at `rate`, over its repeats.
fn step<'a>(climbs: &[Climb<'a>], v: Variant, rate: f64) -> Vec<&'a Cell> {
    crate::ladder::step(climbs, |c| (c.load.model.rank(), c.load.batch) == v, rate)
}

/// Draws the udp charts into `dir`: the sustained rate per variant, and
/// loss against offered rate. Returns (title, file) of each drawn.
pub fn charts(results: &Results, dir: &Path) -> Result<Vec<(String, String)>, String> {
    let Some(udp) = &results.settings.udp else { return Ok(Vec::new()) };
    let climbs = climbs(results, udp);
    let variants = variants(results);
    let mut out = Vec::new();
    if climbs.is_empty() {
        return Ok(out);
    }
    let repeats = climbs.iter().map(|c| c.repeat).max().map_or(0, |r| r + 1);

    // Sustained rate per variant.
    let mut bars = Vec::new();
    for &v in &variants {
        let mine: Vec<&Climb<'_>> = climbs.iter().filter(|c| (c.load.model.rank(), c.load.batch) == v).collect();
        if mine.is_empty() {
            continue;
        }
        let summary = crate::ladder::summary(&mine, udp.rates.last().copied(), "/s");
        let value = summary.every.unwrap_or(0.0);
        let bound = mine.iter().any(|c| c.client_bound());
        let mut text = summary.words;
        if bound {
            text.push_str(" †");
        }
        bars.push(Bar { label: name(results, v), colour: colour(results, v), value, range: None, hollow: bound, text });
    }
    let file = "udp-sustained-rate.svg".to_owned();
    let frame = Frame {
        title: "UDP: highest offered rate sustained".into(),
        subtitle: format!(
            "{} flows, {} B; loss ≤ {} %, p99 ≤ {}, ≥ 99 % of the rate, in each of {repeats} repeat(s)",
            udp.step_flows,
            udp.step_size,
            udp.max_loss_percent,
            fmt_us(udp.slo_p99_us as f64)
        ),
        notes: if bars.iter().any(|b| b.hollow) {
            vec![format!("hollow, {}: client-bound", marks::mark(crate::flags::FlagKind::ClientBound))]
        } else {
            Vec::new()
        },
        ..Frame::default()
    };
    charts::bars(&dir.join(&file), &frame, &[("datagrams / s".into(), bars)])?;
    out.push(("UDP: highest offered rate sustained".to_owned(), file));

    // Loss against offered rate.
    let mut lines = Vec::new();
    for &v in &variants {
        let points: Vec<Point> = udp
            .rates
            .iter()
            .filter_map(|&rate| {
                let cells = step(&climbs, v, rate);
                let loss = stat(&cells, |c| Some(report(c)?.datagrams.as_ref()?.loss_percent))?;
                Some(Point {
                    x: rate,
                    y: loss.median,
                    range: (loss.n > 1 && loss.min != loss.max).then_some((loss.min, loss.max)),
                    hollow: marks::doubtful(&cells, Figure::Rate) || marks::doubtful(&cells, Figure::Latency),
                })
            })
            .collect();
        if !points.is_empty() {
            lines.push(Line {
                name: name(results, v),
                colour: colour(results, v),
                points,
                dashed: false,
                markers: true,
            });
        }
    }
    let file = "udp-loss.svg".to_owned();
    let frame = Frame {
        title: "UDP: loss against offered rate".into(),
        subtitle: format!(
            "open loop, {} flows, {} B; median of the repeats that ran each step (a climb stops at its first failed step)",
            udp.step_flows, udp.step_size
        ),
        x_desc: "offered datagrams / s".into(),
        y_desc: "lost, % of datagrams".into(),
        notes: if lines.iter().any(|l| l.points.iter().any(|p| p.hollow)) {
            vec!["hollow point: a flagged step".into()]
        } else {
            Vec::new()
        },
    };
    charts::lines(&dir.join(&file), &frame, &lines, XAxis::LogAtPoints, YAxis::Linear(|v| format!("{v:.2} %")))?;
    out.push(("UDP: loss against offered rate".to_owned(), file));
    Ok(out)
}
