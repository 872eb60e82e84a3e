//! How the charts are drawn: lines with min–max bars over repeats and
//! hollow points where a figure is flagged, horizontal bars with their
//! values printed, every axis labelled across its range, no minor grid, and
//! the legend beside the plot, never over a curve.

use std::path::Path;

use loadgen::report::fmt_count;
use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One point of a line: its median, the min–max range over repeats when
/// there are several, hollow when a flag puts it in doubt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub range: Option<(f64, f64)>,
    pub hollow: bool,
}

/// One line: a model's points, dashed when its whole curve is in doubt.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub colour: RGBColor,
    pub points: Vec<Point>,
    pub dashed: bool,
    /// Circles at the points (off for dense curves).
    pub markers: bool,
}

/// One bar of a horizontal bar chart, its value printed beside it.
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub colour: RGBColor,
    pub value: f64,
    pub range: Option<(f64, f64)>,
    pub hollow: bool,
    /// The value as printed, with its marks.
    pub text: String,
}

/// What a chart says around its plot.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    pub title: String,
    /// One line under the title: what is drawn (repeats, rate, load).
    pub subtitle: String,
    pub x_desc: String,
    pub y_desc: String,
    /// Short lines under the legend: how to read the marks.
    pub notes: Vec<String>,
}

/// The x axis of a line chart.
#[derive(Debug, Clone, Copy)]
pub enum XAxis {
    /// Log scale, a label at every x a point has (connections, CPUs, rates).
    LogAtPoints,
    /// "Nines" of a percentile: 1 at 90 %, 2 at 99 %, 3 at 99.9 %, 4 at 99.99 %.
    Nines,
}

/// The y axis of a line chart.
#[derive(Debug, Clone, Copy)]
pub enum YAxis {
    /// From 0, linear, labels printed by the function.
    Linear(fn(f64) -> String),
    /// Microseconds on a log scale, labelled at 1, 2 and 5 of every decade.
    LogMicros,
}

const WIDTH: u32 = 900;
const HEIGHT: u32 = 500;
const LEGEND_WIDTH: u32 = 180;
const FONT: &str = "sans-serif";
const GREY: RGBColor = RGBColor(90, 90, 90);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The drawing area under the title and subtitle, split into the plot and
/// the legend column.
fn framed<'a>(root: &Area<'a>, frame: &Frame, legend: bool) -> Result<(Area<'a>, Option<Area<'a>>), String> {
    root.fill(&WHITE).map_err(err)?;
    let mut area = root.titled(&frame.title, (FONT, 20)).map_err(err)?;
    if !frame.subtitle.is_empty() {
        area = area.titled(&frame.subtitle, TextStyle::from((FONT, 13).into_font()).color(&GREY)).map_err(err)?;
    }
    if !legend {
        return Ok((area, None));
    }
    let (width, _) = area.dim_in_pixel();
    let (plot, side) = area.split_horizontally(width.saturating_sub(LEGEND_WIDTH));
    Ok((plot, Some(side)))
}

/// The legend column: a sample of each line, then the notes.
fn legend(area: &Area<'_>, lines: &[Line], notes: &[String]) -> Result<(), String> {
    let mut y = 24;
    let text = |s: &str, x: i32, y: i32, size: u32, colour: &RGBColor| {
        let style = TextStyle::from((FONT, size).into_font()).color(colour).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(s.to_owned(), (x, y), style)).map_err(err)
    };
    for line in lines {
        let style = line.colour.stroke_width(2);
        if line.dashed {
            area.draw(&PathElement::new(vec![(6, y), (14, y)], style)).map_err(err)?;
            area.draw(&PathElement::new(vec![(20, y), (28, y)], style)).map_err(err)?;
        } else {
            area.draw(&PathElement::new(vec![(6, y), (28, y)], style)).map_err(err)?;
        }
        if line.markers {
            area.draw(&Circle::new((17, y), 3, line.colour.filled())).map_err(err)?;
        }
        text(&line.name, 36, y, 13, &BLACK)?;
        y += 19;
    }
    y += 8;
    for note in notes {
        text(note, 6, y, 11, &GREY)?;
        y += 15;
    }
    Ok(())
}

/// Ticks of a log axis from `lo` to `hi`: at 1, 2 and 5 of every decade,
/// or at every digit when that gives fewer than four (a narrow range).
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let ticks = decade_ticks(lo, hi, &[1.0, 2.0, 5.0]);
    if ticks.len() >= 4 { ticks } else { decade_ticks(lo, hi, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]) }
}

/// Ticks at `multiples` of every decade from `lo` to `hi`.
fn decade_ticks(lo: f64, hi: f64, multiples: &[f64]) -> Vec<f64> {
    let mut ticks = Vec::new();
    if !(lo > 0.0 && hi >= lo && hi.is_finite()) {
        return ticks;
    }
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for &m in multiples {
            let t = m * decade;
            if t >= lo && t <= hi {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    ticks
}

/// `500 µs`, `1 ms`, `2.5 ms`, `1 s`: an axis label, no trailing zeros.
pub fn axis_us(us: f64) -> String {
    let trim = |v: f64, unit: &str| {
        let text = format!("{v:.2}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!("{text} {unit}")
    };
    if us < 1_000.0 {
        trim(us, "µs")
    } else if us < 1_000_000.0 {
        trim(us / 1e3, "ms")
    } else {
        trim(us / 1e6, "s")
    }
}

/// `90 %`, `99 %`, `99.9 %`, `99.99 %` for 1 to 4 nines.
fn nines_label(nines: f64) -> String {
    let digits = (nines.round() as usize).saturating_sub(2);
    format!("{:.digits$} %", 100.0 * (1.0 - 10f64.powf(-nines)))
}

/// A line chart: `lines` over the axes, the legend and `frame.notes` beside it.
pub fn lines(path: &Path, frame: &Frame, lines: &[Line], x: XAxis, y: YAxis) -> Result<(), String> {
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    let (plot, side) = framed(&root, frame, true)?;
    let points = || lines.iter().flat_map(|l| l.points.iter());
    let lows = points().map(|p| p.range.map_or(p.y, |r| r.0.min(p.y)));
    let highs = points().map(|p| p.range.map_or(p.y, |r| r.1.max(p.y)));
    let y_lo = lows.fold(f64::INFINITY, f64::min);
    let y_hi = highs.fold(f64::NEG_INFINITY, f64::max);
    if !y_lo.is_finite() || !y_hi.is_finite() {
        return Err("no point to draw".into());
    }
    let mut xs: Vec<f64> = points().map(|p| p.x).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let (x_lo, x_hi) = (xs[0], xs[xs.len() - 1]);
    let mut builder = ChartBuilder::on(&plot);
    builder.margin(10).margin_right(24).x_label_area_size(44).y_label_area_size(84);
    match (x, y) {
        (XAxis::LogAtPoints, YAxis::Linear(format)) => {
            let x_range = (x_lo.max(f64::MIN_POSITIVE) * 0.8..x_hi.max(x_lo * 2.0) * 1.25).log_scale();
            // All zeros (no loss, say): a unit axis, the line drawn at 0.
            let top = if y_hi > 0.0 { y_hi * 1.1 } else { 1.0 };
            let mut chart = builder.build_cartesian_2d(x_range.with_key_points(xs), 0.0..top).map_err(err)?;
            mesh(&mut chart, frame, &|x| fmt_count(*x), &|y| format(*y))?;
            draw_lines(&mut chart, lines)?;
        }
        (XAxis::Nines, YAxis::LogMicros) => {
            let (lo, hi) = (y_lo.max(1.0) * 0.85, y_hi.max(1.0) * 1.15);
            let y_range = (lo..hi).log_scale().with_key_points(log_ticks(lo, hi));
            // Plotted at 1 / (1 − quantile): 10 at 90 %, 10,000 at 99.99 %, on a log scale.
            let x_range = (10.0..10_000.0).log_scale().with_key_points(vec![10.0, 100.0, 1_000.0, 10_000.0]);
            let mut chart = builder.build_cartesian_2d(x_range, y_range).map_err(err)?;
            mesh(&mut chart, frame, &|x| nines_label(x.log10()), &|y| axis_us(*y))?;
            let lines: Vec<Line> = lines
                .iter()
                .map(|l| {
                    let points = l.points.iter().map(|p| Point { x: 10f64.powf(p.x), ..*p }).collect();
                    Line { points, ..l.clone() }
                })
                .collect();
            draw_lines(&mut chart, &lines)?;
        }
        (XAxis::LogAtPoints, YAxis::LogMicros) => {
            let x_range = (x_lo.max(f64::MIN_POSITIVE) * 0.8..x_hi.max(x_lo * 2.0) * 1.25).log_scale();
            let (lo, hi) = (y_lo.max(1.0) * 0.85, y_hi.max(1.0) * 1.15);
            let y_range = (lo..hi).log_scale().with_key_points(log_ticks(lo, hi));
            let mut chart = builder.build_cartesian_2d(x_range.with_key_points(xs), y_range).map_err(err)?;
            mesh(&mut chart, frame, &|x| fmt_count(*x), &|y| axis_us(*y))?;
            draw_lines(&mut chart, lines)?;
        }
        (XAxis::Nines, YAxis::Linear(_)) => return Err("a percentile axis takes a log latency axis".into()),
    }
    if let Some(side) = side {
        legend(&side, lines, &frame.notes)?;
    }
    root.present().map_err(err)
}

/// The lines, their min–max bars and their points.
fn draw_lines<'a, 'b: 'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>,
    lines: &[Line],
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for line in lines {
        let colour = line.colour;
        let path = line.points.iter().map(|p| (p.x, p.y));
        if line.dashed {
            chart.draw_series(DashedLineSeries::new(path, 8, 5, colour.stroke_width(2))).map_err(err)?;
        } else {
            chart.draw_series(LineSeries::new(path, colour.stroke_width(2))).map_err(err)?;
        }
        for p in &line.points {
            let Some((min, max)) = p.range else { continue };
            let style = colour.mix(0.8).stroke_width(1);
            chart.draw_series([PathElement::new(vec![(p.x, min), (p.x, max)], style)]).map_err(err)?;
            for end in [min, max] {
                let cap = EmptyElement::at((p.x, end)) + PathElement::new(vec![(-4, 0), (4, 0)], style);
                chart.draw_series([cap]).map_err(err)?;
            }
        }
        if line.markers {
            for p in &line.points {
                if p.hollow {
                    chart.draw_series([Circle::new((p.x, p.y), 5, WHITE.filled())]).map_err(err)?;
                    chart.draw_series([Circle::new((p.x, p.y), 5, colour.stroke_width(2))]).map_err(err)?;
                } else {
                    chart.draw_series([Circle::new((p.x, p.y), 4, colour.filled())]).map_err(err)?;
                }
            }
        }
    }
    Ok(())
}

/// The axes of a line chart: its descriptions, labels printed by `x` and
/// `y`, and no minor grid.
fn mesh<X, Y>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, Y>>,
    frame: &Frame,
    x: &dyn Fn(&f64) -> String,
    y: &dyn Fn(&f64) -> String,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .max_light_lines(0)
        .x_desc(&frame.x_desc)
        .y_desc(&frame.y_desc)
        .x_label_formatter(x)
        .y_label_formatter(y)
        .draw()
        .map_err(err)
}

/// Horizontal bars, one panel per (x description, bars), side by side, the
/// rows of every panel labelled on the left of the first; each bar's value
/// printed at its end, its min–max range as a whisker; hollow bars flagged.
pub fn bars(path: &Path, frame: &Frame, panels: &[(String, Vec<Bar>)]) -> Result<(), String> {
    let rows = panels.iter().map(|(_, b)| b.len()).max().unwrap_or(0);
    if rows == 0 {
        return Err("no bar to draw".into());
    }
    let height = (rows as u32 * 24 + 150).max(300);
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    let (area, _) = framed(&root, frame, false)?;
    let (plot, notes) = if frame.notes.is_empty() {
        (area, None)
    } else {
        let (_, h) = area.dim_in_pixel();
        let (plot, notes) = area.split_vertically(h.saturating_sub(16 * frame.notes.len() as u32 + 8));
        (plot, Some(notes))
    };
    draw_panels(&plot, panels, rows)?;
    if let Some(notes) = notes {
        for (i, note) in frame.notes.iter().enumerate() {
            let style = TextStyle::from((FONT, 11).into_font()).color(&GREY).pos(Pos::new(HPos::Left, VPos::Top));
            notes.draw(&Text::new(note.clone(), (12, 16 * i as i32), style)).map_err(err)?;
        }
    }
    root.present().map_err(err)
}

fn draw_panels(area: &Area<'_>, panels: &[(String, Vec<Bar>)], rows: usize) -> Result<(), String> {
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
        let x_hi = bars.iter().map(|b| b.range.map_or(b.value, |r| r.1.max(b.value))).fold(0.0f64, f64::max);
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
            .x_label_formatter(&|x| fmt_count(*x))
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
        for (row, bar) in bars.iter().enumerate() {
            let y = y_of(row);
            let rect = [(0.0, y - 0.32), (bar.value.max(0.0), y + 0.32)];
            if bar.hollow {
                // An outline (a closed path: the SVG backend draws rectangles' strokes 1 px wide).
                let [(x0, y0), (x1, y1)] = rect;
                let outline = vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)];
                chart.draw_series([PathElement::new(outline, bar.colour.stroke_width(2))]).map_err(err)?;
            } else {
                chart.draw_series([Rectangle::new(rect, bar.colour.filled())]).map_err(err)?;
            }
            if let Some((min, max)) = bar.range {
                // The axis starts at 0: a range below it (a PSS delta of −0.0) is drawn from 0.
                let (min, max) = (min.max(0.0), max.max(0.0));
                let style = BLACK.stroke_width(1);
                chart.draw_series([PathElement::new(vec![(min, y), (max, y)], style)]).map_err(err)?;
                for end in [min, max] {
                    let cap = EmptyElement::at((end, y)) + PathElement::new(vec![(0, -4), (0, 4)], style);
                    chart.draw_series([cap]).map_err(err)?;
                }
            }
            let end = bar.range.map_or(bar.value, |r| r.1.max(bar.value)).max(0.0);
            let style = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
            chart.draw_series([Text::new(bar.text.clone(), (end + x_hi * 0.015, y), style)]).map_err(err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_ticks_cover_the_whole_range() {
        // The reference run's spectrum: 0.5 to 13 ms, labelled at 1, 2, 5 of each decade.
        assert_eq!(log_ticks(45.0, 13_000.0), [50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10_000.0]);
        assert!(log_ticks(0.0, 10.0).is_empty());
        // A narrow range gets a tick at every digit, its lower part labelled too.
        let labels: Vec<String> = log_ticks(750.0, 5200.0).into_iter().map(axis_us).collect();
        assert_eq!(labels, ["800 µs", "900 µs", "1 ms", "2 ms", "3 ms", "4 ms", "5 ms"]);
        let labels: Vec<String> = log_ticks(450.0, 12_000.0).into_iter().map(axis_us).collect();
        assert_eq!(labels, ["500 µs", "1 ms", "2 ms", "5 ms", "10 ms"], "each label once, no `10.00 ms` twice");
    }

    #[test]
    fn percentile_labels() {
        let labels: Vec<String> = [1.0, 2.0, 3.0, 4.0].into_iter().map(nines_label).collect();
        assert_eq!(labels, ["90 %", "99 %", "99.9 %", "99.99 %"]);
        assert_eq!(axis_us(2500.0), "2.5 ms");
        assert_eq!(axis_us(1.5e6), "1.5 s");
    }
}
