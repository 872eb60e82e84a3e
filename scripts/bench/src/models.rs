//! What the benchmark knows of a model: its declaration, read from the
//! server binary (`echo-server list-models --json`), never from a list kept
//! here. Inside the benchmark a model is a [`Model`], a typed value; it
//! becomes its name only when written out.

use std::fmt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, bail};
use echo_common::ModelInfo;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A model of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model(Arc<ModelInfo>);

impl Model {
    pub fn new(info: ModelInfo) -> Model {
        Model(Arc::new(info))
    }

    /// The name on the command line, in JSON, file names and tables.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Its whole declaration.
    pub fn info(&self) -> &ModelInfo {
        &self.0
    }

    /// Idle connections the capacity scenario may ask of it: `wanted`, or
    /// fewer if its default cap is lower (`process`).
    pub fn capacity_for(&self, wanted: u32) -> u32 {
        u32::try_from(self.0.default_max_connections).map_or(wanted, |cap| wanted.min(cap))
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Written out as its name.
impl Serialize for Model {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// Read back as a name only; [`crate::results::Results::load`] links it to
/// the declaration the run recorded.
impl<'de> Deserialize<'de> for Model {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Model, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(Model::new(ModelInfo {
            name: name.into(),
            summary: "".into(),
            default_max_connections: 0,
            child_processes: false,
            serves_at_once: None,
            baseline: false,
            reuse_port: false,
            colour: "".into(),
            datagrams: None,
            datagram_batch: false,
        }))
    }
}

/// Every registered model, in the registry's order, from `server_bin`.
pub fn catalogue(server_bin: &Path) -> anyhow::Result<Vec<Model>> {
    let output = Command::new(server_bin)
        .args(["list-models", "--json"])
        .output()
        .with_context(|| format!("cannot run {}", server_bin.display()))?;
    if !output.status.success() {
        bail!("`{} list-models --json` failed ({})", server_bin.display(), output.status);
    }
    let infos: Vec<ModelInfo> = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("`{} list-models --json` printed no model list", server_bin.display()))?;
    if infos.is_empty() {
        bail!("{} registers no model", server_bin.display());
    }
    Ok(infos.into_iter().map(Model::new).collect())
}

/// The models named in `wanted` (all of `catalogue` if empty), in the
/// catalogue's order; an unknown name is an error that lists the known ones.
pub fn select(catalogue: &[Model], wanted: &[String]) -> anyhow::Result<Vec<Model>> {
    if wanted.is_empty() {
        return Ok(catalogue.to_vec());
    }
    let known = || catalogue.iter().map(Model::name).collect::<Vec<_>>().join(", ");
    for name in wanted {
        if !catalogue.iter().any(|m| m.name() == name) {
            bail!("unknown model {name:?} (the server has: {})", known());
        }
    }
    Ok(catalogue.iter().filter(|m| wanted.iter().any(|w| w == m.name())).cloned().collect())
}
