//! What of the machine and the tree moves results, read when a run starts
//! and recorded in its environment: the CPU's identity beyond its model
//! name, the sysctls of the network stack a figure depends on, whether the
//! working tree had changes, and a command line that reproduces the run
//! with its CPU sets and quota spelled out; and, for the whole run, a
//! request that keeps idle CPUs out of deep sleep.

use std::process::Command;

use crate::results::{Environment, Settings, Sysctl, Tree};

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
    let field = |key: &str| loadgen::env::cpu_field(&cpuinfo, key);
    let vendor = field("vendor_id")?;
    let mut id = vendor;
    for (key, word) in [("cpu family", "family"), ("model", "model"), ("stepping", "stepping")] {
        if let Some(value) = field(key) {
            id.push_str(&format!(" {word} {value}"));
        }
    }
    Some(id)
}

/// What a field of the environment says when this machine cannot tell.
const UNAVAILABLE: &str = "unavailable here";

impl Environment {
    /// The machine and the tree now; the run fills in `reproduce` and
    /// `cpu_wakeup`.
    pub fn detect(command: String, started_at: String) -> Environment {
        let loadgen_env = loadgen::env::Environment::detect();
        let (driver, governor) = cpuidle();
        Environment {
            hostname: loadgen_env.hostname,
            kernel: loadgen_env.kernel,
            cpu_model: loadgen_env.cpu_model,
            cpus_online: loadgen_env.cpus_online,
            rustc: env!("BENCH_RUSTC_VERSION").to_owned(),
            crates: env!("BENCH_CRATE_VERSIONS").split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            git_commit: loadgen_env.git_commit,
            command,
            started_at,
            cpu_id: cpu_id(),
            sysctls: sysctls(),
            tree: tree(),
            reproduce: None,
            cpu_wakeup: None,
            cpuidle_driver: Some(driver.unwrap_or_else(|| UNAVAILABLE.to_owned())),
            cpuidle_governor: Some(governor.unwrap_or_else(|| UNAVAILABLE.to_owned())),
        }
    }
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

/// The PM QoS file of the CPUs' wake-up latency: while a process holds it
/// open with a value written, no idle CPU enters a state slower to leave.
pub const CPU_DMA_LATENCY: &str = "/dev/cpu_dma_latency";

/// Asks the kernel to keep every CPU awake (a wake-up latency of 0 µs) for
/// as long as the returned file stays open, as cyclictest and tuned's
/// latency-performance profile do: an idle CPU that halts wakes late (on a
/// VM with the haltpoll driver and no guest polling, 1–2.6 ms at p99), and
/// every open-loop send and reply it handles waits that much. Closing the
/// file drops the request. The error says why it could not be made.
pub fn keep_cpus_awake() -> Result<std::fs::File, String> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(CPU_DMA_LATENCY)
        .map_err(|err| format!("cannot open {CPU_DMA_LATENCY}: {err}"))?;
    // The kernel reads a native-endian i32, in µs.
    file.write_all(&0i32.to_ne_bytes()).map_err(|err| format!("cannot write to {CPU_DMA_LATENCY}: {err}"))?;
    Ok(file)
}

/// What a run did about idle CPUs' wake-up latency, for the environment.
pub fn cpu_wakeup_words(asked: bool, held: &Result<std::fs::File, String>) -> String {
    match (asked, held) {
        (false, _) => "not held (--keep-cpus-awake off)".to_owned(),
        (true, Ok(_)) => "held awake: PM QoS cpu_dma_latency 0 µs".to_owned(),
        (true, Err(why)) => format!("unavailable here: {why}"),
    }
}

/// The cpuidle driver and governor in use (`haltpoll`, `menu`), each
/// `None` where the kernel has no such file.
pub fn cpuidle() -> (Option<String>, Option<String>) {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/sys/devices/system/cpu/cpuidle/{name}"))
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    (read("current_driver"), read("current_governor"))
}

/// Options whose values the reproduce line spells out itself.
const EXPLICIT: [&str; 4] = ["--server-cpus", "--client-cpus", "--server-quota", "--keep-cpus-awake"];

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
    // The quota the servers ran under: `none` when it could not be applied.
    let quota = match &settings.server_quota {
        Some(q) if q.applied() => q.cpus.map_or("none".to_owned(), |c| c.to_string()),
        _ => "none".to_owned(),
    };
    let awake = if settings.keep_cpus_awake { "on" } else { "off" };
    format!(
        "{} --server-cpus {} --client-cpus {} --server-quota {quota} --keep-cpus-awake {awake}",
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
    fn the_reproduce_line_spells_the_quota_applied_and_the_cpus_kept_awake() {
        let json = include_str!("../tests/fixtures/results.json");
        let mut settings = serde_json::from_str::<crate::results::Results>(json).unwrap().settings;
        settings.server_cpus = vec![0];
        settings.client_cpus = vec![1];
        settings.keep_cpus_awake = false;
        settings.server_quota = Some(crate::results::QuotaSettings {
            cpus: Some(0.5),
            period_us: Some(2000),
            mechanism: None,
            unavailable: Some("no cgroup here".into()),
            scenarios: vec!["throughput".into()],
        });
        let line = reproduce("bench --keep-cpus-awake on --server-quota 0.5 --quick", &settings);
        assert_eq!(
            line, "bench --quick --server-cpus 0 --client-cpus 1 --server-quota none --keep-cpus-awake off",
            "a quota not applied is none"
        );
        settings.keep_cpus_awake = true;
        settings.server_quota.as_mut().unwrap().unavailable = None;
        let line = reproduce("bench --keep-cpus-awake=off", &settings);
        assert!(line.ends_with("--server-quota 0.5 --keep-cpus-awake on"), "{line}");
        assert_eq!(line.matches("--keep-cpus-awake").count(), 1, "{line}");
    }

    #[test]
    fn cpu_wakeup_says_what_was_done() {
        assert_eq!(cpu_wakeup_words(false, &Err(String::new())), "not held (--keep-cpus-awake off)");
        assert_eq!(cpu_wakeup_words(true, &Err("no such file".into())), "unavailable here: no such file");
    }

    #[test]
    fn cpu_lists_print_ranges() {
        assert_eq!(cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(cpu_list(&[1]), "1");
    }
}
