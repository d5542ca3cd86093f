//! Engine settings: read from the `[engine]` TOML section, changed at run time by CONFIG SET.

use serde::Deserialize;

/// Settings of the engine. Field names are Redis's config names with `_` for `-`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Address to listen on (`host:port`); port 0 picks a free one.
    pub listen: String,
    /// Password of the default user; `None` means no AUTH required.
    pub requirepass: Option<String>,
    /// Most connected clients; one more is refused with `-ERR max number of clients reached`.
    pub maxclients: usize,
    /// Number of databases SELECT accepts.
    pub databases: usize,
    /// Longest bulk string a client may send.
    pub proto_max_bulk_len: u64,
    /// Most bytes buffered from one client before it is disconnected.
    pub client_query_buffer_limit: u64,
    /// Keyspace notification classes, as in Redis (`KEA`, `Ex`, ...).
    pub notify_keyspace_events: String,
    pub hash_max_listpack_entries: usize,
    pub hash_max_listpack_value: usize,
    pub set_max_intset_entries: usize,
    pub zset_max_listpack_entries: usize,
    pub zset_max_listpack_value: usize,
    pub list_max_listpack_size: i64,
    /// Active expiry cycles per second.
    pub hz: u32,
    /// Memory limit in bytes (0: none).
    pub maxmemory: u64,
    /// Eviction policy (`noeviction`, `allkeys-lru`, ...).
    pub maxmemory_policy: String,
    /// Seconds an idle client may stay connected (0: forever).
    pub timeout: u64,
    /// Threads that run client connections (Redis's `io-threads`, default 1). Commands
    /// run one at a time under the store lock either way; on a small machine one
    /// thread avoids lock hand-offs between threads and is fastest.
    pub io_threads: usize,
    /// Lease interval in ms (LEASEGET): one token per key per interval; a lease older
    /// than this is void and may be granted again.
    pub lease_interval_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            listen: "127.0.0.1:6380".into(),
            requirepass: None,
            maxclients: 10000,
            databases: 16,
            proto_max_bulk_len: 512 * 1024 * 1024,
            client_query_buffer_limit: 1024 * 1024 * 1024,
            notify_keyspace_events: String::new(),
            hash_max_listpack_entries: 512,
            hash_max_listpack_value: 64,
            set_max_intset_entries: 512,
            zset_max_listpack_entries: 128,
            zset_max_listpack_value: 64,
            list_max_listpack_size: -2,
            hz: 10,
            maxmemory: 0,
            maxmemory_policy: "noeviction".into(),
            timeout: 0,
            io_threads: 1,
            lease_interval_ms: 10_000,
        }
    }
}

/// A config value that does not parse or is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl EngineConfig {
    /// Checks values that serde alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.io_threads == 0 || self.io_threads > 128 {
            return Err(ConfigError("io_threads must be between 1 and 128".into()));
        }
        if self.databases == 0 || self.databases > 10_000 {
            return Err(ConfigError("databases must be between 1 and 10000".into()));
        }
        if self.maxclients == 0 {
            return Err(ConfigError("maxclients must be at least 1".into()));
        }
        if self.lease_interval_ms == 0 {
            return Err(ConfigError("lease_interval_ms must be at least 1".into()));
        }
        if self.hz == 0 || self.hz > 500 {
            return Err(ConfigError("hz must be between 1 and 500".into()));
        }
        crate::notify::parse_flags(&self.notify_keyspace_events)
            .ok_or_else(|| ConfigError("notify_keyspace_events has an unknown class".into()))?;
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| ConfigError(format!("listen = {:?}: {e}", self.listen)))?;
        Ok(())
    }

    /// CONFIG GET: the value of one parameter by its Redis name.
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "requirepass" => self.requirepass.clone().unwrap_or_default(),
            "maxclients" => self.maxclients.to_string(),
            "databases" => self.databases.to_string(),
            "proto-max-bulk-len" => self.proto_max_bulk_len.to_string(),
            "client-query-buffer-limit" => self.client_query_buffer_limit.to_string(),
            "notify-keyspace-events" => crate::notify::flags_to_string(
                crate::notify::parse_flags(&self.notify_keyspace_events).unwrap_or(0),
            ),
            "hash-max-listpack-entries" | "hash-max-ziplist-entries" => {
                self.hash_max_listpack_entries.to_string()
            }
            "hash-max-listpack-value" | "hash-max-ziplist-value" => {
                self.hash_max_listpack_value.to_string()
            }
            "set-max-intset-entries" => self.set_max_intset_entries.to_string(),
            "zset-max-listpack-entries" | "zset-max-ziplist-entries" => {
                self.zset_max_listpack_entries.to_string()
            }
            "zset-max-listpack-value" | "zset-max-ziplist-value" => {
                self.zset_max_listpack_value.to_string()
            }
            "list-max-listpack-size" | "list-max-ziplist-size" => {
                self.list_max_listpack_size.to_string()
            }
            "hz" => self.hz.to_string(),
            "maxmemory" => self.maxmemory.to_string(),
            "maxmemory-policy" => self.maxmemory_policy.clone(),
            "timeout" => self.timeout.to_string(),
            "io-threads" => self.io_threads.to_string(),
            "lease-interval-ms" => self.lease_interval_ms.to_string(),
            "bind" => self
                .listen
                .rsplit_once(':')
                .map(|(h, _)| h.to_string())
                .unwrap_or_default(),
            "port" => self
                .listen
                .rsplit_once(':')
                .map(|(_, p)| p.to_string())
                .unwrap_or_default(),
            "save" => String::new(),
            "appendonly" => "no".into(),
            _ => return None,
        })
    }

    /// Names CONFIG GET knows, for pattern matching.
    pub const PARAMS: &'static [&'static str] = &[
        "requirepass",
        "maxclients",
        "databases",
        "proto-max-bulk-len",
        "client-query-buffer-limit",
        "notify-keyspace-events",
        "hash-max-listpack-entries",
        "hash-max-listpack-value",
        "set-max-intset-entries",
        "zset-max-listpack-entries",
        "zset-max-listpack-value",
        "list-max-listpack-size",
        "hz",
        "maxmemory",
        "maxmemory-policy",
        "timeout",
        "io-threads",
        "lease-interval-ms",
        "bind",
        "port",
        "save",
        "appendonly",
    ];

    /// CONFIG SET of one parameter.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        fn num<T: std::str::FromStr>(v: &str) -> Result<T, ConfigError> {
            v.parse()
                .map_err(|_| ConfigError("argument couldn't be parsed into an integer".into()))
        }
        match name {
            "requirepass" => {
                self.requirepass = if value.is_empty() {
                    None
                } else {
                    Some(value.to_string())
                }
            }
            "maxclients" => self.maxclients = num(value)?,
            "proto-max-bulk-len" => self.proto_max_bulk_len = parse_memory(value)?,
            "client-query-buffer-limit" => self.client_query_buffer_limit = parse_memory(value)?,
            "notify-keyspace-events" => {
                crate::notify::parse_flags(value).ok_or_else(|| {
                    ConfigError("Invalid event class character. Use 'Ag$lshzxeKEtmd'.".into())
                })?;
                self.notify_keyspace_events = value.to_string();
            }
            "hash-max-listpack-entries" | "hash-max-ziplist-entries" => {
                self.hash_max_listpack_entries = num(value)?
            }
            "hash-max-listpack-value" | "hash-max-ziplist-value" => {
                self.hash_max_listpack_value = num(value)?
            }
            "set-max-intset-entries" => self.set_max_intset_entries = num(value)?,
            "zset-max-listpack-entries" | "zset-max-ziplist-entries" => {
                self.zset_max_listpack_entries = num(value)?
            }
            "zset-max-listpack-value" | "zset-max-ziplist-value" => {
                self.zset_max_listpack_value = num(value)?
            }
            "list-max-listpack-size" | "list-max-ziplist-size" => {
                self.list_max_listpack_size = num(value)?
            }
            "hz" => {
                let hz: u32 = num(value)?;
                self.hz = hz.clamp(1, 500);
            }
            "maxmemory" => self.maxmemory = parse_memory(value)?,
            "maxmemory-policy" => {
                const POLICIES: &[&str] = &[
                    "noeviction",
                    "allkeys-lru",
                    "allkeys-lfu",
                    "allkeys-random",
                    "volatile-lru",
                    "volatile-lfu",
                    "volatile-random",
                    "volatile-ttl",
                ];
                let v = value.to_ascii_lowercase();
                if !POLICIES.contains(&v.as_str()) {
                    return Err(ConfigError("argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction".into()));
                }
                self.maxmemory_policy = v;
            }
            "timeout" => self.timeout = num(value)?,
            "lease-interval-ms" => {
                let ms: u64 = num(value)?;
                if ms == 0 {
                    return Err(ConfigError(
                        "argument must be between 1 and 9223372036854775807 inclusive".into(),
                    ));
                }
                self.lease_interval_ms = ms;
            }
            "save" | "appendonly" => {}
            _ => {
                return Err(ConfigError(
                    "Unknown option or number of arguments for CONFIG SET".into(),
                ))
            }
        }
        Ok(())
    }
}

/// Parses `100`, `1kb`, `5mb`, `2gb` (and `k`, `m`, `g` as powers of 1000), as Redis does.
pub fn parse_memory(v: &str) -> Result<u64, ConfigError> {
    let l = v.to_ascii_lowercase();
    let (digits, mul) = if let Some(d) = l.strip_suffix("kb") {
        (d, 1024)
    } else if let Some(d) = l.strip_suffix("mb") {
        (d, 1024 * 1024)
    } else if let Some(d) = l.strip_suffix("gb") {
        (d, 1024 * 1024 * 1024)
    } else if let Some(d) = l.strip_suffix('k') {
        (d, 1000)
    } else if let Some(d) = l.strip_suffix('m') {
        (d, 1000 * 1000)
    } else if let Some(d) = l.strip_suffix('g') {
        (d, 1000 * 1000 * 1000)
    } else if let Some(d) = l.strip_suffix('b') {
        (d, 1)
    } else {
        (l.as_str(), 1)
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| ConfigError("argument must be a memory value".into()))
}
