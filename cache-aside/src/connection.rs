//! One way to reach Redis: a single node (Coherent's engine or a Redis) or a Redis
//! Cluster. This library's [`crate::CacheClient`], the sidecar's invalidation target
//! and TTL sweeper, and both consistency audits all connect through it.
//!
//! - [`Endpoint`]: where (one node, or a cluster's seed nodes);
//! - [`ConnectOptions`]: timeouts, the cluster's password and retries, scripts to load;
//! - [`RedisConn`]: a command, script or batch routed by key, and the cluster's
//!   masters ([`RedisConn::masters`]) for what must visit every node (SCAN).
//!
//! A node is one multiplexed connection, cheap to clone and shared by every clone.
//! When it drops (the server restarted, a network reset), the request that saw it
//! reopens it, loads the scripts again, and is sent once more on the new connection:
//! everything sent through here is safe to repeat (reads, deletes, `EXPIRE NX`, the
//! lease scripts, whose repeat at worst makes a reader wait). A timeout does not
//! reopen: the server may only be slow. A cluster connection routes each command to
//! its key's master, follows MOVED/ASK and reconnects by itself.

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, FromRedisValue,
    IntoConnectionInfo, Pipeline, RedisError, RedisResult, Script, ScriptInvocation, Value,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the cache is.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// One server: Coherent's engine or a Redis.
    Node(ConnectionInfo),
    /// A Redis Cluster, by its seed nodes (any that answer will do).
    Cluster(Vec<ConnectionInfo>),
}

impl Endpoint {
    /// One server at `url` (`redis://[user][:password@]host:port[/db]`).
    pub fn node(url: &str) -> RedisResult<Endpoint> {
        Ok(Endpoint::Node(url.into_connection_info()?))
    }

    /// A cluster from its seed nodes, each a URL or `host:port` ([`node_url`]).
    pub fn cluster<S: AsRef<str>>(seeds: &[S]) -> RedisResult<Endpoint> {
        let seeds = seeds
            .iter()
            .map(|s| node_url(s.as_ref()).as_str().into_connection_info())
            .collect::<RedisResult<Vec<_>>>()?;
        Ok(Endpoint::Cluster(seeds))
    }
}

/// How to connect. The default: no timeouts of our own, the `redis` crate's cluster
/// retries, no scripts.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    connect_timeout: Option<Duration>,
    response_timeout: Option<Duration>,
    password: Option<String>,
    retries: Option<u32>,
    scripts: Vec<Script>,
}

impl ConnectOptions {
    /// Fresh options (the defaults).
    pub fn new() -> Self {
        Self::default()
    }

    /// How long connecting, and then each reply, may take.
    pub fn timeouts(mut self, connect: Duration, response: Duration) -> Self {
        self.connect_timeout = Some(connect);
        self.response_timeout = Some(response);
        self
    }

    /// The password of every node of a cluster (a seed URL's own password otherwise;
    /// a single node takes it from its URL).
    pub fn password(mut self, password: Option<String>) -> Self {
        self.password = password;
        self
    }

    /// How many times a cluster request is retried (redirections, reconnects).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    /// Scripts to load at every (re)connect, so the first call after one does not
    /// pay a NOSCRIPT round trip (a script the server lost meanwhile is still loaded
    /// and retried by the `redis` crate).
    pub fn scripts(mut self, scripts: Vec<Script>) -> Self {
        self.scripts = scripts;
        self
    }

    fn async_config(&self) -> AsyncConnectionConfig {
        let mut c = AsyncConnectionConfig::new();
        if let Some(t) = self.connect_timeout {
            c = c.set_connection_timeout(t);
        }
        if let Some(t) = self.response_timeout {
            c = c.set_response_timeout(t);
        }
        c
    }
}

/// A connection to a node or a cluster: cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct RedisConn {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Node(Arc<Node>),
    Cluster(Arc<Cluster>),
}

struct Node {
    client: redis::Client,
    conn: Mutex<MultiplexedConnection>,
    options: ConnectOptions,
}

struct Cluster {
    conn: ClusterConnection,
    seeds: Vec<ConnectionInfo>,
    options: ConnectOptions,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RedisConn").field(&self.addr()).finish()
    }
}

/// One request, sent as it is on whichever connection.
enum Request<'a> {
    Cmd(&'a Cmd),
    Script(&'a ScriptInvocation<'a>),
    Pipeline(&'a Pipeline),
}

async fn send<T: FromRedisValue>(c: &mut impl ConnectionLike, r: &Request<'_>) -> RedisResult<T> {
    match r {
        Request::Cmd(cmd) => cmd.query_async(c).await,
        Request::Script(s) => s.invoke_async(c).await,
        Request::Pipeline(p) => p.query_async(c).await,
    }
}

async fn load(c: &mut impl ConnectionLike, scripts: &[Script]) -> RedisResult<()> {
    for s in scripts {
        s.prepare_invoke().load_async(c).await?;
    }
    Ok(())
}

impl Node {
    async fn open(&self) -> RedisResult<MultiplexedConnection> {
        let mut c = self
            .client
            .get_multiplexed_async_connection_with_config(&self.options.async_config())
            .await?;
        load(&mut c, &self.options.scripts).await?;
        Ok(c)
    }

    fn current(&self) -> MultiplexedConnection {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn call<T: FromRedisValue>(&self, r: Request<'_>) -> RedisResult<T> {
        match send(&mut self.current(), &r).await {
            // The connection is gone (not merely slow): reopen it, send once more.
            Err(e) if e.is_unrecoverable_error() => {
                let mut fresh = self.open().await?;
                *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
                send(&mut fresh, &r).await
            }
            other => other,
        }
    }
}

impl RedisConn {
    /// Connects (and loads the scripts): to the node, or to the cluster through the
    /// first seed that answers.
    pub async fn connect(endpoint: &Endpoint, options: &ConnectOptions) -> RedisResult<RedisConn> {
        let inner = match endpoint {
            Endpoint::Node(info) => {
                let client = redis::Client::open(info.clone())?;
                let conn = client
                    .get_multiplexed_async_connection_with_config(&options.async_config())
                    .await?;
                let node = Node {
                    client,
                    conn: Mutex::new(conn),
                    options: options.clone(),
                };
                load(&mut node.current(), &options.scripts).await?;
                Inner::Node(Arc::new(node))
            }
            Endpoint::Cluster(seeds) => {
                let mut b = ClusterClientBuilder::new(seeds.clone());
                if let Some(p) = &options.password {
                    b = b.password(p.clone());
                }
                if let Some(t) = options.connect_timeout {
                    b = b.connection_timeout(t);
                }
                if let Some(t) = options.response_timeout {
                    b = b.response_timeout(t);
                }
                if let Some(n) = options.retries {
                    b = b.retries(n);
                }
                let mut conn = b.build()?.get_async_connection().await?;
                load(&mut conn, &options.scripts).await?;
                Inner::Cluster(Arc::new(Cluster {
                    conn,
                    seeds: seeds.clone(),
                    options: options.clone(),
                }))
            }
        };
        Ok(RedisConn { inner })
    }

    /// The server's address and credentials, for a single node (the near cache opens
    /// its own connection there); `None` for a cluster.
    pub fn node_info(&self) -> Option<ConnectionInfo> {
        match &self.inner {
            Inner::Node(n) => Some(n.client.get_connection_info().clone()),
            Inner::Cluster(_) => None,
        }
    }

    /// Whether this is a cluster (commands of one request must share a slot).
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner, Inner::Cluster(_))
    }

    /// Where it is connected, for messages (no password): `host:port`, or the seeds
    /// of a cluster.
    pub fn addr(&self) -> String {
        match &self.inner {
            Inner::Node(n) => n.client.get_connection_info().addr.to_string(),
            Inner::Cluster(c) => {
                let seeds: Vec<String> = c.seeds.iter().map(|s| s.addr.to_string()).collect();
                format!("cluster {}", seeds.join(", "))
            }
        }
    }

    async fn call<T: FromRedisValue>(&self, r: Request<'_>) -> RedisResult<T> {
        match &self.inner {
            Inner::Node(n) => n.call(r).await,
            Inner::Cluster(c) => send(&mut c.conn.clone(), &r).await,
        }
    }

    /// Runs one command (on a cluster, on its key's master).
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        self.call(Request::Cmd(cmd)).await
    }

    /// Runs a script by EVALSHA (on a cluster, on its keys' master: they must share
    /// a slot).
    pub async fn invoke<T: FromRedisValue>(&self, script: &ScriptInvocation<'_>) -> RedisResult<T> {
        self.call(Request::Script(script)).await
    }

    /// One reply per command, in order: on a node one pipeline (one round trip); on a
    /// cluster every command at once, each routed by its key (a pipeline may not
    /// cross slots; the connection still multiplexes them on each master's socket).
    pub async fn each<T: FromRedisValue>(&self, cmds: Vec<Cmd>) -> RedisResult<Vec<T>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        match &self.inner {
            Inner::Node(n) => {
                let mut p = redis::pipe();
                for cmd in cmds {
                    p.add_command(cmd);
                }
                n.call(Request::Pipeline(&p)).await
            }
            Inner::Cluster(c) => {
                let sends = cmds.into_iter().map(|cmd| {
                    let mut conn = c.conn.clone();
                    async move { cmd.query_async::<T>(&mut conn).await }
                });
                futures_util::future::join_all(sends)
                    .await
                    .into_iter()
                    .collect()
            }
        }
    }

    /// A connection to every node that holds keys, for what must visit each (SCAN
    /// sees one node's keys only): this node itself, or each master of a cluster as
    /// `CLUSTER SLOTS` lists them, asked of the first seed that answers and reached
    /// with that seed's credentials (and the cluster's password). A key lives on one
    /// master, so no key is seen twice; replicas are not listed.
    pub async fn masters(&self) -> RedisResult<Vec<RedisConn>> {
        let c = match &self.inner {
            Inner::Node(_) => return Ok(vec![self.clone()]),
            Inner::Cluster(c) => c,
        };
        // The masters' connections need no scripts.
        let options = ConnectOptions {
            scripts: Vec::new(),
            ..c.options.clone()
        };
        let password = options.password.as_deref();
        let mut last_err = None;
        for seed in &c.seeds {
            let asked = match &seed.addr {
                ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => host.clone(),
                ConnectionAddr::Unix(_) => String::new(),
            };
            let slots = async {
                let info = with_password(seed.clone(), password);
                let node = RedisConn::connect(&Endpoint::Node(info), &options).await?;
                node.query::<Value>(redis::cmd("CLUSTER").arg("SLOTS"))
                    .await
            }
            .await;
            let slots = match slots {
                Ok(v) => v,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            let found = masters_of(&slots, &asked);
            if found.is_empty() {
                return Err(RedisError::from((
                    ErrorKind::ClientError,
                    "CLUSTER SLOTS named no master",
                    seed.addr.to_string(),
                )));
            }
            let mut out = Vec::with_capacity(found.len());
            for (host, port) in found {
                let info = node_info(seed, &host, port, password);
                out.push(RedisConn::connect(&Endpoint::Node(info), &options).await?);
            }
            return Ok(out);
        }
        Err(last_err.unwrap_or_else(|| {
            RedisError::from((
                ErrorKind::InvalidClientConfig,
                "a cluster without seed nodes",
            ))
        }))
    }
}

/// A seed node may be written `host:port`; the client wants a URL.
pub fn node_url(node: &str) -> String {
    if node.contains("://") {
        node.to_string()
    } else {
        format!("redis://{node}")
    }
}

/// A Redis URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Groups `keys` by cluster hash slot, keeping their order within a slot (commands
/// of several keys must stay in one slot on a cluster).
pub fn by_slot<K: AsRef<[u8]> + Clone>(keys: &[K]) -> HashMap<u16, Vec<K>> {
    let mut groups: HashMap<u16, Vec<K>> = HashMap::new();
    for k in keys {
        groups
            .entry(redis::cluster_routing::get_slot(k.as_ref()))
            .or_default()
            .push(k.clone());
    }
    groups
}

fn with_password(mut info: ConnectionInfo, password: Option<&str>) -> ConnectionInfo {
    if let Some(p) = password {
        info.redis.password = Some(p.to_string());
    }
    info
}

/// A cluster node at `host:port`, reached as `seed` is (scheme, user, password, TLS)
/// with the cluster's `password`, if any.
fn node_info(
    seed: &ConnectionInfo,
    host: &str,
    port: u16,
    password: Option<&str>,
) -> ConnectionInfo {
    let mut info = with_password(seed.clone(), password);
    info.addr = match &seed.addr {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: host.to_string(),
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host.to_string(), port),
    };
    info
}

/// The masters' addresses from a `CLUSTER SLOTS` reply (each slot range's first
/// node), each once. A node that announces no IP (an empty string) is at the host
/// the reply came from.
fn masters_of(slots: &Value, asked: &str) -> Vec<(String, u16)> {
    let mut out: Vec<(String, u16)> = Vec::new();
    let Value::Array(ranges) = slots else {
        return out;
    };
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        let Some(Value::Array(node)) = fields.get(2) else {
            continue;
        };
        let host = match node.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            _ => continue,
        };
        let host = if host.is_empty() {
            asked.to_string()
        } else {
            host
        };
        let Some(Value::Int(port)) = node.get(1) else {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            masters_of(&slots, "seed"),
            vec![("10.0.0.1".to_string(), 7000), ("seed".to_string(), 7001)]
        );
        assert!(masters_of(&Value::Nil, "seed").is_empty());
    }

    #[test]
    fn node_info_keeps_the_seed_credentials() {
        let seed = |u: &str| u.into_connection_info().expect("seed url");
        let i = node_info(&seed("redis://u:pw@h:1/0"), "10.0.0.2", 7002, None);
        assert_eq!(i.addr.to_string(), "10.0.0.2:7002");
        assert_eq!(i.redis.username.as_deref(), Some("u"));
        assert_eq!(i.redis.password.as_deref(), Some("pw"));
        let i = node_info(&seed(&node_url("h:1")), "::1", 7003, Some("secret"));
        assert_eq!(i.redis.password.as_deref(), Some("secret"));
        assert!(i.addr.to_string().contains("7003"), "{}", i.addr);
    }

    #[test]
    fn urls_are_redacted_and_completed() {
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        assert_eq!(node_url("127.0.0.1:7000"), "redis://127.0.0.1:7000");
        assert_eq!(node_url("rediss://h:1"), "rediss://h:1");
    }

    #[test]
    fn keys_group_by_slot_in_order() {
        let keys = ["{u1}:a", "x", "{u1}:b"];
        let g = by_slot(&keys);
        assert_eq!(g.len(), 2);
        assert_eq!(
            g[&redis::cluster_routing::get_slot(b"u1")],
            ["{u1}:a", "{u1}:b"]
        );
    }
}
