//! loadgen against small servers written here, each misbehaving in one known
//! way. Every server listens on 127.0.0.1:0 (or a Unix socket in a temporary
//! directory), serves each connection on its own thread, and stops when the
//! test drops it; every run is a few seconds. The checks of what loadgen
//! does with a connection run over both transports (`tcp::…`, `unix::…`).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use echo_common::Transport;
use loadgen::{Opts, Report};

/// How a test server treats each message of `size` bytes.
#[derive(Clone, Copy)]
enum Behaviour {
    Echo,
    /// Flips one byte in every Nth echo of a connection.
    FlipEvery(u64),
    /// Sleeps before every echo.
    Delay(Duration),
    /// Every connection stops for `length`, once, `after` the server started.
    StallOnce {
        after: Duration,
        length: Duration,
    },
    /// Closes a connection after N echoes.
    CloseAfter(u64),
    /// Accepts N connections, then closes the listener.
    AcceptOnly(usize),
    /// Echoes, then after `after` closes every connection and the listener.
    DieAfter(Duration),
    /// Reads every message and never answers.
    Silent,
    /// Serves the first N connections; closes every later one at once, as a
    /// server at its connection cap does.
    Cap(usize),
}

/// Removes a socket file when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A connection of either transport, as the test servers use it.
trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

struct TestServer {
    /// What loadgen's `--addr` takes: `127.0.0.1:PORT` or `unix:PATH`.
    addr: String,
    stop: Arc<AtomicBool>,
    /// Holds a Unix socket's directory.
    _dir: Option<tempfile::TempDir>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // wake the acceptor
        match self.addr.strip_prefix("unix:") {
            Some(path) => drop(UnixStream::connect(path)),
            None => drop(TcpStream::connect(&self.addr)),
        }
    }
}

impl TestServer {
    fn start(behaviour: Behaviour, size: usize) -> TestServer {
        TestServer::start_on(Transport::Tcp, behaviour, size)
    }

    fn start_on(transport: Transport, behaviour: Behaviour, size: usize) -> TestServer {
        // Accepts one connection, read timeout set, as a `Conn`.
        type Accept = Box<dyn FnMut() -> io::Result<Box<dyn Conn>> + Send>;
        let (addr, dir, mut accept): (String, _, Accept) = match transport {
            Transport::Tcp => {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap().to_string();
                let accept = move || -> io::Result<Box<dyn Conn>> {
                    let (stream, _) = listener.accept()?;
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
                    Ok(Box::new(stream))
                };
                (addr, None, Box::new(accept))
            }
            Transport::Unix => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("test.sock");
                let listener = UnixListener::bind(&path).unwrap();
                // Like echo-server, the test server removes its socket file
                // when it stops: a client then finds no file (ENOENT).
                let file = RemoveOnDrop(path.clone());
                let accept = move || -> io::Result<Box<dyn Conn>> {
                    let _owned = &file;
                    let (stream, _) = listener.accept()?;
                    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
                    Ok(Box::new(stream))
                };
                (format!("unix:{}", path.display()), Some(dir), Box::new(accept))
            }
            Transport::Udp => unreachable!("stream test servers only: the UDP fakes are in tests/datagram.rs"),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let stopping = Arc::clone(&stop);
        thread::spawn(move || {
            let mut accepted = 0;
            loop {
                let stream = accept();
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                accepted += 1;
                if let Behaviour::Cap(n) = behaviour {
                    if accepted > n {
                        continue; // drops the stream: closed before any echo
                    }
                }
                let stopping = Arc::clone(&stopping);
                thread::spawn(move || serve(stream, behaviour, size, started, stopping));
                if let Behaviour::AcceptOnly(n) = behaviour {
                    if accepted == n {
                        return; // drops the listener: queued connections are reset
                    }
                }
                if let Behaviour::DieAfter(after) = behaviour {
                    if started.elapsed() >= after {
                        return;
                    }
                }
            }
        });
        TestServer { addr, stop, _dir: dir }
    }
}

fn serve(mut stream: Box<dyn Conn>, behaviour: Behaviour, size: usize, started: Instant, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; size];
    let mut echoed = 0u64;
    loop {
        // read one whole message, polling the stop flag
        let mut got = 0;
        while got < size {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            if let Behaviour::DieAfter(after) = behaviour {
                if started.elapsed() >= after {
                    return;
                }
            }
            match stream.read(&mut buf[got..]) {
                Ok(0) => return,
                Ok(n) => got += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
                Err(_) => return,
            }
        }
        echoed += 1;
        match behaviour {
            Behaviour::FlipEvery(n) if echoed % n == 0 => buf[size / 2] ^= 0x01,
            Behaviour::Delay(d) => thread::sleep(d),
            Behaviour::StallOnce { after, length } => {
                let now = started.elapsed();
                if now >= after && now < after + length {
                    thread::sleep(after + length - now);
                }
            }
            Behaviour::Silent => continue,
            _ => {}
        }
        if stream.write_all(&buf).is_err() {
            return;
        }
        if let Behaviour::CloseAfter(n) = behaviour {
            if echoed == n {
                return;
            }
        }
    }
}

fn opts(addr: &str, connections: u32, duration_ms: u64) -> Opts {
    Opts {
        addr: addr.to_owned(),
        connections,
        size: 64,
        duration: Duration::from_millis(duration_ms),
        warmup: Duration::from_millis(300),
        threads: Some(2),
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(3),
        progress: false,
        ..Opts::default()
    }
}

fn has_warning(report: &Report, needle: &str) -> bool {
    report.warnings.iter().any(|w| w.contains(needle))
}

/// Runs the loadgen binary with `args`, which must be refused as bad usage
/// (exit 2); its stderr.
fn usage_error(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen")).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    stderr
}

fn correct_server_no_errors_all_connected_littles_law_holds(transport: Transport) {
    let server = TestServer::start_on(transport, Behaviour::Echo, 64);
    let report = loadgen::run(&opts(&server.addr, 20, 1500)).unwrap();
    assert_eq!(report.connections.requested, 20);
    assert_eq!(report.connections.established, 20);
    assert_eq!(report.requests.errors(), 0, "{:?}", report.requests);
    assert!(report.requests.ok > 1000, "only {} ok", report.requests.ok);
    assert_eq!(report.per_connection.starved, 0);
    let little = report.throughput.requests_per_sec * report.latency_us.mean * 1e-6;
    assert!((little / 20.0 - 1.0).abs() < 0.10, "Little's law: L = {little:.2}, expected 20");
    assert!(!has_warning(&report, "Little"), "{:?}", report.warnings);
    // Throughput is over the measured window, which is close to the nominal one.
    assert!((report.duration_secs - 1.5).abs() < 0.1, "{}", report.duration_secs);
    let expected = report.requests.ok as f64 / report.duration_secs;
    assert!((report.throughput.requests_per_sec - expected).abs() < 1e-6);
}

fn flipped_byte_every_100th_echo_is_about_1_percent_mismatched(transport: Transport) {
    let server = TestServer::start_on(transport, Behaviour::FlipEvery(100), 64);
    let report = loadgen::run(&opts(&server.addr, 10, 1500)).unwrap();
    let r = report.requests;
    let share = r.mismatched as f64 / (r.ok + r.mismatched) as f64;
    assert!((0.008..=0.012).contains(&share), "mismatched share {share:.4} ({r:?})");
    assert_eq!(r.failed + r.timed_out, 0, "{r:?}");
}

#[test]
fn delayed_echo_p50_between_20_and_25_ms() {
    let server = TestServer::start(Behaviour::Delay(Duration::from_millis(20)), 64);
    let report = loadgen::run(&opts(&server.addr, 10, 1500)).unwrap();
    let p50 = report.latency_us.p50;
    assert!((20_000..=25_000).contains(&p50), "p50 {p50} µs");
}

fn open_loop_stall_shows_in_corrected_not_raw_latency(transport: Transport) {
    let stall = Behaviour::StallOnce { after: Duration::from_millis(1300), length: Duration::from_secs(1) };
    let server = TestServer::start_on(transport, stall, 64);
    let mut o = opts(&server.addr, 10, 3000);
    o.rate = Some(1000.0);
    let report = loadgen::run(&o).unwrap();
    let corrected = report.latency_us;
    let raw = report.latency_raw_us.expect("open loop reports raw latency");
    assert!(corrected.p99_9 >= 500_000, "corrected p99.9 {} µs", corrected.p99_9);
    assert!(raw.p99 < 500_000, "raw p99 {} µs", raw.p99);
    assert!(report.histogram_raw.is_some());
    assert_eq!(report.throughput.target_requests_per_sec, Some(1000.0));
}

/// A server that echoes every message 200 µs late, at one message a
/// millisecond on one connection: no echo comes after the next message's
/// intended time, so no message is held back by the server, and the
/// correction must charge none — whatever the client's own lateness. The
/// corrected histogram is then the raw one, exactly. (With tokio's 1 ms
/// timer, sends left up to 1 ms late, their echoes came after the next
/// intended time, and the next message was charged as held back.)
fn open_loop_charges_the_server_its_delay_only(transport: Transport) {
    let server = TestServer::start_on(transport, Behaviour::Delay(Duration::from_micros(200)), 64);
    let mut o = opts(&server.addr, 1, 2000);
    o.threads = Some(1);
    o.rate = Some(1000.0);
    let report = loadgen::run(&o).unwrap();
    let (corrected, raw) = (report.latency_us, report.latency_raw_us.expect("open loop: raw"));
    assert!(corrected.count >= 1900, "{corrected:?}");
    assert!((200..=2_000).contains(&raw.p50), "raw p50 {} µs: the fake's 200 µs and a loopback round trip", raw.p50);
    if raw.max < 1_000 {
        // No echo took longer than the interval: nothing was held back.
        assert_eq!(corrected, raw, "charged beyond the server's own time");
    } else {
        // A slow echo rightly holds the next messages back (on a loaded
        // machine the client reading late looks the same as a slow server),
        // and on a busy CI machine many are; still, the median is charged
        // far less than the interval more than its raw latency. The fault
        // this guards against (sends released late in bursts, each next
        // message charged as held back) put it a whole interval (1 ms)
        // above. (+20 µs here failed once in a clean clone's CI: 602
        // against 443 µs.)
        assert!(corrected.p50 <= raw.p50 + 500, "corrected p50 {} µs, raw {} µs", corrected.p50, raw.p50);
    }
    let late = report.send_lateness_us.expect("open loop measures the pacer");
    assert!(late.count > 0 && late.count <= corrected.count + 2, "{late:?}");
}

/// A server that stalls once for 50 ms, at one message a millisecond on
/// one connection over 2 s (2,000 messages): the message in the server at
/// the stall waits up to 50 ms, and the ~50 scheduled during it are held
/// back and charged from their intended times: 50, 49, … 1 ms. So the
/// corrected max is about 50 ms, p99.9 (the 2nd largest) about 48 ms and
/// p99 (the 21st largest) about 30 ms; the raw p99 stays at the round trip.
fn open_loop_stall_is_charged_from_the_intended_times(transport: Transport) {
    let stall = Behaviour::StallOnce { after: Duration::from_millis(900), length: Duration::from_millis(50) };
    let server = TestServer::start_on(transport, stall, 64);
    let mut o = opts(&server.addr, 1, 2000);
    o.threads = Some(1);
    o.rate = Some(1000.0);
    let report = loadgen::run(&o).unwrap();
    let (corrected, raw) = (report.latency_us, report.latency_raw_us.expect("open loop: raw"));
    assert!((1_950..=2_050).contains(&corrected.count), "{corrected:?}");
    assert!((45_000..=60_000).contains(&corrected.max), "corrected max {} µs, expected ≈ 50 ms", corrected.max);
    assert!((43_000..=56_000).contains(&corrected.p99_9), "corrected p99.9 {} µs, expected ≈ 48 ms", corrected.p99_9);
    assert!((25_000..=36_000).contains(&corrected.p99), "corrected p99 {} µs, expected ≈ 30 ms", corrected.p99);
    assert!(raw.p99 < 5_000, "raw p99 {} µs: only one message waited in the server", raw.p99);
    assert!((45_000..=60_000).contains(&raw.max), "raw max {} µs: the one in the server at the stall", raw.max);
}

/// Poisson arrivals: the same mean rate, reproducible from the seed, which
/// the JSON records with the arrival law; closed loop has no pacer figures.
#[test]
fn poisson_arrivals_keep_the_rate_and_record_their_seed() {
    let server = TestServer::start(Behaviour::Echo, 64);
    let mut o = opts(&server.addr, 4, 1500);
    o.rate = Some(2000.0);
    o.arrivals = loadgen::opts::Arrivals::Poisson;
    o.seed = 42;
    let report = loadgen::run(&o).unwrap();
    let achieved = report.throughput.requests_per_sec / 2000.0;
    assert!((0.92..=1.08).contains(&achieved), "{:.3} of the rate", achieved);
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["config"]["arrivals"], "poisson");
    assert_eq!(json["config"]["seed"], 42);
    assert!(json["send_lateness_us"]["p99"].is_u64(), "{}", json["send_lateness_us"]);
    let closed = loadgen::run(&opts(&server.addr, 2, 300)).unwrap();
    assert!(closed.send_lateness_us.is_none() && closed.histogram_send_lateness.is_none());
}

/// The pacer's options: a zero window, an unknown arrival law, a window on
/// a stream and pacing options without a rate are one line and exit 2.
#[test]
fn bad_pacer_options_exit_2() {
    let server = TestServer::start(Behaviour::Echo, 64);
    let cases: [(&[&str], &str); 5] = [
        (&["--addr", "udp:127.0.0.1:9", "--rate", "100", "--window", "0"], "0 is not in 1..=65536"),
        (&["--addr", "udp:127.0.0.1:9", "--rate", "100", "--window", "-3"], "-3 is not in 1..=65536"),
        (&["--rate", "100", "--arrivals", "gamma"], "invalid value 'gamma'"),
        (&["--addr", &server.addr, "--rate", "100", "--window", "8"], "--window applies over udp only"),
        (&["--addr", &server.addr, "--arrivals", "poisson"], "they need --rate"),
    ];
    for (args, needle) in cases {
        let stderr = usage_error(&[args, &["-d", "1s", "--warmup", "0s"]].concat());
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn server_accepting_10_of_50_is_reported() {
    let server = TestServer::start(Behaviour::AcceptOnly(10), 64);
    let mut o = opts(&server.addr, 50, 1000);
    o.connect_timeout = Duration::from_millis(500);
    let report = loadgen::run(&o).unwrap();
    let c = report.connections;
    // 10 accepted; the kernel completed more handshakes, but the closing
    // listener reset those before their first echo: not established.
    assert_eq!(c.established, 10, "{c:?}");
    assert_eq!(c.failed, 40, "{c:?}");
    assert!(has_warning(&report, "only 10 of 50 connections were established"), "{:?}", report.warnings);
    assert_eq!(report.requests.ok, report.per_connection.counts.iter().sum::<u64>());
    let served = report.per_connection.counts.iter().filter(|&&n| n > 0).count();
    assert_eq!(served, 10, "{:?}", report.per_connection);
}

fn server_closing_every_100_echoes_is_counted_and_run_completes(transport: Transport) {
    let server = TestServer::start_on(transport, Behaviour::CloseAfter(100), 64);
    let report = loadgen::run(&opts(&server.addr, 10, 1500)).unwrap();
    // A close with the client's next message unread in the server's socket is
    // a reset on a Unix socket, and often on TCP too: either way, not ok.
    let r = report.requests;
    assert!(r.failed_closed + r.failed_reset > 0 && r.failed_io == 0, "{r:?}");
    assert!(report.connections.attempts.reconnects > 0);
    assert!(report.requests.ok > 1000);
    assert!((report.duration_secs - 1.5).abs() < 0.1);
}

fn churn_one_connection_per_message_fills_the_connect_histogram(transport: Transport) {
    let server = TestServer::start_on(transport, Behaviour::Echo, 64);
    let mut o = opts(&server.addr, 4, 1000);
    o.reconnect_every = Some(1);
    let report = loadgen::run(&o).unwrap();
    let connect = report.connect_us.expect("churn reports connect time");
    let ok = report.requests.ok;
    assert!(ok > 50, "only {ok} ok");
    // one connection per message (give or take the connections open at the window's edges)
    assert!(connect.count.abs_diff(ok) <= 2 * 4, "connects {} vs messages {ok}", connect.count);
    assert_eq!(report.requests.errors(), 0, "{:?}", report.requests);
    assert!(report.histogram_connect.is_some());
}

/// Open-loop churn: the connections keep the schedule (one per message at
/// the rate), each message's latency counts from its intended time through
/// its connect, and the kernel's TCP counters come with the result.
#[test]
fn open_loop_churn_makes_connections_at_the_rate() {
    let server = TestServer::start(Behaviour::Echo, 64);
    let mut o = opts(&server.addr, 4, 1500);
    o.rate = Some(400.0);
    o.reconnect_every = Some(1);
    let report = loadgen::run(&o).unwrap();
    assert_eq!(report.mode, "open-churn");
    let ok = report.requests.ok;
    assert!((570..=630).contains(&ok), "{ok} messages in 1.5 s at 400/s");
    let connect = report.connect_us.expect("churn reports connect time");
    assert!(connect.count.abs_diff(ok) <= 2 * 4, "connects {} vs messages {ok}", connect.count);
    // A message's latency covers its connect: at least the median connect.
    assert!(
        report.latency_us.p50 >= connect.p50,
        "latency p50 {} < connect p50 {}",
        report.latency_us.p50,
        connect.p50
    );
    let kernel = report.kernel_tcp.expect("TCP runs report the kernel's TCP counters");
    assert_eq!(kernel.scope, "host");
    assert!(kernel.counters.active_opens >= connect.count, "{kernel:?}");
    let late = report.send_lateness_us.expect("the connects are paced");
    assert!(late.count > 0);
}

/// Sockets in TIME_WAIT between the client and the test server's port:
/// (the client's, the server's), from /proc/net/tcp (state 06).
fn time_wait_with(port: u16) -> (usize, usize) {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let (mut client, mut server) = (0, 0);
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port_of = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap(), 16).unwrap();
        if fields[3] != "06" {
            continue;
        }
        if port_of(fields[2]) == port {
            client += 1; // remote end is the server: the client's socket
        } else if port_of(fields[1]) == port {
            server += 1;
        }
    }
    (client, server)
}

/// Who keeps TIME_WAIT: with the orderly close the client sends the first
/// FIN, so every churned connection leaves a TIME_WAIT socket on the
/// client's side and none on the server's; `--close reset` leaves none.
#[test]
fn the_orderly_close_leaves_time_wait_on_the_client_and_reset_leaves_none() {
    for close in [loadgen::opts::Close::Orderly, loadgen::opts::Close::Reset] {
        let server = TestServer::start(Behaviour::Echo, 64);
        let port: u16 = server.addr.rsplit(':').next().unwrap().parse().unwrap();
        let mut o = opts(&server.addr, 2, 500);
        o.reconnect_every = Some(1);
        o.close = close;
        let report = loadgen::run(&o).unwrap();
        let made = report.connect_us.map_or(0, |c| c.count);
        assert!(made > 50, "{close:?}: {made} connections");
        let (client, server_side) = time_wait_with(port);
        assert_eq!(server_side, 0, "{close:?}: the server never closes first");
        match close {
            loadgen::opts::Close::Orderly => {
                assert!(client as u64 >= made, "{close:?}: {client} TIME_WAIT for {made} connections")
            }
            // At most the connections still open when the window closed,
            // which end with the run, not with the churn's close.
            loadgen::opts::Close::Reset => assert!(client <= 2, "{close:?}: {client} TIME_WAIT"),
        }
    }
}

#[test]
fn merge_equals_one_histogram_fed_both_sample_sets() {
    let server = TestServer::start(Behaviour::Echo, 64);
    let a = loadgen::run(&opts(&server.addr, 4, 600)).unwrap();
    let b = loadgen::run(&opts(&server.addr, 6, 600)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.json"), dir.path().join("b.json"));
    loadgen::write_json(&a, &pa).unwrap();
    loadgen::write_json(&b, &pb).unwrap();
    let (a, b) = (loadgen::read_json(&pa).unwrap(), loadgen::read_json(&pb).unwrap());
    let merged = loadgen::merge(&[a.clone(), b.clone()]).unwrap();

    let mut both = loadgen::report::decode(&a.histogram).unwrap();
    both.add(loadgen::report::decode(&b.histogram).unwrap()).unwrap();
    let expected = loadgen::report::LatencySummary::of(&both, 0);
    assert_eq!(merged.latency_us, expected);
    assert_eq!(merged.requests.ok, a.requests.ok + b.requests.ok);
    assert_eq!(merged.connections.requested, 10);
    assert_eq!(merged.per_connection.counts.len(), 10);
    let total: u64 = merged.timeline.iter().map(|t| t.completed).sum();
    let parts: u64 = a.timeline.iter().chain(&b.timeline).map(|t| t.completed).sum();
    assert_eq!(total, parts);
}

fn server_dying_mid_run_ends_the_run_with_figures_so_far(transport: Transport) {
    let server = TestServer::start_on(transport, Behaviour::DieAfter(Duration::from_millis(1200)), 64);
    let started = Instant::now();
    let report = loadgen::run(&opts(&server.addr, 10, 5000)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(4), "run took {:?}", started.elapsed());
    assert!(report.requests.ok > 0);
    assert!(report.requests.failed > 0, "{:?}", report.requests);
    assert!(report.duration_secs < 2.0, "{}", report.duration_secs);
    assert!(has_warning(&report, "ended after"), "{:?}", report.warnings);
    drop(server);
}

#[test]
fn unreachable_address_fails_fast() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let err = loadgen::run(&opts(&format!("127.0.0.1:{port}"), 5, 1000)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(err, loadgen::LoadError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
}

#[test]
fn json_schema_has_the_documented_fields() {
    let server = TestServer::start(Behaviour::Echo, 64);
    let mut o = opts(&server.addr, 3, 1200);
    o.rate = Some(300.0);
    let report = loadgen::run(&o).unwrap();
    let value = serde_json::to_value(&report).unwrap();
    for key in [
        "schema_version",
        "config",
        "environment",
        "connections",
        "requests",
        "duration_secs",
        "throughput",
        "latency_us",
        "latency_raw_us",
        "connect_us",
        "per_connection",
        "client_cpu",
        "timeline",
        "histogram",
        "warnings",
    ] {
        assert!(value.get(key).is_some(), "missing {key}");
    }
    assert_eq!(value["schema_version"], loadgen::report::SCHEMA_VERSION);
    assert_eq!(value["transport"], "tcp");
    for key in [
        "addr",
        "connections",
        "size",
        "duration_secs",
        "warmup_secs",
        "threads",
        "connect_timeout_secs",
        "timeout_secs",
        "pipeline",
        "rate",
        "reconnect_every",
    ] {
        assert!(value["config"].get(key).is_some(), "config lacks {key}");
    }
    for key in ["kernel", "cpu_model", "cpus_available", "loadgen_version", "git_commit"] {
        assert!(value["environment"].get(key).is_some(), "environment lacks {key}");
    }
    for key in ["min", "mean", "stdev", "p50", "p90", "p99", "p99_9", "p99_99", "max"] {
        assert!(value["latency_us"][key].is_number(), "latency_us.{key}");
        assert!(value["latency_raw_us"][key].is_number(), "latency_raw_us.{key}");
    }
    for key in ["requested", "established", "failed"] {
        assert!(value["connections"][key].is_u64());
    }
    for key in ["ok", "mismatched", "timed_out", "failed"] {
        assert!(value["requests"][key].is_u64());
    }
    for key in ["requests_per_sec", "bytes_per_sec"] {
        assert!(value["throughput"][key].is_number());
    }
    for key in ["min", "median", "max", "starved"] {
        assert!(value["per_connection"][key].is_u64());
    }
    for key in ["user_secs", "sys_secs", "utilisation"] {
        assert!(value["client_cpu"][key].is_number());
    }
    let timeline = value["timeline"].as_array().unwrap();
    assert!(!timeline.is_empty());
    assert!(timeline[0]["completed"].is_u64() && timeline[0]["p99_us"].is_u64());
    // the histogram decodes and holds exactly the ok requests
    let hist = loadgen::report::decode(value["histogram"].as_str().unwrap()).unwrap();
    assert_eq!(hist.len(), report.requests.ok);
    // and the whole report survives a round trip
    let mut back: Report = serde_json::from_value(value).unwrap();
    back.config.progress = report.config.progress; // a terminal setting, not serialised
    assert_eq!(back, report);
    // open loop at a rate far below capacity: corrected ≈ raw, no timer artefacts
    let raw = report.latency_raw_us.unwrap();
    assert!(report.latency_us.p50 < raw.p50 + 200, "corrected {} vs raw {}", report.latency_us.p50, raw.p50);
}

/// A server that closes every connection at once: loadgen backs off (a
/// pause doubling from 1 ms to 1 s per connection) instead of reconnecting
/// as fast as it can, and says what happened — every connect succeeded.
#[test]
fn server_closing_every_connection_at_once_is_not_flooded_and_is_named() {
    let server = TestServer::start(Behaviour::Cap(0), 64);
    let o = opts(&server.addr, 4, 2000);
    let started = Instant::now();
    let err = loadgen::run(&o).unwrap_err();
    let secs = started.elapsed().as_secs_f64();
    let loadgen::LoadError::TurnedAway { closed, requested, .. } = err else { panic!("{err}") };
    assert_eq!(requested, 4);
    // Pauses 1, 2, 4, … 512 ms, then 1 s: about 11 closes per connection in
    // the first 2 s, one per second after. Without the back-off a loopback
    // client makes thousands per second.
    let bound = 4.0 * (12.0 + secs);
    assert!(closed >= 4 && (closed as f64) <= bound, "{closed} closes in {secs:.1} s (bound {bound:.0})");
    let message = loadgen::LoadError::TurnedAway { endpoint: o.addr.parse().unwrap(), closed, requested }.to_string();
    assert!(message.contains("closed every one before its first echo"), "{message}");
}

/// A server at its cap serves some connections and turns the rest away:
/// the served ones keep their throughput, the others are counted and paced.
#[test]
fn server_at_its_cap_serves_the_first_and_turns_away_the_rest_at_a_bounded_rate() {
    let server = TestServer::start(Behaviour::Cap(5), 64);
    let o = opts(&server.addr, 10, 2000);
    let report = loadgen::run(&o).unwrap();
    let c = report.connections;
    assert_eq!(c.established, 5, "{c:?}");
    assert!(report.requests.ok > 0);
    let closed = c.attempts.closed_before_echo;
    assert!((5..=5 * 16).contains(&closed), "{closed} closes before a first echo: {c:?}");
    assert!(has_warning(&report, "before their first echo (turned away"), "{:?}", report.warnings);
}

/// A zero window measures nothing and a zero timeout fails every message:
/// both are refused, on the command line (exit 2) and in the library.
#[test]
fn zero_durations_are_refused() {
    for flag in ["--duration", "--timeout", "--connect-timeout"] {
        for zero in ["0s", "0", "0ms"] {
            let stderr = usage_error(&[flag, zero]);
            assert!(stderr.contains("must be longer than 0"), "{flag} {zero}: {stderr}");
        }
    }
    let mut o = opts("127.0.0.1:9", 1, 0);
    let err = loadgen::run(&o).unwrap_err();
    assert_eq!(err.to_string(), "invalid options: --duration must be longer than 0");
    o.duration = Duration::from_secs(1);
    o.timeout = Duration::ZERO;
    assert!(matches!(loadgen::run(&o), Err(loadgen::LoadError::Options(_))));
}

#[test]
fn cli_bad_flag_exits_2_and_unreachable_exits_1_with_one_line() {
    let bin = env!("CARGO_BIN_EXE_loadgen");
    let out = std::process::Command::new(bin).arg("--connections").arg("zero").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = std::process::Command::new(bin)
        .args(["--addr", &format!("127.0.0.1:{port}"), "--duration", "1s", "--warmup", "0s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("loadgen: cannot connect"), "{stderr}");
}

/// A server that never answers: every message in flight times out, and the
/// run still ends on time.
fn silent_server_times_out_every_message(transport: Transport) {
    let server = TestServer::start_on(transport, Behaviour::Silent, 64);
    let mut o = opts(&server.addr, 4, 1500);
    o.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let report = loadgen::run(&o).unwrap();
    assert!(started.elapsed() < Duration::from_secs(4), "run took {:?}", started.elapsed());
    assert_eq!(report.requests.ok, 0, "{:?}", report.requests);
    assert!(report.requests.timed_out >= 4, "{:?}", report.requests);
    assert_eq!(report.transport, transport);
}

/// Every check above that is about what loadgen does with a connection,
/// over each transport.
macro_rules! over {
    ($transport:ident, $($check:ident),* $(,)?) => {
        mod $transport {
            $(
                #[test]
                fn $check() {
                    super::$check(stringify!($transport).parse().expect("a transport"))
                }
            )*
        }
    };
}

macro_rules! over_both {
    ($($check:ident),* $(,)?) => {
        over!(tcp, $($check),*);
        over!(unix, $($check),*);
    };
}

over_both!(
    correct_server_no_errors_all_connected_littles_law_holds,
    flipped_byte_every_100th_echo_is_about_1_percent_mismatched,
    open_loop_stall_shows_in_corrected_not_raw_latency,
    open_loop_charges_the_server_its_delay_only,
    open_loop_stall_is_charged_from_the_intended_times,
    server_closing_every_100_echoes_is_counted_and_run_completes,
    churn_one_connection_per_message_fills_the_connect_histogram,
    server_dying_mid_run_ends_the_run_with_figures_so_far,
    silent_server_times_out_every_message,
);

#[test]
fn a_unix_socket_that_does_not_exist_is_unreachable_and_a_long_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix:{}", dir.path().join("nobody.sock").display());
    let err = loadgen::run(&opts(&missing, 2, 500)).unwrap_err();
    assert!(matches!(err, loadgen::LoadError::Unreachable { .. }), "{err}");
    let long = format!("unix:/tmp/{}", "x".repeat(200));
    let err = loadgen::run(&opts(&long, 2, 500)).unwrap_err();
    assert!(err.to_string().contains("the limit is 107"), "{err}");
}

/// A rate whose per-connection interval the pacer cannot represent (a day
/// or more, or under a nanosecond) is bad usage: one line, exit 2 — over
/// UDP and over TCP to a live server, where it used to panic in a load thread.
#[test]
fn a_rate_the_pacer_cannot_represent_is_refused_with_exit_2() {
    let server = TestServer::start(Behaviour::Echo, 64);
    for (addr, rate) in [
        ("udp:127.0.0.1:9", "1e-300"),
        (server.addr.as_str(), "1e-300"),
        (server.addr.as_str(), "1e-5"),
        (server.addr.as_str(), "1e30"),
    ] {
        let stderr = usage_error(&["--addr", addr, "-c", "1", "--rate", rate, "-d", "1s", "--warmup", "0s"]);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{addr} --rate {rate}: {stderr}");
        assert!(stderr.contains("the pacer takes intervals from 1 ns to 1 day"), "{stderr}");
    }
    // The library refuses it too, as options.
    let mut o = opts(&server.addr, 1, 500);
    o.rate = Some(1e-300);
    assert!(matches!(loadgen::run(&o), Err(loadgen::LoadError::Options(_))));
}

/// A listener that never accepts, with a backlog of one: a few connections
/// complete into its queue, the rest time out. The warning's breakdown of
/// the failed initial connections sums to their count; failed reconnects
/// (the queued ones, timed out and retried) are named apart.
#[test]
fn failed_connections_by_kind_sum_to_their_total() {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, getsockname, listen, socket};
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::empty(), None).unwrap();
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
    listen(&fd, Backlog::new(1).unwrap()).unwrap();
    let port = getsockname::<SockaddrIn>(fd.as_raw_fd()).unwrap().port();
    let mut o = opts(&format!("127.0.0.1:{port}"), 10, 1500);
    o.warmup = Duration::ZERO;
    o.connect_timeout = Duration::from_millis(500);
    o.timeout = Duration::from_millis(400);
    let report = loadgen::run(&o).unwrap();
    let c = &report.connections;
    let kinds = &c.attempts.failed_by_kind;
    assert!(c.failed > 0, "{c:?}");
    assert_eq!(kinds.refused + kinds.timed_out + kinds.other + c.attempts.dropped_before_first_echo, c.failed, "{c:?}");
    let warning = report.warnings.iter().find(|w| w.contains("connections were established")).expect("a warning");
    // "only E of 10 connections were established (F failed: R refused, T timed out, O other, D closed …)"
    let numbers: Vec<u64> =
        warning.split(|ch: char| !ch.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    let failed = numbers[2];
    assert_eq!(numbers[3] + numbers[4] + numbers[5] + numbers[6], failed, "{warning}");
    if c.attempts.reconnects_failed > 0 {
        assert!(warning.contains("reconnect attempt(s) failed too"), "{warning}");
    }
    drop(fd);
}

/// Buffers that cannot fit in memory are refused before anything runs
/// (exit 2), instead of a run that ends in the OOM killer.
#[test]
fn buffers_larger_than_memory_are_refused() {
    let stderr = usage_error(&["--addr", "127.0.0.1:9", "-c", "1000000", "-s", "67108864", "-d", "1s"]);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("of buffers (3 per connection), more than the"), "{stderr}");
    // The arithmetic, against a given amount of memory.
    let o = Opts { connections: 50, size: 64 << 20, ..Opts::default() };
    let err = loadgen::check_memory(&o, Some(8 << 30)).unwrap_err();
    assert!(err.contains("need 9.38 GiB of buffers") && err.contains("than the 8.00 GiB"), "{err}");
    assert_eq!(loadgen::check_memory(&o, Some(10 << 30)), Ok(()));
    assert_eq!(loadgen::check_memory(&o, None), Ok(()));
}

/// `loadgen --control`: ready once connected, the clock started at the
/// instant the coordinator names (CLOCK_MONOTONIC), the window where the
/// coordinator computes it, then the report; an abort or a closed channel
/// before the start ends it with exit 1 and no report.
#[test]
fn a_coordinator_starts_the_clock_and_knows_the_window() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let server = TestServer::start(Behaviour::Echo, 64);
    let bin = env!("CARGO_BIN_EXE_loadgen");
    let spawn = || {
        Command::new(bin)
            .args(["--control", "--addr", &server.addr, "-c", "4", "-d", "500ms", "--warmup", "200ms"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = spawn();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(ready["event"], "ready", "{ready}");
    let now = echo_common::clock::now_ns();
    assert!(ready["monotonic_ns"].as_u64().unwrap().abs_diff(now) < 5_000_000_000, "the same clock");
    // Start 300 ms from now: the window opens 200 ms later, for 500 ms.
    let start = now + 300_000_000;
    writeln!(stdin, "{{\"start_ns\":{start}}}").unwrap();
    let said: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(said["event"], "report", "{said}");
    let report: Report = serde_json::from_value(said["report"].clone()).unwrap();
    assert!(child.wait().unwrap().success());
    let [open, close] = report.window_monotonic_ns.expect("absolute window");
    let (expected_open, expected_close) = (start + 200_000_000, start + 700_000_000);
    assert!(open.abs_diff(expected_open) < 1_000_000, "opened {open}, expected {expected_open}");
    assert!(close.abs_diff(expected_close) < 20_000_000, "closed {close}, expected {expected_close}");
    assert!(report.requests.ok > 100 && report.connections.established == 4, "{:?}", report.requests);

    // An abort before the start: exit 1, an error line, no report.
    let mut child = spawn();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains("\"ready\""));
    writeln!(stdin, "{{\"abort\":\"the server died\"}}").unwrap();
    let said: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(said["event"], "error");
    assert!(said["message"].as_str().unwrap().contains("the server died"), "{said}");
    assert_eq!(child.wait().unwrap().code(), Some(1));
    // A closed channel is an abort too.
    let mut child = spawn();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains("\"ready\""));
    drop(child.stdin.take());
    assert!(lines.next().unwrap().unwrap().contains("closed the channel"));
    assert_eq!(child.wait().unwrap().code(), Some(1));
}

/// Two processes whose windows overlap only in part (one started 500 ms
/// after the other): the merged rate is over the common window, not the
/// sum of rates over different windows.
#[test]
fn a_merge_of_offset_windows_counts_the_common_window() {
    let server = TestServer::start(Behaviour::Echo, 64);
    let mut o = opts(&server.addr, 2, 2000);
    o.rate = Some(500.0);
    o.warmup = Duration::from_millis(100);
    let start = Instant::now() + Duration::from_millis(200);
    let run_from = |start: Instant| {
        let o = o.clone();
        std::thread::spawn(move || loadgen::run_controlled(&o, &mut |_| {}, &mut || Ok(start)).unwrap())
    };
    let (a, b) = (run_from(start), run_from(start + Duration::from_millis(500)));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    let merged = loadgen::merge(&[a.clone(), b.clone()]).unwrap();
    let [open, close] = merged.window_monotonic_ns.unwrap();
    assert!((close - open).abs_diff(1_500_000_000) < 20_000_000, "common window {} ns", close - open);
    // Both ran at 500/s throughout: 1,000/s together over the common window.
    let rate = merged.throughput.requests_per_sec;
    assert!(
        (950.0..=1050.0).contains(&rate),
        "{rate} msg/s (each part: {} and {})",
        a.throughput.requests_per_sec,
        b.throughput.requests_per_sec
    );
}
