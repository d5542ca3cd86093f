//! The pipeline: transaction -> keys -> one delete batch -> checkpoint.
//!
//! [`Pipeline::apply`] is the core: it takes one transaction and says what it did
//! ([`Applied`]). [`Pipeline::run`] ([`run`]) is the one loop around it: it reads a
//! [`TransactionSource`], fires second deletes as they come due, pauses for
//! backpressure, flushes the checkpoint when idle, drains on stop, and reports each
//! transaction to an [`Observer`].
//!
//! Transactions are handled one at a time in binlog order. The keys of a transaction
//! are deleted as one batch; only after that batch was applied is the transaction's
//! end position eligible for the checkpoint, so a checkpoint never runs ahead of a
//! delete. A transaction whose keys cannot be computed stops the pipeline with its
//! position: it is never skipped.
//!
//! Each batch is sent once, through the target's stack ([`crate::targets::stack`]:
//! timeout, concurrency limit, quick in-line retries, metrics) and a breaker. With a
//! retry queue ([`Pipeline::with_retry_queue`]), a batch that fails is written to the
//! durable queue instead, and that counts as landed; without one, the pipeline
//! stops. Each key with a `double_delete` delay is also put on the timing wheel
//! ([`crate::delayed`]); the checkpoint stays before the oldest transaction whose
//! second deletes have not fired (or been queued) ([`held`]). When the queue is
//! deeper than its `max_depth`, reading the binlog pauses.

mod held;
pub mod lag;
pub mod run;

use crate::binlog::{Position, SourceError, Transaction};
use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore};
use crate::delayed::DelayedDeletes;
use crate::retry::{QueueError, RetryQueue};
use crate::rules::{KeyBatch, RuleError, Rules};
use crate::targets::stack::{Breaker, BreakerLayer};
use crate::targets::{DeleteRequest, DeleteService, TargetError};
use bytes::Bytes;
use held::HeldTransactions;
use lag::Lag;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tower::{Layer, Service, ServiceExt};

pub use run::{Observer, Report, TransactionSource};

/// Why the pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The binlog source failed in a way a reconnect cannot cure.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A rule could not be applied to a row of the transaction ending at `position`.
    #[error("transaction ending at {position}: {source}")]
    Rules {
        /// End of the transaction.
        position: Position,
        /// The cause.
        source: RuleError,
    },
    /// The deletes of the transaction ending at `position` did not land.
    #[error("transaction ending at {position}: {source}")]
    Target {
        /// End of the transaction.
        position: Position,
        /// The cause.
        source: TargetError,
    },
    /// The checkpoint could not be saved.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A failed delete could not be written to the retry queue.
    #[error("transaction ending at {position}: {source}")]
    Queue {
        /// End of the transaction.
        position: Position,
        /// The cause.
        source: QueueError,
    },
    /// The task reading transactions ended without an error of its own.
    #[error("the transaction reader stopped")]
    ReaderStopped,
}

/// Counters of the pipeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineStats {
    /// Transactions processed.
    pub transactions: u64,
    /// Row changes processed.
    pub rows: u64,
    /// Keys deleted (distinct per transaction).
    pub invalidations: u64,
    /// Position of the last transaction whose deletes landed.
    pub applied: Option<Position>,
    /// Position last written to the checkpoint store (or loaded from it).
    pub checkpointed: Option<Position>,
    /// Unix seconds the checkpoint was last written (or, loaded, when it had been);
    /// 0 = none yet.
    pub checkpoint_saved_at: f64,
    /// Second (delayed) deletes sent.
    pub double_deletes: u64,
    /// Second deletes waiting on the timing wheel.
    pub pending_double_deletes: u64,
    /// Deletes handed to the retry queue because the target refused them.
    pub queued: u64,
    /// Times reading paused because the retry queue was past `max_depth`.
    pub backpressure_pauses: u64,
    /// Of `queued`, deletes queued without trying the target, within a second of a
    /// batch it refused.
    pub queued_without_trying: u64,
}

/// What applying one transaction did: reported as it happened, so no caller has to
/// rebuild it from counter differences.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Distinct keys its rows map to; each was deleted or durably queued.
    pub keys: usize,
    /// Of `keys`, handed to the retry queue instead of deleted now (they land later).
    pub queued: usize,
    /// Of `queued`, queued without trying the target, which failed within the last
    /// second.
    pub queued_without_trying: usize,
    /// Second deletes scheduled for its keys.
    pub delayed: usize,
    /// The position the checkpoint was saved at while applying it, if it was saved
    /// (it may stay behind this transaction while second deletes are pending).
    pub checkpointed: Option<Position>,
}

/// How one delete batch was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// The target deleted the keys.
    Landed,
    /// The keys are in the retry queue; `tried`: the target refused them first.
    Queued { tried: bool },
}

/// Keys per batch of second deletes.
const DELAYED_BATCH: usize = 4096;

/// After a batch failed, later batches go straight to the retry queue for this long
/// before one is tried on the target again (see [`crate::targets::stack::breaker`]).
const BREAKER_OPEN: Duration = Duration::from_secs(1);

/// Binlog -> rules -> target -> checkpoint.
pub struct Pipeline<C> {
    rules: Rules,
    /// The target's stack, behind the breaker.
    deletes: Breaker<DeleteService>,
    checkpoint: C,
    interval: Duration,
    last_save: Option<Instant>,
    pending: Option<Checkpoint>,
    stats: PipelineStats,
    batch: KeyBatch,
    retry: Option<RetryQueue>,
    delayed: DelayedDeletes,
    held: HeldTransactions,
    lag: Arc<Lag>,
}

impl<C: CheckpointStore> Pipeline<C> {
    /// A pipeline sending to `deletes` (a target in its stack,
    /// [`crate::targets::stack::build`]) and writing checkpoints at most once per
    /// `checkpoint_interval`.
    pub fn new(
        rules: Rules,
        deletes: DeleteService,
        checkpoint: C,
        checkpoint_interval: Duration,
    ) -> Self {
        Pipeline {
            rules,
            deletes: BreakerLayer::new(BREAKER_OPEN).layer(deletes),
            checkpoint,
            interval: checkpoint_interval,
            last_save: None,
            pending: None,
            stats: PipelineStats::default(),
            batch: KeyBatch::default(),
            retry: None,
            delayed: DelayedDeletes::new(),
            held: HeldTransactions::default(),
            lag: Arc::default(),
        }
    }

    /// Sends deletes the target refuses to `queue` (durably) instead of stopping,
    /// and pauses reading while the queue is past its `max_depth`. Start the
    /// queue's worker separately ([`RetryQueue::spawn_worker`]), on a clone of the
    /// same stack.
    pub fn with_retry_queue(mut self, queue: RetryQueue) -> Self {
        self.retry = Some(queue);
        self
    }

    /// Loads the saved checkpoint, if any, and counts it as applied and saved; the
    /// source should resume from the returned position.
    pub async fn resume(&mut self) -> Result<Option<Position>, PipelineError> {
        let Some(cp) = self.checkpoint.load().await? else {
            return Ok(None);
        };
        self.stats.applied = Some(cp.position.clone());
        self.stats.checkpointed = Some(cp.position.clone());
        self.stats.checkpoint_saved_at = cp.saved_at as f64;
        Ok(Some(cp.position))
    }

    fn backpressured(&self) -> bool {
        self.retry
            .as_ref()
            .is_some_and(|q| q.depth() >= q.max_depth())
    }

    /// Counters so far.
    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// The lag, shared with readers in other tasks.
    pub fn lag(&self) -> Arc<Lag> {
        self.lag.clone()
    }

    /// Waits for every pending second delete to fire, then advances the checkpoint.
    async fn drain_delayed(&mut self) -> Result<(), PipelineError> {
        while !self.delayed.is_empty() {
            let due = self.delayed.next_batch(DELAYED_BATCH).await;
            self.fire(due).await?;
        }
        Ok(())
    }

    /// Sends second deletes that came due and releases their transactions. Returns
    /// where the checkpoint moved, if it did.
    async fn fire(&mut self, due: Vec<(Bytes, u64)>) -> Result<Option<Position>, PipelineError> {
        if due.is_empty() {
            return Ok(None);
        }
        let keys: Vec<Bytes> = due.iter().map(|(k, _)| k.clone()).collect();
        // Position of the newest owner, for the queue's record.
        let position = due
            .iter()
            .map(|(_, s)| *s)
            .max()
            .and_then(|s| self.held.checkpoint(s))
            .map(|c| c.position.clone());
        if let Some(position) = position {
            self.deliver(&keys, &position).await?;
        }
        self.stats.double_deletes += keys.len() as u64;
        for (_, seq) in &due {
            self.held.release(*seq);
        }
        self.stats.pending_double_deletes = self.delayed.len() as u64;
        self.advance().await
    }

    /// Moves the checkpoint candidate past every transaction at the front with no
    /// pending second delete, and saves it if the interval passed. Returns where the
    /// checkpoint moved, if it was saved.
    async fn advance(&mut self) -> Result<Option<Position>, PipelineError> {
        if let Some(cp) = self.held.pop_released() {
            self.pending = Some(cp);
        }
        if self.pending.is_some()
            && self
                .last_save
                .is_none_or(|at| at.elapsed() >= self.interval)
        {
            return self.save().await;
        }
        Ok(None)
    }

    /// Sends `keys` once; if that fails and there is a retry queue, queues them
    /// durably instead (without one, the pipeline stops).
    async fn deliver(
        &mut self,
        keys: &[Bytes],
        position: &Position,
    ) -> Result<Delivery, PipelineError> {
        let sent = match self.deletes.ready().await {
            Ok(svc) => svc.call(DeleteRequest::new(keys)).await,
            Err(e) => Err(e),
        };
        let error = match sent {
            Ok(()) => return Ok(Delivery::Landed),
            Err(e) => e,
        };
        if self.retry.is_none() {
            return Err(PipelineError::Target {
                position: position.clone(),
                source: error,
            });
        }
        let tried = !matches!(error, TargetError::Failing(_));
        if tried {
            tracing::warn!(error = %error, keys = keys.len(), %position, "delete failed; queued for retry");
        } else {
            tracing::debug!(keys = keys.len(), %position, "target failing: queued without trying it");
            self.stats.queued_without_trying += keys.len() as u64;
        }
        self.enqueue(keys, position).await?;
        Ok(Delivery::Queued { tried })
    }

    /// Hands `keys` to the retry queue; Ok once a crash can no longer lose them.
    /// Called only with a queue.
    async fn enqueue(&mut self, keys: &[Bytes], position: &Position) -> Result<(), PipelineError> {
        debug_assert!(self.retry.is_some());
        if let Some(q) = &self.retry {
            q.enqueue(keys, &position.to_string())
                .await
                .map_err(|source| PipelineError::Queue {
                    position: position.clone(),
                    source,
                })?;
            self.stats.queued += keys.len() as u64;
        }
        Ok(())
    }

    /// Saves the checkpoint candidate, if any; returns its position.
    async fn save(&mut self) -> Result<Option<Position>, PipelineError> {
        let Some(cp) = self.pending.take() else {
            return Ok(None);
        };
        self.checkpoint.save(&cp).await?;
        self.stats.checkpointed = Some(cp.position.clone());
        self.stats.checkpoint_saved_at = crate::clock::now_secs();
        self.last_save = Some(Instant::now());
        Ok(Some(cp.position))
    }

    /// Applies one transaction: its keys are deleted as one batch (or durably queued),
    /// the second deletes of keys with a `double_delete` go on the timing wheel, and
    /// the checkpoint moves as far as no pending delete holds it back. An error stops
    /// the pipeline: the transaction is never skipped.
    pub async fn apply(&mut self, t: &Transaction) -> Result<Applied, PipelineError> {
        self.batch.clear();
        for change in &t.changes {
            self.rules
                .keys_for(change, &mut self.batch)
                .map_err(|source| PipelineError::Rules {
                    position: t.position.clone(),
                    source,
                })?;
        }
        let mut applied = Applied {
            keys: self.batch.len(),
            ..Applied::default()
        };
        if !self.batch.is_empty() {
            let keys = std::mem::take(&mut self.batch);
            let res = self.deliver(keys.keys(), &t.position).await;
            self.batch = keys;
            if let Delivery::Queued { tried } = res? {
                applied.queued = applied.keys;
                if !tried {
                    applied.queued_without_trying = applied.keys;
                }
            }
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.stats.transactions += 1;
        self.stats.rows += t.changes.len() as u64;
        self.stats.invalidations += self.batch.len() as u64;
        self.stats.applied = Some(t.position.clone());
        // Eligible for the checkpoint once its second deletes (if any) fired: by
        // order, every earlier transaction's first deletes already landed.
        let seq = self.held.push(Checkpoint {
            position: t.position.clone(),
            timestamp: t.timestamp,
            saved_at: now.as_secs(),
        });
        for (k, d) in self.batch.keys().iter().zip(self.batch.delays()) {
            if d.is_zero() {
                continue;
            }
            applied.delayed += 1;
            self.held.hold(seq);
            // A key already pending moves to this transaction: its previous owner
            // no longer waits for it.
            if let Some(prev) = self.delayed.schedule(k.clone(), *d, seq) {
                self.held.release(prev);
            }
        }
        self.stats.pending_double_deletes = self.delayed.len() as u64;
        applied.checkpointed = self.advance().await?;
        Ok(applied)
    }
}
