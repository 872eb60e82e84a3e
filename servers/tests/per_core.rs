//! `--pin` for the thread-per-core models: worker *i* runs on the *i*-th
//! CPU of the server's affinity mask, wrapping round; without it, every
//! worker may run on the whole mask. Checked for every registered model
//! that takes the flag, over every transport it serves, by reading each
//! worker thread's `Cpus_allowed_list` in /proc.

mod common;

use clap::Parser;
use common::*;
use nix::sched::{CpuSet, sched_getaffinity};
use nix::unistd::Pid;

/// The registered models that take `--pin`, as the command line says.
fn models_with_pin() -> Vec<&'static ModelInfo> {
    echo_servers::models::ALL
        .iter()
        .filter(|m| echo_servers::Cli::try_parse_from(["echo-server", m.name.as_ref(), "--pin"]).is_ok())
        .collect()
}

/// The CPUs of this process's affinity mask, which the server inherits.
fn own_cpus() -> Vec<usize> {
    let mask = sched_getaffinity(Pid::from_raw(0)).unwrap();
    (0..CpuSet::count()).filter(|&cpu| mask.is_set(cpu).unwrap()).collect()
}

/// Parses a `Cpus_allowed_list` value: `0-3,5`.
fn cpu_list(text: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',') {
        match part.split_once('-') {
            Some((first, last)) => cpus.extend(first.parse::<usize>().unwrap()..=last.parse().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

/// The worker threads of `pid` (named `echo-<model>-<id>`), by id, with the
/// CPUs each may run on.
fn workers(pid: i32) -> Vec<(usize, Vec<usize>)> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let Some(id) = comm.trim().rsplit_once('-').and_then(|(name, id)| name.starts_with("echo-").then_some(id))
        else {
            continue;
        };
        let Ok(id) = id.parse::<usize>() else { continue };
        let status = std::fs::read_to_string(task.path().join("status")).unwrap();
        let allowed = status.lines().find_map(|line| line.strip_prefix("Cpus_allowed_list:")).unwrap();
        found.push((id, cpu_list(allowed)));
    }
    found.sort();
    found
}

#[test]
fn pinned_workers_run_each_on_its_own_cpu_and_unpinned_on_all() {
    let models = models_with_pin();
    let names: Vec<&str> = models.iter().map(|m| m.name.as_ref()).collect();
    for name in ["reactors", "uring"] {
        assert!(names.contains(&name), "{name} takes --pin; those that do: {names:?}");
    }
    let cpus = own_cpus();
    // One more worker than CPUs: the last wraps round to the first CPU.
    let count = cpus.len() + 1;
    let count_arg = count.to_string();
    for model in models {
        let mut transports = vec![Transport::Tcp, Transport::Unix];
        if model.datagrams.is_some() {
            transports.push(Transport::Udp);
        }
        for transport in transports {
            let who = format!("{} over {transport}", model.name);
            let server = Server::start(model, transport, &["--workers", &count_arg, "--pin"]);
            let expected: Vec<(usize, Vec<usize>)> = (0..count).map(|id| (id, vec![cpus[id % cpus.len()]])).collect();
            assert_eq!(workers(server.pid()), expected, "{who} --pin");
            drop(server);

            let server = Server::start(model, transport, &["--workers", &count_arg]);
            let expected: Vec<(usize, Vec<usize>)> = (0..count).map(|id| (id, cpus.clone())).collect();
            assert_eq!(workers(server.pid()), expected, "{who} without --pin");
        }
    }
}
