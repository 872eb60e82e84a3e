//! A connected stream of either transport, for tokio code: the load
//! generator's connections, the benchmark's capacity probe and the `tokio`
//! model's accepted sockets. Code that reads and writes takes any
//! `AsyncRead + AsyncWrite`; only connecting and the per-transport socket
//! options need to know which transport it is.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::endpoint::Endpoint;

/// A connected TCP or Unix domain stream.
#[derive(Debug)]
pub enum AsyncStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Calls `$body` with `$s` bound to the inner stream, whatever its transport.
macro_rules! each {
    ($self:expr, $s:ident => $body:expr) => {
        match $self {
            AsyncStream::Tcp($s) => $body,
            AsyncStream::Unix($s) => $body,
        }
    };
}

impl AsyncStream {
    /// Connects to `endpoint`. On TCP, sets TCP_NODELAY: an echo client
    /// must not wait for Nagle's timer either.
    pub async fn connect(endpoint: &Endpoint) -> io::Result<AsyncStream> {
        match endpoint {
            Endpoint::Tcp(addr) => {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                Ok(AsyncStream::Tcp(stream))
            }
            Endpoint::Unix(path) => Ok(AsyncStream::Unix(UnixStream::connect(path).await?)),
            // No stream to open: UDP has no connection.
            Endpoint::Udp(_) => {
                Err(io::Error::new(io::ErrorKind::Unsupported, "udp needs the datagram engine, not a stream"))
            }
        }
    }
}

impl AsRawFd for AsyncStream {
    fn as_raw_fd(&self) -> RawFd {
        each!(self, s => s.as_raw_fd())
    }
}

impl AsFd for AsyncStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        each!(self, s => s.as_fd())
    }
}

impl AsyncRead for AsyncStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for AsyncStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}
