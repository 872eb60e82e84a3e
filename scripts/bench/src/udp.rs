//! The `udp` scenario: every model that serves datagrams, over UDP loopback.
//!
//! UDP has its own contract (no connection, a datagram may be lost), so it
//! has its own scenario rather than a column of the stream ones. Each
//! `--connections` entry of loadgen is a *flow*: its own socket, its own
//! source port. Two parts, every datagram-capable model, and each model
//! that takes `--batch` a second time with [`BATCH`] (`recvmmsg`/`sendmmsg`),
//! so the tables show what batching buys:
//!
//! 1. **Closed loop** at [`FLOWS`] flows × [`SIZES`] bytes (1,400 B fits one
//!    Ethernet frame): datagrams per second, latency of the delivered ones,
//!    loss, server CPU per datagram, the kernel's drop counters.
//! 2. **Sustained rate**: open loop at [`STEP_FLOWS`] flows, 64 B, stepping
//!    up the offered rates ([`RATES`]) like the latency ladder. A variant
//!    climbs while it achieves ≥ 99 % of the rate with loss ≤
//!    [`MAX_LOSS_PERCENT`] % and p99 ≤ the SLO (`--slo-p99`, 1 ms); the first
//!    step it fails ends its climb in that repeat, and every step that ran is
//!    recorded, so loss against offered rate can be drawn.
//!
//! A datagram with no echo within [`TIMEOUT`] is lost (on loopback an echo
//! takes tens of µs; 100 ms is far above any p99 the SLO allows, and short
//! enough that a lost datagram frees its flow's slot within the 1 s window).
//!
//! ## Budget (the default matrix on the 2-CPU reference machine)
//!
//! Every cell measures 1 s after 0.25 s ([`crate::ladder::STEP_WINDOW`]),
//! ≈ 1.4 s with server start and stop. 6 models serve datagrams, 2 of them
//! also with `--batch`: 8 variants. Closed loop: 8 × 4 loads × 2 repeats =
//! 64 cells ≈ 1.5 min. Steps: at most 8 × 7 × 2 = 112 cells ≈ 2.6 min if
//! every variant sustained every rate; the top rates are above what one
//! load-generator CPU reaches, so ≈ 5 steps each, ≈ 1.9 min. About 3.5 min
//! in all, the 4 min the latency ladder's budget set aside for it.

use std::time::Duration;

use crate::models::Model;

/// Flows of the closed-loop part.
pub const FLOWS: [u32; 2] = [1, 100];
/// Datagram sizes of the closed-loop part: small, and one Ethernet frame.
pub const SIZES: [u32; 2] = [64, 1400];
/// Offered rates of the sustained-rate part, datagrams/s.
pub const RATES: [f64; 7] = [10_000.0, 25_000.0, 50_000.0, 75_000.0, 100_000.0, 150_000.0, 200_000.0];
/// `--quick`'s rates.
pub const QUICK_RATES: [f64; 3] = [25_000.0, 75_000.0, 150_000.0];
/// Flows of the sustained-rate part.
pub const STEP_FLOWS: u32 = 100;
/// `--batch` of the batching variants: datagrams per `recvmmsg`/`sendmmsg`.
pub const BATCH: u32 = 32;
/// The most loss a step may show and still count as sustained, %.
pub const MAX_LOSS_PERCENT: f64 = 0.1;
/// A datagram with no echo after this long is lost.
pub const TIMEOUT: Duration = Duration::from_millis(100);
/// Repeats of the udp scenario in the default matrix.
pub const REPEAT: u32 = 2;

/// The variants of `model` the udp scenario runs: none for a stream-only
/// model; one per datagram model, a second with `--batch` where it takes it.
pub fn variants(model: &Model) -> Vec<Option<u32>> {
    let info = model.info();
    match (&info.datagrams, info.datagram_batch) {
        (None, _) => Vec::new(),
        (Some(_), false) => vec![None],
        (Some(_), true) => vec![None, Some(BATCH)],
    }
}

/// `iterative` or `iterative --batch 32`: a variant's name in tables.
pub fn variant_name(model: &str, batch: Option<u32>) -> String {
    match batch {
        None => model.to_owned(),
        Some(n) => format!("{model} --batch {n}"),
    }
}

/// A kernel default from /proc/sys/net/core (`rmem_default`, …).
pub fn core_default(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/net/core/{name}")).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use echo_common::ModelInfo;

    use super::*;

    fn model(datagrams: bool, batch: bool) -> Model {
        Model::new(ModelInfo {
            name: "m".into(),
            summary: "".into(),
            default_max_connections: 1,
            child_processes: false,
            serves_at_once: None,
            baseline: false,
            reuse_port: false,
            colour: "#000000".into(),
            datagrams: datagrams.then(|| "how".into()),
            datagram_batch: batch,
        })
    }

    #[test]
    fn a_variant_per_datagram_design_and_one_more_with_batch() {
        assert!(variants(&model(false, false)).is_empty());
        assert_eq!(variants(&model(true, false)), [None]);
        assert_eq!(variants(&model(true, true)), [None, Some(BATCH)]);
        assert_eq!(variant_name("reactors", Some(32)), "reactors --batch 32");
    }
}
