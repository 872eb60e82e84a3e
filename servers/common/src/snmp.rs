//! The kernel's UDP counters, from `/proc/net/snmp` (IPv4: the `Udp:` lines)
//! and `/proc/net/snmp6` (IPv6: the `Udp6…` lines). Read at the start and
//! the end of a window, their difference tells a loss at the server's
//! socket (`RcvbufErrors`: a receive buffer was full) from one at the
//! sender (`SndbufErrors`), which a load generator cannot see otherwise.
//!
//! The counters are the whole network namespace's — every UDP socket on the
//! host, not only the ones of one run — so a busy neighbour shows in them
//! too. As in [`crate::procfs`], a file that does not parse is an error,
//! never a zero that would look like a measurement.

use std::fs;

use serde::{Deserialize, Serialize};

use crate::procfs::ProcError;

/// IPv4 UDP counters.
pub const SNMP: &str = "/proc/net/snmp";
/// IPv6 UDP counters.
pub const SNMP6: &str = "/proc/net/snmp6";

/// The UDP counters a load run reports (cumulative since boot, or a
/// difference between two readings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdpCounters {
    /// Datagrams delivered to a socket.
    pub in_datagrams: u64,
    /// Datagrams to a port nobody listens on (answered with ICMP unreachable).
    pub no_ports: u64,
    /// Datagrams received but not delivered (includes the buffer errors).
    pub in_errors: u64,
    /// Datagrams sent.
    pub out_datagrams: u64,
    /// Received datagrams dropped because the socket's receive buffer was full.
    pub rcvbuf_errors: u64,
    /// Datagrams not sent because the socket's send buffer was full.
    pub sndbuf_errors: u64,
}

impl UdpCounters {
    /// `self - earlier`, field by field (0 where a counter went backwards:
    /// it wrapped, or the namespace changed).
    pub fn since(&self, earlier: &UdpCounters) -> UdpCounters {
        UdpCounters {
            in_datagrams: self.in_datagrams.saturating_sub(earlier.in_datagrams),
            no_ports: self.no_ports.saturating_sub(earlier.no_ports),
            in_errors: self.in_errors.saturating_sub(earlier.in_errors),
            out_datagrams: self.out_datagrams.saturating_sub(earlier.out_datagrams),
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(earlier.rcvbuf_errors),
            sndbuf_errors: self.sndbuf_errors.saturating_sub(earlier.sndbuf_errors),
        }
    }

    /// Field-by-field sum (merging runs of several hosts).
    pub fn add(&mut self, other: &UdpCounters) {
        self.in_datagrams += other.in_datagrams;
        self.no_ports += other.no_ports;
        self.in_errors += other.in_errors;
        self.out_datagrams += other.out_datagrams;
        self.rcvbuf_errors += other.rcvbuf_errors;
        self.sndbuf_errors += other.sndbuf_errors;
    }

    /// Sets the field named `name` (the kernel's name, without the `Udp6`
    /// prefix); `false` for a field the report does not use.
    fn set(&mut self, name: &str, value: u64) -> bool {
        let field = match name {
            "InDatagrams" => &mut self.in_datagrams,
            "NoPorts" => &mut self.no_ports,
            "InErrors" => &mut self.in_errors,
            "OutDatagrams" => &mut self.out_datagrams,
            "RcvbufErrors" => &mut self.rcvbuf_errors,
            "SndbufErrors" => &mut self.sndbuf_errors,
            _ => return false,
        };
        *field = value;
        true
    }
}

/// Fields every reading must have.
const REQUIRED: usize = 6;

/// The `(name, value)` pairs of a `/proc/net/snmp`-style table: the first
/// line whose first word is `{group}:` names the fields, the next one holds
/// their values (`Udp:` and `Tcp:` in `/proc/net/snmp`, `TcpExt:` in
/// `/proc/net/netstat`).
pub(crate) fn pairs<'t>(text: &'t str, group: &str) -> Result<Vec<(&'t str, &'t str)>, String> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.split_whitespace().next() == Some(prefix.as_str()));
    let names = lines.next().ok_or_else(|| format!("no {prefix} lines"))?;
    let values = lines.next().ok_or_else(|| format!("a {prefix} header without values"))?;
    let names: Vec<&str> = names.split_whitespace().skip(1).collect();
    let values: Vec<&str> = values.split_whitespace().skip(1).collect();
    if names.len() != values.len() {
        return Err(format!("{} {group} field names but {} values", names.len(), values.len()));
    }
    Ok(names.into_iter().zip(values).collect())
}

/// Parses `/proc/net/snmp`: the `Udp:` header line (field names) and the
/// `Udp:` line after it (values), matched by name, not position.
pub fn parse_snmp(text: &str) -> Result<UdpCounters, String> {
    let mut counters = UdpCounters::default();
    let mut found = 0;
    for (name, value) in pairs(text, "Udp")? {
        let value = value.parse().map_err(|_| format!("Udp {name} is {value:?}, not a number"))?;
        found += usize::from(counters.set(name, value));
    }
    complete(counters, found, "Udp")
}

/// Parses `/proc/net/snmp6`: one `Udp6Name value` pair per line.
pub fn parse_snmp6(text: &str) -> Result<UdpCounters, String> {
    let mut counters = UdpCounters::default();
    let mut found = 0;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(key), Some(value)) = (words.next(), words.next()) else { continue };
        let Some(name) = key.strip_prefix("Udp6") else { continue };
        let value = value.parse().map_err(|_| format!("{key} is {value:?}, not a number"))?;
        found += usize::from(counters.set(name, value));
    }
    complete(counters, found, "Udp6")
}

fn complete(counters: UdpCounters, found: usize, what: &str) -> Result<UdpCounters, String> {
    if found != REQUIRED {
        return Err(format!("{found} of the {REQUIRED} {what} counters (InDatagrams … SndbufErrors)"));
    }
    Ok(counters)
}

/// Reads the host's UDP counters: IPv6 (`/proc/net/snmp6`) or IPv4.
pub fn read_udp(ipv6: bool) -> Result<UdpCounters, ProcError> {
    let path = if ipv6 { SNMP6 } else { SNMP };
    let text = fs::read_to_string(path).map_err(|source| ProcError::Io { path: path.into(), source })?;
    let parsed = if ipv6 { parse_snmp6(&text) } else { parse_snmp(&text) };
    parsed.map_err(|what| ProcError::Parse { path: path.into(), what })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded on Linux 6.18 (Ip/Icmp lines shortened; Udp and UdpLite whole).
    const SNMP_TEXT: &str = "Ip: Forwarding DefaultTTL InReceives\nIp: 1 64 1234\n\
        Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
        Udp: 104331 7 2519 104402 2500 19 0 0 0\n\
        UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
        UdpLite: 0 0 0 0 0 0 0 0 0\n";
    const SNMP6_TEXT: &str = "Ip6InReceives                   \t88\n\
        Udp6InDatagrams                 \t512\nUdp6NoPorts                     \t3\n\
        Udp6InErrors                    \t40\nUdp6OutDatagrams                \t515\n\
        Udp6RcvbufErrors                \t40\nUdp6SndbufErrors                \t0\n\
        Udp6InCsumErrors                \t0\nUdp6IgnoredMulti                \t0\nUdp6MemErrors                   \t0\n\
        UdpLite6InDatagrams             \t0\n";

    #[test]
    fn reads_udp_not_udplite_by_name() {
        let expected = UdpCounters {
            in_datagrams: 104_331,
            no_ports: 7,
            in_errors: 2519,
            out_datagrams: 104_402,
            rcvbuf_errors: 2500,
            sndbuf_errors: 19,
        };
        assert_eq!(parse_snmp(SNMP_TEXT).unwrap(), expected);
        let v6 = parse_snmp6(SNMP6_TEXT).unwrap();
        assert_eq!((v6.in_datagrams, v6.no_ports, v6.in_errors, v6.rcvbuf_errors), (512, 3, 40, 40));
    }

    #[test]
    fn garbage_is_an_error_not_a_zero() {
        assert!(parse_snmp("Ip: Forwarding\nIp: 1\n").is_err(), "no Udp lines");
        assert!(parse_snmp(&SNMP_TEXT.replace("Udp: 104331", "Udp: x104331")).is_err());
        assert!(parse_snmp(&SNMP_TEXT.replace(" 2500 19 0 0 0", " 2500 19 0 0")).is_err(), "a value short");
        assert!(parse_snmp(&SNMP_TEXT.replace("RcvbufErrors", "Rcvbuf")).is_err(), "a counter missing");
        assert!(parse_snmp6(&SNMP6_TEXT.replace("\t40\nUdp6OutDatagrams", "\tlots\nUdp6OutDatagrams")).is_err());
        assert!(parse_snmp6("Ip6InReceives 1\n").is_err());
    }

    #[test]
    fn differences_never_go_negative() {
        let (a, mut b) = (parse_snmp(SNMP_TEXT).unwrap(), parse_snmp(SNMP_TEXT).unwrap());
        b.rcvbuf_errors += 5;
        b.in_errors = 0;
        let d = b.since(&a);
        assert_eq!((d.rcvbuf_errors, d.in_errors, d.in_datagrams), (5, 0, 0));
    }

    #[test]
    fn reads_this_host() {
        // Both files exist on every Linux with IPv4 and IPv6; the counters
        // only ever grow.
        for ipv6 in [false, true] {
            let first = read_udp(ipv6).unwrap();
            let again = read_udp(ipv6).unwrap();
            assert!(again.in_datagrams >= first.in_datagrams && again.out_datagrams >= first.out_datagrams);
        }
    }
}
