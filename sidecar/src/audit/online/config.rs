//! The `[audit]` section and the window labels.

use connectors::config::ConfigError;
use serde::{Deserialize, Serialize};

/// The longest delay a check may be scheduled at: a day. (tokio's `DelayQueue`
/// panics beyond about two years; a day is already far past any useful window.)
pub const MAX_DELAY_MS: u64 = 86_400_000;
/// The longest confirmation grace: an hour.
pub const MAX_GRACE_MS: u64 = 3_600_000;

/// The `[audit]` section.
///
/// ```toml
/// [audit]
/// sample = 0.01                      # fraction of invalidated keys checked; 0 = off
/// delays_ms = [1000, 10000, 60000]   # re-check this long after the invalidating commit
/// confirm_grace_ms = 1000            # a mismatch is re-read after this before it counts
/// max_pending = 100000               # samples waiting; beyond it new samples are dropped
/// last_inconsistent = 50             # kept for /status
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Fraction of invalidated keys checked, in [0, 1]; 0 turns the checker off.
    pub sample: f64,
    /// Delays after the commit at which each sampled key is checked, ascending, each
    /// at most [`MAX_DELAY_MS`].
    pub delays_ms: Vec<u64>,
    /// A mismatch is read again this much later before it counts (at most
    /// [`MAX_GRACE_MS`]).
    pub confirm_grace_ms: u64,
    /// Samples waiting for their checks; new samples beyond it are dropped.
    pub max_pending: usize,
    /// Inconsistencies kept for `/status`.
    pub last_inconsistent: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            sample: 0.01,
            delays_ms: vec![1000, 10000, 60000],
            confirm_grace_ms: 1000,
            max_pending: 100_000,
            last_inconsistent: 50,
        }
    }
}

fn bad(key: &'static str, reason: String) -> Result<(), ConfigError> {
    Err(ConfigError::new("audit", key, reason))
}

impl AuditConfig {
    /// Checks values serde accepts but the checker cannot use
    /// (naming the key).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.sample.is_finite() && (0.0..=1.0).contains(&self.sample)) {
            return bad(
                "sample",
                format!(
                    "must be a fraction between 0 and 1 (0 turns the checker off), not {}",
                    self.sample
                ),
            );
        }
        if self.delays_ms.is_empty() {
            return bad(
                "delays_ms",
                "needs at least one delay, like [1000, 10000, 60000]".into(),
            );
        }
        if self.delays_ms.contains(&0) {
            return bad("delays_ms", "delays must be more than 0 ms".into());
        }
        if let Some(d) = self.delays_ms.iter().find(|&&d| d > MAX_DELAY_MS) {
            return bad(
                "delays_ms",
                format!("delays must be at most {MAX_DELAY_MS} ms (1 day), not {d}"),
            );
        }
        if self.delays_ms.windows(2).any(|w| w[0] >= w[1]) {
            return bad(
                "delays_ms",
                format!("must be strictly ascending, not {:?}", self.delays_ms),
            );
        }
        if self.confirm_grace_ms > MAX_GRACE_MS {
            return bad(
                "confirm_grace_ms",
                format!(
                    "must be at most {MAX_GRACE_MS} (1 hour), not {}",
                    self.confirm_grace_ms
                ),
            );
        }
        if self.max_pending == 0 {
            return bad(
                "max_pending",
                "must be more than 0 (set sample = 0 to turn the checker off)".into(),
            );
        }
        Ok(())
    }

    /// Whether the checker runs.
    pub fn enabled(&self) -> bool {
        self.sample > 0.0
    }
}

/// A delay as the `window` label shows it: whole seconds as `1s`, `60s`, the rest in
/// milliseconds (`500ms`, `1500ms`).
pub fn window_label(ms: u64) -> String {
    if ms > 0 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_labels() {
        assert_eq!(window_label(1000), "1s");
        assert_eq!(window_label(10_000), "10s");
        assert_eq!(window_label(60_000), "60s");
        assert_eq!(window_label(500), "500ms");
        assert_eq!(window_label(1500), "1500ms");
    }

    fn key_of(c: &AuditConfig) -> Option<String> {
        c.validate().err().map(|e| e.key)
    }

    #[test]
    fn config_bounds() {
        let ok = AuditConfig::default();
        assert!(ok.validate().is_ok());
        assert!(ok.enabled());
        for s in [0.0, 0.5, 1.0] {
            let c = AuditConfig {
                sample: s,
                ..AuditConfig::default()
            };
            assert!(c.validate().is_ok(), "{s}");
        }
        for s in [-0.1, 1.01, 2.0, f64::NAN, f64::INFINITY] {
            let c = AuditConfig {
                sample: s,
                ..AuditConfig::default()
            };
            assert_eq!(key_of(&c).as_deref(), Some("sample"), "{s}");
        }
        for d in [
            vec![],
            vec![0],
            vec![1000, 1000],
            vec![2000, 1000],
            vec![1000, MAX_DELAY_MS + 1],
            vec![u64::MAX],
        ] {
            let c = AuditConfig {
                delays_ms: d.clone(),
                ..AuditConfig::default()
            };
            assert_eq!(key_of(&c).as_deref(), Some("delays_ms"), "{d:?}");
        }
        let day = AuditConfig {
            delays_ms: vec![1000, MAX_DELAY_MS],
            ..AuditConfig::default()
        };
        assert!(day.validate().is_ok());
        let c = AuditConfig {
            confirm_grace_ms: MAX_GRACE_MS + 1,
            ..AuditConfig::default()
        };
        assert_eq!(key_of(&c).as_deref(), Some("confirm_grace_ms"));
        let c = AuditConfig {
            max_pending: 0,
            ..AuditConfig::default()
        };
        assert_eq!(key_of(&c).as_deref(), Some("max_pending"));
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("more than 0"), "{err}");
        assert!(!AuditConfig {
            sample: 0.0,
            ..AuditConfig::default()
        }
        .enabled());
    }
}
