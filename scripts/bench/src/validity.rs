//! Every cell's flags, recomputed from the run: those it earns on its own
//! data ([`cell_flags`]) and the spread of its headline figure across the
//! repeats of its load.

use loadgen::report::fmt_count;

use crate::flags::{
    AGENT_SKEW, BELOW_TARGET_RATE, CLIENT_BOUND, EDGE_READ, Figure, Flag, FlagKind, LITTLES_LAW, Note, NoteKind,
    SERVER_BELOW_ALLOTMENT, SPREAD,
};
use crate::results::{Cell, Results, Settings};
use crate::scenarios;
use crate::stats::{self, Stat};

/// Recomputes every cell's flags from the cell's own data and, for
/// [`FlagKind::Spread`], from the other repeats of the same load, and the
/// control cell's drift ([`crate::control::drift`]). Idempotent:
/// whatever flags the cells carried are replaced. The runner calls it after
/// every cell; `bench report` calls it on a saved run.
pub fn annotate(results: &mut Results) {
    for cell in &mut results.cells {
        let allotment = allotment(cell, &results.settings);
        cell.flags = flags_within(cell, allotment);
        cell.notes = notes_within(cell, allotment);
        if let Some(note) = by_design(cell) {
            cell.flags.retain(|f| !matches!(f.kind, FlagKind::ConnectionsShort | FlagKind::LittlesLaw));
            cell.notes.push(note);
        }
        if let Some(note) = unthrottled(cell, &results.settings) {
            cell.notes.push(note);
        }
    }
    // Spread: the headline figure over the ok repeats of each load. The
    // control cell's runs are repeats of one key taken apart in time: how
    // far they moved is its drift, reported on its own.
    let control = crate::control::SCENARIO;
    let measured = results
        .cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.ok && c.spec.load.scenario != control && scenarios::headline_value(c).is_some());
    let controls: Vec<&Cell> = results.cells.iter().filter(|c| c.ok && c.spec.load.scenario == control).collect();
    let mut spread_flags = Vec::new();
    for members in stats::by_load(measured.map(|(i, c)| (&c.spec.load, i))).into_values() {
        let values = members.iter().filter_map(|&i| scenarios::headline_value(&results.cells[i])).collect();
        let Some(stat) = Stat::of(values) else { continue };
        let headline = scenarios::headline(&results.cells[members[0]].spec.load);
        // The control measures a closed-loop rate: its spread stands for the
        // machine's only beside rates, not beside a latency tail or a CPU figure.
        let machine = (headline.figure == Figure::Rate).then(|| machine_spread(&controls, headline.value)).flatten();
        let limit = machine.map_or(SPREAD, |m| m.max(SPREAD));
        let Some(spread) = stat.majority_spread().filter(|s| *s > limit) else { continue };
        let beyond = match machine {
            Some(m) if m > SPREAD => format!(
                "> {:.0} %, and > {:.0} %, the same figure's spread over the control cell's runs",
                100.0 * SPREAD,
                100.0 * m
            ),
            _ => format!("> {:.0} %", 100.0 * SPREAD),
        };
        let detail = if stat.n > 2 {
            format!(
                "{} differs by {:.0} % of its median within the closest {} of its {} repeats ({beyond})",
                headline.name,
                100.0 * spread,
                stat.n / 2 + 1,
                stat.n
            )
        } else {
            format!(
                "{} differs by {:.0} % of its median across {} repeats ({beyond})",
                headline.name,
                100.0 * spread,
                stat.n
            )
        };
        spread_flags.extend(members.iter().map(|&i| (i, Flag::new(FlagKind::Spread, spread, limit, detail.clone()))));
    }
    for (i, flag) in spread_flags {
        results.cells[i].flags.push(flag);
    }
    results.control = crate::control::drift(results);
}

/// How far the machine alone moves a figure: its spread — (max − min) ÷
/// median, as [`Stat::spread`] — over the control cell's runs, one load
/// measured again and again across the run (at least [`MACHINE_RUNS`]
/// runs, else unknown). A cell's repeats are flagged `spread` only beyond
/// both [`SPREAD`] and this: repeats that differ no more than the identical
/// control cell differs from itself say nothing about the cell.
pub fn machine_spread(controls: &[&Cell], value: fn(&Cell) -> Option<f64>) -> Option<f64> {
    let stat = Stat::of(controls.iter().filter_map(|c| value(c)).collect())?;
    (stat.n >= MACHINE_RUNS).then(|| stat.spread()).flatten()
}

/// Control runs needed before their spread is taken as the machine's.
pub const MACHINE_RUNS: usize = 3;

/// The CPUs `cell`'s server was allotted: as the cell recorded it, else (a
/// run before it was recorded) its CPUs: the scaling step's, or the run's.
pub fn allotment(cell: &Cell, settings: &Settings) -> f64 {
    cell.allotment_cpus
        .or(cell.spec.load.server_cpus.map(f64::from))
        .unwrap_or(settings.server_cpus.len().max(1) as f64)
}

/// The server's share of its allotment over the window, if measured.
fn server_share(cell: &Cell, allotment: f64) -> Option<f64> {
    let server = cell.server.as_ref()?;
    (allotment > 0.0 && server.cpu_secs > 0.0).then(|| server.cpu_utilisation / allotment)
}

/// The flags one cell earns on its own (every kind but spread), its
/// allotment as [`annotate`] takes it ([`allotment`]; see [`flags_within`]).
pub fn cell_flags(cell: &Cell, settings: &Settings) -> Vec<Flag> {
    flags_within(cell, allotment(cell, settings))
}

/// The notes one cell earns, its server allotted `allotment` CPUs: both
/// sides saturated ([`NoteKind::BothSaturated`]).
pub fn notes_within(cell: &Cell, allotment: f64) -> Vec<Note> {
    let Some(report) = &cell.loadgen else { return Vec::new() };
    let busiest = report.client_cpu.max_thread_utilisation;
    let Some(share) = server_share(cell, allotment) else { return Vec::new() };
    if busiest > CLIENT_BOUND && report.client_cpu.pacer_spin_secs == 0.0 && share >= SERVER_BELOW_ALLOTMENT {
        return vec![Note {
            kind: NoteKind::BothSaturated,
            detail: format!(
                "busiest loadgen thread {:.0} % busy and the server at {:.0} % of its {} CPU(s): both saturated",
                100.0 * busiest,
                100.0 * share,
                cpus_words(allotment)
            ),
        }];
    }
    Vec::new()
}

/// Connections that had an echo in the window: established, less those
/// never served.
fn served(report: &loadgen::Report) -> u64 {
    report.connections.established.saturating_sub(report.per_connection.starved)
}

/// [`NoteKind::ServesAtOnce`], when `cell` fell short of its connections
/// exactly as its model is declared to: it served (or held) its
/// `serves_at_once` and every other connection waited — none refused,
/// failed or closed by the server.
pub fn by_design(cell: &Cell) -> Option<Note> {
    let at_once = cell.spec.load.model.info().serves_at_once?;
    let name = cell.spec.load.model.name();
    let (served, requested, waited) = if let Some(capacity) = &cell.capacity {
        let (waiting, closed) = capacity.not_held(Some(at_once));
        let all_in = capacity.established == capacity.requested && closed == 0;
        (capacity.held, capacity.requested, all_in.then_some(waiting)?)
    } else {
        let report = cell.loadgen.as_ref()?;
        let c = &report.connections;
        let all_in = c.failed == 0 && c.attempts.dropped_before_first_echo == 0 && c.established == c.requested;
        (served(report), c.requested, all_in.then_some(report.per_connection.starved)?)
    };
    (served < requested && served == at_once.min(requested)).then(|| Note {
        kind: NoteKind::ServesAtOnce,
        detail: format!(
            "{name} serves {} connection(s) at once by design: {} of {} served, the other {} waited (none refused or closed); its figure is the server's",
            fmt_count(at_once as f64),
            fmt_count(served as f64),
            fmt_count(requested as f64),
            fmt_count(waited as f64)
        ),
    })
}

/// [`NoteKind::Unthrottled`], when `cell`'s load takes the run's quota
/// and the machine could not apply it.
fn unthrottled(cell: &Cell, settings: &Settings) -> Option<Note> {
    let quota = settings.server_quota.as_ref()?;
    let cpus = quota.cpus?;
    let why = quota.unavailable.as_deref()?;
    let load = &cell.spec.load;
    let asked = quota.asked_for(load.scenario.name())
        && scenarios::of(&load.scenario).is_none_or(|s| s.server_quota().applies(load));
    asked.then(|| Note {
        kind: NoteKind::Unthrottled,
        detail: format!(
            "asked for a server quota of {} CPU, unavailable here ({why}): ran unthrottled",
            cpus_words(cpus)
        ),
    })
}

/// `0.5`, `1`.
fn cpus_words(cpus: f64) -> String {
    format!("{}", (cpus * 100.0).round() / 100.0)
}

/// The flags one cell earns on its own (every kind but spread), its server
/// allotted `allotment` CPUs (its quota, or its CPUs): `client_bound` needs
/// the server below [`SERVER_BELOW_ALLOTMENT`] of it (or unmeasured).
pub fn flags_within(cell: &Cell, allotment: f64) -> Vec<Flag> {
    let mut flags = Vec::new();
    if let Some(capacity) = &cell.capacity {
        if capacity.held < capacity.requested {
            let not_established = capacity.requested.saturating_sub(capacity.established);
            let (waiting, closed) = capacity.not_held(cell.spec.load.model.info().serves_at_once);
            let mut why = vec![format!("{} not established", fmt_count(not_established as f64))];
            if waiting > 0 {
                why.push(format!("{} waiting in the backlog", fmt_count(waiting as f64)));
            }
            // Said even when 0, unless the backlog accounts for them all.
            if closed > 0 || waiting == 0 {
                why.push(format!("{} closed by the server", fmt_count(closed as f64)));
            }
            flags.push(Flag::new(
                FlagKind::ConnectionsShort,
                capacity.held as f64,
                capacity.requested as f64,
                format!(
                    "{} of {} connections held: {}",
                    fmt_count(capacity.held as f64),
                    fmt_count(capacity.requested as f64),
                    why.join(", ")
                ),
            ));
        }
    }
    if let Some(c) = cell.coordination.as_ref().filter(|c| c.window_secs > 0.0) {
        let skew = c.skew_ns as f64 * 1e-9 / c.window_secs;
        if skew > AGENT_SKEW {
            flags.push(Flag::new(
                FlagKind::AgentSkew,
                skew,
                AGENT_SKEW,
                format!(
                    "the {} agents' marks arrived up to {:.2} ms apart, {:.1} % of the {:.2} s window (> {:.0} %)",
                    cell.agents.len(),
                    c.skew_ns as f64 * 1e-6,
                    100.0 * skew,
                    c.window_secs,
                    100.0 * AGENT_SKEW
                ),
            ));
        }
    }
    let Some(report) = &cell.loadgen else { return flags };
    let busiest = report.client_cpu.max_thread_utilisation;
    // A pacer that spun (open loop) kept its thread busy by design: whether
    // the client kept up is its lateness (`send_late`), not its busy time.
    // ... and only while the server had CPU to spare: a server at its
    // allotment was a limiter as well (a note, not a flag).
    let share = server_share(cell, allotment);
    let spare = share.is_none_or(|s| s < SERVER_BELOW_ALLOTMENT);
    if busiest > CLIENT_BOUND && report.client_cpu.pacer_spin_secs == 0.0 && spare {
        let server = match share {
            Some(share) if allotment.is_finite() => format!(
                "while the server used {:.0} % of its {} CPU(s) (< {:.0} %)",
                100.0 * share,
                cpus_words(allotment),
                100.0 * SERVER_BELOW_ALLOTMENT
            ),
            _ => "while the server's use of its CPUs is unknown".into(),
        };
        flags.push(Flag::new(
            FlagKind::ClientBound,
            busiest,
            CLIENT_BOUND,
            format!(
                "busiest loadgen thread {:.0} % busy (> {:.0} %) {server}: the client set the pace",
                100.0 * busiest,
                100.0 * CLIENT_BOUND
            ),
        ));
    }
    if let Some((p99, limit)) = report.late_sends() {
        // What the host took from the load generator's CPUs meanwhile: a
        // stall it cannot help (ticks of 10 ms: 0 means under one).
        let host = cell.steal.and_then(|s| s.client_ms).map_or(String::new(), |ms| {
            format!("; the host took {ms:.0} ms of the load generator's CPU(s) in the window (steal)")
        });
        flags.push(Flag::new(
            FlagKind::SendLate,
            p99 as f64,
            limit as f64,
            format!(
                "the load generator sent late: p99 send lateness {p99} µs > {limit} µs (the smaller of 10 % of the \
                 per-connection interval and 50 µs){host}"
            ),
        ));
    }
    if let Some(target) = report.throughput.target_requests_per_sec.filter(|t| *t > 0.0) {
        let share = report.throughput.requests_per_sec / target;
        if share < BELOW_TARGET_RATE {
            flags.push(Flag::new(
                FlagKind::BelowTargetRate,
                share,
                BELOW_TARGET_RATE,
                format!(
                    "achieved {} of {} msg/s ({:.1} % < {:.0} %)",
                    fmt_count(report.throughput.requests_per_sec),
                    fmt_count(target),
                    100.0 * share,
                    100.0 * BELOW_TARGET_RATE
                ),
            ));
        }
    }
    let c = &report.connections;
    let served = served(report);
    if served < c.requested {
        let closed = c.attempts.dropped_before_first_echo;
        let refused = c.failed.saturating_sub(closed);
        flags.push(Flag::new(
            FlagKind::ConnectionsShort,
            served as f64,
            c.requested as f64,
            format!(
                "{} of {} connections served: {} refused or failed to connect, {} closed by the server before \
                 their first echo, {} never served (connected, no echo in the window)",
                fmt_count(served as f64),
                fmt_count(c.requested as f64),
                fmt_count(refused as f64),
                fmt_count(closed as f64),
                fmt_count(report.per_connection.starved as f64)
            ),
        ));
    }
    if let Some(off) = report.littles_law_offset() {
        // The tolerance: LITTLES_LAW, plus the window's edge error where a
        // message's latency is a sizeable part of the window.
        let limit = report.littles_law_tolerance();
        if off > limit {
            // Said when it moved the limit by a whole percent or more.
            let edge_term = limit - LITTLES_LAW;
            let edges = if edge_term >= 0.01 {
                let capped = if edge_term >= loadgen::report::LITTLE_EDGES_AT_MOST { ", at most" } else { "" };
                format!(" + {:.0} % for the window's edges: median latency ÷ window{capped}", 100.0 * edge_term)
            } else {
                String::new()
            };
            flags.push(Flag::new(
                FlagKind::LittlesLaw,
                off,
                limit,
                format!(
                    "throughput × mean latency is {:.0} % off the messages in flight (> {:.0} %{edges}): starved or \
                     stalled connections, or time spent outside request/echo",
                    100.0 * off,
                    100.0 * LITTLES_LAW
                ),
            ));
        }
    }
    if report.requests.ok > 0 {
        let cpu = cell.server.map(|s| s.cpu_secs);
        match (cpu, cell.server_cpu_us_per_msg) {
            (Some(cpu), Some(_)) if cpu > 0.0 => {
                // How long after an edge its CPU was read: the lag, or in a
                // run that kept only the pass's length, that.
                let off = cell.server.map_or(0.0, |s| s.edge_lag_secs.unwrap_or(s.edge_cpu_pass_secs));
                let window = report.duration_secs;
                if window > 0.0 && off / window > EDGE_READ {
                    flags.push(Flag::new(
                        FlagKind::CpuUnmeasurable,
                        off / window,
                        EDGE_READ,
                        format!(
                            "the server's CPU was read up to {:.1} ms after an edge of the window, {:.1} % of it \
                             (> {:.0} %): its CPU is of an interval up to that much off the window",
                            off * 1e3,
                            100.0 * off / window,
                            100.0 * EDGE_READ
                        ),
                    ));
                }
            }
            (cpu, _) => flags.push(Flag::new(
                FlagKind::CpuUnmeasurable,
                cpu.unwrap_or(0.0),
                0.0,
                match cpu {
                    None => "no reading of the server's CPU over the window".into(),
                    Some(cpu) if cpu > 0.0 => {
                        "the server's tree could not be read when loadgen opened or closed its window".into()
                    }
                    Some(cpu) => {
                        format!("server CPU read as {cpu:.3} s for {} messages", fmt_count(report.requests.ok as f64))
                    }
                },
            )),
        }
    }
    flags
}
