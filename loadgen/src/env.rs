//! Where a run happened: enough to tell two results apart.

use std::fs;

use serde::{Deserialize, Serialize};

/// The machine and the build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub hostname: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    pub cpu_model: String,
    /// CPUs this process may run on (its affinity mask).
    pub cpus_available: u64,
    /// CPUs online on the machine.
    pub cpus_online: u64,
    pub loadgen_version: String,
    /// The commit loadgen was built from, when known.
    pub git_commit: Option<String>,
}

/// The field `key` of the first processor in `cpuinfo` (the text of
/// /proc/cpuinfo): `model name`, `vendor_id`, `cpu family`, …
pub fn cpu_field(cpuinfo: &str, key: &str) -> Option<String> {
    let first = cpuinfo.split("\n\n").next()?;
    first.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

impl Environment {
    /// Reads /proc and the build metadata.
    pub fn detect() -> Environment {
        let read = |path: &str| fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpu_field(&cpuinfo, "model name").unwrap_or_default();
        let online =
            nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN).ok().flatten().unwrap_or(1).max(1) as u64;
        let commit = env!("ECHO_ARENA_GIT_COMMIT");
        Environment {
            hostname: read("/proc/sys/kernel/hostname"),
            kernel: read("/proc/sys/kernel/osrelease"),
            cpu_model,
            cpus_available: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            cpus_online: online,
            loadgen_version: env!("CARGO_PKG_VERSION").to_owned(),
            git_commit: (!commit.is_empty()).then(|| commit.to_owned()),
        }
    }
}

#[cfg(test)]
mod cpu_field_tests {
    use super::cpu_field;

    #[test]
    fn a_field_of_the_first_processor_by_its_exact_key() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n\
                       model name\t: AMD EPYC\n\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(cpu_field(cpuinfo, "model name").as_deref(), Some("AMD EPYC"));
        assert_eq!(cpu_field(cpuinfo, "model").as_deref(), Some("17"), "not `model name`'s");
        assert_eq!(cpu_field(cpuinfo, "stepping"), None);
    }
}
