//! Starting an `echo-server` pinned to a CPU set, and stopping it with a
//! verdict: did it exit 0 in time, and did anything of it remain?

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use echo_common::{Endpoint, Transport};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::hosts::netns::Namespace;
use crate::models::Model;
use crate::procfs;
use crate::quota::Cgroup;

/// How long a server may take to print `listening on`.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The contract: exit within 2 s of SIGTERM.
pub const STOP_LIMIT: Duration = Duration::from_secs(2);

/// A server of one cell.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub endpoint: Endpoint,
    /// Its log (stderr), an unnamed temporary file.
    log: std::fs::File,
}

/// The target whose `info` lines the bench keeps from a server's log (all
/// else: `warn` and above): the calibration of `cpu:` work.
const LOG_FILTER: &str = "warn,echo_servers::work=info";
/// How the server's calibration line starts (`echo_servers::work`).
const CALIBRATED: &str = "cpu work calibrated";

/// How the server ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shutdown {
    /// Exit code, or null if killed by a signal or still running.
    pub exit_code: Option<i32>,
    /// Exited within 2 s of SIGTERM.
    pub in_time: bool,
    pub stop_secs: f64,
    /// Processes of its tree still alive after it exited (killed then).
    pub leftover_processes: u64,
    /// What `cpu:` work meant in this server, as it logged it: its
    /// calibration line (`--work cpu:…` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
}

impl Shutdown {
    /// Exit 0, in time, nothing left.
    pub fn clean(&self) -> bool {
        self.exit_code == Some(0) && self.in_time && self.leftover_processes == 0
    }
}

/// Pins the calling thread — and every thread it starts later — to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
    sched_setaffinity(Pid::from_raw(0), &cpu_set(cpus)?).map_err(std::io::Error::from)
}

/// `cpus` as a CpuSet; a CPU beyond what the set can hold is an error.
pub fn cpu_set(cpus: &[usize]) -> std::io::Result<CpuSet> {
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu).map_err(std::io::Error::from)?;
    }
    Ok(set)
}

/// Where a server of `transport` listens: port 0 on loopback, or a socket
/// named after the model in `socket_dir`.
pub fn listen_addr(transport: Transport, model: &Model, socket_dir: &Path) -> String {
    listen_addr_on(transport, model, socket_dir, Ipv4Addr::LOCALHOST.into())
}

/// [`listen_addr`] on `ip` (a server namespace's address, or one the
/// load hosts reach) for TCP and UDP.
pub fn listen_addr_on(transport: Transport, model: &Model, socket_dir: &Path, ip: IpAddr) -> String {
    let at = SocketAddr::new(ip, 0);
    match transport {
        Transport::Tcp => at.to_string(),
        Transport::Unix => format!("unix:{}", socket_dir.join(format!("{model}.sock")).display()),
        Transport::Udp => format!("udp:{at}"),
    }
}

impl Server {
    /// Starts `binary <model> --addr <addr> <args>` on `cpus` and waits
    /// for its `listening on` line.
    pub fn start(binary: &Path, model: &Model, addr: &str, args: &[String], cpus: &[usize]) -> Result<Server, String> {
        Server::start_in(binary, model, addr, args, cpus, None, None)
    }

    /// [`Server::start`] in the network namespace `netns` if given (the
    /// namespace is entered between fork and exec, so the PID sampled is
    /// the server's own), and in `cgroup` (its CPU quota) from before it
    /// executes: every process it forks is in it too.
    pub fn start_in(
        binary: &Path,
        model: &Model,
        addr: &str,
        args: &[String],
        cpus: &[usize],
        netns: Option<&Namespace>,
        cgroup: Option<&Cgroup>,
    ) -> Result<Server, String> {
        let mut command = Command::new(binary);
        command.arg(model.name()).args(["--addr", addr]).args(args).env("RUST_LOG", LOG_FILTER);
        if let Some(netns) = netns {
            netns.enter_on_exec(&mut command)?;
        }
        Server::launch(command, cpus, cgroup)
    }

    /// Runs `command` (a server that prints `listening on <endpoint>`
    /// first) on `cpus`, in `cgroup` if given, and waits for that line.
    pub fn launch(mut command: Command, cpus: &[usize], cgroup: Option<&Cgroup>) -> Result<Server, String> {
        let binary = PathBuf::from(command.get_program());
        // The server's log goes to an unnamed temporary file: nothing reads
        // it while the server runs (it cannot block on a full pipe), and a
        // server that fails to start is reported with its own last words
        // ("io_uring unavailable here: …").
        let mut stderr = tempfile::tempfile().map_err(|e| format!("cannot create a log file: {e}"))?;
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(match stderr.try_clone() {
            Ok(file) => Stdio::from(file),
            Err(_) => Stdio::null(),
        });
        let set = cpu_set(cpus).map_err(|e| format!("invalid server CPU set {cpus:?}: {e}"))?;
        let procs = match cgroup.map(Cgroup::procs_fd) {
            Some(None) => return Err("the server's cgroup is not open".into()),
            Some(Some(fd)) => Some(fd),
            None => None,
        };
        let parent = nix::unistd::getpid();
        // SAFETY: between fork and exec we only make async-signal-safe
        // system calls that allocate nothing: prctl, getppid,
        // sched_setaffinity, setpgid, and a write of `0` (this process) to
        // the cgroup's `cgroup.procs`, whose descriptor the `Cgroup`
        // borrowed by this function keeps open until after the spawn (it
        // closes on exec).
        unsafe {
            command.pre_exec(move || {
                // First: if the runner dies (Ctrl-C, kill), its server goes
                // too, even if it died before this line.
                die_with_parent(parent)?;
                sched_setaffinity(Pid::from_raw(0), &set)?;
                if let Some(fd) = procs {
                    nix::unistd::write(std::os::fd::BorrowedFd::borrow_raw(fd), b"0")?;
                }
                // Its own process group: a Ctrl-C at the terminal reaches the
                // runner (which stops the server itself after the current
                // cell), not the server in the middle of its cell.
                nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("server stdout not captured")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no `listening on` line within {} s", START_TIMEOUT.as_secs()));
            }
        };
        let endpoint = line.trim().strip_prefix("listening on ").and_then(|a| Endpoint::parse(a).ok());
        match endpoint {
            Some(endpoint) => Ok(Server { child, endpoint, log: stderr }),
            None => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                let said = last_line(&mut stderr);
                Err(format!("server failed to start ({status}): {said}"))
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Has the server exited (crashed) already?
    pub fn exited(&mut self) -> Option<String> {
        self.child.try_wait().ok().flatten().map(|status| status.to_string())
    }

    /// SIGTERM, wait, judge; kills whatever is left.
    pub fn stop(mut self) -> Shutdown {
        let tree = procfs::tree(self.pid());
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGTERM);
        let started = Instant::now();
        let mut status = None;
        while started.elapsed() < STOP_LIMIT + Duration::from_secs(3) {
            if let Ok(Some(s)) = self.child.try_wait() {
                status = Some(s);
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        let stop_secs = started.elapsed().as_secs_f64();
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Whatever of the tree outlives the server (give it a moment).
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut left: Vec<i32> = tree.iter().copied().filter(|&p| p != self.pid() && procfs::alive(p)).collect();
        while !left.is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
            left.retain(|&p| procfs::alive(p));
        }
        for &pid in &left {
            // `pid` was a descendant of our server.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        Shutdown {
            exit_code: status.and_then(|s| s.code()),
            in_time: status.is_some() && stop_secs <= STOP_LIMIT.as_secs_f64(),
            stop_secs,
            leftover_processes: left.len() as u64,
            calibration: log_lines(&mut self.log).into_iter().rev().find(|l| l.contains(CALIBRATED)),
        }
    }
}

/// The non-empty lines of a server's log, trimmed (none if it cannot be read).
fn log_lines(log: &mut std::fs::File) -> Vec<String> {
    use std::io::{Read, Seek};
    let mut text = String::new();
    let _ = log.seek(std::io::SeekFrom::Start(0)).and_then(|_| log.read_to_string(&mut text));
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// The last non-empty line of a server's log, or a note that it said nothing.
fn last_line(log: &mut std::fs::File) -> String {
    log_lines(log).pop().unwrap_or_else(|| "it printed nothing".into())
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// For a child between fork and exec (a `pre_exec` hook): asks for
/// SIGTERM when its parent dies, then fails (the child exits before it
/// executes) if `parent` (the forking process, read before the fork) is
/// already gone, since a parent that died before the request took hold
/// sends nothing. Only async-signal-safe calls: prctl and getppid.
pub fn die_with_parent(parent: Pid) -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
    if nix::unistd::getppid() != parent {
        return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
    }
    Ok(())
}
