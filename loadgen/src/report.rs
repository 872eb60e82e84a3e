//! The result of a run: one serde struct, which *is* the JSON schema
//! (documented in `loadgen/README.md`, version [`SCHEMA_VERSION`]), built
//! from the threads' recorders, merged across runs, and printed for people.

use std::io::{self, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use echo_common::Transport;
use echo_common::snmp::UdpCounters;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::env::Environment;
use crate::opts::Opts;
use crate::stats::{Connects, Datagrams, Requests};

/// Bumped whenever a field changes meaning or disappears. 2: UDP results
/// (`transport` `udp`, the `datagrams` section, `requests` counting
/// datagrams). 3: open-loop latency charges the server only (a message held
/// back counts from its intended time, the client's own lateness never
/// counts), `send_lateness_us`, `config.arrivals`, `seed`, `window`.
pub const SCHEMA_VERSION: u32 = 3;

/// Little's law may be off by this fraction before we warn (plus the
/// window's edge error: [`Report::littles_law_tolerance`]).
pub const LITTLE_TOLERANCE: f64 = 0.10;
/// The most the window's edges add to [`LITTLE_TOLERANCE`].
pub const LITTLE_EDGES_AT_MOST: f64 = 0.5;
/// Per-thread CPU utilisation above which the client may be the bottleneck.
pub const BUSY_CLIENT: f64 = 0.90;
/// Open loop: achieved/target rate below which we warn.
pub const RATE_SHORTFALL: f64 = 0.99;
/// Open loop: the pacer could not hold the schedule when the p99 of its
/// send lateness exceeds this fraction of the per-connection interval…
pub const LATE_FRACTION: f64 = 0.10;
/// …or this many µs, whichever is smaller.
pub const LATE_MAX_US: u64 = 50;

/// One run's (or a merge's) results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    /// Every option of the run. After a merge, `connections` is the sum.
    pub config: Opts,
    /// `closed`, `open`, `closed-churn` or `open-churn`.
    pub mode: String,
    /// `tcp` or `unix` (from `config.addr`); absent in files older than the
    /// field, which were all TCP.
    #[serde(default)]
    pub transport: Transport,
    pub environment: Environment,
    pub connections: Connections,
    pub requests: Requests,
    /// UDP only: what became of the datagrams, and the kernel's drop
    /// counters; `null` for a stream (absent in files older than schema 2).
    #[serde(default)]
    pub datagrams: Option<DatagramReport>,
    /// Wall time of the measured window, as measured (shorter than
    /// `config.duration_secs` if every connection stopped early).
    pub duration_secs: f64,
    pub throughput: Throughput,
    /// Latency of ok requests; in open loop from the intended send time.
    pub latency_us: LatencySummary,
    /// Open loop only: latency from the actual send time.
    pub latency_raw_us: Option<LatencySummary>,
    /// Connect time of the connections made during the window (churn and reconnections).
    pub connect_us: Option<LatencySummary>,
    /// Open loop only: how late the messages that were free to leave on
    /// time left, after their intended time (the pacer's own lateness, never
    /// charged to the server). `null` in closed loop.
    #[serde(default)]
    pub send_lateness_us: Option<LatencySummary>,
    pub per_connection: PerConnection,
    pub client_cpu: ClientCpu,
    /// One entry per second of the measured window.
    pub timeline: Vec<TimelineEntry>,
    /// When the measured window opened and closed, in nanoseconds of the
    /// host's CLOCK_MONOTONIC: the timeline's absolute times, which a merge
    /// of several processes lines up (`null` in files older than the field).
    #[serde(default)]
    pub window_monotonic_ns: Option<[u64; 2]>,
    /// `latency_us` as an HdrHistogram, V2 compressed, base64.
    pub histogram: String,
    /// `latency_raw_us` as an HdrHistogram, V2 compressed, base64.
    pub histogram_raw: Option<String>,
    /// `connect_us` as an HdrHistogram, V2 compressed, base64.
    pub histogram_connect: Option<String>,
    /// `send_lateness_us` as an HdrHistogram, V2 compressed, base64.
    #[serde(default)]
    pub histogram_send_lateness: Option<String>,
    /// TCP only: the kernel's TCP counters over the window (host-wide) and
    /// the TIME_WAIT sockets at its edges; `null` otherwise, or when they
    /// could not be read (a warning says why).
    #[serde(default)]
    pub kernel_tcp: Option<crate::kernel::KernelTcp>,
    /// Everything a reader must not miss, also printed on stderr.
    pub warnings: Vec<String>,
}

/// Connection accounting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Connections {
    /// `--connections`.
    pub requested: u64,
    /// Initial connections established.
    pub established: u64,
    /// Initial connections that failed.
    pub failed: u64,
    /// Every connection attempt's outcome.
    pub attempts: Connects,
}

/// UDP: the datagrams' fates over the window, and the kernel's counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatagramReport {
    /// Counts by outcome (see [`Datagrams`]), flattened into this object.
    #[serde(flatten)]
    pub counts: Datagrams,
    /// `lost` as a percentage of the datagrams decided in the window (ok,
    /// lost, reordered or mismatched).
    pub loss_percent: f64,
    /// The kernel's UDP counters over the window (host-wide); `null` when
    /// they could not be read (a warning says why).
    pub kernel: Option<KernelUdp>,
}

/// The kernel's UDP counters over the window: every UDP socket of the host
/// (its network namespace), not only this run's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelUdp {
    /// `/proc/net/snmp Udp` (IPv4) or `/proc/net/snmp6 Udp6` (IPv6).
    pub source: String,
    /// `host`: what the counters cover.
    pub scope: String,
    /// The differences, flattened into this object.
    #[serde(flatten)]
    pub counters: UdpCounters,
}

impl DatagramReport {
    /// The section for `counts`, with the loss percentage computed.
    pub fn of(counts: Datagrams, kernel: Option<KernelUdp>) -> DatagramReport {
        DatagramReport { loss_percent: counts.loss_percent(), counts, kernel }
    }

    /// The sections of several runs as one: counts summed, the loss
    /// recomputed. The kernel counters are summed too, which is right for
    /// runs on different hosts (on one host, each run saw the same drops);
    /// `null` unless every run has them.
    pub fn merge<'a>(parts: impl IntoIterator<Item = &'a DatagramReport>) -> DatagramReport {
        let mut counts = Datagrams::default();
        let mut kernel: Option<Option<KernelUdp>> = None;
        for part in parts {
            counts.add(&part.counts);
            kernel = Some(match (kernel, &part.kernel) {
                (None, k) => k.clone(),
                (Some(Some(mut sum)), Some(k)) => {
                    sum.counters.add(&k.counters);
                    Some(sum)
                }
                _ => None,
            });
        }
        DatagramReport::of(counts, kernel.flatten())
    }
}

/// Completed requests over the measured wall time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub requests_per_sec: f64,
    /// Echoed payload bytes per second (one direction).
    pub bytes_per_sec: f64,
    /// Open loop: `--rate`.
    pub target_requests_per_sec: Option<f64>,
}

/// Percentiles of a latency histogram, in µs.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub stdev: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub p99_99: u64,
    pub max: u64,
    /// Values above 100 s, recorded as 100 s.
    pub clamped: u64,
}

impl LatencySummary {
    /// Summarises `hist`.
    pub fn of(hist: &Histogram<u64>, clamped: u64) -> LatencySummary {
        if hist.is_empty() {
            return LatencySummary { clamped, ..LatencySummary::default() };
        }
        LatencySummary {
            count: hist.len(),
            min: hist.min(),
            mean: hist.mean(),
            stdev: hist.stdev(),
            p50: hist.value_at_quantile(0.50),
            p90: hist.value_at_quantile(0.90),
            p99: hist.value_at_quantile(0.99),
            p99_9: hist.value_at_quantile(0.999),
            p99_99: hist.value_at_quantile(0.9999),
            max: hist.max(),
            clamped,
        }
    }
}

/// Completed messages per connection in the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerConnection {
    pub min: u64,
    pub median: u64,
    pub max: u64,
    /// Established connections that completed nothing in the window.
    pub starved: u64,
    /// The count of every established connection (for exact merging).
    pub counts: Vec<u64>,
}

impl PerConnection {
    /// Summarises `counts`.
    pub fn of(mut counts: Vec<u64>) -> PerConnection {
        counts.sort_unstable();
        PerConnection {
            min: counts.first().copied().unwrap_or(0),
            median: counts.get(counts.len() / 2).copied().unwrap_or(0),
            max: counts.last().copied().unwrap_or(0),
            starved: counts.iter().filter(|&&n| n == 0).count() as u64,
            counts,
        }
    }
}

/// The client's own CPU use inside the window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClientCpu {
    pub user_secs: f64,
    pub sys_secs: f64,
    /// (user + sys) / (window × event-loop threads).
    pub utilisation: f64,
    /// The busiest event-loop thread's share of its window.
    pub max_thread_utilisation: f64,
    /// Event-loop threads.
    pub threads: u64,
    /// Open loop: wall seconds the pacer spent spinning (summed over the
    /// threads) in the last microseconds before sends, counted in the CPU
    /// above: it bounds from above how much of the client's busy time was
    /// waiting rather than work (other tasks run during the spin too).
    #[serde(default)]
    pub pacer_spin_secs: f64,
}

/// One second of the measured window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub second: u64,
    pub completed: u64,
    pub p99_us: u64,
    /// This second's latencies (2 significant digits), V2 compressed, base64.
    pub histogram: String,
}

impl TimelineEntry {
    /// An entry from one second's histogram.
    pub fn of(second: u64, hist: &Histogram<u64>) -> Result<TimelineEntry, HistogramError> {
        Ok(TimelineEntry {
            second,
            completed: hist.len(),
            p99_us: if hist.is_empty() { 0 } else { hist.value_at_quantile(0.99) },
            histogram: encode(hist)?,
        })
    }
}

/// A histogram could not be encoded or decoded.
#[derive(Debug, Error)]
pub enum HistogramError {
    #[error("cannot encode histogram: {0}")]
    Encode(String),
    #[error("cannot decode histogram: {0}")]
    Decode(String),
    #[error("cannot merge histograms: {0}")]
    Merge(String),
}

/// HdrHistogram V2 compressed, base64.
pub fn encode(hist: &Histogram<u64>) -> Result<String, HistogramError> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(hist, &mut bytes).map_err(|e| HistogramError::Encode(format!("{e:?}")))?;
    Ok(BASE64.encode(bytes))
}

/// The inverse of [`encode`].
pub fn decode(text: &str) -> Result<Histogram<u64>, HistogramError> {
    let bytes = BASE64.decode(text).map_err(|e| HistogramError::Decode(e.to_string()))?;
    Deserializer::new().deserialize(&mut io::Cursor::new(bytes)).map_err(|e| HistogramError::Decode(format!("{e:?}")))
}

/// Adds `from` into `into`, growing it if needed.
pub fn add(into: &mut Histogram<u64>, from: &Histogram<u64>) -> Result<(), HistogramError> {
    into.add(from).map_err(|e| HistogramError::Merge(format!("{e:?}")))
}

impl Report {
    /// Closed loop: |throughput × mean latency ÷ messages in flight − 1|,
    /// which Little's law says is 0 when every connection spends all its
    /// time in request/echo. `None` in open loop, without latencies, and
    /// when datagrams were lost, reordered or failed to send: their slots
    /// sat waiting for a timeout (or held an echo not timed), so the law
    /// then says nothing about the server.
    pub fn littles_law_offset(&self) -> Option<f64> {
        let clean_datagrams =
            self.datagrams.as_ref().is_none_or(|d| d.counts.decided() == d.counts.ok && d.counts.send_failed == 0);
        if self.mode != "closed" || self.latency_us.count == 0 || !clean_datagrams {
            return None;
        }
        let in_flight = self.connections.established as f64 * f64::from(self.config.pipeline);
        if in_flight <= 0.0 {
            return None;
        }
        let little = self.throughput.requests_per_sec * self.latency_us.mean * 1e-6;
        Some((little / in_flight - 1.0).abs())
    }

    /// How far [`Report::littles_law_offset`] may be off before it says
    /// something: [`LITTLE_TOLERANCE`] plus the window's own edge error.
    /// The law holds over a window much longer than a message's latency
    /// `R`: in a window `W` each connection completes `W / R` messages, give
    /// or take the one under way at each edge, so throughput × `R` may miss
    /// the messages in flight by up to `R / W` with nothing stalled (10 ms
    /// of blocking work per message, queued 100 deep behind one event loop,
    /// is `R` ≈ 1 s: up to 67 % in a 1.5 s window; 19–21 % measured). `R`
    /// is the smaller of the median and the mean, so that stalled messages
    /// do not widen their own tolerance; and the edge term is at most
    /// [`LITTLE_EDGES_AT_MOST`], so that the law still says something of a
    /// window no longer than its latencies.
    pub fn littles_law_tolerance(&self) -> f64 {
        let typical = self.latency_us.p50.min(self.latency_us.mean.round() as u64) as f64;
        let edges = if self.duration_secs > 0.0 { typical * 1e-6 / self.duration_secs } else { 0.0 };
        LITTLE_TOLERANCE + edges.min(LITTLE_EDGES_AT_MOST)
    }

    /// Recomputes `warnings` from the figures.
    pub fn compute_warnings(&mut self, extra: &[String]) {
        let mut warnings: Vec<String> = extra.to_vec();
        let c = &self.connections;
        if c.established < c.requested {
            // The kinds of the initial attempts only: they sum to `failed`.
            // Failed reconnects are counted apart, not mixed in.
            let kinds = &c.attempts.failed_by_kind;
            let mut warning = format!(
                "only {} of {} connections were established ({} failed: {} refused, {} timed out, {} other, \
                 {} closed or reset by the server before their first echo)",
                int(c.established),
                int(c.requested),
                int(c.failed),
                int(kinds.refused),
                int(kinds.timed_out),
                int(kinds.other),
                int(c.attempts.dropped_before_first_echo)
            );
            if c.attempts.reconnects_failed > 0 {
                warning.push_str(&format!("; {} reconnect attempt(s) failed too", int(c.attempts.reconnects_failed)));
            }
            warnings.push(warning);
        }
        if c.attempts.closed_before_echo > 0 {
            warnings.push(format!(
                "the server closed {} connection(s) before their first echo (turned away: a full queue or a \
                 connection cap); each reconnect after one waited a pause doubling from 1 ms to 1 s",
                int(c.attempts.closed_before_echo)
            ));
        }
        if self.per_connection.starved > 0 {
            warnings.push(format!(
                "{} of {} established connections completed no message in the measured window (starved)",
                int(self.per_connection.starved),
                int(c.established)
            ));
        }
        let r = &self.requests;
        if let Some(d) = &self.datagrams {
            warnings.extend(d.warnings());
        } else if r.errors() > 0 {
            warnings.push(format!("{} requests did not succeed: {}", int(r.errors()), failures(r)));
        }
        if self.duration_secs + 0.05 < self.config.duration.as_secs_f64() {
            warnings.push(format!(
                "the run ended after {:.2} s of the {:.2} s window: every connection had stopped",
                self.duration_secs,
                self.config.duration.as_secs_f64()
            ));
        }
        if let Some(target) = self.throughput.target_requests_per_sec {
            let achieved = self.throughput.requests_per_sec;
            if achieved < RATE_SHORTFALL * target {
                warnings.push(format!(
                    "achieved {achieved:.0} msg/s, {:.1} % of the {target:.0} msg/s target",
                    100.0 * achieved / target
                ));
            }
        }
        if let Some((p99, limit)) = self.late_sends() {
            warnings.push(format!(
                "the pacer could not hold the schedule: p99 send lateness {p99} µs, above {limit} µs \
                 (the smaller of {:.0} % of the per-connection interval and {LATE_MAX_US} µs); the client, \
                 not the server, delayed those sends",
                100.0 * LATE_FRACTION
            ));
        }
        // A pacer that spun kept its thread busy by design: its lateness, not
        // its busy time, says whether the client kept up.
        if self.client_cpu.max_thread_utilisation > BUSY_CLIENT && self.client_cpu.pacer_spin_secs == 0.0 {
            warnings.push(format!(
                "a loadgen thread was busy {:.0} % of the window: the client may be the bottleneck",
                100.0 * self.client_cpu.max_thread_utilisation
            ));
        }
        if let Some(off) = self.littles_law_offset().filter(|off| *off > self.littles_law_tolerance()) {
            let in_flight = c.established as f64 * f64::from(self.config.pipeline);
            warnings.push(format!(
                "Little's law does not hold: {in_flight:.0} messages in flight, but throughput × mean latency is \
                 {:.0} % off (starved or stalled connections, or time spent outside request/echo)",
                100.0 * off
            ));
        }
        let clamped = self.latency_us.clamped;
        if clamped > 0 {
            warnings.push(format!("{} latencies above 100 s were recorded as 100 s", int(clamped)));
        }
        self.warnings = warnings;
    }

    /// Open loop: the p99 of the send lateness and the limit it exceeds,
    /// if it does (see [`LATE_FRACTION`], [`LATE_MAX_US`]).
    pub fn late_sends(&self) -> Option<(u64, u64)> {
        let lateness = self.send_lateness_us.as_ref().filter(|l| l.count > 0)?;
        let rate = self.config.rate?;
        let interval_us = f64::from(self.config.connections) / rate * 1e6;
        let limit = ((LATE_FRACTION * interval_us) as u64).min(LATE_MAX_US);
        (lateness.p99 > limit).then_some((lateness.p99, limit))
    }

    /// Writes the human summary: every number with its unit.
    pub fn write_summary(&self, out: &mut impl Write) -> io::Result<()> {
        let cfg = &self.config;
        let mode = match self.mode.as_str() {
            "closed" => format!("closed loop, pipeline {}", cfg.pipeline),
            "open" => format!("open loop at {} msg/s", fmt_count(cfg.rate.unwrap_or(0.0))),
            other => format!("{other}, new connection every {} msg", cfg.reconnect_every.unwrap_or(0)),
        };
        writeln!(
            out,
            "loadgen → {}: {mode}, {} B messages, {} thread(s)",
            cfg.addr, cfg.size, self.client_cpu.threads
        )?;
        let c = &self.connections;
        if self.datagrams.is_some() {
            writeln!(
                out,
                "  flows        {} requested, {} opened (a socket each), {} failed",
                int(c.requested),
                int(c.established),
                int(c.failed)
            )?;
        } else {
            write!(
                out,
                "  connections  {} requested, {} established, {} failed, {} reconnects",
                int(c.requested),
                int(c.established),
                int(c.failed),
                int(c.attempts.reconnects)
            )?;
            if c.attempts.closed_before_echo > 0 {
                write!(out, ", {} closed by the server before their first echo", int(c.attempts.closed_before_echo))?;
            }
            writeln!(out)?;
        }
        let mib = self.throughput.bytes_per_sec / (1024.0 * 1024.0);
        writeln!(
            out,
            "  throughput   {} msg/s, {mib:.2} MiB/s echoed, over {:.3} s measured (after {:.1} s warm-up)",
            fmt_count(self.throughput.requests_per_sec),
            self.duration_secs,
            cfg.warmup.as_secs_f64()
        )?;
        let label = if self.mode.starts_with("open") { "latency*" } else { "latency" };
        // UDP: the loss beside every latency summary, which covers delivered
        // datagrams only.
        let loss = self.datagrams.as_ref().map(|d| d.loss_percent);
        write_latency(out, label, &self.latency_us, loss)?;
        if let Some(raw) = &self.latency_raw_us {
            write_latency(out, "raw latency", raw, loss)?;
        }
        if let Some(connect) = &self.connect_us {
            write_latency(out, "connect", connect, None)?;
        }
        if let Some(late) = &self.send_lateness_us {
            write_latency(out, "send late", late, None)?;
        }
        if let Some(k) = self.kernel_tcp.as_ref().filter(|_| self.config.reconnect_every.is_some()) {
            writeln!(
                out,
                "  kernel TCP   {} connects, {} resets, TIME_WAIT {} → {} ({} reused, {} ended), {} listen \
                 overflows (host-wide)",
                int(k.counters.active_opens),
                int(k.counters.estab_resets),
                int(k.time_wait_at_open),
                int(k.time_wait_at_close),
                int(k.counters.time_wait_reused),
                int(k.counters.time_wait_ended),
                int(k.counters.listen_overflows)
            )?;
        }
        if self.mode.starts_with("open") {
            writeln!(
                out,
                "               * from the intended send time (coordinated omission corrected: the server's \
                 delays only, never the client's own lateness)"
            )?;
        }
        if let Some(d) = &self.datagrams {
            d.write_summary(out)?;
        } else {
            let r = &self.requests;
            writeln!(out, "  requests     {} ok, {}", int(r.ok), failures(r))?;
        }
        let p = &self.per_connection;
        writeln!(
            out,
            "  per conn.    {} / {} / {} msg (min / median / max), {} starved",
            int(p.min),
            int(p.median),
            int(p.max),
            int(p.starved)
        )?;
        let cpu = &self.client_cpu;
        writeln!(
            out,
            "  client CPU   {:.2} s user, {:.2} s sys, {:.0} % of {} thread(s) (busiest {:.0} %)",
            cpu.user_secs,
            cpu.sys_secs,
            100.0 * cpu.utilisation,
            cpu.threads,
            100.0 * cpu.max_thread_utilisation
        )?;
        if cpu.pacer_spin_secs > 0.0 {
            writeln!(
                out,
                "               of which at most {:.2} s the pacer's spin before sends",
                cpu.pacer_spin_secs
            )?;
        }
        for warning in &self.warnings {
            writeln!(out, "  WARNING      {warning}")?;
        }
        Ok(())
    }
}

fn write_latency(out: &mut impl Write, label: &str, l: &LatencySummary, loss: Option<f64>) -> io::Result<()> {
    write!(
        out,
        "  {label:<12} p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}  (mean {} ± {})",
        fmt_us(l.p50 as f64),
        fmt_us(l.p90 as f64),
        fmt_us(l.p99 as f64),
        fmt_us(l.p99_9 as f64),
        fmt_us(l.p99_99 as f64),
        fmt_us(l.max as f64),
        fmt_us(l.mean),
        fmt_us(l.stdev)
    )?;
    match loss {
        Some(loss) => writeln!(out, "  loss {loss:.3} % (percentiles of delivered datagrams only)"),
        None => writeln!(out),
    }
}

impl DatagramReport {
    /// What a reader must not miss: datagrams that did not come back ok,
    /// and drops the kernel counted.
    fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let d = &self.counts;
        if d.decided() > d.ok || d.send_failed > 0 {
            warnings.push(format!(
                "{} of {} datagrams decided in the window did not come back ok: {} lost ({:.3} %), {} reordered, \
                 {} mismatched; {} sends failed{}",
                d.decided() - d.ok,
                d.decided(),
                d.lost,
                self.loss_percent,
                d.reordered,
                d.mismatched,
                d.send_failed,
                by_errno(&d.send_errors)
            ));
        }
        let refused: u64 = [&d.send_errors, &d.receive_errors].iter().filter_map(|e| e.get("ECONNREFUSED")).sum();
        if refused > 0 {
            warnings.push(format!(
                "{refused} ECONNREFUSED: the server's host answered ICMP port unreachable (nothing listened there, \
                 at least for a while)"
            ));
        }
        if d.duplicated + d.late > 0 {
            warnings.push(format!("extra echoes: {} duplicated, {} late (after their timeout)", d.duplicated, d.late));
        }
        if let Some(k) = &self.kernel {
            let c = &k.counters;
            if c.in_errors + c.rcvbuf_errors + c.sndbuf_errors > 0 {
                warnings.push(format!(
                    "the kernel dropped UDP datagrams during the window (host-wide, {}): {} InErrors, \
                     {} RcvbufErrors (a receive buffer was full), {} SndbufErrors (a send buffer was full)",
                    k.source, c.in_errors, c.rcvbuf_errors, c.sndbuf_errors
                ));
            }
        }
        warnings
    }

    fn write_summary(&self, out: &mut impl Write) -> io::Result<()> {
        let d = &self.counts;
        writeln!(
            out,
            "  datagrams    {} sent: {} ok, {} lost ({:.3} %), {} reordered, {} mismatched, {} in flight at the end",
            d.sent, d.ok, d.lost, self.loss_percent, d.reordered, d.mismatched, d.in_flight_at_end
        )?;
        writeln!(
            out,
            "               {} sends failed{}; extra echoes: {} duplicated, {} late{}",
            d.send_failed,
            by_errno(&d.send_errors),
            d.duplicated,
            d.late,
            if d.receive_errors.is_empty() {
                String::new()
            } else {
                format!("; receive errors{}", by_errno(&d.receive_errors))
            }
        )?;
        match &self.kernel {
            Some(k) => writeln!(
                out,
                "  kernel UDP   {} InErrors, {} RcvbufErrors, {} SndbufErrors over the window \
                 (host-wide: every UDP socket, {})",
                k.counters.in_errors, k.counters.rcvbuf_errors, k.counters.sndbuf_errors, k.source
            ),
            None => writeln!(out, "  kernel UDP   not read (see the warnings)"),
        }
    }
}

/// ` (EAGAIN 3, ENOBUFS 1)`, or nothing.
fn by_errno(errors: &std::collections::BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let list: Vec<String> = errors.iter().map(|(errno, n)| format!("{errno} {n}")).collect();
    format!(" ({})", list.join(", "))
}

/// `850 µs`, `12.3 ms`, `1.20 s`.
pub fn fmt_us(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// `3 mismatched, 0 timed out, 12 failed (12 closed, 0 reset, 0 other)`:
/// the requests that did not succeed, by kind, as the summary and the
/// warnings print them.
fn failures(r: &Requests) -> String {
    format!(
        "{} mismatched, {} timed out, {} failed ({} closed, {} reset, {} other)",
        int(r.mismatched),
        int(r.timed_out),
        int(r.failed),
        int(r.failed_closed),
        int(r.failed_reset),
        int(r.failed_io)
    )
}

/// A count with thousands separators: `167,234`.
pub fn int(n: u64) -> String {
    fmt_count(n as f64)
}

/// `167,234`.
pub fn fmt_count(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Bytes in binary units, to three significant figures: `9.38 GiB`, `512 B`.
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ if value >= 100.0 => format!("{value:.0} {}", UNITS[unit]),
        _ if value >= 10.0 => format!("{value:.1} {}", UNITS[unit]),
        _ => format!("{value:.2} {}", UNITS[unit]),
    }
}
