//! Orphans: cached keys no row renders to. Found without remembering the scanned
//! keys: `SCAN MATCH` the template's glob, parse each key back to its column values
//! and look the rows up in batches.
//!
//! A rowless key whose row changed during the scan (the binlog saw it) is
//! re-checked rather than counted, once: a key the scan already queued is skipped,
//! and a key the scan counted (its row is in the scan's snapshot) has that count
//! replaced by the re-check's class instead of being counted twice.

use super::cache::get_all;
use super::class::Class;
use super::scan::presumed_class;
use super::table::{lookup, Table};
use super::{Ctx, BATCH, MAX_LISTED};
use anyhow::{Context, Result};
use cache_aside::codec::NOT_FOUND;
use mysql_async::Conn;

/// The template's keys in the cache that no row renders to. `scan` is the scan's
/// connection, still in its snapshot.
pub(super) async fn find_orphans(
    t: &mut Table,
    ki: usize,
    scan: &mut Conn,
    ctx: &mut Ctx,
) -> Result<()> {
    let glob = t.templates[ki].tmpl.glob();
    let me = t.templates[ki].tmpl.literal_len();
    let batch = t.templates[ki].lookup_batch();
    let mut mine: Vec<Vec<u8>> = Vec::with_capacity(batch + BATCH);
    // Every node that holds keys (each cluster master: SCAN sees one node's keys,
    // and a key lives on one master only, so none is seen twice).
    for node in 0..ctx.cache.scan_nodes.len() {
        scan_node(t, ki, node, &glob, me, batch, &mut mine, scan, ctx).await?;
    }
    Ok(())
}

/// SCANs one node for the template's glob, classifying the keys found by batches.
#[allow(clippy::too_many_arguments)]
async fn scan_node(
    t: &mut Table,
    ki: usize,
    node: usize,
    glob: &str,
    me: usize,
    batch: usize,
    mine: &mut Vec<Vec<u8>>,
    scan: &mut Conn,
    ctx: &mut Ctx,
) -> Result<()> {
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = ctx.cache.scan_nodes[node]
            .query(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(glob)
                    .arg("COUNT")
                    .arg(BATCH),
            )
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
            orphans_among(t, ki, mine, scan, ctx).await?;
            mine.clear();
        }
        if cursor == 0 {
            return Ok(());
        }
    }
}

/// Classifies the keys (of template `ki`) no row renders to: cached -> orphan, or
/// queued for the re-check when their row changed during the scan.
async fn orphans_among(
    t: &mut Table,
    ki: usize,
    keys: &[Vec<u8>],
    scan: &mut Conn,
    ctx: &mut Ctx,
) -> Result<()> {
    let found = lookup(t, ki, keys, &mut ctx.aux).await?;
    let rowless: Vec<Vec<u8>> = keys
        .iter()
        .filter(|k| !found.contains_key(*k))
        .cloned()
        .collect();
    for chunk in rowless.chunks(BATCH) {
        let vals = get_all(&mut ctx.cache, chunk).await?;
        let cached: Vec<(&Vec<u8>, Vec<u8>)> = chunk
            .iter()
            .zip(vals)
            // A negative entry for a missing row is consistent, not an orphan.
            .filter_map(|(k, v)| v.filter(|v| v != NOT_FOUND).map(|v| (k, v)))
            .collect();
        if cached.is_empty() {
            continue;
        }
        ctx.sync().await;
        let mut changed: Vec<(&Vec<u8>, Vec<u8>)> = Vec::new();
        for (k, v) in cached {
            let x = &mut t.templates[ki];
            if x.recheck.contains_key(k) {
                // The scan queued it already: re-checked (and counted) once.
                continue;
            }
            if ctx.watcher.as_ref().is_some_and(|w| w.changed(k)) {
                changed.push((k, v));
            } else {
                x.counts.orphan += 1;
                if x.orphan_keys.len() < MAX_LISTED {
                    x.orphan_keys.push(String::from_utf8_lossy(k).into_owned());
                }
            }
        }
        if changed.is_empty() {
            continue;
        }
        // Was the row in the scan's snapshot? Then the scan counted the key, and
        // the re-check's class replaces that count.
        let ks: Vec<Vec<u8>> = changed.iter().map(|(k, _)| (*k).clone()).collect();
        let scanned = lookup(t, ki, &ks, scan).await?;
        let x = &mut t.templates[ki];
        for (k, v) in changed {
            let replaces: Option<Class> = scanned
                .get(k)
                .map(|row| presumed_class(x.compared, row, &v));
            x.recheck.insert(k.clone(), replaces);
        }
    }
    Ok(())
}
