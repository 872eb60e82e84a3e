//! Taking agents in: each agent's `hello`, and its place by the index it
//! gives, whatever the order the agents dial in.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::{Coordinator, HELLO_TIMEOUT, Incoming, LOOK, Link};
use crate::protocol::{self, Msg};

impl Coordinator {
    /// Takes `count` agents within `timeout`, each with its `hello`, for
    /// parts 0 to `count - 1` of the load: [`Coordinator::accept_of`] with
    /// no other agent about.
    pub fn accept(&mut self, count: usize, timeout: Duration) -> Result<(), String> {
        self.accept_of(count, count, timeout)
    }

    /// Takes the agents of parts 0 to `count - 1` within `timeout`, out of
    /// `known` agents that may dial in (agents started by someone else keep
    /// dialling: `known` is how many there are). Once for each run.
    ///
    /// - An agent that gives its index (`loadgen agent --index I`) is given
    ///   part I, whatever the order they come in; one without takes the
    ///   lowest part still free.
    /// - An index from `count` to `known - 1` has no part of this load (it
    ///   has fewer connections than there are agents): the agent is told
    ///   `bye`, and not waited for.
    /// - An index of `known` or more, or one an agent still connected holds
    ///   already, is refused (the agent is told so in one line) and the wait
    ///   goes on; so is a connection that says no `hello`. An agent that
    ///   held an index and has gone (it gave up waiting) is replaced.
    /// - An agent of another protocol or loadgen version is refused, and so
    ///   is the run.
    ///
    /// While they wait for the others, the agents taken are told a
    /// heartbeat every second. The error names the indexes still missing
    /// at `timeout`, and any agent refused meanwhile.
    pub fn accept_of(&mut self, count: usize, known: usize, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let known = known.max(count);
        let mut parts: Vec<Option<Link>> = (0..count).map(|_| None).collect();
        let mut refused = Vec::new();
        self.listener.set_nonblocking(true).map_err(|err| err.to_string())?;
        while parts.iter().any(Option::is_none) {
            self.beat(parts.iter().flatten());
            match self.listener.accept() {
                Ok((stream, peer)) => refused.extend(welcome(stream, peer, &mut parts, known)?),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(missing(&parts, timeout, &refused));
                    }
                    thread::sleep(LOOK);
                }
                Err(err) => return Err(format!("cannot accept an agent: {err}")),
            }
        }
        self.links = parts.into_iter().flatten().collect();
        for (index, link) in self.links.iter_mut().enumerate() {
            if let Some(reader) = link.reader.take() {
                read(index, reader, self.sender.clone());
            }
        }
        Ok(())
    }
}

/// Reads an agent's `hello` and gives it its part in `parts`: `Some` why
/// it was refused (the wait goes on), `Err` why the run is (another
/// version).
fn welcome(
    stream: TcpStream,
    peer: SocketAddr,
    parts: &mut [Option<Link>],
    known: usize,
) -> Result<Option<String>, String> {
    let from = format!("the agent at {peer}");
    let setup = |err: io::Error| format!("{from}: {err}");
    stream.set_nonblocking(false).map_err(setup)?;
    let _ = stream.set_nodelay(true);
    stream.set_read_timeout(Some(HELLO_TIMEOUT)).map_err(setup)?;
    let mut reader = BufReader::new(stream.try_clone().map_err(setup)?);
    let mut line = String::new();
    match reader.read_line(&mut line) {
        // Gone before a word (a port probe, or an agent that gave up waiting).
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(err) => return Ok(Some(format!("{from} said no hello: {err}"))),
    }
    let value: serde_json::Value = match serde_json::from_str(line.trim()) {
        Ok(value) => value,
        Err(err) => return Ok(Some(format!("{from} said {:?}: {err}", line.trim()))),
    };
    let tell = |msg: Msg| drop((&stream).write_all(msg.line().as_bytes()));
    if let Some(reason) = protocol::check_hello(&value) {
        tell(Msg::Refused { reason: reason.clone() });
        return Err(format!("{from} refused: {reason}"));
    }
    let Ok(Msg::Hello { name, index, host, .. }) = serde_json::from_value::<Msg>(value) else {
        return Ok(Some(format!("{from} said {:?} instead of hello", line.trim())));
    };
    if gone(&stream) {
        // It gave up while in the queue: its hello is all that is left.
        return Ok(None);
    }
    let refuse = |reason: String| {
        tell(Msg::Refused { reason: reason.clone() });
        Ok(Some(format!("{from} ({name}) refused: {reason}")))
    };
    let index = match index.map(|i| i as usize) {
        Some(i) if i >= known => {
            return refuse(format!(
                "index {i} is out of range: {known} agent(s), indexes 0 to {}",
                known.saturating_sub(1)
            ));
        }
        Some(i) if i >= parts.len() => {
            // No part of this load for it: it exits 0, and dials again for the next.
            tell(Msg::Bye);
            return Ok(None);
        }
        Some(i) => i,
        None => match parts.iter().position(Option::is_none) {
            Some(free) => free,
            None => return refuse("every part of the load is taken".into()),
        },
    };
    if let Some(held) = &parts[index] {
        if !gone(&held.stream) {
            return refuse(format!("index {index} is taken by {} already", held.name));
        }
    }
    stream.set_read_timeout(None).map_err(setup)?;
    parts[index] = Some(Link { name, host, stream, reader: Some(reader) });
    Ok(None)
}

/// Whether the agent at the other end of `stream` has closed it: it says
/// nothing between its `hello` and its options, so anything but "nothing
/// to read yet" means it went.
fn gone(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let gone = match stream.peek(&mut [0u8; 1]) {
        Ok(n) => n == 0,
        Err(err) => err.kind() != io::ErrorKind::WouldBlock,
    };
    gone || stream.set_nonblocking(false).is_err()
}

/// Why the wait for the agents failed: the indexes missing, and who was
/// refused meanwhile.
fn missing(parts: &[Option<Link>], timeout: Duration, refused: &[String]) -> String {
    let absent: Vec<String> =
        parts.iter().enumerate().filter(|(_, part)| part.is_none()).map(|(i, _)| i.to_string()).collect();
    let came = parts.len() - absent.len();
    let mut why = format!(
        "no agent with index {} dialled in within {timeout:?} ({came} of {} came)",
        absent.join(", "),
        parts.len()
    );
    if !refused.is_empty() {
        why.push_str(&format!("; refused meanwhile: {}", refused.join("; ")));
    }
    why
}

/// Reads agent `index`'s channel on a thread of its own, each message
/// passed on to the coordinator until the channel closes or garbles.
fn read(index: usize, mut reader: BufReader<TcpStream>, sender: std::sync::mpsc::Sender<(usize, Incoming)>) {
    thread::spawn(move || {
        let mut line = String::new();
        loop {
            line.clear();
            let incoming = match reader.read_line(&mut line) {
                Ok(0) => Incoming::Closed("closed the control channel (exited or killed)".into()),
                Ok(_) => match serde_json::from_str(line.trim()) {
                    Ok(msg) => Incoming::Said(msg),
                    Err(err) => Incoming::Garbled(format!("said {:?}: {err}", line.trim())),
                },
                Err(err) => Incoming::Closed(format!("cannot be read: {err}")),
            };
            let last = !matches!(incoming, Incoming::Said(_));
            if sender.send((index, incoming)).is_err() || last {
                return;
            }
        }
    });
}
