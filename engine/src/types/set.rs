//! Sets (`t_set.c`): a sorted integer array (intset) while every member is an integer
//! and the set is small, a hash set otherwise.

use bytes::Bytes;
use indexmap::IndexSet;

/// A set of byte strings with Redis's two encodings (7.0: intset and hashtable).
#[derive(Debug, Clone)]
pub enum Set {
    /// Ascending integers, as Redis's intset (and so replies come out sorted).
    Intset(Vec<i64>),
    /// The "hashtable" encoding. An index set so that SSCAN can walk it with a cursor
    /// and SPOP/SRANDMEMBER can sample it in O(1); its order is not part of the contract.
    Table(IndexSet<Bytes>),
}

impl Default for Set {
    fn default() -> Self {
        Set::Intset(Vec::new())
    }
}

fn as_int(m: &[u8]) -> Option<i64> {
    crate::util::parse_i64(m)
}

fn int_bytes(i: i64) -> Bytes {
    Bytes::from(i.to_string())
}

impl Set {
    /// Builds a set the way Redis builds SINTERSTORE/SUNIONSTORE results: starting as
    /// an intset and converting as members require.
    pub fn build(members: impl IntoIterator<Item = Bytes>, max_intset: usize) -> Set {
        let mut s = Set::default();
        for m in members {
            s.insert(m, max_intset);
        }
        s
    }
    /// Number of members.
    pub fn len(&self) -> usize {
        match self {
            Set::Intset(v) => v.len(),
            Set::Table(s) => s.len(),
        }
    }
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Membership test.
    pub fn contains(&self, m: &[u8]) -> bool {
        match self {
            Set::Intset(v) => as_int(m).is_some_and(|i| v.binary_search(&i).is_ok()),
            Set::Table(s) => s.contains(m),
        }
    }
    /// Adds a member; returns true when it was not there. `max_intset` is
    /// `set-max-intset-entries`.
    pub fn insert(&mut self, m: Bytes, max_intset: usize) -> bool {
        if let Set::Intset(v) = self {
            if let Some(i) = as_int(&m) {
                match v.binary_search(&i) {
                    Ok(_) => return false,
                    Err(pos) => {
                        if v.len() < max_intset {
                            v.insert(pos, i);
                            return true;
                        }
                    }
                }
            }
            self.convert_to_table();
        }
        match self {
            Set::Table(s) => s.insert(m),
            Set::Intset(_) => false,
        }
    }
    /// Removes a member; returns whether it was there. An intset stays an intset and
    /// a table never converts back, as in Redis 7.0.
    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self {
            Set::Intset(v) => match as_int(m).map(|i| v.binary_search(&i)) {
                Some(Ok(pos)) => {
                    v.remove(pos);
                    true
                }
                _ => false,
            },
            // swap_remove keeps removal O(1); SSCAN's downward cursor tolerates it.
            Set::Table(s) => s.swap_remove(m),
        }
    }
    /// All members (intset: ascending, as Redis replies).
    pub fn members(&self) -> Vec<Bytes> {
        self.iter().collect()
    }
    /// Iterates over the members in the encoding's order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = Bytes> + '_> {
        match self {
            Set::Intset(v) => Box::new(v.iter().map(|i| int_bytes(*i))),
            Set::Table(s) => Box::new(s.iter().cloned()),
        }
    }
    /// The member at a position of the encoding's order.
    pub fn get_index(&self, i: usize) -> Option<Bytes> {
        match self {
            Set::Intset(v) => v.get(i).map(|i| int_bytes(*i)),
            Set::Table(s) => s.get_index(i).cloned(),
        }
    }
    /// A uniformly random member.
    pub fn random(&self) -> Option<Bytes> {
        if self.is_empty() {
            return None;
        }
        self.get_index(fastrand::usize(..self.len()))
    }
    /// `count` distinct random members (`count` < len), in random order.
    pub fn random_distinct(&self, count: usize) -> Vec<Bytes> {
        sample_indexes(self.len(), count)
            .into_iter()
            .filter_map(|i| self.get_index(i))
            .collect()
    }
    /// Removes and returns a uniformly random member.
    pub fn pop_random(&mut self) -> Option<Bytes> {
        if self.is_empty() {
            return None;
        }
        let i = fastrand::usize(..self.len());
        match self {
            Set::Intset(v) => Some(int_bytes(v.remove(i))),
            Set::Table(s) => s.swap_remove_index(i),
        }
    }
    /// One SSCAN step over a table (an intset is returned whole by the caller, as
    /// Redis does). Same cursor scheme as HSCAN: position + 1, walking downwards.
    pub fn scan(&self, cursor: u64, count: usize, mut visit: impl FnMut(Bytes)) -> u64 {
        scan_positions(self.len(), cursor, count, |i| {
            if let Some(m) = self.get_index(i) {
                visit(m)
            }
        })
    }
    fn convert_to_table(&mut self) {
        if let Set::Intset(v) = self {
            let s: IndexSet<Bytes> = v.iter().map(|i| int_bytes(*i)).collect();
            *self = Set::Table(s);
        }
    }
    /// OBJECT ENCODING.
    pub fn encoding(&self) -> &'static str {
        match self {
            Set::Intset(_) => "intset",
            Set::Table(_) => "hashtable",
        }
    }
    /// Approximate heap bytes.
    pub fn mem_usage(&self) -> usize {
        match self {
            Set::Intset(v) => v.len() * 8 + 16,
            Set::Table(s) => s.iter().map(|m| m.len() + 48).sum::<usize>() + 32,
        }
    }
}

/// `count` distinct positions out of `0..len` in random order (`count` is clamped to
/// `len`). Shared by SRANDMEMBER/SPOP and HRANDFIELD.
pub(crate) fn sample_indexes(len: usize, count: usize) -> Vec<usize> {
    let count = count.min(len);
    if count * 3 >= len {
        // Dense: a partial Fisher-Yates shuffle of all positions.
        let mut all: Vec<usize> = (0..len).collect();
        for i in 0..count {
            let j = fastrand::usize(i..len);
            all.swap(i, j);
        }
        all.truncate(count);
        all
    } else {
        // Sparse: rejection sampling stays cheap when few positions are wanted.
        let mut seen = std::collections::HashSet::with_capacity(count);
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            let i = fastrand::usize(..len);
            if seen.insert(i) {
                out.push(i);
            }
        }
        out
    }
}

/// Walks positions `len-1, len-2, ...` from a cursor (position + 1; 0 starts at the end)
/// visiting at most `count`; returns the next cursor, 0 when done. Walking downwards
/// means a swap-removal (which moves the last element into the hole) can only make an
/// element be visited twice, never be missed.
pub(crate) fn scan_positions(
    len: usize,
    cursor: u64,
    count: usize,
    mut visit: impl FnMut(usize),
) -> u64 {
    let len = len as u64;
    let mut next = if cursor == 0 { len } else { cursor.min(len) };
    let mut seen = 0;
    while next > 0 && seen < count {
        visit((next - 1) as usize);
        next -= 1;
        seen += 1;
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    #[test]
    fn intset_converts_past_limit_or_on_strings() {
        let mut s = Set::default();
        for i in 0..512 {
            s.insert(b(&i.to_string()), 512);
        }
        assert_eq!(s.encoding(), "intset");
        assert!(!s.insert(b("5"), 512));
        assert_eq!(s.encoding(), "intset");
        s.insert(b("512"), 512);
        assert_eq!(s.encoding(), "hashtable");
        assert_eq!(s.len(), 513);

        let mut s = Set::build([b("3"), b("1"), b("2")], 512);
        assert_eq!(s.encoding(), "intset");
        assert_eq!(s.members(), vec![b("1"), b("2"), b("3")]);
        // Not canonical integers stay strings.
        s.insert(b("07"), 512);
        assert_eq!(s.encoding(), "hashtable");
        assert!(s.contains(b"07") && s.contains(b"1"));
    }

    #[test]
    fn sampling_is_distinct() {
        for (len, count) in [(10, 10), (10, 3), (1000, 5), (5, 9)] {
            let v = sample_indexes(len, count);
            assert_eq!(v.len(), count.min(len));
            let set: std::collections::HashSet<_> = v.iter().collect();
            assert_eq!(set.len(), v.len());
            assert!(v.iter().all(|&i| i < len));
        }
    }

    #[test]
    fn pop_empties() {
        let mut s = Set::build([b("a"), b("1")], 512);
        assert!(s.pop_random().is_some());
        assert!(s.pop_random().is_some());
        assert!(s.pop_random().is_none());
        assert!(s.is_empty());
    }
}
