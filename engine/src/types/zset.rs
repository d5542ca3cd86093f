//! Sorted sets (`t_zset.c`): a member -> score map beside a score-ordered tree.
//!
//! Redis keeps small sorted sets in a listpack and converts to a skiplist past
//! `zset-max-listpack-entries`/`-value`; we keep one representation and track which
//! encoding Redis would report, converting one way as Redis does.

use bytes::Bytes;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

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
    order: BTreeSet<ScoredMember>,
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
        let new = match self.scores.insert(member.clone(), score) {
            Some(old) => {
                self.order.remove(&ScoredMember {
                    score: old,
                    member: member.clone(),
                });
                false
            }
            None => true,
        };
        self.order.insert(ScoredMember { score, member });
        if self.scores.len() > limits.max_entries {
            self.skiplist = true;
        }
        new
    }
    /// Removes a member; returns whether it was there.
    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self.scores.remove(m) {
            Some(score) => {
                self.order.remove(&ScoredMember {
                    score,
                    member: Bytes::copy_from_slice(m),
                });
                true
            }
            None => false,
        }
    }
    /// Members in ascending order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &ScoredMember> {
        self.order.iter()
    }
    /// The ordered tree, for range queries.
    pub fn ordered(&self) -> &BTreeSet<ScoredMember> {
        &self.order
    }
    /// 0-based rank of a member in ascending order.
    pub fn rank(&self, m: &[u8]) -> Option<usize> {
        let score = self.score(m)?;
        let probe = ScoredMember {
            score,
            member: Bytes::copy_from_slice(m),
        };
        Some(self.order.range(..probe).count())
    }
    /// OBJECT ENCODING.
    pub fn encoding(&self) -> &'static str {
        if self.skiplist {
            "skiplist"
        } else {
            "listpack"
        }
    }
    /// Marks the set as converted (used when a store command builds a large result).
    pub fn set_skiplist(&mut self, on: bool) {
        self.skiplist = on;
    }
    /// Approximate heap bytes.
    pub fn mem_usage(&self) -> usize {
        let per = if self.skiplist { 80 } else { 12 };
        self.scores.keys().map(|m| m.len() + per).sum::<usize>() + 32
    }
}
