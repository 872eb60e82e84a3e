//! What a user reads before anything runs: `bench --help` (clap builds it
//! from doc comments, so rustdoc's link syntax would show through) and the
//! lines `scripts/bench.sh` prints around `bench`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod common;

use common::BENCH;

/// Runs `command` to its end, killed and failed if it takes longer than
/// `limit`; stdout and stderr are drained while it runs, so a full pipe
/// cannot stall it.
fn run_bounded(command: &mut Command, limit: Duration) -> Output {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status = common::wait_exit(&mut child, limit);
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

#[test]
fn help_shows_no_rustdoc_link_syntax() {
    for args in [&["--help"][..], &["-h"], &["report", "--help"], &["help", "report"]] {
        let output = run_bounded(Command::new(BENCH).args(args), Duration::from_secs(10));
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success() && help.contains("Usage: bench"), "{args:?}: {help}");
        assert!(!help.contains("[`"), "{args:?} shows an intra-doc link: {help}");
        assert!(!help.contains("crate::"), "{args:?} shows a Rust path: {help}");
    }
}

/// `scripts/bench.sh`, copied into a scratch tree where `cargo` and
/// `target/release/bench` are stubs: only the script's own lines are judged.
fn bench_sh(args: &[&str]) -> Output {
    let root = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench.sh");
    std::fs::create_dir_all(root.path().join("scripts")).unwrap();
    std::fs::copy(&script, root.path().join("scripts/bench.sh")).unwrap();
    let stub = |path: &Path| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    stub(&root.path().join("target/release/bench"));
    stub(&root.path().join("bin/cargo"));
    let path = format!("{}:{}", root.path().join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let output = run_bounded(
        Command::new("bash").arg(root.path().join("scripts/bench.sh")).args(args).env("PATH", path),
        Duration::from_secs(10),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output
}

#[test]
fn bench_sh_says_what_comes_after_the_build() {
    let report = bench_sh(&["report", "results/20261126T145404Z-vm"]);
    let stderr = String::from_utf8_lossy(&report.stderr);
    assert!(!stderr.contains("starting the benchmark"), "report renders an existing run: {stderr}");
    assert!(stderr.contains("rendering the report of results/20261126T145404Z-vm"), "{stderr}");
    for (command, said) in [("floor", "against the floor"), ("overhead", "against the minimal client")] {
        let stderr = String::from_utf8_lossy(&bench_sh(&[command]).stderr).into_owned();
        assert!(stderr.contains(said) && !stderr.contains("starting the benchmark"), "{command}: {stderr}");
    }
    let run = bench_sh(&["--quick"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("starting the benchmark"), "{stderr}");
    for help in ["--help", "-h", "help"] {
        let stderr = String::from_utf8_lossy(&bench_sh(&[help]).stderr).into_owned();
        assert!(!stderr.contains("starting the benchmark"), "{help}: {stderr}");
    }
}
