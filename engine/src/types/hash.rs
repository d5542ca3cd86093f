//! Hashes (`t_hash.c`): a listpack-like vector while small, a hash table once it grows.

use bytes::Bytes;
use std::collections::HashMap;

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
    Table(HashMap<Bytes, Bytes>),
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
    /// Sets a field; returns true when the field is new. Converts to a table past the limits.
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
    /// Removes a field; returns whether it existed.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            Hash::Listpack(v) => match v.iter().position(|(f, _)| f.as_ref() == field) {
                Some(i) => {
                    v.remove(i);
                    true
                }
                None => false,
            },
            Hash::Table(m) => m.remove(field).is_some(),
        }
    }
    /// All (field, value) pairs in the encoding's order.
    pub fn pairs(&self) -> Vec<(Bytes, Bytes)> {
        match self {
            Hash::Listpack(v) => v.clone(),
            Hash::Table(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
    /// Iterates over (field, value) pairs without copying.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&Bytes, &Bytes)> + '_> {
        match self {
            Hash::Listpack(v) => Box::new(v.iter().map(|(f, v)| (f, v))),
            Hash::Table(m) => Box::new(m.iter()),
        }
    }
    fn convert_to_table(&mut self) {
        if let Hash::Listpack(v) = self {
            let m: HashMap<Bytes, Bytes> = std::mem::take(v).into_iter().collect();
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
