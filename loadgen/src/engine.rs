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
//! One connection runs a writer and a reader concurrently inside one task
//! (so neither side can deadlock on full socket buffers, whatever the
//! message size): the writer sends when the schedule allows — closed loop:
//! when fewer than `--pipeline` messages are in flight; open loop: at the
//! next intended send time — and the reader completes, verifies and times
//! each echo in order.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::LocalSet;
use tokio::time::{Sleep, sleep, sleep_until, timeout};

use crate::message::Messages;
use crate::stats::{ConnectFailure, Failure, Progress, Recorder, Window};

/// Connection attempts in flight per thread during the connect phase, so
/// that 10,000 connections do not overflow the server's backlog at once.
pub const CONNECTS_IN_FLIGHT: usize = 256;
/// Open loop: messages in flight per connection before the writer waits
/// (the schedule, and so the corrected latency, keeps running).
const OPEN_LOOP_MAX_IN_FLIGHT: usize = 1 << 16;
/// Closed loop: with at most this many bytes sent and not yet read back
/// (pipeline × size), echoes surely fit in the socket buffers, so one
/// sequence of write-then-read cannot deadlock.
const SEQUENTIAL_MAX_UNREAD: usize = 32 * 1024;
/// Pause before retrying a reconnection that failed other than by refusal.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// What every connection of a run shares.
#[derive(Debug, Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    pub size: usize,
    pub pipeline: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Open loop: total messages per second.
    pub rate: Option<f64>,
    pub reconnect_every: Option<u64>,
    pub connections: usize,
    pub threads: usize,
    pub warmup: Duration,
    pub duration: Duration,
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

/// What one thread measured, plus its CPU use inside the window.
#[derive(Debug)]
pub struct ThreadResult {
    pub recorder: Recorder,
    /// CPU seconds this thread used inside the window.
    pub cpu_secs: f64,
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

        // Phase 2: load.
        let recorder = Rc::new(RefCell::new(Recorder::new(window, index, Arc::clone(&shared.progress), slots.len())));
        let cpu_at_open = Rc::new(Cell::new(None));
        let sampler = tokio::task::spawn_local(sample_cpu_at_open(window, Rc::clone(&cpu_at_open)));
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
            let conn = Connection::new(slot, *id, Arc::clone(&plan), Rc::clone(&recorder), window);
            tasks.push(tokio::task::spawn_local(conn.run(stream)));
        }
        for task in tasks {
            let _ = task.await;
        }
        // Every connection has stopped: at the window's end, or earlier if
        // the server went away.
        let stopped = Instant::now();
        sampler.abort();
        let cpu_secs = cpu_at_open.get().map_or(0.0, |start| crate::cpu::thread_cpu_secs() - start);
        // Phase 3: hand back the results. Every task has ended, so the
        // recorder has no other owner left.
        let recorder = Rc::try_unwrap(recorder).map(RefCell::into_inner).expect("all connection tasks have ended");
        Ok(ThreadResult { recorder, cpu_secs, stopped })
    })
}

/// Opens one connection with `--connect-timeout`; TCP_NODELAY on.
async fn connect(plan: &Plan) -> io::Result<TcpStream> {
    let stream = match timeout(plan.connect_timeout, TcpStream::connect(plan.addr)).await {
        Ok(result) => result?,
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Notes this thread's CPU time when the window opens.
async fn sample_cpu_at_open(window: Window, cpu: Rc<Cell<Option<f64>>>) {
    sleep_until(window.warm_end.into()).await;
    cpu.set(Some(crate::cpu::thread_cpu_secs()));
}

/// A message sent and not yet echoed.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    seq: u64,
    /// When the schedule wanted it sent (open loop), else when it was sent.
    intended: Instant,
    sent: Instant,
}

/// How one exchange on one TCP connection ended.
enum End {
    /// `--reconnect-every` messages done: close politely and reconnect.
    Budget,
    /// An error; the connection is closed, and a new one made.
    Failed,
}

/// One logical connection: survives reconnections, keeps its sequence numbers.
struct Connection {
    slot: usize,
    plan: Arc<Plan>,
    recorder: Rc<RefCell<Recorder>>,
    window: Window,
    messages: Messages,
    seq: Cell<u64>,
    /// Open loop: the first intended send time and the interval.
    schedule: Option<(Instant, Duration)>,
    /// Open loop: index of the next scheduled send.
    tick: Cell<u64>,
}

impl Connection {
    fn new(slot: usize, id: u32, plan: Arc<Plan>, recorder: Rc<RefCell<Recorder>>, window: Window) -> Connection {
        // Open loop: connection `id` sends every C/R seconds, staggered by
        // 1/R so the total is R evenly spread messages per second.
        let schedule = plan.rate.map(|rate| {
            let interval = Duration::from_secs_f64(plan.connections as f64 / rate);
            let offset = Duration::from_secs_f64(f64::from(id) / rate);
            // The schedule starts with the warm-up, when the clock starts.
            let start = window.warm_end.checked_sub(plan.warmup).unwrap_or(window.warm_end);
            (start + offset, interval)
        });
        let messages = Messages::new(id, plan.size);
        Connection { slot, plan, recorder, window, messages, seq: Cell::new(0), schedule, tick: Cell::new(0) }
    }

    /// Runs until the window closes, or until a reconnection is refused.
    async fn run(self, first: TcpStream) {
        let end = self.window.end;
        let _ = tokio::time::timeout_at(end.into(), self.run_until_stopped(first)).await;
    }

    async fn run_until_stopped(&self, first: TcpStream) {
        let mut stream = first;
        loop {
            match self.exchange(&mut stream).await {
                End::Budget => {
                    close_politely(&mut stream, self.plan.timeout).await;
                }
                End::Failed => {} // counted by `exchange`; the socket is dropped below
            }
            drop(stream);
            stream = match self.reconnect().await {
                Some(stream) => stream,
                None => return,
            };
        }
    }

    /// Connects again; `None` when the server refuses (it is gone).
    async fn reconnect(&self) -> Option<TcpStream> {
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
    async fn exchange(&self, stream: &mut TcpStream) -> End {
        let unread = self.plan.pipeline * self.plan.size;
        if self.schedule.is_none() && unread <= SEQUENTIAL_MAX_UNREAD {
            self.exchange_in_turn(stream).await
        } else {
            self.exchange_concurrently(stream).await
        }
    }

    /// Closed loop, small messages: fill the pipeline, read one echo, repeat,
    /// all in one sequence. The next message leaves in the same poll that
    /// completed the last echo: no extra task wake-up per message.
    async fn exchange_in_turn(&self, stream: &mut TcpStream) -> End {
        let budget = self.plan.reconnect_every.unwrap_or(u64::MAX);
        let mut in_flight = VecDeque::with_capacity(self.plan.pipeline);
        let (mut out, mut echo) = (vec![0u8; self.plan.size], vec![0u8; self.plan.size]);
        let mut alarm = pin!(sleep(self.plan.timeout));
        let mut sent = 0u64;
        loop {
            while in_flight.len() < self.plan.pipeline && sent < budget {
                let message = self.next_message(&mut out, None);
                in_flight.push_back(message);
                sent += 1;
                let due = in_flight[0].sent + self.plan.timeout;
                if let Err(failure) = with_alarm(alarm.as_mut(), due, stream.write_all(&out)).await {
                    return self.fail(failure, in_flight.len());
                }
            }
            let Some(&head) = in_flight.front() else {
                return End::Budget;
            };
            let due = head.sent + self.plan.timeout;
            if let Err(failure) = with_alarm(alarm.as_mut(), due, stream.read_exact(&mut echo)).await {
                return self.fail(failure, in_flight.len());
            }
            in_flight.pop_front();
            self.complete(head, &echo);
        }
    }

    /// Open loop, or more unread bytes than socket buffers surely hold: a
    /// writer and a reader run concurrently in this task, so neither can
    /// deadlock the other, and the writer keeps to its schedule whatever
    /// the echoes do.
    async fn exchange_concurrently(&self, stream: &mut TcpStream) -> End {
        let budget = self.plan.reconnect_every.unwrap_or(u64::MAX);
        let (mut rd, mut wr) = stream.split();
        let in_flight: RefCell<VecDeque<InFlight>> = RefCell::new(VecDeque::new());
        // Closed loop: credits to send (`--pipeline`); open loop: a cap.
        let credits =
            Semaphore::new(if self.schedule.is_some() { OPEN_LOOP_MAX_IN_FLIGHT } else { self.plan.pipeline });
        // Sent messages the reader may wait for.
        let sent = Semaphore::new(0);

        let writer = async {
            let mut buf = vec![0u8; self.plan.size];
            for _ in 0..budget {
                if let Ok(permit) = credits.acquire().await {
                    permit.forget();
                }
                let intended = match self.schedule {
                    Some((first, interval)) => {
                        let tick = self.tick.get();
                        self.tick.set(tick + 1);
                        let at = first + interval.mul_f64(tick as f64);
                        sleep_until(at.into()).await;
                        Some(at)
                    }
                    None => None,
                };
                let message = self.next_message(&mut buf, intended);
                in_flight.borrow_mut().push_back(message);
                sent.add_permits(1);
                if let Err(err) = wr.write_all(&buf).await {
                    return Failure::from_io(&err);
                }
            }
            std::future::pending().await
        };

        let reader = async {
            let mut buf = vec![0u8; self.plan.size];
            let mut alarm = pin!(sleep(self.plan.timeout));
            for _ in 0..budget {
                if let Ok(permit) = sent.acquire().await {
                    permit.forget();
                }
                let Some(head) = in_flight.borrow().front().copied() else {
                    return Some(Failure::Io); // unreachable: a permit means a message in flight
                };
                let due = head.sent + self.plan.timeout;
                if let Err(failure) = with_alarm(alarm.as_mut(), due, rd.read_exact(&mut buf)).await {
                    return Some(failure);
                }
                in_flight.borrow_mut().pop_front();
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
            Some(failure) => self.fail(failure, in_flight.borrow().len()),
        }
    }

    /// Writes the next message into `buf` and notes when it leaves.
    fn next_message(&self, buf: &mut [u8], intended: Option<Instant>) -> InFlight {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        self.messages.fill(seq, buf);
        let sent = Instant::now();
        InFlight { seq, intended: intended.unwrap_or(sent), sent }
    }

    /// An echo arrived complete: verify and record it.
    fn complete(&self, head: InFlight, echo: &[u8]) {
        let now = Instant::now();
        let mut recorder = self.recorder.borrow_mut();
        if self.messages.matches(head.seq, echo) {
            let raw = self.schedule.map(|_| now - head.sent);
            recorder.ok(self.slot, now, now - head.intended, raw);
        } else {
            recorder.failed(now, Failure::Mismatch, 1);
        }
    }

    /// The connection failed: every message still in flight is lost with it.
    fn fail(&self, failure: Failure, in_flight: usize) -> End {
        self.recorder.borrow_mut().failed(Instant::now(), failure, in_flight.max(1) as u64);
        End::Failed
    }
}

/// Runs `io` unless the oldest message in flight passes `due` first. One
/// timer per connection, re-armed only when it fires early: cheaper than a
/// new timer per message. `due` only ever moves later, so it never fires late.
async fn with_alarm<T>(
    mut alarm: Pin<&mut Sleep>,
    due: Instant,
    io: impl Future<Output = io::Result<T>>,
) -> Result<T, Failure> {
    let mut io = pin!(io);
    loop {
        tokio::select! {
            biased;
            result = &mut io => return result.map_err(|err| Failure::from_io(&err)),
            () = alarm.as_mut() => {
                if Instant::now() >= due {
                    return Err(Failure::Timeout);
                }
                alarm.as_mut().reset(due.into());
            }
        }
    }
}

/// Churn: half-close, wait for the server's EOF, then close. The server
/// closes first, so TIME_WAIT stays on its side, not on our ports.
async fn close_politely(stream: &mut TcpStream, limit: Duration) {
    if stream.shutdown().await.is_ok() {
        let mut byte = [0u8; 1];
        let _ = timeout(limit, stream.read(&mut byte)).await;
    }
}
