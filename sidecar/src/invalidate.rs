//! `coherent invalidate`: the backfill. Reads a rule table's rows in primary-key
//! order (keyset pagination: each page starts after the last key of the one before,
//! so a long run never re-reads or skips rows and holds no long transaction),
//! renders every key template of every rule covering the table through the
//! pipeline's own key walk ([`Rules::keys_for`]) and deletes the keys through the
//! configured target's tower stack. What a user runs after an outage longer than
//! the binlog's retention, or after adding a table to the rules.

use crate::audit::db::{cells, ident, Db};
use crate::audit::offline::progress::Progress;
use crate::audit::offline::sidecar_status::reachable;
use crate::config::Loaded;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use connectors::binlog::{ChangeKind, RowChange};
use connectors::row::Row;
use connectors::rules::{KeyBatch, Rules};
use connectors::targets::stack::{self, DeleteService, StackConfig};
use connectors::targets::{AnyTarget, TargetConfig, TargetKind};
use mysql_async::prelude::Queryable;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rows read per page.
const PAGE: usize = 1000;

/// A table's primary key columns, in order.
const PRIMARY_KEY: &str = "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION";

/// What to backfill.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `db.table` names; empty with `all`.
    pub tables: Vec<String>,
    /// Every table a rule names.
    pub all: bool,
    /// An SQL condition rows must meet (`--where`).
    pub condition: Option<String>,
    /// Rows per second at most (0: no limit).
    pub rate: u64,
}

/// The counts of a backfill.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Tables read.
    pub tables: u64,
    /// Rows read.
    pub rows: u64,
    /// Keys deleted (one per rendered key; duplicates within a page once).
    pub keys: u64,
}

/// Every table on the server a rule covers (wildcard patterns such as `app.*`
/// expanded), by schema and name.
async fn rule_tables(rules: &Rules, conn: &mut mysql_async::Conn) -> Result<Vec<String>> {
    let all: Vec<(String, String)> = conn
        .query("SELECT CAST(TABLE_SCHEMA AS CHAR), CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_SCHEMA, TABLE_NAME")
        .await
        .context("information_schema.TABLES could not be read")?;
    Ok(all
        .into_iter()
        .filter(|(db, t)| rules.covers(db, t))
        .map(|(db, t)| format!("{db}.{t}"))
        .collect())
}

/// The target the backfill deletes through: `[target]` as configured; for the
/// embedded engine (which lives in the running `coherent serve`), that engine over
/// RESP at `[engine] listen` (with `requirepass`).
fn target_config(loaded: &Loaded) -> TargetConfig {
    let cfg = &loaded.config;
    let t = &cfg.connector.target;
    if t.kind != TargetKind::Embedded || t.url.is_some() {
        return t.clone();
    }
    let addr = reachable(&cfg.engine.listen);
    let auth = cfg
        .engine
        .requirepass
        .as_deref()
        .map(|p| format!(":{}@", urlencode(p)))
        .unwrap_or_default();
    TargetConfig {
        batch_timeout: t.batch_timeout,
        concurrency: t.concurrency,
        ..TargetConfig::redis(format!("redis://{auth}{addr}/{}", t.db))
    }
}

/// Percent-encodes a password for a URL's userinfo.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs the backfill; prints a line of counts per table and the totals.
pub async fn run(loaded: &Loaded, req: &Request) -> Result<Counts> {
    let Some((cc, rules)) = &loaded.connector else {
        bail!("the config has no [mysql] section: invalidate reads the rule tables from MySQL");
    };
    let mysql = cc.mysql()?;
    let tc = target_config(loaded);
    let target = AnyTarget::from_config(&tc, None)
        .await
        .context("cannot reach the [target]")?;
    let deletes = stack::build(target, StackConfig::for_target(&tc), ());
    backfill(rules, &mysql.url, deletes, req).await
}

/// Backfills what `req` selects from the server at `url`, deleting through
/// `deletes`: the command's work, and the pipeline's with `on_purged = "invalidate"`.
pub async fn backfill(
    rules: &Rules,
    url: &str,
    deletes: DeleteService,
    req: &Request,
) -> Result<Counts> {
    let db = Db::new(url).context("[mysql] url")?;
    let mut conn = db.conn().await.context("cannot connect to MySQL")?;
    let tables = if req.all {
        rule_tables(rules, &mut conn).await?
    } else {
        for t in &req.tables {
            let Some((d, n)) = t.split_once('.') else {
                bail!("--table {t}: expected db.table");
            };
            if !rules.covers(d, n) {
                bail!("--table {t}: no [[rules]] entry covers this table, so it has no keys to invalidate");
            }
        }
        req.tables.clone()
    };
    if tables.is_empty() {
        bail!("no table to invalidate: give --table db.table or --all");
    }
    let mut total = Counts::default();
    for t in &tables {
        let c = backfill_table(t, rules, req, &mut conn, deletes.clone()).await?;
        eprintln!("invalidate {t}: {} rows, {} keys deleted", c.rows, c.keys);
        total.tables += 1;
        total.rows += c.rows;
        total.keys += c.keys;
    }
    drop(conn);
    db.disconnect().await;
    Ok(total)
}

/// Backfills one table.
async fn backfill_table(
    name: &str,
    rules: &Rules,
    req: &Request,
    conn: &mut mysql_async::Conn,
    mut deletes: DeleteService,
) -> Result<Counts> {
    let Some((db, table)) = name.split_once('.') else {
        bail!("{name}: expected db.table");
    };
    let pk: Vec<String> = conn.exec(PRIMARY_KEY, (db, table)).await.with_context(|| {
        format!("{name}: information_schema.KEY_COLUMN_USAGE could not be read")
    })?;
    if pk.is_empty() {
        bail!("{name}: the table has no primary key (or does not exist); invalidate reads in primary-key order");
    }
    let cond = req
        .condition
        .as_deref()
        .map(|c| format!("({c})"))
        .unwrap_or_else(|| "TRUE".into());
    let from = format!("{}.{}", ident(db), ident(table));
    let total: i64 = conn
        .query_first(format!("SELECT COUNT(*) FROM {from} WHERE {cond}"))
        .await
        .with_context(|| format!("{name}: cannot count the rows (is --where valid SQL?)"))?
        .unwrap_or(0);
    let order = pk.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
    let mut progress = Progress::labeled(
        std::io::stderr().is_terminal(),
        &format!("invalidate {name}"),
        total.max(0) as u64,
    );
    let mut counts = Counts::default();
    let mut after: Option<String> = None;
    let start = Instant::now();
    loop {
        let seek = match &after {
            Some(last) => format!(" AND ({order}) > ({last})"),
            None => String::new(),
        };
        let sql = format!("SELECT * FROM {from} WHERE {cond}{seek} ORDER BY {order} LIMIT {PAGE}");
        let rows: Vec<mysql_async::Row> = conn
            .query(sql)
            .await
            .with_context(|| format!("{name}: reading rows failed"))?;
        let n = rows.len();
        let mut batch = KeyBatch::default();
        for row in rows {
            let columns: Arc<[String]> = row
                .columns_ref()
                .iter()
                .map(|c| c.name_str().into_owned())
                .collect::<Vec<_>>()
                .into();
            let mut last = Vec::with_capacity(pk.len());
            for c in &pk {
                let i = columns
                    .iter()
                    .position(|x| x == c)
                    .with_context(|| format!("{name}: primary key column {c} not in the rows"))?;
                let v = row.as_ref(i).cloned().unwrap_or(mysql_async::Value::NULL);
                last.push(v.as_sql(false));
            }
            after = Some(last.join(", "));
            let (cells, _) = cells(row);
            let change = RowChange {
                db: db.to_string(),
                table: table.to_string(),
                kind: ChangeKind::Delete,
                before: Some(Row { columns, cells }),
                after: None,
            };
            rules
                .keys_for(&change, &mut batch)
                .with_context(|| format!("{name}: a key could not be rendered"))?;
        }
        let keys: Vec<Bytes> = batch.keys().to_vec();
        if !keys.is_empty() {
            deletes.send(&keys).await.with_context(|| {
                format!("{name}: the target refused a delete of {} keys", keys.len())
            })?;
        }
        counts.rows += n as u64;
        counts.keys += keys.len() as u64;
        progress.update(counts.rows);
        if req.rate > 0 {
            let due = Duration::from_secs_f64(counts.rows as f64 / req.rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        if n < PAGE {
            break;
        }
    }
    progress.finish();
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_percent_encoded() {
        assert_eq!(urlencode("a b@c:d"), "a%20b%40c%3Ad");
        assert_eq!(urlencode("plain-1.2_~"), "plain-1.2_~");
    }
}
