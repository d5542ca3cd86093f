//! The metrics layer: tells a [`DeleteRecorder`] about every delete batch, with its
//! size, its duration and its outcome.
//!
//! The connector does not pick a telemetry stack: the sidecar implements the recorder
//! with OpenTelemetry (the `coherent_delete_latency_seconds` histogram and a
//! `deletes` span). That keeps the library free of the OpenTelemetry SDK's version
//! (the exporter, SDK and API must move in lockstep, in one crate), lets a test count
//! batches with a plain struct, and costs nothing without a recorder (`()`).

use super::DeleteRequest;
use crate::targets::TargetError;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::{Layer, Service};

/// Receives every delete batch the stack sends (first, second or retried deletes).
pub trait DeleteRecorder: Send + Sync + 'static {
    /// What [`DeleteRecorder::start`] hands to [`DeleteRecorder::finish`] (an open
    /// span, say).
    type Batch: Send + 'static;

    /// A batch of `keys` keys is about to be sent. Called in the sender's context (a
    /// transaction's trace, for the pipeline's batches).
    fn start(&self, keys: usize) -> Self::Batch;

    /// The batch ended after `elapsed` (in-line retries included) with `result`.
    fn finish(&self, batch: Self::Batch, elapsed: Duration, result: &Result<(), TargetError>);
}

/// Records nothing.
impl DeleteRecorder for () {
    type Batch = ();
    fn start(&self, _keys: usize) {}
    fn finish(&self, _: (), _: Duration, _: &Result<(), TargetError>) {}
}

/// Wraps a service in [`Metered`].
#[derive(Debug)]
pub struct MeteredLayer<R> {
    recorder: Arc<R>,
}

impl<R> MeteredLayer<R> {
    /// Reports to `recorder`.
    pub fn new(recorder: R) -> Self {
        MeteredLayer {
            recorder: Arc::new(recorder),
        }
    }
}

impl<S, R> Layer<S> for MeteredLayer<R> {
    type Service = Metered<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Metered {
            inner,
            recorder: self.recorder.clone(),
        }
    }
}

/// A delete service whose batches are reported to a [`DeleteRecorder`].
#[derive(Debug)]
pub struct Metered<S, R> {
    inner: S,
    recorder: Arc<R>,
}

impl<S: Clone, R> Clone for Metered<S, R> {
    fn clone(&self) -> Self {
        Metered {
            inner: self.inner.clone(),
            recorder: self.recorder.clone(),
        }
    }
}

impl<S, R> Service<DeleteRequest> for Metered<S, R>
where
    S: Service<DeleteRequest, Response = (), Error = TargetError>,
    R: DeleteRecorder,
{
    type Response = ();
    type Error = TargetError;
    type Future = MeteredFuture<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TargetError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: DeleteRequest) -> Self::Future {
        let batch = Some(self.recorder.start(req.keys.len()));
        let started = Instant::now();
        MeteredFuture {
            inner: self.inner.call(req),
            recorder: self.recorder.clone(),
            batch,
            started,
        }
    }
}

pin_project! {
    /// The response of [`Metered`].
    pub struct MeteredFuture<F, R: DeleteRecorder> {
        #[pin]
        inner: F,
        recorder: Arc<R>,
        batch: Option<R::Batch>,
        started: Instant,
    }
}

impl<F, R> Future for MeteredFuture<F, R>
where
    F: Future<Output = Result<(), TargetError>>,
    R: DeleteRecorder,
{
    type Output = Result<(), TargetError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.inner.poll(cx));
        if let Some(batch) = this.batch.take() {
            this.recorder.finish(batch, this.started.elapsed(), &res);
        }
        Poll::Ready(res)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::flaky;
    use super::*;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;
    use tower::ServiceExt;

    /// Keeps what it was told.
    #[derive(Default)]
    struct Log(Mutex<Vec<(usize, Duration, bool)>>);

    impl DeleteRecorder for Arc<Log> {
        type Batch = usize;
        fn start(&self, keys: usize) -> usize {
            keys
        }
        fn finish(&self, keys: usize, elapsed: Duration, result: &Result<(), TargetError>) {
            if let Ok(mut l) = self.0.lock() {
                l.push((keys, elapsed, result.is_ok()));
            }
        }
    }

    #[tokio::test]
    async fn reports_each_batch_with_size_duration_and_outcome() {
        let log = Arc::new(Log::default());
        let calls = Arc::new(AtomicU32::new(0));
        let svc = MeteredLayer::new(log.clone()).layer(flaky(
            calls.clone(),
            1,
            Duration::from_millis(20),
        ));
        let two = [Bytes::from_static(b"a"), Bytes::from_static(b"b")];
        assert!(svc.clone().oneshot(DeleteRequest::new(&two)).await.is_err());
        assert!(svc.oneshot(DeleteRequest::new(&two[..1])).await.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let l = log.0.lock().unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].0, l[0].2), (2, false));
        assert_eq!((l[1].0, l[1].2), (1, true));
        assert!(l.iter().all(|(_, d, _)| *d >= Duration::from_millis(20)));
    }
}
