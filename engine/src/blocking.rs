//! Clients blocked on keys (BLPOP and friends), served first-come first-served.

use crate::reply::Reply;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use tokio::sync::oneshot;

/// A client waiting for one of its keys to receive data.
#[derive(Debug)]
pub struct Blocked {
    /// The command to re-run when a key is ready.
    pub args: Vec<Bytes>,
    pub db: usize,
    pub resp: u8,
    pub keys: Vec<Bytes>,
    /// Where the reply goes once served.
    pub tx: oneshot::Sender<Reply>,
}

/// The registry of blocked clients.
#[derive(Debug, Default)]
pub struct Blocking {
    waiters: HashMap<(usize, Bytes), VecDeque<u64>>,
    clients: HashMap<u64, Blocked>,
    /// Keys that received data since the last serving round, in order.
    ready: VecDeque<(usize, Bytes)>,
}

impl Blocking {
    /// Blocks a client on its keys.
    pub fn block(&mut self, id: u64, b: Blocked) {
        for k in &b.keys {
            let q = self.waiters.entry((b.db, k.clone())).or_default();
            if !q.contains(&id) {
                q.push_back(id);
            }
        }
        self.clients.insert(id, b);
    }

    /// Unblocks a client (timeout, disconnect, or served); returns its state if it was blocked.
    pub fn unblock(&mut self, id: u64) -> Option<Blocked> {
        let b = self.clients.remove(&id)?;
        for k in &b.keys {
            let key = (b.db, k.clone());
            if let Some(q) = self.waiters.get_mut(&key) {
                q.retain(|&c| c != id);
                if q.is_empty() {
                    self.waiters.remove(&key);
                }
            }
        }
        Some(b)
    }

    /// Whether a client is blocked.
    pub fn is_blocked(&self, id: u64) -> bool {
        self.clients.contains_key(&id)
    }

    /// Number of blocked clients (INFO clients).
    pub fn count(&self) -> usize {
        self.clients.len()
    }

    /// Notes that a key received data, if anyone waits on it.
    pub fn signal(&mut self, db: usize, key: &[u8]) {
        if self.waiters.is_empty() {
            return;
        }
        let k = (db, Bytes::copy_from_slice(key));
        if self.waiters.contains_key(&k) && !self.ready.contains(&k) {
            self.ready.push_back(k);
        }
    }

    /// Notes that every key with waiters in a database may be ready (SWAPDB, FLUSHALL).
    pub fn signal_db(&mut self, db: usize) {
        let keys: Vec<_> = self
            .waiters
            .keys()
            .filter(|(d, _)| *d == db)
            .cloned()
            .collect();
        for k in keys {
            if !self.ready.contains(&k) {
                self.ready.push_back(k);
            }
        }
    }

    /// Takes the next ready key, if any.
    pub fn next_ready(&mut self) -> Option<(usize, Bytes)> {
        self.ready.pop_front()
    }

    /// The clients waiting on a key, oldest first.
    pub fn waiters_of(&self, db: usize, key: &Bytes) -> Vec<u64> {
        self.waiters
            .get(&(db, key.clone()))
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default()
    }

    /// A blocked client's command, db and protocol, for re-running it.
    pub fn get(&self, id: u64) -> Option<&Blocked> {
        self.clients.get(&id)
    }
}
