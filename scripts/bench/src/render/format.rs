//! How figures are printed in tables and charts: thousands grouped, units
//! beside the number (with a no-break space in tables), a median with its
//! min–max range and the ⚠ of a wide spread.

use echo_common::Transport;
use loadgen::report::fmt_count;

use crate::stats::Stat;

/// How a section heading names a transport.
pub fn transport_words(transport: Transport) -> &'static str {
    match transport {
        Transport::Tcp => "TCP loopback",
        Transport::Unix => "Unix domain socket",
        Transport::Udp => "UDP loopback",
    }
}

/// `12,345 (11,002–13,001)`, with ⚠ when the spread exceeds 20 %.
pub fn show(stat: Option<Stat>, fmt: impl Fn(f64) -> String) -> String {
    let noisy = stat.is_some_and(|s| s.n > 1 && s.noisy() && fmt(s.min) != fmt(s.max));
    let text = range(stat, fmt);
    if noisy { format!("{text} ⚠") } else { text }
}

/// `12,345` or `12,345 (11,002–13,001)`: a median and its min–max range,
/// without [`show`]'s spread mark (the ladder and udp tables list flags
/// in their own column or legend).
pub fn range(stat: Option<Stat>, fmt: impl Fn(f64) -> String) -> String {
    match stat {
        None => "–".into(),
        Some(s) if s.n == 1 || fmt(s.min) == fmt(s.max) => fmt(s.median),
        Some(s) => format!("{} ({}–{})", fmt(s.median), fmt(s.min), fmt(s.max)),
    }
}

pub fn us(v: f64) -> String {
    loadgen::report::fmt_us(v).replace(' ', "\u{a0}")
}

pub fn count(v: f64) -> String {
    fmt_count(v)
}

/// `1,154.8`: `digits` decimals, thousands separated as [`fmt_count`] does.
pub fn grouped(v: f64, digits: usize) -> String {
    let text = format!("{:.digits$}", v.abs());
    let (whole, fraction) = text.split_once('.').map_or((text.as_str(), None), |(w, f)| (w, Some(f)));
    let mut out = String::new();
    // -0.00 prints as 0.00.
    if v < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
        out.push('-');
    }
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if let Some(fraction) = fraction {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

/// `+1,125.3`, `-3.4`, `+0.0`.
pub fn signed(v: f64, digits: usize) -> String {
    let text = grouped(v, digits);
    if text.starts_with('-') { text } else { format!("+{text}") }
}

pub fn ratio(v: f64) -> String {
    format!("{v:.2}×")
}

pub fn kib(v: f64) -> String {
    if v.abs() >= 1024.0 {
        format!("{}\u{a0}MiB", grouped(v / 1024.0, 1))
    } else {
        format!("{}\u{a0}KiB", grouped(v, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(1154.84, 1), "1,154.8");
        assert_eq!(grouped(999.96, 1), "1,000.0");
        assert_eq!(grouped(12.0, 2), "12.00");
        assert_eq!(grouped(-3.44, 1), "-3.4");
        assert_eq!(grouped(-0.01, 1), "0.0", "no negative zero");
        assert_eq!(grouped(1_234_567.0, 0), "1,234,567");
        assert_eq!(signed(1125.3, 1), "+1,125.3");
        assert_eq!(signed(-3.4, 1), "-3.4");
        assert_eq!(kib(342.6), "342.6\u{a0}KiB");
        assert_eq!(kib(1_440_000.0), "1,406.2\u{a0}MiB");
    }
}
