//! `echo-server <MODEL> [OPTIONS]`: parse the command line, run, report errors.
//!
//! Everything interesting lives in the library (`src/lib.rs`); this file only
//! turns its result into an exit status: 0 after a clean shutdown, 1 with one
//! line on stderr for any error, 2 for bad usage (from clap, or a request the
//! model refuses: `echo_servers::Refused`).

use std::process::ExitCode;

use clap::builder::StyledStr;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};
use echo_servers::Cli;

fn main() -> ExitCode {
    let matches = Cli::command().try_get_matches().unwrap_or_else(|err| with_models_tip(err).exit());
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    cli.given = echo_servers::given_on_command_line(&matches);
    echo_servers::init_logging();
    match echo_servers::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the context chain on one line: "cannot listen on …: Address in use".
            eprintln!("echo-server: {err:#}");
            if err.downcast_ref::<echo_servers::Refused>().is_some() { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

/// An unknown subcommand is an unknown model: clap's error (exit 2, its
/// "similar subcommand" tip kept) gets one more tip, where the models are
/// listed. Any other error or `--help` is clap's as it stands.
fn with_models_tip(mut err: clap::Error) -> clap::Error {
    if err.kind() == ErrorKind::InvalidSubcommand {
        let mut tips = match err.get(ContextKind::Suggested) {
            Some(ContextValue::StyledStrs(tips)) => tips.clone(),
            _ => Vec::new(),
        };
        tips.push(StyledStr::from("the models: `echo-server list-models`"));
        err.insert(ContextKind::Suggested, ContextValue::StyledStrs(tips));
    }
    err
}
