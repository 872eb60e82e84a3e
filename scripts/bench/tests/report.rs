//! The README and charts of a recorded run (the snapshot fixture, a real
//! tiny run): validity marks and legends, the claims of "which model for
//! what" and their links, the latency ladder's knees, the charts' flag
//! styling.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use echo_bench::climb::{Verdict, verdict};
use echo_bench::flags::{Figure, Flag, FlagKind};
use echo_bench::load::ScenarioId;
use echo_bench::render::doc::slug;
use echo_bench::report::{self, claims};
use echo_bench::results::{Cell, Results};
use echo_bench::scenario::Claim;
use echo_bench::scenarios::{self, latency};
use echo_common::Transport;
use loadgen::report::fmt_count;

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results.json")
}

/// The snapshot fixture without its flags.
fn fixture() -> Results {
    let mut results = Results::load(&fixture_path()).expect("the fixture loads");
    for cell in &mut results.cells {
        cell.flags.clear();
    }
    results
}

/// The fixture as recorded, its flags recomputed.
fn annotated() -> Results {
    let mut results = Results::load(&fixture_path()).expect("the fixture loads");
    echo_bench::validity::annotate(&mut results);
    results
}

fn flag(kind: FlagKind, detail: &str) -> Flag {
    Flag { kind, figure: 0.97, threshold: 0.9, detail: detail.into() }
}

fn of(scenario: &'static str) -> ScenarioId {
    ScenarioId::new(scenario)
}

fn set(results: &mut Results, scenario: &'static str, model: &str, edit: impl Fn(&mut Cell)) {
    let mine = |c: &&mut Cell| c.spec.load.scenario == of(scenario) && c.spec.load.model.name() == model;
    results.cells.iter_mut().filter(mine).for_each(edit);
}

fn cells<'a>(results: &'a Results, scenario: &'static str, model: &str, connections: u32) -> Vec<&'a Cell> {
    let mine = |c: &&Cell| c.spec.load.scenario == of(scenario) && c.spec.load.model.name() == model;
    results.cells.iter().filter(mine).filter(|c| c.spec.load.connections == connections).collect()
}

fn leader<'a>(claims: &'a [Claim], title: &str) -> &'a str {
    let claim = claims.iter().find(|c| c.title == title).unwrap_or_else(|| panic!("no claim {title:?}"));
    &claim.leader().expect("a leader").model
}

/// The line of the README's claim `title`.
fn claim_line(results: &Results, title: &str) -> String {
    let readme = report::markdown(results, &[]);
    readme.lines().find(|l| l.starts_with("- **") && l.contains(title)).unwrap_or_default().to_owned()
}

#[test]
fn a_flag_marks_the_figure_it_concerns_and_the_legend_explains_it() {
    let mut results = fixture();
    let busy = "busiest loadgen thread 97 % ≥ 90 %";
    set(&mut results, "throughput", "tokio", |c| {
        if c.spec.load.connections == 100 && c.spec.repeat == 1 {
            c.flags.push(flag(FlagKind::ClientBound, busy));
        }
    });
    let lookup = scenarios::lookup();
    let mut notes = lookup.notes();
    let clean = cells(&results, "throughput", "thread", 100);
    assert_eq!(notes.marks(&clean, &[Figure::Rate, Figure::Cpu, Figure::Latency]), "");
    assert!(notes.is_empty() && notes.legend().is_empty(), "no mark, no legend");

    let flagged = cells(&results, "throughput", "tokio", 100);
    assert_eq!(notes.figure("41,757".into(), &flagged, &[Figure::Rate]), "41,757 †");
    assert_eq!(notes.figure("12.45".into(), &flagged, &[Figure::Cpu]), "12.45", "client-bound is about the rate");
    let legend = notes.legend();
    assert_eq!(legend.trim_end().lines().count(), 1, "{legend}");
    assert!(legend.starts_with("- † client-bound (1 row(s)): "), "{legend}");
    assert!(legend.contains("1 of 2 repeat(s) of `throughput tokio tcp, 100 connections, 64 B`"), "{legend}");
    assert!(legend.contains(&format!("(repeat 2: {busy})")), "{legend}");
}

#[test]
fn connections_short_marks_the_rate_and_the_held_figure() {
    let mut results = fixture();
    set(&mut results, "capacity", "tokio", |c| c.flags.push(flag(FlagKind::ConnectionsShort, "45 of 50 held")));
    let lookup = scenarios::lookup();
    let capacity = cells(&results, "capacity", "tokio", 50);
    assert!(lookup.doubtful(&capacity, Figure::Held) && lookup.doubtful(&capacity, Figure::Rate));
    assert!(!lookup.doubtful(&capacity, Figure::Cpu) && !lookup.doubtful(&capacity, Figure::Latency));
}

#[test]
fn a_spread_marks_the_figure_its_scenario_reads_a_cell_for() {
    let mut results = fixture();
    let spread = |c: &mut Cell| c.flags.push(flag(FlagKind::Spread, "wide"));
    for scenario in ["throughput", "latency", "capacity"] {
        set(&mut results, scenario, "tokio", spread);
    }
    let lookup = scenarios::lookup();
    let about = |scenario, connections| {
        let cells = cells(&results, scenario, "tokio", connections);
        [Figure::Rate, Figure::Latency, Figure::Held].into_iter().filter(|f| lookup.doubtful(&cells, *f)).collect()
    };
    let (rate, latency, held): (Vec<Figure>, _, _) =
        (about("throughput", 100), about("latency", 100), about("capacity", 50));
    assert_eq!((rate, latency, held), (vec![Figure::Rate], vec![Figure::Latency], vec![Figure::Held]));
}

#[test]
fn each_claim_picks_the_model_with_the_best_figure() {
    let mut results = fixture();
    let first = claims(&results);
    let titles: Vec<&str> = first.iter().map(|c| c.title).collect();
    assert_eq!(
        titles,
        [
            "Lowest server CPU per message",
            "Lowest p99 latency at a common load",
            "Cheapest idle connection",
            "Fastest accepts"
        ]
    );
    // The fixture (a real tiny run): tokio 6.05 against thread 10.81 µs
    // at 100 connections; p99 12.1 against 13.2 ms at the common rate;
    // 5.5 against 14.8 KiB per idle connection; 5,208 against 5,097
    // connections/s.
    for title in &titles {
        assert_eq!(leader(&first, title), "tokio", "{title}");
    }
    // Turn the figures around: the claims follow them.
    set(&mut results, "throughput", "thread", |c| c.server_cpu_us_per_msg = Some(3.0));
    set(&mut results, "throughput", "tokio", |c| c.server_cpu_us_per_msg = Some(30.0));
    set(&mut results, "churn", "thread", |c| c.loadgen.as_mut().unwrap().throughput.requests_per_sec *= 10.0);
    let turned = claims(&results);
    assert_eq!(leader(&turned, "Lowest server CPU per message"), "thread");
    assert_eq!(leader(&turned, "Fastest accepts"), "thread");
}

#[test]
fn a_run_from_several_agents_keeps_its_summary_and_claims() {
    let one = fixture();
    let mut agents = one.clone();
    for cell in &mut agents.cells {
        cell.spec.load.agents = 2;
    }
    let (before, after) = (claims(&one), claims(&agents));
    let titles = |c: &[Claim]| c.iter().map(|c| c.title).collect::<Vec<_>>();
    assert_eq!(titles(&after), titles(&before), "every claim is still made");
    for title in titles(&before) {
        assert_eq!(leader(&after, title), leader(&before, title), "{title}");
    }
    let summary = |r: &Results| {
        let readme = report::markdown(r, &[]);
        readme.lines().filter(|l| l.starts_with('|')).take(4).map(str::to_owned).collect::<Vec<_>>()
    };
    assert!(!summary(&agents).is_empty());
    assert_eq!(summary(&agents), summary(&one), "the summary's table is the same");
}

#[test]
fn a_flagged_leader_is_said_flagged_and_the_best_unflagged_is_named() {
    let mut results = fixture();
    assert!(!report::markdown(&results, &[]).contains("Flagged"));
    // tokio accepts the most connections per second; make it client-bound in one repeat of two.
    let busy = |c: &mut Cell| {
        if c.spec.repeat == 0 {
            c.flags.push(flag(FlagKind::ClientBound, "busiest loadgen thread 97 % ≥ 90 %"));
        }
    };
    set(&mut results, "churn", "tokio", busy);
    let accepts = claim_line(&results, "Fastest accepts");
    assert!(accepts.contains("`tokio`, 5,208 connections/s †"), "{accepts}");
    assert!(
        accepts.contains("Flagged: † client-bound in 1 of 2 repeat(s); the best unflagged: `thread`, 5,097"),
        "{accepts}"
    );
    // Both flagged: it says no figure here is unflagged.
    set(&mut results, "churn", "thread", busy);
    let accepts = claim_line(&results, "Fastest accepts");
    assert!(accepts.contains("no model's figure here is unflagged"), "{accepts}");

    // Server CPU per message: a client-bound cell still measures the server's
    // CPU; a cell whose CPU could not be measured does not.
    set(&mut results, "throughput", "tokio", busy);
    let cpu = claim_line(&results, "Lowest server CPU per message");
    assert!(cpu.contains("`tokio`, 6.05 µs, at 100") && !cpu.contains("Flagged"), "{cpu}");
    assert!(cpu.contains("its cells also carry † client-bound in 1 of 2 repeat(s), about another"), "{cpu}");
    let unmeasured = |c: &mut Cell| c.flags.push(flag(FlagKind::CpuUnmeasurable, "no sample in the window"));
    set(&mut results, "throughput", "tokio", unmeasured);
    let cpu = claim_line(&results, "Lowest server CPU per message");
    assert!(cpu.contains("`tokio`, 6.05 µs ∅"), "{cpu}");
    assert!(cpu.contains("Flagged: ∅ server CPU not measurable in 2 of 2 repeat(s); the best unflagged: `thread`"));
}

#[test]
fn a_model_that_leaves_held_connections_unserved_is_not_the_cheapest() {
    let mut results = fixture();
    set(&mut results, "capacity", "tokio", |c| c.capacity.as_mut().unwrap().not_served = 7);
    let ranked = claims(&results);
    assert_eq!(leader(&ranked, "Cheapest idle connection"), "thread");
    let claim = ranked.iter().find(|c| c.title == "Cheapest idle connection").unwrap();
    assert_eq!(claim.ranked.len(), 1);
    assert!(claim.left_out.as_deref().is_some_and(|l| l.contains("`tokio`")), "{:?}", claim.left_out);
}

#[test]
fn the_common_load_is_the_ladders_and_says_when_no_rate_was_sustained_by_all() {
    let mut results = fixture();
    // The fixture's run (tiny, on a busy machine) sustained no step in
    // every repeat: the lowest step, said so.
    let lowest = results.settings.ladder.as_ref().unwrap().rates[0];
    assert_eq!(latency::common_rate(&results, Transport::Tcp), Some((lowest, false)));
    let p99 = claim_line(&results, "Lowest p99 latency");
    assert!(p99.contains(&format!("at {} msg/s offered (the lowest offered rate", fmt_count(lowest))), "{p99}");
    // Every step sustained: the highest rate every climb reached.
    for cell in results.cells.iter_mut().filter(|c| c.spec.load.scenario == of("latency")) {
        let report = cell.loadgen.as_mut().unwrap();
        report.latency_us.p99 = 100;
        report.throughput.requests_per_sec = cell.spec.load.offered().unwrap();
    }
    // (Every climb of the fixture's second repeat stopped at its first step:
    // the highest rate all of them reached is that step's.)
    assert_eq!(latency::common_rate(&results, Transport::Tcp), Some((lowest, true)));
    let p99 = claim_line(&results, "Lowest p99 latency");
    assert!(p99.contains("(the highest offered rate every model sustained)"), "{p99}");
}

/// The anchors GitHub gives the README's headings, in order (a repeated
/// one numbered).
fn anchors(readme: &str) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let headings = readme.lines().filter(|l| l.starts_with('#')).map(|l| l.trim_start_matches('#'));
    headings
        .map(|heading| {
            let slug = slug(heading);
            let n = seen.entry(slug.clone()).or_insert(0);
            let anchor = if *n > 0 { format!("{slug}-{n}") } else { slug };
            *n += 1;
            anchor
        })
        .collect()
}

#[test]
fn every_link_leads_to_the_heading_of_its_table() {
    // The fixture as it is (TCP), as if it had run over a Unix socket only,
    // and over both (the Unix tables' headings then repeat the TCP ones').
    let mut unix = fixture();
    for cell in unix.cells.iter_mut().filter(|c| c.spec.load.scenario != of("transport")) {
        cell.spec.load.transport = Transport::Unix;
    }
    let mut both = fixture();
    let mut copies: Vec<Cell> =
        unix.cells.iter().filter(|c| c.spec.load.scenario != of("transport")).cloned().collect();
    both.cells.append(&mut copies);
    for (results, over) in [(fixture(), "TCP loopback"), (unix, "Unix domain socket"), (both, "TCP loopback")] {
        let readme = report::markdown(&results, &[]);
        assert!(readme.contains(&format!("Generated from the tables below ({over})")), "{readme}");
        let anchors = anchors(&readme);
        let links: Vec<&str> = readme.split("](#").skip(1).filter_map(|rest| rest.split(')').next()).collect();
        assert_eq!(links.len(), 4, "one link per claim: {links:?}");
        for link in &links {
            let at = anchors.iter().position(|a| a == link).unwrap_or_else(|| panic!("#{link} is no heading"));
            let headings: Vec<&str> = readme.lines().filter(|l| l.starts_with('#')).take(at + 1).collect();
            let heading = headings[at];
            // The throughput claim links to its size's table under the
            // section of its transport; the others to their section.
            let under = headings.iter().rev().find(|l| l.starts_with("## ")).copied().unwrap_or_default();
            assert!(under.ends_with(over), "#{link}: {heading} under {under:?}");
        }
    }
}

#[test]
fn flagged_points_and_bars_are_drawn_hollow_and_values_printed() {
    let mut results = fixture();
    set(&mut results, "throughput", "tokio", |c| {
        if c.spec.load.connections == 100 {
            c.flags.push(flag(FlagKind::ClientBound, "test"));
        }
    });
    set(&mut results, "capacity", "tokio", |c| c.flags.push(flag(FlagKind::ConnectionsShort, "test")));
    let dir = tempfile::tempdir().unwrap();
    // Hollow markers are white inside (a circle or a polygon), the legend's sample of one aside.
    let hollow_circles = |svg: &str| {
        let tags = svg.split('<').filter(|t| t.starts_with("circle") || t.starts_with("polygon"));
        let white = tags.filter(|tag| tag.split('>').next().unwrap_or_default().contains("fill=\"#FFFFFF\"")).count();
        white - usize::from(svg.contains("hollow: a flagged figure"))
    };
    report::draw_charts(&results, dir.path()).unwrap();
    let read = |file: &str| std::fs::read_to_string(dir.path().join(file)).unwrap();
    // tokio client-bound at 100 connections, its capacity cells short.
    assert_eq!(hollow_circles(&read("throughput-64B.svg")), 1);
    assert!(read("throughput-64B.svg").contains("hollow: a flagged figure"), "the legend says what hollow means");
    assert_eq!(hollow_circles(&read("cpu-per-message-64B.svg")), 0, "client-bound is about the rate");
    let memory = read("memory-per-connection.svg");
    assert!(memory.contains("5.5 KiB §") && memory.contains("14.8 KiB"), "values printed, marks too");
    assert!(memory.contains("hollow dot: a flagged figure"));
    assert_eq!(hollow_circles(&memory), 1, "tokio's one row held: its capacity cells are short");
    // Without flags: every point filled, no note.
    for cell in &mut results.cells {
        cell.flags.clear();
    }
    report::draw_charts(&results, dir.path()).unwrap();
    assert_eq!(hollow_circles(&read("throughput-64B.svg")), 0);
    assert!(!read("memory-per-connection.svg").contains("hollow"));
}

#[test]
fn a_cell_is_described_with_grouped_numbers() {
    let results = fixture();
    let first =
        |scenario| results.cells.iter().find(|c| c.spec.load.scenario == of(scenario)).unwrap().spec.load.clone();
    let mut load = first("throughput");
    load.connections = 1000;
    assert_eq!(scenarios::describe(&load), "throughput thread tcp, 1,000 connections, 64 B");
    let mut load = first("capacity");
    load.connections = 10_000;
    assert_eq!(scenarios::describe(&load), "capacity thread tcp, 10,000 idle connections");
    assert_eq!(
        scenarios::describe(&first("latency")),
        "latency thread tcp, 100 connections, 64 B, 2,000 msg/s offered"
    );
}

#[test]
fn the_spectrum_draws_the_ladders_common_rate_and_says_so() {
    let results = fixture();
    let (common, _) = latency::common_rate(&results, Transport::Tcp).expect("the fixture has a ladder");
    let dir = tempfile::tempdir().unwrap();
    let charts = report::draw_charts(&results, dir.path()).unwrap();
    let chart = charts.iter().find(|c| c.file.starts_with("latency-spectrum")).unwrap();
    let svg = std::fs::read_to_string(dir.path().join(&chart.file)).unwrap();
    let rate = fmt_count(common);
    assert!(chart.title.contains(&rate), "{}", chart.title);
    assert!(svg.contains(&format!("at {rate} msg/s offered")), "the chart says its rate");
}

#[test]
fn knees_stops_and_the_client_bound_mark_from_a_recorded_run() {
    let mut results = annotated();
    let slo = results.settings.ladder.as_ref().unwrap().slo_p99_us;
    assert_eq!(slo, 1000);
    // (model, repeat, knee, rate of the stopping step, client-bound)
    type Summary = (usize, u32, Option<f64>, Option<f64>, bool);
    let summary = |results: &Results| -> Vec<Summary> {
        latency::climbs(results)
            .iter()
            .map(|c| {
                let stop = c.stop().and_then(|(s, _)| s.spec.load.offered());
                (c.load.model.rank(), c.repeat, c.knee(), stop, c.client_bound())
            })
            .collect()
    };
    // thread (model 0), repeat 1: 2k and 8k sustained, 32k achieved 27,052 msg/s;
    // tokio (model 1), repeat 1: 2k sustained, 8k p99 29.8 ms; repeat 2: both
    // stopped at their first step.
    assert_eq!(
        summary(&results),
        [
            (0, 0, Some(8000.0), Some(32000.0), false),
            (0, 1, None, Some(2000.0), false),
            (1, 0, Some(2000.0), Some(8000.0), false),
            (1, 1, None, Some(2000.0), false),
        ]
    );
    let climbs = latency::climbs(&results);
    assert!(matches!(climbs[0].stop(), Some((_, Verdict::MissedRate { achieved })) if *achieved == 27_052.0));
    assert!(matches!(climbs[2].stop(), Some((_, Verdict::OverSlo { p99_us: 29_775 }))));
    // The same stop with the load generator ≥ 90 % busy: the knee is client-bound.
    let stop = results
        .cells
        .iter_mut()
        .find(|c| c.spec.load.scenario == of("latency") && c.spec.load.offered() == Some(32000.0))
        .unwrap();
    stop.loadgen.as_mut().unwrap().client_cpu.max_thread_utilisation = 0.95;
    echo_bench::validity::annotate(&mut results);
    assert!(summary(&results)[0].4, "client-bound");
    // Every model sustained 2k in repeat 1 only: the common rate falls back to the lowest.
    assert_eq!(latency::common_rate(&results, Transport::Tcp), Some((2000.0, false)));
    assert_eq!(latency::common_rate(&results, Transport::Unix), None);
}

#[test]
fn the_verdict_of_a_failed_cell_is_a_failure() {
    let mut results = annotated();
    let cell = results.cells.iter_mut().find(|c| c.spec.load.scenario == of("latency")).unwrap();
    assert_eq!(verdict(cell, 1000), Verdict::Sustained);
    assert!(matches!(verdict(cell, 100), Verdict::OverSlo { p99_us: 405 }));
    cell.ok = false;
    cell.failure = Some("server exited during the cell".into());
    assert_eq!(verdict(cell, 1000), Verdict::Failed("server exited during the cell".into()));
}

#[test]
fn the_ladder_and_the_ratio_are_drawn_by_the_kit() {
    let mut results = fixture();
    // tokio's 2,000 msg/s step below its rate in one repeat: a hollow point.
    set(&mut results, "latency", "tokio", |c| {
        if c.spec.load.offered() == Some(2000.0) && c.spec.repeat == 1 {
            c.flags.push(flag(FlagKind::SendLate, "late"));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let charts = report::draw_charts(&results, dir.path()).unwrap();
    let read = |file: &str| std::fs::read_to_string(dir.path().join(file)).unwrap();
    let ladder = read("latency-ladder.svg");
    // thread's 8k and 32k steps: only its first repeat reached them (its second stopped at 2k: no
    // knee in every repeat, none ringed).
    for label in ["SLO: p99 ≤ 1 ms", "2,000", "8,000", "32,000", "hollow: a flagged figure", "1/2"] {
        assert!(ladder.contains(label), "the ladder chart lacks {label:?}");
    }
    assert!(!ladder.contains("knee"), "no model held a step in every repeat");
    // The steps only thread's first repeat reached: counted in the table, dashed in the chart.
    let readme = report::markdown(&results, &charts);
    for step in ["| thread | 8,000 (1 of 2 repeats) |", "| thread | 32,000 (1 of 2 repeats) |"] {
        assert!(readme.contains(step), "{step}");
    }
    assert!(readme.contains("| thread | 2,000 | "), "both repeats ran 2,000: no count");
    assert!(ladder.contains("dashed, n/m: a step only n of"), "the chart says what the counts mean");
    let ratio = read("transport-ratio.svg");
    for label in ["thread, 1 conn.", "thread, 100 conn.", "tokio, 1 conn.", "tokio, 100 conn.", "1×"] {
        assert!(ratio.contains(label), "the ratio chart lacks {label:?}");
    }
    let titles: Vec<&str> = charts.iter().map(|c| c.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "Throughput vs connections, 64 B",
            "Server CPU per message by connections, 64 B",
            "p99 latency against offered load",
            "Latency percentile spectrum at 2,000 msg/s, open loop",
            "Server memory per idle connection (PSS)",
            "Churn: connections per second and server CPU per connection",
            "Unix socket ÷ TCP loopback, msg/s",
        ],
        "curves against load, then the bars, then the comparisons run once"
    );
}

/// An axis the fixture never set (agents), set on copies of its throughput
/// cells with other figures: the copies are another load, never repeats of
/// the originals, in the flags, the tables and the claims.
#[test]
fn a_load_that_differs_in_any_axis_is_never_pooled() {
    let mut results = annotated();
    let before = results.clone();
    let copies: Vec<Cell> = results
        .cells
        .iter()
        .filter(|c| c.spec.load.scenario == of("throughput"))
        .map(|c| {
            let mut copy = c.clone();
            // Work per message: another load (the agents are not an axis the
            // claims leave out: a run's cells all come from the same agents).
            copy.spec.load.work = echo_bench::load::Name(std::borrow::Cow::Borrowed("hash"));
            copy.server_cpu_us_per_msg = copy.server_cpu_us_per_msg.map(|v| v * 100.0);
            copy
        })
        .collect();
    let n = copies.len();
    results.cells.extend(copies);
    echo_bench::validity::annotate(&mut results);
    assert_eq!(results.cells[..before.cells.len()], before.cells[..], "the originals' flags are their own");
    let rows = |results: &Results| {
        let readme = report::markdown(results, &[]);
        let table = readme.split("### 64 B messages").nth(1).unwrap().split("\n\n").nth(1).unwrap().to_owned();
        table.lines().count() - 2
    };
    assert_eq!(rows(&results), rows(&before) + n / 2, "a row per load (2 repeats each)");
    let cpu = |results: &Results| claims(results)[0].ranked.iter().map(|e| e.stat).collect::<Vec<_>>();
    assert_eq!(cpu(&results), cpu(&before), "the claims compare the loads at every default");
    let label = scenarios::label(&results.cells.last().unwrap().spec.load);
    assert!(label.ends_with(", work hash"), "{label}");
}

#[test]
fn cells_over_another_link_are_shown_apart_and_the_transport_scenarios_veth_cells_in_its_section() {
    use echo_bench::load::Name;
    let base = fixture();
    let mut results = base.clone();
    // Every throughput and transport TCP cell again over veth, its rate doubled.
    let extra: Vec<Cell> = base
        .cells
        .iter()
        .filter(|c| {
            c.spec.load.transport == Transport::Tcp
                && ["throughput", "transport"].contains(&c.spec.load.scenario.name())
        })
        .map(|c| {
            let mut cell = c.clone();
            cell.spec.load.link = Name::veth();
            if let Some(report) = cell.loadgen.as_mut() {
                report.throughput.requests_per_sec *= 2.0;
            }
            cell
        })
        .collect();
    assert!(!extra.is_empty(), "the fixture has TCP throughput and transport cells");
    results.cells.extend(extra);
    let (before, after) = (report::markdown(&base, &[]), report::markdown(&results, &[]));
    // The throughput section is the loopback one: unchanged.
    let section = |md: &str| md.split("## Throughput").nth(1).map(|s| s.split("\n## ").next().unwrap_or("").to_owned());
    assert!(section(&before).is_some_and(|s| s.contains("| tokio ")), "the fixture's throughput section");
    assert_eq!(section(&before), section(&after), "veth cells kept out of the loopback sections");
    let apart = after.split("## Over other links (`--link`)").nth(1).expect("a section of their own");
    let rows: Vec<&str> = apart.lines().filter(|l| l.starts_with("| throughput ")).collect();
    assert!(!rows.is_empty() && rows.iter().all(|l| l.contains(", over veth |")), "{rows:?}");
    assert!(!apart.contains("| transport "), "the transport scenario's veth cells are in its own section");
    let veth = after.split("### TCP over veth against TCP loopback").nth(1).expect("the transport veth table");
    let table: Vec<&str> =
        veth.lines().take_while(|l| !l.starts_with("## ")).filter(|l| l.contains(" 2.00× ")).collect();
    assert!(!table.is_empty(), "veth ÷ tcp = 2 in the veth table: {veth}");
}

/// The reference run (results/20261126T145404Z-vm) renders again with this
/// bench: every chart, the ladder's partial steps and knees marked, the
/// udp latency chart in place of the flat loss one, memory on a log scale.
#[test]
fn the_reference_run_renders_again() {
    let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/20261126T145404Z-vm/results.json");
    let mut results = Results::load(&run).expect("the reference run loads");
    echo_bench::validity::annotate(&mut results);
    let dir = tempfile::tempdir().unwrap();
    report::write_report(&results, dir.path()).unwrap();
    let readme = std::fs::read_to_string(dir.path().join("README.md")).unwrap();
    let read = |file: &str| std::fs::read_to_string(dir.path().join(file)).unwrap();
    for chart in [
        "throughput-64B.svg",
        "cpu-per-message-64B.svg",
        "latency-ladder.svg",
        "latency-spectrum.svg",
        "memory-per-connection.svg",
        "churn.svg",
        "transport-ratio.svg",
        "udp-sustained-rate.svg",
        "udp-p99.svg",
    ] {
        assert!(readme.contains(&format!("]({chart})")), "{chart} is linked");
        assert!(read(chart).starts_with("<svg"), "{chart} is drawn");
    }
    assert!(!dir.path().join("udp-loss.svg").exists(), "the loss chart (0.00 % everywhere) is gone");
    let ladder = read("latency-ladder.svg");
    assert!(
        ladder.contains("knee: highest rate held") && ladder.contains("2/3"),
        "knees ringed, partial steps counted"
    );
    assert!(readme.contains("| 30,000 (2 of 3 repeats) |"), "the step table counts the repeats that ran a step");
    let memory = read("memory-per-connection.svg");
    assert!(memory.contains("≈ 0 KiB (-3.5 KiB measured)"), "a negative difference is ≈ 0, not a negative bar");
    // Without cost cells, the closed loop's server CPU per message still leads.
    assert!(readme.contains("- **Lowest server CPU per message**: `reactor`, 4.88 µs, at 100 connections"), "{readme}");
}

/// The fixture's latency cells at 2,000 msg/s copied as cost cells at
/// `rate`, each model's server CPU per message and achieved rate given
/// (`(model, µs, achieved share of the rate)`), on schedule.
fn cost_cells(results: &Results, rate: f64, figures: &[(&str, f64, f64)]) -> Vec<Cell> {
    let latency = results.cells.iter().filter(|c| c.spec.load.scenario == of("latency"));
    latency
        .filter(|c| c.spec.load.offered() == Some(2000.0))
        .filter_map(|c| {
            let &(_, cpu, share) = figures.iter().find(|(m, ..)| *m == c.spec.load.model.name())?;
            let mut cell = c.clone();
            cell.spec.load.scenario = of("cost");
            cell.spec.load.rate = Some(echo_bench::load::Rate(rate));
            cell.server_cpu_us_per_msg = Some(cpu);
            let report = cell.loadgen.as_mut().unwrap();
            report.config.rate = Some(rate);
            report.throughput.target_requests_per_sec = Some(rate);
            report.throughput.requests_per_sec = rate * share;
            report.send_lateness_us = None;
            report.client_cpu.max_thread_utilisation = 0.1;
            report.latency_us.mean = 1e6 * f64::from(report.config.connections) / report.throughput.requests_per_sec;
            Some(cell)
        })
        .collect()
}

/// With cost cells, the summary's and the claim's server CPU per message
/// are the cost scenario's at the highest rate every model held; a cell
/// below its rate is marked in the table and hollow in the chart.
#[test]
fn the_server_cpu_headline_comes_from_the_cost_scenario_at_the_common_rate() {
    let mut results = fixture();
    let low = cost_cells(&results, 1000.0, &[("thread", 30.0, 1.0), ("tokio", 20.0, 1.0)]);
    // At 4,000 tokio did not hold the rate: the cheapest there, but its CPU is another load's.
    let high = cost_cells(&results, 4000.0, &[("thread", 10.0, 1.0), ("tokio", 5.0, 0.75)]);
    results.cells.extend(low.into_iter().chain(high));
    results.settings.cost = Some(echo_bench::results::CostSettings {
        rates: vec![1000.0, 4000.0],
        connections: 100,
        size: 64,
        window_secs: 0.5,
        warmup_secs: 0.2,
        excluded: Vec::new(),
    });
    echo_bench::validity::annotate(&mut results);
    let all = claims(&results);
    let cpu: Vec<&Claim> = all.iter().filter(|c| c.title == "Lowest server CPU per message").collect();
    assert_eq!(cpu.len(), 1, "one claim: the cost scenario's, the closed loop's steps back");
    assert_eq!(cpu[0].leader().unwrap().model, "tokio");
    assert_eq!(cpu[0].leader().unwrap().stat.median, 20.0, "at 1,000 msg/s, the highest rate both held");
    assert!(cpu[0].conditions.starts_with("at 1,000 msg/s offered (the highest rate every model held)"));
    let readme = report::markdown(&results, &[]);
    assert!(readme.contains("server CPU per message at 1,000 msg/s offered to 100 connections"), "{readme}");
    let row =
        readme.lines().find(|l| l.starts_with("| tokio | 20.00 | 5.00 ‡")).expect("tokio's cost row, 4,000 marked");
    assert!(row.ends_with("| 2 of 4 cells |"), "{row}");
    let dir = tempfile::tempdir().unwrap();
    report::draw_charts(&results, dir.path()).unwrap();
    let chart = std::fs::read_to_string(dir.path().join("cost.svg")).unwrap();
    assert!(chart.contains("hollow: a flagged figure") && chart.contains("1,000") && chart.contains("4,000"));
}

/// The reference run of 2026-12-03 (it has cost and capacity cells)
/// renders its overview: server CPU per message at the cost scenario's
/// common rate against memory per idle connection, a point per model that
/// has both, the models without a cost cell named, the chart linked first.
#[test]
fn the_overview_chart_is_drawn_from_cost_and_capacity_cells() {
    let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/20261203T232124Z-vm/results.json");
    let mut results = Results::load(&run).expect("the reference run loads");
    echo_bench::validity::annotate(&mut results);
    let dir = tempfile::tempdir().unwrap();
    let charts = report::draw_charts(&results, dir.path()).unwrap();
    assert_eq!(charts.first().map(|c| c.file.as_str()), Some(echo_bench::report::overview::FILE));
    let svg = std::fs::read_to_string(dir.path().join(echo_bench::report::overview::FILE)).unwrap();
    assert!(svg.contains("20,000 msg/s offered"), "the common rate (the highest every model held) is said");
    for model in ["reactors", "reactor-pool", "process", "thread", "uring"] {
        // Once beside its point, once in the legend.
        let named = svg.lines().filter(|l| l.trim() == model).count();
        assert_eq!(named, 2, "{model} is labelled and in the legend");
    }
    assert!(svg.contains("not drawn: iterative, prefork"), "the models without a cost cell are named");
}

/// `bench report` writes the flags it recomputes back into results.json,
/// and nothing else: every figure as the run wrote it, a field this bench
/// does not know kept, no default added.
#[test]
fn the_recomputed_flags_are_written_back_and_nothing_else() {
    let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results/20261203T232124Z-vm/results.json");
    let mut before: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&run).unwrap()).unwrap();
    before["cells"][0]["from_a_later_bench"] = serde_json::json!({"kept": true});
    before["cells"][35]["flags"] = serde_json::json!([]);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("results.json");
    std::fs::write(&json, serde_json::to_string(&before).unwrap()).unwrap();
    let mut results = Results::load(&json).expect("the copy loads");
    echo_bench::validity::annotate(&mut results);
    results.save_flags(&json).unwrap();
    let after: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let strip = |v: &serde_json::Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("control");
        for cell in v["cells"].as_array_mut().unwrap() {
            let cell = cell.as_object_mut().unwrap();
            cell.remove("flags");
            cell.remove("notes");
        }
        v
    };
    assert!(strip(&before) == strip(&after), "only flags, notes and the control summary change");
    assert_eq!(after["cells"][0]["from_a_later_bench"]["kept"], true);
    let flags_of = |i: usize| serde_json::to_value(&results.cells[i].flags).unwrap();
    assert_eq!(after["cells"][35]["flags"], flags_of(35), "the recomputed flags are written");
    assert!(
        !after["cells"][35]["flags"].as_array().unwrap().is_empty(),
        "cell 35 (process, 1,000 connections, short of them) earns its flags again"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
}
