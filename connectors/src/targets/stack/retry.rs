//! The in-line retry layer's policy: a few quick attempts for blips (a reconnect, one
//! MOVED), with a short exponential pause. Longer outages are the durable retry
//! queue's business ([`crate::retry`]), not an in-memory loop's.

use super::DeleteRequest;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// In-line retry policy: `left` more attempts, exponential pause between them.
#[derive(Debug, Clone)]
pub struct QuickRetry {
    left: u32,
    backoff: Duration,
}

impl QuickRetry {
    /// `attempts` in all (1 = no retry), the first retry after `backoff`, doubling.
    pub fn new(attempts: u32, backoff: Duration) -> Self {
        QuickRetry {
            left: attempts.saturating_sub(1),
            backoff,
        }
    }
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
    use super::super::tests::flaky;
    use super::*;
    use crate::targets::TargetError;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use tower::{ServiceBuilder, ServiceExt};

    #[tokio::test]
    async fn retries_a_few_times_then_gives_up() {
        let calls = Arc::new(AtomicU32::new(0));
        let svc = |fail_first| {
            ServiceBuilder::new()
                .retry(QuickRetry::new(3, Duration::from_millis(1)))
                .service(flaky(calls.clone(), fail_first, Duration::ZERO))
        };
        let req = || DeleteRequest::new(&[Bytes::from_static(b"k")]);
        svc(2).oneshot(req()).await.unwrap();
        assert_eq!(calls.swap(0, Ordering::SeqCst), 3, "two failures, then ok");
        let err = svc(5).oneshot(req()).await.unwrap_err();
        assert!(matches!(err, TargetError::Unavailable(_)), "{err}");
        assert_eq!(calls.load(Ordering::SeqCst), 3, "three attempts, no more");
    }
}
