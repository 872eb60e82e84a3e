//! The kernel's TCP counters that tell what connection churn cost, and on
//! which side: `Tcp:` of `/proc/net/snmp` (opens, failed attempts, resets),
//! `TcpExt:` of `/proc/net/netstat` (TIME_WAIT sockets ended, reused or
//! killed, listen queue overflows) and the number of sockets in TIME_WAIT
//! now, from `/proc/net/sockstat` (`tw`). Read at the start and the end of a
//! window: the counters as a difference, TIME_WAIT as both readings.
//!
//! They cover the whole network namespace (both ends of a loopback test, and
//! anyone else's sockets), like [`crate::snmp`]. A file that does not parse
//! is an error, never a zero that would look like a measurement. (IPv6
//! connections count in the same `Tcp:` and `TcpExt:` counters.)

use std::fs;

use serde::{Deserialize, Serialize};

use crate::procfs::ProcError;

/// `Tcp:` counters.
pub const SNMP: &str = "/proc/net/snmp";
/// `TcpExt:` counters.
pub const NETSTAT: &str = "/proc/net/netstat";
/// Socket counts, TIME_WAIT among them.
pub const SOCKSTAT: &str = "/proc/net/sockstat";

/// The TCP counters a load run reports: cumulative since boot, or the
/// difference between two readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpCounters {
    /// Connections opened by a `connect` (SYN sent).
    pub active_opens: u64,
    /// Connections opened by a listener (SYN received).
    pub passive_opens: u64,
    /// Connection attempts that failed.
    pub attempt_fails: u64,
    /// Established connections reset.
    pub estab_resets: u64,
    /// `TW`: TIME_WAIT sockets that ran their course (the timer expired).
    pub time_wait_ended: u64,
    /// `TWRecycled`: TIME_WAIT sockets whose port a new `connect` took over
    /// (`net.ipv4.tcp_tw_reuse`).
    pub time_wait_reused: u64,
    /// `TWKilled`: TIME_WAIT sockets ended early.
    pub time_wait_killed: u64,
    /// `ListenOverflows`: a handshake completed with the accept queue full.
    pub listen_overflows: u64,
    /// `ListenDrops`: SYNs or handshakes a listener dropped (overflows included).
    pub listen_drops: u64,
}

/// One counter: its group (the table's line prefix, without the colon),
/// its name there, and where it goes.
type Field = (&'static str, &'static str, fn(&mut TcpCounters) -> &mut u64);

/// The fields, by the kernel's names.
const FIELDS: [Field; 9] = [
    ("Tcp", "ActiveOpens", |c| &mut c.active_opens),
    ("Tcp", "PassiveOpens", |c| &mut c.passive_opens),
    ("Tcp", "AttemptFails", |c| &mut c.attempt_fails),
    ("Tcp", "EstabResets", |c| &mut c.estab_resets),
    ("TcpExt", "TW", |c| &mut c.time_wait_ended),
    ("TcpExt", "TWRecycled", |c| &mut c.time_wait_reused),
    ("TcpExt", "TWKilled", |c| &mut c.time_wait_killed),
    ("TcpExt", "ListenOverflows", |c| &mut c.listen_overflows),
    ("TcpExt", "ListenDrops", |c| &mut c.listen_drops),
];

impl TcpCounters {
    /// `self - earlier`, field by field (0 where a counter went backwards).
    pub fn since(&self, earlier: &TcpCounters) -> TcpCounters {
        let mut difference = TcpCounters::default();
        for (_, _, field) in FIELDS {
            let (mut now, mut then) = (*self, *earlier);
            *field(&mut difference) = field(&mut now).saturating_sub(*field(&mut then));
        }
        difference
    }

    /// Field-by-field sum (merging runs of several hosts).
    pub fn add(&mut self, other: &TcpCounters) {
        for (_, _, field) in FIELDS {
            let mut other = *other;
            *field(self) += *field(&mut other);
        }
    }
}

/// Parses the `group` table of `text` (`/proc/net/snmp` or
/// `/proc/net/netstat`) into `counters`, matched by name; how many of
/// [`FIELDS`] it found.
fn parse_group(text: &str, group: &str, counters: &mut TcpCounters) -> Result<usize, String> {
    let mut found = 0;
    for (name, value) in crate::snmp::pairs(text, group)? {
        if let Some((_, _, field)) = FIELDS.iter().find(|(g, n, _)| *g == group && *n == name) {
            // `Tcp: MaxConn` is -1; none of ours is signed.
            *field(counters) = value.parse().map_err(|_| format!("{group} {name} is {value:?}, not a number"))?;
            found += 1;
        }
    }
    Ok(found)
}

/// Parses the texts of `/proc/net/snmp` and `/proc/net/netstat`.
pub fn parse(snmp: &str, netstat: &str) -> Result<TcpCounters, String> {
    let mut counters = TcpCounters::default();
    let found = parse_group(snmp, "Tcp", &mut counters)? + parse_group(netstat, "TcpExt", &mut counters)?;
    if found != FIELDS.len() {
        return Err(format!("{found} of the {} TCP counters (ActiveOpens … ListenDrops)", FIELDS.len()));
    }
    Ok(counters)
}

/// Parses `/proc/net/sockstat`: the sockets in TIME_WAIT (`TCP: … tw N`).
pub fn parse_time_wait(sockstat: &str) -> Result<u64, String> {
    let line = sockstat.lines().find(|l| l.starts_with("TCP:")).ok_or("no TCP: line")?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "tw").ok_or("no tw count on the TCP: line")?;
    let value = words.get(at + 1).ok_or("tw without a count")?;
    value.parse().map_err(|_| format!("tw is {value:?}, not a number"))
}

fn read(path: &str) -> Result<String, ProcError> {
    fs::read_to_string(path).map_err(|source| ProcError::Io { path: path.into(), source })
}

/// Reads the host's TCP counters.
pub fn read_tcp() -> Result<TcpCounters, ProcError> {
    let (snmp, netstat) = (read(SNMP)?, read(NETSTAT)?);
    parse(&snmp, &netstat).map_err(|what| ProcError::Parse { path: format!("{SNMP}, {NETSTAT}"), what })
}

/// Reads the host's number of sockets in TIME_WAIT.
pub fn read_time_wait() -> Result<u64, ProcError> {
    parse_time_wait(&read(SOCKSTAT)?).map_err(|what| ProcError::Parse { path: SOCKSTAT.into(), what })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded on Linux 6.18, shortened (the fields in between dropped).
    const SNMP_TEXT: &str = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
        Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs\n\
        Tcp: 1 200 120000 -1 4210 4185 12 7 1 99871\n\
        Udp: InDatagrams NoPorts\nUdp: 1 2\n";
    const NETSTAT_TEXT: &str = "TcpExt: SyncookiesSent TW TWRecycled TWKilled PAWSActive ListenOverflows ListenDrops\n\
        TcpExt: 0 290796 101402 3 0 48 49\n\
        IpExt: InNoRoutes InTruncatedPkts\nIpExt: 0 0\n";

    #[test]
    fn reads_the_churn_counters_by_name() {
        let c = parse(SNMP_TEXT, NETSTAT_TEXT).unwrap();
        assert_eq!((c.active_opens, c.passive_opens, c.attempt_fails, c.estab_resets), (4210, 4185, 12, 7));
        assert_eq!((c.time_wait_ended, c.time_wait_reused, c.time_wait_killed), (290_796, 101_402, 3));
        assert_eq!((c.listen_overflows, c.listen_drops), (48, 49));
        let tw = "sockets: used 11\nTCP: inuse 1 orphan 0 tw 35140 alloc 1 mem 376\nUDP: inuse 0 mem 62\n";
        assert_eq!(parse_time_wait(tw).unwrap(), 35_140);
    }

    #[test]
    fn garbage_is_an_error_not_a_zero() {
        assert!(parse("Ip: 1\n", NETSTAT_TEXT).is_err(), "no Tcp lines");
        assert!(parse(SNMP_TEXT, &NETSTAT_TEXT.replace(" TWKilled", " TWK")).is_err(), "a counter missing");
        assert!(parse(SNMP_TEXT, &NETSTAT_TEXT.replace("290796", "lots")).is_err());
        assert!(parse(&SNMP_TEXT.replace(" 12 7 1", " 12 7"), NETSTAT_TEXT).is_err(), "a value short");
        assert!(parse_time_wait("TCP: inuse 1 orphan 0 alloc 1\n").is_err());
        assert!(parse_time_wait("TCP: inuse 1 tw x\n").is_err());
    }

    #[test]
    fn differences_and_sums() {
        let a = parse(SNMP_TEXT, NETSTAT_TEXT).unwrap();
        let mut b = a;
        b.active_opens += 100;
        b.time_wait_reused += 40;
        b.estab_resets = 0;
        let d = b.since(&a);
        assert_eq!((d.active_opens, d.time_wait_reused, d.estab_resets, d.passive_opens), (100, 40, 0, 0));
        let mut sum = d;
        sum.add(&d);
        assert_eq!((sum.active_opens, sum.time_wait_reused), (200, 80));
    }

    #[test]
    fn reads_this_host() {
        let first = read_tcp().unwrap();
        let again = read_tcp().unwrap();
        assert!(again.active_opens >= first.active_opens);
        read_time_wait().unwrap();
    }
}
