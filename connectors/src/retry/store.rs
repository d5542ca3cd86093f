//! What a retry queue backend is: storage of queued deletes, nothing more. When to
//! try a delete again, and when to give up on it, is the worker's
//! ([`super::worker`]), the same for every backend.

use super::{QueueError, QueuedDelete, RetryConfig, RetryStats};
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// A queued delete the worker took out of storage.
#[derive(Debug)]
pub struct Taken<T> {
    /// The key.
    pub key: Bytes,
    /// Binlog position of the transaction that caused it.
    pub position: Arc<str>,
    /// Attempts so far (the pipeline's in-line one is the first).
    pub attempts: u32,
    /// Unix milliseconds before which it must not be tried.
    pub due_ms: u64,
    /// The backend's handle on its stored copy.
    pub ticket: T,
}

/// Durable storage of queued deletes: push, take what is due, and settle what was
/// taken (ack, requeue with a next due time, dead-letter). The backend keeps the
/// counters of [`RetryStats`] (the depth is a property of what it stores).
///
/// Taking and settling go through a [`QueueStore::Consumer`] the worker owns (for
/// RabbitMQ, its consuming connection): when the worker's task ends, dropping it
/// hands back whatever was taken and not settled.
pub trait QueueStore: Send + Sync + 'static {
    /// Ties a [`Taken`] delete to its stored copy (a log id, a delivery tag).
    type Ticket: Send;

    /// The worker's handle for taking and settling.
    type Consumer: Send;

    /// The `[retry]` section it was opened with.
    fn config(&self) -> &RetryConfig;

    /// Its counters.
    fn stats(&self) -> &RetryStats;

    /// Stores `keys` (caused by the transaction at `position`, one attempt done),
    /// due in `due_in`. Returns once a crash can no longer lose them.
    fn push(
        &self,
        keys: &[Bytes],
        position: &str,
        due_in: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// A consumer for the worker.
    fn consumer(&self) -> Self::Consumer;

    /// Waits until at least one delete is (or may be) due and takes up to `max`
    /// of them; they stay stored until settled. A backend that cannot order by due
    /// time may return some not due yet (see [`Taken::due_ms`]).
    fn take_due(
        &self,
        consumer: &mut Self::Consumer,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Taken<Self::Ticket>>, QueueError>> + Send;

    /// The deletes landed: forget them.
    fn ack(
        &self,
        consumer: &mut Self::Consumer,
        landed: Vec<Taken<Self::Ticket>>,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// The deletes failed again: store each with its new attempt count, due after its
    /// pause.
    fn requeue(
        &self,
        consumer: &mut Self::Consumer,
        failed: Vec<(Taken<Self::Ticket>, Duration)>,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// The deletes are given up on: move them to the dead-letter store (durably,
    /// before they leave the queue).
    fn dead_letter(
        &self,
        consumer: &mut Self::Consumer,
        dead: Vec<Taken<Self::Ticket>>,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// The dead-letter store's contents.
    fn dead_letters(&self) -> impl Future<Output = Result<Vec<QueuedDelete>, QueueError>> + Send;
}
