//! The ssh launcher end to end, against an `sshd` of the test's own: it
//! runs in a network namespace the test makes, with a host key and an
//! authorized key made in a temporary folder (scripts/ci-setup.sh installs
//! openssh-server for CI). Where sshd or namespaces are missing, the test
//! says "UNAVAILABLE HERE" on stderr, naming what is missing. A tiny bench
//! run with `--load-hosts ssh:agent0` then measures through the remote
//! agent, its report in the cell.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::unavailable;
use echo_bench::hosts::Launcher;
use echo_bench::hosts::netns::Topology;
use echo_bench::hosts::ssh::{SshHosts, SshOptions};

const SSHD: &str = "/usr/sbin/sshd";

fn loadgen() -> PathBuf {
    common::sibling("loadgen")
}

/// What this test needs that the machine may lack, or `None`.
fn missing() -> Option<String> {
    for tool in ["ssh", "scp", "ssh-keygen"] {
        if Command::new(tool).arg("-V").stderr(Stdio::null()).stdout(Stdio::null()).status().is_err() {
            return Some(format!("{tool} (openssh-client) is not installed"));
        }
    }
    if !Path::new(SSHD).is_file() {
        return Some(format!("{SSHD} (openssh-server) is not installed: scripts/ci-setup.sh installs it as root"));
    }
    common::netns_unavailable().map(|why| format!("network namespaces: {why}"))
}

/// Kills sshd when the test ends, however it ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen {}", path.display());
}

/// An `sshd` of the test's own in a namespace, with the keys and configs
/// to reach it as `agent0` (and `closed`, a port nothing listens on).
struct Sshd {
    // Field order is drop order: sshd before its namespace.
    daemon: Daemon,
    made_privsep: bool,
    /// The ssh config file naming `agent0` and `closed`.
    config: PathBuf,
    dir: tempfile::TempDir,
    topology: Topology,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.daemon.0.kill();
        let _ = self.daemon.0.wait();
        if self.made_privsep {
            let _ = std::fs::remove_dir("/run/sshd");
        }
    }
}

/// One test at a time owns sshd's privilege-separation folder.
static SSHD_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Starts [`Sshd`] and waits (bounded) until it listens.
fn start_sshd() -> Sshd {
    let topology = Topology::new(1, false).expect("a namespace for sshd");
    let host = &topology.agents()[0];
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    keygen(&d.join("host_key"));
    keygen(&d.join("id"));
    std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).unwrap();
    std::fs::write(
        d.join("sshd_config"),
        format!(
            "ListenAddress {ip}\nPort 22\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nSubsystem sftp internal-sftp\n\
             LogLevel ERROR\n",
            ip = host.ip,
            d = d.display()
        ),
    )
    .unwrap();
    let me = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "root".into());
    let config = d.join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host agent0\n  HostName {ip}\n  User {me}\n  IdentityFile {d}/id\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {d}/known_hosts\n  StrictHostKeyChecking accept-new\n  LogLevel ERROR\n\
             Host closed\n  HostName {ip}\n  Port 2222\n  User {me}\n  IdentityFile {d}/id\n  \
             UserKnownHostsFile {d}/known_hosts\n  LogLevel ERROR\n",
            ip = host.ip,
            d = d.display()
        ),
    )
    .unwrap();
    // sshd wants its privilege-separation folder; made if missing, removed after.
    let privsep = Path::new("/run/sshd");
    let made_privsep = !privsep.exists() && std::fs::create_dir_all(privsep).is_ok();
    let mut command = host.command(SSHD).expect("sshd in the namespace");
    command.arg("-D").arg("-e").arg("-f").arg(d.join("sshd_config")).stdin(Stdio::null()).stdout(Stdio::null());
    let mut daemon = Daemon(command.stderr(Stdio::piped()).spawn().expect("sshd starts"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let at = SocketAddr::from((host.ip, 22));
    while TcpStream::connect_timeout(&at, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = daemon.0.try_wait() {
            let mut said = String::new();
            let _ = std::io::Read::read_to_string(daemon.0.stderr.as_mut().unwrap(), &mut said);
            panic!("sshd exited ({status}): {said}");
        }
        assert!(Instant::now() < deadline, "sshd not listening on {at} within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }

    Sshd { daemon, made_privsep, config, dir, topology }
}

#[test]
fn ssh_launcher_checks_copies_and_runs_loadgen_on_a_host_or_says_unavailable_here() {
    if let Some(what) = missing() {
        unavailable(&format!("ssh_launcher_end_to_end: UNAVAILABLE HERE: {what}"));
        return;
    }
    let _one = SSHD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let sshd = start_sshd();
    let (d, config, topology) = (sshd.dir.path(), sshd.config.clone(), &sshd.topology);
    let remote_dir = d.join("remote");
    let options = SshOptions { config: Some(config.clone()), remote_dir: remote_dir.display().to_string() };
    let hosts = SshHosts::with(&["agent0".to_owned()], options.clone()).expect("agent0 reached");
    assert_eq!((hosts.describe().as_str(), hosts.agents()), ("ssh:agent0", 1));
    assert_eq!(hosts.coordinator_ip(), std::net::IpAddr::V4(topology.bridge_ip()), "the address agent0 reaches us at");
    assert_eq!(hosts.run("agent0", "echo hello").as_deref(), Ok("hello\n"), "a remote command");
    // No loadgen there: copied; the same one: kept; another version: replaced.
    assert_eq!(hosts.ensure_loadgen("agent0", &loadgen()), Ok(true), "copied when missing");
    assert!(remote_dir.join("loadgen").is_file());
    let again = SshHosts::with(&["agent0".to_owned()], options.clone()).unwrap();
    assert_eq!(again.ensure_loadgen("agent0", &loadgen()), Ok(false), "kept when its version is the same");
    std::fs::write(remote_dir.join("loadgen"), "#!/bin/sh\necho loadgen 0.0.0-other\n").unwrap();
    let third = SshHosts::with(&["agent0".to_owned()], options.clone()).unwrap();
    assert_eq!(third.ensure_loadgen("agent0", &loadgen()), Ok(true), "replaced when another version");
    // An agent is the remote loadgen with the arguments given, quoted.
    let args: Vec<OsString> = vec!["--version".into()];
    let mut agent = third.spawn(0, &loadgen(), &args).expect("spawned").expect("a process");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the remote loadgen --version did not end within 15 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "remote loadgen --version: {status}");
    assert_eq!(agent.host, "agent0");
    // A host that cannot be reached: one line naming it.
    let err = SshHosts::with(&["closed".to_owned()], options).unwrap_err();
    assert!(err.starts_with("ssh:closed: cannot reach closed") && err.lines().count() == 1, "{err}");

    drop((hosts, again, third, agent));
    let tag = topology.tag().to_owned();
    drop(sshd);
    let links = Command::new("ip").args(["-o", "link", "show"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains(&tag), "links of {tag} left");
}

#[test]
fn a_bench_run_with_ssh_load_hosts_measures_with_the_remote_agents_report_or_says_unavailable_here() {
    if let Some(what) = missing() {
        unavailable(&format!("ssh_bench_end_to_end: UNAVAILABLE HERE: {what}"));
        return;
    }
    let _one = SSHD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let sshd = start_sshd();
    let bench = Path::new(env!("CARGO_BIN_EXE_bench"));
    let results = tempfile::tempdir().unwrap();
    let remote_dir = sshd.dir.path().join("remote");
    let output = Command::new(bench)
        .arg("--server-bin")
        .arg(bench.with_file_name("echo-server"))
        .arg("--loadgen-bin")
        .arg(loadgen())
        .arg("--results")
        .arg(results.path())
        .args(["--models", "tokio", "--scenarios", "throughput", "--transports", "tcp", "--sizes", "64"])
        .args(["--connections", "4", "--repeat", "1", "--duration", "0.5s", "--warmup", "0.2s"])
        .args(["--no-progress", "--control", "none", "--load-hosts", "ssh:agent0"])
        .env("ECHO_BENCH_SSH_CONFIG", &sshd.config)
        .env("ECHO_BENCH_REMOTE_DIR", &remote_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}: {stderr}", output.status);
    assert!(remote_dir.join("loadgen").is_file(), "loadgen copied to the host");
    let dir = std::fs::read_dir(results.path()).unwrap().flatten().next().expect("a run folder").path();
    let results = echo_bench::results::Results::load(&dir.join("results.json")).expect("results");
    assert_eq!(results.settings.load_hosts.as_deref(), Some("ssh:agent0"));
    assert_eq!(results.cells.len(), 1);
    let cell = &results.cells[0];
    assert!(cell.ok, "{:?}", cell.failure);
    assert_eq!(cell.coordination.as_ref().map(|c| c.hosts.as_str()), Some("ssh:agent0"));
    // The one agent is the remote one: its report is the cell's.
    assert_eq!(cell.agents.len(), 1, "the agent's report is kept");
    let (agent, merged) = (&cell.agents[0].report, cell.loadgen.as_ref().expect("a report"));
    assert!(agent.requests.ok > 0, "the remote agent measured");
    assert_eq!(merged.requests.ok, agent.requests.ok);
    assert_eq!(merged.latency_us.count, agent.latency_us.count);
    assert!(cell.server_cpu_us_per_msg.is_some(), "the server's CPU was read at the window's marks");
    // No agent is left on the host once the run ended (its binary's path is this test's own).
    let remote = remote_dir.join("loadgen").display().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut left = running(&remote);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        left = running(&remote);
    }
    assert_eq!(left, Vec::<u32>::new(), "agents left on the host");
    let tag = sshd.topology.tag().to_owned();
    drop(sshd);
    let links = Command::new("ip").args(["-o", "link", "show"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains(&tag), "links of {tag} left");
}

/// The processes (not zombies) whose program is `program`.
fn running(program: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let first = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if first == program.as_bytes() && !zombie {
            found.push(pid);
        }
    }
    found
}
