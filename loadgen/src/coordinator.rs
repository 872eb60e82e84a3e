//! The coordinator of several `loadgen agent`s (the bench's side of the
//! agent protocol, [`crate::protocol`]): it listens, takes each agent's
//! `hello`, gives each its part of the load ([`Opts::split`]), waits until
//! every one has opened its connections (the READY barrier), measures each
//! agent's clock against its own, and names one start instant T0, which
//! each agent is told on its own clock. It is at each edge of the measured
//! window when the agents are (the caller reads the server there), watches
//! the 1 Hz heartbeats during the load, and collects the reports.
//!
//! Agents are told apart by the index each gives (`loadgen agent
//! --index`), not by the order they dial in: index i is given part i of
//! the load ([`Coordinator::accept_of`]).
//!
//! Any agent that fails, goes silent or reports nothing fails the whole
//! run, with the reason named: a partial sum is never returned.
//!
//! ```no_run
//! # use loadgen::coordinator::{Coordinator, Mark};
//! let mut coordinator = Coordinator::bind("127.0.0.1".parse().unwrap()).map_err(|e| e.to_string())?;
//! let addr = coordinator.addr(); // start the agents: loadgen agent --coordinator ADDR
//! coordinator.accept(2, std::time::Duration::from_secs(10))?;
//! let opts = loadgen::Opts { addr: "127.0.0.1:7000".into(), ..Default::default() };
//! let run = coordinator.run(&opts, &|| false, |_mark: Mark| {})?;
//! let total = run.merged().map_err(|e| e.to_string())?;
//! # Ok::<(), String>(())
//! ```

mod accept;

use std::cell::Cell;
use std::io::{self, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use echo_common::clock;
use serde::{Deserialize, Serialize};

use crate::env::Environment;
use crate::protocol::{self, ClockOffset, HEARTBEAT, MarkKind, Msg, PINGS, RoundTrip};
use crate::{LoadError, Opts, Report};

/// How long an agent has to say `hello` once connected.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a ping may go unanswered.
const PONG_TIMEOUT: Duration = Duration::from_secs(2);
/// An agent silent this long during the load has failed (it says
/// something every [`HEARTBEAT`]).
pub const SILENCE: Duration = Duration::from_secs(3);
/// Beyond the load's own timeouts, how long agents may take to connect
/// or to report.
const GRACE: Duration = Duration::from_secs(10);
/// The least time between the start being named and T0: enough for the
/// message to reach every agent and its threads to wake.
const START_AHEAD: Duration = Duration::from_millis(100);
/// How often waits look at the caller's `stop`.
const LOOK: Duration = Duration::from_millis(20);
/// The skew of the agents' marks, as a fraction of the window, above which
/// a run is flagged.
pub const SKEW_LIMIT: f64 = 0.01;

/// An edge of the measured window, when the coordinator reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Open,
    Close,
}

/// One agent's part of a run, as a cell records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    /// Its part of the load, from 0.
    pub index: u32,
    /// The name it gave (its host name unless told otherwise).
    pub name: String,
    /// The host facts it reported: CPU model, cores, kernel.
    pub host: Environment,
    /// Its clock against the coordinator's.
    pub clock: ClockOffset,
    /// When its marks (window opened, closed) reached the coordinator, on
    /// the coordinator's clock (CLOCK_MONOTONIC, ns).
    pub marks_ns: [u64; 2],
    /// When it marked them, by its own clock put on the coordinator's (ns):
    /// the arrivals less the trip and the coordinator's own delays.
    pub marked_ns: [u64; 2],
    /// Its report, on its own clock (latencies and `window_monotonic_ns`).
    pub report: Report,
}

/// A run every agent finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// T0 on the coordinator's clock (CLOCK_MONOTONIC, ns).
    pub t0_ns: u64,
    /// The spread of the agents' mark arrivals, the larger of the window's
    /// two edges, ns.
    pub skew_ns: u64,
    /// Set when the skew exceeds [`SKEW_LIMIT`] of the window: what a
    /// reader should know.
    pub skew_flag: Option<String>,
    pub agents: Vec<AgentReport>,
}

impl Run {
    /// The agents' reports merged exactly ([`crate::merge`]): counts summed,
    /// histograms added, throughput over the window every agent measured
    /// in (their windows put on the coordinator's clock first).
    pub fn merged(&self) -> Result<Report, LoadError> {
        let aligned: Vec<Report> = self
            .agents
            .iter()
            .map(|agent| {
                let mut report = agent.report.clone();
                report.window_monotonic_ns =
                    report.window_monotonic_ns.map(|w| w.map(|ns| agent.clock.to_coordinator(ns)));
                report
            })
            .collect();
        crate::merge(&aligned)
    }
}

/// What an agent's reader thread passes on.
#[derive(Debug)]
enum Incoming {
    Said(Msg),
    Garbled(String),
    Closed(String),
}

/// A connected agent.
#[derive(Debug)]
struct Link {
    name: String,
    host: Environment,
    stream: TcpStream,
    /// Its side of the channel, read from its `hello` on; a thread of its
    /// own reads it once every agent is in ([`Coordinator::accept_of`]).
    reader: Option<BufReader<TcpStream>>,
}

/// Listens for agents and drives one run with them.
#[derive(Debug)]
pub struct Coordinator {
    listener: TcpListener,
    /// In the order of their parts of the load.
    links: Vec<Link>,
    incoming: mpsc::Receiver<(usize, Incoming)>,
    sender: mpsc::Sender<(usize, Incoming)>,
    /// When the agents were last told anything, until the start: they are
    /// told a heartbeat when it is [`HEARTBEAT`] ago. `None` once started.
    told: Cell<Option<Instant>>,
}

impl Drop for Coordinator {
    /// Shuts every control channel down (the readers' copies too), so that
    /// each agent reads the end of it and exits, whatever it was doing.
    fn drop(&mut self) {
        for link in &self.links {
            let _ = link.stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Coordinator {
    /// Listens on `ip`, port 0 (see [`Coordinator::addr`]).
    pub fn bind(ip: IpAddr) -> io::Result<Coordinator> {
        Coordinator::bind_at(SocketAddr::new(ip, 0))
    }

    /// Listens on `addr`: a fixed port, for agents started by someone
    /// else (a Kubernetes Job, a firewall with one port open) that must
    /// know it in advance; port 0 picks one.
    pub fn bind_at(addr: SocketAddr) -> io::Result<Coordinator> {
        TcpListener::bind(addr).map(Coordinator::with_listener)
    }

    /// Listens on `listener`, bound already: a copy
    /// ([`TcpListener::try_clone`]) of one kept for many runs, so that
    /// agents that dial in between two runs wait in its queue.
    pub fn with_listener(listener: TcpListener) -> Coordinator {
        let (sender, incoming) = mpsc::channel();
        Coordinator { listener, links: Vec::new(), incoming, sender, told: Cell::new(Some(Instant::now())) }
    }

    /// Where agents dial: `--coordinator` of `loadgen agent`.
    pub fn addr(&self) -> SocketAddr {
        // A bound listener knows its address; 0.0.0.0:0 never reaches here.
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Runs `opts` split between the accepted agents, calling `at_mark`
    /// at the window's edges; every agent's report, or why there are none
    /// (one line naming the agent). `stop` is looked at during every wait:
    /// once it says so the run ends (`interrupted`). On any failure every
    /// agent is told to abort, and the control channels close.
    pub fn run(mut self, opts: &Opts, stop: &dyn Fn() -> bool, at_mark: impl FnMut(Mark)) -> Result<Run, String> {
        let result = self.drive(opts, stop, at_mark);
        match &result {
            Ok(_) => self.tell_all(&Msg::Bye),
            Err(reason) => self.tell_all(&Msg::Abort { reason: reason.clone() }),
        }
        result
    }

    fn tell_all(&self, msg: &Msg) {
        tell_each(&self.links, msg);
    }

    /// Before the start, a heartbeat to every agent when they were last
    /// told anything [`HEARTBEAT`] ago: an agent waiting for the others
    /// knows its coordinator is still there.
    fn beat<'a>(&self, links: impl IntoIterator<Item = &'a Link>) {
        if self.told.get().is_some_and(|told| told.elapsed() >= HEARTBEAT) {
            tell_each(links, &Msg::Heartbeat { monotonic_ns: clock::now_ns() });
            self.told.set(Some(Instant::now()));
        }
    }

    fn tell(&self, index: usize, msg: &Msg) -> Result<(), String> {
        (&self.links[index].stream)
            .write_all(msg.line().as_bytes())
            .map_err(|err| format!("{}: cannot be written to: {err}", self.who(index)))
    }

    /// `agent 1 (host-b)`.
    fn who(&self, index: usize) -> String {
        format!("agent {index} ({})", self.links[index].name)
    }

    /// The next message of any agent by `deadline` (`None` if none came);
    /// a closed or garbled channel, an `error`, a refusal or `stop` fail.
    fn next(&self, deadline: Instant, stop: &dyn Fn() -> bool) -> Result<Option<(usize, Msg)>, String> {
        loop {
            if stop() {
                return Err("interrupted".into());
            }
            self.beat(&self.links);
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            match self.incoming.recv_timeout((deadline - now).min(LOOK)) {
                Ok((index, Incoming::Said(Msg::Error { message }))) => {
                    return Err(format!("{} failed: {message}", self.who(index)));
                }
                Ok((index, Incoming::Said(Msg::Refused { reason }))) => {
                    return Err(format!("{} refused: {reason}", self.who(index)));
                }
                Ok((index, Incoming::Said(msg))) => return Ok(Some((index, msg))),
                Ok((index, Incoming::Garbled(why) | Incoming::Closed(why))) => {
                    return Err(format!("{} {why}", self.who(index)));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // The coordinator holds a sender itself: never disconnected.
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err("no agent left".into()),
            }
        }
    }

    fn drive(&mut self, opts: &Opts, stop: &dyn Fn() -> bool, mut at_mark: impl FnMut(Mark)) -> Result<Run, String> {
        let count = self.links.len();
        if count == 0 {
            return Err("no agent connected".into());
        }
        let parts = opts.split(count as u32)?;
        for (index, part) in parts.iter().enumerate() {
            let hash = protocol::options_hash(part);
            let options =
                Msg::Options { index: index as u32, count: count as u32, options: Box::new(part.clone()), hash };
            self.tell(index, &options)?;
        }

        // The READY barrier: every agent has attempted its connections.
        let connecting = opts.connect_timeout * (opts.connections / 256 + 1) + GRACE;
        let deadline = Instant::now() + connecting;
        let mut ready = vec![false; count];
        while ready.iter().any(|r| !r) {
            match self.next(deadline, stop)? {
                Some((index, Msg::Ready { .. })) => ready[index] = true,
                Some((index, other)) => return Err(format!("{} said {other:?} before it was ready", self.who(index))),
                None => {
                    let late = ready.iter().position(|r| !r).unwrap_or(0);
                    return Err(format!("{} was not ready after {connecting:?}", self.who(late)));
                }
            }
        }

        // Each agent's clock, from the shortest of its round trips.
        let mut clocks = Vec::with_capacity(count);
        for index in 0..count {
            let mut trips = Vec::with_capacity(PINGS as usize);
            for seq in 0..PINGS {
                let sent_ns = clock::now_ns();
                self.tell(index, &Msg::Ping { seq, sent_ns })?;
                match self.next(Instant::now() + PONG_TIMEOUT, stop)? {
                    Some((from, Msg::Pong { seq: s, sent_ns: back, agent_ns })) if from == index && s == seq => {
                        trips.push(RoundTrip { sent_ns: back, agent_ns, back_ns: clock::now_ns() });
                    }
                    Some((from, other)) => return Err(format!("{} said {other:?} instead of pong", self.who(from))),
                    None => return Err(format!("{} did not answer a ping within {PONG_TIMEOUT:?}", self.who(index))),
                }
            }
            // PINGS > 0 samples, each with a return after its send.
            clocks.push(ClockOffset::estimate(&trips).ok_or_else(|| format!("{}: no round trip", self.who(index)))?);
        }

        let longest_trip = Duration::from_nanos(clocks.iter().map(|c| c.rtt_ns).max().unwrap_or(0));
        let t0 = Instant::now() + START_AHEAD.max(longest_trip * 4);
        let t0_ns = clock::to_ns(t0);
        // From the start on, agents hear nothing more until their reports.
        self.told.set(None);
        for (index, offset) in clocks.iter().enumerate() {
            self.tell(index, &Msg::Start { t0_ns: offset.to_agent(t0_ns) })?;
        }

        // The load: heartbeats and marks only, until the reports.
        let mut heard = vec![Instant::now(); count];
        // Per agent and edge: when the mark arrived, and when the agent made it (its clock).
        let mut marks: Vec<[Option<(u64, u64)>; 2]> = vec![[None, None]; count];
        let mut reports: Vec<Option<Report>> = vec![None; count];
        let edges = [(Mark::Open, t0 + opts.warmup), (Mark::Close, t0 + opts.warmup + opts.duration)];
        let end = t0 + opts.warmup + opts.duration + opts.timeout + GRACE;
        for at in edges.into_iter().map(Some).chain([None]) {
            let until = at.map_or(end, |(_, at)| at);
            while Instant::now() < until && reports.iter().any(Option::is_none) {
                let look = (Instant::now() + Duration::from_millis(250)).min(until);
                match self.next(look, stop)? {
                    Some((index, Msg::Heartbeat { .. })) => heard[index] = Instant::now(),
                    Some((index, Msg::Mark { mark, monotonic_ns })) => {
                        heard[index] = Instant::now();
                        marks[index][mark as usize] = Some((clock::now_ns(), monotonic_ns));
                    }
                    Some((index, Msg::Report { report })) => {
                        heard[index] = Instant::now();
                        reports[index] = Some(*report);
                    }
                    Some((index, other)) => return Err(format!("{} said {other:?} during the load", self.who(index))),
                    None => {}
                }
                // Silence counts until an agent's window closes: then it may
                // wait up to its timeout for the messages still in flight.
                let silent = |i: usize| reports[i].is_none() && marks[i][1].is_none() && heard[i].elapsed() > SILENCE;
                if let Some(index) = (0..count).find(|&i| silent(i)) {
                    return Err(format!("{} sent no heartbeat for {SILENCE:?} during the load", self.who(index)));
                }
            }
            if let Some((mark, _)) = at {
                at_mark(mark);
            }
        }
        if let Some(index) = reports.iter().position(Option::is_none) {
            return Err(format!("{} sent no report by the end of the load", self.who(index)));
        }
        let reports = reports.into_iter().flatten();

        let mut agents = Vec::with_capacity(count);
        for (index, (report, clock)) in reports.zip(clocks).enumerate() {
            let [Some(begin), Some(end)] = marks[index] else {
                return Err(format!("{} reported without marking the window's edges", self.who(index)));
            };
            let link = &self.links[index];
            agents.push(AgentReport {
                index: index as u32,
                name: link.name.clone(),
                host: link.host.clone(),
                clock,
                marks_ns: [begin.0, end.0],
                marked_ns: [clock.to_coordinator(begin.1), clock.to_coordinator(end.1)],
                report,
            });
        }
        let arrivals: Vec<[u64; 2]> = agents.iter().map(|a| a.marks_ns).collect();
        let (skew_ns, skew_flag) = skew(&arrivals, opts.duration);
        Ok(Run { t0_ns, skew_ns, skew_flag, agents })
    }
}

/// Tells every agent of `links` `msg`; one that cannot be written to is
/// found by its reader.
fn tell_each<'a>(links: impl IntoIterator<Item = &'a Link>, msg: &Msg) {
    for link in links {
        let _ = (&link.stream).write_all(msg.line().as_bytes());
    }
}

/// The skew of a run: the spread of its agents' mark arrivals (`[begin,
/// end]` each, ns), the larger of the two edges; and a flag when it exceeds
/// [`SKEW_LIMIT`] of the `window`.
pub fn skew(arrivals: &[[u64; 2]], window: Duration) -> (u64, Option<String>) {
    let spread = |edge: usize| {
        let at = arrivals.iter().map(|a| a[edge]);
        at.clone().max().unwrap_or(0) - at.min().unwrap_or(0)
    };
    let skew_ns = spread(MarkKind::Begin as usize).max(spread(MarkKind::End as usize));
    let flag = (skew_ns as f64 > SKEW_LIMIT * window.as_nanos() as f64).then(|| {
        format!(
            "the agents' marks arrived up to {:.2} ms apart, more than {:.0} % of the {:.2} s window",
            skew_ns as f64 * 1e-6,
            100.0 * SKEW_LIMIT,
            window.as_secs_f64()
        )
    });
    (skew_ns, flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skew_above_one_percent_of_the_window_is_flagged() {
        let window = Duration::from_secs(10);
        // Begin marks 30 ms apart, end marks 120 ms apart: the skew is the larger.
        let (skew, flag) = skew(&[[1_000_000_000, 11_000_000_000], [1_030_000_000, 11_120_000_000]], window);
        assert_eq!(skew, 120_000_000);
        assert!(flag.unwrap().contains("120.00 ms"));
        let (skew, flag) = super::skew(&[[0, 10_000_000_000], [99_000_000, 10_050_000_000]], window);
        assert_eq!((skew, flag), (99_000_000, None), "below 1 % of 10 s");
    }
}
