//! The load itself: a few event-loop threads, each a tokio current-thread
//! runtime driving its share of the connections — no OS thread per
//! connection, no channel message per request.
//!
//! A run has three phases. (1) Every thread opens its connections (at most
//! [`CONNECTS_IN_FLIGHT`] attempts at a time) and meets the others at a
//! barrier. (2) The clock starts: warm-up, then the measured window. (3) At
//! the window's end every connection stops; each thread hands back its
//! [`Recorder`], and the main thread merges them.
//!
//! One task per connection. A message may leave when fewer than
//! `--pipeline` are in flight and, in open loop, once its intended send time
//! has come; the echoes are completed, verified and timed in order. For
//! small messages this is one plain sequence — write, read, write — so the
//! next message leaves in the same poll that completed the last echo. When
//! more bytes may be unread than socket buffers surely hold, a writer and a
//! reader run concurrently inside the task, so neither can deadlock the other.
//!
//! Open loop follows wrk2: each connection has a fixed schedule
//! ([`crate::pacer`]); a message that cannot leave on time (its
//! predecessor's echo is late) leaves as soon as it may, and its latency
//! counts from the intended time. Unlike wrk2, only the server's delays are
//! charged, never the client's own lateness: latency is measured on a
//! *server timeline*, the one the connection would have followed had every
//! send left exactly when it was free to. Message k's virtual send time is
//! `σ_k = max(intended_k, ε)`, where `ε` is the virtual echo time of the
//! message whose echo freed its slot, and its virtual echo time is
//! `ε_k = σ_k + (echo_k − sent_k)`: the server's own time for it (raw
//! latency) counted from its virtual send. The latency recorded is
//! `ε_k − intended_k`. A message free to leave on time (σ = intended) is
//! charged its raw latency only, however late the client sent it; a message
//! held back by a slow echo is charged from its intended time, but not for
//! the part of that echo's lateness that was the client's.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use echo_common::Endpoint;
use echo_common::stream::AsyncStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::LocalSet;
use tokio::time::{sleep, sleep_until, timeout};

use crate::message::Messages;
use crate::opts::Close;
use crate::pacer::{Arrivals, AsyncPacer, InFlight, Paced, PacerWait, Schedule, ServerTimeline};
use crate::stats::{ConnectFailure, Failure, Progress, Recorder, Window};

/// Connection attempts in flight per thread during the connect phase, so
/// that 10,000 connections do not overflow the server's backlog at once.
pub const CONNECTS_IN_FLIGHT: usize = 256;
/// Closed loop: with at most this many bytes sent and not yet read back
/// (pipeline × size), echoes surely fit in the socket buffers, so one
/// sequence of write-then-read cannot deadlock.
const SEQUENTIAL_MAX_UNREAD: usize = 32 * 1024;
/// Pause before retrying a reconnection that failed other than by refusal.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);
/// The first pause after a connection the server closed before its first
/// echo; it doubles with each such close in a row, up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_millis(1);
/// The longest pause between reconnects to a server that keeps closing
/// connections before their first echo: one attempt per connection per
/// second at most, once the server has turned it away about ten times.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What every connection of a run shares.
#[derive(Debug, Clone)]
pub struct Plan {
    pub endpoint: Endpoint,
    pub size: usize,
    pub pipeline: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Open loop: total messages per second.
    pub rate: Option<f64>,
    /// Open loop: how the send times are spaced, and the seed of their gaps.
    pub arrivals: Arrivals,
    pub seed: u64,
    /// Open loop: how a thread waits for its next send.
    pub pacer: PacerWait,
    /// UDP open loop: datagrams in flight per flow at most.
    pub window: usize,
    pub reconnect_every: Option<u64>,
    /// Churn: how a connection ends.
    pub close: Close,
    pub connections: usize,
    pub warmup: Duration,
}

/// State shared by the threads during the run.
#[derive(Debug)]
pub struct Shared {
    barrier: Barrier,
    window: OnceLock<Window>,
    /// Live counters for the progress bar.
    pub progress: Progress,
    /// The first connect error, for the "cannot connect" message.
    pub first_connect_error: Mutex<Option<String>>,
}

impl Shared {
    /// State for `threads` event-loop threads plus the main thread.
    pub fn new(threads: usize) -> Arc<Shared> {
        Arc::new(Shared {
            barrier: Barrier::new(threads + 1),
            window: OnceLock::new(),
            progress: Arc::new((0..threads).map(|_| Default::default()).collect()),
            first_connect_error: Mutex::new(None),
        })
    }

    /// Main thread: wait until every thread has connected.
    pub fn wait_connected(&self) {
        self.barrier.wait();
    }

    /// Main thread: start the clock and release the threads.
    pub fn start(&self, window: Window) {
        let _ = self.window.set(window);
        self.barrier.wait();
    }
}

/// The load threads' side of the start, for an engine in another module
/// (the datagram engine): the same two barriers, and the window.
impl Shared {
    /// Load thread: meets the main thread and the others, once when it has
    /// connected, once more to be released with the clock started.
    pub fn meet(&self) {
        self.barrier.wait();
    }

    /// The window, set by the main thread before the second meeting.
    pub fn window(&self) -> Option<Window> {
        self.window.get().copied()
    }
}

/// What one thread measured, plus its CPU use inside the window.
#[derive(Debug)]
pub struct ThreadResult {
    pub recorder: Recorder,
    /// CPU seconds this thread used inside the window.
    pub cpu_secs: f64,
    /// Open loop: wall seconds the pacer spun inside the window, waiting
    /// the last microseconds before sends.
    pub spin_secs: f64,
    /// When its last connection stopped.
    pub stopped: Instant,
}

/// Body of one event-loop thread: connections `slots` (global ids).
pub fn thread_main(index: usize, slots: Vec<u32>, plan: Arc<Plan>, shared: Arc<Shared>) -> io::Result<ThreadResult> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            // Still meet the others at both barriers, or they would wait forever.
            shared.barrier.wait();
            shared.barrier.wait();
            return Err(err);
        }
    };
    let local = LocalSet::new();
    local.block_on(&runtime, async move {
        // Phase 1: connect.
        let gate = Rc::new(Semaphore::new(CONNECTS_IN_FLIGHT));
        let attempts: Vec<_> = slots
            .iter()
            .map(|_| {
                let gate = Rc::clone(&gate);
                let plan = Arc::clone(&plan);
                tokio::task::spawn_local(async move {
                    let _permit = gate.acquire().await;
                    connect(&plan).await
                })
            })
            .collect();
        let mut streams = Vec::with_capacity(slots.len());
        for attempt in attempts {
            streams.push(attempt.await.unwrap_or_else(|_| Err(io::Error::other("connect task failed"))));
        }
        shared.barrier.wait(); // every thread connected…
        shared.barrier.wait(); // …and the main thread started the clock
        let window = *shared.window.get().expect("the main thread sets the window before the second barrier");
        // A start set by a coordinator may lie ahead.
        if window.start > Instant::now() {
            sleep_until(window.start.into()).await;
        }

        // Phase 2: load. Open loop: the pacer, and its driver task.
        let pacer = match plan.rate.map(|_| AsyncPacer::new(plan.pacer)).transpose() {
            Ok(pacer) => pacer,
            Err(err) => return Err(io::Error::new(err.kind(), format!("cannot start the pacer's timer: {err}"))),
        };
        let pacer_failed: Rc<Cell<Option<io::Error>>> = Rc::default();
        let driver = pacer.as_ref().map(|pacer| {
            let (pacer, failed) = (Rc::clone(pacer), Rc::clone(&pacer_failed));
            tokio::task::spawn_local(async move { failed.set(Some(pacer.drive().await)) })
        });
        let recorder = Rc::new(RefCell::new(Recorder::new(window, index, Arc::clone(&shared.progress), slots.len())));
        let cpu_at_open = Rc::new(Cell::new(None));
        let sampler = tokio::task::spawn_local(sample_cpu_at_open(window, Rc::clone(&cpu_at_open), pacer.clone()));
        let watches: Rc<RefCell<Vec<Rc<Watch>>>> = Rc::default();
        let watchdog = tokio::task::spawn_local(watchdog(Rc::clone(&watches), plan.timeout));
        let mut tasks = Vec::with_capacity(slots.len());
        for (slot, (id, stream)) in slots.iter().zip(streams).enumerate() {
            let stream = match stream {
                Ok(stream) => {
                    recorder.borrow_mut().connects.established += 1;
                    recorder.borrow_mut().established_slots[slot] = true;
                    stream
                }
                Err(err) => {
                    recorder.borrow_mut().connects.failure(ConnectFailure::from_io(&err), true);
                    let mut first = shared.first_connect_error.lock().unwrap_or_else(|p| p.into_inner());
                    first.get_or_insert_with(|| err.to_string());
                    continue;
                }
            };
            let conn = Connection::new(slot, *id, Arc::clone(&plan), Rc::clone(&recorder), pacer.clone(), window);
            watches.borrow_mut().push(Rc::clone(&conn.watch));
            tasks.push(tokio::task::spawn_local(conn.run(stream)));
        }
        // Run until the window closes — then stop every connection where it
        // stands — or until every connection has stopped by itself.
        let mut tasks: Vec<_> = tasks.into_iter().map(Some).collect();
        let all_stopped = async {
            for task in tasks.iter_mut() {
                if let Some(handle) = task.as_mut() {
                    let _ = handle.await;
                    *task = None; // consumed: a JoinHandle must not be polled again
                }
            }
        };
        tokio::select! {
            () = all_stopped => {}
            () = sleep_until(window.end.into()) => {}
        }
        // Every connection has stopped, or is about to be stopped: the window
        // has closed. Note when, and this thread's CPU time, before the
        // teardown below (closing thousands of sockets) adds to it.
        let stopped = Instant::now();
        let (cpu_secs, spin_secs) = cpu_at_open.get().map_or((0.0, 0.0), |(cpu, spun): (f64, Duration)| {
            let spun_since = pacer.as_ref().map_or(Duration::ZERO, |p| p.spun().saturating_sub(spun));
            (crate::cpu::thread_cpu_secs() - cpu, spun_since.as_secs_f64())
        });
        for handle in tasks.iter().flatten() {
            handle.abort();
        }
        for handle in tasks.into_iter().flatten() {
            let _ = handle.await; // drops the connection's future, closing its socket
        }
        watchdog.abort();
        sampler.abort();
        if let Some(driver) = driver {
            driver.abort();
        }
        if let Some(err) = pacer_failed.take() {
            return Err(io::Error::new(err.kind(), format!("the pacer's timer failed: {err}")));
        }
        // Phase 3: hand back the results. Every task has ended, so the
        // recorder has no other owner left.
        let recorder = Rc::try_unwrap(recorder).map(RefCell::into_inner).expect("all connection tasks have ended");
        Ok(ThreadResult { recorder, cpu_secs, spin_secs, stopped })
    })
}

/// Opens one connection with `--connect-timeout` (TCP_NODELAY on TCP).
async fn connect(plan: &Plan) -> io::Result<AsyncStream> {
    match timeout(plan.connect_timeout, AsyncStream::connect(&plan.endpoint)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
}

/// Notes this thread's CPU time when the window opens.
async fn sample_cpu_at_open(window: Window, cpu: Rc<Cell<Option<(f64, Duration)>>>, pacer: Option<Rc<AsyncPacer>>) {
    sleep_until(window.warm_end.into()).await;
    cpu.set(Some((crate::cpu::thread_cpu_secs(), pacer.map_or(Duration::ZERO, |p| p.spun()))));
}

/// How one exchange on one TCP connection ended.
enum End {
    /// `--reconnect-every` messages done: close politely and reconnect.
    Budget,
    /// An error; the connection is closed, and a new one made.
    Failed(Failure),
}

/// The growing pause before reconnecting to a server that closed the last
/// connection before its first echo (a full accept queue, a connection cap,
/// a server that closes at once). Without it, such a server gets a new
/// connection as fast as the client can make them — a flood that costs both
/// CPUs and measures nothing. Reset by the first echo on a connection.
#[derive(Debug, Default)]
struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    /// The pause to take now; the next one is twice as long.
    fn pause(&mut self) -> Duration {
        let pause = self.next.unwrap_or(BACKOFF_FIRST);
        self.next = Some((pause * 2).min(BACKOFF_MAX));
        pause
    }

    fn reset(&mut self) {
        self.next = None;
    }
}

/// One logical connection: survives reconnections, keeps its sequence numbers.
struct Connection {
    slot: usize,
    plan: Arc<Plan>,
    recorder: Rc<RefCell<Recorder>>,
    messages: Messages,
    seq: Cell<u64>,
    /// Open loop: its schedule, pacer and timeline; `None` in closed loop.
    open: Option<OpenLoop>,
    /// Open-loop churn: the next message's pacing, already waited for
    /// before its connection was made, and when that connect began.
    connected_for: Cell<Option<(Paced, Instant)>>,
    /// What the watchdog needs to time out the oldest message in flight.
    watch: Rc<Watch>,
    /// Settled: an echo completed on this logical connection, or it was
    /// found dropped before its first echo (and counted so, once).
    settled: Cell<bool>,
    /// Echoes completed on this logical connection (any outcome).
    echoes: Cell<u64>,
}

/// What a connection has in open loop only.
struct OpenLoop {
    /// The intended send times.
    schedule: RefCell<Schedule>,
    /// The thread's pacer, which ends the waits for them.
    pacer: Rc<AsyncPacer>,
    /// The coordinated-omission correction's timeline.
    timeline: Cell<ServerTimeline>,
}

impl Connection {
    fn new(
        slot: usize,
        id: u32,
        plan: Arc<Plan>,
        recorder: Rc<RefCell<Recorder>>,
        pacer: Option<Rc<AsyncPacer>>,
        window: Window,
    ) -> Connection {
        // Open loop: connection `id` sends every C/R seconds on average,
        // staggered by 1/R so the total is R evenly spread messages per
        // second. The schedule starts with the warm-up, when the clock starts.
        let open = plan.rate.zip(pacer).map(|(rate, pacer)| OpenLoop {
            schedule: RefCell::new(Schedule::new(plan.arrivals, plan.seed, window.start, id, plan.connections, rate)),
            pacer,
            timeline: Cell::default(),
        });
        let messages = Messages::new(id, plan.size);
        let watch = Rc::new(Watch::default());
        Connection {
            slot,
            plan,
            recorder,
            messages,
            seq: Cell::new(0),
            open,
            connected_for: Cell::new(None),
            watch,
            settled: Cell::new(false),
            echoes: Cell::new(0),
        }
    }

    /// Runs until aborted at the window's end, or until a reconnection is refused.
    async fn run(self, first: AsyncStream) {
        let mut stream = first;
        let mut backoff = Backoff::default();
        loop {
            let echoes_before = self.echoes.get();
            let end = {
                let _watched = Watched::new(&self.watch, &stream);
                self.exchange(&mut stream).await
            };
            let served = self.echoes.get() > echoes_before;
            let turned_away = matches!(end, End::Failed(Failure::Closed | Failure::Reset)) && !served;
            if let End::Budget = end {
                close_connection(&mut stream, self.plan.close, self.plan.timeout).await;
            }
            drop(stream);
            if turned_away {
                // Closed before a single echo: pause before the next try,
                // longer each time in a row.
                self.recorder.borrow_mut().connects.closed_before_echo += 1;
                sleep(backoff.pause()).await;
            } else if served {
                backoff.reset();
            }
            if let (End::Budget, Some(_)) = (&end, &self.open) {
                // Open-loop churn: the connections, not only the messages,
                // keep the schedule: wait for the next message's time, then
                // connect and send it (its latency counts from that time,
                // through the connect).
                if let Some(paced) = self.wait_for_send_time().await {
                    self.connected_for.set(Some((paced, Instant::now())));
                }
            }
            stream = match self.reconnect().await {
                Some(stream) => stream,
                None => return,
            };
        }
    }

    /// Connects again; `None` when the server refuses (it is gone).
    async fn reconnect(&self) -> Option<AsyncStream> {
        loop {
            let started = Instant::now();
            match connect(&self.plan).await {
                Ok(stream) => {
                    let now = Instant::now();
                    self.recorder.borrow_mut().reconnected(now, now - started);
                    return Some(stream);
                }
                Err(err) => {
                    let kind = ConnectFailure::from_io(&err);
                    self.recorder.borrow_mut().connects.failure(kind, false);
                    if kind == ConnectFailure::Refused {
                        return None;
                    }
                    sleep(RECONNECT_PAUSE).await;
                }
            }
        }
    }

    /// Sends and receives on one TCP connection until its budget is spent
    /// or it fails. Counts every outcome.
    async fn exchange(&self, stream: &mut AsyncStream) -> End {
        let unread = self.plan.pipeline * self.plan.size;
        // In open loop, waiting for the next send time must not delay
        // reading an echo: one in flight at most for the in-turn path.
        let in_turn = self.open.is_none() || self.plan.pipeline == 1;
        if in_turn && unread <= SEQUENTIAL_MAX_UNREAD {
            self.exchange_in_turn(stream).await
        } else {
            self.exchange_concurrently(stream).await
        }
    }

    /// Small messages: fill the pipeline (in open loop, at the scheduled
    /// times), read one echo, repeat, all in one sequence. The next message leaves in the same poll that
    /// completed the last echo: no extra task wake-up per message.
    async fn exchange_in_turn<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: &mut S) -> End {
        let budget = self.plan.reconnect_every.unwrap_or(u64::MAX);
        let mut in_flight = VecDeque::with_capacity(self.plan.pipeline);
        let (mut out, mut echo) = (vec![0u8; self.plan.size], vec![0u8; self.plan.size]);
        let mut sent = 0u64;
        // Closed loop: when the last echo completed, read once and used
        // again as the next message's send time (see `next_message`).
        let mut last_echo: Option<Instant> = None;
        loop {
            while in_flight.len() < self.plan.pipeline && sent < budget {
                let (paced, at) = self.next_send().await;
                let reuse = if paced.is_none() { last_echo.take() } else { at };
                let message = self.next_message(&mut out, paced, reuse);
                in_flight.push_back(message);
                self.watch.track(in_flight.front());
                sent += 1;
                if let Err(err) = stream.write_all(&out).await {
                    return self.fail(&err, in_flight.len());
                }
            }
            let Some(head) = in_flight.pop_front() else {
                return End::Budget;
            };
            if let Err(err) = stream.read_exact(&mut echo).await {
                return self.fail(&err, in_flight.len() + 1);
            }
            self.watch.track(in_flight.front());
            last_echo = Some(self.complete(head, &echo));
        }
    }

    /// More unread bytes than socket buffers surely hold, or open loop with a
    /// pipeline: a writer and a reader run concurrently in this task, so
    /// neither can deadlock or delay the other.
    async fn exchange_concurrently<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: &mut S) -> End {
        let budget = self.plan.reconnect_every.unwrap_or(u64::MAX);
        // One task owns both halves, so the split's lock is never contended.
        let (mut rd, mut wr) = tokio::io::split(stream);
        let in_flight: RefCell<VecDeque<InFlight>> = RefCell::new(VecDeque::new());
        // Credits to send: at most `--pipeline` messages in flight.
        let credits = Semaphore::new(self.plan.pipeline);
        // Sent messages the reader may wait for.
        let sent = Semaphore::new(0);

        let writer = async {
            let mut buf = vec![0u8; self.plan.size];
            for _ in 0..budget {
                if let Ok(permit) = credits.acquire().await {
                    permit.forget();
                }
                let (paced, at) = self.next_send().await;
                let message = self.next_message(&mut buf, paced, at);
                in_flight.borrow_mut().push_back(message);
                self.watch.track(in_flight.borrow().front());
                sent.add_permits(1);
                if let Err(err) = wr.write_all(&buf).await {
                    return err;
                }
            }
            std::future::pending().await
        };

        let reader = async {
            let mut buf = vec![0u8; self.plan.size];
            for _ in 0..budget {
                if let Ok(permit) = sent.acquire().await {
                    permit.forget();
                }
                if let Err(err) = rd.read_exact(&mut buf).await {
                    return Some(err);
                }
                let Some(head) = in_flight.borrow_mut().pop_front() else {
                    continue; // unreachable: a permit means a message in flight
                };
                self.watch.track(in_flight.borrow().front());
                credits.add_permits(1);
                self.complete(head, &buf);
            }
            None
        };

        let outcome = tokio::select! {
            failure = writer => Some(failure),
            outcome = reader => outcome,
        };
        match outcome {
            None => End::Budget,
            Some(err) => self.fail(&err, in_flight.borrow().len()),
        }
    }

    /// The next message's pacing and, in open-loop churn, when the connect
    /// it was made for began (its send time for the latency: the connect
    /// counts in).
    async fn next_send(&self) -> (Option<Paced>, Option<Instant>) {
        match self.connected_for.take() {
            Some((paced, connect_began)) => (Some(paced), Some(connect_began)),
            None => (self.wait_for_send_time().await, None),
        }
    }

    /// Open loop: waits for the next intended send time (on the pacer, to
    /// within microseconds). A message held back past it because its slot
    /// was taken (the pipeline was full) leaves at once. Returns its
    /// intended and virtual send times (see the module's doc), for the
    /// coordinated-omission correction. Closed loop: nothing to wait for,
    /// `None`.
    async fn wait_for_send_time(&self) -> Option<Paced> {
        let open = self.open.as_ref()?;
        let intended = open.schedule.borrow_mut().advance();
        let ready = Instant::now();
        let free = ready <= intended;
        if free {
            open.pacer.until(intended).await;
        }
        Some(Paced { intended, start: open.timeline.get().start(intended), free })
    }

    /// Writes the next message into `buf` and notes when it leaves: `at`, if
    /// given, else now. In closed loop `at` is when the previous echo on this
    /// connection completed: one clock read per message instead of two, on
    /// the path that sets a fast server's pace. The message then leaves a few
    /// hundred nanoseconds later (verifying and recording the echo, filling
    /// this one), which its latency includes: it can only overstate, by less
    /// than a microsecond, never understate.
    /// Open loop (`paced`): a message that was free to leave on time has
    /// its lateness recorded, the pacer's own measure of itself.
    fn next_message(&self, buf: &mut [u8], paced: Option<Paced>, at: Option<Instant>) -> InFlight {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        self.messages.fill(seq, buf);
        let sent = at.unwrap_or_else(Instant::now);
        if let Some(Paced { intended, free: true, .. }) = paced {
            self.recorder.borrow_mut().send_late(sent, sent.saturating_duration_since(intended));
        }
        InFlight::new(seq, sent, paced)
    }

    /// An echo arrived complete: verify and record it. Returns when.
    fn complete(&self, head: InFlight, echo: &[u8]) -> Instant {
        self.settled.set(true);
        self.echoes.set(self.echoes.get() + 1);
        let now = Instant::now();
        let mut recorder = self.recorder.borrow_mut();
        if self.messages.matches(head.seq, echo) {
            if let Some(open) = &self.open {
                let mut timeline = open.timeline.get();
                let (latency, raw) = timeline.echoed(head.intended, head.start, head.sent, now);
                open.timeline.set(timeline);
                recorder.ok(self.slot, now, latency, Some(raw));
            } else {
                recorder.ok(self.slot, now, now - head.sent, None);
            }
        } else {
            recorder.failed(now, Failure::Mismatch, 1);
        }
        now
    }

    /// The connection failed: every message still in flight is lost with it.
    /// If the watchdog shut the socket down, the failure is a timeout.
    fn fail(&self, err: &io::Error, in_flight: usize) -> End {
        let failure = if self.watch.expired.get() { Failure::Timeout } else { Failure::from_io(err) };
        let mut recorder = self.recorder.borrow_mut();
        recorder.failed(Instant::now(), failure, in_flight.max(1) as u64);
        if !self.settled.get() && matches!(failure, Failure::Closed | Failure::Reset) {
            // Closed before its first echo: the server never really took this
            // connection (e.g. it sat in the backlog of a listener that then
            // closed). It does not count as established.
            self.settled.set(true);
            recorder.unestablished(self.slot);
        }
        End::Failed(failure)
    }
}

/// What the watchdog knows of one connection.
#[derive(Debug, Default)]
struct Watch {
    /// When the oldest message in flight was sent.
    oldest: Cell<Option<Instant>>,
    /// The open socket, while an exchange runs on it.
    fd: Cell<Option<RawFd>>,
    /// The watchdog shut the socket down: the next error is a timeout.
    expired: Cell<bool>,
}

impl Watch {
    fn track(&self, oldest: Option<&InFlight>) {
        self.oldest.set(oldest.map(|m| m.sent));
    }
}

/// Registers a socket with its [`Watch`] for as long as this guard lives —
/// also when the task is aborted — so the watchdog never touches a closed
/// (or reused) descriptor.
struct Watched<'a>(&'a Watch);

impl<'a> Watched<'a> {
    fn new(watch: &'a Watch, stream: &AsyncStream) -> Watched<'a> {
        watch.fd.set(Some(stream.as_raw_fd()));
        watch.expired.set(false);
        watch.oldest.set(None);
        Watched(watch)
    }
}

impl Drop for Watched<'_> {
    fn drop(&mut self) {
        self.0.fd.set(None);
        self.0.oldest.set(None);
    }
}

/// Times out messages for every connection of this thread: a few times per
/// `timeout`, it shuts down the socket of any connection whose oldest
/// message is overdue, which ends its pending read or write at once. One
/// timer per thread instead of one per message keeps the hot path lean.
async fn watchdog(watches: Rc<RefCell<Vec<Rc<Watch>>>>, timeout: Duration) {
    let period = (timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(100));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = Instant::now();
        for watch in watches.borrow().iter() {
            let overdue = watch.oldest.get().is_some_and(|sent| now >= sent + timeout);
            if let (true, Some(fd)) = (overdue && !watch.expired.get(), watch.fd.get()) {
                watch.expired.set(true);
                // `fd` belongs to a socket that is open: `Watched` clears it
                // before the socket can be dropped, and this task runs on the
                // same thread as the connection tasks, so no drop can happen
                // while we use it. shutdown only changes the socket's state.
                let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
            }
        }
    }
}

/// Churn: how the connection ends (`--close`). Orderly: half-close, wait
/// for the server's end of stream (its close), then close. The client sends
/// the first FIN, so the TIME_WAIT socket is the client's: at thousands of
/// connections a second it holds tens of thousands, and each `connect`
/// searches longer for a free port. Reset: SO_LINGER 0, then the drop
/// closes with an RST, which leaves no TIME_WAIT on either side.
async fn close_connection(stream: &mut AsyncStream, close: Close, limit: Duration) {
    match close {
        Close::Orderly => {
            if stream.shutdown().await.is_ok() {
                let mut byte = [0u8; 1];
                let _ = timeout(limit, stream.read(&mut byte)).await;
            }
        }
        Close::Reset => {
            let linger = nix::libc::linger { l_onoff: 1, l_linger: 0 };
            // SAFETY: the descriptor is the open socket `stream` owns, for the
            // duration of the call; a failure leaves an orderly close.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(stream.as_raw_fd()) };
            let _ = nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::Linger, &linger);
        }
    }
}
