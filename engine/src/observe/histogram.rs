//! Command latency histograms as Redis 7.0 keeps them: an HDR histogram of
//! nanoseconds with two significant digits, values clamped to 1 us .. 1 s. Only the
//! counts of the histogram's cells are kept, in a flat array indexed by cell (as
//! hdr_histogram's counts array: recording is an index and an add, on every call), so
//! percentiles (INFO latencystats) and the power-of-two view (LATENCY HISTOGRAM)
//! come out as hdr_histogram computes them.

/// Smallest and largest recorded value, in ns (`CONFIG_LATENCY_HISTOGRAM_*_VALUE`).
const MIN_NS: u64 = 1024;
const MAX_NS: u64 = 1_000_000_000;

/// Sub-buckets per bucket past the first half (values `128 << b ..= 255 << b`).
const HALF: usize = 128;
/// The bucket of [`MIN_NS`]: every clamped value lies in this bucket or above.
const FIRST_BUCKET: u32 = 3;

/// One command's histogram.
#[derive(Debug, Default, Clone)]
pub(crate) struct Histogram {
    /// Count per cell, in value order (see [`index`]); grown up to the highest cell
    /// recorded, so a command that never took long keeps a short array.
    cells: Vec<u64>,
    total: u64,
}

/// The cell of a clamped value (`MIN_NS..=MAX_NS`) in [`Histogram::cells`].
fn index(v: u64) -> usize {
    let bucket = 63 - (v | 255).leading_zeros() - 7;
    // `v >> bucket` is in 128..256 for every bucket from FIRST_BUCKET on.
    (bucket - FIRST_BUCKET) as usize * HALF + ((v >> bucket) as usize - HALF)
}

/// The lowest value of the cell at `i` (the inverse of [`index`]).
fn lowest_at(i: usize) -> u64 {
    let bucket = (i / HALF) as u32 + FIRST_BUCKET;
    ((i % HALF + HALF) as u64) << bucket
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
        let i = index(ns.clamp(MIN_NS, MAX_NS));
        if i >= self.cells.len() {
            self.cells.resize(i + 1, 0);
        }
        self.cells[i] += 1;
        self.total += 1;
    }

    /// The cells recorded, as (lowest value, count), in value order.
    fn recorded(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.cells
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(i, &n)| (lowest_at(i), n))
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
        for (lowest, n) in self.recorded() {
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
        let Some((max, _)) = self.recorded().last() else {
            return out;
        };
        let mut level = MIN_NS;
        let mut cum = 0;
        let mut cells = self.recorded().peekable();
        loop {
            let (lowest, width) = cell(level);
            let top = lowest + width - 1;
            let before = cum;
            while let Some(&(v, n)) = cells.peek() {
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

    #[test]
    fn cells_in_value_order_match_the_hdr_cells() {
        let mut v = MIN_NS;
        while v <= MAX_NS {
            let (lowest, width) = cell(v);
            let i = index(v);
            assert_eq!(lowest_at(i), lowest, "value {v}");
            assert_eq!(index(lowest + width - 1), i, "value {v}");
            if lowest + width <= MAX_NS {
                assert_eq!(index(lowest + width), i + 1, "value {v}");
            }
            v = v * 9 / 8 + 1;
        }
        assert_eq!(index(MIN_NS), 0);
    }
}
