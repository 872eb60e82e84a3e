//! Thread-per-core start-up, written once. The models whose workers each
//! own a socket and a loop of their own — `reactors` (epoll) and `uring`
//! (io_uring), over streams and datagrams alike — start them here:
//!
//! 1. **One socket per worker** ([`sockets`]): the one the server bound and
//!    a sibling for every other worker (SO_REUSEPORT on the same port, or a
//!    duplicate of a Unix listener), all opened before any worker starts,
//!    so that a failure stops the server before it announces anything.
//! 2. **One thread per worker** ([`start`]), which pins itself to its CPU
//!    if asked (`--pin`), builds its worker *in that thread* — a ring made
//!    with IORING_SETUP_SINGLE_ISSUER belongs to the thread that made it —
//!    and reports whether it could: the **start handshake**. `start`
//!    returns once every worker has reported, with what each handed back
//!    (a mailbox, say), or with the first failure: `listening on` is
//!    printed only by a server whose every worker is up, and a failure is
//!    the one error line, in the worker's own words.
//!
//! The workers are detached: they serve until the process exits, and the
//! main thread only waits for a shutdown signal.
//!
//! ## Pinning (`--pin`)
//!
//! Off by default, like every model's: the kernel's scheduler places each
//! worker and moves it when it likes, which on a shared machine is what
//! lets a worker escape a CPU another process is busy on. With `--pin`,
//! worker *i* is bound to the *i*-th CPU of the process's affinity mask
//! (so `taskset` is honoured), wrapping round when there are more workers
//! than CPUs: a worker's caches, and its connections' state in them, stay
//! on one CPU, at the price of waiting for that CPU when it is busy.

use std::io;
use std::sync::{Arc, mpsc};

use anyhow::{Context, anyhow};
use clap::Args;
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

use crate::cli::CpuWorkers;

/// `--workers` and `--pin`, for the thread-per-core models.
#[derive(Debug, Clone, Args)]
pub struct PerCore {
    #[command(flatten)]
    pub workers: CpuWorkers,
    /// Pin worker i to the i-th CPU of the process's affinity mask (wrapping
    /// round if there are more workers than CPUs) [default: off: the
    /// scheduler places and moves them].
    #[arg(long)]
    pub pin: bool,
}

impl PerCore {
    /// `--workers`, or the CPUs this process may run on.
    pub fn workers(&self) -> usize {
        self.workers.get()
    }
}

/// `first`, the socket the server bound, and one sibling of it for each
/// other worker, opened with `sibling`: `workers` sockets in all.
pub fn sockets<S>(first: S, workers: usize, sibling: impl Fn(&S) -> io::Result<S>) -> anyhow::Result<Vec<S>> {
    let mut siblings = Vec::with_capacity(workers.saturating_sub(1));
    for id in 1..workers {
        siblings.push(sibling(&first).with_context(|| format!("cannot open the socket of worker {id}"))?);
    }
    Ok(std::iter::once(first).chain(siblings).collect())
}

/// Starts one detached thread per input, named `<name>-<id>`: each pins
/// itself to its CPU if `pin`, builds its worker from its input with
/// `build`, reports, then serves with `run` (until the process exits, or
/// `run` returns). Returns what every worker's `build` handed back, in
/// order, once all have; or the first error reported.
pub fn start<I, W, R>(
    name: &str,
    pin: bool,
    inputs: Vec<I>,
    build: impl Fn(I) -> anyhow::Result<(W, R)> + Send + Sync + 'static,
    run: impl Fn(usize, W) + Send + Sync + 'static,
) -> anyhow::Result<Vec<R>>
where
    I: Send + 'static,
    R: Send + 'static,
{
    let cpus = if pin { affinity().context("cannot read the CPUs this process may run on")? } else { Vec::new() };
    let (build, run) = (Arc::new(build), Arc::new(run));
    let (started_tx, started) = mpsc::channel::<(usize, anyhow::Result<R>)>();
    let workers = inputs.len();
    for (id, input) in inputs.into_iter().enumerate() {
        // `cpus` is empty unless pinning; otherwise never empty (a process
        // runs on some CPU), so the modulo is defined.
        let cpu = (!cpus.is_empty()).then(|| cpus[id % cpus.len()]);
        let (build, run, started_tx) = (Arc::clone(&build), Arc::clone(&run), started_tx.clone());
        std::thread::Builder::new()
            .name(format!("{name}-{id}"))
            .spawn(move || {
                let built = match cpu {
                    Some(cpu) => pin_this_thread(cpu).with_context(|| format!("cannot pin worker {id} to CPU {cpu}")),
                    None => Ok(()),
                }
                .and_then(|()| build(input));
                let worker = match built {
                    Ok((worker, report)) => {
                        let _ = started_tx.send((id, Ok(report)));
                        worker
                    }
                    Err(err) => {
                        // Not wrapped in "worker {id}": the worker's words
                        // (`io_uring unavailable here: …`) stay the line's first.
                        let _ = started_tx.send((id, Err(err)));
                        return;
                    }
                };
                drop(started_tx);
                run(id, worker);
            })
            .with_context(|| format!("cannot start worker thread {id}"))?;
    }
    drop(started_tx);
    let mut reports: Vec<Option<R>> = (0..workers).map(|_| None).collect();
    for _ in 0..workers {
        let (id, report) = started.recv().map_err(|_| anyhow!("a worker thread died while starting"))?;
        reports[id] = Some(report?);
    }
    // Every worker reported once, by its own id.
    Ok(reports.into_iter().map(|report| report.expect("every worker reported")).collect())
}

/// The CPUs this process may run on, in ascending order: its affinity mask.
pub fn affinity() -> io::Result<Vec<usize>> {
    // PID 0: the calling thread, whose mask the process's threads inherit.
    let mask = sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..CpuSet::count()).filter(|&cpu| mask.is_set(cpu).unwrap_or(false)).collect())
}

/// Binds the calling thread to `cpu`.
fn pin_this_thread(cpu: usize) -> io::Result<()> {
    let mut mask = CpuSet::new();
    mask.set(cpu)?;
    // PID 0: the calling thread only (a thread's affinity is its own).
    sched_setaffinity(Pid::from_raw(0), &mask)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_opens_a_sibling_for_every_other_worker() {
        let opened = sockets(0, 3, |first| Ok(first + 1)).unwrap();
        assert_eq!(opened, [0, 1, 1]);
        let err = sockets(0, 3, |_| Err(io::ErrorKind::AddrInUse.into())).unwrap_err();
        assert_eq!(format!("{err:#}").lines().count(), 1);
        assert!(format!("{err:#}").starts_with("cannot open the socket of worker 1: "), "{err:#}");
    }

    #[test]
    fn start_hands_back_every_report_in_order_then_runs_every_worker() {
        let (ran_tx, ran) = mpsc::channel();
        let ran_tx = std::sync::Mutex::new(ran_tx);
        let reports = start(
            "test-start",
            false,
            vec![10, 20, 30],
            |n| Ok((n + 1, n * 2)),
            move |id, worker| ran_tx.lock().unwrap().send((id, worker)).unwrap(),
        )
        .unwrap();
        assert_eq!(reports, [20, 40, 60]);
        let mut ran: Vec<(usize, i32)> = (0..3).map(|_| ran.recv().unwrap()).collect();
        ran.sort_unstable();
        assert_eq!(ran, [(0, 11), (1, 21), (2, 31)]);
    }

    #[test]
    fn a_worker_that_cannot_start_fails_the_start_in_its_own_words() {
        let result = start(
            "test-fail",
            false,
            vec![0, 1],
            |n| if n == 1 { Err(anyhow!("io_uring unavailable here: test")) } else { Ok(((), ())) },
            |_, ()| {},
        );
        assert_eq!(format!("{:#}", result.unwrap_err()), "io_uring unavailable here: test");
    }

    /// Worker i runs on the i-th CPU of the mask, wrapping round; unpinned,
    /// on the whole mask.
    #[test]
    fn pinned_workers_each_run_on_their_own_cpu() {
        let cpus = affinity().unwrap();
        assert!(!cpus.is_empty());
        let workers = cpus.len() + 1;
        let masks = start("test-pin", true, vec![(); workers], |()| Ok(((), affinity()?)), |_, ()| {}).unwrap();
        for (id, mask) in masks.iter().enumerate() {
            assert_eq!(mask, &[cpus[id % cpus.len()]], "worker {id}");
        }
        let masks = start("test-nopin", false, vec![(); 2], |()| Ok(((), affinity()?)), |_, ()| {}).unwrap();
        assert!(masks.iter().all(|mask| mask == &cpus));
    }
}
