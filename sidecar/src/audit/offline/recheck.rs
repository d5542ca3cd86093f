//! The re-check: keys first found stale or orphan whose row changed during the
//! scan are read again (row and cache) once the binlog reader has caught up; one
//! still different after [`RECHECK_GRACE`] with the same cached value is stale
//! (orphan when its row is gone). Each queued key is classified once; when the
//! scan had already counted it, the new class replaces that count.

use super::cache::{get_all, written_ms};
use super::class::{count, settle, uncount, Class, Settled};
use super::table::{lookup, Table, Template};
use super::{Ctx, BATCH, MAX_LISTED};
use crate::audit::report::StaleKey;
use crate::clock::now_ms;
use anyhow::Result;
use std::collections::HashMap;
use std::time::Duration;

/// A re-checked key that still differs is read again after this, like the online
/// checker's `confirm_grace_ms`: a write in flight (row committed, cache not yet
/// refilled) is not stale.
const RECHECK_GRACE: Duration = Duration::from_millis(1000);

/// A key to read a second time: (table, template, key, the class it replaces, the
/// cached value the first read saw).
type Second = (usize, usize, Vec<u8>, Option<Class>, Vec<u8>);

/// Re-checks every queued key of every table.
pub(super) async fn recheck(tables: &mut [Table], ctx: &mut Ctx) -> Result<()> {
    if tables
        .iter()
        .all(|t| t.templates.iter().all(|k| k.recheck.is_empty()))
    {
        return Ok(());
    }
    // Every change up to now is known; later ones are not this scan's.
    ctx.sync().await;
    let mut second: Vec<Second> = Vec::new();
    for (ti, t) in tables.iter_mut().enumerate() {
        for ki in 0..t.templates.len() {
            let queued: Vec<(Vec<u8>, Option<Class>)> =
                std::mem::take(&mut t.templates[ki].recheck)
                    .into_iter()
                    .collect();
            for chunk in queued.chunks(BATCH) {
                let keys: Vec<Vec<u8>> = chunk.iter().map(|(k, _)| k.clone()).collect();
                let (rows, vals) = read_both(t, ki, &keys, ctx).await?;
                let x = &mut t.templates[ki];
                for ((k, replaces), cached) in chunk.iter().zip(vals) {
                    x.rechecked += 1;
                    match settle(rows.get(k), cached.as_deref(), x.compared) {
                        Settled::Class(c) => settle_count(x, *replaces, c, k),
                        Settled::Differs => {
                            second.push((ti, ki, k.clone(), *replaces, cached.unwrap_or_default()))
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
    for (ti, ki, k, replaces, before) in second {
        let t = &mut tables[ti];
        let keys = [k];
        let (rows, vals) = read_both(t, ki, &keys, ctx).await?;
        let [k] = keys;
        let cached = vals.into_iter().next().flatten();
        let row = rows.get(&k);
        let compared = t.templates[ki].compared;
        let class = match settle(row, cached.as_deref(), compared) {
            Settled::Class(c) => c,
            // Changed again since: a write in flight, not a stale value.
            Settled::Differs if cached.as_deref() != Some(before.as_slice()) => Class::Consistent,
            Settled::Differs if row.is_none() => Class::Orphan,
            Settled::Differs => Class::Stale,
        };
        settle_count(&mut t.templates[ki], replaces, class, &k);
        match (class, row) {
            (Class::Stale, Some(row)) => {
                let w = written_ms(&mut ctx.cache, std::iter::once(k.as_slice())).await;
                let w = w.into_iter().next().flatten();
                ctx.age.add(w.map(|w| now_ms() - w));
                let x = &mut t.templates[ki];
                if x.stale_keys.len() < MAX_LISTED {
                    x.stale_keys
                        .push(StaleKey::new(&k, &before, &row.to_string(), w));
                }
            }
            (Class::Orphan, _) => {
                let x = &mut t.templates[ki];
                if x.orphan_keys.len() < MAX_LISTED {
                    x.orphan_keys.push(String::from_utf8_lossy(&k).into_owned())
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Counts a re-checked key in `class`. A key the scan had counted (`replaces`)
/// moves from that class to this one, unless it is gone now (`Nothing`: the
/// scan's count stands); a stale key the scan listed and that is now something
/// else is unlisted.
fn settle_count(x: &mut Template, replaces: Option<Class>, class: Class, key: &[u8]) {
    match replaces {
        None => count(&mut x.counts, class),
        Some(_) if class == Class::Nothing => {}
        Some(old) => {
            uncount(&mut x.counts, old);
            count(&mut x.counts, class);
            if old == Class::Stale && class != Class::Stale {
                let key = String::from_utf8_lossy(key);
                x.stale_keys.retain(|s| s.key != key);
            }
        }
    }
}

/// The rows and cached values of `keys`.
async fn read_both(
    t: &Table,
    ki: usize,
    keys: &[Vec<u8>],
    ctx: &mut Ctx,
) -> Result<(HashMap<Vec<u8>, serde_json::Value>, Vec<Option<Vec<u8>>>)> {
    let rows = lookup(t, ki, keys, &mut ctx.aux).await?;
    let vals = get_all(&mut ctx.cache, keys).await?;
    Ok((rows, vals))
}

#[cfg(test)]
mod tests {
    use super::*;
    use connectors::rules::KeyTemplate;

    fn template() -> Template {
        Template {
            tmpl: KeyTemplate::parse("user:{id}").expect("template"),
            compared: true,
            counts: Default::default(),
            stale_keys: Vec::new(),
            orphan_keys: Vec::new(),
            rechecked: 0,
            recheck: HashMap::new(),
            indexed: true,
        }
    }

    /// A key the scan counted consistent and the re-check finds orphan moves; a
    /// key the scan did not count is counted once; a key gone keeps the scan's.
    #[test]
    fn a_rechecked_key_is_counted_once() {
        let mut x = template();
        x.counts.consistent = 5;
        settle_count(&mut x, Some(Class::Consistent), Class::Orphan, b"user:1");
        assert_eq!((x.counts.consistent, x.counts.orphan), (4, 1));
        settle_count(&mut x, None, Class::Orphan, b"user:2");
        assert_eq!((x.counts.consistent, x.counts.orphan), (4, 2));
        settle_count(&mut x, Some(Class::Consistent), Class::Nothing, b"user:3");
        assert_eq!((x.counts.consistent, x.counts.orphan), (4, 2));
        x.counts.stale = 1;
        x.stale_keys
            .push(StaleKey::new(b"user:4", b"old", "new", None));
        settle_count(&mut x, Some(Class::Stale), Class::Orphan, b"user:4");
        assert_eq!((x.counts.stale, x.counts.orphan), (0, 3));
        assert!(x.stale_keys.is_empty(), "unlisted: it is an orphan now");
    }
}
