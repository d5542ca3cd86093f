//! Runs the connector's pipeline inside `coherent serve`: binlog -> rules -> the
//! embedded engine -> checkpoint, and publishes its state for `/readyz`, `/status`
//! and `/metrics`.
//!
//! Two tasks. The reader owns the [`BinlogSource`] and sends whole transactions down a
//! bounded channel; the applier feeds them one by one to a [`Pipeline`] through a
//! one-slot source. The split lets the applier wait on "next transaction, stop, or
//! idle flush" with a `select!` that can only cancel the channel receive (which loses
//! nothing), never a transaction half applied, and lets the reader keep its stream
//! open while the applier flushes.

use crate::clock::{lag_since, now_secs};
use anyhow::Result;
use connectors::binlog::decode::TableFilter;
use connectors::binlog::{BinlogSource, Position, SourceError, SourceProbe, Transaction};
use connectors::checkpoint::{AnyCheckpointStore, CheckpointStore};
use connectors::pipeline::TransactionSource;
use connectors::retry::{RetryQueue, RetryStatsSnapshot};
use connectors::rules::Rules;
use connectors::targets::AnyTarget;
use connectors::{ConnectorConfig, Pipeline, PipelineStats};
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{Span as _, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context as OtelContext, KeyValue};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Transactions read ahead of the applier.
const READ_AHEAD: usize = 256;

/// (commit time, arrival time) of transactions read but not applied yet.
type Queue = VecDeque<(u32, f64)>;

/// What the admin server and the metrics read about the pipeline.
#[derive(Debug, Default)]
pub struct PipelineState {
    probe: OnceLock<Arc<SourceProbe>>,
    /// The retry queue, read live: its worker drains it while no transaction arrives,
    /// and `/status` must not show the depth of the last applied transaction.
    retry_queue: OnceLock<LiveRetry>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    stats: PipelineStats,
    /// Commit times and arrival times of transactions read but not applied yet,
    /// oldest first.
    queued: Queue,
    /// Lag of the last applied transaction (see [`lag_since`]).
    lag: f64,
    /// Wall-clock seconds of the last checkpoint write (or of the one loaded).
    checkpoint_saved_at: f64,
    /// The error that stopped the pipeline.
    failed: Option<String>,
}

/// The retry queue as [`PipelineState`] holds it (the queue itself has no `Debug`).
struct LiveRetry(RetryQueue);

impl std::fmt::Debug for LiveRetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LiveRetry").field(&self.0.stats()).finish()
    }
}

/// A point-in-time copy of [`PipelineState`].
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Counters of the applier.
    pub stats: PipelineStats,
    /// Seconds from commit to deletes applied for the last transaction (a lower bound
    /// exact to within 1 s, see `lag_since`); while transactions wait, the age of the
    /// oldest waiting one.
    pub lag_seconds: f64,
    /// A binlog stream is open.
    pub connected: bool,
    /// Binlog events received.
    pub events: u64,
    /// Reconnects after a failure.
    pub reconnects: u64,
    /// Wall-clock seconds of the last checkpoint write (0 = none yet).
    pub checkpoint_saved_at: f64,
    /// The last error seen by the source, or the one that stopped the pipeline.
    pub last_error: Option<String>,
    /// Set when the pipeline stopped on an error.
    pub failed: Option<String>,
    /// Counters of the retry queue (depth, retries, dead letters).
    pub retry: RetryStatsSnapshot,
}

impl PipelineState {
    /// A copy of the current state.
    pub fn snapshot(&self) -> Snapshot {
        let (stats, oldest, saved, failed, mut lag) = match self.inner.lock() {
            Ok(g) => (
                g.stats.clone(),
                g.queued.front().copied(),
                g.checkpoint_saved_at,
                g.failed.clone(),
                g.lag,
            ),
            Err(_) => Default::default(),
        };
        if let Some((ts, received)) = oldest {
            lag = lag.max(lag_since(ts, received, now_secs()));
        }
        let probe = self.probe.get();
        Snapshot {
            lag_seconds: lag.max(0.0),
            connected: probe.is_some_and(|p| p.connected()) && failed.is_none(),
            events: probe.map_or(0, |p| p.events()),
            reconnects: probe.map_or(0, |p| p.reconnects()),
            checkpoint_saved_at: saved,
            last_error: failed
                .clone()
                .or_else(|| probe.and_then(|p| p.last_error())),
            failed,
            stats,
            retry: self
                .retry_queue
                .get()
                .map(|q| q.0.stats())
                .unwrap_or_default(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Inner)) {
        if let Ok(mut g) = self.inner.lock() {
            f(&mut g);
        }
    }

    fn publish(&self, stats: &PipelineStats) {
        self.update(|g| {
            if stats.checkpointed != g.stats.checkpointed {
                g.checkpoint_saved_at = now_secs();
            }
            g.stats = stats.clone();
        });
    }
}

/// The pipeline's source: one transaction handed over by the applier loop.
#[derive(Default)]
struct Slot(Option<Transaction>);

impl TransactionSource for Slot {
    async fn next_transaction(&mut self) -> Result<Transaction, SourceError> {
        // The loop below always fills the slot before stepping.
        self.0
            .take()
            .ok_or_else(|| SourceError::Closed(Position::default()))
    }
}

/// The online audit checker to feed: its config and counters (`[audit]`, sample > 0).
pub type Audit = (
    crate::audit::online::AuditConfig,
    Arc<crate::audit::online::AuditState>,
);

/// Runs the pipeline until `stop` resolves (then flushes the checkpoint and returns
/// Ok) or it fails (checkpoint flushed up to the last applied transaction, error
/// recorded in `state`, returned). With `audit`, every applied transaction is also
/// handed to the online checker.
pub async fn run(
    cfg: ConnectorConfig,
    rules: Rules,
    engine: engine::Engine,
    state: Arc<PipelineState>,
    audit: Option<Audit>,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    let res = run_inner(cfg, rules, engine, &state, audit, stop).await;
    if let Err(e) = &res {
        let msg = format!("{e:#}");
        tracing::error!(error = %msg, "pipeline stopped");
        state.update(|g| g.failed = Some(msg));
    }
    res
}

async fn run_inner(
    cfg: ConnectorConfig,
    rules: Rules,
    engine: engine::Engine,
    state: &PipelineState,
    audit: Option<Audit>,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    // The checker gets transactions only once applied; with sample = 0 there is no
    // feed and the applier sends nothing.
    let (feed, checker) = match audit {
        Some((config, st)) => {
            let (feed, task) = crate::audit::online::spawn(&config, st, &cfg, engine.clone())?;
            (Some(feed), Some(task))
        }
        None => (None, None),
    };
    // store = "file" or "mysql" (a row in the migrations/ schema, via sqlx).
    let store =
        AnyCheckpointStore::open(&cfg.checkpoint, &cfg.mysql.url, cfg.mysql.server_id).await?;
    let saved = store.load().await?;
    let resume = saved.as_ref().map(|c| c.position.clone());
    match &saved {
        Some(cp) => {
            tracing::info!(position = %cp.position, store = ?cfg.checkpoint.store, "resuming from checkpoint");
            state.update(|g| {
                g.checkpoint_saved_at = cp.saved_at as f64;
                g.stats.checkpointed = Some(cp.position.clone());
                g.stats.applied = Some(cp.position.clone());
            });
        }
        None => {
            tracing::info!(start = %cfg.mysql.start, "no checkpoint yet; starting at [mysql] start")
        }
    }
    let r2 = rules.clone();
    let filter: TableFilter = Arc::new(move |db: &str, t: &str| r2.covers(db, t));
    let mut source = BinlogSource::new(cfg.mysql.clone(), resume, Some(filter))?;
    let _ = state.probe.set(source.probe());

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Transaction, SourceError>>(READ_AHEAD);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let queued = |f: &dyn Fn(&mut Queue)| state.update(|g| f(&mut g.queued));
    let reader = {
        async move {
            loop {
                tokio::select! {
                    biased;
                    _ = stop_rx.changed() => break,
                    r = source.next_transaction() => {
                        let fatal = r.is_err();
                        if let Ok(t) = &r {
                            let at = now_secs();
                            queued(&|q| q.push_back((t.timestamp, at)));
                        }
                        if tx.send(r).await.is_err() || fatal {
                            break;
                        }
                    }
                }
            }
            source.shutdown().await;
        }
    };

    let target = AnyTarget::from_config(&cfg.target, Some(engine)).await?;
    let meter = opentelemetry::global::meter("coherent");
    let label = crate::timed::kind_label(cfg.target.kind);
    // TTL backstop: the embedded engine caps TTLs of keys the rules cover as they are
    // written; external Redis gets the sweeper below instead.
    let capped = target.install_backstops(&rules);
    if capped > 0 {
        tracing::info!(patterns = capped, "TTL backstops installed in the engine");
    }
    // Deletes the target refuses wait in the durable retry queue (the checkpoint may
    // pass them once they are queued); its worker retries them with backoff.
    let queue = RetryQueue::open(&cfg.retry).await?;
    let _ = state.retry_queue.set(LiveRetry(queue.clone()));
    // Every batch, first, second or retried, is timed per target.
    let target = crate::timed::Timed::new(target, label, &meter);
    let worker = queue.spawn_worker(target.clone());
    let sweeper = crate::sweep::spawn(&cfg.target, &rules);
    let interval = Duration::from_millis(cfg.checkpoint.interval_ms);
    let mut pipe =
        Pipeline::new(Slot::default(), rules, target, store, interval).with_retry_queue(queue);
    // `move`: the receiver must drop when the applier ends, so a reader blocked on a
    // full channel wakes up and stops.
    let tracer = opentelemetry::global::tracer("coherent");
    let applier = async move {
        tokio::pin!(stop);
        let mut paused = false;
        let result: Result<()> = loop {
            let unsaved =
                pipe.stats().applied.is_some() && pipe.stats().applied != pipe.stats().checkpointed;
            let delayed = pipe.has_delayed();
            // Backpressure: while the retry queue is past max_depth, stop taking
            // transactions (the reader then blocks on the full channel).
            let hold = pipe.is_backpressured();
            if hold && !paused {
                pipe.note_backpressure_pause();
                tracing::warn!("retry queue past max_depth: binlog reading paused");
            }
            paused = hold;
            tokio::select! {
                biased;
                _ = &mut stop => break Ok(()),
                // Only the wait is raced against the other branches; sending runs in
                // the handler, where nothing can cancel it half done.
                due = pipe.next_due_delayed(), if delayed => {
                    let r = pipe.fire_delayed(due).await;
                    state.publish(pipe.stats());
                    if let Err(e) = r {
                        break Err(e.into());
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(20)), if hold => {
                    state.publish(pipe.stats());
                }
                m = rx.recv(), if !hold => match m {
                    Some(Ok(t)) => {
                        // One trace per transaction: its deletes are child spans
                        // (started by `Timed` under this context), the checkpoint an event.
                        let before = (pipe.stats().invalidations, pipe.stats().checkpointed.clone());
                        // Deletes handed to the retry queue land later, at a time we do
                        // not see here: the checker records no lag for them.
                        let queued_before = pipe.stats().queued;
                        let mut span = tracer.start("transaction");
                        span.set_attribute(KeyValue::new("binlog.position", t.position.to_string()));
                        span.set_attribute(KeyValue::new("rows", t.changes.len() as i64));
                        let cx = OtelContext::current_with_span(span);
                        pipe.source_mut().0 = Some(t);
                        let r = pipe.step().with_context(cx.clone()).await;
                        end_transaction_span(&cx, pipe.stats(), before, &r);
                        let now = now_secs();
                        let mut arrived = now;
                        state.update(|g| {
                            if let Some((ts, received)) = g.queued.pop_front() {
                                arrived = received;
                                if r.is_ok() {
                                    g.lag = lag_since(ts, received, now);
                                }
                            }
                        });
                        state.publish(pipe.stats());
                        // Moved, not cloned, to the checker (never waits on it).
                        let deferred = pipe.stats().queued > queued_before;
                        let r = r.map(|t| {
                            if let Some(f) = &feed {
                                f.offer(t, arrived, now, deferred);
                            }
                        });
                        if let Err(e) = r {
                            break Err(e.into());
                        }
                    }
                    Some(Err(e)) => break Err(e.into()),
                    None => break Err(anyhow::anyhow!("the binlog reader stopped")),
                },
                // Idle: save the last applied position rather than hold it until the
                // next transaction arrives.
                _ = tokio::time::sleep(interval.max(Duration::from_millis(10))), if unsaved => {
                    if let Err(e) = pipe.flush().await {
                        break Err(e.into());
                    }
                    state.publish(pipe.stats());
                }
            }
        };
        let _ = stop_tx.send(true);
        // Second deletes still on the wheel are sent (they are at most one
        // `double_delete` away) so the last checkpoint can cover their transactions;
        // every transaction applied so far may then be checkpointed, whether we stop on
        // a signal or on an error.
        let drained = if result.is_ok() {
            pipe.drain_delayed().await
        } else {
            Ok(())
        };
        let flushed = match drained {
            Ok(()) => pipe.flush().await,
            Err(e) => Err(e),
        };
        state.publish(pipe.stats());
        match (result, flushed) {
            (Err(e), _) => Err(e),
            (Ok(()), Err(e)) => Err(e.into()),
            (Ok(()), Ok(())) => Ok(()),
        }
    };
    let (res, ()) = tokio::join!(applier, reader);
    worker.abort();
    if let Some(c) = checker {
        c.abort();
    }
    if let Some(s) = sweeper {
        s.abort();
    }
    let s = state.snapshot();
    tracing::info!(
        transactions = s.stats.transactions,
        rows = s.stats.rows,
        invalidations = s.stats.invalidations,
        checkpoint = %s.stats.checkpointed.map(|p| p.to_string()).unwrap_or_default(),
        "pipeline stopped"
    );
    res
}

/// Completes a transaction's span: keys deleted, the checkpoint, the outcome.
fn end_transaction_span<T, E: std::fmt::Display>(
    cx: &OtelContext,
    stats: &PipelineStats,
    (invalidations, checkpointed): (u64, Option<Position>),
    r: &Result<T, E>,
) {
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        "keys",
        stats.invalidations.saturating_sub(invalidations) as i64,
    ));
    // The checkpoint is written at most once per interval (and waits on second
    // deletes): `saved` says whether this transaction moved it.
    let saved = stats.checkpointed != checkpointed;
    let mut attrs = vec![KeyValue::new("saved", saved)];
    if let Some(p) = &stats.checkpointed {
        attrs.push(KeyValue::new("position", p.to_string()));
    }
    span.add_event("checkpoint", attrs);
    if let Err(e) = r {
        span.set_status(Status::error(e.to_string()));
    }
    span.end();
}
