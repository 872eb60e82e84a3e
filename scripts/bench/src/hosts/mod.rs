//! Where load-generator agents run and how they are started.
//!
//! `--load-hosts local:N | netns:N | ssh:HOST[,HOST…] | external:N` names
//! them; [`parse`] turns it into a [`Launcher`]. The bench starts the agents
//! through it (`loadgen agent --coordinator IP:PORT --index I`), or, for
//! `external`, waits for agents someone else started, and drives them as a
//! coordinator ([`crate::agents`]).

pub mod external;
pub mod local;
pub mod netns;
pub mod ssh;

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use echo_common::Transport;
use external::ExternalSpec;
use loadgen::coordinator::Coordinator;
use netns::Topology;

/// A started agent process: killed and reaped when dropped.
#[derive(Debug)]
pub struct AgentProcess {
    pub child: Child,
    pub host: String,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        // Still running (the run failed, or it was never told `bye`): no
        // agent outlives its cell.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Where load-generator agents run, and how they are started.
pub trait Launcher: Send + Sync {
    /// As the user gave it: `local:2`, `netns:2`, `ssh:a,b`, `external:2`.
    fn describe(&self) -> String;
    /// How many agents it starts (or, for `external`, expects).
    fn agents(&self) -> usize;
    /// The address the coordinator binds (port 0) so that every agent reaches it:
    /// 127.0.0.1 for local, the bridge's address for netns, the address given for ssh.
    fn coordinator_ip(&self) -> IpAddr;
    /// The coordinator of one cell, listening where the agents dial:
    /// [`Launcher::coordinator_ip`] and `port` (0: any free one), unless
    /// the launcher keeps a listener for the whole run (`external`).
    fn coordinator(&self, port: u16) -> Result<Coordinator, String> {
        let at = SocketAddr::new(self.coordinator_ip(), port);
        Coordinator::bind_at(at).map_err(|err| format!("cannot listen for agents on {at}: {err}"))
    }
    /// How long a cell waits for its agents to dial in.
    fn agent_wait(&self) -> Duration {
        crate::agents::ACCEPT_TIMEOUT
    }
    /// The IP a server must listen on for the agents to reach it over the link
    /// (127.0.0.1 for local; the bridge / server-namespace address for netns).
    fn server_ip(&self) -> IpAddr;
    /// Starts agent `index` (0-based) as `loadgen` + `args`
    /// (args = ["agent", "--coordinator", "IP:PORT", …, "--index", "I"]); `loadgen` is the local
    /// binary path (ssh copies or checks it on the remote host). `None`: the launcher starts no
    /// process (`external`: the agent dials in by itself). A launcher starts every agent or none.
    fn spawn(&self, index: usize, loadgen: &std::path::Path, args: &[OsString])
    -> Result<Option<AgentProcess>, String>;
    /// The namespaces the agents run in, if the bench made them (netns):
    /// the runner watches their links during a cell, and a `--link veth`
    /// server shares them.
    fn topology(&self) -> Option<Arc<Topology>> {
        None
    }
    /// Whether its agents can reach a server over `transport`: a Unix
    /// socket is a path on this host, which an agent on another host cannot
    /// open. A cell it cannot reach runs with the local load generator.
    fn reaches(&self, transport: Transport) -> bool {
        let _ = transport;
        true
    }
}

/// The local address this host would use to reach `peer`: what a
/// coordinator binds so that an agent there can dial it. No packet is
/// sent (a UDP socket's connect only picks a route).
pub fn local_ip_towards(peer: SocketAddr) -> Result<IpAddr, String> {
    let any: SocketAddr = if peer.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = std::net::UdpSocket::bind(any).map_err(|err| format!("cannot open a socket: {err}"))?;
    socket.connect(peer).map_err(|err| format!("no route to {peer}: {err}"))?;
    socket.local_addr().map(|a| a.ip()).map_err(|err| err.to_string())
}

/// A `--load-hosts` value, read but not acted on: nothing is made and no
/// host is dialled until [`HostsSpec::launch`], so that a usage error found
/// later on the command line leaves nothing behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostsSpec {
    /// `local:N`.
    Local(usize),
    /// `netns:N`.
    Netns(usize),
    /// `ssh:HOST[,HOST…]`.
    Ssh(Vec<String>),
    /// `external:N`, with where its coordinator listens and how long it
    /// waits (`--coordinator-bind`, `--agent-wait`: set after parsing).
    External(ExternalSpec),
}

impl HostsSpec {
    /// Reads `local:N`, `netns:N`, `ssh:HOST[,HOST…]` or `external:N`; the
    /// error is one line.
    pub fn parse(spec: &str) -> Result<HostsSpec, String> {
        let expected = "expected local:N, netns:N, ssh:HOST[,HOST…] or external:N";
        let count = |n: &str| match n.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("--load-hosts {spec:?}: {n:?} is not a number of agents ≥ 1 ({expected})")),
        };
        match spec.split_once(':') {
            Some(("local", n)) => Ok(HostsSpec::Local(count(n)?)),
            Some(("netns", n)) => {
                let n = count(n)?;
                if n > netns::MAX_AGENTS {
                    return Err(format!("--load-hosts {spec:?}: at most {} agent namespaces", netns::MAX_AGENTS));
                }
                Ok(HostsSpec::Netns(n))
            }
            Some(("ssh", hosts)) => {
                if hosts.split(',').any(str::is_empty) {
                    return Err(format!("--load-hosts {spec:?}: an empty host name ({expected})"));
                }
                Ok(HostsSpec::Ssh(hosts.split(',').map(str::to_owned).collect()))
            }
            Some(("external", n)) => {
                Ok(HostsSpec::External(ExternalSpec { agents: count(n)?, bind: None, wait: external::AGENT_WAIT }))
            }
            _ => Err(format!("--load-hosts {spec:?}: {expected}")),
        }
    }

    /// Makes the launcher: the namespaces of `netns:N` (with a server
    /// namespace too if `server_namespace`, for `--link veth`: one
    /// topology for both), every ssh host dialled once, or the external
    /// agents' listener. One line naming what failed; whatever was made is
    /// removed.
    pub fn launch(&self, server_namespace: bool) -> Result<Box<dyn Launcher>, String> {
        Ok(match self {
            HostsSpec::Local(n) => Box::new(local::LocalHosts::new(*n)),
            HostsSpec::Netns(n) => Box::new(netns::NetnsHosts::with_server(*n, server_namespace)?),
            HostsSpec::Ssh(_) if server_namespace => {
                return Err("ssh load hosts cannot reach a server in this host's namespace (--link veth): use --link loopback, or netns:N".to_owned());
            }
            HostsSpec::Ssh(hosts) => Box::new(ssh::SshHosts::new(hosts)?),
            HostsSpec::External(_) if server_namespace => {
                return Err("external load hosts cannot reach a server in this host's namespace (--link veth): use --link loopback".to_owned());
            }
            HostsSpec::External(spec) => Box::new(external::ExternalHosts::listen(spec)?),
        })
    }
}

/// Parses `--load-hosts` and makes its launcher at once ([`HostsSpec`]
/// then [`HostsSpec::launch`], a netns topology with a server namespace);
/// the error is one line.
pub fn parse(spec: &str) -> Result<Box<dyn Launcher>, String> {
    HostsSpec::parse(spec)?.launch(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_hosts_parse_or_say_why_in_one_line() {
        let local = parse("local:3").unwrap();
        assert_eq!((local.describe(), local.agents()), ("local:3".to_owned(), 3));
        assert!(local.coordinator_ip().is_loopback() && local.server_ip().is_loopback());
        let bad =
            ["local:0", "local:x", "local", "lan:2", "", "ssh:a,,b", "netns:-1", "netns:0", "netns:201", "external:0"];
        for bad in bad {
            let err = parse(bad).err().unwrap_or_else(|| panic!("{bad:?} parsed"));
            assert!(err.starts_with("--load-hosts ") && !err.contains('\n'), "{err}");
            let err = HostsSpec::parse(bad).err().unwrap_or_else(|| panic!("{bad:?} read"));
            assert!(err.starts_with("--load-hosts ") && !err.contains('\n'), "{err}");
        }
        // Read, nothing made yet.
        assert_eq!(HostsSpec::parse("netns:2"), Ok(HostsSpec::Netns(2)));
        assert_eq!(HostsSpec::parse("ssh:a,b"), Ok(HostsSpec::Ssh(vec!["a".into(), "b".into()])));
        let external = ExternalSpec { agents: 3, bind: None, wait: external::AGENT_WAIT };
        assert_eq!(HostsSpec::parse("external:3"), Ok(HostsSpec::External(external)));
    }

    #[test]
    fn ssh_hosts_refuse_a_server_namespace_before_dialling() {
        // A host name that cannot resolve: the refusal comes before any dial.
        let spec = HostsSpec::parse("ssh:no-such-host.invalid").unwrap();
        let err = spec.launch(true).err().expect("ssh with --link veth launched");
        assert!(err.contains("--link veth") && !err.contains('\n'), "{err}");
        // Local agents reach every transport.
        let local = HostsSpec::Local(1).launch(false).unwrap();
        assert!([Transport::Tcp, Transport::Udp, Transport::Unix].into_iter().all(|t| local.reaches(t)));
    }
}
