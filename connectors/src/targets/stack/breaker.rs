//! The breaker layer: after a batch fails, later batches fail at once, without
//! trying the target, for a while (the pipeline's is one second); the first batch
//! after that tries again, and a success closes it.
//!
//! The pipeline puts it on top of its stack: a target that hangs rather than refuses
//! would otherwise cost every transaction its full in-line attempts (`attempts` x
//! `batch_timeout`) and stall the binlog, while the deletes can go to the durable
//! retry queue at once. The retry worker does not use it: its own backoff spaces its
//! attempts, and a batch the breaker turned away would still count as an attempt.

use super::DeleteRequest;
use crate::targets::TargetError;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::{Layer, Service};

/// Wraps a service in a [`Breaker`].
#[derive(Debug, Clone, Copy)]
pub struct BreakerLayer {
    open_for: Duration,
}

impl BreakerLayer {
    /// A failure keeps the breaker open for `open_for`.
    pub fn new(open_for: Duration) -> Self {
        BreakerLayer { open_for }
    }
}

impl<S> Layer<S> for BreakerLayer {
    type Service = Breaker<S>;

    fn layer(&self, inner: S) -> Breaker<S> {
        Breaker {
            inner,
            state: Arc::new(State {
                origin: Instant::now(),
                open_until: AtomicU64::new(CLOSED),
                open_for: self.open_for,
            }),
            turn_away: false,
        }
    }
}

/// `open_until` of a closed breaker.
const CLOSED: u64 = 0;

/// Shared by the service and its response futures (and by clones).
#[derive(Debug)]
struct State {
    origin: Instant,
    /// Nanoseconds after `origin` until which batches are turned away, or [`CLOSED`].
    open_until: AtomicU64,
    open_for: Duration,
}

impl State {
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn is_open(&self) -> bool {
        let until = self.open_until.load(Ordering::Relaxed);
        until != CLOSED && self.now() < until
    }

    fn record(&self, ok: bool) {
        let until = if ok {
            CLOSED
        } else {
            let open = u64::try_from(self.open_for.as_nanos()).unwrap_or(u64::MAX);
            self.now().saturating_add(open).max(1)
        };
        self.open_until.store(until, Ordering::Relaxed);
    }
}

/// Turns batches away with [`TargetError::Failing`] for a while after one failed.
#[derive(Debug)]
pub struct Breaker<S> {
    inner: S,
    state: Arc<State>,
    /// Decided in `poll_ready` (open: the inner service was not made ready), so
    /// `call` agrees with it even if the open period ends in between.
    turn_away: bool,
}

impl<S: Clone> Clone for Breaker<S> {
    fn clone(&self) -> Self {
        Breaker {
            inner: self.inner.clone(),
            state: self.state.clone(),
            turn_away: false,
        }
    }
}

impl<S> Service<DeleteRequest> for Breaker<S>
where
    S: Service<DeleteRequest, Response = (), Error = TargetError>,
{
    type Response = ();
    type Error = TargetError;
    type Future = BreakerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TargetError>> {
        // Open, the inner service is not called, so its readiness (a concurrency
        // permit) is not needed either.
        self.turn_away = self.state.is_open();
        if self.turn_away {
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: DeleteRequest) -> Self::Future {
        let stage = if std::mem::take(&mut self.turn_away) {
            Stage::Open {
                open_for: self.state.open_for,
            }
        } else {
            Stage::Closed {
                inner: self.inner.call(req),
                state: self.state.clone(),
            }
        };
        BreakerFuture { stage }
    }
}

pin_project! {
    /// The response of [`Breaker`].
    pub struct BreakerFuture<F> {
        #[pin]
        stage: Stage<F>,
    }
}

pin_project! {
    #[project = StageProj]
    enum Stage<F> {
        /// Turned away.
        Open { open_for: Duration },
        /// Sent to the inner service.
        Closed {
            #[pin]
            inner: F,
            state: Arc<State>,
        },
    }
}

impl<F> Future for BreakerFuture<F>
where
    F: Future<Output = Result<(), TargetError>>,
{
    type Output = Result<(), TargetError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().stage.project() {
            StageProj::Open { open_for } => Poll::Ready(Err(TargetError::Failing(*open_for))),
            StageProj::Closed { inner, state } => {
                let res = std::task::ready!(inner.poll(cx));
                state.record(res.is_ok());
                Poll::Ready(res)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{flaky, send};
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[tokio::test]
    async fn a_failure_turns_batches_away_until_the_breaker_closes() {
        let calls = Arc::new(AtomicU32::new(0));
        // Fails twice, then works.
        let mut svc = BreakerLayer::new(Duration::from_millis(200)).layer(flaky(
            calls.clone(),
            2,
            Duration::ZERO,
        ));
        assert!(matches!(
            send(&mut svc).await,
            Err(TargetError::Unavailable(_))
        ));
        // Open: turned away without a call.
        for _ in 0..3 {
            assert!(matches!(send(&mut svc).await, Err(TargetError::Failing(_))));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        // Half open: one try, which fails and opens it again.
        assert!(matches!(
            send(&mut svc).await,
            Err(TargetError::Unavailable(_))
        ));
        assert!(matches!(send(&mut svc).await, Err(TargetError::Failing(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(250)).await;
        // The target works again: every batch goes through.
        for _ in 0..3 {
            assert!(send(&mut svc).await.is_ok());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_call_agrees_with_its_poll_ready() {
        use tower::{ServiceBuilder, ServiceExt};
        let calls = Arc::new(AtomicU32::new(0));
        // The inner service must be made ready before each call (it panics
        // otherwise): the breaker must not call it on a readiness it skipped.
        let mut svc = ServiceBuilder::new()
            .layer(BreakerLayer::new(Duration::from_millis(50)))
            .concurrency_limit(1)
            .service(flaky(calls.clone(), 1, Duration::ZERO));
        assert!(send(&mut svc).await.is_err());
        let ready = svc.ready().await.unwrap();
        // The open period ends between poll_ready and call.
        tokio::time::sleep(Duration::from_millis(80)).await;
        let req = DeleteRequest::new(&[bytes::Bytes::from_static(b"k")]);
        let res = ready.call(req).await;
        assert!(matches!(res, Err(TargetError::Failing(_))), "{res:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(send(&mut svc).await.is_ok());
    }
}
