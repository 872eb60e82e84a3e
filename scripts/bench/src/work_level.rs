//! The work levels of the work scenario ([`crate::scenarios::work`]): what
//! each message costs the server (`cpu:20us`, `block:1ms`), read from
//! `--work-levels`, and the variants each runs. Apart from the scenario, as
//! the run's shape ([`crate::plan::Shape`]) holds them.

use std::fmt;
use std::time::Duration;

use std::borrow::Cow;

use crate::load::Name;

/// The default work levels: short and long compute, short and long blocking.
pub const LEVELS: [&str; 4] = ["cpu:20us", "cpu:200us", "block:1ms", "block:10ms"];
/// The longest work the servers take (their `MAX_WORK`).
pub const MAX_WORK: Duration = Duration::from_secs(1);

/// What a level's work is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A compute loop (`cpu:`).
    Cpu,
    /// A blocking call (`block:`).
    Block,
}

/// One work level: what each message costs the server (`cpu:20us`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Level {
    pub kind: Kind,
    pub duration: Duration,
}

impl Level {
    /// Parses `cpu:DURATION` or `block:DURATION` (a number and `ns`, `us`
    /// or `µs`, `ms`, `s`), above zero and at most [`MAX_WORK`].
    pub fn parse(text: &str) -> Result<Level, String> {
        let expected = || format!("{text:?}: expected cpu:DURATION or block:DURATION, e.g. cpu:20us, block:1ms");
        let (kind, duration) = text.trim().split_once(':').ok_or_else(expected)?;
        let kind = match kind {
            "cpu" => Kind::Cpu,
            "block" => Kind::Block,
            _ => return Err(expected()),
        };
        let duration = parse_duration(duration).ok_or_else(expected)?;
        if duration.is_zero() {
            return Err(format!("{text:?}: the work must take longer than 0"));
        }
        if duration > MAX_WORK {
            return Err(format!("{text:?}: more than the {} s a message's work may take", MAX_WORK.as_secs()));
        }
        Ok(Level { kind, duration })
    }

    /// The level as a load carries it and the server takes it.
    pub fn name(&self) -> Name {
        Name(Cow::Owned(self.to_string()))
    }

    /// Messages per second one thread answers, one call at a time.
    pub fn one_thread_rate(&self) -> f64 {
        1.0 / self.duration.as_secs_f64()
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Cpu => "cpu",
            Kind::Block => "block",
        };
        let ns = self.duration.as_nanos();
        let (value, unit) = [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")]
            .into_iter()
            .find(|(per, _)| ns % per == 0)
            .map_or((ns, "ns"), |(per, unit)| (ns / per, unit));
        write!(f, "{kind}:{value}{unit}")
    }
}

/// `20us`, `1.5ms`: a number and a unit, rounded to the nanosecond.
pub(super) fn parse_duration(text: &str) -> Option<Duration> {
    let units = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)];
    let (number, scale) = units.iter().find_map(|(unit, scale)| Some((text.strip_suffix(unit)?, *scale)))?;
    let value: f64 = number.trim().parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
    Duration::try_from_secs_f64(value * scale).ok().map(|d| Duration::from_nanos(d.as_nanos() as u64))
}

/// `--work-levels`: each parsed, then in table order (compute before
/// blocking, shortest first), each once.
pub fn levels<S: AsRef<str>>(texts: &[S]) -> Result<Vec<Level>, String> {
    let mut levels = texts.iter().map(|t| Level::parse(t.as_ref())).collect::<Result<Vec<_>, _>>()?;
    if levels.is_empty() {
        return Err("no work level given".into());
    }
    levels.sort();
    levels.dedup();
    Ok(levels)
}

/// The default levels.
pub fn default_levels() -> Vec<Level> {
    levels(&LEVELS).unwrap_or_default()
}

/// The ladder's level.
pub fn ladder_level() -> Level {
    Level { kind: Kind::Block, duration: Duration::from_millis(1) }
}
