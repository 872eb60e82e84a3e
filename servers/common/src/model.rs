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
