//! The floor the `reactor` models are measured against: a textbook mio echo
//! server in one function, with nothing of the contract (no connection cap,
//! no accept back-off, no shutdown handling, no logging). It prints the same
//! `listening on` line, so `bench floor` (`scripts/bench.sh floor`) starts it like a model.
//!
//! ```text
//! cargo run --release -p echo-servers --example minimal_mio_echo -- 127.0.0.1:0
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(0);
const BUFFER: usize = 4096;

/// One connection: its socket, its one buffer, what is in it and what of it is written back.
struct Conn {
    stream: TcpStream,
    buf: Box<[u8]>,
    filled: usize,
    written: usize,
    /// Registered for WRITABLE (a write is pending) rather than READABLE.
    writing: bool,
}

fn main() -> io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into())
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("address: {e}")))?;
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("listening on {}", listener.local_addr()?);
    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let mut next = 1;
    let mut events = Events::with_capacity(1024);
    loop {
        poll.poll(&mut events, None)?;
        for event in &events {
            if event.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            stream.set_nodelay(true)?;
                            let token = Token(next);
                            next += 1;
                            poll.registry().register(&mut stream, token, Interest::READABLE)?;
                            let buf = vec![0; BUFFER].into_boxed_slice();
                            conns.insert(token, Conn { stream, buf, filled: 0, written: 0, writing: false });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            let token = event.token();
            let Some(conn) = conns.get_mut(&token) else { continue };
            if drive(conn)? {
                let mut gone = conns.remove(&token).expect("looked up above");
                poll.registry().deregister(&mut gone.stream)?;
                continue;
            }
            // Write interest only while something is pending; re-registered
            // only when that changes (rarely: a write must have blocked).
            let writing = conn.written < conn.filled;
            if writing != conn.writing {
                conn.writing = writing;
                let interest = if writing { Interest::WRITABLE } else { Interest::READABLE };
                poll.registry().reregister(&mut conn.stream, token, interest)?;
            }
        }
    }
}

/// Reads and writes until the socket would block; `true` when the connection is over.
fn drive(conn: &mut Conn) -> io::Result<bool> {
    loop {
        if conn.written < conn.filled {
            match conn.stream.write(&conn.buf[conn.written..conn.filled]) {
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(_) => return Ok(true),
            }
            continue;
        }
        match conn.stream.read(&mut conn.buf) {
            Ok(0) => return Ok(true),
            Ok(n) => (conn.filled, conn.written) = (n, 0),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(_) => return Ok(true),
        }
    }
}
