//! The rig of a run, at the top of its README: what the server was allotted
//! and how often it was throttled, how far the control cell moved, the
//! cells where both sides were saturated, and the environment that moves
//! results (CPU model, sysctls, tree state). Each part is said only when
//! the run recorded it, so an older run renders as it did.

use std::fmt::Write as _;

use crate::flags::NoteKind;
use crate::quota::Throttling;
use crate::render::doc::Doc;
use crate::results::Results;

/// What the servers were allotted, and how often the quota ran out.
fn quota_line(results: &Results) -> Option<String> {
    let q = results.settings.server_quota.as_ref()?;
    let scenarios = q.scenarios.join(" and ");
    if let Some(why) = &q.unavailable {
        return Some(format!(
            "**Server CPU quota unavailable here** ({why}): the servers of the {scenarios} scenarios ran \
             unthrottled, on all of their CPUs; a saturated msg/s there may be the load generator's."
        ));
    }
    let Some(cpus) = q.cpus else {
        return Some(format!(
            "No server CPU quota (`--server-quota none`): the servers of the {scenarios} scenarios used all of their \
             CPUs; a saturated msg/s there may be the load generator's."
        ));
    };
    let throttled: Vec<&Throttling> = results.cells.iter().filter_map(|c| c.quota.as_ref()).collect();
    let periods: u64 = throttled.iter().map(|t| t.periods).sum();
    let hit: u64 = throttled.iter().map(|t| t.throttled_periods).sum();
    let secs: f64 = throttled.iter().map(|t| t.throttled_secs).sum();
    let period = q.period_us.map_or(String::new(), |p| format!(" per {} ms period", p as f64 / 1000.0));
    let how = q.mechanism.as_deref().map_or(String::new(), |m| format!(", {m}"));
    let mut line = format!(
        "Server CPU quota: {cpus} CPU{period} in the {scenarios} scenarios{how}: their msg/s is the server's, and its \
         CPU figures read against that allotment."
    );
    if periods > 0 {
        line.push_str(&format!(
            " Over their {} cells' windows the quota ran out in {:.0} % of the periods with work ({secs:.2} s \
             throttled in all).",
            throttled.len(),
            100.0 * hit as f64 / periods as f64
        ));
    }
    Some(line)
}

/// Writes the rig's lines into `doc` (nothing when the run recorded none).
pub fn section(results: &Results, doc: &mut Doc) {
    let mut lines: Vec<String> = Vec::new();
    if let Some(line) = quota_line(results) {
        lines.push(line);
    }
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
