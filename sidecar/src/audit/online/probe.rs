//! What a check reads: the cached value with its write time, and the row rendered as
//! the cache should hold it.
//!
//! The cache is the embedded engine (in process, `GET` + `OBJECT WRITTEN` in one
//! atomic batch) or the external Redis / Cluster target (`GET` + `HGET <lease_key>
//! written` in one Lua script, [`READ`], so a fill or a delete cannot land between
//! the two reads; both keys share a slot, so it runs on a cluster). The database is
//! read as the offline audit reads it ([`crate::audit::db`]), so cells come back
//! exactly as its scan sees them and render through the same renderer.

use super::error::AuditError;
use crate::audit::db::{cells, ident, value_json, Db};
use bytes::Bytes;
use cache_aside::codec::NOT_FOUND;
use cache_aside::scripts::{lease_key_bytes, FIELD_WRITTEN};
use connectors::targets::redis::RedisConn;
use connectors::targets::{TargetConfig, TargetKind};
use engine::Reply;
use mysql_async::prelude::Queryable;
use tokio::sync::Mutex;

/// The cached value of a key and when it was written (Unix ms), if known.
pub type Cached = (Option<Bytes>, Option<i64>);

/// What stands for a value that is not a string (not one the cache-aside library
/// wrote; it can never equal a rendered row).
pub const NOT_A_STRING: &[u8] = b"<not a string>";

/// `KEYS = [key, lease_key]`, `ARGV = [written field]` -> `{}` when the key is missing,
/// else `{type_ok, written, value}`: `type_ok` 1 for a string (then `value` is it), 0
/// for another type; `written` the lease side key's
/// [`cache_aside::scripts::FIELD_WRITTEN`] field or false. One script, so the value and
/// its write time are read at one instant.
pub const READ: &str = r#"
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then return {} end
local w = redis.call('HGET', KEYS[2], ARGV[1])
if t ~= 'string' then return {0, w} end
return {1, w, redis.call('GET', KEYS[1])}
"#;

/// Where the checker reads the cache.
pub enum Cache {
    /// The embedded engine, database `db`.
    Engine {
        /// The engine.
        engine: engine::Engine,
        /// `[target] db`.
        db: usize,
    },
    /// External Redis or Redis Cluster, connected on first use (and again after a
    /// failed connect), so an unreachable cache is a check error, not a startup one.
    Redis {
        /// `[target]`.
        config: TargetConfig,
        /// The connection once made.
        conn: Mutex<Option<RedisConn>>,
    },
}

impl Cache {
    /// The cache `[target]` names; `engine` serves `kind = "embedded"`.
    pub fn new(config: &TargetConfig, engine: engine::Engine) -> Cache {
        match config.kind {
            TargetKind::Embedded => Cache::Engine {
                engine,
                db: config.db,
            },
            _ => Cache::Redis {
                config: config.clone(),
                conn: Mutex::new(None),
            },
        }
    }

    /// How much earlier than the real write the reported write time can be, in ms:
    /// the engine keeps it at 100 ms resolution (rounded down), the lease script
    /// records the exact ms.
    pub fn written_resolution_ms(&self) -> i64 {
        match self {
            Cache::Engine { .. } => 100,
            Cache::Redis { .. } => 1,
        }
    }

    /// `GET key` and the key's write time.
    pub async fn read(&self, key: &[u8]) -> Result<Cached, AuditError> {
        match self {
            Cache::Engine { engine, db } => {
                let k = Bytes::copy_from_slice(key);
                let replies = engine.execute_batch(
                    *db,
                    vec![
                        vec![Bytes::from_static(b"GET"), k.clone()],
                        vec![
                            Bytes::from_static(b"OBJECT"),
                            Bytes::from_static(b"WRITTEN"),
                            k,
                        ],
                    ],
                );
                let mut it = replies.into_iter();
                let value = match it.next() {
                    Some(Reply::Bulk(b)) => Some(b),
                    Some(Reply::Nil) => None,
                    Some(Reply::Error(e)) if e.starts_with("WRONGTYPE") => {
                        Some(Bytes::from_static(NOT_A_STRING))
                    }
                    other => return Err(AuditError::CacheReply(format!("GET: {other:?}"))),
                };
                let written = match it.next() {
                    Some(Reply::Int(ms)) => Some(ms),
                    _ => None,
                };
                Ok((value, written))
            }
            Cache::Redis { config, conn } => {
                let mut guard = conn.lock().await;
                if guard.is_none() {
                    let c = connectors::targets::redis::config::connect(config)
                        .await
                        .map_err(AuditError::CacheConnect)?;
                    *guard = Some(c);
                }
                let Some(c) = guard.as_ref() else {
                    return Err(AuditError::CacheReply("no cache connection".into()));
                };
                // Clones are cheap handles onto the same multiplexed connection.
                let c = c.clone();
                drop(guard);
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(READ)
                    .arg(2)
                    .arg(key)
                    .arg(lease_key_bytes(key))
                    .arg(FIELD_WRITTEN);
                let r: redis::Value = c.query(&cmd).await?;
                parse_read(r)
            }
        }
    }
}

/// The reply of [`READ`].
fn parse_read(r: redis::Value) -> Result<Cached, AuditError> {
    use redis::Value as V;
    let bad = |r: &V| AuditError::CacheReply(format!("{r:?}"));
    let V::Array(items) = &r else {
        return Err(bad(&r));
    };
    let written = match items.get(1) {
        None | Some(V::Nil) => None,
        Some(V::BulkString(b)) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()),
        Some(V::Int(i)) => Some(*i),
        Some(_) => return Err(bad(&r)),
    };
    match (items.first(), items.get(2)) {
        (None, _) => Ok((None, None)),
        (Some(V::Int(0)), _) => Ok((Some(Bytes::from_static(NOT_A_STRING)), written)),
        (Some(V::Int(1)), Some(V::BulkString(v))) => Ok((Some(Bytes::from(v.clone())), written)),
        _ => Err(bad(&r)),
    }
}

/// The row of `schema`.`table` whose `lookup` columns hold those values, rendered as
/// a JSON object of `columns` (the cache-aside `Json` codec's form); `None` when
/// there is no such row.
pub async fn read_row(
    db: &Db,
    schema: &str,
    table: &str,
    lookup: &[(String, Bytes)],
    columns: &[String],
) -> Result<Option<serde_json::Value>, AuditError> {
    let sql = select_sql(schema, table, lookup, columns);
    let mut conn = db.conn().await.map_err(AuditError::DbConnect)?;
    let rows: Vec<mysql_async::Row> =
        conn.query(sql)
            .await
            .map_err(|source| AuditError::RowRead {
                table: format!("{schema}.{table}"),
                source,
            })?;
    Ok(rows.into_iter().next().map(render_row))
}

/// `SELECT columns FROM db.table WHERE c1 = 'v1' AND ... LIMIT 1` (text protocol, so
/// cells arrive as the offline scan's do).
pub fn select_sql(db: &str, table: &str, lookup: &[(String, Bytes)], columns: &[String]) -> String {
    let cols = columns
        .iter()
        .map(|c| ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let cond = lookup
        .iter()
        .map(|(c, v)| {
            format!(
                "{} = {}",
                ident(c),
                mysql_async::Value::Bytes(v.to_vec()).as_sql(false)
            )
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let cond = if cond.is_empty() {
        String::new()
    } else {
        format!(" WHERE {cond}")
    };
    format!(
        "SELECT {cols} FROM {}.{}{cond} LIMIT 1",
        ident(db),
        ident(table)
    )
}

/// A row as a JSON object of its columns in order, through connectors' renderer.
pub fn render_row(row: mysql_async::Row) -> serde_json::Value {
    let names: Vec<String> = row
        .columns_ref()
        .iter()
        .map(|c| c.name_str().into_owned())
        .collect();
    let (cells, kinds) = cells(row);
    value_json(&names, &cells, &kinds)
}

/// Whether a cached value is what the cache should hold for `expected` (the rendered
/// row, or `None` when the row is gone: then only the negative entry matches).
pub fn matches(cached: &[u8], expected: Option<&serde_json::Value>) -> bool {
    match expected {
        None => cached == NOT_FOUND,
        Some(e) => serde_json::from_slice::<serde_json::Value>(cached).is_ok_and(|v| &v == e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_quotes_identifiers_and_values() {
        let sql = select_sql(
            "app",
            "us`ers",
            &[
                ("id".into(), Bytes::from_static(b"42")),
                ("email".into(), Bytes::from_static(b"o'hara\\x")),
            ],
            &["id".into(), "name".into()],
        );
        assert_eq!(
            sql,
            "SELECT `id`, `name` FROM `app`.`us``ers` WHERE `id` = '42' AND `email` = 'o\\'hara\\\\x' LIMIT 1"
        );
    }

    #[test]
    fn read_script_replies() {
        use redis::Value as V;
        assert_eq!(parse_read(V::Array(vec![])).unwrap(), (None, None));
        let v = parse_read(V::Array(vec![
            V::Int(1),
            V::BulkString(b"1764000000123".to_vec()),
            V::BulkString(b"{}".to_vec()),
        ]))
        .unwrap();
        assert_eq!(v, (Some(Bytes::from_static(b"{}")), Some(1764000000123)));
        let v = parse_read(V::Array(vec![
            V::Int(1),
            V::Nil,
            V::BulkString(b"x".to_vec()),
        ]))
        .unwrap();
        assert_eq!(v, (Some(Bytes::from_static(b"x")), None));
        let v = parse_read(V::Array(vec![V::Int(0), V::Nil])).unwrap();
        assert_eq!(v, (Some(Bytes::from_static(NOT_A_STRING)), None));
        assert!(parse_read(V::Nil).is_err());
        assert!(parse_read(V::Array(vec![V::Int(1), V::Nil])).is_err());
    }

    #[test]
    fn matching_values() {
        let e = serde_json::json!({"id": 1, "name": "A"});
        assert!(matches(br#"{"name":"A","id":1}"#, Some(&e)));
        assert!(!matches(br#"{"id":1,"name":"B"}"#, Some(&e)));
        assert!(!matches(br#"{"id":"1","name":"A"}"#, Some(&e)));
        assert!(!matches(NOT_FOUND, Some(&e)));
        assert!(matches(NOT_FOUND, None));
        assert!(!matches(br#"{"id":1,"name":"A"}"#, None));
    }
}
