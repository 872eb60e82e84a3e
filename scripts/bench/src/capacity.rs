//! The capacity scenario: hold N idle connections, measure what they cost
//! the server, then send one echo on each and count those not served.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use echo_common::Endpoint;
use echo_common::stream::AsyncStream;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::procfs::{TreeReading, read_tree, socket_inodes};

/// Time allowed for all N connections to be made, and for all N echoes.
const PHASE_LIMIT: Duration = Duration::from_secs(20);
/// The idle connections settle at least this long before the server is measured…
const SETTLE: Duration = Duration::from_millis(1000);
/// …and until its thread and process counts have not changed for this long
/// (the `process` model is still spawning children well after the last
/// connect has returned)…
const STABLE_FOR: Duration = Duration::from_millis(600);
/// …but no longer than this.
const SETTLE_LIMIT: Duration = Duration::from_secs(20);
/// Connects in flight at once.
const CONNECTS_IN_FLIGHT: usize = 256;
/// The one echo each held connection sends.
pub const PROBE: &[u8] = b"capacity probe: one echo per held connection";

/// What N idle connections cost a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub requested: u64,
    /// Connections the client could open.
    pub established: u64,
    /// Of those, connections the server had accepted and still kept open
    /// when its memory was read: the sockets its process tree holds beyond
    /// those it held before (a connection left waiting in the listener's
    /// backlog is in no file table: `iterative`, `prefork`), at most the
    /// connections still open at the client's end (a non-blocking peek on
    /// each: end of file or a reset means the server had closed it, e.g. a
    /// full queue's accept-and-close).
    pub held: u64,
    /// Of the established connections not held, those still open at the
    /// client's end: waiting in the listener's backlog for an accept
    /// (`iterative`, `prefork`, which accept only when free). The others
    /// were closed by the server. Absent in results recorded before it was
    /// measured: see [`Capacity::not_held`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<u64>,
    pub pss_before_kib: u64,
    pub pss_held_kib: u64,
    pub rss_before_kib: u64,
    pub rss_held_kib: u64,
    /// (PSS held − PSS before) / held.
    pub pss_per_connection_kib: f64,
    /// (RSS held − RSS before) / held; counts shared pages once per process.
    pub rss_per_connection_kib: f64,
    pub threads: u64,
    pub processes: u64,
    /// Established connections whose one echo did not come back complete.
    pub not_served: u64,
    pub echo_secs: f64,
}

/// Runs the scenario against the server at `endpoint` whose PID is `pid`.
pub fn run(endpoint: &Endpoint, pid: i32, connections: u64) -> io::Result<Capacity> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let before = read(pid)?.ok_or_else(|| io::Error::other("server exited"))?;
        let sockets_before = socket_inodes(pid);
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(CONNECTS_IN_FLIGHT));
        let mut connecting = JoinSet::new();
        for _ in 0..connections {
            let gate = std::sync::Arc::clone(&gate);
            let endpoint = endpoint.clone();
            connecting.spawn(async move {
                let _permit = gate.acquire().await;
                let stream = tokio::time::timeout(Duration::from_secs(5), AsyncStream::connect(&endpoint)).await;
                stream.ok().and_then(Result::ok)
            });
        }
        let mut streams = Vec::new();
        let deadline = Instant::now() + PHASE_LIMIT;
        while let Ok(Some(joined)) = tokio::time::timeout_at(deadline.into(), connecting.join_next()).await {
            if let Ok(Some(stream)) = joined {
                streams.push(stream);
            }
        }
        connecting.abort_all();
        tokio::time::sleep(SETTLE).await;
        settle(pid).await;
        let held = read(pid)?.ok_or_else(|| io::Error::other("server exited while holding connections"))?;
        let accepted = socket_inodes(pid).difference(&sockets_before).count() as u64;
        let open = streams.iter().filter(|s| still_open(s.as_raw_fd())).count() as u64;

        let established = streams.len() as u64;
        let echo_started = Instant::now();
        let mut echoing = JoinSet::new();
        for mut stream in streams {
            echoing.spawn(async move {
                let mut back = vec![0u8; PROBE.len()];
                let served = stream.write_all(PROBE).await.is_ok()
                    && stream.read_exact(&mut back).await.is_ok()
                    && back == PROBE;
                (served, stream)
            });
        }
        let mut served = 0u64;
        // Every connection stays open until the phase ends: closing a served
        // one would free its server resources (a `pool` worker) for the next,
        // and the test would measure a chain of hand-offs, not capacity.
        let mut still_held = Vec::with_capacity(established as usize);
        let deadline = Instant::now() + PHASE_LIMIT.min(Duration::from_secs(5));
        while let Ok(Some(joined)) = tokio::time::timeout_at(deadline.into(), echoing.join_next()).await {
            if let Ok((ok, stream)) = joined {
                served += u64::from(ok);
                still_held.push(stream);
            }
        }
        echoing.abort_all();
        drop(still_held);
        Ok(summary(connections, (established, open, accepted), served, before, held, echo_started.elapsed()))
    })
}

/// The server's tree with PSS; a /proc that does not parse is an error.
fn read(pid: i32) -> io::Result<Option<TreeReading>> {
    read_tree(pid, true).map_err(io::Error::other)
}

/// Is the connection on `fd` still open at the server's end? A peek that
/// would block (nothing to read, nothing wrong) or finds data says yes; end
/// of file or an error (a reset) says the server closed it.
pub fn still_open(fd: RawFd) -> bool {
    use nix::sys::socket::{MsgFlags, recv};
    let mut byte = [0u8; 1];
    match recv(fd, &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT) {
        Ok(n) => n > 0,
        Err(nix::errno::Errno::EAGAIN) => true,
        Err(_) => false,
    }
}

/// Waits until the server's threads and processes stop changing.
async fn settle(pid: i32) {
    let started = Instant::now();
    let mut last = None;
    let mut since = Instant::now();
    while started.elapsed() < SETTLE_LIMIT {
        let now = read_tree(pid, false).ok().flatten().map(|r| (r.threads, r.processes));
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= STABLE_FOR {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `open`: established connections still open at the client's end;
/// `accepted`: sockets the server's tree holds beyond those it held before.
fn summary(
    requested: u64,
    (established, open, accepted): (u64, u64, u64),
    served: u64,
    before: TreeReading,
    held: TreeReading,
    echo: Duration,
) -> Capacity {
    // Held: accepted and still open. Open at the client but in no file
    // table of the server: waiting in the backlog.
    let (open, waiting) = (open.min(accepted), open.saturating_sub(accepted));
    let per = |after: u64, before: u64| (after as f64 - before as f64) / open.max(1) as f64;
    let (pss_before, pss_held) = (before.pss_kib.unwrap_or(0), held.pss_kib.unwrap_or(0));
    Capacity {
        requested,
        established,
        held: open,
        waiting: Some(waiting),
        pss_before_kib: pss_before,
        pss_held_kib: pss_held,
        rss_before_kib: before.rss_kib,
        rss_held_kib: held.rss_kib,
        pss_per_connection_kib: per(pss_held, pss_before),
        rss_per_connection_kib: per(held.rss_kib, before.rss_kib),
        threads: held.threads,
        processes: held.processes,
        not_served: established - served,
        echo_secs: echo.as_secs_f64(),
    }
}

impl Capacity {
    /// The established connections the server did not hold, as (waiting in
    /// the listener's backlog, closed by the server). Measured when the
    /// cell recorded `waiting`; for a cell recorded before, inferred from
    /// the model's declaration (`serves_at_once`): a model that held no
    /// more than it serves at once accepts only when free, so the rest
    /// waited in the backlog (`iterative`, `prefork`), while one that held
    /// more (`pool` with its queue full) had accepted and closed them.
    pub fn not_held(&self, serves_at_once: Option<u64>) -> (u64, u64) {
        let not_held = self.established.saturating_sub(self.held);
        let waiting = match self.waiting {
            Some(waiting) => waiting.min(not_held),
            None if serves_at_once.is_some_and(|n| self.held <= n) => not_held,
            None => 0,
        };
        (waiting, not_held - waiting)
    }
}
