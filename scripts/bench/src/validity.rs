//! What can make a cell's figures untrustworthy, as structured flags that
//! travel with the cell into results.json, the tables and the charts.
//!
//! A flag never hides a figure: it says what the figure is worth.

use serde::{Deserialize, Serialize};

/// One kind of problem a cell can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// A load generator thread was busy for at least the threshold share of
    /// the window: the client, not only the server, may have set the pace.
    ClientBound,
    /// An open-loop cell achieved less than the threshold share of its
    /// target rate.
    BelowTargetRate,
    /// Fewer connections were established, or held, than requested.
    ConnectionsShort,
    /// Little's law (in flight = rate × mean latency) is off by more than
    /// the threshold: the latency and the rate disagree.
    LittlesLaw,
    /// The repeats of this cell differ by more than the threshold
    /// ((max − min) / median of the headline figure).
    Spread,
    /// The server's CPU could not be measured over the window.
    CpuUnmeasurable,
}

impl FlagKind {
    pub const ALL: [FlagKind; 6] = [
        FlagKind::ClientBound,
        FlagKind::BelowTargetRate,
        FlagKind::ConnectionsShort,
        FlagKind::LittlesLaw,
        FlagKind::Spread,
        FlagKind::CpuUnmeasurable,
    ];

    /// The short name, as in results.json.
    pub fn name(self) -> &'static str {
        match self {
            FlagKind::ClientBound => "client_bound",
            FlagKind::BelowTargetRate => "below_target_rate",
            FlagKind::ConnectionsShort => "connections_short",
            FlagKind::LittlesLaw => "littles_law",
            FlagKind::Spread => "spread",
            FlagKind::CpuUnmeasurable => "cpu_unmeasurable",
        }
    }
}

/// One problem of one cell: what was measured against what limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    pub kind: FlagKind,
    /// The measured figure (a share, a count or a ratio, per kind).
    pub figure: f64,
    /// The limit it crossed, in the same unit.
    pub threshold: f64,
    /// One line for a reader, e.g. "busiest loadgen thread 97 % ≥ 90 %".
    pub detail: String,
}
