//! Records what the benchmark was built with: rustc and the versions of the
//! crates that shape the models (from Cargo.lock). The git commit comes from
//! loadgen's build, the one place that records it.

use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    println!("cargo:rustc-env=BENCH_RUSTC_VERSION={}", output(&rustc, &["--version"]));
    let lock = std::fs::read_to_string("../../Cargo.lock").unwrap_or_default();
    let wanted = ["tokio", "may", "crossbeam-channel", "socket2", "hdrhistogram", "mio"];
    let mut versions = Vec::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_owned());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            if wanted.contains(&n.as_str()) {
                versions.push(format!("{n}={}", v.trim_matches('"')));
            }
        }
    }
    println!("cargo:rustc-env=BENCH_CRATE_VERSIONS={}", versions.join(","));
    println!("cargo:rerun-if-changed=../../Cargo.lock");
}
