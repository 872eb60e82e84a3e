//! Chart series made from a run: a line per model over the groups of a
//! scenario, a bar per group, each point or bar hollow where a flag puts
//! it in doubt, and the words every chart of medians shares.

use plotters::style::RGBColor;

use super::charts::{Line, Marker, Point, Row};
use super::marks::Lookup;
use crate::flags::Figure;
use crate::load::LoadKey;
use crate::models::Model;
use crate::results::Cell;
use crate::stats::Stat;

/// A model's colour and marker in every chart: by its place in the run
/// ([`super::plot::style`]: a colour-blind-safe palette and a shape each,
/// so that 11–13 series stay apart). The colour a model declares is not
/// used: declared one by one, the colours were neither colour-blind safe
/// nor distinct enough for a dozen lines.
pub fn style(model: &Model) -> (RGBColor, Marker) {
    super::plot::style(model.rank())
}

/// The colour and marker of the `i`th series of a chart whose series are
/// not models (the udp scenario's variants).
pub fn style_at(i: usize) -> (RGBColor, Marker) {
    super::plot::style(i)
}

/// A model's colour ([`style`]).
pub fn colour(model: &Model) -> RGBColor {
    style(model).0
}

/// A model's marker ([`style`]).
pub fn marker(model: &Model) -> Marker {
    style(model).1
}

/// One line per model (in `models`' order) of the median of `figure`
/// against `x`, a point per group of `groups`, with the min–max range over
/// repeats; a point is hollow when its cells carry a flag that puts `shown`
/// in doubt.
pub fn lines<'a>(
    lookup: &Lookup,
    models: &[Model],
    groups: &[(&'a LoadKey, &'a Vec<&'a Cell>)],
    x: impl Fn(&LoadKey, &[&Cell]) -> Option<f64>,
    figure: impl Fn(&Cell) -> Option<f64>,
    shown: Figure,
) -> Vec<Line> {
    let mut lines = Vec::new();
    for model in models {
        let points: Vec<Point> = groups
            .iter()
            .filter(|(k, _)| k.model == *model)
            .filter_map(|(k, cells)| {
                let s = Stat::over(cells, &figure)?;
                let range = (s.n > 1).then_some((s.min, s.max));
                Some(Point { x: x(k, cells)?, y: s.median, range, hollow: lookup.doubtful(cells, shown) })
            })
            .collect();
        if !points.is_empty() {
            lines.push(line(model, points));
        }
    }
    lines
}

/// `model`'s line through `points`: its name, colour and marker, solid,
/// a marker at every point.
pub fn line(model: &Model, points: Vec<Point>) -> Line {
    let (colour, marker) = style(model);
    Line {
        name: model.name().to_owned(),
        colour,
        marker,
        points,
        labels: Vec::new(),
        ring: None,
        dashed: false,
        markers: true,
    }
}

/// A bar of the median of `figure` over `cells`, its min–max range as a
/// whisker, hollow when a flag puts `shown` in doubt, its value printed by
/// `text` with its marks.
pub fn bar(
    lookup: &Lookup,
    label: String,
    (colour, marker): (RGBColor, Marker),
    cells: &[&Cell],
    figure: impl Fn(&Cell) -> Option<f64>,
    shown: Figure,
    text: impl Fn(f64) -> String,
) -> Option<Row> {
    let s = Stat::over(cells, figure)?;
    Some(Row {
        label,
        colour,
        marker,
        value: s.median,
        range: (s.n > 1 && s.min != s.max).then_some((s.min, s.max)),
        hollow: lookup.doubtful(cells, shown),
        text: lookup.notes().figure(text(s.median), cells, &[shown]),
    })
}

/// How a chart of medians over repeats reads, for its subtitle.
pub fn repeats_words(repeats: u32) -> String {
    match repeats {
        1 => "one run per point".into(),
        n => format!("median of {n} repeats, bars: min–max"),
    }
}

/// The note under a bar chart or a dot plot on its hollow bars or dots,
/// when it has any (a line chart's legend draws a hollow sample itself).
pub fn hollow_notes(any: bool, what: &str) -> Vec<String> {
    if any { vec![format!("hollow {what}: a flagged figure"), "(marks under its table)".into()] } else { Vec::new() }
}

/// `v` with at most `decimals` decimals, trailing zeros dropped: a label
/// of a log axis, whose ticks need different decimals (0.2, 0.5, 1, 2).
pub fn axis_trimmed(v: f64, decimals: usize) -> String {
    let text = format!("{v:.decimals$}");
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_owned() } else { text }
}
