//! The README's opening: which model for what, generated from the run.
//!
//! Four claims — lowest server CPU per message, lowest p99 at the common
//! load, cheapest idle connection, fastest accepts — each with its figure,
//! its flags if any, and a link to the table it comes from. A claim never
//! rests on a flagged cell unsaid: when the leader's cells carry flags, the
//! claim names them and the best model whose cells carry none.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use echo_common::Transport;
use loadgen::report::fmt_count;

use super::marks::{self, mark, words};
use super::{Stat, kib, stat, transport_words, us};
use crate::flags::Figure;
use crate::flags::FlagKind;
use crate::load::Scenario;
use crate::matrix::SMALL;
use crate::results::{Cell, Results};

/// Which table a claim comes from, to link to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// The closed-loop table of this message size.
    Throughput(u32),
    Latency,
    Churn,
    Capacity,
}

/// One model's figure for a claim, with the flags that put it in doubt.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub model: String,
    pub stat: Stat,
    /// The flags of its cells that concern the claim's figure, with how
    /// many of its repeats carry each.
    pub flags: Vec<(FlagKind, usize)>,
    /// The other flags of its cells (about another figure of theirs).
    pub other_flags: Vec<(FlagKind, usize)>,
    pub repeats: usize,
}

/// One line of the summary.
#[derive(Debug, Clone)]
pub struct Claim {
    /// "Lowest server CPU per message".
    pub title: &'static str,
    /// Where the figures were measured: "at 100 connections, 64 B, closed loop".
    pub conditions: String,
    /// Every ranked model, best first.
    pub ranked: Vec<Entry>,
    /// Models left out of the ranking and why, if any.
    pub left_out: Option<String>,
    pub table: Table,
    pub transport: Transport,
    /// Prints a figure: `4.89 µs`.
    pub show: fn(f64) -> String,
}

impl Claim {
    /// The leader: the best figure, flagged or not.
    pub fn leader(&self) -> Option<&Entry> {
        self.ranked.first()
    }

    /// The best model whose cells carry no flag concerning the figure.
    pub fn best_unflagged(&self) -> Option<&Entry> {
        self.ranked.iter().find(|e| e.flags.is_empty())
    }
}

/// The transport the summary speaks of: TCP when the run has it.
fn main_transport(results: &Results) -> Option<Transport> {
    let transports: Vec<Transport> = results
        .cells
        .iter()
        .filter(|c| c.ok && !matches!(c.spec.load.scenario, Scenario::Transport | Scenario::Udp))
        .map(|c| c.spec.load.transport)
        .collect();
    if transports.contains(&Transport::Tcp) { Some(Transport::Tcp) } else { transports.into_iter().min() }
}

/// The latency scenario's common load over `transport`: the ladder's
/// common rate ([`crate::ladder::common_rate`]), and whether every model's
/// every climb sustained it (false: no rate was sustained by all, and it is
/// the lowest step).
pub fn common_rate(results: &Results, transport: Transport) -> Option<(f64, bool)> {
    let rate = crate::ladder::common_rate(results, transport)?;
    let climbs = crate::ladder::climbs(results);
    let sustained =
        climbs.iter().filter(|c| c.load.transport == transport).all(|c| c.knee().is_some_and(|k| k >= rate));
    Some((rate, sustained))
}

/// The ok latency cells over `transport`.
pub fn latency_cells(results: &Results, transport: Transport) -> Vec<&Cell> {
    results
        .cells
        .iter()
        .filter(|c| c.ok && c.spec.load.scenario == Scenario::Latency && c.spec.load.transport == transport)
        .collect()
}

/// One entry per model of `cells`, in the run's model order, flagged by
/// the kinds that concern `shown`.
fn entries(results: &Results, cells: &[&Cell], figure: impl Fn(&Cell) -> Option<f64>, shown: &[Figure]) -> Vec<Entry> {
    let mut out = Vec::new();
    for info in &results.settings.models {
        let own: Vec<&Cell> = cells.iter().copied().filter(|c| c.spec.load.model.name() == info.name).collect();
        let Some(stat) = stat(&own, &figure) else { continue };
        let concerned = shown.iter().flat_map(|s| marks::kinds_on(&own, *s));
        let mut kinds: Vec<FlagKind> = concerned.collect();
        kinds.sort();
        kinds.dedup();
        let other_flags = marks::kinds(&own)
            .into_iter()
            .filter(|k| !kinds.contains(k))
            .map(|k| (k, marks::repeats(&own, k)))
            .collect();
        let flags = kinds.into_iter().map(|k| (k, marks::repeats(&own, k))).collect();
        out.push(Entry { model: info.name.to_string(), stat, flags, other_flags, repeats: own.len() });
    }
    out
}

fn ranked(mut entries: Vec<Entry>, lower_is_better: bool) -> Vec<Entry> {
    entries.sort_by(|a, b| {
        let order = a.stat.median.total_cmp(&b.stat.median);
        if lower_is_better { order } else { order.reverse() }
    });
    entries
}

/// The four claims the run allows (fewer when a scenario did not run).
pub fn claims(results: &Results) -> Vec<Claim> {
    let Some(transport) = main_transport(results) else { return Vec::new() };
    let of = |scenario: Scenario| -> Vec<&Cell> {
        results
            .cells
            .iter()
            .filter(|c| c.ok && c.spec.load.scenario == scenario && c.spec.load.transport == transport)
            .collect()
    };
    let mut claims = Vec::new();

    // Server CPU per message, closed loop: 64 B (or the smallest size) at
    // 100 connections (or the most the run has).
    let load = of(Scenario::Throughput);
    let size =
        load.iter().map(|c| c.spec.load.size).find(|&s| s == SMALL).or(load.iter().map(|c| c.spec.load.size).min());
    let connections = load.iter().map(|c| c.spec.load.connections).find(|&n| n == 100);
    let connections = connections.or(load.iter().map(|c| c.spec.load.connections).max());
    if let (Some(size), Some(connections)) = (size, connections) {
        let cells: Vec<&Cell> =
            load.into_iter().filter(|c| c.spec.load.size == size && c.spec.load.connections == connections).collect();
        claims.push(Claim {
            title: "Lowest server CPU per message",
            conditions: format!("at {} connections, {size} B messages, closed loop", fmt_count(f64::from(connections))),
            ranked: ranked(entries(results, &cells, |c| c.server_cpu_us_per_msg, &[Figure::Cpu]), true),
            left_out: None,
            table: Table::Throughput(size),
            transport,
            show: |v| format!("{v:.2} µs"),
        });
    }

    // p99 at the common load.
    if let Some((rate, all_sustained)) = common_rate(results, transport) {
        let cells: Vec<&Cell> = latency_cells(results, transport)
            .into_iter()
            .filter(|c| c.spec.load.offered().is_some_and(|r| r.to_bits() == rate.to_bits()))
            .collect();
        let connections = cells.first().map_or(0, |c| c.spec.load.connections);
        let which = if all_sustained {
            "the highest offered rate every model sustained"
        } else {
            "the lowest offered rate of the run: not every model sustained it"
        };
        claims.push(Claim {
            title: "Lowest p99 latency at a common load",
            conditions: format!(
                "at {} msg/s offered ({which}), {} connections, open loop, CO-corrected",
                fmt_count(rate),
                fmt_count(f64::from(connections))
            ),
            ranked: ranked(
                entries(
                    results,
                    &cells,
                    |c| c.loadgen.as_ref().map(|r| r.latency_us.p99 as f64),
                    &[Figure::Latency, Figure::Rate],
                ),
                true,
            ),
            left_out: None,
            table: Table::Latency,
            transport,
            show: us,
        });
    }

    // Memory per idle connection at the smallest count held, among the
    // models that served every connection they held.
    let capacity = of(Scenario::Capacity);
    if !capacity.is_empty() {
        let mut cells = Vec::new();
        for info in &results.settings.models {
            let own = capacity.iter().copied().filter(|c| c.spec.load.model.name() == info.name);
            let fewest = own.clone().map(|c| c.spec.load.connections).min();
            cells.extend(own.filter(|c| Some(c.spec.load.connections) == fewest));
        }
        let held = capacity.iter().map(|c| c.spec.load.connections).min().unwrap_or(0);
        let all = entries(results, &cells, |c| c.capacity.as_ref().map(|c| c.pss_per_connection_kib), &[Figure::Held]);
        let unserved = entries(results, &cells, |c| c.capacity.as_ref().map(|c| c.not_served as f64), &[]);
        let starved: Vec<&str> = unserved.iter().filter(|e| e.stat.median > 0.0).map(|e| e.model.as_str()).collect();
        let served = all.into_iter().filter(|e| !starved.contains(&e.model.as_str())).collect();
        let starved: Vec<String> = starved.iter().map(|m| format!("`{m}`")).collect();
        claims.push(Claim {
            title: "Cheapest idle connection",
            conditions: format!(
                "server memory (PSS) per connection with {} idle connections held (or the model's cap)",
                fmt_count(f64::from(held))
            ),
            ranked: ranked(served, true),
            left_out: (!starved.is_empty())
                .then(|| format!("not ranked: {} left held connections without an echo", starved.join(", "))),
            table: Table::Capacity,
            transport,
            show: kib,
        });
    }

    // New connections per second.
    let churn = of(Scenario::Churn);
    if !churn.is_empty() {
        let clients = churn[0].spec.load.connections;
        claims.push(Claim {
            title: "Fastest accepts",
            conditions: format!("a new connection per message, {} clients", fmt_count(f64::from(clients))),
            ranked: ranked(
                entries(
                    results,
                    &churn,
                    |c| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec),
                    &[Figure::Rate],
                ),
                false,
            ),
            left_out: None,
            table: Table::Churn,
            transport,
            show: |v| format!("{} connections/s", fmt_count(v)),
        });
    }
    claims.retain(|c| !c.ranked.is_empty());
    claims
}

/// "† client-bound in 3 of 3 repeats, § connections short in 1 of 3 repeats".
fn flag_words(entry: &Entry, flags: &[(FlagKind, usize)]) -> String {
    let parts: Vec<String> = flags
        .iter()
        .map(|(k, n)| format!("{} {} in {n} of {} repeat(s)", mark(*k), words(*k), entry.repeats))
        .collect();
    parts.join(", ")
}

/// An entry's figure as printed, with the marks of its flags.
fn marked(entry: &Entry, show: fn(f64) -> String) -> String {
    let marks: String = entry.flags.iter().map(|(k, _)| mark(*k)).collect();
    marks::attach(show(entry.stat.median), &marks)
}

/// A table's heading in the rendered `body`, as GitHub anchors it.
fn anchor(body: &str, table: Table, transport: Transport) -> Option<String> {
    let over = transport_words(transport);
    let mut section_ok = false;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for line in body.lines() {
        let Some(heading) = line.strip_prefix("## ").or_else(|| line.strip_prefix("### ")) else { continue };
        let mut slug = slug(heading);
        let n = seen.entry(slug.clone()).or_insert(0);
        if *n > 0 {
            slug = format!("{slug}-{n}");
        }
        *n += 1;
        let top = line.starts_with("## ");
        let found = match table {
            Table::Throughput(size) => {
                if top {
                    section_ok = heading.starts_with("Throughput") && heading.ends_with(over);
                    false
                } else {
                    section_ok && heading.starts_with(&format!("{size} B"))
                }
            }
            Table::Latency => top && heading.starts_with("Latency") && heading.contains(over),
            Table::Churn => top && heading.starts_with("Churn") && heading.contains(over),
            Table::Capacity => top && heading.starts_with("Capacity") && heading.contains(over),
        };
        if found {
            return Some(slug);
        }
    }
    None
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces
/// to hyphens.
pub fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The summary's markdown, linking into `body` (the README below it).
pub fn section(results: &Results, body: &str) -> String {
    let claims = claims(results);
    if claims.is_empty() {
        return String::new();
    }
    let transport = claims[0].transport;
    let mut md = String::from("## Which model for what\n\n");
    let _ = writeln!(
        md,
        "Generated from the tables below ({}): medians over repeats. A mark after a figure is a validity flag \
         (see the legend under its table); a claim whose leader is flagged says so and names the best unflagged \
         model.\n",
        transport_words(transport)
    );
    for claim in &claims {
        let Some(leader) = claim.leader() else { continue };
        let figure = marked(leader, claim.show);
        let _ = write!(md, "- **{}**: `{}`, {figure}, {}", claim.title, leader.model, claim.conditions);
        if !leader.flags.is_empty() {
            let _ = write!(md, ". Flagged: {}", flag_words(leader, &leader.flags));
            match claim.best_unflagged() {
                Some(best) => {
                    let _ = write!(md, "; the best unflagged: `{}`, {}", best.model, (claim.show)(best.stat.median));
                }
                None => md.push_str("; no model's figure here is unflagged"),
            }
        } else if let Some(next) = claim.ranked.get(1) {
            let overlap = next.stat.min <= leader.stat.max && leader.stat.min <= next.stat.max;
            let _ = write!(md, "; next `{}`, {}", next.model, marked(next, claim.show));
            if overlap && leader.stat.n > 1 {
                md.push_str(" (their min–max ranges overlap)");
            }
        }
        if !leader.other_flags.is_empty() {
            let _ = write!(
                md,
                "; its cells also carry {}, about another of their figures",
                flag_words(leader, &leader.other_flags)
            );
        }
        if let Some(left_out) = &claim.left_out {
            let _ = write!(md, "; {left_out}");
        }
        match anchor(body, claim.table, claim.transport) {
            Some(anchor) => {
                let _ = writeln!(md, ". [Table](#{anchor})");
            }
            None => md.push_str(".\n"),
        }
    }
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::marks::tests::{fixture, flag};

    fn set(results: &mut Results, scenario: Scenario, model: &str, edit: impl Fn(&mut Cell)) {
        let cells =
            results.cells.iter_mut().filter(|c| c.spec.load.scenario == scenario && c.spec.load.model.name() == model);
        cells.for_each(edit);
    }

    fn leader<'a>(claims: &'a [Claim], title: &str) -> &'a str {
        let claim = claims.iter().find(|c| c.title == title).unwrap_or_else(|| panic!("no claim {title:?}"));
        &claim.leader().expect("a leader").model
    }

    #[test]
    fn each_claim_picks_the_model_with_the_best_figure() {
        let mut results = fixture();
        let first = claims(&results);
        assert_eq!(first.len(), 4);
        // The fixture (a real tiny run): tokio 6.05 against thread 10.81 µs
        // at 100 connections; p99 12.1 against 13.2 ms at the common rate;
        // 5.5 against 14.8 KiB per idle connection; 5,208 against 5,097
        // connections/s.
        assert_eq!(leader(&first, "Lowest server CPU per message"), "tokio");
        assert_eq!(leader(&first, "Lowest p99 latency at a common load"), "tokio");
        assert_eq!(leader(&first, "Cheapest idle connection"), "tokio");
        assert_eq!(leader(&first, "Fastest accepts"), "tokio");
        // Turn the figures around: the claims follow them.
        let throughput_100 = |c: &Cell| c.spec.load.scenario == Scenario::Throughput && c.spec.load.connections == 100;
        for cell in results.cells.iter_mut().filter(|c| throughput_100(c)) {
            cell.server_cpu_us_per_msg = Some(if cell.spec.load.model.name() == "thread" { 3.0 } else { 30.0 });
        }
        set(&mut results, Scenario::Churn, "thread", |c| {
            c.loadgen.as_mut().unwrap().throughput.requests_per_sec *= 10.0
        });
        let turned = claims(&results);
        assert_eq!(leader(&turned, "Lowest server CPU per message"), "thread");
        assert_eq!(leader(&turned, "Fastest accepts"), "thread");
    }

    #[test]
    fn a_flagged_leader_is_said_flagged_and_the_best_unflagged_is_named() {
        let mut results = fixture();
        let body = markdown_body(&results);
        let text = section(&results, &body);
        assert!(!text.contains("Flagged"), "{text}");
        let line = |text: &str, title: &str| text.lines().find(|l| l.contains(title)).unwrap().to_owned();
        // tokio accepts the most connections per second; make it client-bound in one repeat of two.
        let busy = |c: &mut Cell| {
            if c.spec.repeat == 0 {
                c.flags.push(flag(FlagKind::ClientBound, "busiest loadgen thread 97 % ≥ 90 %"));
            }
        };
        set(&mut results, Scenario::Churn, "tokio", busy);
        let accepts = line(&section(&results, &body), "Fastest accepts");
        assert!(accepts.contains("`tokio`, 5,208 connections/s †"), "{accepts}");
        assert!(
            accepts.contains("Flagged: † client-bound in 1 of 2 repeat(s); the best unflagged: `thread`, 5,097"),
            "{accepts}"
        );
        // Both flagged: it says no figure here is unflagged.
        set(&mut results, Scenario::Churn, "thread", busy);
        let accepts = line(&section(&results, &body), "Fastest accepts");
        assert!(accepts.contains("no model's figure here is unflagged"), "{accepts}");

        // Server CPU per message: a client-bound cell still measures the server's
        // CPU; a cell whose CPU could not be measured does not.
        set(&mut results, Scenario::Throughput, "tokio", busy);
        let cpu = line(&section(&results, &body), "Lowest server CPU per message");
        assert!(cpu.contains("`tokio`, 6.05 µs, at 100") && !cpu.contains("Flagged"), "{cpu}");
        assert!(cpu.contains("its cells also carry † client-bound in 1 of 2 repeat(s), about another"), "{cpu}");
        let unmeasured = |c: &mut Cell| c.flags.push(flag(FlagKind::CpuUnmeasurable, "no sample in the window"));
        set(&mut results, Scenario::Throughput, "tokio", unmeasured);
        let cpu = line(&section(&results, &body), "Lowest server CPU per message");
        assert!(cpu.contains("`tokio`, 6.05 µs ∅"), "{cpu}");
        assert!(cpu.contains("Flagged: ∅ server CPU not measurable in 2 of 2 repeat(s); the best unflagged: `thread`"));
    }

    #[test]
    fn a_model_that_leaves_held_connections_unserved_is_not_the_cheapest() {
        let mut results = fixture();
        set(&mut results, Scenario::Capacity, "tokio", |c| c.capacity.as_mut().unwrap().not_served = 7);
        let ranked = claims(&results);
        assert_eq!(leader(&ranked, "Cheapest idle connection"), "thread");
        let claim = ranked.iter().find(|c| c.title == "Cheapest idle connection").unwrap();
        assert_eq!(claim.ranked.len(), 1);
        assert!(claim.left_out.as_deref().is_some_and(|l| l.contains("`tokio`")), "{:?}", claim.left_out);
    }

    #[test]
    fn the_common_load_is_the_ladders_and_says_when_no_rate_was_sustained_by_all() {
        let mut results = fixture();
        // The fixture's run (tiny, on a busy machine) sustained no step: its
        // p99s are above 1 ms. The lowest step, said so.
        let lowest = results.settings.ladder.as_ref().unwrap().rates[0];
        assert_eq!(common_rate(&results, Transport::Tcp), Some((lowest, false)));
        let body = markdown_body(&results);
        let text = section(&results, &body);
        assert!(text.contains(&format!("at {} msg/s offered (the lowest offered rate", fmt_count(lowest))), "{text}");
        // Every step sustained: the highest rate every climb reached.
        for cell in results.cells.iter_mut().filter(|c| c.spec.load.scenario == Scenario::Latency) {
            let report = cell.loadgen.as_mut().unwrap();
            report.latency_us.p99 = 100;
            report.throughput.requests_per_sec = cell.spec.load.offered().unwrap();
        }
        let rate = crate::ladder::common_rate(&results, Transport::Tcp).unwrap();
        assert_eq!(common_rate(&results, Transport::Tcp), Some((rate, true)));
    }

    #[test]
    fn every_link_leads_to_a_heading_of_the_readme() {
        // The fixture as it is (TCP), and as if it had run over a Unix socket only.
        let mut unix = fixture();
        for cell in unix.cells.iter_mut().filter(|c| c.spec.load.scenario != Scenario::Transport) {
            cell.spec.load.transport = Transport::Unix;
        }
        for (results, over) in [(fixture(), "(TCP loopback)"), (unix, "(Unix domain socket)")] {
            let readme = crate::render::markdown(&results, &[]);
            assert!(readme.contains(&format!("Generated from the tables below {over}")), "{readme}");
            let anchors: Vec<String> = readme
                .lines()
                .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("### ")))
                .map(slug)
                .collect();
            let links: Vec<&str> = readme.split("](#").skip(1).filter_map(|rest| rest.split(')').next()).collect();
            assert_eq!(links.len(), 4, "one link per claim: {links:?}");
            for link in links {
                assert!(anchors.iter().any(|a| a == link), "#{link} is no heading: {anchors:?}");
            }
        }
        assert_eq!(
            slug("Latency under a fixed load, open loop, TCP loopback (21,094 msg/s, 100 connections, 64 B)"),
            "latency-under-a-fixed-load-open-loop-tcp-loopback-21094-msgs-100-connections-64-b"
        );
    }

    fn markdown_body(results: &Results) -> String {
        crate::render::markdown(results, &[])
    }
}
