//! What of the machine and the tree moves results, read when a run starts
//! and recorded in its environment: the CPU's identity beyond its model
//! name, the sysctls of the network stack a figure depends on, whether the
//! working tree had changes, and a command line that reproduces the run
//! with its CPU sets and quota spelled out.

use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::results::Settings;

/// The sysctls that move the figures, as paths under /proc/sys.
pub const SYSCTLS: [&str; 8] = [
    "net/ipv4/tcp_congestion_control",
    "net/ipv4/ip_local_port_range",
    "net/ipv4/tcp_tw_reuse",
    "net/core/rmem_max",
    "net/core/wmem_max",
    "net/core/somaxconn",
    "net/core/busy_poll",
    "net/core/busy_read",
];

/// One sysctl and its value (`None`: this kernel has no such file, or it
/// cannot be read: "unavailable here").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sysctl {
    /// Dotted, as `sysctl` names it: `net.core.somaxconn`.
    pub name: String,
    pub value: Option<String>,
}

/// Every sysctl of [`SYSCTLS`], read now.
pub fn sysctls() -> Vec<Sysctl> {
    SYSCTLS
        .iter()
        .map(|path| Sysctl {
            name: path.replace('/', "."),
            value: std::fs::read_to_string(format!("/proc/sys/{path}"))
                .ok()
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" ")),
        })
        .collect()
}

/// The CPU's identity beyond its model name, which a VM may cut short
/// ("AMD EPYC"): `AuthenticAMD family 25 model 1 stepping 1`, from the
/// first processor of /proc/cpuinfo.
pub fn cpu_id() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let first = cpuinfo.split("\n\n").next()?;
    let field = |key: &str| {
        first.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_owned())
        })
    };
    let vendor = field("vendor_id")?;
    let mut id = vendor;
    for (key, word) in [("cpu family", "family"), ("model", "model"), ("stepping", "stepping")] {
        if let Some(value) = field(key) {
            id.push_str(&format!(" {word} {value}"));
        }
    }
    Some(id)
}

/// The working tree the run was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// `git rev-parse HEAD`.
    pub commit: String,
    /// `git status --porcelain` said anything: the binaries may not be the
    /// commit's.
    pub dirty: bool,
    /// The first few paths it named.
    pub changed: Vec<String>,
}

/// How many changed paths a [`Tree`] keeps.
const CHANGED_KEPT: usize = 10;

/// The git tree of the current directory; `None` outside one or without git.
pub fn tree() -> Option<Tree> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
    };
    let commit = git(&["rev-parse", "HEAD"])?.trim().to_owned();
    let status = git(&["status", "--porcelain"])?;
    let changed: Vec<String> = status.lines().map(|l| l.get(3..).unwrap_or(l).to_owned()).collect();
    Some(Tree { commit, dirty: !changed.is_empty(), changed: changed.into_iter().take(CHANGED_KEPT).collect() })
}

/// Options whose values the reproduce line spells out itself.
const EXPLICIT: [&str; 3] = ["--server-cpus", "--client-cpus", "--server-quota"];

/// `command` with the run's CPU sets and quota explicit: whatever it said
/// of them is replaced by what the run used, so the line means the same on
/// a machine with other defaults.
pub fn reproduce(command: &str, settings: &Settings) -> String {
    let mut words: Vec<&str> = Vec::new();
    let mut skip = false;
    for word in command.split_whitespace() {
        if skip {
            skip = false;
            continue;
        }
        if EXPLICIT.contains(&word) {
            skip = true;
            continue;
        }
        if EXPLICIT.iter().any(|o| word.starts_with(&format!("{o}="))) {
            continue;
        }
        words.push(word);
    }
    let quota = match &settings.server_quota {
        Some(q) => q.cpus.map_or("none".to_owned(), |c| c.to_string()),
        None => "none".to_owned(),
    };
    format!(
        "{} --server-cpus {} --client-cpus {} --server-quota {quota}",
        words.join(" "),
        cpu_list(&settings.server_cpus),
        cpu_list(&settings.client_cpus)
    )
}

/// `0-3,6`.
pub fn cpu_list(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if j > i { format!("{}-{}", cpus[i], cpus[j]) } else { cpus[i].to_string() });
        i = j + 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sysctl_is_listed_by_its_dotted_name_with_a_value_or_none() {
        let read = sysctls();
        assert_eq!(read.len(), SYSCTLS.len());
        assert!(read.iter().all(|s| s.name.starts_with("net.") && !s.name.contains('/')));
    }

    #[test]
    fn cpu_lists_print_ranges() {
        assert_eq!(cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(cpu_list(&[1]), "1");
    }
}
