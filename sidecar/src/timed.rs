//! Measures every delete batch the target stack sends (its metrics layer calls
//! [`Timed`]): the duration goes into the `coherent_delete_latency_seconds` histogram
//! (attributes `target` and `outcome`), and, when the batch runs inside a
//! transaction's trace, into a `deletes` child span.

use connectors::targets::stack::DeleteRecorder;
use connectors::targets::{TargetError, TargetKind};
use opentelemetry::global::BoxedSpan;
use opentelemetry::metrics::{Histogram, Meter};
use opentelemetry::trace::{Span, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use std::time::Duration;

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

/// The target stack's [`DeleteRecorder`]: each batch into the histogram, and into a
/// span when it runs inside a trace.
pub struct Timed {
    label: &'static str,
    latency: Histogram<f64>,
}

impl Timed {
    /// Records into `meter`'s histogram with `target = label`.
    pub fn new(label: &'static str, meter: &Meter) -> Self {
        let latency = meter
            .f64_histogram(DELETE_LATENCY)
            // No `with_unit`: the Prometheus exporter would append `_seconds` again.
            .with_description("Seconds one delete batch to the target took")
            .with_boundaries(BOUNDS.to_vec())
            .build();
        Timed { label, latency }
    }
}

impl DeleteRecorder for Timed {
    type Batch = Option<BoxedSpan>;

    fn start(&self, keys: usize) -> Option<BoxedSpan> {
        // Only batches of a traced transaction get a span: the retry worker's
        // batches would otherwise each start a trace of their own.
        let cx = Context::current();
        cx.has_active_span().then(|| {
            let mut s =
                opentelemetry::global::tracer("coherent").start_with_context("deletes", &cx);
            s.set_attribute(KeyValue::new("target", self.label));
            s.set_attribute(KeyValue::new("keys", keys as i64));
            s
        })
    }

    fn finish(&self, span: Option<BoxedSpan>, elapsed: Duration, result: &Result<(), TargetError>) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.latency.record(
            elapsed.as_secs_f64(),
            &[
                KeyValue::new("target", self.label),
                KeyValue::new("outcome", outcome),
            ],
        );
        if let Some(mut s) = span {
            if let Err(e) = result {
                s.set_status(Status::error(e.to_string()));
            }
            s.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use connectors::targets::stack::{self, StackConfig};
    use connectors::targets::DeleteRequest;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn records_latency_per_target_and_outcome() {
        // The same provider and rendering as /metrics.
        let tel = crate::telemetry::Telemetry::new(&Default::default()).unwrap();
        let meter = tel.meter();
        // Fails every other batch.
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let flaky = tower::service_fn(move |_: DeleteRequest| {
            let ok = c.fetch_add(1, Ordering::Relaxed).is_multiple_of(2);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(TargetError::Unavailable("down".into()))
                }
            }
        });
        // One attempt per batch: each is recorded as it went.
        let cfg = StackConfig {
            attempts: 1,
            ..StackConfig::default()
        };
        let mut t = stack::build(flaky, cfg, Timed::new("redis-cluster", meter));
        let keys = [Bytes::from_static(b"k")];
        assert!(t.send(&keys).await.is_ok());
        assert!(t.send(&keys).await.is_err());
        assert!(t.send(&keys).await.is_ok());
        assert_eq!(calls.load(Ordering::Relaxed), 3);
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
