//! The work scenario end to end on a tiny matrix: the servers really run
//! with `--work` and `--blocking` (an event loop blocking 5 ms a message
//! cannot pass 200 msg/s, tokio's blocking pool passes it many times over),
//! the cells carry the work axis, the README and the chart are written; and
//! a bad `--work-levels` is refused before anything runs.

use std::path::Path;
use std::process::Command;

use common::run_dir;
use echo_bench::results::Results;

mod common;

/// `bench` as the common one, without its progress lines.
fn bench(results: &Path) -> Command {
    let mut command = common::bench(results);
    command.arg("--no-progress");
    command
}

#[test]
fn the_servers_run_with_the_work_and_the_cells_carry_it() {
    let root = tempfile::tempdir().unwrap();
    let output = bench(root.path())
        .args(["--models", "reactor,tokio", "--scenarios", "work", "--work-levels", "block:5ms"])
        .args(["--repeat", "1", "--duration", "1s", "--warmup", "0.1s"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "bench failed: {stdout}\n{stderr}");
    let dir = run_dir(root.path());
    let results = Results::load(&dir.join("results.json")).unwrap();
    let settings = results.settings.work.as_ref().expect("the work scenario's settings");
    assert_eq!(settings.levels, ["block:5ms"]);
    assert_eq!(settings.ladder_slo_p99_us, 2_000, "the run's 1 ms SLO plus the ladder's 1 ms of work");

    let closed: Vec<_> = results.cells.iter().filter(|c| c.spec.load.rate.is_none()).collect();
    let variants: Vec<String> = closed.iter().map(|c| c.spec.load.variant()).collect();
    assert_eq!(variants, ["reactor", "tokio", "tokio --blocking inline"], "tokio twice at a block: level");
    let rate = |variant: &str| {
        let cell = closed.iter().find(|c| c.spec.load.variant() == variant).unwrap();
        assert!(cell.ok, "{variant}: {:?}", cell.failure);
        assert_eq!((cell.spec.load.work.0.as_ref(), cell.spec.load.connections), ("block:5ms", 100));
        cell.loadgen.as_ref().unwrap().throughput.requests_per_sec
    };
    // One call of 5 ms at a time: 200 msg/s at most, whatever the machine;
    // the bound leaves a message or two of slack at the window's edges.
    let one_thread = 200.0;
    let ceiling = 1.25 * one_thread;
    let reactor = rate("reactor");
    assert!(reactor > 0.0 && reactor <= ceiling, "reactor at block:5ms: {reactor} msg/s");
    // Inline, tokio blocks its workers: one per server CPU.
    let inline = rate("tokio --blocking inline");
    assert!(inline > 0.0 && inline <= ceiling * f64::from(settings.server_cpus), "inline: {inline} msg/s");
    // spawn_blocking: 100 calls at once, 20,000 msg/s in the textbook
    // (sleeping needs no CPU: a loaded machine keeps most of it). Asked for
    // four times the event loop's rate, and four times tokio's own without
    // the pool: relative bounds, which only the pool passes.
    let spawn = rate("tokio");
    assert!(
        spawn >= 4.0 * reactor && spawn >= 4.0 * inline,
        "tokio: {spawn} msg/s (reactor {reactor}, inline {inline})"
    );

    // The ladder at block:1ms: open-loop steps that carry their rate and their work.
    let steps: Vec<_> = results.cells.iter().filter(|c| c.spec.load.rate.is_some()).collect();
    assert!(!steps.is_empty());
    assert!(steps.iter().all(|c| c.spec.load.work.0 == "block:1ms" && c.spec.repeat == 0));
    assert!(steps.iter().any(|c| c.spec.load.offered() == Some(echo_bench::scenarios::work::LADDER_RATES[0])));

    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    // Inline, tokio makes as many calls at once as it has workers: one per server CPU.
    let inline_row = format!("| tokio --blocking inline | {} |", settings.server_cpus);
    for words in [
        "## Requests that compute, requests that block",
        "### The textbook, checked: block:5ms, 100 connections",
        "| reactor | 1 |",
        "| tokio | 100 |",
        &inline_row,
        "- **For requests that block**: `tokio`:",
        "### Latency against offered load at block:1ms",
        "](work.svg)",
    ] {
        assert!(readme.contains(words), "{words:?} missing from:\n{readme}");
    }
    assert!(dir.join("work.svg").is_file());
}

/// A server with `cpu:` work logs its calibration; the bench keeps that
/// line in the cell's shutdown record (and only when there is one).
#[test]
fn a_servers_calibration_reaches_its_shutdown_record() {
    let catalogue = echo_bench::models::catalogue(&common::server_bin()).unwrap();
    let model = catalogue.into_iter().find(|m| m.name() == "reactor").expect("reactor is registered");
    let start = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        echo_bench::server::Server::start(&common::server_bin(), &model, "127.0.0.1:0", &args, &[0]).expect("starts")
    };
    let shutdown = start(&["--work", "cpu:20us"]).stop();
    let line = shutdown.calibration.expect("the calibration line");
    assert!(line.contains("cpu work calibrated") && line.contains("iterations="), "{line}");
    assert_eq!(start(&[]).stop().calibration, None, "no cpu: work, no calibration");
}

#[test]
fn a_bad_work_level_is_refused_before_anything_runs() {
    let root = tempfile::tempdir().unwrap();
    for levels in ["io:1ms", "cpu:20us,block:0ms", "block:5s", "cpu:20"] {
        let output = bench(root.path()).args(["--scenarios", "work", "--work-levels", levels]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{levels}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with(&format!("bench: --work-levels {levels}: ")), "{stderr}");
    }
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0, "nothing ran");
}
