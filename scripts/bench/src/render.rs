//! results.json → README.md (one table per scenario) and SVG charts.
//! Pure functions of the results: `bench report` regenerates them at will,
//! and the snapshot test pins the output.
//!
//! [`marks`] puts each cell's validity flags into the tables (a footnote
//! mark, a legend, the count by kind), [`headline`] writes the README's
//! opening "which model for what", [`charts`] draws.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use echo_common::{ModelInfo, Transport};
use hdrhistogram::Histogram;
use loadgen::report::{LatencySummary, decode, fmt_count};
use plotters::prelude::*;

use crate::flags::SPREAD;
use crate::load::LoadKey;
use crate::matrix::{Scenario, TRANSPORT_CONNECTIONS};
use crate::results::{Cell, Results};
pub use crate::stats::Stat;
use crate::stats::{self, Groups};

pub mod charts;
pub mod format;
pub mod headline;
pub mod ladder;
pub mod marks;
pub mod udp;

use crate::flags::Figure;
use charts::{Bar, Frame, Line, Point, XAxis, YAxis};
use format::{count, grouped, kib, ratio, show, signed, transport_words, us};
use marks::Notes;

/// Writes README.md and the charts into `dir`.
pub fn write_report(results: &Results, dir: &Path) -> io::Result<()> {
    let charts = draw_charts(results, dir)?;
    std::fs::write(dir.join("README.md"), markdown(results, &charts))
}

/// The ok cells, grouped by load.
fn groups(results: &Results) -> Groups<'_> {
    stats::groups(results.cells.iter().filter(|c| c.ok))
}

/// The transports the per-transport scenarios ran over (the transport
/// scenario, which always has both, has its own table and chart).
fn scenario_transports(groups: &Groups<'_>) -> std::collections::BTreeSet<Transport> {
    // The transport scenario runs both stream transports by design, and the
    // udp scenario has a section of its own.
    let own = |s: Scenario| matches!(s, Scenario::Transport | Scenario::Udp);
    groups.keys().filter(|k| !own(k.scenario)).map(|k| k.transport).collect()
}

fn stat(cells: &[&Cell], figure: impl Fn(&Cell) -> Option<f64>) -> Option<Stat> {
    Stat::of(cells.iter().filter_map(|c| figure(c)).collect())
}

/// A figure of the load generator's report, over a group's repeats.
fn load_stat(cells: &[&Cell], figure: impl Fn(&loadgen::Report) -> f64) -> Option<Stat> {
    stat(cells, |c| c.loadgen.as_ref().map(&figure))
}

/// The table cells every load scenario shows.
fn throughput(cells: &[&Cell]) -> String {
    show(load_stat(cells, |r| r.throughput.requests_per_sec), count)
}

fn latency(cells: &[&Cell], pick: fn(&LatencySummary) -> u64) -> String {
    show(load_stat(cells, |r| pick(&r.latency_us) as f64), us)
}

fn server_cpu(cells: &[&Cell], digits: usize) -> String {
    show(stat(cells, |c| c.server_cpu_us_per_msg), |v| grouped(v, digits))
}

fn errors(cells: &[&Cell]) -> String {
    show(load_stat(cells, |r| r.requests.errors() as f64), count)
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

/// The transport scenario's pairs, by connections then model.
pub fn transport_pairs(results: &Results) -> Vec<TransportPair<'_>> {
    let mut pairs = Vec::new();
    for connections in TRANSPORT_CONNECTIONS {
        for info in &results.settings.models {
            let of = |transport: Transport| -> Vec<&Cell> {
                results
                    .cells
                    .iter()
                    .filter(|c| {
                        c.ok && c.spec.load.scenario == Scenario::Transport && c.spec.load.transport == transport
                    })
                    .filter(|c| c.spec.load.connections == connections && c.spec.load.model.name() == info.name)
                    .collect()
            };
            let (tcp, unix) = (of(Transport::Tcp), of(Transport::Unix));
            if !tcp.is_empty() || !unix.is_empty() {
                pairs.push(TransportPair { model: info.name.to_string(), colour: info.rgb(), connections, tcp, unix });
            }
        }
    }
    pairs
}

/// One row per model of the figures a reader compares first, each from its
/// scenario's table below (TCP), led by what this machine measures of the
/// server alone: server CPU per message at 100 connections, 64 B, then
/// msg/s there, p99 at the latency scenario's common load, memory per idle
/// connection at 1,000, and new connections per second with their server
/// CPU. Only the columns some model has a figure for: a run of one
/// scenario gets that scenario's columns. Validity marks as in the tables.
/// Empty if the run has none.
fn summary(results: &Results, groups: &Groups<'_>) -> String {
    let find = |scenario: Scenario, connections: Option<u32>, size: Option<u32>, model: usize| {
        groups.iter().find(|(k, _)| {
            k.scenario == scenario
                && k.transport == Transport::Tcp
                && k.model.rank() == model
                && connections.is_none_or(|c| k.connections == c)
                && size.is_none_or(|s| k.size == s)
        })
    };
    let common = headline::common_rate(results, Transport::Tcp);
    let latency_cells = headline::latency_cells(results, Transport::Tcp);
    let mut notes = Notes::default();
    // Per model its name and, per column, its figure (None: no cells for it).
    let mut rows: Vec<(&str, [Option<String>; 6])> = Vec::new();
    for (i, model) in results.settings.models.iter().enumerate() {
        let load = find(Scenario::Throughput, Some(100), Some(crate::matrix::SMALL), i);
        // 1,000 idle connections, or the model's own cap if lower.
        let held = u32::try_from(model.default_max_connections).map_or(1000, |cap| cap.min(1000));
        let idle = find(Scenario::Capacity, Some(held), None, i);
        let churn = find(Scenario::Churn, None, None, i);
        let at_common: Vec<&Cell> = latency_cells
            .iter()
            .copied()
            .filter(|c| c.spec.load.model.name() == model.name)
            .filter(|c| common.is_some_and(|(r, _)| c.spec.load.offered() == Some(r)))
            .collect();
        if load.is_none() && idle.is_none() && churn.is_none() && at_common.is_empty() {
            continue;
        }
        let mut cell = |group: Option<(&&LoadKey, &Vec<&Cell>)>, text: fn(&[&Cell]) -> String, shown: &[Figure]| {
            group.map(|(_, c)| notes.figure(text(c), c, shown))
        };
        let cpu = cell(load, |c| server_cpu(c, 2), &[Figure::Cpu]);
        let rate = cell(load, throughput, &[Figure::Rate]);
        let memory = cell(
            idle,
            |c| show(stat(c, |c| c.capacity.as_ref().map(|c| c.pss_per_connection_kib)), kib),
            &[Figure::Held],
        );
        let churn_cpu = cell(churn, |c| server_cpu(c, 1), &[Figure::Cpu]);
        let accepts = cell(churn, throughput, &[Figure::Rate]);
        let p99 = (!at_common.is_empty())
            .then(|| notes.figure(latency(&at_common, |l| l.p99), &at_common, &[Figure::Latency, Figure::Rate]));
        rows.push((&model.name, [cpu, rate, p99, memory, churn_cpu, accepts]));
    }
    if rows.is_empty() {
        return String::new();
    }
    let at = common.map_or("the latency scenario's load".into(), |(r, _)| format!("{} msg/s offered", fmt_count(r)));
    // Each column's heading, and what the introduction says of it (said
    // once for a pair of columns from the same cells).
    let columns: [(&str, Option<String>); 6] = [
        (
            "server CPU µs/msg",
            Some("server CPU per message and msg/s at 100 connections with 64 B messages (closed loop)".into()),
        ),
        ("msg/s, 100 connections", None),
        ("p99 at a fixed load", Some(format!("p99 latency at {at} (open loop)"))),
        ("PSS per idle connection", Some("server memory (PSS) per idle connection with 1,000 held".into())),
        (
            "server CPU µs/connection",
            Some("the server CPU each new connection costs and new connections per second (churn)".into()),
        ),
        ("new connections/s", None),
    ];
    let kept: Vec<usize> = (0..columns.len()).filter(|&c| rows.iter().any(|(_, row)| row[c].is_some())).collect();
    let said: Vec<&str> = kept.iter().filter_map(|&c| columns[c].1.as_deref()).collect();
    // The lead is the server CPU per message, when the run measured it.
    let lead = if kept.contains(&0) { ", led by what this machine measures of the server alone" } else { "" };
    let mut md = String::from("## Summary by model (TCP loopback)\n\n");
    let _ = writeln!(md, "From the tables below{lead}: {}.\n", said.join(", "));
    md.push_str("| model |");
    for &c in &kept {
        let _ = write!(md, " {} |", columns[c].0);
    }
    md.push_str("\n|---|");
    md.push_str(&"---:|".repeat(kept.len()));
    md.push('\n');
    for (name, row) in &rows {
        let _ = write!(md, "| {name} |");
        for &c in &kept {
            let _ = write!(md, " {} |", row[c].as_deref().unwrap_or("–"));
        }
        md.push('\n');
    }
    md.push('\n');
    md.push_str(&notes.legend());
    md
}

/// The scenarios the run has cells of (those the settings name, if it has
/// none yet): the README describes these, not the ones it might have run.
fn scenarios_run(results: &Results) -> std::collections::BTreeSet<Scenario> {
    let ran: std::collections::BTreeSet<Scenario> = results.cells.iter().map(|c| c.spec.load.scenario).collect();
    if !ran.is_empty() {
        return ran;
    }
    Scenario::ALL.into_iter().filter(|s| results.settings.scenarios.iter().any(|n| n == s.name())).collect()
}

/// `3 repeat(s) per cell (2 for the throughput scenario, 2 for udp)`: the
/// exceptions only for scenarios that ran and repeat otherwise.
fn repeats_words_of(results: &Results, ran: &std::collections::BTreeSet<Scenario>) -> String {
    let s = &results.settings;
    let mut exceptions = Vec::new();
    if ran.contains(&Scenario::Throughput) && s.throughput_repeat != s.repeat {
        exceptions.push(format!("{} for the throughput scenario", s.throughput_repeat));
    }
    if let Some(udp) = s.udp.as_ref().filter(|u| ran.contains(&Scenario::Udp) && u.repeat != s.repeat) {
        exceptions.push(format!("{} for udp", udp.repeat));
    }
    let mut text = format!("{} repeat(s) per cell", s.repeat);
    if !exceptions.is_empty() {
        let _ = write!(text, " ({})", exceptions.join(", "));
    }
    text
}

/// `; closed- and open-loop cells measure 2 s after a 0.5 s warm-up (the
/// transport scenario: …; latency-ladder and udp cells: …)`: the measured
/// windows of the scenarios that ran (none for a capacity run alone).
fn windows_words(results: &Results, ran: &std::collections::BTreeSet<Scenario>) -> String {
    let s = &results.settings;
    // The scenarios whose windows are capped: how the sentence names them
    // beside the others and alone, and their window and warm-up in seconds.
    struct Capped {
        beside: String,
        alone: String,
        window: f64,
        warmup: f64,
    }
    let capped = |beside: String, alone: String, (window, warmup): (std::time::Duration, std::time::Duration)| {
        let (window, warmup) = (window.as_secs_f64().min(s.duration_secs), warmup.as_secs_f64().min(s.warmup_secs));
        Capped { beside, alone, window, warmup }
    };
    let mut shorter = Vec::new();
    if ran.contains(&Scenario::Transport) {
        shorter.push(capped(
            "the transport scenario".into(),
            "transport cells".into(),
            crate::matrix::TRANSPORT_WINDOW,
        ));
    }
    let stepped: Vec<&str> = [(Scenario::Latency, "latency-ladder"), (Scenario::Udp, "udp")]
        .into_iter()
        .filter(|(scenario, _)| ran.contains(scenario))
        .map(|(_, name)| name)
        .collect();
    if !stepped.is_empty() {
        let cells = format!("{} cells", stepped.join(" and "));
        shorter.push(capped(cells.clone(), cells, crate::ladder::STEP_WINDOW));
    }
    let full = [Scenario::Throughput, Scenario::Churn, Scenario::Scaling].iter().any(|s| ran.contains(s));
    if full {
        let mut text =
            format!("; closed- and open-loop cells measure {} s after a {} s warm-up", s.duration_secs, s.warmup_secs);
        if !shorter.is_empty() {
            let each: Vec<String> =
                shorter.iter().map(|c| format!("{}: at most {} s after {} s", c.beside, c.window, c.warmup)).collect();
            let _ = write!(text, " ({})", each.join("; "));
        }
        return text;
    }
    // Only scenarios with capped windows (or none: capacity): each says its own.
    shorter
        .iter()
        .map(|c| format!("; {} measure at most {} s after a {} s warm-up", c.alone, c.window, c.warmup))
        .collect()
}

/// The README of a run.
pub fn markdown(results: &Results, charts: &[(String, String)]) -> String {
    let s = &results.settings;
    let env = &results.environment;
    let groups = groups(results);
    let mut md = String::new();
    let _ = writeln!(md, "# echo-arena benchmark: {}\n", env.started_at);
    if !results.complete {
        md.push_str("**This run was interrupted: only the finished cells are shown.**\n\n");
    }
    let ran = scenarios_run(results);
    let _ = writeln!(
        md,
        "{} model(s) × {} scenario(s), {}, interleaved across models{}. Figures are the median over repeats, \
         with the min–max range in parentheses; ⚠ marks a spread above {:.0} % of the median; {}. \
         Server on CPU(s) {:?}, load generator on CPU(s) {:?}.\n",
        s.models.len(),
        ran.len(),
        repeats_words_of(results, &ran),
        windows_words(results, &ran),
        SPREAD * 100.0,
        {
            // The marks of this run's flags (the spread's is said above);
            // a kind this run never raised is not announced.
            let cells: Vec<&Cell> = results.cells.iter().collect();
            let others: Vec<&str> = marks::kinds(&cells).into_iter().map(marks::mark).filter(|m| *m != "⚠").collect();
            if others.is_empty() {
                "no other validity flag was raised".to_owned()
            } else {
                format!(
                    "the other marks ({}) are validity flags, explained under each table that shows one and \
                     counted by kind at the end",
                    others.join(", ")
                )
            }
        },
        s.server_cpus,
        s.client_cpus
    );

    // The "which model for what" summary goes here once the tables it links to are written.
    let opening = md.len();
    md.push_str(&summary(results, &groups));
    let transports = scenario_transports(&groups);
    for &transport in &transports {
        let cells_of =
            |scenario: Scenario| groups.iter().filter(move |(k, _)| k.scenario == scenario && k.transport == transport);
        let over = transport_words(transport);

        if cells_of(Scenario::Throughput).next().is_some() {
            let _ = writeln!(md, "## Throughput and latency, closed loop, {over}\n");
            md.push_str(
                "Each connection sends a message and waits for its echo, again and again. `starved`: connections \
                 that got no echo in the measured window. Server CPU is user + system time of the server's whole \
                 process tree over the window, per completed message.\n\n",
            );
            let sizes: std::collections::BTreeSet<u32> = cells_of(Scenario::Throughput).map(|(k, _)| k.size).collect();
            for size in sizes {
                let _ = writeln!(md, "### {size} B messages\n");
                md.push_str("| connections | model | msg/s | server CPU µs/msg | p50 | p99 | p99.9 | server PSS peak | errors | starved |\n");
                md.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
                let mut notes = Notes::default();
                for (k, cells) in cells_of(Scenario::Throughput).filter(|(k, _)| k.size == size) {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        count(f64::from(k.connections)),
                        k.model.name(),
                        notes.figure(throughput(cells), cells, &[Figure::Rate]),
                        notes.figure(server_cpu(cells, 2), cells, &[Figure::Cpu]),
                        latency(cells, |l| l.p50),
                        notes.figure(latency(cells, |l| l.p99), cells, &[Figure::Latency]),
                        latency(cells, |l| l.p99_9),
                        show(stat(cells, |c| c.server.map(|s| s.pss_peak_kib as f64)), kib),
                        errors(cells),
                        show(load_stat(cells, |r| r.per_connection.starved as f64), count),
                    );
                }
                md.push('\n');
                md.push_str(&notes.legend());
            }
        }

        md.push_str(&ladder::markdown(results, transport, over));

        if cells_of(Scenario::Churn).next().is_some() {
            let _ = writeln!(md, "## Churn: a new connection per message, 10 clients, {over}\n");
            md.push_str(
                "Each message opens a connection, echoes once and closes it (the client half-closes first). \
                 Accepting is what is measured here; a model that starts a process per connection pays a fork/exec \
                 for each.\n\n",
            );
            // The textbook's zero: a declared baseline model's CPU per connection.
            let baseline = s.models.iter().position(|m| m.baseline).and_then(|i| {
                let (_, cells) = cells_of(Scenario::Churn).find(|(k, _)| k.model.rank() == i)?;
                Some((s.models[i].name.to_string(), stat(cells, |c| c.server_cpu_us_per_msg)?.median))
            });
            if let Some((zero, us_per_conn)) = &baseline {
                let _ = writeln!(
                    md,
                    "As in Stevens' table of server designs (UNP, chapter 30), `{zero}` is the zero: serving one \
                     connection at a time, it costs {} µs of server CPU per connection; `above {zero}` \
                     is what each other design spends on top of that for its concurrency.\n",
                    grouped(*us_per_conn, 1)
                );
            }
            let above = baseline.as_ref().map(|(zero, _)| format!(" above {zero} |")).unwrap_or_default();
            let _ = writeln!(
                md,
                "| model | connections/s | server CPU µs/connection |{above} connect p50 | connect p99 | echo p50 | echo p99 | peak processes | errors |"
            );
            let _ = writeln!(
                md,
                "|---|---:|---:|{}---:|---:|---:|---:|---:|---:|",
                if baseline.is_some() { "---:|" } else { "" }
            );
            let mut notes = Notes::default();
            for (k, cells) in cells_of(Scenario::Churn) {
                let connect = |f: fn(&LatencySummary) -> u64| {
                    stat(cells, move |c| c.loadgen.as_ref().and_then(|r| r.connect_us).map(|l| f(&l) as f64))
                };
                let over_zero = match &baseline {
                    Some((_, zero)) => {
                        let above = stat(cells, |c| c.server_cpu_us_per_msg).map(|own| own.median - zero);
                        format!(" {} |", above.map_or("–".into(), |v| signed(v, 1)))
                    }
                    None => String::new(),
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} |{over_zero} {} | {} | {} | {} | {} | {} |",
                    k.model.name(),
                    notes.figure(throughput(cells), cells, &[Figure::Rate]),
                    notes.figure(server_cpu(cells, 1), cells, &[Figure::Cpu]),
                    show(connect(|l| l.p50), us),
                    show(connect(|l| l.p99), us),
                    latency(cells, |l| l.p50),
                    notes.figure(latency(cells, |l| l.p99), cells, &[Figure::Latency]),
                    show(stat(cells, |c| c.server.map(|s| s.processes_peak as f64)), count),
                    errors(cells),
                );
            }
            md.push('\n');
            md.push_str(&notes.legend());
        }

        if cells_of(Scenario::Capacity).next().is_some() {
            let _ = writeln!(md, "## Capacity: idle connections held, {over}\n");
            let capped: Vec<String> = s
                .models
                .iter()
                .filter(|m| s.capacity.iter().any(|&n| u64::from(n) > m.default_max_connections))
                .map(|m| {
                    format!("`{}` is capped at its {} connections", m.name, fmt_count(m.default_max_connections as f64))
                })
                .collect();
            let _ = writeln!(
                md,
                "N connections are opened and left idle; the server's memory is read from /proc (PSS from \
                 smaps_rollup, so pages shared between a model's child processes are counted once), and divided by \
                 the connections the server `held`: sockets its processes hold beyond those they held before, \
                 and still open at the client's end (a peek: closed ones read end of file); a connection left \
                 waiting in the listener's backlog is not held. Then every \
                 connection sends one echo; `not served` did not get it back within 5 s.{}\n",
                if capped.is_empty() { String::new() } else { format!(" {}.", capped.join("; ")) }
            );
            md.push_str("| model | connections | held | PSS / connection | RSS / connection | server PSS held | threads | processes | not served |\n");
            md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
            let mut notes = Notes::default();
            for (k, cells) in cells_of(Scenario::Capacity) {
                let cap = |f: fn(&crate::capacity::Capacity) -> f64| stat(cells, move |c| c.capacity.as_ref().map(f));
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    k.model.name(),
                    count(f64::from(k.connections)),
                    show(cap(|c| c.held as f64), count),
                    notes.figure(show(cap(|c| c.pss_per_connection_kib), kib), cells, &[Figure::Held]),
                    show(cap(|c| c.rss_per_connection_kib), kib),
                    show(cap(|c| c.pss_held_kib as f64), kib),
                    show(cap(|c| c.threads as f64), count),
                    show(cap(|c| c.processes as f64), count),
                    show(cap(|c| c.not_served as f64), count),
                );
            }
            md.push('\n');
            md.push_str(&notes.legend());
        }

        if cells_of(Scenario::Scaling).next().is_some() {
            let _ = writeln!(md, "## Scaling: the server on more CPUs, {over}\n");
            let limit = s.scaling.as_ref().map_or(String::new(), |sc| format!(" Here {}.", sc.limit));
            let _ = writeln!(
                md,
                "The server runs on 1, 2, 4, … CPUs, the load generator on the rest, with {} connections per \
                 server CPU, 64 B, closed loop: where thread-per-core designs earn their place.{limit}\n",
                crate::matrix::SCALING_CONNECTIONS_PER_CPU
            );
            md.push_str("| server CPUs | model | connections | msg/s | server CPU µs/msg | p99 | errors |\n");
            md.push_str("|---:|---|---:|---:|---:|---:|---:|\n");
            // Groups are ordered by connections, which grow with server CPUs.
            let mut notes = Notes::default();
            for (k, cells) in cells_of(Scenario::Scaling) {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    cells[0].spec.load.server_cpus.unwrap_or(0),
                    k.model.name(),
                    count(f64::from(k.connections)),
                    notes.figure(throughput(cells), cells, &[Figure::Rate]),
                    notes.figure(server_cpu(cells, 2), cells, &[Figure::Cpu]),
                    notes.figure(latency(cells, |l| l.p99), cells, &[Figure::Latency]),
                    errors(cells),
                );
            }
            md.push('\n');
            md.push_str(&notes.legend());
        }
    }

    let pairs = transport_pairs(results);
    if !pairs.is_empty() {
        md.push_str("## Transport: TCP loopback against a Unix domain socket\n\n");
        md.push_str(
            "Every model at 1 and 100 connections, 64 B, closed loop; for each model the TCP cell and the Unix \
             socket cell run back to back, and each ratio is taken within such a pair (unix ÷ tcp), then the \
             median over repeats. Above 1 for msg/s, below 1 for CPU per message: the Unix socket is cheaper.\n\n",
        );
        md.push_str("| connections | model | tcp msg/s | unix msg/s | unix/tcp msg/s | tcp CPU µs/msg | unix CPU µs/msg | unix/tcp CPU/msg |\n");
        md.push_str("|---:|---|---:|---:|---:|---:|---:|---:|\n");
        let mut notes = Notes::default();
        for pair in &pairs {
            let rate = |c: &Cell| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec);
            let cpu = |c: &Cell| c.server_cpu_us_per_msg;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                count(f64::from(pair.connections)),
                pair.model,
                notes.figure(show(stat(&pair.tcp, rate), count), &pair.tcp, &[Figure::Rate]),
                notes.figure(show(stat(&pair.unix, rate), count), &pair.unix, &[Figure::Rate]),
                show(pair.ratio(rate), ratio),
                notes.figure(show(stat(&pair.tcp, cpu), |v| grouped(v, 2)), &pair.tcp, &[Figure::Cpu]),
                notes.figure(show(stat(&pair.unix, cpu), |v| grouped(v, 2)), &pair.unix, &[Figure::Cpu]),
                show(pair.ratio(cpu), ratio),
            );
        }
        md.push('\n');
        md.push_str(&notes.legend());
    }

    md.push_str(&udp::markdown(results));

    if !charts.is_empty() {
        md.push_str("## Charts\n\n");
        for (title, file) in charts {
            let _ = writeln!(md, "### {title}\n\n![{title}]({file})\n");
        }
    }

    let failures: Vec<&Cell> = results.cells.iter().filter(|c| !c.ok).collect();
    if !failures.is_empty() {
        md.push_str("## Failed cells\n\n");
        for cell in failures {
            let _ = writeln!(
                md,
                "- {} (repeat {}): {}",
                cell.spec.describe(),
                cell.spec.repeat + 1,
                cell.failure.as_deref().unwrap_or("unknown")
            );
        }
        md.push('\n');
    }

    md.push_str("## Environment\n\n");
    let _ = writeln!(
        md,
        "- host `{}`, kernel {}, CPU {} ({} online)",
        env.hostname, env.kernel, env.cpu_model, env.cpus_online
    );
    let _ = writeln!(md, "- {}; {}", env.rustc, env.crates.join(", "));
    let _ = writeln!(md, "- commit {}", env.git_commit.as_deref().unwrap_or("unknown"));
    let _ = writeln!(md, "- started {}\n", env.started_at);
    md.push_str("Reproduce (from the repository root, at that commit):\n\n");
    let _ = writeln!(md, "```sh\n{}\n```\n", env.command);
    md.push_str(&marks::section(results));
    let opening_summary = headline::section(results, &md[opening..]);
    md.insert_str(opening, &opening_summary);
    md
}

/// One line per model of the median of `figure` against `x`, over the
/// groups `keep` selects, with the min–max range over repeats; a point is
/// hollow when its cells carry a flag that puts `shown` in doubt.
fn figure_lines(
    models: &[ModelInfo],
    groups: &Groups<'_>,
    keep: impl Fn(&LoadKey) -> bool,
    x: impl Fn(&LoadKey, &[&Cell]) -> Option<f64>,
    figure: impl Fn(&Cell) -> Option<f64>,
    shown: Figure,
) -> Vec<Line> {
    let mut lines = Vec::new();
    for (i, model) in models.iter().enumerate() {
        let points: Vec<Point> = groups
            .iter()
            .filter(|(k, _)| k.model.rank() == i && keep(k))
            .filter_map(|(k, cells)| {
                let s = stat(cells, &figure)?;
                let range = (s.n > 1).then_some((s.min, s.max));
                Some(Point { x: x(k, cells)?, y: s.median, range, hollow: marks::doubtful(cells, shown) })
            })
            .collect();
        if !points.is_empty() {
            lines.push(Line {
                name: model.name.to_string(),
                colour: colour(model),
                points,
                dashed: false,
                markers: true,
            });
        }
    }
    lines
}

/// How a chart of medians over repeats reads, for its subtitle.
fn repeats_words(repeats: u32) -> String {
    match repeats {
        1 => "one run per point".into(),
        n => format!("median of {n} repeats, bars: min–max"),
    }
}

/// The legend's note on hollow points, when a chart has any.
fn hollow_notes(any: bool, what: &str) -> Vec<String> {
    if any { vec![format!("hollow {what}: a flagged figure"), "(marks under its table)".into()] } else { Vec::new() }
}

fn colour(info: &ModelInfo) -> RGBColor {
    let (r, g, b) = info.rgb();
    RGBColor(r, g, b)
}

/// `µs` with two decimals at most and no trailing zeros: an axis label.
fn axis_decimal(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Draws every chart the results allow; returns (title, file name) pairs.
pub fn draw_charts(results: &Results, dir: &Path) -> io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let groups = groups(results);
    let models = &results.settings.models;
    let plot_err = |e: String| io::Error::other(format!("cannot draw chart: {e}"));
    let transports = scenario_transports(&groups);
    // File names and titles say the transport only when the run has several.
    let suffix = |t: Transport| if transports.len() > 1 { format!("-{t}") } else { String::new() };
    let over = |t: Transport| if transports.len() > 1 { format!(", {}", transport_words(t)) } else { String::new() };
    // The throughput scenario runs its own number of repeats.
    let repeats = repeats_words(results.settings.repeat);
    let throughput_repeats = repeats_words(results.settings.throughput_repeat);

    for &transport in &transports {
        // Throughput and server CPU per message vs connections, one pair per size.
        let sizes: std::collections::BTreeSet<u32> = groups
            .keys()
            .filter(|k| k.scenario == Scenario::Throughput && k.transport == transport)
            .map(|k| k.size)
            .collect();
        for size in sizes {
            let keep = |k: &LoadKey| k.scenario == Scenario::Throughput && k.transport == transport && k.size == size;
            let connections = |k: &LoadKey, _: &[&Cell]| Some(f64::from(k.connections));
            let rate = |c: &Cell| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec);
            let lines = figure_lines(models, &groups, keep, connections, rate, Figure::Rate);
            if lines.is_empty() {
                continue;
            }
            let file = format!("throughput-{size}B{}.svg", suffix(transport));
            let frame = Frame {
                title: format!("Throughput vs connections, {size} B messages (closed loop){}", over(transport)),
                subtitle: throughput_repeats.clone(),
                x_desc: "connections".into(),
                y_desc: "messages / s".into(),
                notes: hollow_notes(lines.iter().any(|l| l.points.iter().any(|p| p.hollow)), "point"),
            };
            charts::lines(&dir.join(&file), &frame, &lines, XAxis::LogAtPoints, YAxis::Linear(fmt_count))
                .map_err(plot_err)?;
            out.push((format!("Throughput vs connections, {size} B{}", over(transport)), file));

            let lines = figure_lines(models, &groups, keep, connections, |c| c.server_cpu_us_per_msg, Figure::Cpu);
            if !lines.is_empty() {
                let file = format!("cpu-per-message-{size}B{}.svg", suffix(transport));
                let frame = Frame {
                    title: format!("Server CPU per message vs connections, {size} B (closed loop){}", over(transport)),
                    subtitle: format!("{throughput_repeats}; user + system time of the server's process tree"),
                    x_desc: "connections".into(),
                    y_desc: "server CPU µs per message".into(),
                    notes: hollow_notes(lines.iter().any(|l| l.points.iter().any(|p| p.hollow)), "point"),
                };
                charts::lines(&dir.join(&file), &frame, &lines, XAxis::LogAtPoints, YAxis::Linear(axis_decimal))
                    .map_err(plot_err)?;
                out.push((format!("Server CPU per message vs connections, {size} B{}", over(transport)), file));
            }
        }

        // p99 against offered rate: the latency ladder.
        let file = format!("latency-ladder{}.svg", suffix(transport));
        if ladder::chart(results, transport, &over(transport), &dir.join(&file)).map_err(plot_err)? {
            out.push((format!("p99 latency against offered load{}", over(transport)), file));
        }

        // Latency percentile spectrum of the open-loop scenario at its common load.
        if let Some((title, file)) = spectrum(results, transport, dir, &suffix(transport), &over(transport))? {
            out.push((title, file));
        }

        // Scaling: msg/s against server CPUs.
        let scaling = figure_lines(
            models,
            &groups,
            |k| k.scenario == Scenario::Scaling && k.transport == transport,
            |_, cells| cells[0].spec.load.server_cpus.map(f64::from),
            |c| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec),
            Figure::Rate,
        );
        if !scaling.is_empty() {
            let file = format!("scaling{}.svg", suffix(transport));
            let frame = Frame {
                title: format!("Throughput vs server CPUs, 100 connections per CPU, 64 B{}", over(transport)),
                subtitle: repeats.clone(),
                x_desc: "server CPUs".into(),
                y_desc: "messages / s".into(),
                notes: hollow_notes(scaling.iter().any(|l| l.points.iter().any(|p| p.hollow)), "point"),
            };
            charts::lines(&dir.join(&file), &frame, &scaling, XAxis::LogAtPoints, YAxis::Linear(fmt_count))
                .map_err(plot_err)?;
            out.push((format!("Scaling with server CPUs{}", over(transport)), file));
        }

        // Memory per idle connection: a row per model and count held, linear.
        let mut bars = Vec::new();
        for (i, model) in models.iter().enumerate() {
            for (k, cells) in groups
                .iter()
                .filter(|(k, _)| k.scenario == Scenario::Capacity && k.transport == transport && k.model.rank() == i)
            {
                let Some(s) = stat(cells, |c| c.capacity.as_ref().map(|c| c.pss_per_connection_kib)) else {
                    continue;
                };
                let mut notes = Notes::default();
                bars.push(Bar {
                    label: format!("{}, {}", model.name, fmt_count(f64::from(k.connections))),
                    colour: colour(model),
                    value: s.median,
                    range: (s.n > 1 && s.min != s.max).then_some((s.min, s.max)),
                    hollow: marks::doubtful(cells, Figure::Held),
                    text: notes.figure(kib(s.median).replace('\u{a0}', " "), cells, &[Figure::Held]),
                });
            }
        }
        if !bars.is_empty() {
            let file = format!("memory-per-connection{}.svg", suffix(transport));
            let frame = Frame {
                title: format!("Server memory (PSS) per idle connection{}", over(transport)),
                subtitle: format!(
                    "a row per model and idle connections held; linear scale; {}",
                    repeats.replace("bars", "whiskers")
                ),
                notes: hollow_notes(bars.iter().any(|b| b.hollow), "bar"),
                ..Frame::default()
            };
            charts::bars(&dir.join(&file), &frame, &[("KiB per connection (PSS)".into(), bars)]).map_err(plot_err)?;
            out.push((format!("Server memory per idle connection (PSS){}", over(transport)), file));
        }

        // Churn: connections per second and server CPU per connection.
        let mut accepts = Vec::new();
        let mut cpu = Vec::new();
        let mut clients = None;
        for (i, model) in models.iter().enumerate() {
            let churn = |k: &&LoadKey| k.scenario == Scenario::Churn && k.transport == transport && k.model.rank() == i;
            for (k, cells) in groups.iter().filter(|(k, _)| churn(k)) {
                clients = Some(k.connections);
                let mut notes = Notes::default();
                let mut bar = |figure: &dyn Fn(&Cell) -> Option<f64>, shown: Figure, text: fn(f64) -> String| {
                    let s = stat(cells, figure)?;
                    Some(Bar {
                        label: model.name.to_string(),
                        colour: colour(model),
                        value: s.median,
                        range: (s.n > 1 && s.min != s.max).then_some((s.min, s.max)),
                        hollow: marks::doubtful(cells, shown),
                        text: notes.figure(text(s.median), cells, &[shown]),
                    })
                };
                let rate = |c: &Cell| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec);
                accepts.extend(bar(&rate, Figure::Rate, fmt_count));
                cpu.extend(bar(&|c: &Cell| c.server_cpu_us_per_msg, Figure::Cpu, |v| grouped(v, 1)));
            }
        }
        if !accepts.is_empty() {
            let file = format!("churn{}.svg", suffix(transport));
            let clients = clients.map_or(String::new(), |n| format!(", {} clients", fmt_count(f64::from(n))));
            let frame = Frame {
                title: format!("Churn: a new connection per message{clients}{}", over(transport)),
                subtitle: repeats.replace("bars", "whiskers"),
                notes: hollow_notes(accepts.iter().chain(&cpu).any(|b| b.hollow), "bar"),
                ..Frame::default()
            };
            let panels =
                [("new connections / s".to_owned(), accepts), ("server CPU µs per connection".to_owned(), cpu)];
            charts::bars(&dir.join(&file), &frame, &panels).map_err(plot_err)?;
            out.push((format!("Churn: connections per second and server CPU per connection{}", over(transport)), file));
        }
    }

    // unix ÷ tcp per model and connection count.
    let pairs = transport_pairs(results);
    let ratios: Vec<(String, RGBColor, u32, Stat)> = pairs
        .iter()
        .filter_map(|p| {
            let r = p.ratio(|c| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec))?;
            let (red, green, blue) = p.colour;
            Some((p.model.clone(), RGBColor(red, green, blue), p.connections, r))
        })
        .collect();
    if !ratios.is_empty() {
        let file = "transport-ratio.svg".to_owned();
        ratio_chart(&dir.join(&file), &ratios).map_err(plot_err)?;
        out.push(("Unix socket ÷ TCP loopback, msg/s".into(), file));
    }
    out.extend(udp::charts(results, dir).map_err(plot_err)?);
    Ok(out)
}

/// The latency percentile spectrum over `transport` at the common load
/// (the highest offered rate every model sustained, or the lowest step):
/// each model's repeats at that rate merged into one histogram; a model
/// whose cells there are flagged is drawn dashed. None when no latency cell
/// has a histogram.
fn spectrum(
    results: &Results,
    transport: Transport,
    dir: &Path,
    suffix: &str,
    over: &str,
) -> io::Result<Option<(String, String)>> {
    let Some((rate, all_sustained)) = headline::common_rate(results, transport) else { return Ok(None) };
    let cells: Vec<&Cell> = headline::latency_cells(results, transport)
        .into_iter()
        .filter(|c| c.spec.load.offered().is_some_and(|r| r.to_bits() == rate.to_bits()))
        .collect();
    let mut lines = Vec::new();
    let mut merged_counts = Vec::new();
    for model in &results.settings.models {
        let own: Vec<&Cell> = cells.iter().copied().filter(|c| c.spec.load.model.name() == model.name).collect();
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
        let dashed = marks::doubtful(&own, Figure::Latency) || marks::doubtful(&own, Figure::Rate);
        let mut notes = Notes::default();
        let name = notes.figure(model.name.to_string(), &own, &[Figure::Latency, Figure::Rate]);
        lines.push(Line { name, colour: colour(model), points, dashed, markers: false });
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
        notes: if lines.iter().any(|l| l.dashed) {
            vec!["dashed: a flagged model".into(), "at this rate (marks under".into(), "the latency table)".into()]
        } else {
            Vec::new()
        },
    };
    charts::lines(&dir.join(&file), &frame, &lines, XAxis::Nines, YAxis::LogMicros)
        .map_err(|e| io::Error::other(format!("cannot draw chart: {e}")))?;
    Ok(Some((format!("Latency percentile spectrum at {} msg/s, open loop{over}", fmt_count(rate)), file)))
}

/// unix ÷ tcp msg/s: per model, one bar per connection count, the min–max
/// range over repeats as a whisker, and the line of 1 (no difference).
fn ratio_chart(path: &Path, ratios: &[(String, RGBColor, u32, Stat)]) -> Result<(), String> {
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut models: Vec<&str> = Vec::new();
    for (model, ..) in ratios {
        if !models.contains(&model.as_str()) {
            models.push(model);
        }
    }
    let counts: Vec<u32> = ratios.iter().map(|r| r.2).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let y_max = ratios.iter().map(|r| r.3.max).fold(1.0f64, f64::max) * 1.15;
    let area = root
        .titled("Unix domain socket ÷ TCP loopback, msg/s (closed loop, 64 B)", ("sans-serif", 20))
        .map_err(|e| e.to_string())?;
    let counts_words: Vec<String> = counts.iter().map(|n| fmt_count(f64::from(*n))).collect();
    let subtitle = format!(
        "per model, a bar per connection count ({}, lighter to darker, the count above it); whiskers: min–max of the \
         per-repeat ratios",
        counts_words.join(", ")
    );
    let area = area
        .titled(&subtitle, TextStyle::from(("sans-serif", 13).into_font()).color(&RGBColor(90, 90, 90)))
        .map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5..models.len() as f64 - 0.5, 0.0..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(models.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                models.get(i as usize).map(|m| m.to_string()).unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("unix msg/s ÷ tcp msg/s")
        .y_label_formatter(&|y| format!("{y:.1}×"))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new([(-0.5, 1.0), (models.len() as f64 - 0.5, 1.0)], BLACK.stroke_width(1)))
        .map_err(|e| e.to_string())?;
    let width = 0.8 / counts.len().max(1) as f64;
    for (j, n) in counts.iter().enumerate() {
        // Lighter bars for fewer connections, the model's colour throughout.
        let shade = if counts.len() > 1 { 0.45 + 0.55 * j as f64 / (counts.len() - 1) as f64 } else { 1.0 };
        for (model, color, _, stat) in ratios.iter().filter(|r| r.2 == *n) {
            let Some(i) = models.iter().position(|m| m == model) else { continue };
            let x0 = i as f64 - 0.4 + j as f64 * width;
            let x1 = x0 + width * 0.9;
            chart
                .draw_series([Rectangle::new([(x0, 0.0), (x1, stat.median)], color.mix(shade).filled())])
                .map_err(|e| e.to_string())?;
            let mid = (x0 + x1) / 2.0;
            chart
                .draw_series(LineSeries::new([(mid, stat.min), (mid, stat.max)], BLACK.stroke_width(1)))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series([Text::new(
                    fmt_count(f64::from(*n)),
                    (x0, stat.median + y_max * 0.02),
                    ("sans-serif", 11),
                )])
                .map_err(|e| e.to_string())?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flagged_points_and_bars_are_drawn_hollow_and_values_printed() {
        let mut results = crate::render::marks::tests::fixture(); // flags cleared
        let flag = |kind| crate::flags::Flag { kind, figure: 0.97, threshold: 0.9, detail: "test".into() };
        for cell in &mut results.cells {
            let tokio = cell.spec.load.model.name() == "tokio";
            if tokio && cell.spec.load.scenario == Scenario::Throughput && cell.spec.load.connections == 100 {
                cell.flags.push(flag(crate::flags::FlagKind::ClientBound));
            }
            if tokio && cell.spec.load.scenario == Scenario::Capacity {
                cell.flags.push(flag(crate::flags::FlagKind::ConnectionsShort));
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let hollow_circles = |svg: &str| {
            let tags = svg.split("<circle").skip(1).map(|rest| rest.split('>').next().unwrap_or_default());
            tags.filter(|tag| tag.contains("fill=\"none\"")).count()
        };
        draw_charts(&results, dir.path()).unwrap();
        let read = |file: &str| std::fs::read_to_string(dir.path().join(file)).unwrap();
        // tokio client-bound at 100 connections, its capacity cells short.
        assert_eq!(hollow_circles(&read("throughput-64B.svg")), 1);
        assert!(read("throughput-64B.svg").contains("hollow point: a flagged figure"));
        assert_eq!(hollow_circles(&read("cpu-per-message-64B.svg")), 0, "client-bound is about the rate");
        let memory = read("memory-per-connection.svg");
        assert!(memory.contains("5.5 KiB §") && memory.contains("14.8 KiB"), "values printed, marks too");
        assert!(memory.contains("hollow bar: a flagged figure"));
        // Without flags: every point filled, no note.
        for cell in &mut results.cells {
            cell.flags.clear();
        }
        draw_charts(&results, dir.path()).unwrap();
        assert_eq!(hollow_circles(&read("throughput-64B.svg")), 0);
        assert!(!read("memory-per-connection.svg").contains("hollow"));
    }

    #[test]
    fn a_cell_is_described_with_grouped_numbers() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results.json");
        let results = Results::load(&path).unwrap();
        let of =
            |scenario: Scenario| results.cells.iter().find(|c| c.spec.load.scenario == scenario).unwrap().spec.clone();
        let mut spec = of(Scenario::Throughput);
        spec.load.connections = 1000;
        assert_eq!(spec.describe(), "throughput thread tcp, 1,000 connections, 64 B");
        let mut spec = of(Scenario::Capacity);
        spec.load.connections = 10_000;
        assert_eq!(spec.describe(), "capacity thread tcp, 10,000 idle connections");
        assert_eq!(of(Scenario::Latency).describe(), "latency thread tcp, 100 connections, 64 B, 2,000 msg/s offered");
    }

    #[test]
    fn the_spectrum_draws_the_ladders_common_rate_and_says_so() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results.json");
        let results = Results::load(&path).unwrap();
        let common = crate::ladder::common_rate(&results, Transport::Tcp).expect("the fixture has a ladder");
        let dir = tempfile::tempdir().unwrap();
        let charts = draw_charts(&results, dir.path()).unwrap();
        let (title, file) = charts.iter().find(|(_, f)| f.starts_with("latency-spectrum")).unwrap();
        let svg = std::fs::read_to_string(dir.path().join(file)).unwrap();
        let rate = fmt_count(common);
        assert!(title.contains(&rate), "{title}");
        assert!(svg.contains(&format!("at {rate} msg/s offered")), "the chart says its rate");
    }
}
