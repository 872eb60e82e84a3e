//! The registry of scenarios: one file each, one line each in the list of
//! `register!` below, in the order the matrix runs them and the README
//! shows their sections. Everything else finds a scenario here, by
//! the name its cells carry.

use crate::flags::Figure;
use crate::load::{LoadKey, ScenarioId};
use crate::render::marks::Lookup;
use crate::results::Cell;
use crate::scenario::{Headline, Scenario};

/// Declares each scenario's module and lists its type in [`ALL`].
macro_rules! register {
    ($($module:ident::$scenario:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// Every scenario, in order.
        pub static ALL: &[&dyn Scenario] = &[$(&$module::$scenario),*];
    };
}

register! {
    throughput::Throughput,
    cost::Cost,
    latency::Latency,
    churn::Churn,
    capacity::Capacity,
    transport::Transports,
    scaling::Scaling,
    udp::Udp,
    work::Work,
    control::Control,
}

/// The scenario named `name`.
pub fn named(name: &str) -> Option<&'static dyn Scenario> {
    ALL.iter().copied().find(|s| s.name() == name)
}

/// The scenario of `id`.
pub fn of(id: &ScenarioId) -> Option<&'static dyn Scenario> {
    named(id.name())
}

/// The scenarios `names` that take the server quota, as a reader reads
/// them: `throughput, churn (its closed loop) and control`.
pub fn quota_words(names: &[String]) -> String {
    let words: Vec<String> =
        names.iter().map(|name| named(name).map_or_else(|| name.clone(), |s| s.server_quota().words(name))).collect();
    match words.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => words.concat(),
    }
}

/// A cell for a reader ([`Scenario::describe`]), with the axes most loads
/// leave at their defaults when it sets them ([`LoadKey::other_axes`]).
pub fn describe(load: &LoadKey) -> String {
    let words = match of(&load.scenario) {
        Some(scenario) => scenario.describe(load),
        None => crate::scenario::describe(load),
    };
    words + &load.other_axes()
}

/// A cell in a few words, for the console ([`Scenario::label`]), with the
/// axes most loads leave at their defaults when it sets them.
pub fn label(load: &LoadKey) -> String {
    let words = match of(&load.scenario) {
        Some(scenario) => scenario.label(load),
        None => crate::scenario::label(load),
    };
    words + &load.other_axes()
}

/// The figure a cell is read for ([`Scenario::headline`]); a cell of a
/// scenario this bench does not know is read for its rate.
pub fn headline(load: &LoadKey) -> Headline {
    of(&load.scenario).map_or(Headline::RATE, |s| s.headline(load))
}

/// The headline's value in `cell`.
pub fn headline_value(cell: &Cell) -> Option<f64> {
    (headline(&cell.spec.load).value)(cell)
}

/// What the marks need of the scenarios.
pub fn lookup() -> Lookup {
    Lookup { describe, headline: headline_figure }
}

/// The figure of the tables the headline of `load` is.
fn headline_figure(load: &LoadKey) -> Figure {
    headline(load).figure
}
