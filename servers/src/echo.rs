//! The echo loop, written once in a blocking and once in an async flavour.
//!
//! Read up to one buffer, write all of it back, repeat. One buffer per
//! connection and nothing else: a client that sends and never reads makes
//! `write` block (or pend), so the server stops reading from it too — TCP
//! backpressure, not server memory, absorbs the excess. On EOF (the client's
//! half-close) everything read has already been written back, so returning
//! and closing the socket is all that is left.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use crate::listen::Connection;

/// Echoes until EOF; returns the number of bytes echoed.
pub fn echo<S: Read + Write>(stream: &mut S, buf: &mut [u8]) -> io::Result<u64> {
    let mut echoed = 0u64;
    loop {
        let n = match stream.read(buf) {
            Ok(0) => return Ok(echoed), // the client closed its write side
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        stream.write_all(&buf[..n])?;
        echoed += n as u64;
    }
}

/// [`echo`] for tokio's sockets.
pub async fn echo_async<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, buf: &mut [u8]) -> io::Result<u64> {
    let mut echoed = 0u64;
    loop {
        let n = match stream.read(buf).await {
            Ok(0) => return Ok(echoed), // the client closed its write side
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        stream.write_all(&buf[..n]).await?;
        echoed += n as u64;
    }
}

/// Serves one blocking connection to the end: allocate its one buffer, echo,
/// close, log. Used as-is by `thread` and `pool`.
pub fn serve_connection(conn: Connection, buffer_size: usize) {
    let Connection { mut stream, peer, permit } = conn;
    let mut buf = vec![0u8; buffer_size];
    let result = echo(&mut stream, &mut buf);
    if result.is_ok() {
        // Send our FIN now rather than when the descriptor is dropped.
        let _ = stream.shutdown(Shutdown::Write);
    }
    drop(stream);
    drop(permit);
    log_end(peer, &result);
}

/// Serves the connection of a `process` child, already a [`TcpStream`].
pub fn serve_stream(mut stream: TcpStream, peer: SocketAddr, buffer_size: usize) {
    let mut buf = vec![0u8; buffer_size];
    let result = echo(&mut stream, &mut buf);
    log_end(peer, &result);
}

/// How every model logs the end of a connection: at debug level, error or not.
/// A per-connection error (reset, broken pipe) ends that connection only.
pub fn log_end(peer: SocketAddr, result: &io::Result<u64>) {
    match result {
        Ok(bytes) => debug!(%peer, bytes, "connection closed"),
        Err(err) => debug!(%peer, %err, "connection failed"),
    }
}
