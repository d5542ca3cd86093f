//! One client over the three kinds of cache: Coherent's engine (LEASEGET/LEASESET
//! over RESP), a Redis, and a Redis Cluster (the same protocol as Lua scripts),
//! reached through [`crate::connection`] (on a single server, a dropped connection
//! is re-opened, and the scripts re-loaded, once per request).

use crate::connection::{ConnectOptions, Endpoint, RedisConn};
use crate::scripts;
use redis::{RedisError, RedisResult, Value};
use std::time::Duration;

/// What a lease read returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseRead {
    /// A hit.
    Value(Vec<u8>),
    /// A miss, and this caller holds the lease: fill with this token.
    Lease(i64),
    /// A miss while another caller holds the lease: retry within this many ms.
    Wait(u64),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Engine,
    Redis,
    Cluster,
}

/// A connection to the cache: cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct CacheClient {
    kind: Kind,
    conn: RedisConn,
    lease_interval: Duration,
}

impl std::fmt::Debug for CacheClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheClient")
            .field("kind", &self.kind)
            .finish()
    }
}

struct Scripts {
    get: redis::Script,
    set: redis::Script,
    invalidate: redis::Script,
    written: redis::Script,
}

fn scripts() -> &'static Scripts {
    static S: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    S.get_or_init(|| Scripts {
        get: redis::Script::new(scripts::LEASEGET),
        set: redis::Script::new(scripts::LEASESET),
        invalidate: redis::Script::new(scripts::INVALIDATE),
        written: redis::Script::new(scripts::WRITTEN),
    })
}

/// The lease scripts, loaded at every (re)connect to a Redis or a Cluster.
fn script_list() -> Vec<redis::Script> {
    let s = scripts();
    vec![
        s.get.clone(),
        s.set.clone(),
        s.invalidate.clone(),
        s.written.clone(),
    ]
}

impl CacheClient {
    /// Coherent's engine (`redis://127.0.0.1:6380`): leases are native commands.
    pub async fn engine(url: &str) -> RedisResult<CacheClient> {
        Self::single(url, Kind::Engine).await
    }

    /// A Redis server: leases run as Lua scripts, loaded now.
    pub async fn redis(url: &str) -> RedisResult<CacheClient> {
        Self::single(url, Kind::Redis).await
    }

    /// A Redis Cluster, from one or more seed nodes: leases run as Lua scripts (each
    /// key and its lease side key share a slot).
    pub async fn cluster(nodes: &[&str]) -> RedisResult<CacheClient> {
        Self::connect(Endpoint::cluster(nodes)?, Kind::Cluster).await
    }

    async fn single(url: &str, kind: Kind) -> RedisResult<CacheClient> {
        Self::connect(Endpoint::node(url)?, kind).await
    }

    async fn connect(endpoint: Endpoint, kind: Kind) -> RedisResult<CacheClient> {
        let mut options = ConnectOptions::new();
        if kind != Kind::Engine {
            options = options.scripts(script_list());
        }
        Ok(CacheClient {
            kind,
            conn: RedisConn::connect(&endpoint, &options).await?,
            lease_interval: Duration::from_secs(10),
        })
    }

    /// The lease interval on Redis (the engine has its own, `lease-interval-ms`):
    /// one token per key per interval, and how long a dead holder blocks a key.
    pub fn with_lease_interval(mut self, interval: Duration) -> Self {
        self.lease_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The single server's address and credentials (`None` for a cluster).
    pub fn node_info(&self) -> Option<redis::ConnectionInfo> {
        self.conn.node_info()
    }

    /// Lease read: the value on a hit; on a miss a token, or how long to wait.
    pub async fn lease_get(&self, key: &str) -> RedisResult<LeaseRead> {
        let v: Value = match self.kind {
            Kind::Engine => {
                let mut cmd = redis::cmd("LEASEGET");
                cmd.arg(key);
                self.conn.query(&cmd).await?
            }
            Kind::Redis | Kind::Cluster => {
                let token = fastrand::i64(1..=i64::MAX);
                let mut inv = scripts().get.prepare_invoke();
                inv.key(key)
                    .key(scripts::lease_key(key))
                    .arg(self.lease_interval.as_millis() as u64)
                    .arg(token);
                self.conn.invoke(&inv).await?
            }
        };
        parse_lease_read(v)
    }

    /// Lease fill: stores `value` (with `ttl`, if any) only if `token` is still the
    /// key's valid token. Returns false when it was refused and nothing was stored.
    pub async fn lease_set(
        &self,
        key: &str,
        token: i64,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> RedisResult<bool> {
        let px = ttl.map(|d| (d.as_millis() as u64).max(1));
        let v: Value = match self.kind {
            Kind::Engine => {
                let mut cmd = redis::cmd("LEASESET");
                cmd.arg(key).arg(token).arg(value);
                if let Some(px) = px {
                    cmd.arg("PX").arg(px);
                }
                self.conn.query(&cmd).await?
            }
            Kind::Redis | Kind::Cluster => {
                let mut inv = scripts().set.prepare_invoke();
                inv.key(key)
                    .key(scripts::lease_key(key))
                    .arg(token)
                    .arg(value)
                    .arg(px.unwrap_or(0));
                self.conn.invoke(&inv).await?
            }
        };
        Ok(matches!(v, Value::Okay) || matches!(&v, Value::SimpleString(s) if s == "OK"))
    }

    /// Plain GET (for clients that do not use leases).
    pub async fn get(&self, key: &str) -> RedisResult<Option<Vec<u8>>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        self.conn.query(&cmd).await
    }

    /// Plain SET with an optional TTL (for clients that do not use leases).
    pub async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> RedisResult<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(d) = ttl {
            cmd.arg("PX").arg((d.as_millis() as u64).max(1));
        }
        self.conn.query(&cmd).await
    }

    /// When `key`'s value was written, in Unix ms; `None` when the key does not exist
    /// or its write time is unknown. The consistency audit uses it to tell how old a
    /// stale entry is.
    ///
    /// - Engine: `OBJECT WRITTEN key`, kept by the engine for every write (100 ms
    ///   resolution: the time is rounded down to a multiple of 100 ms).
    /// - Redis / Cluster: the `written` field that a lease fill ([`Self::lease_set`])
    ///   leaves in the key's side key ([`scripts::lease_key`]), read by the `WRITTEN`
    ///   script together with the key's existence (ms resolution, the server's clock).
    ///   A plain [`Self::set`] records nothing, so a value written without a lease has
    ///   no known write time; and a plain `SET` over a key whose side key still holds
    ///   an earlier fill's `written` (after a bare `DEL key` that left it) reports that
    ///   earlier time.
    pub async fn written_ms(&self, key: &str) -> RedisResult<Option<i64>> {
        let v: Value = match self.kind {
            Kind::Engine => {
                let mut cmd = redis::cmd("OBJECT");
                cmd.arg("WRITTEN").arg(key);
                self.conn.query(&cmd).await?
            }
            Kind::Redis | Kind::Cluster => {
                let mut inv = scripts().written.prepare_invoke();
                inv.key(key).key(scripts::lease_key(key));
                self.conn.invoke(&inv).await?
            }
        };
        parse_written(v)
    }

    /// Deletes keys and voids their leases: DEL on the engine (any write voids), the
    /// INVALIDATE script on Redis (one call per key on a cluster). Returns how many
    /// keys existed.
    pub async fn invalidate(&self, keys: &[&str]) -> RedisResult<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        match self.kind {
            Kind::Engine => {
                let mut cmd = redis::cmd("DEL");
                for k in keys {
                    cmd.arg(*k);
                }
                self.conn.query(&cmd).await
            }
            Kind::Redis => {
                let mut inv = scripts().invalidate.prepare_invoke();
                for k in keys {
                    inv.key(*k).key(scripts::lease_key(k));
                }
                self.conn.invoke(&inv).await
            }
            Kind::Cluster => {
                let mut n = 0;
                for k in keys {
                    let mut inv = scripts().invalidate.prepare_invoke();
                    inv.key(*k).key(scripts::lease_key(k));
                    n += self.conn.invoke::<u64>(&inv).await?;
                }
                Ok(n)
            }
        }
    }
}

fn protocol_error(what: String) -> RedisError {
    RedisError::from((redis::ErrorKind::TypeError, "unexpected lease reply", what))
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// Parses a write time: an integer (the engine), a decimal string (the script), or nil.
fn parse_written(v: Value) -> RedisResult<Option<i64>> {
    match &v {
        Value::Nil => Ok(None),
        other => match as_i64(other) {
            Some(ms) => Ok(Some(ms)),
            None => Err(protocol_error(format!("written {v:?}"))),
        },
    }
}

/// Parses `[tag, payload]` from LEASEGET or the leaseget script (tokens come back as
/// integers from the engine and as decimal strings from Lua, whose numbers are doubles).
fn parse_lease_read(v: Value) -> RedisResult<LeaseRead> {
    let Value::Array(items) = v else {
        return Err(protocol_error(format!("{v:?}")));
    };
    let (tag, payload) = match items.as_slice() {
        [Value::BulkString(t), p] => (t.as_slice(), p),
        [Value::SimpleString(t), p] => (t.as_bytes(), p),
        _ => return Err(protocol_error(format!("{items:?}"))),
    };
    match (tag, payload) {
        (b"value", Value::BulkString(b)) => Ok(LeaseRead::Value(b.clone())),
        (b"lease", p) => match as_i64(p) {
            Some(t) if t > 0 => Ok(LeaseRead::Lease(t)),
            _ => Err(protocol_error(format!("token {p:?}"))),
        },
        (b"wait", p) => match as_i64(p) {
            Some(ms) => Ok(LeaseRead::Wait(ms.max(1) as u64)),
            None => Err(protocol_error(format!("wait {p:?}"))),
        },
        _ => Err(protocol_error(format!("{items:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_token_forms() {
        let arr = |t: &str, p: Value| Value::Array(vec![Value::BulkString(t.into()), p]);
        assert_eq!(
            parse_lease_read(arr("lease", Value::Int(42))).unwrap(),
            LeaseRead::Lease(42)
        );
        assert_eq!(
            parse_lease_read(arr(
                "lease",
                Value::BulkString(b"9223372036854775807".to_vec())
            ))
            .unwrap(),
            LeaseRead::Lease(i64::MAX)
        );
        assert_eq!(
            parse_lease_read(arr("wait", Value::Int(120))).unwrap(),
            LeaseRead::Wait(120)
        );
        assert_eq!(
            parse_lease_read(arr("value", Value::BulkString(b"x".to_vec()))).unwrap(),
            LeaseRead::Value(b"x".to_vec())
        );
        assert!(parse_lease_read(arr("lease", Value::Int(0))).is_err());
        assert!(parse_lease_read(Value::Nil).is_err());
    }

    #[test]
    fn parses_write_times() {
        assert_eq!(parse_written(Value::Nil).unwrap(), None);
        assert_eq!(
            parse_written(Value::Int(1_764_000_000_100)).unwrap(),
            Some(1_764_000_000_100)
        );
        assert_eq!(
            parse_written(Value::BulkString(b"1764000000123".to_vec())).unwrap(),
            Some(1_764_000_000_123)
        );
        assert!(parse_written(Value::BulkString(b"soon".to_vec())).is_err());
    }
}
