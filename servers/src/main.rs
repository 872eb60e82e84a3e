//! `echo-server <MODEL> [OPTIONS]`: parse the command line, run, report errors.
//!
//! Everything interesting lives in the library (`src/lib.rs`); this file only
//! turns its result into an exit status: 0 after a clean shutdown, 1 with one
//! line on stderr for any error, 2 (from clap) for bad usage.

use std::process::ExitCode;

use clap::Parser;
use echo_servers::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    echo_servers::init_logging();
    match echo_servers::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the context chain on one line: "cannot listen on …: Address in use".
            eprintln!("echo-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}
