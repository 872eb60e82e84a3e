//! `--load-hosts ssh:HOST[,HOST…]`: one agent per host, started over the
//! system's OpenSSH. Every command runs in batch mode (no prompt: a host
//! that wants a password or an unknown host key is one that cannot be
//! reached) over one master connection per host (`ControlMaster`), kept
//! for a minute after its last use and closed when the launcher is dropped.
//!
//! Before an agent starts on a host, the host's `loadgen --version` is
//! compared with the local one; when it is missing or different, the local
//! binary is copied over with `scp` (to `~/.cache/echo-arena/loadgen`, or
//! `ECHO_BENCH_REMOTE_DIR`). `ECHO_BENCH_SSH_CONFIG` names an ssh config
//! file to use instead of the user's (`-F`).
//!
//! An agent started over ssh is the local `ssh` process: killing it closes
//! the session; the remote agent then ends on its own when its coordinator
//! connection closes.

use std::collections::HashSet;
use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use echo_common::Transport;

use super::{AgentProcess, Launcher, local_ip_towards};

/// How long ssh may take to connect to a host before it is unreachable, seconds.
const CONNECT_TIMEOUT_SECS: u32 = 5;
/// How long a master connection outlives its last use, seconds.
const PERSIST_SECS: u32 = 60;

/// What the ssh launcher needs besides the hosts.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// An ssh config file (`ssh -F`), instead of the user's.
    pub config: Option<PathBuf>,
    /// Where `loadgen` is kept on the hosts (relative: to the remote home).
    pub remote_dir: String,
}

impl SshOptions {
    /// From `ECHO_BENCH_SSH_CONFIG` and `ECHO_BENCH_REMOTE_DIR`, or the defaults.
    pub fn from_env() -> SshOptions {
        SshOptions {
            config: std::env::var_os("ECHO_BENCH_SSH_CONFIG").map(PathBuf::from),
            remote_dir: std::env::var("ECHO_BENCH_REMOTE_DIR").unwrap_or_else(|_| ".cache/echo-arena".into()),
        }
    }
}

/// Agents on hosts reached over ssh, one per host.
#[derive(Debug)]
pub struct SshHosts {
    hosts: Vec<String>,
    options: SshOptions,
    /// The folder of the master connections' sockets (removed when dropped).
    control: tempfile::TempDir,
    /// The local address the first host reaches this one at.
    local: IpAddr,
    /// Hosts whose loadgen has been checked (or copied) already.
    checked: Mutex<HashSet<String>>,
}

impl SshHosts {
    /// The launcher of `hosts`, with [`SshOptions::from_env`]: every host
    /// reached once, or one line naming the first that cannot be.
    pub fn new(hosts: &[String]) -> Result<SshHosts, String> {
        SshHosts::with(hosts, SshOptions::from_env())
    }

    /// [`SshHosts::new`] with `options`.
    pub fn with(hosts: &[String], options: SshOptions) -> Result<SshHosts, String> {
        if hosts.is_empty() {
            return Err("ssh: no host given (ssh:HOST[,HOST…])".into());
        }
        for host in hosts {
            if host.is_empty() || host.starts_with('-') || host.contains(|c: char| c.is_whitespace() || c == '\'') {
                return Err(format!("ssh:{}: {host:?} is not a host name", hosts.join(",")));
            }
        }
        let control = tempfile::Builder::new()
            .prefix("ea-ssh-")
            .tempdir()
            .map_err(|err| format!("cannot create a folder for ssh's control sockets: {err}"))?;
        let mut launcher = SshHosts {
            hosts: hosts.to_vec(),
            options,
            control,
            local: IpAddr::from([127, 0, 0, 1]),
            checked: Mutex::new(HashSet::new()),
        };
        for host in hosts {
            launcher.run(host, "true")?;
        }
        launcher.local = launcher.local_ip(&hosts[0])?;
        Ok(launcher)
    }

    /// `ssh` with the launcher's options, for `host`.
    fn ssh(&self, host: &str) -> Command {
        let mut command = Command::new("ssh");
        command.args(self.common()).arg("-T").arg(host);
        command
    }

    /// The options ssh and scp share: the config file, batch mode, the master connection.
    fn common(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        if let Some(config) = &self.options.config {
            args.extend(["-F".into(), config.clone().into_os_string()]);
        }
        let control = self.control.path().join("%C");
        for option in [
            "BatchMode=yes".to_owned(),
            "ControlMaster=auto".to_owned(),
            format!("ControlPath={}", control.display()),
            format!("ControlPersist={PERSIST_SECS}"),
            format!("ConnectTimeout={CONNECT_TIMEOUT_SECS}"),
        ] {
            args.extend(["-o".into(), option.into()]);
        }
        args
    }

    /// Runs `remote` (a shell command line) on `host`: its standard output,
    /// or one line naming the host.
    pub fn run(&self, host: &str, remote: &str) -> Result<String, String> {
        let output = self.ssh(host).arg(remote).stdin(Stdio::null()).output();
        checked(host, "ssh", output)
    }

    /// Where loadgen is kept on the hosts.
    pub fn remote_loadgen(&self) -> String {
        format!("{}/loadgen", self.options.remote_dir.trim_end_matches('/'))
    }

    /// Makes sure `host` has the same loadgen as `loadgen` (its `--version`),
    /// copying it over when it has none or another; whether it was copied.
    pub fn ensure_loadgen(&self, host: &str, loadgen: &Path) -> Result<bool, String> {
        let mut checked_hosts = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        if checked_hosts.contains(host) {
            return Ok(false);
        }
        let local = Command::new(loadgen)
            .arg("--version")
            .output()
            .map_err(|err| format!("cannot run {} --version: {err}", loadgen.display()))?;
        let local = String::from_utf8_lossy(&local.stdout).trim().to_owned();
        let remote = self.remote_loadgen();
        let version = format!("{} --version 2>/dev/null || true", quote(&remote));
        let same = |text: String| text.trim() == local;
        let mut copied = false;
        if !same(self.run(host, &version)?) {
            self.run(host, &format!("mkdir -p {}", quote(&self.options.remote_dir)))?;
            let output = Command::new("scp")
                .args(self.common())
                .arg("-q")
                .arg(loadgen)
                .arg(format!("{host}:{remote}"))
                .stdin(Stdio::null())
                .output();
            checked(host, "scp", output)?;
            if !same(self.run(host, &version)?) {
                return Err(format!("ssh:{host}: the loadgen copied to {remote} does not say {local:?}"));
            }
            copied = true;
        }
        checked_hosts.insert(host.to_owned());
        Ok(copied)
    }

    /// The local address `host` is reached from (ssh's own view of where
    /// `host` is: `ssh -G`).
    fn local_ip(&self, host: &str) -> Result<IpAddr, String> {
        let mut command = Command::new("ssh");
        command.args(self.common()).arg("-G").arg(host);
        let config = checked(host, "ssh -G", command.stdin(Stdio::null()).output())?;
        let value = |key: &str| {
            config.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')).map(str::to_owned))
        };
        let name = value("hostname").unwrap_or_else(|| host.to_owned());
        let port: u16 = value("port").and_then(|p| p.parse().ok()).unwrap_or(22);
        let peer: SocketAddr = (name.as_str(), port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("ssh:{host}: cannot resolve {name}"))?;
        local_ip_towards(peer).map_err(|err| format!("ssh:{host}: {err}"))
    }
}

/// The standard output of a finished ssh/scp, or one line naming `host`
/// and the last thing the tool said.
fn checked(host: &str, tool: &str, output: std::io::Result<Output>) -> Result<String, String> {
    let output = output.map_err(|err| format!("ssh:{host}: cannot run {tool}: {err}"))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_owned();
    Err(format!("ssh:{host}: cannot reach {host} ({tool} {}): {said}", output.status))
}

/// `text` as one word of a POSIX shell command line.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

impl Launcher for SshHosts {
    fn describe(&self) -> String {
        format!("ssh:{}", self.hosts.join(","))
    }

    fn agents(&self) -> usize {
        self.hosts.len()
    }

    fn coordinator_ip(&self) -> IpAddr {
        self.local
    }

    fn server_ip(&self) -> IpAddr {
        self.local
    }

    /// A Unix socket is a path on this host: no remote agent can open it.
    fn reaches(&self, transport: Transport) -> bool {
        transport != Transport::Unix
    }

    fn spawn(&self, index: usize, loadgen: &Path, args: &[OsString]) -> Result<Option<AgentProcess>, String> {
        let host = self.hosts.get(index).ok_or_else(|| format!("no agent {index} in {}", self.describe()))?;
        self.ensure_loadgen(host, loadgen)?;
        let mut line = format!("exec {}", quote(&self.remote_loadgen()));
        for arg in args {
            line.push(' ');
            line.push_str(&quote(&arg.to_string_lossy()));
        }
        let child = self
            .ssh(host)
            .arg(line)
            // As local and netns agents: their reasons travel over the
            // protocol; their output would only interleave with the bench's.
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| format!("ssh:{host}: cannot run ssh: {err}"))?;
        Ok(Some(AgentProcess { child, host: host.clone() }))
    }
}

impl Drop for SshHosts {
    fn drop(&mut self) {
        for host in &self.hosts {
            let mut command = Command::new("ssh");
            command.args(self.common()).args(["-O", "exit"]).arg(host);
            let _ = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_the_remote_shell() {
        assert_eq!(quote("plain"), "'plain'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$HOME; rm"), "'$HOME; rm'");
    }

    #[test]
    fn remote_agents_cannot_reach_a_unix_socket() {
        // No host: nothing is dialled, and nothing to close when dropped.
        let launcher = SshHosts {
            hosts: Vec::new(),
            options: SshOptions { config: None, remote_dir: ".x".into() },
            control: tempfile::tempdir().unwrap(),
            local: std::net::Ipv4Addr::LOCALHOST.into(),
            checked: Mutex::default(),
        };
        assert!(launcher.reaches(Transport::Tcp) && launcher.reaches(Transport::Udp));
        assert!(!launcher.reaches(Transport::Unix));
    }

    #[test]
    fn bad_host_lists_are_one_line_without_running_ssh() {
        for hosts in [vec![], vec!["-oProxyCommand=x".to_owned()], vec!["a b".to_owned()], vec![String::new()]] {
            let err = SshHosts::with(&hosts, SshOptions { config: None, remote_dir: ".x".into() }).unwrap_err();
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }
}
