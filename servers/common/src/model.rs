//! The shape of a model's published declaration. The servers' registry
//! makes one per model, from what the model's file declares and what it
//! reads off the model (its datagram design, its options, its child mode);
//! `echo-server list-models --json` prints them all, in the registry's
//! order, and the benchmark reads that list instead of keeping its own.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// What the rest of the suite may know about a model without linking it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The name on the command line, in JSON keys, file names and table
    /// headers: lowercase, `-` between words.
    pub name: Cow<'static, str>,
    /// One line: how the model serves connections.
    pub summary: Cow<'static, str>,
    /// `--max-connections` when not given.
    pub default_max_connections: u64,
    /// Runs child processes: the contract tests expect a process tree, and a
    /// reader of the results knows its memory and CPU are summed over it.
    /// (The servers derive it: the model has a child mode.)
    pub child_processes: bool,
    /// With default options, how many connections it serves at once; the
    /// rest wait, accepted or in the backlog, and get no echo until a served
    /// client leaves. `None`: every connection is served.
    pub serves_at_once: Option<u64>,
    /// The zero of the "CPU per connection" table: the other models' cost
    /// above it is their concurrency overhead (`iterative`).
    #[serde(default)]
    pub baseline: bool,
    /// Binds its TCP listener with SO_REUSEPORT, to open one per worker
    /// (absent in declarations older than the field: false).
    #[serde(default)]
    pub reuse_port: bool,
    /// The model's colour in charts, `#rrggbb`.
    pub colour: Cow<'static, str>,
    /// How the model serves UDP datagrams (`--addr udp:IP:PORT`), in one
    /// line; `None`: it serves streams only and refuses `udp:` (absent in
    /// declarations older than the field: streams only).
    #[serde(default)]
    pub datagrams: Option<Cow<'static, str>>,
    /// Over UDP, takes `--batch N`: up to N datagrams per `recvmmsg` and
    /// `sendmmsg` (absent in older declarations: false). (The servers
    /// derive it: the model's options include `--batch`.)
    #[serde(default)]
    pub datagram_batch: bool,
    /// With default options, how many `--work block:` calls it runs at
    /// once: what a blocking request's throughput rests on (absent in
    /// declarations older than the field: not known).
    #[serde(default)]
    pub blocks_at_once: Option<BlocksAtOnce>,
    /// Takes `--blocking spawn|inline` (absent in older declarations:
    /// false); with `inline` its `block:` work runs on its worker threads,
    /// one per CPU by default, like an event loop's. (The servers derive
    /// it: the model's options include `--blocking`.)
    #[serde(default)]
    pub blocking_choice: bool,
}

/// How many `--work block:` calls a model runs at once with its default
/// options, in terms of what the run gives it: its connections, its CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlocksAtOnce {
    /// One per connection it serves at once (a thread, process or worker
    /// each; `serves_at_once` caps it).
    PerConnection,
    /// One per connection, on a pool of at most this many threads (tokio's
    /// blocking pool).
    PerConnectionUpTo(u64),
    /// One per worker thread, and it starts one worker per CPU it may run
    /// on (an event loop or a coroutine scheduler per CPU, a pool sized to
    /// the CPUs): a call blocks its worker and whatever else that worker
    /// serves.
    PerCpu,
    /// This many, whatever the connections and CPUs (one event loop: 1).
    Threads(u64),
}

impl BlocksAtOnce {
    /// The calls run at once by a model declaring `self`, that serves
    /// `serves_at_once` connections at once (`None`: all), under
    /// `connections` connections on `cpus` CPUs.
    pub fn at(self, connections: u64, serves_at_once: Option<u64>, cpus: u64) -> u64 {
        let served = serves_at_once.map_or(connections, |n| n.min(connections));
        match self {
            BlocksAtOnce::PerConnection => served,
            BlocksAtOnce::PerConnectionUpTo(pool) => served.min(pool),
            BlocksAtOnce::PerCpu => cpus.min(served),
            BlocksAtOnce::Threads(n) => n.min(served),
        }
    }
}

impl ModelInfo {
    /// The colour as RGB bytes; grey if `colour` is not `#rrggbb`.
    pub fn rgb(&self) -> (u8, u8, u8) {
        let hex = self.colour.strip_prefix('#').filter(|h| h.len() == 6 && h.is_ascii());
        let byte = |i: usize| hex.and_then(|h| u8::from_str_radix(&h[i..i + 2], 16).ok());
        match (byte(0), byte(2), byte(4)) {
            (Some(r), Some(g), Some(b)) => (r, g, b),
            _ => (128, 128, 128),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_calls_at_once_follow_connections_and_cpus() {
        use BlocksAtOnce::*;
        assert_eq!(PerConnection.at(100, None, 2), 100);
        assert_eq!(PerConnection.at(100, Some(16), 2), 16);
        assert_eq!(PerConnection.at(10, Some(128), 2), 10);
        assert_eq!(PerConnectionUpTo(512).at(100, None, 2), 100);
        assert_eq!(PerConnectionUpTo(512).at(1000, None, 2), 512);
        assert_eq!(PerCpu.at(100, None, 4), 4);
        assert_eq!(PerCpu.at(2, None, 4), 2);
        assert_eq!(Threads(1).at(100, None, 8), 1);
        let json = serde_json::to_string(&[PerCpu, Threads(1)]).unwrap();
        assert_eq!(json, r#"["per-cpu",{"threads":1}]"#);
    }

    #[test]
    fn colours() {
        let mut info = ModelInfo {
            name: "m".into(),
            summary: "".into(),
            default_max_connections: 1,
            child_processes: false,
            serves_at_once: None,
            baseline: false,
            reuse_port: false,
            colour: "#1f77b4".into(),
            datagrams: None,
            datagram_batch: false,
            blocks_at_once: None,
            blocking_choice: false,
        };
        assert_eq!(info.rgb(), (0x1f, 0x77, 0xb4));
        info.colour = "blue".into();
        assert_eq!(info.rgb(), (128, 128, 128));
    }

    /// A declaration published before the datagram fields reads as a
    /// stream-only model.
    #[test]
    fn older_declarations_are_stream_only() {
        let json = r##"{"name":"m","summary":"","default_max_connections":1,"child_processes":false,
                        "serves_at_once":null,"colour":"#000000"}"##;
        let info: ModelInfo = serde_json::from_str(json).unwrap();
        assert_eq!((info.datagrams, info.datagram_batch), (None, false));
    }
}
