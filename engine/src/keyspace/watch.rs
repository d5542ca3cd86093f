//! WATCH: which clients watch which keys, and whose transaction a change dooms
//! (Redis's `multi.c` watched-keys dictionary and `CLIENT_DIRTY_CAS`).

use crate::keyspace::db::Db;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};

/// The WATCH registry.
#[derive(Debug, Default)]
pub(crate) struct Watches {
    /// (db, key) -> clients watching it.
    keys: HashMap<(usize, Bytes), Vec<u64>>,
    /// Clients whose watched keys changed: their EXEC fails.
    dirty: HashSet<u64>,
    /// (client, db, key) -> whether the key had already expired when it was watched.
    expired: HashMap<(u64, usize, Bytes), bool>,
}

impl Watches {
    /// WATCH: registers a client's interest in a key.
    pub(crate) fn watch(&mut self, id: u64, db: usize, key: Bytes, expired: bool) {
        let ids = self.keys.entry((db, key.clone())).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
        self.expired.insert((id, db, key), expired);
    }

    /// UNWATCH (and end of EXEC/DISCARD, disconnect): forgets a client's watched keys.
    pub(crate) fn unwatch(&mut self, id: u64, keys: &[(usize, Bytes, bool)]) {
        for (db, key, _) in keys {
            let k = (*db, key.clone());
            if let Some(ids) = self.keys.get_mut(&k) {
                ids.retain(|&c| c != id);
                if ids.is_empty() {
                    self.keys.remove(&k);
                }
            }
            self.expired.remove(&(id, *db, key.clone()));
        }
        self.dirty.remove(&id);
    }

    /// Whether a client's watched keys changed since WATCH.
    pub(crate) fn is_dirty(&self, id: u64) -> bool {
        self.dirty.contains(&id)
    }

    /// Whether a client's watched key had already expired when it was watched (or
    /// became "expired" through SWAPDB); EXEC ignores such keys' expiry.
    pub(crate) fn watched_expired(&self, id: u64, db: usize, key: &Bytes) -> bool {
        self.expired
            .get(&(id, db, key.clone()))
            .copied()
            .unwrap_or(false)
    }

    /// A key changed: its watchers' transactions fail.
    pub(crate) fn touch(&mut self, db: usize, key: &[u8]) {
        if self.keys.is_empty() {
            return;
        }
        if let Some(ids) = self.keys.get(&(db, Bytes::copy_from_slice(key))) {
            self.dirty.extend(ids.iter().copied());
        }
    }

    /// A key expired. Clients that watched it after it had already expired are not
    /// affected by its deletion (Redis 7.0's `expired` flag on watched keys).
    pub(crate) fn touch_expired(&mut self, db: usize, key: &[u8]) {
        if self.keys.is_empty() {
            return;
        }
        let key = Bytes::copy_from_slice(key);
        if let Some(ids) = self.keys.get(&(db, key.clone())) {
            for &id in ids {
                let already = self
                    .expired
                    .get(&(id, db, key.clone()))
                    .copied()
                    .unwrap_or(false);
                if !already {
                    self.dirty.insert(id);
                }
            }
        }
    }

    /// Redis's `touchAllWatchedKeysInDb`, for FLUSHDB, FLUSHALL and SWAPDB: call it
    /// BEFORE `db` is emptied or swapped with `replaced_with`. Only watchers of keys
    /// that exist in either database are invalidated, so a WATCH on a missing key
    /// survives FLUSHALL, exactly as in Redis. SWAPDB a b calls it twice, `(a, Some(b))`
    /// and `(b, Some(a))`, before swapping.
    pub(crate) fn touch_db(
        &mut self,
        dbs: &[Db],
        db: usize,
        replaced_with: Option<usize>,
        now: u64,
    ) {
        let keys: Vec<Bytes> = self
            .keys
            .keys()
            .filter(|(d, _)| *d == db)
            .map(|(_, k)| k.clone())
            .collect();
        for key in keys {
            let exists = dbs.get(db).is_some_and(|d| d.contains_raw(&key));
            let (in_other, other_expired) = match replaced_with.and_then(|o| dbs.get(o)) {
                Some(o) => (
                    o.contains_raw(&key),
                    o.contains_raw(&key) && !o.is_live(&key, now),
                ),
                None => (false, false),
            };
            if !exists && !in_other {
                continue;
            }
            let ids = self
                .keys
                .get(&(db, key.clone()))
                .cloned()
                .unwrap_or_default();
            for id in ids {
                let fk = (id, db, key.clone());
                let was_expired = self.expired.get(&fk).copied().unwrap_or(false);
                if was_expired {
                    if !in_other {
                        // The expired key is gone: logically nothing changed.
                        self.expired.insert(fk, false);
                        continue;
                    } else if other_expired {
                        continue;
                    }
                } else if !exists && other_expired {
                    // A missing key replaced by an expired one: still logically missing.
                    self.expired.insert(fk, true);
                    continue;
                }
                self.dirty.insert(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Value;

    const NOW: u64 = 1_000_000;

    /// Databases holding `(db, key, expiry)` (expiry 0: none).
    fn dbs(keys: &[(usize, &str, u64)]) -> Vec<Db> {
        let mut dbs: Vec<Db> = (0..2).map(|_| Db::default()).collect();
        for &(db, k, at) in keys {
            dbs[db].insert(k, Value::Str("v".into()), 1);
            if at != 0 {
                dbs[db].set_expire(k.as_bytes(), at, 1);
            }
        }
        dbs
    }

    #[test]
    fn swapdb_follows_redis_expired_rules() {
        // db 1 holds "k" live, "old" expired; db 0 holds "gone" expired.
        let dbs = dbs(&[(1, "k", 0), (1, "old", 10), (0, "gone", 10)]);
        let mut w = Watches::default();
        w.watch(1, 0, Bytes::from("k"), false); // missing -> live: changed
        w.watch(2, 0, Bytes::from("old"), false); // missing -> expired: no change
        w.watch(3, 0, Bytes::from("gone"), true); // expired -> missing: no change
        w.watch(4, 0, Bytes::from("none"), false); // missing in both
        w.touch_db(&dbs, 0, Some(1), NOW);
        assert!(w.is_dirty(1));
        assert!(!w.is_dirty(2));
        assert!(w.watched_expired(2, 0, &Bytes::from("old")));
        assert!(!w.is_dirty(3));
        assert!(!w.watched_expired(3, 0, &Bytes::from("gone")));
        assert!(!w.is_dirty(4));
    }
}
