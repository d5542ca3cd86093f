//! `coherent audit --config FILE --out DIR`: the offline audit.
//!
//! For each rule with a `value` renderer it streams the table in primary-key order
//! inside a consistent snapshot (text protocol, rate-limited; see
//! [`crate::audit::db`]), renders every
//! key template of the rule for each row, and checks the cache in pipelined batches
//! of [`BATCH`] keys while the scan goes on ([`scan`]). Each key is classified:
//! consistent, stale (cached value differs from the rendered row), missing (not
//! cached), orphan (cached, no row renders to it, [`orphans`]), or unchecked
//! (cached under a template whose value is not the rendered row, such as a pointer
//! `user:email:{email}` -> id). A key first found stale or orphan whose row changed
//! during the scan (seen in the binlog, see [`crate::audit::changes`]) is re-read
//! and re-classified instead, once ([`recheck`]). Memory stays flat as the table
//! grows: one batch of rows, the listed stale/orphan keys (at most [`MAX_LISTED`]
//! per template), and the keys changed during the scan.
//!
//! Writes `DIR/report.json` and `DIR/report.html`.

mod cache;
mod class;
mod orphans;
pub(crate) mod progress;
mod recheck;
mod scan;
pub mod sidecar_status;
mod table;

use super::changes::Watcher;
use super::db::Db;
use super::report::{nines, ratio, AgeHistogram, Counts, Report, TableReport};
use crate::clock::now_ms;
use crate::config::Loaded;
use anyhow::{bail, Context, Result};
use connectors::rules::{KeyTemplate, RuleConfig};
use mysql_async::Conn;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;
use table::{prepare, Table, UNINDEXED_BATCH};

/// Keys read per pipelined round trip.
const BATCH: usize = 500;
/// Stale (and orphan) keys listed in the report per table and template.
const MAX_LISTED: usize = 1000;

/// Connections and report-wide state.
struct Ctx {
    cache: cache::Cache,
    /// Lookups and binlog positions (the scan connection is busy streaming).
    aux: Conn,
    watcher: Option<Watcher>,
    notes: Vec<String>,
    age: AgeHistogram,
    max_rows_per_sec: u64,
    tty: bool,
    /// Every rule's templates, to attribute a key several globs match to the most
    /// specific template.
    all: Vec<KeyTemplate>,
}

impl Ctx {
    /// Catches the binlog reader up with the server; a failed reader is dropped
    /// with a note (its keys so far are lost, so nothing more is re-checked).
    async fn sync(&mut self) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        if let Err(e) = w.sync(&mut self.aux).await {
            self.notes.push(format!(
                "the binlog reader failed ({e}): later rows changed during the scan were not re-checked"
            ));
            if let Some(w) = self.watcher.take() {
                w.stop();
            }
        }
    }
}

/// Runs the audit; `Ok(true)` when no stale or orphan key was found.
pub async fn run(loaded: &Loaded, out: &Path, max_rows_per_sec: u64) -> Result<bool> {
    let cfg = &loaded.config;
    let Some(mysql) = &cfg.connector.mysql else {
        bail!("the config has no [mysql] section: the audit needs url = \"mysql://...\"");
    };
    let rules: Vec<&RuleConfig> = cfg
        .connector
        .rules
        .iter()
        .filter(|r| r.value.is_some())
        .collect();
    if rules.is_empty() {
        bail!("no [[rules]] entry has a `value` renderer: nothing to audit");
    }
    let cache = cache::connect(cfg).await?;
    let db = Db::new(&mysql.url).context("[mysql] url")?;
    let mut scan = db.conn().await.context("cannot connect to MySQL")?;
    let aux = db.conn().await.context("cannot connect to MySQL")?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let started = Instant::now();
    let started_ms = u64::try_from(now_ms()).unwrap_or(0);
    let mut ctx = Ctx {
        notes: cache.note.iter().cloned().collect(),
        cache,
        aux,
        watcher: None,
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
        .connector
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
        scan::begin_snapshot(&mut scan).await?;
        scan::scan_table(t, &mut scan, &mut ctx).await?;
        for ki in 0..t.templates.len() {
            orphans::find_orphans(t, ki, &mut scan, &mut ctx).await?;
        }
        scan::end_snapshot(&mut scan).await?;
    }
    drop(scan);
    recheck::recheck(&mut tables, &mut ctx).await?;
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
    let invalidation_lag = match sidecar_status::invalidation_lag(&cfg.admin.listen).await {
        Ok(l) => Some(l),
        Err(why) => {
            ctx.notes.push(format!("invalidation lag: {why}"));
            None
        }
    };
    let report = assemble(
        tables,
        ctx,
        started,
        started_ms,
        changed_during_scan,
        invalidation_lag,
    );
    db.disconnect().await;
    let clean = report.totals.stale == 0 && report.totals.orphan == 0;
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&report)?)
        .context("cannot write report.json")?;
    std::fs::write(out.join("report.html"), super::html::render(&report))
        .context("cannot write report.html")?;
    eprintln!(
        "audit: {} rows, {} consistent, {} stale, {} missing, {} orphan, {} unchecked, {} rechecked; consistency {:.6} ({:.2} nines); reports in {}",
        report.totals.rows,
        report.totals.consistent,
        report.totals.stale,
        report.totals.missing,
        report.totals.orphan,
        report.totals.unchecked,
        report.rechecked,
        report.consistency,
        report.nines,
        out.display()
    );
    Ok(clean)
}

/// The report from the tables' results.
fn assemble(
    tables: Vec<Table>,
    ctx: Ctx,
    started: Instant,
    started_ms: u64,
    changed_during_scan: Option<u64>,
    invalidation_lag: Option<super::report::InvalidationLag>,
) -> Report {
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
            totals.unchecked += counts.unchecked;
            rechecked += k.rechecked;
            let consistency = ratio(&counts);
            reports.push(TableReport {
                table: t.rule_table.clone(),
                key: k.tmpl.text().to_string(),
                compared: k.compared,
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
    Report {
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
    }
}
