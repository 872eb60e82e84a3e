//! Test harness: start a real `echo-server` on 127.0.0.1:0 or on a Unix
//! socket in a temporary directory, talk to it over real sockets, read its
//! process tree from /proc, and always stop it (Drop).

#![allow(dead_code, unused_imports)] // each test binary uses a different part of the harness

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

pub use echo_common::{Endpoint, ModelInfo, Transport};
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use socket2::{Domain, SockAddr, Socket, Type};

/// Upper bound on any single socket operation in the tests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A running server; SIGTERM (then SIGKILL) on drop.
pub struct Server {
    child: Child,
    pub endpoint: Endpoint,
    stderr: Arc<Mutex<String>>,
    /// Holds a Unix socket's directory until the server is gone.
    _dir: Option<tempfile::TempDir>,
}

/// Options for [`Server::start_with`].
#[derive(Default)]
pub struct Launch<'a> {
    pub args: &'a [&'a str],
    /// Where to listen; default: `127.0.0.1:0`, or a fresh socket path for Unix.
    pub addr: Option<&'a str>,
    /// RLIMIT_NOFILE (soft and hard) for the server.
    pub nofile: Option<u64>,
    /// The server's RUST_LOG; default `warn`.
    pub log: Option<&'a str>,
}

/// A fresh listening address of `transport`: port 0, or a socket path in a
/// new temporary directory (kept alive by the returned guard).
pub fn fresh_addr(transport: Transport) -> (String, Option<tempfile::TempDir>) {
    match transport {
        Transport::Tcp => ("127.0.0.1:0".into(), None),
        Transport::Udp => ("udp:127.0.0.1:0".into(), None),
        Transport::Unix => {
            let dir = tempfile::tempdir().expect("temporary directory");
            (format!("unix:{}", dir.path().join("echo.sock").display()), Some(dir))
        }
    }
}

impl Server {
    pub fn start(model: &ModelInfo, transport: Transport, args: &[&str]) -> Server {
        Server::start_with(model, transport, Launch { args, ..Launch::default() })
    }

    pub fn start_with(model: &ModelInfo, transport: Transport, launch: Launch<'_>) -> Server {
        raise_own_fd_limit();
        let (fresh, dir) = fresh_addr(transport);
        let addr = launch.addr.unwrap_or(&fresh);
        let (mut child, stderr, _drain) = spawn(model, addr, launch.args, launch.nofile, launch.log);
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let name = &model.name;
        let line = match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("{name}: no `listening on` line within 15 s; stderr: {}", stderr.lock().unwrap());
            }
        };
        let Some(endpoint) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}: unexpected first line {line:?}; stderr: {}", stderr.lock().unwrap());
        };
        let endpoint = Endpoint::parse(endpoint).expect("listening line carries an endpoint");
        Server { child, endpoint, stderr, _dir: dir }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends SIGTERM and waits up to `limit`; returns the status and how long it took.
    pub fn terminate(&mut self, limit: Duration) -> (Option<ExitStatus>, Duration) {
        signal(self.pid(), Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (Some(status), start.elapsed());
            }
            thread::sleep(Duration::from_millis(5));
        }
        (None, start.elapsed())
    }

    /// PIDs of the server and all its descendants.
    pub fn tree(&self) -> Vec<i32> {
        process_tree(self.pid())
    }

    /// VmRSS summed over the process tree, in KiB.
    pub fn rss_kib(&self) -> u64 {
        reading(self.pid()).rss_kib
    }

    /// User + system CPU time of the process tree (reaped children included), in seconds.
    pub fn cpu_secs(&self) -> f64 {
        let r = reading(self.pid());
        r.user_secs + r.sys_secs
    }
}

fn reading(pid: i32) -> echo_common::procfs::TreeReading {
    echo_common::procfs::read_tree(pid, false).expect("/proc parses").expect("server is alive")
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let tree = self.tree();
        let (status, _) = self.terminate(Duration::from_secs(3));
        if status.is_none() {
            for pid in tree {
                signal(pid, Signal::SIGKILL);
            }
            let _ = self.child.wait();
        }
    }
}

/// Starts `echo-server <model> --addr <addr> <args…>` with piped stdout and
/// stderr (stderr drained into a buffer so the server never blocks on it;
/// the drain thread ends when the pipe closes).
pub fn spawn(
    model: &ModelInfo,
    addr: &str,
    args: &[&str],
    nofile: Option<u64>,
    log: Option<&str>,
) -> (Child, Arc<Mutex<String>>, thread::JoinHandle<()>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_echo-server"));
    command
        .arg(model.name.as_ref())
        .args(["--addr", addr])
        .args(args)
        .env("RUST_LOG", log.unwrap_or("warn"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(limit) = nofile {
        // SAFETY: between fork and exec we only call setrlimit, which is
        // async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(move || setrlimit(Resource::RLIMIT_NOFILE, limit, limit).map_err(io::Error::from));
        }
    }
    let mut child = command.spawn().expect("spawn echo-server");
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let sink = Arc::clone(&stderr);
    let drain = thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    (child, stderr, drain)
}

/// Runs the server to completion (for start-up failures); kills it after `limit`.
pub fn run_to_exit(model: &ModelInfo, addr: &str, limit: Duration) -> (ExitStatus, String) {
    run_to_exit_with(model, addr, &[], limit)
}

/// [`run_to_exit`] with more arguments.
pub fn run_to_exit_with(model: &ModelInfo, addr: &str, args: &[&str], limit: Duration) -> (ExitStatus, String) {
    run_launch_to_exit(model, Launch { args, addr: Some(addr), ..Launch::default() }, limit)
}

/// [`run_to_exit`] with any [`Launch`] options (`addr` default
/// `127.0.0.1:0`; `log` default `warn`). Returns all of stderr: what was
/// written up to the pipe's close, not what had arrived when the process
/// exited (a panic's message and backtrace come in several writes).
pub fn run_launch_to_exit(model: &ModelInfo, launch: Launch<'_>, limit: Duration) -> (ExitStatus, String) {
    let addr = launch.addr.unwrap_or("127.0.0.1:0");
    let (mut child, stderr, drain) = spawn(model, addr, launch.args, launch.nofile, launch.log);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            // The pipe closes once every process holding it is gone (a
            // child of `process` or `prefork` dies with its parent).
            let deadline = Instant::now() + Duration::from_secs(5);
            while !drain.is_finished() {
                assert!(Instant::now() < deadline, "{}: stderr still open 5 s after exit", model.name);
                thread::sleep(Duration::from_millis(5));
            }
            return (status, stderr.lock().unwrap().clone());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let status = child.wait().expect("wait");
            panic!("{} did not exit within {limit:?} (status after kill: {:?})", model.name, status.signal());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A client socket of either transport: socket2's `Socket` reads, writes,
/// half-closes and lingers the same way over TCP and Unix sockets.
pub type Client = Socket;

/// Connects to `endpoint` within `timeout`.
pub fn try_connect(endpoint: &Endpoint, timeout: Duration) -> io::Result<Client> {
    let (domain, addr) = match endpoint {
        Endpoint::Tcp(addr) => (Domain::for_address(*addr), SockAddr::from(*addr)),
        Endpoint::Unix(path) => (Domain::UNIX, SockAddr::unix(path)?),
        Endpoint::Udp(_) => return Err(io::Error::other("udp has no connection: use a UdpSocket")),
    };
    let socket = Socket::new(domain, Type::STREAM, None)?;
    socket.connect_timeout(&addr, timeout)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.set_write_timeout(Some(timeout))?;
    if matches!(endpoint, Endpoint::Tcp(_)) {
        socket.set_nodelay(true)?;
    }
    Ok(socket)
}

/// A connected client with timeouts, so no test can hang.
pub fn connect(endpoint: &Endpoint) -> Client {
    try_connect(endpoint, IO_TIMEOUT).expect("connect")
}

/// Writes `msg` and reads back exactly as many bytes, which must be equal.
pub fn roundtrip(stream: &mut Client, msg: &[u8]) -> io::Result<()> {
    stream.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    stream.read_exact(&mut back)?;
    if back != msg {
        return Err(io::Error::other("echo differs from what was sent"));
    }
    Ok(())
}

/// Sends `payload` from one thread while reading the echo in this one (so
/// neither side can deadlock on full buffers), half-closes, and returns
/// everything received up to EOF.
pub fn echo_all(endpoint: &Endpoint, payload: Vec<u8>) -> Vec<u8> {
    let len = payload.len();
    let mut stream = connect(endpoint);
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        writer.write_all(&payload).expect("write payload");
        writer.shutdown(std::net::Shutdown::Write).expect("half-close");
    });
    let mut received = Vec::new();
    if let Err(err) = stream.read_to_end(&mut received) {
        panic!("read echo to EOF: {err} after {} of {len} bytes", received.len());
    }
    sender.join().unwrap();
    received
}

/// Random bytes from a seeded generator (reproducible failures).
pub fn random_bytes(rng: &mut fastrand::Rng, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rng.fill(&mut bytes);
    bytes
}

/// Retries `attempt` until it succeeds or `limit` passes.
pub fn eventually<T>(limit: Duration, mut attempt: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let start = Instant::now();
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(err) if start.elapsed() >= limit => return Err(err),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

pub fn signal(pid: i32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid), sig);
}

pub use echo_common::procfs::{alive, tree as process_tree};

/// Tests hold up to ~1,000 sockets each, several tests at a time.
fn raise_own_fd_limit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = echo_common::limits::raise_nofile(u64::MAX);
    });
}
