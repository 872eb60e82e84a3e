//! results.json → README.md (one table per scenario) and SVG charts.
//! Pure functions of the results: `bench report` regenerates them at will,
//! and the snapshot test pins the output.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use hdrhistogram::Histogram;
use loadgen::report::{LatencySummary, decode, fmt_count};
use plotters::prelude::*;

use crate::matrix::Scenario;
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

/// The ok cells of one (scenario, connections, size, model), all repeats.
type Groups<'a> = BTreeMap<(Scenario, u32, u32, usize), Vec<&'a Cell>>;

fn groups(results: &Results) -> Groups<'_> {
    let mut groups: Groups<'_> = BTreeMap::new();
    for cell in results.cells.iter().filter(|c| c.ok) {
        let model = results.settings.models.iter().position(|m| *m == cell.spec.model).unwrap_or(usize::MAX);
        groups.entry((cell.spec.scenario, cell.spec.connections, cell.spec.size, model)).or_default().push(cell);
    }
    groups
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
         closed- and open-loop cells measure {} s after a {} s warm-up. Figures are the median over repeats, \
         with the min–max range in parentheses; ⚠ marks a spread above {:.0} % of the median. \
         Server on CPU(s) {:?}, load generator on CPU(s) {:?}.\n",
        s.models.len(),
        s.scenarios.len(),
        s.repeat,
        s.duration_secs,
        s.warmup_secs,
        SPREAD_FLAG * 100.0,
        s.server_cpus,
        s.client_cpus
    );

    let cells_of = |scenario: Scenario| groups.iter().filter(move |(k, _)| k.0 == scenario);
    let name = |i: usize| s.models.get(i).map_or("?", String::as_str);

    if cells_of(Scenario::Throughput).next().is_some() {
        md.push_str("## Throughput and latency, closed loop\n\n");
        md.push_str(
            "Each connection sends a message and waits for its echo, again and again. `starved`: connections \
             that got no echo in the measured window. Server CPU is user + system time of the server's whole \
             process tree over the window, per completed message.\n\n",
        );
        let sizes: Vec<u32> = cells_of(Scenario::Throughput)
            .map(|(k, _)| k.2)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for size in sizes {
            let _ = writeln!(md, "### {size} B messages\n");
            md.push_str("| connections | model | msg/s | p50 | p99 | p99.9 | server CPU µs/msg | server PSS peak | errors | starved |\n");
            md.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
            for ((_, connections, _, model), cells) in cells_of(Scenario::Throughput).filter(|(k, _)| k.2 == size) {
                let _ = writeln!(
                    md,
                    "| {connections} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    name(*model),
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
        let rate = s.latency_rate.map_or("?".into(), fmt_count);
        let _ = writeln!(md, "## Latency under a fixed load, open loop ({rate} msg/s, 100 connections, 64 B)\n");
        md.push_str(
            "The rate is half the slowest model's closed-loop rate at 100 connections. Latency counts from each \
             message's intended send time (coordinated omission corrected, as wrk2 does); `raw p99` counts from \
             the actual send.\n\n",
        );
        md.push_str("| model | achieved msg/s | p50 | p90 | p99 | p99.9 | p99.99 | max | raw p99 | server CPU µs/msg | errors |\n");
        md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for ((_, _, _, model), cells) in cells_of(Scenario::Latency) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                name(*model),
                throughput(cells),
                latency(cells, |l| l.p50),
                latency(cells, |l| l.p90),
                latency(cells, |l| l.p99),
                latency(cells, |l| l.p99_9),
                latency(cells, |l| l.p99_99),
                latency(cells, |l| l.max),
                show(stat(cells, |c| c.loadgen.as_ref().and_then(|r| r.latency_raw_us).map(|l| l.p99 as f64)), us),
                server_cpu(cells, 2),
                errors(cells),
            );
        }
        md.push('\n');
    }

    if cells_of(Scenario::Churn).next().is_some() {
        md.push_str("## Churn: a new connection per message, 10 clients\n\n");
        md.push_str(
            "Each message opens a connection, echoes once and closes it (the client half-closes first). \
             Accepting is what is measured here; the `process` model pays a fork/exec per connection.\n\n",
        );
        md.push_str("| model | connections/s | connect p50 | connect p99 | echo p50 | echo p99 | server CPU µs/connection | peak processes | errors |\n");
        md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for ((_, _, _, model), cells) in cells_of(Scenario::Churn) {
            let connect = |f: fn(&LatencySummary) -> u64| {
                stat(cells, move |c| c.loadgen.as_ref().and_then(|r| r.connect_us).map(|l| f(&l) as f64))
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                name(*model),
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
        md.push_str("## Capacity: idle connections held\n\n");
        md.push_str(
            "N connections are opened and left idle; the server's memory is read from /proc (PSS from \
             smaps_rollup, so pages shared between the `process` model's children are counted once). Then every \
             connection sends one echo; `not served` did not get it back within 5 s. `process` is capped at its \
             1,024 connections.\n\n",
        );
        md.push_str("| model | connections | established | PSS / connection | RSS / connection | server PSS held | threads | processes | not served |\n");
        md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for ((_, connections, _, model), cells) in cells_of(Scenario::Capacity) {
            let cap = |f: fn(&crate::capacity::Capacity) -> f64| stat(cells, move |c| c.capacity.as_ref().map(f));
            let _ = writeln!(
                md,
                "| {} | {connections} | {} | {} | {} | {} | {} | {} | {} |",
                name(*model),
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

/// Draws every chart the results allow; returns (title, file name) pairs.
pub fn draw_charts(results: &Results, dir: &Path) -> io::Result<Vec<(String, String)>> {
    let mut charts = Vec::new();
    let groups = groups(results);
    let models = &results.settings.models;
    let plot_err = |e: String| io::Error::other(format!("cannot draw chart: {e}"));

    // Throughput vs connections, one chart per size.
    let sizes: std::collections::BTreeSet<u32> =
        groups.keys().filter(|k| k.0 == Scenario::Throughput).map(|k| k.2).collect();
    for size in sizes {
        let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for (i, model) in models.iter().enumerate() {
            let points: Vec<(f64, f64)> = groups
                .iter()
                .filter(|(k, _)| k.0 == Scenario::Throughput && k.2 == size && k.3 == i)
                .filter_map(|(k, cells)| {
                    let s = stat(cells, |c| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec))?;
                    Some((f64::from(k.1), s.median))
                })
                .collect();
            if !points.is_empty() {
                series.push((model.clone(), points));
            }
        }
        if series.is_empty() {
            continue;
        }
        let file = format!("throughput-{size}B.svg");
        line_chart(
            &dir.join(&file),
            &format!("Throughput vs connections, {size} B messages (closed loop)"),
            "connections",
            "messages / s",
            &series,
            false,
        )
        .map_err(plot_err)?;
        charts.push((format!("Throughput vs connections, {size} B"), file));
    }

    // Latency percentile spectrum of the open-loop scenario, all repeats merged.
    let mut spectrum: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (i, model) in models.iter().enumerate() {
        let mut merged: Option<Histogram<u64>> = None;
        for (_, cells) in groups.iter().filter(|(k, _)| k.0 == Scenario::Latency && k.3 == i) {
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
        spectrum.push((model.clone(), points));
    }
    if !spectrum.is_empty() {
        let file = "latency-spectrum.svg".to_owned();
        line_chart(
            &dir.join(&file),
            "Latency by percentile, open loop (CO-corrected)",
            "percentile (90 % … 99.99 %)",
            "latency",
            &spectrum,
            true,
        )
        .map_err(plot_err)?;
        charts.push(("Latency percentile spectrum, open loop".into(), file));
    }

    // Memory per idle connection.
    let mut bars: Vec<(String, u32, f64)> = Vec::new();
    for ((scenario, connections, _, model), cells) in &groups {
        if *scenario == Scenario::Capacity {
            if let Some(s) = stat(cells, |c| c.capacity.as_ref().map(|c| c.pss_per_connection_kib)) {
                bars.push((models.get(*model).cloned().unwrap_or_default(), *connections, s.median));
            }
        }
    }
    if !bars.is_empty() {
        let file = "memory-per-connection.svg".to_owned();
        bar_chart(&dir.join(&file), models, &bars).map_err(plot_err)?;
        charts.push(("Server memory per idle connection (PSS)".into(), file));
    }
    Ok(charts)
}

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
    series: &[(String, Vec<(f64, f64)>)],
    spectrum: bool,
) -> Result<(), String> {
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let xs = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0));
    let ys = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1));
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
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
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

/// Grouped bars: per model, one bar per connection count; log y (KiB).
fn bar_chart(path: &Path, models: &[String], bars: &[(String, u32, f64)]) -> Result<(), String> {
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
            .filter_map(|b| {
                let i = models.iter().position(|m| *m == b.0)? as f64;
                let x0 = i - 0.4 + j as f64 * width;
                Some(Rectangle::new([(x0, 0.1), (x0 + width * 0.9, b.2.max(0.1))], color.filled()))
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
