//! The control scenario: the A/A cell ([`crate::control`]) the runner runs
//! at the start, every `--control-every` and at the end. It has no loads
//! of its own in the matrix, and `--scenarios` does not offer it
//! (`--control` says whether it runs); its cells are read for their msg/s, under the
//! run's quota like the throughput scenario's, and its section lists them.

use std::fmt::Write as _;

use loadgen::report::fmt_count;

use crate::control;
use crate::load::LoadKey;
use crate::plan::Shape;
use crate::render::doc::Doc;
use crate::scenario::{Report, Scenario, Throttled};

#[derive(Debug)]
pub struct Control;

impl Scenario for Control {
    fn name(&self) -> &'static str {
        "control" // control::SCENARIO's
    }

    fn about(&self) -> &'static str {
        "The A/A control cell, run at the start, every --control-every and at the end (--control)"
    }

    fn defaults(&self, _shape: &mut Shape, _quick: bool, _cpus: usize) -> bool {
        false
    }

    fn loads(&self, _shape: &Shape) -> Vec<Vec<LoadKey>> {
        Vec::new()
    }

    fn server_quota(&self) -> Throttled {
        Throttled::Every
    }

    fn per_transport(&self) -> bool {
        false
    }

    fn section(&self, r: &Report<'_>, _transport: Option<echo_common::Transport>, doc: &mut Doc) {
        let cells = r.cells_of(&self.id());
        if cells.is_empty() {
            return;
        }
        doc.heading(2, "Control cell (A/A)");
        let _ = writeln!(
            doc,
            "The same cell, run at the start, every few minutes and at the end: how far it moves is how far the \
             machine moved under the run.\n"
        );
        let mut table = r.table(["run:", "after cell:", "msg/s:", "server CPU µs/msg:"]);
        for (n, cell) in cells.iter().enumerate() {
            let index = r.results.cells.iter().position(|c| std::ptr::eq(c, *cell)).unwrap_or(0);
            let rate = cell.loadgen.as_ref().map_or("–".into(), |l| fmt_count(l.throughput.requests_per_sec));
            let cpu = cell.server_cpu_us_per_msg.map_or("–".into(), |v| format!("{v:.2}"));
            table.row([(n + 1).to_string(), index.to_string(), rate, cpu]);
        }
        doc.push_str(&table.finish());
        if let Some(drift) = control::drift(r.results) {
            let _ = writeln!(doc, "{}\n", control::words(&drift));
        }
    }
}
