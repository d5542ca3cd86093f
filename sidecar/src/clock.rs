//! The wall clock as Unix time, in the two forms the sidecar records: seconds (as a
//! float, for lags and commit times) and milliseconds (for write times, which the
//! engine's `OBJECT WRITTEN` and the lease fill's `written` field give in ms).
//!
//! One place, so every module measures against the same clock the same way (a clock
//! before 1970 reads as 0 rather than panicking).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, with sub-second precision.
// For the online checker and the pipeline (their own copies move here on the
// online-fix branch); unused until then.
#[allow(dead_code)]
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_forms_agree() {
        let s = super::now_secs();
        let ms = super::now_ms();
        // Read one after the other: within a second of each other.
        assert!((ms as f64 / 1000.0 - s).abs() < 1.0, "{s} {ms}");
        assert!(s > 1.6e9, "after 2020: {s}");
    }
}
