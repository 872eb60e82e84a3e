//! The scaling scenario: the server on 1, 2, 4, … CPUs, up to half of the
//! machine, the load generator on the rest, [`CONNECTIONS_PER_CPU`]
//! connections per server CPU, 64 B, closed loop: where thread-per-core
//! designs earn their place.

use std::path::Path;

use echo_common::Transport;

use crate::flags::Figure;
use crate::load::LoadKey;
use crate::plan::{RunConfig, Shape};
use crate::render::charts::{self, Frame, XAxis, YAxis};
use crate::render::doc::Doc;
use crate::render::figures::{errors, latency, server_cpu, throughput};
use crate::render::format::{count, grouped, transport_words};
use crate::render::series::{self, repeats_words};
use crate::results::{Cell, Scaling as Recorded, Settings};
use crate::scenario::{Chart, Report, SMALL, Scenario, every_model};

/// Connections per server CPU.
pub const CONNECTIONS_PER_CPU: u32 = 100;
/// The scenario is in the default matrix only on machines with at least
/// this many CPUs: below it, there is no second step to compare.
pub const DEFAULT_MIN_CPUS: usize = 8;

#[derive(Debug)]
pub struct Scaling;

impl Scenario for Scaling {
    fn name(&self) -> &'static str {
        "scaling"
    }

    fn about(&self) -> &'static str {
        "The server on 1, 2, 4, … CPUs (up to half the machine, the load generator on the rest), 100 \
         connections per server CPU, 64 B"
    }

    fn defaults(&self, shape: &mut Shape, _quick: bool, cpus: usize) -> bool {
        shape.scaling = steps(cpus);
        cpus >= DEFAULT_MIN_CPUS
    }

    fn loads(&self, shape: &Shape) -> Vec<Vec<LoadKey>> {
        let mut loads = Vec::new();
        for &transport in &shape.transports {
            for &cpus in &shape.scaling {
                loads.push(every_model(shape, |m| {
                    let load = LoadKey::new(self.id(), m.clone(), transport, CONNECTIONS_PER_CPU * cpus, SMALL);
                    vec![LoadKey { server_cpus: Some(cpus), ..load }]
                }));
            }
        }
        loads
    }

    fn record(&self, cfg: &RunConfig, settings: &mut Settings) {
        let limit = limit(cfg.available_cpus.len());
        settings.scaling = Some(Recorded { server_cpus: cfg.shape.scaling.clone(), limit });
    }

    fn note(&self, cpus: usize) -> Option<String> {
        Some(format!("scaling: {}", limit(cpus)))
    }

    fn place(&self) -> u8 {
        30
    }

    fn section(&self, r: &Report<'_>, transport: Option<Transport>, doc: &mut Doc) {
        let Some(transport) = transport else { return };
        let me = self.id();
        if r.groups_of(&me, transport).next().is_none() {
            return;
        }
        doc.heading(2, &format!("Scaling: the server on more CPUs, {}", transport_words(transport)));
        let limit = r.results.settings.scaling.as_ref().map_or(String::new(), |sc| format!(" Here {}.", sc.limit));
        doc.push_str(&format!(
            "The server runs on 1, 2, 4, … CPUs, the load generator on the rest, with {CONNECTIONS_PER_CPU} \
             connections per server CPU, 64 B, closed loop: where thread-per-core designs earn their place.{limit}\n\n"
        ));
        let mut table =
            r.table(["server CPUs:", "model", "connections:", "msg/s:", "server CPU µs/msg:", "p99:", "errors:"]);
        // Groups are ordered by connections, which grow with server CPUs.
        for (k, cells) in r.groups_of(&me, transport) {
            let row = [
                k.server_cpus.unwrap_or(0).to_string(),
                k.model.name().to_owned(),
                count(f64::from(k.connections)),
                table.mark(throughput(cells), cells, &[Figure::Rate]),
                table.mark(server_cpu(cells, 2), cells, &[Figure::Cpu]),
                table.mark(latency(cells, |l| l.p99), cells, &[Figure::Latency]),
                errors(cells),
            ];
            table.row(row);
        }
        doc.push_str(&table.finish());
    }

    /// msg/s against server CPUs.
    fn charts(&self, r: &Report<'_>, transport: Option<Transport>, dir: &Path) -> Result<Vec<Chart>, String> {
        let Some(transport) = transport else { return Ok(Vec::new()) };
        let groups: Vec<_> = r.groups_of(&self.id(), transport).collect();
        let cpus = |k: &LoadKey, _: &[&Cell]| k.server_cpus.map(f64::from);
        let rate = |c: &Cell| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec);
        let lines = series::lines(&r.lookup, &r.models, &groups, cpus, rate, Figure::Rate);
        if lines.is_empty() {
            return Ok(Vec::new());
        }
        let over = r.over(transport);
        let file = format!("scaling{}.svg", r.suffix(transport));
        let frame = Frame {
            title: format!("Throughput vs server CPUs, 100 connections per CPU, 64 B{over}"),
            subtitle: repeats_words(r.results.settings.repeat),
            x_desc: "server CPUs".into(),
            y_desc: "messages / s".into(),
            ..Frame::default()
        };
        charts::lines(&dir.join(&file), &frame, &lines, XAxis::LogAtPoints, YAxis::Linear(grouped))?;
        Ok(vec![Chart { title: format!("Scaling with server CPUs{over}"), file }])
    }
}

/// The server CPU counts of the scaling scenario on a machine where this
/// process may use `cpus` CPUs: 1, 2, 4, … up to half of them (the load
/// generator takes the other half). Never empty: one CPU is the first step
/// even on a 1-CPU machine (where server and client then share it).
pub fn steps(cpus: usize) -> Vec<u32> {
    let mut steps = vec![1u32];
    while (steps[steps.len() - 1] as usize) * 2 <= cpus / 2 {
        let next = steps[steps.len() - 1] * 2;
        steps.push(next);
    }
    steps
}

/// Why the scaling scenario stops where it does, for the console and the README.
pub fn limit(cpus: usize) -> String {
    let steps = steps(cpus);
    let last = steps[steps.len() - 1];
    format!(
        "the server gets at most half of the {cpus} CPU(s) this run may use, the load generator the rest, \
         so the scaling scenario stops at {last} server CPU(s)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_double_up_to_half_the_machine() {
        assert_eq!(steps(1), [1]);
        assert_eq!(steps(2), [1]);
        assert_eq!(steps(3), [1]);
        assert_eq!(steps(4), [1, 2]);
        assert_eq!(steps(8), [1, 2, 4]);
        assert_eq!(steps(12), [1, 2, 4]);
        assert_eq!(steps(16), [1, 2, 4, 8]);
        assert_eq!(steps(64), [1, 2, 4, 8, 16, 32]);
        assert!(limit(2).contains("stops at 1 server CPU"));
    }

    #[test]
    fn it_is_in_the_default_matrix_only_on_large_machines() {
        let mut shape = Shape::empty(Vec::new());
        assert!(!Scaling.defaults(&mut shape, false, 2) && !Scaling.defaults(&mut shape, false, 4));
        assert!(Scaling.defaults(&mut shape, false, 8));
        assert_eq!(shape.scaling, [1, 2, 4]);
    }
}
