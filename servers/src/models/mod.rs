//! One file per concurrency model. Every file exports the same entry point,
//!
//! ```text
//! pub fn serve(listener: TcpListener, config: &Config, shutdown: &Shutdown) -> io::Result<()>
//! ```
//!
//! which serves until SIGINT/SIGTERM and then returns; the process exits and
//! the kernel closes the listener and every live connection.

pub mod may;
pub mod pool;
pub mod process;
pub mod thread;
pub mod tokio;

use std::io;
use std::net::TcpListener;

use crate::Config;
use crate::cli::Model;
use crate::shutdown::Shutdown;

/// Serves `listener` with `model` until shutdown is requested.
pub fn serve(model: Model, listener: TcpListener, config: &Config, shutdown: &Shutdown) -> io::Result<()> {
    match model {
        Model::Process => self::process::serve(listener, config, shutdown),
        Model::Thread => self::thread::serve(listener, config, shutdown),
        Model::Pool => self::pool::serve(listener, config, shutdown),
        Model::Tokio => self::tokio::serve(listener, config, shutdown),
        Model::May => self::may::serve(listener, config, shutdown),
    }
}
