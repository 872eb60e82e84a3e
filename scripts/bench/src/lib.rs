//! # echo-bench: the model × load matrix
//!
//! `scripts/bench.sh` builds the release binaries and runs `bench`, which
//! learns the models from the server binary itself (`echo-server list-models
//! --json`), starts `echo-server <model>` for every cell on the server CPU
//! set — on TCP loopback or a Unix socket —, drives it with the `loadgen`
//! library from the client CPU set, samples the server's process tree from
//! /proc every 100 ms, stops it and judges the shutdown, and rewrites
//! `results/<run>/results.json` after every cell. At the end (or with
//! `bench report`) it renders README.md and SVG charts.
//!
//! Reading order: [`models`] (what the benchmark knows of a model),
//! [`load`] (a cell's load: every axis of it, one key), [`plan`] (what a
//! run is asked to do), [`scenario`] (what a scenario is) and
//! [`scenarios`] (each one, in a file of its own), [`matrix`] (which
//! cells, in which order), [`runner`] (one cell), [`loadpath`] and
//! [`agents`] with [`hosts`] (loadgen as one process, or as several
//! agents: local, in namespaces, over ssh), [`server`], [`sampler`]
//! and [`capacity`] (the server side), [`quota`] (its CPU quota), [`climb`]
//! (open-loop climbs: the latency ladder, the udp sustained rate),
//! [`results`] (the JSON) and [`host`] (what of the machine it records),
//! [`stats`] (repeats grouped by load), [`flags`] and [`validity`] (the
//! flags every cell carries), [`render`] (the kit of tables and charts)
//! and [`report`] (the README); [`measure`] holds `bench floor` and
//! `bench overhead`, two measurements beside the matrix.

pub mod agents;
pub mod capacity;
pub mod climb;
pub mod control;
pub mod flags;
pub mod host;
pub mod hosts;
pub mod load;
pub mod loadpath;
pub mod matrix;
pub mod measure;
pub mod models;
pub mod plan;
pub mod progress;
pub mod quota;
pub mod render;
pub mod report;
pub mod results;
pub mod runner;
pub mod sampler;
pub mod scenario;
pub mod scenarios;
pub mod server;
pub mod stats;
pub mod steal;
pub mod validity;
pub mod work_level;

/// /proc readings of a process tree (shared with the servers' tests).
pub use echo_common::procfs;
