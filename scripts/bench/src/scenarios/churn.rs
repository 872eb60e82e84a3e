//! The churn scenario: a new connection per message, [`CLIENTS`] clients.
//! Each message opens a connection, echoes once and closes it: what is
//! measured is accepting, and what each new connection costs the server.

use std::fmt::Write as _;
use std::path::Path;

use echo_common::Transport;
use loadgen::Opts;
use loadgen::report::{LatencySummary, fmt_count};

use crate::flags::Figure;
use crate::load::LoadKey;
use crate::models::Model;
use crate::plan::Shape;
use crate::render::charts::{self, Frame};
use crate::render::doc::{Doc, TableId};
use crate::render::figures::{errors, latency, server_cpu, throughput};
use crate::render::format::{count, grouped, show, signed, transport_words, us};
use crate::render::series::{self, hollow_notes, repeats_words};
use crate::results::Cell;
use crate::scenario::{Chart, Claim, Column, Drive, Report, SMALL, Scenario, Summary, every_model, ranked};
use crate::stats::Stat;

/// Concurrent clients.
pub const CLIENTS: u32 = 10;

#[derive(Debug)]
pub struct Churn;

impl Scenario for Churn {
    fn name(&self) -> &'static str {
        "churn"
    }

    fn about(&self) -> &'static str {
        "A new connection per message, 10 clients: accepts/s, connect time"
    }

    fn loads(&self, shape: &Shape) -> Vec<Vec<LoadKey>> {
        let load = |transport| every_model(shape, |m| vec![LoadKey::new(self.id(), m.clone(), transport, CLIENTS, SMALL)]);
        shape.transports.iter().map(|&t| load(t)).collect()
    }

    fn drive(&self, _load: &LoadKey, opts: Opts) -> Drive {
        Drive::Load(Opts { reconnect_every: Some(1), ..opts })
    }

    fn place(&self) -> u8 {
        50
    }

    fn section(&self, r: &Report<'_>, transport: Option<Transport>, doc: &mut Doc) {
        let Some(transport) = transport else { return };
        let me = self.id();
        if r.groups_of(&me, transport).next().is_none() {
            return;
        }
        let id = TableId { scenario: me.clone(), transport, part: None };
        let heading = format!("Churn: a new connection per message, 10 clients, {}", transport_words(transport));
        doc.table_heading(2, &heading, id);
        doc.push_str(
            "Each message opens a connection, echoes once and closes it (the client half-closes first). \
             Accepting is what is measured here; a model that starts a process per connection pays a fork/exec \
             for each.\n\n",
        );
        // The textbook's zero: a declared baseline model's CPU per connection.
        let baseline = r.models.iter().find(|m| m.info().baseline).and_then(|zero| {
            let (_, cells) = r.groups_of(&me, transport).find(|(k, _)| k.model == *zero)?;
            Some((zero.name().to_owned(), Stat::over(cells, |c| c.server_cpu_us_per_msg)?.median))
        });
        if let Some((zero, us_per_conn)) = &baseline {
            let _ = writeln!(
                doc,
                "As in Stevens' table of server designs (UNP, chapter 30), `{zero}` is the zero: serving one \
                 connection at a time, it costs {} µs of server CPU per connection; `above {zero}` \
                 is what each other design spends on top of that for its concurrency.\n",
                grouped(*us_per_conn, 1)
            );
        }
        let mut columns = vec!["model".to_owned(), "connections/s:".into(), "server CPU µs/connection:".into()];
        if let Some((zero, _)) = &baseline {
            columns.push(format!("above {zero}:"));
        }
        columns.extend(
            ["connect p50:", "connect p99:", "echo p50:", "echo p99:", "peak processes:", "errors:"].map(String::from),
        );
        let mut table = r.table(columns);
        for (k, cells) in r.groups_of(&me, transport) {
            let connect = |f: fn(&LatencySummary) -> u64| {
                Stat::over(cells, move |c| c.loadgen.as_ref().and_then(|r| r.connect_us).map(|l| f(&l) as f64))
            };
            let mut row = vec![
                k.model.name().to_owned(),
                table.mark(throughput(cells), cells, &[Figure::Rate]),
                table.mark(server_cpu(cells, 1), cells, &[Figure::Cpu]),
            ];
            if let Some((_, zero)) = &baseline {
                let above = Stat::over(cells, |c| c.server_cpu_us_per_msg).map(|own| own.median - zero);
                row.push(above.map_or("–".into(), |v| signed(v, 1)));
            }
            row.extend([
                show(connect(|l| l.p50), us),
                show(connect(|l| l.p99), us),
                latency(cells, |l| l.p50),
                table.mark(latency(cells, |l| l.p99), cells, &[Figure::Latency]),
                show(Stat::over(cells, |c| c.server.map(|s| s.processes_peak as f64)), count),
                errors(cells),
            ]);
            table.row(row);
        }
        doc.push_str(&table.finish());
    }

    /// Connections per second and server CPU per connection, a bar each per model.
    fn charts(&self, r: &Report<'_>, transport: Option<Transport>, dir: &Path) -> Result<Vec<Chart>, String> {
        let Some(transport) = transport else { return Ok(Vec::new()) };
        let (mut accepts, mut cpu, mut clients) = (Vec::new(), Vec::new(), None);
        for (k, cells) in r.groups_of(&self.id(), transport) {
            clients = Some(k.connections);
            let (name, colour) = (k.model.name().to_owned(), series::colour(&k.model));
            let rate = |c: &Cell| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec);
            accepts.extend(series::bar(&r.lookup, name.clone(), colour, cells, rate, Figure::Rate, fmt_count));
            let per_connection = |c: &Cell| c.server_cpu_us_per_msg;
            cpu.extend(series::bar(&r.lookup, name, colour, cells, per_connection, Figure::Cpu, |v| grouped(v, 1)));
        }
        if accepts.is_empty() {
            return Ok(Vec::new());
        }
        let over = r.over(transport);
        let file = format!("churn{}.svg", r.suffix(transport));
        let clients = clients.map_or(String::new(), |n| format!(", {} clients", fmt_count(f64::from(n))));
        let frame = Frame {
            title: format!("Churn: a new connection per message{clients}{over}"),
            subtitle: repeats_words(r.results.settings.repeat).replace("bars", "whiskers"),
            notes: hollow_notes(accepts.iter().chain(&cpu).any(|b| b.hollow), "bar"),
            ..Frame::default()
        };
        let panels = [("new connections / s".to_owned(), accepts), ("server CPU µs per connection".to_owned(), cpu)];
        charts::bars(&dir.join(&file), &frame, &panels)?;
        Ok(vec![Chart { title: format!("Churn: connections per second and server CPU per connection{over}"), file }])
    }

    fn summary<'r>(&self, r: &'r Report<'r>) -> Summary<'r> {
        let columns = vec![
            Column {
                heading: "server CPU µs/connection",
                intro: Some("the server CPU each new connection costs and new connections per second (churn)".into()),
                leads: false,
                figure: Box::new(move |m, notes| of(r, m).map(|c| notes.figure(server_cpu(c, 1), c, &[Figure::Cpu]))),
            },
            Column {
                heading: "new connections/s",
                intro: None,
                leads: false,
                figure: Box::new(move |m, notes| of(r, m).map(|c| notes.figure(throughput(c), c, &[Figure::Rate]))),
            },
        ];
        Summary { columns, claims: self.claim(r).into_iter().collect() }
    }
}

/// `model`'s churn cells over TCP: the figures the summary quotes.
fn of<'r>(r: &'r Report<'r>, model: &Model) -> Option<&'r Vec<&'r Cell>> {
    r.groups_of(&Churn.id(), Transport::Tcp).find(|(k, _)| k.model == *model && k.at_defaults()).map(|(_, cells)| cells)
}

impl Churn {
    /// Fastest accepts: new connections per second.
    fn claim(&self, r: &Report<'_>) -> Option<Claim> {
        let transport = r.main_transport()?;
        let churn: Vec<&Cell> =
            r.cells_of(&self.id()).into_iter().filter(|c| c.spec.load.transport == transport).collect();
        let clients = churn.first()?.spec.load.connections;
        let rate = |c: &Cell| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec);
        Some(Claim {
            title: "Fastest accepts",
            conditions: format!("a new connection per message, {} clients", fmt_count(f64::from(clients))),
            ranked: ranked(r.entries(&churn, rate, &[Figure::Rate]), false),
            left_out: None,
            table: TableId { scenario: self.id(), transport, part: None },
            show: |v| format!("{} connections/s", fmt_count(v)),
        })
    }
}
