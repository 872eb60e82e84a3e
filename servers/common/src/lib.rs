//! # echo-common: what the servers, the load generator and the benchmark share
//!
//! Small on purpose, so that the benchmark and the tests can use it without
//! linking any server's runtime:
//!
//! - [`clock`]: CLOCK_MONOTONIC as numbers that another process can read.
//! - [`endpoint`]: the one address type (`IP:PORT`, `[IPv6]:PORT`,
//!   `unix:PATH`, `udp:IP:PORT`) and the [`endpoint::Transport`] it names — parsing,
//!   resolving and printing are written here once.
//! - [`stream`]: a connected stream of any transport for tokio code
//!   (loadgen, the benchmark's capacity probe, the `tokio` model).
//! - [`model`]: the shape of a model's declaration, as the servers publish it
//!   (`echo-server list-models --json`) and the benchmark reads it.
//! - [`procfs`]: readings of a process tree from /proc, with parsers that
//!   fail loudly instead of returning a 0 that looks like a measurement.
//! - [`limits`]: raising the open-file limit, and counting the descriptors
//!   still free under it.
//! - [`snmp`]: the kernel's UDP counters (`/proc/net/snmp`, `/proc/net/snmp6`).
//! - [`tcpstat`]: the kernel's TCP counters that churn moves (opens, resets,
//!   TIME_WAIT ended, reused and present, listen overflows).

pub mod clock;
pub mod endpoint;
pub mod limits;
pub mod model;
pub mod procfs;
pub mod snmp;
pub mod stream;
pub mod tcpstat;

pub use endpoint::{Endpoint, Transport};
pub use model::{BlocksAtOnce, ModelInfo};
