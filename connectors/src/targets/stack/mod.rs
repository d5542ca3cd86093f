//! The tower stack every target's delete service runs in, the embedded engine's
//! included: `metered(retry(concurrency_limit(timeout(target))))`.
//!
//! - timeout: a batch that has not landed within `batch_timeout` fails (so a slow or
//!   hung target cannot stall the binlog; its keys go to the retry queue);
//! - concurrency limit: at most `concurrency` batches in flight, shared by the
//!   pipeline and the retry worker (clones share the semaphore);
//! - retry ([`retry`]): a few quick in-line attempts for blips, with a short backoff;
//!   longer outages are the durable retry queue's business;
//! - metrics ([`metered`]): every batch, with its outcome and duration (retries
//!   included), goes to a [`DeleteRecorder`].
//!
//! The pipeline adds a [`breaker`] on top of its clone: after a failure, its
//! batches go straight to the retry queue for a second.

pub mod breaker;
pub mod metered;
pub mod retry;

use super::{Target, TargetConfig, TargetError};
use bytes::Bytes;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

pub use breaker::{Breaker, BreakerLayer};
pub use metered::{DeleteRecorder, MeteredLayer};
pub use retry::QuickRetry;

/// One delete batch: the keys of a transaction (or of a retry-queue batch).
#[derive(Debug, Clone)]
pub struct DeleteRequest {
    /// Keys to delete.
    pub keys: Arc<[Bytes]>,
}

impl DeleteRequest {
    /// A request for `keys`.
    pub fn new(keys: &[Bytes]) -> Self {
        DeleteRequest { keys: keys.into() }
    }
}

/// A target in its stack, type-erased and cheap to clone: what the pipeline and the
/// retry worker send to.
#[derive(Clone)]
pub struct DeleteService(BoxCloneSyncService<DeleteRequest, (), TargetError>);

impl std::fmt::Debug for DeleteService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeleteService")
    }
}

impl DeleteService {
    /// Erases `service`'s type (it is used as it is: [`build`] adds the stack).
    pub fn new<S: Target>(service: S) -> Self {
        DeleteService(BoxCloneSyncService::new(service))
    }

    /// Deletes `keys` as one batch.
    pub async fn send(&mut self, keys: &[Bytes]) -> Result<(), TargetError> {
        self.ready().await?.call(DeleteRequest::new(keys)).await
    }
}

impl Service<DeleteRequest> for DeleteService {
    type Response = ();
    type Error = TargetError;
    type Future =
        <BoxCloneSyncService<DeleteRequest, (), TargetError> as Service<DeleteRequest>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TargetError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: DeleteRequest) -> Self::Future {
        self.0.call(req)
    }
}

/// Stack settings.
#[derive(Debug, Clone, Copy)]
pub struct StackConfig {
    /// Per-attempt batch timeout.
    pub timeout: Duration,
    /// Batches in flight.
    pub concurrency: usize,
    /// Attempts per call, in-line (1 = no in-line retry).
    pub attempts: u32,
    /// Pause before the first in-line retry (doubles after each).
    pub backoff: Duration,
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            timeout: Duration::from_secs(2),
            concurrency: 4,
            attempts: 2,
            backoff: Duration::from_millis(20),
        }
    }
}

impl StackConfig {
    /// The settings `[target]` gives (`batch_timeout`, `concurrency`).
    pub fn for_target(config: &TargetConfig) -> Self {
        StackConfig {
            timeout: config.batch_timeout.0,
            concurrency: config.concurrency,
            ..StackConfig::default()
        }
    }
}

/// Wraps `target` in the stack, reporting its batches to `recorder`.
pub fn build<S: Target, R: DeleteRecorder>(
    target: S,
    cfg: StackConfig,
    recorder: R,
) -> DeleteService {
    let timeout = cfg.timeout;
    let stack = ServiceBuilder::new()
        .layer(MeteredLayer::new(recorder))
        .retry(QuickRetry::new(cfg.attempts, cfg.backoff))
        .concurrency_limit(cfg.concurrency.max(1))
        .map_err(move |e: BoxError| to_target_error(e, timeout))
        .timeout(timeout)
        .service(target);
    DeleteService::new(stack)
}

fn to_target_error(e: BoxError, timeout: Duration) -> TargetError {
    match e.downcast::<TargetError>() {
        Ok(t) => *t,
        Err(e) if e.is::<tower::timeout::error::Elapsed>() => TargetError::Timeout(timeout),
        Err(e) => TargetError::Unavailable(e.to_string()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A target whose first `fail_first` calls fail; each call takes `delay`.
    /// `calls` counts them.
    pub(crate) fn flaky(calls: Arc<AtomicU32>, fail_first: u32, delay: Duration) -> impl Target {
        tower::service_fn(move |_: DeleteRequest| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(delay).await;
                if n < fail_first {
                    Err(TargetError::Unavailable("refused".into()))
                } else {
                    Ok(())
                }
            }
        })
    }

    /// Sends one batch of one key.
    pub(crate) async fn send<S>(svc: &mut S) -> Result<(), TargetError>
    where
        S: Service<DeleteRequest, Response = (), Error = TargetError>,
    {
        let req = DeleteRequest::new(&[Bytes::from_static(b"k")]);
        svc.ready().await?.call(req).await
    }

    #[tokio::test]
    async fn retries_then_times_out() {
        let calls = Arc::new(AtomicU32::new(0));
        let cfg = StackConfig {
            timeout: Duration::from_millis(100),
            attempts: 3,
            ..StackConfig::default()
        };
        let mut ok = build(flaky(calls.clone(), 2, Duration::ZERO), cfg, ());
        send(&mut ok).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let mut slow = build(
            flaky(Arc::new(AtomicU32::new(0)), 0, Duration::from_secs(5)),
            StackConfig { attempts: 1, ..cfg },
            (),
        );
        let err = send(&mut slow).await.unwrap_err();
        assert!(matches!(err, TargetError::Timeout(_)), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clones_share_the_concurrency_limit() {
        let (now, most) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let (n, m) = (now.clone(), most.clone());
        let counting = tower::service_fn(move |_: DeleteRequest| {
            let (n, m) = (n.clone(), m.clone());
            async move {
                let in_flight = n.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(in_flight, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                n.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), TargetError>(())
            }
        });
        let cfg = StackConfig {
            concurrency: 2,
            ..StackConfig::default()
        };
        let svc = build(counting, cfg, ());
        let sends: Vec<_> = (0..8)
            .map(|_| {
                let mut s = svc.clone();
                tokio::spawn(async move { send(&mut s).await })
            })
            .collect();
        for s in sends {
            s.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2, "at most two in flight");
    }
}
