//! CLOCK_MONOTONIC as numbers another process can read: the clock `Instant`
//! reads on Linux, shared by every process of the host, so a coordinator
//! and its load generators can name the same instant ("start at T0", "the
//! window opened at T1") without a wall clock's jumps. `Instant` does not
//! expose its value; it is converted through a pair of readings taken a few
//! tens of nanoseconds apart, which is the conversion's error.

use std::time::{Duration, Instant};

use nix::sys::time::TimeValLike;
use nix::time::{ClockId, clock_gettime};

/// Nanoseconds of CLOCK_MONOTONIC now.
pub fn now_ns() -> u64 {
    // CLOCK_MONOTONIC exists on every Linux: cannot fail.
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is readable");
    now.num_nanoseconds().max(0) as u64
}

/// `at` as nanoseconds of CLOCK_MONOTONIC.
pub fn to_ns(at: Instant) -> u64 {
    let (ns, now) = (now_ns(), Instant::now());
    if at >= now { ns + (at - now).as_nanos() as u64 } else { ns.saturating_sub((now - at).as_nanos() as u64) }
}

/// The `Instant` of `ns` nanoseconds of CLOCK_MONOTONIC.
pub fn to_instant(ns: u64) -> Instant {
    let (now_ns, now) = (now_ns(), Instant::now());
    if ns >= now_ns {
        now + Duration::from_nanos(ns - now_ns)
    } else {
        now.checked_sub(Duration::from_nanos(now_ns - ns)).unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // The error is the time between two clock readings: under a microsecond
    // on an idle machine; the bound allows for a preempted test thread.
    fn an_instant_goes_there_and_back() {
        let at = Instant::now() + Duration::from_millis(250);
        let back = to_instant(to_ns(at));
        let error = if back > at { back - at } else { at - back };
        assert!(error < Duration::from_micros(200), "{error:?}");
        let past = Instant::now() - Duration::from_millis(5);
        let back = to_instant(to_ns(past));
        let error = if back > past { back - past } else { past - back };
        assert!(error < Duration::from_micros(200), "{error:?}");
        assert!(to_ns(Instant::now()) >= now_ns() - 1_000_000, "the same clock");
    }
}
