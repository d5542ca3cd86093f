//! The cache the audit reads: which one (the config's `[target]`, else the embedded
//! engine at `[engine] listen` with its `requirepass`), and how it tells when a value
//! was written.
//!
//! A Redis Cluster is read through the `redis` crate's cluster connection, which
//! routes each command to its key's master. A pipeline there must stay within one
//! slot, so a batch's GETs (and HGETs of the lease hashes) are sent as separate
//! commands at once: the connection multiplexes them on each node's socket, one
//! round trip per node rather than per key. SCAN walks one node only, so orphans are
//! found by scanning every master (from `CLUSTER SLOTS`) on a plain connection each.

use super::sidecar_status::reachable;
use crate::config::Config;
use anyhow::{bail, Context, Result};
use connectors::targets::redis::config::node_url;
use connectors::targets::TargetKind;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::FromRedisValue;

/// How the cache tells when a value was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WrittenBy {
    /// The engine: `OBJECT WRITTEN key`.
    Engine,
    /// Redis: `HGET <lease key> written`, recorded by the cache-aside lease fill.
    LeaseHash,
}

/// A connection to the cache: one node, or a cluster routing per key.
#[derive(Clone)]
pub(super) enum Conn {
    /// A single Redis or the engine (pipelined).
    Single(MultiplexedConnection),
    /// A Redis Cluster (each command to its key's master).
    Cluster(ClusterConnection),
}

impl Conn {
    /// One reply per command, in order: one pipeline on a single node; on a
    /// cluster all commands at once, each routed by its key (a pipeline may not
    /// cross slots).
    async fn each<T: FromRedisValue>(&self, cmds: Vec<redis::Cmd>) -> redis::RedisResult<Vec<T>> {
        match self {
            Conn::Single(c) => {
                let mut c = c.clone();
                let mut p = redis::pipe();
                for cmd in cmds {
                    p.add_command(cmd);
                }
                p.query_async(&mut c).await
            }
            Conn::Cluster(c) => {
                let sends = cmds.into_iter().map(|cmd| {
                    let mut c = c.clone();
                    async move { cmd.query_async::<T>(&mut c).await }
                });
                futures_util::future::join_all(sends)
                    .await
                    .into_iter()
                    .collect()
            }
        }
    }

    /// The values of `keys`, in order.
    pub async fn get_many<'a>(
        &self,
        keys: impl Iterator<Item = &'a [u8]>,
    ) -> redis::RedisResult<Vec<Option<Vec<u8>>>> {
        let cmds = keys
            .map(|k| {
                let mut c = redis::cmd("GET");
                c.arg(k);
                c
            })
            .collect();
        self.each(cmds).await
    }
}

/// Where the cache is, for messages (no password in it).
pub(super) struct Cache {
    /// The connection (pipelined, shared by the scan's GET task).
    pub conn: Conn,
    /// One connection per node holding keys, for SCAN: the single node, or every
    /// master of a cluster.
    pub scan_nodes: Vec<MultiplexedConnection>,
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
        return connect_cluster(cfg).await;
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
            conn: Conn::Single(conn.clone()),
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
            conn: Conn::Single(conn.clone()),
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
        .target
        .nodes
        .iter()
        .map(|n| describe(&node_url(n)))
        .collect();
    format!("the cluster at {}", nodes.join(", "))
}

/// Connection info of a cluster node: the seed URL's scheme and credentials (and
/// `[target] password`), at `host:port`.
fn node_info(
    seed: &str,
    host: &str,
    port: u16,
    password: Option<&str>,
) -> Result<redis::ConnectionInfo> {
    let seed = node_url(seed);
    let (scheme, rest) = seed.split_once("://").unwrap_or(("redis", seed.as_str()));
    let authority = rest.split('/').next().unwrap_or(rest);
    let user = authority
        .rsplit_once('@')
        .map(|(u, _)| format!("{u}@"))
        .unwrap_or_default();
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let url = format!("{scheme}://{user}{host}:{port}");
    let mut info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
        .with_context(|| format!("cluster node {host}:{port}"))?;
    if let Some(p) = password {
        info.redis.password = Some(p.to_string());
    }
    Ok(info)
}

/// The masters' addresses from a `CLUSTER SLOTS` reply (each slot range's first
/// node), each once. A node that announces no IP (an empty string) is at the host
/// the reply came from.
fn masters(slots: &redis::Value, asked: &str) -> Vec<(String, u16)> {
    let mut out: Vec<(String, u16)> = Vec::new();
    let redis::Value::Array(ranges) = slots else {
        return out;
    };
    for range in ranges {
        let redis::Value::Array(fields) = range else {
            continue;
        };
        let Some(redis::Value::Array(node)) = fields.get(2) else {
            continue;
        };
        let host = match node.first() {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            _ => continue,
        };
        let host = if host.is_empty() {
            asked.to_string()
        } else {
            host
        };
        let Some(redis::Value::Int(port)) = node.get(1) else {
            continue;
        };
        let Ok(port) = u16::try_from(*port) else {
            continue;
        };
        if !out.iter().any(|(h, p)| *h == host && *p == port) {
            out.push((host, port));
        }
    }
    out
}

/// A Redis Cluster: the cluster connection for reads (write times from the lease
/// hashes, which live in their key's slot), and a plain connection to each master
/// for SCAN.
async fn connect_cluster(cfg: &Config) -> Result<Cache> {
    let name = describe_nodes(cfg);
    if cfg.target.nodes.is_empty() {
        bail!("[target] kind = \"redis-cluster\" needs nodes = [\"host:port\", ...]");
    }
    let password = cfg.target.password.as_deref();
    let urls: Vec<String> = cfg.target.nodes.iter().map(|n| node_url(n)).collect();
    let mut b = redis::cluster::ClusterClientBuilder::new(urls);
    if let Some(p) = password {
        b = b.password(p.to_string());
    }
    let client = b.build().with_context(|| format!("cache {name}"))?;
    let conn = client
        .get_async_connection()
        .await
        .with_context(|| format!("cannot connect to the cache ({name})"))?;
    // The masters, asked of the first seed node that answers.
    let mut last_err = None;
    let mut found = None;
    for seed in &cfg.target.nodes {
        let seed_info = redis::IntoConnectionInfo::into_connection_info(node_url(seed).as_str())
            .with_context(|| format!("[target] nodes {}", describe(&node_url(seed))))?;
        let asked = match &seed_info.addr {
            redis::ConnectionAddr::Tcp(h, _) => h.clone(),
            _ => String::new(),
        };
        let info = match &seed_info.addr {
            redis::ConnectionAddr::Tcp(h, p) => node_info(seed, h, *p, password)?,
            _ => seed_info,
        };
        let r = async {
            let client = redis::Client::open(info)?;
            let mut c = client.get_multiplexed_async_connection().await?;
            redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<redis::Value>(&mut c)
                .await
        }
        .await;
        match r {
            Ok(v) => {
                found = Some((v, asked, seed.clone()));
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let Some((slots, asked, seed)) = found else {
        let e = last_err.map(|e| e.to_string()).unwrap_or_default();
        bail!("no seed node of {name} answered CLUSTER SLOTS: {e}");
    };
    let nodes = masters(&slots, &asked);
    if nodes.is_empty() {
        bail!("{name}: CLUSTER SLOTS named no master");
    }
    let mut scan_nodes = Vec::with_capacity(nodes.len());
    for (host, port) in &nodes {
        let info = node_info(&seed, host, *port, password)?;
        let c = redis::Client::open(info)
            .with_context(|| format!("cluster node {host}:{port}"))?
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("cannot connect to cluster master {host}:{port}"))?;
        scan_nodes.push(c);
    }
    Ok(Cache {
        conn: Conn::Cluster(conn),
        scan_nodes,
        written_by: WrittenBy::LeaseHash,
        note: Some(format!(
            "{name} ({} masters, each SCANned for orphans) is read through the lease fills' `written` field for write times (unknown for plain SET fills)",
            nodes.len()
        )),
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
                c.arg(connectors::targets::redis::lease_key(k).as_ref())
                    .arg("written");
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
    cache
        .conn
        .get_many(keys.iter().map(|k| k.as_slice()))
        .await
        .context("cache GET")
}

#[cfg(test)]
mod tests {
    use super::{describe, masters, node_info};
    use redis::Value;

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    #[test]
    fn masters_are_each_range_first_node_once() {
        let slots = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000),
                node("10.0.0.9", 7009),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(9000), node("", 7001)]),
            Value::Array(vec![
                Value::Int(9001),
                Value::Int(16383),
                node("10.0.0.1", 7000),
            ]),
        ]);
        assert_eq!(
            masters(&slots, "seed"),
            vec![("10.0.0.1".to_string(), 7000), ("seed".to_string(), 7001)]
        );
        assert!(masters(&Value::Nil, "seed").is_empty());
    }

    #[test]
    fn node_info_keeps_the_seed_credentials() {
        let i = node_info("redis://u:pw@h:1/0", "10.0.0.2", 7002, None).expect("info");
        assert_eq!(i.addr.to_string(), "10.0.0.2:7002");
        assert_eq!(i.redis.username.as_deref(), Some("u"));
        assert_eq!(i.redis.password.as_deref(), Some("pw"));
        let i = node_info("h:1", "::1", 7003, Some("secret")).expect("info");
        assert_eq!(i.redis.password.as_deref(), Some("secret"));
        assert!(i.addr.to_string().contains("7003"), "{}", i.addr);
    }

    #[test]
    fn urls_are_described_without_password() {
        assert_eq!(describe("redis://:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(describe("redis://h:1"), "redis://h:1");
    }
}
