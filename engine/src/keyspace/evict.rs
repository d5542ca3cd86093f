//! Eviction under `maxmemory` (Redis's `evict.c`): which keys go when the process
//! holds more memory than allowed, and the LFU counter the `*-lfu` policies rank by.
//!
//! Memory is the counting allocator's total ([`crate::alloc::used_memory`]), so
//! whatever grows (values, the keyspace's tables, client buffers) counts. Before a
//! command runs, [`Store::perform_evictions`] frees keys until the total is back under
//! `maxmemory` or the time limit (`maxmemory-eviction-tenacity`) passes, in which case
//! the server's cron goes on evicting. Each evicted key is announced through the one
//! write path ([`super::Change::Evicted`]): WATCH, leases, the `evicted` keyspace
//! event, propagation (DEL or UNLINK) and hooks see it as a deletion.
//!
//! The `*-lru`, `*-lfu` and `volatile-ttl` policies sample `maxmemory-samples` keys of
//! each database into a pool of the 16 best candidates seen so far, and evict the
//! best of the pool (Redis's `evictionPoolPopulate`): the approximation gets better
//! the longer it runs, at a fixed cost per eviction.

use crate::keyspace::db::{Db, Entry};
use crate::store::Store;
use crate::types::CompactBytes;
use std::time::Instant;

/// Size of the eviction pool (Redis's `EVPOOL_SIZE`).
const POOL_SIZE: usize = 16;
/// A new key's LFU counter (Redis's `LFU_INIT_VAL`): new keys get a chance to be
/// accessed again before they are the first to go.
pub(crate) const LFU_INIT: u8 = 5;

/// `maxmemory-policy`, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    NoEviction,
    AllKeysLru,
    AllKeysLfu,
    AllKeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
    /// The engine's own: W-TinyLFU admission in front of sampled LFU
    /// ([`crate::keyspace::tinylfu`]).
    AllKeysTinyLfu,
}

impl Policy {
    /// The policy named `name` (the settings table checked it); `noeviction` otherwise.
    pub(crate) fn parse(name: &str) -> Policy {
        match name {
            "allkeys-lru" => Policy::AllKeysLru,
            "allkeys-lfu" => Policy::AllKeysLfu,
            "allkeys-random" => Policy::AllKeysRandom,
            "volatile-lru" => Policy::VolatileLru,
            "volatile-lfu" => Policy::VolatileLfu,
            "volatile-random" => Policy::VolatileRandom,
            "volatile-ttl" => Policy::VolatileTtl,
            "allkeys-tinylfu" => Policy::AllKeysTinyLfu,
            _ => Policy::NoEviction,
        }
    }
    /// Whether keys carry an LFU counter instead of an access time.
    pub(crate) fn is_lfu(self) -> bool {
        matches!(self, Policy::AllKeysLfu | Policy::VolatileLfu)
    }
    /// Whether any key may go, or only keys with a TTL.
    fn all_keys(self) -> bool {
        matches!(
            self,
            Policy::AllKeysLru
                | Policy::AllKeysLfu
                | Policy::AllKeysRandom
                | Policy::AllKeysTinyLfu
        )
    }
}

/// The LFU parameters (`lfu-log-factor`, `lfu-decay-time`), kept by each database
/// while an LFU policy is selected so that every access updates the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lfu {
    pub(crate) log_factor: u32,
    pub(crate) decay_time: u32,
}

/// Minutes on the LFU clock: 16 bits, wrapping (Redis's `LFUGetTimeInMinutes`).
fn lfu_minutes(now_ms: u64) -> u32 {
    ((now_ms / 60_000) & 0xFFFF) as u32
}

/// Minutes since `ldt`, with the clock's wrap (`LFUTimeElapsed`).
fn lfu_elapsed(ldt: u32, now_ms: u64) -> u32 {
    let now = lfu_minutes(now_ms);
    if now >= ldt {
        now - ldt
    } else {
        65535 - ldt + now
    }
}

/// The 24 clock bits of a fresh key under an LFU policy: now, and the initial count.
pub(crate) fn lfu_fresh(now_ms: u64) -> u32 {
    (lfu_minutes(now_ms) << 8) | LFU_INIT as u32
}

/// The counter of clock bits `bits`, decayed by one per `decay_time` minutes since its
/// last decrement (`LFUDecrAndReturn`; OBJECT FREQ reports it).
pub(crate) fn lfu_decayed(bits: u32, decay_time: u32, now_ms: u64) -> u8 {
    let ldt = bits >> 8;
    let counter = bits & 0xFF;
    let periods = lfu_elapsed(ldt, now_ms)
        .checked_div(decay_time)
        .unwrap_or(0);
    counter.saturating_sub(periods) as u8
}

/// Logarithmic increment (`LFULogIncr`): the more hits a key has, the less likely the
/// next one counts, so 8 bits cover millions of accesses.
fn lfu_log_incr(counter: u8, log_factor: u32) -> u8 {
    if counter == 255 {
        return 255;
    }
    let base = (counter as f64 - LFU_INIT as f64).max(0.0);
    let p = 1.0 / (base * log_factor as f64 + 1.0);
    if fastrand::f64() < p {
        counter + 1
    } else {
        counter
    }
}

/// The clock bits after an access under LFU (`updateLFU`).
pub(crate) fn lfu_access(bits: u32, lfu: Lfu, now_ms: u64) -> u32 {
    let counter = lfu_log_incr(lfu_decayed(bits, lfu.decay_time, now_ms), lfu.log_factor);
    (lfu_minutes(now_ms) << 8) | counter as u32
}

/// Milliseconds since the entry's last access on the LRU clock
/// (`estimateObjectIdleTime`).
pub(crate) fn idle_ms(e: &Entry, now_ms: u64) -> u64 {
    let clock = crate::keyspace::db::lru_clock(now_ms);
    let lru = e.lru();
    let secs = if clock >= lru {
        clock - lru
    } else {
        clock + (0xFF_FFFF - lru)
    };
    secs as u64 * 1000
}

/// One candidate of the pool.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// Higher goes first.
    score: u64,
    db: usize,
    key: CompactBytes,
}

/// The eviction pool: the best candidates sampled so far, ascending by score.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    entries: Vec<Candidate>,
}

impl Pool {
    /// Offers a sampled key (`evictionPoolPopulate`'s insertion).
    fn offer(&mut self, score: u64, db: usize, key: &CompactBytes) {
        let k = self.entries.partition_point(|c| c.score < score);
        let full = self.entries.len() >= POOL_SIZE;
        if k == 0 && full {
            // Worse than everything in a full pool.
            return;
        }
        let c = Candidate {
            score,
            db,
            key: key.clone(),
        };
        if full {
            // Drop the worst to make room.
            self.entries.remove(0);
            self.entries.insert(k - 1, c);
        } else {
            self.entries.insert(k, c);
        }
    }

    /// Takes the best candidate out.
    fn pop(&mut self) -> Option<Candidate> {
        self.entries.pop()
    }

    /// Forgets every candidate (their keys may be gone: FLUSHALL, policy change).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}

/// What [`Store::perform_evictions`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Evict {
    /// Memory is within the limit (or there is none).
    Ok,
    /// Over the limit; eviction goes on in the cron.
    Running,
    /// Over the limit and nothing can be freed: deny-oom commands are refused.
    Fail,
}

/// The time one call may spend evicting (`evictionTimeLimitUs`).
fn time_limit_us(tenacity: u32) -> u64 {
    if tenacity <= 10 {
        50 * tenacity as u64
    } else if tenacity < 100 {
        (500.0 * 1.15f64.powf(tenacity as f64 - 10.0)) as u64
    } else {
        u64::MAX
    }
}

impl Db {
    /// Samples up to `n` keys (with a TTL only, unless `all`) into the pool, scored
    /// by `score` (entry, expiry).
    fn sample_into(
        &self,
        db: usize,
        all: bool,
        n: usize,
        pool: &mut Pool,
        score: impl Fn(&[u8], &Entry, u64) -> u64,
    ) {
        // More samples than keys only repeats them (Redis's `dictGetSomeKeys` caps too).
        let keys = if all { self.len() } else { self.volatile_len() };
        for _ in 0..n.min(keys) {
            let found = if all {
                self.random_entry().map(|(k, e)| (k, e, self.expire_at(k)))
            } else {
                self.random_volatile()
                    .and_then(|(k, at)| self.entry(k).map(|e| (k, e, at)))
            };
            if let Some((k, e, at)) = found {
                pool.offer(score(k, e, at), db, k);
            }
        }
    }
}

impl Store {
    /// Re-reads the eviction settings after CONFIG SET (and at start): the policy,
    /// and whether accesses update an LFU counter or an access time.
    pub(crate) fn reload_eviction(&mut self) {
        let policy = Policy::parse(&self.config.maxmemory_policy);
        if policy != self.evict_policy {
            self.evict_pool.clear();
        }
        self.evict_policy = policy;
        let lfu = policy.is_lfu().then_some(Lfu {
            log_factor: self.config.lfu_log_factor,
            decay_time: self.config.lfu_decay_time,
        });
        let tiny = policy == Policy::AllKeysTinyLfu;
        for db in &mut self.dbs {
            db.set_lfu(lfu);
            db.set_admission(tiny);
        }
    }

    /// After CONFIG SET maxmemory: evict at once rather than at the next command, as
    /// Redis does.
    pub(crate) fn apply_maxmemory(&mut self) {
        if self.config.maxmemory != 0 && crate::alloc::used_memory() as u64 > self.config.maxmemory
        {
            tracing::warn!(
                "the new maxmemory value set via CONFIG SET ({}) is smaller than the current memory usage ({})",
                self.config.maxmemory,
                crate::alloc::used_memory()
            );
            self.perform_evictions();
            crate::command::after_command(self);
        }
    }

    /// Frees memory by evicting keys until the process is back under `maxmemory`
    /// (Redis's `performEvictions`). Called before each command and from the cron.
    pub(crate) fn perform_evictions(&mut self) -> Evict {
        let max = self.config.maxmemory;
        // No evictions while clients are paused (CLIENT PAUSE), as in Redis.
        if self.pause.active(self.now) {
            return Evict::Ok;
        }
        let used = crate::alloc::used_memory() as u64;
        if max == 0 || used <= max {
            self.evicting = false;
            return Evict::Ok;
        }
        let policy = self.evict_policy;
        if policy == Policy::NoEviction {
            return Evict::Fail;
        }
        let to_free = (used - max) as i64;
        let limit = time_limit_us(self.config.maxmemory_eviction_tenacity);
        let lazy = self.config.lazyfree_lazy_eviction;
        let start = Instant::now();
        let mut freed: i64 = 0;
        let mut keys_freed = 0u64;
        while freed < to_free {
            let Some((db, key)) = self.pick_victim(policy) else {
                self.evicting = false;
                return Evict::Fail;
            };
            // Only what the deletion itself frees counts (as Redis measures
            // `dbSyncDelete` alone): the announcement may allocate (a DEL for the
            // replication stream, a notification) but that is freed soon.
            let before = crate::alloc::used_memory() as i64;
            // The entry is dropped within the measurement (or handed to the lazy-free
            // thread, whose work is seen by checking the total every 16 keys).
            let gone = match self.dbs[db].evict(&key) {
                Some(e) if lazy => {
                    let effort = e.value.free_effort();
                    crate::lazyfree::free(e, effort);
                    true
                }
                Some(_) => true,
                None => false,
            };
            freed += before - crate::alloc::used_memory() as i64;
            if gone {
                self.announce_evicted(db, &key);
            }
            keys_freed += 1;
            if keys_freed.is_multiple_of(16)
                && lazy
                && crate::alloc::used_memory() as u64 <= self.config.maxmemory
            {
                break;
            }
            if keys_freed.is_multiple_of(16) && start.elapsed().as_micros() as u64 > limit {
                // Go on in the cron, and let the command run meanwhile.
                self.evicting = true;
                return Evict::Running;
            }
        }
        self.evicting = false;
        Evict::Ok
    }

    /// The next key to evict under `policy`: `(db, key)`, or `None` when no key can go.
    fn pick_victim(&mut self, policy: Policy) -> Option<(usize, CompactBytes)> {
        let all = policy.all_keys();
        if matches!(policy, Policy::AllKeysRandom | Policy::VolatileRandom) {
            let n = self.dbs.len();
            for _ in 0..n {
                self.evict_next_db = (self.evict_next_db + 1) % n;
                let db = &self.dbs[self.evict_next_db];
                let key = if all {
                    db.random_entry().map(|(k, _)| k.clone())
                } else {
                    db.random_volatile().map(|(k, _)| k.clone())
                };
                if let Some(k) = key {
                    return Some((self.evict_next_db, k));
                }
            }
            return None;
        }
        if policy == Policy::AllKeysTinyLfu {
            return self.pick_tinylfu();
        }
        self.pool_pick(policy).map(|c| (c.db, c.key))
    }

    /// The best candidate of the pool after sampling every database (Redis's loop
    /// around `evictionPoolPopulate`); `None` when no key can go.
    fn pool_pick(&mut self, policy: Policy) -> Option<Candidate> {
        let all = policy.all_keys();
        let now = self.now;
        let samples = self.config.maxmemory_samples as usize;
        loop {
            let mut total = 0;
            for (i, db) in self.dbs.iter().enumerate() {
                let keys = if all { db.len() } else { db.volatile_len() };
                if keys == 0 {
                    continue;
                }
                total += keys;
                let pool = &mut self.evict_pool;
                match policy {
                    Policy::AllKeysLfu | Policy::VolatileLfu => {
                        let decay = self.config.lfu_decay_time;
                        db.sample_into(i, all, samples, pool, |_, e, _| {
                            255 - lfu_decayed(e.lru(), decay, now) as u64
                        })
                    }
                    Policy::VolatileTtl => {
                        db.sample_into(i, all, samples, pool, |_, _, at| u64::MAX - at)
                    }
                    Policy::AllKeysTinyLfu => {
                        let Some(adm) = db.admission.as_deref() else {
                            continue;
                        };
                        // Lowest estimate first, then least recently used.
                        db.sample_into(i, all, samples, pool, |k, e, _| {
                            ((15 - adm.frequency(k).min(15)) as u64) << 40 | db.ticks_idle(e)
                        })
                    }
                    _ => db.sample_into(i, all, samples, pool, |_, e, _| idle_ms(e, now)),
                }
            }
            if total == 0 {
                return None;
            }
            // Best first; a candidate whose key went meanwhile is a ghost.
            while let Some(c) = self.evict_pool.pop() {
                let db = &self.dbs[c.db];
                let live = if all {
                    db.contains_raw(&c.key)
                } else {
                    db.expire_at(&c.key) != 0
                };
                if live {
                    return Some(c);
                }
            }
        }
    }

    /// `allkeys-tinylfu`'s choice: while a database's window of new keys is over
    /// its size, its oldest key (the candidate) meets the main space's victim and
    /// the one asked for less often goes (TinyLFU's admission: the candidate stays
    /// only if strictly more frequent); otherwise the main space's victim goes.
    fn pick_tinylfu(&mut self) -> Option<(usize, CompactBytes)> {
        // Estimates change with every access: candidates sampled for an earlier
        // eviction may have been asked for since, so each choice samples afresh.
        self.evict_pool.clear();
        let victim = self.pool_pick(Policy::AllKeysTinyLfu);
        let n = self.dbs.len();
        for _ in 0..n {
            let i = self.evict_next_db;
            self.evict_next_db = (i + 1) % n;
            let db = &mut self.dbs[i];
            let target = super::tinylfu::Admission::window_size(db.len());
            while let Some(cand) = db
                .admission
                .as_deref_mut()
                .filter(|a| a.window.len() > target)
                .and_then(|a| a.window.pop_front())
            {
                if !db.contains_raw(&cand) {
                    continue;
                }
                let Some(adm) = db.admission.as_deref() else {
                    break;
                };
                let Some(v) = victim else {
                    return Some((i, cand));
                };
                if v.db == i && v.key == cand {
                    return Some((i, cand));
                }
                let cand_freq = adm.frequency(&cand) as u64;
                let victim_freq = 15 - (v.score >> 40);
                if cand_freq > victim_freq {
                    // Admitted: the candidate joins the main space, the victim goes.
                    return Some((v.db, v.key));
                }
                // Refused: the candidate goes.
                return Some((i, cand));
            }
        }
        victim.map(|c| (c.db, c.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000_000;

    #[test]
    fn lfu_counter_grows_logarithmically_and_decays() {
        let lfu = Lfu {
            log_factor: 10,
            decay_time: 1,
        };
        let mut bits = lfu_fresh(T);
        assert_eq!(lfu_decayed(bits, 1, T), LFU_INIT);
        for _ in 0..1000 {
            bits = lfu_access(bits, lfu, T);
        }
        let c = lfu_decayed(bits, 1, T);
        // Redis's table: ~1K hits at factor 10 give 10..20.
        assert!((10..=25).contains(&c), "{c}");
        // One per minute of decay time.
        assert_eq!(lfu_decayed(bits, 1, T + 3 * 60_000), c - 3);
        assert_eq!(lfu_decayed(bits, 0, T + 3 * 60_000), c, "0: no decay");
        assert_eq!(lfu_decayed(bits, 1, T + 600 * 60_000), 0);
        // The minute clock wraps at 16 bits.
        assert_eq!(lfu_elapsed(65_530, 65_536 * 60_000 + 5 * 60_000), 10);
    }

    #[test]
    fn the_pool_keeps_the_best_sixteen() {
        let mut p = Pool::default();
        for s in 0..40u64 {
            p.offer(
                (s * 7) % 40,
                0,
                &CompactBytes::from(format!("k{s}").as_str()),
            );
        }
        let scores: Vec<u64> = p.entries.iter().map(|c| c.score).collect();
        assert_eq!(scores, (24..40).collect::<Vec<_>>());
        assert_eq!(p.pop().map(|c| c.score), Some(39));
    }

    #[test]
    fn tenacity_limits() {
        assert_eq!(time_limit_us(10), 500);
        assert_eq!(time_limit_us(0), 0);
        assert_eq!(time_limit_us(100), u64::MAX);
        assert!(time_limit_us(99) > 100_000_000);
    }
}
