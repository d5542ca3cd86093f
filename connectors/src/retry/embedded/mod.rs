//! The embedded retry queue: an append-only log file, replayed on open.
//!
//! Records (each framed as `len u32 | crc32 u32 | body`, little-endian):
//! `Enqueue{id, attempts, due, key, position}`, `Ack{id}` (landed),
//! `Retry{id, attempts, due}` (failed again), `Dead{id}` (moved to the `.dead`
//! file). Enqueues are fsync'd before [`EmbeddedQueue::enqueue`] returns, which is
//! what lets the checkpoint move past them; acks and retries are not (a lost ack
//! only repeats an idempotent delete). A torn tail from a crash is cut off at the
//! first bad frame. When the log is mostly dead weight it is compacted: the live
//! entries are rewritten to a new file, fsync'd, renamed over the old one.

mod log;

#[cfg(test)]
mod integration_tests;

use super::{now_ms, QueueError, QueuedDelete, RetryConfig, RetryStats};
use crate::targets::DeleteService;
use bytes::Bytes;
use log::{Entry, Log, Record};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Compact when the log is larger than this and mostly acknowledged records.
const COMPACT_BYTES: u64 = 32 << 20;

struct Inner {
    log: Log,
    dead: Log,
    /// Waiting entries by (due ms, id).
    ready: BTreeMap<(u64, u64), Entry>,
    /// Taken by the worker, not yet acknowledged.
    in_flight: HashMap<u64, Entry>,
    next_id: u64,
}

/// The local durable queue.
pub struct EmbeddedQueue {
    cfg: RetryConfig,
    inner: Mutex<Inner>,
    stats: RetryStats,
    wake: Notify,
}

impl EmbeddedQueue {
    /// Opens (creating) `cfg.path` and `cfg.path + ".dead"`, replaying the log.
    pub fn open(cfg: RetryConfig) -> Result<Self, QueueError> {
        let path = cfg.path.clone();
        let io = |source| QueueError::Io {
            path: path.clone(),
            source,
        };
        let (log, records) = Log::open(&path).map_err(io)?;
        let mut dead_path = path.clone().into_os_string();
        dead_path.push(".dead");
        let dead_path = PathBuf::from(dead_path);
        let (dead, dead_records) = Log::open(&dead_path).map_err(|source| QueueError::Io {
            path: dead_path.clone(),
            source,
        })?;
        let mut entries: HashMap<u64, (u64, Entry)> = HashMap::new();
        let mut next_id = 0;
        for r in records {
            match r {
                Record::Enqueue { id, due, entry } => {
                    next_id = next_id.max(id + 1);
                    entries.insert(id, (due, entry));
                }
                Record::Retry { id, attempts, due } => {
                    if let Some(e) = entries.get_mut(&id) {
                        e.0 = due;
                        e.1.attempts = attempts;
                    }
                }
                Record::Ack { id } | Record::Dead { id } => {
                    entries.remove(&id);
                }
            }
        }
        let ready: BTreeMap<(u64, u64), Entry> = entries
            .into_iter()
            .map(|(id, (due, e))| ((due, id), e))
            .collect();
        let stats = RetryStats::default();
        stats.set_depth(ready.len() as u64);
        stats.count(0, 0, 0, dead_records.len() as u64);
        if !ready.is_empty() {
            tracing::info!(queued = ready.len(), path = %path.display(), "retry queue replayed");
        }
        Ok(EmbeddedQueue {
            cfg,
            inner: Mutex::new(Inner {
                log,
                dead,
                ready,
                in_flight: HashMap::new(),
                next_id,
            }),
            stats,
            wake: Notify::new(),
        })
    }

    /// The section it was opened with.
    pub fn config(&self) -> &RetryConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> &RetryStats {
        &self.stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (each write is a
        // whole record), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn io(&self, source: std::io::Error) -> QueueError {
        QueueError::Io {
            path: self.cfg.path.clone(),
            source,
        }
    }

    /// Appends `keys` with `attempts` done so far, due after the first backoff,
    /// and fsyncs before returning.
    pub async fn enqueue(
        self: &Arc<Self>,
        keys: &[Bytes],
        position: &str,
        attempts: u32,
    ) -> Result<(), QueueError> {
        if keys.is_empty() {
            return Ok(());
        }
        let me = self.clone();
        let keys: Vec<Bytes> = keys.to_vec();
        let position: Arc<str> = position.into();
        tokio::task::spawn_blocking(move || me.enqueue_sync(keys, position, attempts))
            .await
            .map_err(|e| self.io(std::io::Error::other(e)))?
    }

    fn enqueue_sync(
        &self,
        keys: Vec<Bytes>,
        position: Arc<str>,
        attempts: u32,
    ) -> Result<(), QueueError> {
        let due = now_ms() + self.cfg.backoff_for(attempts).as_millis() as u64;
        let n = keys.len() as u64;
        let mut g = self.lock();
        let first = g.next_id;
        let records: Vec<Record> = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| Record::Enqueue {
                id: first + i as u64,
                due,
                entry: Entry {
                    key,
                    position: position.clone(),
                    attempts,
                },
            })
            .collect();
        g.log.append(&records, true).map_err(|e| self.io(e))?;
        g.next_id += n;
        for r in records {
            if let Record::Enqueue { id, due, entry } = r {
                g.ready.insert((due, id), entry);
            }
        }
        drop(g);
        self.stats.count(n, 0, 0, 0);
        self.stats.add_depth(n as i64);
        self.wake.notify_one();
        Ok(())
    }

    /// Takes up to `max` entries that are due.
    fn take_due(&self, max: usize) -> (Vec<(u64, Entry)>, Option<u64>) {
        let now = now_ms();
        let mut g = self.lock();
        let mut out = Vec::new();
        while out.len() < max {
            match g.ready.first_key_value() {
                Some((&(due, _), _)) if due <= now => {}
                _ => break,
            }
            if let Some(((_, id), e)) = g.ready.pop_first() {
                g.in_flight.insert(id, e.clone());
                out.push((id, e));
            }
        }
        let next = g.ready.first_key_value().map(|(&(due, _), _)| due);
        (out, next)
    }

    /// Records the outcome of a batch taken with `take_due`.
    fn settle(&self, batch: Vec<(u64, Entry)>, ok: bool) -> Result<(), QueueError> {
        let mut g = self.lock();
        let n = batch.len() as u64;
        if ok {
            let recs: Vec<Record> = batch
                .iter()
                .map(|(id, _)| Record::Ack { id: *id })
                .collect();
            g.log.append(&recs, false).map_err(|e| self.io(e))?;
            for (id, _) in &batch {
                g.in_flight.remove(id);
            }
            drop(g);
            self.stats.count(0, 0, n, 0);
            self.stats.add_depth(-(n as i64));
            self.maybe_compact()?;
            return Ok(());
        }
        let now = now_ms();
        let mut recs = Vec::with_capacity(batch.len());
        let mut dead = Vec::new();
        for (id, mut e) in batch {
            g.in_flight.remove(&id);
            e.attempts += 1;
            if e.attempts >= self.cfg.max_attempts {
                tracing::error!(key = %String::from_utf8_lossy(&e.key), position = %e.position,
                    attempts = e.attempts, "delete dead-lettered after max_attempts");
                dead.push(Record::Enqueue {
                    id,
                    due: now,
                    entry: e,
                });
                recs.push(Record::Dead { id });
            } else {
                let due = now + self.cfg.backoff_for(e.attempts).as_millis() as u64;
                recs.push(Record::Retry {
                    id,
                    attempts: e.attempts,
                    due,
                });
                g.ready.insert((due, id), e);
            }
        }
        let n_dead = dead.len() as u64;
        if !dead.is_empty() {
            // The dead letter must be durable before the live entry is dropped.
            g.dead.append(&dead, true).map_err(|e| self.io(e))?;
        }
        g.log.append(&recs, false).map_err(|e| self.io(e))?;
        drop(g);
        self.stats.count(0, n - n_dead, 0, n_dead);
        self.stats.add_depth(-(n_dead as i64));
        Ok(())
    }

    fn maybe_compact(&self) -> Result<(), QueueError> {
        let mut g = self.lock();
        let live = (g.ready.len() + g.in_flight.len()) as u64;
        let size = g.log.size();
        // Empty queue: start over. Otherwise compact when the live part is small.
        let worth =
            (live == 0 && size > 1 << 20) || (size > COMPACT_BYTES && live * 256 < size / 4);
        if !worth {
            return Ok(());
        }
        let records: Vec<Record> = g
            .ready
            .iter()
            .map(|(&(due, id), e)| (id, due, e))
            .chain(g.in_flight.iter().map(|(&id, e)| (id, 0, e)))
            .map(|(id, due, e)| Record::Enqueue {
                id,
                due,
                entry: e.clone(),
            })
            .collect();
        g.log.rewrite(&records).map_err(|e| self.io(e))?;
        tracing::debug!(
            live,
            before = size,
            after = g.log.size(),
            "retry queue compacted"
        );
        Ok(())
    }

    /// The dead-letter file's entries.
    pub fn dead_letters(&self) -> Result<Vec<QueuedDelete>, QueueError> {
        let g = self.lock();
        let recs = g.dead.read_all().map_err(|e| self.io(e))?;
        Ok(recs
            .into_iter()
            .filter_map(|r| match r {
                Record::Enqueue { entry, .. } => Some(QueuedDelete {
                    key: entry.key,
                    position: entry.position.to_string(),
                    attempts: entry.attempts,
                }),
                _ => None,
            })
            .collect())
    }

    /// Size of the log file in bytes.
    pub fn log_size(&self) -> u64 {
        self.lock().log.size()
    }

    /// Retries due deletes through `deletes` until the process ends.
    pub async fn run_worker(self: Arc<Self>, mut deletes: DeleteService) {
        loop {
            let (batch, next) = self.take_due(self.cfg.batch);
            if batch.is_empty() {
                let wait = next
                    .map(|due| Duration::from_millis(due.saturating_sub(now_ms())))
                    .unwrap_or(Duration::from_millis(200))
                    .min(Duration::from_millis(200));
                let _ = tokio::time::timeout(wait, self.wake.notified()).await;
                continue;
            }
            let keys: Vec<Bytes> = batch.iter().map(|(_, e)| e.key.clone()).collect();
            let ok = match deletes.send(&keys).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, keys = keys.len(), "retry batch failed");
                    false
                }
            };
            if let Err(e) = self.settle(batch, ok) {
                tracing::error!(error = %e, "retry queue write failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
