//! Where a server listens and a client connects: one type for every
//! transport, parsed and printed in one place.
//!
//! | text | endpoint |
//! |---|---|
//! | `127.0.0.1:7000`, `[::1]:0` | TCP |
//! | `localhost:7000` | TCP, the first address the name resolves to |
//! | `unix:/tmp/echo.sock` | a Unix domain stream socket at that path |
//! | `udp:127.0.0.1:7000`, `udp:[::1]:0` | UDP: datagrams, no connection |
//!
//! A new stream transport is one arm of [`Endpoint`] and of [`Transport`]
//! here, plus one arm in each listener/stream enum that matches on it. UDP
//! is not a stream transport: a server serves it with a datagram design of
//! its own (`echo-server`'s `datagram` module), and stream code refuses it
//! ([`Transport::is_stream`]).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The prefix that marks a Unix domain socket path.
pub const UNIX_PREFIX: &str = "unix:";

/// The prefix that marks a UDP address.
pub const UDP_PREFIX: &str = "udp:";

/// The largest UDP payload over IPv4 (65,535 − 20 bytes of IP header − 8 of
/// UDP header), and so the largest `--buffer-size` a datagram server takes.
pub const UDP_PAYLOAD_MAX: usize = 65_507;

/// Bytes a Unix socket path may have: `sun_path` holds 108, the last of
/// which is the terminating NUL.
pub const UNIX_PATH_MAX: usize = 107;

/// A transport, as the benchmark's `--transports` and the JSON name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP over the loopback interface (or any IP address).
    #[default]
    Tcp,
    /// A Unix domain stream socket (a path in the file system).
    Unix,
    /// UDP datagrams over the loopback interface (or any IP address).
    Udp,
}

impl Transport {
    /// Every transport, in the order tables show them.
    pub const ALL: [Transport; 3] = [Transport::Tcp, Transport::Unix, Transport::Udp];

    /// The stream transports: those every model serves, and the ones the
    /// stream load generator and the `transport` scenario compare.
    pub const STREAMS: [Transport; 2] = [Transport::Tcp, Transport::Unix];

    /// `tcp`, `unix` or `udp`: the word in the CLI, JSON and tables.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Unix => "unix",
            Transport::Udp => "udp",
        }
    }

    /// A byte stream with connections (TCP, Unix), not datagrams (UDP).
    pub fn is_stream(self) -> bool {
        Transport::STREAMS.contains(&self)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Transport {
    type Err = String;

    fn from_str(text: &str) -> Result<Transport, String> {
        Transport::ALL
            .into_iter()
            .find(|t| t.name() == text)
            .ok_or_else(|| format!("unknown transport {text:?} (expected tcp, unix or udp)"))
    }
}

/// A listening or connecting address of any transport.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// An IP address and port.
    Tcp(SocketAddr),
    /// A path in the file system.
    Unix(PathBuf),
    /// A UDP address and port.
    Udp(SocketAddr),
}

/// Why a text is not an endpoint.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("invalid address {0:?} (expected IP:PORT, [IPv6]:PORT, unix:PATH or udp:IP:PORT): {1}")]
    Invalid(String, String),
    #[error("invalid address {0:?}: it resolves to nothing")]
    Unresolved(String),
    #[error("unix socket path {path:?} is {len} bytes long; the limit is {UNIX_PATH_MAX} (sun_path)")]
    PathTooLong { path: String, len: usize },
    #[error("invalid address {0:?}: a unix socket needs a path (unix:/tmp/echo.sock)")]
    EmptyPath(String),
    #[error("invalid address {0:?}: abstract-namespace unix sockets (unix:@name) are not supported; give a path")]
    Abstract(String),
}

impl Endpoint {
    /// Parses `text`, resolving a host name to its first address.
    pub fn parse(text: &str) -> Result<Endpoint, EndpointError> {
        if let Some(path) = text.strip_prefix(UNIX_PREFIX) {
            return Endpoint::unix(path).map_err(|err| match err {
                EndpointError::EmptyPath(_) => EndpointError::EmptyPath(text.into()),
                EndpointError::Abstract(_) => EndpointError::Abstract(text.into()),
                other => other,
            });
        }
        if let Some(addr) = text.strip_prefix(UDP_PREFIX) {
            return resolve(addr, text).map(Endpoint::Udp);
        }
        resolve(text, text).map(Endpoint::Tcp)
    }

    /// A Unix socket endpoint at `path`, checked against `sun_path`'s size.
    pub fn unix(path: impl AsRef<Path>) -> Result<Endpoint, EndpointError> {
        let path = path.as_ref();
        let text = path.to_string_lossy();
        if text.is_empty() {
            return Err(EndpointError::EmptyPath(text.into_owned()));
        }
        if text.starts_with('@') {
            return Err(EndpointError::Abstract(text.into_owned()));
        }
        let len = path.as_os_str().len();
        if len > UNIX_PATH_MAX {
            return Err(EndpointError::PathTooLong { path: text.into_owned(), len });
        }
        Ok(Endpoint::Unix(path.to_owned()))
    }

    /// The transport this endpoint uses.
    pub fn transport(&self) -> Transport {
        match self {
            Endpoint::Tcp(_) => Transport::Tcp,
            Endpoint::Unix(_) => Transport::Unix,
            Endpoint::Udp(_) => Transport::Udp,
        }
    }
}

/// `addr` as a socket address, a host name resolved to its first address;
/// errors name `text`, the whole endpoint as given.
fn resolve(addr: &str, text: &str) -> Result<SocketAddr, EndpointError> {
    if let Ok(addr) = addr.parse() {
        return Ok(addr);
    }
    let mut addrs = addr.to_socket_addrs().map_err(|e| EndpointError::Invalid(text.into(), e.to_string()))?;
    addrs.next().ok_or_else(|| EndpointError::Unresolved(text.into()))
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(text: &str) -> Result<Endpoint, EndpointError> {
        Endpoint::parse(text)
    }
}

/// `127.0.0.1:7000`, `[::1]:7000`, `unix:/tmp/echo.sock`,
/// `udp:127.0.0.1:7000`: the form the
/// `listening on` line prints and [`Endpoint::parse`] reads back.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
            Endpoint::Unix(path) => write!(f, "{UNIX_PREFIX}{}", path.display()),
            Endpoint::Udp(addr) => write!(f, "{UDP_PREFIX}{addr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for text in [
            "127.0.0.1:7000",
            "[::1]:0",
            "unix:/tmp/echo.sock",
            "unix:relative.sock",
            "udp:127.0.0.1:0",
            "udp:[::1]:7000",
        ] {
            let endpoint = Endpoint::parse(text).unwrap();
            assert_eq!(endpoint.to_string(), text);
            assert_eq!(Endpoint::parse(&endpoint.to_string()).unwrap(), endpoint);
        }
        assert_eq!(Endpoint::parse("unix:/x").unwrap().transport(), Transport::Unix);
        assert_eq!(Endpoint::parse("localhost:0").unwrap().transport(), Transport::Tcp);
        assert_eq!(Endpoint::parse("udp:[::1]:0").unwrap(), Endpoint::Udp("[::1]:0".parse().unwrap()));
        assert_eq!(Endpoint::parse("udp:localhost:0").unwrap().transport(), Transport::Udp);
    }

    #[test]
    fn rejects_with_a_reason() {
        assert!(matches!(Endpoint::parse("not-an-address"), Err(EndpointError::Invalid(..))));
        assert_eq!(Endpoint::parse("unix:"), Err(EndpointError::EmptyPath("unix:".into())));
        for bad in ["udp:", "udp:127.0.0.1", "udp:unix:/x"] {
            let err = Endpoint::parse(bad).unwrap_err();
            assert!(matches!(&err, EndpointError::Invalid(text, _) if text == bad), "{bad}: {err:?}");
        }
        assert_eq!(Endpoint::parse("unix:@name"), Err(EndpointError::Abstract("unix:@name".into())));
        let long = format!("unix:/{}", "x".repeat(UNIX_PATH_MAX));
        let err = Endpoint::parse(&long).unwrap_err();
        assert!(matches!(err, EndpointError::PathTooLong { len: 108, .. }), "{err:?}");
        assert!(err.to_string().contains("the limit is 107"));
        // exactly at the limit is fine
        assert!(Endpoint::parse(&format!("unix:/{}", "x".repeat(UNIX_PATH_MAX - 1))).is_ok());
    }

    #[test]
    fn transports_by_name() {
        for t in Transport::ALL {
            assert_eq!(t.name().parse::<Transport>().unwrap(), t);
        }
        assert!("sctp".parse::<Transport>().is_err());
        assert!(Transport::STREAMS.iter().all(|t| t.is_stream()) && !Transport::Udp.is_stream());
    }
}
