//! What can make a cell's figures untrustworthy, as structured flags that
//! travel with the cell into results.json, the tables and the charts: the
//! kinds, their thresholds, and the figure each is about. Which flags a
//! cell earns is [`crate::validity`]'s.
//!
//! A flag never hides a figure: it says what the figure is worth.

use serde::{Deserialize, Serialize};

/// One kind of problem a cell can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// A load generator thread was busy for more than the threshold share of
    /// the window while the server used less than [`SERVER_BELOW_ALLOTMENT`]
    /// of its allotted CPU: the client set the pace.
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
    /// The server's CPU could not be measured over the window, or was read
    /// more than [`EDGE_READ`] of it after one of the window's edges.
    CpuUnmeasurable,
    /// Open loop: the load generator could not hold its schedule (the p99
    /// of its send lateness above loadgen's limit): its own lateness, not
    /// the server's, delayed sends.
    SendLate,
    /// Several agents: their marks of the window's edges reached the bench
    /// further apart than the threshold share of the window.
    AgentSkew,
}

impl FlagKind {
    pub const ALL: [FlagKind; 8] = [
        FlagKind::ClientBound,
        FlagKind::BelowTargetRate,
        FlagKind::ConnectionsShort,
        FlagKind::LittlesLaw,
        FlagKind::Spread,
        FlagKind::CpuUnmeasurable,
        FlagKind::SendLate,
        FlagKind::AgentSkew,
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
            FlagKind::SendLate => "send_late",
            FlagKind::AgentSkew => "agent_skew",
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

/// CPU unmeasurable: the CPU of an edge reading (one process after another)
/// read more than this share of the window after the edge. The server's
/// CPU is then of an interval up to that far from the window its messages
/// were counted in.
pub const EDGE_READ: f64 = 0.01;

/// Client-bound: the busiest load generator thread's share of the window
/// above this (loadgen's own warning threshold).
pub const CLIENT_BOUND: f64 = loadgen::report::BUSY_CLIENT;
/// Below target: achieved ÷ target rate under this (open loop; loadgen's).
pub const BELOW_TARGET_RATE: f64 = loadgen::report::RATE_SHORTFALL;
/// Client-bound needs the server below this share of its CPU allotment (its
/// quota, or its CPUs when unthrottled): a server at its allotment was the
/// limiter too, and a busy client beside it is a note
/// ([`NoteKind::BothSaturated`]), not a flag. 90 %: the sampler reads the
/// server's exact CPU clocks at the window's edges, so a saturated server
/// reads within a few per cent of its allotment (a throttled one within a
/// period's worth), never 10 % under it.
pub const SERVER_BELOW_ALLOTMENT: f64 = 0.90;
/// Little's law: |throughput × mean latency ÷ messages in flight − 1| above
/// this plus the window's edge error (loadgen's; the figure is
/// [`loadgen::Report::littles_law_offset`], the limit
/// [`loadgen::Report::littles_law_tolerance`]).
pub const LITTLES_LAW: f64 = loadgen::report::LITTLE_TOLERANCE;
/// Spread: (max − min) ÷ median of the headline figure over the repeats
/// above this (the tables mark such a range ⚠ too).
pub const SPREAD: f64 = 0.20;
/// Agent skew: the spread of the agents' mark arrivals ÷ the window above
/// this (the coordinator's limit).
pub const AGENT_SKEW: f64 = loadgen::coordinator::SKEW_LIMIT;
impl Flag {
    pub fn new(kind: FlagKind, figure: f64, threshold: f64, detail: String) -> Flag {
        Flag { kind, figure, threshold, detail }
    }
}

/// Something worth knowing about a cell that does not put its figures in
/// doubt: recorded with it, counted in the README's header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub kind: NoteKind,
    /// One line for a reader, with the figures that raised it.
    pub detail: String,
}

/// One kind of note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// A load generator thread was as busy as [`CLIENT_BOUND`] while the
    /// server used at least [`SERVER_BELOW_ALLOTMENT`] of its allotment:
    /// both sides were saturated, and the figure is the pair's.
    BothSaturated,
    /// The cell's scenario takes the server's CPU quota, the run asked for
    /// one, and this machine could not apply it: its server ran unthrottled.
    Unthrottled,
    /// The model serves a fixed number of connections at once (its
    /// declaration's `serves_at_once`: iterative 1, prefork 16), it served
    /// exactly that many, and every other connection waited, none refused
    /// or closed: the shortfall is the model, not a fault of the cell. Said
    /// instead of `connections_short`, and of `littles_law` (the waiting
    /// connections' messages are in flight and never complete).
    ServesAtOnce,
}

impl NoteKind {
    /// The short name, as in results.json.
    pub fn name(self) -> &'static str {
        match self {
            NoteKind::BothSaturated => "both_saturated",
            NoteKind::Unthrottled => "unthrottled",
            NoteKind::ServesAtOnce => "serves_at_once",
        }
    }
}

/// The figure of a table row (or the point of a chart) a kind of flag is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// The headline rate: msg/s, connections/s.
    Rate,
    /// Latency percentiles.
    Latency,
    /// Server CPU per message or per connection.
    Cpu,
    /// Connections held (capacity), and what is divided by them.
    Held,
}

/// The figure `kind` is about.
pub fn figure(kind: FlagKind) -> Figure {
    match kind {
        FlagKind::ClientBound | FlagKind::BelowTargetRate | FlagKind::Spread | FlagKind::AgentSkew => Figure::Rate,
        FlagKind::ConnectionsShort => Figure::Held,
        FlagKind::LittlesLaw | FlagKind::SendLate => Figure::Latency,
        FlagKind::CpuUnmeasurable => Figure::Cpu,
    }
}
