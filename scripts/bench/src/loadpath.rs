//! The load path: `loadgen` as its own process, driven by the bench over
//! `loadgen --control` (loadgen/README.md), so that the bench owns the
//! measured window. loadgen connects and says it is ready; the bench names
//! the instant the clock starts (CLOCK_MONOTONIC), so it knows the window's
//! edges — start + warm-up, start + warm-up + duration — and calls back at
//! each (the runner reads the server's CPU there); then loadgen's report.
//! Nothing crosses the channel during the window.
//!
//! The same protocol is what a load generator on another host speaks; here
//! the process is a child, on the CPUs of the calling thread (a child
//! inherits its parent thread's affinity).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use loadgen::control::{Said, Told};
use loadgen::{Opts, Report};

/// How far ahead of "ready" the bench sets the start: enough for the
/// message to cross the pipe and loadgen's threads to wake.
pub const START_AHEAD: Duration = Duration::from_millis(20);
/// Beyond its own timeouts, how long loadgen may take to connect or report
/// before the bench gives up on it.
const GRACE: Duration = Duration::from_secs(10);

/// An edge of the measured window, when the bench reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Open,
    Close,
}

/// Kills the child if the run ends early (an error, a panic).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// How often the wait for a mark looks at `stop`.
const LOOK: Duration = Duration::from_millis(20);

/// Runs `opts` in a `loadgen` process (`bin`), calling `at_mark` at the
/// window's edges; the report, or why there is none (one line). A report
/// that comes early (every connection stopped: the server is gone) closes
/// the window then. `stop` is looked at while the load runs: once it says
/// so, loadgen is killed and the run ends (`interrupted`).
pub fn run(bin: &Path, opts: &Opts, stop: &dyn Fn() -> bool, mut at_mark: impl FnMut(Mark)) -> Result<Report, String> {
    let child = Command::new(bin)
        .arg("--control")
        .args(opts.to_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| format!("cannot start {}: {err}", bin.display()))?;
    let mut guard = Guard(child);
    let stdout = guard.0.stdout.take().ok_or("loadgen has no stdout")?;
    let mut stdin: ChildStdin = guard.0.stdin.take().ok_or("loadgen has no stdin")?;
    // Lines are read on a thread of their own, so that every wait has a deadline.
    let (lines, said) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    // The next thing loadgen says, by `deadline`; `Ok(None)` if it has not by then.
    let next = |deadline: Instant| -> Result<Option<Said>, String> {
        loop {
            if stop() {
                return Err("interrupted".into());
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            match said.recv_timeout((deadline - now).min(LOOK)) {
                Ok(Ok(line)) => {
                    return serde_json::from_str(&line)
                        .map(Some)
                        .map_err(|err| format!("loadgen said {line:?}: {err}"));
                }
                Ok(Err(err)) => return Err(format!("cannot read loadgen's output: {err}")),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err("loadgen exited without a word".into()),
            }
        }
    };
    let silent = |limit: Duration| format!("loadgen said nothing for {limit:?}");
    // Connecting: every attempt within its timeout, 256 at a time per thread.
    let connecting = opts.connect_timeout * (opts.connections / 256 + 1) + GRACE;
    match next(Instant::now() + connecting)?.ok_or_else(|| silent(connecting))? {
        Said::Ready { .. } => {}
        Said::Error { message } => return Err(message),
        other => return Err(format!("loadgen said {other:?} before it was ready")),
    }
    let start = Instant::now() + START_AHEAD;
    let told = serde_json::to_string(&Told::Start { start_ns: echo_common::clock::to_ns(start) })
        .map_err(|err| err.to_string())?;
    writeln!(stdin, "{told}").and_then(|()| stdin.flush()).map_err(|err| format!("cannot start loadgen: {err}"))?;
    let mut early = None;
    for (mark, at) in [(Mark::Open, start + opts.warmup), (Mark::Close, start + opts.warmup + opts.duration)] {
        if early.is_none() {
            early = next(at)?;
        }
        at_mark(mark);
    }
    let said = match early {
        Some(said) => said,
        None => next(Instant::now() + opts.timeout + GRACE)?.ok_or_else(|| silent(opts.timeout + GRACE))?,
    };
    let report = match said {
        Said::Report { report } => *report,
        Said::Error { message } => return Err(message),
        other => return Err(format!("loadgen said {other:?} instead of its report")),
    };
    let status = guard.0.wait().map_err(|err| err.to_string())?;
    if !status.success() {
        return Err(format!("loadgen reported, then exited with {status}"));
    }
    Ok(report)
}
