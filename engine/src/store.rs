//! Everything the command handlers share, guarded by one lock: the databases and the
//! registries of clients, subscriptions, blocked clients and WATCHed keys.
//!
//! Like Redis's single thread, one lock makes every command atomic and keeps MULTI,
//! blocking pops and WATCH simple; connections parse and encode outside it.

use crate::blocking::Blocking;
use crate::client::Clients;
use crate::config::EngineConfig;
use crate::db::Db;
use crate::lease::LeaseTable;
use crate::notify;
use crate::pubsub::{PubSub, PushSender};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

/// Server-wide counters for INFO.
#[derive(Debug, Default, Clone)]
pub(crate) struct Stats {
    pub(crate) commands: u64,
    pub(crate) connections: u64,
    pub(crate) rejected_connections: u64,
    pub(crate) keyspace_hits: u64,
    pub(crate) keyspace_misses: u64,
    pub(crate) expired_keys: u64,
    pub(crate) evicted_keys: u64,
    pub(crate) net_input_bytes: u64,
    pub(crate) net_output_bytes: u64,
    /// Changes since start, like Redis's `server.dirty`.
    pub(crate) dirty: u64,
}

/// Hooks run on every key modification, for layers above the engine (leases, TTL
/// backstops) that must see each write.
pub trait KeyHook: Send + Sync + std::fmt::Debug {
    /// Called after `key` in `db` was modified by `event`.
    fn modified(&self, db: usize, key: &[u8], event: &str);
}

/// The shared state.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) dbs: Vec<Db>,
    pub(crate) config: EngineConfig,
    pub(crate) pubsub: PubSub,
    pub(crate) blocking: Blocking,
    /// (db, key) -> clients watching it.
    watches: HashMap<(usize, Bytes), Vec<u64>>,
    /// Clients whose watched keys changed: their EXEC fails.
    dirty_cas: HashSet<u64>,
    /// (client, db, key) -> whether the key had already expired when it was watched.
    watched_flags: HashMap<(u64, usize, Bytes), bool>,
    /// TTL backstops set by the embedding process (see [`crate::backstop`]).
    pub(crate) backstops: crate::backstop::Backstops,
    /// Connected clients (see [`crate::client`]).
    pub(crate) clients: Clients,
    pub(crate) stats: Stats,
    /// The time of the current command, in Unix ms (cached as Redis does).
    pub(crate) now: u64,
    pub(crate) started: Instant,
    notify_flags: u32,
    /// Set by SHUTDOWN.
    pub(crate) shutdown_requested: bool,
    /// DEBUG SET-ACTIVE-EXPIRE.
    pub(crate) active_expire: bool,
    hooks: Vec<Arc<dyn KeyHook>>,
    /// Outstanding lease tokens (LEASEGET/LEASESET); every modification voids them.
    pub(crate) leases: LeaseTable,
}

impl Store {
    /// A store with `config.databases` empty databases.
    pub(crate) fn new(config: EngineConfig) -> Self {
        let notify_flags = notify::parse_flags(&config.notify_keyspace_events).unwrap_or(0);
        Store {
            dbs: (0..config.databases).map(|_| Db::default()).collect(),
            config,
            pubsub: PubSub::default(),
            blocking: Blocking::default(),
            watches: HashMap::new(),
            dirty_cas: HashSet::new(),
            watched_flags: HashMap::new(),
            backstops: Default::default(),
            clients: Clients::default(),
            stats: Stats::default(),
            now: crate::util::now_ms(),
            started: Instant::now(),
            notify_flags,
            shutdown_requested: false,
            active_expire: true,
            hooks: Vec::new(),
            leases: LeaseTable::default(),
        }
    }

    /// Registers a new connection; returns its client id. Its pushes (pub/sub
    /// messages, keyspace notifications) go to `push`; `kill` wakes it on CLIENT KILL.
    pub(crate) fn connect(
        &mut self,
        addr: String,
        laddr: String,
        push: PushSender,
        kill: Arc<Notify>,
    ) -> u64 {
        self.stats.connections += 1;
        let authed = self.config.requirepass.is_none();
        let id = self.clients.connect(addr, laddr, authed, kill);
        self.pubsub.register(id, push);
        id
    }

    /// Forgets a closed connection: its blocked command, WATCHes and subscriptions.
    pub(crate) fn disconnect(&mut self, id: u64) {
        self.blocking.unblock(id);
        match self.clients.disconnect(id) {
            Some(c) => {
                self.unwatch(id, &c.watched);
                self.pubsub.unregister(id, &c.channels, &c.patterns);
            }
            None => self
                .pubsub
                .unregister(id, &Default::default(), &Default::default()),
        }
    }

    /// Adds a modification hook.
    pub(crate) fn add_hook(&mut self, hook: Arc<dyn KeyHook>) {
        self.hooks.push(hook);
    }

    /// Re-reads `notify-keyspace-events` after CONFIG SET.
    pub(crate) fn reload_notify_flags(&mut self) {
        self.notify_flags = notify::parse_flags(&self.config.notify_keyspace_events).unwrap_or(0);
    }

    /// Records that a key changed: WATCH, blocked clients, hooks, notifications.
    pub(crate) fn key_event(&mut self, db: usize, class: u32, event: &str, key: &[u8]) {
        self.apply_backstop(db, key);
        self.touch(db, key);
        self.leases.void(db, key);
        self.stats.dirty += 1;
        self.notify(db, class, event, key);
        for h in &self.hooks {
            h.modified(db, key, event);
        }
    }

    /// Marks a key modified for WATCH and wakes clients blocked on it.
    pub(crate) fn touch(&mut self, db: usize, key: &[u8]) {
        self.blocking.signal(db, key);
        if !self.watches.is_empty() {
            if let Some(ids) = self.watches.get(&(db, Bytes::copy_from_slice(key))) {
                self.dirty_cas.extend(ids.iter().copied());
            }
        }
    }

    /// Redis's `touchAllWatchedKeysInDb`, for FLUSHDB, FLUSHALL and SWAPDB: call it
    /// BEFORE `db` is emptied or swapped with `replaced_with`. Unlike `touch_db`, only
    /// watchers of keys that exist in either database are invalidated, so a WATCH on a
    /// missing key survives FLUSHALL, exactly as in Redis. SWAPDB a b calls it twice,
    /// `(a, Some(b))` and `(b, Some(a))`, before swapping; blocked clients still need
    /// `blocking.signal_db` afterwards.
    pub(crate) fn touch_db_watchers(&mut self, db: usize, replaced_with: Option<usize>) {
        self.leases.void_db(db);
        let now = self.now;
        let keys: Vec<Bytes> = self
            .watches
            .keys()
            .filter(|(d, _)| *d == db)
            .map(|(_, k)| k.clone())
            .collect();
        for key in keys {
            let exists = self.dbs[db].contains_raw(&key);
            let (in_other, other_expired) = match replaced_with.and_then(|o| self.dbs.get(o)) {
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
                .watches
                .get(&(db, key.clone()))
                .cloned()
                .unwrap_or_default();
            for id in ids {
                let fk = (id, db, key.clone());
                let was_expired = self.watched_flags.get(&fk).copied().unwrap_or(false);
                if was_expired {
                    if !in_other {
                        // The expired key is gone: logically nothing changed.
                        self.watched_flags.insert(fk, false);
                        continue;
                    } else if other_expired {
                        continue;
                    }
                } else if !exists && other_expired {
                    // A missing key replaced by an expired one: still logically missing.
                    self.watched_flags.insert(fk, true);
                    continue;
                }
                self.dirty_cas.insert(id);
            }
        }
    }

    /// Whether a client's watched key had already expired when it was watched (or
    /// became "expired" through SWAPDB); EXEC ignores such keys' expiry.
    pub(crate) fn watched_expired(&self, id: u64, db: usize, key: &Bytes) -> bool {
        self.watched_flags
            .get(&(id, db, key.clone()))
            .copied()
            .unwrap_or(false)
    }

    /// Publishes a keyspace notification if its class is enabled.
    pub(crate) fn notify(&mut self, db: usize, class: u32, event: &str, key: &[u8]) {
        let f = self.notify_flags;
        if f & class == 0 || !self.pubsub.has_subscribers() {
            return;
        }
        if f & notify::KEYSPACE != 0 {
            let mut ch = format!("__keyspace@{db}__:").into_bytes();
            ch.extend_from_slice(key);
            self.pubsub.publish(&ch, event.as_bytes());
        }
        if f & notify::KEYEVENT != 0 {
            let ch = format!("__keyevent@{db}__:{event}");
            self.pubsub.publish(ch.as_bytes(), key);
        }
    }

    /// Publishes `expired` events for keys the databases expired lazily or actively.
    pub(crate) fn flush_expired(&mut self) {
        // Runs after every command and usually finds nothing: a tight scan for the
        // next database with pending keys (indexing each of 16 cost ~200 instructions).
        let mut next = 0;
        while let Some(found) = self.dbs[next..].iter().position(|d| !d.expired.is_empty()) {
            let db = next + found;
            next = db + 1;
            let keys = std::mem::take(&mut self.dbs[db].expired);
            for k in keys {
                self.stats.expired_keys += 1;
                self.touch_expired(db, &k);
                self.leases.void(db, &k);
                self.stats.dirty += 1;
                self.notify(db, notify::EXPIRED, "expired", &k);
                for h in &self.hooks {
                    h.modified(db, &k, "expired");
                }
            }
        }
    }

    fn touch_expired(&mut self, db: usize, key: &Bytes) {
        // Clients that watched the key after it had already expired are not affected by
        // its deletion (Redis 7.0's `expired` flag on watched keys).
        if let Some(ids) = self.watches.get(&(db, key.clone())) {
            let ids = ids.clone();
            for id in ids {
                let already = self
                    .watched_flags
                    .get(&(id, db, key.clone()))
                    .copied()
                    .unwrap_or(false);
                if !already {
                    self.dirty_cas.insert(id);
                }
            }
        }
    }

    /// WATCH: registers a client's interest in a key.
    pub(crate) fn watch(&mut self, id: u64, db: usize, key: Bytes, expired: bool) {
        let ids = self.watches.entry((db, key.clone())).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
        self.watched_flags.insert((id, db, key), expired);
    }

    /// UNWATCH (and end of EXEC/DISCARD): forgets a client's watched keys.
    pub(crate) fn unwatch(&mut self, id: u64, keys: &[(usize, Bytes, bool)]) {
        for (db, key, _) in keys {
            let k = (*db, key.clone());
            if let Some(ids) = self.watches.get_mut(&k) {
                ids.retain(|&c| c != id);
                if ids.is_empty() {
                    self.watches.remove(&k);
                }
            }
            self.watched_flags.remove(&(id, *db, key.clone()));
        }
        self.dirty_cas.remove(&id);
    }

    /// Whether a client's watched keys changed since WATCH.
    pub(crate) fn is_dirty(&self, id: u64) -> bool {
        self.dirty_cas.contains(&id)
    }

    /// Voids the lease tokens of keys a write command named, whether or not it changed
    /// them: a DEL of a key that is already missing must still void the token of a
    /// reader that missed it (that is the stale-fill race), and DEL does not signal a
    /// key it did not find. Voiding too often only refuses a fill; too rarely is a bug.
    pub(crate) fn void_leases(&mut self, db: usize, keys: &[&Bytes]) {
        if self.leases.is_empty() {
            return;
        }
        for k in keys {
            self.leases.void(db, k);
        }
    }

    /// Publishes a message; returns the receivers (PUBLISH).
    pub(crate) fn publish(&mut self, channel: &[u8], message: &[u8]) -> i64 {
        self.pubsub.publish(channel, message)
    }

    /// Keys in all databases.
    pub(crate) fn total_keys(&self) -> usize {
        self.dbs.iter().map(|d| d.len()).sum()
    }

    /// The counters the embedding process sees ([`crate::Engine::stats`]).
    pub(crate) fn stats(&self) -> crate::EngineStats {
        let st = &self.stats;
        crate::EngineStats {
            keys: self.total_keys() as u64,
            expires: self.dbs.iter().map(|d| d.volatile_len() as u64).sum(),
            connected_clients: self.clients.connected() as u64,
            blocked_clients: self.blocking.count() as u64,
            commands_processed: st.commands,
            connections_received: st.connections,
            rejected_connections: st.rejected_connections,
            expired_keys: st.expired_keys,
            evicted_keys: st.evicted_keys,
            changes: st.dirty,
            leases_outstanding: self.leases.len() as u64,
            leases_granted: self.leases.granted,
            leases_voided: self.leases.voided,
            ttl_backstops_applied: self.backstops.applied(),
        }
    }

    /// Runs one active expiry pass over every database, as Redis's `activeExpireCycle`:
    /// sample 20 volatile keys per database, repeat while more than a quarter expired,
    /// within a time budget.
    pub(crate) fn active_expire_cycle(&mut self, budget: std::time::Duration) {
        if !self.active_expire {
            return;
        }
        let start = Instant::now();
        self.now = crate::util::now_ms();
        for db in 0..self.dbs.len() {
            loop {
                let (sampled, expired) = self.dbs[db].expire_sample(20, self.now);
                if sampled == 0 || expired * 4 <= sampled || start.elapsed() > budget {
                    break;
                }
            }
        }
        self.leases.sweep(self.now, self.config.lease_interval_ms);
        self.flush_expired();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Value;

    fn store_with(keys: &[(usize, &str, Option<u64>)]) -> Store {
        let mut s = Store::new(EngineConfig::default());
        s.now = 1_000_000;
        for &(db, k, ttl_at) in keys {
            s.dbs[db].insert(Bytes::from(k.to_string()), Value::Str("v".into()), 1);
            if let Some(at) = ttl_at {
                s.dbs[db].set_expire(k.as_bytes(), at, 1);
            }
        }
        s
    }

    #[test]
    fn modifications_void_leases() {
        use crate::lease::Grant;
        let mut s = store_with(&[]);
        let grant = |s: &mut Store, k: &[u8]| s.leases.grant(0, k, 1_000_000, 10_000);
        assert!(matches!(grant(&mut s, b"a"), Grant::Token(_)));
        assert!(matches!(grant(&mut s, b"b"), Grant::Token(_)));
        assert!(matches!(grant(&mut s, b"c"), Grant::Token(_)));
        s.key_event(0, notify::GENERIC, "del", b"a");
        s.dbs[0].expired.push(Bytes::from("b"));
        s.flush_expired();
        assert_eq!(s.leases.len(), 1);
        s.touch_db_watchers(0, None);
        assert!(s.leases.is_empty());
    }

    #[test]
    fn flush_invalidates_only_watchers_of_existing_keys() {
        let mut s = store_with(&[(0, "here", None)]);
        s.watch(1, 0, Bytes::from("here"), false);
        s.watch(2, 0, Bytes::from("missing"), false);
        s.touch_db_watchers(0, None);
        assert!(s.is_dirty(1));
        assert!(!s.is_dirty(2));
    }

    #[test]
    fn swapdb_follows_redis_expired_rules() {
        // db 1 holds "k" live, "old" expired; db 0 holds "gone" expired.
        let mut s = store_with(&[(1, "k", None), (1, "old", Some(10)), (0, "gone", Some(10))]);
        s.watch(1, 0, Bytes::from("k"), false); // missing -> live: changed
        s.watch(2, 0, Bytes::from("old"), false); // missing -> expired: no change
        s.watch(3, 0, Bytes::from("gone"), true); // expired -> missing: no change
        s.watch(4, 0, Bytes::from("none"), false); // missing in both
        s.touch_db_watchers(0, Some(1));
        assert!(s.is_dirty(1));
        assert!(!s.is_dirty(2));
        assert!(s.watched_expired(2, 0, &Bytes::from("old")));
        assert!(!s.is_dirty(3));
        assert!(!s.watched_expired(3, 0, &Bytes::from("gone")));
        assert!(!s.is_dirty(4));
    }
}
