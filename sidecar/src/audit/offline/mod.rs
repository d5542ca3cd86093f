//! `coherent audit --config FILE --out DIR`: the offline audit.
//!
//! For each rule with a `value` renderer it streams the table in primary-key order
//! (sqlx, text protocol, rate-limited), renders every key template of the rule for
//! each row, and checks the cache in pipelined batches of [`BATCH`] keys while the
//! scan goes on. Each key is classified: consistent, stale (cached value differs
//! from the rendered row), missing (not cached), orphan (cached, no row renders to
//! it). Orphans are found without remembering the scanned keys: `SCAN MATCH` each
//! template's glob, parse each key back to its column values and look the rows up
//! in batches (`WHERE (cols) IN (...)`). A key first found stale or orphan whose row
//! changed during the scan (seen in the binlog, see [`super::changes`]) is re-read
//! and re-classified instead ("rechecked"). Memory stays flat as the table grows:
//! one batch of rows, the listed stale/orphan keys (at most [`MAX_LISTED`] per
//! template), and the keys changed during the scan.
//!
//! Writes `DIR/report.json` and `DIR/report.html`.

use super::changes::Watcher;
use super::render::{ident, text_cell_json, CellKind, NOT_FOUND};
use super::report::{
    nines, ratio, AgeHistogram, Counts, InvalidationLag, Report, StaleKey, TableReport,
};
use crate::config::Loaded;
use anyhow::{bail, Context, Result};
use connectors::rules::{KeyTemplate, RuleConfig};
use futures_util::TryStreamExt;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow};
use sqlx::{Column, ConnectOptions, Connection, Row, TypeInfo};
use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};
use crate::clock::now_ms;

/// Keys read per pipelined round trip (and rows looked up per query).
const BATCH: usize = 500;
/// Keys looked up per query when the template's columns lead no index: each query
/// scans the table, so they are fewer and larger.
const UNINDEXED_BATCH: usize = 20_000;
/// Stale (and orphan) keys listed in the report per table and template.
const MAX_LISTED: usize = 1000;
/// A re-checked key that still differs is read again after this, like the online
/// checker's `confirm_grace_ms`: a write in flight (row committed, cache not yet
/// refilled) is not stale.
const RECHECK_GRACE: Duration = Duration::from_millis(1000);

/// How the cache tells when a value was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WrittenBy {
    /// The engine: `OBJECT WRITTEN key`.
    Engine,
    /// Redis: `HGET <lease key> written`, recorded by the cache-aside lease fill.
    LeaseHash,
}

/// One key template of a rule, with its results.
struct Template {
    tmpl: KeyTemplate,
    counts: Counts,
    stale_keys: Vec<StaleKey>,
    orphan_keys: Vec<String>,
    rechecked: u64,
    /// Keys first found stale/orphan whose row changed during the scan.
    recheck: Vec<Vec<u8>>,
    /// Whether an index starts with one of the template's columns (lookups by key
    /// are index reads; else each lookup query scans the table).
    indexed: bool,
}

impl Template {
    /// Keys per row-lookup query.
    fn lookup_batch(&self) -> usize {
        if self.indexed {
            BATCH
        } else {
            UNINDEXED_BATCH
        }
    }
}

/// A rule being audited.
struct Table {
    rule_table: String,
    db: String,
    table: String,
    /// The renderer's columns first (in field order), then the templates' others.
    select: Vec<String>,
    /// How many of `select` the value renders.
    value_cols: usize,
    /// `information_schema` kind of each column (type checks of parsed keys).
    kinds: HashMap<String, CellKind>,
    pk: Vec<String>,
    templates: Vec<Template>,
    rows: u64,
}

impl Table {
    fn col(&self, c: &str) -> Option<usize> {
        self.select.iter().position(|x| x == c)
    }

    fn select_sql(&self) -> String {
        format!(
            "SELECT {} FROM {}.{}",
            self.select
                .iter()
                .map(|c| ident(c))
                .collect::<Vec<_>>()
                .join(", "),
            ident(&self.db),
            ident(&self.table)
        )
    }
}

/// One key waiting for its cache read.
struct Pending {
    tmpl: usize,
    key: Vec<u8>,
    expected: serde_json::Value,
}

/// Connections and report-wide state.
struct Ctx {
    cache: redis::aio::MultiplexedConnection,
    /// Lookups and binlog positions (the scan connection is busy streaming).
    aux: MySqlConnection,
    written_by: WrittenBy,
    watcher: Option<Watcher>,
    notes: Vec<String>,
    age: AgeHistogram,
    max_rows_per_sec: u64,
    tty: bool,
    /// Every rule's templates, to attribute a key several globs match to the most
    /// specific template.
    all: Vec<KeyTemplate>,
}

/// Runs the audit; `Ok(true)` when no stale or orphan key was found.
pub async fn run(loaded: &Loaded, out: &Path, max_rows_per_sec: u64) -> Result<bool> {
    let cfg = &loaded.config;
    let Some(mysql) = &cfg.mysql else {
        bail!("the config has no [mysql] section: the audit needs url = \"mysql://...\"");
    };
    let rules: Vec<&RuleConfig> = cfg.rules.iter().filter(|r| r.value.is_some()).collect();
    if rules.is_empty() {
        bail!("no [[rules]] entry has a `value` renderer: nothing to audit");
    }
    if cfg.target.kind == connectors::target::TargetKind::RedisCluster {
        // SCAN and pipelined GETs would need routing per node and slot.
        bail!("the offline audit does not support [target] kind = \"redis-cluster\" yet");
    }
    let cache_url = match cfg.target.url.as_deref() {
        Some(u) if !u.is_empty() => u.to_string(),
        _ => format!("redis://{}/{}", cfg.engine.listen, cfg.target.db),
    };
    let client = redis::Client::open(cache_url.as_str())
        .with_context(|| format!("cache url {cache_url}"))?;
    let mut cache = client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("cannot connect to the cache at {cache_url}"))?;
    // A streaming scan is a "slow statement" by design: sqlx must not warn about it.
    let opts = MySqlConnectOptions::from_str(&mysql.url)
        .context("[mysql] url")?
        .disable_statement_logging();
    let mut scan = MySqlConnection::connect_with(&opts)
        .await
        .context("cannot connect to MySQL")?;
    let aux = MySqlConnection::connect_with(&opts)
        .await
        .context("cannot connect to MySQL")?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    // The engine answers OBJECT WRITTEN (nil for a missing key); Redis rejects it.
    let probe: redis::RedisResult<Option<i64>> = redis::cmd("OBJECT")
        .arg("WRITTEN")
        .arg("coherent:audit:probe")
        .query_async(&mut cache)
        .await;
    let written_by = if probe.is_ok() {
        WrittenBy::Engine
    } else {
        WrittenBy::LeaseHash
    };
    let started = Instant::now();
    let started_ms = now_ms() as u64;
    let mut ctx = Ctx {
        cache,
        aux,
        written_by,
        watcher: None,
        notes: Vec::new(),
        age: AgeHistogram::default(),
        max_rows_per_sec,
        tty: std::io::stderr().is_terminal(),
        all: Vec::new(),
    };
    let mut tables = Vec::new();
    for rule in &rules {
        let t = prepare(rule, &mut ctx.aux).await?;
        for k in t.templates.iter().filter(|k| !k.indexed) {
            ctx.notes.push(format!(
                "{} key {}: no index starts with its columns, so finding its orphans scans the table once per {} cached keys",
                t.rule_table,
                k.tmpl.text(),
                UNINDEXED_BATCH
            ));
        }
        tables.push(t);
    }
    // Every rule's templates, audited or not: a key of a rule without a renderer
    // (`user:session:{sid}`) is that rule's, not an orphan of `user:{id}`.
    ctx.all = cfg
        .rules
        .iter()
        .flat_map(|r| r.keys.iter())
        .filter_map(|k| KeyTemplate::parse(k).ok())
        .collect();
    // The binlog reader starts before the first row is read, so every change the
    // scan could have raced with is seen. Its replica id must differ from the
    // running sidecar's (a server drops a replica whose id another one takes).
    let server_id = 0x4155_0000 | (std::process::id() & 0xffff);
    match Watcher::start(&mysql.url, server_id, &rules, &mut ctx.aux).await {
        Ok(Some(w)) => ctx.watcher = Some(w),
        Ok(None) => ctx.notes.push(
            "the server's binlog is off: rows changed during the scan could not be re-checked"
                .into(),
        ),
        Err(e) => ctx.notes.push(format!(
            "cannot read the binlog ({e}): rows changed during the scan could not be re-checked"
        )),
    }
    for t in tables.iter_mut() {
        scan_table(t, &mut scan, &mut ctx).await?;
        for ki in 0..t.templates.len() {
            find_orphans(t, ki, &mut ctx).await?;
        }
    }
    drop(scan);
    // Rechecks: the keys first found stale/orphan whose row changed meanwhile.
    recheck(&mut tables, &mut ctx).await?;
    let changed_during_scan = ctx.watcher.as_ref().map(Watcher::count);
    if ctx.watcher.as_ref().is_some_and(|w| w.timed_out) {
        ctx.notes.push(
            "the binlog reader did not reach the server's position in time once: changes after it were not re-checked"
                .into(),
        );
    }
    if let Some(w) = ctx.watcher.take() {
        w.stop();
    }
    let invalidation_lag = match invalidation_lag(&cfg.admin.listen).await {
        Ok(l) => Some(l),
        Err(why) => {
            ctx.notes.push(format!("invalidation lag: {why}"));
            None
        }
    };
    let mut reports: Vec<TableReport> = Vec::new();
    let mut totals = Counts::default();
    let mut rechecked = 0;
    for t in tables {
        totals.rows += t.rows;
        for k in t.templates {
            let mut counts = k.counts;
            counts.rows = t.rows;
            totals.consistent += counts.consistent;
            totals.stale += counts.stale;
            totals.missing += counts.missing;
            totals.orphan += counts.orphan;
            rechecked += k.rechecked;
            let consistency = ratio(&counts);
            reports.push(TableReport {
                table: t.rule_table.clone(),
                key: k.tmpl.text().to_string(),
                counts,
                consistency,
                stale_keys: k.stale_keys,
                orphan_keys: k.orphan_keys,
                rechecked: k.rechecked,
            });
        }
    }
    reports.sort_by(|a, b| a.consistency.total_cmp(&b.consistency));
    let consistency = ratio(&totals);
    let report = Report {
        version: 1,
        started_ms,
        duration_secs: started.elapsed().as_secs_f64(),
        consistency,
        nines: nines(consistency),
        totals,
        tables: reports,
        rechecked,
        changed_during_scan,
        staleness_age: ctx.age,
        invalidation_lag,
        notes: ctx.notes,
    };
    let clean = report.totals.stale == 0 && report.totals.orphan == 0;
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&report)?)
        .context("cannot write report.json")?;
    std::fs::write(out.join("report.html"), super::html::render(&report))
        .context("cannot write report.html")?;
    eprintln!(
        "audit: {} rows, {} consistent, {} stale, {} missing, {} orphan, {} rechecked; consistency {:.6} ({:.2} nines); reports in {}",
        report.totals.rows,
        report.totals.consistent,
        report.totals.stale,
        report.totals.missing,
        report.totals.orphan,
        report.rechecked,
        report.consistency,
        report.nines,
        out.display()
    );
    Ok(clean)
}

/// Reads a rule's table layout: primary key, column kinds, the columns to select.
async fn prepare(rule: &RuleConfig, aux: &mut MySqlConnection) -> Result<Table> {
    let renderer = rule.value.as_ref().context("rule without value")?;
    if renderer.format != "json" {
        bail!(
            "rule {}: value format {:?} is not supported (only \"json\")",
            rule.table,
            renderer.format
        );
    }
    let (db, table) = rule
        .table
        .split_once('.')
        .filter(|(_, t)| *t != "*")
        .with_context(|| {
            format!(
                "rule {}: the audit needs db.table, not a wildcard",
                rule.table
            )
        })?;
    if rule.keys.is_empty() {
        bail!("rule {}: no key template", rule.table);
    }
    let mut templates = Vec::new();
    for text in &rule.keys {
        let tmpl = KeyTemplate::parse(text).map_err(|e| anyhow::anyhow!("{text}: {e}"))?;
        templates.push(Template {
            tmpl,
            counts: Counts::default(),
            stale_keys: Vec::new(),
            orphan_keys: Vec::new(),
            rechecked: 0,
            recheck: Vec::new(),
            indexed: false,
        });
    }
    let pk: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
    )
    .bind(db)
    .bind(table)
    .fetch_all(&mut *aux)
    .await
    .with_context(|| format!("cannot read the primary key of {db}.{table}"))?;
    let cols: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
    )
    .bind(db)
    .bind(table)
    .fetch_all(&mut *aux)
    .await
    .with_context(|| format!("cannot read the columns of {db}.{table}"))?;
    if cols.is_empty() {
        bail!("rule {}: table {db}.{table} not found", rule.table);
    }
    let leading: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND SEQ_IN_INDEX = 1",
    )
    .bind(db)
    .bind(table)
    .fetch_all(&mut *aux)
    .await
    .with_context(|| format!("cannot read the indexes of {db}.{table}"))?;
    for t in templates.iter_mut() {
        t.indexed = t.tmpl.columns().any(|c| leading.iter().any(|l| l == c));
    }
    let kinds: HashMap<String, CellKind> = cols
        .into_iter()
        .map(|(c, t)| (c, CellKind::of_data_type(&t)))
        .collect();
    let mut select: Vec<String> = renderer.columns.clone();
    for t in &templates {
        for c in t.tmpl.columns() {
            if !select.iter().any(|x| x == c) {
                select.push(c.to_string());
            }
        }
    }
    for c in &select {
        if !kinds.contains_key(c) {
            bail!("rule {}: {db}.{table} has no column `{c}`", rule.table);
        }
    }
    Ok(Table {
        rule_table: rule.table.clone(),
        db: db.to_string(),
        table: table.to_string(),
        value_cols: renderer.columns.len(),
        select,
        kinds,
        pk,
        templates,
        rows: 0,
    })
}

/// The value a row renders to (the renderer's columns of `texts`).
fn render_value(t: &Table, texts: &[Option<&[u8]>], kinds: &[CellKind]) -> serde_json::Value {
    let mut obj = serde_json::Map::new();
    for i in 0..t.value_cols {
        obj.insert(t.select[i].clone(), text_cell_json(texts[i], kinds[i]));
    }
    serde_json::Value::Object(obj)
}

/// A row's cells as text (the text protocol sends every cell as text), and the
/// kinds of its columns.
fn row_texts(row: &MySqlRow) -> Result<Vec<Option<&[u8]>>> {
    (0..row.len())
        .map(|i| row.try_get_unchecked::<Option<&[u8]>, _>(i).context("cell"))
        .collect()
}

fn row_kinds(row: &MySqlRow) -> Vec<CellKind> {
    row.columns()
        .iter()
        .map(|c| CellKind::of_sqlx_name(c.type_info().name()))
        .collect()
}

/// Progress on stderr: a bar on a terminal, a line a second otherwise.
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines {
        name: String,
        total: u64,
        start: Instant,
        last: Instant,
    },
}

impl Progress {
    fn new(tty: bool, name: &str, total: u64) -> Self {
        if tty {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} rows, {rate}, ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> ").with_key(
                    "rate",
                    |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0} rows/s", s.per_sec());
                    },
                ));
            }
            bar.set_message(format!("audit {name}"));
            Progress::Bar(bar)
        } else {
            Progress::Lines {
                name: name.to_string(),
                total,
                start: Instant::now(),
                last: Instant::now(),
            }
        }
    }

    fn update(&mut self, rows: u64) {
        match self {
            Progress::Bar(b) => b.set_position(rows),
            Progress::Lines {
                name,
                total,
                start,
                last,
            } => {
                if last.elapsed().as_secs() >= 1 {
                    *last = Instant::now();
                    let rate = rows as f64 / start.elapsed().as_secs_f64().max(1e-3);
                    let eta = total.saturating_sub(rows) as f64 / rate.max(1e-3);
                    eprintln!(
                        "audit {name}: {rows}/{total} rows, {rate:.0} rows/s, ETA {eta:.0} s"
                    );
                }
            }
        }
    }

    fn finish(self) {
        if let Progress::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

/// Streams the table and checks the cache batch by batch.
async fn scan_table(t: &mut Table, scan: &mut MySqlConnection, ctx: &mut Ctx) -> Result<()> {
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {}.{}",
        ident(&t.db),
        ident(&t.table)
    )))
    .fetch_one(&mut ctx.aux)
    .await
    .with_context(|| format!("cannot count the rows of {}", t.rule_table))?;
    let order = if t.pk.is_empty() {
        String::new()
    } else {
        format!(
            " ORDER BY {}",
            t.pk.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
        )
    };
    let sql = format!("{}{}", t.select_sql(), order);
    let mut progress = Progress::new(ctx.tty, &t.rule_table, total.max(0) as u64);
    let start = Instant::now();
    let mut pending: Vec<Pending> = Vec::with_capacity(BATCH + t.templates.len());
    let mut kinds: Vec<CellKind> = Vec::new();
    let mut inflight: Option<InFlight> = None;
    {
        // The text protocol: cells arrive as the text MySQL prints, like the binlog's.
        let mut rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch(&mut *scan);
        while let Some(row) = rows.try_next().await.context("table scan")? {
            t.rows += 1;
            if kinds.is_empty() {
                kinds = row_kinds(&row);
            }
            let texts = row_texts(&row)?;
            let value = render_value(t, &texts, &kinds);
            for (ki, k) in t.templates.iter().enumerate() {
                let key = k.tmpl.render_with(|c| t.col(c).and_then(|i| texts[i]));
                if let Some(key) = key {
                    pending.push(Pending {
                        tmpl: ki,
                        key,
                        expected: value.clone(),
                    });
                }
            }
            if pending.len() >= BATCH {
                let batch =
                    std::mem::replace(&mut pending, Vec::with_capacity(BATCH + t.templates.len()));
                if let Some(f) = inflight.take() {
                    finish_batch(t, f, ctx).await?;
                }
                inflight = Some(send_batch(&ctx.cache, batch));
            }
            if ctx.max_rows_per_sec > 0 {
                let due = Duration::from_secs_f64(t.rows as f64 / ctx.max_rows_per_sec as f64);
                let el = start.elapsed();
                if due > el {
                    tokio::time::sleep(due - el).await;
                }
            }
            progress.update(t.rows);
        }
    }
    if let Some(f) = inflight.take() {
        finish_batch(t, f, ctx).await?;
    }
    if !pending.is_empty() {
        finish_batch(t, send_batch(&ctx.cache, pending), ctx).await?;
    }
    progress.finish();
    Ok(())
}

/// A batch whose GETs run on a task of their own while the scan reads the next
/// rows (one batch in flight at most, so memory stays at two batches).
type InFlight = tokio::task::JoinHandle<(Vec<Pending>, redis::RedisResult<Vec<Option<Vec<u8>>>>)>;

/// Sends the batch's GETs in one pipeline.
fn send_batch(cache: &redis::aio::MultiplexedConnection, batch: Vec<Pending>) -> InFlight {
    let mut cache = cache.clone();
    tokio::spawn(async move {
        let mut p = redis::pipe();
        for x in &batch {
            p.cmd("GET").arg(&x.key);
        }
        let vals = p.query_async(&mut cache).await;
        (batch, vals)
    })
}

/// Waits for a batch's values and classifies its keys.
async fn finish_batch(t: &mut Table, f: InFlight, ctx: &mut Ctx) -> Result<()> {
    let (batch, vals) = f.await.context("cache GET task")?;
    let vals = vals.context("cache GET")?;
    classify(t, batch, vals, ctx).await
}

/// Classifies a batch's keys by their cached values.
async fn classify(
    t: &mut Table,
    batch: Vec<Pending>,
    vals: Vec<Option<Vec<u8>>>,
    ctx: &mut Ctx,
) -> Result<()> {
    let mut suspects: Vec<(Pending, Vec<u8>)> = Vec::new();
    for (x, cached) in batch.into_iter().zip(vals) {
        let counts = &mut t.templates[x.tmpl].counts;
        match cached {
            None => counts.missing += 1,
            Some(c) if same_json(&c, &x.expected) => counts.consistent += 1,
            Some(c) => suspects.push((x, c)),
        }
    }
    if suspects.is_empty() {
        return Ok(());
    }
    // A change committed between the row's read and the cache's read explains a
    // mismatch: know every such change before deciding.
    sync(ctx).await;
    let mut stale: Vec<(Pending, Vec<u8>)> = Vec::new();
    for (x, c) in suspects {
        if ctx.watcher.as_ref().is_some_and(|w| w.changed(&x.key)) {
            t.templates[x.tmpl].recheck.push(x.key);
        } else {
            stale.push((x, c));
        }
    }
    let written = written_ms(ctx, stale.iter().map(|(x, _)| x.key.as_slice())).await;
    let now = now_ms();
    for ((x, c), w) in stale.into_iter().zip(written) {
        let k = &mut t.templates[x.tmpl];
        k.counts.stale += 1;
        ctx.age.add(w.map(|w| now - w));
        if k.stale_keys.len() < MAX_LISTED {
            k.stale_keys.push(StaleKey {
                key: String::from_utf8_lossy(&x.key).into_owned(),
                cached: String::from_utf8_lossy(&c).into_owned(),
                expected: x.expected.to_string(),
                written_ms: w,
            });
        }
    }
    Ok(())
}

/// Catches the binlog reader up with the server; a failed reader is dropped with a
/// note (its keys so far are lost, so nothing more is re-checked).
async fn sync(ctx: &mut Ctx) {
    let Some(w) = ctx.watcher.as_mut() else {
        return;
    };
    if let Err(e) = w.sync(&mut ctx.aux).await {
        ctx.notes.push(format!(
            "the binlog reader failed ({e}): later rows changed during the scan were not re-checked"
        ));
        if let Some(w) = ctx.watcher.take() {
            w.stop();
        }
    }
}

fn same_json(cached: &[u8], expected: &serde_json::Value) -> bool {
    serde_json::from_slice::<serde_json::Value>(cached).is_ok_and(|v| &v == expected)
}

/// When each key's value was written (Unix ms), as far as the cache knows.
async fn written_ms<'a>(ctx: &mut Ctx, keys: impl Iterator<Item = &'a [u8]>) -> Vec<Option<i64>> {
    let mut p = redis::pipe();
    let mut n = 0;
    for k in keys {
        n += 1;
        match ctx.written_by {
            WrittenBy::Engine => p.cmd("OBJECT").arg("WRITTEN").arg(k),
            WrittenBy::LeaseHash => p
                .cmd("HGET")
                .arg(connectors::target::redis::lease_key(k).as_ref())
                .arg("written"),
        };
    }
    if n == 0 {
        return Vec::new();
    }
    // Unknown write times are a gap in the histogram, not a failed audit.
    let got: redis::RedisResult<Vec<Option<i64>>> = p.query_async(&mut ctx.cache).await;
    got.unwrap_or_else(|_| vec![None; n])
}

/// The template's keys in the cache that no row renders to.
async fn find_orphans(t: &mut Table, ki: usize, ctx: &mut Ctx) -> Result<()> {
    let glob = t.templates[ki].tmpl.glob();
    let me = t.templates[ki].tmpl.literal_len();
    let batch = t.templates[ki].lookup_batch();
    let mut mine: Vec<Vec<u8>> = Vec::with_capacity(batch + BATCH);
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&glob)
            .arg("COUNT")
            .arg(BATCH)
            .query_async(&mut ctx.cache)
            .await
            .context("SCAN")?;
        // A key a more specific template also parses is that template's
        // (`user:email:a@x` matches `user:*` too).
        mine.extend(keys.into_iter().filter(|k| {
            !ctx.all
                .iter()
                .any(|x| x.literal_len() > me && !x.parse_key(k).is_empty())
        }));
        cursor = next;
        if mine.len() >= batch || (cursor == 0 && !mine.is_empty()) {
            orphans_among(t, ki, &mine, ctx).await?;
            mine.clear();
        }
        if cursor == 0 {
            return Ok(());
        }
    }
}

/// Classifies the keys (of template `ki`) no row renders to: cached -> orphan (or
/// re-checked when their row changed during the scan).
async fn orphans_among(t: &mut Table, ki: usize, keys: &[Vec<u8>], ctx: &mut Ctx) -> Result<()> {
    let found = lookup(t, ki, keys, &mut ctx.aux).await?;
    let rowless: Vec<&Vec<u8>> = keys.iter().filter(|k| !found.contains_key(*k)).collect();
    for chunk in rowless.chunks(BATCH) {
        let mut p = redis::pipe();
        for k in chunk {
            p.cmd("GET").arg(k.as_slice());
        }
        let vals: Vec<Option<Vec<u8>>> =
            p.query_async(&mut ctx.cache).await.context("cache GET")?;
        let cached: Vec<&Vec<u8>> = chunk
            .iter()
            .zip(vals)
            // A negative entry for a missing row is consistent, not an orphan.
            .filter(|(_, v)| v.as_deref().is_some_and(|v| v != NOT_FOUND))
            .map(|(k, _)| *k)
            .collect();
        if cached.is_empty() {
            continue;
        }
        sync(ctx).await;
        for k in cached {
            let x = &mut t.templates[ki];
            if ctx.watcher.as_ref().is_some_and(|w| w.changed(k)) {
                x.recheck.push(k.clone());
            } else {
                x.counts.orphan += 1;
                if x.orphan_keys.len() < MAX_LISTED {
                    x.orphan_keys.push(String::from_utf8_lossy(k).into_owned());
                }
            }
        }
    }
    Ok(())
}

/// Looks up the rows `keys` (of template `ki`) were rendered from: the value each
/// key's row renders to, for the keys some row renders to exactly (the lookup
/// compares with the column's collation; the key must match byte for byte).
async fn lookup(
    t: &Table,
    ki: usize,
    keys: &[Vec<u8>],
    aux: &mut MySqlConnection,
) -> Result<HashMap<Vec<u8>, serde_json::Value>> {
    let tmpl = &t.templates[ki].tmpl;
    let cols: Vec<&str> = {
        let mut v: Vec<&str> = Vec::new();
        for c in tmpl.columns() {
            if !v.contains(&c) {
                v.push(c);
            }
        }
        v
    };
    let mut found = HashMap::new();
    let wanted: HashSet<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    let mut tuples: Vec<String> = Vec::new();
    for k in keys {
        for split in tmpl.parse_key(k) {
            // An integer column cannot hold a value that is not an integer: such a
            // key comes from no row.
            let ok = split.iter().all(|(c, v)| {
                t.kinds.get(*c) != Some(&CellKind::Int)
                    || std::str::from_utf8(v)
                        .is_ok_and(|s| s.parse::<i64>().is_ok() || s.parse::<u64>().is_ok())
            });
            if !ok {
                continue;
            }
            // Template order of distinct columns is `cols`' order.
            let lits: Vec<String> = split.iter().map(|(_, v)| sql_string(v)).collect();
            tuples.push(if lits.len() == 1 {
                lits[0].clone()
            } else {
                format!("({})", lits.join(", "))
            });
        }
    }
    let lhs = if cols.len() == 1 {
        ident(cols[0])
    } else {
        format!(
            "({})",
            cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
        )
    };
    for chunk in tuples.chunks(t.templates[ki].lookup_batch()) {
        let sql = format!("{} WHERE {lhs} IN ({})", t.select_sql(), chunk.join(", "));
        let rows: Vec<MySqlRow> = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .fetch(&mut *aux)
            .try_collect()
            .await
            .with_context(|| format!("row lookup in {}", t.rule_table))?;
        for row in &rows {
            let texts = row_texts(row)?;
            let kinds = row_kinds(row);
            if let Some(key) = tmpl.render_with(|c| t.col(c).and_then(|i| texts[i])) {
                if wanted.contains(key.as_slice()) {
                    found.insert(key, render_value(t, &texts, &kinds));
                }
            }
        }
    }
    Ok(found)
}

/// An SQL string literal for `v`, coercible to the column's type and collation (so
/// an index is used; a bare `X'..'` would compare as a binary string, and as a
/// number against a numeric column). Printable ASCII without quote or backslash is
/// quoted as is; anything else is sent as `_utf8mb4 X'..'`, which needs no escaping
/// whatever the sql_mode (NO_BACKSLASH_ESCAPES).
fn sql_string(v: &[u8]) -> String {
    if v.iter()
        .all(|b| (0x20..0x7f).contains(b) && *b != b'\'' && *b != b'\\')
    {
        return format!("'{}'", String::from_utf8_lossy(v));
    }
    // `_utf8mb4 X'..'` is a character string (coercible to the column's collation),
    // unlike a bare X'..', and needs no escaping.
    let mut s = String::with_capacity(v.len() * 2 + 12);
    s.push_str("_utf8mb4 X'");
    for b in v {
        s.push_str(&format!("{b:02x}"));
    }
    s.push('\'');
    s
}

/// Re-reads each key to recheck (row and cache); one still different after
/// [`RECHECK_GRACE`] with the same cached value is stale (orphan when its row is
/// gone).
async fn recheck(tables: &mut [Table], ctx: &mut Ctx) -> Result<()> {
    if tables
        .iter()
        .all(|t| t.templates.iter().all(|k| k.recheck.is_empty()))
    {
        return Ok(());
    }
    // Every change up to now is known; later ones are not this scan's.
    sync(ctx).await;
    let mut second: Vec<(usize, usize, Vec<u8>, Vec<u8>)> = Vec::new();
    for (ti, t) in tables.iter_mut().enumerate() {
        for ki in 0..t.templates.len() {
            let keys = std::mem::take(&mut t.templates[ki].recheck);
            for chunk in keys.chunks(BATCH) {
                let (rows, vals) = read_both(t, ki, chunk, ctx).await?;
                for (k, cached) in chunk.iter().zip(vals) {
                    t.templates[ki].rechecked += 1;
                    match settle(rows.get(k), cached.as_deref()) {
                        Settled::Class(c) => count(&mut t.templates[ki].counts, c),
                        Settled::Differs => {
                            second.push((ti, ki, k.clone(), cached.unwrap_or_default()))
                        }
                    }
                }
            }
        }
    }
    if second.is_empty() {
        return Ok(());
    }
    tokio::time::sleep(RECHECK_GRACE).await;
    for (ti, ki, k, before) in second {
        let t = &mut tables[ti];
        let keys = [k];
        let (rows, vals) = read_both(t, ki, &keys, ctx).await?;
        let [k] = keys;
        let cached = vals.into_iter().next().flatten();
        let row = rows.get(&k);
        let class = match settle(row, cached.as_deref()) {
            Settled::Class(c) => c,
            // Changed again since: a write in flight, not a stale value.
            Settled::Differs if cached.as_deref() != Some(before.as_slice()) => Class::Consistent,
            Settled::Differs if row.is_none() => Class::Orphan,
            Settled::Differs => Class::Stale,
        };
        let x = &mut t.templates[ki];
        count(&mut x.counts, class);
        match class {
            Class::Stale => {
                let w = written_ms(ctx, std::iter::once(k.as_slice())).await;
                let w = w.into_iter().next().flatten();
                ctx.age.add(w.map(|w| now_ms() - w));
                let x = &mut t.templates[ki];
                if x.stale_keys.len() < MAX_LISTED {
                    x.stale_keys.push(StaleKey {
                        key: String::from_utf8_lossy(&k).into_owned(),
                        cached: String::from_utf8_lossy(&before).into_owned(),
                        expected: row.map(|r| r.to_string()).unwrap_or_default(),
                        written_ms: w,
                    });
                }
            }
            Class::Orphan if x.orphan_keys.len() < MAX_LISTED => {
                x.orphan_keys.push(String::from_utf8_lossy(&k).into_owned())
            }
            _ => {}
        }
    }
    Ok(())
}

/// The rows and cached values of `keys`.
async fn read_both(
    t: &Table,
    ki: usize,
    keys: &[Vec<u8>],
    ctx: &mut Ctx,
) -> Result<(HashMap<Vec<u8>, serde_json::Value>, Vec<Option<Vec<u8>>>)> {
    let rows = lookup(t, ki, keys, &mut ctx.aux).await?;
    let mut p = redis::pipe();
    for k in keys {
        p.cmd("GET").arg(k.as_slice());
    }
    let vals: Vec<Option<Vec<u8>>> = p.query_async(&mut ctx.cache).await.context("cache GET")?;
    Ok((rows, vals))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Consistent,
    Stale,
    Missing,
    Orphan,
    /// Neither row nor value (or a negative entry for a missing row): nothing to count.
    Nothing,
}

enum Settled {
    Class(Class),
    Differs,
}

fn settle(row: Option<&serde_json::Value>, cached: Option<&[u8]>) -> Settled {
    match (row, cached) {
        (Some(_), None) => Settled::Class(Class::Missing),
        (None, None) => Settled::Class(Class::Nothing),
        (None, Some(c)) if c == NOT_FOUND => Settled::Class(Class::Nothing),
        (Some(r), Some(c)) if same_json(c, r) => Settled::Class(Class::Consistent),
        _ => Settled::Differs,
    }
}

fn count(c: &mut Counts, class: Class) {
    match class {
        Class::Consistent => c.consistent += 1,
        Class::Stale => c.stale += 1,
        Class::Missing => c.missing += 1,
        Class::Orphan => c.orphan += 1,
        Class::Nothing => {}
    }
}

/// The running sidecar's invalidation-lag histogram: `GET /status` on `[admin]
/// listen` over HTTP/1.0 (one request, no client library needed).
async fn invalidation_lag(listen: &str) -> std::result::Result<InvalidationLag, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if listen.is_empty() {
        return Err("no sidecar reachable ([admin] listen is off)".into());
    }
    // A wildcard listen address is reached on loopback.
    let addr = listen
        .replace("0.0.0.0:", "127.0.0.1:")
        .replace("[::]:", "[::1]:");
    let url = format!("http://{addr}/status");
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(&addr).await?;
        s.write_all(format!("GET /status HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        s.take(16 << 20).read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = match tokio::time::timeout(Duration::from_secs(3), fetch).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Err(format!("no sidecar reachable at {url} ({e})")),
        Err(_) => return Err(format!("no sidecar reachable at {url} (timeout)")),
    };
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{url}: not an HTTP response"))?;
    if !head.starts_with("HTTP/1.") || head.split(' ').nth(1) != Some("200") {
        return Err(format!(
            "{url} answered {}",
            head.lines().next().unwrap_or("")
        ));
    }
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("{url}: not JSON ({e})"))?;
    let lag = v
        .get("audit")
        .and_then(|a| a.get("invalidation_lag"))
        .filter(|l| !l.is_null())
        .ok_or_else(|| {
            format!("the sidecar at {url} reports no audit.invalidation_lag ([audit] sample = 0?)")
        })?;
    let mut lag: InvalidationLag = serde_json::from_value(lag.clone())
        .map_err(|e| format!("{url}: audit.invalidation_lag: {e}"))?;
    lag.source = url;
    Ok(lag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_strings_need_no_escaping() {
        assert_eq!(sql_string(b"42"), "'42'");
        assert_eq!(sql_string(b"a@x.org"), "'a@x.org'");
        // Quotes, backslashes and non-ASCII go as hex: no sql_mode can misread them.
        assert_eq!(sql_string(b"o'k"), "_utf8mb4 X'6f276b'");
        assert_eq!(sql_string(b"a\\"), "_utf8mb4 X'615c'");
        assert_eq!(sql_string("é".as_bytes()), "_utf8mb4 X'c3a9'");
        assert_eq!(sql_string(b""), "''");
    }

    #[test]
    fn settle_classes() {
        let row = serde_json::json!({"id": 1});
        let class = |r: Option<&serde_json::Value>, c: Option<&[u8]>| match settle(r, c) {
            Settled::Class(c) => Some(c),
            Settled::Differs => None,
        };
        assert_eq!(
            class(Some(&row), Some(b"{\"id\": 1}")),
            Some(Class::Consistent)
        );
        assert_eq!(class(Some(&row), None), Some(Class::Missing));
        assert_eq!(class(None, None), Some(Class::Nothing));
        assert_eq!(class(None, Some(NOT_FOUND)), Some(Class::Nothing));
        assert_eq!(class(Some(&row), Some(b"{\"id\": 2}")), None);
        assert_eq!(
            class(None, Some(b"{\"id\": 1}")),
            None,
            "row gone, value cached"
        );
    }
}
