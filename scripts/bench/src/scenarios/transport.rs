//! The transport scenario: TCP loopback against a Unix domain socket, for
//! every model, closed loop; the two cells of a model run back to back and
//! each ratio is taken within such a pair.

use std::path::Path;
use std::time::Duration;

use echo_common::Transport;
use loadgen::report::fmt_count;
use plotters::prelude::*;

use crate::flags::Figure;
use crate::load::LoadKey;
use crate::plan::Shape;
use crate::render::doc::Doc;
use crate::render::format::{count, grouped, ratio, show};
use crate::results::{Cell, Results};
use crate::scenario::{Chart, Report, SMALL, Scenario, Window, every_model};
use crate::stats::Stat;

/// Connection counts of the transport scenario (`--quick`: 100 only).
pub const CONNECTIONS: [u32; 2] = [1, 100];
/// The measured window and warm-up are at most these: the scenario
/// compares two transports cell by cell, back to back, so short windows
/// keep the pairs close in time, and the full matrix within its budget.
pub const WINDOW: (Duration, Duration) = (Duration::from_secs(3), Duration::from_millis(500));

/// The transports compared (the name `Transport` is the transport's own).
#[derive(Debug)]
pub struct Transports;

impl Scenario for Transports {
    fn name(&self) -> &'static str {
        "transport"
    }

    fn about(&self) -> &'static str {
        "TCP loopback against a Unix socket: 1 and 100 connections, 64 B, closed loop, the two transports back \
         to back for each model"
    }

    fn defaults(&self, shape: &mut Shape, quick: bool, _cpus: usize) -> bool {
        // --quick keeps its 3-minute budget with the 100-connection pair only.
        shape.transport_connections = if quick { vec![100] } else { CONNECTIONS.to_vec() };
        true
    }

    /// Over both stream transports whatever `--transports` says: each
    /// model over TCP and then over a Unix socket, so the two cells of a
    /// pair are adjacent.
    fn loads(&self, shape: &Shape) -> Vec<Vec<LoadKey>> {
        let pair = |connections| {
            every_model(shape, |m| {
                Transport::STREAMS.map(|t| LoadKey::new(self.id(), m.clone(), t, connections, SMALL)).to_vec()
            })
        };
        shape.transport_connections.iter().map(|&n| pair(n)).collect()
    }

    fn window(&self) -> Window {
        Window::Capped { at_most: WINDOW, cells: "transport", beside: Some("the transport scenario") }
    }

    fn per_transport(&self) -> bool {
        false
    }

    fn place(&self) -> u8 {
        60
    }

    fn section(&self, r: &Report<'_>, transport: Option<Transport>, doc: &mut Doc) {
        if transport.is_some() {
            return;
        }
        let pairs = transport_pairs(r.results);
        if pairs.is_empty() {
            return;
        }
        doc.heading(2, "Transport: TCP loopback against a Unix domain socket");
        doc.push_str(
            "Every model at 1 and 100 connections, 64 B, closed loop; for each model the TCP cell and the Unix \
             socket cell run back to back, and each ratio is taken within such a pair (unix ÷ tcp), then the \
             median over repeats. Above 1 for msg/s, below 1 for CPU per message: the Unix socket is cheaper.\n\n",
        );
        let mut table = r.table([
            "connections:",
            "model",
            "tcp msg/s:",
            "unix msg/s:",
            "unix/tcp msg/s:",
            "tcp CPU µs/msg:",
            "unix CPU µs/msg:",
            "unix/tcp CPU/msg:",
        ]);
        for pair in &pairs {
            let rate = |c: &Cell| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec);
            let cpu = |c: &Cell| c.server_cpu_us_per_msg;
            let row = [
                count(f64::from(pair.connections)),
                pair.model.clone(),
                table.mark(show(Stat::over(&pair.tcp, rate), count), &pair.tcp, &[Figure::Rate]),
                table.mark(show(Stat::over(&pair.unix, rate), count), &pair.unix, &[Figure::Rate]),
                show(pair.ratio(rate), ratio),
                table.mark(show(Stat::over(&pair.tcp, cpu), |v| grouped(v, 2)), &pair.tcp, &[Figure::Cpu]),
                table.mark(show(Stat::over(&pair.unix, cpu), |v| grouped(v, 2)), &pair.unix, &[Figure::Cpu]),
                show(pair.ratio(cpu), ratio),
            ];
            table.row(row);
        }
        doc.push_str(&table.finish());
    }

    /// unix ÷ tcp msg/s per model and connection count.
    fn charts(&self, r: &Report<'_>, transport: Option<Transport>, dir: &Path) -> Result<Vec<Chart>, String> {
        if transport.is_some() {
            return Ok(Vec::new());
        }
        let pairs = transport_pairs(r.results);
        let ratios: Vec<(String, RGBColor, u32, Stat)> = pairs
            .iter()
            .filter_map(|p| {
                let r = p.ratio(|c| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec))?;
                let (red, green, blue) = p.colour;
                Some((p.model.clone(), RGBColor(red, green, blue), p.connections, r))
            })
            .collect();
        if ratios.is_empty() {
            return Ok(Vec::new());
        }
        let file = "transport-ratio.svg".to_owned();
        ratio_chart(&dir.join(&file), &ratios)?;
        Ok(vec![Chart { title: "Unix socket ÷ TCP loopback, msg/s".into(), file }])
    }
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
    let mine: Vec<&Cell> = results.cells.iter().filter(|c| c.ok && c.spec.load.scenario == Transports.id()).collect();
    let mut pairs = Vec::new();
    for connections in CONNECTIONS {
        for model in results.models() {
            let of = |transport: Transport| -> Vec<&Cell> {
                let pair = |c: &&&Cell| c.spec.load.connections == connections && c.spec.load.model == model;
                mine.iter().filter(pair).filter(|c| c.spec.load.transport == transport).copied().collect()
            };
            let (tcp, unix) = (of(Transport::Tcp), of(Transport::Unix));
            if !tcp.is_empty() || !unix.is_empty() {
                let colour = model.info().rgb();
                pairs.push(TransportPair { model: model.name().to_owned(), colour, connections, tcp, unix });
            }
        }
    }
    pairs
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
