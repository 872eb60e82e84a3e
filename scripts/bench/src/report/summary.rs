//! The summary by model: one row per model of the figures a reader
//! compares first, each column a scenario's ([`crate::scenario::Column`]),
//! from its table below (TCP), led by what this machine measures of the
//! server alone. Only the columns some model has a figure for: a run of
//! one scenario gets that scenario's columns. Validity marks as in the
//! tables.

use std::fmt::Write as _;

use crate::render::doc::Doc;
use crate::render::table::Table;
use crate::scenario::{Column, Report};

/// Writes the section of `columns` into `doc` (nothing if no model has a
/// figure).
pub fn section(r: &Report<'_>, columns: &[Column<'_>], doc: &mut Doc) {
    // One legend for the whole table: every figure's marks go to `notes`.
    let mut notes = r.lookup.notes();
    let mut rows: Vec<(&str, Vec<Option<String>>)> = Vec::new();
    for model in &r.models {
        let row: Vec<Option<String>> = columns.iter().map(|c| (c.figure)(model, &mut notes)).collect();
        if row.iter().any(Option::is_some) {
            rows.push((model.name(), row));
        }
    }
    if rows.is_empty() {
        return;
    }
    let kept: Vec<usize> = (0..columns.len()).filter(|&i| rows.iter().any(|(_, row)| row[i].is_some())).collect();
    let said: Vec<&str> = kept.iter().filter_map(|&i| columns[i].intro.as_deref()).collect();
    // The lead is the server CPU per message, when the run measured it.
    let leads = kept.iter().any(|&i| columns[i].leads);
    let lead = if leads { ", led by what this machine measures of the server alone" } else { "" };
    doc.heading(2, "Summary by model (TCP loopback)");
    let _ = writeln!(doc, "From the tables below{lead}: {}.\n", said.join(", "));
    // Its columns come from different scenarios, measured at different times.
    if let Some(drift) = &r.results.control {
        let _ = writeln!(
            doc,
            "The columns were measured at different times of the run: the control cell moved {:.1} % over it{}.\n",
            100.0 * drift.drift,
            if drift.moved { ", more than the 10 % a comparison across them can bear" } else { "" }
        );
    }
    let headings = kept.iter().map(|&i| format!("{}:", columns[i].heading));
    let mut table = Table::with_notes(std::iter::once("model".to_owned()).chain(headings), notes);
    for (name, mut row) in rows {
        let figures = kept.iter().map(|&i| row[i].take().unwrap_or_else(|| "–".into()));
        table.row(std::iter::once(name.to_owned()).chain(figures));
    }
    doc.push_str(&table.finish());
}
