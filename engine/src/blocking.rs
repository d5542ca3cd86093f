//! Clients blocked on keys (BLPOP and friends, BZPOPMIN and friends, XREAD and
//! XREADGROUP), served first-come first-served. One rule for every family: when the
//! command or transaction that touched a key ends, its waiters are re-run in arrival
//! order if the key holds the type they wait for ([`BlockKind`]); XREADGROUP waiters
//! whose key no longer holds a stream are released with an error, as in Redis.

use crate::net::reply::Reply;
use crate::types::Value;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use tokio::sync::oneshot;

/// What a blocked client waits for: the type its key must hold when the command or
/// transaction that touched it ends (Redis's `btype`). One rule for every family: a
/// client is re-run only when its ready key holds the type it waits for, so a key that
/// was briefly a sorted set inside a MULTI but is a string at EXEC leaves a BZPOPMIN
/// waiting, as in Redis's `handleClientsBlockedOnKeys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP.
    List,
    /// BZPOPMIN, BZPOPMAX, BZMPOP.
    ZSet,
    /// XREAD, XREADGROUP.
    Stream,
    /// WAIT: released by replicas' ACKs or its timeout, never by a key.
    Wait,
}

impl BlockKind {
    /// Whether `value` is of the type this client waits for.
    pub fn holds(self, value: &Value) -> bool {
        matches!(
            (self, value),
            (BlockKind::List, Value::List(_))
                | (BlockKind::ZSet, Value::ZSet(_))
                | (BlockKind::Stream, Value::Stream(_))
        )
    }
}

/// A client waiting for one of its keys to receive data.
#[derive(Debug)]
pub struct Blocked {
    /// The command to re-run when a key is ready.
    pub args: Vec<Bytes>,
    /// The type a ready key must hold for the client to be re-run.
    pub kind: BlockKind,
    /// The reply that releases the client when a ready key does not hold that type
    /// (`None`: it keeps waiting).
    pub gone: Option<Reply>,
    pub db: usize,
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
    /// The ready key a parked client is being served from, while its command re-runs
    /// (a stream reader is answered from that key alone, as in Redis).
    pub(crate) serving: Option<Bytes>,
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

    /// The blocked clients' ids.
    pub fn ids(&self) -> Vec<u64> {
        self.clients.keys().copied().collect()
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

    /// A blocked client's command and db, for re-running it.
    pub fn get(&self, id: u64) -> Option<&Blocked> {
        self.clients.get(&id)
    }
}

#[cfg(test)]
mod tests {
    use crate::client::Client;
    use crate::net::reply::Reply;
    use crate::store::Store;
    use crate::EngineConfig;
    use bytes::Bytes;

    #[test]
    fn no_block_clients_get_the_null_at_once() {
        // EXEC runs queued commands with `no_block` set: the handler must answer at
        // once and never ask to park the client. The same commands without the flag do
        // ask.
        let mut store = Store::new(EngineConfig::default());
        let cases: [(&[&str], Reply); 4] = [
            (&["BLPOP", "empty", "0"], Reply::NilArray),
            (&["BRPOP", "empty", "other", "0"], Reply::NilArray),
            (&["BLMOVE", "empty", "d", "LEFT", "LEFT", "0"], Reply::Nil),
            (&["BLMPOP", "0", "1", "empty", "LEFT"], Reply::NilArray),
        ];
        for (cmd, null) in cases {
            let args: Vec<Bytes> = cmd
                .iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect();
            for no_block in [true, false] {
                let mut client = Client::detached(9999, 0, 2);
                client.no_block = no_block;
                let reply = crate::command::execute(&mut store, &mut client, args.clone());
                if no_block {
                    assert_eq!(reply, null, "{cmd:?}");
                    assert!(client.block.is_none(), "{cmd:?} must not block in EXEC");
                } else {
                    assert!(client.block.is_some(), "{cmd:?} should block");
                }
            }
        }
        assert_eq!(store.blocking.count(), 0);
    }
}
