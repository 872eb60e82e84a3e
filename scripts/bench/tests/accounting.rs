//! The server CPU accounting against a process tree whose CPU is known
//! afterwards: children that burn CPU and exit (reaped by the root), and
//! children started during the window that are still alive at its end —
//! the `process` model's life, without the model.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use echo_bench::procfs::read_tree;
use echo_bench::sampler::window_cpu;

/// The tree: the root (sh) waits 0.4 s, starts 4 children that burn CPU
/// and exit (reaped by its `wait`), then 16 that burn a little each (less
/// than a clock tick) and sleep on, writes the marker, and lives on until
/// they have exited.
const TREE: &str = r#"
burn() { i=0; while [ $i -lt $1 ]; do i=$((i+1)); done; }
sleep 0.4
for k in 1 2 3 4; do ( burn 40000 ) & done
wait
for k in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do ( burn 8000; exec sleep 2 ) & done
sleep 0.3
: > "$1"
wait
"#;

/// CPU time (user + system) of the exited `pid` and every descendant it
/// reaped, from wait4's rusage (microsecond resolution).
fn wait_with_rusage(pid: i32) -> f64 {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 writes only into the two locals it is given, for a
    // child of this process that nothing else waits for.
    let waited = unsafe { nix::libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4 failed");
    let secs = |t: nix::libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

#[test]
fn cpu_of_a_tree_whose_children_come_and_go_is_counted_completely() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    let mut command = Command::new("sh");
    command.args(["-c", TREE, "tree"]).arg(&marker);
    // Its own process group, so the test can stop every process of it.
    command.process_group(0);
    let mut child = command.spawn().expect("sh runs");
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(20);

    // The window opens before any child burns …
    std::thread::sleep(Duration::from_millis(150));
    let opened = read_tree(pid, false).unwrap().expect("the tree is alive");
    // … and closes once the first four have exited and been reaped and the
    // sixteen late ones are alive (asleep).
    while !Path::new(&marker).exists() {
        if Instant::now() > deadline {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            panic!("the tree never reached its marker");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let closed = read_tree(pid, false).unwrap().expect("the tree is alive");
    assert!(closed.processes >= 17, "the late children are alive at the close: {closed:?}");
    let measured = window_cpu(&opened, &closed).0;

    // Everything the tree used, known once it has exited: the window's part
    // is all of it but the root's start before the window and the late
    // children's `sleep` exits after it (a few ms).
    // (The four reaped children are most of it: a count that ignored the
    // root's cutime/cstime would read a fraction; one that rounded each live
    // process down to clock ticks would lose the sixteen late ones.)
    let total = wait_with_rusage(pid);
    // Reaped by wait4 already: this only tells std so (an error, ignored).
    let _ = child.wait();
    let tolerance = 0.02 + 0.05 * total;
    assert!(total > 0.1, "the children burnt too little to judge: {total:.3} s");
    assert!(
        measured <= total + 0.01 && measured >= total - tolerance,
        "window CPU {measured:.3} s against {total:.3} s used by the tree (tolerance {tolerance:.3} s)"
    );
}
