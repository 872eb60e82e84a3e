//! Repeats: cells grouped by their [`LoadKey`], and one figure summed up
//! over a group as its median and min–max range. The spread flag, the
//! tables and the charts all read repeats through here.

use std::collections::BTreeMap;

use crate::flags::SPREAD;
use crate::load::LoadKey;
use crate::results::Cell;

/// The repeats of every load among some cells, ordered by load (see
/// [`LoadKey`] for the order).
pub type Groups<'a> = BTreeMap<&'a LoadKey, Vec<&'a Cell>>;

/// `cells` grouped by load, each group in the order the cells came.
pub fn groups<'a>(cells: impl IntoIterator<Item = &'a Cell>) -> Groups<'a> {
    by_load(cells.into_iter().map(|c| (&c.spec.load, c)))
}

/// `items` grouped by the load each is paired with, each group in the
/// order the items came.
pub fn by_load<'a, T>(items: impl IntoIterator<Item = (&'a LoadKey, T)>) -> BTreeMap<&'a LoadKey, Vec<T>> {
    let mut groups: BTreeMap<&'a LoadKey, Vec<T>> = BTreeMap::new();
    for (load, item) in items {
        groups.entry(load).or_default().push(item);
    }
    groups
}

/// Median and range of one figure over a cell's repeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
    /// The narrowest range that holds a majority of the values (⌊n/2⌋ + 1
    /// of them, the median among them): the whole range for 2 values, the
    /// median and its nearer neighbour for 3.
    pub majority_min: f64,
    pub majority_max: f64,
}

impl Stat {
    /// The finite ones of `values`, summed up; `None` if there are none.
    pub fn of(mut values: Vec<f64>) -> Option<Stat> {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
        let m = n / 2 + 1;
        let (majority_min, majority_max) = values
            .windows(m)
            .map(|w| (w[0], w[m - 1]))
            .min_by(|a, b| (a.1 - a.0).total_cmp(&(b.1 - b.0)))
            .unwrap_or((values[0], values[n - 1]));
        Some(Stat { median, min: values[0], max: values[n - 1], n, majority_min, majority_max })
    }

    /// `figure` over `cells`, those that have it.
    pub fn over(cells: &[&Cell], figure: impl Fn(&Cell) -> Option<f64>) -> Option<Stat> {
        Stat::of(cells.iter().filter_map(|c| figure(c)).collect())
    }

    /// (max − min) ÷ median, for two values or more and a median above 0.
    pub fn spread(&self) -> Option<f64> {
        (self.n > 1 && self.median > 0.0).then(|| (self.max - self.min) / self.median)
    }

    /// The majority's spread: the narrowest range holding a majority of
    /// the values ÷ median. The median of 3 repeats stands when two of them
    /// agree, whatever the third did; this says how closely they do. Equal
    /// to [`Stat::spread`] for 2 values.
    pub fn majority_spread(&self) -> Option<f64> {
        (self.n > 1 && self.median > 0.0).then(|| (self.majority_max - self.majority_min) / self.median)
    }

    /// The spread is above [`SPREAD`]: marked ⚠ in the tables (the
    /// `spread` flag reads [`Stat::majority_spread`] and the control cell's
    /// noise: see `crate::validity::annotate`).
    pub fn noisy(&self) -> bool {
        self.spread().is_some_and(|s| s > SPREAD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_range_and_spread() {
        let s = Stat::of(vec![125.0, f64::NAN, 100.0, 110.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (110.0, 100.0, 125.0, 3));
        assert!((s.spread().unwrap() - 25.0 / 110.0).abs() < 1e-12 && s.noisy());
        let even = Stat::of(vec![1.0, 3.0]).unwrap();
        assert_eq!(even.median, 2.0);
        assert_eq!(Stat::of(vec![5.0]).unwrap().spread(), None, "one value has no spread");
        assert_eq!(Stat::of(vec![0.0, 0.0]).unwrap().spread(), None, "nor a median of 0");
        assert_eq!(Stat::of(vec![f64::INFINITY]), None);
    }

    #[test]
    fn the_majority_spread_is_the_narrowest_range_of_a_majority() {
        // Two of three agree: the third, however far, does not widen it.
        let s = Stat::of(vec![100.0, 400.0, 105.0]).unwrap();
        assert_eq!((s.majority_min, s.majority_max), (100.0, 105.0));
        assert!((s.majority_spread().unwrap() - 5.0 / 105.0).abs() < 1e-12);
        assert!(s.spread().unwrap() > 2.8);
        // Two values: a majority is both.
        let two = Stat::of(vec![100.0, 130.0]).unwrap();
        assert_eq!(two.majority_spread(), two.spread());
        // Five: the narrowest three in a row.
        let five = Stat::of(vec![10.0, 50.0, 52.0, 55.0, 90.0]).unwrap();
        assert_eq!((five.majority_min, five.majority_max), (50.0, 55.0));
        // Three spread evenly: no two agree more closely than the gap.
        let even = Stat::of(vec![100.0, 130.0, 160.0]).unwrap();
        assert!((even.majority_spread().unwrap() - 30.0 / 130.0).abs() < 1e-12);
    }
}
