//! Listening sockets and accepted streams of every transport, behind one
//! type each: a model never names TCP or Unix sockets. A new stream
//! transport is one arm in [`Listener`], [`Stream`], [`Peer`] and the
//! runtime listeners at the end of this file, plus its arm in
//! [`echo_common::Endpoint`].
//!
//! Per-transport socket options live here too ([`Stream::configure`]):
//! TCP_NODELAY on TCP; nothing on Unix sockets, which have no Nagle.

use std::fmt;
use std::fs;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use echo_common::{Endpoint, Transport};
use socket2::{Domain, SockAddr, SockRef, Socket, Type};
use tracing::{debug, warn};

/// A bound, listening socket.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// An accepted connection, in blocking mode unless a model changes it.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Who is at the other end, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Tcp(SocketAddr),
    /// A Unix socket client; clients are usually unbound, so no path.
    Unix(Option<PathBuf>),
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(addr) => write!(f, "{addr}"),
            Peer::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            Peer::Unix(None) => f.write_str("unix:(unnamed)"),
        }
    }
}

impl Peer {
    /// A Unix client from its address's path, if it has one (std's, may's
    /// and tokio's Unix socket addresses all offer `as_pathname`).
    fn of_unix(path: Option<&Path>) -> Peer {
        Peer::Unix(path.map(Path::to_owned))
    }
}

/// Calls `$body` with `$s` bound to the inner socket, whatever its transport.
macro_rules! each {
    ($enum:ident, $value:expr, $s:ident => $body:expr) => {
        match $value {
            $enum::Tcp($s) => $body,
            $enum::Unix($s) => $body,
        }
    };
}

impl Listener {
    /// Binds `endpoint` and starts listening with `backlog`. For a Unix
    /// socket, also returns the guard that removes its file at shutdown.
    ///
    /// `reuse_port`: a TCP listener gets SO_REUSEPORT, so that a model can
    /// open one listener per worker on the same port
    /// ([`Listener::bind_sibling`]). SO_REUSEPORT would also let a second
    /// server of the same user bind a port this one holds and take half its
    /// connections, so a port that is in use is refused first, as without it.
    pub fn bind(endpoint: &Endpoint, backlog: i32, reuse_port: bool) -> io::Result<(Listener, Option<SocketFile>)> {
        match endpoint {
            Endpoint::Tcp(addr) => {
                if reuse_port && addr.port() != 0 {
                    // A plain bind fails with EADDRINUSE if anyone listens there.
                    drop(bind_tcp(*addr, false)?);
                }
                let socket = bind_tcp(*addr, reuse_port)?;
                socket.listen(backlog)?;
                Ok((Listener::Tcp(socket.into()), None))
            }
            Endpoint::Unix(path) => {
                let socket = bind_unix(path)?;
                socket.listen(backlog)?;
                let file = SocketFile::new(path)?;
                Ok((Listener::Unix(socket.into()), Some(file)))
            }
            // UDP has no listener: `crate::datagram::bind`.
            Endpoint::Udp(_) => Err(not_a_stream()),
        }
    }

    /// Another listener on this TCP listener's address, for one more worker:
    /// both must have been bound with SO_REUSEPORT, and the kernel then
    /// spreads new connections over them by a hash of the 4-tuple. Unix
    /// sockets have no SO_REUSEPORT: `Unsupported`.
    pub fn bind_sibling(&self, backlog: i32) -> io::Result<Listener> {
        match self {
            Listener::Tcp(l) => {
                let socket = bind_tcp(l.local_addr()?, true)?;
                socket.listen(backlog)?;
                Ok(Listener::Tcp(socket.into()))
            }
            Listener::Unix(_) => Err(io::Error::new(io::ErrorKind::Unsupported, "unix sockets have no SO_REUSEPORT")),
        }
    }

    /// Accepts one connection. The stream is blocking (accept4 does not
    /// pass O_NONBLOCK on), whatever the listener's mode.
    pub fn accept(&self) -> io::Result<(Stream, Peer)> {
        match self {
            Listener::Tcp(l) => l.accept().map(|(s, a)| (Stream::Tcp(s), Peer::Tcp(a))),
            Listener::Unix(l) => l.accept().map(|(s, a)| (Stream::Unix(s), Peer::of_unix(a.as_pathname()))),
        }
    }

    /// The endpoint actually bound (the real port when asked for port 0).
    pub fn local_endpoint(&self) -> io::Result<Endpoint> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(Endpoint::Tcp),
            Listener::Unix(l) => {
                let addr = l.local_addr()?;
                let path = addr.as_pathname().ok_or_else(|| io::Error::other("unix listener has no path"))?;
                Ok(Endpoint::Unix(path.to_owned()))
            }
        }
    }

    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        each!(Listener, self, l => l.set_nonblocking(nonblocking))
    }

    /// Adopts an inherited listening socket (a `prefork` child's stdin),
    /// finding its transport from the socket itself, like [`Stream::from_fd`].
    pub fn from_fd(fd: OwnedFd) -> io::Result<Listener> {
        let socket = SockRef::from(&fd);
        if !socket.is_listener()? {
            return Err(io::Error::other("not a listening socket"));
        }
        Ok(match transport_of(&fd)? {
            Transport::Unix => Listener::Unix(UnixListener::from(fd)),
            Transport::Tcp => Listener::Tcp(TcpListener::from(fd)),
            Transport::Udp => return Err(not_a_stream()),
        })
    }

    /// Another handle on the same listening socket (the file description is shared).
    pub fn try_clone(&self) -> io::Result<Listener> {
        match self {
            Listener::Tcp(l) => l.try_clone().map(Listener::Tcp),
            Listener::Unix(l) => l.try_clone().map(Listener::Unix),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        each!(Listener, self, l => l.as_raw_fd())
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        each!(Listener, self, l => l.as_fd())
    }
}

/// The error of stream code given UDP.
fn not_a_stream() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "udp is not a stream transport")
}

/// The transport of an inherited socket, from its address family and type.
fn transport_of(fd: &OwnedFd) -> io::Result<Transport> {
    let socket = SockRef::from(fd);
    let domain = socket.domain()?;
    if domain == Domain::UNIX {
        Ok(Transport::Unix)
    } else if (domain == Domain::IPV4 || domain == Domain::IPV6) && socket.r#type()? == Type::DGRAM {
        Ok(Transport::Udp)
    } else if domain == Domain::IPV4 || domain == Domain::IPV6 {
        Ok(Transport::Tcp)
    } else {
        Err(io::Error::other(format!("not a socket of a known transport ({domain:?})")))
    }
}

/// A TCP socket bound to `addr` (not yet listening), with SO_REUSEADDR and,
/// if asked, SO_REUSEPORT.
fn bind_tcp(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Restarting the server must not wait for old connections in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Binds a Unix socket at `path`. A socket file left by a server that is
/// gone (a connect is refused) is removed and the bind retried; one a live
/// server holds is "address in use", as for TCP.
fn bind_unix(path: &Path) -> io::Result<Socket> {
    let addr = SockAddr::unix(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    match socket.bind(&addr) {
        Err(err) if err.kind() == io::ErrorKind::AddrInUse => {
            let meta = fs::symlink_metadata(path)?;
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "the path exists and is not a socket"));
            }
            // Is anyone listening? A non-blocking connect answers at once:
            // refused (nobody: a stale file), or accepted / EAGAIN (a live
            // server, its backlog maybe full: a blocking connect would wait).
            let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            probe.set_nonblocking(true)?;
            match probe.connect(&addr) {
                Err(refused) if refused.kind() == io::ErrorKind::ConnectionRefused => {
                    // Between this check and the bind another server starting
                    // on the same path at the same moment could do the same;
                    // two servers started at once on one path is not guarded.
                    debug!(path = %path.display(), "removing a stale socket file");
                    fs::remove_file(path)?;
                    socket.bind(&addr)?;
                }
                _ => return Err(err), // a live server answers there
            }
        }
        other => other?,
    }
    Ok(socket)
}

/// The socket file of a Unix listener, removed when this guard is dropped
/// (a clean shutdown) — but only if it is still the file we created, so a
/// newer server's socket at the same path is left alone.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    identity: (u64, u64),
}

impl SocketFile {
    fn new(path: &Path) -> io::Result<SocketFile> {
        let meta = fs::symlink_metadata(path)?;
        Ok(SocketFile { path: path.to_owned(), identity: (meta.dev(), meta.ino()) })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if ours {
            if let Err(err) = fs::remove_file(&self.path) {
                warn!(path = %self.path.display(), %err, "cannot remove the socket file");
            }
        }
    }
}

impl Stream {
    /// The socket options every model sets on every accepted stream, per
    /// transport. A failure is logged with the peer; the connection is
    /// served anyway (it works, only slower).
    pub fn configure(&self, peer: &Peer) {
        if let Stream::Tcp(s) = self {
            tcp_options(s.as_fd(), peer);
        }
    }

    /// Adopts an inherited connected socket (the `process` model's stdin),
    /// finding its transport from the socket itself.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Stream> {
        Ok(match transport_of(&fd)? {
            Transport::Unix => Stream::Unix(UnixStream::from(fd)),
            Transport::Tcp => Stream::Tcp(TcpStream::from(fd)),
            Transport::Udp => return Err(not_a_stream()),
        })
    }

    /// The client's address.
    pub fn peer(&self) -> Peer {
        match self {
            Stream::Tcp(s) => s.peer_addr().map_or(Peer::Tcp(SocketAddr::from(([0, 0, 0, 0], 0))), Peer::Tcp),
            Stream::Unix(s) => s.peer_addr().map_or(Peer::Unix(None), |a| Peer::of_unix(a.as_pathname())),
        }
    }

    /// Sends our FIN now rather than when the descriptor is closed.
    pub fn shutdown_write(&self) -> io::Result<()> {
        each!(Stream, self, s => s.shutdown(Direction::Write))
    }

    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        each!(Stream, self, s => s.set_nonblocking(nonblocking))
    }
}

/// The options of an accepted TCP socket, whichever runtime owns it.
pub fn tcp_options(socket: BorrowedFd<'_>, peer: &Peer) {
    // An echo must leave at once, not wait for Nagle's timer.
    if let Err(err) = SockRef::from(&socket).set_nodelay(true) {
        warn!(%peer, %err, "cannot set TCP_NODELAY; serving the connection without it");
    }
}

impl From<Stream> for OwnedFd {
    fn from(stream: Stream) -> OwnedFd {
        each!(Stream, stream, s => OwnedFd::from(s))
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        each!(Stream, self, s => s.as_raw_fd())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        each!(Stream, self, s => s.as_fd())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        each!(Stream, self, s => s.read(buf))
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        each!(Stream, self, s => s.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        each!(Stream, self, s => s.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A listener registered with a tokio runtime (the `tokio` model).
#[derive(Debug)]
pub enum TokioListener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl TokioListener {
    /// Registers `listener` with the runtime of the calling context.
    pub fn new(listener: Listener) -> io::Result<TokioListener> {
        listener.set_nonblocking(true)?; // tokio requires it
        match listener {
            Listener::Tcp(l) => tokio::net::TcpListener::from_std(l).map(TokioListener::Tcp),
            Listener::Unix(l) => tokio::net::UnixListener::from_std(l).map(TokioListener::Unix),
        }
    }

    /// Accepts one connection and applies [`Stream::configure`]'s options.
    pub async fn accept(&self) -> io::Result<(echo_common::stream::AsyncStream, Peer)> {
        use echo_common::stream::AsyncStream;
        match self {
            TokioListener::Tcp(l) => {
                let (stream, addr) = l.accept().await?;
                let peer = Peer::Tcp(addr);
                tcp_options(stream.as_fd(), &peer);
                Ok((AsyncStream::Tcp(stream), peer))
            }
            TokioListener::Unix(l) => {
                let (stream, addr) = l.accept().await?;
                let peer = Peer::of_unix(addr.as_pathname());
                Ok((AsyncStream::Unix(stream), peer))
            }
        }
    }
}

/// A listener whose accepts switch may coroutines instead of blocking (the `may` model).
#[derive(Debug)]
pub enum MayListener {
    Tcp(may::net::TcpListener),
    Unix(may::os::unix::net::UnixListener),
}

/// A connection accepted by a [`MayListener`].
#[derive(Debug)]
pub enum MayStream {
    Tcp(may::net::TcpStream),
    Unix(MayUnixStream),
}

/// may's Unix stream, closed in the right order.
///
/// may 0.3's `UnixStream` wraps a `CoIo`, whose fields drop in declaration
/// order: first the socket (`close(fd)`), then its event registration
/// (`epoll_ctl(DEL, fd)`, by descriptor number). Between the two, another
/// worker may accept a new connection that reuses the number and register
/// it — and the late DEL then removes the *new* connection from epoll: it
/// is never woken, and its client waits forever (seen as an intermittent
/// stall of the contract tests over Unix sockets, about 1 run in 30 under
/// load). may's `TcpStream` declares its fields the other way round and is
/// not affected. So we take the descriptor back first — `into_raw_fd`
/// deregisters while the descriptor is still open — and close it ourselves.
#[derive(Debug)]
pub struct MayUnixStream(Option<may::os::unix::net::UnixStream>);

impl MayUnixStream {
    fn inner(&mut self) -> &mut may::os::unix::net::UnixStream {
        self.0.as_mut().expect("present until dropped")
    }
}

impl Drop for MayUnixStream {
    fn drop(&mut self) {
        use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
        if let Some(stream) = self.0.take() {
            let fd = stream.into_raw_fd();
            // SAFETY: `into_raw_fd` gave up may's ownership of `fd` (and
            // removed it from may's epoll); nothing else owns it.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}

impl Read for MayUnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner().read(buf)
    }
}

impl Write for MayUnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl MayListener {
    /// Hands `listener` over to may.
    pub fn new(listener: Listener) -> io::Result<MayListener> {
        use std::os::fd::{FromRawFd, IntoRawFd};
        // SAFETY: `into_raw_fd` gives up the std listener's ownership of a
        // listening socket of the matching type, so may's listener is its only owner.
        unsafe {
            Ok(match listener {
                Listener::Tcp(l) => MayListener::Tcp(may::net::TcpListener::from_raw_fd(l.into_raw_fd())),
                Listener::Unix(l) => MayListener::Unix(may::os::unix::net::UnixListener::from_raw_fd(l.into_raw_fd())),
            })
        }
    }

    /// Accepts one connection and applies [`Stream::configure`]'s options.
    pub fn accept(&self) -> io::Result<(MayStream, Peer)> {
        match self {
            MayListener::Tcp(l) => {
                let (stream, addr) = l.accept()?;
                let peer = Peer::Tcp(addr);
                // SAFETY: `stream` owns the descriptor and outlives this borrow.
                tcp_options(unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }, &peer);
                Ok((MayStream::Tcp(stream), peer))
            }
            MayListener::Unix(l) => {
                let (stream, addr) = l.accept()?;
                Ok((MayStream::Unix(MayUnixStream(Some(stream))), Peer::of_unix(addr.as_pathname())))
            }
        }
    }
}

impl Read for MayStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        each!(MayStream, self, s => s.read(buf))
    }
}

impl Write for MayStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        each!(MayStream, self, s => s.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
