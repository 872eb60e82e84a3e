//! The pieces every chart is drawn with, and what they draw: the frame
//! (title, subtitle, reference lines, the legend column beside the plot,
//! never over a curve), the axes (labelled across their range, no minor
//! grid), lines of points, the min–max whiskers over repeats, and the flag
//! styling of a point: hollow where a flag puts it in doubt.

use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::element::DashedPathElement;
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

/// A reference line across the plot at `at` on the value axis (an SLO, the
/// line of "no difference"), dashed, named in the legend.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub at: f64,
    pub label: String,
}

/// What a chart says around its plot.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    pub title: String,
    /// One line under the title: what is drawn (repeats, rate, load).
    pub subtitle: String,
    pub x_desc: String,
    pub y_desc: String,
    /// Reference lines.
    pub rules: Vec<Rule>,
    /// Short lines under the legend: how to read the marks.
    pub notes: Vec<String>,
}

pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 500;
const LEGEND_WIDTH: u32 = 180;
pub const FONT: &str = "sans-serif";
pub const GREY: RGBColor = RGBColor(90, 90, 90);

pub type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
pub type Chart2d<'a, 'b, X, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>;

pub fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The drawing area under the title and subtitle, split into the plot and
/// the legend column.
pub fn framed<'a>(root: &Area<'a>, frame: &Frame, legend: bool) -> Result<(Area<'a>, Option<Area<'a>>), String> {
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

/// The legend column: a sample of each line, of each reference line, then
/// the notes.
pub fn legend(area: &Area<'_>, lines: &[Line], frame: &Frame) -> Result<(), String> {
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
    for rule in &frame.rules {
        area.draw(&DashedPathElement::new(vec![(6, y), (28, y)], 6, 4, BLACK.stroke_width(1))).map_err(err)?;
        text(&rule.label, 36, y, 13, &BLACK)?;
        y += 19;
    }
    y += 8;
    for note in &frame.notes {
        text(note, 6, y, 11, &GREY)?;
        y += 15;
    }
    Ok(())
}

/// The axes of a chart: its descriptions, labels printed by `x` (at most
/// `x_labels` of them, if given) and `y`, and no minor grid.
pub fn mesh<X, Y>(
    chart: &mut Chart2d<'_, '_, X, Y>,
    frame: &Frame,
    x_labels: Option<usize>,
    x: &dyn Fn(&f64) -> String,
    y: &dyn Fn(&f64) -> String,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut mesh = chart.configure_mesh();
    mesh.max_light_lines(0).x_desc(&frame.x_desc).y_desc(&frame.y_desc);
    if let Some(n) = x_labels {
        mesh.x_labels(n);
    }
    mesh.x_label_formatter(x).y_label_formatter(y).draw().map_err(err)
}

/// A point: filled, or hollow (an outline on white) when a flag puts it in
/// doubt.
pub fn point<X, Y>(
    chart: &mut Chart2d<'_, '_, X, Y>,
    at: (f64, f64),
    colour: RGBColor,
    hollow: bool,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    if hollow {
        chart.draw_series([Circle::new(at, 5, WHITE.filled())]).map_err(err)?;
        chart.draw_series([Circle::new(at, 5, colour.stroke_width(2))]).map_err(err)?;
    } else {
        chart.draw_series([Circle::new(at, 4, colour.filled())]).map_err(err)?;
    }
    Ok(())
}

/// The min–max range of a figure over repeats, from `from` to `to`, with a
/// cap across each end (`cap`: the cap's half-length in pixels, along x
/// for a vertical whisker, along y for a horizontal one).
pub fn whisker<X, Y>(
    chart: &mut Chart2d<'_, '_, X, Y>,
    from: (f64, f64),
    to: (f64, f64),
    style: ShapeStyle,
    cap: (i32, i32),
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart.draw_series([PathElement::new(vec![from, to], style)]).map_err(err)?;
    for end in [from, to] {
        let across = EmptyElement::at(end) + PathElement::new(vec![(-cap.0, -cap.1), (cap.0, cap.1)], style);
        chart.draw_series([across]).map_err(err)?;
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
pub fn nines_label(nines: f64) -> String {
    let digits = (nines.round() as usize).saturating_sub(2);
    format!("{:.digits$} %", 100.0 * (1.0 - 10f64.powf(-nines)))
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
