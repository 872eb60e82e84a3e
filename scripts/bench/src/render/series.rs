//! Chart series made from a run: a line per model over the groups of a
//! scenario, a bar per group, each point or bar hollow where a flag puts
//! it in doubt, and the words every chart of medians shares.

use plotters::style::RGBColor;

use super::charts::{Line, Point, Row};
use super::marks::Lookup;
use crate::flags::Figure;
use crate::load::LoadKey;
use crate::models::Model;
use crate::results::Cell;
use crate::stats::Stat;

/// A model's colour, as the server declares it.
pub fn colour(model: &Model) -> RGBColor {
    let (r, g, b) = model.info().rgb();
    RGBColor(r, g, b)
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
            lines.push(Line {
                name: model.name().to_owned(),
                colour: colour(model),
                points,
                dashed: false,
                markers: true,
            });
        }
    }
    lines
}

/// A bar of the median of `figure` over `cells`, its min–max range as a
/// whisker, hollow when a flag puts `shown` in doubt, its value printed by
/// `text` with its marks.
pub fn bar(
    lookup: &Lookup,
    label: String,
    colour: RGBColor,
    cells: &[&Cell],
    figure: impl Fn(&Cell) -> Option<f64>,
    shown: Figure,
    text: impl Fn(f64) -> String,
) -> Option<Row> {
    let s = Stat::over(cells, figure)?;
    Some(Row {
        label,
        colour,
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

/// The legend's note on hollow points (or bars), when a chart has any.
pub fn hollow_notes(any: bool, what: &str) -> Vec<String> {
    if any { vec![format!("hollow {what}: a flagged figure"), "(marks under its table)".into()] } else { Vec::new() }
}

/// Whether any point of `lines` is hollow.
pub fn any_hollow(lines: &[Line]) -> bool {
    lines.iter().any(|l| l.points.iter().any(|p| p.hollow))
}

/// Two decimals at most and no trailing zeros: an axis label.
pub fn axis_decimal(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}
