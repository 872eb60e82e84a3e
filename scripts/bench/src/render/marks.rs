//! Validity flags in the report: one short footnote mark per kind of flag,
//! put after the figure the flag concerns, a legend under every table that
//! uses a mark, and the count of flagged cells by kind that ends the README
//! and the console output.
//!
//! A table row is a group of repeats: it carries a mark when at least one of
//! its repeats carries a flag of that kind.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use loadgen::report::fmt_count;

use crate::flags::{Figure, FlagKind, figure};
use crate::load::LoadKey;
use crate::results::{Cell, Results};

/// What the marks need to know of a cell's scenario, and cannot ask it
/// themselves (the scenarios are built on this kit): the registry hands it
/// down ([`crate::scenarios::lookup`]).
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    /// A cell for a reader, as a legend's example names it.
    pub describe: fn(&LoadKey) -> String,
    /// The figure a cell is read for, whose spread across its repeats is
    /// judged: its scenario's headline.
    pub headline: fn(&LoadKey) -> Figure,
}

impl Lookup {
    /// The figure a flag of `kind` on `cell` is about: as [`figure`], but a
    /// spread is about the figure it was judged on, the cell's headline.
    fn figure_on(&self, kind: FlagKind, cell: &Cell) -> Figure {
        match kind {
            FlagKind::Spread => (self.headline)(&cell.spec.load),
            _ => figure(kind),
        }
    }

    /// Whether a flag of `kind` on `cell` puts `shown` in doubt: a rate is
    /// in doubt when the connections were short too (fewer connections did
    /// the work), a held-connection figure only when connections were short.
    fn concerns(&self, kind: FlagKind, cell: &Cell, shown: Figure) -> bool {
        self.figure_on(kind, cell) == shown || (shown == Figure::Rate && kind == FlagKind::ConnectionsShort)
    }

    /// The kinds of flag of `cells` that concern any of `shown`, in order.
    pub fn kinds_on(&self, cells: &[&Cell], shown: &[Figure]) -> Vec<FlagKind> {
        let concerned = |k: FlagKind| {
            cells.iter().any(|c| c.flags.iter().any(|f| f.kind == k && shown.iter().any(|s| self.concerns(k, c, *s))))
        };
        FlagKind::ALL.into_iter().filter(|k| concerned(*k)).collect()
    }

    /// Whether any of `cells` carries a flag that puts `shown` in doubt: a
    /// chart draws such a point hollow.
    pub fn doubtful(&self, cells: &[&Cell], shown: Figure) -> bool {
        !self.kinds_on(cells, &[shown]).is_empty()
    }

    /// Marks for one table, recorded for its legend.
    pub fn notes(&self) -> Notes {
        Notes { lookup: *self, used: BTreeMap::new() }
    }
}

/// The footnote mark of a kind of flag. `⚠` is also the mark of a wide
/// min–max range the tables compute themselves: the same meaning.
pub fn mark(kind: FlagKind) -> &'static str {
    match kind {
        FlagKind::ClientBound => "†",
        FlagKind::BelowTargetRate => "‡",
        FlagKind::ConnectionsShort => "§",
        FlagKind::LittlesLaw => "¶",
        FlagKind::Spread => "⚠",
        FlagKind::CpuUnmeasurable => "∅",
        FlagKind::SendLate => "⧗",
        FlagKind::AgentSkew => "≠",
    }
}

/// A few words for a reader: the kind's name in the tables' legends.
pub fn words(kind: FlagKind) -> &'static str {
    match kind {
        FlagKind::ClientBound => "client-bound",
        FlagKind::BelowTargetRate => "below its target rate",
        FlagKind::ConnectionsShort => "connections short",
        FlagKind::LittlesLaw => "Little's law off",
        FlagKind::Spread => "wide spread over repeats",
        FlagKind::CpuUnmeasurable => "server CPU not measurable",
        FlagKind::SendLate => "the load generator sent late",
        FlagKind::AgentSkew => "agents out of step",
    }
}

/// What the kind means for the figure it marks.
pub fn meaning(kind: FlagKind) -> &'static str {
    match kind {
        FlagKind::ClientBound => {
            "a load generator thread was busy for nearly the whole window while the server had CPU to spare (under \
             90 % of its allotment): the client set the pace, so the rate is the client's, not the server's"
        }
        FlagKind::BelowTargetRate => "the open loop did not reach its target rate: the latency is not at that load",
        FlagKind::ConnectionsShort => {
            "fewer connections were established, held or served than requested: the figure is of fewer connections"
        }
        FlagKind::LittlesLaw => "connections in flight ≠ rate × mean latency: the rate and the latency disagree",
        FlagKind::Spread => "the repeats differ widely: the median is a rough figure",
        FlagKind::CpuUnmeasurable => {
            "the server's CPU could not be measured over the window, or was read too long after one of its edges"
        }
        FlagKind::AgentSkew => {
            "the agents' marks of the window's edges arrived more than 1 % of the window apart: their windows \
             only partly overlap, and the rate is over the part they share"
        }
        FlagKind::SendLate => {
            "the load generator could not hold its schedule (p99 send lateness above the smaller of 10 % of the \
             per-connection interval and 50 µs): part of the latency is the client's"
        }
    }
}

/// The kinds of flag any of `cells` carries, in [`FlagKind::ALL`] order.
pub fn kinds(cells: &[&Cell]) -> Vec<FlagKind> {
    FlagKind::ALL.into_iter().filter(|k| cells.iter().any(|c| c.flags.iter().any(|f| f.kind == *k))).collect()
}

/// How many of `cells` carry `kind`.
pub fn repeats(cells: &[&Cell], kind: FlagKind) -> usize {
    cells.iter().filter(|c| c.flags.iter().any(|f| f.kind == kind)).count()
}

/// Appends `marks` to a table's figure (one `⚠` at most).
pub fn attach(text: String, marks: &str) -> String {
    let marks: String = if text.ends_with('⚠') { marks.replace('⚠', "") } else { marks.to_owned() };
    if marks.is_empty() { text } else { format!("{text} {marks}") }
}

/// The marks of one table: which kinds it used, how many rows each, and
/// one example per kind in the flag's own words, for the legend.
#[derive(Debug)]
pub struct Notes {
    lookup: Lookup,
    used: BTreeMap<FlagKind, (usize, String)>,
}

impl Notes {
    /// The marks of the flags of `cells` that concern `shown`, recorded for
    /// the legend ("" when none).
    pub fn marks(&mut self, cells: &[&Cell], shown: &[Figure]) -> String {
        let mut out = String::new();
        for kind in self.lookup.kinds_on(cells, shown) {
            let (repeats, example) = self.repeats_with(cells, kind);
            let entry = self.used.entry(kind).or_insert_with(|| (0, String::new()));
            entry.0 += 1;
            if entry.1.is_empty() {
                entry.1 = format!("{repeats} of {} repeat(s) of {}", cells.len(), example);
            }
            out.push_str(mark(kind));
        }
        out
    }

    /// A figure with its marks.
    pub fn figure(&mut self, text: String, cells: &[&Cell], shown: &[Figure]) -> String {
        let marks = self.marks(cells, shown);
        attach(text, &marks)
    }

    /// Whether no mark was used.
    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }

    /// How many of `cells` carry `kind`, and the first one's label and detail.
    fn repeats_with(&self, cells: &[&Cell], kind: FlagKind) -> (usize, String) {
        let mut n = 0;
        let mut example = String::new();
        for cell in cells {
            if let Some(flag) = cell.flags.iter().find(|f| f.kind == kind) {
                n += 1;
                if example.is_empty() {
                    example = format!(
                        "`{}` (repeat {}: {})",
                        (self.lookup.describe)(&cell.spec.load),
                        cell.spec.repeat + 1,
                        flag.detail
                    );
                }
            }
        }
        (n, example)
    }

    /// The legend under a table: one line per mark used ("" when none).
    pub fn legend(&self) -> String {
        let mut md = String::new();
        for (kind, (rows, example)) in &self.used {
            let _ = writeln!(
                md,
                "- {} {} ({} row(s)): {}. E.g. {example}.",
                mark(*kind),
                words(*kind),
                fmt_count(*rows as f64),
                meaning(*kind)
            );
        }
        if !md.is_empty() {
            md.push('\n');
        }
        md
    }
}

/// Cells carrying each kind of flag (a cell counts once per kind).
pub fn counts(results: &Results) -> BTreeMap<FlagKind, usize> {
    let mut counts = BTreeMap::new();
    for cell in &results.cells {
        for kind in kinds(&[cell]) {
            *counts.entry(kind).or_insert(0) += 1;
        }
    }
    counts
}

/// One line for the console: `flags: 67 client_bound, 11 littles_law (of
/// 528 cells)`, or that none was raised.
pub fn console_line(results: &Results) -> String {
    let counts = counts(results);
    let total = fmt_count(results.cells.len() as f64);
    if counts.is_empty() {
        return format!("flags: none (of {total} cells)");
    }
    let parts: Vec<String> =
        counts.iter().map(|(kind, n)| format!("{} {}", fmt_count(*n as f64), kind.name())).collect();
    let flagged = results.cells.iter().filter(|c| !c.flags.is_empty()).count();
    format!("flags: {} (cells; {} of {total} cells carry at least one)", parts.join(", "), fmt_count(flagged as f64))
}

/// The README's closing section: cells per kind of flag.
pub fn section(results: &Results) -> String {
    let counts = counts(results);
    let total = fmt_count(results.cells.len() as f64);
    let mut md = String::from("## Flags by kind\n\n");
    if counts.is_empty() {
        let _ = writeln!(md, "No cell of the {total} carries a flag.");
        return md;
    }
    let flagged = results.cells.iter().filter(|c| !c.flags.is_empty()).count();
    let _ = writeln!(
        md,
        "{} of the {total} cells carry at least one flag; a flag never hides a figure, it says what the figure is \
         worth.\n",
        fmt_count(flagged as f64)
    );
    md.push_str("| mark | flag | cells | meaning |\n|---|---|---:|---|\n");
    for (kind, n) in &counts {
        let _ = writeln!(md, "| {} | `{}` | {} | {} |", mark(*kind), kind.name(), fmt_count(*n as f64), meaning(*kind));
    }
    md
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::flags::Flag;

    fn flag(kind: FlagKind, detail: &str) -> Flag {
        Flag { kind, figure: 0.97, threshold: 0.9, detail: detail.into() }
    }

    #[test]
    fn one_warning_sign_per_figure() {
        assert_eq!(attach("44,004 (38,984–49,024) ⚠".into(), "†⚠"), "44,004 (38,984–49,024) ⚠ †");
        assert_eq!(attach("44,004".into(), "⚠"), "44,004 ⚠");
        assert_eq!(attach("44,004 ⚠".into(), "⚠"), "44,004 ⚠");
        assert_eq!(attach("–".into(), ""), "–");
    }

    #[test]
    fn the_console_and_the_readme_end_with_the_count_by_kind() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results.json");
        let mut results = Results::load(&path).expect("the fixture loads");
        for cell in &mut results.cells {
            cell.flags.clear();
        }
        let n = results.cells.len();
        assert_eq!(console_line(&results), format!("flags: none (of {n} cells)"));
        assert!(section(&results).contains(&format!("No cell of the {n} carries a flag.")));
        // Two kinds on one cell, one on another: 2 cells flagged, counted per kind.
        results.cells[0].flags.push(flag(FlagKind::ClientBound, "a"));
        results.cells[0].flags.push(flag(FlagKind::CpuUnmeasurable, "b"));
        results.cells[1].flags.push(flag(FlagKind::ClientBound, "c"));
        assert_eq!(
            console_line(&results),
            format!("flags: 2 client_bound, 1 cpu_unmeasurable (cells; 2 of {n} cells carry at least one)")
        );
        let md = section(&results);
        assert!(md.contains("| † | `client_bound` | 2 |") && md.contains("| ∅ | `cpu_unmeasurable` | 1 |"), "{md}");
    }

    #[test]
    fn every_kind_has_its_own_mark() {
        let marks: std::collections::BTreeSet<&str> = FlagKind::ALL.iter().map(|k| mark(*k)).collect();
        assert_eq!(marks.len(), FlagKind::ALL.len());
    }
}
