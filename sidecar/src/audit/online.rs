//! The online checker inside `coherent serve`: for a sample of the keys the binlog
//! pipeline invalidates, re-check the cache at set delays after the invalidating
//! commit and count what is still wrong.
//!
//! Data flows one way. The applier hands every applied transaction to [`Feed::offer`]
//! (a `try_send` on a bounded channel: it never waits; a full channel drops the
//! transaction and counts it). The checker task recomputes the keys per rule and
//! template (so it knows the rule, the table and the row image), samples them at
//! `[audit] sample`, records each sampled key's invalidation lag, and keeps the
//! samples on a `DelayQueue` until `commit + delay`. Checks run as tasks (at most
//! [`CONCURRENCY`] reading at once); a finished check puts its sample back on the
//! queue for the next delay. [`AuditState`] holds the counters `/status` and
//! `/metrics` read.
//!
//! A check of (key, commit) at one delay (see the issue 6 spec):
//! - key absent, or the negative entry while the row is gone: consistent;
//! - rules with a `value` renderer (first key template): the row is read by the
//!   template's columns (values from the binlog after image, the before image for a
//!   delete) and rendered; equal: consistent; different: after `confirm_grace_ms`
//!   the key and the row are read again, and only a key still holding the same value
//!   that still differs from the row counts as an inconsistency;
//! - other templates: an inconsistency when the value's write time is known and
//!   certainly earlier than the commit (it survived the delete);
//! - the cache or the database unreachable: a check error, counted apart.

pub mod probe;

use crate::audit::report::{nines, ratio, Counts};
use bytes::Bytes;
use connectors::binlog::{Cell, Row, RowChange, Transaction};
use connectors::rules::{KeyBatch, KeyTemplate, RuleConfig, Rules, ValueRenderer};
use connectors::ConnectorConfig;
use probe::{Cache, Db};
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::time::DelayQueue;

/// Transactions waiting for the checker; beyond this the applier drops them.
const CHANNEL: usize = 4096;
/// Checks reading the cache and the database at once.
pub const CONCURRENCY: usize = 32;
/// A check's reads that take longer than this count as a check error.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bounds (seconds) of the invalidation lag histogram.
pub const LAG_BOUNDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

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
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Fraction of invalidated keys checked, in [0, 1]; 0 turns the checker off.
    pub sample: f64,
    /// Delays after the commit at which each sampled key is checked, ascending.
    pub delays_ms: Vec<u64>,
    /// A mismatch is read again this much later before it counts.
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

impl AuditConfig {
    /// Checks values serde accepts but the checker cannot use: `(key, reason)`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(self.sample.is_finite() && (0.0..=1.0).contains(&self.sample)) {
            return Err((
                "sample",
                format!(
                    "must be a fraction between 0 and 1 (0 turns the checker off), not {}",
                    self.sample
                ),
            ));
        }
        if self.delays_ms.is_empty() {
            return Err((
                "delays_ms",
                "needs at least one delay, like [1000, 10000, 60000]".into(),
            ));
        }
        if self.delays_ms.contains(&0) {
            return Err(("delays_ms", "delays must be more than 0 ms".into()));
        }
        if self.delays_ms.windows(2).any(|w| w[0] >= w[1]) {
            return Err((
                "delays_ms",
                format!("must be strictly ascending, not {:?}", self.delays_ms),
            ));
        }
        if self.confirm_grace_ms > 3_600_000 {
            return Err((
                "confirm_grace_ms",
                format!("must be at most 1 hour, not {}", self.confirm_grace_ms),
            ));
        }
        if self.max_pending == 0 {
            return Err((
                "max_pending",
                "must be more than 0 (set sample = 0 to turn the checker off)".into(),
            ));
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

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Counters of one delay window.
#[derive(Debug, Default)]
struct Window {
    checks: AtomicU64,
    inconsistencies: AtomicU64,
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
    /// Its commit time (Unix seconds).
    pub commit_time: u32,
    /// The delay of the check that found it.
    pub delay_ms: u64,
    /// The cached value.
    pub cached: String,
    /// The row rendered as the cache should hold it; null without a renderer or when
    /// the row is gone.
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
}

/// What the checker measured; `/status` and `/metrics` read it.
#[derive(Debug)]
pub struct AuditState {
    sample: f64,
    delays_ms: Vec<u64>,
    windows: Vec<Window>,
    errors: AtomicU64,
    dropped: AtomicU64,
    cleared: AtomicU64,
    pending: AtomicU64,
    keep: usize,
    last: Mutex<VecDeque<Inconsistency>>,
    lag: Mutex<Hist>,
    lag_metric: OnceLock<opentelemetry::metrics::Histogram<f64>>,
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
            cleared: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            keep: config.last_inconsistent,
            last: Mutex::new(VecDeque::new()),
            lag: Mutex::new(Hist {
                counts: vec![0; LAG_BOUNDS.len()],
                ..Hist::default()
            }),
            lag_metric: OnceLock::new(),
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

    /// Samples (or whole transactions, when the channel was full) dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The OpenTelemetry histogram the lag is also recorded into.
    pub fn set_lag_metric(&self, h: opentelemetry::metrics::Histogram<f64>) {
        let _ = self.lag_metric.set(h);
    }

    fn record_lag(&self, secs: f64) {
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

    fn record(&self, window: usize, found: Option<Inconsistency>) {
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
            // Mismatches the re-read after confirm_grace_ms cleared (not counted).
            "cleared": self.cleared.load(Ordering::Relaxed),
            "windows": windows,
            "invalidation_lag": {
                "le_secs": LAG_BOUNDS,
                "counts": h.counts,
                "count": h.count,
                "sum_secs": h.sum,
            },
            "last_inconsistent": last,
        })
    }
}

/// An applied transaction on its way to the checker.
struct Applied {
    t: Transaction,
    /// Unix seconds the reader received it.
    received: f64,
    /// Unix seconds its deletes were applied.
    applied: f64,
}

/// The applier's end of the channel.
#[derive(Clone)]
pub struct Feed {
    tx: mpsc::Sender<Applied>,
    state: Arc<AuditState>,
}

impl Feed {
    /// Hands an applied transaction to the checker without waiting: when the checker
    /// is behind, the transaction is dropped and counted.
    pub fn offer(&self, t: Transaction, received: f64, applied: f64) {
        if t.changes.is_empty() {
            return;
        }
        if self
            .tx
            .try_send(Applied {
                t,
                received,
                applied,
            })
            .is_err()
        {
            self.state.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One rule as the checker needs it.
struct RuleInfo {
    /// The rule alone, for its `keys_for` (pattern and watched columns).
    only: Rules,
    templates: Vec<KeyTemplate>,
    value: Option<ValueRenderer>,
}

/// A sampled key of one commit.
#[derive(Debug, Clone)]
struct Sample {
    key: Bytes,
    /// The `value` renderer's columns when the key is its rule's first template
    /// (compared with the rendered row); `None`: judged by write time.
    columns: Option<Arc<[String]>>,
    /// Template columns and their values in the image the key came from.
    lookup: Vec<(String, Bytes)>,
    db: Arc<str>,
    table: Arc<str>,
    position: Arc<str>,
    commit_ts: u32,
    /// Unix seconds: the commit happened no later than this (see `pipeline::lag_since`).
    commit_at: f64,
    /// Index of the next delay.
    next: usize,
}

/// What a check reads and decides with.
struct Checker {
    cache: Cache,
    db: Db,
    delays_ms: Vec<u64>,
    grace: Duration,
    state: Arc<AuditState>,
}

/// Starts the checker for the pipeline `cc` (its `[[rules]]` as configured, which
/// carry the `value` renderers; its `[target]` and `[mysql]` for the reads); returns
/// the applier's end and the task, which ends when every [`Feed`] is dropped.
pub fn spawn(
    config: &AuditConfig,
    state: Arc<AuditState>,
    cc: &ConnectorConfig,
    engine: engine::Engine,
) -> anyhow::Result<(Feed, tokio::task::JoinHandle<()>)> {
    let rules = compile(&cc.rules)?;
    let db = Db::new(&cc.mysql.url).map_err(anyhow::Error::msg)?;
    let checker = Arc::new(Checker {
        cache: Cache::new(&cc.target, engine),
        db,
        delays_ms: config.delays_ms.clone(),
        grace: Duration::from_millis(config.confirm_grace_ms),
        state: state.clone(),
    });
    let (tx, rx) = mpsc::channel(CHANNEL);
    let task = tokio::spawn(run(rx, checker, rules, config.sample, config.max_pending));
    Ok((Feed { tx, state }, task))
}

fn compile(configs: &[RuleConfig]) -> anyhow::Result<Vec<RuleInfo>> {
    configs
        .iter()
        .map(|c| {
            let only = Rules::compile(std::slice::from_ref(c))
                .map_err(|e| anyhow::anyhow!("[[rules]] {}: {e}", c.table))?;
            let templates = only
                .rules()
                .first()
                .map(|r| r.keys().to_vec())
                .unwrap_or_default();
            let value = c.value.clone().filter(|v| v.format == "json");
            Ok(RuleInfo {
                only,
                templates,
                value,
            })
        })
        .collect()
}

/// Marks a key of the transaction decided "not sampled" in the index.
const SKIPPED: usize = usize::MAX;

/// The keys of `change` with what a check needs, sampled at `sample` (`draw` gives
/// uniform numbers in [0, 1)). `index` holds the keys of the transaction seen so far:
/// a sampled key seen again follows this change's image, as the last change of a row
/// in a transaction is the one the cache must reflect.
fn samples_of(
    change: &RowChange,
    rules: &[RuleInfo],
    sample: f64,
    meta: &(Arc<str>, u32, f64),
    index: &mut HashMap<Bytes, usize>,
    out: &mut Vec<Sample>,
    draw: &mut impl FnMut() -> f64,
) {
    let db: Arc<str> = Arc::from(change.db.as_str());
    let table: Arc<str> = Arc::from(change.table.as_str());
    // Keys this change already placed (its after image wins over its before image).
    let mut mine: std::collections::HashSet<Bytes> = std::collections::HashSet::new();
    for rule in rules {
        let mut batch = KeyBatch::default();
        if rule.only.keys_for(change, &mut batch).is_err() || batch.keys().is_empty() {
            continue;
        }
        // After image first: for an update whose key renders the same from both
        // images, the row is looked up by its new values.
        for image in [&change.after, &change.before].into_iter().flatten() {
            for (ti, t) in rule.templates.iter().enumerate() {
                let Ok(Some(key)) = t.render(image, &change.db, &change.table) else {
                    continue;
                };
                let lookup = lookup_of(t, image);
                if let Some(&i) = index.get(&key) {
                    if mine.insert(key) {
                        if let Some(s) = out.get_mut(i) {
                            if s.db == db && s.table == table {
                                s.lookup = lookup;
                            }
                        }
                    }
                    continue;
                }
                mine.insert(key.clone());
                if sample < 1.0 && draw() >= sample {
                    index.insert(key, SKIPPED);
                    continue;
                }
                let columns = match (&rule.value, ti) {
                    (Some(v), 0) => Some(Arc::from(v.columns.clone())),
                    _ => None,
                };
                index.insert(key.clone(), out.len());
                out.push(Sample {
                    key,
                    columns,
                    lookup,
                    db: db.clone(),
                    table: table.clone(),
                    position: meta.0.clone(),
                    commit_ts: meta.1,
                    commit_at: meta.2,
                    next: 0,
                });
            }
        }
    }
}

fn lookup_of(t: &KeyTemplate, row: &Row) -> Vec<(String, Bytes)> {
    t.columns()
        .filter_map(|c| match row.get(c) {
            Some(Cell::Value(v)) => Some((c.to_string(), v.clone())),
            _ => None,
        })
        .collect()
}

async fn run(
    mut rx: mpsc::Receiver<Applied>,
    checker: Arc<Checker>,
    rules: Vec<RuleInfo>,
    sample: f64,
    max_pending: usize,
) {
    let state = checker.state.clone();
    let mut queue: DelayQueue<Sample> = DelayQueue::new();
    let mut running: tokio::task::JoinSet<Sample> = tokio::task::JoinSet::new();
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let mut draw = fastrand::Rng::new();
    loop {
        state
            .pending
            .store((queue.len() + running.len()) as u64, Ordering::Relaxed);
        tokio::select! {
            m = rx.recv() => {
                let Some(a) = m else { break };
                // The commit happened in [ts, ts + 1) and no later than its arrival.
                let commit_at = (f64::from(a.t.timestamp) + 1.0).min(a.received);
                let lag = (a.applied - commit_at).max(0.0);
                let meta = (Arc::from(a.t.position.to_string()), a.t.timestamp, commit_at);
                let mut index = HashMap::new();
                let mut found = Vec::new();
                for change in &a.t.changes {
                    samples_of(change, &rules, sample, &meta, &mut index, &mut found, &mut || draw.f64());
                }
                for s in found {
                    state.record_lag(lag);
                    if queue.len() + running.len() >= max_pending {
                        state.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    schedule(&mut queue, s, &checker.delays_ms);
                }
            }
            Some(expired) = std::future::poll_fn(|cx| queue.poll_expired(cx)), if !queue.is_empty() => {
                let s = expired.into_inner();
                let c = checker.clone();
                let l = limit.clone();
                running.spawn(async move {
                    let _permit = l.acquire_owned().await;
                    c.check(s).await
                });
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                match done {
                    Ok(s) if s.next < checker.delays_ms.len() => schedule(&mut queue, s, &checker.delays_ms),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "audit check task failed"),
                }
            }
        }
    }
    running.abort_all();
}

fn schedule(queue: &mut DelayQueue<Sample>, s: Sample, delays_ms: &[u64]) {
    let Some(d) = delays_ms.get(s.next) else {
        return;
    };
    let due = s.commit_at + *d as f64 / 1000.0;
    let wait = (due - now_secs()).max(0.0);
    queue.insert(s, Duration::from_secs_f64(wait));
}

/// The outcome of reading a sample: consistent (`None`) or what was found.
type Verdict = Result<Option<Inconsistency>, String>;

impl Checker {
    /// Checks `s` at its next delay, records the result, and returns it with the
    /// following delay's index.
    async fn check(&self, mut s: Sample) -> Sample {
        let window = s.next;
        let delay = self.delays_ms.get(window).copied().unwrap_or(0);
        match self.verdict(&s, delay).await {
            Ok(found) => self.state.record(window, found),
            Err(e) => {
                let n = self.state.errors.fetch_add(1, Ordering::Relaxed) + 1;
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

    async fn read_cache(&self, key: &[u8]) -> Result<probe::Cached, String> {
        tokio::time::timeout(READ_TIMEOUT, self.cache.read(key))
            .await
            .map_err(|_| "cache read timed out".to_string())?
    }

    async fn read_row(
        &self,
        s: &Sample,
        cols: &[String],
    ) -> Result<Option<serde_json::Value>, String> {
        tokio::time::timeout(
            READ_TIMEOUT,
            self.db.render(&s.db, &s.table, &s.lookup, cols),
        )
        .await
        .map_err(|_| "row read timed out".to_string())?
    }

    async fn verdict(&self, s: &Sample, delay_ms: u64) -> Verdict {
        let (cached, written) = self.read_cache(&s.key).await?;
        let Some(cached) = cached else {
            return Ok(None);
        };
        let found = |cached: &[u8], expected: Option<String>, written: Option<i64>| Inconsistency {
            key: String::from_utf8_lossy(&s.key).into_owned(),
            table: format!("{}.{}", s.db, s.table),
            position: s.position.to_string(),
            commit_time: s.commit_ts,
            delay_ms,
            cached: String::from_utf8_lossy(cached).into_owned(),
            expected,
            written_ms: written,
            checked_at_ms: (now_secs() * 1000.0) as i64,
        };
        let Some(cols) = &s.columns else {
            // No renderer: only a value written before the commit is known to be
            // wrong (it survived the delete). The write time may read low by the
            // cache's resolution, so the whole uncertainty must lie before the
            // commit's second.
            let before = written.is_some_and(|w| {
                w + self.cache.written_resolution_ms() <= i64::from(s.commit_ts) * 1000
            });
            return Ok(before.then(|| found(&cached, None, written)));
        };
        if s.lookup.is_empty() {
            return Ok(None);
        }
        let expected = self.read_row(s, cols).await?;
        if probe::matches(&cached, expected.as_ref()) {
            return Ok(None);
        }
        // A mismatch may be a change still on its way (the row was updated again and
        // its invalidation has not landed yet): look again after the grace.
        tokio::time::sleep(self.grace).await;
        let (again, written) = self.read_cache(&s.key).await?;
        if again.as_deref() != Some(&cached[..]) {
            self.state.cleared.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        let expected = self.read_row(s, cols).await?;
        if probe::matches(&cached, expected.as_ref()) {
            self.state.cleared.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        Ok(Some(found(
            &cached,
            expected.map(|e| e.to_string()),
            written,
        )))
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
            assert_eq!(c.validate().unwrap_err().0, "sample", "{s}");
        }
        for d in [vec![], vec![0], vec![1000, 1000], vec![2000, 1000]] {
            let c = AuditConfig {
                delays_ms: d.clone(),
                ..AuditConfig::default()
            };
            assert_eq!(c.validate().unwrap_err().0, "delays_ms", "{d:?}");
        }
        let c = AuditConfig {
            max_pending: 0,
            ..AuditConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "max_pending");
        assert!(!AuditConfig {
            sample: 0.0,
            ..AuditConfig::default()
        }
        .enabled());
    }

    fn row(cols: &[&str], vals: &[&str]) -> Row {
        Row {
            columns: cols
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .into(),
            cells: vals
                .iter()
                .map(|v| Cell::Value(Bytes::copy_from_slice(v.as_bytes())))
                .collect(),
        }
    }

    fn rules() -> Vec<RuleInfo> {
        let cfg: Vec<RuleConfig> = toml::from_str::<toml::Table>(
            r#"[[rules]]
table = "app.users"
keys = ["user:{id}", "user:email:{email}"]
value = { columns = ["id", "name"] }
"#,
        )
        .ok()
        .and_then(|t| t.get("rules").cloned())
        .and_then(|r| r.try_into().ok())
        .expect("rules");
        compile(&cfg).expect("compile")
    }

    fn update(id: &str, email: (&str, &str)) -> RowChange {
        let cols = ["id", "email", "name"];
        RowChange {
            db: "app".into(),
            table: "users".into(),
            kind: connectors::binlog::ChangeKind::Update,
            before: Some(row(&cols, &[id, email.0, "A"])),
            after: Some(row(&cols, &[id, email.1, "B"])),
        }
    }

    #[test]
    fn samples_carry_rule_image_and_renderer() {
        let rules = rules();
        let meta = (Arc::from("f:4"), 100, 100.5);
        let mut index = HashMap::new();
        let mut out = Vec::new();
        samples_of(
            &update("7", ("a@x", "b@x")),
            &rules,
            1.0,
            &meta,
            &mut index,
            &mut out,
            &mut || 0.0,
        );
        let keys: Vec<&[u8]> = out.iter().map(|s| &s.key[..]).collect();
        assert_eq!(keys, [&b"user:7"[..], b"user:email:b@x", b"user:email:a@x"]);
        // The renderer belongs to the first template only; lookups use the image the
        // key came from.
        assert!(out[0].columns.is_some() && out[1].columns.is_none());
        assert_eq!(out[0].lookup, [("id".to_string(), Bytes::from("7"))]);
        assert_eq!(out[2].lookup[0].1, Bytes::from("a@x"));
        assert_eq!(&*out[0].table, "users");
        assert_eq!(out[0].commit_ts, 100);
    }

    #[test]
    fn sampling_rate_bounds() {
        let rules = rules();
        let meta = (Arc::from("f:4"), 100, 100.5);
        let count = |sample: f64, rng: &mut fastrand::Rng| {
            let mut n = 0;
            for i in 0..2000 {
                let mut index = HashMap::new();
                let mut out = Vec::new();
                let id = i.to_string();
                samples_of(
                    &update(&id, ("a@x", "a@x")),
                    &rules,
                    sample,
                    &meta,
                    &mut index,
                    &mut out,
                    &mut || rng.f64(),
                );
                n += out.len();
            }
            n
        };
        let mut rng = fastrand::Rng::with_seed(7);
        // Two keys per change (the email did not change).
        assert_eq!(count(1.0, &mut rng), 4000);
        assert_eq!(count(0.0, &mut rng), 0);
        let half = count(0.5, &mut rng);
        assert!((1700..2300).contains(&half), "{half}");
        let few = count(0.01, &mut rng);
        assert!((10..80).contains(&few), "{few}");
    }

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
        st.record(0, None);
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
        assert_eq!(j["windows"][0]["consistency"], 1.0);
        assert_eq!(j["windows"][0]["nines"], 12.0);
        assert_eq!(j["windows"][1]["inconsistencies"], 3);
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
        assert_eq!(j["invalidation_lag"]["counts"][1], 1); // le 0.005
        assert_eq!(j["invalidation_lag"]["counts"][9], 2); // le 2.5
    }
}
