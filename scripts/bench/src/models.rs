//! What the benchmark knows of a model: its declaration, read from the
//! server binary (`echo-server list-models --json`), never from a list kept
//! here. Inside the benchmark a model is a [`Model`], a typed value; it
//! becomes its name only when written out.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, bail};
use echo_common::ModelInfo;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A model of the registry, and its place in the list it came from (the
/// registry's, or the run's): tables and charts show models in that order,
/// so a model sorts by it. Two models are the same when they have the same
/// place and name.
#[derive(Debug, Clone)]
pub struct Model {
    info: Arc<ModelInfo>,
    rank: usize,
}

impl Model {
    /// A model alone, first of its list.
    pub fn new(info: ModelInfo) -> Model {
        Model { info: Arc::new(info), rank: 0 }
    }

    /// `infos` as models, each ranked by its place in the list.
    pub fn listed(infos: impl IntoIterator<Item = ModelInfo>) -> Vec<Model> {
        infos.into_iter().enumerate().map(|(rank, info)| Model { info: Arc::new(info), rank }).collect()
    }

    /// The name on the command line, in JSON, file names and tables.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Its place in the run's (or the registry's) list of models.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Its whole declaration.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Idle connections the capacity scenario may ask of it: `wanted`, or
    /// fewer if its default cap is lower (`process`).
    pub fn capacity_for(&self, wanted: u32) -> u32 {
        u32::try_from(self.info.default_max_connections).map_or(wanted, |cap| wanted.min(cap))
    }

    /// What it is compared by: its place, then its name.
    fn identity(&self) -> (usize, &str) {
        (self.rank, self.name())
    }
}

impl PartialEq for Model {
    fn eq(&self, other: &Model) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for Model {}

impl Hash for Model {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.identity().hash(state);
    }
}

impl PartialOrd for Model {
    fn partial_cmp(&self, other: &Model) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Model {
    fn cmp(&self, other: &Model) -> Ordering {
        self.identity().cmp(&other.identity())
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
/// the declaration the run recorded, and ranks it.
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
            blocks_at_once: None,
            blocking_choice: false,
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
    Ok(Model::listed(infos))
}

/// The models named in `wanted` (all of `catalogue` if empty), in the
/// catalogue's order, ranked by their place in the selection (the run's
/// list, as results.json records it); an unknown name is an error that
/// lists the known ones.
pub fn select(catalogue: &[Model], wanted: &[String]) -> anyhow::Result<Vec<Model>> {
    let known = || catalogue.iter().map(Model::name).collect::<Vec<_>>().join(", ");
    for name in wanted {
        if !catalogue.iter().any(|m| m.name() == name) {
            bail!("unknown model {name:?} (the server has: {})", known());
        }
    }
    let chosen = catalogue.iter().filter(|m| wanted.is_empty() || wanted.iter().any(|w| w == m.name()));
    Ok(Model::listed(chosen.map(|m| m.info().clone())))
}
