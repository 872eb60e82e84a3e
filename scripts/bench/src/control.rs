//! The control cell (A/A): one fixed cell — a model at 100 connections,
//! 64 B, closed loop, over TCP, under the run's quota — that the runner
//! runs at the start, every `--control-every` and at the end. It measures
//! the machine, not a model: how far its msg/s moved over the run is how
//! far figures measured at different times can be compared. Its cells are
//! of their own scenario ([`crate::scenarios::control`]), never pooled
//! with the throughput scenario's.

use std::time::Duration;

use echo_common::Transport;
use loadgen::report::fmt_count;

use crate::load::{CellSpec, LoadKey, ScenarioId};
use crate::models::Model;
use crate::results::Results;
pub use crate::results::{ControlRun, Drift};
use crate::scenario::SMALL;

/// The control cells' scenario ([`crate::scenarios::control`]).
pub const SCENARIO: ScenarioId = ScenarioId::new("control");
/// The model the control runs when the run has it.
pub const MODEL: &str = "reactor";
/// Its connections.
pub const CONNECTIONS: u32 = 100;
/// A run whose control moved more than this share of its first figure
/// says so at the top of its README.
pub const MOVED: f64 = 0.10;
/// `--control-every`'s default: about 7 control cells in a 30-minute run,
/// some 3 s each.
pub const EVERY: Duration = Duration::from_secs(5 * 60);

/// The control's model among the run's: [`MODEL`], else the first.
pub fn model(models: &[Model]) -> Option<Model> {
    models.iter().find(|m| m.name() == MODEL).or(models.first()).cloned()
}

/// The `n`th control cell (from 0) of a run whose control model is `model`.
pub fn spec(model: Model, n: u32) -> CellSpec {
    let load = LoadKey::new(SCENARIO, model, Transport::Tcp, CONNECTIONS, SMALL);
    CellSpec { load, repeat: n }
}

/// The drift of `results`' control cells (ok ones, with a rate); `None`
/// with fewer than two.
pub fn drift(results: &Results) -> Option<Drift> {
    let id = SCENARIO;
    let runs: Vec<ControlRun> = results
        .cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.ok && c.spec.load.scenario == id)
        .filter_map(|(i, c)| Some(ControlRun { cell: i, msg_per_sec: c.loadgen.as_ref()?.throughput.requests_per_sec }))
        .collect();
    let first = runs.first()?.msg_per_sec;
    if runs.len() < 2 || first <= 0.0 {
        return None;
    }
    let drift = runs.iter().map(|r| (r.msg_per_sec - first).abs() / first).fold(0.0, f64::max);
    let last = runs.last().map_or(first, |r| r.msg_per_sec);
    let load = &results.cells[runs[0].cell].spec.load;
    let connections = fmt_count(f64::from(load.connections));
    Some(Drift {
        load: format!("{} {}, {connections} connections, {} B, closed loop", load.model, load.transport, load.size),
        runs,
        drift,
        end_to_end: (last - first) / first,
        moved: drift > MOVED,
    })
}

/// The control in a sentence, for the README's top and the comparisons
/// across scenarios.
pub fn words(drift: &Drift) -> String {
    let figures: Vec<String> = drift.runs.iter().map(|r| fmt_count(r.msg_per_sec)).collect();
    let moved = if drift.moved {
        format!(
            "**it moved {:.1} % (> {:.0} %): the machine changed during the run, and figures measured at \
             different times compare only within that much**",
            100.0 * drift.drift,
            100.0 * MOVED
        )
    } else {
        format!("it moved at most {:.1} % from its first run (≤ {:.0} %)", 100.0 * drift.drift, 100.0 * MOVED)
    };
    format!("Control cell ({}), {} runs: {} msg/s; {moved}.", drift.load, drift.runs.len(), figures.join(" → "))
}
