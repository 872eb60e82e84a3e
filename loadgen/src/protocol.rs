//! The agent protocol: what a coordinator and its `loadgen agent`s say to
//! each other over TCP, one JSON object per line, each tagged by `msg`.
//!
//! ```text
//! agent → coordinator   hello    {protocol, version, name, index?, host, monotonic_ns}
//! coordinator → agent   heartbeat {monotonic_ns}          1 Hz while it waits for the other agents
//! coordinator → agent   options  {index, count, options, hash}        or refused {reason}, or bye
//! agent → coordinator   ready    {opened_ns}                           its data connections attempted
//! coordinator → agent   heartbeat {monotonic_ns}          1 Hz until the start (the barrier, others' pings)
//! coordinator → agent   ping     {seq, sent_ns}           ×PINGS       clock offset (agent answers pong)
//! agent → coordinator   pong     {seq, sent_ns, agent_ns}
//! coordinator → agent   start    {t0_ns}                               on the agent's own clock
//! agent → coordinator   heartbeat {monotonic_ns}          1 Hz, the only traffic during the load
//! agent → coordinator   mark     {mark: begin|end, monotonic_ns}      the window opens / closes
//! agent → coordinator   report   {report}                              today's report JSON
//! coordinator → agent   bye                                            the agent exits 0
//! ```
//!
//! Either side may end early: the agent with `error {message}` (then it
//! exits 1), the coordinator with `abort {reason}` or by closing the
//! connection (the agent exits 1 at once, whatever it was doing: no agent
//! outlives its coordinator). A `hello` of another protocol or binary
//! version, or `options` whose hash the agent does not compute to the
//! same value (an option this binary does not know), is refused with one
//! line, `refused {reason}`.
//!
//! An agent that gives its `index` (`loadgen agent --index`) is given part
//! `index` of the load, whatever the order the agents dial in; one without
//! takes the lowest part still free. An index no part of this load has
//! (the load has fewer connections than there are agents) is told `bye`
//! instead of options: the agent exits 0 with nothing to do. Before the
//! start, the coordinator says something at least every [`HEARTBEAT`]:
//! an agent that hears nothing for [`COORDINATOR_SILENCE`] gives up, so
//! that no agent waits forever for a coordinator whose host has gone.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::env::Environment;
use crate::{Opts, Report};

/// Bumped whenever a message changes meaning or disappears.
pub const PROTOCOL: u32 = 1;

/// The version of this binary, which agents and coordinator must share.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Round trips used to estimate an agent's clock offset.
pub const PINGS: u32 = 16;

/// How often each side says it is alive while the other waits on it: the
/// agent during the load, the coordinator before the start.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long an agent waits, before the start, for the next word of a
/// coordinator that has its options (a heartbeat, a ping, the start):
/// ten heartbeats, and more than the coordinator's longest wait without
/// one (reading a newcomer's `hello`).
pub const COORDINATOR_SILENCE: Duration = Duration::from_secs(10);

/// Every message, in both directions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "lowercase")]
pub enum Msg {
    Hello {
        protocol: u32,
        version: String,
        name: String,
        /// The part of the load it asks for (`--index`); none: any free one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<u32>,
        host: Environment,
        monotonic_ns: u64,
    },
    Options {
        index: u32,
        count: u32,
        options: Box<Opts>,
        hash: String,
    },
    Refused {
        reason: String,
    },
    Ready {
        opened_ns: u64,
    },
    Ping {
        seq: u32,
        sent_ns: u64,
    },
    Pong {
        seq: u32,
        sent_ns: u64,
        agent_ns: u64,
    },
    Start {
        t0_ns: u64,
    },
    Heartbeat {
        monotonic_ns: u64,
    },
    Mark {
        mark: MarkKind,
        monotonic_ns: u64,
    },
    Report {
        report: Box<Report>,
    },
    Error {
        message: String,
    },
    Abort {
        reason: String,
    },
    Bye,
}

/// An edge of the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarkKind {
    Begin,
    End,
}

impl Msg {
    /// The message as one line, newline included.
    pub fn line(&self) -> String {
        // A message is plain data: serialising it cannot fail.
        let mut line = serde_json::to_string(self).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"));
        line.push('\n');
        line
    }
}

/// The hash of a load's options that both sides compute: FNV-1a (64 bits)
/// of their JSON, in hex. An agent that parsed the options into something
/// else (a field it does not know is dropped) computes another hash.
pub fn options_hash(opts: &Opts) -> String {
    let json = serde_json::to_string(opts).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in json.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Checks a `hello` against this binary: `None` if it may go on, else the
/// reason it is refused (one line).
pub fn check_hello(hello: &serde_json::Value) -> Option<String> {
    let protocol = hello.get("protocol").and_then(serde_json::Value::as_u64);
    let version = hello.get("version").and_then(serde_json::Value::as_str);
    if protocol != Some(u64::from(PROTOCOL)) {
        return Some(format!(
            "agent protocol {}, the coordinator speaks {PROTOCOL}",
            protocol.map_or("unknown".into(), |p| p.to_string())
        ));
    }
    if version != Some(VERSION) {
        return Some(format!("agent loadgen version {}, the coordinator's is {VERSION}", version.unwrap_or("unknown")));
    }
    None
}

/// One round trip: the coordinator sent at `sent_ns`, the agent read its
/// clock at `agent_ns`, the answer came back at `back_ns` (coordinator's
/// clock, CLOCK_MONOTONIC both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundTrip {
    pub sent_ns: u64,
    pub agent_ns: u64,
    pub back_ns: u64,
}

/// An agent's clock against the coordinator's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockOffset {
    /// Agent's clock minus the coordinator's, ns.
    pub offset_ns: i64,
    /// The round trip of the sample it comes from (the shortest), ns: the
    /// offset is right to within half of it.
    pub rtt_ns: u64,
}

impl ClockOffset {
    /// The estimate from the round trip with the shortest time (NTP's
    /// minimum filter): the agent read its clock somewhere in that trip,
    /// taken as its middle; the shorter the trip, the less that can be
    /// wrong. `None` without a sample.
    pub fn estimate(trips: &[RoundTrip]) -> Option<ClockOffset> {
        let best = trips.iter().filter(|t| t.back_ns >= t.sent_ns).min_by_key(|t| t.back_ns - t.sent_ns)?;
        let rtt_ns = best.back_ns - best.sent_ns;
        let middle = best.sent_ns + rtt_ns / 2;
        Some(ClockOffset { offset_ns: best.agent_ns as i64 - middle as i64, rtt_ns })
    }

    /// A coordinator instant on the agent's clock.
    pub fn to_agent(&self, coordinator_ns: u64) -> u64 {
        coordinator_ns.saturating_add_signed(self.offset_ns)
    }

    /// An agent instant on the coordinator's clock.
    pub fn to_coordinator(&self, agent_ns: u64) -> u64 {
        agent_ns.saturating_add_signed(-self.offset_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent 5 s ahead, trips with uneven legs: the estimate comes from
    /// the shortest trip, and is off by at most half of it.
    #[test]
    fn the_offset_comes_from_the_shortest_round_trip() {
        let offset: i64 = 5_000_000_000;
        // (out leg, back leg) in ns: the third trip is the shortest.
        let legs = [(900_000, 100_000), (50_000, 700_000), (20_000, 30_000), (400_000, 400_000)];
        let mut now = 1_000_000_000u64;
        let trips: Vec<RoundTrip> = legs
            .iter()
            .map(|&(out, back)| {
                let trip = RoundTrip {
                    sent_ns: now,
                    agent_ns: (now + out) as i64 as u64 + offset as u64,
                    back_ns: now + out + back,
                };
                now += 10_000_000;
                trip
            })
            .collect();
        let estimate = ClockOffset::estimate(&trips).unwrap();
        assert_eq!(estimate.rtt_ns, 50_000);
        assert!((estimate.offset_ns - offset).unsigned_abs() <= estimate.rtt_ns / 2, "{estimate:?}");
        // The uneven legs of the shortest trip are the whole error: (20 − 30) / 2 µs.
        assert_eq!(estimate.offset_ns - offset, -5_000);
        // The conversions are each other's inverse.
        assert_eq!(estimate.to_coordinator(estimate.to_agent(123_456_789)), 123_456_789);
        assert_eq!(ClockOffset::estimate(&[]), None);
    }

    /// An agent whose clock is behind the coordinator's: a negative offset.
    #[test]
    fn an_agent_behind_has_a_negative_offset() {
        let trip = RoundTrip { sent_ns: 10_000_000_000, agent_ns: 3_000_000_500, back_ns: 10_000_001_000 };
        let estimate = ClockOffset::estimate(&[trip]).unwrap();
        assert_eq!(estimate.offset_ns, -7_000_000_000);
        assert_eq!(estimate.to_agent(10_000_000_000), 3_000_000_000);
    }

    #[test]
    fn a_hello_of_another_version_is_refused_with_one_line() {
        let ok = serde_json::json!({"protocol": PROTOCOL, "version": VERSION});
        assert_eq!(check_hello(&ok), None);
        let old = serde_json::json!({"protocol": PROTOCOL + 1, "version": VERSION});
        let reason = check_hello(&old).unwrap();
        assert!(reason.contains("protocol") && !reason.contains('\n'), "{reason}");
        let other = serde_json::json!({"protocol": PROTOCOL, "version": "0.0.0-other"});
        assert!(check_hello(&other).unwrap().contains("0.0.0-other"));
    }

    #[test]
    fn the_options_hash_tells_options_apart() {
        let opts = Opts::default();
        assert_eq!(options_hash(&opts), options_hash(&opts.clone()));
        assert_ne!(options_hash(&opts), options_hash(&Opts { connections: 51, ..opts }));
    }
}
