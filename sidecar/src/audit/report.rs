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
}

/// One stale key with what the cache and the database hold.
#[derive(Debug, Clone, Serialize)]
pub struct StaleKey {
    /// The key.
    pub key: String,
    /// The cached value.
    pub cached: String,
    /// The row rendered as the cache should hold it.
    pub expected: String,
    /// `OBJECT WRITTEN` of the key (Unix ms), when the cache reports it.
    pub written_ms: Option<i64>,
}

/// One rule's result.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// `db.table`.
    pub table: String,
    /// The key template audited.
    pub key: String,
    /// Counts.
    pub counts: Counts,
    /// consistent / (consistent + stale + orphan); 1 when nothing was cached.
    pub consistency: f64,
    /// Stale keys (at most 1000).
    pub stale_keys: Vec<StaleKey>,
    /// Orphan keys (at most 1000).
    pub orphan_keys: Vec<String>,
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
    /// Per table, worst consistency first.
    pub tables: Vec<TableReport>,
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
        (-(1.0 - r).log10()).clamp(0.0, 12.0)
    }
}
