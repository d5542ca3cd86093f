//! The cache the audit reads: which one (the config's `[target]`, else the embedded
//! engine at `[engine] listen` with its `requirepass`), and how it tells when a value
//! was written.

use super::sidecar_status::reachable;
use crate::config::Config;
use anyhow::{bail, Context, Result};
use connectors::target::TargetKind;

/// How the cache tells when a value was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WrittenBy {
    /// The engine: `OBJECT WRITTEN key`.
    Engine,
    /// Redis: `HGET <lease key> written`, recorded by the cache-aside lease fill.
    LeaseHash,
}

/// Where the cache is, for messages (no password in it).
pub(super) struct Cache {
    /// The connection (pipelined, shared by the scan's GET task).
    pub conn: redis::aio::MultiplexedConnection,
    /// How write times are read.
    pub written_by: WrittenBy,
    /// A note for the report when the cache could not tell write times.
    pub note: Option<String>,
}

/// The connection info of the cache: `[target] url` for an external Redis, else
/// the embedded engine at `[engine] listen` (a wildcard reached on loopback) with
/// `[engine] requirepass` and `[target] db`.
fn connection_info(cfg: &Config) -> Result<(redis::ConnectionInfo, String)> {
    if let Some(u) = cfg.target.url.as_deref().filter(|u| !u.is_empty()) {
        let info = redis::IntoConnectionInfo::into_connection_info(u)
            .with_context(|| format!("[target] url {u}"))?;
        return Ok((info, describe(u)));
    }
    let addr = reachable(&cfg.engine.listen);
    let (host, port) = addr
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .with_context(|| format!("[engine] listen {:?} is not host:port", cfg.engine.listen))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let info = redis::ConnectionInfo {
        addr: redis::ConnectionAddr::Tcp(host.to_string(), port),
        redis: redis::RedisConnectionInfo {
            db: i64::try_from(cfg.target.db).unwrap_or(0),
            username: None,
            password: cfg.engine.requirepass.clone(),
            ..Default::default()
        },
    };
    Ok((info, format!("the engine at {addr}")))
}

/// A Redis URL without its password, for messages.
fn describe(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, rest))) => format!("{scheme}://***@{rest}"),
        _ => url.to_string(),
    }
}

/// Connects and decides how write times are read: the embedded engine answers
/// `OBJECT WRITTEN`; an external Redis is asked too (it may be a coherent engine),
/// and only a Redis that does not know the subcommand is read through the lease
/// hashes. Any other failure (NOAUTH, a dropped connection) is an error, never a
/// silent switch to the other method.
pub(super) async fn connect(cfg: &Config) -> Result<Cache> {
    if cfg.target.kind == TargetKind::RedisCluster {
        // SCAN and pipelined GETs would need routing per node and slot.
        bail!("the offline audit does not support [target] kind = \"redis-cluster\" yet");
    }
    let (info, name) = connection_info(cfg)?;
    let client = redis::Client::open(info).with_context(|| format!("cache {name}"))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("cannot connect to the cache ({name})"))?;
    // A round trip that needs no special command: AUTH and SELECT errors show here.
    let _: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .with_context(|| format!("the cache ({name}) refused PING"))?;
    let probe: redis::RedisResult<Option<i64>> = redis::cmd("OBJECT")
        .arg("WRITTEN")
        .arg("coherent:audit:probe")
        .query_async(&mut conn)
        .await;
    let embedded = cfg.target.kind == TargetKind::Embedded && cfg.target.url.is_none();
    match probe {
        Ok(_) => Ok(Cache {
            conn,
            written_by: WrittenBy::Engine,
            note: None,
        }),
        Err(e) if embedded => {
            Err(e).with_context(|| format!("{name} does not answer OBJECT WRITTEN"))
        }
        // Redis answers an unknown OBJECT subcommand with an error reply (ERR
        // unknown subcommand, or "Unknown subcommand or wrong number of arguments").
        Err(e) if e.kind() == redis::ErrorKind::ResponseError => Ok(Cache {
            conn,
            written_by: WrittenBy::LeaseHash,
            note: Some(format!(
                "{name} has no OBJECT WRITTEN: write times are the lease fills' `written` field (unknown for plain SET fills)"
            )),
        }),
        Err(e) => Err(e).with_context(|| format!("cannot read from the cache ({name})")),
    }
}

/// When each key's value was written (Unix ms), as far as the cache knows.
pub(super) async fn written_ms<'a>(
    cache: &mut Cache,
    keys: impl Iterator<Item = &'a [u8]>,
) -> Vec<Option<i64>> {
    let mut p = redis::pipe();
    let mut n = 0;
    for k in keys {
        n += 1;
        match cache.written_by {
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
    let got: redis::RedisResult<Vec<Option<i64>>> = p.query_async(&mut cache.conn).await;
    got.unwrap_or_else(|_| vec![None; n])
}

/// The cached values of `keys`, in one pipeline.
pub(super) async fn get_all(cache: &mut Cache, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
    let mut p = redis::pipe();
    for k in keys {
        p.cmd("GET").arg(k.as_slice());
    }
    p.query_async(&mut cache.conn).await.context("cache GET")
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn urls_are_described_without_password() {
        assert_eq!(describe("redis://:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(describe("redis://h:1"), "redis://h:1");
    }
}
