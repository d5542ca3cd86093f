//! The tower stack every external target's delete service runs in:
//! `map_err(retry(concurrency_limit(timeout(service))))`.
//!
//! - timeout: a batch that has not landed within `batch_timeout` fails (so a slow or
//!   hung target cannot stall the binlog; its keys go to the retry queue);
//! - concurrency limit: at most `concurrency` batches in flight, shared by the
//!   pipeline and the retry worker (clones share the semaphore);
//! - retry: a few quick in-line attempts for blips (a reconnect, one MOVED), with
//!   a short backoff; longer outages are the durable retry queue's business.

use super::TargetError;
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service, ServiceBuilder};

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

/// The assembled stack, type-erased and cheap to clone.
pub type DeleteService = BoxCloneSyncService<DeleteRequest, (), TargetError>;

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

/// Wraps `service` in the stack.
pub fn build<S>(service: S, cfg: StackConfig) -> DeleteService
where
    S: Service<DeleteRequest, Response = (), Error = TargetError> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let timeout = cfg.timeout;
    let stack = ServiceBuilder::new()
        .map_err(move |e: BoxError| to_target_error(e, timeout))
        .retry(QuickRetry {
            left: cfg.attempts.saturating_sub(1),
            backoff: cfg.backoff,
        })
        .concurrency_limit(cfg.concurrency.max(1))
        .timeout(timeout)
        .service(service);
    BoxCloneSyncService::new(stack)
}

fn to_target_error(e: BoxError, timeout: Duration) -> TargetError {
    match e.downcast::<TargetError>() {
        Ok(t) => *t,
        Err(e) if e.is::<tower::timeout::error::Elapsed>() => TargetError::Timeout(timeout),
        Err(e) => TargetError::Unavailable(e.to_string()),
    }
}

/// In-line retry policy: `left` more attempts, exponential pause between them.
#[derive(Debug, Clone)]
pub struct QuickRetry {
    left: u32,
    backoff: Duration,
}

impl<E> tower::retry::Policy<DeleteRequest, (), E> for QuickRetry {
    type Future = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn retry(
        &mut self,
        _req: &mut DeleteRequest,
        result: &mut Result<(), E>,
    ) -> Option<Self::Future> {
        if result.is_ok() || self.left == 0 {
            return None;
        }
        self.left -= 1;
        let pause = self.backoff;
        self.backoff *= 2;
        Some(Box::pin(tokio::time::sleep(pause)))
    }

    fn clone_request(&mut self, req: &DeleteRequest) -> Option<DeleteRequest> {
        Some(req.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tower::ServiceExt;

    #[derive(Clone)]
    struct Flaky {
        calls: Arc<AtomicU32>,
        fail_first: u32,
        delay: Duration,
    }

    impl Service<DeleteRequest> for Flaky {
        type Response = ();
        type Error = TargetError;
        type Future = Pin<Box<dyn Future<Output = Result<(), TargetError>> + Send>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), TargetError>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: DeleteRequest) -> Self::Future {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let (fail, delay) = (n < self.fail_first, self.delay);
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                if fail {
                    Err(TargetError::Unavailable("refused".into()))
                } else {
                    Ok(())
                }
            })
        }
    }

    #[tokio::test]
    async fn retries_then_times_out() {
        let calls = Arc::new(AtomicU32::new(0));
        let cfg = StackConfig {
            timeout: Duration::from_millis(100),
            attempts: 3,
            ..StackConfig::default()
        };
        let ok = build(
            Flaky {
                calls: calls.clone(),
                fail_first: 2,
                delay: Duration::ZERO,
            },
            cfg,
        );
        ok.oneshot(DeleteRequest::new(&[Bytes::from_static(b"k")]))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let slow = build(
            Flaky {
                calls: Arc::new(AtomicU32::new(0)),
                fail_first: 0,
                delay: Duration::from_secs(5),
            },
            StackConfig { attempts: 1, ..cfg },
        );
        let err = slow
            .oneshot(DeleteRequest::new(&[Bytes::from_static(b"k")]))
            .await
            .unwrap_err();
        assert!(matches!(err, TargetError::Timeout(_)), "{err}");
    }
}
