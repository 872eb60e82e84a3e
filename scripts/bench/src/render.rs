//! results.json → README.md (one table per scenario) and SVG charts.
//! Pure functions of the results: `bench report` regenerates them at will,
//! and the snapshot test pins the output.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use echo_common::{ModelInfo, Transport};
use hdrhistogram::Histogram;
use loadgen::report::{LatencySummary, decode, fmt_count};
use plotters::prelude::*;

use crate::matrix::{Scenario, TRANSPORT_CONNECTIONS};
use crate::results::{Cell, Results};

/// Repeats whose min–max spread exceeds this share of the median are flagged.
pub const SPREAD_FLAG: f64 = 0.20;

/// Writes README.md and the charts into `dir`.
pub fn write_report(results: &Results, dir: &Path) -> io::Result<()> {
    let charts = draw_charts(results, dir)?;
    std::fs::write(dir.join("README.md"), markdown(results, &charts))
}

/// Median and range of one figure over a cell's repeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Stat {
    pub fn of(mut values: Vec<f64>) -> Option<Stat> {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
        Some(Stat { median, min: values[0], max: values[n - 1], n })
    }

    pub fn noisy(&self) -> bool {
        self.n > 1 && self.median > 0.0 && (self.max - self.min) / self.median > SPREAD_FLAG
    }
}

/// What identifies a group of repeats: the scenario, the transport, the
/// connections, the message size and the model (its index in the run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    scenario: Scenario,
    transport: Transport,
    connections: u32,
    size: u32,
    model: usize,
}

/// The ok cells of one key, all repeats.
type Groups<'a> = BTreeMap<Key, Vec<&'a Cell>>;

fn groups(results: &Results) -> Groups<'_> {
    let mut groups: Groups<'_> = BTreeMap::new();
    for cell in results.cells.iter().filter(|c| c.ok) {
        let spec = &cell.spec;
        let model = results.settings.models.iter().position(|m| m.name == spec.model.name()).unwrap_or(usize::MAX);
        let key = Key {
            scenario: spec.scenario,
            transport: spec.transport,
            connections: spec.connections,
            size: spec.size,
            model,
        };
        groups.entry(key).or_default().push(cell);
    }
    groups
}

/// The transports the per-transport scenarios ran over (the transport
/// scenario, which always has both, has its own table and chart).
fn scenario_transports(groups: &Groups<'_>) -> std::collections::BTreeSet<Transport> {
    groups.keys().filter(|k| k.scenario != Scenario::Transport).map(|k| k.transport).collect()
}

/// How a section heading names a transport.
fn transport_words(transport: Transport) -> &'static str {
    match transport {
        Transport::Tcp => "TCP loopback",
        Transport::Unix => "Unix domain socket",
        Transport::Udp => "UDP loopback",
    }
}

fn stat(cells: &[&Cell], figure: impl Fn(&Cell) -> Option<f64>) -> Option<Stat> {
    Stat::of(cells.iter().filter_map(|c| figure(c)).collect())
}

/// `12,345 (11,002–13,001)`, with ⚠ when the spread exceeds 20 %.
fn show(stat: Option<Stat>, fmt: impl Fn(f64) -> String) -> String {
    match stat {
        None => "–".into(),
        Some(s) if s.n == 1 || fmt(s.min) == fmt(s.max) => fmt(s.median),
        Some(s) => {
            let flag = if s.noisy() { " ⚠" } else { "" };
            format!("{} ({}–{}){flag}", fmt(s.median), fmt(s.min), fmt(s.max))
        }
    }
}

fn us(v: f64) -> String {
    loadgen::report::fmt_us(v).replace(' ', "\u{a0}")
}

fn count(v: f64) -> String {
    fmt_count(v)
}

fn ratio(v: f64) -> String {
    format!("{v:.2}×")
}

fn kib(v: f64) -> String {
    if v.abs() >= 1024.0 { format!("{:.1}\u{a0}MiB", v / 1024.0) } else { format!("{v:.1}\u{a0}KiB") }
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
    show(stat(cells, |c| c.server_cpu_us_per_msg), |v| format!("{v:.digits$}"))
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
                    .filter(|c| c.ok && c.spec.scenario == Scenario::Transport && c.spec.transport == transport)
                    .filter(|c| c.spec.connections == connections && c.spec.model.name() == info.name)
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
/// scenario's table below (TCP): memory per idle connection at 1,000,
/// msg/s and server CPU per message at 100 connections, 64 B, and new
/// connections per second with their server CPU. Empty if the run has none.
fn summary(results: &Results, groups: &Groups<'_>) -> String {
    let find = |scenario: Scenario, connections: Option<u32>, size: Option<u32>, model: usize| {
        groups.iter().find(|(k, _)| {
            k.scenario == scenario
                && k.transport == Transport::Tcp
                && k.model == model
                && connections.is_none_or(|c| k.connections == c)
                && size.is_none_or(|s| k.size == s)
        })
    };
    let mut rows = String::new();
    for (i, model) in results.settings.models.iter().enumerate() {
        let load = find(Scenario::Throughput, Some(100), Some(crate::matrix::SMALL), i);
        // 1,000 idle connections, or the model's own cap if lower.
        let held = u32::try_from(model.default_max_connections).map_or(1000, |cap| cap.min(1000));
        let idle = find(Scenario::Capacity, Some(held), None, i);
        let churn = find(Scenario::Churn, None, None, i);
        if load.is_none() && idle.is_none() && churn.is_none() {
            continue;
        }
        let memory = idle.map_or("–".into(), |(_, c)| {
            show(stat(c, |c| c.capacity.as_ref().map(|c| c.pss_per_connection_kib)), kib)
        });
        let _ = writeln!(
            rows,
            "| {} | {} | {} | {} | {} | {} |",
            model.name,
            memory,
            load.map_or("–".into(), |(_, c)| throughput(c)),
            load.map_or("–".into(), |(_, c)| server_cpu(c, 2)),
            churn.map_or("–".into(), |(_, c)| throughput(c)),
            churn.map_or("–".into(), |(_, c)| server_cpu(c, 1)),
        );
    }
    if rows.is_empty() {
        return rows;
    }
    let mut md = String::from("## Summary by model (TCP loopback)\n\n");
    md.push_str(
        "From the tables below: server memory (PSS) per idle connection with 1,000 held, msg/s and server CPU \
         per message at 100 connections with 64 B messages (closed loop), new connections per second and the \
         server CPU each costs (churn).\n\n",
    );
    md.push_str("| model | PSS per idle connection | msg/s, 100 connections | server CPU µs/msg | new connections/s | server CPU µs/connection |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|\n");
    md.push_str(&rows);
    md.push('\n');
    md
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
    let _ = writeln!(
        md,
        "{} model(s) × {} scenario(s), {} repeat(s) per cell, interleaved across models; \
         closed- and open-loop cells measure {} s after a {} s warm-up ({}). Figures are the median over repeats, \
         with the min–max range in parentheses; ⚠ marks a spread above {:.0} % of the median. \
         Server on CPU(s) {:?}, load generator on CPU(s) {:?}.\n",
        s.models.len(),
        s.scenarios.len(),
        s.repeat,
        s.duration_secs,
        s.warmup_secs,
        {
            let (window, warmup) = crate::matrix::TRANSPORT_WINDOW;
            format!(
                "the transport scenario: at most {} s after {} s",
                window.as_secs_f64().min(s.duration_secs),
                warmup.as_secs_f64().min(s.warmup_secs)
            )
        },
        SPREAD_FLAG * 100.0,
        s.server_cpus,
        s.client_cpus
    );

    let name = |i: usize| s.models.get(i).map_or("?", |m: &ModelInfo| m.name.as_ref());
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
                md.push_str("| connections | model | msg/s | p50 | p99 | p99.9 | server CPU µs/msg | server PSS peak | errors | starved |\n");
                md.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
                for (k, cells) in cells_of(Scenario::Throughput).filter(|(k, _)| k.size == size) {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        k.connections,
                        name(k.model),
                        throughput(cells),
                        latency(cells, |l| l.p50),
                        latency(cells, |l| l.p99),
                        latency(cells, |l| l.p99_9),
                        server_cpu(cells, 2),
                        show(stat(cells, |c| c.server.map(|s| s.pss_peak_kib as f64)), kib),
                        errors(cells),
                        show(load_stat(cells, |r| r.per_connection.starved as f64), count),
                    );
                }
                md.push('\n');
            }
        }

        if cells_of(Scenario::Latency).next().is_some() {
            let rate = s.latency_rates.get(&transport).map_or("?".into(), |r| fmt_count(*r));
            let _ = writeln!(
                md,
                "## Latency under a fixed load, open loop, {over} ({rate} msg/s, 100 connections, 64 B)\n"
            );
            md.push_str(
                "The rate is half the slowest model's closed-loop rate at 100 connections. Latency counts from each \
                 message's intended send time (coordinated omission corrected, as wrk2 does); `raw p99` counts from \
                 the actual send.\n\n",
            );
            md.push_str("| model | achieved msg/s | p50 | p90 | p99 | p99.9 | p99.99 | max | raw p99 | server CPU µs/msg | errors |\n");
            md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
            for (k, cells) in cells_of(Scenario::Latency) {
                let raw_p99 = stat(cells, |c| c.loadgen.as_ref().and_then(|r| r.latency_raw_us).map(|l| l.p99 as f64));
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    name(k.model),
                    throughput(cells),
                    latency(cells, |l| l.p50),
                    latency(cells, |l| l.p90),
                    latency(cells, |l| l.p99),
                    latency(cells, |l| l.p99_9),
                    latency(cells, |l| l.p99_99),
                    latency(cells, |l| l.max),
                    show(raw_p99, us),
                    server_cpu(cells, 2),
                    errors(cells),
                );
            }
            md.push('\n');
        }

        if cells_of(Scenario::Churn).next().is_some() {
            let _ = writeln!(md, "## Churn: a new connection per message, 10 clients, {over}\n");
            md.push_str(
                "Each message opens a connection, echoes once and closes it (the client half-closes first). \
                 Accepting is what is measured here; a model that starts a process per connection pays a fork/exec \
                 for each.\n\n",
            );
            // The textbook's zero: a declared baseline model's CPU per connection.
            let baseline = s.models.iter().position(|m| m.baseline).and_then(|i| {
                let (_, cells) = cells_of(Scenario::Churn).find(|(k, _)| k.model == i)?;
                Some((s.models[i].name.to_string(), stat(cells, |c| c.server_cpu_us_per_msg)?.median))
            });
            if let Some((zero, us_per_conn)) = &baseline {
                let _ = writeln!(
                    md,
                    "As in Stevens' table of server designs (UNP, chapter 30), `{zero}` is the zero: serving one \
                     connection at a time, it costs {us_per_conn:.1} µs of server CPU per connection; `above {zero}` \
                     is what each other design spends on top of that for its concurrency.\n"
                );
            }
            let above = baseline.as_ref().map(|(zero, _)| format!(" above {zero} |")).unwrap_or_default();
            let _ = writeln!(
                md,
                "| model | connections/s | connect p50 | connect p99 | echo p50 | echo p99 | server CPU µs/connection |{above} peak processes | errors |"
            );
            let _ = writeln!(
                md,
                "|---|---:|---:|---:|---:|---:|---:|{}---:|---:|",
                if baseline.is_some() { "---:|" } else { "" }
            );
            for (k, cells) in cells_of(Scenario::Churn) {
                let connect = |f: fn(&LatencySummary) -> u64| {
                    stat(cells, move |c| c.loadgen.as_ref().and_then(|r| r.connect_us).map(|l| f(&l) as f64))
                };
                let over_zero = match &baseline {
                    Some((_, zero)) => {
                        let above = stat(cells, |c| c.server_cpu_us_per_msg).map(|own| own.median - zero);
                        format!(" {} |", above.map_or("–".into(), |v| format!("{v:+.1}")))
                    }
                    None => String::new(),
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} |{over_zero} {} | {} |",
                    name(k.model),
                    throughput(cells),
                    show(connect(|l| l.p50), us),
                    show(connect(|l| l.p99), us),
                    latency(cells, |l| l.p50),
                    latency(cells, |l| l.p99),
                    server_cpu(cells, 1),
                    show(stat(cells, |c| c.server.map(|s| s.processes_peak as f64)), count),
                    errors(cells),
                );
            }
            md.push('\n');
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
                 smaps_rollup, so pages shared between a model's child processes are counted once). Then every \
                 connection sends one echo; `not served` did not get it back within 5 s.{}\n",
                if capped.is_empty() { String::new() } else { format!(" {}.", capped.join("; ")) }
            );
            md.push_str("| model | connections | established | PSS / connection | RSS / connection | server PSS held | threads | processes | not served |\n");
            md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
            for (k, cells) in cells_of(Scenario::Capacity) {
                let cap = |f: fn(&crate::capacity::Capacity) -> f64| stat(cells, move |c| c.capacity.as_ref().map(f));
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    name(k.model),
                    k.connections,
                    show(cap(|c| c.established as f64), count),
                    show(cap(|c| c.pss_per_connection_kib), kib),
                    show(cap(|c| c.rss_per_connection_kib), kib),
                    show(cap(|c| c.pss_held_kib as f64), kib),
                    show(cap(|c| c.threads as f64), count),
                    show(cap(|c| c.processes as f64), count),
                    show(cap(|c| c.not_served as f64), count),
                );
            }
            md.push('\n');
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
            for (k, cells) in cells_of(Scenario::Scaling) {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    cells[0].spec.server_cpus.unwrap_or(0),
                    name(k.model),
                    k.connections,
                    throughput(cells),
                    server_cpu(cells, 2),
                    latency(cells, |l| l.p99),
                    errors(cells),
                );
            }
            md.push('\n');
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
        for pair in &pairs {
            let rate = |c: &Cell| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec);
            let cpu = |c: &Cell| c.server_cpu_us_per_msg;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                pair.connections,
                pair.model,
                show(stat(&pair.tcp, rate), count),
                show(stat(&pair.unix, rate), count),
                show(pair.ratio(rate), ratio),
                show(stat(&pair.tcp, cpu), |v| format!("{v:.2}")),
                show(stat(&pair.unix, cpu), |v| format!("{v:.2}")),
                show(pair.ratio(cpu), ratio),
            );
        }
        md.push('\n');
    }

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
                cell.spec.label(),
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
    let _ = writeln!(md, "```sh\n{}\n```", env.command);
    md
}

/// A line of a chart: its name, its colour, its points.
type Series = (String, RGBColor, Vec<(f64, f64)>);

/// One line per model of median msg/s against `x`, over the groups `keep` selects.
fn rate_series(
    models: &[ModelInfo],
    groups: &Groups<'_>,
    keep: impl Fn(&Key) -> bool,
    x: impl Fn(&Key, &[&Cell]) -> Option<f64>,
) -> Vec<Series> {
    let mut series = Vec::new();
    for (i, model) in models.iter().enumerate() {
        let points: Vec<(f64, f64)> = groups
            .iter()
            .filter(|(k, _)| k.model == i && keep(k))
            .filter_map(|(k, cells)| {
                let s = stat(cells, |c| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec))?;
                Some((x(k, cells)?, s.median))
            })
            .collect();
        if !points.is_empty() {
            series.push((model.name.to_string(), colour(model), points));
        }
    }
    series
}

fn colour(info: &ModelInfo) -> RGBColor {
    let (r, g, b) = info.rgb();
    RGBColor(r, g, b)
}

/// Draws every chart the results allow; returns (title, file name) pairs.
pub fn draw_charts(results: &Results, dir: &Path) -> io::Result<Vec<(String, String)>> {
    let mut charts = Vec::new();
    let groups = groups(results);
    let models = &results.settings.models;
    let plot_err = |e: String| io::Error::other(format!("cannot draw chart: {e}"));
    let transports = scenario_transports(&groups);
    // File names and titles say the transport only when the run has several.
    let suffix = |t: Transport| if transports.len() > 1 { format!("-{t}") } else { String::new() };
    let over = |t: Transport| if transports.len() > 1 { format!(", {}", transport_words(t)) } else { String::new() };

    for &transport in &transports {
        // Throughput vs connections, one chart per size.
        let sizes: std::collections::BTreeSet<u32> = groups
            .keys()
            .filter(|k| k.scenario == Scenario::Throughput && k.transport == transport)
            .map(|k| k.size)
            .collect();
        for size in sizes {
            let series = rate_series(
                models,
                &groups,
                |k| k.scenario == Scenario::Throughput && k.transport == transport && k.size == size,
                |k, _| Some(f64::from(k.connections)),
            );
            if series.is_empty() {
                continue;
            }
            let file = format!("throughput-{size}B{}.svg", suffix(transport));
            line_chart(
                &dir.join(&file),
                &format!("Throughput vs connections, {size} B messages (closed loop){}", over(transport)),
                "connections",
                "messages / s",
                &series,
                false,
            )
            .map_err(plot_err)?;
            charts.push((format!("Throughput vs connections, {size} B{}", over(transport)), file));
        }

        // Latency percentile spectrum of the open-loop scenario, all repeats merged.
        let mut spectrum: Vec<Series> = Vec::new();
        for (i, model) in models.iter().enumerate() {
            let mut merged: Option<Histogram<u64>> = None;
            let latency_cells = groups
                .iter()
                .filter(|(k, _)| k.scenario == Scenario::Latency && k.transport == transport && k.model == i);
            for (_, cells) in latency_cells {
                for cell in cells {
                    let Some(hist) = cell.loadgen.as_ref().and_then(|r| decode(&r.histogram).ok()) else { continue };
                    match merged.as_mut() {
                        Some(m) => {
                            let _ = m.add(&hist);
                        }
                        None => merged = Some(hist),
                    }
                }
            }
            let Some(hist) = merged.filter(|h| !h.is_empty()) else { continue };
            // x: "nines" — 1 at 90 %, 2 at 99 %, 3 at 99.9 %, 4 at 99.99 %.
            let points = (0..=60)
                .map(|step| {
                    let nines = 1.0 + f64::from(step) * 0.05;
                    let quantile = 1.0 - 10f64.powf(-nines);
                    (nines, hist.value_at_quantile(quantile).max(1) as f64)
                })
                .collect();
            spectrum.push((model.name.to_string(), colour(model), points));
        }
        if !spectrum.is_empty() {
            let file = format!("latency-spectrum{}.svg", suffix(transport));
            line_chart(
                &dir.join(&file),
                &format!("Latency by percentile, open loop (CO-corrected){}", over(transport)),
                "percentile (90 % … 99.99 %)",
                "latency",
                &spectrum,
                true,
            )
            .map_err(plot_err)?;
            charts.push((format!("Latency percentile spectrum, open loop{}", over(transport)), file));
        }

        // Scaling: msg/s against server CPUs.
        let scaling = rate_series(
            models,
            &groups,
            |k| k.scenario == Scenario::Scaling && k.transport == transport,
            |_, cells| cells[0].spec.server_cpus.map(f64::from),
        );
        if !scaling.is_empty() {
            let file = format!("scaling{}.svg", suffix(transport));
            line_chart(
                &dir.join(&file),
                &format!("Throughput vs server CPUs, 100 connections per CPU, 64 B{}", over(transport)),
                "server CPUs",
                "messages / s",
                &scaling,
                false,
            )
            .map_err(plot_err)?;
            charts.push((format!("Scaling with server CPUs{}", over(transport)), file));
        }

        // Memory per idle connection.
        let mut bars: Vec<(usize, u32, f64)> = Vec::new();
        for (k, cells) in &groups {
            if k.scenario == Scenario::Capacity && k.transport == transport {
                if let Some(s) = stat(cells, |c| c.capacity.as_ref().map(|c| c.pss_per_connection_kib)) {
                    bars.push((k.model, k.connections, s.median));
                }
            }
        }
        if !bars.is_empty() {
            let file = format!("memory-per-connection{}.svg", suffix(transport));
            let names: Vec<String> = models.iter().map(|m| m.name.to_string()).collect();
            bar_chart(&dir.join(&file), &names, &bars).map_err(plot_err)?;
            charts.push((format!("Server memory per idle connection (PSS){}", over(transport)), file));
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
        charts.push(("Unix socket ÷ TCP loopback, msg/s".into(), file));
    }
    Ok(charts)
}

/// Colours of the bars of one connection count (the models' own colours
/// mark the lines).
const COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// One line per series. Throughput: log x, linear y. Spectrum: "nines" x, log y.
fn line_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    spectrum: bool,
) -> Result<(), String> {
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let xs = series.iter().flat_map(|(_, _, p)| p.iter().map(|q| q.0));
    let ys = series.iter().flat_map(|(_, _, p)| p.iter().map(|q| q.1));
    let (x_min, x_max) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    let y_max = ys.clone().fold(1.0f64, f64::max);
    let y_min = ys.fold(f64::INFINITY, f64::min).max(1.0);
    let mut builder = ChartBuilder::on(&root);
    builder.caption(title, ("sans-serif", 20)).margin(12).margin_right(40).x_label_area_size(40).y_label_area_size(80);
    if spectrum {
        let mut chart = builder
            .build_cartesian_2d(1.0..4.0f64, (y_min * 0.8..y_max * 1.25).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(4)
            .x_label_formatter(&|x| format!("{:.2} %", 100.0 * (1.0 - 10f64.powf(-x))))
            .y_label_formatter(&|y| loadgen::report::fmt_us(*y))
            .draw()
            .map_err(|e| e.to_string())?;
        draw_series(&mut chart, series)?;
    } else {
        let mut chart = builder
            .build_cartesian_2d((x_min.max(1.0) * 0.8..x_max.max(2.0) * 1.25).log_scale(), 0.0..y_max * 1.1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| fmt_count(*y))
            .draw()
            .map_err(|e| e.to_string())?;
        draw_series(&mut chart, series)?;
    }
    root.present().map_err(|e| e.to_string())
}

/// One line with points per series, and the legend naming them.
fn draw_series<'a, 'b: 'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>,
    series: &[Series],
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (name, color, points) in series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

/// Grouped bars: per model (by index into `models`), one bar per connection count; log y (KiB).
fn bar_chart(path: &Path, models: &[String], bars: &[(usize, u32, f64)]) -> Result<(), String> {
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let counts: Vec<u32> = bars.iter().map(|b| b.1).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let y_max = bars.iter().map(|b| b.2).fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Server memory (PSS) per idle connection", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5..models.len() as f64 - 0.5, (0.1..y_max * 2.0).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(models.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                models.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("KiB per connection")
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(|e| e.to_string())?;
    let width = 0.8 / counts.len().max(1) as f64;
    for (j, n) in counts.iter().enumerate() {
        let color = COLORS[j % COLORS.len()];
        let rects: Vec<Rectangle<(f64, f64)>> = bars
            .iter()
            .filter(|b| b.1 == *n)
            .map(|b| {
                let x0 = b.0 as f64 - 0.4 + j as f64 * width;
                Rectangle::new([(x0, 0.1), (x0 + width * 0.9, b.2.max(0.1))], color.filled())
            })
            .collect();
        chart
            .draw_series(rects)
            .map_err(|e| e.to_string())?
            .label(format!("{} connections", fmt_count(f64::from(*n))))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
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
    let mut chart = ChartBuilder::on(&root)
        .caption("Unix domain socket ÷ TCP loopback, msg/s (closed loop, 64 B)", ("sans-serif", 20))
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
                .draw_series([Text::new(format!("{}", n), (x0, stat.median + y_max * 0.02), ("sans-serif", 11))])
                .map_err(|e| e.to_string())?;
        }
    }
    root.present().map_err(|e| e.to_string())
}
