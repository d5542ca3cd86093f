//! Wall-clock time and the commit-to-apply lag: one definition of each, for the
//! pipeline, the retry queue and the sidecar.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in seconds (0 if the clock is before 1970).
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Unix time in milliseconds: the engine's clock, so the pipeline, the retry queue
/// and the engine's write times agree.
pub use engine::now_ms;

/// The commit time used for lags: binlog commit times are whole seconds, so the commit
/// happened in `[ts, ts + 1)` and, being received at `received` (our clock), no later
/// than that. `min(ts + 1, received)` is exact to within a second and is not inflated
/// by up to a second for changes applied in real time. It mixes MySQL's clock (`ts`)
/// with ours: the two are assumed NTP-synchronised (skew well under a second).
pub fn commit_bound(ts: u32, received: f64) -> f64 {
    (f64::from(ts) + 1.0).min(received)
}

/// Seconds from a commit (see [`commit_bound`]) to `now`, never negative.
pub fn lag_since(ts: u32, received: f64, now: f64) -> f64 {
    (now - commit_bound(ts, received)).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_a_lower_bound_within_a_second() {
        // Received right after the commit, applied 2 ms later: not 0.5 s.
        assert!((lag_since(100, 100.5, 100.502) - 0.002).abs() < 1e-9);
        // A backlog: committed at 100, read at 160, applied at 160.1.
        assert!((lag_since(100, 160.0, 160.1) - 59.1).abs() < 1e-9);
        assert_eq!(lag_since(100, 99.0, 98.0), 0.0);
    }

    #[test]
    fn now_agrees_in_both_units() {
        let (s, ms) = (now_secs(), now_ms());
        assert!(
            s > 1.7e9 && ((s * 1000.0) as u64).abs_diff(ms) < 1000,
            "{s} {ms}"
        );
    }
}
