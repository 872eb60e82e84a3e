//! loadgen's own CPU use, to tell when the client may be the bottleneck.

use std::time::Duration;

/// CPU time (user + system) of the calling thread, in seconds.
pub fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec we pass.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
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
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage only writes the struct we pass.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return ProcessCpu::default();
        }
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        ProcessCpu { user: tv(usage.ru_utime), sys: tv(usage.ru_stime) }
    }

    /// The CPU used between `earlier` and `self`.
    pub fn since(self, earlier: ProcessCpu) -> ProcessCpu {
        ProcessCpu { user: self.user.saturating_sub(earlier.user), sys: self.sys.saturating_sub(earlier.sys) }
    }
}
