//! The run loop: the one place that drives a [`Pipeline`] from a transaction source.
//!
//! Two futures in one task. The reader owns the [`TransactionSource`] and sends whole
//! transactions, stamped with when they were received, down a bounded channel; it
//! keeps the binlog stream open (and reads ahead) while the applier works or
//! flushes. The applier waits on "stop, second deletes due, next transaction,
//! backpressure, idle flush" with a `select!` whose branches only wait: applying a
//! transaction and sending second deletes run in the handlers, where nothing can
//! cancel them half done. What a branch may lose when another wins is a channel
//! receive (which loses nothing) or a wait on the timing wheel (cancel-safe).
//!
//! Each applied transaction is reported to an [`Observer`] with what it did, when it
//! was received and its lag; the sidecar hangs its traces, `/status`, metrics and the
//! online audit off that.

use super::{Applied, Pipeline, PipelineError, PipelineStats, DELAYED_BATCH};
use crate::binlog::{BinlogSource, SourceError, Transaction};
use crate::checkpoint::CheckpointStore;
use crate::clock::{lag_since, now_secs};
use std::future::Future;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Transactions read ahead of the applier.
const READ_AHEAD: usize = 256;

/// How often a loop paused by backpressure looks at the retry queue's depth again.
const PAUSE_POLL: Duration = Duration::from_millis(20);

/// Shortest idle wait before the last applied position is saved.
const IDLE_MIN: Duration = Duration::from_millis(10);

/// A transaction and the Unix time (seconds) it was received.
type Received = (Transaction, f64);

/// Where the pipeline gets transactions from (the binlog, or a test double).
pub trait TransactionSource: Send {
    /// The next committed transaction in binlog order. Cancelling it (on stop) may
    /// lose a transaction not yet returned; the checkpoint has not passed it.
    fn next_transaction(&mut self)
        -> impl Future<Output = Result<Transaction, SourceError>> + Send;

    /// Closes the source once the loop no longer reads it.
    fn shutdown(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

impl TransactionSource for BinlogSource {
    async fn next_transaction(&mut self) -> Result<Transaction, SourceError> {
        BinlogSource::next_transaction(self).await
    }

    async fn shutdown(self) {
        BinlogSource::shutdown(self).await
    }
}

/// One applied transaction, as the loop reports it.
#[derive(Debug)]
pub struct Report<'a> {
    /// The transaction (handed over: the loop is done with it).
    pub transaction: Transaction,
    /// What applying it did.
    pub applied: Applied,
    /// Unix seconds it was received from the source.
    pub received_at: f64,
    /// Seconds from its commit to its deletes landing (see [`crate::clock::lag_since`]);
    /// for keys it queued, they land later.
    pub lag: f64,
    /// The pipeline's counters after it.
    pub stats: &'a PipelineStats,
}

/// Told what the run loop does. Every method has a default that does nothing.
pub trait Observer: Send {
    /// Wraps the application of `transaction` (the sidecar runs it inside the
    /// transaction's trace, so the delete batches it sends become child spans).
    fn instrument<F: Future + Send>(
        &mut self,
        transaction: &Transaction,
        apply: F,
    ) -> impl Future<Output = F::Output> + Send {
        let _ = transaction;
        apply
    }

    /// A transaction was applied.
    fn applied(&mut self, report: Report<'_>) {
        let _ = report;
    }

    /// Applying `transaction` failed; the loop stops with `error`.
    fn failed(&mut self, transaction: &Transaction, error: &PipelineError, stats: &PipelineStats) {
        let _ = (transaction, error, stats);
    }

    /// The counters moved outside a transaction: second deletes sent, the checkpoint
    /// saved when idle or stopping, reading paused.
    fn progress(&mut self, stats: &PipelineStats) {
        let _ = stats;
    }
}

/// Observes nothing.
impl Observer for () {}

impl<C: CheckpointStore> Pipeline<C> {
    /// Runs until `stop` resolves or an error. On stop, pending second deletes are
    /// sent (they are at most one `double_delete` away) and the last checkpoint is
    /// written; on an error, the checkpoint is still written up to the last applied
    /// transaction. Either way the source is shut down.
    pub async fn run<S: TransactionSource, O: Observer>(
        &mut self,
        source: S,
        observer: &mut O,
        stop: impl Future<Output = ()>,
    ) -> Result<(), PipelineError> {
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let (stop_reader, stopped) = watch::channel(false);
        let applier = async {
            // `rx` moves in and drops when the loop ends, so a reader blocked on a
            // full channel wakes up and stops.
            let res = self.apply_until(rx, observer, stop).await;
            let _ = stop_reader.send(true);
            let res = self.finish(res).await;
            observer.progress(&self.stats);
            res
        };
        let (res, ()) = tokio::join!(applier, read(source, tx, stopped));
        res
    }

    async fn apply_until<O: Observer>(
        &mut self,
        mut rx: mpsc::Receiver<Result<Received, SourceError>>,
        observer: &mut O,
        stop: impl Future<Output = ()>,
    ) -> Result<(), PipelineError> {
        tokio::pin!(stop);
        // Taken off the channel while reading is paused: applied first once the
        // retry queue drains (and, meanwhile, the waiting transaction the lag counts).
        let mut next: Option<Received> = None;
        let mut paused = false;
        loop {
            // Backpressure: while the retry queue is past max_depth, take no
            // transaction (the reader then blocks on the full channel).
            let hold = self.backpressured();
            if hold && !paused {
                self.stats.backpressure_pauses += 1;
                tracing::warn!("retry queue past max_depth: binlog reading paused");
                observer.progress(&self.stats);
            }
            paused = hold;
            let delayed = !self.delayed.is_empty();
            let unsaved = self.pending.is_some();
            tokio::select! {
                biased;
                () = &mut stop => return Ok(()),
                due = self.delayed.next_batch(DELAYED_BATCH), if delayed => {
                    let res = self.fire(due).await;
                    observer.progress(&self.stats);
                    res?;
                }
                () = std::future::ready(()), if next.is_some() && !hold => {
                    if let Some((t, received)) = next.take() {
                        self.apply_one(t, received, observer).await?;
                    }
                }
                m = rx.recv(), if next.is_none() => {
                    let (t, received) = match m {
                        Some(Ok(r)) => r,
                        Some(Err(e)) => return Err(e.into()),
                        None => return Err(PipelineError::ReaderStopped),
                    };
                    self.lag.waiting(t.timestamp, received);
                    if hold {
                        next = Some((t, received));
                    } else {
                        self.apply_one(t, received, observer).await?;
                    }
                }
                () = tokio::time::sleep(PAUSE_POLL), if hold => observer.progress(&self.stats),
                // Idle: save the last applied position rather than hold it until the
                // next transaction arrives.
                () = tokio::time::sleep(self.interval.max(IDLE_MIN)), if unsaved => {
                    let res = self.save().await;
                    observer.progress(&self.stats);
                    res?;
                }
            }
        }
    }

    /// Applies `t` inside the observer's instrumentation and reports it.
    async fn apply_one<O: Observer>(
        &mut self,
        t: Transaction,
        received_at: f64,
        observer: &mut O,
    ) -> Result<(), PipelineError> {
        match observer.instrument(&t, self.apply(&t)).await {
            Ok(applied) => {
                let lag = lag_since(t.timestamp, received_at, now_secs());
                self.lag.applied(lag);
                observer.applied(Report {
                    transaction: t,
                    applied,
                    received_at,
                    lag,
                    stats: &self.stats,
                });
                Ok(())
            }
            Err(e) => {
                observer.failed(&t, &e, &self.stats);
                Err(e)
            }
        }
    }

    /// After the loop: on a clean stop, sends the pending second deletes so the last
    /// checkpoint can cover their transactions; either way, saves the checkpoint up to
    /// the last transaction whose deletes are all handled.
    async fn finish(&mut self, res: Result<(), PipelineError>) -> Result<(), PipelineError> {
        match res {
            Ok(()) => {
                self.drain_delayed().await?;
                self.save().await.map(|_| ())
            }
            Err(e) => {
                if let Err(saving) = self.save().await {
                    tracing::warn!(error = %saving, "last checkpoint not saved");
                }
                Err(e)
            }
        }
    }
}

/// Reads `source` into `tx`, stamping each transaction with its arrival, until
/// `stop` changes, the applier goes away or the source fails (the error is sent on).
async fn read<S: TransactionSource>(
    mut source: S,
    tx: mpsc::Sender<Result<Received, SourceError>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = source.next_transaction() => {
                let fatal = r.is_err();
                let r = r.map(|t| (t, now_secs()));
                if tx.send(r).await.is_err() || fatal {
                    break;
                }
            }
        }
    }
    source.shutdown().await;
}
