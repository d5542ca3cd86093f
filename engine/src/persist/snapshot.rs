//! Point-in-time snapshots without fork: BGSAVE (and the AOF rewrite's base file) write
//! the keyspace as it was when the snapshot began, while clients go on writing.
//!
//! Redis forks and lets the kernel's copy-on-write keep the old pages. Here, as in
//! Dragonfly's and Valkey's fork-less designs, the old version of an entry is saved
//! just before its first write:
//!
//! - [`Snapshot::begin`] (under the store's lock, O(databases)) installs a
//!   [`BeforeWrite`] hook in every non-empty database and notes the time.
//! - [`Snapshot::write`] walks each database by position, a chunk of keys per turn of
//!   the store's lock, serializing into a buffer that is written to the file after the
//!   lock is released: the command path never waits for the disk, only for one chunk.
//! - The walk's cursor is the version: an entry at a position below it is saved; one
//!   at or above it is not yet. When a command is about to change an entry the walk has
//!   not reached, the hook serializes the entry first (into the database's pending
//!   bytes, written with the next chunk) and remembers its key, so the walk skips it;
//!   a key created during the snapshot is remembered too. A removal moves the last
//!   entry into the hole: if that carries an unsaved entry below the cursor, the hook
//!   saves it first. FLUSHDB, FLUSHALL and SWAPDB save everything not yet saved.
//!
//! Memory therefore grows only by what is written during the snapshot: the serialized
//! old entries and the keys written, nothing for the rest of the keyspace.

use crate::engine::Shared;
use crate::keyspace::db::{BeforeWrite, Db, Entry, Stored};
use crate::persist::rdb::encode::Encoder;
use crate::persist::rdb::file::{self, Out};
use crate::persist::rdb::{RdbError, WriteOptions};
use crate::store::Store;
use crate::types::CompactBytes;
use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Keys serialized per turn of the store's lock: some tens of microseconds of work,
/// so a command waits at most that long behind the walk.
const CHUNK: usize = 128;

/// What the hooks and the walk share.
#[derive(Debug)]
struct Common {
    /// The snapshot's time (Unix ms): keys expired by then are left out.
    now: u64,
    opts: WriteOptions,
    /// The hooks' encoder (its LZF table is 512 KiB: one for all databases).
    enc: Mutex<Encoder>,
}

/// One database's progress, shared by its hook (run by commands) and the walk; both
/// use it under the store's lock only, so its mutex is never contended.
#[derive(Debug, Default)]
struct DbState {
    /// The walk has saved (or skipped) every position below this.
    cursor: usize,
    /// Everything of this database is saved; the hook and the walk are done.
    done: bool,
    /// Keys the hook saved or saw created: the walk skips them.
    touched: HashSet<CompactBytes>,
    /// Entries the hook serialized, waiting for the walk to write them.
    pending: Vec<u8>,
    /// Keys serialized (by the walk or the hook).
    keys: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DbState {
    /// Serializes an old entry into `pending` unless it had expired at the snapshot's
    /// time. An encoding error cannot happen writing to memory.
    fn save(&mut self, common: &Common, key: &[u8], entry: &Entry, at: u64) {
        if at != 0 && at <= common.now {
            return;
        }
        let mut enc = lock(&common.enc);
        let r = file::write_key(
            &mut self.pending,
            &mut enc,
            key,
            entry,
            at,
            common.now,
            &common.opts,
        );
        debug_assert!(r.is_ok());
        self.keys += 1;
    }
}

/// The hook installed in a database while a snapshot runs.
#[derive(Debug)]
struct Hook {
    state: Arc<Mutex<DbState>>,
    common: Arc<Common>,
}

impl BeforeWrite for Hook {
    fn before_write(&mut self, key: &[u8], old: Option<Stored<'_>>) {
        let mut s = lock(&self.state);
        if s.done {
            return;
        }
        match old {
            // Created during the snapshot: not part of it.
            None => {
                s.touched.insert(CompactBytes::from(key));
            }
            Some(old) => {
                if old.index < s.cursor || s.touched.contains(key) {
                    return;
                }
                s.touched.insert(CompactBytes::from(key));
                s.save(&self.common, key, old.entry, old.expire_at);
            }
        }
    }

    fn before_move(&mut self, key: &[u8], moved: Stored<'_>, to: usize) {
        let mut s = lock(&self.state);
        if s.done || to >= s.cursor || moved.index < s.cursor || s.touched.contains(key) {
            return;
        }
        // It lands below the cursor, where the walk will not look: save it now.
        s.save(&self.common, key, moved.entry, moved.expire_at);
    }

    fn before_clear(&mut self, db: &Db) {
        let mut s = lock(&self.state);
        if s.done {
            return;
        }
        for idx in s.cursor..db.len() {
            if let Some((k, e, at)) = db.entry_at(idx) {
                if !s.touched.contains(k.as_slice()) {
                    s.save(&self.common, k, e, at);
                }
            }
        }
        s.done = true;
        s.touched = HashSet::new();
    }
}

/// Why a snapshot did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Writing failed (the file, the disk).
    #[error(transparent)]
    Rdb(#[from] RdbError),
    /// It was cancelled (SHUTDOWN, FLUSHALL of a running save, DEBUG RELOAD).
    #[error("the snapshot was cancelled")]
    Cancelled,
}

/// A snapshot in progress: begun under the store's lock, written without holding it.
#[derive(Debug)]
pub struct Snapshot {
    common: Arc<Common>,
    /// The databases that had keys when it began: number, state, keys, keys with TTL.
    dbs: Vec<(usize, Arc<Mutex<DbState>>, u64, u64)>,
    cancel: Arc<AtomicBool>,
    /// Keys written so far (INFO's `current_save_keys_processed`).
    progress: Arc<std::sync::atomic::AtomicU64>,
}

impl Snapshot {
    /// Begins a snapshot of `store` as of now, written with `opts`. Only one snapshot
    /// may run at a time (a database has one hook).
    pub(crate) fn begin(store: &mut Store, opts: WriteOptions) -> Snapshot {
        let common = Arc::new(Common {
            now: crate::util::now_ms(),
            enc: Mutex::new(Encoder::new(opts.compression)),
            opts,
        });
        let mut dbs = Vec::new();
        for (i, db) in store.dbs.iter_mut().enumerate() {
            if db.is_empty() {
                continue;
            }
            let state = Arc::new(Mutex::new(DbState::default()));
            db.set_before_write(Some(Box::new(Hook {
                state: state.clone(),
                common: common.clone(),
            })));
            dbs.push((i, state, db.len() as u64, db.volatile_len() as u64));
        }
        Snapshot {
            common,
            dbs,
            cancel: Arc::new(AtomicBool::new(false)),
            progress: Arc::default(),
        }
    }

    /// The count of keys written so far, readable while it runs.
    pub(crate) fn progress(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.progress.clone()
    }

    /// A flag that stops the snapshot at its next chunk (it then removes its hooks).
    pub(crate) fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Writes the snapshot to `out` as an RDB file, taking the store's lock for one
    /// chunk at a time; `key_delay` (`rdb-key-save-delay`) pauses after each key
    /// outside the lock, to test saves that take long. Returns the writer and the
    /// keys written. On any error the hooks are removed.
    pub(crate) fn write<W: Write>(
        self,
        shared: &Shared,
        out: W,
        key_delay: Duration,
    ) -> Result<(W, u64), SnapshotError> {
        let r = self.write_inner(shared, out, key_delay);
        // A cancelled snapshot's hooks were removed by whoever cancelled it (and a new
        // snapshot may own the databases' hooks by now).
        if r.is_err() && !self.cancel.load(Ordering::Relaxed) {
            let mut store = shared.lock();
            for (i, state, _, _) in &self.dbs {
                lock(state).done = true;
                if let Some(db) = store.dbs.get_mut(*i) {
                    db.set_before_write(None);
                }
            }
        }
        r
    }

    fn write_inner<W: Write>(
        &self,
        shared: &Shared,
        out: W,
        key_delay: Duration,
    ) -> Result<(W, u64), SnapshotError> {
        let opts = &self.common.opts;
        let now = self.common.now;
        let mut w = Out::new(out);
        let mut enc = Encoder::new(opts.compression);
        let io = |e: std::io::Error| SnapshotError::Rdb(RdbError::Io(e));
        file::write_header(&mut w, &mut enc, now, opts).map_err(io)?;
        let chunk = if key_delay.is_zero() { CHUNK } else { 1 };
        let mut total = 0;
        for (i, state, keys, volatile) in &self.dbs {
            file::write_db_start(&mut w, &enc, *i, *keys, *volatile).map_err(io)?;
            let mut buf = Vec::with_capacity(1 << 16);
            loop {
                let finished = {
                    let mut store = shared.lock();
                    if self.cancel.load(Ordering::Relaxed) {
                        return Err(SnapshotError::Cancelled);
                    }
                    let mut s = lock(state);
                    let db = &store.dbs[*i];
                    let mut seen = 0;
                    while !s.done && seen < chunk && s.cursor < db.len() {
                        seen += 1;
                        let Some((k, e, at)) = db.entry_at(s.cursor) else {
                            break;
                        };
                        s.cursor += 1;
                        if s.touched.contains(k.as_slice()) || (at != 0 && at <= now) {
                            continue;
                        }
                        file::write_key(&mut buf, &mut enc, k, e, at, now, opts).map_err(io)?;
                        s.keys += 1;
                    }
                    if s.cursor >= db.len() {
                        s.done = true;
                    }
                    buf.append(&mut s.pending);
                    let finished = s.done;
                    self.progress.store(total + s.keys, Ordering::Relaxed);
                    if finished {
                        s.touched = HashSet::new();
                        total += s.keys;
                        drop(s);
                        store.dbs[*i].set_before_write(None);
                    }
                    finished
                };
                w.write_all(&buf).map_err(io)?;
                buf.clear();
                if finished {
                    break;
                }
                // The lock is not fair: without a yield the walk would take it
                // straight back and starve the connections waiting for it.
                std::thread::yield_now();
                if !key_delay.is_zero() {
                    std::thread::sleep(key_delay);
                }
            }
        }
        let inner = w.finish(opts.checksum).map_err(io)?;
        Ok((inner, total))
    }
}
