//! `echo-server <MODEL> [OPTIONS]`: parse the command line, run, report errors.
//!
//! Everything interesting lives in the library (`src/lib.rs`); this file only
//! turns its result into an exit status: 0 after a clean shutdown, 1 with one
//! line on stderr for any error, 2 for bad usage (from clap, or a request the
//! model refuses: `echo_servers::Refused`). A value clap's parser refuses
//! (`--work cpu:0`, `--backlog -1`) is one line too.

use std::process::ExitCode;

use clap::builder::StyledStr;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};
use echo_servers::Cli;

fn main() -> ExitCode {
    let matches = Cli::command().try_get_matches().unwrap_or_else(|err| usage_error(err));
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

/// Exits 2 after clap's error. A refused value is clap's one line that says
/// why (`invalid value 'cpu:0' for '--work <WORK>': …`), without the
/// pointer to `--help` after it: like every other refusal of the server,
/// one line. Anything else (a missing value, an unknown flag or model) is
/// clap's whole message, with its tips and usage.
fn usage_error(err: clap::Error) -> ! {
    if err.kind() == ErrorKind::ValueValidation {
        let text = err.render().to_string();
        eprintln!("{}", text.lines().next().unwrap_or_default());
        std::process::exit(2);
    }
    with_models_tip(err).exit()
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
