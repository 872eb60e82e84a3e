//! Counting and timing, per event-loop thread; merged once at the end.
//!
//! Each thread owns one [`Recorder`]: no locks, no channel message per
//! request. A result counts only if it happened inside the measured window
//! `[warm_end, end)`, judged by its own timestamp.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Highest latency a histogram tracks: 100 s, in µs. Larger values are
/// clamped to it and counted in `clamped`.
pub const LATENCY_MAX_US: u64 = 100_000_000;
/// Significant digits of the latency histograms.
pub const SIGFIG: u8 = 3;
/// Significant digits of the per-second timeline histograms (smaller).
pub const TIMELINE_SIGFIG: u8 = 2;

/// A latency histogram in µs, 1 µs to 100 s.
pub fn latency_histogram(sigfig: u8) -> Histogram<u64> {
    // Constant, valid bounds (low ≥ 1, high ≥ 2 × low, sigfig ≤ 5): cannot fail.
    Histogram::new_with_bounds(1, LATENCY_MAX_US, sigfig).expect("valid histogram bounds")
}

/// Why a request did not succeed, counted by kind; never counted as ok.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The echo arrived complete but differs from what was sent.
    #[error("echo differs from the message sent")]
    Mismatch,
    /// The echo was not complete within `--timeout`.
    #[error("no complete echo within the timeout")]
    Timeout,
    /// The server closed the connection before the echo was complete.
    #[error("connection closed before the echo was complete")]
    Closed,
    /// The connection was reset (or the pipe broke).
    #[error("connection reset")]
    Reset,
    /// Any other I/O error.
    #[error("I/O error")]
    Io,
}

impl Failure {
    /// Classifies an I/O error on an established connection.
    pub fn from_io(err: &std::io::Error) -> Failure {
        use std::io::ErrorKind::*;
        match err.kind() {
            UnexpectedEof => Failure::Closed,
            ConnectionReset | ConnectionAborted | BrokenPipe => Failure::Reset,
            TimedOut => Failure::Timeout,
            _ => Failure::Io,
        }
    }
}

/// Why a connection attempt failed.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Nothing listens there (or it stopped listening).
    #[error("connection refused")]
    Refused,
    /// No answer within `--connect-timeout`.
    #[error("connect timed out")]
    TimedOut,
    /// Anything else (out of ports, out of descriptors, …).
    #[error("connect failed")]
    Other,
}

impl ConnectFailure {
    /// Classifies a connect error.
    pub fn from_io(err: &std::io::Error) -> ConnectFailure {
        match err.kind() {
            // A Unix socket whose file is gone is a server that is gone, as a
            // refused TCP connect is (a clean server shutdown removes the file).
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => ConnectFailure::Refused,
            std::io::ErrorKind::TimedOut => ConnectFailure::TimedOut,
            _ => ConnectFailure::Other,
        }
    }
}

/// Requests by outcome, inside the measured window.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requests {
    /// Echo complete and byte-for-byte equal.
    pub ok: u64,
    /// Echo complete but different.
    pub mismatched: u64,
    /// No complete echo within `--timeout`.
    pub timed_out: u64,
    /// Lost to a close, reset or other I/O error.
    pub failed: u64,
    /// `failed`, by kind.
    pub failed_closed: u64,
    /// `failed`, by kind.
    pub failed_reset: u64,
    /// `failed`, by kind.
    pub failed_io: u64,
    /// Errors of any kind during the warm-up, not counted above.
    pub errors_in_warmup: u64,
}

impl Requests {
    fn count(&mut self, failure: Failure, n: u64) {
        match failure {
            Failure::Mismatch => self.mismatched += n,
            Failure::Timeout => self.timed_out += n,
            Failure::Closed => self.failed_closed += n,
            Failure::Reset => self.failed_reset += n,
            Failure::Io => self.failed_io += n,
        }
        self.failed = self.failed_closed + self.failed_reset + self.failed_io;
    }

    /// Every request that was not ok.
    pub fn errors(&self) -> u64 {
        self.mismatched + self.timed_out + self.failed
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Requests) {
        self.ok += other.ok;
        self.mismatched += other.mismatched;
        self.timed_out += other.timed_out;
        self.failed += other.failed;
        self.failed_closed += other.failed_closed;
        self.failed_reset += other.failed_reset;
        self.failed_io += other.failed_io;
        self.errors_in_warmup += other.errors_in_warmup;
    }
}

/// Connection attempts over the whole run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connects {
    /// Initial connections established (of `requested`).
    pub established: u64,
    /// Initial connections that could not be established.
    pub failed: u64,
    /// Connections made again after a close, an error, or by churn.
    pub reconnects: u64,
    /// Reconnection attempts that failed.
    pub reconnects_failed: u64,
    /// Failed attempts (initial or not), by kind.
    pub refused: u64,
    /// Failed attempts (initial or not), by kind.
    pub timed_out: u64,
    /// Failed attempts (initial or not), by kind.
    pub other: u64,
    /// The initial attempts among `refused`, `timed_out` and `other`: with
    /// `dropped_before_first_echo` they sum to `failed`.
    #[serde(default)]
    pub failed_by_kind: FailedByKind,
    /// Initial connections the server closed or reset before their first
    /// echo: counted in `failed`, not in `established`.
    pub dropped_before_first_echo: u64,
    /// Connections, initial or reconnected, that the server closed or reset
    /// before their first echo. Each is followed by a pause that doubles
    /// with every such close in a row (see `engine::Backoff`), so a server
    /// that turns connections away is not flooded with reconnects.
    #[serde(default)]
    pub closed_before_echo: u64,
}

/// Initial connection attempts that failed, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedByKind {
    pub refused: u64,
    pub timed_out: u64,
    pub other: u64,
}

impl Connects {
    /// Counts one failed attempt.
    pub fn failure(&mut self, kind: ConnectFailure, initial: bool) {
        if initial {
            self.failed += 1;
        } else {
            self.reconnects_failed += 1;
        }
        match kind {
            ConnectFailure::Refused => self.refused += 1,
            ConnectFailure::TimedOut => self.timed_out += 1,
            ConnectFailure::Other => self.other += 1,
        }
        if initial {
            match kind {
                ConnectFailure::Refused => self.failed_by_kind.refused += 1,
                ConnectFailure::TimedOut => self.failed_by_kind.timed_out += 1,
                ConnectFailure::Other => self.failed_by_kind.other += 1,
            }
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Connects) {
        self.established += other.established;
        self.failed += other.failed;
        self.reconnects += other.reconnects;
        self.reconnects_failed += other.reconnects_failed;
        self.refused += other.refused;
        self.timed_out += other.timed_out;
        self.other += other.other;
        self.dropped_before_first_echo += other.dropped_before_first_echo;
        self.failed_by_kind.refused += other.failed_by_kind.refused;
        self.failed_by_kind.timed_out += other.failed_by_kind.timed_out;
        self.failed_by_kind.other += other.failed_by_kind.other;
        self.closed_before_echo += other.closed_before_echo;
    }
}

/// UDP: what became of the datagrams, inside the measured window. Every
/// datagram sent has one outcome — `ok`, `lost`, `reordered`, `mismatched`
/// — counted when it is decided (its echo arrives, or its timeout expires),
/// or is still in flight when the window closes; a datagram that could not
/// be sent is `send_failed`. Echoes that belong to no datagram still
/// waiting are counted apart (`duplicated`, `late`): they are extra, not
/// outcomes. Only `ok` is a success.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Datagrams {
    /// Datagrams that left (the send succeeded) inside the window.
    pub sent: u64,
    /// Echoed intact, and no later datagram of its flow echoed before it
    /// (= `requests.ok`).
    pub ok: u64,
    /// No echo within `--timeout` (= `requests.timed_out`).
    pub lost: u64,
    /// Echoed intact, but after a later datagram of its flow.
    pub reordered: u64,
    /// The echo differs from the datagram sent (= `requests.mismatched`);
    /// an echo whose header is too damaged to name its datagram counts here
    /// too, and that datagram is then lost.
    pub mismatched: u64,
    /// The send failed (= `requests.failed_io`), by errno in `send_errors`.
    pub send_failed: u64,
    /// A second (third, …) echo of a datagram already echoed.
    pub duplicated: u64,
    /// An echo of a datagram already counted lost, or too old to tell.
    pub late: u64,
    /// Datagrams still waiting for their echo (or their timeout) when the
    /// window closed.
    pub in_flight_at_end: u64,
    /// `send_failed` by errno (`EAGAIN`, `ENOBUFS`, `ECONNREFUSED`, …).
    pub send_errors: BTreeMap<String, u64>,
    /// Errors a receive reported, by errno: asynchronous ones, such as
    /// `ECONNREFUSED` for an ICMP port unreachable. Not outcomes: the
    /// datagram they concern is counted lost when its timeout expires.
    pub receive_errors: BTreeMap<String, u64>,
}

impl Datagrams {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Datagrams) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.lost += other.lost;
        self.reordered += other.reordered;
        self.mismatched += other.mismatched;
        self.send_failed += other.send_failed;
        self.duplicated += other.duplicated;
        self.late += other.late;
        self.in_flight_at_end += other.in_flight_at_end;
        for (errno, n) in &other.send_errors {
            *self.send_errors.entry(errno.clone()).or_default() += n;
        }
        for (errno, n) in &other.receive_errors {
            *self.receive_errors.entry(errno.clone()).or_default() += n;
        }
    }

    /// Datagrams whose fate was decided in the window: sent, and then ok,
    /// lost, reordered or mismatched.
    pub fn decided(&self) -> u64 {
        self.ok + self.lost + self.reordered + self.mismatched
    }

    /// `lost` as a percentage of [`Datagrams::decided`] (0 when none).
    pub fn loss_percent(&self) -> f64 {
        let decided = self.decided();
        if decided == 0 { 0.0 } else { 100.0 * self.lost as f64 / decided as f64 }
    }
}

/// One thing that happened to a datagram or an echo, for [`Recorder::datagram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramEvent<'a> {
    Sent,
    /// Ok: also recorded with [`Recorder::ok`], which times it.
    Ok,
    Lost,
    Reordered,
    Mismatched,
    /// The send failed with this errno name.
    SendFailed(&'a str),
    Duplicated,
    Late,
    /// A receive reported this errno name.
    ReceiveError(&'a str),
}

/// The measured window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// The clock starts: the load (and the warm-up) begins.
    pub start: Instant,
    /// End of the warm-up: the window opens.
    pub warm_end: Instant,
    /// The window closes.
    pub end: Instant,
}

impl Window {
    /// The second of the window `at` falls in, or `None` outside it.
    pub fn second(&self, at: Instant) -> Option<usize> {
        (at >= self.warm_end && at < self.end).then(|| (at - self.warm_end).as_secs() as usize)
    }
}

/// One more of `key` (allocating only the first time).
fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

/// Live completed-message counters, one cache line per thread, for the progress bar.
pub type Progress = Arc<Vec<CachePadded<AtomicU64>>>;

/// One event-loop thread's results.
#[derive(Debug)]
pub struct Recorder {
    window: Window,
    thread: usize,
    progress: Progress,
    /// Latency, from the intended send time in open loop (CO-corrected).
    pub latency: Histogram<u64>,
    /// Open loop only: latency from the actual send.
    pub latency_raw: Histogram<u64>,
    /// Connect time of reconnections inside the window.
    pub connect: Histogram<u64>,
    /// Per second of the window: completed messages and their latencies.
    pub timeline: Vec<Histogram<u64>>,
    /// Requests by outcome.
    pub requests: Requests,
    /// Connection attempts.
    pub connects: Connects,
    /// Latencies above [`LATENCY_MAX_US`], recorded as that value.
    pub clamped: u64,
    /// Completed messages in the window, per connection slot of this thread.
    pub per_connection: Vec<u64>,
    /// Which slots got their initial connection.
    pub established_slots: Vec<bool>,
    /// UDP only: the datagrams' outcomes.
    pub datagrams: Datagrams,
    /// Open loop: how late each message that was free to leave on time
    /// left, after its intended time (the pacer's own lateness), in µs.
    pub send_lateness: Histogram<u64>,
}

impl Recorder {
    /// A recorder for `slots` connections.
    pub fn new(window: Window, thread: usize, progress: Progress, slots: usize) -> Recorder {
        let seconds = (window.end - window.warm_end).as_secs() as usize + 1;
        Recorder {
            window,
            thread,
            progress,
            latency: latency_histogram(SIGFIG),
            latency_raw: latency_histogram(SIGFIG),
            connect: latency_histogram(SIGFIG),
            timeline: (0..seconds).map(|_| latency_histogram(TIMELINE_SIGFIG)).collect(),
            requests: Requests::default(),
            connects: Connects::default(),
            clamped: 0,
            per_connection: vec![0; slots],
            established_slots: vec![false; slots],
            datagrams: Datagrams::default(),
            send_lateness: latency_histogram(SIGFIG),
        }
    }

    /// Open loop: a message free to leave at its intended time left `late`
    /// after it, at `sent`. Counted if it left inside the window.
    pub fn send_late(&mut self, sent: Instant, late: Duration) {
        if self.window.second(sent).is_some() {
            let us = late.as_micros().min(u128::from(LATENCY_MAX_US)) as u64;
            // In range: clamped to the histogram's bounds.
            let _ = self.send_lateness.record(us);
        }
    }

    /// The measured window.
    pub fn window(&self) -> Window {
        self.window
    }

    fn micros(&mut self, took: Duration) -> u64 {
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        if us > LATENCY_MAX_US {
            self.clamped += 1;
            LATENCY_MAX_US
        } else {
            us
        }
    }

    /// A verified echo completed at `now`; `raw` only in open loop.
    pub fn ok(&mut self, slot: usize, now: Instant, latency: Duration, raw: Option<Duration>) {
        let Some(second) = self.window.second(now) else { return };
        let us = self.micros(latency);
        // In range by construction (clamped to the histogram's bounds).
        let _ = self.latency.record(us);
        if let Some(second) = self.timeline.get_mut(second) {
            let _ = second.record(us);
        }
        if let Some(raw) = raw {
            let raw_us = self.micros(raw);
            let _ = self.latency_raw.record(raw_us);
        }
        self.requests.ok += 1;
        self.per_connection[slot] += 1;
        // This thread is the counter's only writer: a plain store, not a
        // locked read-modify-write, on the per-message path.
        self.progress[self.thread].store(self.requests.ok, Ordering::Relaxed);
    }

    /// `n` requests failed at `now` with `failure`.
    pub fn failed(&mut self, now: Instant, failure: Failure, n: u64) {
        if n == 0 {
            return;
        }
        if now < self.window.warm_end {
            self.requests.errors_in_warmup += n;
        } else if now < self.window.end {
            self.requests.count(failure, n);
        }
    }

    /// An initial connection turned out never to have been served.
    pub fn unestablished(&mut self, slot: usize) {
        if self.established_slots[slot] {
            self.established_slots[slot] = false;
            self.connects.established -= 1;
            self.connects.failed += 1;
            self.connects.dropped_before_first_echo += 1;
        }
    }

    /// A datagram event at `now`, counted inside the window. An outcome
    /// other than ok also counts in `requests` as its stream equivalent
    /// (lost: timed out; mismatched; send failed: failed, other) — or in
    /// `errors_in_warmup`, as a reordered one does, during the warm-up.
    pub fn datagram(&mut self, now: Instant, event: DatagramEvent<'_>) {
        let failure = match event {
            DatagramEvent::Lost => Some(Failure::Timeout),
            DatagramEvent::Mismatched => Some(Failure::Mismatch),
            DatagramEvent::SendFailed(_) => Some(Failure::Io),
            _ => None,
        };
        if let Some(failure) = failure {
            self.failed(now, failure, 1);
        } else if event == DatagramEvent::Reordered && now < self.window.warm_end {
            self.requests.errors_in_warmup += 1;
        }
        if self.window.second(now).is_none() {
            return;
        }
        let d = &mut self.datagrams;
        match event {
            DatagramEvent::Sent => d.sent += 1,
            DatagramEvent::Ok => d.ok += 1,
            DatagramEvent::Lost => d.lost += 1,
            DatagramEvent::Reordered => d.reordered += 1,
            DatagramEvent::Mismatched => d.mismatched += 1,
            DatagramEvent::SendFailed(errno) => {
                d.send_failed += 1;
                bump(&mut d.send_errors, errno);
            }
            DatagramEvent::Duplicated => d.duplicated += 1,
            DatagramEvent::Late => d.late += 1,
            DatagramEvent::ReceiveError(errno) => bump(&mut d.receive_errors, errno),
        }
    }

    /// A reconnection took `took`, completing at `now`.
    pub fn reconnected(&mut self, now: Instant, took: Duration) {
        self.connects.reconnects += 1;
        if self.window.second(now).is_some() {
            let us = self.micros(took);
            let _ = self.connect.record(us);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorder whose window is [1 s, 3 s) after `t0`, with 2 slots.
    fn recorder(t0: Instant) -> Recorder {
        let window = Window { start: t0, warm_end: t0 + Duration::from_secs(1), end: t0 + Duration::from_secs(3) };
        Recorder::new(window, 0, Arc::new(vec![CachePadded::new(AtomicU64::new(0))]), 2)
    }

    #[test]
    fn only_what_happens_inside_the_window_counts_and_by_its_second() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut r = recorder(t0);
        let us = Duration::from_micros;
        r.ok(0, at(999), us(10), None); // warm-up
        r.ok(0, at(1000), us(20), Some(us(15))); // the window's first instant
        r.ok(1, at(2500), us(30), None);
        r.ok(1, at(3000), us(40), None); // the window's end: outside
        assert_eq!(r.requests.ok, 2);
        assert_eq!(r.per_connection, vec![1, 1]);
        assert_eq!((r.latency.len(), r.latency.min(), r.latency.max()), (2, 20, 30));
        assert_eq!(r.latency_raw.len(), 1);
        assert_eq!((r.timeline[0].len(), r.timeline[1].len()), (1, 1), "one per second of the window");
        assert_eq!(r.progress[0].load(Ordering::Relaxed), 2);
        // Failures: in the warm-up apart, in the window by kind, after it not at all.
        r.failed(at(500), Failure::Reset, 3);
        r.failed(at(1500), Failure::Timeout, 2);
        r.failed(at(1500), Failure::Closed, 1);
        r.failed(at(3500), Failure::Io, 7);
        let q = r.requests;
        assert_eq!((q.errors_in_warmup, q.timed_out, q.failed_closed, q.failed, q.failed_io), (3, 2, 1, 1, 0));
        assert_eq!(q.errors(), 3);
        // The pacer's lateness, inside the window only.
        r.send_late(at(200), us(5));
        r.send_late(at(1200), us(7));
        assert_eq!((r.send_lateness.len(), r.send_lateness.max()), (1, 7));
        // Reconnects all count; their connect time only inside the window.
        r.reconnected(at(100), us(50));
        r.reconnected(at(2000), us(60));
        assert_eq!((r.connects.reconnects, r.connect.len()), (2, 1));
    }

    #[test]
    fn a_latency_beyond_100_s_is_recorded_as_100_s_and_counted() {
        let t0 = Instant::now();
        let mut r = recorder(t0);
        r.ok(0, t0 + Duration::from_secs(2), Duration::from_secs(500), None);
        assert_eq!(r.clamped, 1);
        assert!(r.latency.max() >= LATENCY_MAX_US && r.latency.max() <= LATENCY_MAX_US + LATENCY_MAX_US / 1000);
    }

    #[test]
    fn an_initial_connection_never_served_moves_from_established_to_failed_once() {
        let mut r = recorder(Instant::now());
        r.connects.established = 2;
        r.established_slots = vec![true, true];
        r.unestablished(1);
        r.unestablished(1);
        let c = r.connects;
        assert_eq!((c.established, c.failed, c.dropped_before_first_echo), (1, 1, 1));
    }

    #[test]
    fn counts_add_field_by_field() {
        let mut a = Connects::default();
        a.failure(ConnectFailure::TimedOut, true);
        a.failure(ConnectFailure::TimedOut, false);
        a.failure(ConnectFailure::Refused, true);
        let mut sum = a;
        sum.add(&a);
        assert_eq!((sum.failed, sum.reconnects_failed, sum.timed_out, sum.refused), (4, 2, 4, 2));
        assert_eq!(sum.failed_by_kind, FailedByKind { refused: 2, timed_out: 2, other: 0 });
        let mut d = Datagrams { sent: 10, ok: 6, lost: 2, reordered: 1, mismatched: 1, ..Datagrams::default() };
        assert_eq!(d.decided(), 10);
        assert!((d.loss_percent() - 20.0).abs() < 1e-12);
        let other = d.clone();
        d.add(&other);
        assert_eq!((d.sent, d.lost, d.decided()), (20, 4, 20));
    }
}
