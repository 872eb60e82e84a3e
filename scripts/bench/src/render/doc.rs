//! The README being written: its markdown, and the anchor of every heading
//! as it is written (GitHub's: lower case, punctuation dropped, spaces to
//! hyphens, `-1`, `-2` after a repeated one), so that a link to a table is
//! made from the table's identity, never by reading the markdown back.

use std::collections::BTreeMap;
use std::fmt;

use echo_common::Transport;

use crate::load::ScenarioId;

/// A table a link can lead to: its scenario's, over a transport, and which
/// of the scenario's tables (e.g. the message size of a throughput table).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TableId {
    pub scenario: ScenarioId,
    pub transport: Transport,
    pub part: Option<u32>,
}

/// Markdown with its headings' anchors.
#[derive(Debug, Default)]
pub struct Doc {
    md: String,
    /// How many headings had each slug so far.
    seen: BTreeMap<String, usize>,
    /// The anchor of each table's heading.
    tables: BTreeMap<TableId, String>,
}

impl Doc {
    /// Writes a heading of `level` (`#` count) and a blank line; returns its anchor.
    pub fn heading(&mut self, level: usize, text: &str) -> String {
        self.md.push_str(&"#".repeat(level));
        self.md.push(' ');
        self.md.push_str(text);
        self.md.push_str("\n\n");
        let slug = slug(text);
        let n = self.seen.entry(slug.clone()).or_insert(0);
        let anchor = if *n > 0 { format!("{slug}-{n}") } else { slug };
        *n += 1;
        anchor
    }

    /// Writes the heading of table `id` (see [`Doc::heading`]).
    pub fn table_heading(&mut self, level: usize, text: &str, id: TableId) {
        let anchor = self.heading(level, text);
        self.tables.entry(id).or_insert(anchor);
    }

    /// The anchor of table `id`'s heading, if it was written.
    pub fn anchor(&self, id: &TableId) -> Option<&str> {
        self.tables.get(id).map(String::as_str)
    }

    pub fn push_str(&mut self, text: &str) {
        self.md.push_str(text);
    }

    pub fn push(&mut self, ch: char) {
        self.md.push(ch);
    }

    /// The markdown written so far.
    pub fn as_str(&self) -> &str {
        &self.md
    }

    pub fn into_string(self) -> String {
        self.md
    }
}

impl fmt::Write for Doc {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.md.push_str(text);
        Ok(())
    }
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces
/// to hyphens.
pub fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_get_githubs_anchors_and_a_repeated_one_a_number() {
        let mut doc = Doc::default();
        assert_eq!(
            doc.heading(2, "Latency under a fixed load, open loop, TCP loopback (21,094 msg/s, 100 connections, 64 B)"),
            "latency-under-a-fixed-load-open-loop-tcp-loopback-21094-msgs-100-connections-64-b"
        );
        let id = |transport| TableId { scenario: ScenarioId::new("throughput"), transport, part: Some(64) };
        doc.table_heading(3, "64 B messages", id(Transport::Tcp));
        doc.table_heading(3, "64 B messages", id(Transport::Unix));
        assert_eq!(doc.anchor(&id(Transport::Tcp)), Some("64-b-messages"));
        assert_eq!(doc.anchor(&id(Transport::Unix)), Some("64-b-messages-1"));
        assert_eq!(doc.anchor(&TableId { part: None, ..id(Transport::Tcp) }), None);
        assert!(doc.as_str().ends_with("### 64 B messages\n\n### 64 B messages\n\n"));
    }
}
