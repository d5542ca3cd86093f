//! Plain counters the application exports however it likes (Prometheus, OTel, logs).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (ms) of the loader latency histogram buckets; the last is +Inf.
pub const LATENCY_BUCKETS_MS: [u64; 8] = [1, 5, 10, 25, 50, 100, 250, 1000];

/// Live counters; read them with [`Metrics::snapshot`].
#[derive(Debug, Default)]
pub struct Metrics {
    hits: AtomicU64,
    negative_hits: AtomicU64,
    misses: AtomicU64,
    lease_waits: AtomicU64,
    wait_timeouts: AtomicU64,
    singleflight_joins: AtomicU64,
    fills: AtomicU64,
    refused_fills: AtomicU64,
    fill_errors: AtomicU64,
    loads: AtomicU64,
    load_errors: AtomicU64,
    load_micros: AtomicU64,
    load_micros_max: AtomicU64,
    load_buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    deletes: AtomicU64,
    delete_retries: AtomicU64,
    delete_failures: AtomicU64,
    shared_hits: AtomicU64,
    near_hits: AtomicU64,
    /// Shared with the near cache's connection task.
    pub(crate) near: std::sync::Arc<NearCounters>,
}

/// The near cache's counters, kept by its connection task.
#[derive(Debug, Default)]
pub(crate) struct NearCounters {
    /// Values stored from tracked reads.
    pub(crate) fills: AtomicU64,
    /// `invalidate` pushes received.
    pub(crate) invalidations: AtomicU64,
    /// Times the near cache was emptied because its connection dropped.
    pub(crate) flushes: AtomicU64,
}

impl NearCounters {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }
}

/// A copy of the counters at one moment. Every field only grows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Reads served from the cache (including negative entries): the near cache's
    /// hits plus the shared cache's.
    pub hits: u64,
    /// Of the hits, those served from the near cache (no round trip).
    pub near_hits: u64,
    /// Of the hits, those served by the shared cache (the engine or Redis).
    pub shared_hits: u64,
    /// Of the hits, negative-cache entries ("not found").
    pub negative_hits: u64,
    /// Reads that missed and went to the loader (or waited for another reader).
    pub misses: u64,
    /// "wait" replies: another reader held the key's lease.
    pub lease_waits: u64,
    /// Reads that waited past `max_wait` and loaded without filling.
    pub wait_timeouts: u64,
    /// Callers that shared another in-process caller's load (single-flight).
    pub singleflight_joins: u64,
    /// Values stored in the cache.
    pub fills: u64,
    /// Fills refused because the lease was voided by a delete (a stale value kept out).
    pub refused_fills: u64,
    /// Fills that failed on a cache error (the loaded value was still returned).
    pub fill_errors: u64,
    /// Loader calls.
    pub loads: u64,
    /// Loader calls that returned an error (not cached).
    pub load_errors: u64,
    /// Sum of loader latencies, µs.
    pub load_micros_total: u64,
    /// Slowest loader call, µs.
    pub load_micros_max: u64,
    /// Loader calls per latency bucket ([`LATENCY_BUCKETS_MS`], then +Inf).
    pub load_latency_buckets: Vec<u64>,
    /// Keys deleted by `write` / `invalidate` calls that succeeded.
    pub deletes: u64,
    /// Delete attempts retried after an error.
    pub delete_retries: u64,
    /// Deletes that failed after every retry (reported to the caller).
    pub delete_failures: u64,
    /// Values the near cache stored (each from a read on its tracking connection).
    pub near_fills: u64,
    /// Invalidation messages the near cache received (`invalidate` pushes).
    pub invalidations_received: u64,
    /// Times the near cache was emptied because its tracking connection dropped
    /// (it refills after reconnecting).
    pub near_flushes: u64,
}

impl Metrics {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }
    pub(crate) fn hit(&self, near: bool) {
        Self::inc(&self.hits);
        Self::inc(if near {
            &self.near_hits
        } else {
            &self.shared_hits
        });
    }
    pub(crate) fn negative_hit(&self, near: bool) {
        self.hit(near);
        Self::inc(&self.negative_hits)
    }
    pub(crate) fn miss(&self) {
        Self::inc(&self.misses)
    }
    pub(crate) fn lease_wait(&self) {
        Self::inc(&self.lease_waits)
    }
    pub(crate) fn wait_timeout(&self) {
        Self::inc(&self.wait_timeouts)
    }
    pub(crate) fn join(&self) {
        Self::inc(&self.singleflight_joins)
    }
    pub(crate) fn fill(&self) {
        Self::inc(&self.fills)
    }
    pub(crate) fn refused(&self) {
        Self::inc(&self.refused_fills)
    }
    pub(crate) fn fill_error(&self) {
        Self::inc(&self.fill_errors)
    }
    pub(crate) fn load(&self, took: Duration, ok: bool) {
        Self::inc(&self.loads);
        if !ok {
            Self::inc(&self.load_errors);
        }
        let us = took.as_micros().min(u64::MAX as u128) as u64;
        self.load_micros.fetch_add(us, Relaxed);
        self.load_micros_max.fetch_max(us, Relaxed);
        let ms = took.as_millis() as u64;
        let b = LATENCY_BUCKETS_MS
            .iter()
            .position(|&ub| ms < ub)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        Self::inc(&self.load_buckets[b]);
    }
    pub(crate) fn deleted(&self, n: u64) {
        self.deletes.fetch_add(n, Relaxed);
    }
    pub(crate) fn delete_retry(&self) {
        Self::inc(&self.delete_retries)
    }
    pub(crate) fn delete_failure(&self) {
        Self::inc(&self.delete_failures)
    }

    /// The current values.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let g = |c: &AtomicU64| c.load(Relaxed);
        MetricsSnapshot {
            hits: g(&self.hits),
            near_hits: g(&self.near_hits),
            shared_hits: g(&self.shared_hits),
            negative_hits: g(&self.negative_hits),
            misses: g(&self.misses),
            lease_waits: g(&self.lease_waits),
            wait_timeouts: g(&self.wait_timeouts),
            singleflight_joins: g(&self.singleflight_joins),
            fills: g(&self.fills),
            refused_fills: g(&self.refused_fills),
            fill_errors: g(&self.fill_errors),
            loads: g(&self.loads),
            load_errors: g(&self.load_errors),
            load_micros_total: g(&self.load_micros),
            load_micros_max: g(&self.load_micros_max),
            load_latency_buckets: self.load_buckets.iter().map(g).collect(),
            deletes: g(&self.deletes),
            delete_retries: g(&self.delete_retries),
            delete_failures: g(&self.delete_failures),
            near_fills: g(&self.near.fills),
            invalidations_received: g(&self.near.invalidations),
            near_flushes: g(&self.near.flushes),
        }
    }
}
