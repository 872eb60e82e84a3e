//! `loadgen agent --coordinator HOST:PORT`: loadgen as one of several load
//! generators driven by a coordinator (the bench, [`crate::coordinator`]).
//! The agent dials the coordinator, says who it is, is given its part of
//! the load, opens its connections and runs it with the same runner as
//! every other run ([`crate::run_controlled`]), on the start instant the
//! coordinator names. The protocol is in [`crate::protocol`].
//!
//! An agent never outlives its coordinator: a closed control channel or an
//! `abort`, at any point, ends the process at once (exit 1, one line). Nor
//! does it wait forever for one whose host has gone: before its options it
//! waits [`OPTIONS_TIMEOUT`], then [`COORDINATOR_SILENCE`] for each next
//! word until the start (the coordinator's heartbeats fill the gaps), and
//! TCP keepalive probes the control connection throughout, the load
//! included.

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use echo_common::clock;

use crate::env::Environment;
pub use crate::protocol::HEARTBEAT;
use crate::protocol::{self, COORDINATOR_SILENCE, MarkKind, Msg, PROTOCOL, VERSION};
use crate::{Event, LoadError, Opts};

/// How long the agent tries to reach the coordinator.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long it waits for a first word once connected: the coordinator
/// may be busy between two cells, the agent still in its listen queue.
pub const OPTIONS_TIMEOUT: Duration = Duration::from_secs(30);
/// TCP keepalive on the control connection: probes after this much quiet,
/// [`KEEPALIVE_PROBES`] of them a second apart, so that a coordinator host
/// that vanished is noticed within seconds, even during the load.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVE_PROBES: u32 = 3;
/// How long, after its report, it waits for the coordinator's `bye`.
const BYE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one agent to its end: `Ok` once its report was delivered (or the
/// load had no part for it), else the reason (one line) the caller prints
/// before exiting 1. `index` asks for that part of the load (`--index`);
/// none takes any free one.
pub fn run(coordinator: &str, name: Option<String>, index: Option<u32>) -> Result<(), String> {
    let stream = dial(coordinator)?;
    let _ = stream.set_nodelay(true);
    keep_alive(&stream);
    let me = index.map_or_else(|| "agent".to_owned(), |i| format!("agent {i}"));
    // On stdout, for whoever watches the agent (a pod's log): the bench
    // reads its agents over the protocol only.
    println!("loadgen {me}: connected to {coordinator}");
    let reader = stream.try_clone().map_err(|err| format!("cannot read the control channel: {err}"))?;
    let mut reader = BufReader::new(reader);
    let host = Environment::detect();
    let name = name.unwrap_or_else(|| host.hostname.clone());
    let hello =
        Msg::Hello { protocol: PROTOCOL, version: VERSION.into(), name, index, host, monotonic_ns: clock::now_ns() };
    send(&stream, &hello)?;
    deadline(&reader, OPTIONS_TIMEOUT)?;
    let opts = loop {
        match receive(&mut reader)? {
            // Taken, waiting for the other agents: the coordinator is there.
            Msg::Heartbeat { .. } => deadline(&reader, COORDINATOR_SILENCE)?,
            Msg::Options { index: given, options, hash, .. } => {
                let mine = protocol::options_hash(&options);
                let reason = if mine != hash {
                    format!(
                        "options hash mismatch: the coordinator sent {hash}, this loadgen {VERSION} reads {mine} \
                         (an option it does not know?)"
                    )
                } else if index.is_some_and(|i| i != given) {
                    format!("given part {given} of the load, but this is {me}")
                } else {
                    break Opts { progress: false, ..*options };
                };
                let _ = send(&stream, &Msg::Refused { reason: reason.clone() });
                return Err(reason);
            }
            Msg::Bye => {
                println!("loadgen {me}: no part of this load for it (it has fewer connections than agents)");
                return Ok(());
            }
            Msg::Refused { reason } => return Err(format!("refused by the coordinator: {reason}")),
            Msg::Abort { reason } => return Err(format!("aborted by the coordinator: {reason}")),
            other => return Err(format!("the coordinator said {other:?} instead of the options")),
        }
    };
    // Until the start, the coordinator says something every heartbeat.
    deadline(&reader, COORDINATOR_SILENCE)?;

    let reported = Arc::new(AtomicBool::new(false));
    let mut reader = Some(reader);
    let mut watcher = None;
    let last_beat = Cell::new(Instant::now());
    let result = crate::run_controlled(
        &opts,
        &mut |event| {
            let msg = match event {
                Event::WindowOpened => Msg::Mark { mark: MarkKind::Begin, monotonic_ns: clock::now_ns() },
                Event::WindowClosed => Msg::Mark { mark: MarkKind::End, monotonic_ns: clock::now_ns() },
                Event::Progress { .. } if last_beat.get().elapsed() >= HEARTBEAT => {
                    last_beat.set(Instant::now());
                    Msg::Heartbeat { monotonic_ns: clock::now_ns() }
                }
                Event::Progress { .. } => return,
            };
            // A channel that fails here is the watcher's to notice.
            let _ = send(&stream, &msg);
        },
        &mut || {
            send(&stream, &Msg::Ready { opened_ns: clock::now_ns() }).map_err(LoadError::Aborted)?;
            let Some(mut lines) = reader.take() else {
                return Err(LoadError::Aborted("asked to start twice".into()));
            };
            loop {
                match receive(&mut lines).map_err(LoadError::Aborted)? {
                    Msg::Heartbeat { .. } => {}
                    Msg::Ping { seq, sent_ns } => {
                        let pong = Msg::Pong { seq, sent_ns, agent_ns: clock::now_ns() };
                        send(&stream, &pong).map_err(LoadError::Aborted)?;
                    }
                    Msg::Start { t0_ns } => {
                        // During the load the coordinator says nothing:
                        // keepalive alone tells whether it is still there.
                        deadline(&lines, Duration::ZERO).map_err(LoadError::Aborted)?;
                        watcher = Some(watch(lines, Arc::clone(&reported)));
                        last_beat.set(Instant::now());
                        return Ok(clock::to_instant(t0_ns));
                    }
                    Msg::Abort { reason } => return Err(LoadError::Aborted(reason)),
                    other => {
                        return Err(LoadError::Aborted(format!("the coordinator said {other:?} before the start")));
                    }
                }
            }
        },
    );
    let report = match result {
        Ok(report) => report,
        Err(err) => {
            let message = err.to_string();
            let _ = send(&stream, &Msg::Error { message: message.clone() });
            return Err(message);
        }
    };
    reported.store(true, Ordering::SeqCst);
    send(&stream, &Msg::Report { report: Box::new(report) })?;
    // The coordinator's `bye` (or its close) ends the conversation.
    if let Some(done) = watcher {
        let _ = done.recv_timeout(BYE_TIMEOUT);
    }
    Ok(())
}

/// Checks the shape of `--coordinator`: `HOST:PORT` (`[IPv6]:PORT`), a
/// port from 1 to 65535. Whether the host resolves is found when dialling.
pub fn parse_coordinator(text: &str) -> Result<String, String> {
    let bad = || format!("invalid coordinator {text:?}: expected HOST:PORT");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !host.is_empty() => Ok(text.to_owned()),
        _ => Err(bad()),
    }
}

/// Connects to `coordinator` (`HOST:PORT`), retrying while it is not yet
/// listening, up to [`DIAL_TIMEOUT`].
fn dial(coordinator: &str) -> Result<TcpStream, String> {
    let addrs: Vec<_> = coordinator
        .to_socket_addrs()
        .map_err(|err| format!("bad coordinator address {coordinator:?}: {err}"))?
        .collect();
    let deadline = Instant::now() + DIAL_TIMEOUT;
    let mut last = String::from("no address");
    while Instant::now() < deadline {
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, Duration::from_secs(1)) {
                Ok(stream) => return Ok(stream),
                Err(err) => last = err.to_string(),
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    Err(format!("cannot reach the coordinator at {coordinator}: {last}"))
}

/// How long each read of the control channel may wait from now on
/// (`Duration::ZERO`: for ever).
fn deadline(reader: &BufReader<TcpStream>, wait: Duration) -> Result<(), String> {
    let wait = (!wait.is_zero()).then_some(wait);
    reader.get_ref().set_read_timeout(wait).map_err(|err| format!("cannot set the control channel's deadline: {err}"))
}

/// TCP keepalive on the control connection ([`KEEPALIVE_IDLE`]). Best
/// effort: the read deadlines bound every wait before the start anyway.
fn keep_alive(stream: &TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = setsockopt(stream, sockopt::KeepAlive, &true);
    let _ = setsockopt(stream, sockopt::TcpKeepIdle, &(KEEPALIVE_IDLE.as_secs() as u32));
    let _ = setsockopt(stream, sockopt::TcpKeepInterval, &1);
    let _ = setsockopt(stream, sockopt::TcpKeepCount, &KEEPALIVE_PROBES);
}

fn send(mut stream: &TcpStream, msg: &Msg) -> Result<(), String> {
    stream
        .write_all(msg.line().as_bytes())
        .and_then(|()| stream.flush())
        .map_err(|err| format!("cannot write to the coordinator: {err}"))
}

/// The next message; a closed channel or an unreadable line is an error.
fn receive(reader: &mut BufReader<TcpStream>) -> Result<Msg, String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => Err("the coordinator closed the control channel".into()),
        Ok(_) => {
            serde_json::from_str(line.trim()).map_err(|err| format!("the coordinator said {:?}: {err}", line.trim()))
        }
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
            let waited = reader.get_ref().read_timeout().ok().flatten().unwrap_or_default();
            Err(format!("the coordinator said nothing for {waited:?} (gone, or its host unreachable)"))
        }
        Err(err) if err.kind() == io::ErrorKind::TimedOut => {
            Err("the coordinator's host stopped answering (TCP keepalive)".into())
        }
        Err(err) => Err(format!("cannot read the control channel: {err}")),
    }
}

/// Reads the control channel during the run: `bye` after the report ends
/// the conversation (said on the returned channel); a closed channel or
/// an `abort` before the report ends the process, so that no agent loads a
/// server its coordinator has given up on.
fn watch(mut lines: BufReader<TcpStream>, reported: Arc<AtomicBool>) -> mpsc::Receiver<()> {
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        let why = match receive(&mut lines) {
            Ok(Msg::Bye) => None,
            Ok(Msg::Abort { reason }) => Some(format!("aborted by the coordinator: {reason}")),
            Ok(other) => Some(format!("the coordinator said {other:?} during the run")),
            Err(err) => Some(err),
        };
        match why {
            Some(why) if !reported.load(Ordering::SeqCst) => {
                eprintln!("loadgen agent: {why}");
                std::process::exit(1);
            }
            _ => {
                let _ = done.send(());
            }
        }
    });
    finished
}
