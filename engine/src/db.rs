//! One numbered database: the keyspace, key expiry, and typed access to values.

use crate::error::CmdError;
use crate::types::{Hash, List, Set, Value, ZSet};
use bytes::Bytes;
use indexmap::{IndexMap, IndexSet};

/// A value with its metadata.
#[derive(Debug, Clone)]
pub struct Entry {
    pub value: Value,
    /// Absolute expiry in Unix milliseconds; 0 when the key has no TTL.
    pub expire_at: u64,
    /// Last access, in seconds of the server's LRU clock (OBJECT IDLETIME).
    pub lru: u32,
    /// A string written by APPEND/SETRANGE/SETBIT is reported as `raw`, as in Redis.
    pub raw: bool,
    /// When the value was last written (Unix ms), for the consistency audit.
    pub written_at: u64,
}

impl Entry {
    /// A fresh entry without TTL.
    pub fn new(value: Value, now: u64) -> Self {
        Entry {
            value,
            expire_at: 0,
            lru: lru_clock(now),
            raw: false,
            written_at: now,
        }
    }
    fn expired(&self, now: u64) -> bool {
        self.expire_at != 0 && self.expire_at <= now
    }
}

/// The LRU clock: seconds, wrapping at 2^24 like Redis's.
pub fn lru_clock(now_ms: u64) -> u32 {
    ((now_ms / 1000) & 0xFF_FFFF) as u32
}

/// A keyspace.
///
/// Keys live in an insertion-ordered map so that SCAN can walk it by index and
/// RANDOMKEY and the active expiry cycle can sample it in O(1).
#[derive(Debug, Default)]
pub struct Db {
    map: IndexMap<Bytes, Entry>,
    /// Keys that carry a TTL, sampled by the active expiry cycle.
    volatile: IndexSet<Bytes>,
    /// Keys removed because they expired, waiting for their `expired` notification.
    pub expired: Vec<Bytes>,
}

macro_rules! typed_access {
    ($get:ident, $get_or_create:ident, $variant:ident, $ty:ty, $make:expr) => {
        /// Typed read-write access; `WRONGTYPE` when the key holds another type.
        pub fn $get(&mut self, key: &[u8], now: u64) -> Result<Option<&mut $ty>, CmdError> {
            match self.lookup_mut(key, now) {
                None => Ok(None),
                Some(e) => match &mut e.value {
                    Value::$variant(v) => Ok(Some(v)),
                    _ => Err(CmdError::WrongType),
                },
            }
        }
        /// Typed access that creates an empty value when the key is missing.
        pub fn $get_or_create(&mut self, key: &[u8], now: u64) -> Result<&mut $ty, CmdError> {
            if self.lookup_mut(key, now).is_none() {
                self.map
                    .insert(Bytes::copy_from_slice(key), Entry::new($make, now));
            }
            match self.map.get_mut(key).map(|e| &mut e.value) {
                Some(Value::$variant(v)) => Ok(v),
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

    /// Looks a key up, deleting it first if it has expired.
    pub fn lookup_mut(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        let idx = self.map.get_index_of(key)?;
        if self.map[idx].expired(now) {
            self.expire_at_index(idx);
            return None;
        }
        let e = &mut self.map[idx];
        e.lru = lru_clock(now);
        Some(e)
    }

    /// Read access without touching the LRU clock (still expires lazily).
    pub fn peek(&mut self, key: &[u8], now: u64) -> Option<&Entry> {
        let idx = self.map.get_index_of(key)?;
        if self.map[idx].expired(now) {
            self.expire_at_index(idx);
            return None;
        }
        Some(&self.map[idx])
    }

    /// Whether a key exists and is not expired, without side effects.
    pub fn is_live(&self, key: &[u8], now: u64) -> bool {
        self.map.get(key).is_some_and(|e| !e.expired(now))
    }

    /// Shared access to a live entry, without expiring or touching it: lets a command
    /// read several keys at once (SINTER) after a first pass did the lazy expiry.
    pub fn get_live(&self, key: &[u8], now: u64) -> Option<&Entry> {
        self.map.get(key).filter(|e| !e.expired(now))
    }

    fn expire_at_index(&mut self, idx: usize) {
        if let Some((k, _)) = self.map.swap_remove_index(idx) {
            self.volatile.swap_remove(&k);
            self.expired.push(k);
        }
    }

    /// Stores a value, dropping any TTL (SET semantics).
    pub fn insert(&mut self, key: Bytes, value: Value, now: u64) {
        let had_ttl = match self.map.get_full_mut(&key) {
            Some((_, _, e)) => {
                let had = e.expire_at != 0;
                *e = Entry::new(value, now);
                had
            }
            None => {
                self.map.insert(key.clone(), Entry::new(value, now));
                false
            }
        };
        if had_ttl {
            self.volatile.swap_remove(&key);
        }
    }

    /// Replaces a value, keeping its TTL (KEEPTTL, and in-place updates of collections).
    pub fn insert_keep_ttl(&mut self, key: Bytes, value: Value, now: u64) {
        match self.map.get_mut(&key) {
            Some(e) if !e.expired(now) => {
                e.value = value;
                e.raw = false;
                e.written_at = now;
                e.lru = lru_clock(now);
            }
            _ => self.insert(key, value, now),
        }
    }

    /// Inserts a whole entry (RENAME, MOVE, COPY, RESTORE).
    pub fn insert_entry(&mut self, key: Bytes, entry: Entry) {
        let ttl = entry.expire_at != 0;
        self.map.insert(key.clone(), entry);
        if ttl {
            self.volatile.insert(key);
        } else {
            self.volatile.swap_remove(&key);
        }
    }

    /// Removes a key; returns its entry if it existed and had not expired.
    pub fn remove(&mut self, key: &[u8], now: u64) -> Option<Entry> {
        let (k, e) = self.map.swap_remove_entry(key)?;
        if e.expire_at != 0 {
            self.volatile.swap_remove(&k);
        }
        if e.expired(now) {
            self.expired.push(k);
            None
        } else {
            Some(e)
        }
    }

    /// Removes a key if its collection became empty; returns true when it did.
    pub fn remove_if_empty(&mut self, key: &[u8]) -> bool {
        let empty = self
            .map
            .get(key)
            .is_some_and(|e| e.value.is_empty_collection());
        if empty {
            if let Some((k, _)) = self.map.swap_remove_entry(key) {
                self.volatile.swap_remove(&k);
            }
        }
        empty
    }

    /// Sets an absolute expiry in ms; returns false if the key does not exist.
    pub fn set_expire(&mut self, key: &[u8], at_ms: u64, now: u64) -> bool {
        match self.lookup_mut(key, now) {
            Some(e) => {
                e.expire_at = at_ms.max(1);
                let k = match self.map.get_key_value(key) {
                    Some((k, _)) => k.clone(),
                    None => return false,
                };
                self.volatile.insert(k);
                true
            }
            None => false,
        }
    }

    /// Removes a TTL; returns true if there was one.
    pub fn persist(&mut self, key: &[u8], now: u64) -> bool {
        match self.lookup_mut(key, now) {
            Some(e) if e.expire_at != 0 => {
                e.expire_at = 0;
                self.volatile.swap_remove(key);
                true
            }
            _ => false,
        }
    }

    /// The key's absolute expiry in ms: `None` if missing, `Some(0)` if no TTL.
    pub fn expire_of(&mut self, key: &[u8], now: u64) -> Option<u64> {
        self.peek(key, now).map(|e| e.expire_at)
    }

    /// Drops every key.
    pub fn clear(&mut self) {
        self.map = IndexMap::new();
        self.volatile = IndexSet::new();
    }

    /// A random live key.
    pub fn random_key(&mut self, now: u64) -> Option<Bytes> {
        for _ in 0..100 {
            if self.map.is_empty() {
                return None;
            }
            let i = fastrand::usize(..self.map.len());
            if self.map[i].expired(now) {
                self.expire_at_index(i);
                continue;
            }
            return self.map.get_index(i).map(|(k, _)| k.clone());
        }
        None
    }

    /// One SCAN step. The cursor walks indexes downwards (encoded as index + 1) so that
    /// swap-removal during a scan only repeats keys, never skips them.
    pub fn scan(&self, cursor: u64, count: usize, mut visit: impl FnMut(&Bytes, &Entry)) -> u64 {
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
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Entry)> {
        self.map.iter()
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
            let Some(key) = self.volatile.get_index(i).cloned() else {
                break;
            };
            match self.map.get_index_of(&key) {
                Some(idx) if self.map[idx].expired(now) => {
                    self.expire_at_index(idx);
                    expired += 1;
                }
                Some(_) => {}
                None => {
                    self.volatile.swap_remove_index(i);
                }
            }
        }
        (sampled, expired)
    }

    typed_access!(
        list_mut,
        list_or_create,
        List,
        List,
        Value::List(List::new())
    );
    typed_access!(
        hash_mut,
        hash_or_create,
        Hash,
        Hash,
        Value::Hash(Hash::default())
    );
    typed_access!(set_mut, set_or_create, Set, Set, Value::Set(Set::default()));
    typed_access!(
        zset_mut,
        zset_or_create,
        ZSet,
        Box<ZSet>,
        Value::ZSet(Box::default())
    );

    /// A string value; `WRONGTYPE` for other types.
    pub fn get_str(&mut self, key: &[u8], now: u64) -> Result<Option<&Bytes>, CmdError> {
        match self.lookup_mut(key, now) {
            None => Ok(None),
            Some(e) => match &e.value {
                Value::Str(b) => Ok(Some(b)),
                _ => Err(CmdError::WrongType),
            },
        }
    }
}
