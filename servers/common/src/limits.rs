//! The open-file limit: 10,000 connections need 10,000 descriptors, and the
//! usual soft default is 1,024.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The open-file limit after [`raise_nofile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit, which only root can raise.
    pub hard: u64,
}

/// Raises the soft RLIMIT_NOFILE to `wanted`, or to the hard limit if that
/// is lower (`u64::MAX`: as far as the hard limit allows). Never lowers it.
pub fn raise_nofile(wanted: u64) -> nix::Result<NofileLimit> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let target = wanted.min(hard);
    if soft >= target {
        return Ok(NofileLimit { soft, hard });
    }
    setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
    Ok(NofileLimit { soft: target, hard })
}
