//! Records what the benchmark was built with: rustc, and the name and
//! version of every crate the workspace's packages depend on directly, read
//! from the workspace's Cargo.lock (so the list cannot go stale: a crate a
//! model starts using is in it at the next build). The git commit comes
//! from loadgen's build, the one place that records it.

use std::collections::BTreeSet;
use std::path::Path;
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

/// One `[[package]]` of a Cargo.lock.
#[derive(Debug, Default)]
struct Package {
    name: String,
    version: String,
    /// `None` for the workspace's own packages (and path dependencies).
    source: Option<String>,
    /// As the lock writes them: `name`, or `name version` (or `name version
    /// (source)`) where several versions of the crate are locked.
    dependencies: Vec<String>,
}

/// The packages of a Cargo.lock (format version 3 or 4: one `key = value`
/// per line, `dependencies` a bracketed list of one string per line).
fn packages(lock: &str) -> Vec<Package> {
    let mut packages: Vec<Package> = Vec::new();
    let mut in_dependencies = false;
    for line in lock.lines().map(str::trim) {
        if line == "[[package]]" {
            packages.push(Package::default());
            in_dependencies = false;
            continue;
        }
        let Some(package) = packages.last_mut() else { continue };
        let unquote = |value: &str| value.trim().trim_end_matches(',').trim_matches('"').to_owned();
        if in_dependencies {
            if line.starts_with(']') {
                in_dependencies = false;
            } else if !line.is_empty() {
                package.dependencies.push(unquote(line));
            }
        } else if let Some(value) = line.strip_prefix("name = ") {
            package.name = unquote(value);
        } else if let Some(value) = line.strip_prefix("version = ") {
            package.version = unquote(value);
        } else if let Some(value) = line.strip_prefix("source = ") {
            package.source = Some(unquote(value));
        } else if let Some(rest) = line.strip_prefix("dependencies = [") {
            // `dependencies = []` on one line, or the list on the next lines.
            in_dependencies = !rest.starts_with(']');
        } else if line.starts_with('[') {
            // Another table (`[metadata]`): no package of ours.
            packages.push(Package::default());
        }
    }
    packages.retain(|p| !p.name.is_empty());
    packages
}

/// `name=version` of every crate the workspace's packages (those the lock
/// lists without a source) depend on directly, sorted, each once.
fn direct_dependencies(packages: &[Package]) -> Vec<String> {
    let ours: Vec<&Package> = packages.iter().filter(|p| p.source.is_none()).collect();
    let mut found = BTreeSet::new();
    for dependency in ours.iter().flat_map(|p| &p.dependencies) {
        let mut words = dependency.split_whitespace();
        let Some(name) = words.next() else { continue };
        if ours.iter().any(|p| p.name == name) {
            continue; // one of the workspace's own packages
        }
        // The lock names the version only where it must choose among several.
        let version = words.next().map(str::to_owned).or_else(|| {
            let mut locked = packages.iter().filter(|p| p.name == name);
            match (locked.next(), locked.next()) {
                (Some(only), None) => Some(only.version.clone()),
                _ => None,
            }
        });
        if let Some(version) = version {
            found.insert(format!("{name}={version}"));
        }
    }
    found.into_iter().collect()
}

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    println!("cargo:rustc-env=BENCH_RUSTC_VERSION={}", output(&rustc, &["--version"]));
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let lock_path = Path::new(&manifest_dir).join("../../Cargo.lock");
    let lock = std::fs::read_to_string(&lock_path).unwrap_or_default();
    let crates = direct_dependencies(&packages(&lock));
    println!("cargo:rustc-env=BENCH_CRATE_VERSIONS={}", crates.join(","));
    println!("cargo:rerun-if-changed={}", lock_path.display());
}
