//! # loadgen: an honest, cheap load generator for echo servers (TCP, Unix sockets, UDP)
//!
//! Honest: a request counts only when its whole echo has arrived and matched
//! byte-for-byte; every other outcome is counted by kind; throughput is
//! divided by the measured window, not the nominal one; connections that
//! could not be established or never got an echo are reported, not hidden;
//! open-loop latency is measured from the intended send time.
//!
//! Cheap: a few event-loop threads (one tokio current-thread runtime each),
//! never a thread per connection, per-thread histograms merged at the end,
//! no channel message per request.
//!
//! ## Reading order
//!
//! 1. [`opts`]: the options (the CLI and the library input are one struct).
//! 2. [`message`]: what is sent, and how an echo is checked.
//! 3. [`engine`]: threads, connections, the writer/reader pair per connection.
//! 4. [`stats`]: what each thread records; [`report`]: the merged result,
//!    its JSON schema and the human summary.
//! 5. [`datagram`]: the engine for `udp:` addresses, which counts what a
//!    stream never shows (lost, duplicated, reordered datagrams).
//!
//! ```no_run
//! let opts = loadgen::Opts { addr: "127.0.0.1:7000".into(), connections: 100, ..Default::default() };
//! let report = loadgen::run(&opts)?;
//! println!("{:.0} msg/s", report.throughput.requests_per_sec);
//! # Ok::<(), loadgen::LoadError>(())
//! ```

pub mod agent;
pub mod control;
pub mod coordinator;
pub mod cpu;
pub mod datagram;
pub mod engine;
pub mod env;
pub mod kernel;
pub mod message;
pub mod opts;
pub mod pacer;
pub mod protocol;
pub mod report;
pub mod stats;

use std::io::{self, IsTerminal};
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use echo_common::Endpoint;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use thiserror::Error;

use crate::cpu::ProcessCpu;
use crate::engine::{Plan, Shared, ThreadResult};
pub use crate::opts::Opts;
pub use crate::report::Report;
use crate::report::{
    ClientCpu, Connections, HistogramError, LatencySummary, PerConnection, SCHEMA_VERSION, Throughput, TimelineEntry,
};
use crate::stats::{Connects, Requests, SIGFIG, TIMELINE_SIGFIG, Window, latency_histogram};
use echo_common::Transport;

/// Why a run or a merge produced no result.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error(transparent)]
    Address(#[from] echo_common::endpoint::EndpointError),
    /// Options that cannot run at all (bad usage, exit status 2).
    #[error("invalid options: {0}")]
    Options(String),
    #[error("cannot connect to {endpoint}: {error} (all {requested} connections failed)")]
    Unreachable { endpoint: Endpoint, error: String, requested: u64 },
    #[error(
        "{endpoint} accepted connections but closed every one before its first echo \
         ({closed} closed so, over {requested} connection(s); reconnects were paced by a growing pause)"
    )]
    TurnedAway { endpoint: Endpoint, closed: u64, requested: u64 },
    #[error("cannot start the load threads: {0}")]
    Threads(io::Error),
    #[error(transparent)]
    Histogram(#[from] HistogramError),
    #[error("cannot merge: {0}")]
    Merge(String),
    /// Options that cannot run over this transport (bad usage).
    #[error("{0}")]
    Unsupported(String),
    /// The coordinator of a `--control` run gave up before the start.
    #[error("aborted by the coordinator: {0}")]
    Aborted(String),
}

/// Runs the load described by `opts` and returns its report. With
/// `opts.progress` and a terminal on stderr, shows a progress bar.
pub fn run(opts: &Opts) -> Result<Report, LoadError> {
    let bar = progress_bar(opts);
    let report = run_observed(opts, &mut |event| {
        if let (Some(bar), Event::Progress { elapsed, rate }) = (&bar, event) {
            bar.set_position(elapsed.as_millis() as u64);
            bar.set_message(format!("{} msg/s", report::fmt_count(rate)));
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    report
}

/// What [`run_observed`] tells its observer, from the calling thread, while
/// the load runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    /// About every 100 ms: time since the clock started, live msg/s.
    Progress { elapsed: Duration, rate: f64 },
    /// The warm-up is over: the measured window opens now. Called at the
    /// instant the window's counts start, so a caller that samples the
    /// server here measures the same interval as the report.
    WindowOpened,
    /// The measured window closed now: at its end, or when the last
    /// connection stopped if that came first. The report's `duration_secs`
    /// is the time between the two events (to within a tick).
    WindowClosed,
}

/// Like [`run`], telling `observer` about progress and the measured window
/// (for callers that draw their own progress display or measure the server
/// over exactly the window loadgen measured).
pub fn run_observed(opts: &Opts, observer: &mut dyn FnMut(Event)) -> Result<Report, LoadError> {
    run_controlled(opts, observer, &mut || Ok(Instant::now()))
}

/// Like [`run_observed`], with the start of the clock set by a coordinator:
/// once every connection is open, `start_at` is asked when the load begins
/// (an instant that may lie ahead; the warm-up and the window follow it).
/// The coordinator then knows the window's edges, `start + warmup` and
/// `start + warmup + duration`, without being told (the several-process
/// and several-host runs of `loadgen --control`). An error from `start_at`
/// ends the run: every thread is released and stops at once.
pub fn run_controlled(
    opts: &Opts,
    observer: &mut dyn FnMut(Event),
    start_at: &mut dyn FnMut() -> Result<Instant, LoadError>,
) -> Result<Report, LoadError> {
    opts.check().map_err(LoadError::Options)?;
    check_memory(opts, available_memory()).map_err(LoadError::Options)?;
    let endpoint = Endpoint::parse(&opts.addr)?;
    let udp = endpoint.transport() == Transport::Udp;
    if udp {
        datagram::check(opts).map_err(LoadError::Unsupported)?;
    } else if opts.window.is_some() {
        return Err(LoadError::Unsupported(
            "--window applies over udp only (datagrams in flight per flow); a stream's is --pipeline".into(),
        ));
    }
    if opts.rate.is_none() && (opts.arrivals != opts::Arrivals::Uniform || opts.window.is_some()) {
        return Err(LoadError::Unsupported("--arrivals and --window shape the open loop: they need --rate".into()));
    }
    let connections = opts.connections as usize;
    let mut notes = Vec::new();
    if let Some(note) = raise_fd_limit(connections as u64 + 64) {
        notes.push(note);
    }
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let threads = opts.threads.map_or(cpus, |t| t as usize).clamp(1, connections);
    let numbering = opts.numbering();
    let plan = Arc::new(Plan {
        endpoint: endpoint.clone(),
        size: opts.size as usize,
        pipeline: opts.pipeline as usize,
        timeout: opts.timeout,
        connect_timeout: opts.connect_timeout,
        rate: numbering.rate,
        arrivals: opts.arrivals,
        seed: opts.seed,
        pacer: opts.pacer,
        window: opts.window.unwrap_or(opts::DEFAULT_WINDOW) as usize,
        reconnect_every: opts.reconnect_every,
        close: opts.close,
        // A part of a split load keeps the whole load's schedule.
        connections: numbering.connections,
        warmup: opts.warmup,
    });
    let ids = numbering.ids;
    let shared = Shared::new(threads);
    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        // The i-th connection goes to thread i mod T.
        let slots: Vec<u32> = ids.iter().skip(index).step_by(threads).copied().collect();
        let (plan, shared) = (Arc::clone(&plan), Arc::clone(&shared));
        let handle = thread::Builder::new()
            .name(format!("loadgen-{index}"))
            .spawn(move || {
                if udp {
                    datagram::thread_main(index, slots, plan, shared)
                } else {
                    engine::thread_main(index, slots, plan, shared)
                }
            })
            .map_err(LoadError::Threads)?;
        handles.push(handle);
    }

    shared.wait_connected();
    let (start, refused) = match start_at() {
        Ok(start) => (start, None),
        // Release the threads into a window that has already closed: they
        // stop at once, and the error is returned once they have.
        Err(err) => (Instant::now(), Some(err)),
    };
    let window = match refused {
        None => Window { start, warm_end: start + opts.warmup, end: start + opts.warmup + opts.duration },
        Some(_) => Window { start, warm_end: start, end: start },
    };
    shared.start(window);
    if let Some(err) = refused {
        for handle in handles {
            let _ = handle.join();
        }
        return Err(err);
    }

    let all_stopped = || handles.iter().all(|h| h.is_finished());
    let mut ticker = Ticker { start, observer, shared: &shared };
    ticker.wait_until(window.warm_end, &all_stopped);
    (ticker.observer)(Event::WindowOpened);
    let (cpu_start, cpu_opened) = (ProcessCpu::now(), Instant::now());
    let kernel = datagram::KernelWindow::open(&endpoint);
    let kernel_tcp = matches!(endpoint, Endpoint::Tcp(_)).then(kernel::TcpWindow::open);
    ticker.wait_until(window.end, &all_stopped);
    let (cpu_used, cpu_wall) = (ProcessCpu::now().since(cpu_start), cpu_opened.elapsed());
    let kernel = kernel.map(datagram::KernelWindow::close);
    let kernel_tcp = kernel_tcp.map(kernel::TcpWindow::close);
    (ticker.observer)(Event::WindowClosed);

    let mut results = Vec::with_capacity(threads);
    for handle in handles {
        match handle.join() {
            Ok(Ok(result)) => results.push(result),
            Ok(Err(err)) => return Err(LoadError::Threads(err)),
            Err(_) => return Err(LoadError::Threads(io::Error::other("a load thread panicked"))),
        }
    }
    let established: u64 = results.iter().map(|r| r.recorder.connects.established).sum();
    if established == 0 {
        let error = shared.first_connect_error.lock().map(|e| e.clone()).unwrap_or_default();
        let closed: u64 = results.iter().map(|r| r.recorder.connects.closed_before_echo).sum();
        if error.is_none() && closed > 0 {
            // Every connect succeeded; the server then closed each connection.
            return Err(LoadError::TurnedAway { endpoint, closed, requested: connections as u64 });
        }
        return Err(LoadError::Unreachable {
            endpoint,
            error: error.unwrap_or_else(|| "no connection".into()),
            requested: connections as u64,
        });
    }
    let cpu = CpuWindow { used: cpu_used, wall: cpu_wall };
    if let Some(Err(why)) = &kernel_tcp {
        notes.push(format!("the kernel's TCP counters are not reported: {why}"));
    }
    if let Some(Err(why)) = &kernel {
        notes.push(format!("the kernel's UDP drop counters are not reported: {why}"));
    }
    let mut report = assemble(opts, endpoint.transport(), window, results, cpu, &notes)?;
    report.kernel_tcp = kernel_tcp.and_then(Result::ok);
    if let Some(datagrams) = report.datagrams.as_mut() {
        datagrams.kernel = kernel.and_then(Result::ok);
        report.compute_warnings(&notes);
    }
    Ok(report)
}

/// The main thread's wait during the run, reporting progress.
struct Ticker<'a> {
    start: Instant,
    observer: &'a mut dyn FnMut(Event),
    shared: &'a Shared,
}

impl Ticker<'_> {
    /// Sleeps until `deadline` or until every thread has stopped.
    fn wait_until(&mut self, deadline: Instant, all_stopped: &dyn Fn() -> bool) {
        let mut last = (Instant::now(), self.completed());
        while !all_stopped() {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            thread::sleep((deadline - now).min(Duration::from_millis(100)));
            let (now, done) = (Instant::now(), self.completed());
            let rate = (done - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-3);
            (self.observer)(Event::Progress { elapsed: now - self.start, rate });
            last = (now, done);
        }
    }

    fn completed(&self) -> u64 {
        self.shared.progress.iter().map(|c| c.load(std::sync::atomic::Ordering::Relaxed)).sum()
    }
}

fn progress_bar(opts: &Opts) -> Option<ProgressBar> {
    if !opts.progress || !io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new((opts.warmup + opts.duration).as_millis() as u64);
    let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    Some(bar)
}

/// The process's CPU use over the window.
struct CpuWindow {
    used: ProcessCpu,
    wall: Duration,
}

/// Merges the threads' recorders into a report.
fn assemble(
    opts: &Opts,
    transport: Transport,
    window: Window,
    results: Vec<ThreadResult>,
    cpu: CpuWindow,
    notes: &[String],
) -> Result<Report, LoadError> {
    let threads = results.len();
    let mut latency = latency_histogram(SIGFIG);
    let mut latency_raw = latency_histogram(SIGFIG);
    let mut connect = latency_histogram(SIGFIG);
    let mut send_lateness = latency_histogram(SIGFIG);
    let mut timeline: Vec<Histogram<u64>> = Vec::new();
    let mut requests = Requests::default();
    let mut connects = Connects::default();
    let mut clamped = 0;
    let mut datagrams = stats::Datagrams::default();
    let mut per_connection = Vec::new();
    let mut max_thread_utilisation: f64 = 0.0;
    let mut stopped = window.warm_end;
    for result in &results {
        let rec = &result.recorder;
        report::add(&mut latency, &rec.latency)?;
        report::add(&mut latency_raw, &rec.latency_raw)?;
        report::add(&mut connect, &rec.connect)?;
        report::add(&mut send_lateness, &rec.send_lateness)?;
        for (i, second) in rec.timeline.iter().enumerate() {
            if timeline.len() <= i {
                timeline.push(latency_histogram(TIMELINE_SIGFIG));
            }
            report::add(&mut timeline[i], second)?;
        }
        requests.add(&rec.requests);
        connects.add(&rec.connects);
        clamped += rec.clamped;
        datagrams.add(&rec.datagrams);
        per_connection
            .extend(rec.per_connection.iter().zip(&rec.established_slots).filter(|(_, e)| **e).map(|(n, _)| *n));
        // This thread's share of its own window (it may have stopped early).
        let window_secs = result.stopped.min(window.end).saturating_duration_since(window.warm_end).as_secs_f64();
        if window_secs > 0.0 {
            max_thread_utilisation = max_thread_utilisation.max(result.cpu_secs / window_secs);
        }
        stopped = stopped.max(result.stopped);
    }
    // The measured wall time: until the window's end, or until the last
    // connection stopped if that came first.
    let duration = stopped.min(window.end).saturating_duration_since(window.warm_end);
    let duration_secs = duration.as_secs_f64();
    let per_sec = |n: f64| if duration_secs > 0.0 { n / duration_secs } else { 0.0 };
    let cpu_secs = (cpu.used.user + cpu.used.sys).as_secs_f64();
    let cpu_wall = cpu.wall.as_secs_f64().max(1e-9);
    let open = opts.rate.is_some();
    let seconds = duration_secs.ceil() as usize;
    let timeline = timeline
        .iter()
        .take(seconds)
        .enumerate()
        .map(|(i, h)| TimelineEntry::of(i as u64, h))
        .collect::<Result<Vec<_>, _>>()?;

    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        config: opts.clone(),
        mode: opts.mode().to_owned(),
        transport,
        environment: env::Environment::detect(),
        connections: Connections {
            requested: u64::from(opts.connections),
            established: connects.established,
            failed: connects.failed,
            attempts: connects,
        },
        requests,
        datagrams: (transport == Transport::Udp).then(|| report::DatagramReport::of(datagrams, None)),
        duration_secs,
        throughput: Throughput {
            requests_per_sec: per_sec(requests.ok as f64),
            bytes_per_sec: per_sec(requests.ok as f64 * f64::from(opts.size)),
            target_requests_per_sec: opts.rate,
        },
        latency_us: LatencySummary::of(&latency, clamped),
        latency_raw_us: open.then(|| LatencySummary::of(&latency_raw, 0)),
        connect_us: (opts.reconnect_every.is_some() || !connect.is_empty()).then(|| LatencySummary::of(&connect, 0)),
        send_lateness_us: open.then(|| LatencySummary::of(&send_lateness, 0)),
        per_connection: PerConnection::of(per_connection),
        client_cpu: ClientCpu {
            user_secs: cpu.used.user.as_secs_f64(),
            sys_secs: cpu.used.sys.as_secs_f64(),
            utilisation: cpu_secs / (cpu_wall * threads as f64),
            max_thread_utilisation,
            threads: threads as u64,
            pacer_spin_secs: results.iter().map(|r| r.spin_secs).sum(),
        },
        timeline,
        window_monotonic_ns: Some([
            echo_common::clock::to_ns(window.warm_end),
            echo_common::clock::to_ns(window.warm_end + duration),
        ]),
        histogram: report::encode(&latency)?,
        histogram_raw: if open { Some(report::encode(&latency_raw)?) } else { None },
        histogram_connect: None,
        histogram_send_lateness: if open { Some(report::encode(&send_lateness)?) } else { None },
        kernel_tcp: None,
        warnings: Vec::new(),
    };
    if report.connect_us.is_some() {
        report.histogram_connect = Some(report::encode(&connect)?);
    }
    report.compute_warnings(notes);
    Ok(report)
}

/// Merges the reports of several loadgen processes (e.g. one per client
/// host, run at the same time): counts summed, histograms merged,
/// percentiles recomputed. Throughputs add up; the duration is the longest.
pub fn merge(reports: &[Report]) -> Result<Report, LoadError> {
    let Some(first) = reports.first() else {
        return Err(LoadError::Merge("nothing to merge".into()));
    };
    if let Some(r) = reports.iter().find(|r| r.schema_version != SCHEMA_VERSION) {
        return Err(LoadError::Merge(format!("schema version {} (expected {SCHEMA_VERSION})", r.schema_version)));
    }
    if let Some(r) = reports.iter().find(|r| r.transport != first.transport) {
        return Err(LoadError::Merge(format!(
            "a {} result and a {} result: results of different transports do not add up",
            first.transport, r.transport
        )));
    }
    let mut merged = first.clone();
    let decode_all = |pick: &dyn Fn(&Report) -> Option<&String>| -> Result<Option<Histogram<u64>>, LoadError> {
        let mut total: Option<Histogram<u64>> = None;
        for r in reports {
            if let Some(text) = pick(r) {
                let hist = report::decode(text)?;
                match total.as_mut() {
                    Some(t) => report::add(t, &hist)?,
                    None => total = Some(hist),
                }
            }
        }
        Ok(total)
    };
    let clamped = reports.iter().map(|r| r.latency_us.clamped).sum();
    let latency = decode_all(&|r| Some(&r.histogram))?.unwrap_or_else(|| latency_histogram(SIGFIG));
    merged.latency_us = LatencySummary::of(&latency, clamped);
    merged.histogram = report::encode(&latency)?;
    let raw = decode_all(&|r| r.histogram_raw.as_ref())?;
    merged.latency_raw_us = raw.as_ref().map(|h| LatencySummary::of(h, 0));
    merged.histogram_raw = raw.as_ref().map(report::encode).transpose()?;
    let connect = decode_all(&|r| r.histogram_connect.as_ref())?;
    merged.connect_us = connect.as_ref().map(|h| LatencySummary::of(h, 0));
    merged.histogram_connect = connect.as_ref().map(report::encode).transpose()?;
    let late = decode_all(&|r| r.histogram_send_lateness.as_ref())?;
    merged.send_lateness_us = late.as_ref().map(|h| LatencySummary::of(h, 0));
    merged.histogram_send_lateness = late.as_ref().map(report::encode).transpose()?;
    // As the UDP counters: summed, which is right for runs on different
    // hosts; `null` unless every run has them.
    merged.kernel_tcp = reports
        .iter()
        .map(|r| r.kernel_tcp.clone())
        .reduce(|sum, k| match (sum, k) {
            (Some(mut sum), Some(k)) => {
                sum.counters.add(&k.counters);
                sum.time_wait_at_open += k.time_wait_at_open;
                sum.time_wait_at_close += k.time_wait_at_close;
                Some(sum)
            }
            _ => None,
        })
        .flatten();

    merged.config.connections = reports.iter().map(|r| r.config.connections).sum();
    merged.config.rate = first.config.rate.map(|_| reports.iter().filter_map(|r| r.config.rate).sum());
    let mut requests = Requests::default();
    let mut attempts = Connects::default();
    for r in reports {
        requests.add(&r.requests);
        attempts.add(&r.connections.attempts);
    }
    merged.requests = requests;
    merged.datagrams = first
        .datagrams
        .as_ref()
        .map(|_| report::DatagramReport::merge(reports.iter().filter_map(|r| r.datagrams.as_ref())));
    merged.connections = Connections {
        requested: reports.iter().map(|r| r.connections.requested).sum(),
        established: attempts.established,
        failed: attempts.failed,
        attempts,
    };
    merged.duration_secs = reports.iter().map(|r| r.duration_secs).fold(0.0, f64::max);
    let (requests_per_sec, bytes_per_sec) = common_window_rates(reports).unwrap_or_else(|| {
        (
            reports.iter().map(|r| r.throughput.requests_per_sec).sum(),
            reports.iter().map(|r| r.throughput.bytes_per_sec).sum(),
        )
    });
    // The parts of one split load merge back into that load's options.
    if let Some(whole) = first.config.segment {
        let parts: Vec<_> = reports.iter().filter_map(|r| r.config.segment).collect();
        let mut indices: Vec<u32> = parts.iter().map(|s| s.index).collect();
        indices.sort_unstable();
        let same =
            parts.iter().all(|s| (s.count, s.connections, s.rate) == (whole.count, whole.connections, whole.rate));
        if same && indices == (0..whole.count).collect::<Vec<_>>() {
            merged.config.connections = whole.connections;
            merged.config.rate = whole.rate;
        }
        merged.config.segment = None;
    }
    merged.throughput = Throughput { requests_per_sec, bytes_per_sec, target_requests_per_sec: merged.config.rate };
    merged.window_monotonic_ns = common_window(reports);
    merged.per_connection = PerConnection::of(reports.iter().flat_map(|r| r.per_connection.counts.clone()).collect());
    let threads: u64 = reports.iter().map(|r| r.client_cpu.threads).sum();
    merged.client_cpu = ClientCpu {
        user_secs: reports.iter().map(|r| r.client_cpu.user_secs).sum(),
        sys_secs: reports.iter().map(|r| r.client_cpu.sys_secs).sum(),
        utilisation: reports.iter().map(|r| r.client_cpu.utilisation * r.client_cpu.threads as f64).sum::<f64>()
            / threads.max(1) as f64,
        max_thread_utilisation: reports.iter().map(|r| r.client_cpu.max_thread_utilisation).fold(0.0, f64::max),
        threads,
        pacer_spin_secs: reports.iter().map(|r| r.client_cpu.pacer_spin_secs).sum(),
    };
    let seconds = reports.iter().map(|r| r.timeline.len()).max().unwrap_or(0);
    let mut timeline = Vec::with_capacity(seconds);
    for second in 0..seconds {
        let mut hist = latency_histogram(TIMELINE_SIGFIG);
        for r in reports {
            if let Some(entry) = r.timeline.get(second) {
                report::add(&mut hist, &report::decode(&entry.histogram)?)?;
            }
        }
        timeline.push(TimelineEntry::of(second as u64, &hist)?);
    }
    merged.timeline = timeline;
    merged.compute_warnings(&[]);
    Ok(merged)
}

/// The window every part measured in: from the latest opening to the
/// earliest close (`None` if a part has no absolute times, or they do not
/// overlap).
fn common_window(reports: &[Report]) -> Option<[u64; 2]> {
    let windows: Option<Vec<[u64; 2]>> = reports.iter().map(|r| r.window_monotonic_ns).collect();
    let windows = windows?;
    let open = windows.iter().map(|w| w[0]).max()?;
    let close = windows.iter().map(|w| w[1]).min()?;
    (close > open).then_some([open, close])
}

/// Parts whose windows differ (started by hand, or on hosts whose clocks a
/// coordinator did not line up): the messages each part completed inside
/// the common window, over its length. A part's timeline counts per second;
/// a second the common window cuts counts in proportion to its overlap (as
/// if its messages were spread evenly over it). `None` when the parts share
/// their window to within a millisecond (then each part's own rate is over
/// that window and the rates add up exactly) or have no absolute times.
/// Messages and echoed bytes per second (each part's messages of its size).
fn common_window_rates(reports: &[Report]) -> Option<(f64, f64)> {
    const SECOND: u64 = 1_000_000_000;
    let [open, close] = common_window(reports)?;
    let same = reports
        .iter()
        .filter_map(|r| r.window_monotonic_ns)
        .all(|w| w[0].abs_diff(open) < 1_000_000 && w[1].abs_diff(close) < 1_000_000);
    if same {
        return None;
    }
    let (mut completed, mut bytes) = (0.0, 0.0);
    for r in reports {
        let [start, end] = r.window_monotonic_ns?;
        for entry in &r.timeline {
            let from = start + entry.second * SECOND;
            let to = (from + SECOND).min(end);
            let overlap = to.min(close).saturating_sub(from.max(open));
            if to > from {
                let inside = entry.completed as f64 * overlap as f64 / (to - from) as f64;
                completed += inside;
                bytes += inside * f64::from(r.config.size);
            }
        }
    }
    let secs = (close - open) as f64 * 1e-9;
    Some((completed / secs, bytes / secs))
}

/// Writes a report (or any value) as pretty JSON to `path` atomically: a
/// temporary file beside it, then a rename, so a reader (or a crash) never
/// sees half a file.
pub fn write_json(value: &impl serde::Serialize, path: &Path) -> io::Result<()> {
    let json = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    // This process's own temporary name: two writers of one file (a run
    // and a `bench report` of it) never write into each other's.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, json + "\n")?;
    std::fs::rename(&tmp, path)
}

/// Reads a report written by [`write_json`].
pub fn read_json(path: &Path) -> io::Result<Report> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Buffers each connection holds: the message it sends, the echo it reads,
/// and its pattern (see [`message::Messages`]), each `--size` bytes.
pub const BUFFERS_PER_CONNECTION: u64 = 3;

/// Refuses a run whose buffers alone (`BUFFERS_PER_CONNECTION` × `--size`
/// per connection) would not fit in `available` bytes of memory: it would
/// end in the OOM killer or in swap, not in a measurement.
pub fn check_memory(opts: &Opts, available: Option<u64>) -> Result<(), String> {
    let Some(available) = available else { return Ok(()) };
    let needed = u64::from(opts.connections) * BUFFERS_PER_CONNECTION * u64::from(opts.size);
    if needed > available {
        return Err(format!(
            "{} connection(s) of {} B messages need {} of buffers ({BUFFERS_PER_CONNECTION} per connection), \
             more than the {} of memory available: use fewer connections (-c) or smaller messages (-s)",
            opts.connections,
            opts.size,
            report::fmt_bytes(needed),
            report::fmt_bytes(available)
        ));
    }
    Ok(())
}

/// `MemAvailable` from /proc/meminfo, in bytes; `None` where it cannot be read.
fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Raises RLIMIT_NOFILE towards `needed`, up to the hard limit; a note when
/// that is not enough.
fn raise_fd_limit(needed: u64) -> Option<String> {
    match echo_common::limits::raise_nofile(needed) {
        Ok(limit) if limit.soft >= needed => None,
        Ok(limit) => Some(format!(
            "the open-file limit is {} (hard limit {}), below the {needed} descriptors this run needs: \
             some connections will fail (raise it with `ulimit -Hn`)",
            limit.soft, limit.hard
        )),
        Err(err) => Some(format!("cannot raise the open-file limit ({err}): some connections may fail")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use crossbeam_utils::CachePadded;

    use super::*;
    use crate::stats::Recorder;

    /// One thread's result over `window`: `latencies_us` completed in its
    /// first second on slot 0, and the pacer `late_us` for each.
    fn thread(window: Window, latencies_us: &[u64], late_us: u64) -> ThreadResult {
        let progress = Arc::new(vec![CachePadded::new(AtomicU64::new(0))]);
        let mut recorder = Recorder::new(window, 0, progress, 1);
        recorder.connects.established = 1;
        recorder.established_slots[0] = true;
        let at = window.warm_end + Duration::from_millis(10);
        for &us in latencies_us {
            recorder.ok(0, at, Duration::from_micros(us), Some(Duration::from_micros(us / 2)));
            recorder.send_late(at, Duration::from_micros(late_us));
        }
        ThreadResult { recorder, cpu_secs: 0.5, spin_secs: 0.0, stopped: window.end }
    }

    fn report(opts: &Opts, window: Window, threads: Vec<ThreadResult>) -> Report {
        let cpu = CpuWindow { used: ProcessCpu::default(), wall: Duration::from_secs(1) };
        assemble(opts, Transport::Tcp, window, threads, cpu, &[]).unwrap()
    }

    /// Merging the reports of two processes gives what one process running
    /// both loads would have reported: counts summed, histograms added
    /// exactly (every percentile, the pacer's lateness too), rates summed.
    #[test]
    fn a_merge_equals_one_run_of_both_loads() {
        let t0 = Instant::now();
        let window = Window { start: t0, warm_end: t0, end: t0 + Duration::from_secs(1) };
        let opts = Opts { connections: 1, rate: Some(1000.0), duration: Duration::from_secs(1), ..Opts::default() };
        let a: Vec<u64> = (1..=900).map(|i| 50 + i % 97).collect();
        let b: Vec<u64> = (1..=100).map(|i| 2_000 + 37 * i).collect();
        let one = report(&opts, window, vec![thread(window, &a, 3), thread(window, &b, 40)]);
        let merged = merge(&[
            report(&opts, window, vec![thread(window, &a, 3)]),
            report(&opts, window, vec![thread(window, &b, 40)]),
        ])
        .unwrap();
        assert_eq!(merged.requests, one.requests);
        assert_eq!(merged.latency_us, one.latency_us, "every percentile, exactly");
        assert_eq!(merged.latency_raw_us, one.latency_raw_us);
        assert_eq!(merged.send_lateness_us, one.send_lateness_us);
        assert_eq!(merged.send_lateness_us.map(|l| (l.count, l.p50, l.max)), Some((1000, 3, 40)));
        assert_eq!(merged.histogram, one.histogram);
        assert!((merged.throughput.requests_per_sec - one.throughput.requests_per_sec).abs() < 1e-9);
        assert_eq!(merged.config.connections, 2);
        assert_eq!(merged.config.rate, Some(2000.0));
        assert_eq!(merged.connections.established, 2);
    }
}
