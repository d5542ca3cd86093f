//! The pipeline: transaction -> keys -> one delete batch -> checkpoint.
//!
//! Transactions are handled one at a time in binlog order. The keys of a transaction
//! are deleted as one batch; only after that batch was applied is the transaction's
//! end position eligible for the checkpoint, so a checkpoint never runs ahead of a
//! delete. A transaction whose keys cannot be computed stops the pipeline with its
//! position: it is never skipped.

use crate::binlog::{BinlogSource, Position, SourceError, Transaction};
use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore};
use crate::rules::{KeyBatch, RuleError, Rules};
use crate::target::{Target, TargetError};
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
}

/// Where the pipeline gets transactions from (the binlog, or a test double).
pub trait TransactionSource: Send {
    /// The next committed transaction in binlog order.
    fn next_transaction(&mut self)
        -> impl Future<Output = Result<Transaction, SourceError>> + Send;
}

impl TransactionSource for BinlogSource {
    async fn next_transaction(&mut self) -> Result<Transaction, SourceError> {
        BinlogSource::next_transaction(self).await
    }
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
    /// Position last written to the checkpoint store.
    pub checkpointed: Option<Position>,
    /// Seconds between the last transaction's commit and its deletes landing.
    pub lag_seconds: f64,
}

/// Delete attempts per batch before the pipeline stops.
const TARGET_ATTEMPTS: u32 = 5;

/// Binlog -> rules -> target -> checkpoint.
pub struct Pipeline<S, T, C> {
    source: S,
    rules: Rules,
    target: T,
    checkpoint: C,
    interval: Duration,
    last_save: Option<Instant>,
    pending: Option<Checkpoint>,
    stats: PipelineStats,
    batch: KeyBatch,
}

impl<S: TransactionSource, T: Target, C: CheckpointStore> Pipeline<S, T, C> {
    /// A pipeline writing checkpoints at most once per `checkpoint_interval`.
    pub fn new(
        source: S,
        rules: Rules,
        target: T,
        checkpoint: C,
        checkpoint_interval: Duration,
    ) -> Self {
        Pipeline {
            source,
            rules,
            target,
            checkpoint,
            interval: checkpoint_interval,
            last_save: None,
            pending: None,
            stats: PipelineStats::default(),
            batch: KeyBatch::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// The source (for its own counters).
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The source, mutably (to connect it before the first step).
    pub fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// Consumes the pipeline, returning the source (to shut it down).
    pub fn into_source(self) -> S {
        self.source
    }

    /// Runs until `stop` resolves (then writes the last checkpoint) or an error.
    pub async fn run_until(&mut self, stop: impl Future<Output = ()>) -> Result<(), PipelineError> {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                t = self.source.next_transaction() => {
                    let t = t?;
                    self.apply(t).await?;
                }
            }
        }
        self.flush().await
    }

    /// Processes exactly one transaction.
    pub async fn step(&mut self) -> Result<Transaction, PipelineError> {
        let t = self.source.next_transaction().await?;
        self.apply(t.clone()).await?;
        Ok(t)
    }

    /// Writes the newest applied position if it is not saved yet.
    pub async fn flush(&mut self) -> Result<(), PipelineError> {
        if let Some(cp) = self.pending.take() {
            self.checkpoint.save(&cp).await?;
            self.stats.checkpointed = Some(cp.position);
            self.last_save = Some(Instant::now());
        }
        Ok(())
    }

    async fn apply(&mut self, t: Transaction) -> Result<(), PipelineError> {
        self.batch.clear();
        for change in &t.changes {
            self.rules
                .keys_for(change, &mut self.batch)
                .map_err(|source| PipelineError::Rules {
                    position: t.position.clone(),
                    source,
                })?;
        }
        if !self.batch.is_empty() {
            let mut attempt = 0;
            loop {
                match self.target.delete_batch(self.batch.keys()).await {
                    Ok(()) => break,
                    Err(source) => {
                        attempt += 1;
                        if attempt >= TARGET_ATTEMPTS {
                            return Err(PipelineError::Target {
                                position: t.position.clone(),
                                source,
                            });
                        }
                        tracing::warn!(error = %source, attempt, "delete batch failed; retrying");
                        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                    }
                }
            }
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.stats.transactions += 1;
        self.stats.rows += t.changes.len() as u64;
        self.stats.invalidations += self.batch.len() as u64;
        self.stats.lag_seconds = (now.as_secs_f64() - f64::from(t.timestamp)).max(0.0);
        self.stats.applied = Some(t.position.clone());
        // Only now, with every delete of this transaction (and, by order, of every
        // earlier one) applied, may its position be checkpointed.
        self.pending = Some(Checkpoint {
            position: t.position,
            timestamp: t.timestamp,
            saved_at: now.as_secs(),
        });
        if self
            .last_save
            .is_none_or(|at| at.elapsed() >= self.interval)
        {
            self.flush().await?;
        }
        Ok(())
    }
}
