//! The one registry of models. Every model is a file here that exports
//!
//! ```text
//! pub static MODEL: Model<Args>   // name, summary, default cap, colour, …, its datagram design, its child mode
//! pub struct Args { #[command(flatten)] pub common: Common, /* its own flags */ }
//! pub fn serve(listener: Listener, args: &Args, shutdown: &Shutdown, ready: Ready) -> anyhow::Result<()>
//! ```
//!
//! and one name in [`for_each_model!`](crate::for_each_model). From that
//! list come the subcommands ([`Command`]), [`ALL`] (what `list-models`
//! prints and the benchmark runs) and the contract tests. A model serves
//! until SIGINT/SIGTERM and then returns; the process exits and the kernel
//! closes every live connection.
//!
//! ## Facts declared once
//!
//! What a model publishes ([`ModelInfo`], [`Model::info`]) is its
//! declaration plus what the registry reads off the model itself, so that
//! no fact is written twice:
//!
//! - `datagrams`: its [`Datagrams`], the design that serves `--addr udp:…`
//!   (`None`: it refuses `udp:`, exit 2). The datagram design sits in the
//!   same file as the stream design, after it.
//! - `datagram_batch`: its `Args` take `--batch` ([`BatchOption`]).
//! - `blocking_choice`: its `Args` take `--blocking` (where tokio runs
//!   `block:` work).
//! - `child_processes`: it has a [`ChildMode`]: it re-runs this executable
//!   as its children, and a process started with `--child-of`
//!   ([`ChildOf`]) runs the child's side instead of a server.

use std::borrow::Cow::Borrowed;
use std::net::UdpSocket;
use std::sync::LazyLock;

use clap::Subcommand;
use echo_common::{BlocksAtOnce, ModelInfo};

use crate::children::ChildOf;
use crate::cli::Common;
use crate::datagram::{BatchOption, DatagramEcho, DatagramOptions};
use crate::ready::Ready;
use crate::shutdown::Shutdown;
use crate::transport::Listener;

/// A model, as its file declares it. The rest of what it publishes is
/// derived ([`Model::info`]).
#[derive(Debug)]
pub struct Model<A: 'static> {
    /// The name on the command line, in JSON keys, file names and table
    /// headers: lowercase, `-` between words.
    pub name: &'static str,
    /// One line: how the model serves connections.
    pub summary: &'static str,
    /// `--max-connections` when not given.
    pub default_max_connections: u64,
    /// With default options, how many connections it serves at once (the
    /// rest wait); `None`: every connection is served.
    pub serves_at_once: Option<u64>,
    /// The zero of the "CPU per connection" table (`iterative`).
    pub baseline: bool,
    /// Binds its TCP listener with SO_REUSEPORT, to open one per worker.
    pub reuse_port: bool,
    /// The model's colour in charts, `#rrggbb`.
    pub colour: &'static str,
    /// With default options, how many `--work block:` calls it runs at once.
    pub blocks_at_once: BlocksAtOnce,
    /// Its datagram design, or `None`: it serves streams only.
    pub datagrams: Option<Datagrams<A>>,
    /// Its child mode, if it runs copies of this executable as children.
    pub children: Option<ChildMode<A>>,
}

/// A model's datagram design: how it says it serves UDP, where its UDP
/// options are among its `Args`, and its entry point.
#[derive(Debug)]
pub struct Datagrams<A: 'static> {
    /// How the model serves UDP datagrams, in one line (published as
    /// `datagrams`).
    pub design: &'static str,
    /// The model's `--recv-buffer`/`--send-buffer`.
    pub options: fn(&A) -> &DatagramOptions,
    /// Serves datagrams on `socket` until shutdown is requested.
    pub serve: fn(UdpSocket, &A, DatagramEcho, &Shutdown, Ready) -> anyhow::Result<()>,
}

/// A model's child mode: it starts copies of this executable
/// ([`crate::children::spawn_self`]), each given `--child-of <PID>`.
#[derive(Debug)]
pub struct ChildMode<A: 'static> {
    /// The model's `--child-of` among its `Args`.
    pub of: fn(&A) -> &ChildOf,
    /// The child's whole life, given its parent's PID: serve what the
    /// parent handed over on stdin, then return.
    pub main: fn(u32, &A) -> anyhow::Result<()>,
}

impl<A: clap::Args> Model<A> {
    /// What the model publishes (`list-models --json`): its declaration,
    /// and the facts read off it.
    pub fn info(&self) -> ModelInfo {
        let args = A::augment_args(clap::Command::new(self.name));
        ModelInfo {
            name: Borrowed(self.name),
            summary: Borrowed(self.summary),
            default_max_connections: self.default_max_connections,
            child_processes: self.children.is_some(),
            serves_at_once: self.serves_at_once,
            baseline: self.baseline,
            reuse_port: self.reuse_port,
            colour: Borrowed(self.colour),
            datagrams: self.datagrams.as_ref().map(|datagrams| Borrowed(datagrams.design)),
            datagram_batch: takes::<BatchOption>(&args),
            blocks_at_once: Some(self.blocks_at_once),
            blocking_choice: args.get_arguments().any(|arg| arg.get_long() == Some("blocking")),
        }
    }
}

/// Whether `command` takes every option of the group `O`.
fn takes<O: clap::Args>(command: &clap::Command) -> bool {
    let group = O::augment_args(clap::Command::new("group"));
    group.get_arguments().all(|option| command.get_arguments().any(|arg| arg.get_id() == option.get_id()))
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

        /// Every model's published declaration, in registry order.
        pub static ALL: LazyLock<Vec<ModelInfo>> = LazyLock::new(|| vec![$($model::MODEL.info()),*]);

        /// The command line: one subcommand per model, each with its own
        /// options, plus `list-models`.
        #[derive(Debug, Subcommand)]
        #[allow(non_camel_case_types)] // variants are named after their modules
        pub enum Command {
            $(
                #[command(
                    name = $model::MODEL.name,
                    about = $model::MODEL.summary,
                    mut_arg("max_connections", |arg| arg.default_value($model::MODEL.default_max_connections.to_string())),
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
            /// The chosen model's published declaration; `None` for `list-models`.
            pub fn info(&self) -> Option<&'static ModelInfo> {
                let name = match self {
                    $(Command::$model(_) => $model::MODEL.name,)*
                    Command::ListModels { .. } => return None,
                };
                ALL.iter().find(|info| info.name == name)
            }

            /// The options every model shares; `None` for `list-models`.
            pub fn common(&self) -> Option<&Common> {
                match self {
                    $(Command::$model(args) => Some(&args.common),)*
                    Command::ListModels { .. } => None,
                }
            }

            /// If this process was started as a child of the chosen model
            /// (`--child-of`), runs the child's side: `Some` of how it went.
            pub fn run_as_child(&self) -> Option<anyhow::Result<()>> {
                match self {
                    $(Command::$model(args) => $model::MODEL.children.as_ref().and_then(|child| {
                        let of = (child.of)(args);
                        of.parent.map(|parent| {
                            of.adopt_calibration();
                            (child.main)(parent, args)
                        })
                    }),)*
                    Command::ListModels { .. } => None,
                }
            }

            /// The chosen model's UDP options; `None` if it serves streams only
            /// (or for `list-models`).
            pub fn datagram_options(&self) -> Option<&DatagramOptions> {
                match self {
                    $(Command::$model(args) => $model::MODEL.datagrams.as_ref().map(|d| (d.options)(args)),)*
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
                    $(Command::$model(args) => $model::MODEL.datagrams.as_ref().map(|d| (d.serve)(socket, args, echo, shutdown, ready)),)*
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

        /// Per model: does its `Args` take the option groups of its
        /// datagram design and its child mode, and does it have them?
        #[cfg(test)]
        fn registrations() -> Vec<(&'static str, [(bool, bool); 2])> {
            vec![$({
                let args = <$model::Args as clap::Args>::augment_args(clap::Command::new($model::MODEL.name));
                let datagrams = (takes::<DatagramOptions>(&args), $model::MODEL.datagrams.is_some());
                let children = (takes::<ChildOf>(&args), $model::MODEL.children.is_some());
                ($model::MODEL.name, [datagrams, children])
            }),*]
        }
    };
}

for_each_model!(registry);

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// A model that takes `--recv-buffer` or `--child-of` has the design
    /// that reads them, and the other way round: an option group without its
    /// registration would be taken and ignored.
    #[test]
    fn the_options_of_a_datagram_design_or_a_child_mode_come_with_its_registration() {
        for (name, [datagrams, children]) in registrations() {
            assert_eq!(datagrams.0, datagrams.1, "{name}: DatagramOptions in its Args against MODEL.datagrams");
            assert_eq!(children.0, children.1, "{name}: ChildOf in its Args against MODEL.children");
        }
    }

    /// A model publishes `datagram_batch` exactly when its command line
    /// takes `--batch`, and takes it only with a datagram design.
    #[test]
    fn a_model_is_batch_capable_exactly_when_it_takes_batch() {
        for info in ALL.iter() {
            let parsed = crate::Cli::try_parse_from(["echo-server", info.name.as_ref(), "--batch", "2"]);
            assert_eq!(info.datagram_batch, parsed.is_ok(), "{}: published against the command line", info.name);
            assert!(
                !info.datagram_batch || info.datagrams.is_some(),
                "{}: --batch without a datagram design",
                info.name
            );
        }
        let batch: Vec<&str> = ALL.iter().filter(|m| m.datagram_batch).map(|m| m.name.as_ref()).collect();
        assert_eq!(batch, ["iterative", "reactors"]);
    }

    /// By construction: flattening `BatchOption` into a model's `Args` is
    /// what makes it batch-capable; nothing else is written.
    #[test]
    fn flattening_batch_option_is_what_publishes_datagram_batch() {
        #[derive(Debug, clap::Args)]
        struct WithBatch {
            #[command(flatten)]
            common: Common,
            #[command(flatten)]
            batch: BatchOption,
        }
        #[derive(Debug, clap::Args)]
        struct WithoutBatch {
            #[command(flatten)]
            common: Common,
        }
        fn model<A>() -> Model<A> {
            Model {
                name: "m",
                summary: "",
                default_max_connections: 1,
                serves_at_once: None,
                baseline: false,
                reuse_port: false,
                colour: "#000000",
                blocks_at_once: BlocksAtOnce::PerConnection,
                datagrams: None,
                children: None,
            }
        }
        assert!(model::<WithBatch>().info().datagram_batch);
        assert!(!model::<WithoutBatch>().info().datagram_batch);
        assert!(!model::<WithoutBatch>().info().child_processes);
    }

    /// `blocking_choice` is read off the options: the models that take
    /// `--blocking`, and only they.
    #[test]
    fn the_blocking_choice_is_the_models_that_take_blocking() {
        for info in ALL.iter() {
            let command = Command::augment_subcommands(clap::Command::new("echo-server"));
            let sub = command.find_subcommand(info.name.as_ref()).expect("a subcommand per model");
            let takes = sub.get_arguments().any(|arg| arg.get_long() == Some("blocking"));
            assert_eq!(info.blocking_choice, takes, "{}", info.name);
        }
        assert!(ALL.iter().any(|info| info.blocking_choice), "tokio takes --blocking");
    }

    /// `--child-of` runs the child's side of the models that have one.
    #[test]
    fn child_processes_are_the_models_with_a_child_mode() {
        let children: Vec<&str> = ALL.iter().filter(|m| m.child_processes).map(|m| m.name.as_ref()).collect();
        assert_eq!(children, ["process", "prefork"]);
        let thread = crate::Cli::try_parse_from(["echo-server", "thread", "--child-of", "1"]);
        assert!(thread.is_err(), "a model without a child mode takes no --child-of");
    }
}
