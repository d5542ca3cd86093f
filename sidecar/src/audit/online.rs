//! The online checker inside `coherent serve`: for a sample of the keys the binlog
//! pipeline invalidates, re-check the cache at set delays after the invalidating
//! commit and count what is still wrong.
//!
//! Data flows one way. The applier hands every applied transaction to [`Feed::offer`]
//! (a `try_send` on a bounded channel: it never waits; a full channel drops the
//! transaction and counts it). The checker task walks each change's keys as the
//! pipeline does ([`connectors::rules::Rules::for_each_key`], so it knows the rule,
//! the template and the row image), samples them at `[audit] sample`, records each
//! sampled key's invalidation lag, and keeps the samples on a `DelayQueue` until
//! `received + delay`. Checks run as tasks (at most [`CONCURRENCY`] reading at once);
//! a finished check puts its sample back on the queue for the next delay.
//! [`AuditState`] holds the counters `/status` and `/metrics` read.
//!
//! Time. Delays count from when the sidecar *received* the transaction (its own
//! clock; never before the commit), so a MySQL clock behind the sidecar's cannot make
//! checks fire early. Lateness and the write-time rule compare with the commit time
//! (MySQL's clock, whole seconds): the two clocks are assumed synchronised.
//!
//! A delete applied after `commit + delay` (a backlog, the sidecar stopped or
//! restarted) is *late* for that window: the cache may have been stale for the whole
//! window, so a check right after the delete would say nothing. Such windows count
//! `late` and are neither checked nor in the consistency ratio. Deletes that went to
//! the retry queue are delivered at a time the applier does not see: no lag, counted
//! `deferred`, and checked at every window (a value still stale then counts).
//!
//! A check of (key, commit) at one delay (see the issue 6 spec):
//! - key absent, or the negative entry while the row is gone: consistent;
//! - templates whose value is the rendered row (`value.keys`, default the first
//!   template): the row is read by the template's columns (values from the image the
//!   key came from: the after image, the before image for a delete or an old key) and
//!   rendered; equal: consistent; different: after `confirm_grace_ms` the key and the
//!   row are read again, and only a key still holding the same value that still
//!   differs from the row counts as an inconsistency;
//! - other templates: an inconsistency when the value's write time is known and
//!   certainly earlier than the commit (it survived the delete);
//! - the cache or the database unreachable: a check error, counted apart.

mod check;
pub mod config;
pub mod error;
pub mod probe;
pub mod sample;
pub mod state;

pub use check::CONCURRENCY;
pub use config::{window_label, AuditConfig};
pub use error::AuditError;
pub use state::{AuditState, LAG_BOUNDS};

use crate::audit::db::Db;
use crate::clock::now_secs;
use bytes::Bytes;
use check::Checker;
use connectors::binlog::Transaction;
use connectors::ConnectorConfig;
use probe::Cache;
use sample::{samples_of, Meta, Sample, SampleRules};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::time::DelayQueue;

/// Transactions waiting for the checker; beyond this the applier drops them.
const CHANNEL: usize = 4096;

/// An applied transaction on its way to the checker.
struct Applied {
    t: Transaction,
    /// Unix seconds the reader received it.
    received: f64,
    /// Its lag as the pipeline measured it (a lower bound, exact to 1 s); `None`
    /// when some deletes went to the retry queue instead (they land later).
    lag: Option<f64>,
}

/// The applier's end of the channel.
#[derive(Clone)]
pub struct Feed {
    tx: mpsc::Sender<Applied>,
    state: Arc<AuditState>,
}

impl Feed {
    /// Hands an applied transaction to the checker without waiting: when the checker
    /// is behind, the transaction is dropped and counted (as one, see
    /// [`AuditState::dropped`]). `lag` is the pipeline's; `None` (deferred): some of
    /// its deletes were queued for retry rather than applied.
    pub fn offer(&self, t: Transaction, received: f64, lag: Option<f64>) {
        if t.changes.is_empty() {
            return;
        }
        let a = Applied { t, received, lag };
        if self.tx.try_send(a).is_err() {
            self.state.add_dropped_transaction();
        }
    }
}

/// Aborts a task when dropped: the checker's task dies with its watcher.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the checker for the pipeline `cc` (its `[[rules]]`, which carry the
/// `value` renderers; its `[target]` and `[mysql]` for the reads); returns the
/// applier's end and the task, which ends when every [`Feed`] is dropped. The task
/// watches the checker: if it panics, the reason is logged and shown as `failed` in
/// `/status` (the feed then drops every transaction, counted).
pub fn spawn(
    config: &AuditConfig,
    state: Arc<AuditState>,
    cc: &ConnectorConfig,
    engine: engine::Engine,
) -> Result<(Feed, tokio::task::JoinHandle<()>), AuditError> {
    let rules = SampleRules::compile(&cc.rules)?;
    let checker = Arc::new(Checker {
        cache: Cache::new(&cc.target, engine),
        db: Db::new(&cc.mysql().map_err(AuditError::Config)?.url).map_err(AuditError::MysqlUrl)?,
        delays_ms: config.delays_ms.clone(),
        grace: Duration::from_millis(config.confirm_grace_ms),
        state: state.clone(),
        reads: Semaphore::new(CONCURRENCY),
    });
    let (tx, rx) = mpsc::channel(CHANNEL);
    let inner = tokio::spawn(run(rx, checker, rules, config.sample, config.max_pending));
    let st = state.clone();
    let task = tokio::spawn(async move {
        let _abort = AbortOnDrop(inner.abort_handle());
        watch(inner, &st).await;
    });
    Ok((Feed { tx, state }, task))
}

/// Waits for the checker task; a panic is logged and recorded in `state`.
async fn watch(task: tokio::task::JoinHandle<()>, state: &AuditState) {
    match task.await {
        Ok(()) => {}
        Err(e) if e.is_cancelled() => {}
        Err(e) => {
            let why = match e.try_into_panic() {
                Ok(p) => p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into()),
                Err(e) => e.to_string(),
            };
            tracing::error!(error = %why, "the online audit checker stopped; its counters no longer move");
            state.set_failed(format!("the checker stopped: {why}"));
        }
    }
}

/// The index of the first window the delete was in time for: windows before it are
/// late (`lag` > their delay). `None` lag (deferred deletes): every window is checked.
fn first_window(lag: Option<f64>, delays_ms: &[u64]) -> usize {
    let Some(lag) = lag else { return 0 };
    delays_ms
        .iter()
        .position(|&d| lag <= d as f64 / 1000.0)
        .unwrap_or(delays_ms.len())
}

async fn run(
    mut rx: mpsc::Receiver<Applied>,
    checker: Arc<Checker>,
    rules: SampleRules,
    sample: f64,
    max_pending: usize,
) {
    let state = checker.state.clone();
    let delays = checker.delays_ms.clone();
    let mut queue: DelayQueue<Sample> = DelayQueue::new();
    let mut running: tokio::task::JoinSet<Sample> = tokio::task::JoinSet::new();
    let mut draw = fastrand::Rng::new();
    loop {
        state.set_pending(queue.len() + running.len());
        tokio::select! {
            m = rx.recv() => {
                let Some(a) = m else { break };
                let lag = a.lag;
                let meta = Meta {
                    position: Arc::from(a.t.position.to_string()),
                    commit_ts: a.t.timestamp,
                    received: a.received,
                };
                let mut index: HashMap<Bytes, usize> = HashMap::new();
                let mut found = Vec::new();
                for change in &a.t.changes {
                    samples_of(change, &rules, sample, &meta, &mut index, &mut found, &mut || draw.f64());
                }
                let first = first_window(lag, &delays);
                for mut s in found {
                    match lag {
                        Some(l) => state.record_lag(l),
                        None => state.record_deferred(),
                    }
                    for w in 0..first {
                        state.record_late(w);
                    }
                    s.next = first;
                    if s.next >= delays.len() {
                        continue;
                    }
                    if queue.len() + running.len() >= max_pending {
                        state.add_dropped_sample();
                        continue;
                    }
                    schedule(&mut queue, s, &delays);
                }
            }
            Some(expired) = std::future::poll_fn(|cx| queue.poll_expired(cx)), if !queue.is_empty() => {
                let s = expired.into_inner();
                let c = checker.clone();
                running.spawn(async move { c.check(s).await });
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                match done {
                    Ok(s) => schedule(&mut queue, s, &delays),
                    Err(e) => {
                        // The sample is lost with its task: an error, not a check.
                        state.add_error();
                        tracing::warn!(error = %e, "audit check task failed");
                    }
                }
            }
        }
    }
    running.abort_all();
}

/// Puts `s` on the queue for its next delay (none left: dropped), due at
/// `received + delay`.
fn schedule(queue: &mut DelayQueue<Sample>, s: Sample, delays_ms: &[u64]) {
    let Some(&d) = delays_ms.get(s.next) else {
        return;
    };
    let due = s.base + d as f64 / 1000.0;
    // Delays are at most a day (validated); the clamp keeps a clock jump from
    // reaching DelayQueue's panic at ~2 years.
    let wait = (due - now_secs()).clamp(0.0, 2.0 * config::MAX_DELAY_MS as f64 / 1000.0);
    queue.insert(s, Duration::try_from_secs_f64(wait).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_windows_are_those_the_delete_missed() {
        let d = [1000, 10_000, 60_000];
        assert_eq!(first_window(Some(0.002), &d), 0);
        assert_eq!(first_window(Some(1.0), &d), 0, "exactly on time");
        assert_eq!(first_window(Some(1.2), &d), 1);
        assert_eq!(first_window(Some(30.0), &d), 2);
        assert_eq!(first_window(Some(61.0), &d), 3, "late for all");
        assert_eq!(first_window(None, &d), 0, "deferred: all checked");
    }

    #[tokio::test]
    async fn a_dead_checker_shows_as_failed() {
        let state = AuditState::new(&AuditConfig::default());
        let task = tokio::spawn(async {
            let delays: Vec<u64> = Vec::new();
            // Stands for a bug in the checker loop.
            assert!(!delays.is_empty(), "checker bug");
        });
        watch(task, &state).await;
        let why = state.failed().unwrap_or_default().to_string();
        assert!(why.contains("checker bug"), "{why}");
        assert_eq!(state.json()["failed"], why.as_str());
        // A cancelled checker (the pipeline stopping) is not a failure.
        let quiet = AuditState::new(&AuditConfig::default());
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        watch(task, &quiet).await;
        assert!(quiet.failed().is_none());
    }
}
