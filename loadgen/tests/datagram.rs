//! loadgen over UDP against fake servers written here, each misbehaving in
//! one known way and counting what it did. Every server is a
//! `std::net::UdpSocket` on 127.0.0.1:0 (or [::1]:0) served by one thread,
//! stopped and joined when the test drops it; every run is a second or two.
//!
//! Exact counts: the runs have no warm-up, so every datagram is sent inside
//! the window, and then `sent` = ok + lost + reordered + mismatched + in
//! flight at the end, exactly. A fault is applied a fixed number of times
//! early in the run (`limit`), so that every faulty datagram is decided well
//! before the window closes: the count loadgen reports must then equal the
//! count the fake server recorded.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use echo_common::Transport;
use loadgen::report::DatagramReport;
use loadgen::stats::Datagrams;
use loadgen::{Opts, Report};

/// What a fake server does with the datagrams it receives.
#[derive(Clone, Copy)]
enum Fault {
    /// Echoes every datagram once.
    Echo,
    /// Drops every `n`th datagram, `limit` times; echoes the rest.
    DropEvery { n: u64, limit: u64 },
    /// Echoes every `n`th datagram twice, `limit` times.
    DuplicateEvery { n: u64, limit: u64 },
    /// Holds a sender's datagram and echoes it after that sender's next one,
    /// `limit` times.
    SwapPairs { limit: u64 },
    /// Echoes every `n`th datagram `delay` late, `limit` times.
    DelayEvery { n: u64, limit: u64, delay: Duration },
    /// Flips a byte past the header in every `n`th echo, `limit` times.
    FlipEvery { n: u64, limit: u64 },
    /// Answers every datagram, but from another socket (another port).
    OtherPort,
    /// Receives every datagram and never answers.
    Silent,
    /// Stops answering for `length`, once, `after` it started; then echoes
    /// what queued up.
    StallOnce { after: Duration, length: Duration },
}

/// What a fake server did.
#[derive(Default)]
struct Counts {
    received: AtomicU64,
    /// Times the fault was applied.
    faults: AtomicU64,
    /// Datagrams it sent back (from either socket).
    answered: AtomicU64,
}

struct FakeServer {
    /// What loadgen's `--addr` takes: `udp:127.0.0.1:PORT`.
    addr: String,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    fn start(fault: Fault) -> FakeServer {
        FakeServer::start_on("127.0.0.1:0", fault)
    }

    fn start_on(bind: &str, fault: Fault) -> FakeServer {
        let socket = UdpSocket::bind(bind).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let addr = format!("udp:{}", socket.local_addr().unwrap());
        let other = UdpSocket::bind(socket.local_addr().unwrap().ip().to_string() + ":0").unwrap();
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (Arc::clone(&counts), Arc::clone(&stop));
        let thread = thread::spawn(move || serve(&socket, &other, fault, &c, &s));
        FakeServer { addr, counts, stop, thread: Some(thread) }
    }

    fn faults(&self) -> u64 {
        self.counts.faults.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(socket: &UdpSocket, other: &UdpSocket, fault: Fault, counts: &Counts, stop: &AtomicBool) {
    let started = Instant::now();
    let mut buf = vec![0u8; 65_536];
    let mut held: HashMap<SocketAddr, Vec<u8>> = HashMap::new();
    let mut delayed: Vec<(Instant, Vec<u8>, SocketAddr)> = Vec::new();
    let answer = |data: &[u8], to: SocketAddr, from: &UdpSocket| {
        if from.send_to(data, to).is_ok() {
            counts.answered.fetch_add(1, Ordering::SeqCst);
        }
    };
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        for (_, data, to) in delayed.iter().filter(|(at, _, _)| *at <= now) {
            answer(data, *to, socket);
        }
        delayed.retain(|(at, _, _)| *at > now);
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => continue, // an ICMP error from a client gone: not ours to stop on
        };
        let number = counts.received.fetch_add(1, Ordering::SeqCst) + 1;
        let faults = counts.faults.load(Ordering::SeqCst);
        let data = &mut buf[..len];
        match fault {
            Fault::Echo => answer(data, from, socket),
            Fault::DropEvery { n, limit } if number % n == 0 && faults < limit => {
                counts.faults.fetch_add(1, Ordering::SeqCst);
            }
            Fault::DuplicateEvery { n, limit } if number % n == 0 && faults < limit => {
                counts.faults.fetch_add(1, Ordering::SeqCst);
                answer(data, from, socket);
                answer(data, from, socket);
            }
            Fault::SwapPairs { limit } => {
                if let Some(first) = held.remove(&from) {
                    counts.faults.fetch_add(1, Ordering::SeqCst);
                    answer(data, from, socket);
                    answer(&first, from, socket);
                } else if faults + (held.len() as u64) < limit {
                    held.insert(from, data.to_vec());
                } else {
                    answer(data, from, socket);
                }
            }
            Fault::DelayEvery { n, limit, delay } if number % n == 0 && faults < limit => {
                counts.faults.fetch_add(1, Ordering::SeqCst);
                delayed.push((Instant::now() + delay, data.to_vec(), from));
            }
            Fault::FlipEvery { n, limit } if number % n == 0 && faults < limit => {
                counts.faults.fetch_add(1, Ordering::SeqCst);
                data[len / 2] ^= 0x01;
                answer(data, from, socket);
            }
            Fault::OtherPort => answer(data, from, other),
            Fault::Silent => {}
            Fault::StallOnce { after, length } => {
                let now = started.elapsed();
                if now >= after && now < after + length {
                    counts.faults.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(after + length - now);
                }
                answer(data, from, socket);
            }
            _ => answer(data, from, socket),
        }
    }
}

/// `flows` flows of `pipeline` 64-byte datagrams, no warm-up, a 200 ms timeout.
fn opts(addr: &str, flows: u32, pipeline: u32, duration_ms: u64) -> Opts {
    Opts {
        addr: addr.to_owned(),
        connections: flows,
        size: 64,
        duration: Duration::from_millis(duration_ms),
        warmup: Duration::ZERO,
        threads: Some(2),
        timeout: Duration::from_millis(200),
        pipeline,
        progress: false,
        ..Opts::default()
    }
}

/// Runs the load and checks what holds for every UDP run: each datagram
/// sent is accounted for once, ok is the requests' ok and the histogram's
/// count, and the loss percentage is lost over decided.
fn run(opts: &Opts) -> (Report, Datagrams) {
    let report = loadgen::run(opts).unwrap();
    assert_eq!(report.transport, Transport::Udp);
    let section = report.datagrams.clone().expect("a UDP run has a datagrams section");
    let d = section.counts.clone();
    assert_eq!(d.sent, d.decided() + d.in_flight_at_end, "every datagram sent is accounted for once: {d:?}");
    // In flight per flow at most: --pipeline in closed loop, --window in open loop.
    let limit = if opts.rate.is_some() { opts.window.unwrap_or(loadgen::opts::DEFAULT_WINDOW) } else { opts.pipeline };
    assert!(d.in_flight_at_end <= u64::from(opts.connections) * u64::from(limit), "{d:?}");
    assert_eq!(report.requests.ok, d.ok);
    assert_eq!(report.requests.timed_out, d.lost);
    assert_eq!(report.requests.mismatched, d.mismatched);
    assert_eq!(report.latency_us.count, d.ok, "latency covers delivered datagrams only");
    assert_eq!(report.per_connection.counts.iter().sum::<u64>(), d.ok);
    let expected = if d.decided() == 0 { 0.0 } else { 100.0 * d.lost as f64 / d.decided() as f64 };
    assert!((section.loss_percent - expected).abs() < 1e-9, "{} vs {expected}", section.loss_percent);
    let mut summary = Vec::new();
    report.write_summary(&mut summary).unwrap();
    let summary = String::from_utf8(summary).unwrap();
    assert!(
        summary.contains(&format!("loss {:.3} % (percentiles of delivered datagrams only)", section.loss_percent)),
        "{summary}"
    );
    (report, d)
}

#[test]
fn clean_echo_every_datagram_ok() {
    let server = FakeServer::start(Fault::Echo);
    let (report, d) = run(&opts(&server.addr, 8, 4, 1000));
    assert!(d.ok > 1000, "only {} ok", d.ok);
    assert_eq!((d.lost, d.reordered, d.mismatched, d.send_failed, d.duplicated, d.late), (0, 0, 0, 0, 0, 0), "{d:?}");
    assert_eq!(report.connections.established, 8);
    assert_eq!(report.per_connection.starved, 0);
    // Every datagram the server received was sent in the window (no warm-up).
    assert!(server.counts.received.load(Ordering::SeqCst) >= d.sent - d.in_flight_at_end);
    let kernel = report.datagrams.as_ref().unwrap().kernel.as_ref().expect("/proc/net/snmp is readable");
    assert_eq!((kernel.source.as_str(), kernel.scope.as_str()), ("/proc/net/snmp Udp", "host"));
    // The kernel delivered at least our echoes and the server's datagrams.
    assert!(kernel.counters.in_datagrams >= 2 * d.ok, "{kernel:?} vs {} ok", d.ok);
    let little = report.throughput.requests_per_sec * report.latency_us.mean * 1e-6;
    assert!((little / 32.0 - 1.0).abs() < 0.10, "Little's law: L = {little:.2}, expected 8 × 4");
    // (The kernel's counters are host-wide: another process's drops may
    // show in a warning of their own, not in these.)
    let ours = |w: &&String| w.contains("did not come back ok") || w.contains("extra echoes");
    assert!(!report.warnings.iter().any(|w| ours(&w)), "{:?}", report.warnings);
}

#[test]
fn clean_echo_over_ipv6() {
    let server = FakeServer::start_on("[::1]:0", Fault::Echo);
    assert!(server.addr.starts_with("udp:[::1]:"), "{}", server.addr);
    let (report, d) = run(&opts(&server.addr, 2, 1, 500));
    assert!(d.ok > 100 && d.decided() == d.ok, "{d:?}");
    let kernel = report.datagrams.unwrap().kernel.expect("/proc/net/snmp6 is readable");
    assert_eq!(kernel.source, "/proc/net/snmp6 Udp6");
}

#[test]
fn every_dropped_datagram_is_lost_and_frees_its_slot() {
    let server = FakeServer::start(Fault::DropEvery { n: 25, limit: 4 });
    let started = Instant::now();
    let (report, d) = run(&opts(&server.addr, 4, 1, 1500));
    assert!(started.elapsed() < Duration::from_secs(4), "run took {:?}", started.elapsed());
    assert_eq!(server.faults(), 4, "the fake dropped its 4");
    assert_eq!(d.lost, server.faults(), "{d:?}");
    assert_eq!((d.reordered, d.mismatched, d.duplicated, d.late), (0, 0, 0, 0), "{d:?}");
    // A lost datagram held its flow's only slot for the timeout, then the
    // flow went on: every flow kept echoing.
    assert_eq!(report.per_connection.starved, 0);
    assert!(d.ok > 1000, "{d:?}");
    let warning = format!("4 lost ({:.3} %)", report.datagrams.as_ref().unwrap().loss_percent);
    assert!(report.warnings.iter().any(|w| w.contains(&warning)), "{:?}", report.warnings);
    assert!(!report.warnings.iter().any(|w| w.contains("Little")), "{:?}", report.warnings);
}

#[test]
fn every_duplicate_is_counted_and_never_ok() {
    let server = FakeServer::start(Fault::DuplicateEvery { n: 10, limit: 7 });
    let (_, d) = run(&opts(&server.addr, 3, 1, 1000));
    assert_eq!(server.faults(), 7);
    assert_eq!(d.duplicated, 7, "{d:?}");
    assert_eq!((d.lost, d.reordered, d.mismatched, d.late), (0, 0, 0, 0), "{d:?}");
    assert_eq!(d.ok, d.decided());
}

#[test]
fn every_swapped_pair_counts_one_reordered() {
    let server = FakeServer::start(Fault::SwapPairs { limit: 9 });
    // Two in flight per flow, so a held datagram's successor always comes.
    let (_, d) = run(&opts(&server.addr, 3, 2, 1000));
    assert_eq!(server.faults(), 9);
    assert_eq!(d.reordered, 9, "{d:?}");
    assert_eq!((d.lost, d.mismatched, d.duplicated, d.late), (0, 0, 0, 0), "{d:?}");
}

/// An echo that comes after its timeout: the datagram is lost, the echo late.
#[test]
fn an_echo_after_the_timeout_is_lost_then_late() {
    let delay = Fault::DelayEvery { n: 30, limit: 3, delay: Duration::from_millis(400) };
    let server = FakeServer::start(delay);
    let (_, d) = run(&opts(&server.addr, 2, 2, 1500));
    assert_eq!(server.faults(), 3);
    assert_eq!((d.lost, d.late), (3, 3), "{d:?}");
    assert_eq!((d.reordered, d.mismatched, d.duplicated), (0, 0, 0), "{d:?}");
}

#[test]
fn every_flipped_byte_is_mismatched() {
    let server = FakeServer::start(Fault::FlipEvery { n: 20, limit: 6 });
    let (_, d) = run(&opts(&server.addr, 4, 2, 1000));
    assert_eq!(server.faults(), 6);
    assert_eq!(d.mismatched, 6, "{d:?}");
    assert_eq!((d.lost, d.reordered, d.duplicated, d.late), (0, 0, 0, 0), "{d:?}");
}

/// The kernel drops what comes from another port (the flow's socket is
/// connected): every datagram is lost, none is ok.
#[test]
fn answers_from_another_port_never_reach_the_flow() {
    let server = FakeServer::start(Fault::OtherPort);
    let (report, d) = run(&opts(&server.addr, 2, 1, 1000));
    assert!(server.counts.answered.load(Ordering::SeqCst) >= d.lost, "the fake did answer");
    assert_eq!(d.ok, 0, "{d:?}");
    assert_eq!(d.lost, d.sent - d.in_flight_at_end, "{d:?}");
    // 200 ms timeout, one slot per flow: about 5 per flow per second.
    assert!(d.lost >= 2 * 3, "{d:?}");
    assert_eq!(report.per_connection.starved, 2);
    assert!((report.datagrams.unwrap().loss_percent - 100.0).abs() < 1e-9);
}

#[test]
fn a_silent_server_loses_everything_and_the_run_ends_on_time() {
    let server = FakeServer::start(Fault::Silent);
    let started = Instant::now();
    let mut o = opts(&server.addr, 3, 2, 1000);
    o.rate = Some(100.0);
    let (report, d) = run(&o);
    assert!(started.elapsed() < Duration::from_secs(3), "run took {:?}", started.elapsed());
    assert_eq!((d.ok, d.reordered, d.mismatched, d.duplicated), (0, 0, 0, 0), "{d:?}");
    assert_eq!(d.lost, d.sent - d.in_flight_at_end, "{d:?}");
    // The fake received every datagram sent (the last ones maybe a moment
    // after the run returned).
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.counts.received.load(Ordering::SeqCst) < d.sent && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(d.sent, server.counts.received.load(Ordering::SeqCst));
    assert!(d.lost > 0 && report.latency_us.count == 0, "{d:?}");
}

/// Nobody listens: the ICMP port unreachable comes back as ECONNREFUSED on
/// the flow's socket, and is counted by errno; the run still has a result.
#[test]
fn a_closed_port_is_reported_by_errno() {
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (report, d) = run(&opts(&format!("udp:127.0.0.1:{port}"), 1, 1, 500));
    let refused = d.receive_errors.get("ECONNREFUSED").copied().unwrap_or(0)
        + d.send_errors.get("ECONNREFUSED").copied().unwrap_or(0);
    assert!(refused > 0, "{d:?}");
    assert_eq!(d.ok, 0);
    assert!(report.warnings.iter().any(|w| w.contains("did not come back ok")), "{:?}", report.warnings);
    assert!(report.warnings.iter().any(|w| w.contains("ICMP port unreachable")), "{:?}", report.warnings);
}

/// Open loop: a server stall shows in the corrected latency (datagrams held
/// back by the pipeline count from their intended time), not in the raw one.
#[test]
fn open_loop_stall_shows_in_corrected_not_raw_latency() {
    let stall = Fault::StallOnce { after: Duration::from_millis(500), length: Duration::from_millis(400) };
    let server = FakeServer::start(stall);
    let mut o = opts(&server.addr, 4, 1, 1500);
    o.rate = Some(1000.0);
    o.timeout = Duration::from_secs(3);
    // A window of one: a datagram waits for the last one's echo, so the
    // stall holds the schedule back and only the correction shows it.
    o.window = Some(1);
    let (report, d) = run(&o);
    assert!(server.faults() > 0, "the fake stalled");
    assert_eq!(d.decided(), d.ok, "a stall loses nothing: {d:?}");
    let raw = report.latency_raw_us.expect("open loop reports raw latency");
    assert!(report.latency_us.p99_9 >= 200_000, "corrected p99.9 {} µs", report.latency_us.p99_9);
    assert!(raw.p99 < 200_000, "raw p99 {} µs", raw.p99);
    assert_eq!(report.throughput.target_requests_per_sec, Some(1000.0));
}

/// With the default window the schedule is kept through the stall: the
/// datagrams leave on time and wait in the server's queue, so the raw
/// latency shows the stall as the corrected one does, and nothing was held
/// back (every datagram sent in the window was free to leave on time).
#[test]
fn open_loop_keeps_its_schedule_through_a_stall() {
    let stall = Fault::StallOnce { after: Duration::from_millis(500), length: Duration::from_millis(400) };
    let server = FakeServer::start(stall);
    let mut o = opts(&server.addr, 4, 1, 1500);
    o.rate = Some(1000.0);
    o.timeout = Duration::from_secs(3);
    let (report, d) = run(&o);
    assert!(server.faults() > 0, "the fake stalled");
    let raw = report.latency_raw_us.expect("open loop reports raw latency");
    assert!(raw.p99 >= 200_000, "raw p99 {} µs: the datagrams queued at the stalled server", raw.p99);
    assert_eq!(report.latency_us, raw, "none held back: corrected and raw are the same histogram");
    let late = report.send_lateness_us.expect("open loop measures the pacer");
    assert_eq!(late.count, d.sent, "every datagram was free to leave on time");
    // About 1,500 scheduled in the window; all sent.
    assert!(d.sent >= 1450, "{d:?}");
}

/// A server that drops one datagram in 20: the flows keep their schedule
/// (a lost datagram is counted at its timeout, it does not hold its flow),
/// so nearly all of it is sent, the loss reads 5 %, and 95 % of the offered
/// rate comes back.
#[test]
fn a_lossy_server_does_not_stall_the_open_loop() {
    let server = FakeServer::start(Fault::DropEvery { n: 20, limit: u64::MAX });
    let mut o = opts(&server.addr, 10, 1, 2000);
    o.rate = Some(2000.0);
    // Short, so that few lost datagrams are still undecided (in flight) at
    // the window's end, which would bias the loss down.
    o.timeout = Duration::from_millis(50);
    let (report, d) = run(&o);
    let scheduled = 2000.0 * 2.0;
    assert!(d.sent as f64 >= 0.97 * scheduled, "sent {} of {scheduled} scheduled: {d:?}", d.sent);
    let loss = report.datagrams.as_ref().unwrap().loss_percent;
    assert!((4.5..=5.5).contains(&loss), "loss {loss} %: {d:?}");
    let delivered = report.throughput.requests_per_sec / 2000.0;
    assert!((0.92..=0.97).contains(&delivered), "delivered {:.1} % of the offered rate", 100.0 * delivered);
    // No datagram was held back: the corrected latency is the raw one.
    assert_eq!(Some(report.latency_us), report.latency_raw_us, "{d:?}");
}

#[test]
fn merge_sums_datagrams_and_refuses_mixed_transports() {
    let dropping = FakeServer::start(Fault::DropEvery { n: 10, limit: 2 });
    let duplicating = FakeServer::start(Fault::DuplicateEvery { n: 10, limit: 3 });
    let (a, da) = run(&opts(&dropping.addr, 2, 1, 800));
    let (b, db) = run(&opts(&duplicating.addr, 3, 1, 800));
    let merged = loadgen::merge(&[a.clone(), b.clone()]).unwrap();
    let section = merged.datagrams.as_ref().expect("merged UDP results keep their datagrams");
    let mut sum = da.clone();
    sum.add(&db);
    assert_eq!(section.counts, sum);
    assert_eq!((section.counts.lost, section.counts.duplicated), (2, 3));
    assert!((section.loss_percent - sum.loss_percent()).abs() < 1e-12);
    let kernel_of = |r: &Report| r.datagrams.as_ref().and_then(|d| d.kernel.clone()).unwrap();
    let (ka, kb) = (kernel_of(&a), kernel_of(&b));
    let kernel = section.kernel.as_ref().unwrap();
    assert_eq!(kernel.counters.in_datagrams, ka.counters.in_datagrams + kb.counters.in_datagrams);
    assert_eq!(merged.requests.ok, da.ok + db.ok);
    assert_eq!(merged.connections.requested, 5);
    assert_eq!(merged.transport, Transport::Udp);
    assert!(merged.warnings.iter().any(|w| w.contains("2 lost")), "{:?}", merged.warnings);

    let mut tcp = b.clone();
    tcp.transport = Transport::Tcp;
    tcp.datagrams = None;
    let err = loadgen::merge(&[a.clone(), tcp]).unwrap_err().to_string();
    assert!(err.contains("udp") && err.contains("tcp") && err.contains("different transports"), "{err}");
    assert!(DatagramReport::merge(std::iter::empty()).counts == Datagrams::default());
}

#[test]
fn json_round_trip_keeps_every_datagram_field() {
    let server = FakeServer::start(Fault::DuplicateEvery { n: 5, limit: 2 });
    let (report, _) = run(&opts(&server.addr, 2, 1, 500));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("udp.json");
    loadgen::write_json(&report, &path).unwrap();
    let value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(value["schema_version"], loadgen::report::SCHEMA_VERSION);
    assert_eq!(value["transport"], "udp");
    let d = &value["datagrams"];
    for key in
        ["sent", "ok", "lost", "reordered", "mismatched", "send_failed", "duplicated", "late", "in_flight_at_end"]
    {
        assert!(d[key].is_u64(), "datagrams.{key}");
    }
    assert_eq!(d["duplicated"], 2);
    assert!(d["send_errors"].is_object() && d["receive_errors"].is_object());
    assert!(d["loss_percent"].is_number());
    for key in ["in_errors", "rcvbuf_errors", "sndbuf_errors", "in_datagrams", "out_datagrams", "no_ports"] {
        assert!(d["kernel"][key].is_u64(), "datagrams.kernel.{key}");
    }
    assert_eq!(d["kernel"]["scope"], "host");
    let mut back = loadgen::read_json(&path).unwrap();
    back.config.progress = report.config.progress; // a terminal setting, not serialised
    assert_eq!(back, report);
}

#[test]
fn cli_refuses_what_udp_cannot_do_with_one_line_and_exit_2() {
    let bin = env!("CARGO_BIN_EXE_loadgen");
    for (args, needle) in [
        (&["--size", "8"][..], "at least 12 bytes"),
        (&["--size", "65508"][..], "at most 65507"),
        (&["--reconnect-every", "1"][..], "--reconnect-every"),
    ] {
        let out = std::process::Command::new(bin)
            .args(["--addr", "udp:127.0.0.1:9", "--duration", "1s", "--warmup", "0s"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
    let out = std::process::Command::new(bin).args(["--addr", "udp:127.0.0.1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("udp:IP:PORT"));
}
