//! The rig of a run, at the top of its README: what the server was allotted
//! and how often it was throttled, how far the control cell moved, the
//! cells where both sides were saturated, and the environment that moves
//! results (CPU model, sysctls, tree state). Each part is said only when
//! the run recorded it, so an older run renders as it did.

use std::fmt::Write as _;

use crate::flags::NoteKind;
use crate::render::doc::Doc;
use crate::results::Results;

/// Writes the rig's lines into `doc` (nothing when the run recorded none).
pub fn section(results: &Results, doc: &mut Doc) {
    let mut lines: Vec<String> = Vec::new();
    let both = results.cells.iter().filter(|c| c.notes.iter().any(|n| n.kind == NoteKind::BothSaturated)).count();
    if both > 0 {
        lines.push(format!(
            "Both sides saturated in {both} of {} cells (a loadgen thread above 90 % busy while the server used at \
             least 90 % of its allotment): a note, not a flag; the figure is the pair's.",
            results.cells.len()
        ));
    }
    if lines.is_empty() {
        return;
    }
    for line in lines {
        let _ = writeln!(doc, "- {line}");
    }
    doc.push('\n');
}
