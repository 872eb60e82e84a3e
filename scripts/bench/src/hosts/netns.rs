//! Network namespaces the bench creates and removes: a [`Topology`] of one
//! bridge in the bench's own namespace and veth legs to namespaces of its
//! own, for the server (`--link veth`) and for load-generator agents
//! (`--load-hosts netns:N`, [`NetnsHosts`]).
//!
//! Names carry the bench's PID, so that two benches never share one and a
//! later bench can tell the leftovers of a dead one: the tag `ea<pid><g>`
//! (`g` a letter per topology of the process), the bridge `<tag>br`, the
//! namespaces and their root-side legs `<tag>-s` (the server) and
//! `<tag>-a<i>` (agent `i`); inside a namespace the leg is `eth0`.
//! Addresses come from a private /24, `10.203.<x>.0/24`, picked unused on
//! this host and present only on the bridge and inside those namespaces:
//! the bridge is `.1`, the server `.2`, agent `i` is `.(10 + i)`. Nothing is
//! routed beyond the bridge.
//!
//! Everything is made with `ip` (iproute2). [`Topology`]'s `Drop` removes
//! it all, which covers the end of a run, a failed cell, an error and the
//! first Ctrl-C (the runner returns and drops it). A bench that exits at
//! once (a second Ctrl-C) or is killed cannot drop it: a guard process,
//! started with the topology and reading a pipe from the bench, removes it
//! when the pipe closes, however the bench ended. Whatever is left even so,
//! the next bench removes at its start ([`sweep`]).

use std::ffi::OsString;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{CloneFlags, setns};

use super::{AgentProcess, Launcher};

/// The first two octets of every address the bench uses in its namespaces.
const PREFIX: [u8; 2] = [10, 203];
/// The host part of the first agent's address.
const FIRST_AGENT: usize = 10;
/// At most this many agents in one topology (their addresses stay in the /24).
pub const MAX_AGENTS: usize = 200;

/// Topologies created by this process so far: the letter of the next tag.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs `ip args…`; its output, or one line saying what failed.
fn ip<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Result<String, String> {
    let shown = || args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
    let output = Command::new("ip").args(args).stdin(Stdio::null()).output().map_err(|err| {
        if err.kind() == std::io::ErrorKind::NotFound {
            "`ip` (iproute2) is not installed here: network namespaces are unavailable".to_owned()
        } else {
            format!("cannot run ip {}: {err}", shown())
        }
    })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_owned();
        Err(format!("ip {} failed: {said}", shown()))
    }
}

/// The network namespaces there are, by name.
fn namespaces() -> Result<Vec<String>, String> {
    // `ip netns list` prints `name` or `name (id: 3)`.
    Ok(ip(&["netns", "list"])?.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect())
}

/// The links of the bench's own namespace, by name.
fn links() -> Result<Vec<String>, String> {
    // `ip -o link show` prints `5: name@if2: <FLAGS> …`.
    let text = ip(&["-o", "link", "show"])?;
    Ok(text
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect())
}

/// The tag a bench name starts with and the PID in it: `ea123a-s` →
/// (`ea123a`, 123); `None` for a name that is not the bench's.
fn tag_of(name: &str) -> Option<(&str, u32)> {
    let rest = name.strip_prefix("ea")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let pid = rest[..digits].parse().ok()?;
    rest[digits..].chars().next().filter(char::is_ascii_lowercase)?;
    let tail = &rest[digits + 1..];
    let known = tail == "br" || tail == "-s" || tail.strip_prefix("-a").is_some_and(|i| i.parse::<usize>().is_ok());
    known.then(|| (&name[..2 + digits + 1], pid))
}

/// Removes the namespaces and links of `wanted` tags; what it removed.
fn remove_where(wanted: impl Fn(&str, u32) -> bool) -> Vec<String> {
    let mut removed = Vec::new();
    // A namespace first: deleting it destroys its end of a veth pair, and so the pair.
    for ns in namespaces().unwrap_or_default() {
        if tag_of(&ns).is_some_and(|(tag, pid)| wanted(tag, pid)) && ip(&["netns", "del", &ns]).is_ok() {
            removed.push(format!("namespace {ns}"));
        }
    }
    for link in links().unwrap_or_default() {
        if tag_of(&link).is_some_and(|(tag, pid)| wanted(tag, pid)) && ip(&["link", "del", &link]).is_ok() {
            removed.push(format!("link {link}"));
        }
    }
    removed
}

/// Removes what benches no longer running left behind (killed, or stopped
/// by a second Ctrl-C): namespaces and links whose name carries the PID of
/// a process that is gone. What it removed.
pub fn sweep() -> Vec<String> {
    remove_where(|_, pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// A namespace of a [`Topology`]: its name, its address, its root-side leg.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub name: String,
    pub ip: Ipv4Addr,
    /// The veth end in the bench's namespace, on the bridge.
    pub leg: String,
}

impl Namespace {
    /// Makes `command` run in this namespace (its network only: the same
    /// PIDs, files and CPUs), by `setns` between fork and exec: the PID
    /// spawned is the program's own.
    pub fn enter_on_exec(&self, command: &mut Command) -> Result<(), String> {
        let handle = File::open(format!("/run/netns/{}", self.name))
            .map_err(|err| format!("cannot open namespace {}: {err}", self.name))?;
        // SAFETY: setns is one system call, async-signal-safe; it reads
        // only the descriptor moved into the closure.
        unsafe {
            command.pre_exec(move || setns(&handle, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from));
        }
        Ok(())
    }

    /// `program` set to run in this namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Result<Command, String> {
        let mut command = Command::new(program);
        self.enter_on_exec(&mut command)?;
        Ok(command)
    }
}

/// The namespaces, bridge and veth legs of one bench process: made by
/// [`Topology::new`], removed when dropped.
#[derive(Debug)]
pub struct Topology {
    tag: String,
    subnet: u8,
    server: Option<Namespace>,
    agents: Vec<Namespace>,
    /// Removes it all when the bench ends without dropping it.
    guard: Option<Child>,
}

impl Topology {
    /// A bridge with `agents` agent namespaces, and a server namespace if
    /// `server`; leftovers of dead benches are swept first. One line if
    /// anything cannot be made (what was made is removed).
    pub fn new(agents: usize, server: bool) -> Result<Topology, String> {
        if agents > MAX_AGENTS {
            return Err(format!("at most {MAX_AGENTS} agent namespaces, not {agents}"));
        }
        namespaces().map_err(|err| format!("network namespaces unavailable here: {err}"))?;
        sweep();
        let generation = NEXT.fetch_add(1, Ordering::SeqCst);
        let letter = char::from(b'a' + (generation % 26) as u8);
        let tag = format!("ea{}{letter}", std::process::id());
        let mut topology = Topology { tag, subnet: 0, server: None, agents: Vec::new(), guard: None };
        topology.guard = Some(topology.start_guard(agents, server)?);
        // Built into `topology`, so that a failure half-way removes what was made.
        topology.build(agents, server).map_err(|err| {
            let root = if err.contains("not permitted") { " (it takes root)" } else { "" };
            format!("cannot make network namespaces here{root}: {err}")
        })?;
        Ok(topology)
    }

    /// A shell in a process group of its own (a Ctrl-C at the terminal does
    /// not reach it) that waits for its standard input, a pipe from the
    /// bench, to close, then removes the namespaces and the bridge this
    /// topology makes. The bench keeps the pipe's write end until it drops
    /// the topology (or dies: the kernel closes it).
    fn start_guard(&self, agents: usize, server: bool) -> Result<Child, String> {
        let mut names: Vec<String> = (0..agents).map(|i| format!("{}-a{i}", self.tag)).collect();
        if server {
            names.push(format!("{}-s", self.tag));
        }
        let script = format!(
            "read _ || true; for ns in {}; do ip netns del \"$ns\"; done; ip link del {}",
            if names.is_empty() { "''".to_owned() } else { names.join(" ") },
            self.bridge()
        );
        let mut command = Command::new("sh");
        command.args(["-c", &script]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
        command.process_group(0);
        command.spawn().map_err(|err| format!("cannot start the namespaces' guard (sh): {err}"))
    }

    fn build(&mut self, agents: usize, server: bool) -> Result<(), String> {
        let bridge = self.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["link", "set", &bridge, "up"])?;
        self.subnet = claim_subnet(&bridge)?;
        if server {
            self.server = Some(self.leg("s", 2)?);
        }
        for i in 0..agents {
            let agent = self.leg(&format!("a{i}"), FIRST_AGENT + i)?;
            self.agents.push(agent);
        }
        Ok(())
    }

    /// A namespace `<tag>-<role>` at host address `host`, its veth leg on the bridge.
    fn leg(&self, role: &str, host: usize) -> Result<Namespace, String> {
        let name = format!("{}-{role}", self.tag);
        let address = self.address(host as u8);
        ip(&["netns", "add", &name])?;
        ip(&["link", "add", &name, "type", "veth", "peer", "name", "eth0", "netns", &name])?;
        ip(&["link", "set", &name, "master", &self.bridge(), "up"])?;
        ip(&["-n", &name, "addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
        ip(&["-n", &name, "link", "set", "eth0", "up"])?;
        ip(&["-n", &name, "link", "set", "lo", "up"])?;
        Ok(Namespace { name: name.clone(), ip: address, leg: name })
    }

    fn address(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(PREFIX[0], PREFIX[1], self.subnet, host)
    }

    /// The tag every name of this topology starts with (`ea<pid><g>`).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The bridge's name.
    pub fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    /// The bridge's address: the bench's own on the link.
    pub fn bridge_ip(&self) -> Ipv4Addr {
        self.address(1)
    }

    /// The server's namespace, if it has one.
    pub fn server(&self) -> Option<&Namespace> {
        self.server.as_ref()
    }

    /// The agents' namespaces.
    pub fn agents(&self) -> &[Namespace] {
        &self.agents
    }

    /// The subnet, `10.203.x.0/24`.
    pub fn subnet(&self) -> String {
        format!("{}/24", self.address(0))
    }

    /// Every link whose loss cuts a path: the bridge and each root-side leg.
    pub fn links(&self) -> Vec<String> {
        let legs = self.server.iter().chain(&self.agents).map(|n| n.leg.clone());
        std::iter::once(self.bridge()).chain(legs).collect()
    }

    /// How many times each link's carrier has changed so far (`None`: the
    /// link is gone): compared across a cell by [`Topology::went_down`].
    pub fn carriers(&self) -> Vec<(String, Option<u64>)> {
        self.links()
            .into_iter()
            .map(|link| {
                let read = std::fs::read_to_string(format!("/sys/class/net/{link}/carrier_changes"));
                let count = read.ok().and_then(|t| t.trim().parse().ok());
                (link, count)
            })
            .collect()
    }

    /// The links that went down (or away) since `before` was read, or are
    /// down now, in words: `link ea12a-s went down`; `None` if all held.
    pub fn went_down(&self, before: &[(String, Option<u64>)]) -> Option<String> {
        let now = self.carriers();
        let mut down = Vec::new();
        for ((link, was), (_, is)) in before.iter().zip(&now) {
            let up = std::fs::read_to_string(format!("/sys/class/net/{link}/operstate"))
                .is_ok_and(|s| matches!(s.trim(), "up" | "unknown"));
            if is.is_none() {
                down.push(format!("link {link} is gone"));
            } else if was != is || !up {
                down.push(format!("link {link} went down"));
            }
        }
        (!down.is_empty()).then(|| down.join(", "))
    }
}

/// Picks an unused `10.203.x.0/24` and gives its `.1` to `bridge`. Another
/// bench may pick the same at the same moment: each looks again once its
/// address is set, and moves on if it is not alone in the subnet.
fn claim_subnet(bridge: &str) -> Result<u8, String> {
    let start = (std::process::id() % 254) as u8;
    for step in 0..254u8 {
        let x = nth_subnet(start, step);
        let net = format!("{}.{}.{x}.", PREFIX[0], PREFIX[1]);
        let users = |text: &str| text.lines().filter(|l| l.contains(&format!("inet {net}"))).count();
        if users(&ip(&["-4", "-o", "addr", "show"])?) > 0 || ip(&["-4", "route", "show"])?.contains(&net) {
            continue;
        }
        ip(&["addr", "add", &format!("{net}1/24"), "dev", bridge])?;
        if users(&ip(&["-4", "-o", "addr", "show"])?) == 1 {
            return Ok(x);
        }
        ip(&["addr", "del", &format!("{net}1/24"), "dev", bridge])?;
    }
    Err(format!("no free /24 in {}.{}.0.0/16 here", PREFIX[0], PREFIX[1]))
}

/// The `step`-th subnet tried (1..=254) from `start` (0..254): every one
/// once in 254 steps.
fn nth_subnet(start: u8, step: u8) -> u8 {
    ((u16::from(start) + u16::from(step)) % 254 + 1) as u8
}

impl Drop for Topology {
    fn drop(&mut self) {
        let tag = self.tag.clone();
        remove_where(|t, _| t == tag);
        // Removed already: the guard has nothing left to do.
        if let Some(mut guard) = self.guard.take() {
            let _ = guard.kill();
            let _ = guard.wait();
        }
    }
}

/// `--load-hosts netns:N`: N agents, each in a namespace of its own, on a
/// bridge with the bench; the coordinator binds the bridge's address. The
/// topology may also have a server namespace, for `--link veth`: one
/// topology serves both ([`Launcher::topology`]).
#[derive(Debug)]
pub struct NetnsHosts {
    topology: Arc<Topology>,
}

impl NetnsHosts {
    /// Makes the namespaces of `n` agents (1 to [`MAX_AGENTS`]) and a
    /// server namespace.
    pub fn new(n: usize) -> Result<NetnsHosts, String> {
        NetnsHosts::with_server(n, true)
    }

    /// Makes the namespaces of `n` agents (1 to [`MAX_AGENTS`]), and a
    /// server namespace if `server`.
    pub fn with_server(n: usize, server: bool) -> Result<NetnsHosts, String> {
        if n == 0 || n > MAX_AGENTS {
            return Err(format!("netns:{n}: the number of agents must be 1 to {MAX_AGENTS}"));
        }
        Ok(NetnsHosts { topology: Arc::new(Topology::new(n, server)?) })
    }

    /// Its namespaces, bridge and legs.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }
}

impl Launcher for NetnsHosts {
    fn describe(&self) -> String {
        format!("netns:{}", self.topology.agents.len())
    }

    fn agents(&self) -> usize {
        self.topology.agents.len()
    }

    fn coordinator_ip(&self) -> IpAddr {
        IpAddr::V4(self.topology.bridge_ip())
    }

    /// The bridge's address: a server in the bench's namespace, reached by
    /// the agents over their legs (with `--link veth`, the server's
    /// namespace address instead: [`Topology::server`]).
    fn server_ip(&self) -> IpAddr {
        IpAddr::V4(self.topology.bridge_ip())
    }

    fn topology(&self) -> Option<Arc<Topology>> {
        Some(Arc::clone(&self.topology))
    }

    fn spawn(&self, index: usize, loadgen: &Path, args: &[OsString]) -> Result<Option<AgentProcess>, String> {
        let ns = self.topology.agents.get(index).ok_or_else(|| format!("no agent {index} in {}", self.describe()))?;
        let mut command = ns.command(loadgen)?;
        // As local agents: their reasons travel over the protocol; their own
        // output would only interleave with the bench's progress lines.
        command.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let parent = nix::unistd::getpid();
        // SAFETY: prctl and getppid are async-signal-safe system calls that
        // allocate nothing: if the bench dies, even before the child asked,
        // its agents go too.
        unsafe {
            command.pre_exec(move || crate::server::die_with_parent(parent));
        }
        let child =
            command.spawn().map_err(|err| format!("cannot start {} in {}: {err}", loadgen.display(), ns.name))?;
        Ok(Some(AgentProcess { child, host: ns.name.clone() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_benchs_own_names_are_read_as_its_own() {
        assert_eq!(tag_of("ea123a-s"), Some(("ea123a", 123)));
        assert_eq!(tag_of("ea123abr"), Some(("ea123a", 123)));
        assert_eq!(tag_of("ea4194304z-a17"), Some(("ea4194304z", 4_194_304)));
        for other in ["eth0", "ea", "ea123", "ea123-s", "eaX1a-s", "ea1a-x", "ea1a-a", "ea1abr0", "ea1A-s", "lo"] {
            assert_eq!(tag_of(other), None, "{other}");
        }
    }

    #[test]
    fn every_subnet_is_tried_once() {
        for start in [0, 1, 200, 253] {
            let mut tried: Vec<u8> = (0..254).map(|step| nth_subnet(start, step)).collect();
            assert_eq!(tried[0], start + 1);
            tried.sort_unstable();
            assert_eq!(tried, (1..=254).collect::<Vec<u8>>(), "from {start}");
        }
    }

    #[test]
    fn names_fit_the_kernels_limit() {
        // IFNAMSIZ: 15 characters, with the largest PID and agent index.
        let tag = format!("ea{}z", 4_194_304);
        for name in [format!("{tag}br"), format!("{tag}-s"), format!("{tag}-a{}", MAX_AGENTS - 1)] {
            assert!(name.len() <= 15, "{name}");
        }
    }
}
