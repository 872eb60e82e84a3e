//! The one registry of models. Every model is a file here that exports
//!
//! ```text
//! pub static INFO: ModelInfo                    // name, summary, default cap, colour, …
//! pub struct Args { #[command(flatten)] pub common: Common, /* its own flags */ }
//! pub fn serve(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()>
//! pub const DATAGRAMS: Option<Datagrams<Args>>  // its UDP design, or None: streams only
//! ```
//!
//! and one name in [`for_each_model!`](crate::for_each_model). From that
//! list come the subcommands ([`Command`]), [`ALL`] (what `list-models`
//! prints and the benchmark runs) and the contract tests. A model serves
//! until SIGINT/SIGTERM and then returns; the process exits and the kernel
//! closes every live connection.
//!
//! A model that serves datagrams (`--addr udp:…`) says how in its
//! `INFO.datagrams` and gives its entry point in `DATAGRAMS`; a model whose
//! `DATAGRAMS` is `None` refuses `udp:` (exit 2). The datagram design sits
//! in the same file as the stream design, after it.

use std::net::UdpSocket;

use clap::Subcommand;
use echo_common::ModelInfo;

use crate::cli::Common;
use crate::datagram::{DatagramEcho, DatagramOptions};
use crate::ready::Ready;
use crate::shutdown::Shutdown;
use crate::transport::Listener;

/// A model's datagram design: where its UDP options are among its `Args`,
/// and its entry point, given the bound socket and the shared echo.
#[derive(Debug)]
pub struct Datagrams<A: 'static> {
    /// The model's `--recv-buffer`/`--send-buffer`.
    pub options: fn(&A) -> &DatagramOptions,
    /// Serves datagrams on `socket` until shutdown is requested.
    pub serve: fn(UdpSocket, &A, DatagramEcho, &Shutdown, Ready) -> anyhow::Result<()>,
}

/// Calls `$callback! { model, model, … }` with every registered model, in the
/// order the README tells the story. **The one list of models**: adding a
/// model is its file plus its name here.
#[macro_export]
macro_rules! for_each_model {
    ($callback:ident) => {
        $callback! { iterative, process, prefork, thread, pool, reactor, reactors, reactor_pool, tokio, may, uring }
    };
}

macro_rules! registry {
    ($($model:ident),* $(,)?) => {
        $(pub mod $model;)*

        /// Every model's declaration, in registry order.
        pub static ALL: &[&ModelInfo] = &[$(&$model::INFO),*];

        /// Whether each model has a datagram entry point, in registry order
        /// (checked against its declaration in the tests).
        pub static SERVES_DATAGRAMS: &[bool] = &[$($model::DATAGRAMS.is_some()),*];

        /// The command line: one subcommand per model, each with its own
        /// options, plus `list-models`.
        #[derive(Debug, Subcommand)]
        #[allow(non_camel_case_types)] // variants are named after their modules
        pub enum Command {
            $(
                #[command(
                    name = $model::INFO.name.as_ref(),
                    about = $model::INFO.summary.as_ref(),
                    mut_arg("max_connections", |arg| arg.default_value($model::INFO.default_max_connections.to_string())),
                )]
                $model($model::Args),
            )*
            /// List the models: name and summary, or their declarations as JSON.
            ListModels {
                /// One JSON array of model declarations (what the benchmark reads).
                #[arg(long)]
                json: bool,
            },
        }

        /// A model chosen on the command line, with its options.
        impl Command {
            /// The chosen model's declaration; `None` for `list-models`.
            pub fn info(&self) -> Option<&'static ModelInfo> {
                match self {
                    $(Command::$model(_) => Some(&$model::INFO),)*
                    Command::ListModels { .. } => None,
                }
            }

            /// The options every model shares; `None` for `list-models`.
            pub fn common(&self) -> Option<&Common> {
                match self {
                    $(Command::$model(args) => Some(&args.common),)*
                    Command::ListModels { .. } => None,
                }
            }

            /// The chosen model's UDP options; `None` if it serves streams only
            /// (or for `list-models`).
            pub fn datagram_options(&self) -> Option<&DatagramOptions> {
                match self {
                    $(Command::$model(args) => $model::DATAGRAMS.as_ref().map(|d| (d.options)(args)),)*
                    Command::ListModels { .. } => None,
                }
            }

            /// Serves datagrams on `socket` with the chosen model until
            /// shutdown is requested; `None` if it serves streams only.
            pub fn serve_datagrams(
                &self,
                socket: UdpSocket,
                echo: DatagramEcho,
                shutdown: &Shutdown,
                ready: Ready,
            ) -> Option<anyhow::Result<()>> {
                match self {
                    $(Command::$model(args) => $model::DATAGRAMS.as_ref().map(|d| (d.serve)(socket, args, echo, shutdown, ready)),)*
                    Command::ListModels { .. } => None,
                }
            }

            /// Serves `listener` with the chosen model until shutdown is requested.
            pub fn serve(&self, listener: Listener, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()> {
                match self {
                    $(Command::$model(args) => $model::serve(listener, args, shutdown, ready),)*
                    Command::ListModels { .. } => Ok(()),
                }
            }
        }
    };
}

for_each_model!(registry);

#[cfg(test)]
mod tests {
    use super::*;

    /// What a model publishes about datagrams is what it does.
    #[test]
    fn a_model_declares_a_datagram_design_if_and_only_if_it_has_one() {
        for (info, &serves) in ALL.iter().zip(SERVES_DATAGRAMS) {
            assert_eq!(info.datagrams.is_some(), serves, "{}: INFO.datagrams against DATAGRAMS", info.name);
            assert!(!info.datagram_batch || serves, "{}: --batch without a datagram design", info.name);
        }
    }
}
