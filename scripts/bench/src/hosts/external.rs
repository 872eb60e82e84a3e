//! `--load-hosts external:N`: N agents the bench does not start. Someone
//! else runs them (a Kubernetes Indexed Job: scripts/k8s/loadgen-agents.yaml,
//! or a loop on each client host), each as `loadgen agent --coordinator
//! IP:PORT --index I`, and each dials in again after every cell it served.
//!
//! The bench listens on one address for the whole run
//! (`--coordinator-bind IP:PORT`), and says so in one line. Each cell waits
//! up to `--agent-wait` for the agents it needs, told apart by their index
//! ([`loadgen::coordinator::Coordinator::accept_of`]); a missing one makes
//! that cell invalid with the index named, and the run goes on to the next
//! cell, for which the agent may be back (a pod restarted). Agents that
//! dial in between two cells wait in the listener's queue.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use echo_common::Transport;
use loadgen::coordinator::Coordinator;

use super::{AgentProcess, Launcher};

/// How long each cell waits for its agents by default (`--agent-wait`):
/// long enough for a pod that served the last cell to exit and dial again.
pub const AGENT_WAIT: Duration = Duration::from_secs(60);

/// `external:N` as given, with where to listen and how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalSpec {
    pub agents: usize,
    /// `--coordinator-bind`: required before [`ExternalHosts::listen`].
    pub bind: Option<SocketAddr>,
    /// `--agent-wait`.
    pub wait: Duration,
}

/// N agents started elsewhere, and the listener they dial.
#[derive(Debug)]
pub struct ExternalHosts {
    agents: usize,
    listener: TcpListener,
    wait: Duration,
}

impl ExternalHosts {
    /// Listens on `spec.bind` for the whole run, and says where on stderr
    /// (one line). The address must be one the agents reach, not a
    /// wildcard: the server listens on the same IP, and agents are told it.
    pub fn listen(spec: &ExternalSpec) -> Result<ExternalHosts, String> {
        let bind = spec.bind.ok_or("external agents need --coordinator-bind IP:PORT, the address they dial")?;
        if bind.ip().is_unspecified() {
            return Err(format!(
                "--coordinator-bind {bind}: name the address the agents dial (the server listens on it too), not a wildcard"
            ));
        }
        let listener = TcpListener::bind(bind).map_err(|err| format!("cannot listen for agents on {bind}: {err}"))?;
        let at = listener.local_addr().map_err(|err| format!("cannot listen for agents on {bind}: {err}"))?;
        eprintln!(
            "bench: waiting for {} agents at {at} (loadgen agent --coordinator {at} --index I, I from 0 to {}), \
             up to {:?} each cell",
            spec.agents,
            spec.agents - 1,
            spec.wait
        );
        Ok(ExternalHosts { agents: spec.agents, listener, wait: spec.wait })
    }
}

impl Launcher for ExternalHosts {
    fn describe(&self) -> String {
        format!("external:{}", self.agents)
    }

    fn agents(&self) -> usize {
        self.agents
    }

    fn coordinator_ip(&self) -> IpAddr {
        self.server_ip()
    }

    /// The address the agents dial: they reach this host there.
    fn server_ip(&self) -> IpAddr {
        // A bound listener knows its address; the bind address was checked.
        self.listener.local_addr().map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip())
    }

    /// The run's one listener, for this cell.
    fn coordinator(&self, _port: u16) -> Result<Coordinator, String> {
        let listener = self.listener.try_clone().map_err(|err| format!("cannot listen for agents: {err}"))?;
        Ok(Coordinator::with_listener(listener))
    }

    fn agent_wait(&self) -> Duration {
        self.wait
    }

    /// Nothing to start: the agent dials in by itself.
    fn spawn(&self, _index: usize, _loadgen: &Path, _args: &[OsString]) -> Result<Option<AgentProcess>, String> {
        Ok(None)
    }

    /// A Unix socket is a path on this host, out of the agents' reach.
    fn reaches(&self, transport: Transport) -> bool {
        transport != Transport::Unix
    }
}
