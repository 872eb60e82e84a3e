//! The options of one load run. The same struct is the CLI (clap) and the
//! library's input, so the benchmark runner builds it directly.

use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

pub use crate::pacer::{Arrivals, PacerWait};

/// One load run: where, how many connections, what load, for how long.
#[derive(Debug, Clone, Args, Serialize, Deserialize, PartialEq)]
pub struct Opts {
    // The server's address (`help` rather than a doc comment: rustdoc would
    // read the brackets as a link).
    #[arg(
        long,
        default_value = "127.0.0.1:7000",
        help = "Server address: IP:PORT, [IPv6]:PORT, unix:PATH or udp:IP:PORT"
    )]
    pub addr: String,

    /// Concurrent connections (UDP: flows, a socket each).
    #[arg(long, short = 'c', default_value_t = 50, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connections: u32,

    /// Bytes per message.
    #[arg(long, short = 's', default_value_t = 64, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=(64 << 20)))]
    pub size: u32,

    /// Measured time, after the warm-up (e.g. 10s, 500ms, 1m).
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_positive_duration)]
    #[serde(with = "secs", rename = "duration_secs")]
    pub duration: Duration,

    /// Time before the measured window; excluded from every figure.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    #[serde(with = "secs", rename = "warmup_secs")]
    pub warmup: Duration,

    /// Event-loop threads [default: the CPUs this process may run on].
    #[arg(long, short = 't', allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Option<u32>,

    /// Give up on a connection attempt after this long.
    #[arg(long, default_value = "3s", value_parser = parse_positive_duration)]
    #[serde(with = "secs", rename = "connect_timeout_secs")]
    pub connect_timeout: Duration,

    /// A message whose echo is not complete after this long is a timeout.
    #[arg(long, default_value = "5s", value_parser = parse_positive_duration)]
    #[serde(with = "secs", rename = "timeout_secs")]
    pub timeout: Duration,

    /// Closed loop: messages in flight per connection.
    #[arg(long, short = 'p', default_value_t = 1, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub pipeline: u32,

    /// Open loop: messages per second in total, on a fixed schedule
    /// (latency then measured from the intended send time).
    #[arg(long, short = 'r', allow_negative_numbers = true, value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Open loop: how the intended send times are spaced: evenly, or a
    /// Poisson process (exponential gaps of the same mean, from `--seed`).
    #[arg(long, value_enum, default_value_t = Arrivals::Uniform)]
    #[serde(default)]
    pub arrivals: Arrivals,

    /// Open loop: how a thread waits for its next send: `sleep` on a
    /// timer until shortly before it (idle between sends), or `spin`
    /// (polls sockets and clock without blocking: a busy CPU, sends within
    /// a few µs — for a load generator on CPUs of its own).
    #[arg(long, value_enum, default_value_t = PacerWait::Sleep)]
    #[serde(default)]
    pub pacer: PacerWait,

    /// Seed of the random gaps of `--arrivals poisson` (recorded in the
    /// JSON, so a run can be repeated exactly).
    #[arg(long, default_value_t = 1)]
    #[serde(default = "default_seed")]
    pub seed: u64,

    /// UDP open loop: datagrams in flight per flow at most [default: 1024].
    /// A datagram leaves on its schedule whether or not the earlier ones
    /// were answered; a lost one is counted at its timeout without holding
    /// the flow back. Only a full window holds a datagram back.
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    #[serde(default)]
    pub window: Option<u32>,

    /// Churn: a new connection after every N messages (1: one per message).
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub reconnect_every: Option<u64>,

    /// Churn: how a connection ends. `orderly`: half-close, wait for the
    /// server's close, close (the client sends the first FIN, so the
    /// TIME_WAIT socket is the client's); `reset`: close at once with
    /// SO_LINGER 0 after the last echo (an RST: no TIME_WAIT on either side,
    /// and the server reads a reset instead of an end of stream).
    #[arg(long, value_enum, default_value_t = Close::Orderly)]
    #[serde(default)]
    pub close: Close,

    /// Part of a load split between agents (`loadgen agent`): which part
    /// this process runs. Never on the command line: a coordinator sets it
    /// ([`Opts::split`]).
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<Segment>,

    /// Show a progress bar on stderr (only when stderr is a terminal).
    #[arg(skip = true)]
    #[serde(skip, default = "yes")]
    pub progress: bool,
}

fn yes() -> bool {
    true
}

/// How a churning client ends a connection (`--close`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Close {
    /// Half-close, wait for the server's end of stream, close.
    #[default]
    Orderly,
    /// SO_LINGER 0 and close: an RST.
    Reset,
}

fn default_seed() -> u64 {
    1
}

/// UDP open loop: datagrams in flight per flow when `--window` is not given.
/// At the bench's highest rate (200,000/s over 100 flows, 2,000/s a flow)
/// with a 100 ms timeout, even a server that answers nothing fills 200 of them.
pub const DEFAULT_WINDOW: u32 = 1024;

impl Default for Opts {
    fn default() -> Opts {
        Opts {
            addr: "127.0.0.1:7000".into(),
            connections: 50,
            size: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            threads: None,
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(5),
            pipeline: 1,
            rate: None,
            arrivals: Arrivals::Uniform,
            pacer: PacerWait::Sleep,
            seed: 1,
            window: None,
            reconnect_every: None,
            close: Close::Orderly,
            segment: None,
            progress: true,
        }
    }
}

/// See [`Opts::numbering`].
#[derive(Debug, Clone, PartialEq)]
pub struct Numbering {
    /// The numbers of the connections this process runs, in order.
    pub ids: Vec<u32>,
    /// The connections the schedules are drawn for.
    pub connections: usize,
    /// Open loop: the rate the schedules are drawn for, msg/s.
    pub rate: Option<f64>,
}

/// One part of a load split between `count` loadgen processes, as a single
/// generator would have run it: the whole load's connections are numbered
/// `0..connections`, and part `index` runs those whose number `g` has
/// `g mod count == index`. Each connection keeps its number, so its
/// messages, its open-loop schedule (first send at `g / rate`, then every
/// `connections / rate`) and its Poisson seed are the single generator's:
/// the union of the parts' arrivals is that generator's arrivals, exactly.
/// For part `index` that is a rate of `rate / count` (when `count` divides
/// the connections) with its schedule shifted by `index / count` of its
/// own interval between sends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// This part, from 0.
    pub index: u32,
    /// Parts in all.
    pub count: u32,
    /// The whole load's connections.
    pub connections: u32,
    /// Open loop: the whole load's rate, msg/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
}

impl Segment {
    /// How many of `connections` numbered connections part `index` of
    /// `count` runs: those with `g mod count == index`.
    pub fn share(connections: u32, index: u32, count: u32) -> u32 {
        connections / count + u32::from(index < connections % count)
    }

    /// The numbers (in the whole load) of this part's connections, in order.
    pub fn ids(&self) -> impl Iterator<Item = u32> + use<> {
        (self.index..self.connections).step_by(self.count as usize)
    }
}

impl Opts {
    /// Checks what clap checks for the command line, for callers that
    /// build `Opts` in code: one line saying what is wrong.
    pub fn check(&self) -> Result<(), String> {
        let positive =
            [("--duration", self.duration), ("--timeout", self.timeout), ("--connect-timeout", self.connect_timeout)];
        if let Some((flag, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(format!("{flag} must be longer than 0"));
        }
        if self.connections == 0 || self.size == 0 || self.pipeline == 0 {
            return Err("--connections, --size and --pipeline must be at least 1".into());
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err("--rate must be a number of messages per second > 0".into());
            }
            check_interval(rate, self.connections)?;
        }
        if self.window == Some(0) {
            return Err("--window must be at least 1".into());
        }
        if self.reconnect_every == Some(0) {
            return Err("--reconnect-every must be at least 1".into());
        }
        if let Some(s) = &self.segment {
            if s.count == 0 || s.index >= s.count || Segment::share(s.connections, s.index, s.count) != self.connections
            {
                return Err(format!(
                    "part {} of {} of a load of {} connection(s) cannot run {} connection(s)",
                    s.index, s.count, s.connections, self.connections
                ));
            }
            if s.rate.is_some() != self.rate.is_some() {
                return Err("a part of an open-loop load is open loop, and of a closed one closed".into());
            }
        }
        Ok(())
    }

    /// Splits this load between `count` processes (agents), as
    /// [`Segment`] says: closed loop, the connections are divided; open
    /// loop, each part also runs its connections' share of the rate, on
    /// the single generator's schedule. Every part has at least one
    /// connection.
    pub fn split(&self, count: u32) -> Result<Vec<Opts>, String> {
        if count == 0 || count > self.connections {
            return Err(format!("cannot split {} connection(s) between {count} agent(s)", self.connections));
        }
        if self.segment.is_some() {
            return Err("a part of a split load cannot be split again".into());
        }
        let parts = (0..count).map(|index| {
            let connections = Segment::share(self.connections, index, count);
            Opts {
                connections,
                rate: self.rate.map(|rate| rate * f64::from(connections) / f64::from(self.connections)),
                segment: Some(Segment { index, count, connections: self.connections, rate: self.rate }),
                ..self.clone()
            }
        });
        Ok(parts.collect())
    }

    /// The command-line arguments that give these options (every one,
    /// defaults included): what a coordinator passes to a `loadgen` process.
    /// `loadgen` parses them back to `self` (tested).
    pub fn to_args(&self) -> Vec<String> {
        let secs = |d: Duration| format!("{}", d.as_secs_f64());
        let mut args = vec![
            format!("--addr={}", self.addr),
            format!("--connections={}", self.connections),
            format!("--size={}", self.size),
            format!("--duration={}", secs(self.duration)),
            format!("--warmup={}", secs(self.warmup)),
            format!("--connect-timeout={}", secs(self.connect_timeout)),
            format!("--timeout={}", secs(self.timeout)),
            format!("--pipeline={}", self.pipeline),
            format!("--seed={}", self.seed),
        ];
        if let Some(threads) = self.threads {
            args.push(format!("--threads={threads}"));
        }
        if let Some(rate) = self.rate {
            // `{:?}` prints an f64 so that it parses back to the same value.
            args.push(format!("--rate={rate:?}"));
        }
        if self.arrivals != Arrivals::Uniform {
            args.push("--arrivals=poisson".into());
        }
        if self.pacer != PacerWait::Sleep {
            args.push("--pacer=spin".into());
        }
        if let Some(window) = self.window {
            args.push(format!("--window={window}"));
        }
        if let Some(n) = self.reconnect_every {
            args.push(format!("--reconnect-every={n}"));
        }
        if self.close != Close::Orderly {
            args.push("--close=reset".into());
        }
        args
    }

    /// How the engine numbers this run's connections and paces them: the
    /// numbers of its connections, and the connections and rate (open loop)
    /// its schedules are drawn for. Its own for a whole load; the whole
    /// load's for a part of one ([`Segment`]), so that the parts send when
    /// the whole would have.
    pub fn numbering(&self) -> Numbering {
        match &self.segment {
            Some(s) => Numbering { ids: s.ids().collect(), connections: s.connections as usize, rate: s.rate },
            None => Numbering {
                ids: (0..self.connections).collect(),
                connections: self.connections as usize,
                rate: self.rate,
            },
        }
    }

    /// Closed or open loop, as a word for reports.
    pub fn mode(&self) -> &'static str {
        match (self.rate.is_some(), self.reconnect_every.is_some()) {
            (false, false) => "closed",
            (true, false) => "open",
            (false, true) => "closed-churn",
            (true, true) => "open-churn",
        }
    }
}

/// The shortest interval between two messages of one connection that the
/// pacer represents: a nanosecond, the resolution of its clock.
pub const MIN_INTERVAL: Duration = Duration::from_nanos(1);
/// The longest: a day. A longer one sends one message per connection in any
/// run one would wait for, and its arithmetic (`Duration`, `Instant`) would
/// overflow long before a rate like `1e-300` is reached.
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

/// Open loop: `rate` messages per second over `connections` connections
/// gives each connection one message every `connections / rate` seconds;
/// refuses an interval the pacer cannot represent.
pub fn check_interval(rate: f64, connections: u32) -> Result<Duration, String> {
    let secs = f64::from(connections) / rate;
    match Duration::try_from_secs_f64(secs) {
        Ok(interval) if (MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) => Ok(interval),
        _ => Err(format!(
            "--rate {rate} over {connections} connection(s) is one message every {secs:e} s per connection; \
             the pacer takes intervals from 1 ns to 1 day"
        )),
    }
}

/// `10s`, `500ms`, `1m30s`, or a plain number of seconds (`2.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration {text:?}: {e}"));
    }
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// A duration that must not be zero: a zero window measures nothing, a zero
/// timeout fails every message.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!("invalid duration {text:?}: must be longer than 0"));
    }
    Ok(duration)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("invalid rate {text:?}: expected messages per second > 0")),
    }
}

/// Durations as fractional seconds in JSON.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        opts: Opts,
    }

    #[test]
    fn the_arguments_of_options_parse_back_to_them() {
        let every = Opts {
            addr: "udp:[::1]:7000".into(),
            connections: 123,
            size: 1400,
            duration: Duration::from_millis(2500),
            warmup: Duration::from_nanos(250_000_001),
            threads: Some(3),
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_millis(100),
            pipeline: 4,
            rate: Some(1.0 / 3.0 * 1e5),
            arrivals: Arrivals::Poisson,
            pacer: PacerWait::Spin,
            seed: 99,
            window: Some(64),
            reconnect_every: Some(1),
            close: Close::Reset,
            segment: None,
            progress: true,
        };
        for opts in [Opts::default(), every] {
            let parsed = Cli::try_parse_from(std::iter::once("loadgen".to_owned()).chain(opts.to_args())).unwrap();
            assert_eq!(parsed.opts, opts);
        }
    }
}
