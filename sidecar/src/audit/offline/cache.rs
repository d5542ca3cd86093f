//! The cache the audit reads: which one (the config's `[target]`, else the embedded
//! engine at `[engine] listen` with its `requirepass`), and how it tells when a value
//! was written.
//!
//! The cache is reached through the one Redis connection module
//! ([`cache_aside::connection`]): on a Redis Cluster each command goes to its key's
//! master, and a batch's GETs (and HGETs of the lease hashes) are sent as separate
//! commands at once, one round trip per node rather than per key. SCAN walks one
//! node only, so orphans are found by scanning every master
//! ([`RedisConn::masters`]).

use super::sidecar_status::reachable;
use crate::config::Config;
use anyhow::{bail, Context, Result};
use cache_aside::connection::{node_url, redact, ConnectOptions, Endpoint, RedisConn};
use cache_aside::scripts::{lease_key_bytes, FIELD_WRITTEN};
use connectors::targets::redis::config::connect_with;
use connectors::targets::TargetKind;

/// How the cache tells when a value was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WrittenBy {
    /// The engine: `OBJECT WRITTEN key`.
    Engine,
    /// Redis: `HGET <lease key> written`, recorded by the cache-aside lease fill.
    LeaseHash,
}

/// The values of `keys`, in order (one round trip per node).
pub(super) async fn get_many<'a>(
    conn: &RedisConn,
    keys: impl Iterator<Item = &'a [u8]>,
) -> redis::RedisResult<Vec<Option<Vec<u8>>>> {
    let cmds = keys
        .map(|k| {
            let mut c = redis::cmd("GET");
            c.arg(k);
            c
        })
        .collect();
    conn.each(cmds).await
}

/// Where the cache is, for messages (no password in it).
pub(super) struct Cache {
    /// The connection (pipelined, shared by the scan's GET task).
    pub conn: RedisConn,
    /// One connection per node holding keys, for SCAN: the single node, or every
    /// master of a cluster.
    pub scan_nodes: Vec<RedisConn>,
    /// How write times are read.
    pub written_by: WrittenBy,
    /// A note for the report when the cache could not tell write times.
    pub note: Option<String>,
}

/// The connection info of the cache: `[target] url` for an external Redis, else
/// the embedded engine at `[engine] listen` (a wildcard reached on loopback) with
/// `[engine] requirepass` and `[target] db`.
fn connection_info(cfg: &Config) -> Result<(redis::ConnectionInfo, String)> {
    if let Some(u) = cfg
        .connector
        .target
        .url
        .as_deref()
        .filter(|u| !u.is_empty())
    {
        let info = redis::IntoConnectionInfo::into_connection_info(u)
            .with_context(|| format!("[target] url {u}"))?;
        return Ok((info, redact(u)));
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
            db: i64::try_from(cfg.connector.target.db).unwrap_or(0),
            username: None,
            password: cfg.engine.requirepass.clone(),
            ..Default::default()
        },
    };
    Ok((info, format!("the engine at {addr}")))
}

/// Connects and decides how write times are read: the embedded engine answers
/// `OBJECT WRITTEN`; an external Redis is asked too (it may be a coherent engine),
/// and only a Redis that does not know the subcommand is read through the lease
/// hashes. Any other failure (NOAUTH, a dropped connection) is an error, never a
/// silent switch to the other method.
pub(super) async fn connect(cfg: &Config) -> Result<Cache> {
    if cfg.connector.target.kind == TargetKind::RedisCluster {
        return connect_cluster(cfg).await;
    }
    let (info, name) = connection_info(cfg)?;
    let conn = RedisConn::connect(&Endpoint::Node(info), &ConnectOptions::new())
        .await
        .with_context(|| format!("cannot connect to the cache ({name})"))?;
    // A round trip that needs no special command: AUTH and SELECT errors show here.
    let _: String = conn
        .query(&redis::cmd("PING"))
        .await
        .with_context(|| format!("the cache ({name}) refused PING"))?;
    let probe: redis::RedisResult<Option<i64>> = conn
        .query(
            redis::cmd("OBJECT")
                .arg("WRITTEN")
                .arg("coherent:audit:probe"),
        )
        .await;
    let embedded =
        cfg.connector.target.kind == TargetKind::Embedded && cfg.connector.target.url.is_none();
    match probe {
        Ok(_) => Ok(Cache {
            conn: conn.clone(),
            scan_nodes: vec![conn],
            written_by: WrittenBy::Engine,
            note: None,
        }),
        Err(e) if embedded => {
            Err(e).with_context(|| format!("{name} does not answer OBJECT WRITTEN"))
        }
        // Redis answers an unknown OBJECT subcommand with an error reply (ERR
        // unknown subcommand, or "Unknown subcommand or wrong number of arguments").
        Err(e) if e.kind() == redis::ErrorKind::ResponseError => Ok(Cache {
            conn: conn.clone(),
            scan_nodes: vec![conn],
            written_by: WrittenBy::LeaseHash,
            note: Some(format!(
                "{name} has no OBJECT WRITTEN: write times are the lease fills' `written` field (unknown for plain SET fills)"
            )),
        }),
        Err(e) => Err(e).with_context(|| format!("cannot read from the cache ({name})")),
    }
}

/// The seed nodes' URLs, without passwords, for messages.
fn describe_nodes(cfg: &Config) -> String {
    let nodes: Vec<String> = cfg
        .connector
        .target
        .nodes
        .iter()
        .map(|n| redact(&node_url(n)))
        .collect();
    format!("the cluster at {}", nodes.join(", "))
}

/// A Redis Cluster: the cluster connection for reads (write times from the lease
/// hashes, which live in their key's slot), and a connection to each master for
/// SCAN.
async fn connect_cluster(cfg: &Config) -> Result<Cache> {
    let name = describe_nodes(cfg);
    if cfg.connector.target.nodes.is_empty() {
        bail!("[target] kind = \"redis-cluster\" needs nodes = [\"host:port\", ...]");
    }
    let conn = connect_with(&cfg.connector.target, ConnectOptions::new())
        .await
        .with_context(|| format!("cannot connect to the cache ({name})"))?;
    let scan_nodes = conn
        .masters()
        .await
        .with_context(|| format!("cannot list the masters of {name} (CLUSTER SLOTS)"))?;
    let note = format!(
        "{name} ({} masters, each SCANned for orphans) is read through the lease fills' `written` field for write times (unknown for plain SET fills)",
        scan_nodes.len()
    );
    Ok(Cache {
        conn,
        scan_nodes,
        written_by: WrittenBy::LeaseHash,
        note: Some(note),
    })
}

/// When each key's value was written (Unix ms), as far as the cache knows.
pub(super) async fn written_ms<'a>(
    cache: &mut Cache,
    keys: impl Iterator<Item = &'a [u8]>,
) -> Vec<Option<i64>> {
    let cmds: Vec<redis::Cmd> = keys
        .map(|k| match cache.written_by {
            WrittenBy::Engine => {
                let mut c = redis::cmd("OBJECT");
                c.arg("WRITTEN").arg(k);
                c
            }
            WrittenBy::LeaseHash => {
                let mut c = redis::cmd("HGET");
                c.arg(lease_key_bytes(k)).arg(FIELD_WRITTEN);
                c
            }
        })
        .collect();
    let n = cmds.len();
    if n == 0 {
        return Vec::new();
    }
    // Unknown write times are a gap in the histogram, not a failed audit.
    let got: redis::RedisResult<Vec<Option<i64>>> = cache.conn.each(cmds).await;
    got.unwrap_or_else(|_| vec![None; n])
}

/// The cached values of `keys`, in one pipeline (one round trip per node on a
/// cluster).
pub(super) async fn get_all(cache: &mut Cache, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
    get_many(&cache.conn, keys.iter().map(|k| k.as_slice()))
        .await
        .context("cache GET")
}
