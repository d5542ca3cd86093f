//! Lists (`t_list.c`). Redis 7.0 always reports the `quicklist` encoding for lists.

use bytes::Bytes;
use std::collections::VecDeque;

/// Which end of a list an operation works on (Redis's `LIST_HEAD` / `LIST_TAIL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The head (LEFT).
    Left,
    /// The tail (RIGHT).
    Right,
}

/// A list of byte strings with O(1) push and pop at both ends.
#[derive(Debug, Clone, Default)]
pub struct List {
    items: VecDeque<Bytes>,
}

impl List {
    #[allow(dead_code)] // API for code that builds or reads values whole (the RDB codec)
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.items.len()
    }
    /// Whether the list has no elements.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// The underlying deque, for commands that need more than push and pop.
    pub fn items(&self) -> &VecDeque<Bytes> {
        &self.items
    }
    #[allow(dead_code)] // API for code that builds or reads values whole (the RDB codec)
    /// Mutable access to the underlying deque.
    pub fn items_mut(&mut self) -> &mut VecDeque<Bytes> {
        &mut self.items
    }
    /// Push at the head.
    pub fn push_front(&mut self, v: Bytes) {
        self.items.push_front(v)
    }
    /// Push at the tail.
    pub fn push_back(&mut self, v: Bytes) {
        self.items.push_back(v)
    }
    /// Pop from the head.
    pub fn pop_front(&mut self) -> Option<Bytes> {
        self.items.pop_front()
    }
    /// Pop from the tail.
    pub fn pop_back(&mut self) -> Option<Bytes> {
        self.items.pop_back()
    }
    /// Push at the given end.
    pub fn push(&mut self, end: End, v: Bytes) {
        match end {
            End::Left => self.push_front(v),
            End::Right => self.push_back(v),
        }
    }
    /// Pop from the given end.
    pub fn pop(&mut self, end: End) -> Option<Bytes> {
        match end {
            End::Left => self.pop_front(),
            End::Right => self.pop_back(),
        }
    }
    /// Pops up to `n` elements from one end, in pop order (RPOP with a count replies
    /// with the tail first).
    pub fn pop_many(&mut self, end: End, n: usize) -> Vec<Bytes> {
        let n = n.min(self.items.len());
        match end {
            End::Left => self.items.drain(..n).collect(),
            End::Right => {
                let at = self.items.len() - n;
                let mut v: Vec<Bytes> = self.items.drain(at..).collect();
                v.reverse();
                v
            }
        }
    }
    /// Resolves a Redis index (negative counts from the tail) to a position.
    pub fn resolve(&self, index: i64) -> Option<usize> {
        let len = self.items.len() as i64;
        let i = if index < 0 {
            len.checked_add(index)?
        } else {
            index
        };
        (0..len).contains(&i).then_some(i as usize)
    }
    /// The element at a Redis index.
    pub fn get(&self, index: i64) -> Option<&Bytes> {
        self.resolve(index).and_then(|i| self.items.get(i))
    }
    /// Replaces the element at a Redis index; false when out of range.
    pub fn set(&mut self, index: i64, v: Bytes) -> bool {
        match self.resolve(index) {
            Some(i) => {
                self.items[i] = v;
                true
            }
            None => false,
        }
    }
    /// Inserts `v` before or after the first occurrence of `pivot` (LINSERT); false when
    /// the pivot is absent.
    pub fn insert_at_pivot(&mut self, pivot: &[u8], v: Bytes, after: bool) -> bool {
        match self.items.iter().position(|e| e.as_ref() == pivot) {
            Some(i) => {
                self.items.insert(if after { i + 1 } else { i }, v);
                true
            }
            None => false,
        }
    }
    /// Removes occurrences of `v` (LREM): `count > 0` the first `count` from the head,
    /// `count < 0` the first `-count` from the tail, 0 all. Returns how many went.
    pub fn remove(&mut self, v: &[u8], count: i64) -> usize {
        let limit = if count == 0 {
            usize::MAX
        } else {
            count.unsigned_abs().min(usize::MAX as u64) as usize
        };
        let mut removed = 0;
        if count >= 0 {
            let mut i = 0;
            while i < self.items.len() && removed < limit {
                if self.items[i].as_ref() == v {
                    self.items.remove(i);
                    removed += 1;
                } else {
                    i += 1;
                }
            }
        } else {
            let mut i = self.items.len();
            while i > 0 && removed < limit {
                i -= 1;
                if self.items[i].as_ref() == v {
                    self.items.remove(i);
                    removed += 1;
                }
            }
        }
        removed
    }
    /// Keeps only positions `start..=end` (already resolved), or nothing when `None`.
    pub fn trim(&mut self, keep: Option<(usize, usize)>) {
        match keep {
            None => self.items.clear(),
            Some((s, e)) => {
                self.items.truncate(e + 1);
                self.items.drain(..s);
            }
        }
    }
    /// OBJECT ENCODING.
    pub fn encoding(&self) -> &'static str {
        "quicklist"
    }
    /// Approximate heap bytes.
    pub fn mem_usage(&self) -> usize {
        self.items.iter().map(|b| b.len() + 16).sum::<usize>() + 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> List {
        let mut l = List::new();
        for i in items {
            l.push_back(Bytes::copy_from_slice(i.as_bytes()));
        }
        l
    }

    fn strs(l: &List) -> Vec<String> {
        l.items()
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn remove_from_either_end() {
        let mut l = list(&["a", "b", "a", "c", "a"]);
        assert_eq!(l.remove(b"a", -2), 2);
        assert_eq!(strs(&l), ["a", "b", "c"]);
        let mut l = list(&["a", "b", "a", "c", "a"]);
        assert_eq!(l.remove(b"a", 1), 1);
        assert_eq!(strs(&l), ["b", "a", "c", "a"]);
        assert_eq!(l.remove(b"a", 0), 2);
        assert_eq!(strs(&l), ["b", "c"]);
        assert_eq!(l.remove(b"z", i64::MIN), 0);
    }

    #[test]
    fn pop_many_orders_like_redis() {
        let mut l = list(&["a", "b", "c", "d"]);
        assert_eq!(l.pop_many(End::Right, 3), ["d", "c", "b"]);
        assert_eq!(l.pop_many(End::Left, 9), ["a"]);
        assert!(l.is_empty());
    }

    #[test]
    fn indexes_and_trim() {
        let mut l = list(&["a", "b", "c", "d"]);
        assert_eq!(l.get(-1).map(|b| b.as_ref()), Some(&b"d"[..]));
        assert_eq!(l.get(i64::MIN), None);
        assert_eq!(l.get(4), None);
        assert!(!l.set(-5, Bytes::from_static(b"x")));
        l.trim(Some((1, 2)));
        assert_eq!(strs(&l), ["b", "c"]);
        assert!(l.insert_at_pivot(b"c", Bytes::from_static(b"z"), true));
        assert_eq!(strs(&l), ["b", "c", "z"]);
    }
}
