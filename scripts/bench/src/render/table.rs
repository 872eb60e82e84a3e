//! A README table: its columns, its rows, and the validity marks its
//! figures carry, explained in a legend under it.

use std::fmt::Write as _;

use super::marks::{Lookup, Notes};
use crate::flags::Figure;
use crate::results::Cell;

/// A table being filled.
#[derive(Debug)]
pub struct Table {
    md: String,
    notes: Notes,
}

impl Table {
    /// A table of `columns`: a name ending in `:` is a right-aligned column
    /// (figures), as markdown's `---:` is; the others are left-aligned (names).
    pub fn new<S: AsRef<str>>(lookup: &Lookup, columns: impl IntoIterator<Item = S>) -> Table {
        Table::with_notes(columns, lookup.notes())
    }

    /// A table of `columns` whose legend explains `notes` (marks its
    /// figures took before the table was laid out) and those it records.
    pub fn with_notes<S: AsRef<str>>(columns: impl IntoIterator<Item = S>, notes: Notes) -> Table {
        let (mut head, mut rule) = (String::from("|"), String::from("|"));
        for column in columns {
            let column = column.as_ref();
            match column.strip_suffix(':') {
                Some(name) => {
                    let _ = write!(head, " {name} |");
                    rule.push_str("---:|");
                }
                None => {
                    let _ = write!(head, " {column} |");
                    rule.push_str("---|");
                }
            }
        }
        Table { md: format!("{head}\n{rule}\n"), notes }
    }

    /// `text` with the marks of the flags of `cells` that concern `shown`,
    /// recorded for the legend.
    pub fn mark(&mut self, text: String, cells: &[&Cell], shown: &[Figure]) -> String {
        self.notes.figure(text, cells, shown)
    }

    /// A row of `cells`, in the columns' order.
    pub fn row<S: AsRef<str>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.md.push('|');
        for cell in cells {
            let _ = write!(self.md, " {} |", cell.as_ref());
        }
        self.md.push('\n');
    }

    /// The table, a blank line, and the legend of the marks it used.
    pub fn finish(self) -> String {
        format!("{}\n{}", self.md, self.notes.legend())
    }
}
