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
    /// Its name in the legend (empty: not in the legend, e.g. a second
    /// line of a series the legend names once).
    pub name: String,
    pub colour: RGBColor,
    /// The shape of its markers, so that series tell apart without colour.
    pub marker: Marker,
    pub points: Vec<Point>,
    /// Texts beside points: (x, y, text), e.g. how many repeats ran a step.
    pub labels: Vec<(f64, f64, String)>,
    /// The x of a point drawn ringed (the ladder's knee); the frame's
    /// `ring` says what a ring means.
    pub ring: Option<f64>,
    pub dashed: bool,
    /// A marker at every point (off for dense curves: then a marker every
    /// [`SPARSE_MARKERS`]th point only, so the shape still names the line).
    pub markers: bool,
}

/// Dense curves carry a marker every this many points.
pub const SPARSE_MARKERS: usize = 10;

/// The shape of a series' markers: with [`PALETTE`]'s colours, a series
/// tells apart from the others by its shape as well as its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Marker {
    Circle,
    Square,
    TriangleUp,
    Diamond,
    TriangleDown,
}

impl Marker {
    pub const ALL: [Marker; 5] =
        [Marker::Circle, Marker::Square, Marker::TriangleUp, Marker::Diamond, Marker::TriangleDown];

    /// The outline of the marker around (0, 0) at size `r` (pixels),
    /// closed; `None` for the circle.
    fn outline(self, r: i32) -> Option<Vec<(i32, i32)>> {
        let h = r + 1;
        match self {
            Marker::Circle => None,
            Marker::Square => Some(vec![(-r, -r), (r, -r), (r, r), (-r, r), (-r, -r)]),
            Marker::TriangleUp => Some(vec![(0, -h), (h, r), (-h, r), (0, -h)]),
            Marker::TriangleDown => Some(vec![(0, h), (h, -r), (-h, -r), (0, h)]),
            Marker::Diamond => Some(vec![(0, -h), (h, 0), (0, h), (-h, 0), (0, -h)]),
        }
    }
}

/// The Okabe–Ito colour-blind-safe palette, its faint yellow last: eight
/// colours. Series `i` takes colour `i % 8` and marker `i % 5`
/// ([`Marker::ALL`]): 40 series before a pair repeats, and two series of
/// one colour (8 apart) never share a marker.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 0, 0),       // black
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(240, 228, 66),  // yellow
];

/// The colour and marker of series `i` (a model's rank, a variant's place).
pub fn style(i: usize) -> (RGBColor, Marker) {
    (PALETTE[i % PALETTE.len()], Marker::ALL[i % Marker::ALL.len()])
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
    /// What a ringed point means, in the legend, when a line has one.
    pub ring: Option<String>,
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
    for line in lines.iter().filter(|l| !l.name.is_empty()) {
        let style = line.colour.stroke_width(2);
        if line.dashed {
            area.draw(&PathElement::new(vec![(6, y), (14, y)], style)).map_err(err)?;
            area.draw(&PathElement::new(vec![(20, y), (28, y)], style)).map_err(err)?;
        } else {
            area.draw(&PathElement::new(vec![(6, y), (28, y)], style)).map_err(err)?;
        }
        draw_marker(area, (17, y), line.marker, line.colour, false)?;
        text(&line.name, 36, y, 13, &BLACK)?;
        y += 19;
    }
    if let Some(ring) = frame.ring.as_ref().filter(|_| lines.iter().any(|l| l.ring.is_some())) {
        area.draw(&Circle::new((17, y), 8, BLACK.stroke_width(1))).map_err(err)?;
        text(ring, 36, y, 13, &BLACK)?;
        y += 19;
    }
    if lines.iter().any(|l| l.points.iter().any(|p| p.hollow)) {
        draw_marker(area, (17, y), Marker::Circle, GREY, true)?;
        text("hollow: a flagged figure", 36, y, 13, &BLACK)?;
        y += 15;
        text("(marks under its table)", 36, y, 11, &GREY)?;
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

/// A point: its marker filled, or hollow (an outline on white) when a
/// flag puts it in doubt.
pub fn point<X, Y>(
    chart: &mut Chart2d<'_, '_, X, Y>,
    at: (f64, f64),
    (colour, marker): (RGBColor, Marker),
    hollow: bool,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for part in parts(marker, colour, hollow) {
        match part {
            Part::Disc(r, style) => chart.draw_series([EmptyElement::at(at) + Circle::new((0, 0), r, style)]),
            Part::Polygon(outline, style) => chart.draw_series([EmptyElement::at(at) + Polygon::new(outline, style)]),
            Part::Path(outline, style) => chart.draw_series([EmptyElement::at(at) + PathElement::new(outline, style)]),
        }
        .map_err(err)?;
    }
    Ok(())
}

/// A marker at `at` (pixels of `area`, e.g. in a legend), filled or hollow.
pub fn draw_marker(
    area: &Area<'_>,
    at: (i32, i32),
    marker: Marker,
    colour: RGBColor,
    hollow: bool,
) -> Result<(), String> {
    for part in parts(marker, colour, hollow) {
        match part {
            Part::Disc(r, style) => area.draw(&(EmptyElement::at(at) + Circle::new((0, 0), r, style))),
            Part::Polygon(outline, style) => area.draw(&(EmptyElement::at(at) + Polygon::new(outline, style))),
            Part::Path(outline, style) => area.draw(&(EmptyElement::at(at) + PathElement::new(outline, style))),
        }
        .map_err(err)?;
    }
    Ok(())
}

/// A piece of a marker, in pixels around its point.
enum Part {
    Disc(i32, ShapeStyle),
    Polygon(Vec<(i32, i32)>, ShapeStyle),
    Path(Vec<(i32, i32)>, ShapeStyle),
}

/// The pieces of `marker`: filled in `colour`, or hollow (white inside,
/// a `colour` outline, a little larger so that it reads as a ring).
fn parts(marker: Marker, colour: RGBColor, hollow: bool) -> Vec<Part> {
    let r = if hollow { 5 } else { 4 };
    match (marker.outline(r), hollow) {
        (None, false) => vec![Part::Disc(r, colour.filled())],
        (None, true) => vec![Part::Disc(r, WHITE.filled()), Part::Disc(r, colour.stroke_width(2))],
        (Some(outline), false) => vec![Part::Polygon(outline, colour.filled())],
        (Some(outline), true) => {
            vec![Part::Polygon(outline.clone(), WHITE.filled()), Part::Path(outline, colour.stroke_width(2))]
        }
    }
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

/// Ticks of a linear axis over `lo..hi`: about `n` of them, a step of 1,
/// 2 or 5 × a power of ten apart; and the decimals that step needs (0 for
/// a step of 1 or more).
pub fn linear_ticks(lo: f64, hi: f64, n: usize) -> (Vec<f64>, usize) {
    if !(hi > lo && lo.is_finite() && hi.is_finite()) || n == 0 {
        return (Vec::new(), 0);
    }
    let rough = (hi - lo) / n as f64;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|s| *s >= rough).unwrap_or(10.0 * power);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    let ticks = (first..=last).map(|i| i as f64 * step).collect();
    (ticks, decimals)
}

/// The labels of `ticks`, printed by `format` with the fewest decimals from
/// `decimals` up (at most 6) that tell every tick apart; a label that still
/// equals the one before it is left blank, so that no label is printed
/// twice (`1.00 ms` at two ticks).
pub fn distinct_labels(ticks: &[f64], decimals: usize, format: impl Fn(f64, usize) -> String) -> Vec<String> {
    let labels = |d: usize| ticks.iter().map(|&t| format(t, d)).collect::<Vec<String>>();
    let distinct = |l: &[String]| l.windows(2).all(|w| w[0] != w[1]);
    let mut chosen = labels(decimals);
    for d in decimals..=6 {
        let l = labels(d);
        if distinct(&l) {
            chosen = l;
            break;
        }
    }
    let mut out: Vec<String> = Vec::with_capacity(chosen.len());
    for label in chosen {
        let repeated = out.iter().rev().find(|l| !l.is_empty()).is_some_and(|l| *l == label);
        out.push(if repeated { String::new() } else { label });
    }
    out
}

/// A linear axis over `lo..hi` with its key points at `ticks` (plotters'
/// own key-point wrapper leaves a linear axis without a formatter).
#[derive(Debug, Clone)]
pub struct Linear {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Linear {
    pub fn new(lo: f64, hi: f64, ticks: Vec<f64>) -> Linear {
        Linear { lo, hi, ticks }
    }

    fn inner(&self) -> plotters::coord::types::RangedCoordf64 {
        (self.lo..self.hi).into()
    }
}

impl Ranged for Linear {
    type ValueType = f64;
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner().map(value, limit)
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // No light points: the charts draw no minor grid.
        if hint.weight().allow_light_points() { Vec::new() } else { self.ticks.clone() }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// A label formatter for an axis whose key points are `ticks`, labelled
/// `labels`: a value on a tick gets its label, any other none.
pub fn at_ticks(ticks: Vec<f64>, labels: Vec<String>) -> impl Fn(&f64) -> String {
    move |v: &f64| {
        let near = |t: &f64| (t - v).abs() <= 1e-9 * t.abs().max(1e-12);
        ticks.iter().position(near).and_then(|i| labels.get(i).cloned()).unwrap_or_default()
    }
}

/// The lowest value a log axis shows for values whose smallest positive
/// one is `min_positive`: a 1, 2 or 5 × a power of ten below 60 % of it,
/// so the smallest value stands clear of the axis, and anything at or
/// below zero (a negative difference: none) is drawn at the floor.
pub fn log_floor(min_positive: f64) -> f64 {
    if !(min_positive > 0.0 && min_positive.is_finite()) {
        return 1.0;
    }
    let target = min_positive * 0.6;
    let power = 10f64.powf(target.log10().floor());
    [5.0, 2.0, 1.0].into_iter().map(|m| m * power).find(|v| *v <= target).unwrap_or(power)
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
    axis_us_at(us, 2)
}

/// [`axis_us`] with up to `decimals` decimals (trailing zeros dropped).
pub fn axis_us_at(us: f64, decimals: usize) -> String {
    let trim = |v: f64, unit: &str| {
        let text = format!("{v:.decimals$}");
        // Trailing zeros of the decimals only: 500 stays 500.
        let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
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
    fn no_tick_label_is_printed_twice() {
        // A narrow linear range: the step's decimals tell the ticks apart.
        let (ticks, decimals) = linear_ticks(0.0, 0.011, 10);
        let labels = distinct_labels(&ticks, decimals, |v, d| format!("{v:.d$} %"));
        assert_eq!(labels, ["0.000 %", "0.002 %", "0.004 %", "0.006 %", "0.008 %", "0.010 %"]);
        // Too few decimals offered: as many more as tell them apart.
        let labels = distinct_labels(&[1000.0, 1500.0, 2000.0], 0, |v, d| format!("{:.d$} ms", v / 1000.0));
        assert_eq!(labels, ["1.0 ms", "1.5 ms", "2.0 ms"], "not 1 ms, 2 ms, 2 ms");
        // Ticks a formatter cannot tell apart: a label is never printed twice.
        let labels = distinct_labels(&[1000.0, 1000.4, 2000.0], 0, |v, _| axis_us(v.round()));
        assert_eq!(labels, ["1 ms", "", "2 ms"]);
        let (ticks, decimals) = linear_ticks(0.0, 187_000.0, 8);
        assert_eq!((ticks.len(), decimals, ticks[1]), (4, 0, 50_000.0), "0, 50,000, 100,000, 150,000");
        assert_eq!(axis_us_at(500.0, 0), "500 µs", "zeros of a whole number stay");
    }

    #[test]
    fn a_log_axis_floor_stands_below_the_smallest_positive_value() {
        assert_eq!(log_floor(0.4), 0.2);
        assert_eq!(log_floor(4.88), 2.0);
        assert_eq!(log_floor(100.0), 50.0);
        // No positive value at all (every figure zero or negative): a unit floor.
        assert_eq!(log_floor(f64::INFINITY), 1.0);
        assert_eq!(log_floor(0.0), 1.0);
        assert_eq!(log_floor(-3.5), 1.0);
    }

    #[test]
    fn thirteen_series_have_thirteen_distinct_colour_and_marker_pairs() {
        let styles: Vec<(RGBColor, Marker)> = (0..13).map(style).collect();
        for (i, a) in styles.iter().enumerate() {
            for b in &styles[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // Two series of one colour never share a marker either, up to 40.
        for i in 0..40 {
            for j in i + 1..40 {
                assert!(style(i) != style(j), "{i} and {j}");
            }
        }
        // The first eight colours are all different.
        let colours: std::collections::BTreeSet<(u8, u8, u8)> =
            (0..8).map(|i| style(i).0).map(|RGBColor(r, g, b)| (r, g, b)).collect();
        assert_eq!(colours.len(), 8);
    }

    #[test]
    fn percentile_labels() {
        let labels: Vec<String> = [1.0, 2.0, 3.0, 4.0].into_iter().map(nines_label).collect();
        assert_eq!(labels, ["90 %", "99 %", "99.9 %", "99.99 %"]);
        assert_eq!(axis_us(2500.0), "2.5 ms");
        assert_eq!(axis_us(1.5e6), "1.5 s");
    }
}
