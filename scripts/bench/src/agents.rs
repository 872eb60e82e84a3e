//! The load path over several agents (`--load-hosts`): the bench is the
//! coordinator ([`loadgen::coordinator`]). It listens, starts the agents
//! through the [`Launcher`], gives each its part of the load, names T0 on
//! each agent's clock, is at each edge of the window when the agents are
//! (the runner reads the server's CPU there, as over [`crate::loadpath`]),
//! and collects every agent's report. Any agent that fails makes the whole
//! cell fail, with the agent and the reason named: never a partial sum.
//! Agents are told apart by their index (`--index`), so that those the
//! bench did not start (`external:N`) are given their parts as its own are.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use loadgen::Opts;
use loadgen::coordinator::{self, Run};

use crate::hosts::{AgentProcess, Launcher};
use crate::loadpath::Mark;

/// How long the agents have to dial the coordinator once started.
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an agent has to exit once it said bye.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `opts` split between the agents `hosts` starts (`loadgen` is the
/// local binary), calling `at_mark` at the window's edges; every agent's
/// report, or why there is none (one line). `stop` is looked at while the
/// load runs. Every agent process is gone when this returns.
pub fn run(
    hosts: &dyn Launcher,
    loadgen: &Path,
    opts: &Opts,
    stop: &dyn Fn() -> bool,
    at_mark: impl FnMut(Mark),
) -> Result<Run, String> {
    run_on(hosts, 0, loadgen, opts, stop, at_mark)
}

/// How many of `launched` agents drive a load of `connections`: each
/// needs a connection of its own, so at most one per connection (and at
/// least one).
pub fn count(launched: usize, connections: u32) -> u32 {
    (launched.min(connections as usize) as u32).max(1)
}

/// [`run`] with the coordinator on `port` of the launcher's
/// [`Launcher::coordinator_ip`] (`--coordinator-port`; 0: any free one),
/// or where the launcher listens for the whole run ([`Launcher::coordinator`]).
pub fn run_on(
    hosts: &dyn Launcher,
    port: u16,
    loadgen: &Path,
    opts: &Opts,
    stop: &dyn Fn() -> bool,
    mut at_mark: impl FnMut(Mark),
) -> Result<Run, String> {
    let mut coordinator = hosts.coordinator(port)?;
    let addr = coordinator.addr().to_string();
    // At most one agent per connection, the split checked before any starts.
    let agents = count(hosts.agents(), opts.connections) as usize;
    opts.split(agents as u32)?;
    // Those it started, in the order of their indexes (a launcher starts every agent or none).
    let mut processes: Vec<AgentProcess> = Vec::with_capacity(agents);
    for index in 0..agents {
        let (name, index_text) = (format!("agent-{index}"), index.to_string());
        let args: Vec<OsString> = ["agent", "--coordinator", &addr, "--name", &name, "--index", &index_text]
            .into_iter()
            .map(OsString::from)
            .collect();
        processes.extend(hosts.spawn(index, loadgen, &args)?);
    }
    let died = |processes: &mut [AgentProcess]| {
        processes.iter_mut().enumerate().find_map(|(index, p)| {
            p.child.try_wait().ok().flatten().map(|status| format!("agent {index} on {} exited ({status})", p.host))
        })
    };
    // Agents with an index beyond this cell's `agents` (external ones) are told they have no part.
    if let Err(err) = coordinator.accept_of(agents, hosts.agents(), hosts.agent_wait()) {
        return Err(died(&mut processes).map_or(err.clone(), |why| format!("{err}: {why}")));
    }
    let run = coordinator.run(opts, stop, |mark| {
        at_mark(match mark {
            coordinator::Mark::Open => Mark::Open,
            coordinator::Mark::Close => Mark::Close,
        })
    })?;
    // Told bye: each exits 0 at once.
    let deadline = Instant::now() + EXIT_TIMEOUT;
    for (index, process) in processes.iter_mut().enumerate() {
        loop {
            match process.child.try_wait() {
                Ok(Some(status)) if status.success() => break,
                Ok(Some(status)) => return Err(format!("agent {index} reported, then exited with {status}")),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Ok(None) => return Err(format!("agent {index} reported, then did not exit within {EXIT_TIMEOUT:?}")),
                Err(err) => return Err(format!("agent {index}: {err}")),
            }
        }
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_one_agent_per_connection_and_at_least_one() {
        assert_eq!(count(2, 1), 1);
        assert_eq!(count(2, 5), 2);
        assert_eq!(count(4, 3), 3);
        assert_eq!(count(0, 3), 1);
        assert!(Opts { connections: 1, ..Opts::default() }.split(count(2, 1)).is_ok());
    }
}
