//! loadgen's own CPU use, to tell when the client may be the bottleneck.

use std::time::Duration;

use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeValLike;
use nix::time::{ClockId, clock_gettime};

/// CPU time (user + system) of the calling thread, in seconds.
pub fn thread_cpu_secs() -> f64 {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0.0, |ts| ts.num_nanoseconds() as f64 * 1e-9)
}

/// User and system CPU time of the whole process so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessCpu {
    pub user: Duration,
    pub sys: Duration,
}

impl ProcessCpu {
    /// getrusage(RUSAGE_SELF).
    pub fn now() -> ProcessCpu {
        let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) else {
            return ProcessCpu::default();
        };
        let micros = |t: nix::sys::time::TimeVal| Duration::from_micros(t.num_microseconds().max(0) as u64);
        ProcessCpu { user: micros(usage.user_time()), sys: micros(usage.system_time()) }
    }

    /// The CPU used between `earlier` and `self`.
    pub fn since(self, earlier: ProcessCpu) -> ProcessCpu {
        ProcessCpu { user: self.user.saturating_sub(earlier.user), sys: self.sys.saturating_sub(earlier.sys) }
    }
}
