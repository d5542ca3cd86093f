//! The embedded retry queue: an append-only log file, replayed on open. Storage
//! only ([`QueueStore`]); the worker in [`crate::retry::worker`] decides.
//!
//! Records (each framed as `len u32 | crc32 u32 | body`, little-endian):
//! `Enqueue{id, attempts, due, key, position}`, `Ack{id}` (landed),
//! `Retry{id, attempts, due}` (failed again), `Dead{id}` (moved to the `.dead`
//! file). Enqueues are fsync'd before [`QueueStore::push`] returns, which is
//! what lets the checkpoint move past them; acks and retries are not (a lost ack
//! only repeats an idempotent delete). A torn tail from a crash (a last frame cut
//! short, or zeros) is cut off; a damaged record with more after it stops the
//! open ([`QueueError::Corrupt`]). The file is held by one process (`FILE.lock`). When the log is mostly dead weight it is compacted: the live
//! entries are rewritten to a new file, fsync'd, renamed over the old one.

mod log;

#[cfg(test)]
mod integration_tests;

use super::store::{QueueStore, Taken};
use super::{now_ms, QueueError, QueuedDelete, RetryConfig, RetryStats};
use bytes::Bytes;
use log::{Entry, Log, OpenError, Record};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
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
    /// Shared with the blocking task that appends and fsyncs pushes.
    inner: Arc<Mutex<Inner>>,
    stats: RetryStats,
    wake: Notify,
    /// Held while the queue is open: one process per file.
    _lock: crate::filelock::FileLock,
}

/// The queue error of a failed [`Log::open`] of `path`.
fn open_error(path: &std::path::Path, e: OpenError) -> QueueError {
    match e {
        OpenError::Io(source) => QueueError::Io {
            path: path.to_path_buf(),
            source,
        },
        OpenError::Damaged(d) => QueueError::Corrupt {
            path: path.to_path_buf(),
            offset: d.offset,
            reason: d.reason.to_string(),
            after: d.after,
        },
    }
}

/// How long an idle `take_due` waits before looking again (a push wakes it sooner).
const IDLE: Duration = Duration::from_millis(200);

/// Locks `inner`. A panic while holding the lock leaves consistent data (each write
/// is a whole record), so a poisoned lock is still usable.
fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

impl EmbeddedQueue {
    /// Opens (creating) `cfg.path` and `cfg.path + ".dead"`, replaying the log.
    pub fn open(cfg: RetryConfig) -> Result<Self, QueueError> {
        let path = cfg.path.clone();
        // One process per queue file: a second one fails here, naming the holder.
        let file_lock = crate::filelock::FileLock::acquire(&path)?;
        let (log, records) = Log::open(&path).map_err(|e| open_error(&path, e))?;
        let mut dead_path = path.clone().into_os_string();
        dead_path.push(".dead");
        let dead_path = PathBuf::from(dead_path);
        let (dead, dead_records) = Log::open(&dead_path).map_err(|e| open_error(&dead_path, e))?;
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
            inner: Arc::new(Mutex::new(Inner {
                log,
                dead,
                ready,
                in_flight: HashMap::new(),
                next_id,
            })),
            stats,
            wake: Notify::new(),
            _lock: file_lock,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    fn io(&self, source: std::io::Error) -> QueueError {
        QueueError::Io {
            path: self.cfg.path.clone(),
            source,
        }
    }

    /// Size of the log file in bytes.
    pub fn log_size(&self) -> u64 {
        self.lock().log.size()
    }

    /// Takes up to `max` entries that are due; returns them and the next due time.
    fn take_ready(&self, max: usize) -> (Vec<Taken<u64>>, Option<u64>) {
        let now = now_ms();
        let mut g = self.lock();
        let mut out = Vec::new();
        while out.len() < max {
            match g.ready.first_key_value() {
                Some((&(due, _), _)) if due <= now => {}
                _ => break,
            }
            if let Some(((due, id), e)) = g.ready.pop_first() {
                out.push(Taken {
                    key: e.key.clone(),
                    position: e.position.clone(),
                    attempts: e.attempts,
                    due_ms: due,
                    ticket: id,
                });
                g.in_flight.insert(id, e);
            }
        }
        let next = g.ready.first_key_value().map(|(&(due, _), _)| due);
        (out, next)
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
}

/// Appends one `Enqueue` record per key, due at `due`, fsyncs, and makes them ready.
/// Runs on a blocking thread.
fn append_pushes(
    inner: &Mutex<Inner>,
    keys: Vec<Bytes>,
    position: Arc<str>,
    due: u64,
) -> std::io::Result<()> {
    let mut g = lock(inner);
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
                attempts: 1,
            },
        })
        .collect();
    g.log.append(&records, true)?;
    g.next_id += records.len() as u64;
    for r in records {
        if let Record::Enqueue { id, due, entry } = r {
            g.ready.insert((due, id), entry);
        }
    }
    Ok(())
}

impl QueueStore for EmbeddedQueue {
    type Ticket = u64;
    /// Taken entries wait in the queue's own in-flight table.
    type Consumer = ();

    fn config(&self) -> &RetryConfig {
        &self.cfg
    }

    fn stats(&self) -> &RetryStats {
        &self.stats
    }

    async fn push(
        &self,
        keys: &[Bytes],
        position: &str,
        due_in: Duration,
    ) -> Result<(), QueueError> {
        if keys.is_empty() {
            return Ok(());
        }
        let n = keys.len() as u64;
        let inner = self.inner.clone();
        let keys: Vec<Bytes> = keys.to_vec();
        let position: Arc<str> = position.into();
        let due = now_ms() + due_in.as_millis() as u64;
        tokio::task::spawn_blocking(move || append_pushes(&inner, keys, position, due))
            .await
            .map_err(|e| self.io(std::io::Error::other(e)))?
            .map_err(|e| self.io(e))?;
        self.stats.count(n, 0, 0, 0);
        self.stats.add_depth(n as i64);
        self.wake.notify_one();
        Ok(())
    }

    fn consumer(&self) {}

    async fn take_due(&self, _: &mut (), max: usize) -> Result<Vec<Taken<u64>>, QueueError> {
        loop {
            let (batch, next) = self.take_ready(max);
            if !batch.is_empty() {
                return Ok(batch);
            }
            let wait = next
                .map(|due| Duration::from_millis(due.saturating_sub(now_ms())))
                .unwrap_or(IDLE)
                .min(IDLE);
            let _ = tokio::time::timeout(wait, self.wake.notified()).await;
        }
    }

    async fn ack(&self, _: &mut (), landed: Vec<Taken<u64>>) -> Result<(), QueueError> {
        let n = landed.len() as u64;
        let mut g = self.lock();
        let recs: Vec<Record> = landed
            .iter()
            .map(|t| Record::Ack { id: t.ticket })
            .collect();
        g.log.append(&recs, false).map_err(|e| self.io(e))?;
        for t in &landed {
            g.in_flight.remove(&t.ticket);
        }
        drop(g);
        self.stats.count(0, 0, n, 0);
        self.stats.add_depth(-(n as i64));
        self.maybe_compact()
    }

    async fn requeue(
        &self,
        _: &mut (),
        failed: Vec<(Taken<u64>, Duration)>,
    ) -> Result<(), QueueError> {
        let now = now_ms();
        let mut g = self.lock();
        let mut recs = Vec::with_capacity(failed.len());
        for (t, after) in failed {
            let Some(mut e) = g.in_flight.remove(&t.ticket) else {
                continue;
            };
            e.attempts = t.attempts;
            let due = now + after.as_millis() as u64;
            recs.push(Record::Retry {
                id: t.ticket,
                attempts: e.attempts,
                due,
            });
            // Ready in memory before the (unsynced) record: retried even if the
            // write fails, and replayed from its enqueue after a crash.
            g.ready.insert((due, t.ticket), e);
        }
        let res = g.log.append(&recs, false).map_err(|e| self.io(e));
        drop(g);
        self.stats.count(0, recs.len() as u64, 0, 0);
        res
    }

    async fn dead_letter(&self, _: &mut (), dead: Vec<Taken<u64>>) -> Result<(), QueueError> {
        let now = now_ms();
        let mut g = self.lock();
        let mut entries = Vec::with_capacity(dead.len());
        for t in dead {
            if let Some(mut e) = g.in_flight.remove(&t.ticket) {
                e.attempts = t.attempts;
                entries.push((t.ticket, e));
            }
        }
        let dead_recs: Vec<Record> = entries
            .iter()
            .map(|(id, e)| Record::Enqueue {
                id: *id,
                due: now,
                entry: e.clone(),
            })
            .collect();
        // The dead letter must be durable before the live entry is dropped.
        if let Err(err) = g.dead.append(&dead_recs, true) {
            // Still live: back in the queue, dead-lettered after its next failure.
            for (id, e) in entries {
                g.ready.insert((now, id), e);
            }
            return Err(self.io(err));
        }
        let recs: Vec<Record> = entries
            .iter()
            .map(|(id, _)| Record::Dead { id: *id })
            .collect();
        let res = g.log.append(&recs, false).map_err(|e| self.io(e));
        drop(g);
        let n = entries.len() as u64;
        self.stats.count(0, 0, 0, n);
        self.stats.add_depth(-(n as i64));
        res
    }

    async fn dead_letters(&self) -> Result<Vec<QueuedDelete>, QueueError> {
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
}
