//! Test harness: start a real `echo-server` on 127.0.0.1:0, talk to it over
//! real sockets, read its process tree from /proc, and always stop it (Drop).

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

pub use echo_servers::cli::Model;

/// Upper bound on any single socket operation in the tests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A running server; SIGTERM (then SIGKILL) on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

/// Options for [`Server::start_with`].
#[derive(Default)]
pub struct Launch<'a> {
    pub args: &'a [&'a str],
    pub addr: Option<&'a str>,
    /// RLIMIT_NOFILE (soft and hard) for the server.
    pub nofile: Option<u64>,
}

impl Server {
    pub fn start(model: Model, args: &[&str]) -> Server {
        Server::start_with(model, Launch { args, ..Launch::default() })
    }

    pub fn start_with(model: Model, launch: Launch<'_>) -> Server {
        raise_own_fd_limit();
        let (mut child, stderr) = spawn(model, launch.addr.unwrap_or("127.0.0.1:0"), launch.args, launch.nofile);
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("{model}: no `listening on` line within 15 s; stderr: {}", stderr.lock().unwrap());
            }
        };
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{model}: unexpected first line {line:?}; stderr: {}", stderr.lock().unwrap());
        };
        let addr = addr.parse().expect("listening line carries a socket address");
        Server { child, addr, stderr }
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
        signal(self.pid(), libc::SIGTERM);
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
        echo_servers::procfs::read_tree(self.pid(), false).map_or(0, |r| r.rss_kib)
    }

    /// User + system CPU time of the process tree (reaped children included), in seconds.
    pub fn cpu_secs(&self) -> f64 {
        echo_servers::procfs::read_tree(self.pid(), false).map_or(0.0, |r| r.user_secs + r.sys_secs)
    }
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
                signal(pid, libc::SIGKILL);
            }
            let _ = self.child.wait();
        }
    }
}

/// Starts `echo-server <model> --addr <addr> <args…>` with piped stdout and
/// stderr (stderr drained into a buffer so the server never blocks on it).
pub fn spawn(model: Model, addr: &str, args: &[&str], nofile: Option<u64>) -> (Child, Arc<Mutex<String>>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_echo-server"));
    command
        .arg(model.name())
        .args(["--addr", addr])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(limit) = nofile {
        let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
        // SAFETY: between fork and exec we only call setrlimit, which is
        // async-signal-safe and touches no memory but `rlimit`.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command.spawn().expect("spawn echo-server");
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let sink = Arc::clone(&stderr);
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    (child, stderr)
}

/// Runs the server to completion (for start-up failures); kills it after `limit`.
pub fn run_to_exit(model: Model, addr: &str, limit: Duration) -> (ExitStatus, String) {
    let (mut child, stderr) = spawn(model, addr, &[], None);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            // give the drain thread a moment to collect the last bytes
            let deadline = Instant::now() + Duration::from_secs(2);
            while stderr.lock().unwrap().is_empty() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            return (status, stderr.lock().unwrap().clone());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let status = child.wait().expect("wait");
            panic!("{model} did not exit within {limit:?} (status after kill: {:?})", status.signal());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A connected client socket with timeouts, so no test can hang.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Writes `msg` and reads back exactly as many bytes, which must be equal.
pub fn roundtrip(stream: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
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
pub fn echo_all(addr: SocketAddr, payload: Vec<u8>) -> Vec<u8> {
    let mut stream = connect(addr);
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        writer.write_all(&payload).expect("write payload");
        writer.shutdown(std::net::Shutdown::Write).expect("half-close");
    });
    let mut received = Vec::new();
    stream.read_to_end(&mut received).expect("read echo to EOF");
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

pub fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill only sends a signal.
    unsafe { libc::kill(pid, sig) };
}

pub use echo_servers::procfs::{alive, tree as process_tree};

/// Tests hold up to ~1,000 sockets each, several tests at a time.
fn raise_own_fd_limit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit read and write only the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    });
}
