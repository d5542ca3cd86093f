//! Sorted sets (`t_zset.c`): a member -> score map beside a score-ordered sequence.
//!
//! Redis keeps small sorted sets in a listpack and converts to a skiplist past
//! `zset-max-listpack-entries`/`-value`; we keep one representation and track which
//! encoding Redis would report, converting one way as Redis does.
//!
//! The order is kept as a list of sorted chunks (a two-level B-tree): inserts and
//! removals touch one chunk of at most `2 * CHUNK` entries, and rank queries sum chunk
//! lengths, so ZRANK and ZRANGE by rank cost O(n / CHUNK + log n) instead of the O(n)
//! walk a plain `BTreeSet` would need.

use bytes::Bytes;
use std::cmp::Ordering;
use std::collections::HashMap;

/// Target chunk size; chunks split past twice this.
const CHUNK: usize = 256;

/// A (score, member) pair ordered by score, then member bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredMember {
    pub score: f64,
    pub member: Bytes,
}

impl Eq for ScoredMember {}

impl PartialOrd for ScoredMember {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ScoredMember {
    fn cmp(&self, other: &Self) -> Ordering {
        // Scores are never NaN; -0 and 0 compare equal, as in Redis.
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| self.member.cmp(&other.member))
    }
}

/// Conversion thresholds (`zset-max-listpack-entries`, `zset-max-listpack-value`).
#[derive(Debug, Clone, Copy)]
pub struct ZSetLimits {
    pub max_entries: usize,
    pub max_value: usize,
}

impl Default for ZSetLimits {
    fn default() -> Self {
        ZSetLimits {
            max_entries: 128,
            max_value: 64,
        }
    }
}

/// A sorted set.
#[derive(Debug, Clone, Default)]
pub struct ZSet {
    scores: HashMap<Bytes, f64>,
    /// Non-empty sorted chunks whose concatenation is the whole order.
    chunks: Vec<Vec<ScoredMember>>,
    skiplist: bool,
}

impl ZSet {
    /// An empty sorted set.
    pub fn new() -> Self {
        Self::default()
    }
    /// Number of members.
    pub fn len(&self) -> usize {
        self.scores.len()
    }
    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
    /// A member's score.
    pub fn score(&self, m: &[u8]) -> Option<f64> {
        self.scores.get(m).copied()
    }
    /// Sets a member's score; returns true when the member is new.
    pub fn insert(&mut self, member: Bytes, score: f64, limits: ZSetLimits) -> bool {
        if member.len() > limits.max_value {
            self.skiplist = true;
        }
        // A listpack stores scores as text, where -0 reads back as 0.
        let score = if score == 0.0 && !self.skiplist {
            0.0
        } else {
            score
        };
        let new = match self.scores.insert(member.clone(), score) {
            Some(old) => {
                self.remove_ordered(&ScoredMember {
                    score: old,
                    member: member.clone(),
                });
                false
            }
            None => true,
        };
        self.insert_ordered(ScoredMember { score, member });
        if self.scores.len() > limits.max_entries {
            self.skiplist = true;
        }
        new
    }
    /// Removes a member; returns whether it was there.
    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self.scores.remove(m) {
            Some(score) => {
                self.remove_ordered(&ScoredMember {
                    score,
                    member: Bytes::copy_from_slice(m),
                });
                true
            }
            None => false,
        }
    }

    fn insert_ordered(&mut self, sm: ScoredMember) {
        if self.chunks.is_empty() {
            self.chunks.push(vec![sm]);
            return;
        }
        let mut ci = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|l| *l < sm));
        if ci == self.chunks.len() {
            ci -= 1;
        }
        let chunk = &mut self.chunks[ci];
        let pos = chunk.partition_point(|x| *x < sm);
        chunk.insert(pos, sm);
        if chunk.len() > 2 * CHUNK {
            let tail = chunk.split_off(CHUNK);
            self.chunks.insert(ci + 1, tail);
        }
    }

    fn remove_ordered(&mut self, sm: &ScoredMember) {
        let ci = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|l| l < sm));
        let Some(chunk) = self.chunks.get_mut(ci) else {
            return;
        };
        if let Ok(pos) = chunk.binary_search(sm) {
            chunk.remove(pos);
        }
        let len = chunk.len();
        if len == 0 {
            self.chunks.remove(ci);
        } else if len < CHUNK / 2
            && ci + 1 < self.chunks.len()
            && len + self.chunks[ci + 1].len() <= 2 * CHUNK
        {
            // Keep chunks reasonably full so rank walks stay short.
            let next = self.chunks.remove(ci + 1);
            self.chunks[ci].extend(next);
        }
    }

    /// Members in ascending order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &ScoredMember> {
        self.chunks.iter().flatten()
    }
    /// How many leading members satisfy `pred`, which must hold for a prefix of the
    /// order (true, ..., true, false, ..., false).
    pub fn partition_point(&self, pred: impl Fn(&ScoredMember) -> bool) -> usize {
        let ci = self.chunks.partition_point(|c| c.last().is_some_and(&pred));
        let before: usize = self.chunks[..ci].iter().map(Vec::len).sum();
        before + self.chunks.get(ci).map_or(0, |c| c.partition_point(&pred))
    }
    /// 0-based rank of a member in ascending order.
    pub fn rank(&self, m: &[u8]) -> Option<usize> {
        let score = self.score(m)?;
        let probe = ScoredMember {
            score,
            member: Bytes::copy_from_slice(m),
        };
        Some(self.partition_point(|x| *x < probe))
    }
    /// Members with ranks `start..=end` in ascending order (clamped to the set).
    pub fn range(&self, start: usize, end: usize) -> Vec<&ScoredMember> {
        let mut out = Vec::new();
        if start > end {
            return out;
        }
        let mut skip = start;
        let mut want = end - start + 1;
        for c in &self.chunks {
            if skip >= c.len() {
                skip -= c.len();
                continue;
            }
            for sm in &c[skip..] {
                if want == 0 {
                    return out;
                }
                out.push(sm);
                want -= 1;
            }
            skip = 0;
            if want == 0 {
                break;
            }
        }
        out
    }
    /// The member at a rank.
    pub fn get(&self, rank: usize) -> Option<&ScoredMember> {
        self.range(rank, rank).into_iter().next()
    }
    /// OBJECT ENCODING.
    pub fn encoding(&self) -> &'static str {
        if self.skiplist {
            "skiplist"
        } else {
            "listpack"
        }
    }
    #[allow(dead_code)] // API for code that builds or reads values whole (the RDB codec)
    /// Marks the set as converted (used when a store command builds a large result).
    pub fn set_skiplist(&mut self, on: bool) {
        self.skiplist = on;
    }
    /// Builds a set from (member, score) pairs, with the encoding Redis gives a stored
    /// result (ZUNIONSTORE, ZRANGESTORE): listpack when it fits the limits.
    pub fn from_pairs(pairs: Vec<(Bytes, f64)>, limits: ZSetLimits) -> ZSet {
        let fits = pairs.len() <= limits.max_entries
            && pairs.iter().all(|(m, _)| m.len() <= limits.max_value);
        let mut z = ZSet::new();
        z.skiplist = !fits;
        let unlimited = ZSetLimits {
            max_entries: usize::MAX,
            max_value: usize::MAX,
        };
        for (m, s) in pairs {
            z.insert(m, s, unlimited);
        }
        z
    }
    /// Approximate heap bytes.
    pub fn mem_usage(&self) -> usize {
        let per = if self.skiplist { 80 } else { 12 };
        self.scores.keys().map(|m| m.len() + per).sum::<usize>() + 32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn chunks_keep_order_and_ranks() {
        let lim = ZSetLimits::default();
        let mut z = ZSet::new();
        let n = 3000;
        for i in 0..n {
            // Insert in a scrambled order so chunks split in the middle.
            let k = (i * 7919) % n;
            z.insert(b(&format!("m{k:05}")), (k % 100) as f64, lim);
        }
        assert_eq!(z.len(), n);
        assert!(z.chunks.len() > 1);
        let all: Vec<_> = z.iter().cloned().collect();
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        for (i, sm) in all.iter().enumerate().step_by(37) {
            assert_eq!(z.rank(&sm.member), Some(i));
            assert_eq!(z.get(i), Some(sm));
        }
        assert_eq!(z.range(10, 19).len(), 10);
        assert_eq!(z.range(10, 19)[0], &all[10]);
        for sm in all.iter().step_by(2) {
            assert!(z.remove(&sm.member));
        }
        assert_eq!(z.len(), n / 2);
        let rest: Vec<_> = z.iter().cloned().collect();
        assert!(rest.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(z.rank(&rest[700].member), Some(700));
        // Updating a score moves the member.
        z.insert(rest[0].member.clone(), 1e9, lim);
        assert_eq!(z.rank(&rest[0].member), Some(z.len() - 1));
    }

    #[test]
    fn encoding_converts_at_limits() {
        let lim = ZSetLimits {
            max_entries: 3,
            max_value: 5,
        };
        let mut z = ZSet::new();
        for m in ["a", "b", "c"] {
            z.insert(b(m), 1.0, lim);
        }
        assert_eq!(z.encoding(), "listpack");
        z.insert(b("d"), 1.0, lim);
        assert_eq!(z.encoding(), "skiplist");
        // Shrinking never converts back, as in Redis 7.0.
        z.remove(b"d");
        z.remove(b"c");
        assert_eq!(z.encoding(), "skiplist");

        let mut z = ZSet::new();
        z.insert(b("abcde"), 1.0, lim);
        assert_eq!(z.encoding(), "listpack");
        z.insert(b("abcdef"), 1.0, lim);
        assert_eq!(z.encoding(), "skiplist");

        let z = ZSet::from_pairs(vec![(b("a"), 1.0), (b("b"), 2.0)], lim);
        assert_eq!(z.encoding(), "listpack");
        let z = ZSet::from_pairs(vec![(b("toolong"), 1.0)], lim);
        assert_eq!(z.encoding(), "skiplist");
    }

    #[test]
    fn negative_zero_in_listpack_reads_as_zero() {
        let mut z = ZSet::new();
        z.insert(b("a"), -0.0, ZSetLimits::default());
        assert!(z.score(b"a").is_some_and(|s| s.is_sign_positive()));
    }

    #[test]
    fn large_set_ranks_match_a_sorted_vec() {
        let lim = ZSetLimits::default();
        let mut z = ZSet::new();
        let n = 100_000u64;
        let mut reference = Vec::new();
        for i in 0..n {
            let k = (i * 48_271) % n;
            let sm = ScoredMember {
                score: (k % 1000) as f64,
                member: b(&format!("{k}")),
            };
            z.insert(sm.member.clone(), sm.score, lim);
            reference.push(sm);
        }
        reference.sort();
        let start = std::time::Instant::now();
        for i in (0..n as usize).step_by(10) {
            assert_eq!(z.rank(&reference[i].member), Some(i));
        }
        assert_eq!(z.range(50_000, 50_009).len(), 10);
        assert_eq!(z.range(50_000, 50_009)[3], &reference[50_003]);
        // 10k rank queries on 100k members stay far below a second even unoptimised.
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}
