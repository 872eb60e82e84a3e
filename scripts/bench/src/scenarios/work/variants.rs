//! What runs at a work level: a model's `--blocking` variants, and how
//! long a cell measures.

use super::*;

/// The `--blocking` variants of `model` at `level`: its default, and
/// `inline` at a `block:` level if it takes `--blocking`.
pub fn variants(model: &Model, level: Level) -> Vec<Option<Name>> {
    let mut out = vec![None];
    if model.info().blocking_choice && level.kind == Kind::Block {
        out.push(Some(Name(Cow::Borrowed(INLINE))));
    }
    out
}

/// The share of `window` a cell at `level` measures: enough for one thread
/// making one call at a time to count [`MIN_MESSAGES`] over [`WINDOW`],
/// between [`SHORTEST_SHARE`] and all of it.
pub fn stretch(level: Level) -> f64 {
    let needed = MIN_MESSAGES * level.duration.as_secs_f64() / WINDOW.0.as_secs_f64();
    needed.clamp(SHORTEST_SHARE, 1.0)
}
