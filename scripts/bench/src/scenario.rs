//! A scenario: one thing the benchmark measures, behind one trait. Each
//! owns its cells (which loads, how a cell runs), the figure a cell is read
//! for, its tables, its charts and its part of the README's summary; the
//! matrix, the runner, the flags and the report ask the registry
//! ([`crate::scenarios`]) and know none of them by name.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use echo_common::Transport;
use loadgen::Opts;
use loadgen::report::{fmt_count, fmt_us};

use crate::flags::{Figure, FlagKind};
use crate::load::{LoadKey, ScenarioId};
use crate::models::Model;
use crate::plan::{RunConfig, Shape};
use crate::render::doc::{Doc, TableId};
use crate::render::marks::{Lookup, Notes};
use crate::render::table::Table;
use crate::results::{Cell, Results, Settings};
use crate::stats::{Groups, Stat};

/// The message size of the scenarios that do not vary it (latency, churn,
/// transport, scaling, the udp sustained rate), bytes.
pub const SMALL: u32 = 64;

/// One scenario. Only [`Scenario::name`], [`Scenario::about`],
/// [`Scenario::loads`] and [`Scenario::section`] have no default.
pub trait Scenario: Sync {
    // What it is.

    /// Its name: on the command line, in results.json, in the tables.
    fn name(&self) -> &'static str;

    /// What it measures, for `bench --help`: plain words, no rustdoc links,
    /// no final full stop (as clap prints a one-sentence doc comment).
    fn about(&self) -> &'static str;

    /// Its name as a cell's load carries it.
    fn id(&self) -> ScenarioId {
        ScenarioId::new(self.name())
    }

    // Its cells.

    /// Sets its defaults in `shape` for a run (`quick`: the small matrix)
    /// on a machine where it may use `cpus` CPUs; whether it is in the
    /// default matrix there.
    fn defaults(&self, shape: &mut Shape, quick: bool, cpus: usize) -> bool {
        let _ = (shape, quick, cpus);
        true
    }

    /// Its loads over `shape`, in the order they run: each the keys of the
    /// cells every model gets of it, in the models' order (a model may get
    /// none, or several: variants, transports). The matrix runs each load
    /// for every model before the next, repeat after repeat.
    fn loads(&self, shape: &Shape) -> Vec<Vec<LoadKey>>;

    /// Whether its loads name their links themselves (`false`: each runs
    /// over every link of the run, [`Shape::links`]).
    fn sets_links(&self) -> bool {
        false
    }

    /// How many times each of its cells runs.
    fn repeats(&self, shape: &Shape) -> u32 {
        shape.repeat
    }

    /// How many times the cells of one of its loads (`keys`, as
    /// [`Scenario::loads`] gave it) run: [`Scenario::repeats`], unless
    /// the scenario runs some loads fewer times than others.
    fn load_repeats(&self, shape: &Shape, keys: &[LoadKey]) -> u32 {
        let _ = keys;
        self.repeats(shape)
    }

    /// Whether a cell of `load` is a step of an open-loop climb: the runner
    /// skips the steps above the first one it failed (the latency ladder,
    /// the udp sustained rate). By default every cell with an offered rate.
    fn climbs(&self, load: &LoadKey) -> bool {
        load.rate.is_some()
    }

    /// What results.json records of it beside its cells.
    fn record(&self, cfg: &RunConfig, settings: &mut Settings) {
        let _ = (cfg, settings);
    }

    /// A line for the console before a run on `cpus` CPUs.
    fn note(&self, cpus: usize) -> Option<String> {
        let _ = cpus;
        None
    }

    /// The SLO on the CO-corrected p99 its open-loop steps of `load` are
    /// judged against, given the run's (`--slo-p99`): the run's, unless
    /// the load itself sets a floor under the latency (work per message).
    fn slo_p99(&self, load: &LoadKey, run: Duration) -> Duration {
        let _ = load;
        run
    }

    /// The measured window of its cells.
    fn window(&self) -> Window {
        Window::Full
    }

    /// Which of its cells' servers run under the run's CPU quota
    /// (`--server-quota`): those that read a saturated rate, which then is
    /// the server's. The others run unthrottled (a throttled period would
    /// add its own wait to a paced load).
    fn server_quota(&self) -> Throttled {
        Throttled::None
    }

    /// How a cell of `load` runs: `opts` (the load, its window) as they
    /// are, or tuned, or no load generator at all.
    fn drive(&self, load: &LoadKey, opts: Opts) -> Drive {
        let _ = load;
        Drive::Load(opts)
    }

    // Its words, and the figure a cell is read for.

    /// A cell in a few words, for the console.
    fn label(&self, load: &LoadKey) -> String {
        label(load)
    }

    /// A cell for a reader, numbers grouped by thousands.
    fn describe(&self, load: &LoadKey) -> String {
        describe(load)
    }

    /// The figure a cell of `load` is read for: the one whose spread
    /// across repeats is flagged.
    fn headline(&self, load: &LoadKey) -> Headline {
        let _ = load;
        Headline::RATE
    }

    // Its part of the README.

    /// Whether it has a section per transport of the run (`false`: one
    /// section, which compares transports or runs its own).
    fn per_transport(&self) -> bool {
        true
    }

    /// Where its charts and its summary figures stand among the other
    /// scenarios', ascending (its sections follow the registry's order).
    fn place(&self) -> u8 {
        u8::MAX
    }

    /// The README's header says this when its repeats differ from the run's
    /// (`2 for udp`).
    fn repeat_note(&self, settings: &Settings) -> Option<String> {
        let _ = settings;
        None
    }

    /// Its section over `transport` (`None`: its one section, when it is
    /// not [`Scenario::per_transport`]); nothing if it has no cells there.
    fn section(&self, r: &Report<'_>, transport: Option<Transport>, doc: &mut Doc);

    /// Draws its charts over `transport` (as for [`Scenario::section`])
    /// into `dir`.
    fn charts(&self, r: &Report<'_>, transport: Option<Transport>, dir: &Path) -> Result<Vec<Chart>, String> {
        let _ = (r, transport, dir);
        Ok(Vec::new())
    }

    /// Its columns of the summary by model and its claims of "which model
    /// for what".
    fn summary<'r>(&self, r: &'r Report<'r>) -> Summary<'r> {
        let _ = r;
        Summary::default()
    }
}

/// Which cells of a scenario run their server under the run's CPU quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// None: every cell runs unthrottled.
    None,
    /// Every cell.
    Every,
    /// The closed-loop cells (no offered rate), whose rate is the figure;
    /// an open-loop cell's rate is imposed.
    ClosedLoop,
}

impl Throttled {
    /// Whether the server of a cell of `load` runs under the quota.
    pub fn applies(self, load: &LoadKey) -> bool {
        match self {
            Throttled::None => false,
            Throttled::Every => true,
            Throttled::ClosedLoop => load.rate.is_none(),
        }
    }

    /// The scenario `name` as a list of the throttled ones says it.
    pub fn words(self, name: &str) -> String {
        match self {
            Throttled::ClosedLoop => format!("{name} (its closed loop)"),
            _ => name.to_owned(),
        }
    }
}

/// The measured window of a scenario's cells.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    /// The run's `--duration` after its `--warmup`.
    Full,
    /// At most `at_most` (window, warm-up), shorter if the run's are. The
    /// README calls the cells `cells` ("latency-ladder"; scenarios sharing
    /// a cap are named together: "latency-ladder and udp cells"), or
    /// `beside`, if given, where they are named beside the others.
    Capped { at_most: (Duration, Duration), cells: &'static str, beside: Option<&'static str> },
    /// No load generator window: the scenario measures on its own.
    Own,
}

/// How a cell runs.
#[derive(Debug)]
pub enum Drive {
    /// The load generator, with these options.
    Load(Opts),
    /// Idle connections held, the server's memory read
    /// ([`crate::capacity::run`]).
    Idle,
}

/// The figure a cell is read for.
#[derive(Debug, Clone, Copy)]
pub struct Headline {
    /// Its name in the spread flag's words: "msg/s".
    pub name: &'static str,
    /// The figure of the tables a flag on it is about.
    pub figure: Figure,
    /// Its value in a cell.
    pub value: fn(&Cell) -> Option<f64>,
    /// Its value printed: "12,345 msg/s".
    pub show: fn(f64) -> String,
}

impl Headline {
    /// Messages per second: the closed loop's figure.
    pub const RATE: Headline = Headline {
        name: "msg/s",
        figure: Figure::Rate,
        value: |c| c.loadgen.as_ref().map(|r| r.throughput.requests_per_sec),
        show: |v| format!("{} msg/s", fmt_count(v)),
    };

    /// The CO-corrected p99: an open-loop step's figure (its rate is imposed).
    pub const P99: Headline = Headline {
        name: "p99",
        figure: Figure::Latency,
        value: |c| c.loadgen.as_ref().map(|r| r.latency_us.p99 as f64),
        show: |v| format!("p99 {}", fmt_us(v)),
    };

    /// Server CPU per message: a pinned-rate cell's figure (its rate is
    /// imposed, and its latency is not what it is read for).
    pub const SERVER_CPU: Headline = Headline {
        name: "server CPU µs per message",
        figure: Figure::Cpu,
        value: |c| c.server_cpu_us_per_msg,
        show: |v| format!("{v:.1} µs of server CPU per message"),
    };
}

/// A chart drawn: its title in the README and its file.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub file: String,
}

/// A scenario's part of the README's opening: its columns of the summary
/// table and its claims.
#[derive(Debug, Default)]
pub struct Summary<'r> {
    pub columns: Vec<Column<'r>>,
    pub claims: Vec<Claim>,
}

/// A column's figure for a model, its marks recorded in the table's notes
/// (`None`: no cells).
pub type FigureOf<'r> = Box<dyn Fn(&Model, &mut Notes) -> Option<String> + 'r>;

/// A column of the summary by model (TCP).
pub struct Column<'r> {
    pub heading: &'static str,
    /// What the summary's introduction says of it (`None`: said with the
    /// column before, from the same cells).
    pub intro: Option<String>,
    /// It is what this machine measures of the server alone: the
    /// introduction says the summary is led by it.
    pub leads: bool,
    pub figure: FigureOf<'r>,
}

impl fmt::Debug for Column<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Column { heading, intro, leads, figure: _ } = self;
        f.debug_struct("Column").field("heading", heading).field("intro", intro).field("leads", leads).finish()
    }
}

/// One line of "which model for what".
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
    /// The table the figures come from.
    pub table: TableId,
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

/// `entries` sorted best first.
pub fn ranked(mut entries: Vec<Entry>, lower_is_better: bool) -> Vec<Entry> {
    entries.sort_by(|a, b| {
        let order = a.stat.median.total_cmp(&b.stat.median);
        if lower_is_better { order } else { order.reverse() }
    });
    entries
}

/// What a scenario renders from: the run, its ok cells by load, and what
/// the marks need of the scenarios.
#[derive(Debug)]
pub struct Report<'a> {
    pub results: &'a Results,
    /// The ok cells, by load.
    pub groups: Groups<'a>,
    /// The run's models, in its order.
    pub models: Vec<Model>,
    /// The transports of the per-transport scenarios' cells: a section
    /// (and a chart) each.
    pub transports: BTreeSet<Transport>,
    pub lookup: Lookup,
}

impl<'a> Report<'a> {
    /// The CPU quota the throttled cells of `scenario` ran under: `None`
    /// when the run had none (`--server-quota none`), could not apply it,
    /// or did not ask it for that scenario.
    pub fn quota_of(&self, scenario: &ScenarioId) -> Option<f64> {
        let q = self.results.settings.server_quota.as_ref()?;
        if q.asked_for(scenario.name()) && q.applied() { q.cpus } else { None }
    }

    /// The groups of `scenario` over `transport`, in load order.
    pub fn groups_of<'s>(
        &'s self,
        scenario: &ScenarioId,
        transport: Transport,
    ) -> impl Iterator<Item = (&'a LoadKey, &'s Vec<&'a Cell>)> + 's {
        let scenario = scenario.clone();
        let of = move |k: &LoadKey| k.scenario == scenario && k.transport == transport;
        self.groups.iter().filter(move |(k, _)| of(k)).map(|(k, cells)| (*k, cells))
    }

    /// The ok cells of `scenario`, in the order they ran.
    pub fn cells_of(&self, scenario: &ScenarioId) -> Vec<&'a Cell> {
        self.results.cells.iter().filter(|c| c.ok && c.spec.load.scenario == *scenario).collect()
    }

    /// A table of `columns` (see [`Table::new`]).
    pub fn table<S: AsRef<str>>(&self, columns: impl IntoIterator<Item = S>) -> Table {
        Table::new(&self.lookup, columns)
    }

    /// Whether a flag of `cells` puts `shown` in doubt.
    pub fn doubtful(&self, cells: &[&Cell], shown: Figure) -> bool {
        self.lookup.doubtful(cells, shown)
    }

    /// `-tcp` when the run has several transports, for a file name.
    pub fn suffix(&self, transport: Transport) -> String {
        if self.transports.len() > 1 { format!("-{transport}") } else { String::new() }
    }

    /// `, TCP loopback` when the run has several transports, for a title.
    pub fn over(&self, transport: Transport) -> String {
        if self.transports.len() > 1 {
            format!(", {}", crate::render::format::transport_words(transport))
        } else {
            String::new()
        }
    }

    /// The transport the claims speak of: TCP when the run has it.
    pub fn main_transport(&self) -> Option<Transport> {
        if self.transports.contains(&Transport::Tcp) { Some(Transport::Tcp) } else { self.transports.first().copied() }
    }

    /// One entry per model of `cells`, in the run's model order, flagged
    /// by the kinds that concern `shown`; of a model's cells, those of the
    /// load claims compare models on ([`LoadKey::at_defaults`]).
    pub fn entries(&self, cells: &[&Cell], figure: impl Fn(&Cell) -> Option<f64>, shown: &[Figure]) -> Vec<Entry> {
        let mut out = Vec::new();
        for model in &self.models {
            let mine = |c: &&Cell| c.spec.load.model == *model && c.spec.load.at_defaults();
            let own: Vec<&Cell> = cells.iter().copied().filter(mine).collect();
            let Some(stat) = Stat::over(&own, &figure) else { continue };
            let kinds = self.lookup.kinds_on(&own, shown);
            let count = |k: FlagKind| (k, crate::render::marks::repeats(&own, k));
            let other_flags =
                crate::render::marks::kinds(&own).into_iter().filter(|k| !kinds.contains(k)).map(count).collect();
            let flags = kinds.into_iter().map(count).collect();
            out.push(Entry { model: model.name().to_owned(), stat, flags, other_flags, repeats: own.len() });
        }
        out
    }
}

/// A cell in a few words: `throughput tokio tcp c=100 s=64B`, with the
/// server's CPUs or the offered rate when the load has them.
pub fn label(load: &LoadKey) -> String {
    let (scenario, transport, c, s) = (&load.scenario, load.transport, load.connections, load.size);
    match (load.server_cpus, load.offered()) {
        (Some(cpus), _) => format!("{scenario} {} {transport} {cpus} CPU(s) c={c} s={s}B", load.model),
        (None, Some(rate)) => {
            format!("{scenario} {} {transport} {} msg/s c={c} s={s}B", load.variant(), fmt_count(rate))
        }
        (None, None) => format!("{scenario} {} {transport} c={c} s={s}B", load.variant()),
    }
}

/// A cell for a reader: `throughput tokio tcp, 1,000 connections, 64 B`,
/// `latency thread tcp, 100 connections, 64 B, 7,082 msg/s offered`, with
/// the server's CPUs when the load has them.
pub fn describe(load: &LoadKey) -> String {
    let head = format!("{} {} {}", load.scenario, load.model, load.transport);
    let connections = fmt_count(f64::from(load.connections));
    let mut text = match load.server_cpus {
        Some(cpus) => format!("{head}, {cpus} server CPU(s), {connections} connections, {} B", load.size),
        None => format!("{head}, {connections} connections, {} B", load.size),
    };
    if let Some(rate) = load.offered() {
        text.push_str(&format!(", {} msg/s offered", fmt_count(rate)));
    }
    text
}

/// The keys of one load for every model of `shape`: `keys` gives each
/// model's (none, one, or several).
pub fn every_model(shape: &Shape, keys: impl Fn(&Model) -> Vec<LoadKey>) -> Vec<LoadKey> {
    shape.models.iter().flat_map(keys).collect()
}

/// The transports the run's per-transport scenarios ran over.
pub fn transports_of(groups: &Groups<'_>, per_transport: impl Fn(&ScenarioId) -> bool) -> BTreeSet<Transport> {
    groups.keys().filter(|k| per_transport(&k.scenario)).map(|k| k.transport).collect()
}
