//! The churn scenario: a new connection per message, [`CLIENTS`] clients.
//! Each message opens a connection, echoes once and closes it: what is
//! measured is accepting, and what each new connection costs the server.
//!
//! Two loads per model. As fast as the clients go (closed loop), against
//! a server held to the run's CPU quota (`--server-quota`): on loopback
//! the client's CPU runs the receiving half of every packet it sends — the
//! server's handshake included — so unthrottled the client saturates first
//! (about twice the server's CPU per connection, profiled) and the rate was
//! the client's, the same for every fast server; held to half a CPU, the
//! server runs out first, and the rate is what it accepts on that share
//! (runs with `--server-quota none` are the client's again, and flagged
//! `client_bound`). Then at a pinned rate
//! ([`PINNED_RATE`] new connections a second, open loop, well below what
//! the client can make): every server accepts the same connections, so its
//! CPU per connection is its own figure — Stevens' table of server designs.

use std::fmt::Write as _;
use std::path::Path;

use echo_common::Transport;
use loadgen::Opts;
use loadgen::report::{LatencySummary, fmt_count};

use crate::flags::Figure;
use crate::load::{LoadKey, Rate};
use crate::models::Model;
use crate::plan::Shape;
use crate::render::charts::{self, Frame};
use crate::render::doc::{Doc, TableId};
use crate::render::figures::{errors, latency, server_cpu, throughput};
use crate::render::format::{count, grouped, show, signed, transport_words, us};
use crate::render::series::{self, hollow_notes, repeats_words};
use crate::results::Cell;
use crate::scenario::{
    Chart, Claim, Column, Drive, Headline, Report, SMALL, Scenario, Summary, Throttled, every_model, ranked,
};
use crate::stats::Stat;

/// Concurrent clients.
pub const CLIENTS: u32 = 10;

/// New connections a second of the pinned-rate load: about a third of what
/// the client makes in closed loop on the reference VM (14,000/s), so the
/// client keeps the schedule against every server but `process`.
pub const PINNED_RATE: f64 = 5_000.0;

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
        let load = |transport, rate: Option<f64>| {
            every_model(shape, |m| {
                let key = LoadKey::new(self.id(), m.clone(), transport, CLIENTS, SMALL);
                vec![LoadKey { rate: rate.map(Rate), ..key }]
            })
        };
        shape.transports.iter().flat_map(|&t| [load(t, None), load(t, Some(PINNED_RATE))]).collect()
    }

    /// A pinned-rate cell is read for its server CPU per connection (its
    /// rate is imposed); a closed-loop one for its rate.
    fn headline(&self, load: &LoadKey) -> Headline {
        match load.rate {
            Some(_) => Headline::SERVER_CPU,
            None => Headline::RATE,
        }
    }

    /// Its closed loop runs under the server quota, as the throughput
    /// scenario does: unthrottled, on loopback, the client saturates first
    /// (see the module's doc) and the rate would be the client's. Not the
    /// pinned rate: it is imposed, and its figure is the server's CPU per
    /// connection, which a quota would not change unless it throttled the
    /// server below the rate.
    fn server_quota(&self) -> Throttled {
        Throttled::ClosedLoop
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
             for each. ",
        );
        // Whose rate the closed loop's is: the server's when it ran held to a quota.
        let _ = writeln!(
            doc,
            "{}\n",
            match r.quota_of(&me) {
                Some(cpus) => format!(
                    "The clients go as fast as they can against a server held to {} CPU (`--server-quota`): the \
                     connections/s are what each server accepts on that share. Unthrottled, the client would run \
                     out first: on loopback its CPU runs the receiving half of every packet it sends, the server's \
                     handshake included.",
                    (cpus * 100.0).round() / 100.0
                ),
                None => "The clients go as fast as they can, and the servers ran unthrottled: on loopback the \
                         client runs out first (its CPU runs the receiving half of every packet it sends, the \
                         server's handshake included), so where a cell is flagged `client_bound` the rate is the \
                         client's."
                    .to_owned(),
            }
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
        for (k, cells) in r.groups_of(&me, transport).filter(|(k, _)| k.rate.is_none()) {
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
        self.pinned_section(r, transport, baseline.as_ref().map(|(zero, _)| zero.as_str()), doc);
    }

    /// Connections per second and server CPU per connection, a bar each per model.
    fn charts(&self, r: &Report<'_>, transport: Option<Transport>, dir: &Path) -> Result<Vec<Chart>, String> {
        let Some(transport) = transport else { return Ok(Vec::new()) };
        let (mut accepts, mut cpu, mut clients) = (Vec::new(), Vec::new(), None);
        for (k, cells) in r.groups_of(&self.id(), transport).filter(|(k, _)| k.rate.is_none()) {
            clients = Some(k.connections);
            let (name, colour) = (k.model.name().to_owned(), series::style(&k.model));
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
                figure: Box::new(move |m, notes| {
                    cost_of(r, m).map(|c| notes.figure(server_cpu(c, 1), c, &[Figure::Cpu]))
                }),
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

/// `model`'s churn cells over TCP: the figures the summary quotes. The
/// server CPU per connection is the pinned-rate cells' (the closed loop's
/// when a run has none: runs before it existed); the rate is the closed
/// loop's.
fn of<'r>(r: &'r Report<'r>, model: &Model) -> Option<&'r Vec<&'r Cell>> {
    of_load(r, model, false)
}

fn cost_of<'r>(r: &'r Report<'r>, model: &Model) -> Option<&'r Vec<&'r Cell>> {
    of_load(r, model, true).or_else(|| of(r, model))
}

fn of_load<'r>(r: &'r Report<'r>, model: &Model, pinned: bool) -> Option<&'r Vec<&'r Cell>> {
    r.groups_of(&Churn.id(), Transport::Tcp)
        .find(|(k, _)| k.model == *model && k.at_defaults() && k.rate.is_some() == pinned)
        .map(|(_, cells)| cells)
}

impl Churn {
    /// The pinned-rate table: what each new connection costs the server when
    /// every server accepts the same number a second.
    fn pinned_section(&self, r: &Report<'_>, transport: Transport, zero: Option<&str>, doc: &mut Doc) {
        let me = self.id();
        let groups: Vec<_> = r.groups_of(&me, transport).filter(|(k, _)| k.rate.is_some()).collect();
        let Some((first, _)) = groups.first() else { return };
        let rate = first.offered().unwrap_or(PINNED_RATE);
        let _ = writeln!(
            doc,
            "At a pinned rate: {} new connections a second, on a schedule (open loop), for every model. \
             Here every server accepts the same connections, unthrottled, so **server CPU µs/connection** \
             is the server's own figure. `TIME_WAIT` is the client's (it sends the first FIN: an echo server \
             closes only after its client has): the host's sockets in TIME_WAIT at the window's end, which \
             stop growing at `net.ipv4.tcp_max_tw_buckets`.\n",
            fmt_count(rate)
        );
        let mut columns = vec!["model".to_owned(), "connections/s:".into(), "server CPU µs/connection:".into()];
        let zero_cpu = zero.and_then(|zero| {
            let (_, cells) = groups.iter().find(|(k, _)| k.model.name() == zero)?;
            Some((zero, Stat::over(cells, |c| c.server_cpu_us_per_msg)?.median))
        });
        if let Some((zero, _)) = zero_cpu {
            columns.push(format!("above {zero}:"));
        }
        columns.extend(["echo p50:", "echo p99:", "TIME_WAIT:", "errors:"].map(String::from));
        let mut table = r.table(columns);
        for (k, cells) in &groups {
            let mut row = vec![
                k.model.name().to_owned(),
                table.mark(throughput(cells), cells, &[Figure::Rate]),
                table.mark(server_cpu(cells, 1), cells, &[Figure::Cpu]),
            ];
            if let Some((_, zero)) = zero_cpu {
                let above = Stat::over(cells, |c| c.server_cpu_us_per_msg).map(|own| own.median - zero);
                row.push(above.map_or("–".into(), |v| signed(v, 1)));
            }
            let time_wait = |c: &Cell| c.loadgen.as_ref()?.kernel_tcp.as_ref().map(|k| k.time_wait_at_close as f64);
            row.extend([
                latency(cells, |l| l.p50),
                table.mark(latency(cells, |l| l.p99), cells, &[Figure::Latency]),
                show(Stat::over(cells, time_wait), count),
                errors(cells),
            ]);
            table.row(row);
        }
        doc.push_str(&table.finish());
    }

    /// Cheapest accepts: server CPU per new connection at the pinned rate
    /// (lowest first). A run without pinned-rate cells (before they
    /// existed) ranks the closed loop's connections per second instead.
    fn claim(&self, r: &Report<'_>) -> Option<Claim> {
        let transport = r.main_transport()?;
        let churn: Vec<&Cell> =
            r.cells_of(&self.id()).into_iter().filter(|c| c.spec.load.transport == transport).collect();
        let clients = churn.first()?.spec.load.connections;
        let pinned: Vec<&Cell> = churn.iter().copied().filter(|c| c.spec.load.rate.is_some()).collect();
        let table = TableId { scenario: self.id(), transport, part: None };
        if let Some(rate) = pinned.first().and_then(|c| c.spec.load.offered()) {
            let cost = |c: &Cell| c.server_cpu_us_per_msg;
            return Some(Claim {
                title: "Cheapest accepts",
                conditions: format!(
                    "server CPU per new connection at {} connections/s, {} clients",
                    fmt_count(rate),
                    fmt_count(f64::from(clients))
                ),
                ranked: ranked(r.entries(&pinned, cost, &[Figure::Cpu]), true),
                left_out: None,
                table,
                show: |v| format!("{} µs/connection", grouped(v, 1)),
            });
        }
        let rate = |c: &Cell| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec);
        Some(Claim {
            title: "Fastest accepts",
            conditions: format!("a new connection per message, {} clients", fmt_count(f64::from(clients))),
            ranked: ranked(r.entries(&churn, rate, &[Figure::Rate]), false),
            left_out: None,
            table,
            show: |v| format!("{} connections/s", fmt_count(v)),
        })
    }
}
