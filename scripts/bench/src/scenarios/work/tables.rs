//! The work section of the README: the closed-loop table, the textbook
//! checked, which model for which work, the ladder, and the chart.

use super::*;

/// A variant: a model and its `--blocking`.
pub(super) type Variant = (Model, Option<Name>);

pub(super) fn variant_name((model, blocking): &Variant) -> String {
    LoadKey { blocking: blocking.clone(), ..LoadKey::new(Work.id(), model.clone(), Transport::Tcp, 0, 0) }.variant()
}

/// The variant's line through `points`: its model's colour and marker,
/// dashed for `--blocking inline`.
pub(super) fn variant_line(v: &Variant, points: Vec<Point>) -> Line {
    let line = series::line(&v.0, points);
    Line { name: variant_name(v), dashed: v.1.is_some(), ..line }
}

/// The closed-loop groups of the run: each (level, variant) with its cells.
pub(super) struct Closed<'a> {
    pub(super) levels: Vec<Level>,
    pub(super) variants: Vec<Variant>,
    pub(super) groups: Vec<(Level, Variant, Vec<&'a Cell>)>,
}

impl<'a> Closed<'a> {
    pub(super) fn of(r: &Report<'a>, settings: &WorkSettings) -> Closed<'a> {
        let levels: Vec<Level> = settings.levels.iter().filter_map(|l| Level::parse(l).ok()).collect();
        let mut groups = Vec::new();
        let mut variants: Vec<Variant> = Vec::new();
        let work = r.groups.iter().filter(|(k, _)| k.scenario == Work.id() && k.rate.is_none());
        for (k, cells) in work {
            let Ok(level) = Level::parse(&k.work.0) else { continue };
            let v = (k.model.clone(), k.blocking.clone());
            if !variants.contains(&v) {
                variants.push(v.clone());
            }
            groups.push((level, v, cells.clone()));
        }
        variants.sort();
        Closed { levels, variants, groups }
    }

    pub(super) fn cells(&self, level: Level, v: &Variant) -> Option<&[&'a Cell]> {
        self.groups.iter().find(|(l, w, _)| *l == level && w == v).map(|(_, _, c)| c.as_slice())
    }

    pub(super) fn scores(&self) -> Vec<Scores> {
        let median = |cells: Option<&[&Cell]>, f: &dyn Fn(&Cell) -> Option<f64>| {
            cells.and_then(|c| Stat::over(c, f)).map(|s| s.median)
        };
        self.variants
            .iter()
            .map(|v| Scores {
                variant: variant_name(v),
                rate: self.levels.iter().map(|&l| median(self.cells(l, v), &rate)).collect(),
                cpu: self.levels.iter().map(|&l| median(self.cells(l, v), &|c| c.server_cpu_us_per_msg)).collect(),
            })
            .collect()
    }
}

pub(super) fn rate(cell: &Cell) -> Option<f64> {
    cell.loadgen.as_ref().map(|r| r.throughput.requests_per_sec)
}

/// The README section (nothing when the run has no work cells).
pub(super) fn section(r: &Report<'_>, doc: &mut Doc) {
    let Some(settings) = &r.results.settings.work else { return };
    let closed = Closed::of(r, settings);
    let climbs = climbs_of(r.results, &Work.id(), settings.ladder_slo_p99_us);
    if closed.groups.is_empty() && climbs.is_empty() {
        return;
    }
    let cpus = settings.server_cpus;
    doc.heading(2, "Requests that compute, requests that block (`--work`)");
    let windows: Vec<String> =
        settings.levels.iter().zip(&settings.window_secs).map(|(l, w)| format!("{l} {w} s")).collect();
    let _ = writeln!(
        doc,
        "Each message costs the server some work before its echo: `cpu:` a compute loop that long, `block:` a \
         blocking call (`nanosleep`) that long. {connections} connections, {size} B, closed loop, TCP, the server \
         on {cpus} CPU(s); every model with its defaults, and a model that takes `--blocking` also with \
         `--blocking inline` at the `block:` levels (the call on its worker thread instead of its blocking pool). \
         Each cell measures, after a {warmup} s warm-up: {windows} (a long level gets a longer window, so that a \
         model making one call at a time still counts ≥ {MIN_MESSAGES} messages). Figures are medians over \
         {repeats}, min–max in parentheses; *threads* is the server's peak.\n",
        connections = settings.connections,
        size = settings.size,
        windows = windows.join(", "),
        warmup = settings.warmup_secs,
        repeats = repeats_words(settings.repeat),
    );
    if !closed.groups.is_empty() {
        table(r, settings, &closed, doc);
        textbook(r, settings, &closed, doc);
        which(&closed, doc);
    }
    ladder(r, settings, &climbs, doc);
}

/// The closed-loop table: a row per level and variant.
pub(super) fn table(r: &Report<'_>, settings: &WorkSettings, closed: &Closed<'_>, doc: &mut Doc) {
    let id = TableId { scenario: Work.id(), transport: Transport::Tcp, part: None };
    doc.table_heading(3, "Closed loop by work level", id);
    let mut table = r.table([
        "work",
        "variant",
        "msg/s:",
        "textbook msg/s:",
        "p50:",
        "p99:",
        "server CPU µs/msg:",
        "threads:",
        "starved:",
    ]);
    for &level in &closed.levels {
        for v in &closed.variants {
            let Some(cells) = closed.cells(level, v) else { continue };
            let (model, blocking) = v;
            let expected = expectation(
                model.info(),
                blocking.as_ref().map(|b| b.0.as_ref()),
                CONNECTIONS,
                settings.server_cpus,
                level,
            );
            let row = [
                level.to_string(),
                variant_name(v),
                table.mark(throughput(cells), cells, &[Figure::Rate]),
                expected.map_or("–".into(), |e| count(e.rate)),
                latency_of(cells, |l| l.p50),
                table.mark(latency_of(cells, |l| l.p99), cells, &[Figure::Latency]),
                table.mark(server_cpu(cells, 1), cells, &[Figure::Cpu]),
                show(Stat::over(cells, |c| c.server.map(|s| s.threads_peak as f64)), count),
                show(load_stat(cells, |r| r.per_connection.starved as f64), count),
            ];
            table.row(row);
        }
    }
    doc.push_str(&table.finish());
}

/// The textbook checked at each `block:` level: per variant, the calls it
/// runs at once, the msg/s that gives, the msg/s measured, and whether
/// they agree.
pub(super) fn textbook(r: &Report<'_>, settings: &WorkSettings, closed: &Closed<'_>, doc: &mut Doc) {
    let cpus = settings.server_cpus;
    for &level in closed.levels.iter().filter(|l| l.kind == Kind::Block) {
        doc.heading(3, &format!("The textbook, checked: {level}, {} connections", settings.connections));
        let _ = writeln!(
            doc,
            "A call takes {}, so a model answers at most (calls at once) × {} msg/s: thread and pool about \
             min(connections, workers) × that, one event loop about that, tokio with `spawn_blocking` about \
             connections × that within its blocking pool. The calls at once come from each model's declaration \
             (`blocks_at_once`, `echo-server list-models --json`), {} connections and the server's {cpus} CPU(s). \
             *As expected* within {:.0}–{:.0} % of it; *CPU-bound* when the server kept ≥ {:.0} % of its CPUs \
             busy; *client-bound* when the cells carry that flag (a load generator thread busy most of the \
             window).\n",
            fmt_us(level.duration.as_secs_f64() * 1e6),
            count(level.one_thread_rate()),
            settings.connections,
            100.0 * AS_EXPECTED.0,
            100.0 * AS_EXPECTED.1,
            100.0 * CPU_BOUND,
        );
        let mut table = r.table(["variant", "calls at once:", "how", "expected msg/s:", "measured msg/s:", "verdict"]);
        for v in &closed.variants {
            let Some(cells) = closed.cells(level, v) else { continue };
            let (model, blocking) = v;
            let name = variant_name(v);
            let blocking = blocking.as_ref().map(|b| b.0.as_ref());
            let Some(e) = expectation(model.info(), blocking, settings.connections, cpus, level) else {
                table.row([
                    name,
                    "?".into(),
                    "its declaration does not say".into(),
                    "–".into(),
                    throughput(cells),
                    "–".into(),
                ]);
                continue;
            };
            let measured = Stat::over(cells, rate).map(|s| s.median);
            let busy = Stat::over(cells, |c| c.server.map(|s| s.cpu_utilisation)).map(|s| s.median);
            let client_bound = cells.iter().any(|c| c.flags.iter().any(|f| f.kind == FlagKind::ClientBound));
            let verdict = measured.map_or("no figure".into(), |m| judge(m, e.rate, busy, cpus, client_bound));
            let measured = table.mark(throughput(cells), cells, &[Figure::Rate]);
            table.row([name, count(e.at_once as f64), e.how, count(e.rate), measured, verdict]);
        }
        doc.push_str(&table.finish());
    }
}

/// "Which model for what": for requests that block, for requests that
/// compute, from the medians.
pub(super) fn which(closed: &Closed<'_>, doc: &mut Doc) {
    let scores = closed.scores();
    let at = |kind: Kind| -> Vec<usize> {
        closed.levels.iter().enumerate().filter(|(_, l)| l.kind == kind).map(|(i, _)| i).collect()
    };
    let figures = |variant: &str, at: &[usize]| -> String {
        let s = scores.iter().find(|s| s.variant == variant);
        at.iter()
            .filter_map(|&i| Some(format!("{} msg/s at {}", count(s?.rate[i]?), closed.levels[i])))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let others = |ranked: &[(String, f64)], at: &[usize]| -> String {
        ranked.iter().skip(1).take(2).map(|(v, _)| format!("`{v}` ({})", figures(v, at))).collect::<Vec<_>>().join(", ")
    };
    let mut lines = Vec::new();
    let block = at(Kind::Block);
    let ranked = most_rate(&scores, &block);
    if let Some((best, _)) = ranked.first() {
        let last = ranked
            .last()
            .filter(|_| ranked.len() > 3)
            .map_or(String::new(), |(v, _)| format!("; fewest: `{v}` ({})", figures(v, &block)));
        lines.push(format!(
            "- **For requests that block**: `{best}`: {}, the most over the `block:` levels; then {}{last}.",
            figures(best, &block),
            others(&ranked, &block)
        ));
    }
    let cpu = at(Kind::Cpu);
    if let Some(&heaviest) = cpu.iter().max_by_key(|&&i| closed.levels[i].duration) {
        let ranked = most_rate(&scores, &[heaviest]);
        let frugal = least_cpu(&scores, heaviest);
        if let (Some((best, _)), Some((least, cpu_us))) = (ranked.first(), frugal.first()) {
            lines.push(format!(
                "- **For requests that compute**: `{best}`: {}, the most at the heaviest `cpu:` level; then {}. The \
                 least server CPU per message there: `{least}` ({cpu_us:.1} µs).",
                figures(best, &[heaviest]),
                others(&ranked, &[heaviest])
            ));
        }
    }
    if lines.is_empty() {
        return;
    }
    doc.heading(3, "Which model for what");
    let _ = writeln!(
        doc,
        "From the medians above (a flag in the table may put one in doubt); the `block:` ranking is by the \
         geometric mean over those levels, so that each weighs the same.\n\n{}\n",
        lines.join("\n")
    );
}

/// The latency ladder at the ladder's level: each variant's knee and steps.
pub(super) fn ladder(r: &Report<'_>, settings: &WorkSettings, climbs: &[Climb<'_>], doc: &mut Doc) {
    if climbs.is_empty() {
        return;
    }
    doc.heading(3, &format!("Latency against offered load at {}", settings.ladder_work));
    let _ = writeln!(
        doc,
        "Open loop at {} msg/s offered, {} connections, {} s measured per step, {}. A step is sustained when it \
         achieved ≥ 99 % of the offered rate with a CO-corrected p99 ≤ {} (the run's SLO plus the {} of work \
         every message waits); a variant climbs until its first failed step.\n",
        settings.ladder_rates.iter().map(|r| fmt_count(*r)).collect::<Vec<_>>().join(", "),
        settings.connections,
        settings.ladder_window_secs,
        repeats_words(settings.ladder_repeat),
        fmt_us(settings.ladder_slo_p99_us as f64),
        settings.ladder_work.trim_start_matches("block:"),
    );
    for excluded in &settings.ladder_excluded {
        let _ = writeln!(doc, "- `{}` is left out: it {}.", excluded.model, excluded.reason);
    }
    if !settings.ladder_excluded.is_empty() {
        doc.push('\n');
    }
    let mut variants: Vec<Variant> = climbs.iter().map(|c| (c.load.model.clone(), c.load.blocking.clone())).collect();
    variants.dedup();
    let mut table = r.table(["variant", "knee msg/s:", "offered msg/s:", "achieved msg/s:", "p50:", "p99:", "step"]);
    for v in &variants {
        let mine: Vec<&Climb<'_>> = climbs.iter().filter(|c| c.load.model == v.0 && c.load.blocking == v.1).collect();
        let summary = climb::summary(&mine, settings.ladder_rates.last().copied(), "msg/s");
        for (i, &rate) in settings.ladder_rates.iter().enumerate() {
            let steps: Vec<(&Cell, &climb::Verdict)> = mine
                .iter()
                .flat_map(|c| c.steps.iter().filter(|(s, _)| s.spec.load.offered() == Some(rate)).map(|(s, v)| (*s, v)))
                .collect();
            if steps.is_empty() {
                continue;
            }
            let cells: Vec<&Cell> = steps.iter().map(|(c, _)| *c).collect();
            let verdicts: Vec<String> = steps.iter().map(|(_, v)| v.words()).collect();
            table.row([
                variant_name(v),
                if i == 0 { summary.words.clone() } else { String::new() },
                fmt_count(rate),
                throughput(&cells),
                latency_of(&cells, |l| l.p50),
                show(load_stat(&cells, |r| r.latency_us.p99 as f64), us),
                verdicts.join(" · "),
            ]);
        }
    }
    doc.push_str(&table.finish());
}

/// msg/s (log) against the work levels, a line per variant.
pub(super) fn chart(r: &Report<'_>, dir: &Path) -> Result<Option<Chart>, String> {
    let Some(settings) = &r.results.settings.work else { return Ok(None) };
    let closed = Closed::of(r, settings);
    let mut lines = Vec::new();
    for v in &closed.variants {
        let points: Vec<Point> = closed
            .levels
            .iter()
            .enumerate()
            .filter_map(|(slot, &level)| {
                let cells = closed.cells(level, v)?;
                let s = Stat::over(cells, rate)?;
                let range = (s.n > 1).then_some((s.min, s.max));
                Some(Point { x: slot as f64, y: s.median, range, hollow: r.doubtful(cells, Figure::Rate) })
            })
            .collect();
        if !points.is_empty() {
            lines.push(variant_line(v, points));
        }
    }
    if lines.is_empty() {
        return Ok(None);
    }
    let mut notes = hollow_notes(lines.iter().flat_map(|l| &l.points).any(|p| p.hollow), "point");
    if lines.iter().any(|l| l.dashed) {
        notes.push("dashed: --blocking inline".into());
    }
    let frame = Frame {
        title: format!(
            "Throughput against work per message, {} connections, closed loop (log scale)",
            settings.connections
        ),
        subtitle: format!(
            "{} B, TCP, server on {} CPU(s); {}",
            settings.size,
            settings.server_cpus,
            repeats_words(settings.repeat)
        ),
        x_desc: "work per message (cpu: compute, block: blocking call)".into(),
        y_desc: "messages / s (log)".into(),
        rules: Vec::new(),
        notes,
        ring: None,
    };
    let file = "work.svg".to_owned();
    let names = closed.levels.iter().map(Level::to_string).collect();
    charts::lines(&dir.join(&file), &frame, &lines, XAxis::Categories(names), YAxis::LogCount)?;
    Ok(Some(Chart { title: "Throughput against work per message".into(), file }))
}
