//! The README's opening: which model for what, from the scenarios' claims
//! ([`crate::scenario::Scenario::summary`]).
//!
//! Each claim — lowest server CPU per message, lowest p99 at the common
//! load, cheapest idle connection, fastest accepts, … — with its figure,
//! its flags if any, and a link to the table it comes from, the anchor its
//! heading got when the table was written. A claim never rests on a flagged
//! cell unsaid: when the leader's cells carry flags, the claim names them
//! and the best model whose cells carry none.

use std::fmt::Write as _;

use crate::flags::FlagKind;
use crate::render::doc::Doc;
use crate::render::format::transport_words;
use crate::render::marks::{self, mark, words};
use crate::scenario::{Claim, Entry};

/// "† client-bound in 3 of 3 repeats, § connections short in 1 of 3 repeats".
fn flag_words(entry: &Entry, flags: &[(FlagKind, usize)]) -> String {
    let parts: Vec<String> = flags
        .iter()
        .map(|(k, n)| format!("{} {} in {n} of {} repeat(s)", mark(*k), words(*k), entry.repeats))
        .collect();
    parts.join(", ")
}

/// An entry's figure as printed, with the marks of its flags.
fn marked(entry: &Entry, show: fn(f64) -> String) -> String {
    let marks: String = entry.flags.iter().map(|(k, _)| mark(*k)).collect();
    marks::attach(show(entry.stat.median), &marks)
}

/// The section's markdown for `claims` (each with a model ranked), linking
/// to the tables `doc` (the README below it) has written.
pub fn section(claims: &[Claim], doc: &Doc) -> String {
    let Some(first) = claims.first() else { return String::new() };
    let mut md = String::from("## Which model for what\n\n");
    let _ = writeln!(
        md,
        "Generated from the tables below ({}): medians over repeats. A mark after a figure is a validity flag \
         (see the legend under its table); a claim whose leader is flagged says so and names the best unflagged \
         model.\n",
        transport_words(first.table.transport)
    );
    for claim in claims {
        let Some(leader) = claim.leader() else { continue };
        let figure = marked(leader, claim.show);
        let _ = write!(md, "- **{}**: `{}`, {figure}, {}", claim.title, leader.model, claim.conditions);
        if !leader.flags.is_empty() {
            let _ = write!(md, ". Flagged: {}", flag_words(leader, &leader.flags));
            match claim.best_unflagged() {
                Some(best) => {
                    let _ = write!(md, "; the best unflagged: `{}`, {}", best.model, (claim.show)(best.stat.median));
                }
                None => md.push_str("; no model's figure here is unflagged"),
            }
        } else if let Some(next) = claim.ranked.get(1) {
            let overlap = next.stat.min <= leader.stat.max && leader.stat.min <= next.stat.max;
            let _ = write!(md, "; next `{}`, {}", next.model, marked(next, claim.show));
            if overlap && leader.stat.n > 1 {
                md.push_str(" (their min–max ranges overlap)");
            }
        }
        if !leader.other_flags.is_empty() {
            let _ = write!(
                md,
                "; its cells also carry {}, about another of their figures",
                flag_words(leader, &leader.other_flags)
            );
        }
        if let Some(left_out) = &claim.left_out {
            let _ = write!(md, "; {left_out}");
        }
        match doc.anchor(&claim.table) {
            Some(anchor) => {
                let _ = writeln!(md, ". [Table](#{anchor})");
            }
            None => md.push_str(".\n"),
        }
    }
    md.push('\n');
    md
}
