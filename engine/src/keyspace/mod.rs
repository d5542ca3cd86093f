//! The keyspace's write path: where a write's side effects go.
//!
//! A change reaches the keyspace in one of these ways, and each passes one function,
//! [`Store::changed`], which hands it to every consumer in a fixed order:
//!
//! | change | announced by | when |
//! |---|---|---|
//! | a command changed a key | [`Store::key_changed`] (handlers: `Ctx::key_event`) | after the entry changed |
//! | a key expired, lazily or by the active cycle | [`Store::flush_expired`] | after each command / cycle |
//! | FLUSHDB, FLUSHALL | [`Store::flush`] | just before the databases are emptied |
//! | SWAPDB | [`Store::swap`] | just before the databases trade contents |
//! | a key was evicted under `maxmemory` ([`evict`]) | [`Store::announce_evicted`] | after it was removed |
//!
//! A command of any origin
//! — a client, EXEC, a blocked client served, the sidecar's in-process deletes
//! (`Engine::execute`), LEASESET's fill — writes through the same handlers, so it
//! reaches the same function. The consumers, in order:
//!
//! 1. the TTL backstop ([`crate::backstop`]) caps a covered key's TTL after a write;
//! 2. `OBJECT WRITTEN`: the entry's write time, for changes of a value;
//! 3. WATCH: watchers of the key (or of any existing key of a flushed database) get
//!    their EXEC refused ([`watch`]), except for changes Redis does not signal to
//!    watchers (a stream's consumer-group state, XSETID: `Store::key_changed_unwatched`);
//! 4. clients blocked on the key are queued to be served after the command;
//! 5. lease tokens of the key (or database) are voided ([`crate::lease`]);
//! 6. `stats.dirty` (and `expired_keys`) count it;
//! 7. keyspace notifications are published (`notify-keyspace-events`);
//! 8. propagation: an expired key goes out as DEL ([`propagate`]);
//! 9. the embedding process's [`KeyHook`]s see it.
//!
//! Client-side caching ([`tracking`]) is one more consumer, placed where Redis calls
//! it: with WATCH for a command's change (`signalModifiedKey`), after the
//! notification for an expired or evicted key, and a null invalidation for a flush
//! or a SWAPDB.
//!
//! Per command rather than per change, [`Store::command_done`] voids the leases of
//! every key a write command names (a DEL of a missing key must still void a reader's
//! token) and propagates the command itself, as its handler rewrote it
//! ([`propagate`]); the end of each execution unit hands the unit to the propagation
//! sinks (the AOF and replication will be sinks). Below all of this, every mutating
//! method of [`crate::keyspace::db::Db`] passes its snapshot hook ([`crate::keyspace::db::BeforeWrite`])
//! before it changes or removes an entry, so a point-in-time snapshot can save the old
//! entry first.
//!
//! No command handler knows about any consumer: a handler changes a [`crate::keyspace::db::Db`]
//! and announces the change.

pub(crate) mod db;
pub(crate) mod evict;
pub(crate) mod expire;
pub(crate) mod notify;
pub(crate) mod propagate;
pub(crate) mod tinylfu;
pub(crate) mod tracking;
pub(crate) mod watch;

use crate::command::{CommandSpec, LEASE_AWARE, WRITE};
use crate::store::Store;
use bytes::Bytes;
use propagate::Own;

/// One change to the keyspace, as its consumers see it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Change<'a> {
    /// A command changed `key` in `db`; `event` is its keyspace-notification name
    /// (`set`, `lpush`, `del`, `rename_from`, ...) of notification class `class`.
    Key {
        db: usize,
        key: &'a [u8],
        class: u32,
        event: &'a str,
        /// Whether WATCHers of the key see it (Redis's `signalModifiedKey`).
        watched: bool,
    },
    /// `key` passed its TTL and was removed.
    Expired { db: usize, key: &'a [u8] },
    /// `key` was removed to bring memory under `maxmemory`.
    Evicted { db: usize, key: &'a [u8] },
    /// `db` (FLUSHDB), or every database (`None`, FLUSHALL), is about to be emptied.
    Flushed { db: Option<usize> },
    /// `a` and `b` are about to trade contents (SWAPDB).
    Swapped { a: usize, b: usize },
}

/// A consumer of keyspace changes in the embedding process (Coherent's lag
/// measurement, tests). Called under the store's lock: it should only record.
pub trait KeyHook: Send + Sync + std::fmt::Debug {
    /// `key` in database `db` was changed by `event`, a keyspace-notification name
    /// (`set`, `del`, `lpush`, `expired`, `rename_to`, ...).
    fn modified(&self, db: usize, key: &[u8], event: &str);

    /// Every key of database `db` (FLUSHDB), or of every database (`None`, FLUSHALL),
    /// is about to go.
    fn flushed(&self, db: Option<usize>) {
        let _ = db;
    }

    /// Databases `a` and `b` are about to trade contents (SWAPDB): every key of both
    /// may change. By default, reported as both flushed.
    fn swapped(&self, a: usize, b: usize) {
        self.flushed(Some(a));
        self.flushed(Some(b));
    }
}

/// Events that change a key's TTL or remove it, not its value: they leave the write
/// time (OBJECT WRITTEN) alone.
fn changes_value(event: &str) -> bool {
    !matches!(
        event,
        "del" | "expire" | "persist" | "rename_from" | "move_from"
    )
}

impl Store {
    /// A command changed `key` in `db` (Redis's `signalModifiedKey` plus
    /// `notifyKeyspaceEvent`): call once per key a write changed, after changing it.
    pub(crate) fn key_changed(&mut self, db: usize, key: &[u8], class: u32, event: &str) {
        self.changed(Change::Key {
            db,
            key,
            class,
            event,
            watched: true,
        });
    }

    /// A change Redis notifies but does not signal to WATCH (`notifyKeyspaceEvent`
    /// without `signalModifiedKey`): a stream's consumer-group state, XSETID. Every
    /// other consumer of the write path sees it as any change.
    pub(crate) fn key_changed_unwatched(&mut self, db: usize, key: &[u8], class: u32, event: &str) {
        self.changed(Change::Key {
            db,
            key,
            class,
            event,
            watched: false,
        });
    }

    /// FLUSHDB (`Some(db)`) or FLUSHALL (`None`): announces, then empties.
    pub(crate) fn flush(&mut self, db: Option<usize>) {
        self.flush_with(db, false);
    }

    /// [`Store::flush`]; with `lazy` (ASYNC), the old contents are freed on the
    /// lazy-free thread.
    pub(crate) fn flush_with(&mut self, db: Option<usize>, lazy: bool) {
        self.changed(Change::Flushed { db });
        let dbs = match db {
            Some(d) => d..d + 1,
            None => 0..self.dbs.len(),
        };
        for d in dbs {
            let db = &mut self.dbs[d];
            if lazy {
                let keys = db.len() as u64;
                crate::lazyfree::free_objects(db.take_contents(), keys);
            } else {
                db.clear();
            }
        }
    }

    /// Puts a loaded database in place of database `i` (call [`Store::flush`] first so
    /// consumers saw it emptied); a database beyond `databases` is dropped.
    pub(crate) fn replace_db(&mut self, i: usize, db: db::Db) {
        if let Some(slot) = self.dbs.get_mut(i) {
            slot.replace_contents(db);
        }
    }

    /// Replaces every database and the function libraries with those of a loaded
    /// file (consumers see a FLUSHALL first); returns the rest of what was loaded. A
    /// library that cannot be created fails the load before anything is replaced.
    pub(crate) fn load_dbs(
        &mut self,
        mut loaded: crate::persist::rdb::Loaded,
    ) -> Result<crate::persist::rdb::Loaded, crate::persist::rdb::RdbError> {
        // The file's libraries replace the current ones (Redis's `emptyData` flushes
        // them with the data before a load).
        let run = self.scripting.run.clone();
        let functions = self
            .scripting
            .functions
            .staged(&loaded.functions, &run)
            .map_err(crate::persist::rdb::RdbError::Library)?;
        self.scripting.functions = functions;
        run.set_counts(self.scripting.functions.counts());
        self.flush(None);
        for (i, db) in std::mem::take(&mut loaded.dbs).into_iter().enumerate() {
            self.replace_db(i, db);
        }
        Ok(loaded)
    }

    /// SWAPDB `a` `b` (distinct): announces, then swaps.
    pub(crate) fn swap(&mut self, a: usize, b: usize) {
        self.changed(Change::Swapped { a, b });
        let (lo, hi) = (a.min(b), a.max(b));
        let (left, right) = self.dbs.split_at_mut(hi);
        left[lo].swap_contents(&mut right[0]);
    }

    /// Announces a key eviction removed (Redis's `performEvictions`: the key is
    /// signalled modified, `evicted` is notified and its deletion propagated).
    pub(crate) fn announce_evicted(&mut self, db: usize, key: &[u8]) {
        self.changed(Change::Evicted { db, key });
    }

    /// Announces the keys the databases expired, lazily or actively, since the last
    /// call (after every command and expiry cycle).
    pub(crate) fn flush_expired(&mut self) {
        // Runs after every command and usually finds nothing.
        if !self.expired_flag.take() {
            return;
        }
        let mut next = 0;
        while let Some(found) = self.dbs[next..].iter().position(|d| !d.expired.is_empty()) {
            let db = next + found;
            next = db + 1;
            let keys = std::mem::take(&mut self.dbs[db].expired);
            for k in &keys {
                self.changed(Change::Expired { db, key: k });
            }
        }
    }

    /// A command ran in `db` as `args`; `changed` tells whether it changed the
    /// keyspace, `outer` is what [`propagate::Propagation::begin_command`] returned
    /// (`None` when nothing is propagated).
    #[inline]
    pub(crate) fn command_done(
        &mut self,
        spec: &CommandSpec,
        args: &[Bytes],
        db: usize,
        changed: bool,
        outer: Option<Own>,
    ) {
        // A write voids the lease tokens of every key it names, changed or not: a DEL
        // of a missing key must void the token of a reader that missed it (the
        // stale-fill race), and DEL announces no key it did not find. Voiding too often
        // only refuses a fill; too rarely is a bug. LEASESET checks tokens itself.
        // Checked first so writes pay nothing while no lease is outstanding.
        if spec.flags & WRITE != 0 && spec.flags & LEASE_AWARE == 0 && !self.leases.is_empty() {
            for k in spec.keys(args) {
                self.leases.void(db, k);
            }
        }
        if let Some(outer) = outer {
            // EXEC is not a write: its commands propagated themselves.
            let own = changed && spec.flags & WRITE != 0;
            self.propagation.end_command(db, args, own, outer);
        }
    }

    /// The one place every change passes.
    fn changed(&mut self, change: Change) {
        match change {
            Change::Key {
                db,
                key,
                class,
                event,
                watched,
            } => {
                if let Some(at) = self.apply_backstop(db, key) {
                    let at = at.to_string();
                    self.propagation.after(
                        db,
                        vec![
                            Bytes::from_static(b"PEXPIREAT"),
                            Bytes::copy_from_slice(key),
                            Bytes::from(at),
                        ],
                    );
                }
                if changes_value(event) {
                    let now = self.now;
                    self.dbs[db].stamp_written(key, now);
                }
                if watched {
                    self.watches.touch(db, key);
                    // Redis's signalModifiedKey: WATCH and tracking, together.
                    self.track_invalidate(key, true);
                }
                self.blocking.signal(db, key);
                self.leases.void(db, key);
                self.stats.dirty += 1;
                self.notify(db, class, event, key);
                for h in &self.hooks {
                    h.modified(db, key, event);
                }
            }
            Change::Expired { db, key } => {
                self.stats.expired_keys += 1;
                self.watches.touch_expired(db, key);
                self.leases.void(db, key);
                self.stats.dirty += 1;
                self.notify(db, notify::EXPIRED, "expired", key);
                self.track_invalidate(key, false);
                self.propagation.expired(db, key);
                for h in &self.hooks {
                    h.modified(db, key, "expired");
                }
            }
            Change::Evicted { db, key } => {
                // Not counted in `dirty`, as in Redis: eviction is no change a client
                // asked for, and a snapshot need not be taken for it.
                self.stats.evicted_keys += 1;
                self.watches.touch(db, key);
                self.leases.void(db, key);
                self.notify(db, notify::EVICTED, "evicted", key);
                self.track_invalidate(key, false);
                let lazy = self.config.lazyfree_lazy_eviction;
                self.propagation.deleted(db, key, lazy);
                for h in &self.hooks {
                    h.modified(db, key, "evicted");
                }
            }
            Change::Flushed { db } => {
                let now = self.now;
                let dbs = match db {
                    Some(d) => d..d + 1,
                    None => 0..self.dbs.len(),
                };
                for d in dbs {
                    // WATCH is invalidated only for keys that exist: look before clearing.
                    self.watches.touch_db(&self.dbs, d, None, now);
                    self.blocking.signal_db(d);
                    self.leases.void_db(d);
                }
                self.stats.dirty += 1;
                self.track_flush();
                for h in &self.hooks {
                    h.flushed(db);
                }
            }
            Change::Swapped { a, b } => {
                // Watchers of keys that exist on either side see them change (before
                // the swap, as Redis's touchAllWatchedKeysInDb); blocked clients may
                // find data.
                let now = self.now;
                self.watches.touch_db(&self.dbs, a, Some(b), now);
                self.watches.touch_db(&self.dbs, b, Some(a), now);
                self.blocking.signal_db(a);
                self.blocking.signal_db(b);
                self.leases.void_db(a);
                self.leases.void_db(b);
                // Redis 7.0 tells tracking clients nothing here, leaving their
                // caches stale; Coherent treats it as the flush it is to them.
                self.track_flush();
                self.stats.dirty += 1;
                for h in &self.hooks {
                    h.swapped(a, b);
                }
            }
        }
    }

    /// Publishes a keyspace notification if its class is enabled.
    fn notify(&mut self, db: usize, class: u32, event: &str, key: &[u8]) {
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
}

#[cfg(test)]
mod tests {
    use super::propagate::{Propagated, PropagationSink};
    use super::*;
    use crate::client::Client;
    use crate::keyspace::db::{BeforeWrite, Db, Entry, Stored};
    use crate::types::Value;
    use crate::{Engine, EngineConfig, Reply};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    /// `db:ARGV` lines, as a sink or hook saw them.
    #[derive(Debug, Default)]
    struct Lines(Mutex<Vec<String>>);

    impl Lines {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
        fn push(&self, line: String) {
            self.0.lock().unwrap().push(line);
        }
    }

    /// A propagation sink: one line per command, units separated by `|`.
    impl PropagationSink for Lines {
        fn propagate(&self, ops: &[Propagated]) {
            let unit: Vec<String> = ops
                .iter()
                .map(|o| {
                    let words: Vec<_> = o.argv.iter().map(|a| String::from_utf8_lossy(a)).collect();
                    format!("{}:{}", o.db, words.join(" "))
                })
                .collect();
            self.push(unit.join(" | "));
        }
    }

    /// A client-side-tracking-shaped consumer: keys changed, databases flushed.
    impl KeyHook for Lines {
        fn modified(&self, db: usize, key: &[u8], event: &str) {
            self.push(format!("{db}:{event}:{}", String::from_utf8_lossy(key)));
        }
        fn flushed(&self, db: Option<usize>) {
            self.push(format!("flushed:{db:?}"));
        }
    }

    fn engine_with_sink() -> (Engine, Arc<Lines>) {
        let e = Engine::new(EngineConfig::default());
        let sink = Arc::new(Lines::default());
        e.add_propagation_sink(sink.clone());
        (e, sink)
    }

    /// The number in `line` after `word` (an absolute time in ms).
    fn ms_after(line: &str, word: &str) -> u64 {
        line.split(' ')
            .skip_while(|w| *w != word)
            .nth(1)
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no time after {word} in {line}"))
    }

    #[test]
    fn commands_propagate_as_their_effects() {
        let (e, sink) = engine_with_sink();
        let run = |db: usize, line: &str| e.execute(db, args(line));
        run(0, "SET a 1");
        run(0, "GET a");
        run(0, "DEL nothing");
        assert_eq!(
            sink.take(),
            vec!["0:SET a 1"],
            "reads and no-ops propagate nothing"
        );

        // Relative times become absolute.
        let before = crate::util::now_ms();
        run(0, "SET b v EX 100");
        run(0, "EXPIRE a 100");
        let after = crate::util::now_ms();
        let got = sink.take();
        assert!(got[0].starts_with("0:SET b v PXAT "), "{got:?}");
        assert!(got[1].starts_with("0:PEXPIREAT a "), "{got:?}");
        for (line, word) in [(&got[0], "PXAT"), (&got[1], "a")] {
            let at = ms_after(line, word);
            assert!((before + 100_000..=after + 100_000).contains(&at), "{line}");
        }
        run(0, "PEXPIREAT a 99999999999999 GT");
        run(0, "EXPIRE a -1");
        run(0, "GETEX b PERSIST");
        assert_eq!(
            sink.take(),
            vec!["0:PEXPIREAT a 99999999999999 GT", "0:DEL a", "0:PERSIST b"]
        );

        // Results instead of increments, removals instead of random pops.
        run(0, "INCRBYFLOAT f 1.5");
        run(0, "HINCRBYFLOAT h x 2.5");
        run(0, "SADD s m");
        run(0, "SPOP s");
        assert_eq!(
            sink.take(),
            vec![
                "0:SET f 1.5 KEEPTTL",
                "0:HSET h x 2.5",
                "0:SADD s m",
                "0:SREM s m"
            ]
        );
        run(0, "SADD s a b c");
        let Reply::Set(popped) = run(0, "SPOP s 2") else {
            panic!("SPOP with a count replies a set")
        };
        let popped: Vec<String> = popped
            .iter()
            .map(|r| match r {
                Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                r => panic!("{r:?}"),
            })
            .collect();
        run(0, "SPOP s 5");
        assert_eq!(
            sink.take(),
            vec![
                "0:SADD s a b c".to_string(),
                format!("0:SREM s {}", popped.join(" ")),
                "0:DEL s".to_string()
            ]
        );

        // Blocking pops replay as plain pops of the key served; lease fills as SET.
        run(0, "RPUSH l x y");
        run(0, "BLPOP nothing l 0");
        run(0, "BLMOVE l l2 RIGHT LEFT 0");
        let Reply::Array(lease) = run(0, "LEASEGET lk") else {
            panic!("LEASEGET replies an array")
        };
        let Some(Reply::Int(token)) = lease.get(1) else {
            panic!("a miss gets a token: {lease:?}")
        };
        run(0, &format!("LEASESET lk {token} filled"));
        assert_eq!(
            sink.take(),
            vec![
                "0:RPUSH l x y",
                "0:LPOP l",
                "0:LMOVE l l2 RIGHT LEFT",
                "0:SET lk filled"
            ]
        );

        // Databases, whole-keyspace commands, and the sidecar's in-process deletes.
        run(3, "SET k v");
        e.execute_batch(3, vec![args("DEL k"), args("DEL k")]);
        run(0, "SWAPDB 0 1");
        run(0, "FLUSHALL");
        assert_eq!(
            sink.take(),
            vec!["3:SET k v", "3:DEL k", "0:SWAPDB 0 1", "0:FLUSHALL"]
        );
    }

    /// A sink keeping the propagated commands as they are, to replay them.
    #[derive(Debug, Default)]
    struct Recorded(Mutex<Vec<Propagated>>);

    impl PropagationSink for Recorded {
        fn propagate(&self, ops: &[Propagated]) {
            self.0.lock().unwrap().extend_from_slice(ops);
        }
    }

    #[test]
    fn streams_propagate_deterministically() {
        let e = Engine::new(EngineConfig::default());
        let sink = Arc::new(Recorded::default());
        e.add_propagation_sink(sink.clone());
        let run = |line: &str| e.execute(0, args(line));
        run("XGROUP CREATE q g $ MKSTREAM");
        for _ in 0..250 {
            run("XADD q * job x");
        }
        run("XADD q MAXLEN ~ 120 LIMIT 100 * job y");
        run("XADD q 99999999999999-* job z");
        run("XREADGROUP GROUP g alice COUNT 30 STREAMS q >");
        run("XREADGROUP GROUP g bob NOACK COUNT 5 STREAMS q >");
        run("XREADGROUP GROUP g bob COUNT 5 STREAMS q >");
        run("XREADGROUP GROUP g alice STREAMS q 0");
        run("XAUTOCLAIM q g carol 0 0 COUNT 7");
        let pending = run("XPENDING q g - + 1");
        let Reply::Array(p) = pending else {
            panic!("XPENDING replies an array")
        };
        let Some(Reply::Array(first)) = p.first() else {
            panic!("one pending entry: {p:?}")
        };
        let Some(Reply::Bulk(first_id)) = first.first() else {
            panic!("an ID: {first:?}")
        };
        let first_id = String::from_utf8_lossy(first_id).into_owned();
        run(&format!("XACK q g {first_id}"));
        run(&format!("XDEL q {first_id}"));
        run("XCLAIM q g dave 0 0-1 FORCE");
        run("XGROUP CREATECONSUMER q g erin");
        run("XGROUP DELCONSUMER q g bob");
        run("XTRIM q MINID ~ 0");
        run("XSETID q 99999999999999-100");
        let sent = std::mem::take(&mut *sink.0.lock().unwrap());
        // No auto ID and no approximate trim reaches a replica.
        for op in &sent {
            let line: Vec<String> = op
                .argv
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            assert!(
                !line
                    .iter()
                    .any(|w| w == "*" || w == "~" || w.ends_with("-*")),
                "{line:?}"
            );
            assert!(!line[0].eq_ignore_ascii_case("xreadgroup"), "{line:?}");
            assert!(!line[0].eq_ignore_ascii_case("xautoclaim"), "{line:?}");
        }
        // Replayed on another engine, they give the same stream and groups.
        let replica = Engine::new(EngineConfig::default());
        for op in sent {
            let name = String::from_utf8_lossy(&op.argv[0]).to_ascii_lowercase();
            if name == "multi" || name == "exec" {
                continue;
            }
            let r = replica.execute(op.db, op.argv.clone());
            assert!(!r.is_error(), "{:?} -> {r:?}", op.argv);
        }
        for q in [
            "XRANGE q - +",
            "XINFO GROUPS q",
            "XPENDING q g",
            "XLEN q",
            "XINFO STREAM q",
        ] {
            assert_eq!(e.execute(0, args(q)), replica.execute(0, args(q)), "{q}");
        }
        // Pending entries: same IDs, owners and delivery counts (idle times are
        // measured at each side's own clock).
        let strip = |r: Reply| match r {
            Reply::Array(v) => v
                .into_iter()
                .map(|e| match e {
                    Reply::Array(mut f) => {
                        f.remove(2);
                        Reply::Array(f)
                    }
                    other => other,
                })
                .collect::<Vec<_>>(),
            other => vec![other],
        };
        assert_eq!(
            strip(e.execute(0, args("XPENDING q g - + 1000"))),
            strip(replica.execute(0, args("XPENDING q g - + 1000")))
        );
    }

    #[test]
    fn transactions_and_expiry_propagate_in_order() {
        let (e, sink) = engine_with_sink();
        // EXEC of several writes is one MULTI/EXEC unit; of one write, just the write.
        e.execute_batch(
            0,
            vec![
                args("MULTI"),
                args("SET x 1"),
                args("GET x"),
                args("SELECT 2"),
                args("SET y 2"),
                args("EXEC"),
            ],
        );
        e.execute_batch(0, vec![args("MULTI"), args("SET z 3"), args("EXEC")]);
        assert_eq!(
            sink.take(),
            vec!["0:MULTI | 0:SET x 1 | 2:SET y 2 | 2:EXEC", "0:SET z 3"]
        );
        // A key found expired goes out as DEL, before the command that found it.
        e.execute(0, args("SET gone v PX 1"));
        e.execute(0, args("SET again v PX 1"));
        std::thread::sleep(Duration::from_millis(20));
        e.execute(0, args("GET gone"));
        e.execute(0, args("SET again w"));
        let got = sink.take();
        assert_eq!(&got[2..], ["0:DEL gone", "0:DEL again | 0:SET again w"]);
    }

    #[test]
    fn active_expiry_propagates_del() {
        let mut store = Store::new(EngineConfig::default());
        let sink = Arc::new(Lines::default());
        store.add_propagation_sink(sink.clone());
        let mut c = Client::detached(1, 0, 2);
        crate::command::execute(&mut store, &mut c, args("SET k v PX 1"));
        sink.take();
        std::thread::sleep(Duration::from_millis(20));
        store.active_expire_cycle(Duration::from_millis(100));
        crate::command::after_command(&mut store);
        assert_eq!(sink.take(), vec!["0:DEL k"]);
    }

    #[test]
    fn a_backstop_cap_follows_its_write() {
        let (e, sink) = engine_with_sink();
        e.set_ttl_backstops(0, &[("user:*", Duration::from_secs(3600))]);
        let before = crate::util::now_ms();
        e.execute(0, args("SET user:1 v"));
        let after = crate::util::now_ms();
        let got = sink.take();
        assert_eq!(got.len(), 1);
        let parts: Vec<&str> = got[0].split(" | ").collect();
        assert_eq!(parts[..2], ["0:MULTI", "0:SET user:1 v"], "{got:?}");
        assert!(parts[2].starts_with("0:PEXPIREAT user:1 "), "{got:?}");
        let at = ms_after(parts[2], "user:1");
        assert!((before + 3_600_000..=after + 3_600_000).contains(&at));
        assert_eq!(parts[3], "0:EXEC");
    }

    #[test]
    fn hooks_see_key_changes_and_flushes() {
        let e = Engine::new(EngineConfig::default());
        let rec = Arc::new(Lines::default());
        e.add_key_hook(rec.clone());
        e.execute(2, args("SET k v"));
        e.execute(2, args("DEL k"));
        e.execute(0, args("SET t v PX 1"));
        std::thread::sleep(Duration::from_millis(20));
        e.execute(0, args("GET t"));
        e.execute(2, args("FLUSHDB"));
        e.execute(0, args("SWAPDB 0 1"));
        e.execute(0, args("FLUSHALL"));
        assert_eq!(
            rec.take(),
            vec![
                "2:set:k",
                "2:del:k",
                "0:set:t",
                "0:expire:t",
                "0:expired:t",
                "flushed:Some(2)",
                "flushed:Some(0)",
                "flushed:Some(1)",
                "flushed:None"
            ]
        );
    }

    #[test]
    fn modifications_void_leases() {
        use crate::lease::Grant;
        let mut s = Store::new(EngineConfig::default());
        s.now = 1_000_000;
        let grant = |s: &mut Store, k: &[u8]| s.leases.grant(0, k, 1_000_000, 10_000);
        assert!(matches!(grant(&mut s, b"a"), Grant::Token(_)));
        assert!(matches!(grant(&mut s, b"b"), Grant::Token(_)));
        assert!(matches!(grant(&mut s, b"c"), Grant::Token(_)));
        s.key_changed(0, b"a", notify::GENERIC, "del");
        // "b" expires lazily.
        s.dbs[0].insert("b", Value::Str("v".into()), 1);
        s.dbs[0].set_expire(b"b", 10, 1);
        assert!(s.dbs[0].lookup(b"b", 1_000_000).is_none());
        s.flush_expired();
        assert_eq!(s.leases.len(), 1);
        s.flush(Some(0));
        assert!(s.leases.is_empty());
    }

    #[test]
    fn an_evicted_key_is_a_deletion_everywhere() {
        use crate::lease::Grant;
        // maxmemory 1: nothing fits, so every key goes.
        let cfg = EngineConfig {
            maxmemory: 1,
            maxmemory_policy: "allkeys-random".into(),
            notify_keyspace_events: "Ee".into(),
            ..EngineConfig::default()
        };
        let mut s = Store::new(cfg);
        let sink = Arc::new(Lines::default());
        s.add_propagation_sink(sink.clone());
        s.add_hook(sink.clone());
        s.now = 1_000_000;
        // A lease outstanding on a key that is then filled behind the write path's
        // back (as a restore would): eviction must still void it.
        assert!(matches!(
            s.leases.grant(0, b"k", 1_000_000, 10_000),
            Grant::Token(_)
        ));
        s.dbs[0].insert("k", Value::Str("v".into()), 1);
        s.watches.watch(7, 0, Bytes::from("k"), false);
        assert_eq!(
            s.perform_evictions(),
            super::evict::Evict::Fail,
            "still over after evicting everything"
        );
        s.propagation.flush();
        assert_eq!(s.dbs[0].len(), 0);
        assert_eq!(s.stats.evicted_keys, 1);
        assert!(s.leases.is_empty(), "the lease is void");
        assert!(s.watches.is_dirty(7), "WATCH sees the key change");
        assert_eq!(sink.take(), vec!["0:evicted:k", "0:DEL k"]);
        // Under noeviction nothing goes.
        s.config.maxmemory_policy = "noeviction".into();
        s.reload_eviction();
        s.dbs[0].insert("k", Value::Str("v".into()), 1);
        assert_eq!(s.perform_evictions(), super::evict::Evict::Fail);
        assert_eq!(s.dbs[0].len(), 1);
    }

    #[test]
    fn flush_invalidates_only_watchers_of_existing_keys() {
        let mut s = Store::new(EngineConfig::default());
        s.dbs[0].insert("here", Value::Str("v".into()), 1);
        s.watches.watch(1, 0, Bytes::from("here"), false);
        s.watches.watch(2, 0, Bytes::from("missing"), false);
        s.flush(Some(0));
        assert!(s.watches.is_dirty(1));
        assert!(!s.watches.is_dirty(2));
        assert_eq!(s.dbs[0].len(), 0);
    }

    #[test]
    fn written_time_moves_with_values_only() {
        let mut s = Store::new(EngineConfig::default());
        let mut c = Client::detached(1, 0, 2);
        let mut run = |s: &mut Store, now: u64, line: &str| {
            // Each command at its own time; `execute` reads the clock, so set it after.
            let spec = crate::command::lookup(line.split(' ').next().unwrap_or("").as_bytes());
            s.now = now;
            let a = args(line);
            crate::command::call(s, &mut c, spec.expect("known command"), &a)
        };
        let written = |s: &mut Store, key: &[u8]| s.dbs[0].peek(key, 0).map(Entry::written_at);
        let t0 = crate::keyspace::db::WRITE_EPOCH_MS + 1_000_000;
        run(&mut s, t0, "HSET h f v");
        assert_eq!(written(&mut s, b"h"), Some(t0));
        run(&mut s, t0 + 1000, "HSET h f w");
        assert_eq!(
            written(&mut s, b"h"),
            Some(t0 + 1000),
            "a collection write moves it"
        );
        run(&mut s, t0 + 2000, "EXPIRE h 100");
        run(&mut s, t0 + 3000, "HGET h f");
        run(&mut s, t0 + 4000, "HDEL h nothing");
        assert_eq!(
            written(&mut s, b"h"),
            Some(t0 + 1000),
            "TTLs, reads and no-ops do not"
        );
        run(&mut s, t0 + 5000, "RENAME h h2");
        assert_eq!(written(&mut s, b"h2"), Some(t0 + 5000));
    }

    /// A snapshot's view of the seam: what it would have to save first.
    #[derive(Debug)]
    struct Saver(Arc<Lines>);

    impl BeforeWrite for Saver {
        fn before_write(&mut self, key: &[u8], old: Option<Stored<'_>>) {
            let old = match old {
                Some(Stored {
                    entry: e,
                    expire_at: at,
                    ..
                }) => match &e.value {
                    Value::Str(v) => format!("{}@{at}", String::from_utf8_lossy(v.as_slice())),
                    v => format!("{}@{at}", v.type_name()),
                },
                None => "new".into(),
            };
            self.0
                .push(format!("{}={old}", String::from_utf8_lossy(key)));
        }
        fn before_clear(&mut self, db: &Db) {
            self.0.push(format!("clear:{}", db.len()));
        }
    }

    #[test]
    fn a_snapshot_sees_entries_before_they_change() {
        let mut s = Store::new(EngineConfig::default());
        let mut c = Client::detached(1, 0, 2);
        let mut run = |s: &mut Store, line: &str| crate::command::execute(s, &mut c, args(line));
        run(&mut s, "SET a 1");
        run(&mut s, "SET gone x PX 1");
        run(&mut s, "RPUSH l x");
        let seen = Arc::new(Lines::default());
        s.dbs[0].set_before_write(Some(Box::new(Saver(seen.clone()))));
        run(&mut s, "GET a");
        run(&mut s, "LLEN l");
        run(&mut s, "EXISTS a");
        assert!(seen.take().is_empty(), "reads change nothing");
        run(&mut s, "SET a 2");
        run(&mut s, "SET b 1");
        run(&mut s, "EXPIRE b 100");
        run(&mut s, "RPUSH l y");
        run(&mut s, "DEL a");
        std::thread::sleep(Duration::from_millis(20));
        run(&mut s, "GET gone");
        let seen_now = seen.take();
        assert_eq!(&seen_now[..4], ["a=1@0", "b=new", "b=1@0", "l=list@0"]);
        assert_eq!(seen_now[4], "a=2@0");
        assert!(seen_now[5].starts_with("gone=x@"), "{seen_now:?}");
        run(&mut s, "SWAPDB 0 1");
        run(&mut s, "FLUSHALL");
        // SWAPDB: db 0 saw its 2 keys go; db 0 then held db 1's (none).
        assert_eq!(seen.take(), ["clear:2", "clear:0"]);
    }
}
