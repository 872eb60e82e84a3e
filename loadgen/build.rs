//! Records the git commit loadgen was built from, when there is one, and
//! asks cargo to run again whenever the checked-out commit changes — and
//! only then: every path given to `rerun-if-changed` must exist, since cargo
//! reruns a build script on every build when a watched path is missing.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
}

fn main() {
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_default();
    println!("cargo:rustc-env=ECHO_ARENA_GIT_COMMIT={commit}");
    let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) else {
        // Not a git checkout (a source tarball): nothing to watch.
        println!("cargo:rerun-if-changed=build.rs");
        return;
    };
    // HEAD names the branch; the branch's ref names the commit, as a loose
    // file under refs/heads (watched as a folder, so a ref that becomes loose
    // later is seen too) or a line of packed-refs.
    for watched in ["HEAD", "refs/heads", "packed-refs"] {
        let path = Path::new(&dir).join(watched);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
