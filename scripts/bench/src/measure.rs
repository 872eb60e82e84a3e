//! Two measurements beside the matrix, with the bench's own machinery:
//!
//! - [`floor`] (`bench floor`): how close the event-loop models come to the
//!   floor, a textbook mio echo server (`servers/examples/minimal_mio_echo.rs`,
//!   one thread, nothing of the contract). Every server once per connection
//!   count, then again, `repeats` times (interleaved: A B A B); server CPU
//!   µs per message from the server tree's exact CPU clocks read at the
//!   window's edges (as the matrix's cells), msg/s and p99; medians, and
//!   each model's ratio to the floor measured in the same round.
//! - [`overhead`] (`bench overhead`): is loadgen as cheap as the simplest
//!   client (`loadgen/examples/minimal_client.rs`)? Both in turn, A B A B,
//!   against one `tokio --workers 1` server, each on one event-loop thread;
//!   msg/s and client CPU per message (each client's own process CPU clock
//!   over its window), medians and the per-pair ratios loadgen ÷ minimal.
//!
//! Both print their figures; a run worth keeping is pasted into
//! `results/server-floor/` or `results/loadgen-overhead/`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use loadgen::Opts;
use loadgen::report::fmt_count;
use serde::Deserialize;

use crate::loadpath::{self, Mark};
use crate::procfs;
use crate::sampler::window_cpu;
use crate::server::{self, Server};
use crate::stats::Stat;

/// What `bench floor` runs.
#[derive(Debug, Clone)]
pub struct Floor {
    /// Each server: a model and its options (`prefork --workers 128`).
    pub models: Vec<Vec<String>>,
    /// The floor's binary; `None`: no floor (nothing divided by it).
    pub floor_bin: Option<PathBuf>,
    pub server_bin: PathBuf,
    pub loadgen_bin: PathBuf,
    pub connections: Vec<u32>,
    pub size: u32,
    pub repeats: u32,
    pub duration: Duration,
    pub warmup: Duration,
    pub server_cpus: Vec<usize>,
    pub client_cpus: Vec<usize>,
}

/// The name the floor goes by in the tables.
pub const FLOOR: &str = "minimal-mio";

/// One server's figures in one round.
#[derive(Debug, Clone, Copy)]
struct Round {
    rate: f64,
    cpu_us: f64,
    p99_us: f64,
}

/// Runs `bench floor`, printing each run and then the medians.
pub fn floor(f: &Floor) -> anyhow::Result<()> {
    server::pin_current_thread(&f.client_cpus)?;
    let mut names: Vec<String> = Vec::new();
    if f.floor_bin.is_some() {
        names.push(FLOOR.into());
    }
    names.extend(f.models.iter().map(|m| m.join(" ")));
    println!(
        "servers on CPU(s) {}, loadgen on CPU(s) {}; {} B, {} s after a {} s warm-up per run, {} rounds, interleaved",
        crate::host::cpu_list(&f.server_cpus),
        crate::host::cpu_list(&f.client_cpus),
        f.size,
        f.duration.as_secs_f64(),
        f.warmup.as_secs_f64(),
        f.repeats
    );
    println!("{:<24} {:>6} {:>4} {:>12} {:>10} {:>10}", "server", "conns", "run", "msg/s", "CPU µs/msg", "p99 µs");
    // rounds[connections index][server index] = every round's figures.
    let mut rounds: Vec<Vec<Vec<Option<Round>>>> = vec![vec![Vec::new(); names.len()]; f.connections.len()];
    for run in 1..=f.repeats {
        for (ci, &connections) in f.connections.iter().enumerate() {
            for (si, name) in names.iter().enumerate() {
                let command = match (&f.floor_bin, si) {
                    (Some(bin), 0) => {
                        let mut command = Command::new(bin);
                        command.arg("127.0.0.1:0");
                        command
                    }
                    _ => {
                        let spec = &f.models[si - usize::from(f.floor_bin.is_some())];
                        let mut command = Command::new(&f.server_bin);
                        command.arg(&spec[0]).args(["--addr", "127.0.0.1:0"]).args(&spec[1..]);
                        command.env("RUST_LOG", "warn");
                        command
                    }
                };
                let round = one_server(f, command, connections);
                match &round {
                    Ok(r) => println!(
                        "{name:<24} {connections:>6} {run:>4} {:>12} {:>10.2} {:>10}",
                        fmt_count(r.rate),
                        r.cpu_us,
                        fmt_count(r.p99_us)
                    ),
                    Err(err) => println!("{name:<24} {connections:>6} {run:>4} FAILED: {err}"),
                }
                rounds[ci][si].push(round.ok());
            }
        }
    }
    println!();
    println!("{:<24} {:>6} {:>12} {:>11} {:>8} {:>9}", "server", "conns", "msg/s", "CPU µs/msg", "× floor", "p99 µs");
    for (ci, &connections) in f.connections.iter().enumerate() {
        for (si, name) in names.iter().enumerate() {
            let ok: Vec<Round> = rounds[ci][si].iter().flatten().copied().collect();
            if ok.is_empty() {
                println!("{name:<24} {connections:>6} no run finished");
                continue;
            }
            let cpus: Vec<f64> = ok.iter().map(|r| r.cpu_us).collect();
            // Each round's ratio to the floor of the same round.
            let ratios: Vec<f64> = if f.floor_bin.is_some() && si > 0 {
                rounds[ci][si]
                    .iter()
                    .zip(&rounds[ci][0])
                    .filter_map(|(m, fl)| Some(m.as_ref()?.cpu_us / fl.as_ref()?.cpu_us))
                    .collect()
            } else {
                Vec::new()
            };
            let ratio = if si == 0 && f.floor_bin.is_some() {
                "1".to_owned()
            } else {
                median(ratios).map_or("–".into(), |r| format!("{r:.2}"))
            };
            println!(
                "{name:<24} {connections:>6} {:>12} {:>11.2} {ratio:>8} {:>9}   (CPU {:.2}–{:.2})",
                fmt_count(median(ok.iter().map(|r| r.rate).collect()).unwrap_or(0.0)),
                median(cpus.clone()).unwrap_or(0.0),
                fmt_count(median(ok.iter().map(|r| r.p99_us).collect()).unwrap_or(0.0)),
                cpus.iter().copied().fold(f64::INFINITY, f64::min),
                cpus.iter().copied().fold(0.0, f64::max)
            );
        }
    }
    if f.floor_bin.is_some() {
        println!("\n× floor: median over rounds of (model CPU/msg ÷ the floor's in the same round).");
    }
    Ok(())
}

/// One server started, loaded through loadgen's process and stopped: its
/// figures over the window.
fn one_server(f: &Floor, command: Command, connections: u32) -> Result<Round, String> {
    let server = Server::launch(command, &f.server_cpus, None)?;
    let pid = server.pid();
    let opts = Opts {
        addr: server.endpoint.to_string(),
        connections,
        size: f.size,
        duration: f.duration,
        warmup: f.warmup,
        threads: None,
        progress: false,
        ..Opts::default()
    };
    let (mut a, mut b) = (None, None);
    let read = || procfs::read_tree(pid, false).ok().flatten();
    let result = loadpath::run(&f.loadgen_bin, &opts, &|| false, |mark| match mark {
        Mark::Open => a = read(),
        Mark::Close => b = read(),
    });
    let _ = server.stop();
    let report = result?;
    let (a, b) = a.zip(b).ok_or("the server's CPU could not be read at the window's edges")?;
    let ok = report.requests.ok;
    if ok == 0 {
        return Err("no message completed in the window".into());
    }
    Ok(Round {
        rate: report.throughput.requests_per_sec,
        cpu_us: 1e6 * window_cpu(&a, &b).0 / ok as f64,
        p99_us: report.latency_us.p99 as f64,
    })
}

/// The median of `values` (`None`: none).
fn median(values: Vec<f64>) -> Option<f64> {
    Stat::of(values).map(|s| s.median)
}

/// What `bench overhead` runs.
#[derive(Debug, Clone)]
pub struct Overhead {
    pub minimal_bin: PathBuf,
    pub server_bin: PathBuf,
    pub loadgen_bin: PathBuf,
    pub connections: u32,
    pub size: u32,
    pub repeats: u32,
    pub duration: Duration,
    pub warmup: Duration,
    pub server_cpus: Vec<usize>,
    pub client_cpus: Vec<usize>,
}

/// What the minimal client prints.
#[derive(Debug, Deserialize)]
struct Minimal {
    requests_per_sec: f64,
    completed: u64,
    cpu_secs: f64,
}

/// The throughput ratio loadgen ÷ minimal the overhead aims at.
pub const TARGET: f64 = 0.97;

/// Runs `bench overhead`, printing each pair and then the medians and ratios.
pub fn overhead(o: &Overhead) -> anyhow::Result<()> {
    server::pin_current_thread(&o.client_cpus)?;
    let mut command = Command::new(&o.server_bin);
    command.args(["tokio", "--addr", "127.0.0.1:0", "--workers", "1"]).env("RUST_LOG", "warn");
    let server = Server::launch(command, &o.server_cpus, None).map_err(anyhow::Error::msg)?;
    let addr = server.endpoint.to_string();
    println!(
        "server: echo-server tokio --workers 1 on CPU(s) {} at {addr}; clients on CPU(s) {}",
        crate::host::cpu_list(&o.server_cpus),
        crate::host::cpu_list(&o.client_cpus)
    );
    println!(
        "load: {} connections, {} B, {} s warm-up + {} s, {} runs each, interleaved",
        o.connections,
        o.size,
        o.warmup.as_secs_f64(),
        o.duration.as_secs_f64(),
        o.repeats
    );
    println!("{:<8} {:<3} {:>14} {:>18}", "client", "run", "msg/s", "client CPU µs/msg");
    let (mut minimal, mut ours) = (Vec::new(), Vec::new());
    let outcome = (|| -> anyhow::Result<()> {
        for i in 1..=o.repeats {
            let m = run_minimal(o, &addr)?;
            let (m_rate, m_cpu) = (m.requests_per_sec, 1e6 * m.cpu_secs / m.completed.max(1) as f64);
            println!("{:<8} {i:<3} {m_rate:>14.0} {m_cpu:>18.2}", "minimal");
            let opts = Opts {
                addr: addr.clone(),
                connections: o.connections,
                size: o.size,
                duration: o.duration,
                warmup: o.warmup,
                threads: Some(1),
                progress: false,
                ..Opts::default()
            };
            let report = loadpath::run(&o.loadgen_bin, &opts, &|| false, |_| {}).map_err(anyhow::Error::msg)?;
            let cpu = report.client_cpu.user_secs + report.client_cpu.sys_secs;
            let (l_rate, l_cpu) = (report.throughput.requests_per_sec, 1e6 * cpu / report.requests.ok.max(1) as f64);
            println!("{:<8} {i:<3} {l_rate:>14.0} {l_cpu:>18.2}", "loadgen");
            minimal.push((m_rate, m_cpu));
            ours.push((l_rate, l_cpu));
        }
        Ok(())
    })();
    let _ = server.stop();
    outcome?;
    println!();
    for (name, runs) in [("minimal", &minimal), ("loadgen", &ours)] {
        let rates: Vec<f64> = runs.iter().map(|r| r.0).collect();
        println!(
            "{name}: median {} msg/s (min {}, max {}); {:.2} µs CPU/msg",
            fmt_count(median(rates.clone()).unwrap_or(0.0)),
            fmt_count(rates.iter().copied().fold(f64::INFINITY, f64::min)),
            fmt_count(rates.iter().copied().fold(0.0, f64::max)),
            median(runs.iter().map(|r| r.1).collect()).unwrap_or(0.0)
        );
    }
    let pairs =
        |f: fn(&(f64, f64)) -> f64| -> Vec<f64> { minimal.iter().zip(&ours).map(|(m, l)| f(l) / f(m)).collect() };
    let (rates, cpus) = (pairs(|r| r.0), pairs(|r| r.1));
    let list = |v: &[f64]| v.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(", ");
    println!("loadgen / minimal throughput, per pair: {}", list(&rates));
    println!("median ratio {:.3} (target ≥ {TARGET})", median(rates).unwrap_or(0.0));
    println!("loadgen / minimal client CPU per message, per pair: {}", list(&cpus));
    println!(
        "median ratio {:.3} (the instrument's own cost: what the throughput ratio pays when the client is the \
         bottleneck)",
        median(cpus).unwrap_or(0.0)
    );
    Ok(())
}

/// One run of the minimal client against `addr`: what it printed.
fn run_minimal(o: &Overhead, addr: &str) -> anyhow::Result<Minimal> {
    let output = Command::new(&o.minimal_bin)
        .args([
            addr.to_owned(),
            o.connections.to_string(),
            o.size.to_string(),
            o.duration.as_secs_f64().to_string(),
            o.warmup.as_secs_f64().to_string(),
        ])
        .output()
        .map_err(|err| anyhow::anyhow!("cannot start {}: {err}", o.minimal_bin.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        anyhow::bail!(
            "the minimal client failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    serde_json::from_str(text.trim()).map_err(|err| anyhow::anyhow!("the minimal client said {text:?}: {err}"))
}
