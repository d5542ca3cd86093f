//! Command latency histograms as Redis 7.0 keeps them: an HDR histogram of
//! nanoseconds with two significant digits, values clamped to 1 us .. 1 s. Only the
//! counts of the histogram's cells are kept, keyed by each cell's lowest value, so
//! percentiles (INFO latencystats) and the power-of-two view (LATENCY HISTOGRAM)
//! come out as hdr_histogram computes them.

use std::collections::BTreeMap;

/// Smallest and largest recorded value, in ns (`CONFIG_LATENCY_HISTOGRAM_*_VALUE`).
const MIN_NS: u64 = 1024;
const MAX_NS: u64 = 1_000_000_000;

/// One command's histogram.
#[derive(Debug, Default, Clone)]
pub(crate) struct Histogram {
    /// Count per cell, by the cell's lowest equivalent value.
    cells: BTreeMap<u64, u64>,
    total: u64,
}

/// A value's cell in an HDR histogram of 1 ns unit and 2 significant digits (256
/// sub-buckets): its lowest value and its width.
fn cell(v: u64) -> (u64, u64) {
    let bucket = (63 - (v | 255).leading_zeros()) as u64 - 7;
    let lowest = (v >> bucket) << bucket;
    (lowest, 1 << bucket)
}

impl Histogram {
    /// Records a duration in ns.
    pub(crate) fn record(&mut self, ns: u64) {
        let v = ns.clamp(MIN_NS, MAX_NS);
        *self.cells.entry(cell(v).0).or_default() += 1;
        self.total += 1;
    }

    /// Values recorded.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// `hdr_value_at_percentile`, in ns: the highest value of the cell holding the
    /// requested rank (the lowest for percentile 0).
    pub(crate) fn percentile(&self, p: f64) -> u64 {
        let p = p.min(100.0);
        let want = (((p / 100.0) * self.total as f64) + 0.5) as u64;
        let want = want.max(1);
        let mut seen = 0;
        for (&lowest, &n) in &self.cells {
            seen += n;
            if seen >= want {
                if p == 0.0 {
                    return lowest;
                }
                return lowest + cell(lowest).1 - 1;
            }
        }
        0
    }

    /// LATENCY HISTOGRAM's pairs: for the levels 1024 ns * 2^k, the level's highest
    /// equivalent value in us and the count of values up to it, where that count grew.
    pub(crate) fn log_view(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let Some((&max, _)) = self.cells.iter().next_back() else {
            return out;
        };
        let mut level = MIN_NS;
        let mut cum = 0;
        let mut cells = self.cells.iter().peekable();
        loop {
            let (lowest, width) = cell(level);
            let top = lowest + width - 1;
            let before = cum;
            while let Some((&v, &n)) = cells.peek() {
                if v > top {
                    break;
                }
                cum += n;
                cells.next();
            }
            if cum > before {
                out.push((top / 1000, cum));
            }
            if top >= max {
                break;
            }
            level *= 2;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_as_redis_prints_them() {
        let mut h = Histogram::default();
        for ns in [10, 3_000, 3_500, 9_000, 200_000] {
            h.record(ns);
        }
        // Redis's levels read 1, 2, 4, 8, 16, 33, 66, 132, 264 us.
        assert_eq!(h.log_view(), vec![(1, 1), (4, 3), (16, 4), (264, 5)]);
        assert_eq!(h.percentile(50.0), 3_503);
        assert_eq!(h.percentile(100.0), 200_703);
    }
}
