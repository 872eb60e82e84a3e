//! results.json → README.md and SVG charts. Pure functions of the results:
//! `bench report` regenerates them at will, and the snapshot test pins the
//! output.
//!
//! The README: a header (what ran, how it was measured), [`headline`]'s
//! "which model for what", [`summary`]'s table by model, then each
//! scenario's sections — per transport for those that have one per
//! transport, then the others — in the registry's order, the charts, the
//! failed cells, the environment, and the flags by kind.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::Duration;

use crate::flags::{Figure, SPREAD};
use crate::load::{Name, ScenarioId};
use crate::render::doc::Doc;
use crate::render::format::{count, grouped, show, us};
use crate::render::marks;
use crate::render::table::Table;
use crate::results::{Cell, Results};
use crate::scenario::{Chart, Claim, Column, Report, Scenario, Window, transports_of};
use crate::scenarios::{self, ALL};
use crate::stats::{self, Stat};

pub mod headline;
pub mod overview;
pub mod rig;
pub mod summary;

/// Writes README.md and the charts into `dir`.
pub fn write_report(results: &Results, dir: &Path) -> io::Result<()> {
    let charts = draw_charts(results, dir)?;
    std::fs::write(dir.join("README.md"), markdown(results, &charts))
}

/// What the scenarios render from.
fn report(results: &Results) -> Report<'_> {
    let groups = stats::groups(results.cells.iter().filter(|c| c.ok));
    let per_transport = |id: &ScenarioId| scenarios::of(id).is_some_and(|s| s.per_transport());
    let transports = transports_of(&groups, per_transport);
    Report { results, groups, models: results.models(), transports, lookup: scenarios::lookup() }
}

/// The scenarios in the order their charts and summary figures stand.
fn by_place() -> Vec<&'static dyn Scenario> {
    let mut scenarios = ALL.to_vec();
    scenarios.sort_by_key(|s| s.place());
    scenarios
}

/// Whether `cell` ran over another link than loopback because the run
/// asked for it (`--link`), not because its scenario compares links (the
/// transport scenario's veth cells).
fn off_link(cell: &Cell) -> bool {
    cell.spec.load.link != Name::loopback() && scenarios::of(&cell.spec.load.scenario).is_none_or(|s| !s.sets_links())
}

/// The run as the scenarios' sections and charts read it: without the
/// cells of [`off_link`], which [`off_link_section`] shows apart, so that a
/// model's loopback and veth figures of one load are never drawn or listed
/// as if they were repeats of one thing.
fn main_view(results: &Results) -> Cow<'_, Results> {
    if !results.cells.iter().any(off_link) {
        return Cow::Borrowed(results);
    }
    let mut view = results.clone();
    view.cells.retain(|c| !off_link(c));
    Cow::Owned(view)
}

/// The cells of [`off_link`]: one row per load, its headline figures.
fn off_link_section(results: &Results, doc: &mut Doc) {
    let groups = stats::groups(results.cells.iter().filter(|c| c.ok && off_link(c)));
    if groups.is_empty() {
        return;
    }
    doc.heading(2, "Over other links (`--link`)");
    doc.push_str(
        "The cells run over a link other than loopback (`veth`: the server in a network namespace of its own, \
         reached over a veth pair and a bridge); the sections above show the same loads over loopback. \
         Medians over repeats.\n\n",
    );
    let lookup = scenarios::lookup();
    let mut table = Table::new(&lookup, ["cell", "msg/s:", "server CPU µs/msg:", "p99:"]);
    for (load, cells) in &groups {
        let rate = Stat::over(cells, |c| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec));
        let cpu = Stat::over(cells, |c| c.server_cpu_us_per_msg);
        let p99 = Stat::over(cells, |c| c.loadgen.as_ref().map(|r| r.latency_us.p99 as f64));
        let row = [
            scenarios::describe(load),
            table.mark(show(rate, count), cells, &[Figure::Rate]),
            table.mark(show(cpu, |v| grouped(v, 2)), cells, &[Figure::Cpu]),
            table.mark(show(p99, us), cells, &[Figure::Latency]),
        ];
        table.row(row);
    }
    doc.push_str(&table.finish());
}

/// Draws every chart the results allow: for each transport the charts of
/// the per-transport scenarios, then those of the others.
pub fn draw_charts(results: &Results, dir: &Path) -> io::Result<Vec<Chart>> {
    let view = main_view(results);
    let r = report(&view);
    let plot_err = |e: String| io::Error::other(format!("cannot draw chart: {e}"));
    let mut out = Vec::new();
    let scenarios = by_place();
    for &transport in &r.transports {
        for scenario in scenarios.iter().filter(|s| s.per_transport()) {
            out.extend(scenario.charts(&r, Some(transport), dir).map_err(plot_err)?);
        }
    }
    for scenario in scenarios.iter().filter(|s| !s.per_transport()) {
        out.extend(scenario.charts(&r, None, dir).map_err(plot_err)?);
    }
    if let Some(chart) = overview::chart(&r, dir).map_err(plot_err)? {
        out.insert(0, chart);
    }
    Ok(out)
}

/// The README of a run.
pub fn markdown(results: &Results, charts: &[Chart]) -> String {
    let view = main_view(results);
    let r = report(&view);
    let s = &results.settings;
    let env = &results.environment;
    let mut doc = Doc::default();
    doc.heading(1, &format!("echo-arena benchmark: {}", env.started_at));
    if !results.complete {
        doc.push_str("**This run was interrupted: only the finished cells are shown.**\n\n");
    }
    let ran = scenarios_run(results);
    let _ = writeln!(
        doc,
        "{} model(s) × {} scenario(s), {}, interleaved across models{}. Figures are the median over repeats, \
         with the min–max range in parentheses; ⚠ marks a spread above {:.0} % of the median; {}. \
         Server on CPU(s) {:?}, load generator on CPU(s) {:?}.\n",
        s.models.len(),
        ran.len(),
        repeats_words(results, &ran),
        windows_words(results, &ran),
        SPREAD * 100.0,
        other_marks(results),
        s.server_cpus,
        s.client_cpus
    );
    rig::section(results, &mut doc);

    // "Which model for what" goes here once the tables it links to are written.
    let opening = doc.as_str().len();
    let (columns, claims) = summaries(&r);
    summary::section(&r, &columns, &mut doc);
    for &transport in &r.transports {
        for scenario in ALL.iter().filter(|s| s.per_transport()) {
            scenario.section(&r, Some(transport), &mut doc);
        }
    }
    for scenario in ALL.iter().filter(|s| !s.per_transport()) {
        scenario.section(&r, None, &mut doc);
    }
    off_link_section(results, &mut doc);

    if !charts.is_empty() {
        doc.heading(2, "Charts");
        for Chart { title, file } in charts {
            doc.heading(3, title);
            let _ = writeln!(doc, "![{title}]({file})\n");
        }
    }

    let failures: Vec<&Cell> = results.cells.iter().filter(|c| !c.ok).collect();
    if !failures.is_empty() {
        doc.heading(2, "Failed cells");
        for cell in failures {
            let _ = writeln!(
                doc,
                "- {} (repeat {}): {}",
                scenarios::describe(&cell.spec.load),
                cell.spec.repeat + 1,
                cell.failure.as_deref().unwrap_or("unknown")
            );
        }
        doc.push('\n');
    }

    doc.heading(2, "Environment");
    let _ = writeln!(
        doc,
        "- host `{}`, kernel {}, CPU {} ({} online)",
        env.hostname, env.kernel, env.cpu_model, env.cpus_online
    );
    let _ = writeln!(doc, "- {}; {}", env.rustc, env.crates.join(", "));
    let _ = writeln!(doc, "- commit {}", env.git_commit.as_deref().unwrap_or("unknown"));
    let _ = writeln!(doc, "- started {}\n", env.started_at);
    doc.push_str("Reproduce (from the repository root, at that commit):\n\n");
    let _ = writeln!(doc, "```sh\n{}\n```\n", env.command);
    doc.push_str(&marks::section(results));
    let opening_claims = headline::section(&claims, &doc);
    let mut md = doc.into_string();
    md.insert_str(opening, &opening_claims);
    md
}

/// The scenarios' columns of the summary by model and their claims (those
/// with a model ranked), in the order of their places.
fn summaries<'r>(r: &'r Report<'r>) -> (Vec<Column<'r>>, Vec<Claim>) {
    let (mut columns, mut claims) = (Vec::new(), Vec::new());
    for scenario in by_place() {
        let part = scenario.summary(r);
        columns.extend(part.columns);
        claims.extend(part.claims.into_iter().filter(|c| !c.ranked.is_empty()));
    }
    (columns, claims)
}

/// The claims of "which model for what" the run allows, in order.
pub fn claims(results: &Results) -> Vec<Claim> {
    summaries(&report(&main_view(results))).1
}

/// The scenarios the run has cells of (those the settings name, if it has
/// none yet), in the registry's order: the README describes these, not the
/// ones it might have run.
fn scenarios_run(results: &Results) -> Vec<&'static dyn Scenario> {
    let ran: BTreeSet<&ScenarioId> = results.cells.iter().map(|c| &c.spec.load.scenario).collect();
    let named = |s: &&dyn Scenario| results.settings.scenarios.iter().any(|n| n == s.name());
    if ran.is_empty() {
        ALL.iter().copied().filter(named).collect()
    } else {
        ALL.iter().copied().filter(|s| ran.contains(&s.id())).collect()
    }
}

/// `3 repeat(s) per cell (2 for the throughput scenario, 2 for udp)`: the
/// exceptions only for scenarios that ran and repeat otherwise.
fn repeats_words(results: &Results, ran: &[&dyn Scenario]) -> String {
    let s = &results.settings;
    let exceptions: Vec<String> = ran.iter().filter_map(|scenario| scenario.repeat_note(s)).collect();
    let mut text = format!("{} repeat(s) per cell", s.repeat);
    if !exceptions.is_empty() {
        let _ = write!(text, " ({})", exceptions.join(", "));
    }
    text
}

/// `; closed- and open-loop cells measure 2 s after a 0.5 s warm-up (the
/// transport scenario: …; latency-ladder and udp cells: …)`: the measured
/// windows of the scenarios that ran (none for a capacity run alone). The
/// capped ones are named by their cap, the longest first; the scenarios
/// sharing a cap together.
fn windows_words(results: &Results, ran: &[&dyn Scenario]) -> String {
    let s = &results.settings;
    // Each cap: its window and warm-up, the cells' names, and how one
    // scenario alone is named beside the full-window cells.
    type Cap<'s> = ((Duration, Duration), Vec<&'s str>, Option<&'s str>);
    let mut caps: Vec<Cap<'_>> = Vec::new();
    for scenario in ran {
        if let Window::Capped { at_most, cells, beside } = scenario.window() {
            match caps.iter_mut().find(|(cap, ..)| *cap == at_most) {
                Some((_, names, _)) => names.push(cells),
                None => caps.push((at_most, vec![cells], beside)),
            }
        }
    }
    caps.sort_by_key(|(cap, ..)| std::cmp::Reverse(*cap));
    let shorter: Vec<(String, String, f64, f64)> = caps
        .into_iter()
        .map(|((window, warmup), names, beside)| {
            // "cost, latency-ladder and udp cells".
            let listed = match names.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
                _ => names.join(""),
            };
            let alone = format!("{listed} cells");
            let beside = match (names.len(), beside) {
                (1, Some(words)) => words.to_owned(),
                _ => alone.clone(),
            };
            (beside, alone, window.as_secs_f64().min(s.duration_secs), warmup.as_secs_f64().min(s.warmup_secs))
        })
        .collect();
    if ran.iter().any(|scenario| scenario.window() == Window::Full) {
        let mut text =
            format!("; closed- and open-loop cells measure {} s after a {} s warm-up", s.duration_secs, s.warmup_secs);
        if !shorter.is_empty() {
            let each: Vec<String> = shorter
                .iter()
                .map(|(beside, _, window, warmup)| format!("{beside}: at most {window} s after {warmup} s"))
                .collect();
            let _ = write!(text, " ({})", each.join("; "));
        }
        return text;
    }
    // Only scenarios with capped windows (or none: capacity): each says its own.
    shorter
        .iter()
        .map(|(_, alone, window, warmup)| format!("; {alone} measure at most {window} s after a {warmup} s warm-up"))
        .collect()
}

/// The marks of this run's flags (the spread's is said beside them); a kind
/// this run never raised is not announced.
fn other_marks(results: &Results) -> String {
    let cells: Vec<&Cell> = results.cells.iter().collect();
    let others: Vec<&str> = marks::kinds(&cells).into_iter().map(marks::mark).filter(|m| *m != "⚠").collect();
    if others.is_empty() {
        "no other validity flag was raised".to_owned()
    } else {
        format!(
            "the other marks ({}) are validity flags, explained under each table that shows one and counted by kind \
             at the end",
            others.join(", ")
        )
    }
}
