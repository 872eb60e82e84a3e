//! The open-loop pacer: when each message is meant to leave, and a wait that
//! ends at that instant to within microseconds.
//!
//! ## The schedule
//!
//! `--rate R` over `C` connections gives each connection a message every
//! `C / R` seconds on average. Connection `i` starts at `i / R`: the `C`
//! connections' phases are spread evenly over one interval, across every
//! thread, so no two share a phase and the union is `R` evenly spaced sends
//! per second ([`Schedule::new`] with [`Arrivals::Uniform`]). With `--arrivals poisson` the gaps of
//! each connection are drawn from an exponential distribution of the same
//! mean, from an RNG seeded by `--seed` and the connection id, so a run is
//! reproducible ([`Arrivals::Poisson`]).
//!
//! ## The wait
//!
//! A runtime's timer is too coarse: tokio's wheel has 1 ms slots and
//! `epoll_wait` takes milliseconds, so `sleep_until` released sends in
//! bursts of about rate/1000, late by up to a millisecond. The pacer sleeps
//! on a `timerfd` instead (nanosecond resolution, armed with an absolute
//! CLOCK_MONOTONIC time, and with the thread's timer slack lowered to 1 ns,
//! so the kernel does not round the wake-up up by its default 50 µs). A
//! wake-up still comes some microseconds late (the scheduler, the
//! hypervisor), so the timer is armed that much *early* — by a running
//! estimate of this thread's own wake-up lateness, its 75th percentile
//! ([`WakeEstimate`]) — and
//! the rest of the wait is a short spin that keeps polling the sockets. The
//! spin is bounded by the estimate (at most [`MAX_LEAD`]), not by the
//! interval: at low rates the thread sleeps nearly all the time. A send due
//! within [`SPIN_HORIZON`] is always spun for: at high rates sleeping costs
//! more than spinning.
//!
//! What the pacer achieved is measured, not assumed: every message that was
//! free to leave on time has its lateness (actual minus intended send time)
//! recorded in `send_lateness_us` (see `stats::Recorder::send_late`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use serde::{Deserialize, Serialize};

/// The longest the timer is armed ahead of a send (and so the longest spin
/// per send): the lateness estimate never goes above it. On the reference
/// VM a timerfd wake-up is 5–40 µs late at the median; a lead beyond
/// 100 µs would be chasing the hypervisor's rare stalls at the cost of a
/// spin on every send.
pub const MAX_LEAD: Duration = Duration::from_micros(100);

/// A send due sooner than this is waited for by spinning, never by
/// sleeping: on a VM, putting the thread to sleep and waking it costs tens
/// of µs of CPU (the halt, the timer interrupt, the switch back), so at
/// 10,000 sends a second and more a thread that slept between sends spent
/// most of its CPU going to sleep (measured: 99 % busy at 20,000 msg/s, its
/// sends late by hundreds of µs at p99). A spinning pacer keeps its CPU
/// busy by design, so its busy time says nothing of saturation: its lateness
/// does (`send_lateness_us`), as in the load generators that busy-poll to
/// pace (mutilate, Lancet).
pub const SPIN_HORIZON: Duration = Duration::from_micros(100);

/// How the intended send times of one connection are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// Evenly: one message every `connections / rate` seconds.
    #[default]
    Uniform,
    /// A Poisson process: exponential gaps of mean `connections / rate`.
    Poisson,
}

/// How an open-loop thread waits for its next send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PacerWait {
    /// Sleeps on its timer until shortly before the send (the lead it
    /// learns), then spins; a send due within [`SPIN_HORIZON`] is spun for.
    /// The thread is idle between sends, and its wake-ups are as late as the
    /// machine makes them (tens of µs at p99 on the reference VM, and
    /// milliseconds when the host stalls the vCPU as it sleeps).
    #[default]
    Sleep,
    /// Never sleeps: polls its sockets and the clock until each send is
    /// due. The thread keeps its CPU busy all the time (for a load
    /// generator on CPUs of its own); its sends leave within a few µs at
    /// p99 on the reference VM.
    Spin,
}

/// One connection's intended send times, in order.
#[derive(Debug, Clone)]
pub struct Schedule {
    first: Instant,
    /// In seconds, unrounded: a `Duration` would round 1/3 ms to whole
    /// nanoseconds, and `tick` times that drifts (1 ms in 1,000 s at 3,000/s).
    interval_secs: f64,
    /// Sends scheduled so far (uniform: the next is `first + tick × interval`,
    /// computed afresh so that rounding never accumulates).
    tick: u64,
    /// Poisson: the next intended time, and the generator of the gaps.
    poisson: Option<(Instant, fastrand::Rng)>,
}

impl Schedule {
    /// Connection `id` of `connections`, `rate` messages per second in all,
    /// from `start`: first send at `start + id / rate`, then every
    /// `connections / rate` (or exponential gaps of that mean, `poisson`).
    /// `rate` and `connections` have passed [`crate::opts::check_interval`].
    pub fn new(arrivals: Arrivals, seed: u64, start: Instant, id: u32, connections: usize, rate: f64) -> Schedule {
        let interval_secs = connections as f64 / rate;
        let first = start + Duration::from_secs_f64(f64::from(id) / rate);
        let poisson = match arrivals {
            Arrivals::Uniform => None,
            // One stream per connection: the seed and the id, mixed so that
            // neighbouring ids do not draw correlated gaps.
            Arrivals::Poisson => {
                Some((first, fastrand::Rng::with_seed(seed ^ u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15))))
            }
        };
        Schedule { first, interval_secs, tick: 0, poisson }
    }

    /// The mean interval between two sends of this connection.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.interval_secs)
    }

    /// The intended time of the next send (not consumed).
    pub fn peek(&self) -> Instant {
        match &self.poisson {
            Some((next, _)) => *next,
            None => self.first + Duration::from_secs_f64(self.interval_secs * self.tick as f64),
        }
    }

    /// The intended time of the next send, consumed: the one after it
    /// becomes the next.
    pub fn advance(&mut self) -> Instant {
        let at = self.peek();
        self.tick += 1;
        if let Some((next, rng)) = &mut self.poisson {
            // Inverse transform: -ln(U) is exponential of mean 1, U in (0, 1].
            let unit = -(1.0 - rng.f64()).ln();
            *next += Duration::from_secs_f64(self.interval_secs * unit);
        }
        at
    }
}

/// The coordinated-omission correction of one connection (or flow): its
/// *server timeline*, the one it would have followed had every message left
/// exactly when it was free to (see [`crate::engine`]'s module doc). It
/// charges the server for its own delays only, never the client's.
///
/// Message k's virtual send time is `σ_k = max(intended_k, ε)` where `ε` is
/// the virtual echo time of the message whose echo freed its slot; its
/// virtual echo time is `ε_k = σ_k + raw_k`, with `raw_k = echo_k − sent_k`
/// the time the server had it; its corrected latency is `ε_k − intended_k`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerTimeline {
    /// The virtual time the last slot freed; `None` before the first.
    freed: Option<Instant>,
}

impl ServerTimeline {
    /// The virtual send time of a message intended at `intended` that
    /// waited for the slot freed last (or did not need to).
    pub fn start(&self, intended: Instant) -> Instant {
        self.freed.map_or(intended, |freed| freed.max(intended))
    }

    /// A message intended at `intended`, virtually sent at `start`, really
    /// sent at `sent`, was echoed at `echoed`, freeing its slot. Returns its
    /// corrected latency and its raw one.
    pub fn echoed(
        &mut self,
        intended: Instant,
        start: Instant,
        sent: Instant,
        echoed: Instant,
    ) -> (Duration, Duration) {
        let raw = echoed.saturating_duration_since(sent);
        let echoed_virtual = start + raw;
        self.freed = Some(echoed_virtual);
        (echoed_virtual.saturating_duration_since(intended), raw)
    }

    /// A message virtually sent at `start` was given up after `timeout`
    /// (lost), freeing its slot then.
    pub fn expired(&mut self, start: Instant, timeout: Duration) {
        let freed = start + timeout;
        self.freed = Some(self.freed.map_or(freed, |f| f.max(freed)));
    }
}

/// Open loop: when a message was meant to leave, its send time on the
/// server timeline, and whether it was free to leave on time.
#[derive(Debug, Clone, Copy)]
pub struct Paced {
    pub intended: Instant,
    /// Its virtual send time ([`ServerTimeline::start`]).
    pub start: Instant,
    /// Free to leave at its intended time (not held back by its slot): its
    /// lateness is the pacer's alone, and is recorded.
    pub free: bool,
}

/// A message (or datagram) sent and not yet echoed, as both engines keep it.
#[derive(Debug, Clone, Copy)]
pub struct InFlight {
    pub seq: u64,
    /// When it left.
    pub sent: Instant,
    /// Where its latency counts from: its intended time in open loop, when
    /// it left in closed loop.
    pub intended: Instant,
    /// Its send time on the server timeline: in open loop the later of its
    /// intended time and the virtual time its slot freed; `sent` in closed loop.
    pub start: Instant,
}

impl InFlight {
    /// Message `seq`, sent at `sent`, paced (open loop) or not.
    pub fn new(seq: u64, sent: Instant, paced: Option<Paced>) -> InFlight {
        let (intended, start) = paced.map_or((sent, sent), |p| (p.intended, p.start));
        InFlight { seq, sent, intended, start }
    }
}

/// A running estimate of how late this thread's timer wake-ups are, to arm
/// the timer that much early: the 75th percentile of the observed lateness,
/// tracked by stochastic quantile estimation (each wake-up later than the
/// lead raises it by 3 µs, each earlier one lowers it by 1 µs, which settles
/// where 1 in 4 are later). A quantile, not a mean: the VM's rare
/// millisecond stalls would drag a mean up and make every send spin. Kept
/// within `0..=MAX_LEAD`.
#[derive(Debug, Clone, Copy)]
pub struct WakeEstimate {
    lead_ns: u64,
    /// A send due within this is spun for ([`spin_horizon`]; unbounded
    /// with [`PacerWait::Spin`]).
    horizon: Duration,
}

/// The quantile step of [`WakeEstimate`]: up by `3 × STEP_NS`, down by `STEP_NS`.
const STEP_NS: u64 = 1_000;

impl Default for WakeEstimate {
    fn default() -> WakeEstimate {
        // Near the reference VM's typical timerfd lateness; a few dozen
        // wake-ups correct it.
        WakeEstimate { lead_ns: 30_000, horizon: spin_horizon() }
    }
}

impl WakeEstimate {
    /// The estimate of a thread that waits as `wait` says.
    pub fn waiting(wait: PacerWait) -> WakeEstimate {
        match wait {
            PacerWait::Sleep => WakeEstimate::default(),
            PacerWait::Spin => WakeEstimate { horizon: Duration::MAX, ..WakeEstimate::default() },
        }
    }

    /// How far ahead of `due` to arm the timer.
    pub fn lead(&self) -> Duration {
        Duration::from_nanos(self.lead_ns)
    }

    /// The timer was armed for `armed` and the thread woke at `woke`.
    pub fn observe(&mut self, armed: Instant, woke: Instant) {
        let late_ns = woke.saturating_duration_since(armed).as_nanos();
        self.lead_ns = if late_ns > u128::from(self.lead_ns) {
            (self.lead_ns + 3 * STEP_NS).min(MAX_LEAD.as_nanos() as u64)
        } else {
            self.lead_ns.saturating_sub(STEP_NS)
        };
    }

    /// What to do to leave at `due`, at `now`.
    pub fn plan(&self, due: Instant, now: Instant) -> Wait {
        if now >= due {
            Wait::Due
        } else if due - now <= self.lead().max(self.horizon) {
            Wait::Spin
        } else {
            Wait::Sleep(due - self.lead())
        }
    }
}

/// [`SPIN_HORIZON`], or `LOADGEN_SPIN_HORIZON_US` from the environment (an
/// experiment's knob: 0 sleeps whenever the lead allows).
fn spin_horizon() -> Duration {
    static HORIZON: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *HORIZON.get_or_init(|| {
        std::env::var("LOADGEN_SPIN_HORIZON_US")
            .ok()
            .and_then(|us| us.parse().ok())
            .map_or(SPIN_HORIZON, Duration::from_micros)
    })
}

/// The next step of a precise wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The time has come.
    Due,
    /// Close: poll without blocking, and look again.
    Spin,
    /// Far: sleep on the timer until this instant (the due time less the lead).
    Sleep(Instant),
}

/// A one-shot timer with nanosecond resolution: a non-blocking `timerfd`
/// on CLOCK_MONOTONIC (the clock `Instant` reads on Linux), to register
/// with an event loop; it becomes readable when it fires.
#[derive(Debug)]
pub struct PreciseTimer {
    fd: TimerFd,
}

impl PreciseTimer {
    /// A new, disarmed timer. Also lowers the calling thread's timer slack
    /// to 1 ns: the slack (default 50 µs) lets the kernel delay this
    /// thread's timed wake-ups to batch them, which a pacer cannot afford.
    pub fn new() -> io::Result<PreciseTimer> {
        // Best effort: with the default slack the pacer is only less precise,
        // and `send_lateness_us` shows by how much.
        let _ = nix::sys::prctl::set_timerslack(1);
        let fd = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC)?;
        Ok(PreciseTimer { fd })
    }

    /// Fires at `at` (once; re-arming replaces the earlier time).
    pub fn arm(&self, at: Instant) -> io::Result<()> {
        // An absolute time of 0 would disarm the timer; one already past
        // fires at once, which is what a late arm wants.
        let at_ns = echo_common::clock::to_ns(at).max(1);
        let at_ts = TimeSpec::from_duration(Duration::from_nanos(at_ns));
        self.fd.set(Expiration::OneShot(at_ts), TimerSetTimeFlags::TFD_TIMER_ABSTIME)?;
        Ok(())
    }

    /// Consumes the expiration, so that the descriptor is no longer readable.
    pub fn clear(&self) {
        let mut count = [0u8; 8];
        // EAGAIN (not fired, or already read) is the expected case too.
        let _ = nix::unistd::read(&self.fd, &mut count);
    }
}

impl AsFd for PreciseTimer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PreciseTimer {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_fd().as_raw_fd()
    }
}

/// The stream engine's pacer: one per load thread, shared by that thread's
/// connection tasks (a tokio current-thread runtime). A task awaits
/// [`AsyncPacer::until`]; one driver task ([`AsyncPacer::drive`]) sleeps on
/// the [`PreciseTimer`] until shortly before the earliest intended time,
/// spins (yielding to the runtime, which polls the sockets meanwhile) until
/// it has come, and wakes every task whose time has come.
#[derive(Debug)]
pub struct AsyncPacer {
    timer: tokio::io::unix::AsyncFd<PreciseTimer>,
    sleepers: std::cell::RefCell<std::collections::BinaryHeap<std::cmp::Reverse<Sleeper>>>,
    /// Registrations, to order sleepers due at the same instant.
    registered: std::cell::Cell<u64>,
    /// What the driver is asleep for (`None`: awake, or nothing to wait for):
    /// a sleeper due earlier must wake it.
    asleep_for: std::cell::Cell<Option<Instant>>,
    nudge: tokio::sync::Notify,
    estimate: std::cell::Cell<WakeEstimate>,
    spin: std::cell::Cell<SpinClock>,
}

/// Wall time spent in the final spin before sends (other tasks run in it
/// too: it bounds the pacer's own cost from above).
#[derive(Debug, Clone, Copy, Default)]
pub struct SpinClock {
    total: Duration,
    since: Option<Instant>,
}

impl SpinClock {
    /// Spinning at `now` (a start, or more of the same spin).
    pub fn spinning(&mut self, now: Instant) {
        self.since.get_or_insert(now);
    }

    /// Not spinning (any more) at `now`.
    pub fn stopped(&mut self, now: Instant) {
        if let Some(since) = self.since.take() {
            self.total += now.saturating_duration_since(since);
        }
    }

    /// The spins up to `now`, the one under way included: a pacer that
    /// never stops spinning (a send due every 100 µs or sooner) must not
    /// read as one that never spun.
    pub fn total_at(&self, now: Instant) -> Duration {
        self.total + self.since.map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }
}

/// A task waiting for its send time.
#[derive(Debug)]
struct Sleeper {
    at: Instant,
    order: u64,
    waker: std::task::Waker,
}

impl PartialEq for Sleeper {
    fn eq(&self, other: &Sleeper) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl Eq for Sleeper {}

impl PartialOrd for Sleeper {
    fn partial_cmp(&self, other: &Sleeper) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Sleeper {
    fn cmp(&self, other: &Sleeper) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

impl AsyncPacer {
    /// A pacer for this thread, waiting as `wait` says; must be called
    /// inside its tokio runtime.
    pub fn new(wait: PacerWait) -> io::Result<std::rc::Rc<AsyncPacer>> {
        // SAFETY: `PreciseTimer` owns its timerfd, never replaces it and
        // closes it only when dropped, which is when the `AsyncFd` is.
        let timer = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(PreciseTimer::new()?, tokio::io::Interest::READABLE)
        }
        .map_err(io::Error::from)?;
        Ok(std::rc::Rc::new(AsyncPacer {
            timer,
            sleepers: Default::default(),
            registered: Default::default(),
            asleep_for: Default::default(),
            nudge: tokio::sync::Notify::new(),
            estimate: std::cell::Cell::new(WakeEstimate::waiting(wait)),
            spin: Default::default(),
        }))
    }

    /// The time spent spinning so far.
    pub fn spun(&self) -> Duration {
        self.spin.get().total_at(Instant::now())
    }

    /// Completes at `at`, or at once if it has passed.
    pub fn until(&self, at: Instant) -> Until<'_> {
        Until { pacer: self, at, registered: false }
    }

    /// The driver: runs for as long as the thread's load does (aborted with
    /// it). Returns only if the timer fails, with the error.
    pub async fn drive(&self) -> io::Error {
        loop {
            let now = Instant::now();
            let next = self.wake_due(now);
            let Some(due) = next else {
                // Nothing to send until a connection is free again: not a
                // spin (it would count the idle wait as one).
                let mut spin = self.spin.get();
                spin.stopped(now);
                self.spin.set(spin);
                self.nudge.notified().await;
                continue;
            };
            let estimate = self.estimate.get();
            let plan = estimate.plan(due, now);
            let mut spin = self.spin.get();
            match plan {
                Wait::Spin => spin.spinning(now),
                _ => spin.stopped(now),
            }
            self.spin.set(spin);
            match plan {
                Wait::Due => {}
                // Let the runtime poll the sockets (without blocking) and
                // run the other tasks, then look again.
                Wait::Spin => tokio::task::yield_now().await,
                Wait::Sleep(wake_at) => {
                    if let Err(err) = self.timer.get_ref().arm(wake_at) {
                        return err;
                    }
                    self.asleep_for.set(Some(due));
                    tokio::select! {
                        biased;
                        ready = self.timer.readable() => match ready {
                            Ok(mut guard) => {
                                guard.get_inner().clear();
                                guard.clear_ready();
                                let mut estimate = self.estimate.get();
                                estimate.observe(wake_at, Instant::now());
                                self.estimate.set(estimate);
                            }
                            Err(err) => return err,
                        },
                        // A sleeper due earlier came: plan again.
                        () = self.nudge.notified() => {}
                    }
                    self.asleep_for.set(None);
                }
            }
        }
    }

    /// Wakes every sleeper due by `now`; the earliest time still to come.
    fn wake_due(&self, now: Instant) -> Option<Instant> {
        let mut sleepers = self.sleepers.borrow_mut();
        while let Some(std::cmp::Reverse(first)) = sleepers.peek() {
            if first.at > now {
                return Some(first.at);
            }
            if let Some(std::cmp::Reverse(sleeper)) = sleepers.pop() {
                sleeper.waker.wake();
            }
        }
        None
    }
}

/// The future of [`AsyncPacer::until`].
#[derive(Debug)]
pub struct Until<'p> {
    pacer: &'p AsyncPacer,
    at: Instant,
    registered: bool,
}

impl std::future::Future for Until<'_> {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if Instant::now() >= self.at {
            return std::task::Poll::Ready(());
        }
        if !self.registered {
            // Once: a task is woken only by the driver, and a local task's
            // waker stays valid for the task's life. (A sleeper whose task
            // was dropped meanwhile is woken for nothing: harmless.)
            self.registered = true;
            let pacer = self.pacer;
            let order = pacer.registered.get();
            pacer.registered.set(order + 1);
            pacer.sleepers.borrow_mut().push(std::cmp::Reverse(Sleeper {
                at: self.at,
                order,
                waker: cx.waker().clone(),
            }));
            // The driver sleeps for something later (or for nothing): it must
            // plan again. Usually it waits for an earlier send of another
            // connection and needs no nudge: no system call on this path.
            if pacer.asleep_for.get().is_none_or(|asleep_for| self.at < asleep_for) {
                pacer.nudge.notify_one();
            }
        }
        std::task::Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spin_under_way_counts_up_to_now() {
        let t0 = Instant::now();
        let mut clock = SpinClock::default();
        clock.spinning(t0);
        // Still spinning (a send due every 100 µs keeps it so): counted.
        clock.spinning(t0 + Duration::from_millis(3));
        assert_eq!(clock.total_at(t0 + Duration::from_millis(5)), Duration::from_millis(5));
        clock.stopped(t0 + Duration::from_millis(6));
        assert_eq!(
            clock.total_at(t0 + Duration::from_millis(9)),
            Duration::from_millis(6),
            "a stopped spin stops counting"
        );
        clock.spinning(t0 + Duration::from_millis(10));
        assert_eq!(clock.total_at(t0 + Duration::from_millis(11)), Duration::from_millis(7));
    }

    #[test]
    fn uniform_connections_are_evenly_staggered_and_never_drift() {
        let start = Instant::now();
        // 4 connections, 1,000 msg/s: each every 4 ms, phases 0, 1, 2, 3 ms.
        let mut all: Vec<Duration> = (0..4)
            .flat_map(|id| {
                let mut s = Schedule::new(Arrivals::Uniform, 1, start, id, 4, 1000.0);
                assert_eq!(s.interval(), Duration::from_millis(4));
                (0..250).map(move |_| s.advance() - start).collect::<Vec<_>>()
            })
            .collect();
        all.sort();
        for (k, at) in all.iter().enumerate() {
            assert_eq!(*at, Duration::from_millis(k as u64), "send {k}");
        }
        // Far along, still exact: no accumulated rounding (1/3 ms does not
        // add up exactly in binary, a product does not drift).
        let mut s = Schedule::new(Arrivals::Uniform, 1, start, 0, 1, 3000.0);
        for _ in 0..3_000_000 {
            s.advance();
        }
        let off = (s.peek() - start).as_secs_f64() - 1000.0;
        assert!(off.abs() < 1e-6, "{off}");
    }

    #[test]
    fn poisson_gaps_have_the_mean_and_spread_of_an_exponential_and_repeat_with_the_seed() {
        let start = Instant::now();
        let draw = |seed, id| {
            let mut s = Schedule::new(Arrivals::Poisson, seed, start, id, 10, 10_000.0);
            let mut last = s.advance();
            (0..20_000)
                .map(|_| {
                    let at = s.advance();
                    let gap = (at - last).as_secs_f64();
                    last = at;
                    gap
                })
                .collect::<Vec<f64>>()
        };
        let gaps = draw(7, 3);
        let n = gaps.len() as f64;
        let mean = gaps.iter().sum::<f64>() / n;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n;
        // Mean 1 ms; an exponential's standard deviation equals its mean.
        assert!((mean / 1e-3 - 1.0).abs() < 0.03, "mean {mean}");
        assert!((var.sqrt() / mean - 1.0).abs() < 0.05, "cv {}", var.sqrt() / mean);
        assert_eq!(gaps, draw(7, 3), "the same seed and id give the same arrivals");
        assert_ne!(gaps, draw(8, 3));
        assert_ne!(gaps, draw(7, 4));
        // The first send keeps the connection's even phase.
        let s = Schedule::new(Arrivals::Poisson, 7, start, 3, 10, 10_000.0);
        assert_eq!(s.peek() - start, Duration::from_micros(300));
    }

    /// The correction's arithmetic against known times: 1 message a
    /// millisecond, the server answering in 300 µs.
    #[test]
    fn the_server_timeline_charges_the_server_only() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_micros(n * 1000);
        let us = |n: u64| Duration::from_micros(n);
        let mut timeline = ServerTimeline::default();
        // Message 0 leaves 800 µs late (the client's lateness), echoed 300 µs
        // after it left: charged 300 µs, not 1.1 ms.
        let start = timeline.start(ms(0));
        assert_eq!(start, ms(0));
        assert_eq!(timeline.echoed(ms(0), start, ms(0) + us(800), ms(0) + us(1100)), (us(300), us(300)));
        // Message 1 (intended at 1 ms) could only leave after that echo, at
        // 1.1 ms: the server's timeline had it free at 0.3 ms, so it is not
        // held back, and is charged its own 300 µs only.
        let start = timeline.start(ms(1));
        assert_eq!(start, ms(1), "not held back by the client's lateness");
        assert_eq!(timeline.echoed(ms(1), start, ms(1) + us(100), ms(1) + us(400)).0, us(300));
        // Message 2: the server holds it 2.5 ms. Message 3, intended at 3 ms,
        // waits for that echo (at 4.5 ms) and is charged from 3 ms.
        let start = timeline.start(ms(2));
        assert_eq!(timeline.echoed(ms(2), start, ms(2), ms(2) + us(2500)).0, us(2500));
        let start = timeline.start(ms(3));
        assert_eq!(start, ms(4) + us(500), "held back by the server");
        assert_eq!(timeline.echoed(ms(3), start, ms(4) + us(520), ms(4) + us(820)).0, us(1800));
        // A lost message frees its slot at its timeout on the server timeline.
        timeline.expired(ms(10), Duration::from_millis(5));
        assert_eq!(timeline.start(ms(12)), ms(15));
        assert_eq!(timeline.start(ms(16)), ms(16));
    }

    #[test]
    fn the_wait_sleeps_far_off_spins_close_and_learns_its_lateness() {
        let mut estimate = WakeEstimate::default();
        let now = Instant::now();
        let due = now + Duration::from_millis(1);
        assert_eq!(estimate.plan(due, now), Wait::Sleep(due - estimate.lead()));
        assert_eq!(estimate.plan(due, due - SPIN_HORIZON), Wait::Spin, "close sends are spun for");
        assert_eq!(estimate.plan(due, due - Duration::from_micros(5)), Wait::Spin);
        assert_eq!(estimate.plan(due, due), Wait::Due);
        // Wake-ups 5, 10, 15 or 20 µs late, in turn: the lead settles near
        // the 75th percentile, between 15 and 20 µs (give or take a step).
        for i in 0..2000u64 {
            estimate.observe(now, now + Duration::from_micros(5 * (1 + i % 4)));
        }
        let lead_us = estimate.lead().as_secs_f64() * 1e6;
        assert!((14.0..=23.0).contains(&lead_us), "{lead_us} µs");
        // One stall in 20 moves a quantile little (a mean of them would be 50 ms).
        for i in 0..2000u64 {
            let late = if i % 20 == 0 { Duration::from_secs(1) } else { Duration::from_micros(10) };
            estimate.observe(now, now + late);
        }
        assert!(estimate.lead() <= Duration::from_micros(13), "{:?}", estimate.lead());
        for _ in 0..200 {
            estimate.observe(now, now + Duration::from_secs(1));
        }
        assert_eq!(estimate.lead(), MAX_LEAD, "however late, the spin stays short");
    }

    #[test]
    fn the_timer_fires_at_the_time_it_was_armed_for() {
        let timer = PreciseTimer::new().unwrap();
        let fd = timer.as_raw_fd();
        let at = Instant::now() + Duration::from_millis(20);
        timer.arm(at).unwrap();
        let mut poll = [nix::poll::PollFd::new(timer.as_fd(), nix::poll::PollFlags::POLLIN)];
        let ready = nix::poll::poll(&mut poll, nix::poll::PollTimeout::from(2000u16)).unwrap();
        assert_eq!(ready, 1, "fired (fd {fd})");
        assert!(Instant::now() >= at, "not before its time");
        timer.clear();
        let mut poll = [nix::poll::PollFd::new(timer.as_fd(), nix::poll::PollFlags::POLLIN)];
        assert_eq!(nix::poll::poll(&mut poll, nix::poll::PollTimeout::ZERO).unwrap(), 0, "cleared");
    }
}
