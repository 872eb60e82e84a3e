//! The kernel's TCP counters over the measured window (TCP runs): how many
//! connections were opened and reset, what became of the TIME_WAIT sockets
//! (ended, reused by a new `connect`, killed), listen queue overflows, and
//! the TIME_WAIT sockets present when the window opened and closed. What
//! churn costs shows here: the side that closes first keeps the TIME_WAIT
//! socket, and a client that holds tens of thousands of them pays for each
//! `connect` in a longer search for a free port.
//!
//! Host-wide (the network namespace's), like the UDP counters: on loopback
//! both ends count, and so does anyone else's traffic.

use echo_common::tcpstat::{self, TcpCounters};
use serde::{Deserialize, Serialize};

/// The TCP counters over a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelTcp {
    /// `/proc/net/snmp Tcp, /proc/net/netstat TcpExt`.
    pub source: String,
    /// `host`: what the counters cover.
    pub scope: String,
    /// The differences over the window, flattened into this object.
    #[serde(flatten)]
    pub counters: TcpCounters,
    /// Sockets in TIME_WAIT when the window opened (`/proc/net/sockstat`).
    pub time_wait_at_open: u64,
    /// …and when it closed.
    pub time_wait_at_close: u64,
}

/// The readings taken when the window opened.
#[derive(Debug)]
pub struct TcpWindow {
    opened: Result<(TcpCounters, u64), String>,
}

impl TcpWindow {
    /// Reads the counters now.
    pub fn open() -> TcpWindow {
        TcpWindow { opened: read() }
    }

    /// Reads them again: the window's figures, or why there are none.
    pub fn close(self) -> Result<KernelTcp, String> {
        let (closed, time_wait_at_close) = read()?;
        let (opened, time_wait_at_open) = self.opened?;
        Ok(KernelTcp {
            source: format!("{} Tcp, {} TcpExt, {} tw", tcpstat::SNMP, tcpstat::NETSTAT, tcpstat::SOCKSTAT),
            scope: "host".into(),
            counters: closed.since(&opened),
            time_wait_at_open,
            time_wait_at_close,
        })
    }
}

fn read() -> Result<(TcpCounters, u64), String> {
    let counters = tcpstat::read_tcp().map_err(|e| e.to_string())?;
    let time_wait = tcpstat::read_time_wait().map_err(|e| e.to_string())?;
    Ok((counters, time_wait))
}
