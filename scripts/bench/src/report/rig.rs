//! The rig of a run, at the top of its README: what the server was allotted
//! and how often it was throttled, how far the control cell moved, the
//! cells where both sides were saturated, and the environment that moves
//! results (CPU model, sysctls, tree state). Each part is said only when
//! the run recorded it, so an older run renders as it did.

use std::fmt::Write as _;

use crate::flags::NoteKind;
use crate::quota::Throttling;
use crate::render::doc::Doc;
use crate::results::{Cell, Results};

/// What the servers were allotted, and how often the quota ran out.
fn quota_line(results: &Results) -> Option<String> {
    let q = results.settings.server_quota.as_ref()?;
    let scenarios = crate::scenarios::quota_words(&q.scenarios);
    if let Some(why) = &q.unavailable {
        return Some(format!(
            "**Server CPU quota unavailable here** ({why}): the servers of the {scenarios} scenarios ran \
             unthrottled, on all of their CPUs; a saturated msg/s there may be the load generator's."
        ));
    }
    let Some(cpus) = q.cpus else {
        return Some(format!(
            "No server CPU quota (`--server-quota none`): the servers of the {scenarios} scenarios used all of their \
             CPUs; a saturated msg/s there may be the load generator's."
        ));
    };
    let throttled: Vec<&Throttling> = results.cells.iter().filter_map(|c| c.quota.as_ref()).collect();
    let periods: u64 = throttled.iter().map(|t| t.periods).sum();
    let hit: u64 = throttled.iter().map(|t| t.throttled_periods).sum();
    let secs: f64 = throttled.iter().map(|t| t.throttled_secs).sum();
    let period = q.period_us.map_or(String::new(), |p| format!(" per {} ms period", p as f64 / 1000.0));
    let how = q.mechanism.as_deref().map_or(String::new(), |m| format!(", {m}"));
    let mut line = format!(
        "Server CPU quota: {cpus} CPU{period} in the {scenarios} scenarios{how}: their saturated rates are the \
         server's, and its CPU figures read against that allotment."
    );
    if periods > 0 {
        line.push_str(&format!(
            " Over their {} cells' windows the quota ran out in {:.0} % of the periods with work ({secs:.2} s \
             throttled in all).",
            throttled.len(),
            100.0 * hit as f64 / periods as f64
        ));
    }
    Some(line)
}

/// The environment that moves results, for runs that recorded it.
fn environment_lines(results: &Results) -> Vec<String> {
    let env = &results.environment;
    if env.sysctls.is_empty() {
        return Vec::new();
    }
    let mut lines = Vec::new();
    let id = env.cpu_id.as_deref().map_or(String::new(), |id| format!(" ({id})"));
    lines.push(format!("CPU: {}{id}, {} online; kernel {}.", env.cpu_model, env.cpus_online, env.kernel));
    let sysctls: Vec<String> = env
        .sysctls
        .iter()
        .map(|s| match &s.value {
            Some(value) => format!("`{}` = {value}", s.name),
            None => format!("`{}` unavailable here", s.name),
        })
        .collect();
    lines.push(format!("Sysctls: {}.", sysctls.join(", ")));
    if let Some(wakeup) = &env.cpu_wakeup {
        let unknown = "unavailable here";
        lines.push(format!(
            "Idle CPUs: {wakeup}; cpuidle driver {}, governor {}.",
            env.cpuidle_driver.as_deref().unwrap_or(unknown),
            env.cpuidle_governor.as_deref().unwrap_or(unknown)
        ));
    }
    match &env.tree {
        Some(tree) if tree.dirty => lines.push(format!(
            "Tree: **dirty** at commit {} ({} changed, e.g. {}): the binaries may not be the commit's.",
            short(&tree.commit),
            if tree.changed.len() < 10 { format!("{} path(s)", tree.changed.len()) } else { "10+ paths".into() },
            tree.changed.iter().take(3).map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
        )),
        Some(tree) => lines.push(format!("Tree: clean at commit {}.", short(&tree.commit))),
        None => lines.push("Tree: not a git checkout (or no git here): commit unknown.".into()),
    }
    lines.push(format!("Built with {}; direct dependencies: {}.", env.rustc, env.crates.join(", ")));
    if let Some(line) = &env.reproduce {
        lines.push(format!("Reproduce (from the repository root, at that commit): `{line}`"));
    }
    lines
}

/// A commit's first 12 hex digits.
fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// What the host took from each side (steal time over the cells' windows),
/// when the run recorded it.
fn steal_line(results: &Results) -> Option<String> {
    let cells: Vec<(&Cell, crate::steal::Steal)> = results.cells.iter().filter_map(|c| Some((c, c.steal?))).collect();
    if cells.is_empty() {
        return None;
    }
    // Each side's stolen time, and the CPU time it could have had (window × CPUs).
    let (mut server, mut server_of, mut client, mut client_of) = (0.0, 0.0, 0.0, 0.0);
    for (cell, steal) in &cells {
        let window_ms = cell.loadgen.as_ref().map_or(0.0, |r| r.duration_secs * 1e3);
        server += steal.server_ms;
        server_of += window_ms * steal.server_cpus as f64;
        if let Some(ms) = steal.client_ms {
            client += ms;
            client_of += window_ms * steal.client_cpus as f64;
        }
    }
    let share = |ms: f64, of: f64| {
        if of > 0.0 { format!(" ({:.1} % of its CPU time)", 100.0 * ms / of) } else { String::new() }
    };
    Some(format!(
        "Steal (the host running something else on this machine's CPUs) over the {} cells' windows: {:.0} ms of the \
         server's CPU(s){}, {:.0} ms of the load generator's{} (`steal` in each cell; /proc/stat, 10 ms ticks).",
        cells.len(),
        server,
        share(server, server_of),
        client,
        share(client, client_of)
    ))
}

/// Writes the rig's lines into `doc` (nothing when the run recorded none).
pub fn section(results: &Results, doc: &mut Doc) {
    let mut lines: Vec<String> = Vec::new();
    if let Some(drift) = &results.control {
        lines.push(crate::control::words(drift));
    } else if results.settings.control_every_secs.is_some() {
        let runs = results.cells.iter().filter(|c| c.spec.load.scenario.name() == "control" && c.ok).count();
        lines.push(format!("Control cell: {runs} run(s) finished, too few to tell how far the machine moved."));
    }
    if let Some(line) = quota_line(results) {
        lines.push(line);
    }
    let unthrottled = results.cells.iter().filter(|c| c.notes.iter().any(|n| n.kind == NoteKind::Unthrottled)).count();
    if unthrottled > 0 {
        lines.push(format!(
            "{unthrottled} of {} cells asked for the server quota and ran unthrottled (a note on each: `unthrottled`).",
            results.cells.len()
        ));
    }
    let both = results.cells.iter().filter(|c| c.notes.iter().any(|n| n.kind == NoteKind::BothSaturated)).count();
    if both > 0 {
        lines.push(format!(
            "Both sides saturated in {both} of {} cells (a loadgen thread above 90 % busy while the server used at \
             least 90 % of its allotment): a note, not a flag; the figure is the pair's.",
            results.cells.len()
        ));
    }
    let by_design: Vec<&Cell> =
        results.cells.iter().filter(|c| c.notes.iter().any(|n| n.kind == NoteKind::ServesAtOnce)).collect();
    if !by_design.is_empty() {
        let mut models: Vec<String> = by_design
            .iter()
            .filter_map(|c| {
                let info = c.spec.load.model.info();
                Some(format!("{} {}", info.name, info.serves_at_once?))
            })
            .collect();
        models.sort();
        models.dedup();
        lines.push(format!(
            "{} of {} cells served fewer connections than they opened exactly as their model is declared to ({} at \
             once; the others waited, none refused): a note (`serves_at_once`), not a flag.",
            by_design.len(),
            results.cells.len(),
            models.join(", ")
        ));
    }
    if let Some(line) = steal_line(results) {
        lines.push(line);
    }
    lines.extend(environment_lines(results));
    if lines.is_empty() {
        return;
    }
    for line in lines {
        let _ = writeln!(doc, "- {line}");
    }
    doc.push('\n');
}
