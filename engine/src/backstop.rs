//! TTL backstops: a maximum TTL for keys matching glob patterns, per database.
//!
//! Coherent's fourth consistency layer: a key a rule covers must not live forever
//! even if every delete of it were lost. After every write of a matching key (any
//! command: SET, HSET, LPUSH, EXPIRE, PERSIST, RENAME ...), the write path
//! (`crate::keyspace`) caps its TTL: a key without a TTL, or with a longer one, gets `now + max`; a key
//! with a shorter TTL keeps it (a backstop never lengthens a TTL). PERSIST of such a
//! key therefore re-applies the cap. The cap is propagated after the write as
//! PEXPIREAT, so a replica or the AOF holds the same TTL.
//!
//! Backstops are set by the process embedding the engine ([`Engine::set_ttl_backstops`]),
//! not by clients: CONFIG does not show or change them.

use crate::engine::Engine;
use crate::store::Store;
use crate::util::glob_match;
use std::collections::HashMap;
use std::time::Duration;

/// One backstop: keys matching `pattern` (Redis glob syntax) live at most `max_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backstop {
    /// The glob.
    pub pattern: Vec<u8>,
    /// The maximum TTL in milliseconds (at least 1).
    pub max_ms: u64,
}

/// The backstops of every database, and how often one capped a TTL.
#[derive(Debug, Default)]
pub struct Backstops {
    by_db: HashMap<usize, Vec<Backstop>>,
    applied: u64,
}

impl Backstops {
    /// The shortest maximum TTL among the backstops of `db` that match `key`.
    fn max_ttl(&self, db: usize, key: &[u8]) -> Option<u64> {
        self.by_db
            .get(&db)?
            .iter()
            .filter(|b| glob_match(&b.pattern, key, false))
            .map(|b| b.max_ms)
            .min()
    }

    /// Whether no database has a backstop (the write path's fast exit).
    pub fn is_empty(&self) -> bool {
        self.by_db.is_empty()
    }

    /// Times a write got its TTL added or shortened by a backstop.
    pub fn applied(&self) -> u64 {
        self.applied
    }
}

impl Store {
    /// Caps the TTL of `key` in `db` if a backstop covers it; called by the write path
    /// after every write, once the command set the key's value and its own TTL.
    /// Returns the expiry it set, if it set one.
    pub(crate) fn apply_backstop(&mut self, db: usize, key: &[u8]) -> Option<u64> {
        if self.backstops.is_empty() {
            return None;
        }
        let max = self.backstops.max_ttl(db, key)?;
        let now = self.now;
        let d = self.dbs.get_mut(db)?;
        // None: the write removed the key (DEL, RENAME's source, an emptied list).
        let at = d.expire_of(key, now)?;
        let cap = now.saturating_add(max);
        if at == 0 || at > cap {
            d.set_expire(key, cap, now);
            self.backstops.applied += 1;
            return Some(cap);
        }
        None
    }
}

impl Engine {
    /// Replaces the TTL backstops of database `db`: `(glob, max TTL)` pairs (a zero
    /// TTL is ignored). Keys already in the database are not changed; each gets its
    /// cap at its next write.
    pub fn set_ttl_backstops<P: AsRef<[u8]>>(&self, db: usize, backstops: &[(P, Duration)]) {
        let list: Vec<Backstop> = backstops
            .iter()
            .filter(|(_, ttl)| !ttl.is_zero())
            .map(|(p, ttl)| Backstop {
                pattern: p.as_ref().to_vec(),
                max_ms: (ttl.as_millis() as u64).max(1),
            })
            .collect();
        let mut store = self.shared().lock();
        if list.is_empty() {
            store.backstops.by_db.remove(&db);
        } else {
            store.backstops.by_db.insert(db, list);
        }
    }

    /// The backstops of database `db`.
    pub fn ttl_backstops(&self, db: usize) -> Vec<Backstop> {
        let store = self.shared().lock();
        store.backstops.by_db.get(&db).cloned().unwrap_or_default()
    }

    /// Times a write got its TTL added or shortened by a backstop (a metric).
    pub fn ttl_backstops_applied(&self) -> u64 {
        self.shared().lock().backstops.applied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EngineConfig, Reply};
    use bytes::Bytes;

    const HOUR: u64 = 3_600_000;

    fn run(e: &Engine, db: usize, args: &[&str]) -> Reply {
        e.execute(
            db,
            args.iter()
                .map(|a| Bytes::copy_from_slice(a.as_bytes()))
                .collect(),
        )
    }

    fn pttl(e: &Engine, db: usize, key: &str) -> i64 {
        match run(e, db, &["PTTL", key]) {
            Reply::Int(n) => n,
            r => panic!("PTTL replied {r:?}"),
        }
    }

    fn engine() -> Engine {
        let e = Engine::new(EngineConfig::default());
        e.set_ttl_backstops(
            0,
            &[
                ("user:*", Duration::from_secs(3600)),
                ("user:vip:*", Duration::from_secs(60)),
            ],
        );
        e
    }

    fn capped(ms: i64, max: u64) -> bool {
        ms > 0 && ms as u64 <= max && ms as u64 > max - 5_000
    }

    #[test]
    fn set_without_ttl_gets_the_cap() {
        let e = engine();
        run(&e, 0, &["SET", "user:1", "v"]);
        assert!(capped(pttl(&e, 0, "user:1"), HOUR));
        assert_eq!(e.ttl_backstops_applied(), 1);
    }

    #[test]
    fn longer_ttl_is_capped_shorter_is_kept() {
        let e = engine();
        run(&e, 0, &["SET", "user:1", "v", "EX", "7200"]);
        assert!(capped(pttl(&e, 0, "user:1"), HOUR));
        run(&e, 0, &["SET", "user:2", "v", "PX", "1500"]);
        let t = pttl(&e, 0, "user:2");
        assert!(t > 0 && t <= 1500, "{t}");
        run(&e, 0, &["EXPIRE", "user:2", "100000"]);
        assert!(capped(pttl(&e, 0, "user:2"), HOUR));
        run(&e, 0, &["EXPIRE", "user:2", "10"]);
        let t = pttl(&e, 0, "user:2");
        assert!(t > 0 && t <= 10_000, "{t}");
    }

    #[test]
    fn persist_reapplies_the_cap() {
        let e = engine();
        run(&e, 0, &["SET", "user:1", "v"]);
        assert_eq!(run(&e, 0, &["PERSIST", "user:1"]), Reply::Int(1));
        assert!(capped(pttl(&e, 0, "user:1"), HOUR));
        // SET KEEPTTL and GETEX PERSIST too.
        run(&e, 0, &["SET", "user:1", "w", "KEEPTTL"]);
        assert!(capped(pttl(&e, 0, "user:1"), HOUR));
        run(&e, 0, &["GETEX", "user:1", "PERSIST"]);
        assert!(capped(pttl(&e, 0, "user:1"), HOUR));
    }

    #[test]
    fn non_matching_keys_and_other_dbs_are_untouched() {
        let e = engine();
        run(&e, 0, &["SET", "order:1", "v"]);
        assert_eq!(pttl(&e, 0, "order:1"), -1);
        run(&e, 0, &["SET", "order:2", "v", "EX", "7200"]);
        assert!(capped(pttl(&e, 0, "order:2"), 2 * HOUR));
        run(&e, 1, &["SET", "user:1", "v"]);
        assert_eq!(pttl(&e, 1, "user:1"), -1);
        assert_eq!(e.ttl_backstops_applied(), 0);
    }

    #[test]
    fn the_shortest_matching_backstop_wins() {
        let e = engine();
        run(&e, 0, &["SET", "user:vip:1", "v"]);
        assert!(capped(pttl(&e, 0, "user:vip:1"), 60_000));
    }

    #[test]
    fn collections_and_renames_are_capped() {
        let e = engine();
        run(&e, 0, &["HSET", "user:h", "f", "v"]);
        assert!(capped(pttl(&e, 0, "user:h"), HOUR));
        run(&e, 0, &["LPUSH", "user:l", "a", "b"]);
        assert!(capped(pttl(&e, 0, "user:l"), HOUR));
        run(&e, 0, &["SADD", "user:s", "a"]);
        assert!(capped(pttl(&e, 0, "user:s"), HOUR));
        run(&e, 0, &["ZADD", "user:z", "1", "a"]);
        assert!(capped(pttl(&e, 0, "user:z"), HOUR));
        run(&e, 0, &["INCR", "user:n"]);
        assert!(capped(pttl(&e, 0, "user:n"), HOUR));
        run(&e, 0, &["SET", "plain", "v"]);
        run(&e, 0, &["RENAME", "plain", "user:renamed"]);
        assert!(capped(pttl(&e, 0, "user:renamed"), HOUR));
    }

    #[test]
    fn deletes_and_clearing_are_harmless() {
        let e = engine();
        run(&e, 0, &["SET", "user:1", "v"]);
        assert_eq!(run(&e, 0, &["DEL", "user:1"]), Reply::Int(1));
        assert_eq!(pttl(&e, 0, "user:1"), -2);
        e.set_ttl_backstops::<&str>(0, &[]);
        assert!(e.ttl_backstops(0).is_empty());
        run(&e, 0, &["SET", "user:1", "v"]);
        assert_eq!(pttl(&e, 0, "user:1"), -1);
    }

    #[test]
    fn config_does_not_show_backstops() {
        let e = engine();
        let r = run(&e, 0, &["CONFIG", "GET", "*"]);
        assert!(!format!("{r:?}").to_lowercase().contains("backstop"));
    }
}
