//! The validity flags: those a cell earns on its own data (a busy client,
//! a missed rate, connections short, Little's law, the server's CPU) at
//! their thresholds, and the spread across the repeats of one load.
use echo_bench::capacity::Capacity;
use echo_bench::flags::{CLIENT_BOUND, FlagKind, LITTLES_LAW, NoteKind};
use echo_bench::load::{CellSpec, LoadKey, Rate, ScenarioId};
use echo_bench::models::Model;
use echo_bench::results::{Cell, Results};
use echo_bench::sampler::ServerStats;
use echo_bench::validity::{annotate, cell_flags};
use echo_common::{ModelInfo, Transport};
use serde_json::json;

/// A loadgen report as loadgen writes it: `requested` connections,
/// `established` of them, `starved` of those with no echo; closed loop
/// unless `rate` is given. Fields are then adjusted by the tests.
fn report(requested: u64, established: u64, starved: u64, rps: f64, rate: Option<f64>) -> loadgen::Report {
    let latency = json!({"count": 1000, "min": 50, "mean": 100.0, "stdev": 10.0, "p50": 100, "p90": 120,
                         "p99": 200, "p99_9": 300, "p99_99": 400, "max": 500, "clamped": 0});
    let zero = json!({"established": established, "failed": requested - established, "reconnects": 0,
                      "reconnects_failed": 0, "refused": requested - established, "timed_out": 0, "other": 0,
                      "dropped_before_first_echo": 0});
    let counts: Vec<u64> = (0..established).map(|i| if i < starved { 0 } else { 10 }).collect();
    serde_json::from_value(json!({
        "schema_version": loadgen::report::SCHEMA_VERSION,
        "config": {"addr": "127.0.0.1:7000", "connections": requested, "size": 64, "duration_secs": 2.0,
                   "warmup_secs": 0.5, "threads": null, "connect_timeout_secs": 3.0, "timeout_secs": 5.0,
                   "pipeline": 1, "rate": rate, "reconnect_every": null},
        "mode": if rate.is_some() { "open" } else { "closed" },
        "transport": "tcp",
        "environment": {"hostname": "h", "kernel": "k", "cpu_model": "c", "cpus_available": 2, "cpus_online": 2,
                        "loadgen_version": "0", "git_commit": null},
        "connections": {"requested": requested, "established": established, "failed": requested - established,
                        "attempts": zero},
        "requests": {"ok": 20_000, "mismatched": 0, "timed_out": 0, "failed": 0, "failed_closed": 0,
                     "failed_reset": 0, "failed_io": 0, "errors_in_warmup": 0},
        "duration_secs": 2.0,
        "throughput": {"requests_per_sec": rps, "bytes_per_sec": rps * 64.0, "target_requests_per_sec": rate},
        "latency_us": latency, "latency_raw_us": null, "connect_us": null,
        "per_connection": {"min": 0, "median": 10, "max": 10, "starved": starved, "counts": counts},
        "client_cpu": {"user_secs": 0.5, "sys_secs": 0.5, "utilisation": 0.5, "max_thread_utilisation": 0.5,
                       "threads": 1},
        "timeline": [], "histogram": "", "histogram_raw": null, "histogram_connect": null, "warnings": []
    }))
    .expect("a loadgen report")
}

fn model() -> Model {
    Model::new(ModelInfo {
        name: "m".into(),
        summary: "".into(),
        default_max_connections: 10_000,
        child_processes: false,
        serves_at_once: None,
        baseline: false,
        reuse_port: false,
        colour: "#000000".into(),
        datagrams: None,
        datagram_batch: false,
        blocks_at_once: None,
        blocking_choice: false,
    })
}

fn cell(scenario: &'static str, repeat: u32, report: Option<loadgen::Report>) -> Cell {
    let ok = report.as_ref().map_or(0, |r| r.requests.ok);
    Cell {
        spec: CellSpec {
            load: LoadKey {
                rate: report.as_ref().and_then(|r| r.config.rate).map(Rate),
                ..LoadKey::new(
                    ScenarioId::new(scenario),
                    model(),
                    Transport::Tcp,
                    report.as_ref().map_or(100, |r| r.config.connections),
                    64,
                )
            },
            repeat,
        },
        ok: true,
        failure: None,
        server: Some(ServerStats { samples: 20, cpu_secs: 0.2, ..ServerStats::default() }),
        server_cpu_us_per_msg: (ok > 0).then(|| 1e6 * 0.2 / ok as f64),
        loadgen: report,
        capacity: None,
        agents: Vec::new(),
        coordination: None,
        shutdown: None,
        flags: Vec::new(),
        allotment_cpus: None,
        notes: Vec::new(),
        quota: None,
        steal: None,
    }
}

/// A report whose Little's law holds: 100 in flight = rps × mean latency (100 µs).
fn sound() -> loadgen::Report {
    report(100, 100, 0, 1_000_000.0, None)
}

fn kinds(cell: &Cell) -> Vec<FlagKind> {
    cell.flags.iter().map(|f| f.kind).collect()
}

/// The flags `cell` earns on its own in a run of [`results`]'s settings
/// (its server on one CPU).
fn own_flags(cell: &Cell) -> Vec<echo_bench::flags::Flag> {
    cell_flags(cell, &results(Vec::new()).settings)
}

fn results(cells: Vec<Cell>) -> Results {
    let json = json!({
        "schema_version": echo_bench::results::SCHEMA_VERSION,
        "environment": {"hostname": "h", "kernel": "k", "cpu_model": "c", "cpus_online": 2, "rustc": "r",
                        "crates": [], "git_commit": null, "command": "bench", "started_at": "t"},
        "settings": {"models": [], "scenarios": [], "transports": ["tcp"], "connections": [], "sizes": [],
                     "capacity": [], "repeat": 3, "throughput_repeat": 3, "duration_secs": 2.0,
                     "warmup_secs": 0.5, "server_cpus": [0], "client_cpus": [1], "scaling": null,
                     "ladder": null, "quick": false},
        "cells": [],
        "complete": true
    });
    let mut results: Results = serde_json::from_value(json).expect("results");
    results.cells = cells;
    results
}

#[test]
fn a_sound_cell_has_no_flag() {
    let mut r = results(vec![cell("throughput", 0, Some(sound()))]);
    annotate(&mut r);
    assert!(r.cells[0].flags.is_empty(), "{:?}", r.cells[0].flags);
    assert_eq!(echo_bench::render::marks::console_line(&r), "flags: none (of 1 cells)");
}

#[test]
fn a_busy_client_thread_flags_client_bound_at_the_threshold() {
    for (busy, flagged) in [(0.89, false), (0.90, false), (0.91, true), (0.97, true)] {
        let mut report = sound();
        report.client_cpu.max_thread_utilisation = busy;
        let flags = own_flags(&cell("throughput", 0, Some(report)));
        assert_eq!(flags.iter().any(|f| f.kind == FlagKind::ClientBound), flagged, "{busy}");
        if let Some(f) = flags.first() {
            assert_eq!((f.figure, f.threshold), (busy, CLIENT_BOUND));
            assert!(f.detail.contains(&format!("{:.0} %", busy * 100.0)), "{}", f.detail);
        }
    }
}

/// A pacer that spun kept its thread busy by design: an open-loop cell's
/// busy client is not client-bound unless it also sent late.
#[test]
fn a_spinning_pacer_is_busy_without_being_client_bound() {
    let mut report = sound();
    report.client_cpu.max_thread_utilisation = 0.99;
    report.client_cpu.pacer_spin_secs = 0.4;
    let flags = own_flags(&cell("latency", 0, Some(report)));
    assert!(flags.iter().all(|f| f.kind != FlagKind::ClientBound), "{flags:?}");
}

#[test]
fn an_open_loop_cell_short_of_its_rate_is_flagged_with_its_share() {
    // the issue's case: 45,816 of 60,414 msg/s
    let short = cell("latency", 0, Some(report(100, 100, 0, 45_816.0, Some(60_414.0))));
    let flags = own_flags(&short);
    let flag = flags.iter().find(|f| f.kind == FlagKind::BelowTargetRate).expect("below target");
    assert!((flag.figure - 45_816.0 / 60_414.0).abs() < 1e-9);
    assert!(flag.detail.contains("45,816 of 60,414") && flag.detail.contains("75.8 %"), "{}", flag.detail);
    let met = cell("latency", 0, Some(report(100, 100, 0, 59_900.0, Some(60_000.0))));
    assert!(own_flags(&met).iter().all(|f| f.kind != FlagKind::BelowTargetRate), "99.8 % is on target");
}

/// The pacer's lateness: p99 above the smaller of 10 % of the interval
/// and 50 µs is flagged; a closed-loop cell has none to judge.
#[test]
fn an_open_loop_cell_whose_client_sent_late_is_flagged() {
    // 100 connections at 60,000 msg/s: an interval of 1,667 µs, so the
    // limit is 50 µs; at 1,000,000 msg/s, 100 µs, so 10 µs.
    for (rate, p99, flagged, limit) in [(60_000.0, 49, false, 50), (60_000.0, 51, true, 50), (1e6, 11, true, 10)] {
        let mut report = report(100, 100, 0, rate, Some(rate));
        let mut late = report.latency_us;
        late.p99 = p99;
        report.send_lateness_us = Some(late);
        let flags = own_flags(&cell("latency", 0, Some(report)));
        let flag = flags.iter().find(|f| f.kind == FlagKind::SendLate);
        assert_eq!(flag.is_some(), flagged, "{rate} msg/s, p99 {p99} µs");
        if let Some(flag) = flag {
            assert_eq!((flag.figure, flag.threshold), (p99 as f64, limit as f64));
            assert!(flag.detail.contains(&format!("{p99} µs > {limit} µs")), "{}", flag.detail);
        }
    }
    assert!(own_flags(&cell("throughput", 0, Some(sound()))).iter().all(|f| f.kind != FlagKind::SendLate));
}

#[test]
fn connections_short_splits_refused_closed_and_never_served() {
    // pool at 1,000: every connection accepted, 872 waiting in its queue
    let mut pool = report(1000, 1000, 872, 100_000.0, None);
    pool.latency_us.mean = 128.0 / 100_000.0 * 1e6; // Little's law holds for the 128 served
    let flags = own_flags(&cell("throughput", 0, Some(pool)));
    let flag = flags.iter().find(|f| f.kind == FlagKind::ConnectionsShort).expect("short");
    assert_eq!((flag.figure, flag.threshold), (128.0, 1000.0));
    assert!(
        flag.detail.starts_with("128 of 1,000 connections served: 0 refused")
            && flag.detail.contains("0 closed by the server")
            && flag.detail.contains("872 never served"),
        "{}",
        flag.detail
    );
    // a server at its connection cap: 30 refused, 20 closed before their first echo
    let mut capped = report(100, 50, 0, 1_000_000.0, None);
    capped.connections.failed = 50;
    capped.connections.attempts.refused = 30;
    capped.connections.attempts.dropped_before_first_echo = 20;
    let flags = own_flags(&cell("throughput", 0, Some(capped)));
    let flag = flags.iter().find(|f| f.kind == FlagKind::ConnectionsShort).expect("short");
    assert!(flag.detail.contains("30 refused") && flag.detail.contains("20 closed by the server"), "{}", flag.detail);
}

/// A capacity cell's figures: `held` of `requested` connections, of which
/// `established`; those not held were not served either.
fn held_of(requested: u64, established: u64, held: u64) -> Capacity {
    Capacity {
        requested,
        established,
        held,
        waiting: None,
        pss_before_kib: 0,
        pss_held_kib: 0,
        rss_before_kib: 0,
        rss_held_kib: 0,
        pss_per_connection_kib: 1.0,
        rss_per_connection_kib: 1.0,
        threads: 1,
        processes: 1,
        not_served: established - held,
        echo_secs: 0.1,
    }
}

#[test]
fn capacity_short_of_held_connections_is_flagged() {
    let mut c = cell("capacity", 0, None);
    let capacity = |held| Capacity { not_served: 0, ..held_of(10_000, 10_000, held) };
    c.capacity = Some(capacity(1_152));
    let flags = own_flags(&c);
    assert_eq!(flags.len(), 1);
    assert_eq!((flags[0].kind, flags[0].figure), (FlagKind::ConnectionsShort, 1_152.0));
    assert!(flags[0].detail.contains("8,848 closed by the server"), "{}", flags[0].detail);
    c.capacity = Some(capacity(10_000));
    assert!(own_flags(&c).is_empty());
}

#[test]
fn capacity_connections_waiting_in_the_backlog_are_not_called_closed() {
    // `iterative` (serves 1 at once) and `prefork` (16) accept only when
    // free: their other connections wait in the listener's backlog.
    let at_once = |name: &str, serves_at_once| {
        let mut c = cell("capacity", 0, None);
        c.spec.load.model =
            Model::new(ModelInfo { name: name.to_owned().into(), serves_at_once, ..model().info().clone() });
        c
    };
    let capacity = held_of;
    let detail = |mut c: Cell, capacity: Capacity| {
        c.capacity = Some(capacity);
        let flags = own_flags(&c);
        assert_eq!(flags.len(), 1, "{flags:?}");
        flags[0].detail.clone()
    };
    let iterative = detail(at_once("iterative", Some(1)), capacity(1000, 1000, 1));
    assert_eq!(iterative, "1 of 1,000 connections held: 0 not established, 999 waiting in the backlog");
    let prefork = detail(at_once("prefork", Some(16)), capacity(1000, 1000, 16));
    assert_eq!(prefork, "16 of 1,000 connections held: 0 not established, 984 waiting in the backlog");
    // the backlog (1,024) full: the rest not established
    let iterative = detail(at_once("iterative", Some(1)), capacity(10_000, 1026, 1));
    assert_eq!(iterative, "1 of 10,000 connections held: 8,974 not established, 1,025 waiting in the backlog");
    // `pool` (128 workers) holds more than it serves: its queue is full, and
    // the connections beyond it were accepted and closed.
    let pool = detail(at_once("pool", Some(128)), capacity(10_000, 10_000, 1152));
    assert_eq!(pool, "1,152 of 10,000 connections held: 0 not established, 8,848 closed by the server");
    // Those were inferred from the declaration (results recorded before
    // `waiting` was); a measured `waiting` is taken as it is.
    let measured = |held, waiting| Capacity { waiting: Some(waiting), ..capacity(10, 10, held) };
    let both = detail(at_once("pool", Some(2)), measured(2, 3));
    assert_eq!(both, "2 of 10 connections held: 0 not established, 3 waiting in the backlog, 5 closed by the server");
    let none_waiting = detail(at_once("iterative", Some(1)), measured(1, 0));
    assert_eq!(none_waiting, "1 of 10 connections held: 0 not established, 9 closed by the server");
}

#[test]
fn littles_law_figure_is_computed_and_flagged_above_ten_percent() {
    let mut off = sound();
    off.latency_us.mean = 115.0; // 1e6 msg/s × 115 µs = 115 in flight for 100
    let flags = own_flags(&cell("throughput", 0, Some(off.clone())));
    let flag = flags.iter().find(|f| f.kind == FlagKind::LittlesLaw).expect("littles law");
    assert!((flag.figure - 0.15).abs() < 1e-9, "{}", flag.figure);
    off.latency_us.mean = 109.0;
    assert!(off.littles_law_offset().is_some_and(|f| f < LITTLES_LAW));
    assert!(own_flags(&cell("throughput", 0, Some(off))).is_empty());
    // open loop: not applicable
    assert_eq!(report(100, 100, 0, 50_000.0, Some(50_000.0)).littles_law_offset(), None);
}

#[test]
fn littles_law_allows_for_the_windows_edges_when_latency_is_a_large_part_of_it() {
    // 100 connections, 100 msg/s, 1.2 s each in a 1.5 s window: 20 % off
    // with nothing stalled, as 10 ms of blocking work queued 100 deep is.
    let mut slow = sound();
    slow.duration_secs = 1.5;
    slow.throughput.requests_per_sec = 100.0;
    slow.latency_us.mean = 1_200_000.0;
    slow.latency_us.p50 = 1_200_000;
    assert!(slow.littles_law_offset().is_some_and(|f| (f - 0.2).abs() < 1e-9));
    // 1.2 s in 1.5 s is 80 % of the window: the edges add at most 50 %.
    assert!((slow.littles_law_tolerance() - (LITTLES_LAW + 0.5)).abs() < 1e-9);
    assert!(own_flags(&cell("work", 0, Some(slow.clone()))).iter().all(|f| f.kind != FlagKind::LittlesLaw));
    // Stalled messages raise the mean, not the median: no wider tolerance.
    let mut stalled = slow.clone();
    stalled.latency_us.p50 = 1_000;
    assert!((stalled.littles_law_tolerance() - (LITTLES_LAW + 0.001 / 1.5)).abs() < 1e-9);
    assert!(own_flags(&cell("work", 0, Some(stalled))).iter().any(|f| f.kind == FlagKind::LittlesLaw));
    // The same 20 % at a latency of 30 ms, well inside the window: flagged,
    // and the flag's threshold is the tolerance it was read against.
    slow.throughput.requests_per_sec = 4_000.0;
    slow.latency_us.mean = 30_000.0;
    slow.latency_us.p50 = 30_000;
    let flags = own_flags(&cell("work", 0, Some(slow.clone())));
    let flag = flags.iter().find(|f| f.kind == FlagKind::LittlesLaw).expect("littles law");
    assert!((flag.threshold - slow.littles_law_tolerance()).abs() < 1e-9, "{flag:?}");
    assert!(flag.detail.contains("for the window's edges"), "{}", flag.detail);
}

#[test]
fn cpu_unmeasurable_when_there_is_no_reading_or_a_zero_one() {
    let mut none = cell("throughput", 0, Some(sound()));
    none.server = None;
    none.server_cpu_us_per_msg = None;
    assert_eq!(kinds(&Cell { flags: own_flags(&none), ..none }), [FlagKind::CpuUnmeasurable]);
    // the `process` model's "user 0.0 s, sys 0.0 s with 101 processes"
    let mut zero = cell("throughput", 0, Some(sound()));
    zero.server = Some(ServerStats { samples: 10, cpu_secs: 0.0, ..ServerStats::default() });
    zero.server_cpu_us_per_msg = Some(0.0);
    let flags = own_flags(&zero);
    assert_eq!(flags.len(), 1);
    assert!(flags[0].detail.contains("0.000 s for 20,000 messages"), "{}", flags[0].detail);
}

#[test]
fn cpu_unmeasurable_when_an_edge_reading_took_a_share_of_the_window() {
    // The window is 2 s (`report`): 1 % of it is 20 ms.
    let read_in = |pass: f64| {
        let mut c = cell("work", 0, Some(sound()));
        c.server = Some(ServerStats { samples: 3, cpu_secs: 1.0, edge_cpu_pass_secs: pass, ..ServerStats::default() });
        own_flags(&c)
    };
    assert!(read_in(0.005).is_empty(), "5 ms is 0.25 % of the window");
    assert!(read_in(0.0).is_empty(), "a run before the pass was kept");
    // `process` with 100 busy children, read from the server's own CPU: 140 ms.
    let flags = read_in(0.140);
    assert_eq!(flags.iter().map(|f| f.kind).collect::<Vec<_>>(), [FlagKind::CpuUnmeasurable]);
    assert!((flags[0].figure - 0.07).abs() < 1e-9 && flags[0].threshold == echo_bench::flags::EDGE_READ);
    assert!(flags[0].detail.contains("140.0 ms") && flags[0].detail.contains("7.0 %"), "{}", flags[0].detail);
    // The lag, where kept, is what counts: a short pass that began late.
    let late = |lag: f64| {
        let mut c = cell("work", 0, Some(sound()));
        c.server = Some(ServerStats {
            samples: 3,
            cpu_secs: 1.0,
            edge_cpu_pass_secs: 0.002,
            edge_lag_secs: Some(lag),
            ..ServerStats::default()
        });
        own_flags(&c)
    };
    assert!(late(0.010).is_empty(), "10 ms is 0.5 % of the window");
    let flags = late(0.050);
    assert_eq!(flags.iter().map(|f| f.kind).collect::<Vec<_>>(), [FlagKind::CpuUnmeasurable]);
    assert!(flags[0].detail.contains("up to 50.0 ms after"), "{}", flags[0].detail);
}

#[test]
fn spread_across_repeats_flags_every_repeat_of_that_load_and_annotate_is_idempotent() {
    let with_rate = |rps: f64, repeat| {
        let mut r = sound();
        r.throughput.requests_per_sec = rps;
        r.latency_us.mean = 100.0 * 1_000_000.0 / rps; // keep Little's law
        cell("throughput", repeat, Some(r))
    };
    // 100k, 130k, 165k: no two within 20 % of the median — the closest
    // two (100k, 130k) differ by 30 / 130 = 23.1 % > 20 %
    let mut cells = vec![with_rate(100_000.0, 0), with_rate(130_000.0, 1), with_rate(165_000.0, 2)];
    // another load (10 connections) with a small spread
    for (i, rps) in [100_000.0, 101_000.0].into_iter().enumerate() {
        let mut c = with_rate(rps, i as u32);
        c.spec.load.connections = 10;
        c.loadgen.as_mut().unwrap().connections.requested = 10;
        c.loadgen.as_mut().unwrap().connections.established = 10;
        c.loadgen.as_mut().unwrap().latency_us.mean = 10.0 * 1_000_000.0 / rps;
        cells.push(c);
    }
    let mut r = results(cells);
    annotate(&mut r);
    for c in &r.cells[..3] {
        assert_eq!(kinds(c), [FlagKind::Spread]);
        assert!((c.flags[0].figure - 30.0 / 130.0).abs() < 1e-9);
    }
    assert!(r.cells[3..].iter().all(|c| c.flags.is_empty()), "{:?}", r.cells[3].flags);
    let once = r.clone();
    annotate(&mut r);
    assert_eq!(r, once, "annotating again changes nothing");
    assert_eq!(echo_bench::render::marks::console_line(&r), "flags: 3 spread (cells; 3 of 5 cells carry at least one)");
}

#[test]
fn the_control_cells_runs_carry_no_spread_flag_their_drift_is_reported_on_its_own() {
    let cells: Vec<Cell> = [100_000.0, 130_000.0, 90_000.0]
        .into_iter()
        .enumerate()
        .map(|(i, rps)| {
            let mut r = sound();
            r.throughput.requests_per_sec = rps;
            r.latency_us.mean = 100.0 * 1_000_000.0 / rps;
            cell("control", i as u32, Some(r))
        })
        .collect();
    let mut r = results(cells);
    annotate(&mut r);
    assert!(r.cells.iter().all(|c| c.flags.is_empty()), "{:?}", r.cells.iter().map(kinds).collect::<Vec<_>>());
    assert!(r.control.is_some_and(|d| d.moved), "the drift says it moved");
}

#[test]
fn a_cell_that_asked_for_a_quota_the_machine_could_not_apply_carries_an_unthrottled_note() {
    let mut r = results(vec![cell("throughput", 0, Some(sound())), cell("latency", 0, Some(sound()))]);
    r.settings.server_quota = Some(echo_bench::results::QuotaSettings {
        cpus: Some(0.5),
        period_us: Some(2000),
        mechanism: None,
        unavailable: Some("no cgroup here".into()),
        scenarios: vec!["throughput".into()],
    });
    annotate(&mut r);
    let noted = |c: &Cell| c.notes.iter().any(|n| n.kind == NoteKind::Unthrottled);
    assert!(noted(&r.cells[0]), "{:?}", r.cells[0].notes);
    assert!(!noted(&r.cells[1]), "the latency scenario asked for no quota");
    r.settings.server_quota.as_mut().unwrap().unavailable = None;
    annotate(&mut r);
    assert!(!noted(&r.cells[0]), "applied: throttled");
}

#[test]
fn churn_and_udp_ask_for_the_quota_in_their_closed_loop_only() {
    // Closed loop: held to the quota, the rate is the server's; at a pinned
    // rate (churn's CPU per connection, udp's climb) the server runs free.
    for scenario in ["churn", "udp"] {
        let mut pinned = cell(scenario, 0, Some(sound()));
        pinned.spec.load.rate = Some(Rate(5000.0));
        let mut r = results(vec![cell(scenario, 0, Some(sound())), pinned]);
        r.settings.server_quota = Some(echo_bench::results::QuotaSettings {
            cpus: Some(0.5),
            period_us: Some(10_000),
            mechanism: None,
            unavailable: Some("no cgroup here".into()),
            scenarios: vec![scenario.into()],
        });
        annotate(&mut r);
        let noted = |c: &Cell| c.notes.iter().any(|n| n.kind == NoteKind::Unthrottled);
        assert!(noted(&r.cells[0]), "{scenario} closed loop: {:?}", r.cells[0].notes);
        assert!(!noted(&r.cells[1]), "{scenario} at a pinned rate: {:?}", r.cells[1].notes);
    }
}

#[test]
fn a_cells_own_flags_take_its_allotment_as_annotate_does() {
    // A busy client while the server keeps its one CPU busy: not client-bound.
    let c = busy_pair(0.97, 1.0, 1.0);
    let c = Cell { allotment_cpus: None, ..c };
    assert!(own_flags(&c).iter().all(|f| f.kind != FlagKind::ClientBound), "{:?}", own_flags(&c));
    let mut r = results(vec![c.clone()]);
    annotate(&mut r);
    assert_eq!(own_flags(&c), r.cells[0].flags);
}

/// A cell whose busiest loadgen thread was `busy` while its server kept
/// `server` CPUs busy out of an allotment of `allotment`.
fn busy_pair(busy: f64, server: f64, allotment: f64) -> Cell {
    let mut report = sound();
    report.client_cpu.max_thread_utilisation = busy;
    let mut c = cell("throughput", 0, Some(report));
    c.server =
        Some(ServerStats { samples: 20, cpu_secs: server * 2.0, cpu_utilisation: server, ..ServerStats::default() });
    c.allotment_cpus = Some(allotment);
    c
}

#[test]
fn client_bound_needs_a_busy_client_and_a_server_below_its_allotment() {
    // The server at half its one CPU: the client set the pace, and the flag says both figures.
    let mut r = results(vec![busy_pair(0.97, 0.5, 1.0)]);
    annotate(&mut r);
    let flag = r.cells[0].flags.iter().find(|f| f.kind == FlagKind::ClientBound).expect("client_bound");
    assert_eq!((flag.figure, flag.threshold), (0.97, echo_bench::flags::CLIENT_BOUND));
    assert!(flag.detail.contains("97 %") && flag.detail.contains("50 % of its 1 CPU(s)"), "{}", flag.detail);
    assert!(r.cells[0].notes.is_empty());
    // Against a quota of 0.5 CPU, 0.48 CPU busy is 96 % of the allotment: saturated.
    let mut r = results(vec![busy_pair(0.97, 0.48, 0.5)]);
    annotate(&mut r);
    assert!(r.cells[0].flags.iter().all(|f| f.kind != FlagKind::ClientBound), "{:?}", r.cells[0].flags);
    assert_eq!(r.cells[0].notes.len(), 1);
    assert_eq!(r.cells[0].notes[0].kind, NoteKind::BothSaturated);
    assert!(r.cells[0].notes[0].detail.contains("96 % of its 0.5 CPU(s)"), "{}", r.cells[0].notes[0].detail);
    // Just under the threshold of the allotment: still the client's.
    let mut r = results(vec![busy_pair(0.97, 0.44, 0.5)]);
    annotate(&mut r);
    assert!(r.cells[0].flags.iter().any(|f| f.kind == FlagKind::ClientBound));
    // A calm client earns neither, whatever the server did.
    let mut r = results(vec![busy_pair(0.5, 0.49, 0.5), busy_pair(0.5, 0.1, 0.5)]);
    annotate(&mut r);
    assert!(r.cells.iter().all(|c| c.flags.is_empty() && c.notes.is_empty()), "{:?}", r.cells[0].flags);
}

#[test]
fn a_cell_without_a_recorded_allotment_is_read_against_the_runs_server_cpus() {
    // The fixture's settings put the server on one CPU.
    let mut old = busy_pair(0.97, 0.95, 1.0);
    old.allotment_cpus = None;
    let mut r = results(vec![old]);
    annotate(&mut r);
    assert!(r.cells[0].flags.is_empty() && r.cells[0].notes.len() == 1, "{:?}", r.cells[0].flags);
    // and the count of both-saturated cells heads the README
    let md = echo_bench::report::markdown(&r, &[]);
    assert!(md.contains("Both sides saturated in 1 of 1 cells"), "{md}");
}

/// Three repeats whose median two agree are not flagged, however far the
/// third: the median stands. Two that disagree are.
#[test]
fn spread_reads_the_majority_of_repeats() {
    let with_rate = |rps: f64, repeat| {
        let mut r = sound();
        r.throughput.requests_per_sec = rps;
        r.latency_us.mean = 100.0 * 1_000_000.0 / rps;
        cell("throughput", repeat, Some(r))
    };
    // 100k, 105k and an outlier at 160k: the closest two differ by 4.8 %.
    let mut r = results(vec![with_rate(100_000.0, 0), with_rate(160_000.0, 1), with_rate(105_000.0, 2)]);
    annotate(&mut r);
    assert!(r.cells.iter().all(|c| c.flags.is_empty()), "{:?}", r.cells[0].flags);
    // Two repeats 30 % apart: a majority of two is both.
    let mut r = results(vec![with_rate(100_000.0, 0), with_rate(130_000.0, 1)]);
    annotate(&mut r);
    assert!(r.cells.iter().all(|c| kinds(c) == [FlagKind::Spread]));
}

/// The control cell's own spread of a figure over the run is the machine's
/// noise: repeats that differ by less are not flagged, by more they are,
/// and the flag says both limits.
#[test]
fn spread_within_the_control_cells_own_spread_is_not_flagged() {
    let at = |scenario: &'static str, rps: f64, repeat| {
        let mut r = sound();
        r.throughput.requests_per_sec = rps;
        r.latency_us.mean = 100.0 * 1_000_000.0 / rps;
        cell(scenario, repeat, Some(r))
    };
    // The control moved 40 % (100k .. 140k, median 120k: 40 / 120 = 33 %).
    let control = [100_000.0, 120_000.0, 140_000.0].into_iter().enumerate().map(|(i, v)| at("control", v, i as u32));
    // Repeats 30 % apart: within the control's 33 %.
    let mut cells: Vec<Cell> = control.clone().collect();
    cells.extend([at("throughput", 100_000.0, 0), at("throughput", 130_000.0, 1)]);
    let mut r = results(cells);
    annotate(&mut r);
    assert!(r.cells.iter().all(|c| c.flags.is_empty()), "{:?}", r.cells[3].flags);
    // 50 % apart: beyond it.
    let mut cells: Vec<Cell> = control.collect();
    cells.extend([at("throughput", 100_000.0, 0), at("throughput", 150_000.0, 1)]);
    let mut r = results(cells);
    annotate(&mut r);
    let flag = &r.cells[3].flags[0];
    assert_eq!(flag.kind, FlagKind::Spread);
    assert!((flag.threshold - 40.0 / 120.0).abs() < 1e-9, "{}", flag.threshold);
    assert!(flag.detail.contains("the control cell's runs"), "{}", flag.detail);
}

/// A model declared to serve N connections at once that served exactly N
/// while the rest waited gets a note, not connections_short or
/// littles_law; one that served fewer, or had connections refused, keeps
/// its flags.
#[test]
fn a_model_serving_what_it_declares_gets_a_note_not_a_flag() {
    let serving = |starved: u64, refused: u64| {
        let mut r = report(100, 100 - refused, starved, 1_000_000.0, None);
        r.latency_us.mean = 1.0; // Little's law off: the waiting connections' messages never complete
        let mut c = cell("throughput", 0, Some(r));
        let mut info = c.spec.load.model.info().clone();
        info.serves_at_once = Some(16);
        c.spec.load.model = Model::new(info);
        c
    };
    let mut r = results(vec![serving(84, 0), serving(90, 0), serving(80, 4)]);
    annotate(&mut r);
    let (by_design, fewer, refused) = (&r.cells[0], &r.cells[1], &r.cells[2]);
    assert!(by_design.flags.is_empty(), "{:?}", by_design.flags);
    assert_eq!(by_design.notes.len(), 1);
    assert!(
        by_design.notes[0].detail.contains("16 of 100 served, the other 84 waited"),
        "{}",
        by_design.notes[0].detail
    );
    assert!(kinds(fewer).contains(&FlagKind::ConnectionsShort), "10 served of 16: a fault");
    assert!(kinds(refused).contains(&FlagKind::ConnectionsShort), "refused connections: a fault");
}
