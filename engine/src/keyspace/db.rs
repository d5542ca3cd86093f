//! One numbered database: the keyspace, key expiry, and typed access to values.

use crate::error::CmdError;
use crate::keyspace::evict::{self, Lfu};
use crate::keyspace::tinylfu::Admission;
use crate::types::{CompactBytes, Hash, List, Set, Stream, Value, ZSet};
use bytes::Bytes;
use indexmap::IndexMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The LRU clock's bits in `Entry::meta`.
const LRU_MASK: u32 = 0xFF_FFFF;
/// A string written by APPEND/SETRANGE/SETBIT is reported as `raw`, as in Redis.
const RAW: u32 = 1 << 24;
/// The key has an entry in `Db::volatile` (its TTL).
const HAS_TTL: u32 = 1 << 25;

/// Start of the write-time clock: 2025-01-01T00:00:00Z in Unix ms. A u32 of
/// deciseconds from there lasts until 2038.
pub const WRITE_EPOCH_MS: u64 = 1_735_689_600_000;

/// A value with its metadata, 32 bytes: the TTL lives in `Db`'s volatile index
/// (as Redis's `expires` dict), so keys without one pay nothing for it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The value.
    pub value: Value,
    /// Bits 0..24: last access in seconds of the LRU clock (OBJECT IDLETIME);
    /// then the `RAW` and `HAS_TTL` flags.
    meta: u32,
    /// When the value was last written, in deciseconds since `WRITE_EPOCH_MS`.
    written: u32,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 32);

impl Entry {
    /// A fresh entry without TTL.
    pub fn new(value: Value, now: u64) -> Self {
        Entry {
            value,
            meta: lru_clock(now),
            written: write_clock(now),
        }
    }
    /// Last access, in seconds of the 24-bit LRU clock.
    pub fn lru(&self) -> u32 {
        self.meta & LRU_MASK
    }
    /// Records an access at `now` (ms) on the LRU clock.
    pub fn touch(&mut self, now: u64) {
        self.meta = (self.meta & !LRU_MASK) | lru_clock(now);
    }
    /// Sets the 24 clock bits (an LFU policy keeps minutes and a counter there).
    pub(crate) fn set_clock(&mut self, bits: u32) {
        self.meta = (self.meta & !LRU_MASK) | (bits & LRU_MASK);
    }
    /// Whether a string value is reported as `raw` (edited in place).
    pub fn is_raw(&self) -> bool {
        self.meta & RAW != 0
    }
    /// Marks a string as edited in place (or not).
    pub fn set_raw(&mut self, raw: bool) {
        if raw {
            self.meta |= RAW;
        } else {
            self.meta &= !RAW;
        }
    }
    /// Whether the key has a TTL (its expiry is in the `Db`, see `Db::expire_of`).
    pub fn has_ttl(&self) -> bool {
        self.meta & HAS_TTL != 0
    }
    fn set_has_ttl(&mut self, ttl: bool) {
        if ttl {
            self.meta |= HAS_TTL;
        } else {
            self.meta &= !HAS_TTL;
        }
    }
    /// When the value was last written, in Unix ms (100 ms resolution; times before
    /// `WRITE_EPOCH_MS` read as the epoch).
    pub fn written_at(&self) -> u64 {
        WRITE_EPOCH_MS + self.written as u64 * 100
    }
    /// Records a write at `now` (ms).
    pub fn set_written(&mut self, now: u64) {
        self.written = write_clock(now);
    }
}

/// The LRU clock: seconds, wrapping at 2^24 like Redis's.
pub fn lru_clock(now_ms: u64) -> u32 {
    ((now_ms / 1000) & 0xFF_FFFF) as u32
}

/// The write clock: deciseconds since `WRITE_EPOCH_MS`, saturating.
fn write_clock(now_ms: u64) -> u32 {
    (now_ms.saturating_sub(WRITE_EPOCH_MS) / 100).min(u32::MAX as u64) as u32
}

/// A stored entry as the snapshot hook sees it: where it is in the database's order,
/// the entry, and its expiry (Unix ms, 0 for none).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stored<'a> {
    /// Its position in the database's insertion order (what [`Db::entry_at`] takes).
    pub(crate) index: usize,
    pub(crate) entry: &'a Entry,
    pub(crate) expire_at: u64,
}

/// Sees each entry before the keyspace changes or removes it, while a point-in-time
/// snapshot runs, so that the snapshot can save the old entry first: what fork's
/// copy-on-write gives Redis. Installed per database ([`Db::set_before_write`]);
/// every mutating method of [`Db`] calls it behind one `Option` check, so nothing is
/// paid while no snapshot runs.
pub(crate) trait BeforeWrite: Send + std::fmt::Debug {
    /// `key` is about to be written or removed; `old` is its stored entry, or `None`
    /// when the key is being created. Called on every write while installed (the
    /// consumer knows what it already saved). A typed `_mut` accessor counts as a
    /// write even when the command turns out only to read.
    fn before_write(&mut self, key: &[u8], old: Option<Stored<'_>>);
    /// The last entry (`moved`, at `moved.index`) is about to move to position `to`,
    /// into the hole of a removed key: a walk by position would miss it otherwise.
    fn before_move(&mut self, key: &[u8], moved: Stored<'_>, to: usize) {
        let _ = (key, moved, to);
    }
    /// Every entry of `db` is about to go or be replaced (FLUSHDB, FLUSHALL, SWAPDB).
    fn before_clear(&mut self, db: &Db);
}

/// Raised by any database of a store that expired a key, so that the write path,
/// which runs after every command, scans the databases for expired keys only when
/// there are some (scanning 16 databases cost ~100 instructions per command).
#[derive(Debug, Clone, Default)]
pub(crate) struct ExpiredFlag(Arc<AtomicBool>);

impl ExpiredFlag {
    #[inline]
    fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    /// Whether it was raised since the last call; lowers it.
    #[inline]
    pub(crate) fn take(&self) -> bool {
        self.0.load(Ordering::Relaxed) && self.0.swap(false, Ordering::Relaxed)
    }
}

/// A keyspace.
///
/// Keys live in an insertion-ordered map so that SCAN can walk it by index and
/// RANDOMKEY and the active expiry cycle can sample it in O(1).
///
/// Reads (`lookup`, `peek`, the typed `list`/`hash`/`set`/`zset`, `get_str`) expire a
/// key lazily but change nothing else; every other `&mut self` method is a write and
/// passes the [`BeforeWrite`] hook first. What a write means for the rest of the
/// engine (WATCH, notifications, replication, ...) is the write path's business
/// (`crate::keyspace`), not this type's.
#[derive(Debug, Default)]
pub struct Db {
    map: IndexMap<CompactBytes, Entry>,
    /// Expiry (Unix ms, never 0) of the keys that have a TTL, as Redis's `expires`
    /// dict; sampled by the active expiry cycle. A key is here iff its entry has
    /// `has_ttl()`, so keys without TTL are looked up once.
    volatile: IndexMap<CompactBytes, u64>,
    /// Keys removed because they expired, waiting for the write path to announce them.
    pub(crate) expired: Vec<Bytes>,
    /// Raised when `expired` gets a key (shared by the store's databases).
    expired_flag: ExpiredFlag,
    /// The index of the entry last opened for writing: the write path stamps its write
    /// time (OBJECT WRITTEN) without probing the map again.
    last_write: usize,
    /// Set while a snapshot runs.
    before_write: Option<Box<dyn BeforeWrite>>,
    /// While an LFU policy is selected, accesses update the entries' LFU counters
    /// instead of their access times (the same 24 bits, as in Redis).
    lfu: Option<Lfu>,
    /// Under `allkeys-tinylfu`: the access sketch and the window of new keys
    /// ([`crate::keyspace::tinylfu`]).
    pub(crate) admission: Option<Box<Admission>>,
    /// Until this Unix ms (CLIENT PAUSE), an expired key reads as missing but is not
    /// deleted, as Redis's `expireIfNeeded` during a pause: the dataset holds still.
    pub(crate) expiry_paused_until: u64,
}

/// What an entry's 24 clock bits record, by policy.
#[derive(Debug, Clone, Copy)]
enum Clock {
    /// Seconds of the LRU clock (Redis's LRU policies, OBJECT IDLETIME).
    Lru,
    /// Minutes and a logarithmic counter (Redis's LFU policies, OBJECT FREQ).
    Lfu(Lfu),
    /// The database's access count at this access (`allkeys-tinylfu`: recency at
    /// the resolution of single accesses, where seconds cannot tell keys apart).
    Tick(u32),
}

/// Records an access to `e` at `now`: its LRU time, its LFU counter under an LFU
/// policy (Redis's `updateLFU`), or the access tick.
#[inline]
fn access(clock: Clock, e: &mut Entry, now: u64) {
    match clock {
        Clock::Lru => e.touch(now),
        Clock::Lfu(l) => e.set_clock(evict::lfu_access(e.lru(), l, now)),
        Clock::Tick(t) => e.set_clock(t),
    }
}

macro_rules! typed_access {
    ($read:ident, $get:ident, $get_or_create:ident, $variant:ident, $ty:ty) => {
        /// Typed read access; `WRONGTYPE` when the key holds another type.
        pub fn $read(&mut self, key: &[u8], now: u64) -> Result<Option<&$ty>, CmdError> {
            match self.lookup(key, now) {
                None => Ok(None),
                Some(e) => match &e.value {
                    Value::$variant(v) => {
                        // Deref coercion from the Box where `$ty` is the bare type.
                        let v: &$ty = v;
                        Ok(Some(v))
                    }
                    _ => Err(CmdError::WrongType),
                },
            }
        }
        /// Typed write access; `WRONGTYPE` when the key holds another type.
        pub fn $get(&mut self, key: &[u8], now: u64) -> Result<Option<&mut $ty>, CmdError> {
            match self.lookup_mut(key, now) {
                None => Ok(None),
                Some(e) => match &mut e.value {
                    Value::$variant(v) => {
                        let v: &mut $ty = v;
                        Ok(Some(v))
                    }
                    _ => Err(CmdError::WrongType),
                },
            }
        }
        /// Typed write access that creates an empty value when the key is missing.
        pub fn $get_or_create(&mut self, key: &[u8], now: u64) -> Result<&mut $ty, CmdError> {
            // Found or created by index: one hash probe, not a second `get_mut`.
            self.record(key);
            let idx = match self.live_index(key, now) {
                Some(idx) => {
                    self.guard_index(idx);
                    access(self.clock(), &mut self.map[idx], now);
                    idx
                }
                None => {
                    self.guard_new(key);
                    self.admit(key);
                    let e = self.fresh(Value::$variant(Box::default()), now);
                    self.map.insert_full(CompactBytes::from(key), e).0
                }
            };
            self.last_write = idx;
            match self.map.get_index_mut(idx).map(|(_, e)| &mut e.value) {
                Some(Value::$variant(v)) => {
                    let v: &mut $ty = v;
                    Ok(v)
                }
                _ => Err(CmdError::WrongType),
            }
        }
    };
}

impl Db {
    /// Number of keys (including expired ones not yet reclaimed, as Redis's DBSIZE).
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// Whether the database is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// Number of keys with a TTL.
    pub fn volatile_len(&self) -> usize {
        self.volatile.len()
    }

    /// An empty database that raises `flag` when it expires a key.
    pub(crate) fn with_flag(flag: ExpiredFlag) -> Db {
        Db {
            expired_flag: flag,
            ..Db::default()
        }
    }

    /// Installs (or, with `None`, removes) the hook a running snapshot uses.
    pub(crate) fn set_before_write(&mut self, hook: Option<Box<dyn BeforeWrite>>) {
        self.before_write = hook;
    }

    /// Calls the snapshot hook, if any, for the entry at `idx`. The check is inline;
    /// the call is out of line (no snapshot runs on the hot path).
    #[inline(always)]
    fn guard_index(&mut self, idx: usize) {
        if self.before_write.is_some() {
            self.save_index(idx);
        }
    }

    #[cold]
    #[inline(never)]
    fn save_index(&mut self, idx: usize) {
        if let Some(h) = self.before_write.as_mut() {
            if let Some((k, entry)) = self.map.get_index(idx) {
                let expire_at = if entry.has_ttl() {
                    self.volatile.get(k.as_slice()).copied().unwrap_or(0)
                } else {
                    0
                };
                let old = Stored {
                    index: idx,
                    entry,
                    expire_at,
                };
                h.before_write(k, Some(old));
            }
        }
    }

    /// Before the entry at `idx` is swap-removed: the snapshot hook, if any, sees the
    /// last entry move into its place.
    #[inline(always)]
    fn guard_swap_remove(&mut self, idx: usize) {
        if self.before_write.is_some() {
            self.save_move(idx);
        }
    }

    #[cold]
    #[inline(never)]
    fn save_move(&mut self, to: usize) {
        let last = self.map.len().wrapping_sub(1);
        if last == to || last == usize::MAX {
            return;
        }
        if let Some(h) = self.before_write.as_mut() {
            if let Some((k, entry)) = self.map.get_index(last) {
                let expire_at = if entry.has_ttl() {
                    self.volatile.get(k.as_slice()).copied().unwrap_or(0)
                } else {
                    0
                };
                let moved = Stored {
                    index: last,
                    entry,
                    expire_at,
                };
                h.before_move(k, moved, to);
            }
        }
    }

    /// Calls the snapshot hook, if any, for a key about to be created.
    #[inline(always)]
    fn guard_new(&mut self, key: &[u8]) {
        if self.before_write.is_some() {
            self.save_new(key);
        }
    }

    #[cold]
    #[inline(never)]
    fn save_new(&mut self, key: &[u8]) {
        if let Some(h) = self.before_write.as_mut() {
            h.before_write(key, None);
        }
    }

    /// Calls the snapshot hook, if any, for `key` (stored or not).
    #[inline(always)]
    fn guard_key(&mut self, key: &[u8]) {
        if self.before_write.is_some() {
            self.save_key(key);
        }
    }

    #[cold]
    #[inline(never)]
    fn save_key(&mut self, key: &[u8]) {
        match self.map.get_index_of(key) {
            Some(idx) => self.save_index(idx),
            None => self.save_new(key),
        }
    }

    /// Whether a stored entry has expired; one more probe only for keys with a TTL.
    #[inline]
    fn is_expired(&self, key: &[u8], e: &Entry, now: u64) -> bool {
        e.has_ttl() && self.volatile.get(key).is_some_and(|&at| at <= now)
    }

    /// Whether the entry at `idx` has expired.
    fn expired_at_index(&self, idx: usize, now: u64) -> bool {
        match self.map.get_index(idx) {
            Some((k, e)) => self.is_expired(k, e, now),
            None => false,
        }
    }

    /// Reads a key, deleting it first if it has expired; records the access.
    pub fn lookup(&mut self, key: &[u8], now: u64) -> Option<&Entry> {
        // A miss is not counted: the fill that follows is (one count per request,
        // as Caffeine counts a miss and its load).
        let idx = self.live_index(key, now)?;
        self.record(key);
        let clock = self.clock();
        let e = &mut self.map[idx];
        access(clock, e, now);
        Some(e)
    }

    /// Opens a key for writing, deleting it first if it has expired.
    pub fn lookup_mut(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        let idx = self.live_index(key, now)?;
        self.record(key);
        self.guard_index(idx);
        self.last_write = idx;
        let clock = self.clock();
        let e = &mut self.map[idx];
        access(clock, e, now);
        Some(e)
    }

    /// The index of a live key, expiring it first if its time has come.
    #[inline]
    fn live_index(&mut self, key: &[u8], now: u64) -> Option<usize> {
        let (idx, _, e) = self.map.get_full(key)?;
        if e.has_ttl() && self.volatile.get(key).is_some_and(|&at| at <= now) {
            if self.expiry_paused_until <= now {
                self.expire_at_index(idx);
            }
            return None;
        }
        Some(idx)
    }

    /// Read access without touching the LRU clock (still expires lazily).
    pub fn peek(&mut self, key: &[u8], now: u64) -> Option<&Entry> {
        let idx = self.live_index(key, now)?;
        Some(&self.map[idx])
    }

    /// Whether a key exists and is not expired, without side effects.
    pub fn is_live(&self, key: &[u8], now: u64) -> bool {
        self.get_live(key, now).is_some()
    }

    /// Shared access to a live entry, without expiring or touching it: lets a command
    /// read several keys at once (SINTER) after a first pass did the lazy expiry.
    pub fn get_live(&self, key: &[u8], now: u64) -> Option<&Entry> {
        self.map.get(key).filter(|e| !self.is_expired(key, e, now))
    }

    fn expire_at_index(&mut self, idx: usize) {
        self.guard_index(idx);
        self.guard_swap_remove(idx);
        if let Some((k, e)) = self.map.swap_remove_index(idx) {
            if e.has_ttl() {
                self.volatile.swap_remove(&k);
            }
            self.expired.push(k.to_bytes());
            self.expired_flag.raise();
        }
    }

    /// Stores a value, dropping any TTL (SET semantics).
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: Value, now: u64) {
        let key = key.as_ref();
        self.guard_key(key);
        self.record(key);
        let clock = self.clock();
        // One hash probe for both cases (building the key is free for keys up to 22
        // bytes, which stay inline).
        match self.map.entry(CompactBytes::from(key)) {
            indexmap::map::Entry::Occupied(mut o) => {
                self.last_write = o.index();
                let had_ttl = o.get().has_ttl();
                let mut e = Entry::new(value, now);
                match clock {
                    // An overwrite is an access: the key keeps its counter.
                    Clock::Lfu(l) => e.set_clock(evict::lfu_access(o.get().lru(), l, now)),
                    Clock::Tick(t) => e.set_clock(t),
                    Clock::Lru => {}
                }
                *o.get_mut() = e;
                if had_ttl {
                    self.volatile.swap_remove(key);
                }
            }
            indexmap::map::Entry::Vacant(v) => {
                self.last_write = v.index();
                if let Some(a) = self.admission.as_mut() {
                    a.inserted(key, v.index());
                }
                let mut e = Entry::new(value, now);
                match clock {
                    Clock::Lfu(_) => e.set_clock(evict::lfu_fresh(now)),
                    Clock::Tick(t) => e.set_clock(t),
                    Clock::Lru => {}
                }
                v.insert(e);
            }
        }
    }

    /// Replaces a value, keeping its TTL (KEEPTTL, and in-place updates of collections).
    pub fn insert_keep_ttl(&mut self, key: impl AsRef<[u8]>, value: Value, now: u64) {
        let key = key.as_ref();
        match self.live_index(key, now) {
            Some(idx) => {
                self.guard_index(idx);
                self.last_write = idx;
                let clock = self.clock();
                let e = &mut self.map[idx];
                e.value = value;
                e.set_raw(false);
                e.set_written(now);
                access(clock, e, now);
            }
            None => self.insert(key, value, now),
        }
    }

    /// Inserts a whole entry with its expiry (Unix ms, 0 for none): RENAME, MOVE, COPY,
    /// RESTORE. Replaces whatever the key held.
    pub fn insert_entry(&mut self, key: impl AsRef<[u8]>, mut entry: Entry, expire_at: u64) {
        self.guard_key(key.as_ref());
        let key = CompactBytes::from(key.as_ref());
        entry.set_has_ttl(expire_at != 0);
        if expire_at != 0 {
            self.volatile.insert(key.clone(), expire_at);
        } else {
            self.volatile.swap_remove(&key);
        }
        self.last_write = self.map.insert_full(key, entry).0;
    }

    /// Removes a key; returns its entry if it existed and had not expired.
    pub fn remove(&mut self, key: &[u8], now: u64) -> Option<Entry> {
        self.remove_with_expire(key, now).map(|(e, _)| e)
    }

    /// Removes a key; returns its entry and expiry (Unix ms, 0 for none) if it existed
    /// and had not expired (RENAME and MOVE carry the TTL over).
    pub fn remove_with_expire(&mut self, key: &[u8], now: u64) -> Option<(Entry, u64)> {
        if self.before_write.is_some() {
            let idx = self.map.get_index_of(key)?;
            self.guard_index(idx);
            self.guard_swap_remove(idx);
        }
        let (k, e) = self.map.swap_remove_entry(key)?;
        let at = if e.has_ttl() {
            self.volatile.swap_remove(key).unwrap_or(0)
        } else {
            0
        };
        if at != 0 && at <= now {
            self.expired.push(k.to_bytes());
            self.expired_flag.raise();
            None
        } else {
            Some((e, at))
        }
    }

    /// Removes a key if its collection became empty; returns true when it did.
    pub fn remove_if_empty(&mut self, key: &[u8]) -> bool {
        let Some(idx) = self
            .map
            .get_index_of(key)
            .filter(|&i| self.map[i].value.is_empty_collection())
        else {
            return false;
        };
        self.guard_index(idx);
        self.guard_swap_remove(idx);
        if let Some((k, e)) = self.map.swap_remove_index(idx) {
            if e.has_ttl() {
                self.volatile.swap_remove(&k);
            }
        }
        true
    }

    /// Sets an absolute expiry in ms; returns false if the key does not exist.
    pub fn set_expire(&mut self, key: &[u8], at_ms: u64, now: u64) -> bool {
        let Some(idx) = self.live_index(key, now) else {
            return false;
        };
        self.guard_index(idx);
        let clock = self.clock();
        let Some((k, e)) = self.map.get_index_mut(idx) else {
            return false;
        };
        access(clock, e, now);
        e.set_has_ttl(true);
        let k = k.clone();
        self.volatile.insert(k, at_ms.max(1));
        true
    }

    /// Removes a TTL; returns true if there was one.
    pub fn persist(&mut self, key: &[u8], now: u64) -> bool {
        let Some(idx) = self.live_index(key, now) else {
            return false;
        };
        if !self.map[idx].has_ttl() {
            access(self.clock(), &mut self.map[idx], now);
            return false;
        }
        self.guard_index(idx);
        let clock = self.clock();
        let e = &mut self.map[idx];
        access(clock, e, now);
        e.set_has_ttl(false);
        self.volatile.swap_remove(key);
        true
    }

    /// The key's absolute expiry in ms: `None` if missing, `Some(0)` if no TTL.
    pub fn expire_of(&mut self, key: &[u8], now: u64) -> Option<u64> {
        let idx = self.live_index(key, now)?;
        Some(if self.map[idx].has_ttl() {
            self.volatile.get(key).copied().unwrap_or(0)
        } else {
            0
        })
    }

    /// The absolute expiry (Unix ms, 0 for none) of a stored key, live or not, without
    /// expiring or touching it: the RDB writer reads it while iterating.
    pub fn expire_at(&self, key: &[u8]) -> u64 {
        self.volatile.get(key).copied().unwrap_or(0)
    }

    /// Drops every key.
    pub fn clear(&mut self) {
        if let Some(mut h) = self.before_write.take() {
            h.before_clear(self);
            self.before_write = Some(h);
        }
        self.map = IndexMap::new();
        self.volatile = IndexMap::new();
    }

    /// Takes the keys of `loaded` in place of this database's (a loaded RDB file): the
    /// snapshot hook and the expiry flag stay with this database, and the hook first
    /// sees every entry go.
    pub(crate) fn replace_contents(&mut self, loaded: Db) {
        if let Some(mut h) = self.before_write.take() {
            h.before_clear(self);
            self.before_write = Some(h);
        }
        self.map = loaded.map;
        self.volatile = loaded.volatile;
        self.expired.extend(loaded.expired);
    }

    /// The entry at position `idx` of the insertion order, with its key and expiry
    /// (Unix ms, 0 for none), without expiring or touching it: a snapshot walks the
    /// database by position.
    pub(crate) fn entry_at(&self, idx: usize) -> Option<(&CompactBytes, &Entry, u64)> {
        let (k, e) = self.map.get_index(idx)?;
        let at = if e.has_ttl() {
            self.volatile.get(k.as_slice()).copied().unwrap_or(0)
        } else {
            0
        };
        Some((k, e, at))
    }

    /// Gives back table capacity the keys no longer need (Redis's
    /// `tryResizeHashTables`, from the cron): the map's entries follow its hash
    /// index's capacity when they grow, and the index grows when deletions leave it
    /// full of tombstones, so a keyspace that churns at a steady size (a cache under
    /// eviction) can end up with twice the entries it holds. Shrinks only when more
    /// than a third is unused, to 1/8 above the keys held, so it does not repeat.
    pub(crate) fn resize_tables(&mut self) {
        fn wasteful(len: usize, cap: usize) -> bool {
            cap > 1024 && cap > len + len / 2
        }
        if wasteful(self.map.len(), self.map.capacity()) {
            let len = self.map.len();
            self.map.shrink_to(len + len / 8);
        }
        if wasteful(self.volatile.len(), self.volatile.capacity()) {
            let len = self.volatile.len();
            self.volatile.shrink_to(len + len / 8);
        }
    }

    /// Drops every key (as [`Db::clear`]) and hands back the old contents, for the
    /// lazy-free thread to drop.
    pub(crate) fn take_contents(&mut self) -> impl Send + 'static {
        if let Some(mut h) = self.before_write.take() {
            h.before_clear(self);
            self.before_write = Some(h);
        }
        if let Some(a) = self.admission.as_mut() {
            a.window.clear();
        }
        (
            std::mem::take(&mut self.map),
            std::mem::take(&mut self.volatile),
        )
    }

    /// Trades keys with `other` (SWAPDB). A snapshot hook stays with its database
    /// number: both hooks first see every entry go. Keys waiting for their expiry to
    /// be announced stay too (they expired in this database).
    pub(crate) fn swap_contents(&mut self, other: &mut Db) {
        for db in [&mut *self, &mut *other] {
            if let Some(mut h) = db.before_write.take() {
                h.before_clear(db);
                db.before_write = Some(h);
            }
        }
        std::mem::swap(&mut self.map, &mut other.map);
        std::mem::swap(&mut self.volatile, &mut other.volatile);
    }

    /// Records that the value of `key` was written at `now` (OBJECT WRITTEN). The
    /// write path calls it for every change of a value; the entry is usually the one
    /// last opened for writing, found without a probe.
    pub(crate) fn stamp_written(&mut self, key: &[u8], now: u64) {
        let idx = match self.map.get_index(self.last_write) {
            Some((k, _)) if k.as_slice() == key => self.last_write,
            _ => match self.map.get_index_of(key) {
                Some(idx) => idx,
                None => return,
            },
        };
        self.map[idx].set_written(now);
    }

    /// A random live key.
    pub fn random_key(&mut self, now: u64) -> Option<Bytes> {
        for _ in 0..100 {
            if self.map.is_empty() {
                return None;
            }
            let i = fastrand::usize(..self.map.len());
            if self.expired_at_index(i, now) {
                self.expire_at_index(i);
                continue;
            }
            return self.map.get_index(i).map(|(k, _)| k.to_bytes());
        }
        None
    }

    /// One SCAN step. The cursor walks indexes downwards (encoded as index + 1) so that
    /// swap-removal during a scan only repeats keys, never skips them.
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        mut visit: impl FnMut(&CompactBytes, &Entry),
    ) -> u64 {
        let len = self.map.len() as u64;
        let mut next = if cursor == 0 { len } else { cursor.min(len) };
        let mut seen = 0;
        while next > 0 && seen < count {
            let idx = (next - 1) as usize;
            if let Some((k, e)) = self.map.get_index(idx) {
                visit(k, e);
            }
            next -= 1;
            seen += 1;
        }
        next
    }

    /// Iterates over all keys, live or not.
    pub fn iter(&self) -> impl Iterator<Item = (&CompactBytes, &Entry)> {
        self.map.iter()
    }

    /// Iterates over the keys that have not expired at `now`.
    pub fn iter_live(&self, now: u64) -> impl Iterator<Item = (&CompactBytes, &Entry)> {
        self.map
            .iter()
            .filter(move |(k, e)| !self.is_expired(k, e, now))
    }

    /// Whether an entry (live or not) is stored under the key.
    pub fn contains_raw(&self, key: &[u8]) -> bool {
        self.map.contains_key(key)
    }

    /// Samples up to `n` keys with a TTL and removes the expired ones; returns how many
    /// were sampled and how many expired (Redis's active expire cycle uses the ratio).
    pub fn expire_sample(&mut self, n: usize, now: u64) -> (usize, usize) {
        let mut sampled = 0;
        let mut expired = 0;
        for _ in 0..n {
            if self.volatile.is_empty() {
                break;
            }
            let i = fastrand::usize(..self.volatile.len());
            sampled += 1;
            let Some((key, &at)) = self.volatile.get_index(i) else {
                break;
            };
            if at > now {
                continue;
            }
            match self.map.get_index_of(key.as_slice()) {
                Some(idx) => {
                    self.expire_at_index(idx);
                    expired += 1;
                }
                // Not reachable while the two maps agree; heal rather than loop.
                None => {
                    self.volatile.swap_remove_index(i);
                }
            }
        }
        (sampled, expired)
    }

    /// Sets how accesses are recorded: an LFU counter (`Some`) or an access time.
    pub(crate) fn set_lfu(&mut self, lfu: Option<Lfu>) {
        self.lfu = lfu;
    }

    /// Bytes of the keyspace's own tables (their capacity, used or not): the entries
    /// vector (hash, key, entry) and the hash index, for keys and for TTLs.
    pub(crate) fn table_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(u64, CompactBytes, Entry)>() + 9;
        let ttl_slot = std::mem::size_of::<(u64, CompactBytes, u64)>() + 9;
        self.map.capacity() * slot + self.volatile.capacity() * ttl_slot
    }

    /// Turns `allkeys-tinylfu`'s admission state on (fresh) or off.
    pub(crate) fn set_admission(&mut self, on: bool) {
        match (on, self.admission.is_some()) {
            (true, false) => self.admission = Some(Box::new(Admission::new(self.map.len()))),
            (false, true) => self.admission = None,
            _ => {}
        }
    }

    /// Counts an access of `key`, found or not, in the admission sketch.
    #[inline]
    fn record(&mut self, key: &[u8]) {
        if let Some(a) = self.admission.as_mut() {
            a.record(key, self.map.len());
        }
    }

    /// A key is being created: it enters the admission window.
    #[inline]
    fn admit(&mut self, key: &[u8]) {
        if let Some(a) = self.admission.as_mut() {
            a.inserted(key, self.map.len());
        }
    }

    /// A new entry, its clock bits as the policy wants them.
    fn fresh(&mut self, value: Value, now: u64) -> Entry {
        let mut e = Entry::new(value, now);
        match self.clock() {
            Clock::Lfu(_) => e.set_clock(evict::lfu_fresh(now)),
            Clock::Tick(t) => e.set_clock(t),
            Clock::Lru => {}
        }
        e
    }

    /// How this access is recorded in the entry's clock bits (a tick is used up).
    #[inline]
    fn clock(&mut self) -> Clock {
        if let Some(l) = self.lfu {
            return Clock::Lfu(l);
        }
        match self.admission.as_mut() {
            Some(a) => Clock::Tick(a.tick()),
            None => Clock::Lru,
        }
    }

    /// Accesses since `e`'s last, under `allkeys-tinylfu` (0 otherwise).
    pub(crate) fn ticks_idle(&self, e: &Entry) -> u64 {
        self.admission
            .as_ref()
            .map_or(0, |a| (a.now().wrapping_sub(e.lru()) & 0xFF_FFFF) as u64)
    }

    /// A random stored entry, live or not (eviction samples with it).
    pub(crate) fn random_entry(&self) -> Option<(&CompactBytes, &Entry)> {
        if self.map.is_empty() {
            return None;
        }
        self.map.get_index(fastrand::usize(..self.map.len()))
    }

    /// A random key with a TTL, and its expiry.
    pub(crate) fn random_volatile(&self) -> Option<(&CompactBytes, u64)> {
        if self.volatile.is_empty() {
            return None;
        }
        self.volatile
            .get_index(fastrand::usize(..self.volatile.len()))
            .map(|(k, &at)| (k, at))
    }

    /// A stored entry, live or not, without side effects.
    pub(crate) fn entry(&self, key: &[u8]) -> Option<&Entry> {
        self.map.get(key)
    }

    /// Removes a key to free memory (eviction); returns its entry. The write path
    /// announces it ([`crate::keyspace::Change::Evicted`]).
    pub(crate) fn evict(&mut self, key: &[u8]) -> Option<Entry> {
        let idx = self.map.get_index_of(key)?;
        self.guard_index(idx);
        let (k, e) = self.map.swap_remove_index(idx)?;
        if e.has_ttl() {
            self.volatile.swap_remove(&k);
        }
        Some(e)
    }

    typed_access!(list, list_mut, list_or_create, List, List);
    typed_access!(hash, hash_mut, hash_or_create, Hash, Hash);
    typed_access!(set, set_mut, set_or_create, Set, Set);
    typed_access!(zset, zset_mut, zset_or_create, ZSet, Box<ZSet>);
    typed_access!(stream, stream_mut, stream_or_create, Stream, Box<Stream>);

    /// A string value; `WRONGTYPE` for other types.
    pub fn get_str(&mut self, key: &[u8], now: u64) -> Result<Option<&CompactBytes>, CmdError> {
        match self.lookup(key, now) {
            None => Ok(None),
            Some(e) => match &e.value {
                Value::Str(b) => Ok(Some(b)),
                _ => Err(CmdError::WrongType),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = WRITE_EPOCH_MS + 86_400_000;

    fn s(v: &str) -> Value {
        Value::Str(CompactBytes::from(v))
    }

    #[test]
    fn entry_is_compact_and_keeps_its_metadata() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
        let mut e = Entry::new(s("v"), NOW + 1234);
        assert_eq!(e.written_at(), NOW + 1200);
        assert_eq!(e.lru(), lru_clock(NOW + 1234));
        assert!(!e.is_raw() && !e.has_ttl());
        e.set_raw(true);
        e.set_has_ttl(true);
        e.touch(NOW + 5000);
        assert!(e.is_raw() && e.has_ttl());
        assert_eq!(e.lru(), lru_clock(NOW + 5000));
        e.set_raw(false);
        assert!(!e.is_raw() && e.has_ttl());
        // Before the epoch the write clock saturates instead of wrapping.
        assert_eq!(Entry::new(s("v"), 1).written_at(), WRITE_EPOCH_MS);
    }

    #[test]
    fn ttl_lives_in_the_volatile_index() {
        let mut db = Db::default();
        db.insert(b"a", s("1"), NOW);
        db.insert(b"b", s("2"), NOW);
        assert_eq!(db.expire_of(b"a", NOW), Some(0));
        assert!(db.set_expire(b"a", NOW + 100, NOW));
        assert!(!db.set_expire(b"zz", NOW + 100, NOW));
        assert_eq!(db.volatile_len(), 1);
        assert_eq!(db.expire_of(b"a", NOW), Some(NOW + 100));
        assert!(db.peek(b"a", NOW).is_some_and(Entry::has_ttl));
        // KEEPTTL keeps it, SET drops it.
        db.insert_keep_ttl(b"a", s("3"), NOW);
        assert_eq!(db.expire_of(b"a", NOW), Some(NOW + 100));
        db.insert(b"a", s("4"), NOW);
        assert_eq!(db.expire_of(b"a", NOW), Some(0));
        assert_eq!(db.volatile_len(), 0);
        // PERSIST.
        db.set_expire(b"b", NOW + 100, NOW);
        assert!(db.persist(b"b", NOW));
        assert!(!db.persist(b"b", NOW));
        assert_eq!(db.volatile_len(), 0);
        // Moving an entry with its expiry (RENAME/MOVE).
        db.set_expire(b"b", NOW + 100, NOW);
        let (e, at) = db.remove_with_expire(b"b", NOW).unwrap();
        assert_eq!(at, NOW + 100);
        assert_eq!(db.volatile_len(), 0);
        db.insert_entry(b"c", e.clone(), at);
        assert_eq!(db.expire_of(b"c", NOW), Some(NOW + 100));
        db.insert_entry(b"c", e, 0);
        assert_eq!(db.expire_of(b"c", NOW), Some(0));
        assert!(!db.peek(b"c", NOW).unwrap().has_ttl());
        assert_eq!(db.volatile_len(), 0);
    }

    #[test]
    fn tables_give_back_capacity_after_deletions() {
        let mut db = Db::default();
        for i in 0..10_000 {
            db.insert(format!("k{i}"), s("v"), NOW);
        }
        for i in 0..9_000 {
            db.remove(format!("k{i}").as_bytes(), NOW);
        }
        assert!(db.map.capacity() >= 10_000);
        db.resize_tables();
        assert!(db.map.capacity() < 2_000, "{}", db.map.capacity());
        let cap = db.map.capacity();
        db.resize_tables();
        assert_eq!(db.map.capacity(), cap, "not again while within a third");
        assert!(db.is_live(b"k9999", NOW));
    }

    #[test]
    fn expiry_lazy_and_active() {
        let mut db = Db::default();
        for i in 0..10 {
            let k = format!("k{i}");
            db.insert(k.as_bytes(), s("v"), NOW);
            db.set_expire(k.as_bytes(), NOW + 10, NOW);
        }
        db.insert(b"keep", s("v"), NOW);
        assert!(db.is_live(b"k0", NOW + 9));
        assert!(!db.is_live(b"k0", NOW + 10));
        assert_eq!(db.iter_live(NOW + 10).count(), 1);
        assert!(db.lookup_mut(b"k0", NOW + 10).is_none());
        assert_eq!(db.expired, vec![Bytes::from_static(b"k0")]);
        assert!(db.remove(b"k1", NOW + 10).is_none());
        assert_eq!(db.len(), 9);
        let mut total = 0;
        while db.volatile_len() > 0 {
            total += db.expire_sample(20, NOW + 10).1;
        }
        assert_eq!(total, 8);
        assert_eq!(db.len(), 1);
        assert_eq!(db.expired.len(), 10);
    }
}
