//! Sets (`t_set.c`): a sorted integer array (intset) while every member is an integer
//! and the set is small, a hash set otherwise.

use bytes::Bytes;
use std::collections::HashSet;

/// A set of byte strings with Redis's two encodings (7.0: intset and hashtable).
#[derive(Debug, Clone)]
pub enum Set {
    Intset(Vec<i64>),
    Table(HashSet<Bytes>),
}

impl Default for Set {
    fn default() -> Self {
        Set::Intset(Vec::new())
    }
}

fn as_int(m: &[u8]) -> Option<i64> {
    crate::util::parse_i64(m)
}

impl Set {
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
    /// Removes a member; returns whether it was there.
    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self {
            Set::Intset(v) => match as_int(m).map(|i| v.binary_search(&i)) {
                Some(Ok(pos)) => {
                    v.remove(pos);
                    true
                }
                _ => false,
            },
            Set::Table(s) => s.remove(m),
        }
    }
    /// All members (intset: ascending, as Redis replies).
    pub fn members(&self) -> Vec<Bytes> {
        match self {
            Set::Intset(v) => v.iter().map(|i| Bytes::from(i.to_string())).collect(),
            Set::Table(s) => s.iter().cloned().collect(),
        }
    }
    /// A uniformly random member.
    pub fn random(&self) -> Option<Bytes> {
        match self {
            Set::Intset(v) => {
                if v.is_empty() {
                    None
                } else {
                    Some(Bytes::from(v[fastrand::usize(..v.len())].to_string()))
                }
            }
            Set::Table(s) => {
                if s.is_empty() {
                    None
                } else {
                    s.iter().nth(fastrand::usize(..s.len())).cloned()
                }
            }
        }
    }
    fn convert_to_table(&mut self) {
        if let Set::Intset(v) = self {
            let s: HashSet<Bytes> = v.iter().map(|i| Bytes::from(i.to_string())).collect();
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
