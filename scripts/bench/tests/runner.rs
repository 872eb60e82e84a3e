//! The runner end to end (a tiny matrix), its report rendering (a snapshot),
//! and its crash safety (killed mid-matrix, results.json still parses).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{BENCH, run_dir, server_bin};
use echo_bench::load::ScenarioId;
use echo_bench::results::Results;
use echo_bench::scenarios;
use echo_common::Transport;

/// `bench` with a server binary and a results folder, the arguments every run here gives.
fn bench(server: &Path, results: &Path) -> Command {
    let mut command = Command::new(BENCH);
    // No control cell: these tests count the matrix's cells.
    command.args(["--control", "none"]);
    command.arg("--server-bin").arg(server).arg("--results").arg(results);
    command
}

#[test]
fn tiny_matrix_end_to_end() {
    let root = tempfile::tempdir().unwrap();
    let output = bench(&server_bin(), root.path())
        .args(["--models", "thread,tokio", "--scenarios", "throughput,latency,churn,capacity,transport"])
        .args(["--transports", "tcp,unix"])
        .args(["--connections", "100", "--sizes", "64", "--capacity", "50", "--repeat", "1"])
        // one ladder step: the cell count does not depend on how it went
        .args(["--rates", "2k"])
        .args(["--duration", "1s", "--warmup", "0.2s", "--no-progress"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "bench failed: {stdout}\n{stderr}");
    // 2 models × (4 scenarios × 2 transports + 2 connection counts × 2 transports + churn's
    // pinned-rate load × 2 transports)
    assert!(stdout.contains("28 cells, 0 failed"), "{stdout}");
    let last = stdout.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("flags: ") && last.contains("of 28 cells"), "the console ends with the flags: {stdout}");
    // stderr is not a terminal here: one line per finished cell
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(lines.len(), 28, "{stderr}");
    assert!(lines[0].starts_with("[1/28, ETA ") && lines[27].starts_with("[28/28, ETA "), "{stderr}");
    let line = lines.iter().find(|l| l.contains("] throughput thread tcp c=100 s=64B: ")).expect("its line");
    assert!(line.contains(" msg/s"), "{line}");
    assert!(lines.iter().any(|l| l.contains("] latency tokio unix 2,000 msg/s c=100 s=64B: p99 ")), "{stderr}");

    let dir = run_dir(root.path());
    let mut results = Results::load(&dir.join("results.json")).unwrap();
    assert!(results.complete);
    assert_eq!(results.cells.len(), 28);
    for transport in Transport::STREAMS {
        let n = results.cells.iter().filter(|c| c.spec.load.transport == transport).count();
        assert_eq!(n, 14, "{transport} cells");
    }
    for cell in results.cells.iter().filter(|c| c.loadgen.is_some()) {
        assert_eq!(cell.loadgen.as_ref().unwrap().transport, cell.spec.load.transport, "loadgen records the transport");
    }
    for cell in &results.cells {
        assert!(cell.ok, "{:?}: {:?}", cell.spec, cell.failure);
        assert!(cell.shutdown.as_ref().is_some_and(|s| s.clean()), "{:?}", cell.shutdown);
        match cell.spec.load.scenario.name() {
            "capacity" => {
                let capacity = cell.capacity.as_ref().unwrap();
                assert_eq!((capacity.established, capacity.held, capacity.not_served), (50, 50, 0));
            }
            _ => {
                let report = cell.loadgen.as_ref().unwrap();
                let (requests, quota) = (&report.requests, cell.quota);
                assert!(requests.ok > 0 && requests.errors() == 0, "{:?}: {requests:?}, quota {quota:?}", cell.spec);
                let server = cell.server.expect("server samples over the window");
                assert!(server.samples >= 2, "{server:?}");
                assert!(server.cpu_secs > 0.0, "{server:?}");
                let per_msg = cell.server_cpu_us_per_msg.expect("CPU per message");
                assert!((per_msg - 1e6 * server.cpu_secs / report.requests.ok as f64).abs() < 1e-6);
            }
        }
    }
    // The load generator ran as its own process, and churn ran closed and at its pinned rate.
    assert_eq!(results.settings.load_path.as_deref(), Some("process"));
    let churn: Vec<_> = results.cells.iter().filter(|c| c.spec.load.scenario.name() == "churn").collect();
    assert_eq!(churn.iter().filter(|c| c.spec.load.rate.is_some()).count(), 4);
    for cell in churn.iter().filter(|c| c.spec.load.rate.is_some()) {
        let report = cell.loadgen.as_ref().unwrap();
        assert_eq!(report.mode, "open-churn");
        assert!(report.connect_us.is_some_and(|c| c.count > 0), "{:?}", report.connect_us);
        if cell.spec.load.transport == Transport::Tcp {
            assert!(report.kernel_tcp.is_some(), "TCP churn records the kernel's TCP counters");
        }
    }
    // The latency ladder: the same rates for both models over both transports,
    // recorded in the settings, each step at its offered rate.
    let ladder = results.settings.ladder.clone().expect("the ladder is recorded");
    assert_eq!((ladder.rates.as_slice(), ladder.slo_p99_us, ladder.connections), (&[2000.0][..], 1000, 100));
    for transport in Transport::STREAMS {
        for model in ["thread", "tokio"] {
            let rates: Vec<f64> = results
                .cells
                .iter()
                .filter(|c| c.spec.load.scenario.name() == "latency" && c.spec.load.transport == transport)
                .filter(|c| c.spec.load.model.name() == model)
                .map(|c| {
                    let report = c.loadgen.as_ref().unwrap();
                    assert_eq!(report.config.rate, c.spec.load.offered(), "loadgen ran at the step's rate");
                    c.spec.load.offered().unwrap()
                })
                .collect();
            assert_eq!(rates, [2000.0], "{model} over {transport}");
        }
    }
    // The flags in results.json are what annotate computes from the cells.
    let saved = results.clone();
    echo_bench::validity::annotate(&mut results);
    assert_eq!(results, saved);

    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    for heading in [
        "## Throughput and latency, closed loop, TCP loopback",
        "## Throughput and latency, closed loop, Unix domain socket",
        "## Latency against offered load, open loop, TCP loopback",
        "## Churn",
        "At a pinned rate: 5,000 new connections a second",
        "## Capacity",
        "## Transport: TCP loopback against a Unix domain socket",
        "## Which model for what",
        "## Flags by kind",
        "| thread |",
        "| tokio |",
        "| tokio | 2,000 |",
    ] {
        assert!(readme.contains(heading), "README lacks {heading:?}");
    }
    for chart in [
        "throughput-64B-tcp.svg",
        "throughput-64B-unix.svg",
        "latency-ladder-tcp.svg",
        "latency-ladder-unix.svg",
        "latency-spectrum-unix.svg",
        "memory-per-connection-tcp.svg",
        "cpu-per-message-64B-tcp.svg",
        "churn-unix.svg",
        "transport-ratio.svg",
    ] {
        let svg = std::fs::read_to_string(dir.join(chart)).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{chart}");
    }
}

#[test]
fn the_ladder_stops_a_model_at_its_first_failing_step_and_leaves_out_a_model_serving_one_connection() {
    let root = tempfile::tempdir().unwrap();
    // An SLO no step can meet: every climb stops at its first step.
    let output = bench(&server_bin(), root.path())
        .args(["--models", "iterative,tokio", "--scenarios", "latency", "--rates", "1k,2k,4k", "--slo-p99", "1us"])
        .args(["--repeat", "2", "--duration", "0.3s", "--warmup", "0.1s", "--no-progress"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("2 cells, 0 failed"), "{stdout}");
    // the skipped steps leave the total: the last line reads 2/2
    assert!(stderr.contains("[2/2, ETA "), "{stderr}");
    let dir = run_dir(root.path());
    let results = Results::load(&dir.join("results.json")).unwrap();
    let ladder = results.settings.ladder.as_ref().unwrap();
    assert_eq!(ladder.excluded.len(), 1);
    assert_eq!(ladder.excluded[0].model, "iterative");
    let steps: Vec<(String, f64, u32)> = results
        .cells
        .iter()
        .map(|c| (c.spec.load.model.name().to_owned(), c.spec.load.offered().unwrap(), c.spec.repeat))
        .collect();
    assert_eq!(steps, [("tokio".to_owned(), 1000.0, 0), ("tokio".to_owned(), 1000.0, 1)]);
    let climbs = scenarios::latency::climbs(&results);
    assert_eq!(climbs.len(), 2);
    for climb in &climbs {
        assert_eq!(climb.knee(), None);
        // over the SLO, or (0.3 s windows, 3 messages per connection) short of the rate
        let (cell, verdict) = climb.stop().expect("the first step stopped the climb");
        assert!(!verdict.sustained() && cell.spec.load.offered() == Some(1000.0), "{verdict:?}");
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("`iterative` is left out: it serves 1 connection(s) at once"), "{readme}");
    // No knee; whether the stop is marked client-bound depends on how late
    // this machine's (debug) load generator sent: either is right here.
    let row = readme.lines().find(|l| l.starts_with("| tokio | none")).expect("tokio's ladder row");
    assert!(row.contains(" | none · none | repeat 1: 1,000 msg/s, "), "{row}");
}

/// The cost scenario, tiny: two models and a model it leaves out, two low
/// rates, short windows. Every rate runs for every model (no climb), and
/// each cell carries its offered rate and the server's CPU per message.
#[test]
fn the_cost_scenario_runs_every_rate_and_records_server_cpu_per_message() {
    let root = tempfile::tempdir().unwrap();
    // An SLO no cell can meet: a ladder would stop; the cost scenario does not.
    let output = bench(&server_bin(), root.path())
        .args(["--models", "iterative,thread,tokio", "--scenarios", "cost", "--cost-rates", "500,1k"])
        .args(["--slo-p99", "1us", "--repeat", "1", "--duration", "0.5s", "--warmup", "0.1s", "--no-progress"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("4 cells, 0 failed"), "{stdout}");
    let dir = run_dir(root.path());
    let results = Results::load(&dir.join("results.json")).unwrap();
    let cost = results.settings.cost.as_ref().expect("the cost scenario is recorded");
    assert_eq!((cost.rates.as_slice(), cost.connections, cost.size), (&[500.0, 1000.0][..], 100, 64));
    assert_eq!(cost.excluded.iter().map(|e| e.model.as_str()).collect::<Vec<_>>(), ["iterative"]);
    let cells: Vec<(String, f64)> = results
        .cells
        .iter()
        .map(|c| (c.spec.load.model.name().to_owned(), c.spec.load.offered().expect("an offered rate")))
        .collect();
    let expected = [("thread", 500.0), ("tokio", 500.0), ("thread", 1000.0), ("tokio", 1000.0)];
    assert_eq!(cells, expected.map(|(m, r)| (m.to_owned(), r)));
    for cell in &results.cells {
        assert!(cell.ok, "{:?}", cell.failure);
        let report = cell.loadgen.as_ref().unwrap();
        assert_eq!(report.config.rate, cell.spec.load.offered(), "loadgen ran at the cell's rate");
        assert_eq!(report.connections.requested, 100);
        let server = cell.server.expect("the server's CPU over the window");
        let per_msg = cell.server_cpu_us_per_msg.expect("server CPU per message");
        assert!(per_msg > 0.0 && (per_msg - 1e6 * server.cpu_secs / report.requests.ok as f64).abs() < 1e-6);
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("## Server CPU per message at pinned rates, TCP loopback"), "{readme}");
    assert!(readme.contains("`iterative` is left out: it serves 1 connection(s) at once"), "{readme}");
    assert!(readme.contains("- **Lowest server CPU per message**: "), "the claim is the cost scenario's: {readme}");
    assert!(dir.join("cost.svg").is_file(), "its chart");
}

#[test]
fn report_rendering_matches_snapshot() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let results = Results::load(&fixtures.join("results.json")).unwrap();
    let out = tempfile::tempdir().unwrap();
    echo_bench::report::write_report(&results, out.path()).unwrap();
    let rendered = std::fs::read_to_string(out.path().join("README.md")).unwrap();
    let expected_path = fixtures.join("expected-README.md");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&expected_path, &rendered).unwrap();
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap();
    assert!(
        rendered == expected,
        "README differs from the snapshot; rerun with UPDATE_SNAPSHOTS=1 and review the diff"
    );
    // and `bench report` does the same from the command line
    std::fs::copy(fixtures.join("results.json"), out.path().join("results.json")).unwrap();
    std::fs::remove_file(out.path().join("README.md")).unwrap();
    let status = Command::new(BENCH).arg("report").arg(out.path()).stdout(Stdio::null()).status().unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(out.path().join("README.md")).unwrap(), expected);
}

/// The fixture cut down to the cells of `scenarios`, as a run of only those
/// would have recorded them.
fn fixture_of(scenarios: &[&str]) -> Results {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut results = Results::load(&fixtures.join("results.json")).unwrap();
    results.cells.retain(|c| scenarios.contains(&c.spec.load.scenario.name()));
    // The summary reads the capacity cells of 1,000 connections: the
    // fixture's 50 stand in for them.
    for cell in results.cells.iter_mut().filter(|c| c.spec.load.scenario.name() == "capacity") {
        cell.spec.load.connections = 1000;
    }
    results.settings.scenarios = scenarios.iter().map(|s| (*s).to_owned()).collect();
    if !scenarios.contains(&"latency") {
        results.settings.ladder = None;
    }
    echo_bench::validity::annotate(&mut results);
    results
}

/// The summary's table: its header row and its rows.
fn summary_table(readme: &str) -> Vec<&str> {
    let section = readme.split("## Summary by model").nth(1).expect("a summary");
    let section = section.split("\n## ").next().unwrap();
    section.lines().filter(|l| l.starts_with('|') && !l.starts_with("|---")).collect()
}

#[test]
fn a_run_of_some_scenarios_describes_and_summarises_only_those() {
    let capacity = echo_bench::report::markdown(&fixture_of(&["capacity"]), &[]);
    let table = summary_table(&capacity);
    assert_eq!(table[0], "| model | PSS per idle connection |", "{capacity}");
    assert!(table[1..].iter().all(|row| row.matches(" | ").count() == 1 && !row.contains("| – |")), "{table:?}");
    let header = capacity.lines().nth(2).unwrap();
    assert!(header.starts_with("2 model(s) × 1 scenario(s), 2 repeat(s) per cell, interleaved"), "{header}");
    for absent in ["throughput", "transport", "latency", "udp", "closed- and open-loop", "warm-up"] {
        assert!(!header.contains(absent), "{absent:?} in {header}");
    }
    let intro = capacity.split("## Summary by model").nth(1).unwrap().lines().nth(2).unwrap();
    assert!(!intro.contains("msg/s") && !intro.contains("p99") && !intro.contains("churn"), "{intro}");

    let throughput = echo_bench::report::markdown(&fixture_of(&["throughput"]), &[]);
    let table = summary_table(&throughput);
    assert_eq!(table[0], "| model | server CPU µs/msg | msg/s, 100 connections |", "{throughput}");
    let header = throughput.lines().nth(2).unwrap();
    assert!(header.contains("closed- and open-loop cells measure 0.5 s after a 0.2 s warm-up."), "{header}");
    for absent in ["transport", "latency", "udp"] {
        assert!(!header.contains(absent), "{absent:?} in {header}");
    }

    let ladder = echo_bench::report::markdown(&fixture_of(&["latency", "churn"]), &[]);
    let table = summary_table(&ladder);
    assert_eq!(table[0], "| model | p99 at a fixed load | server CPU µs/connection | new connections/s |", "{ladder}");
    let header = ladder.lines().nth(2).unwrap();
    assert!(header.contains("(latency-ladder cells: at most 0.5 s after 0.2 s)"), "{header}");
    assert!(!header.contains("udp") && !header.contains("transport"), "{header}");

    let transport = echo_bench::report::markdown(&fixture_of(&["transport"]), &[]);
    let header = transport.lines().nth(2).unwrap();
    assert!(header.contains("transport cells measure at most 0.5 s after a 0.2 s warm-up."), "{header}");
    assert!(!header.contains("closed- and open-loop") && !header.contains("latency"), "{header}");
}

#[test]
fn killed_mid_matrix_leaves_valid_results_with_finished_cells() {
    let root = tempfile::tempdir().unwrap();
    let mut child = bench(&server_bin(), root.path())
        .args(["--models", "thread,tokio", "--scenarios", "throughput", "--connections", "1,10,100"])
        .args(["--sizes", "64", "--repeat", "2", "--duration", "1s", "--warmup", "0.2s", "--no-progress"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let bench_pid = child.id() as i32;
    // Wait (bounded) until at least two cells are recorded.
    let deadline = Instant::now() + Duration::from_secs(60);
    let json = loop {
        assert!(Instant::now() < deadline, "no finished cell within 60 s");
        if let Some(dir) = std::fs::read_dir(root.path()).unwrap().flatten().next() {
            let json = dir.path().join("results.json");
            if Results::load(&json).is_ok_and(|r| r.cells.len() >= 2) {
                break json;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let servers = echo_bench::procfs::tree(bench_pid);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(bench_pid), nix::sys::signal::Signal::SIGKILL);
    child.wait().unwrap();

    let results = Results::load(&json).expect("results.json parses after a kill");
    assert!(!results.complete);
    assert!(results.cells.len() >= 2 && results.cells.len() < 12, "{} cells", results.cells.len());
    assert!(results.cells.iter().all(|c| c.ok));
    // The server the runner had started goes with it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while servers.iter().skip(1).any(|&pid| echo_bench::procfs::alive(pid)) {
        assert!(Instant::now() < deadline, "a server outlived the killed runner");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_server_that_fails_to_start_fails_its_cells_and_the_matrix_goes_on() {
    let root = tempfile::tempdir().unwrap();
    // A server that publishes the real registry but fails to start any model.
    let broken = root.path().join("broken-server");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = list-models ]; then exec {} \"$@\"; fi\n\
             echo 'echo-server: unavailable here: a test' >&2\nexit 1\n",
        server_bin().display()
    );
    std::fs::write(&broken, script).unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let results_root = root.path().join("results");
    std::fs::create_dir(&results_root).unwrap();
    let output = bench(&broken, &results_root)
        .args(["--models", "thread", "--scenarios", "throughput", "--connections", "1,10", "--sizes", "64"])
        .args(["--repeat", "1", "--duration", "0.2s", "--warmup", "0s", "--no-progress"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "a failed cell makes the exit status non-zero");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("2 cells, 2 failed"), "{stdout}");
    assert_eq!(stdout.matches("FAILED").count(), 2, "{stdout}");
    let dir = run_dir(&results_root);
    let results = Results::load(&dir.join("results.json")).unwrap();
    assert!(results.complete, "the matrix went on to its end");
    // Each failure carries the server's own last words.
    let reported = |f: &str| f.contains("failed to start") && f.contains("unavailable here: a test");
    assert!(results.cells.iter().all(|c| !c.ok && c.failure.as_deref().is_some_and(reported)), "{:?}", results.cells);
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("## Failed cells"));
}

#[test]
fn capacity_counts_connections_a_saturated_pool_leaves_unserved() {
    // 2 workers, 5 held connections: 3 wait in the queue and get no echo. Each
    // connection stays open while the others are judged, so a served one does
    // not hand its worker on to the next.
    let pool = model("pool");
    let server =
        echo_bench::server::Server::start(&server_bin(), &pool, "127.0.0.1:0", &["--workers".into(), "2".into()], &[0])
            .expect("pool server starts");
    let capacity = echo_bench::capacity::run(&server.endpoint, server.pid(), 5).unwrap();
    let shutdown = server.stop();
    assert_eq!((capacity.established, capacity.held, capacity.not_served), (5, 5, 3), "{capacity:?}");
    assert_eq!(capacity.threads, 3, "main thread and 2 workers");
    assert!(shutdown.clean(), "{shutdown:?}");
}

#[test]
fn capacity_counts_only_the_connections_the_server_kept_open() {
    // 1 worker and a queue of 1: of 6 connections, 1 is served, at most 1
    // waits (none if the second arrives before the worker has taken the
    // first from the queue), and the rest are accepted and closed at once.
    let pool = model("pool");
    let args: Vec<String> = ["--workers", "1", "--queue", "1"].map(String::from).to_vec();
    let server = echo_bench::server::Server::start(&server_bin(), &pool, "127.0.0.1:0", &args, &[0]).expect("starts");
    let capacity = echo_bench::capacity::run(&server.endpoint, server.pid(), 6).unwrap();
    let shutdown = server.stop();
    assert_eq!(capacity.established, 6, "{capacity:?}");
    assert!((1..=2).contains(&capacity.held), "{capacity:?}");
    // accepted at once (and closed at once beyond the queue): none left in the backlog
    assert_eq!(capacity.waiting, Some(0), "{capacity:?}");
    assert!(capacity.not_served >= 6 - capacity.held, "a closed connection is not served either: {capacity:?}");
    let per = (capacity.pss_held_kib as f64 - capacity.pss_before_kib as f64) / capacity.held as f64;
    assert!((capacity.pss_per_connection_kib - per).abs() < 1e-9, "memory is divided by the connections held");
    assert!(shutdown.clean(), "{shutdown:?}");
}

#[test]
fn capacity_does_not_count_connections_waiting_in_the_backlog_as_held() {
    // `iterative` accepts one connection at a time: of 5, one is held, the
    // other 4 wait in the kernel's backlog — connected at the client's end,
    // in no file table of the server.
    let iterative = model("iterative");
    let server =
        echo_bench::server::Server::start(&server_bin(), &iterative, "127.0.0.1:0", &[], &[0]).expect("starts");
    let capacity = echo_bench::capacity::run(&server.endpoint, server.pid(), 5).unwrap();
    let shutdown = server.stop();
    assert_eq!((capacity.established, capacity.held, capacity.waiting), (5, 1, Some(4)), "{capacity:?}");
    assert_eq!(capacity.not_held(iterative.info().serves_at_once), (4, 0), "waiting, not closed");
    assert!(shutdown.clean(), "{shutdown:?}");
}

fn model(name: &str) -> echo_bench::models::Model {
    let catalogue = echo_bench::models::catalogue(&server_bin()).unwrap();
    catalogue.into_iter().find(|m| m.name() == name).unwrap_or_else(|| panic!("{name} is registered"))
}

#[test]
fn every_registered_model_is_in_every_scenario_of_the_default_matrix() {
    let catalogue = echo_bench::models::catalogue(&server_bin()).unwrap();
    assert!(catalogue.len() >= 5, "{catalogue:?}");
    // On a machine large enough that the scaling scenario is in the default matrix too.
    for quick in [false, true] {
        let cells = echo_bench::matrix::cells(&echo_bench::matrix::default_shape(catalogue.clone(), quick, 16));
        for model in &catalogue {
            for scenario in scenarios::ALL.iter().map(|s| s.id()) {
                let left_out = match scenario.name() {
                    "latency" => scenarios::latency::excluded(model),
                    "cost" => scenarios::cost::excluded(model),
                    _ => None,
                };
                if left_out.is_some() {
                    // left out of the ladder, with its reason in the results
                    assert!(!cells.iter().any(|c| c.load.model == *model && c.load.scenario == scenario));
                    continue;
                }
                if scenario.name() == "control" {
                    // the runner runs the control cell beside the matrix, never in it
                    assert!(!cells.iter().any(|c| c.load.scenario == scenario));
                    continue;
                }
                if scenario.name() == "work" {
                    // not in --quick's matrix; in the full one every model at every level, the
                    // ladder without those the latency ladder leaves out
                    let mine: Vec<_> =
                        cells.iter().filter(|c| c.load.model == *model && c.load.scenario == scenario).collect();
                    let levels = scenarios::work::LEVELS.len();
                    assert_eq!(mine.iter().filter(|c| c.load.rate.is_none()).count() == 0, quick, "{model}");
                    if !quick {
                        let closed = mine.iter().filter(|c| c.load.rate.is_none() && c.load.blocking.is_none());
                        assert_eq!(closed.count(), levels * scenarios::work::REPEAT as usize, "{model}");
                        let on_ladder = mine.iter().any(|c| c.load.rate.is_some());
                        assert_eq!(on_ladder, scenarios::latency::excluded(model).is_none(), "{model}");
                    }
                    continue;
                }
                if scenario.name() == "udp" {
                    // every datagram variant of a model that serves UDP, none of a stream-only one
                    let variants: std::collections::BTreeSet<Option<u32>> = cells
                        .iter()
                        .filter(|c| c.load.model == *model && c.load.scenario == scenario)
                        .map(|c| c.load.batch)
                        .collect();
                    let expected: std::collections::BTreeSet<Option<u32>> =
                        scenarios::udp::variants(model).into_iter().collect();
                    assert_eq!(variants, expected, "{model} (quick: {quick})");
                    assert!(
                        cells
                            .iter()
                            .filter(|c| c.load.scenario == scenario)
                            .all(|c| c.load.transport == Transport::Udp)
                    );
                    continue;
                }
                assert!(
                    cells.iter().any(|c| c.load.model == *model && c.load.scenario == scenario),
                    "{model} has no {scenario:?} cell (quick: {quick})"
                );
            }
        }
    }
}

/// The udp scenario: a model that serves datagrams runs with and without
/// `--batch`, a stream-only one is left out and named; every cell has the
/// datagram counts; the README has the UDP section and its two charts.
#[test]
fn the_udp_scenario_runs_every_datagram_variant_and_reports_loss() {
    let root = tempfile::tempdir().unwrap();
    let output = bench(&server_bin(), root.path())
        .args(["--models", "iterative,thread", "--scenarios", "udp", "--udp-rates", "2k,4k"])
        .args(["--repeat", "1", "--duration", "0.3s", "--warmup", "0.1s", "--no-progress"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let dir = run_dir(root.path());
    let results = Results::load(&dir.join("results.json")).unwrap();
    let udp = results.settings.udp.as_ref().expect("the udp settings are recorded");
    assert_eq!(udp.stream_only, ["thread"]);
    assert!(
        results
            .cells
            .iter()
            .all(|c| c.spec.load.model.name() == "iterative" && c.spec.load.transport == Transport::Udp)
    );
    // closed loop: 2 flow counts × 2 sizes, per variant
    let closed = |batch: Option<u32>| {
        results.cells.iter().filter(|c| c.spec.load.offered().is_none() && c.spec.load.batch == batch).count()
    };
    assert_eq!((closed(None), closed(Some(scenarios::udp::BATCH))), (4, 4));
    for cell in &results.cells {
        assert!(cell.ok, "{:?}", cell.failure);
        let report = cell.loadgen.as_ref().unwrap();
        let datagrams = report.datagrams.as_ref().expect("datagram counts");
        let counts = &datagrams.counts;
        // Every datagram sent in the window was decided in it or still in flight when it
        // closed; decided in it too are those in flight when it opened (sent during the
        // warm-up): at most the per-flow limit each, the pipeline in closed loop, the
        // window in open loop.
        let config = &report.config;
        let limit = if config.rate.is_some() {
            config.window.unwrap_or(loadgen::opts::DEFAULT_WINDOW)
        } else {
            config.pipeline
        };
        let accounted = counts.decided() + counts.in_flight_at_end;
        let opened_with = u64::from(config.connections) * u64::from(limit);
        assert!((counts.sent..=counts.sent + opened_with).contains(&accounted), "{datagrams:?}");
        // Echoed datagrams are the requests that succeeded, lost ones those that timed out.
        assert!(counts.ok > 0 && counts.ok == report.requests.ok, "{datagrams:?} {:?}", report.requests);
        assert_eq!(counts.lost, report.requests.timed_out, "{datagrams:?} {:?}", report.requests);
        // The loss the tables show and the climb judges: the lost share of the decided datagrams.
        let lost_share = 100.0 * counts.lost as f64 / counts.decided() as f64;
        assert!((datagrams.loss_percent - lost_share).abs() < 1e-9, "{datagrams:?}");
    }
    // each climb ran its first step, and ran the second only if it held the first
    let climbs = echo_bench::climb::climbs_of(&results, &ScenarioId::new("udp"), udp.slo_p99_us);
    assert_eq!(climbs.len(), 2, "{climbs:?}");
    for climb in &climbs {
        assert_eq!(climb.steps[0].0.spec.load.offered(), Some(2000.0));
        assert_eq!(climb.steps.len(), if climb.steps[0].1.sustained() { 2 } else { 1 });
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("## UDP echo, loopback") && readme.contains("| iterative --batch 32 |"), "{readme}");
    assert!(readme.contains("Streams only, not run: `thread`."), "{readme}");
    for chart in ["udp-sustained-rate.svg", "udp-p99.svg"] {
        assert!(dir.join(chart).is_file(), "{chart}");
        assert!(readme.contains(&format!("]({chart})")), "{chart} is linked");
    }
}

#[test]
fn an_unknown_model_or_transport_is_refused_before_anything_runs() {
    let root = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| bench(&server_bin(), root.path()).args(args).output().unwrap();
    // A usage error like every other bad option: exit 2, one line.
    let output = run(&["--models", "fibers"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("unknown model \"fibers\"") && stderr.contains("tokio"), "{stderr}");
    let output = run(&["--transports", "udp"]);
    assert_eq!(output.status.code(), Some(2), "a usage error");
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0, "nothing ran");
}

#[test]
fn scaling_on_this_machine_runs_its_first_step_and_says_why_it_stops() {
    let root = tempfile::tempdir().unwrap();
    let output = bench(&server_bin(), root.path())
        .args(["--models", "tokio", "--scenarios", "scaling", "--repeat", "1"])
        .args(["--duration", "0.5s", "--warmup", "0.1s", "--no-progress"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let steps = scenarios::scaling::steps(cpus);
    assert!(stdout.contains(&format!("{} cells, 0 failed", steps.len())), "{stdout}");
    assert!(stderr.contains("so the scaling scenario stops at"), "{stderr}");
    let dir = run_dir(root.path());
    let results = Results::load(&dir.join("results.json")).unwrap();
    let first = &results.cells[0];
    assert_eq!((first.spec.load.server_cpus, first.spec.load.connections), (Some(1), 100));
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("## Scaling") && readme.contains("stops at"), "{readme}");
}
