//! Test harness: start a real `echo-server` on 127.0.0.1:0 or on a Unix
//! socket in a temporary directory, talk to it over real sockets, read its
//! process tree from /proc, and always stop it (Drop).

#![allow(dead_code, unused_imports)] // each test binary uses a different part of the harness

use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

pub use echo_common::{Endpoint, ModelInfo, Transport};
use nix::sched::{CpuSet, sched_setaffinity};
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
    stdout: Arc<Captured>,
    stderr: Arc<Captured>,
    /// Set once the server is seen to have exited: from then on its output
    /// is read to the end before it is returned.
    exited: Option<ExitStatus>,
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
    /// The one CPU the server (all its threads and children) may run on;
    /// default: the test's own affinity mask.
    pub cpu: Option<usize>,
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

/// How long a pipe may stay open after the server has exited: its children
/// (`process`, `prefork`) hold it too, and die with it.
const PIPE_CLOSE: Duration = Duration::from_secs(5);

impl Server {
    pub fn start(model: &ModelInfo, transport: Transport, args: &[&str]) -> Server {
        Server::start_with(model, transport, Launch { args, ..Launch::default() })
    }

    pub fn start_with(model: &ModelInfo, transport: Transport, launch: Launch<'_>) -> Server {
        raise_own_fd_limit();
        let (fresh, dir) = fresh_addr(transport);
        let addr = launch.addr.unwrap_or(&fresh);
        let (mut child, stdout, stderr) = spawn(model, addr, &launch);
        let name = &model.name;
        // The first line, whole (or the pipe closed without one).
        let first = stdout.wait_until(Duration::from_secs(15), |text, _| text.contains('\n'));
        let Ok(first) = first else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}: no `listening on` line within 15 s; stderr: {}", stderr.to_end(PIPE_CLOSE));
        };
        let line = first.lines().next().unwrap_or_default().to_owned();
        let Some(endpoint) = line.strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}: unexpected first line {line:?}; stderr: {}", stderr.to_end(PIPE_CLOSE));
        };
        let endpoint = Endpoint::parse(endpoint.trim()).expect("listening line carries an endpoint");
        Server { child, endpoint, stdout, stderr, exited: None, _dir: dir }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What the server wrote on stderr: so far while it runs; all of it
    /// (up to the pipe's close) once it has been seen to exit.
    pub fn stderr(&self) -> String {
        self.output(&self.stderr)
    }

    /// What the server wrote on stdout, as [`Server::stderr`].
    pub fn stdout(&self) -> String {
        self.output(&self.stdout)
    }

    fn output(&self, captured: &Captured) -> String {
        match self.exited {
            Some(_) => captured.to_end(PIPE_CLOSE),
            None => captured.snapshot(),
        }
    }

    /// Waits up to `limit` for a line of stderr containing `needle`; returns
    /// it, or what stderr held at the deadline.
    pub fn wait_for_stderr(&self, needle: &str, limit: Duration) -> Result<String, String> {
        let text = self.stderr.wait_until(limit, |text, _| text.lines().any(|line| line.contains(needle)))?;
        Ok(text.lines().find(|line| line.contains(needle)).unwrap_or_default().to_owned())
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        self.poll_exit().is_none()
    }

    fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    /// Sends SIGTERM and waits up to `limit`; returns the status and how long it took.
    pub fn terminate(&mut self, limit: Duration) -> (Option<ExitStatus>, Duration) {
        signal(self.pid(), Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.poll_exit() {
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

    /// Waits up to `limit` until every thread of the server's process tree
    /// is asleep at once (state `S` in `/proc/<pid>/task/<tid>/stat`): it
    /// has done what it was given and waits for something to happen.
    /// `Err` names the threads still awake at the deadline.
    pub fn wait_until_asleep(&self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let awake = awake_threads(&self.tree());
            if awake.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("threads still awake after {limit:?}: {}", awake.join(", ")));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The threads of `pids` not asleep, as `name (tid): state`; threads that
/// end while they are read are skipped.
fn awake_threads(pids: &[i32]) -> Vec<String> {
    let mut awake = Vec::new();
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.flatten() {
            let Ok(text) = std::fs::read_to_string(task.path().join("stat")) else { continue };
            let stat = echo_common::procfs::parse_stat(&text).expect("/proc/<pid>/task/<tid>/stat parses");
            // `S`: asleep, waiting for an event. `I` (idle) is a kernel
            // thread's; anything else (`R`, `D`) is at work.
            if stat.state != 'S' {
                let name = text.split_once('(').and_then(|(_, rest)| rest.rsplit_once(')')).map_or("?", |(n, _)| n);
                awake.push(format!("{name} ({}): {}", task.file_name().to_string_lossy(), stat.state));
            }
        }
    }
    awake
}

fn reading(pid: i32) -> echo_common::procfs::TreeReading {
    echo_common::procfs::read_tree(pid, false).expect("/proc parses").expect("server is alive")
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.poll_exit().is_some() {
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

/// Everything a server wrote on one of its pipes, read by a thread of its
/// own until the pipe closes (every process holding its write end has
/// exited), so that the server never blocks on a full pipe and a reader can
/// wait for what it needs: a line, or the end.
pub struct Captured {
    /// The text so far, and whether the pipe has closed.
    state: Mutex<(String, bool)>,
    changed: Condvar,
}

impl Captured {
    /// Starts reading `pipe` on a thread of its own.
    fn read(mut pipe: impl Read + Send + 'static) -> Arc<Captured> {
        let captured = Arc::new(Captured { state: Mutex::new((String::new(), false)), changed: Condvar::new() });
        let sink = Arc::clone(&captured);
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                let n = pipe.read(&mut chunk).unwrap_or(0);
                let mut state = sink.state.lock().unwrap();
                if n == 0 {
                    state.1 = true;
                } else {
                    state.0.push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
                sink.changed.notify_all();
                if n == 0 {
                    return;
                }
            }
        });
        captured
    }

    /// What has arrived so far.
    pub fn snapshot(&self) -> String {
        self.state.lock().unwrap().0.clone()
    }

    /// Waits up to `limit` until `done(text, closed)`; returns the text, or
    /// `Err` with the text at the deadline (or at the close, if `done` is
    /// still false then: nothing more can come).
    pub fn wait_until(&self, limit: Duration, done: impl Fn(&str, bool) -> bool) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        let mut state = self.state.lock().unwrap();
        loop {
            if done(&state.0, state.1) {
                return Ok(state.0.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if state.1 || left.is_zero() {
                return Err(state.0.clone());
            }
            state = self.changed.wait_timeout(state, left).unwrap().0;
        }
    }

    /// Everything, up to the pipe's close; panics if it stays open `limit`.
    pub fn to_end(&self, limit: Duration) -> String {
        self.wait_until(limit, |_, closed| closed)
            .unwrap_or_else(|text| panic!("a server's pipe still open {limit:?} after it exited; so far: {text:?}"))
    }
}

/// Starts `echo-server <model> --addr <addr> <args…>` with the rest of
/// `launch`, stdout and stderr piped and each read to its end on a thread
/// of its own.
pub fn spawn(model: &ModelInfo, addr: &str, launch: &Launch<'_>) -> (Child, Arc<Captured>, Arc<Captured>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_echo-server"));
    command
        .arg(model.name.as_ref())
        .args(["--addr", addr])
        .args(launch.args)
        .env("RUST_LOG", launch.log.unwrap_or("warn"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(limit) = launch.nofile {
        // SAFETY: between fork and exec we only call setrlimit, which is
        // async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(move || setrlimit(Resource::RLIMIT_NOFILE, limit, limit).map_err(io::Error::from));
        }
    }
    if let Some(cpu) = launch.cpu {
        let mut mask = CpuSet::new();
        mask.set(cpu).expect("a CPU number within the mask's size");
        // SAFETY: between fork and exec we only call sched_setaffinity on a
        // mask built before the fork: a system call, async-signal-safe, that
        // touches no memory of the parent's.
        unsafe {
            command.pre_exec(move || sched_setaffinity(Pid::from_raw(0), &mask).map_err(io::Error::from));
        }
    }
    let mut child = command.spawn().expect("spawn echo-server");
    let stdout = Captured::read(child.stdout.take().expect("stdout is piped"));
    let stderr = Captured::read(child.stderr.take().expect("stderr is piped"));
    (child, stdout, stderr)
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
    let (mut child, _stdout, stderr) = spawn(model, addr, &launch);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            // The pipe closes once every process holding it is gone (a
            // child of `process` or `prefork` dies with its parent).
            return (status, stderr.to_end(PIPE_CLOSE));
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
