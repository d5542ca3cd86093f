//! Lists (`t_list.c`). Redis 7.0 always reports the `quicklist` encoding for lists.

use bytes::Bytes;
use std::collections::VecDeque;

/// A list of byte strings with O(1) push and pop at both ends.
#[derive(Debug, Clone, Default)]
pub struct List {
    items: VecDeque<Bytes>,
}

impl List {
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
    /// OBJECT ENCODING.
    pub fn encoding(&self) -> &'static str {
        "quicklist"
    }
    /// Approximate heap bytes.
    pub fn mem_usage(&self) -> usize {
        self.items.iter().map(|b| b.len() + 16).sum::<usize>() + 64
    }
}
