//! `coherent audit --config FILE --out DIR`: the offline audit. For each rule with a
//! `value` renderer it scans the table in primary-key order, reads the rule's first
//! key for every row from the cache in pipelined batches, and classifies it:
//! consistent, stale (cached value differs from the rendered row), missing (not
//! cached), orphan (cached, no row renders to it; found with SCAN MATCH).
//! Writes `DIR/report.json` and `DIR/report.html`.

use super::render::{cell_json, ident, NOT_FOUND};
use super::report::{nines, ratio, Counts, Report, StaleKey, TableReport};
use crate::config::Loaded;
use anyhow::{bail, Context, Result};
use connectors::rules::{KeyTemplate, RuleConfig};
use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use std::collections::HashSet;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Keys read per pipelined round trip.
const BATCH: usize = 500;
/// Stale keys kept in the report per table.
const MAX_STALE_LISTED: usize = 1000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
    let opts = mysql_async::Opts::from_url(&mysql.url).context("[mysql] url")?;
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .context("cannot connect to MySQL")?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let started = Instant::now();
    let started_ms = now_ms();
    let mut tables = Vec::new();
    for rule in rules {
        tables.push(audit_rule(rule, &mut conn, &mut cache, max_rows_per_sec).await?);
    }
    tables.sort_by(|a, b| a.consistency.total_cmp(&b.consistency));
    let mut totals = Counts::default();
    for t in &tables {
        totals.rows += t.counts.rows;
        totals.consistent += t.counts.consistent;
        totals.stale += t.counts.stale;
        totals.missing += t.counts.missing;
        totals.orphan += t.counts.orphan;
    }
    let consistency = ratio(&totals);
    let report = Report {
        version: 1,
        started_ms,
        duration_secs: started.elapsed().as_secs_f64(),
        consistency,
        nines: nines(consistency),
        totals,
        tables,
    };
    let clean = report.totals.stale == 0 && report.totals.orphan == 0;
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&report)?)
        .context("cannot write report.json")?;
    std::fs::write(out.join("report.html"), super::html::render(&report))
        .context("cannot write report.html")?;
    eprintln!(
        "audit: {} rows, {} consistent, {} stale, {} missing, {} orphan; consistency {:.6} ({:.2} nines); reports in {}",
        report.totals.rows,
        report.totals.consistent,
        report.totals.stale,
        report.totals.missing,
        report.totals.orphan,
        report.consistency,
        report.nines,
        out.display()
    );
    Ok(clean)
}

async fn audit_rule(
    rule: &RuleConfig,
    conn: &mut mysql_async::Conn,
    cache: &mut redis::aio::MultiplexedConnection,
    max_rows_per_sec: u64,
) -> Result<TableReport> {
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
    let tmpl_text = rule.keys.first().context("rule without keys")?;
    let tmpl = KeyTemplate::parse(tmpl_text).map_err(|e| anyhow::anyhow!("{tmpl_text}: {e}"))?;
    // Primary key, for the scan order.
    let pk: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await
        .with_context(|| format!("cannot read the primary key of {db}.{table}"))?;
    let total: u64 = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM {}.{}",
            ident(db),
            ident(table)
        ))
        .await?
        .unwrap_or(0);
    let mut cols: Vec<String> = renderer.columns.clone();
    for c in tmpl.columns() {
        if !cols.iter().any(|x| x == c) {
            cols.push(c.to_string());
        }
    }
    let order = if pk.is_empty() {
        String::new()
    } else {
        format!(
            " ORDER BY {}",
            pk.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
        )
    };
    let sql = format!(
        "SELECT {} FROM {}.{}{}",
        cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", "),
        ident(db),
        ident(table),
        order
    );
    let mut counts = Counts::default();
    let mut stale_keys = Vec::new();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut batch: Vec<(Vec<u8>, serde_json::Value)> = Vec::with_capacity(BATCH);
    let start = Instant::now();
    let mut last_progress = Instant::now();
    // Stream the rows; a second connection reads nothing meanwhile, so batches are
    // checked after the stream is drained in chunks (the result set is consumed lazily).
    let mut result = conn.query_iter(sql).await.context("table scan")?;
    let columns = result.columns().context("no result set")?;
    let types: Vec<ColumnType> = columns.iter().map(|c| c.column_type()).collect();
    let mut pending: Vec<(Vec<u8>, serde_json::Value)> = Vec::new();
    while let Some(row) = result.next().await.context("table scan")? {
        counts.rows += 1;
        let vals: Vec<mysql_async::Value> = row.unwrap();
        let texts: Vec<Option<Vec<u8>>> = vals
            .iter()
            .map(|v| match v {
                mysql_async::Value::NULL => None,
                mysql_async::Value::Bytes(b) => Some(b.clone()),
                other => Some(other.as_sql(true).trim_matches('\'').as_bytes().to_vec()),
            })
            .collect();
        let key = tmpl.render_with(|c| {
            cols.iter()
                .position(|x| x == c)
                .and_then(|i| texts[i].as_deref())
        });
        let mut obj = serde_json::Map::new();
        for (i, c) in renderer.columns.iter().enumerate() {
            obj.insert(c.clone(), cell_json(&vals[i], types[i]));
        }
        if let Some(key) = key {
            seen.insert(key.clone());
            pending.push((key, serde_json::Value::Object(obj)));
        }
        if pending.len() >= BATCH {
            batch.append(&mut pending);
        }
        if max_rows_per_sec > 0 {
            let due =
                std::time::Duration::from_secs_f64(counts.rows as f64 / max_rows_per_sec as f64);
            let el = start.elapsed();
            if due > el {
                tokio::time::sleep(due - el).await;
            }
        }
        if last_progress.elapsed().as_secs() >= 1 {
            last_progress = Instant::now();
            let rate = counts.rows as f64 / start.elapsed().as_secs_f64().max(1e-3);
            let eta = total.saturating_sub(counts.rows) as f64 / rate.max(1e-3);
            eprintln!(
                "audit {}: {}/{} rows, {:.0} rows/s, ETA {:.0} s",
                rule.table, counts.rows, total, rate, eta
            );
        }
    }
    drop(result);
    batch.append(&mut pending);
    for chunk in batch.chunks(BATCH) {
        check_batch(chunk, cache, &mut counts, &mut stale_keys).await?;
    }
    // Orphans: cached keys of the template that no row renders to.
    let mut orphan_keys = Vec::new();
    let glob = tmpl.glob();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&glob)
            .arg("COUNT")
            .arg(1000)
            .query_async(cache)
            .await
            .context("SCAN")?;
        let unseen: Vec<Vec<u8>> = keys.into_iter().filter(|k| !seen.contains(k)).collect();
        if !unseen.is_empty() {
            let mut p = redis::pipe();
            for k in &unseen {
                p.cmd("GET").arg(k);
            }
            let vals: Vec<Option<Vec<u8>>> = p.query_async(cache).await.context("GET")?;
            for (k, v) in unseen.iter().zip(vals) {
                // A negative entry for a missing row is consistent, not an orphan.
                match v {
                    Some(v) if v != NOT_FOUND => {
                        counts.orphan += 1;
                        if orphan_keys.len() < MAX_STALE_LISTED {
                            orphan_keys.push(String::from_utf8_lossy(k).into_owned());
                        }
                    }
                    _ => {}
                }
            }
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let consistency = ratio(&counts);
    Ok(TableReport {
        table: rule.table.clone(),
        key: tmpl_text.clone(),
        counts,
        consistency,
        stale_keys,
        orphan_keys,
    })
}

async fn check_batch(
    chunk: &[(Vec<u8>, serde_json::Value)],
    cache: &mut redis::aio::MultiplexedConnection,
    counts: &mut Counts,
    stale_keys: &mut Vec<StaleKey>,
) -> Result<()> {
    let mut p = redis::pipe();
    for (k, _) in chunk {
        p.cmd("GET").arg(k);
    }
    let vals: Vec<Option<Vec<u8>>> = p.query_async(cache).await.context("cache GET")?;
    for ((key, expected), cached) in chunk.iter().zip(vals) {
        let Some(cached) = cached else {
            counts.missing += 1;
            continue;
        };
        let same = serde_json::from_slice::<serde_json::Value>(&cached)
            .map(|v| &v == expected)
            .unwrap_or(false);
        if same {
            counts.consistent += 1;
            continue;
        }
        counts.stale += 1;
        if stale_keys.len() < MAX_STALE_LISTED {
            // OBJECT WRITTEN is the engine's; on Redis it is an error, reported as None.
            let written_ms: Option<i64> = redis::cmd("OBJECT")
                .arg("WRITTEN")
                .arg(key)
                .query_async(cache)
                .await
                .ok()
                .flatten();
            stale_keys.push(StaleKey {
                key: String::from_utf8_lossy(key).into_owned(),
                cached: String::from_utf8_lossy(&cached).into_owned(),
                expected: expected.to_string(),
                written_ms,
            });
        }
    }
    Ok(())
}
