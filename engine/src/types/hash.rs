//! Hashes (`t_hash.c`): a listpack-like vector while small, a hash table once it grows.

use bytes::Bytes;
use indexmap::IndexMap;

/// Conversion thresholds (`hash-max-listpack-entries`, `hash-max-listpack-value`).
#[derive(Debug, Clone, Copy)]
pub struct HashLimits {
    pub max_entries: usize,
    pub max_value: usize,
}

impl Default for HashLimits {
    fn default() -> Self {
        HashLimits {
            max_entries: 128,
            max_value: 64,
        }
    }
}

/// A field -> value map with Redis's two encodings.
#[derive(Debug, Clone)]
pub enum Hash {
    /// Insertion-ordered pairs; lookups are linear, which is fast for a few dozen entries.
    Listpack(Vec<(Bytes, Bytes)>),
    /// The "hashtable" encoding. An index map so that HSCAN can walk it with a cursor
    /// and HRANDFIELD can sample it in O(1); its order is not part of the contract.
    Table(IndexMap<Bytes, Bytes>),
}

impl Default for Hash {
    fn default() -> Self {
        Hash::Listpack(Vec::new())
    }
}

impl Hash {
    /// Number of fields.
    pub fn len(&self) -> usize {
        match self {
            Hash::Listpack(v) => v.len(),
            Hash::Table(m) => m.len(),
        }
    }
    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The value of a field.
    pub fn get(&self, field: &[u8]) -> Option<&Bytes> {
        match self {
            Hash::Listpack(v) => v.iter().find(|(f, _)| f.as_ref() == field).map(|(_, v)| v),
            Hash::Table(m) => m.get(field),
        }
    }
    /// Whether a field exists.
    pub fn contains(&self, field: &[u8]) -> bool {
        self.get(field).is_some()
    }
    /// Converts to a table when any of `args` is longer than `hash-max-listpack-value`,
    /// as Redis's `hashTypeTryConversion` does before HSET/HSETNX write anything.
    pub fn try_conversion(&mut self, args: &[Bytes], limits: HashLimits) {
        if matches!(self, Hash::Listpack(_)) && args.iter().any(|a| a.len() > limits.max_value) {
            self.convert_to_table();
        }
    }
    /// Sets a field; returns true when the field is new. Converts to a table past the limits
    /// (a field or value too long, or more than `hash-max-listpack-entries` fields).
    pub fn insert(&mut self, field: Bytes, value: Bytes, limits: HashLimits) -> bool {
        if let Hash::Listpack(v) = self {
            if field.len() > limits.max_value
                || value.len() > limits.max_value
                || (v.len() >= limits.max_entries && !v.iter().any(|(f, _)| *f == field))
            {
                self.convert_to_table();
            }
        }
        match self {
            Hash::Listpack(v) => {
                if let Some(slot) = v.iter_mut().find(|(f, _)| *f == field) {
                    slot.1 = value;
                    false
                } else {
                    v.push((field, value));
                    true
                }
            }
            Hash::Table(m) => m.insert(field, value).is_none(),
        }
    }
    /// Removes a field; returns whether it existed. A table never shrinks back to a
    /// listpack (Redis 7.0 does not convert back either).
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            Hash::Listpack(v) => match v.iter().position(|(f, _)| f.as_ref() == field) {
                Some(i) => {
                    v.remove(i);
                    true
                }
                None => false,
            },
            // swap_remove keeps removal O(1); HSCAN's downward cursor tolerates it.
            Hash::Table(m) => m.swap_remove(field).is_some(),
        }
    }
    #[allow(dead_code)] // API for code that builds or reads values whole (the RDB codec)
    /// All (field, value) pairs in the encoding's order.
    pub fn pairs(&self) -> Vec<(Bytes, Bytes)> {
        self.iter().map(|(f, v)| (f.clone(), v.clone())).collect()
    }
    /// Iterates over (field, value) pairs without copying.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&Bytes, &Bytes)> + '_> {
        match self {
            Hash::Listpack(v) => Box::new(v.iter().map(|(f, v)| (f, v))),
            Hash::Table(m) => Box::new(m.iter()),
        }
    }
    /// The pair at a position of the encoding's order.
    pub fn get_index(&self, i: usize) -> Option<(&Bytes, &Bytes)> {
        match self {
            Hash::Listpack(v) => v.get(i).map(|(f, v)| (f, v)),
            Hash::Table(m) => m.get_index(i),
        }
    }
    /// A uniformly random pair.
    pub fn random(&self) -> Option<(&Bytes, &Bytes)> {
        if self.is_empty() {
            return None;
        }
        self.get_index(fastrand::usize(..self.len()))
    }
    /// `count` distinct random pairs (`count` < len), in random order.
    pub fn random_distinct(&self, count: usize) -> Vec<(&Bytes, &Bytes)> {
        super::set::sample_indexes(self.len(), count)
            .into_iter()
            .filter_map(|i| self.get_index(i))
            .collect()
    }
    /// One HSCAN step over a table (a listpack is returned whole by the caller, as
    /// Redis does). The cursor is a position + 1 walking downwards, so that fields
    /// swap-removed during a scan are repeated rather than skipped; 0 starts and ends.
    pub fn scan(&self, cursor: u64, count: usize, mut visit: impl FnMut(&Bytes, &Bytes)) -> u64 {
        super::set::scan_positions(self.len(), cursor, count, |i| {
            if let Some((f, v)) = self.get_index(i) {
                visit(f, v)
            }
        })
    }
    fn convert_to_table(&mut self) {
        if let Hash::Listpack(v) = self {
            let m: IndexMap<Bytes, Bytes> = std::mem::take(v).into_iter().collect();
            *self = Hash::Table(m);
        }
    }
    /// OBJECT ENCODING.
    pub fn encoding(&self) -> &'static str {
        match self {
            Hash::Listpack(_) => "listpack",
            Hash::Table(_) => "hashtable",
        }
    }
    /// Approximate heap bytes.
    pub fn mem_usage(&self) -> usize {
        let per = match self {
            Hash::Listpack(_) => 4,
            Hash::Table(_) => 48,
        };
        self.iter()
            .map(|(f, v)| f.len() + v.len() + per)
            .sum::<usize>()
            + 32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    #[test]
    fn converts_at_thresholds() {
        let lim = HashLimits::default();
        let mut h = Hash::default();
        for i in 0..128 {
            h.insert(b(&format!("f{i}")), b("v"), lim);
        }
        assert_eq!(h.encoding(), "listpack");
        // Updating an existing field at the limit does not convert.
        h.insert(b("f0"), b("w"), lim);
        assert_eq!(h.encoding(), "listpack");
        h.insert(b("f128"), b("v"), lim);
        assert_eq!(h.encoding(), "hashtable");
        assert_eq!(h.len(), 129);

        let mut h = Hash::default();
        h.insert(b("a"), b(&"x".repeat(64)), lim);
        assert_eq!(h.encoding(), "listpack");
        h.insert(b("b"), b(&"x".repeat(65)), lim);
        assert_eq!(h.encoding(), "hashtable");

        let mut h = Hash::default();
        h.try_conversion(&[b(&"y".repeat(65))], lim);
        assert_eq!(h.encoding(), "hashtable");
    }

    #[test]
    fn listpack_keeps_insertion_order() {
        let lim = HashLimits::default();
        let mut h = Hash::default();
        for f in ["c", "a", "b"] {
            h.insert(b(f), b("1"), lim);
        }
        h.remove(b"a");
        let fields: Vec<_> = h.iter().map(|(f, _)| f.clone()).collect();
        assert_eq!(fields, vec![b("c"), b("b")]);
    }

    #[test]
    fn scan_visits_everything_once_without_changes() {
        let lim = HashLimits::default();
        let mut h = Hash::default();
        for i in 0..300 {
            h.insert(b(&i.to_string()), b("v"), lim);
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        loop {
            cursor = h.scan(cursor, 7, |f, _| {
                assert!(seen.insert(f.clone()));
            });
            if cursor == 0 {
                break;
            }
        }
        assert_eq!(seen.len(), 300);
    }
}
