//! The udp scenario: every model that serves datagrams, over UDP loopback.
//!
//! UDP has its own contract (no connection, a datagram may be lost), so it
//! has its own scenario rather than a column of the stream ones. Each
//! `--connections` entry of loadgen is a *flow*: its own socket, its own
//! source port. Two parts, every datagram-capable model, and each model
//! that takes `--batch` a second time with [`BATCH`] (`recvmmsg`/`sendmmsg`),
//! so the tables show what batching buys:
//!
//! 1. **Closed loop** at [`FLOWS`] flows × [`SIZES`] bytes (1,400 B fits one
//!    Ethernet frame), the server held to the run's CPU quota
//!    (`--server-quota`) as in the throughput scenario: datagrams per
//!    second, latency of the delivered ones, loss, server CPU per datagram,
//!    the kernel's drop counters.
//! 2. **Sustained rate**: open loop at [`STEP_FLOWS`] flows, 64 B, stepping
//!    up the offered rates ([`RATES`]) like the latency ladder (an open-loop
//!    climb, [`crate::climb`]). A variant
//!    climbs while it achieves ≥ 99 % of the rate with loss ≤
//!    [`crate::climb::MAX_LOSS_PERCENT`] % and p99 ≤ the SLO (`--slo-p99`, 1 ms); the first
//!    step it fails ends its climb in that repeat, and every step that ran is
//!    recorded, so loss against offered rate can be drawn.
//!
//! A datagram with no echo within [`TIMEOUT`] is lost (on loopback an echo
//! takes tens of µs; 100 ms is far above any p99 the SLO allows, and short
//! enough that a lost datagram frees its flow's slot within the 1 s window).
//!
//! ## Budget (the default matrix on the 2-CPU reference machine)
//!
//! Every cell measures 1 s after 0.25 s (the latency ladder's [`super::latency::STEP_WINDOW`]),
//! ≈ 1.4 s with server start and stop. 6 models serve datagrams, 2 of them
//! also with `--batch`: 8 variants. Closed loop: 8 × 4 loads × 3 repeats =
//! 96 cells ≈ 2.2 min. Steps: at most 8 × 7 × 3 = 168 cells ≈ 3.9 min if
//! every variant sustained every rate; the top rates are above what one
//! load-generator CPU reaches, so ≈ 5 steps each, ≈ 2.8 min. About 5 min
//! in all (3.5 min with 2 repeats, the 4 min the latency ladder's budget
//! first set aside for it).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use echo_common::Transport;
use loadgen::Opts;
use loadgen::report::{fmt_count, fmt_us};

use super::latency::STEP_WINDOW;
use crate::climb::{self, Climb, MAX_LOSS_PERCENT, climbs_of, verdict};
use crate::flags::{Figure, FlagKind};
use crate::load::{LoadKey, Rate};
use crate::models::Model;
use crate::plan::{RunConfig, Shape};
use crate::render::charts::{self, Frame, Line, Point, Row, Rule, XAxis, YAxis};
use crate::render::doc::Doc;
use crate::render::format::{range as show, us};
use crate::render::marks;
use crate::render::series;
use crate::results::{Cell, Results, Settings, UdpSettings};
use crate::scenario::{Chart, Drive, Headline, Report, SMALL, Scenario, Throttled, Window, every_model};
use crate::stats::Stat;

/// Flows of the closed-loop part.
pub const FLOWS: [u32; 2] = [1, 100];
/// Datagram sizes of the closed-loop part: small, and one Ethernet frame.
pub const SIZES: [u32; 2] = [64, 1400];
/// Offered rates of the sustained-rate part, datagrams/s.
pub const RATES: [f64; 7] = [10_000.0, 25_000.0, 50_000.0, 75_000.0, 100_000.0, 150_000.0, 200_000.0];
/// `--quick`'s rates: one step (see the budget at [`crate::matrix::default_shape`]).
pub const QUICK_RATES: [f64; 1] = [50_000.0];
/// `--quick`'s closed loop: 100 flows of 64 B only.
pub const QUICK_CLOSED: ([u32; 1], [u32; 1]) = ([100], [64]);
/// Flows of the sustained-rate part.
pub const STEP_FLOWS: u32 = 100;
/// `--batch` of the batching variants: datagrams per `recvmmsg`/`sendmmsg`.
pub const BATCH: u32 = 32;
/// A datagram with no echo after this long is lost.
pub const TIMEOUT: Duration = Duration::from_millis(100);
/// Repeats of the udp scenario in the default matrix: 3, so that the
/// spread flag reads the closest two of them (a p99 over a 1 s step moves
/// with this VM's stalls; with 2 repeats, 16 of 100 cells were flagged).
pub const REPEAT: u32 = 3;

#[derive(Debug)]
pub struct Udp;

impl Scenario for Udp {
    fn name(&self) -> &'static str {
        "udp"
    }

    fn about(&self) -> &'static str {
        "UDP loopback, every model that serves datagrams (and again with `--batch` where it takes it): closed \
         loop at 1 and 100 flows × 64 and 1,400 B, then the highest open-loop rate sustained with loss ≤ 0.1 % \
         and p99 ≤ the SLO"
    }

    fn defaults(&self, shape: &mut Shape, quick: bool, _cpus: usize) -> bool {
        shape.udp_rates = if quick { QUICK_RATES.to_vec() } else { RATES.to_vec() };
        (shape.udp_flows, shape.udp_sizes) =
            if quick { (QUICK_CLOSED.0.to_vec(), QUICK_CLOSED.1.to_vec()) } else { (FLOWS.to_vec(), SIZES.to_vec()) };
        shape.udp_repeat = if quick { 1 } else { REPEAT };
        true
    }

    /// Over UDP whatever `--transports` says (the datagram contract): the
    /// closed loop, then the sustained-rate steps, each for every datagram
    /// variant of every model.
    fn loads(&self, shape: &Shape) -> Vec<Vec<LoadKey>> {
        let load = |flows, size, rate: Option<f64>| {
            every_model(shape, |m| {
                let key = LoadKey::new(self.id(), m.clone(), Transport::Udp, flows, size);
                variants(m).into_iter().map(|batch| LoadKey { batch, rate: rate.map(Rate), ..key.clone() }).collect()
            })
        };
        let mut loads = Vec::new();
        for &size in &shape.udp_sizes {
            for &flows in &shape.udp_flows {
                loads.push(load(flows, size, None));
            }
        }
        for &rate in &shape.udp_rates {
            loads.push(load(STEP_FLOWS, SMALL, Some(rate)));
        }
        loads
    }

    fn repeats(&self, shape: &Shape) -> u32 {
        shape.udp_repeat.min(shape.repeat)
    }

    fn record(&self, cfg: &RunConfig, settings: &mut Settings) {
        let (window, warmup) = cfg.capped(STEP_WINDOW);
        let stream_only = cfg.shape.models.iter().filter(|m| variants(m).is_empty());
        settings.udp = Some(UdpSettings {
            flows: cfg.shape.udp_flows.clone(),
            sizes: cfg.shape.udp_sizes.clone(),
            rates: cfg.shape.udp_rates.clone(),
            step_flows: STEP_FLOWS,
            step_size: SMALL,
            batch: BATCH,
            max_loss_percent: MAX_LOSS_PERCENT,
            slo_p99_us: cfg.slo_p99.as_micros() as u64,
            timeout_ms: TIMEOUT.as_millis() as u64,
            window_secs: window.as_secs_f64(),
            warmup_secs: warmup.as_secs_f64(),
            repeat: self.repeats(&cfg.shape),
            rmem_default: core_default("rmem_default"),
            wmem_default: core_default("wmem_default"),
            stream_only: stream_only.map(|m| m.name().to_owned()).collect(),
        });
    }

    fn window(&self) -> Window {
        Window::Capped { at_most: STEP_WINDOW, cells: "udp", beside: None }
    }

    /// Its closed loop runs under the server quota, as the throughput
    /// scenario does, so that its datagrams per second are the server's
    /// (unthrottled, the one loadgen thread ran out as the server did). Not
    /// the climb: a step's rate is imposed and its figure is the p99, to
    /// which a throttled period would add its own wait.
    fn server_quota(&self) -> Throttled {
        Throttled::ClosedLoop
    }

    /// A datagram with no echo by [`TIMEOUT`] is lost, and its flow sends
    /// the next (loadgen's 5 s would stall a flow for most of a 1 s window).
    fn drive(&self, _load: &LoadKey, opts: Opts) -> Drive {
        Drive::Load(Opts { timeout: TIMEOUT, ..opts })
    }

    fn describe(&self, load: &LoadKey) -> String {
        let connections = fmt_count(f64::from(load.connections));
        let mut text = format!("udp {}, {connections} flows, {} B", load.variant(), fmt_count(f64::from(load.size)));
        if let Some(rate) = load.offered() {
            let _ = write!(text, ", {} datagrams/s offered", fmt_count(rate));
        }
        text
    }

    fn headline(&self, load: &LoadKey) -> Headline {
        // A step's rate is imposed: its latency is the figure.
        if load.rate.is_some() { Headline::P99 } else { Headline::RATE }
    }

    fn per_transport(&self) -> bool {
        false
    }

    fn place(&self) -> u8 {
        70
    }

    fn repeat_note(&self, settings: &Settings) -> Option<String> {
        settings.udp.as_ref().filter(|u| u.repeat != settings.repeat).map(|u| format!("{} for udp", u.repeat))
    }

    fn section(&self, r: &Report<'_>, transport: Option<Transport>, doc: &mut Doc) {
        if transport.is_none() {
            section(r, doc);
        }
    }

    fn charts(&self, r: &Report<'_>, transport: Option<Transport>, dir: &Path) -> Result<Vec<Chart>, String> {
        if transport.is_some() {
            return Ok(Vec::new());
        }
        charts(r, dir)
    }
}

/// The variants of `model` the udp scenario runs: none for a stream-only
/// model; one per datagram model, a second with `--batch` where it takes it.
pub fn variants(model: &Model) -> Vec<Option<u32>> {
    let info = model.info();
    match (&info.datagrams, info.datagram_batch) {
        (None, _) => Vec::new(),
        (Some(_), false) => vec![None],
        (Some(_), true) => vec![None, Some(BATCH)],
    }
}

/// A kernel default from /proc/sys/net/core (`rmem_default`, …).
pub fn core_default(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/net/core/{name}")).ok()?.trim().parse().ok()
}

/// A variant of a model: the model and its `--batch`.
type Variant = (Model, Option<u32>);

/// The variants that ran, in run order: each model, then its batch variant.
fn variants_run(results: &Results) -> BTreeSet<Variant> {
    let udp = results.cells.iter().filter(|c| c.spec.load.scenario == Udp.id());
    udp.map(|c| (c.spec.load.model.clone(), c.spec.load.batch)).collect()
}

fn name((model, batch): &Variant) -> String {
    LoadKey { batch: *batch, ..LoadKey::new(Udp.id(), model.clone(), Transport::Udp, 0, 0) }.variant()
}

/// The ok closed-loop cells of one variant at `flows` × `size`, all repeats.
fn closed<'a>(r: &Report<'a>, (model, batch): &Variant, flows: u32, size: u32) -> Vec<&'a Cell> {
    let key = LoadKey { batch: *batch, ..LoadKey::new(Udp.id(), model.clone(), Transport::Udp, flows, size) };
    r.groups.get(&key).cloned().unwrap_or_default()
}

/// Whether `climb` is one of `v`'s.
fn of(climb: &Climb<'_>, (model, batch): &Variant) -> bool {
    climb.load.model == *model && climb.load.batch == *batch
}

/// The cells of one variant's step at `rate`, over its repeats.
fn step<'a>(climbs: &[Climb<'a>], v: &Variant, rate: f64) -> Vec<&'a Cell> {
    climb::step(climbs, |c| of(c, v), rate)
}

fn report(cell: &Cell) -> Option<&loadgen::Report> {
    cell.loadgen.as_ref()
}

fn percent(v: f64) -> String {
    if v == 0.0 { "0".into() } else { format!("{v:.3}\u{a0}%") }
}

/// The README section (nothing when the run has no udp cells).
fn section(r: &Report<'_>, doc: &mut Doc) {
    let results = r.results;
    let Some(udp) = &results.settings.udp else { return };
    let variants = variants_run(results);
    if variants.is_empty() {
        return;
    }
    doc.heading(2, "UDP echo, loopback");
    let buffers = match (udp.rmem_default, udp.wmem_default) {
        (Some(r), Some(w)) => format!(
            "the kernel's default socket buffers ({} B receive, {} B send)",
            fmt_count(r as f64),
            fmt_count(w as f64)
        ),
        _ => "the kernel's default socket buffers".into(),
    };
    let _ = writeln!(
        doc,
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
        let _ = writeln!(doc, "Streams only, not run: {}.\n", names.join(", "));
    }

    doc.heading(3, "Closed loop: datagrams per second, latency, loss");
    let _ = writeln!(
        doc,
        "{}\n",
        match r.quota_of(&Udp.id()) {
            Some(cpus) => format!(
                "Each flow sends a datagram and waits for its echo, the server held to {} CPU \
                 (`--server-quota`): the datagrams per second are what it echoes on that share.",
                (cpus * 100.0).round() / 100.0
            ),
            None => "Each flow sends a datagram and waits for its echo; the servers ran unthrottled, so where a \
                     cell is flagged `client_bound` the rate is the client's."
                .to_owned(),
        }
    );
    let mut table = r.table([
        "flows:",
        "size:",
        "variant",
        "datagrams/s:",
        "server CPU µs/datagram:",
        "p50:",
        "p99:",
        "loss:",
        "kernel drops rcvbuf / sndbuf / in",
    ]);
    for &size in &udp.sizes {
        for &flows in &udp.flows {
            for v in &variants {
                let cells = closed(r, v, flows, size);
                if cells.is_empty() {
                    continue;
                }
                let stat = |f: &dyn Fn(&Cell) -> Option<f64>| Stat::over(&cells, f);
                let kernel = |f: fn(&echo_common::snmp::UdpCounters) -> u64| {
                    stat(&|c| report(c)?.datagrams.as_ref()?.kernel.as_ref().map(|k| f(&k.counters) as f64))
                };
                let drops = format!(
                    "{} / {} / {}",
                    show(kernel(|k| k.rcvbuf_errors), fmt_count),
                    show(kernel(|k| k.sndbuf_errors), fmt_count),
                    show(kernel(|k| k.in_errors), fmt_count)
                );
                let rate = show(stat(&|c| Some(report(c)?.throughput.requests_per_sec)), fmt_count);
                let cpu = show(stat(&|c| c.server_cpu_us_per_msg), |v| format!("{v:.2}"));
                let p99 = show(stat(&|c| Some(report(c)?.latency_us.p99 as f64)), us);
                let row = [
                    fmt_count(f64::from(flows)),
                    format!("{} B", fmt_count(f64::from(size))),
                    name(v),
                    table.mark(rate, &cells, &[Figure::Rate]),
                    table.mark(cpu, &cells, &[Figure::Cpu]),
                    show(stat(&|c| Some(report(c)?.latency_us.p50 as f64)), us),
                    table.mark(p99, &cells, &[Figure::Latency]),
                    show(stat(&|c| Some(report(c)?.datagrams.as_ref()?.loss_percent)), percent),
                    drops,
                ];
                table.row(row);
            }
        }
    }
    doc.push_str(&table.finish());

    let climbs = climbs_of(results, &Udp.id(), udp.slo_p99_us);
    if climbs.is_empty() {
        return;
    }
    doc.heading(3, &format!("Sustained rate: open loop, {} flows, {} B", udp.step_flows, udp.step_size));
    let _ = writeln!(
        doc,
        "The offered rates ({} datagrams/s) step up from the \
         lowest; a variant climbs while it achieves ≥ 99 % of the rate, loses ≤ {} % and keeps the \
         CO-corrected p99 of its delivered datagrams ≤ {}. The first step it fails ends its climb in that \
         repeat. **Sustained** is the highest rate it kept in every repeat; *client-bound* when the step that \
         failed had a load generator thread ≥ 90 % busy.\n",
        udp.rates.iter().map(|r| fmt_count(*r)).collect::<Vec<_>>().join(", "),
        udp.max_loss_percent,
        fmt_us(udp.slo_p99_us as f64),
    );
    let mut sustained = r.table(["variant", "sustained datagrams/s:", "where the climb stopped"]);
    for v in &variants {
        let mine: Vec<&Climb<'_>> = climbs.iter().filter(|c| of(c, v)).collect();
        if mine.is_empty() {
            continue;
        }
        let summary = climb::summary(&mine, udp.rates.last().copied(), "/s");
        sustained.row([name(v), summary.words, summary.stops.join("; ")]);
    }
    doc.push_str(&sustained.finish());
    doc.push_str("Every step that ran (medians over the repeats that ran it):\n\n");
    let mut steps = r.table([
        "variant",
        "offered /s:",
        "achieved /s:",
        "p99:",
        "loss:",
        "kernel rcvbuf drops:",
        "server CPU µs/datagram:",
        "sustained:",
    ]);
    for v in &variants {
        for &rate in &udp.rates {
            let cells = step(&climbs, v, rate);
            if cells.is_empty() {
                continue;
            }
            let stat = |f: &dyn Fn(&Cell) -> Option<f64>| Stat::over(&cells, f);
            let held = cells.iter().filter(|c| verdict(c, udp.slo_p99_us).sustained()).count();
            let rcvbuf =
                |c: &Cell| report(c)?.datagrams.as_ref()?.kernel.as_ref().map(|k| k.counters.rcvbuf_errors as f64);
            steps.row([
                name(v),
                fmt_count(rate),
                show(stat(&|c| Some(report(c)?.throughput.requests_per_sec)), fmt_count),
                show(stat(&|c| Some(report(c)?.latency_us.p99 as f64)), us),
                show(stat(&|c| Some(report(c)?.datagrams.as_ref()?.loss_percent)), percent),
                show(stat(&rcvbuf), fmt_count),
                show(stat(&|c| c.server_cpu_us_per_msg), |v| format!("{v:.2}")),
                format!("{held} of {}", cells.len()),
            ]);
        }
    }
    doc.push_str(&steps.finish());
}

/// Draws the udp charts into `dir`: the sustained rate per variant, and
/// loss against offered rate.
fn charts(r: &Report<'_>, dir: &Path) -> Result<Vec<Chart>, String> {
    let results = r.results;
    let Some(udp) = &results.settings.udp else { return Ok(Vec::new()) };
    let climbs = climbs_of(results, &Udp.id(), udp.slo_p99_us);
    let variants = variants_run(results);
    let mut out = Vec::new();
    if climbs.is_empty() {
        return Ok(out);
    }
    let repeats = climbs.iter().map(|c| c.repeat).max().map_or(0, |r| r + 1);

    // Sustained rate per variant.
    let mut bars = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        let mine: Vec<&Climb<'_>> = climbs.iter().filter(|c| of(c, v)).collect();
        if mine.is_empty() {
            continue;
        }
        let summary = climb::summary(&mine, udp.rates.last().copied(), "/s");
        let value = summary.every.unwrap_or(0.0);
        let bound = mine.iter().any(|c| c.client_bound());
        let mut text = summary.words;
        if bound {
            text.push_str(" †");
        }
        let (colour, marker) = series::style_at(i);
        bars.push(Row { label: name(v), colour, marker, value, range: None, hollow: bound, text });
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
            vec![format!("hollow, {}: client-bound", marks::mark(FlagKind::ClientBound))]
        } else {
            Vec::new()
        },
        ..Frame::default()
    };
    charts::bars(&dir.join(&file), &frame, &[("datagrams / s".into(), bars)])?;
    out.push(Chart { title: "UDP: highest offered rate sustained".to_owned(), file });

    // p99 against offered rate, corrected and raw: the loss was 0.00 % at
    // every step of the reference run, its chart a flat line; the latency
    // is what tells the variants apart, and corrected against raw is what
    // the pacer's schedule adds (the queueing a closed loop hides).
    let mut lines = Vec::new();
    let p99 = |raw: bool| {
        move |c: &Cell| {
            let report = report(c)?;
            let latency = if raw { report.latency_raw_us.as_ref()? } else { &report.latency_us };
            Some(latency.p99 as f64)
        }
    };
    for (i, v) in variants.iter().enumerate() {
        let (colour, marker) = series::style_at(i);
        let points = |raw: bool| -> Vec<Point> {
            udp.rates
                .iter()
                .filter_map(|&rate| {
                    let cells = step(&climbs, v, rate);
                    let stat = Stat::over(&cells, p99(raw))?;
                    Some(Point {
                        x: rate,
                        y: stat.median,
                        range: (stat.n > 1 && stat.min != stat.max && !raw).then_some((stat.min, stat.max)),
                        // The corrected point carries the flags: the raw line is its companion.
                        hollow: !raw && (r.doubtful(&cells, Figure::Rate) || r.doubtful(&cells, Figure::Latency)),
                    })
                })
                .collect()
        };
        let corrected = points(false);
        if corrected.is_empty() {
            continue;
        }
        let line = Line {
            name: name(v),
            colour,
            marker,
            points: corrected,
            labels: Vec::new(),
            ring: None,
            dashed: false,
            markers: true,
        };
        let raw = points(true);
        if !raw.is_empty() {
            // The raw p99, in the variant's style, dashed, named once in the legend's notes.
            lines.push(Line { name: String::new(), points: raw, dashed: true, markers: false, ..line.clone() });
        }
        lines.push(line);
    }
    if lines.is_empty() {
        return Ok(out);
    }
    let slo = udp.slo_p99_us.max(1) as f64;
    let file = "udp-p99.svg".to_owned();
    let frame = Frame {
        title: "UDP: p99 latency against offered rate".into(),
        subtitle: format!(
            "open loop, {} flows, {} B; delivered datagrams; median of the repeats that ran each step",
            udp.step_flows, udp.step_size
        ),
        x_desc: "offered datagrams / s".into(),
        y_desc: "p99 (log)".into(),
        rules: vec![Rule { at: slo, label: format!("SLO: p99 ≤ {}", crate::render::plot::axis_us(slo)) }],
        notes: if lines.iter().any(|l| l.dashed) {
            vec!["solid: CO-corrected p99".into(), "dashed: raw p99 (from the".into(), "actual send time)".into()]
        } else {
            vec!["CO-corrected p99".into()]
        },
        ring: None,
    };
    charts::lines(&dir.join(&file), &frame, &lines, XAxis::LogAtPoints, YAxis::LogMicros)?;
    out.push(Chart { title: "UDP: p99 latency against offered rate, corrected and raw".to_owned(), file });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use echo_common::ModelInfo;

    use super::*;

    fn model(datagrams: bool, batch: bool) -> Model {
        Model::new(ModelInfo {
            name: "m".into(),
            summary: "".into(),
            default_max_connections: 1,
            child_processes: false,
            serves_at_once: None,
            baseline: false,
            reuse_port: false,
            colour: "#000000".into(),
            datagrams: datagrams.then(|| "how".into()),
            datagram_batch: batch,
            blocks_at_once: None,
            blocking_choice: false,
        })
    }

    #[test]
    fn a_variant_per_datagram_design_and_one_more_with_batch() {
        assert!(variants(&model(false, false)).is_empty());
        assert_eq!(variants(&model(true, false)), [None]);
        assert_eq!(variants(&model(true, true)), [None, Some(BATCH)]);
    }
}
