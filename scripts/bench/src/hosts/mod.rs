//! Where load-generator agents run and how they are started.
//!
//! The trait is shared with the `agent` branch (issue 17's interface): this
//! copy carries the netns and ssh launchers; `local` and the `--load-hosts`
//! parser are the other branch's.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::process::Child;

pub mod netns;
pub mod ssh;

/// A started agent process: killed and reaped when dropped.
#[derive(Debug)]
pub struct AgentProcess {
    pub child: Child,
    pub host: String,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Where load-generator agents run, and how they are started.
pub trait Launcher: Send + Sync {
    /// As the user gave it: `local:2`, `netns:2`, `ssh:a,b`.
    fn describe(&self) -> String;
    /// How many agents it starts.
    fn agents(&self) -> usize;
    /// The address the coordinator binds (port 0) so that every agent reaches it:
    /// 127.0.0.1 for local, the bridge's address for netns, the address given for ssh.
    fn coordinator_ip(&self) -> IpAddr;
    /// The IP a server must listen on for the agents to reach it over the link
    /// (127.0.0.1 for local; the bridge / server-namespace address for netns).
    fn server_ip(&self) -> IpAddr;
    /// Starts agent `index` (0-based) as `loadgen` + `args`
    /// (args = ["agent", "--coordinator", "IP:PORT", …]); `loadgen` is the local binary path
    /// (ssh copies or checks it on the remote host).
    fn spawn(&self, index: usize, loadgen: &std::path::Path, args: &[OsString]) -> Result<AgentProcess, String>;
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
