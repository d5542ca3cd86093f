//! The audit report (`report.json`): counts per class and the consistency figures.

use serde::Serialize;

/// Counts per class.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Counts {
    /// Rows scanned.
    pub rows: u64,
    /// Cached and equal to the row.
    pub consistent: u64,
    /// Cached and different from the row.
    pub stale: u64,
    /// Not cached.
    pub missing: u64,
    /// Cached without a row.
    pub orphan: u64,
    /// Cached, with a row, under a template whose value is not the rendered row
    /// (not in the rule's `value.keys`): not compared, so neither consistent nor
    /// stale (its orphans are still found).
    pub unchecked: u64,
}

/// One stale key with what the cache and the database hold.
#[derive(Debug, Clone, Serialize)]
pub struct StaleKey {
    /// The key.
    pub key: String,
    /// The cached value (cut at 4 KiB with a marker, see [`clip`]).
    pub cached: String,
    /// The row rendered as the cache should hold it (truncated alike).
    pub expected: String,
    /// `OBJECT WRITTEN` of the key (Unix ms), when the cache reports it.
    pub written_ms: Option<i64>,
}

/// Values listed in a report or in `/status` are cut to this many bytes: the list is
/// for finding the key, and a thousand entries of multi-megabyte values would make
/// the report (or `/status`, and its log line) that large.
pub const MAX_SHOWN_BYTES: usize = 4096;

/// `v` as text (lossy UTF-8), cut at [`MAX_SHOWN_BYTES`] (on a character boundary)
/// with a marker telling the full length: `... [truncated, 123456 bytes]`. Both
/// audits cut alike: the offline report's stale keys and the online checker's
/// `/status` list.
pub fn clip(v: &[u8]) -> String {
    let text = String::from_utf8_lossy(v);
    if v.len() <= MAX_SHOWN_BYTES {
        return text.into_owned();
    }
    let mut end = MAX_SHOWN_BYTES.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... [truncated, {} bytes]", &text[..end], v.len())
}

impl StaleKey {
    /// A stale key, its values clipped ([`clip`]).
    pub fn new(key: &[u8], cached: &[u8], expected: &str, written_ms: Option<i64>) -> Self {
        StaleKey {
            key: String::from_utf8_lossy(key).into_owned(),
            cached: clip(cached),
            expected: clip(expected.as_bytes()),
            written_ms,
        }
    }
}

/// One rule's result.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// `db.table`.
    pub table: String,
    /// The key template audited.
    pub key: String,
    /// Whether its cached values are compared with the rendered row (the rule's
    /// `value.keys`; by default its first template only). When false, a cached key
    /// with a row counts `unchecked`; orphans are found either way.
    pub compared: bool,
    /// Counts.
    pub counts: Counts,
    /// consistent / (consistent + stale + orphan); 1 when nothing was cached.
    pub consistency: f64,
    /// Stale keys (at most 1000).
    pub stale_keys: Vec<StaleKey>,
    /// Orphan keys (at most 1000).
    pub orphan_keys: Vec<String>,
    /// Keys first found stale or orphan whose row changed during the scan (seen in
    /// the binlog): re-read (row and cache) before being classified; their final
    /// class is in `counts`.
    pub rechecked: u64,
}

/// The whole report (`report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Schema version.
    pub version: u32,
    /// Start of the audit, Unix ms.
    pub started_ms: u64,
    /// Duration, seconds.
    pub duration_secs: f64,
    /// Totals over every table.
    pub totals: Counts,
    /// consistent / (consistent + stale + orphan).
    pub consistency: f64,
    /// -log10(1 - consistency), capped at 12 (no inconsistency).
    pub nines: f64,
    /// Per table and key template, worst consistency first.
    pub tables: Vec<TableReport>,
    /// Keys re-checked because their row changed during the scan (sum of the tables').
    pub rechecked: u64,
    /// Distinct keys of rows the binlog showed changing during the scan; null when
    /// the binlog could not be read (see `notes`).
    pub changed_during_scan: Option<u64>,
    /// How old the stale values were when found: now - the value's write time.
    pub staleness_age: AgeHistogram,
    /// The running sidecar's invalidation lag (`/status` `audit.invalidation_lag`),
    /// null when no sidecar answered (see `notes`).
    pub invalidation_lag: Option<InvalidationLag>,
    /// What the audit could not do or measure (binlog unreadable, no sidecar).
    pub notes: Vec<String>,
}

/// Upper bounds (seconds) of the staleness-age buckets; a last, unbounded bucket
/// follows.
pub const AGE_BUCKETS_SECS: [f64; 7] = [1.0, 10.0, 60.0, 600.0, 3600.0, 86400.0, 604800.0];

/// A histogram of staleness ages.
#[derive(Debug, Clone, Serialize)]
pub struct AgeHistogram {
    /// Bucket upper bounds, seconds ([`AGE_BUCKETS_SECS`]).
    pub le_secs: Vec<f64>,
    /// Stale keys per bucket (not cumulative); one more entry than `le_secs`: the
    /// last counts ages above the largest bound.
    pub counts: Vec<u64>,
    /// Stale keys whose write time the cache does not know (plain SET on Redis).
    pub unknown: u64,
}

impl Default for AgeHistogram {
    fn default() -> Self {
        AgeHistogram {
            le_secs: AGE_BUCKETS_SECS.to_vec(),
            counts: vec![0; AGE_BUCKETS_SECS.len() + 1],
            unknown: 0,
        }
    }
}

impl AgeHistogram {
    /// Counts one stale key, `age_ms` old (None: unknown write time).
    pub fn add(&mut self, age_ms: Option<i64>) {
        let Some(ms) = age_ms else {
            self.unknown += 1;
            return;
        };
        let secs = ms.max(0) as f64 / 1000.0;
        let i = self
            .le_secs
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(self.le_secs.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
    }

    /// Keys counted, known age or not.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.unknown
    }
}

/// The sidecar's invalidation-lag histogram as `/status` reports it (commit ->
/// delete applied, sampled keys).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct InvalidationLag {
    /// Where it was read (`http://HOST:PORT/status`); not in `/status` itself
    /// (read from there, then filled in).
    #[serde(default)]
    pub source: String,
    /// Bucket upper bounds, seconds.
    pub le_secs: Vec<f64>,
    /// Cumulative counts per bound, as Prometheus keeps them.
    pub counts: Vec<u64>,
    /// Samples.
    pub count: u64,
    /// Sum of the lags, seconds.
    pub sum_secs: f64,
}

/// consistent / (consistent + stale + orphan); 1 when nothing was cached.
pub fn ratio(c: &Counts) -> f64 {
    let cached = c.consistent + c.stale + c.orphan;
    if cached == 0 {
        1.0
    } else {
        c.consistent as f64 / cached as f64
    }
}

/// -log10(1 - ratio), capped at 12 (a ratio of 1 has no finite number of nines).
pub fn nines(r: f64) -> f64 {
    if r >= 1.0 {
        12.0
    } else {
        // `+ 0.0` turns the -0.0 of a ratio of 0 (-log10(1)) into 0.0 for display.
        (-(1.0 - r).log10()).clamp(0.0, 12.0) + 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_VALUE_BYTES: usize = 4096;
    const TRUNCATED: &str = "... [truncated, ";

    #[test]
    fn long_values_are_clipped_with_a_marker() {
        assert_eq!(clip(b"short"), "short");
        let exact = vec![b'a'; MAX_VALUE_BYTES];
        assert_eq!(
            clip(&exact).len(),
            MAX_VALUE_BYTES,
            "at the limit: kept whole"
        );
        let long = vec![b'a'; 100_000];
        let c = clip(&long);
        assert!(
            c.ends_with("... [truncated, 100000 bytes]"),
            "{}",
            &c[4000..]
        );
        assert!(c.len() < MAX_VALUE_BYTES + 40);
        // A multi-byte character across the limit is not split.
        let mut e = vec![b'a'; MAX_VALUE_BYTES - 1];
        e.extend("é".repeat(10).as_bytes());
        let c = clip(&e);
        assert!(c.starts_with(&"a".repeat(MAX_VALUE_BYTES - 1)));
        assert!(
            c[MAX_VALUE_BYTES - 1..].starts_with(TRUNCATED),
            "{}",
            &c[4090..]
        );
        let k = StaleKey::new(b"k", &long, &"x".repeat(5000), None);
        assert!(k.cached.contains(TRUNCATED) && k.expected.contains("5000 bytes"));
    }

    #[test]
    fn long_values_are_cut_with_a_marker() {
        assert_eq!(clip(b"abc"), "abc");
        let long = "é".repeat(3000); // 6000 bytes, 2-byte chars
        let s = clip(long.as_bytes());
        assert!(s.len() < MAX_SHOWN_BYTES + 64, "{}", s.len());
        assert!(s.ends_with("... [truncated, 6000 bytes]"), "{s}");
        assert!(s.starts_with("éé"));
    }

    #[test]
    fn age_buckets() {
        let mut h = AgeHistogram::default();
        for ms in [
            Some(0),
            Some(1000),
            Some(1001),
            Some(90_000),
            Some(10i64.pow(10)),
            None,
        ] {
            h.add(ms);
        }
        assert_eq!(h.counts, vec![2, 1, 0, 1, 0, 0, 0, 1]);
        assert_eq!(h.unknown, 1);
        assert_eq!(h.total(), 6);
    }

    #[test]
    fn nines_of_ratios() {
        assert_eq!(nines(1.0), 12.0);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        // All inconsistent: 0 nines, printed "0", not "-0".
        assert!(nines(0.0).is_sign_positive() && nines(0.0) == 0.0);
        assert_eq!(format!("{:.2}", nines(0.0)), "0.00");
    }
}
