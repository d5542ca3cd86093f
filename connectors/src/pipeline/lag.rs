//! The pipeline's lag as other tasks read it (`/status`, `/readyz`, the metrics).
//!
//! The lag is the time from a transaction's commit to its deletes landing; while a
//! transaction waits to be applied (read but held back, or being applied), the age
//! of the oldest waiting one if that is larger. Commit times are whole seconds, so
//! both use [`commit_bound`]: a lower bound exact to within one second.

use crate::clock::{commit_bound, now_secs};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bits of "no transaction waiting" (a NaN, never a commit time).
const NONE: u64 = u64::MAX;

/// Written by the run loop, read from anywhere; two atomics, no lock.
#[derive(Debug)]
pub struct Lag {
    /// Lag of the last applied transaction, seconds (`f64` bits).
    last: AtomicU64,
    /// Commit bound of the oldest waiting transaction, Unix seconds (`f64` bits), or
    /// [`NONE`].
    waiting: AtomicU64,
}

impl Default for Lag {
    fn default() -> Self {
        Lag {
            last: AtomicU64::new(0f64.to_bits()),
            waiting: AtomicU64::new(NONE),
        }
    }
}

impl Lag {
    /// The lag now, in seconds.
    pub fn seconds(&self) -> f64 {
        let last = f64::from_bits(self.last.load(Ordering::Relaxed));
        match self.waiting.load(Ordering::Relaxed) {
            NONE => last,
            bits => last.max(now_secs() - f64::from_bits(bits)),
        }
        .max(0.0)
    }

    /// A transaction committed at `ts` and received at `received` is now the oldest
    /// waiting one.
    pub(super) fn waiting(&self, ts: u32, received: f64) {
        self.waiting
            .store(commit_bound(ts, received).to_bits(), Ordering::Relaxed);
    }

    /// The waiting transaction was applied with this lag; none waits now.
    pub(super) fn applied(&self, lag: f64) {
        self.last.store(lag.to_bits(), Ordering::Relaxed);
        self.waiting.store(NONE, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_transaction_ages_until_applied() {
        let lag = Lag::default();
        assert_eq!(lag.seconds(), 0.0);
        let now = now_secs();
        // Committed a minute ago, received just now, still waiting.
        lag.waiting((now - 60.0) as u32, now);
        let waiting = lag.seconds();
        assert!((58.0..62.0).contains(&waiting), "{waiting}");
        lag.applied(0.25);
        assert_eq!(lag.seconds(), 0.25);
    }
}
