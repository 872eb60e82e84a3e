//! The open-file limit: 10,000 connections need 10,000 descriptors, and the
//! usual soft default is 1,024.

use std::io;

use nix::errno::Errno;
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

/// How many more descriptors this process can open now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headroom {
    /// The soft RLIMIT_NOFILE.
    pub limit: u64,
    /// Descriptors open with a number below it.
    pub open: u64,
}

impl Headroom {
    /// Descriptors that can still be opened.
    pub fn free(&self) -> u64 {
        self.limit.saturating_sub(self.open)
    }
}

/// Counts this process's open descriptors (in /proc/self/fd) against the
/// soft RLIMIT_NOFILE. Racy only if another thread opens or closes
/// descriptors meanwhile.
pub fn headroom() -> io::Result<Headroom> {
    let (limit, _) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let entries = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries,
        // Not even the directory could be opened: nothing is free.
        Err(err) if err.raw_os_error() == Some(Errno::EMFILE as i32) => return Ok(Headroom { limit, open: limit }),
        Err(err) => return Err(err),
    };
    let names = entries.map(|entry| entry.map(|e| e.file_name())).collect::<io::Result<Vec<_>>>()?;
    let listed = open_below(names.iter().filter_map(|name| name.to_str()), limit);
    // The listing includes the descriptor that read it, which was opened
    // below the limit (else opening it failed) and is closed by now.
    Ok(Headroom { limit, open: listed.saturating_sub(1) })
}

/// Of the descriptor numbers `names` (a listing of /proc/self/fd), how many
/// are below `limit`. A new descriptor takes the lowest free number and must
/// be below the limit, so only those take room: one above it (the limit
/// lowered after it was opened) does not.
fn open_below<'a>(names: impl Iterator<Item = &'a str>, limit: u64) -> u64 {
    names.filter(|name| name.parse::<u64>().is_ok_and(|fd| fd < limit)).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_descriptors_below_the_limit_take_room() {
        let listing = ["0", "1", "2", "10", "63", "64", "251", "not-a-number"];
        assert_eq!(open_below(listing.into_iter(), 64), 5);
        let room = Headroom { limit: 64, open: 5 };
        assert_eq!(room.free(), 59);
        assert_eq!(Headroom { limit: 8, open: 9 }.free(), 0);
    }

    #[test]
    fn this_process_has_its_stdio_open_and_room_left() {
        let room = headroom().unwrap();
        // stdin, stdout and stderr at least; other test threads open and
        // close descriptors meanwhile, so no exact count.
        assert!(room.open >= 3 && room.free() > 0, "{room:?}");
    }
}
