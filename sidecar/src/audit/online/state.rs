//! What the checker measured: the counters `/status` and `/metrics` read.

use super::config::AuditConfig;
use crate::audit::report::{nines, ratio, Counts};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Upper bounds (seconds) of the invalidation lag histogram.
pub const LAG_BOUNDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Counters of one delay window.
#[derive(Debug, Default)]
struct Window {
    checks: AtomicU64,
    inconsistencies: AtomicU64,
    late: AtomicU64,
}

/// One inconsistency, as `/status` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inconsistency {
    /// The key.
    pub key: String,
    /// `db.table` of the change.
    pub table: String,
    /// Binlog position of the invalidating transaction.
    pub position: String,
    /// Its commit time (Unix seconds, MySQL's clock).
    pub commit_time: u32,
    /// The delay of the check that found it.
    pub delay_ms: u64,
    /// The cached value (cut at 4 KiB, see [`crate::audit::report::clip`]).
    pub cached: String,
    /// The row rendered as the cache should hold it; null without a renderer or when
    /// the row is gone (cut like `cached`).
    pub expected: Option<String>,
    /// When the cached value was written (Unix ms), when the cache says.
    pub written_ms: Option<i64>,
    /// When the check decided (Unix ms).
    pub checked_at_ms: i64,
}

/// Invalidation lag histogram: cumulative counts per bound of [`LAG_BOUNDS`].
#[derive(Debug, Default, Clone)]
struct Hist {
    counts: Vec<u64>,
    count: u64,
    sum: f64,
    /// Sampled keys whose deletes went to the retry queue: delivered later, at a
    /// time the applier does not see, so no lag is recorded for them.
    deferred: u64,
}

/// What the checker measured; `/status` and `/metrics` read it.
#[derive(Debug)]
pub struct AuditState {
    sample: f64,
    delays_ms: Vec<u64>,
    windows: Vec<Window>,
    errors: AtomicU64,
    dropped: AtomicU64,
    dropped_transactions: AtomicU64,
    cleared: AtomicU64,
    pending: AtomicU64,
    keep: usize,
    last: Mutex<VecDeque<Inconsistency>>,
    lag: Mutex<Hist>,
    lag_metric: OnceLock<opentelemetry::metrics::Histogram<f64>>,
    failed: OnceLock<String>,
}

impl AuditState {
    /// Fresh counters for `config`.
    pub fn new(config: &AuditConfig) -> AuditState {
        AuditState {
            sample: config.sample,
            delays_ms: config.delays_ms.clone(),
            windows: config.delays_ms.iter().map(|_| Window::default()).collect(),
            errors: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            dropped_transactions: AtomicU64::new(0),
            cleared: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            keep: config.last_inconsistent,
            last: Mutex::new(VecDeque::new()),
            lag: Mutex::new(Hist {
                counts: vec![0; LAG_BOUNDS.len()],
                ..Hist::default()
            }),
            lag_metric: OnceLock::new(),
            failed: OnceLock::new(),
        }
    }

    /// The configured delays.
    pub fn delays_ms(&self) -> &[u64] {
        &self.delays_ms
    }

    /// `(checks, inconsistencies)` of window `i`.
    pub fn window(&self, i: usize) -> (u64, u64) {
        self.windows.get(i).map_or((0, 0), |w| {
            (
                w.checks.load(Ordering::Relaxed),
                w.inconsistencies.load(Ordering::Relaxed),
            )
        })
    }

    /// Sampled keys whose delete landed after window `i`'s delay (not checks).
    pub fn late(&self, i: usize) -> u64 {
        self.windows
            .get(i)
            .map_or(0, |w| w.late.load(Ordering::Relaxed))
    }

    /// consistent / checks of window `i` (1 with no checks yet).
    pub fn consistency(&self, i: usize) -> f64 {
        let (checks, inc) = self.window(i);
        ratio(&Counts {
            consistent: checks.saturating_sub(inc),
            stale: inc,
            ..Counts::default()
        })
    }

    /// Checks that could not read the cache or the database.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Samples dropped at `max_pending`, plus whole transactions the checker's channel
    /// had no room for, each counted as one (their keys are never computed: that is
    /// the work the full channel says the checker cannot keep up with).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Why the checker task stopped, when it did.
    pub fn failed(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    /// The OpenTelemetry histogram the lag is also recorded into.
    pub fn set_lag_metric(&self, h: opentelemetry::metrics::Histogram<f64>) {
        let _ = self.lag_metric.set(h);
    }

    pub(super) fn set_pending(&self, n: usize) {
        self.pending.store(n as u64, Ordering::Relaxed);
    }

    pub(super) fn add_dropped_sample(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn add_dropped_transaction(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.dropped_transactions.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn add_cleared(&self) {
        self.cleared.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a check error; returns the count so far.
    pub(super) fn add_error(&self) -> u64 {
        self.errors.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Records that the checker task stopped (the first reason is kept).
    pub(super) fn set_failed(&self, why: String) {
        let _ = self.failed.set(why);
    }

    pub(super) fn record_lag(&self, secs: f64) {
        if let Ok(mut h) = self.lag.lock() {
            for (c, b) in h.counts.iter_mut().zip(LAG_BOUNDS) {
                if secs <= *b {
                    *c += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        }
        if let Some(m) = self.lag_metric.get() {
            m.record(secs, &[]);
        }
    }

    pub(super) fn record_deferred(&self) {
        if let Ok(mut h) = self.lag.lock() {
            h.deferred += 1;
        }
    }

    pub(super) fn record_late(&self, window: usize) {
        if let Some(w) = self.windows.get(window) {
            w.late.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn record(&self, window: usize, found: Option<Inconsistency>) {
        let Some(w) = self.windows.get(window) else {
            return;
        };
        w.checks.fetch_add(1, Ordering::Relaxed);
        if let Some(f) = found {
            w.inconsistencies.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(key = %f.key, table = %f.table, position = %f.position, delay_ms = f.delay_ms, cached = %f.cached, expected = ?f.expected, "audit: inconsistent cache entry");
            if self.keep > 0 {
                if let Ok(mut l) = self.last.lock() {
                    if l.len() >= self.keep {
                        l.pop_front();
                    }
                    l.push_back(f);
                }
            }
        }
    }

    /// The `"audit"` object of `/status`.
    pub fn json(&self) -> serde_json::Value {
        let windows: Vec<serde_json::Value> = self
            .delays_ms
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let (checks, inc) = self.window(i);
                let c = self.consistency(i);
                serde_json::json!({
                    "delay_ms": d,
                    "checks": checks,
                    "inconsistencies": inc,
                    "late": self.late(i),
                    "consistency": c,
                    "nines": nines(c),
                })
            })
            .collect();
        let h = self.lag.lock().map(|h| h.clone()).unwrap_or_default();
        let last: Vec<Inconsistency> = self
            .last
            .lock()
            .map(|l| l.iter().rev().cloned().collect())
            .unwrap_or_default();
        serde_json::json!({
            "sample": self.sample,
            "pending": self.pending.load(Ordering::Relaxed),
            "errors": self.errors(),
            "dropped": self.dropped(),
            "dropped_transactions": self.dropped_transactions.load(Ordering::Relaxed),
            // Mismatches the re-read after confirm_grace_ms cleared (not counted).
            "cleared": self.cleared.load(Ordering::Relaxed),
            "failed": self.failed(),
            "windows": windows,
            "invalidation_lag": {
                "le_secs": LAG_BOUNDS,
                "counts": h.counts,
                "count": h.count,
                "sum_secs": h.sum,
                "deferred": h.deferred,
            },
            "last_inconsistent": last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_shape() {
        let st = AuditState::new(&AuditConfig {
            sample: 1.0,
            delays_ms: vec![1000, 3000],
            last_inconsistent: 2,
            ..AuditConfig::default()
        });
        st.record_lag(0.003);
        st.record_lag(2.0);
        st.record_deferred();
        st.record(0, None);
        st.record_late(0);
        for k in ["a", "b", "c"] {
            st.record(
                1,
                Some(Inconsistency {
                    key: k.into(),
                    table: "app.users".into(),
                    position: "f:4".into(),
                    commit_time: 100,
                    delay_ms: 3000,
                    cached: "x".into(),
                    expected: None,
                    written_ms: None,
                    checked_at_ms: 1,
                }),
            );
        }
        let j = st.json();
        assert_eq!(j["windows"][0]["checks"], 1);
        assert_eq!(j["windows"][0]["late"], 1);
        assert_eq!(j["windows"][0]["consistency"], 1.0);
        assert_eq!(j["windows"][0]["nines"], 12.0);
        assert_eq!(j["windows"][1]["inconsistencies"], 3);
        assert_eq!(j["windows"][1]["late"], 0);
        assert_eq!(j["windows"][1]["consistency"], 0.0);
        // Newest first, at most `last_inconsistent`.
        let last: Vec<&str> = j["last_inconsistent"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["key"].as_str().unwrap())
            .collect();
        assert_eq!(last, ["c", "b"]);
        assert_eq!(j["invalidation_lag"]["count"], 2);
        assert_eq!(j["invalidation_lag"]["deferred"], 1);
        assert_eq!(j["invalidation_lag"]["counts"][1], 1); // le 0.005
        assert_eq!(j["invalidation_lag"]["counts"][9], 2); // le 2.5
        assert_eq!(j["failed"], serde_json::Value::Null);
        st.set_failed("boom".into());
        st.set_failed("second".into());
        assert_eq!(st.json()["failed"], "boom");
        st.add_dropped_sample();
        st.add_dropped_transaction();
        assert_eq!(st.json()["dropped"], 2);
        assert_eq!(st.json()["dropped_transactions"], 1);
    }
}
