//! `--load-hosts local:N`: N agents on this host, over loopback. They are
//! children of the bench's load thread, so they run on the client CPUs.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Stdio};

use super::{AgentProcess, Launcher};

/// N agents on this host.
#[derive(Debug, Clone)]
pub struct LocalHosts {
    agents: usize,
}

impl LocalHosts {
    pub fn new(agents: usize) -> LocalHosts {
        LocalHosts { agents }
    }
}

impl Launcher for LocalHosts {
    fn describe(&self) -> String {
        format!("local:{}", self.agents)
    }

    fn agents(&self) -> usize {
        self.agents
    }

    fn coordinator_ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }

    fn server_ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }

    fn spawn(&self, index: usize, loadgen: &Path, args: &[OsString]) -> Result<Option<AgentProcess>, String> {
        // The agent's reasons travel over the protocol; its own output
        // would only interleave with the bench's progress lines.
        let child = Command::new(loadgen)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot start agent {index} ({}): {err}", loadgen.display()))?;
        Ok(Some(AgentProcess { child, host: "localhost".into() }))
    }
}
