//! The io_uring plumbing of the `uring` model, apart from its page: how its
//! rings are built and probed ([`new`], [`probe`]), how a worker enters one
//! ([`enter`]) and queues requests on it ([`push`], [`Pause`], the
//! multishot [`Accept`]), what a CQE's `user_data` says ([`Token`]), how a
//! worker going away gets its memory back from the kernel ([`cancel_all`]),
//! and the memory the workers lend it: each connection's buffer, owned by
//! its operation in flight ([`InFlight`]), and the datagram workers'
//! provided buffer ring ([`BufferRing`], used by [`DatagramWorker`]).
//!
//! The page (`models/uring.rs`) says what the model does with a ring —
//! multishot accept, one operation in flight per connection, a provided
//! buffer ring for datagrams — and which kernel brought each feature; this
//! module is what every ring of it needs, written once.

mod accept;
mod buffers;
mod datagrams;
mod inflight;

use std::io;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};
use nix::errno::Errno;
use tracing::warn;

pub use self::accept::Accept;
pub use self::buffers::{Arrived, BufferRing, Source};
pub use self::datagrams::{BUFFERS as DATAGRAM_BUFFERS, DatagramWorker};
pub use self::inflight::{Completed, InFlight};

/// Submission queue entries per ring. A worker handles at most half this
/// many completions between two submits, and each completion queues at most
/// two entries (an accepted connection's first receive, and the re-armed
/// accept), so the submission queue never fills.
pub const SQ_ENTRIES: u32 = 512;

/// Completion queue entries per ring: room for bursts (up to one CQE per
/// connection of the worker can be ready at once). Beyond it the kernel
/// keeps CQEs on an overflow list (IORING_FEAT_NODROP), not lost.
pub const CQ_ENTRIES: u32 = 4096;

/// A ring with the flags the model runs with (SINGLE_ISSUER, DEFER_TASKRUN,
/// SUBMIT_ALL). Called in the thread that will use it: SINGLE_ISSUER binds
/// the ring to its creator.
pub fn build() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_submit_all()
        .setup_cqsize(CQ_ENTRIES)
        .build(SQ_ENTRIES)
}

/// A worker's ring ([`build`]); a failure is `io_uring unavailable here:
/// <reason>`, the reason in words.
pub fn new() -> anyhow::Result<IoUring> {
    build().map_err(|err| unavailable(&ring_error_reason(&err, &SystemFacts::read())))
}

/// Can the model run here? Builds a ring with `build` and checks that the
/// kernel supports every opcode in `opcodes` (each with the name and kernel
/// it is reported with). Taking the builder as a parameter lets the tests
/// feed it the failures of other machines.
pub fn probe(build: impl FnOnce() -> io::Result<IoUring>, opcodes: &[(u8, &str)]) -> anyhow::Result<()> {
    let ring = build().map_err(|err| unavailable(&ring_error_reason(&err, &SystemFacts::read())))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|err| unavailable(&format!("cannot probe the supported operations ({err})")))?;
    missing_opcodes(opcodes, |op| probe.is_supported(op))
}

/// One turn of a worker's loop: submits what is queued, waits for at least
/// one completion, and takes up to `batch` of them into `cqes`. Shared by
/// the stream and the datagram workers.
pub fn enter(ring: &mut IoUring, batch: usize, cqes: &mut Vec<cqueue::Entry>) -> anyhow::Result<()> {
    match ring.submit_and_wait(1) {
        Ok(_) => {}
        // A signal, or the kernel asking us to reap completions before it
        // takes more: reap (below), then enter again.
        Err(err) if matches!(err.raw_os_error().map(Errno::from_raw), Some(Errno::EINTR)) => {}
        Err(err) if matches!(err.raw_os_error().map(Errno::from_raw), Some(Errno::EBUSY | Errno::EAGAIN)) => {
            if ring.completion().is_empty() {
                std::thread::sleep(Duration::from_millis(1)); // never spin
            }
        }
        Err(err) => return Err(err).context("io_uring_enter failed"),
    }
    cqes.clear();
    cqes.extend(ring.completion().take(batch));
    Ok(())
}

/// Queues `entry` on `ring`, submitting first if the queue is full.
///
/// # Safety
///
/// Every buffer (and timespec) `entry` points to must stay valid, and not
/// be moved or freed, until its CQE has arrived (for a timespec: until it
/// is submitted).
pub unsafe fn push(ring: &mut IoUring, entry: squeue::Entry) -> anyhow::Result<()> {
    // SAFETY: the caller's promise is this function's.
    if unsafe { ring.submission().push(&entry) }.is_ok() {
        return Ok(());
    }
    // Cannot happen with the workers' batch sizes; if it does, make room.
    ring.submit().context("cannot submit a full submission queue")?;
    // SAFETY: as above.
    unsafe { ring.submission().push(&entry) }.map_err(|_| anyhow!("the submission queue stays full"))
}

/// What a CQE is the completion of, as its `user_data` says: one of a
/// worker's standing requests, or an operation — a connection's receive or
/// send ([`InFlight`]), a datagram's echo (by its buffer id) — under its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// The multishot accept.
    Accept,
    /// The accept's back-off timer.
    AcceptPause,
    /// The datagram worker's multishot receive.
    Receive,
    /// The receive's back-off timer.
    ReceivePause,
    /// A cancellation (of an abandoned operation): nothing to do.
    Cancel,
    /// An operation, by its key.
    Op(usize),
}

impl Token {
    /// The standing requests take the top values; keys (table indices,
    /// buffer ids) never get near them.
    const FIRST_STANDING: u64 = u64::MAX - 4;

    /// This token as a `user_data`.
    pub fn user_data(self) -> u64 {
        match self {
            Token::Accept => u64::MAX,
            Token::AcceptPause => u64::MAX - 1,
            Token::Receive => u64::MAX - 2,
            Token::ReceivePause => u64::MAX - 3,
            Token::Cancel => Token::FIRST_STANDING,
            Token::Op(key) => {
                let key = key as u64;
                assert!(key < Token::FIRST_STANDING, "operation key {key} out of range");
                key
            }
        }
    }

    /// The token a CQE's `user_data` carries.
    pub fn of(user_data: u64) -> Token {
        match u64::MAX - user_data {
            0 => Token::Accept,
            1 => Token::AcceptPause,
            2 => Token::Receive,
            3 => Token::ReceivePause,
            4 => Token::Cancel,
            _ => Token::Op(user_data as usize),
        }
    }
}

/// A worker's back-off: the `Timeout` request that ends it, and the time it
/// points to, boxed so that its address is stable. One back-off at a time
/// per `Pause`: the kernel copies the time when the request is submitted,
/// and [`Pause::entry`] is not called again before that.
#[derive(Debug, Default)]
pub struct Pause(Box<types::Timespec>);

impl Pause {
    /// A `Timeout` of `duration` whose CQE (-ETIME) carries `token`.
    pub fn entry(&mut self, duration: Duration, token: Token) -> squeue::Entry {
        *self.0 = types::Timespec::from(duration);
        opcode::Timeout::new(&*self.0).build().user_data(token.user_data())
    }
}

/// Cancels every request in flight on `ring` (synchronous cancellation,
/// Linux 6.0) and reaps CQEs, handing each to `reap` with `state`, until
/// `settled(state)` or `deadline` (then an error). For a worker going away:
/// what it lent the kernel may be freed only once this has returned `Ok`.
pub fn cancel_all<S: ?Sized>(
    ring: &mut IoUring,
    deadline: Instant,
    state: &mut S,
    reap: impl Fn(&mut S, &cqueue::Entry),
    settled: impl Fn(&S) -> bool,
) -> anyhow::Result<()> {
    // Submit what is queued, so that the cancellation sees it.
    ring.submit().context("cannot submit before cancelling")?;
    let timeout = types::Timespec::from(deadline.saturating_duration_since(Instant::now()));
    match ring.submitter().register_sync_cancel(Some(timeout), types::CancelBuilder::any().all()) {
        // ENOENT: nothing was in flight.
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {}
        Err(err) => warn!(%err, "cannot cancel the requests in flight"),
    }
    loop {
        for cqe in ring.completion() {
            reap(state, &cqe);
        }
        if settled(state) {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            anyhow::bail!("requests still in flight after cancelling them all");
        }
        // Waits for a CQE (running the task work DEFER_TASKRUN defers),
        // at most until the deadline.
        let wait = types::Timespec::from(left);
        match ring.submitter().submit_with_args(1, &types::SubmitArgs::new().timespec(&wait)) {
            Ok(_) => {}
            Err(err) if matches!(err.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
            Err(err) => return Err(err).context("cannot wait for the cancelled requests"),
        }
    }
}

/// The error every failed probe becomes: `io_uring unavailable here: <reason>`.
pub fn unavailable(reason: &str) -> anyhow::Error {
    anyhow!("io_uring unavailable here: {reason}")
}

/// An error naming the opcodes `supported` says no to; `Ok` if none.
fn missing_opcodes(opcodes: &[(u8, &str)], supported: impl Fn(u8) -> bool) -> anyhow::Result<()> {
    let missing: Vec<&str> = opcodes.iter().filter(|(op, _)| !supported(*op)).map(|(_, name)| *name).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(unavailable(&format!("the kernel lacks the operations {}", missing.join(", "))))
    }
}

/// What the system says about io_uring, for the reason of a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SystemFacts {
    /// `uname -r`.
    kernel: String,
    /// `/proc/sys/kernel/io_uring_disabled` (absent before 6.6).
    disabled: Option<String>,
}

impl SystemFacts {
    fn read() -> SystemFacts {
        let kernel = nix::sys::utsname::uname()
            .map_or_else(|_| "unknown".to_owned(), |u| u.release().to_string_lossy().into_owned());
        let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok().map(|s| s.trim().to_owned());
        SystemFacts { kernel, disabled }
    }
}

/// Why `io_uring_setup` failed with `err`, in words.
fn ring_error_reason(err: &io::Error, facts: &SystemFacts) -> String {
    let kernel = &facts.kernel;
    let errno = err.raw_os_error().map(Errno::from_raw);
    let why = match errno {
        Some(Errno::ENOSYS) => format!(
            "io_uring_setup does not exist (kernel {kernel}: io_uring needs 5.1 and this model 6.1), \
             or a seccomp filter hides it"
        ),
        Some(Errno::EPERM | Errno::EACCES) => {
            let sysctl = match facts.disabled.as_deref() {
                Some("2") => "kernel.io_uring_disabled = 2: disabled for everyone".to_owned(),
                Some("1") => {
                    "kernel.io_uring_disabled = 1: only for kernel.io_uring_group and CAP_SYS_ADMIN".to_owned()
                }
                Some(value) => format!("kernel.io_uring_disabled = {value}"),
                None => "no kernel.io_uring_disabled sysctl".to_owned(),
            };
            format!("io_uring_setup is not permitted ({sysctl}; or a seccomp filter blocks it)")
        }
        Some(Errno::EINVAL) => format!(
            "the kernel rejects the ring's flags (kernel {kernel}; SUBMIT_ALL needs 5.18, \
             SINGLE_ISSUER 6.0, DEFER_TASKRUN 6.1)"
        ),
        Some(Errno::ENOMEM) => {
            "no memory for the ring (RLIMIT_MEMLOCK before kernel 5.12, or the memory cgroup)".to_owned()
        }
        Some(Errno::EMFILE | Errno::ENFILE) => "no file descriptor left for the ring".to_owned(),
        _ => format!("io_uring_setup failed (kernel {kernel})"),
    };
    format!("{why}: {err}")
}

#[cfg(test)]
mod tests {
    use io_uring::opcode;

    use super::*;

    /// Two opcodes, as a model names them.
    const OPCODES: [(u8, &str); 2] = [(opcode::Recv::CODE, "recv (5.6)"), (opcode::Send::CODE, "send (5.6)")];

    fn facts(disabled: Option<&str>) -> SystemFacts {
        SystemFacts { kernel: "5.10.0-test".to_owned(), disabled: disabled.map(str::to_owned) }
    }

    /// What main prints (`{:#}`) for a probe that failed with `errno`.
    fn probe_failing_with(errno: Errno) -> String {
        let err = probe(|| Err(io::Error::from_raw_os_error(errno as i32)), &OPCODES).expect_err("a failed ring build");
        format!("{err:#}")
    }

    #[test]
    fn a_ring_that_cannot_be_built_is_reported_as_unavailable() {
        for errno in [Errno::ENOSYS, Errno::EPERM, Errno::EINVAL, Errno::ENOMEM, Errno::EMFILE, Errno::EIO] {
            let message = probe_failing_with(errno);
            assert!(message.starts_with("io_uring unavailable here: "), "{errno}: {message}");
            assert_eq!(message.lines().count(), 1, "{errno}: one line: {message:?}");
        }
    }

    #[test]
    fn the_reason_names_the_likely_cause() {
        let reason =
            |errno: Errno, disabled| ring_error_reason(&io::Error::from_raw_os_error(errno as i32), &facts(disabled));
        assert!(reason(Errno::EPERM, Some("2")).contains("io_uring_disabled = 2"));
        assert!(reason(Errno::EPERM, Some("1")).contains("io_uring_group"));
        assert!(reason(Errno::EPERM, None).contains("seccomp"));
        assert!(reason(Errno::ENOSYS, None).contains("5.10.0-test"));
        assert!(reason(Errno::EINVAL, None).contains("DEFER_TASKRUN 6.1"));
        assert!(reason(Errno::ENOMEM, None).contains("RLIMIT_MEMLOCK"));
    }

    #[test]
    fn tokens_survive_their_user_data() {
        let tokens = [Token::Accept, Token::AcceptPause, Token::Receive, Token::ReceivePause, Token::Cancel];
        for token in tokens.into_iter().chain([Token::Op(0), Token::Op(255), Token::Op(1 << 40)]) {
            assert_eq!(Token::of(token.user_data()), token);
        }
    }

    #[test]
    fn missing_opcodes_are_named() {
        assert!(missing_opcodes(&OPCODES, |_| true).is_ok());
        let err = missing_opcodes(&OPCODES, |op| op != opcode::Send::CODE).unwrap_err().to_string();
        assert!(err.starts_with("io_uring unavailable here: "), "{err}");
        assert!(err.contains("send (5.6)") && !err.contains("recv"), "{err}");
    }
}
