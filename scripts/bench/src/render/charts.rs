//! The charts a run draws, three kinds of them: lines (a figure against a
//! load, a line per model, min–max whiskers over repeats), bars (one
//! figure per row, its value printed) and dot plots (a figure that is a
//! ratio or a difference, a dot per row with its whisker, a reference line
//! to read it against). A flagged figure is drawn hollow in all three; a
//! line in doubt as a whole is dashed. How they are drawn is [`super::plot`].

use std::path::Path;

use loadgen::report::fmt_count;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::plot::{self, Area, Chart2d, FONT, GREY, HEIGHT, WIDTH, err, log_ticks, mesh};
pub use super::plot::{Frame, Line, Point, Rule};

/// One row of a bar chart or a dot plot, its value printed beside it.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub colour: RGBColor,
    pub value: f64,
    pub range: Option<(f64, f64)>,
    pub hollow: bool,
    /// The value as printed, with its marks.
    pub text: String,
}

/// The x axis of a line chart.
#[derive(Debug, Clone)]
pub enum XAxis {
    /// Log scale, a label at every x a point has (connections, CPUs, rates).
    LogAtPoints,
    /// "Nines" of a percentile: 1 at 90 %, 2 at 99 %, 3 at 99.9 %, 4 at 99.99 %.
    Nines,
    /// One evenly spaced slot per step, labelled with its value (the
    /// offered rates of a ladder): a point's x is its step's value.
    Steps(Vec<f64>),
    /// One evenly spaced slot per category, labelled with its name (the
    /// work levels of the work scenario): a point's x is its slot, 0 up.
    Categories(Vec<String>),
}

/// The y axis of a line chart.
#[derive(Debug, Clone, Copy)]
pub enum YAxis {
    /// From 0, linear, labels printed by the function.
    Linear(fn(f64) -> String),
    /// Microseconds on a log scale, labelled at 1, 2 and 5 of every decade.
    LogMicros,
    /// A count or a rate on a log scale (messages / s), labelled at 1, 2
    /// and 5 of every decade.
    LogCount,
}

/// A line chart: `lines` over the axes, `frame`'s rules across, the legend
/// and `frame.notes` beside it.
pub fn lines(path: &Path, frame: &Frame, lines: &[Line], x: XAxis, y: YAxis) -> Result<(), String> {
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    let (plot, side) = plot::framed(&root, frame, true)?;
    let points = || lines.iter().flat_map(|l| l.points.iter());
    let lows = points().map(|p| p.range.map_or(p.y, |r| r.0.min(p.y)));
    let highs = points().map(|p| p.range.map_or(p.y, |r| r.1.max(p.y)));
    let rules = frame.rules.iter().map(|r| r.at);
    let y_lo = lows.chain(rules.clone()).fold(f64::INFINITY, f64::min);
    let y_hi = highs.chain(rules).fold(f64::NEG_INFINITY, f64::max);
    if !y_lo.is_finite() || !y_hi.is_finite() {
        return Err("no point to draw".into());
    }
    let mut xs: Vec<f64> = points().map(|p| p.x).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let (x_lo, x_hi) = (xs[0], xs[xs.len() - 1]);
    let mut builder = ChartBuilder::on(&plot);
    builder.margin(10).margin_right(24).x_label_area_size(44).y_label_area_size(84);
    let log_y = |lo: f64, hi: f64| {
        let (lo, hi) = (lo.max(1.0) * 0.85, hi.max(1.0) * 1.15);
        (lo..hi).log_scale().with_key_points(log_ticks(lo, hi))
    };
    match (x, y) {
        (XAxis::LogAtPoints, YAxis::Linear(format)) => {
            let x_range = (x_lo.max(f64::MIN_POSITIVE) * 0.8..x_hi.max(x_lo * 2.0) * 1.25).log_scale();
            // All zeros (no loss, say): a unit axis, the line drawn at 0.
            let top = if y_hi > 0.0 { y_hi * 1.1 } else { 1.0 };
            let mut chart = builder.build_cartesian_2d(x_range.with_key_points(xs), 0.0..top).map_err(err)?;
            mesh(&mut chart, frame, None, &|x| fmt_count(*x), &|y| format(*y))?;
            draw(&mut chart, frame, lines, |x| x)?;
        }
        (XAxis::Nines, YAxis::LogMicros) => {
            // Plotted at 1 / (1 − quantile): 10 at 90 %, 10,000 at 99.99 %, on a log scale.
            let x_range = (10.0..10_000.0).log_scale().with_key_points(vec![10.0, 100.0, 1_000.0, 10_000.0]);
            let mut chart = builder.build_cartesian_2d(x_range, log_y(y_lo, y_hi)).map_err(err)?;
            mesh(&mut chart, frame, None, &|x| plot::nines_label(x.log10()), &|y| plot::axis_us(*y))?;
            draw(&mut chart, frame, lines, |x| 10f64.powf(x))?;
        }
        (XAxis::LogAtPoints, YAxis::LogMicros) => {
            let x_range = (x_lo.max(f64::MIN_POSITIVE) * 0.8..x_hi.max(x_lo * 2.0) * 1.25).log_scale();
            let mut chart = builder.build_cartesian_2d(x_range.with_key_points(xs), log_y(y_lo, y_hi)).map_err(err)?;
            mesh(&mut chart, frame, None, &|x| fmt_count(*x), &|y| plot::axis_us(*y))?;
            draw(&mut chart, frame, lines, |x| x)?;
        }
        (XAxis::Steps(steps), YAxis::LogMicros) => {
            let slot = |x: f64| steps.iter().position(|s| *s == x).unwrap_or(0) as f64;
            let label = |x: &f64| {
                let i = x.round();
                let at_slot = (x - i).abs() < 0.01 && i >= 0.0;
                if at_slot { steps.get(i as usize).map_or(String::new(), |s| fmt_count(*s)) } else { String::new() }
            };
            let x_range = -0.5..steps.len() as f64 - 0.5;
            let mut chart = builder.build_cartesian_2d(x_range, log_y(y_lo, y_hi)).map_err(err)?;
            mesh(&mut chart, frame, Some(steps.len()), &label, &|y| plot::axis_us(*y))?;
            draw(&mut chart, frame, lines, slot)?;
        }
        (XAxis::Categories(names), YAxis::LogCount) => {
            let label = |x: &f64| {
                let i = x.round();
                let at_slot = (x - i).abs() < 0.01 && i >= 0.0;
                if at_slot { names.get(i as usize).cloned().unwrap_or_default() } else { String::new() }
            };
            let x_range = -0.5..names.len() as f64 - 0.5;
            let mut chart = builder.build_cartesian_2d(x_range, log_y(y_lo, y_hi)).map_err(err)?;
            mesh(&mut chart, frame, Some(names.len()), &label, &|y| fmt_count(*y))?;
            draw(&mut chart, frame, lines, |x| x)?;
        }
        (x, y) => return Err(format!("no chart draws {y:?} against {x:?}")),
    }
    if let Some(side) = side {
        plot::legend(&side, lines, frame)?;
    }
    root.present().map_err(err)
}

/// The rules, then each line, its whiskers and its points, a point's x
/// placed at `x(p.x)`.
fn draw<X, Y>(
    chart: &mut Chart2d<'_, '_, X, Y>,
    frame: &Frame,
    lines: &[Line],
    x: impl Fn(f64) -> f64,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for rule in &frame.rules {
        let (left, right) = (chart.x_range().start, chart.x_range().end);
        let across = DashedLineSeries::new([(left, rule.at), (right, rule.at)], 8, 5, BLACK.stroke_width(1));
        chart.draw_series(across).map_err(err)?;
    }
    for line in lines {
        let colour = line.colour;
        let path = line.points.iter().map(|p| (x(p.x), p.y));
        if line.dashed {
            chart.draw_series(DashedLineSeries::new(path, 8, 5, colour.stroke_width(2))).map_err(err)?;
        } else {
            chart.draw_series(LineSeries::new(path, colour.stroke_width(2))).map_err(err)?;
        }
        for p in &line.points {
            let Some((min, max)) = p.range else { continue };
            plot::whisker(chart, (x(p.x), min), (x(p.x), max), colour.mix(0.8).stroke_width(1), (4, 0))?;
        }
        if line.markers {
            for p in &line.points {
                plot::point(chart, (x(p.x), p.y), colour, p.hollow)?;
            }
        }
    }
    Ok(())
}

/// Horizontal bars, one panel per (x description, rows), side by side, the
/// rows of every panel labelled on the left of the first; each bar's value
/// printed at its end, its min–max range as a whisker; hollow bars flagged.
pub fn bars(path: &Path, frame: &Frame, panels: &[(String, Vec<Row>)]) -> Result<(), String> {
    rows(path, frame, panels, Mark::Bar, fmt_count)
}

/// A dot plot: a dot per row at its value, its min–max range as a
/// whisker, its value printed beside it, `frame`'s rules across (a dashed
/// vertical line each, its label at the top), the x axis labelled by `x`;
/// hollow dots flagged.
pub fn dots(path: &Path, frame: &Frame, x_desc: &str, x: fn(f64) -> String, rows: Vec<Row>) -> Result<(), String> {
    self::rows(path, frame, &[(x_desc.to_owned(), rows)], Mark::Dot, x)
}

/// How a row shows its value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mark {
    Bar,
    Dot,
}

fn rows(
    path: &Path,
    frame: &Frame,
    panels: &[(String, Vec<Row>)],
    mark: Mark,
    x: fn(f64) -> String,
) -> Result<(), String> {
    let rows = panels.iter().map(|(_, b)| b.len()).max().unwrap_or(0);
    if rows == 0 {
        return Err("no row to draw".into());
    }
    let height = (rows as u32 * 24 + 150).max(300);
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    let (area, _) = plot::framed(&root, frame, false)?;
    let (plot, notes) = if frame.notes.is_empty() {
        (area, None)
    } else {
        let (_, h) = area.dim_in_pixel();
        let (plot, notes) = area.split_vertically(h.saturating_sub(16 * frame.notes.len() as u32 + 8));
        (plot, Some(notes))
    };
    draw_panels(&plot, frame, panels, rows, (mark, x))?;
    if let Some(notes) = notes {
        for (i, note) in frame.notes.iter().enumerate() {
            let style = TextStyle::from((FONT, 11).into_font()).color(&GREY).pos(Pos::new(HPos::Left, VPos::Top));
            notes.draw(&Text::new(note.clone(), (12, 16 * i as i32), style)).map_err(err)?;
        }
    }
    root.present().map_err(err)
}

/// The panels of a bar chart or dot plot: `mark` says how a row shows its
/// value, `x_label` how the x axis is labelled.
fn draw_panels(
    area: &Area<'_>,
    frame: &Frame,
    panels: &[(String, Vec<Row>)],
    rows: usize,
    (mark, x_label): (Mark, fn(f64) -> String),
) -> Result<(), String> {
    let (width, _) = area.dim_in_pixel();
    let label_width = 150u32;
    let (labels_and_first, rest) = if panels.len() > 1 {
        let first = label_width + (width - label_width) / panels.len() as u32;
        area.split_horizontally(first)
    } else {
        (area.clone(), area.clone())
    };
    let mut areas = vec![labels_and_first];
    if panels.len() > 1 {
        areas.extend(rest.split_evenly((1, panels.len() - 1)));
    }
    for (i, ((x_desc, bars), panel)) in panels.iter().zip(&areas).enumerate() {
        let ends = bars.iter().map(|b| b.range.map_or(b.value, |r| r.1.max(b.value)));
        let x_hi = ends.chain(frame.rules.iter().map(|r| r.at)).fold(0.0f64, f64::max);
        let x_hi = if x_hi > 0.0 { x_hi * 1.3 } else { 1.0 };
        let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
        // Row 0 at the top.
        let y_of = |row: usize| (rows - 1 - row) as f64;
        let mut chart = ChartBuilder::on(panel)
            .margin(8)
            .margin_right(16)
            .x_label_area_size(40)
            .y_label_area_size(if i == 0 { label_width } else { 8 })
            .build_cartesian_2d(0.0..x_hi, -0.6..rows as f64 - 0.4)
            .map_err(err)?;
        chart
            .configure_mesh()
            .max_light_lines(0)
            .disable_y_mesh()
            .x_desc(x_desc.as_str())
            .x_labels(5)
            .y_labels(rows)
            .x_label_formatter(&|x| x_label(*x))
            .y_label_formatter(&|y| {
                // Labels at the rows only (whole numbers), and on the first panel.
                if i > 0 || (y - y.round()).abs() > 0.01 || y.round() < 0.0 {
                    return String::new();
                }
                let row = rows as f64 - 1.0 - y.round();
                labels.get(row as usize).cloned().unwrap_or_default()
            })
            .draw()
            .map_err(err)?;
        for rule in &frame.rules {
            let (bottom, top) = (-0.6, rows as f64 - 0.4);
            chart
                .draw_series(DashedLineSeries::new([(rule.at, bottom), (rule.at, top)], 8, 5, BLACK.stroke_width(1)))
                .map_err(err)?;
            let style = TextStyle::from((FONT, 11).into_font()).color(&GREY).pos(Pos::new(HPos::Left, VPos::Top));
            chart.draw_series([Text::new(rule.label.clone(), (rule.at + x_hi * 0.01, top), style)]).map_err(err)?;
        }
        for (row, bar) in bars.iter().enumerate() {
            let y = y_of(row);
            if mark == Mark::Bar {
                let rect = [(0.0, y - 0.32), (bar.value.max(0.0), y + 0.32)];
                if bar.hollow {
                    // An outline (a closed path: the SVG backend draws rectangles' strokes 1 px wide).
                    let [(x0, y0), (x1, y1)] = rect;
                    let outline = vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)];
                    chart.draw_series([PathElement::new(outline, bar.colour.stroke_width(2))]).map_err(err)?;
                } else {
                    chart.draw_series([Rectangle::new(rect, bar.colour.filled())]).map_err(err)?;
                }
            }
            if let Some((min, max)) = bar.range {
                // The axis starts at 0: a range below it (a PSS delta of −0.0) is drawn from 0.
                let (min, max) = (min.max(0.0), max.max(0.0));
                plot::whisker(&mut chart, (min, y), (max, y), BLACK.stroke_width(1), (0, 4))?;
            }
            if mark == Mark::Dot {
                plot::point(&mut chart, (bar.value, y), bar.colour, bar.hollow)?;
            }
            let end = bar.range.map_or(bar.value, |r| r.1.max(bar.value)).max(0.0);
            let style = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
            chart.draw_series([Text::new(bar.text.clone(), (end + x_hi * 0.015, y), style)]).map_err(err)?;
        }
    }
    Ok(())
}
