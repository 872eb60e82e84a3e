//! The work a request does (`--work`): what the server does with each
//! message between reading it and writing it back.
//!
//! Every figure of a plain echo is for a request that costs nothing beyond
//! its socket. Real servers compute, or they block — a disk read, a legacy
//! database driver, a DNS lookup — and that is where the concurrency models
//! part ways: a thread per connection or a pool absorbs a blocking call, an
//! event loop stalls on it. So every model takes
//!
//! ```text
//! --work none | cpu:DURATION | block:DURATION     (default: none)
//! ```
//!
//! - `none`: the echo as it always was; nothing runs, nothing is measured.
//! - `cpu:20us`: a compute loop over the message — FNV-1a over its bytes,
//!   cycled, so that every message costs the same whatever its length
//!   ([`hash`]) — run for as many iterations as take that long on this
//!   machine. How many is measured once, at start-up, on the thread CPU
//!   clock, and logged ([`Work::calibrate`]).
//! - `block:1ms`: a real blocking system call of that length: `nanosleep(2)`
//!   (`std::thread::sleep`, which sleeps again for what is left after a
//!   signal). The thread sleeps; it does not spin.
//!
//! A duration is a number and a unit: `ns`, `us` (or `µs`), `ms`, `s`
//! (`20us`, `1.5ms`). Zero, a malformed value, or more than [`MAX_WORK`] is
//! refused on the command line (one line, exit status 2).
//!
//! ## What a message is
//!
//! Over a stream, a message is what one read returned: up to
//! `--buffer-size` bytes, however the client's writes were cut or glued on
//! the way. A client that writes 64 bytes and waits for their echo gets one
//! message's work per write; one that streams a megabyte gets one per read
//! of up to `--buffer-size`. Over UDP, a message is one datagram.
//!
//! ## Where it runs
//!
//! The work is a step of the echo state machine ([`crate::echo::Next::Work`]),
//! between "bytes arrived" and "write them back", so every driver runs it
//! at the same point, and each model's page says where that is: on the
//! thread (or process, or coroutine) that serves the connection; on the
//! event loop, which stalls; on `reactor-pool`'s rayon pool; in tokio,
//! compute inline and `block:` through `spawn_blocking` unless
//! `--blocking inline` ([`Blocking`]). The bytes echoed never change: only
//! the time before the write does.

use std::fmt;
use std::io;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tracing::info;

/// The longest work a message may be given: a second already stalls an
/// event loop for a second per message; more is a typo.
pub const MAX_WORK: Duration = Duration::from_secs(1);

/// What each message costs before its echo (`--work`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Work {
    /// Nothing: the plain echo.
    #[default]
    None,
    /// A compute loop over the message, calibrated to take this much CPU time.
    Cpu(Duration),
    /// A blocking system call (`nanosleep`) of this length.
    Block(Duration),
}

impl Work {
    /// Parses `none`, `cpu:DURATION` or `block:DURATION` (`--work`'s value
    /// parser): the error is the one line clap prints after the value.
    pub fn parse(text: &str) -> Result<Work, String> {
        const EXPECTED: &str = "expected none, cpu:DURATION or block:DURATION (for example cpu:20us, block:1ms)";
        if text == "none" {
            return Ok(Work::None);
        }
        let Some((kind, duration)) = text.split_once(':') else { return Err(EXPECTED.into()) };
        let make = match kind {
            "cpu" => Work::Cpu,
            "block" => Work::Block,
            _ => return Err(EXPECTED.into()),
        };
        let duration = parse_duration(duration).map_err(|err| format!("{kind}:{duration:?}: {err}"))?;
        if duration.is_zero() {
            return Err(format!("{kind} work of 0 does nothing: give a duration longer than 0, or none"));
        }
        if duration > MAX_WORK {
            return Err(format!(
                "{} per message is more than the {} a message's work may take",
                Shown(duration),
                Shown(MAX_WORK)
            ));
        }
        Ok(make(duration))
    }

    pub fn is_none(&self) -> bool {
        *self == Work::None
    }

    /// Does the work for one message, `payload`, on the calling thread:
    /// computes, or sleeps.
    pub fn run(&self, payload: &[u8]) {
        match *self {
            Work::None => {}
            Work::Cpu(duration) => {
                let iterations = calibrated(duration).iterations(duration);
                // `black_box` on the way in and out: the compiler can
                // neither know the bytes nor drop a result nobody reads.
                std::hint::black_box(hash(std::hint::black_box(payload), iterations));
            }
            Work::Block(duration) => std::thread::sleep(duration),
        }
    }

    /// [`Work::run`] from async code: `block:` work goes to tokio's
    /// blocking pool (`spawn_blocking`) unless `blocking` says inline, so
    /// that the task waits and its worker thread does not; everything else
    /// runs inline. Blocking work reads no payload, so none crosses threads.
    /// An error: the runtime is shutting down (the blocking task was
    /// cancelled before it ran).
    pub async fn run_async(&self, payload: &[u8], blocking: Blocking) -> io::Result<()> {
        match (*self, blocking) {
            (Work::Block(duration), Blocking::Spawn) => {
                tokio::task::spawn_blocking(move || std::thread::sleep(duration)).await.map_err(io::Error::other)
            }
            _ => {
                self.run(payload);
                Ok(())
            }
        }
    }

    /// For `cpu:` work, measures how many iterations of the compute loop
    /// take the asked time, and logs it (unless this process has its
    /// calibration already); nothing for the other kinds. Called at
    /// start-up, before the server announces itself, so that no message
    /// pays for it.
    pub fn calibrate(&self) {
        if let Work::Cpu(duration) = *self {
            calibrated(duration);
        }
    }
}

/// `none`, `cpu:200us`, `block:5ms`: what [`Work::parse`] reads back.
impl fmt::Display for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Work::None => f.write_str("none"),
            Work::Cpu(duration) => write!(f, "cpu:{}", Shown(*duration)),
            Work::Block(duration) => write!(f, "block:{}", Shown(*duration)),
        }
    }
}

/// A duration's units, in nanoseconds.
const UNITS: [(&str, u128); 5] = [("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000), ("µs", 1_000), ("ns", 1)];

/// `20us`, `1.5ms`, `500ns`, `1s` (and `0`, so that a zero is refused as
/// zero rather than as a missing unit). Below a nanosecond is dropped.
fn parse_duration(text: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a number and a unit: ns, us, ms or s (e.g. 20us, 1.5ms)";
    if text.is_empty() {
        return Err("no duration".into());
    }
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits(fraction) {
        return Err(EXPECTED.into());
    }
    let unit_ns = match UNITS.iter().find(|(name, _)| *name == unit) {
        Some(&(_, ns)) => ns,
        None if unit.is_empty() && number.bytes().all(|b| b == b'0' || b == b'.') => return Ok(Duration::ZERO),
        None => return Err(EXPECTED.into()),
    };
    let too_long = || format!("{text} is far more than the {} a message's work may take", Shown(MAX_WORK));
    // Anything beyond 19 digits is beyond MAX_WORK in any unit, or below a nanosecond.
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| too_long())? };
    let fraction = &fraction[..fraction.len().min(19)];
    let fraction_ns = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<u128>().map_err(|_| EXPECTED.to_owned())? * unit_ns / 10u128.pow(fraction.len() as u32)
    };
    let ns = whole.checked_mul(unit_ns).and_then(|ns| ns.checked_add(fraction_ns)).ok_or_else(too_long)?;
    let ns = u64::try_from(ns).map_err(|_| too_long())?;
    Ok(Duration::from_nanos(ns))
}

/// A duration in the largest of [`UNITS`] that holds it whole: `200us`,
/// `1500us`, `1s` — what [`parse_duration`] reads back.
struct Shown(Duration);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        let (name, unit_ns) = UNITS
            .iter()
            .filter(|(name, _)| *name != "µs")
            .find(|(_, unit_ns)| ns % unit_ns == 0 && ns > 0)
            .unwrap_or(&("ns", 1));
        write!(f, "{}{name}", ns / unit_ns)
    }
}

/// Where an async driver runs `block:` work: tokio's `--blocking`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Blocking {
    /// On tokio's blocking pool (`spawn_blocking`): the worker thread runs
    /// other tasks meanwhile.
    #[default]
    Spawn,
    /// On the worker thread, like any code between two `.await`s: every
    /// task of that worker waits (the stall an event loop shows).
    Inline,
}

/// How fast this machine runs the compute loop: one figure per process,
/// since every thread runs the same loop on the same CPUs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// CPU time of one iteration (one byte hashed), in nanoseconds.
    pub ns_per_iteration: f64,
}

/// CPU time of one calibration sample: long enough that the clock's
/// granularity and the loop's start-up vanish, short enough that the whole
/// calibration ([`SAMPLES`] of them, plus finding the size) stays near 40 ms.
const SAMPLE: Duration = Duration::from_millis(3);

/// Samples taken; the fastest is the calibration. What disturbs a sample
/// only ever slows it: the caches and branch predictors another process
/// left cold, time the hypervisor took from this virtual CPU and still
/// counted as ours. The fastest is the loop's own speed; a median moved
/// with whatever else ran at start-up (±30 % on a busy 2-CPU VM).
const SAMPLES: usize = 9;

impl Calibration {
    /// Times the compute loop on this thread's CPU clock: time spent
    /// descheduled is not counted, so a busy machine slows the measurement
    /// down but does not skew it.
    pub fn measure() -> Calibration {
        // A payload the loop cannot predict; its length does not matter
        // (every iteration hashes one byte).
        let payload: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let time = |iterations: u64| {
            let start = thread_cpu_time();
            std::hint::black_box(hash(std::hint::black_box(&payload), iterations));
            thread_cpu_time().saturating_sub(start)
        };
        // Double until one run takes a sample's length (this warms up too).
        let mut iterations: u64 = 4096;
        while time(iterations) < SAMPLE && iterations < 1 << 40 {
            iterations *= 2;
        }
        let fastest = (0..SAMPLES).map(|_| time(iterations)).min().expect("SAMPLES is not 0");
        // The loop cannot take no time; a clock that says so would make every message free.
        Calibration { ns_per_iteration: (fastest.as_nanos() as f64 / iterations as f64).max(0.01) }
    }

    /// Iterations of the compute loop that take `duration` (at least one).
    pub fn iterations(&self, duration: Duration) -> u64 {
        (duration.as_nanos() as f64 / self.ns_per_iteration).round().max(1.0) as u64
    }
}

static CALIBRATION: OnceLock<Calibration> = OnceLock::new();

/// This process's calibration, if it has one: adopted from its parent
/// ([`adopt_calibration`]), or measured ([`Work::calibrate`]).
pub fn calibration() -> Option<Calibration> {
    CALIBRATION.get().copied()
}

/// This process's calibration; measured and logged now if it has none (at
/// start-up, [`Work::calibrate`]; else at the first message's work). The
/// log line, once per process, says what `cpu:duration` work means here.
fn calibrated(duration: Duration) -> Calibration {
    *CALIBRATION.get_or_init(|| {
        let started = Instant::now();
        let calibration = Calibration::measure();
        info!(
            work = %Work::Cpu(duration),
            iterations = calibration.iterations(duration),
            ns_per_iteration = %format_args!("{:.3}", calibration.ns_per_iteration),
            took_ms = started.elapsed().as_millis() as u64,
            "cpu work calibrated: FNV-1a over the message's bytes, cycled, on the thread CPU clock"
        );
        calibration
    })
}

/// Takes a calibration measured elsewhere: a child of `process` or
/// `prefork` is handed its parent's, so that a connection does not pay for
/// a measurement. Ignored if this process has one already, or if it is not
/// a positive figure.
pub fn adopt_calibration(calibration: Calibration) {
    if calibration.ns_per_iteration.is_finite() && calibration.ns_per_iteration > 0.0 {
        let _ = CALIBRATION.set(calibration);
    }
}

/// The calling thread's CPU time.
pub fn thread_cpu_time() -> Duration {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("CLOCK_THREAD_CPUTIME_ID exists on every Linux since 2.6.12");
    Duration::from(now)
}

/// The compute loop: FNV-1a over `payload`, cycled, `iterations` bytes in
/// all. Every iteration is one byte and the same instructions whatever the
/// payload's length: the wrap-around is arithmetic, not a branch, and off
/// the hash's own chain (an xor and a multiply, each waiting for the
/// last), which sets the pace. An empty payload (a datagram of 0 bytes) is hashed as one
/// zero byte.
#[inline(never)]
pub fn hash(payload: &[u8], iterations: u64) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let payload = if payload.is_empty() { &[0u8][..] } else { payload };
    let mut hash = OFFSET;
    let mut at = 0;
    for _ in 0..iterations {
        hash = (hash ^ u64::from(payload[at])).wrapping_mul(PRIME);
        // Back to 0 after the last byte, without a branch: a branch
        // mispredicted at every wrap would make short messages dearer.
        at += 1;
        at &= usize::from(at != payload.len()).wrapping_neg();
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_kinds_and_prints_them_back() {
        let cases = [
            ("none", Work::None),
            ("cpu:20us", Work::Cpu(Duration::from_micros(20))),
            ("cpu:20µs", Work::Cpu(Duration::from_micros(20))),
            ("cpu:500ns", Work::Cpu(Duration::from_nanos(500))),
            ("cpu:1.5ms", Work::Cpu(Duration::from_micros(1500))),
            ("cpu:.25ms", Work::Cpu(Duration::from_micros(250))),
            ("block:0.001s", Work::Block(Duration::from_millis(1))),
            ("block:1ms", Work::Block(Duration::from_millis(1))),
            ("block:1s", Work::Block(MAX_WORK)),
        ];
        for (text, work) in cases {
            assert_eq!(Work::parse(text), Ok(work), "{text}");
            assert_eq!(Work::parse(&work.to_string()), Ok(work), "{work} reads back");
        }
        assert_eq!(Work::default(), Work::None);
    }

    #[test]
    fn refuses_zero_malformed_and_absurd_values_in_one_line() {
        for (text, needle) in [
            ("cpu:0", "longer than 0"),
            ("block:0ms", "longer than 0"),
            ("cpu:0.0", "longer than 0"),
            ("block:", "block:\"\": no duration"),
            ("foo:1ms", "expected none, cpu:DURATION or block:DURATION"),
            ("cpu:abc", "cpu:\"abc\": expected a number and a unit"),
            ("cpu:20", "cpu:\"20\": expected a number and a unit"),
            ("cpu:1.2.3ms", "expected a number and a unit"),
            ("cpu:.ms", "expected a number and a unit"),
            ("cpu:-1ms", "expected a number and a unit"),
            ("cpu:1 ms", "expected a number and a unit"),
            ("cpu:1min", "expected a number and a unit"),
            ("cpu:99999999999999999999999999999s", "far more than the 1s"),
            ("cpu", "expected none"),
            ("none:1ms", "expected none"),
            ("", "expected none"),
            ("block:2s", "more than the 1s"),
            ("block:1000001us", "1000001us per message is more than the 1s"),
        ] {
            let err = Work::parse(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
            assert_eq!(err.lines().count(), 1, "{text}: {err}");
        }
    }

    #[test]
    fn the_hash_depends_on_every_byte_and_on_the_count() {
        assert_ne!(hash(b"abc", 3), hash(b"abd", 3));
        assert_ne!(hash(b"abc", 3), hash(b"abc", 4));
        assert_eq!(hash(b"ab", 4), hash(b"abab", 4), "the payload is cycled");
        assert_eq!(hash(b"", 2), hash(&[0], 2), "an empty payload is one zero byte");
    }

    /// Every message costs the same whatever its length: the CPU time of
    /// the loop for 1 byte (a wrap-around at every iteration), 37 bytes and
    /// 4 KiB agree within 15 %. Interleaved, and the fastest of 7 each: a
    /// preempted or disturbed run only ever takes longer, so the fastest is
    /// the loop's own cost (a median flaked under CI's parallel tests).
    #[test]
    fn a_message_costs_the_same_whatever_its_length() {
        let lens = [1, 37, 4096];
        let iterations = 100_000;
        let mut took: Vec<Vec<Duration>> = vec![Vec::new(); lens.len()];
        for _ in 0..7 {
            for (times, len) in took.iter_mut().zip(lens) {
                let payload = vec![0xA5u8; len];
                let start = thread_cpu_time();
                std::hint::black_box(hash(std::hint::black_box(&payload), iterations));
                times.push(thread_cpu_time() - start);
            }
        }
        let fastest: Vec<Duration> = took
            .iter_mut()
            .map(|times| {
                times.sort();
                times[0]
            })
            .collect();
        let (least, most) = (fastest.iter().min().unwrap(), fastest.iter().max().unwrap());
        assert!(most.as_secs_f64() / least.as_secs_f64() < 1.15, "{lens:?} B: {fastest:?}");
    }

    /// A calibration says how many iterations take a duration: 2 ms of
    /// work, run just after one, takes 2 ms of the thread's CPU, ± 20 %, in
    /// the fastest of 7 runs (the calibration keeps its fastest sample too:
    /// interference only adds; the median read 2.49 ms under CI's load).
    /// On a shared machine a neighbour can slow the runs and not the
    /// calibration (or the other way round) for a while, so up to 5
    /// attempts, each with a calibration of its own: a calibration that is
    /// wrong fails all five.
    #[test]
    fn a_calibrated_loop_takes_the_asked_cpu_time() {
        let asked = Duration::from_millis(2);
        let payload = vec![0x5Au8; 64];
        let mut attempts = Vec::new();
        for _ in 0..5 {
            let calibration = Calibration::measure();
            let mut took: Vec<Duration> = (0..7)
                .map(|_| {
                    let start = thread_cpu_time();
                    std::hint::black_box(hash(std::hint::black_box(&payload), calibration.iterations(asked)));
                    thread_cpu_time() - start
                })
                .collect();
            took.sort();
            let ratio = took[0].as_secs_f64() / asked.as_secs_f64();
            if (0.8..=1.2).contains(&ratio) {
                return;
            }
            attempts.push((took[0], calibration));
        }
        panic!("no attempt took {asked:?} ± 20 %: {attempts:?}");
    }

    #[test]
    fn block_work_sleeps_its_duration_without_spending_cpu() {
        let asked = Duration::from_millis(20);
        let (wall, cpu) = (Instant::now(), thread_cpu_time());
        Work::Block(asked).run(b"x");
        let (wall, cpu) = (wall.elapsed(), thread_cpu_time() - cpu);
        assert!(wall >= asked, "slept {wall:?} of {asked:?}");
        assert!(cpu < Duration::from_millis(2), "{cpu:?} of CPU to sleep {asked:?}");
    }

    #[test]
    fn iterations_round_and_never_reach_zero() {
        let c = Calibration { ns_per_iteration: 1.5 };
        assert_eq!(c.iterations(Duration::from_micros(3)), 2000);
        assert_eq!(c.iterations(Duration::from_nanos(1)), 1);
    }
}
