//! Child processes of this executable, for the models that run them
//! (`process`: one per connection; `prefork`: a fixed set): how they are
//! started, reaped and stopped, and how a child adopts the socket its parent
//! hands it. No zombies: the parent reaps with `waitpid(WNOHANG)` on every
//! tick. No orphans: at shutdown it sends SIGTERM, waits [`CHILD_GRACE`],
//! SIGKILLs and reaps the rest; and each child asks the kernel
//! (PR_SET_PDEATHSIG) to kill it should the parent die first.

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getppid};
use tracing::warn;

use crate::cli::Common;
use crate::work::{self, Work};

/// How long children get to exit after SIGTERM before they are SIGKILLed.
pub const CHILD_GRACE: Duration = Duration::from_millis(800);

/// Live children by PID, each with what it holds (a connection's slot, or nothing).
#[derive(Debug)]
pub struct Children<T> {
    live: HashMap<Pid, T>,
}

impl<T> Default for Children<T> {
    fn default() -> Self {
        Children { live: HashMap::new() }
    }
}

impl<T> Children<T> {
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    pub fn insert(&mut self, pid: Pid, held: T) {
        self.live.insert(pid, held);
    }

    /// Reaps every child that has exited, without blocking; hands each one's
    /// status and what it held to `exited` (dropping it frees it).
    pub fn reap(&mut self, mut exited: impl FnMut(WaitStatus, T)) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(status @ (WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _))) => {
                    if let Some(held) = self.live.remove(&pid) {
                        exited(status, held);
                    }
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return, // none exited; or no children at all
                Ok(_) => {}                                                // stopped or continued: not gone
                Err(Errno::EINTR) => {}
                Err(err) => {
                    warn!(%err, "waitpid failed");
                    return;
                }
            }
        }
    }

    /// SIGTERM to every child, a short grace period, SIGKILL, reap them all.
    pub fn terminate_all(&mut self) {
        self.signal_all(Signal::SIGTERM);
        let deadline = Instant::now() + CHILD_GRACE;
        while !self.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            self.reap(|_, _| {});
        }
        if !self.is_empty() {
            warn!(left = self.len(), "children ignored SIGTERM; killing them");
            self.signal_all(Signal::SIGKILL);
            for pid in self.live.keys() {
                // A blocking wait on our own, now killed, child.
                let _ = waitpid(*pid, None);
            }
            self.live.clear();
        }
    }

    fn signal_all(&self, signal: Signal) {
        for &pid in self.live.keys() {
            // `pid` is a child not yet reaped, so it cannot have been reused
            // by another process. It may have exited already: ESRCH is fine.
            let _ = kill(pid, signal);
        }
    }
}

/// The option that makes this executable a model's child: `echo-server
/// <MODEL> --child-of <PID>` serves what its parent, PID, handed it on
/// stdin (a connection for `process`, the listening socket for `prefork`).
/// Hidden from `--help`: only [`spawn_self`] gives it. A model takes it by
/// flattening this group into its `Args` and registering its child mode
/// (`crate::models::ChildMode`).
#[derive(Debug, Clone, Default, Args)]
pub struct ChildOf {
    /// Internal: serve the socket on stdin as a child of this PID.
    #[arg(long = CHILD_OF, hide = true, value_name = "PID")]
    pub parent: Option<u32>,
    /// Internal: the parent's calibration of `--work cpu:`, in nanoseconds
    /// per iteration, so that a child (one per connection, for `process`)
    /// does not measure it again.
    #[arg(long = CALIBRATION, hide = true, value_name = "NS")]
    pub ns_per_iteration: Option<f64>,
}

impl ChildOf {
    /// In a child: takes the parent's calibration of the cpu work, if it sent one.
    pub fn adopt_calibration(&self) {
        if let Some(ns_per_iteration) = self.ns_per_iteration {
            work::adopt_calibration(work::Calibration { ns_per_iteration });
        }
    }
}

/// [`ChildOf`]'s flags, without their dashes: written once, read by clap
/// and by [`spawn_self`].
const CHILD_OF: &str = "child-of";
const CALIBRATION: &str = "work-ns-per-iteration";

/// Re-runs this executable as `<model> --child-of <our pid> --buffer-size
/// N --work W` (and, for `cpu:` work, our calibration of it), with `stdin`
/// (a socket) as its descriptor 0; our copy is closed once spawned. We reap
/// with `waitpid(-1)` ourselves: dropping the `Child` neither waits nor kills.
pub fn spawn_self(exe: &Path, model: &str, common: &Common, stdin: OwnedFd) -> std::io::Result<Pid> {
    let mut command = Command::new(exe);
    command
        .arg(model)
        .arg(format!("--{CHILD_OF}"))
        .arg(std::process::id().to_string())
        .arg("--buffer-size")
        .arg(common.buffer_size.to_string())
        .arg("--work")
        .arg(common.work.to_string());
    // Measured at start-up for `cpu:` work (`Work::calibrate`). `{}` of an
    // f64 reads back as the same f64.
    if let (Work::Cpu(_), Some(calibration)) = (common.work, work::calibration()) {
        command.arg(format!("--{CALIBRATION}")).arg(calibration.ns_per_iteration.to_string());
    }
    let child = command.stdin(Stdio::from(stdin)).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn()?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// The child's first steps: die with the parent, even if it is SIGKILLed,
/// then take descriptor 0, the socket the parent handed over. `None`: the
/// parent died before the prctl took effect (the PID check closes that race).
pub fn adopt_stdin(parent: u32) -> anyhow::Result<Option<OwnedFd>> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("prctl(PR_SET_PDEATHSIG)")?;
    if getppid().as_raw() as u32 != parent {
        return Ok(None);
    }
    // SAFETY: the parent passed a socket as our stdin (descriptor 0), and
    // nothing else in this process uses descriptor 0.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(0) }))
}
