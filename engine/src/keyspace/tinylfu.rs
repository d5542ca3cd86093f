//! `allkeys-tinylfu`, the engine's own policy beyond Redis's: W-TinyLFU admission (as
//! the Caffeine library does, Einziger, Friedman and Manes, "TinyLFU: A Highly
//! Efficient Cache Admission Policy", 2017) in front of sampled LFU eviction.
//!
//! Redis's policies have no admission: every new key gets in and pushes an old one
//! out, so a burst of keys read once (a scan, a crawler, a batch job) flushes the hot
//! set. Here:
//!
//! - a count-min sketch ([`Sketch`]) estimates how often each key was asked for
//!   recently, hits and misses alike, so a key keeps its history after it was evicted;
//!   its 4-bit counters are halved every `10 x width` increments, so the estimate
//!   follows the workload as it changes;
//! - new keys enter a small window (1% of the keys, FIFO), where they can prove
//!   themselves;
//! - when memory must be freed and the window is over its size, its oldest key (the
//!   candidate) meets the main space's victim (the key with the lowest estimate among
//!   `maxmemory-samples` sampled per database, the least recently used on a tie): the
//!   candidate stays only if it was asked for more often than the victim, otherwise
//!   the candidate goes. Otherwise the main space's victim goes.

use crate::types::CompactBytes;
use std::collections::VecDeque;

/// Counters per row per key the sketch is sized for (power-of-two rounding aside).
const WIDTH_PER_KEY: usize = 8;
/// Smallest sketch row.
const MIN_WIDTH: usize = 1024;
/// The window holds this fraction of the keys (Caffeine's default, 1%)...
const WINDOW_PERCENT: usize = 1;
/// ...but at least this many.
const MIN_WINDOW: usize = 16;

/// A count-min sketch of 4 rows of 4-bit counters (two to a byte), with periodic
/// halving (TinyLFU's reset).
#[derive(Debug, Clone)]
pub(crate) struct Sketch {
    /// Each row holds `mask + 1` counters, two per byte.
    rows: [Vec<u8>; 4],
    mask: usize,
    /// Increments since the last halving.
    additions: usize,
    /// Halve after this many increments.
    sample: usize,
}

/// A 64-bit hash of a key, stable for the process (the sketch needs no protection
/// against chosen keys: a collision only raises an estimate).
pub(crate) fn hash(key: &[u8]) -> u64 {
    // FNV-1a, then a finalizer (splitmix64's) so that all bits mix.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Sketch {
    /// A sketch for about `keys` keys.
    pub(crate) fn new(keys: usize) -> Sketch {
        let width = (keys * WIDTH_PER_KEY).max(MIN_WIDTH).next_power_of_two();
        Sketch {
            rows: std::array::from_fn(|_| vec![0; width / 2]),
            mask: width - 1,
            additions: 0,
            sample: 10 * width / WIDTH_PER_KEY,
        }
    }

    /// Keys the sketch is sized for.
    pub(crate) fn capacity(&self) -> usize {
        (self.mask + 1) / WIDTH_PER_KEY
    }

    fn index(&self, h: u64, row: usize) -> usize {
        // Four independent-enough positions from one hash.
        let r = h.rotate_left(16 * row as u32) ^ (row as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (r.wrapping_mul(0xff51_afd7_ed55_8ccd) >> 17) as usize & self.mask
    }

    /// Counter `i` of row `r`.
    fn get(&self, r: usize, i: usize) -> u8 {
        (self.rows[r][i / 2] >> ((i & 1) * 4)) & 0xF
    }

    /// Adds one to counter `i` of row `r` (below 15).
    fn bump(&mut self, r: usize, i: usize) {
        self.rows[r][i / 2] += 1 << ((i & 1) * 4);
    }

    /// The estimated count of `h` (0..=15).
    pub(crate) fn estimate(&self, h: u64) -> u8 {
        (0..4)
            .map(|r| self.get(r, self.index(h, r)))
            .min()
            .unwrap_or(0)
    }

    /// Counts one access of `h` (conservative update: only the smallest counters
    /// grow), halving everything every `sample` increments.
    pub(crate) fn increment(&mut self, h: u64) {
        let idx: [usize; 4] = std::array::from_fn(|r| self.index(h, r));
        let min = (0..4).map(|r| self.get(r, idx[r])).min().unwrap_or(0);
        if min >= 15 {
            return;
        }
        for (r, &i) in idx.iter().enumerate() {
            if self.get(r, i) == min {
                self.bump(r, i);
            }
        }
        self.additions += 1;
        if self.additions >= self.sample {
            for row in &mut self.rows {
                for c in row.iter_mut() {
                    // Both nibbles halved at once.
                    *c = (*c >> 1) & 0x77;
                }
            }
            self.additions /= 2;
        }
    }
}

/// A database's admission state under `allkeys-tinylfu`.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    pub(crate) sketch: Sketch,
    /// Keys inserted recently, oldest first (may name keys gone since).
    pub(crate) window: VecDeque<CompactBytes>,
    /// Accesses so far (24 bits, wrapping): entries keep the tick of their last one.
    tick: u32,
}

impl Admission {
    /// Fresh state for about `keys` keys.
    pub(crate) fn new(keys: usize) -> Admission {
        Admission {
            sketch: Sketch::new(keys),
            window: VecDeque::new(),
            tick: 0,
        }
    }

    /// The next access tick.
    pub(crate) fn tick(&mut self) -> u32 {
        self.tick = (self.tick + 1) & 0xFF_FFFF;
        self.tick
    }

    /// The current tick.
    pub(crate) fn now(&self) -> u32 {
        self.tick
    }

    /// Records an access of `key` in a database of `keys` keys; grows the sketch
    /// (starting its counts afresh) when the keyspace outgrew it.
    pub(crate) fn record(&mut self, key: &[u8], keys: usize) {
        if keys > self.sketch.capacity() {
            self.sketch = Sketch::new(keys * 2);
        }
        self.sketch.increment(hash(key));
    }

    /// A key was created in a database of `keys` keys: it enters the window. While
    /// memory is not short (no eviction duels the window's oldest), the window's
    /// oldest keys pass to the main space unchallenged, so it stays near its size.
    pub(crate) fn inserted(&mut self, key: &[u8], keys: usize) {
        self.window.push_back(CompactBytes::from(key));
        let most = 2 * Self::window_size(keys);
        while self.window.len() > most {
            self.window.pop_front();
        }
    }

    /// The window's target size for `keys` keys.
    pub(crate) fn window_size(keys: usize) -> usize {
        (keys * WINDOW_PERCENT / 100).max(MIN_WINDOW)
    }

    /// The estimated frequency of `key`.
    pub(crate) fn frequency(&self, key: &[u8]) -> u8 {
        self.sketch.estimate(hash(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sketch_counts_and_ages() {
        let mut s = Sketch::new(1000);
        let hot = hash(b"hot");
        for _ in 0..10 {
            s.increment(hot);
        }
        s.increment(hash(b"once"));
        assert_eq!(s.estimate(hot), 10);
        assert_eq!(s.estimate(hash(b"once")), 1);
        assert_eq!(s.estimate(hash(b"never")), 0);
        for _ in 0..100 {
            s.increment(hot);
        }
        assert_eq!(s.estimate(hot), 15, "4-bit counters saturate");
        // Enough other traffic halves everything.
        for i in 0..s.sample {
            s.increment(hash(format!("k{i}").as_bytes()));
        }
        assert!(s.estimate(hot) <= 7, "{}", s.estimate(hot));
        assert!(s.estimate(hot) >= 3, "{}", s.estimate(hot));
    }

    #[test]
    fn the_window_is_a_percent_of_the_keys() {
        assert_eq!(Admission::window_size(100), 16);
        assert_eq!(Admission::window_size(30_000), 300);
    }
}
