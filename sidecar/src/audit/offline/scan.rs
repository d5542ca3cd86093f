//! The scan of one table: rows streamed in primary-key order inside a consistent
//! snapshot (rate-limited), each row rendered to its keys, the keys read from the
//! cache in pipelined batches while the scan goes on, and classified.

use super::cache::{get_many, written_ms};
use super::class::{same_json, Class};
use super::progress::Progress;
use super::table::{render_key, render_value, Table};
use super::{Ctx, BATCH, MAX_LISTED};
use crate::audit::db::{cells, ident};
use crate::audit::report::StaleKey;
use crate::clock::now_ms;
use anyhow::{Context, Result};
use cache_aside::connection::RedisConn;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use std::time::{Duration, Instant};

/// One key waiting for its cache read.
struct Pending {
    tmpl: usize,
    key: Vec<u8>,
    expected: serde_json::Value,
}

/// Opens the read-only, repeatable-read transaction the scan streams in: its
/// snapshot is the table as the scan counts it, and the orphan pass asks it
/// afterwards whether a key's row was there (so the scan counted the key).
pub(super) async fn begin_snapshot(scan: &mut Conn) -> Result<()> {
    for q in [
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
    ] {
        scan.query_drop(q).await.with_context(|| q.to_string())?;
    }
    Ok(())
}

/// Ends the scan's snapshot.
pub(super) async fn end_snapshot(scan: &mut Conn) -> Result<()> {
    scan.query_drop("COMMIT").await.context("COMMIT")?;
    Ok(())
}

/// Streams the table and checks the cache batch by batch.
pub(super) async fn scan_table(t: &mut Table, scan: &mut Conn, ctx: &mut Ctx) -> Result<()> {
    let total: i64 = ctx
        .aux
        .query_first(format!(
            "SELECT COUNT(*) FROM {}.{}",
            ident(&t.db),
            ident(&t.table)
        ))
        .await
        .with_context(|| format!("cannot count the rows of {}", t.rule_table))?
        .unwrap_or(0);
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
    let mut inflight: Option<InFlight> = None;
    {
        // The text protocol: cells arrive as the text MySQL prints, like the binlog's.
        let mut rows = scan.query_iter(sql).await.context("table scan")?;
        while let Some(row) = rows.next().await.context("table scan")? {
            t.rows += 1;
            let (cells, kinds) = cells(row);
            let value = render_value(t, &cells, &kinds);
            for (ki, k) in t.templates.iter().enumerate() {
                if let Some(key) = render_key(t, &k.tmpl, &cells) {
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
                inflight = Some(send_batch(&ctx.cache.conn, batch));
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
        finish_batch(t, send_batch(&ctx.cache.conn, pending), ctx).await?;
    }
    progress.finish();
    Ok(())
}

/// A batch whose GETs run on a task of their own while the scan reads the next
/// rows (one batch in flight at most, so memory stays at two batches).
type InFlight = tokio::task::JoinHandle<(Vec<Pending>, redis::RedisResult<Vec<Option<Vec<u8>>>>)>;

/// Sends the batch's GETs in one pipeline (routed per key on a cluster).
fn send_batch(cache: &RedisConn, batch: Vec<Pending>) -> InFlight {
    let cache = cache.clone();
    tokio::spawn(async move {
        let vals = get_many(&cache, batch.iter().map(|x| x.key.as_slice())).await;
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
        let k = &mut t.templates[x.tmpl];
        match cached {
            None => k.counts.missing += 1,
            // A pointer (or any value not the rendered row): present, not compared.
            Some(_) if !k.compared => k.counts.unchecked += 1,
            Some(c) if same_json(&c, &x.expected) => k.counts.consistent += 1,
            Some(c) => suspects.push((x, c)),
        }
    }
    if suspects.is_empty() {
        return Ok(());
    }
    // A change committed between the row's read and the cache's read explains a
    // mismatch: know every such change before deciding.
    ctx.sync().await;
    let mut stale: Vec<(Pending, Vec<u8>)> = Vec::new();
    for (x, c) in suspects {
        if ctx.watcher.as_ref().is_some_and(|w| w.changed(&x.key)) {
            // Not counted yet: the re-check counts it.
            t.templates[x.tmpl].recheck.entry(x.key).or_insert(None);
        } else {
            stale.push((x, c));
        }
    }
    let written = written_ms(&mut ctx.cache, stale.iter().map(|(x, _)| x.key.as_slice())).await;
    let now = now_ms();
    for ((x, c), w) in stale.into_iter().zip(written) {
        let k = &mut t.templates[x.tmpl];
        k.counts.stale += 1;
        ctx.age.add(w.map(|w| now - w));
        if k.stale_keys.len() < MAX_LISTED {
            k.stale_keys
                .push(StaleKey::new(&x.key, &c, &x.expected.to_string(), w));
        }
    }
    Ok(())
}

/// The class the scan gave a key it counted, presumed from its cached value now
/// (the scan keeps no per-key memory): equal to the row the scan read ->
/// consistent, else stale; unchecked for a template not compared by value.
pub(super) fn presumed_class(
    compared: bool,
    scanned_row: &serde_json::Value,
    cached: &[u8],
) -> Class {
    if !compared {
        Class::Unchecked
    } else if same_json(cached, scanned_row) {
        Class::Consistent
    } else {
        Class::Stale
    }
}
