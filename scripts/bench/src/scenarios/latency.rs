//! The latency scenario: a ladder of fixed offered rates, an open-loop
//! climb ([`crate::climb`]).
//!
//! Every model is driven open loop (latency counted from each message's
//! intended send time, coordinated omission corrected) at the same absolute
//! rates, in every run, from the lowest up: a model climbs to the next step
//! only while it sustains the current one — achieved ≥ 99 % of the offered
//! rate ([`crate::flags::BELOW_TARGET_RATE`]) and CO-corrected p99 ≤ the
//! SLO (`--slo-p99`, default 1 ms). The first step it fails ends its ladder
//! in that repeat and is recorded with the reason. Its *knee* is the highest
//! offered rate it sustained; when the step above failed while the load
//! generator sent late (its `send_late` flag: the pacer's p99 lateness
//! above its limit) or a thread of it was ≥ 90 % busy without a spinning
//! pacer (`client_bound`), the knee is marked client-bound: the load
//! generator, maybe not the server, ran out.
//!
//! Steps run interleaved across models (step k of every model still
//! climbing, then step k + 1), each repeat its own climb.
//!
//! A model that serves fewer connections at once than the ladder opens
//! (`iterative`: 1, `prefork`: 16 by default, of 100) is left out, and the
//! results say so: the connections beyond its workers would wait in the
//! backlog with their scheduled messages piling up, so every step would
//! fail on a backlog, not on the model's latency. Their latency at the
//! loads they do serve is in the throughput tables (1 connection, closed loop).
//!
//! ## Budget (the default matrix on the 2-CPU reference machine)
//!
//! A step is a cell: server start, 100 connects, [`STEP_WINDOW`] (1 s
//! measured after 0.25 s), teardown, server stop: ≈ 1.4 s (measured in
//! short ladder runs here). The default ladder has [`DEFAULT_RATES`].len() =
//! 9 steps, 3 repeats, and runs the 9 of the 11 models that serve 100
//! connections at once:
//!
//! - at most 9 models × 9 steps × 3 repeats = 243 cells ≈ 5.7 min, reached
//!   only if every model sustained every step (the top steps are above what
//!   the load generator itself reaches on one CPU, so in practice a step
//!   fails for each, and the steps above it do not run);
//! - measured in a full run with 7 steps (10k, 20k, 40k, 60k, …): every
//!   climb ended at 60k or below, 4–5 steps each; the 30k and 50k steps
//!   were added to tell the models apart below that, ≈ 6 steps each, 162
//!   cells ≈ 3.8 min.
//!
//! The scenario it replaces (one open-loop cell per model and repeat at
//! half the slowest model's rate, 33 cells) took ≈ 1.7 min of the 25–27 min
//! the default matrix took. With a UDP scenario of ≈ 4 min to come, that
//! would be 25–27 − 1.7 + 4.4 + 4 = 31.7–33.7 min at worst: over the 30
//! minute budget. So the closed-loop throughput scenario runs 2 repeats
//! instead of 3 ([`super::throughput::THROUGHPUT_REPEAT`]): 88 cells of ≈ 3 s
//! fewer, −4.4 min, 27.3–29.3 min at worst, ≈ 26–28 expected. A full run
//! with the udp scenario and the 7-step ladder took 25.5 min; the two
//! added steps cost ≈ 1 min more. The cost scenario ([`super::cost`]) adds
//! its ≈ 1.9 min: ≈ 28–30 min expected, 29.2–31.2 min at worst.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use echo_common::Transport;
use hdrhistogram::Histogram;
use loadgen::report::{decode, fmt_count, fmt_us};

use crate::climb::{self, Climb, climbs_of, verdict};
use crate::flags::Figure;
use crate::load::{LoadKey, Rate, ScenarioId};
use crate::models::Model;
use crate::plan::{RunConfig, Shape};
use crate::render::charts::{self, Frame, Line, Point, Rule, XAxis, YAxis};
use crate::render::doc::{Doc, TableId};
use crate::render::figures::{latency, load_stat};
use crate::render::format::{range as show, transport_words, us};
use crate::render::series;
use crate::results::{Cell, Excluded, Ladder, Results, Settings};
use crate::scenario::{Chart, Claim, Column, Headline, Report, SMALL, Scenario, Summary, Window, every_model, ranked};
use crate::stats::Stat;

/// The default offered rates, msg/s: from well below the slowest model's
/// closed-loop rate at 100 connections on the 2-CPU machine (≈ 30 k) to
/// above the fastest (≈ 150 k, where the load generator runs out first).
pub const DEFAULT_RATES: [f64; 9] =
    [10_000.0, 20_000.0, 30_000.0, 40_000.0, 50_000.0, 60_000.0, 80_000.0, 100_000.0, 130_000.0];
/// `--quick`'s rates (no model sustained 60,000 within the SLO in the
/// reference run: a third step would not run).
pub const QUICK_RATES: [f64; 2] = [20_000.0, 60_000.0];
/// The default SLO on the CO-corrected p99.
pub const DEFAULT_SLO_P99: Duration = Duration::from_millis(1);
/// Connections of every step.
pub const CONNECTIONS: u32 = 100;
/// A step's measured window and warm-up are at most these (shorter if the
/// run's `--duration`/`--warmup` are): many short cells, within budget.
pub const STEP_WINDOW: (Duration, Duration) = (Duration::from_secs(1), Duration::from_millis(250));

#[derive(Debug)]
pub struct Latency;

impl Scenario for Latency {
    fn name(&self) -> &'static str {
        "latency"
    }

    fn about(&self) -> &'static str {
        "Open loop, a ladder of fixed offered rates, the same for every model: CO-corrected latency against \
         offered load, and each model's knee"
    }

    fn defaults(&self, shape: &mut Shape, quick: bool, _cpus: usize) -> bool {
        shape.rates = if quick { QUICK_RATES.to_vec() } else { DEFAULT_RATES.to_vec() };
        true
    }

    /// The ladder's steps in ascending order, each step for every model it
    /// does not leave out ([`excluded`]); the runner skips the steps above
    /// one a model failed.
    fn loads(&self, shape: &Shape) -> Vec<Vec<LoadKey>> {
        at_rates(self.id(), shape, &shape.rates, CONNECTIONS, excluded)
    }

    fn record(&self, cfg: &RunConfig, settings: &mut Settings) {
        let (window, warmup) = cfg.capped(STEP_WINDOW);
        let excluded = cfg.shape.models.iter();
        settings.ladder = Some(Ladder {
            rates: cfg.shape.rates.clone(),
            slo_p99_us: cfg.slo_p99.as_micros() as u64,
            connections: CONNECTIONS,
            size: SMALL,
            window_secs: window.as_secs_f64(),
            warmup_secs: warmup.as_secs_f64(),
            excluded: excluded
                .filter_map(|m| Some(Excluded { model: m.name().to_owned(), reason: self::excluded(m)? }))
                .collect(),
        });
    }

    fn window(&self) -> Window {
        Window::Capped { at_most: STEP_WINDOW, cells: "latency-ladder", beside: None }
    }

    fn headline(&self, load: &LoadKey) -> Headline {
        // A step's rate is imposed: its latency is the figure.
        if load.rate.is_some() { Headline::P99 } else { Headline::RATE }
    }

    fn place(&self) -> u8 {
        20
    }

    fn section(&self, r: &Report<'_>, transport: Option<Transport>, doc: &mut Doc) {
        if let Some(transport) = transport {
            section(r, transport, doc);
        }
    }

    fn charts(&self, r: &Report<'_>, transport: Option<Transport>, dir: &Path) -> Result<Vec<Chart>, String> {
        let Some(transport) = transport else { return Ok(Vec::new()) };
        Ok(ladder_chart(r, transport, dir)?.into_iter().chain(spectrum(r, transport, dir)?).collect())
    }

    fn summary<'r>(&self, r: &'r Report<'r>) -> Summary<'r> {
        let common = common_rate(r.results, Transport::Tcp);
        let at_common: Vec<&Cell> = latency_cells(r.results, Transport::Tcp)
            .into_iter()
            .filter(|c| common.is_some_and(|(rate, _)| c.spec.load.offered() == Some(rate)))
            .collect();
        let at =
            common.map_or("the latency scenario's load".into(), |(r, _)| format!("{} msg/s offered", fmt_count(r)));
        let column = Column {
            heading: "p99 at a fixed load",
            intro: Some(format!("p99 latency at {at} (open loop)")),
            leads: false,
            figure: Box::new(move |m, notes| {
                let mine = |c: &&Cell| c.spec.load.model == *m && c.spec.load.at_defaults();
                let own: Vec<&Cell> = at_common.iter().copied().filter(mine).collect();
                (!own.is_empty())
                    .then(|| notes.figure(latency(&own, |l| l.p99), &own, &[Figure::Latency, Figure::Rate]))
            }),
        };
        Summary { columns: vec![column], claims: claim(r).into_iter().collect() }
    }
}

/// Open-loop loads of `scenario` at each of `rates` in turn, per
/// transport: each a step of every model at `connections` and 64 B but
/// those `excluded` leaves out. The ladder's steps, and the cost
/// scenario's.
pub fn at_rates(
    scenario: ScenarioId,
    shape: &Shape,
    rates: &[f64],
    connections: u32,
    excluded: fn(&Model) -> Option<String>,
) -> Vec<Vec<LoadKey>> {
    let mut loads = Vec::new();
    for &transport in &shape.transports {
        for &rate in rates {
            loads.push(every_model(shape, |m| {
                let step = LoadKey::new(scenario.clone(), m.clone(), transport, connections, SMALL);
                let step = LoadKey { rate: Some(Rate(rate)), ..step };
                excluded(m).is_none().then_some(step).into_iter().collect()
            }));
        }
    }
    loads
}

/// Why `model` is left out of the ladder, if it is.
pub fn excluded(model: &Model) -> Option<String> {
    let at_once = model.info().serves_at_once?;
    (at_once < u64::from(CONNECTIONS)).then(|| {
        format!(
            "serves {at_once} connection(s) at once: {} of the ladder's {CONNECTIONS} would wait in the backlog, \
             so every step would measure the backlog",
            u64::from(CONNECTIONS) - at_once
        )
    })
}

/// Every climb of the latency ladder, by transport, model (run order) and repeat.
pub fn climbs(results: &Results) -> Vec<Climb<'_>> {
    let Some(ladder) = &results.settings.ladder else { return Vec::new() };
    climbs_of(results, &Latency.id(), ladder.slo_p99_us)
}

/// The climbs of one transport.
fn of(results: &Results, transport: Transport) -> Vec<Climb<'_>> {
    climbs(results).into_iter().filter(|c| c.load.transport == transport).collect()
}

/// The common load of the ladder over `transport`: the highest offered
/// rate every model on the ladder sustained in every repeat (the load at
/// which all of them can be compared), else the lowest rate run; and
/// whether every climb sustained it (false: no rate was sustained by all,
/// and it is the lowest step).
pub fn common_rate(results: &Results, transport: Transport) -> Option<(f64, bool)> {
    let climbs = of(results, transport);
    let lowest =
        climbs.iter().flat_map(|c| c.steps.first()).filter_map(|(s, _)| s.spec.load.offered()).reduce(f64::min)?;
    let all = climbs.iter().map(|c| c.knee()).collect::<Option<Vec<f64>>>();
    let rate = all.and_then(|knees| knees.into_iter().reduce(f64::min)).unwrap_or(lowest);
    let sustained = climbs.iter().all(|c| c.knee().is_some_and(|k| k >= rate));
    Some((rate, sustained))
}

/// The ok latency cells over `transport`.
pub fn latency_cells(results: &Results, transport: Transport) -> Vec<&Cell> {
    let of = |c: &&Cell| c.ok && c.spec.load.scenario == Latency.id() && c.spec.load.transport == transport;
    results.cells.iter().filter(of).collect()
}

/// Lowest p99 at the common load.
fn claim(r: &Report<'_>) -> Option<Claim> {
    let transport = r.main_transport()?;
    let (rate, all_sustained) = common_rate(r.results, transport)?;
    let cells: Vec<&Cell> = latency_cells(r.results, transport)
        .into_iter()
        .filter(|c| c.spec.load.offered().is_some_and(|r| r.to_bits() == rate.to_bits()))
        .collect();
    let connections = cells.first().map_or(0, |c| c.spec.load.connections);
    let which = if all_sustained {
        "the highest offered rate every model sustained"
    } else {
        "the lowest offered rate of the run: not every model sustained it"
    };
    let p99 = |c: &Cell| c.loadgen.as_ref().map(|r| r.latency_us.p99 as f64);
    Some(Claim {
        title: "Lowest p99 latency at a common load",
        conditions: format!(
            "at {} msg/s offered ({which}), {} connections, open loop, CO-corrected",
            fmt_count(rate),
            fmt_count(f64::from(connections))
        ),
        ranked: ranked(r.entries(&cells, p99, &[Figure::Latency, Figure::Rate]), true),
        left_out: None,
        table: TableId { scenario: Latency.id(), transport, part: None },
        show: us,
    })
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
fn step<'a>(climbs: &[Climb<'a>], model: &Model, rate: f64) -> Vec<&'a Cell> {
    climb::step(climbs, |c| c.load.model == *model, rate)
}

/// The README section of the ladder over `transport` (nothing without one).
fn section(r: &Report<'_>, transport: Transport, doc: &mut Doc) {
    let results = r.results;
    let (Some(ladder), climbs) = (&results.settings.ladder, of(results, transport)) else { return };
    if climbs.is_empty() {
        return;
    }
    let slo = ladder.slo_p99_us;
    let id = TableId { scenario: Latency.id(), transport, part: None };
    doc.table_heading(2, &format!("Latency against offered load, open loop, {}", transport_words(transport)), id);
    let _ = writeln!(
        doc,
        "Every model at the same offered rates ({} msg/s), {} connections, {} B messages, {} s measured after {} s \
         per step, from the lowest rate up. A model's ladder stops at the first step it fails: achieved below 99 % \
         of the offered rate, or a p99 above the SLO of {}. Latency counts from each message's intended send time \
         (coordinated omission corrected). The **knee** is the highest offered rate sustained, in every repeat for \
         the headline; *client-bound* when the step that failed above it had a load generator thread ≥ 90 % busy \
         (the client, maybe not the server, ran out). Step figures are medians over the repeats that ran the \
         step, min–max in parentheses; a step only some repeats reached says how many (`30,000 (2 of 3 \
         repeats)`): its figures are of the repeats that did well enough to get there.\n",
        ladder.rates.iter().map(|r| fmt_count(*r)).collect::<Vec<_>>().join(", "),
        ladder.connections,
        ladder.size,
        ladder.window_secs,
        ladder.warmup_secs,
        fmt_us(slo as f64),
    );
    for excluded in &ladder.excluded {
        let _ = writeln!(doc, "- `{}` is left out: it {}.", excluded.model, excluded.reason);
    }
    if !ladder.excluded.is_empty() {
        doc.push('\n');
    }
    let mut knees = r.table(["model", "knee msg/s, every repeat:", "knee per repeat:", "where the ladder stopped"]);
    let mut seen: Vec<&Model> = climbs.iter().map(|c| &c.load.model).collect();
    seen.dedup();
    for &m in &seen {
        let mine: Vec<&Climb<'_>> = climbs.iter().filter(|c| c.load.model == *m).collect();
        let summary = climb::summary(&mine, ladder.rates.last().copied(), "msg/s");
        let rate = |k: Option<f64>| k.map_or("none".to_owned(), fmt_count);
        let per_repeat = mine.iter().map(|c| rate(c.knee())).collect::<Vec<_>>().join(" · ");
        knees.row([m.name().to_owned(), summary.words, per_repeat, summary.stops.join("; ")]);
    }
    doc.push_str(&knees.finish());

    let mut steps = r.table([
        "model",
        "offered msg/s:",
        "achieved msg/s:",
        "p50:",
        "p99:",
        "p99.9:",
        "server CPU µs/msg:",
        "steps sustained:",
        "flags",
    ]);
    for &m in &seen {
        let repeats = climbs.iter().filter(|c| c.load.model == *m).count();
        for rate in rates(&climbs) {
            let cells = step(&climbs, m, rate);
            if cells.is_empty() {
                continue;
            }
            // A step not every repeat reached: its figures are of those that did.
            let offered = if cells.len() < repeats {
                format!("{} ({} of {repeats} repeats)", fmt_count(rate), cells.len())
            } else {
                fmt_count(rate)
            };
            let load = |f: fn(&loadgen::Report) -> f64| load_stat(&cells, f);
            let sustained = cells.iter().filter(|c| verdict(c, slo).sustained()).count();
            let mut kinds: Vec<&str> = cells.iter().flat_map(|c| c.flags.iter().map(|f| f.kind.name())).collect();
            kinds.sort_unstable();
            kinds.dedup();
            steps.row([
                m.name().to_owned(),
                offered,
                show(load(|r| r.throughput.requests_per_sec), fmt_count),
                show(load(|r| r.latency_us.p50 as f64), us),
                show(load(|r| r.latency_us.p99 as f64), us),
                show(load(|r| r.latency_us.p99_9 as f64), us),
                show(Stat::over(&cells, |c| c.server_cpu_us_per_msg), |v| format!("{v:.2}")),
                format!("{sustained} of {}", cells.len()),
                kinds.join(", "),
            ]);
        }
    }
    doc.push_str(&steps.finish());
}

/// p99 against offered rate over `transport`, into `dir`: a line per
/// model through the steps every one of its repeats ran, a slot per step
/// (labelled with its rate), the min–max range of the repeats, the SLO
/// across, its knee ringed (the highest rate it sustained in every repeat).
/// The steps only some repeats reached (the others stopped below) follow
/// dashed, each labelled with how many ran it (`2/3`): their median is of
/// the repeats that did well enough to get there. A point is hollow when
/// its step's cells carry a flag on their latency. None without a ladder.
fn ladder_chart(r: &Report<'_>, transport: Transport, dir: &Path) -> Result<Option<Chart>, String> {
    let Some(ladder) = &r.results.settings.ladder else { return Ok(None) };
    let climbs = of(r.results, transport);
    let rates = rates(&climbs);
    let mut lines = Vec::new();
    for m in &r.models {
        let mine: Vec<&Climb<'_>> = climbs.iter().filter(|c| c.load.model == *m).collect();
        let repeats = mine.len();
        let (mut full, mut partial, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        for &rate in &rates {
            let cells = step(&climbs, m, rate);
            let Some(p99) = Stat::over(&cells, |c| c.loadgen.as_ref().map(|r| r.latency_us.p99 as f64)) else {
                continue;
            };
            let range = (p99.n > 1).then_some((p99.min, p99.max));
            let point = Point { x: rate, y: p99.median, range, hollow: r.doubtful(&cells, Figure::Latency) };
            if cells.len() < repeats {
                labels.push((rate, p99.median, format!("{}/{repeats}", cells.len())));
                partial.push(point);
            } else if partial.is_empty() {
                full.push(point);
            } else {
                // Every repeat ran it again above a partial step (an interrupted run): still partial company.
                partial.push(point);
            }
        }
        if full.is_empty() && partial.is_empty() {
            continue;
        }
        let knee = climb::summary(&mine, ladder.rates.last().copied(), "msg/s").every;
        if !partial.is_empty() {
            // Dashed from the last step every repeat ran, in the model's style, not in the legend.
            let joined = full.last().copied().into_iter().chain(partial).collect();
            let mut rest = series::line(m, joined);
            (rest.name, rest.dashed, rest.labels) = (String::new(), true, labels);
            if let Some(first) = rest.points.first_mut().filter(|_| !full.is_empty()) {
                first.range = None; // drawn with the full line
            }
            let line = Line { ring: knee, ..series::line(m, full) };
            lines.push(line);
            lines.push(rest);
        } else {
            lines.push(Line { ring: knee, ..series::line(m, full) });
        }
    }
    if lines.is_empty() {
        return Ok(None);
    }
    let over = r.over(transport);
    let slo = ladder.slo_p99_us.max(1) as f64;
    let partial = lines.iter().any(|l| !l.labels.is_empty());
    let frame = Frame {
        title: format!("p99 latency against offered load, open loop, {} connections{over}", ladder.connections),
        subtitle: format!(
            "{} B; median of the repeats that ran each step, bars: min–max; a climb stops at its first failed step",
            ladder.size
        ),
        x_desc: "offered rate, messages / s (one ladder step each)".into(),
        y_desc: "CO-corrected p99 (log)".into(),
        rules: vec![Rule { at: slo, label: format!("SLO: p99 ≤ {}", crate::render::plot::axis_us(slo)) }],
        notes: if partial {
            vec!["dashed, n/m: a step only n of".into(), "the m repeats reached".into()]
        } else {
            Vec::new()
        },
        ring: Some("knee: highest rate held".into()),
    };
    let file = format!("latency-ladder{}.svg", r.suffix(transport));
    charts::lines(&dir.join(&file), &frame, &lines, XAxis::Steps(rates), YAxis::LogMicros)?;
    Ok(Some(Chart { title: format!("p99 latency against offered load{over}"), file }))
}

/// The latency percentile spectrum over `transport` at the common load
/// (the highest offered rate every model sustained, or the lowest step):
/// each model's repeats at that rate merged into one histogram; a model
/// whose cells there are flagged is drawn dashed. None when no latency cell
/// has a histogram.
fn spectrum(r: &Report<'_>, transport: Transport, dir: &Path) -> Result<Option<Chart>, String> {
    let (suffix, over) = (r.suffix(transport), r.over(transport));
    let Some((rate, all_sustained)) = common_rate(r.results, transport) else { return Ok(None) };
    let cells: Vec<&Cell> = latency_cells(r.results, transport)
        .into_iter()
        .filter(|c| c.spec.load.offered().is_some_and(|r| r.to_bits() == rate.to_bits()))
        .collect();
    let mut lines = Vec::new();
    let mut merged_counts = Vec::new();
    for model in &r.models {
        let own: Vec<&Cell> = cells.iter().copied().filter(|c| c.spec.load.model == *model).collect();
        let mut merged: Option<Histogram<u64>> = None;
        let mut n = 0;
        for cell in &own {
            let Some(hist) = cell.loadgen.as_ref().and_then(|r| decode(&r.histogram).ok()) else { continue };
            n += 1;
            match merged.as_mut() {
                Some(m) => {
                    let _ = m.add(&hist);
                }
                None => merged = Some(hist),
            }
        }
        let Some(hist) = merged.filter(|h| !h.is_empty()) else { continue };
        merged_counts.push(n);
        // x: "nines" — 1 at 90 %, 2 at 99 %, 3 at 99.9 %, 4 at 99.99 %.
        let points = (0..=60)
            .map(|step| {
                let nines = 1.0 + f64::from(step) * 0.05;
                let quantile = 1.0 - 10f64.powf(-nines);
                let y = hist.value_at_quantile(quantile).max(1) as f64;
                Point { x: nines, y, range: None, hollow: false }
            })
            .collect();
        let dashed = r.doubtful(&own, Figure::Latency) || r.doubtful(&own, Figure::Rate);
        let name = r.lookup.notes().figure(model.name().to_owned(), &own, &[Figure::Latency, Figure::Rate]);
        lines.push(Line { name, dashed, markers: false, ..series::line(model, points) });
    }
    if lines.is_empty() {
        return Ok(None);
    }
    let (fewest, most) =
        (merged_counts.iter().min().copied().unwrap_or(0), merged_counts.iter().max().copied().unwrap_or(0));
    let merged = match (fewest, most) {
        (1, 1) => "one run per model".to_owned(),
        (a, b) if a == b => format!("each curve: a model's {a} repeats merged"),
        (a, b) => format!("each curve: a model's {a}–{b} repeats merged"),
    };
    let which = if all_sustained {
        "the highest offered rate every model sustained"
    } else {
        "the lowest offered rate: not every model sustained it"
    };
    let shape = cells.first().map_or(String::new(), |c| {
        format!("{} connections, {} B; ", fmt_count(f64::from(c.spec.load.connections)), c.spec.load.size)
    });
    let file = format!("latency-spectrum{suffix}.svg");
    let frame = Frame {
        title: format!("Latency by percentile at {} msg/s offered (open loop, CO-corrected){over}", fmt_count(rate)),
        subtitle: format!("{shape}{merged}; {which}"),
        x_desc: "percentile".into(),
        y_desc: "latency (log scale)".into(),
        rules: Vec::new(),
        notes: if lines.iter().any(|l| l.dashed) {
            vec!["dashed: a flagged model".into(), "at this rate (marks under".into(), "the latency table)".into()]
        } else {
            Vec::new()
        },
        ..Frame::default()
    };
    charts::lines(&dir.join(&file), &frame, &lines, XAxis::Nines, YAxis::LogMicros)?;
    Ok(Some(Chart {
        title: format!("Latency percentile spectrum at {} msg/s, open loop{over}", fmt_count(rate)),
        file,
    }))
}
