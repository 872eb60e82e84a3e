//! The rig around the cells: the server's CPU quota (a cgroup per server,
//! its throttling recorded), the control cell, the environment of a run,
//! and the `floor` and `overhead` measurements. Tiny runs, bounded in time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

mod common;

use common::{BENCH, run_dir, server_bin};
use echo_bench::flags::NoteKind;
use echo_bench::results::Results;

/// A tiny run of `args` into a fresh folder: its output and its results.
fn tiny_run(args: &[&str]) -> (Output, Results, String) {
    let root = tempfile::tempdir().unwrap();
    let output = Command::new(BENCH)
        .arg("--server-bin")
        .arg(server_bin())
        .arg("--results")
        .arg(root.path())
        .args(["--repeat", "1", "--duration", "0.5s", "--warmup", "0.1s", "--no-progress"])
        .args(args)
        .output()
        .unwrap();
    let dir = run_dir(root.path());
    let results = Results::load(&dir.join("results.json")).unwrap();
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    (output, results, readme)
}

/// The bench's cgroups left behind by a run of process `pid`, if any.
fn leftover_cgroups(pid: u32) -> Vec<PathBuf> {
    let name = format!("echo-arena-bench-{pid}");
    ["/sys/fs/cgroup", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"]
        .iter()
        .map(|root| Path::new(root).join(&name))
        .filter(|p| p.exists())
        .collect()
}

/// One tiny run that several tests read: reactor, throughput (throttled)
/// and one latency step (not).
fn shared() -> &'static (Output, Results, String) {
    static RUN: OnceLock<(Output, Results, String)> = OnceLock::new();
    RUN.get_or_init(|| {
        tiny_run(&[
            "--models",
            "reactor",
            "--scenarios",
            "throughput,latency",
            "--connections",
            "10",
            "--sizes",
            "64",
            "--rates",
            "2k",
            "--server-quota",
            "0.5",
        ])
    })
}

#[test]
fn a_throttled_cell_records_its_quota_and_throttling_or_the_run_says_the_quota_is_unavailable() {
    let (output, results, readme) = shared();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let quota = results.settings.server_quota.clone().expect("the quota is recorded");
    assert_eq!(quota.cpus, Some(0.5));
    assert_eq!(quota.scenarios, ["throughput", "control"], "the latency ladder runs unthrottled");
    let throughput = results.cells.iter().find(|c| c.spec.load.scenario.name() == "throughput").unwrap();
    let latency = results.cells.iter().find(|c| c.spec.load.scenario.name() == "latency").unwrap();
    assert!(latency.quota.is_none(), "{:?}", latency.quota);
    if let Some(why) = &quota.unavailable {
        println!("server quota unavailable here: {why}");
        assert!(stderr.contains("server quota unavailable here"), "one line says so: {stderr}");
        assert!(throughput.quota.is_none());
        assert_eq!(throughput.allotment_cpus, Some(1.0), "unthrottled: its CPUs");
        assert!(readme.contains("**Server CPU quota unavailable here**"), "{readme}");
        let note = |c: &echo_bench::results::Cell| c.notes.iter().any(|n| n.kind == NoteKind::Unthrottled);
        assert!(note(throughput), "a cell that asked for the quota says it ran unthrottled: {:?}", throughput.notes);
        assert!(!note(latency), "the latency ladder asks for none");
        return;
    }
    let t = throughput.quota.expect("a throttled cell records its quota");
    assert_eq!((t.cpus, t.period_us), (0.5, echo_bench::quota::period_for(0.5)));
    let figures = (throughput.loadgen.as_ref().map(|r| r.throughput.requests_per_sec), throughput.server);
    assert!(t.periods > 0, "{t:?}: no period with work in a loaded window? {figures:?}");
    assert!(t.throttled_periods <= t.periods, "{t:?}");
    assert_eq!(throughput.allotment_cpus, Some(0.5));
    // The server kept at most its quota busy (a period's slack at the edges).
    let used = throughput.server.expect("server figures").cpu_utilisation;
    assert!(used <= 0.5 * 1.15, "the server used {used} CPUs under a quota of 0.5");
    assert!(quota.mechanism.as_deref().is_some_and(|m| m.contains("cgroup")), "{quota:?}");
    let said = format!("Server CPU quota: 0.5 CPU per {} ms period", echo_bench::quota::period_for(0.5) / 1_000);
    assert!(readme.contains(&said), "{readme}");
    // The cgroups are gone with the run.
    let pid = quota.mechanism.as_deref().and_then(|m| m.rsplit("echo-arena-bench-").next()?.parse::<u32>().ok());
    assert!(leftover_cgroups(pid.expect("the parent names the run's process")).is_empty());
}

#[test]
fn a_bad_quota_is_a_usage_error_of_one_line() {
    for bad in ["0", "x", "-0.5", "99", "0.0001"] {
        let output = Command::new(BENCH)
            .args(["--server-bin"])
            .arg(server_bin())
            .args(["--server-quota", bad])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{bad}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{bad}: {stderr}");
        assert!(stderr.contains("--server-quota"), "{stderr}");
    }
}

#[test]
fn the_environment_of_a_run_is_recorded_and_heads_its_readme() {
    let (output, results, readme) = shared();
    assert!(output.status.success());
    let env = &results.environment;
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let model = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':'));
    if let Some((_, model)) = model {
        assert_eq!(env.cpu_model, model.trim(), "the whole model name");
        assert!(readme.contains(&format!("CPU: {}", model.trim())), "{readme}");
    }
    assert_eq!(env.sysctls.len(), echo_bench::host::SYSCTLS.len());
    for sysctl in &env.sysctls {
        let path = format!("/proc/sys/{}", sysctl.name.replace('.', "/"));
        assert_eq!(sysctl.value.is_some(), Path::new(&path).exists(), "{sysctl:?}");
        let shown = match &sysctl.value {
            Some(v) => format!("`{}` = {v}", sysctl.name),
            None => format!("`{}` unavailable here", sysctl.name),
        };
        assert!(readme.contains(&shown), "{shown} in {readme}");
    }
    // The test runs inside the repository's tree.
    let tree = env.tree.as_ref().expect("a git tree");
    assert_eq!(tree.commit.len(), 40);
    assert!(readme.contains(if tree.dirty { "Tree: **dirty** at commit" } else { "Tree: clean at commit" }));
    for name in ["io-uring=", "rayon=", "tokio=", "mio="] {
        assert!(env.crates.iter().any(|c| c.starts_with(name)), "{name} in {:?}", env.crates);
    }
    let line = env.reproduce.as_deref().expect("a reproduce line");
    // The quota the servers ran under: none when it could not be applied.
    let quota = if results.settings.server_quota.as_ref().is_some_and(|q| q.applied()) { "0.5" } else { "none" };
    let cpus = echo_bench::host::cpu_list;
    assert!(
        line.ends_with(&format!(
            "--server-cpus {} --client-cpus {} --server-quota {quota} --keep-cpus-awake on",
            cpus(&results.settings.server_cpus),
            cpus(&results.settings.client_cpus)
        )),
        "{line}"
    );
    assert_eq!(line.matches("--server-quota").count(), 1, "{line}");
    // Idle CPUs: kept awake by default, or one line says why not.
    assert!(results.settings.keep_cpus_awake);
    let wakeup = env.cpu_wakeup.as_deref().expect("what was done about idle CPUs");
    let held = std::fs::OpenOptions::new().write(true).open(echo_bench::host::CPU_DMA_LATENCY).is_ok();
    if held {
        assert_eq!(wakeup, "held awake: PM QoS cpu_dma_latency 0 µs");
    } else {
        assert!(wakeup.starts_with("unavailable here: "), "{wakeup}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("idle CPUs not kept awake"));
    }
    let (driver, governor) = echo_bench::host::cpuidle();
    let driver = driver.unwrap_or_else(|| "unavailable here".into());
    let governor = governor.unwrap_or_else(|| "unavailable here".into());
    assert_eq!(env.cpuidle_driver.as_deref(), Some(driver.as_str()));
    assert_eq!(env.cpuidle_governor.as_deref(), Some(governor.as_str()));
    assert!(
        readme.contains(&format!("Idle CPUs: {wakeup}; cpuidle driver {driver}, governor {governor}.")),
        "{readme}"
    );
    assert!(readme.contains(&format!("Reproduce (from the repository root, at that commit): `{line}`")));
}

#[test]
fn the_control_cell_runs_first_and_last_apart_from_the_throughput_cells_and_its_drift_heads_the_readme() {
    let (output, results, readme) = shared();
    assert!(output.status.success());
    let names: Vec<&str> = results.cells.iter().map(|c| c.spec.load.scenario.name()).collect();
    assert_eq!(names, ["control", "throughput", "latency", "control"], "a run shorter than --control-every");
    let first = &results.cells[0];
    assert_eq!((first.spec.load.model.name(), first.spec.load.connections, first.spec.load.size), ("reactor", 100, 64));
    assert_eq!((first.spec.repeat, results.cells[3].spec.repeat), (0, 1), "the control's runs are counted");
    assert_eq!(results.settings.control_every_secs, Some(300.0));
    // Its drift, recomputed here from the two runs.
    let rate = |i: usize| results.cells[i].loadgen.as_ref().unwrap().throughput.requests_per_sec;
    let drift = results.control.as_ref().expect("the drift is recorded");
    let expected = (rate(3) - rate(0)).abs() / rate(0);
    assert!((drift.drift - expected).abs() < 1e-12, "{drift:?}");
    assert_eq!(drift.runs.iter().map(|r| r.cell).collect::<Vec<_>>(), [0, 3]);
    assert_eq!(drift.moved, expected > echo_bench::control::MOVED);
    let top = readme.split("\n## ").next().unwrap();
    assert!(top.contains(&echo_bench::control::words(drift)), "at the top: {top}");
    // Never pooled with the throughput scenario's cells.
    let groups = echo_bench::stats::groups(results.cells.iter());
    let control = groups.iter().find(|(k, _)| k.scenario.name() == "control").expect("its own group");
    assert_eq!(control.1.len(), 2);
    assert!(groups.keys().filter(|k| k.scenario.name() == "throughput").all(|k| k.connections == 10));
}

#[test]
fn a_control_every_of_no_time_runs_it_between_every_two_cells() {
    let (output, results, _) = tiny_run(&[
        "--models",
        "reactor",
        "--scenarios",
        "throughput",
        "--connections",
        "1,10",
        "--sizes",
        "64",
        "--control-every",
        "1ms",
        "--server-quota",
        "none",
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let names: Vec<&str> = results.cells.iter().map(|c| c.spec.load.scenario.name()).collect();
    assert_eq!(names, ["control", "throughput", "control", "throughput", "control"]);
    assert_eq!(results.control.as_ref().map(|d| d.runs.len()), Some(3));
    assert!(results.cells.iter().all(|c| c.quota.is_none()), "--server-quota none: unthrottled");
    // and none of it without a control
    let (_, results, readme) = tiny_run(&[
        "--models",
        "reactor",
        "--scenarios",
        "throughput",
        "--connections",
        "1",
        "--sizes",
        "64",
        "--control",
        "none",
    ]);
    assert_eq!(results.cells.len(), 1);
    assert!(results.control.is_none() && !readme.contains("Control cell"));
}

/// A binary of the examples next to the bench's, built by the caller.
fn example(name: &str, package: &str) -> PathBuf {
    let path = Path::new(BENCH).with_file_name("examples").join(name);
    assert!(path.is_file(), "{} missing: build it (cargo build -p {package} --example {name})", path.display());
    path
}

#[test]
fn floor_and_overhead_refuse_bad_input_in_one_line_with_status_2() {
    let cases: [&[&str]; 4] = [
        &["floor", "nosuchmodel"],
        &["floor", "--server-cpus", "999", "reactor"],
        &["overhead", "--client-cpus", "x"],
        &["overhead", "--server-cpus", "999"],
    ];
    for args in cases {
        let output = Command::new(BENCH).args(args).arg("--server-bin").arg(server_bin()).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "nothing ran: {args:?}");
    }
}

#[test]
fn a_tiny_floor_prints_every_round_then_medians_and_ratios_to_the_floor() {
    let output = Command::new(BENCH)
        .args(["floor", "--repeat", "2", "--duration", "0.2s", "--warmup", "0.1s", "--connections", "10"])
        .arg("--server-bin")
        .arg(server_bin())
        .arg("--floor-bin")
        .arg(example("minimal_mio_echo", "echo-servers"))
        .args(["reactor", "thread"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let (rounds, summary) = stdout.split_once("\n\n").expect("rounds, then the summary");
    // A B C A B C: every server in each round, rounds interleaved.
    let order: Vec<&str> = rounds.lines().skip(2).map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(order, ["minimal-mio", "reactor", "thread", "minimal-mio", "reactor", "thread"], "{stdout}");
    assert!(!rounds.contains("FAILED"), "{stdout}");
    for name in ["minimal-mio", "reactor", "thread"] {
        let row = summary.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}: {stdout}"));
        let ratio = row.split_whitespace().nth(4).unwrap();
        let ratio: f64 = ratio.parse().unwrap_or_else(|_| panic!("a ratio to the floor: {row}"));
        if name == "minimal-mio" {
            assert_eq!(ratio, 1.0);
        } else {
            assert!(ratio > 0.0, "{row}");
        }
    }
    assert!(summary.contains("× floor: median over rounds"), "{stdout}");
}

#[test]
fn a_tiny_overhead_pairs_the_clients_and_prints_the_ratios() {
    let output = Command::new(BENCH)
        .args(["overhead", "--repeat", "2", "--duration", "0.2s", "--warmup", "0.1s", "--connections", "10"])
        .arg("--server-bin")
        .arg(server_bin())
        .arg("--minimal-bin")
        .arg(example("minimal_client", "loadgen"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let order: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() == 4 && ["minimal", "loadgen"].contains(&w[0]) && w[1].parse::<u32>().is_ok())
        .map(|w| w[0])
        .collect();
    assert_eq!(order, ["minimal", "loadgen", "minimal", "loadgen"], "{stdout}");
    for line in ["loadgen / minimal throughput, per pair: ", "loadgen / minimal client CPU per message, per pair: "] {
        let pairs = stdout.lines().find_map(|l| l.strip_prefix(line)).unwrap_or_else(|| panic!("{line}: {stdout}"));
        let ratios: Vec<f64> = pairs.split(", ").map(|r| r.parse().unwrap()).collect();
        assert_eq!(ratios.len(), 2);
        assert!(ratios.iter().all(|r| *r > 0.0), "{pairs}");
    }
    assert_eq!(stdout.matches("median ratio ").count(), 2, "{stdout}");
}
