//! The `listening on` line: the one line scripts and tests wait for.

use std::io::Write;

use anyhow::Context;
use echo_common::Endpoint;
use tracing::info;

/// The `listening on` line, printed by the model once it can serve: after
/// its workers, children or rings are up, so a supervisor that sees the
/// line has a working server, and one that does not sees the failed step.
#[derive(Debug)]
#[must_use = "a model must announce that it is ready"]
pub struct Ready {
    endpoint: Endpoint,
}

impl Ready {
    /// The announcement of `endpoint`, to be made by the model.
    pub(crate) fn new(endpoint: Endpoint) -> Ready {
        Ready { endpoint }
    }

    /// Prints `listening on <endpoint>` on stdout: the one line scripts and
    /// tests wait for.
    pub fn announce(self) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {}", self.endpoint).context("cannot write to stdout")?;
        stdout.flush().context("cannot write to stdout")?;
        info!("listening on {}", self.endpoint);
        Ok(())
    }
}
