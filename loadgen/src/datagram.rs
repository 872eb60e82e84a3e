//! The datagram engine: `--addr udp:IP:PORT`.
//!
//! UDP is not a stream in disguise: there is no connection to establish or
//! lose, and a datagram can be lost, duplicated or reordered, so this engine
//! counts what the stream engine never sees. Each `--connections` entry is
//! a *flow*: its own UDP socket (its own source port), `connect`ed to the
//! server so that the kernel drops datagrams from anyone else. Every
//! datagram is a [`Messages`] message — flow id and sequence number in its
//! header — so an echo is matched to its datagram by sequence, not by
//! arrival order, and then checked byte for byte.
//!
//! What becomes of each datagram ([`crate::stats::Datagrams`]): `ok`
//! (intact, and no later datagram of its flow came back first), `reordered`
//! (intact, but after a later one), `mismatched` (bytes differ), `lost` (no
//! echo within `--timeout`), or `send_failed` (by errno). A second echo of
//! one datagram is `duplicated`, an echo of one already counted lost is
//! `late`. Only `ok` counts as a request done and has its latency recorded,
//! so the percentiles cover delivered datagrams only; the loss percentage
//! goes beside them.
//!
//! Threads as in the stream engine: flow i runs on thread i mod T, the same
//! barriers and window, one [`Recorder`] per thread. Each thread is one
//! `mio` poll over its flows' sockets, written by hand rather than on tokio:
//! a datagram is one `send` and one `recv`, with no reads to reassemble, so
//! the loop needs no task per flow, only a timer heap for the open-loop
//! schedule. Memory per flow is bounded: at most `--pipeline` datagrams in
//! flight, and a fixed ring of recent sequence numbers' fates (to tell a
//! duplicate from a late echo).
//!
//! - Closed loop: a flow keeps `--pipeline` datagrams in flight; the next
//!   leaves in the same loop turn that freed a slot. A lost datagram frees
//!   its slot when its timeout expires, so a lossy server slows the loop
//!   instead of stalling it.
//! - Open loop (`--rate`): the stream engine's schedule ([`crate::pacer`])
//!   and coordinated-omission correction. A datagram leaves on its schedule
//!   whether or not the earlier ones were answered: up to `--window` (1,024
//!   by default) may be in flight per flow, and a lost one is counted at its
//!   timeout without holding the flow back. Only a full window holds a
//!   datagram back; it then leaves as soon as a slot frees, and its latency
//!   counts from its intended time on the server timeline (see
//!   [`crate::engine`]): the client's own lateness is never charged. The
//!   wait for a send time is the pacer's: a timerfd registered in the poll,
//!   armed shortly before the time, then a short spin of non-blocking polls.
//! - Timeouts: like the stream engine's watchdog, one scan of every flow a
//!   few times per timeout (at most every 100 ms), not a timer per datagram.
//!   Since a flow's datagrams leave in sequence order with one timeout, the
//!   oldest in flight is always the first to expire. An echo arriving after
//!   its timeout but before the scan is lost (and late) all the same.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use echo_common::Endpoint;
use echo_common::snmp::{self, UdpCounters};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use crate::engine::{Plan, Shared, ThreadResult};
use crate::message::{HEADER_LEN, Messages};
use crate::opts::Opts;
use crate::pacer::{InFlight, Paced, PacerWait, PreciseTimer, Schedule, ServerTimeline, SpinClock, Wait, WakeEstimate};
use crate::report::KernelUdp;
use crate::stats::{ConnectFailure, DatagramEvent, Recorder, Window};

/// The largest UDP payload over IPv4 (65,535 − 20 − 8).
pub const MAX_DATAGRAM: usize = echo_common::endpoint::UDP_PAYLOAD_MAX;
/// Sequence numbers whose fate a flow remembers (at least; more with a
/// deep pipeline): an echo older than that is counted late, whatever it is.
const HISTORY_MIN: usize = 1024;
/// Closed loop: after a failed send, the flow tries again this much later,
/// so that a full send buffer (EAGAIN) or an unreachable server does not
/// make the loop spin.
const SEND_RETRY: Duration = Duration::from_millis(1);
/// Consecutive receive errors on one socket before the loop turns to the
/// others (the socket is read again on the next turn).
const RECEIVE_ERRORS_PER_TURN: usize = 64;
/// The pacer's timer in the poll, beyond any flow's slot.
const TIMER: Token = Token(usize::MAX);

/// Why `opts` cannot run over UDP: one line for the user, or `Ok`.
pub fn check(opts: &Opts) -> Result<(), String> {
    if (opts.size as usize) < HEADER_LEN {
        return Err(format!(
            "udp: needs --size of at least {HEADER_LEN} bytes (a datagram carries its flow id and sequence number), got {}",
            opts.size
        ));
    }
    if opts.size as usize > MAX_DATAGRAM {
        return Err(format!("udp: --size is at most {MAX_DATAGRAM} bytes (one datagram), got {}", opts.size));
    }
    if opts.reconnect_every.is_some() {
        return Err("udp: has no connections to renew: --reconnect-every does not apply".into());
    }
    Ok(())
}

/// The kernel's UDP counters over the window: read when it opens and when
/// it closes. They are host-wide (every UDP socket of the network
/// namespace), so a neighbour's drops count too.
#[derive(Debug)]
pub struct KernelWindow {
    ipv6: bool,
    opened: Result<UdpCounters, String>,
}

impl KernelWindow {
    /// Reads the counters now, for a UDP endpoint; `None` for a stream.
    pub fn open(endpoint: &Endpoint) -> Option<KernelWindow> {
        let Endpoint::Udp(addr) = endpoint else { return None };
        let ipv6 = addr.is_ipv6();
        Some(KernelWindow { ipv6, opened: snmp::read_udp(ipv6).map_err(|e| e.to_string()) })
    }

    /// Reads them again: the difference, or why there is none.
    pub fn close(self) -> Result<KernelUdp, String> {
        let closed = snmp::read_udp(self.ipv6).map_err(|e| e.to_string());
        let counters = closed?.since(&self.opened?);
        let source = if self.ipv6 { "/proc/net/snmp6 Udp6" } else { "/proc/net/snmp Udp" };
        Ok(KernelUdp { source: source.into(), scope: "host".into(), counters })
    }
}

/// What the ring remembers of a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    InFlight,
    /// An echo came (ok, reordered or mismatched).
    Echoed,
    Lost,
    SendFailed,
}

/// One flow: a connected socket and its sequence numbers.
struct Flow {
    id: u32,
    socket: UdpSocket,
    messages: Messages,
    next_seq: u64,
    /// In sequence order, which is also send order: the front expires first.
    in_flight: VecDeque<InFlight>,
    /// The fate of sequence number s is `history[s % len]`, for the last
    /// `len` sequence numbers sent.
    history: Vec<Fate>,
    /// The highest sequence number echoed intact.
    highest: Option<u64>,
    /// Closed loop: no send before this (after a failed send).
    retry_at: Option<Instant>,
    /// Open loop: the intended send times.
    schedule: Option<Schedule>,
    /// Open loop: the next scheduled send is due, but the window is full.
    held: bool,
    /// Open loop: the coordinated-omission correction's timeline.
    timeline: ServerTimeline,
}

impl Flow {
    /// Records what became of `seq`, if it is recent enough to be in the
    /// ring: an old datagram decided late (a lost one whose timeout came
    /// after a thousand others) must not overwrite the slot a recent
    /// sequence number now holds.
    fn set_fate(&mut self, seq: u64, fate: Fate) {
        let len = self.history.len() as u64;
        if seq + len >= self.next_seq {
            self.history[(seq % len) as usize] = fate;
        }
    }

    /// What the ring knows of `seq` (sent), if it is recent enough.
    fn known(&self, seq: u64) -> Option<Fate> {
        let len = self.history.len() as u64;
        (seq + len >= self.next_seq).then(|| self.history[(seq % len) as usize])
    }

    fn next_tick(&self) -> Option<Instant> {
        self.schedule.as_ref().map(Schedule::peek)
    }
}

/// How a send went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Ok,
    /// Counted `send_failed`.
    Failed,
    /// Not sent: the window has closed.
    Closed,
}

/// One thread's engine state besides its flows.
struct Engine {
    plan: Arc<Plan>,
    recorder: Recorder,
    /// Due times: open-loop sends and closed-loop retries, by flow slot.
    /// Entries may be stale (the flow moved on); acting on one is harmless.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Sockets to read again on the next turn.
    reread: Vec<usize>,
    out: Vec<u8>,
    /// One byte more than a message, so a longer echo shows as one.
    inbox: Vec<u8>,
    /// Datagrams in flight per flow at most: `--pipeline` in closed loop,
    /// `--window` in open loop.
    limit: usize,
}

/// Body of one datagram thread: flows `slots` (global ids).
pub fn thread_main(index: usize, slots: Vec<u32>, plan: Arc<Plan>, shared: Arc<Shared>) -> io::Result<ThreadResult> {
    let setup = Poll::new().and_then(|poll| match plan.endpoint {
        Endpoint::Udp(server) => Ok((poll, server)),
        _ => Err(io::Error::other("the datagram engine runs udp: endpoints only")),
    });
    let (mut poll, server) = match setup {
        Ok(setup) => setup,
        Err(err) => {
            // Still meet the others at both barriers, or they would wait forever.
            shared.meet();
            shared.meet();
            return Err(err);
        }
    };
    // Phase 1: a socket per flow (no handshake: connect only sets the peer).
    let sockets: Vec<io::Result<UdpSocket>> = (0..slots.len())
        .map(|slot| {
            let mut socket = open(server)?;
            poll.registry().register(&mut socket, Token(slot), Interest::READABLE)?;
            Ok(socket)
        })
        .collect();
    shared.meet(); // every thread has its sockets…
    shared.meet(); // …and the main thread set the clock
    let window = shared.window().expect("the main thread sets the window before the second meeting");
    // A start set by a coordinator may lie ahead.
    std::thread::sleep(window.start.saturating_duration_since(Instant::now()));

    // Phase 2: load.
    let recorder = Recorder::new(window, index, Arc::clone(&shared.progress), slots.len());
    let size = plan.size;
    let limit = if plan.rate.is_some() { plan.window } else { plan.pipeline };
    let history = HISTORY_MIN.max(4 * limit);
    let start = window.start;
    let mut engine = Engine {
        plan: Arc::clone(&plan),
        recorder,
        timers: BinaryHeap::new(),
        reread: Vec::new(),
        out: vec![0; size],
        inbox: vec![0; size + 1],
        limit,
    };
    // Open loop: the pacer's timer, in the same poll as the sockets.
    let mut pacer = match plan.rate.map(|_| open_timer(&poll, plan.pacer)).transpose() {
        Ok(pacer) => pacer,
        Err(err) => return Err(io::Error::new(err.kind(), format!("cannot start the pacer's timer: {err}"))),
    };
    let mut flows: Vec<Option<Flow>> = Vec::with_capacity(slots.len());
    for (slot, (id, socket)) in slots.iter().zip(sockets).enumerate() {
        match socket {
            Ok(socket) => {
                engine.recorder.connects.established += 1;
                engine.recorder.established_slots[slot] = true;
                // Open loop: flow `id` sends every C/R seconds (on average),
                // staggered by 1/R.
                let schedule =
                    plan.rate.map(|rate| Schedule::new(plan.arrivals, plan.seed, start, *id, plan.connections, rate));
                flows.push(Some(Flow {
                    id: *id,
                    socket,
                    messages: Messages::new(*id, size),
                    next_seq: 0,
                    in_flight: VecDeque::with_capacity(limit.min(64)),
                    history: vec![Fate::SendFailed; history],
                    highest: None,
                    retry_at: None,
                    schedule,
                    held: false,
                    timeline: ServerTimeline::default(),
                }));
            }
            Err(err) => {
                engine.recorder.connects.failure(ConnectFailure::from_io(&err), true);
                let mut first = shared.first_connect_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| err.to_string());
                flows.push(None);
            }
        }
    }

    let now = Instant::now();
    for (slot, flow) in flows.iter_mut().enumerate() {
        if let Some(flow) = flow {
            match flow.next_tick() {
                Some(at) => engine.timers.push(Reverse((at, slot))),
                None => engine.fill(flow, slot, now),
            }
        }
    }
    let period = (plan.timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(100));
    let mut next_scan = now + period;
    let mut cpu_at_open = None;
    let mut spun_at_open = Duration::ZERO;
    let mut events = Events::with_capacity(1024);
    let stopped = loop {
        let now = Instant::now();
        if cpu_at_open.is_none() && now >= window.warm_end {
            cpu_at_open = Some(crate::cpu::thread_cpu_secs());
            spun_at_open = pacer.as_ref().map_or(Duration::ZERO, |p| p.spin.total_at(Instant::now()));
        }
        if now >= window.end {
            break now;
        }
        if now >= next_scan {
            for (slot, flow) in flows.iter_mut().enumerate() {
                if let Some(flow) = flow {
                    engine.expire(flow, slot, now);
                }
            }
            next_scan = now + period;
        }
        while let Some(&Reverse((at, slot))) = engine.timers.peek() {
            if at > now {
                break;
            }
            engine.timers.pop();
            if let Some(flow) = flows[slot].as_mut() {
                engine.due(flow, slot, now);
            }
        }
        for slot in std::mem::take(&mut engine.reread) {
            if let Some(flow) = flows[slot].as_mut() {
                engine.receive(flow, slot);
            }
        }
        // Sleep until the next thing to do, or a datagram arrives. The
        // coarse wake-ups (the scan, the window's edges) are the poll's
        // timeout, in milliseconds; a send time is the pacer's: its timer
        // wakes the poll just before it, then the loop spins (polls without
        // blocking) until it has come.
        let mut wake = next_scan.min(window.end);
        if cpu_at_open.is_none() {
            wake = wake.min(window.warm_end);
        }
        let mut spin = !engine.reread.is_empty();
        if engine.timers.peek().is_none() {
            // Nothing scheduled: whatever the loop does now is no spin of the pacer's.
            if let Some(pacer) = &mut pacer {
                pacer.spin.stopped(Instant::now());
            }
        }
        if let Some(&Reverse((at, _))) = engine.timers.peek() {
            match &mut pacer {
                Some(pacer) => {
                    let now = Instant::now();
                    match pacer.estimate.plan(at, now) {
                        Wait::Due | Wait::Spin => {
                            spin = true;
                            pacer.spin.spinning(now);
                        }
                        Wait::Sleep(wake_at) => {
                            pacer.spin.stopped(now);
                            pacer.arm(wake_at)?;
                        }
                    }
                }
                // Closed loop: only retries after a failed send, 1 ms apart.
                None => wake = wake.min(at),
            }
        }
        let timeout = if spin { Duration::ZERO } else { wake.saturating_duration_since(Instant::now()) };
        if let Err(err) = poll.poll(&mut events, Some(timeout)) {
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        for event in events.iter() {
            if event.token() == TIMER {
                if let Some(pacer) = pacer.as_mut() {
                    pacer.fired(Instant::now());
                }
                continue;
            }
            let slot = event.token().0;
            if let Some(flow) = flows.get_mut(slot).and_then(Option::as_mut) {
                engine.receive(flow, slot);
            }
        }
    };
    let cpu_secs = cpu_at_open.map_or(0.0, |at_open| crate::cpu::thread_cpu_secs() - at_open);
    let spin_secs = match (&mut pacer, cpu_at_open) {
        (Some(pacer), Some(_)) => {
            pacer.spin.stopped(stopped);
            pacer.spin.total_at(stopped).saturating_sub(spun_at_open).as_secs_f64()
        }
        _ => 0.0,
    };
    // Phase 3: what is still in flight is neither ok nor lost.
    engine.recorder.datagrams.in_flight_at_end = flows
        .iter()
        .flatten()
        .flat_map(|f| f.in_flight.iter())
        .filter(|m| m.sent >= window.warm_end && m.sent < window.end)
        .count() as u64;
    Ok(ThreadResult { recorder: engine.recorder, cpu_secs, spin_secs, stopped })
}

/// The datagram thread's pacer: its timer in the poll, what it is armed
/// for, and the estimate of its wake-up lateness.
struct Pacer {
    timer: PreciseTimer,
    armed: Option<Instant>,
    estimate: WakeEstimate,
    spin: SpinClock,
}

impl Pacer {
    /// Arms the timer for `at`, unless it already is.
    fn arm(&mut self, at: Instant) -> io::Result<()> {
        if self.armed != Some(at) {
            self.timer.arm(at)?;
            self.armed = Some(at);
        }
        Ok(())
    }

    /// The timer fired; the thread woke at `now`.
    fn fired(&mut self, now: Instant) {
        self.timer.clear();
        if let Some(armed) = self.armed.take() {
            self.estimate.observe(armed, now);
        }
    }
}

fn open_timer(poll: &Poll, wait: PacerWait) -> io::Result<Pacer> {
    let timer = PreciseTimer::new()?;
    poll.registry().register(&mut mio::unix::SourceFd(&timer.as_raw_fd()), TIMER, Interest::READABLE)?;
    Ok(Pacer { timer, armed: None, estimate: WakeEstimate::waiting(wait), spin: SpinClock::default() })
}

/// A UDP socket connected to `server` from a port of its own.
fn open(server: SocketAddr) -> io::Result<UdpSocket> {
    let any: SocketAddr =
        if server.is_ipv6() { (Ipv6Addr::UNSPECIFIED, 0).into() } else { (Ipv4Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(any)?;
    socket.connect(server)?;
    Ok(socket)
}

/// `EAGAIN`, `ECONNREFUSED`, …: the errno's name, or the error kind's.
fn errno_name(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => format!("{:?}", nix::errno::Errno::from_raw(code)),
        None => format!("{:?}", err.kind()),
    }
}

impl Engine {
    fn window(&self) -> Window {
        self.recorder.window()
    }

    /// Closed loop: sends until `--pipeline` datagrams are in flight (or a
    /// send fails: then again after [`SEND_RETRY`]).
    fn fill(&mut self, flow: &mut Flow, slot: usize, now: Instant) {
        if flow.retry_at.is_some_and(|at| now < at) {
            return;
        }
        flow.retry_at = None;
        while flow.in_flight.len() < self.limit {
            match self.send(flow, None) {
                Sent::Ok => {}
                Sent::Closed => return,
                Sent::Failed => {
                    let at = now + SEND_RETRY;
                    flow.retry_at = Some(at);
                    self.timers.push(Reverse((at, slot)));
                    return;
                }
            }
        }
    }

    /// A timer of this flow is due: its next scheduled send (open loop) or
    /// its retry (closed loop).
    fn due(&mut self, flow: &mut Flow, slot: usize, now: Instant) {
        let Some(at) = flow.next_tick() else {
            self.fill(flow, slot, now);
            return;
        };
        if flow.held {
            return; // stale: the send is already waiting for a slot
        }
        if at > now {
            self.timers.push(Reverse((at, slot))); // not due yet: keep it scheduled
            return;
        }
        if flow.in_flight.len() < self.limit {
            self.send_scheduled(flow, slot, at);
        } else {
            flow.held = true; // leaves when a slot frees
        }
    }

    /// Open loop: sends the datagram scheduled at `at` and schedules the
    /// next. One that was free to leave on time is charged its raw latency
    /// only, and its lateness is the pacer's (recorded); one a full window
    /// held back past `at` is charged from `at` on the server timeline (the
    /// coordinated-omission correction).
    fn send_scheduled(&mut self, flow: &mut Flow, slot: usize, at: Instant) {
        let free = !flow.held;
        let start = if free { at } else { flow.timeline.start(at) };
        if self.send(flow, Some(Paced { intended: at, start, free })) == Sent::Closed {
            return;
        }
        flow.held = false;
        if let Some(schedule) = flow.schedule.as_mut() {
            schedule.advance();
            self.timers.push(Reverse((schedule.peek(), slot)));
        }
    }

    /// Sends the flow's next datagram. A failed send is counted
    /// `send_failed` and uses up its sequence number. Nothing leaves once the
    /// window has closed, so that every datagram sent in the window is
    /// either decided in it or counted in flight at its end.
    fn send(&mut self, flow: &mut Flow, paced: Option<Paced>) -> Sent {
        let sent = Instant::now();
        if sent >= self.window().end {
            return Sent::Closed;
        }
        let seq = flow.next_seq;
        flow.next_seq += 1;
        flow.messages.fill(seq, &mut self.out);
        let result = flow.socket.send(&self.out);
        if let Some(Paced { intended, free: true, .. }) = paced {
            self.recorder.send_late(sent, sent.saturating_duration_since(intended));
        }
        match result {
            Ok(n) if n == self.out.len() => {
                flow.set_fate(seq, Fate::InFlight);
                flow.in_flight.push_back(InFlight::new(seq, sent, paced));
                self.recorder.datagram(sent, DatagramEvent::Sent);
                Sent::Ok
            }
            other => {
                flow.set_fate(seq, Fate::SendFailed);
                let errno = match other {
                    Err(err) => errno_name(&err),
                    Ok(_) => "short send".into(),
                };
                self.recorder.datagram(sent, DatagramEvent::SendFailed(&errno));
                Sent::Failed
            }
        }
    }

    /// A slot freed at `now`: the next datagram may leave.
    fn freed(&mut self, flow: &mut Flow, slot: usize, now: Instant) {
        if flow.schedule.is_none() {
            self.fill(flow, slot, now);
        } else if flow.held {
            if let Some(at) = flow.next_tick() {
                self.send_scheduled(flow, slot, at);
            }
        }
    }

    /// Counts the flow's overdue datagrams lost, and frees their slots.
    fn expire(&mut self, flow: &mut Flow, slot: usize, now: Instant) {
        if now >= self.window().end {
            return; // in flight at the end, not lost
        }
        let mut freed = false;
        while let Some(oldest) = flow.in_flight.front() {
            if now < oldest.sent + self.plan.timeout {
                break;
            }
            let seq = oldest.seq;
            // On the server timeline, its slot freed when its timeout ran
            // from its virtual send.
            flow.timeline.expired(oldest.start, self.plan.timeout);
            flow.in_flight.pop_front();
            flow.set_fate(seq, Fate::Lost);
            self.recorder.datagram(now, DatagramEvent::Lost);
            freed = true;
        }
        if freed {
            self.freed(flow, slot, now);
        }
    }

    /// Reads every echo waiting on the flow's socket.
    fn receive(&mut self, flow: &mut Flow, slot: usize) {
        let mut inbox = std::mem::take(&mut self.inbox);
        let mut errors = 0;
        let mut freed = None;
        loop {
            match flow.socket.recv(&mut inbox) {
                Ok(len) => {
                    let now = Instant::now();
                    if now >= self.window().end {
                        // Read after the window closed: what it echoes
                        // counts as in flight at the end.
                        break;
                    }
                    if self.echo(flow, slot, &inbox[..len], now) {
                        freed = Some(now);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    // An asynchronous error (an ICMP unreachable: ECONNREFUSED);
                    // reading it clears it.
                    self.recorder.datagram(Instant::now(), DatagramEvent::ReceiveError(&errno_name(&err)));
                    errors += 1;
                    if errors == RECEIVE_ERRORS_PER_TURN {
                        self.reread.push(slot);
                        break;
                    }
                }
            }
        }
        self.inbox = inbox;
        if let Some(now) = freed {
            self.freed(flow, slot, now);
        }
    }

    /// One echo, arrived at `now`: matched to its datagram by the sequence
    /// number in its header, then checked. `true` if it freed a slot.
    fn echo(&mut self, flow: &mut Flow, slot: usize, echo: &[u8], now: Instant) -> bool {
        let claimed = Messages::header_of(echo).filter(|&(id, _)| id == flow.id).map(|(_, seq)| seq);
        let waiting = claimed.and_then(|seq| flow.in_flight.binary_search_by_key(&seq, |m| m.seq).ok());
        let Some(index) = waiting else {
            // Not a datagram in flight: an extra echo, or garbage.
            let intact = claimed.filter(|&seq| seq < flow.next_seq && flow.messages.matches(seq, echo));
            let event = match intact.map(|seq| flow.known(seq)) {
                Some(Some(Fate::Echoed)) => DatagramEvent::Duplicated,
                // Lost already, or older than the ring remembers.
                Some(Some(Fate::Lost) | None) => DatagramEvent::Late,
                // Damaged, never sent, or not ours.
                _ => DatagramEvent::Mismatched,
            };
            self.recorder.datagram(now, event);
            return false;
        };
        let Some(datagram) = flow.in_flight.remove(index) else { return false };
        let seq = datagram.seq;
        if now >= datagram.sent + self.plan.timeout {
            // Too late: lost, whether or not the scan has seen it yet.
            flow.set_fate(seq, Fate::Lost);
            self.recorder.datagram(now, DatagramEvent::Lost);
            self.recorder.datagram(now, DatagramEvent::Late);
            return true;
        }
        flow.set_fate(seq, Fate::Echoed);
        if !flow.messages.matches(seq, echo) {
            self.recorder.datagram(now, DatagramEvent::Mismatched);
        } else if flow.highest.is_some_and(|highest| highest > seq) {
            self.recorder.datagram(now, DatagramEvent::Reordered);
        } else {
            flow.highest = Some(seq);
            if flow.schedule.is_some() {
                let (latency, raw) = flow.timeline.echoed(datagram.intended, datagram.start, datagram.sent, now);
                self.recorder.ok(slot, now, latency, Some(raw));
            } else {
                self.recorder.ok(slot, now, now - datagram.sent, None);
            }
            self.recorder.datagram(now, DatagramEvent::Ok);
        }
        true
    }
}
