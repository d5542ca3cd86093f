//! Leases, as in Facebook's memcache (NSDI 2013): the table of outstanding fill tokens.
//!
//! A reader that misses gets a 64-bit token for the key (`LEASEGET`); a fill carrying
//! that token (`LEASESET`) is stored only while the token is still the key's current
//! one. Any modification of the key in between — DEL, UNLINK, a SET from another client,
//! expiry, the sidecar's binlog invalidation, FLUSHDB — voids the token, so a reader
//! that read the database before a writer's commit can no longer fill its old value
//! after the writer's delete (the stale-fill race).
//!
//! The same table stops thundering herds: at most one token per key per interval
//! (`lease-interval-ms`, default 10 s). Other readers get "wait" with the lease's
//! remaining time instead of a token; a lease older than the interval may be granted
//! again (the old token is then void), so a reader that died cannot block a key.
//!
//! The table never grows without bound: an entry leaves when its token is consumed,
//! voided, or older than the interval (a sweep runs with the active expiry cycle, and
//! every lookup drops a stale entry it meets).

use bytes::Bytes;
use std::collections::HashMap;

/// One outstanding lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The token handed to the reader: 1..=i64::MAX.
    pub token: u64,
    /// When it was granted, Unix ms.
    pub granted_at: u64,
}

impl Lease {
    fn live(&self, now: u64, interval: u64) -> bool {
        now < self.granted_at.saturating_add(interval)
    }
}

/// What a lease read on a missing key gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The caller holds the lease with this token.
    Token(u64),
    /// Another caller's lease is younger than the interval: retry after this many ms.
    Wait(u64),
}

/// Outstanding leases of every database.
#[derive(Debug, Default)]
pub struct LeaseTable {
    /// db -> key -> lease. Keyed per database so that a key event can look up by `&[u8]`.
    dbs: HashMap<usize, HashMap<Bytes, Lease>>,
    /// Leases granted since start (INFO-style counter).
    pub granted: u64,
    /// Tokens voided by a modification of their key.
    pub voided: u64,
}

impl LeaseTable {
    /// Number of outstanding leases (including ones past the interval not yet swept).
    pub fn len(&self) -> usize {
        self.dbs.values().map(|m| m.len()).sum()
    }

    /// Whether no lease is outstanding (checked after every write: no database keeps
    /// an empty map).
    pub fn is_empty(&self) -> bool {
        self.dbs.is_empty()
    }

    /// Drops the map of `db` once its last lease left.
    fn prune(&mut self, db: usize) {
        if self.dbs.get(&db).is_some_and(|m| m.is_empty()) {
            self.dbs.remove(&db);
        }
    }

    /// Grants a lease on a missing key, or tells the caller to wait.
    pub fn grant(&mut self, db: usize, key: &[u8], now: u64, interval: u64) -> Grant {
        let m = self.dbs.entry(db).or_default();
        if let Some(l) = m.get(key) {
            if l.live(now, interval) {
                let left = l.granted_at.saturating_add(interval) - now;
                return Grant::Wait(left.max(1));
            }
        }
        // Positive, so that it is a RESP integer (signed 64-bit) and never 0.
        let token = fastrand::u64(1..=i64::MAX as u64);
        m.insert(
            Bytes::copy_from_slice(key),
            Lease {
                token,
                granted_at: now,
            },
        );
        self.granted += 1;
        Grant::Token(token)
    }

    /// Consumes `token` if it is the key's current, live token; returns whether it was.
    /// A wrong token leaves the current lease in place (it belongs to someone else).
    pub fn consume(&mut self, db: usize, key: &[u8], token: u64, now: u64, interval: u64) -> bool {
        let Some(m) = self.dbs.get_mut(&db) else {
            return false;
        };
        let consumed = match m.get(key) {
            Some(l) if !l.live(now, interval) => {
                m.remove(key);
                false
            }
            Some(l) if l.token == token => {
                m.remove(key);
                true
            }
            _ => false,
        };
        self.prune(db);
        consumed
    }

    /// Milliseconds left of the key's lease, if it has a live one.
    pub fn remaining(&self, db: usize, key: &[u8], now: u64, interval: u64) -> Option<u64> {
        let l = self.dbs.get(&db)?.get(key)?;
        l.live(now, interval)
            .then(|| l.granted_at.saturating_add(interval) - now)
    }

    /// Voids the key's outstanding token (any modification of the key).
    pub fn void(&mut self, db: usize, key: &[u8]) {
        if let Some(m) = self.dbs.get_mut(&db) {
            if m.remove(key).is_some() {
                self.voided += 1;
                self.prune(db);
            }
        }
    }

    /// Voids every token of a database (FLUSHDB, FLUSHALL, SWAPDB).
    pub fn void_db(&mut self, db: usize) {
        if let Some(m) = self.dbs.remove(&db) {
            self.voided += m.len() as u64;
        }
    }

    /// Drops leases older than the interval; returns how many.
    pub fn sweep(&mut self, now: u64, interval: u64) -> usize {
        let mut n = 0;
        for m in self.dbs.values_mut() {
            let before = m.len();
            m.retain(|_, l| l.live(now, interval));
            n += before - m.len();
        }
        self.dbs.retain(|_, m| !m.is_empty());
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_token_per_interval_then_regrant() {
        let mut t = LeaseTable::default();
        let Grant::Token(a) = t.grant(0, b"k", 1000, 100) else {
            panic!("first reader gets the lease")
        };
        assert_eq!(t.grant(0, b"k", 1040, 100), Grant::Wait(60));
        assert_eq!(t.remaining(0, b"k", 1040, 100), Some(60));
        // Another database is another key.
        assert!(matches!(t.grant(1, b"k", 1040, 100), Grant::Token(_)));
        let Grant::Token(b) = t.grant(0, b"k", 1100, 100) else {
            panic!("an expired lease is granted again")
        };
        assert_ne!(a, b);
        assert!(!t.consume(0, b"k", a, 1101, 100), "the old token is void");
        assert!(t.consume(0, b"k", b, 1101, 100));
        assert!(!t.consume(0, b"k", b, 1101, 100), "a token fills once");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn void_and_sweep_leave_nothing_behind() {
        let mut t = LeaseTable::default();
        let Grant::Token(a) = t.grant(0, b"k", 0, 100) else {
            panic!()
        };
        t.void(0, b"k");
        assert!(!t.consume(0, b"k", a, 1, 100));
        for i in 0..100u32 {
            t.grant(0, &i.to_be_bytes(), 0, 100);
        }
        t.grant(2, b"x", 0, 100);
        t.void_db(2);
        assert_eq!(t.len(), 100);
        assert_eq!(t.sweep(99, 100), 0);
        assert_eq!(t.sweep(100, 100), 100);
        assert!(t.is_empty());
        assert!(t.dbs.is_empty());
    }
}
