//! The kit the scenarios render with: number [formats](mod@format), the [`figures`]
//! of the load tables, validity [`marks`] and their legends, a [`table`]
//! builder, the README's [`doc`] with its headings' anchors, chart
//! [`series`] made from a run and the [`charts`] that draw them (with
//! [`plot`]'s pieces). It knows
//! no scenario: what the marks need of one, the registry hands down
//! ([`marks::Lookup`]).

pub mod charts;
pub mod doc;
pub mod figures;
pub mod format;
pub mod marks;
pub mod plot;
pub mod series;
pub mod table;
