//! One check of a sampled (key, commit) at one delay, and its verdict.

use super::error::AuditError;
use super::probe::{self, Cache};
use super::sample::Sample;
use super::state::{AuditState, Inconsistency};
use crate::audit::db::Db;
use crate::audit::report::clip;
use crate::clock::now_ms;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Checks reading the cache and the database at once. A check waiting out its
/// confirmation grace holds no slot.
pub const CONCURRENCY: usize = 32;
/// A check's reads that take longer than this count as a check error.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What a check reads and decides with.
pub struct Checker {
    /// The cache the keys live in.
    pub cache: Cache,
    /// The database the rows are read from.
    pub db: Db,
    /// `[audit] delays_ms`.
    pub delays_ms: Vec<u64>,
    /// `[audit] confirm_grace_ms`.
    pub grace: Duration,
    /// The counters.
    pub state: Arc<AuditState>,
    /// [`CONCURRENCY`] slots for the reads.
    pub reads: Semaphore,
}

/// The outcome of reading a sample: consistent (`None`) or what was found.
type Verdict = Result<Option<Inconsistency>, AuditError>;

impl Checker {
    /// Checks `s` at its next delay, records the result, and returns it with the
    /// following delay's index.
    pub async fn check(&self, mut s: Sample) -> Sample {
        let window = s.next;
        let delay = self.delays_ms.get(window).copied().unwrap_or(0);
        match self.verdict(&s, delay).await {
            Ok(found) => self.state.record(window, found),
            Err(e) => {
                let n = self.state.add_error();
                // Logged at 1, 2, 4, 8, ... errors: an unreachable cache or database
                // shows up without flooding the log.
                if n.is_power_of_two() {
                    tracing::warn!(key = %String::from_utf8_lossy(&s.key), error = %e, errors = n, "audit check error");
                } else {
                    tracing::debug!(key = %String::from_utf8_lossy(&s.key), error = %e, "audit check error");
                }
            }
        }
        s.next += 1;
        s
    }

    async fn read_cache(&self, key: &[u8]) -> Result<probe::Cached, AuditError> {
        tokio::time::timeout(READ_TIMEOUT, self.cache.read(key))
            .await
            .map_err(|_| AuditError::Timeout("cache"))?
    }

    async fn read_row(
        &self,
        s: &Sample,
        cols: &[String],
    ) -> Result<Option<serde_json::Value>, AuditError> {
        tokio::time::timeout(
            READ_TIMEOUT,
            probe::read_row(&self.db, &s.db, &s.table, &s.lookup, cols),
        )
        .await
        .map_err(|_| AuditError::Timeout("row"))?
    }

    /// Reads the key (and, for a rendered value, the row) holding a read slot; a
    /// mismatch gives the slot back while it waits out the grace.
    async fn verdict(&self, s: &Sample, delay_ms: u64) -> Verdict {
        // The semaphore is never closed; without a slot the check would still be
        // correct, only less throttled.
        let permit = self.reads.acquire().await.ok();
        let (cached, written) = self.read_cache(&s.key).await?;
        let Some(cached) = cached else {
            return Ok(None);
        };
        let found = |cached: &[u8], expected: Option<String>, written: Option<i64>| Inconsistency {
            key: clip(&s.key),
            table: format!("{}.{}", s.db, s.table),
            position: s.position.to_string(),
            commit_time: s.commit_ts,
            delay_ms,
            cached: clip(cached),
            expected: expected.map(|e| clip(e.as_bytes())),
            written_ms: written,
            checked_at_ms: now_ms(),
        };
        // Rendered value (and a row to find: a template without placeholders has
        // no lookup, and would read an arbitrary row) -> compare with the row.
        let cols = s.columns.as_ref().filter(|_| !s.lookup.is_empty());
        let Some(cols) = cols else {
            // By write time: only a value written before the commit is known to be
            // wrong (it survived the delete). The write time may read low by the
            // cache's resolution, so the whole uncertainty must lie before the
            // commit's second. (Both clocks assumed synchronised.)
            let before = written.is_some_and(|w| {
                w + self.cache.written_resolution_ms() <= i64::from(s.commit_ts) * 1000
            });
            return Ok(before.then(|| found(&cached, None, written)));
        };
        let expected = self.read_row(s, cols).await?;
        if probe::matches(&cached, expected.as_ref()) {
            return Ok(None);
        }
        // A mismatch may be a change still on its way (the row was updated again and
        // its invalidation has not landed yet): look again after the grace, without
        // holding a read slot meanwhile.
        drop(permit);
        tokio::time::sleep(self.grace).await;
        let _permit = self.reads.acquire().await.ok();
        let (again, written) = self.read_cache(&s.key).await?;
        if again.as_deref() != Some(&cached[..]) {
            self.state.add_cleared();
            return Ok(None);
        }
        let expected = self.read_row(s, cols).await?;
        if probe::matches(&cached, expected.as_ref()) {
            self.state.add_cleared();
            return Ok(None);
        }
        Ok(Some(found(
            &cached,
            expected.map(|e| e.to_string()),
            written,
        )))
    }
}
