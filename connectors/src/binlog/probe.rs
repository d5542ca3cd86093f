//! Live counters of a [`super::BinlogSource`] that other tasks can read while the
//! source is busy streaming or reconnecting (the sidecar's `/readyz`, `/status` and
//! metrics). Plain atomics: this crate does not depend on any metrics library.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Shared, lock-free view of a source's state.
#[derive(Debug, Default)]
pub struct SourceProbe {
    connected: AtomicBool,
    events: AtomicU64,
    reconnects: AtomicU64,
    heartbeats: AtomicU64,
    delivered: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl SourceProbe {
    /// True while a binlog stream is open.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Binlog events received (heartbeats included).
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Successful reconnects after a failure.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Heartbeats received: the server sends one only when it has sent every event
    /// and the stream stayed idle for the heartbeat period, so one received after
    /// the transactions delivered before it means the source had caught up.
    pub fn heartbeats(&self) -> u64 {
        self.heartbeats.load(Ordering::Relaxed)
    }

    /// Transactions delivered to the reader (every commit, covered or not).
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// The last error the source saw (cleared by nothing: it stays as history).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().map(|g| g.clone()).unwrap_or(None)
    }

    pub(crate) fn set_connected(&self, on: bool) {
        self.connected.store(on, Ordering::Relaxed);
    }

    pub(crate) fn event(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn heartbeat(&self) {
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn delivered_one(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn error(&self, e: &dyn std::fmt::Display) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = Some(e.to_string());
        }
    }
}
