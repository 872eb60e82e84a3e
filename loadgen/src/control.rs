//! `loadgen --control`: a load run driven by a coordinator (the benchmark),
//! which owns the measured window. One JSON object per line:
//!
//! ```text
//! loadgen → {"event":"ready","monotonic_ns":N}                   every connection attempted, at N
//! loadgen ← {"start_ns":T0}                                       start the clock at T0 (CLOCK_MONOTONIC)
//!        or {"abort":"why"}                                        give up: exit 1, no report
//! loadgen → {"event":"report","report":{…}}                       after T0 + warm-up + duration
//! ```
//!
//! The warm-up and the window follow T0 (`--warmup`, `--duration`), so the
//! coordinator knows the window's edges, T0 + warm-up and T0 + warm-up +
//! duration, and reads the server's CPU at those instants itself. Nothing
//! else crosses the channel while the load runs. An error after `ready` is
//! one line `{"event":"error","message":"…"}` (and loadgen's exit status).
//! Closed stdin before the start is an abort.

use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::{LoadError, Opts, Report};

/// What loadgen says on stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Said {
    /// Every connection was attempted (the report says how many opened).
    Ready { monotonic_ns: u64 },
    /// The run's result.
    Report { report: Box<Report> },
    /// The run failed.
    Error { message: String },
}

/// What the coordinator says on stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Told {
    /// Start the clock at this CLOCK_MONOTONIC instant.
    Start { start_ns: u64 },
    /// Give up.
    Abort { abort: String },
}

fn say(said: &Said) -> io::Result<()> {
    let line = serde_json::to_string(said).map_err(io::Error::other)?;
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// Runs `opts` under the protocol on stdin and stdout; the report is also
/// returned (to write `--json`).
pub fn run(opts: &Opts) -> Result<Report, LoadError> {
    let opts = Opts { progress: false, ..opts.clone() };
    let result = crate::run_controlled(&opts, &mut |_| {}, &mut || {
        say(&Said::Ready { monotonic_ns: echo_common::clock::now_ns() }).map_err(LoadError::Threads)?;
        let mut line = String::new();
        io::stdin().lock().read_line(&mut line).map_err(LoadError::Threads)?;
        match serde_json::from_str::<Told>(line.trim()) {
            Ok(Told::Start { start_ns }) => Ok(echo_common::clock::to_instant(start_ns)),
            Ok(Told::Abort { abort }) => Err(LoadError::Aborted(abort)),
            Err(_) if line.is_empty() => Err(LoadError::Aborted("the coordinator closed the channel".into())),
            Err(err) => Err(LoadError::Aborted(format!("the coordinator said {:?}: {err}", line.trim()))),
        }
    });
    match &result {
        Ok(report) => say(&Said::Report { report: Box::new(report.clone()) }).map_err(LoadError::Threads)?,
        // A closed stdout: nobody to tell.
        Err(err) => drop(say(&Said::Error { message: err.to_string() })),
    }
    result
}
