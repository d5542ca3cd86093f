//! A [`Target`] wrapper that measures every delete batch: the duration goes into the
//! `coherent_delete_latency_seconds` histogram (attributes `target` and `outcome`),
//! and, when the batch runs inside a transaction's trace, into a `deletes` child span.

use bytes::Bytes;
use connectors::targets::{Target, TargetError, TargetKind};
use opentelemetry::metrics::{Histogram, Meter};
use opentelemetry::trace::{Span, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use std::time::Instant;

/// Name of the delete-latency histogram.
pub const DELETE_LATENCY: &str = "coherent_delete_latency_seconds";

/// Bucket bounds (seconds): deletes take from microseconds (embedded) to the batch
/// timeout (an unreachable Redis).
const BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// `target`'s attribute value for a `[target] kind`.
pub fn kind_label(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Embedded => "embedded",
        TargetKind::Redis => "redis",
        TargetKind::RedisCluster => "redis-cluster",
    }
}

/// A target whose delete batches are timed.
#[derive(Clone)]
pub struct Timed<T> {
    inner: T,
    label: &'static str,
    latency: Histogram<f64>,
}

impl<T> Timed<T> {
    /// Wraps `inner`, recording into `meter`'s histogram with `target = label`.
    pub fn new(inner: T, label: &'static str, meter: &Meter) -> Self {
        let latency = meter
            .f64_histogram(DELETE_LATENCY)
            // No `with_unit`: the Prometheus exporter would append `_seconds` again.
            .with_description("Seconds one delete batch to the target took")
            .with_boundaries(BOUNDS.to_vec())
            .build();
        Timed {
            inner,
            label,
            latency,
        }
    }
}

impl<T: Target> Target for Timed<T> {
    async fn delete_batch(&self, keys: &[Bytes]) -> Result<(), TargetError> {
        // Only batches of a traced transaction get a span: the retry worker's
        // batches would otherwise each start a trace of their own.
        let cx = Context::current();
        let mut span = cx.has_active_span().then(|| {
            let mut s =
                opentelemetry::global::tracer("coherent").start_with_context("deletes", &cx);
            s.set_attribute(KeyValue::new("target", self.label));
            s.set_attribute(KeyValue::new("keys", keys.len() as i64));
            s
        });
        let started = Instant::now();
        let res = self.inner.delete_batch(keys).await;
        let outcome = if res.is_ok() { "ok" } else { "error" };
        self.latency.record(
            started.elapsed().as_secs_f64(),
            &[
                KeyValue::new("target", self.label),
                KeyValue::new("outcome", outcome),
            ],
        );
        if let Some(s) = &mut span {
            if let Err(e) = &res {
                s.set_status(Status::error(e.to_string()));
            }
            s.end();
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Fails every other batch.
    #[derive(Default)]
    struct Flaky(AtomicUsize);

    impl Target for Flaky {
        async fn delete_batch(&self, _keys: &[Bytes]) -> Result<(), TargetError> {
            if self.0.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
                Ok(())
            } else {
                Err(TargetError::Unavailable("down".into()))
            }
        }
    }

    #[tokio::test]
    async fn records_latency_per_target_and_outcome() {
        // The same provider and rendering as /metrics.
        let tel = crate::telemetry::Telemetry::new(&Default::default()).unwrap();
        let meter = tel.meter();
        let flaky = Arc::new(Flaky::default());
        let t = Timed::new(flaky.clone(), "redis-cluster", meter);
        let keys = [Bytes::from_static(b"k")];
        assert!(t.delete_batch(&keys).await.is_ok());
        assert!(t.delete_batch(&keys).await.is_err());
        assert!(t.delete_batch(&keys).await.is_ok());
        assert_eq!(flaky.0.load(Ordering::Relaxed), 3);
        let text = tel.render();
        assert!(
            text.contains("# TYPE coherent_delete_latency_seconds histogram"),
            "{text}"
        );
        let count = |outcome: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("coherent_delete_latency_seconds_count")
                        && l.contains(&format!("outcome=\"{outcome}\""))
                        && l.contains("target=\"redis-cluster\"")
                })
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_string)
        };
        assert_eq!(count("ok").as_deref(), Some("2"), "{text}");
        assert_eq!(count("error").as_deref(), Some("1"), "{text}");
        assert!(text.contains("le=\"0.001\""), "{text}");
    }
}
