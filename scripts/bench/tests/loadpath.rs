//! The load path as its own process: the bench starts `loadgen --control`,
//! names the start, and reaches the window's edges where loadgen measured.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use echo_bench::loadpath::{self, Mark};
use loadgen::Opts;

fn loadgen_bin() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_bench")).with_file_name("loadgen");
    assert!(path.is_file(), "{} missing: run the workspace tests (cargo test --workspace)", path.display());
    path
}

/// A thread-per-connection echo server on 127.0.0.1:0 (it stops with the test process).
fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn the_bench_reaches_the_window_edges_where_loadgen_measured() {
    let opts = Opts {
        addr: echo_server(),
        connections: 4,
        duration: Duration::from_millis(600),
        warmup: Duration::from_millis(200),
        progress: false,
        ..Opts::default()
    };
    let mut marks = Vec::new();
    let report = loadpath::run(&loadgen_bin(), &opts, &|| false, |mark| marks.push((mark, Instant::now()))).unwrap();
    assert_eq!(marks.iter().map(|(m, _)| *m).collect::<Vec<_>>(), vec![Mark::Open, Mark::Close]);
    let [open, close] = report.window_monotonic_ns.expect("absolute window");
    let (open_mark, close_mark) = (echo_common::clock::to_ns(marks[0].1), echo_common::clock::to_ns(marks[1].1));
    // The bench sleeps to each edge: it reaches it a little after loadgen's clock did.
    assert!(open_mark >= open && open_mark - open < 5_000_000, "open: mark {open_mark}, loadgen {open}");
    assert!(
        close_mark + 1_000_000 >= close && close_mark.abs_diff(close) < 20_000_000,
        "close: {close_mark} vs {close}"
    );
    assert!(report.requests.ok > 100 && report.connections.established == 4, "{:?}", report.requests);
}

#[test]
fn a_loadgen_that_cannot_run_is_one_line() {
    let opts = Opts { addr: "nonsense".into(), duration: Duration::from_millis(300), ..Opts::default() };
    let err = loadpath::run(&loadgen_bin(), &opts, &|| false, |_| panic!("no window")).unwrap_err();
    assert!(!err.contains('\n') && !err.is_empty(), "{err}");
    let missing = loadpath::run(Path::new("/nonexistent/loadgen"), &opts, &|| false, |_| {}).unwrap_err();
    assert!(missing.contains("cannot start /nonexistent/loadgen"), "{missing}");
}

/// Told to stop while the load runs: loadgen is killed at once and the run
/// says so, well before its window would have closed.
#[test]
fn a_stop_ends_the_run_at_once() {
    let opts = Opts { addr: echo_server(), connections: 2, duration: Duration::from_secs(10), ..Opts::default() };
    let started = Instant::now();
    let stop = || started.elapsed() > Duration::from_millis(500);
    let err = loadpath::run(&loadgen_bin(), &opts, &stop, |_| {}).unwrap_err();
    assert_eq!(err, "interrupted");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}
