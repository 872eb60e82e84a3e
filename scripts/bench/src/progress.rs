//! The progress display of a run: a bar on a terminal, else (stderr
//! redirected) one line per finished cell with done/total, the ETA and the
//! cell's headline figure.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::results::Cell;
use crate::scenarios;

/// The progress display: a bar on a terminal, else (stderr redirected) one
/// line per finished cell with done/total, the ETA and the cell's headline.
#[derive(Debug)]
pub struct Progress {
    pub bar: ProgressBar,
    lines: bool,
    total: usize,
    done: usize,
    started: Instant,
}

impl Progress {
    pub fn new(enabled: bool, total: usize) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        Progress {
            bar: progress_bar(enabled && terminal, total as u64),
            lines: !terminal,
            total,
            done: 0,
            started: Instant::now(),
        }
    }

    /// Ladder steps that will not run: `n` cells fewer to wait for.
    pub fn skip(&mut self, n: usize) {
        self.total -= n;
        self.bar.set_length(self.total as u64);
    }

    /// A cell the matrix did not count (a control cell): one more to wait for.
    pub fn add(&mut self) {
        self.total += 1;
        self.bar.set_length(self.total as u64);
    }

    pub fn done(&mut self, cell: &Cell) {
        self.done += 1;
        self.bar.inc(1);
        if self.lines {
            eprintln!("{}", self.line(cell));
        }
    }

    /// `[12/180, ETA 14m 2s] throughput tokio tcp c=100 s=64B: 182,113 msg/s (client_bound)`
    fn line(&self, cell: &Cell) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let left = self.total.saturating_sub(self.done) as f64 * elapsed / self.done.max(1) as f64;
        let eta = humantime::format_duration(Duration::from_secs(left.round() as u64));
        let headline = scenarios::headline(&cell.spec.load);
        let figure = match (cell.ok, (headline.value)(cell)) {
            (false, _) => format!("FAILED: {}", cell.failure.as_deref().unwrap_or("?")),
            (true, Some(v)) => (headline.show)(v),
            (true, None) => "ok".into(),
        };
        let mut kinds: Vec<&str> = cell.flags.iter().map(|f| f.kind.name()).collect();
        kinds.dedup();
        let flags = if kinds.is_empty() { String::new() } else { format!(" [{}]", kinds.join(", ")) };
        format!("[{}/{}, ETA {eta}] {}: {figure}{flags}", self.done, self.total, scenarios::label(&cell.spec.load))
    }
}

fn progress_bar(enabled: bool, cells: u64) -> ProgressBar {
    let target = if enabled { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(cells), target);
    let style = ProgressStyle::with_template("[{elapsed_precise}] {wide_bar} {pos}/{len} cells, ETA {eta} — {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
