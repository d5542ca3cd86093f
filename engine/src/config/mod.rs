//! Engine settings, in one table as Redis's `config.c` keeps them.
//!
//! Each row of `settings!` below declares a setting once: its `[engine]` key and
//! field type, its default, its CONFIG name and older aliases, its kind (yes/no,
//! bounded integer, memory size with units, one of a list, or special text) and
//! whether CONFIG SET may change it. From that one row come the field of
//! [`EngineConfig`], its default, the TOML `[engine]` key and its checks, CONFIG GET
//! (glob patterns, aliases), CONFIG SET (Redis's texts, all or nothing) and
//! [`EngineConfig::validate`] for configs built in code. INFO reads the same fields.
//! Adding a setting is adding a row.

pub(crate) mod rewrite;
mod setting;

pub(crate) use setting::{parse_memory, Setting, Value, IMMUTABLE, PROTECTED};
pub use setting::{SettingError, SettingValue};

use crate::store::Store;
use setting::Field;

/// Declares [`EngineConfig`] (fields, defaults, TOML keys) and the table
/// [`SETTINGS`] from one list of rows: `field: Type = default => row;` for settings
/// with a field, then `@views { row; ... }` for CONFIG parameters without one.
macro_rules! settings {
    (
        $(
            $(#[doc = $doc:expr])*
            $field:ident: $ty:ty = $default:expr => $row:expr;
        )*
        @views {
            $( $view:expr; )*
        }
    ) => {
        /// Settings of the engine: the `[engine]` section of the config file, changed
        /// at run time by CONFIG SET. Field names are Redis's config names with `_`
        /// for `-` (`engine/src/config/mod.rs` is the table they come from).
        #[derive(Debug, Clone, PartialEq)]
        pub struct EngineConfig {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for EngineConfig {
            fn default() -> Self {
                EngineConfig { $( $field: $default, )* }
            }
        }

        /// The settings table.
        pub(crate) static SETTINGS: &[Setting] = &[
            $(
                Setting {
                    key: Some(stringify!($field)),
                    doc: concat!($($doc, "\n",)*),
                    get: |c: &EngineConfig| Field::to_value(&c.$field),
                    put: |c: &mut EngineConfig, v| match <$ty as Field>::from_value(v) {
                        Some(x) => {
                            c.$field = x;
                            true
                        }
                        None => false,
                    },
                    ..$row
                },
            )*
            $( $view, )*
        ];

        /// The `[engine]` keys, for "unknown key" errors.
        const KEYS: &[&str] = &[$( stringify!($field) ),*];
    };
}

settings! {
    /// Address to listen on (`host:port`); port 0 picks a free one.
    listen: String = "127.0.0.1:6380".into() =>
        Setting::special("listen", check_listen, same).file_only().immutable();
    /// Password of the default user; `None` means no AUTH required.
    requirepass: Option<String> = None => Setting::special("requirepass", any, same);
    /// Redis's `protected-mode`: with no `requirepass`, connections from peers that
    /// are not on the loopback interface get Redis's `-DENIED` text and are closed.
    protected_mode: bool = true => Setting::boolean("protected-mode");
    /// Most connected clients; one more is refused with `-ERR max number of clients reached`.
    maxclients: usize = 10000 => Setting::int("maxclients", 1, u32::MAX as i64);
    /// Number of databases SELECT accepts.
    databases: usize = 16 => Setting::int("databases", 1, 10_000).immutable();
    /// Longest bulk string a client may send.
    proto_max_bulk_len: u64 = 512 * 1024 * 1024 =>
        Setting::memory("proto-max-bulk-len", 1024 * 1024, i64::MAX as u64);
    /// Most bytes buffered from one client before it is disconnected.
    client_query_buffer_limit: u64 = 1024 * 1024 * 1024 =>
        Setting::memory("client-query-buffer-limit", 1024 * 1024, i64::MAX as u64);
    /// Keyspace notification classes, as in Redis (`KEA`, `Ex`, ...).
    notify_keyspace_events: String = String::new() =>
        Setting::special("notify-keyspace-events", check_notify, show_notify)
            .apply(Store::reload_notify_flags);
    /// Listpack-encoded hashes hold at most this many fields.
    hash_max_listpack_entries: usize = 512 =>
        Setting::int("hash-max-listpack-entries", 0, i64::MAX).alias(&["hash-max-ziplist-entries"]);
    /// Listpack-encoded hashes hold no field or value longer than this.
    hash_max_listpack_value: usize = 64 =>
        Setting::memory("hash-max-listpack-value", 0, i64::MAX as u64).alias(&["hash-max-ziplist-value"]);
    /// Intset-encoded sets hold at most this many integers.
    set_max_intset_entries: usize = 512 => Setting::int("set-max-intset-entries", 0, i64::MAX);
    /// Listpack-encoded sorted sets hold at most this many members.
    zset_max_listpack_entries: usize = 128 =>
        Setting::int("zset-max-listpack-entries", 0, i64::MAX).alias(&["zset-max-ziplist-entries"]);
    /// Listpack-encoded sorted sets hold no member longer than this.
    zset_max_listpack_value: usize = 64 =>
        Setting::memory("zset-max-listpack-value", 0, i64::MAX as u64).alias(&["zset-max-ziplist-value"]);
    /// Size of a list's listpack nodes (negative: -1..-5 for 4..64 KiB).
    list_max_listpack_size: i64 = -2 =>
        Setting::int("list-max-listpack-size", i32::MIN as i64, i32::MAX as i64)
            .alias(&["list-max-ziplist-size"]);
    /// A stream block closes once it would take this many bytes as a listpack (0: no
    /// limit but the listpack's own).
    stream_node_max_bytes: usize = 4096 =>
        Setting::memory("stream-node-max-bytes", 0, i64::MAX as u64);
    /// A stream block closes once it holds this many entries, deleted ones included
    /// (0: no limit).
    stream_node_max_entries: usize = 100 =>
        Setting::int("stream-node-max-entries", 0, i64::MAX);
    /// Largest sparse HyperLogLog before it turns dense.
    hll_sparse_max_bytes: u64 = crate::types::hll::DEFAULT_SPARSE_MAX_BYTES as u64 =>
        Setting::memory("hll-sparse-max-bytes", 0, i64::MAX as u64);
    /// Lists' quicklist compression depth: accepted and shown as Redis does; the
    /// engine's lists are not compressed (Redis 7.0 reports `quicklist` either way).
    list_compress_depth: u32 = 0 => Setting::int("list-compress-depth", 0, i32::MAX as i64);
    /// Commands that take at least this many microseconds go to the SLOWLOG (0: every
    /// command, negative: none).
    slowlog_log_slower_than: i64 = 10_000 =>
        Setting::int("slowlog-log-slower-than", -1, i64::MAX);
    /// The SLOWLOG keeps this many entries, the oldest dropped first.
    slowlog_max_len: u64 = 128 =>
        Setting::int("slowlog-max-len", 0, i64::MAX).apply(Store::trim_slowlog);
    /// LATENCY samples events that take at least this many milliseconds (0: off).
    latency_monitor_threshold: i64 = 0 =>
        Setting::int("latency-monitor-threshold", 0, i64::MAX);
    /// Per-command latency histograms (LATENCY HISTOGRAM, INFO latencystats).
    latency_tracking: bool = true => Setting::boolean("latency-tracking");
    /// The percentiles INFO latencystats reports, space-separated.
    latency_tracking_info_percentiles: String = "50 99 99.9".into() =>
        Setting::special(
            "latency-tracking-info-percentiles",
            check_percentiles,
            same,
        );
    /// How hard active expiry works, 1..10: keys sampled per database per loop (20
    /// at 1, 5 more per step, as Redis's `ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP`).
    active_expire_effort: u32 = 1 => Setting::int("active-expire-effort", 1, 10);
    /// Active expiry cycles per second (clamped to 1..=500 as in Redis).
    hz: u32 = 10 => Setting::int("hz", 0, i32::MAX as i64).normalize(clamp_hz);
    /// Memory limit in bytes (0: none): above it, keys are evicted by
    /// `maxmemory-policy` before each command ([`crate::keyspace::evict`]).
    maxmemory: u64 = 0 =>
        Setting::memory("maxmemory", 0, i64::MAX as u64).apply(Store::apply_maxmemory);
    /// Which keys go when memory is over `maxmemory` (Redis's eight policies).
    maxmemory_policy: String = "noeviction".into() => Setting::one_of(
        "maxmemory-policy",
        &[
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "noeviction",
            "allkeys-tinylfu",
        ],
    )
    .apply(Store::reload_eviction);
    /// Milliseconds a script may run before other clients get `-BUSY` and SCRIPT KILL /
    /// FUNCTION KILL / SHUTDOWN NOSAVE may stop it (0: never busy).
    busy_reply_threshold: u64 = 5000 =>
        Setting::int("busy-reply-threshold", 0, i64::MAX).alias(&["lua-time-limit"]);
    /// Keys sampled per database for each eviction (more: closer to true LRU/LFU).
    maxmemory_samples: u32 = 5 => Setting::int("maxmemory-samples", 1, i32::MAX as i64);
    /// How long one command may spend evicting, 0..100 (10: 500 us, 100: no limit).
    maxmemory_eviction_tenacity: u32 = 10 => Setting::int("maxmemory-eviction-tenacity", 0, 100);
    /// LFU counter's logarithm factor: higher, more hits per increment.
    lfu_log_factor: u32 = 10 =>
        Setting::int("lfu-log-factor", 0, i32::MAX as i64).apply(Store::reload_eviction);
    /// Minutes per decrement of an idle key's LFU counter (0: never decays).
    lfu_decay_time: u32 = 1 =>
        Setting::int("lfu-decay-time", 0, i32::MAX as i64).apply(Store::reload_eviction);
    /// Evicted values are freed off the command path (and propagated as UNLINK).
    lazyfree_lazy_eviction: bool = false => Setting::boolean("lazyfree-lazy-eviction");
    /// Expired values are freed off the command path.
    lazyfree_lazy_expire: bool = false => Setting::boolean("lazyfree-lazy-expire");
    /// Values deleted as a side effect (RENAME over a key, SET over a value) are freed
    /// off the command path.
    lazyfree_lazy_server_del: bool = false => Setting::boolean("lazyfree-lazy-server-del");
    /// DEL behaves as UNLINK.
    lazyfree_lazy_user_del: bool = false => Setting::boolean("lazyfree-lazy-user-del");
    /// FLUSHDB and FLUSHALL without SYNC/ASYNC behave as with ASYNC.
    lazyfree_lazy_user_flush: bool = false => Setting::boolean("lazyfree-lazy-user-flush");
    /// Who may run DEBUG: `no` (nobody, Redis 7's default, so that one client cannot
    /// freeze every other with DEBUG SLEEP), `yes`, or `local` (loopback connections).
    /// Set in the config file only, as in Redis.
    enable_debug_command: String = "no".into() =>
        Setting::one_of("enable-debug-command", &["no", "yes", "local"]).immutable();
    /// Output buffer limits per client class (`<class> <hard> <soft> <seconds>`
    /// groups; Redis's defaults: normal unlimited, replica 256mb 64mb 60, pubsub
    /// 32mb 8mb 60). A CONFIG SET names only the classes it changes.
    client_output_buffer_limit: String = crate::outbuf::DEFAULT_TEXT.into() =>
        Setting::special("client-output-buffer-limit", check_obl, show_obl)
            .apply(Store::reload_output_limits);
    /// TCP keepalive of client connections, in seconds (0: off): the probe interval
    /// set on each accepted socket, as Redis's `anetKeepAlive` (idle time, a third
    /// of it between probes, 3 probes).
    tcp_keepalive: u32 = 300 => Setting::int("tcp-keepalive", 0, i32::MAX as i64);
    /// Client-side caching: the most keys the tracking table remembers (0: no
    /// limit); over it, random keys are invalidated before the next command.
    tracking_table_max_keys: usize = 1_000_000 =>
        Setting::int("tracking-table-max-keys", 0, i64::MAX);
    /// Seconds an idle client may stay connected (0: forever).
    timeout: u64 = 0 => Setting::int("timeout", 0, i32::MAX as i64);
    /// Threads that run client connections (Redis's `io-threads`, default 1). Commands
    /// run one at a time under the store lock either way; on a small machine one
    /// thread avoids lock hand-offs between threads and is fastest.
    io_threads: usize = 1 => Setting::int("io-threads", 1, 128).immutable();
    /// Log every write to the append-only file (`appendonly`). CONFIG SET yes starts
    /// it with a rewrite, as Redis; at start the AOF is loaded when this is yes.
    appendonly: bool = false =>
        Setting::boolean("appendonly").try_apply(crate::persist::aof::apply_appendonly);
    /// When the AOF is fsynced: `always` (a write is acknowledged once on disk),
    /// `everysec` (once a second, in the background) or `no` (the OS decides).
    appendfsync: String = "everysec".into() =>
        Setting::one_of("appendfsync", &["everysec", "always", "no"])
            .try_apply(crate::persist::aof::apply_policy);
    /// Base name of the AOF's files (`appendonly.aof.1.base.rdb`, ...).
    appendfilename: String = "appendonly.aof".into() =>
        Setting::special("appendfilename", check_file_name, same).immutable();
    /// The AOF directory's name, inside `dir`.
    appenddirname: String = "appendonlydir".into() =>
        Setting::special("appenddirname", check_file_name, same).immutable();
    /// Write the AOF's base as an RDB (yes) or as commands (no).
    aof_use_rdb_preamble: bool = true => Setting::boolean("aof-use-rdb-preamble");
    /// Load an AOF whose last file ends inside a command, up to its last complete
    /// command (yes), or refuse to start (no).
    aof_load_truncated: bool = true => Setting::boolean("aof-load-truncated");
    /// Rewrite the AOF when it grew by this percentage since the last rewrite (0: never).
    auto_aof_rewrite_percentage: u32 = 100 =>
        Setting::int("auto-aof-rewrite-percentage", 0, i32::MAX as i64);
    /// ... and is at least this big.
    auto_aof_rewrite_min_size: u64 = 64 * 1024 * 1024 =>
        Setting::memory("auto-aof-rewrite-min-size", 0, i64::MAX as u64);
    /// Write `#TS:<unix time>` annotations into the AOF.
    aof_timestamp_enabled: bool = false =>
        Setting::boolean("aof-timestamp-enabled").try_apply(crate::persist::aof::apply_policy);
    /// Lease interval in ms (LEASEGET): one token per key per interval; a lease older
    /// than this is void and may be granted again.
    lease_interval_ms: u64 = 10_000 => Setting::int("lease-interval-ms", 1, i64::MAX);

    /// Directory of the persistence files (Redis's `dir`; relative to the working
    /// directory): the RDB file and the AOF directory `appenddirname` are in it.
    dir: String = ".".into() =>
        Setting::special("dir", check_nonempty, show_dir).protected();
    /// The RDB file's name in `dir`.
    dbfilename: String = "dump.rdb".into() =>
        Setting::special("dbfilename", check_dbfilename, same).protected();
    /// Save points: pairs of seconds and changes ("3600 1 300 100 60 10000", Redis's
    /// default); "" turns the schedule (and saving at shutdown) off.
    save: String = "3600 1 300 100 60 10000".into() =>
        Setting::special("save", crate::persist::save::normalize_save, same);
    /// LZF-compress strings in RDB files.
    rdbcompression: bool = true => Setting::boolean("rdbcompression");
    /// Write (and check) the RDB files' CRC64 trailer.
    rdbchecksum: bool = true => Setting::boolean("rdbchecksum");
    /// Refuse writes with `-MISCONF` while the last BGSAVE failed (and save points are set).
    stop_writes_on_bgsave_error: bool = true => Setting::boolean("stop-writes-on-bgsave-error");
    /// Microseconds a background save pauses after each key (Redis's test knob, to make
    /// a save slow deterministically); 0 in production.
    rdb_key_save_delay: u64 = 0 => Setting::int("rdb-key-save-delay", 0, i32::MAX as i64);

    /// Start as a replica of `host port` (Redis's `replicaof`; REPLICAOF changes it
    /// at run time). Unset: a primary.
    replicaof: Option<String> = None =>
        Setting::special("replicaof", check_replicaof, same).alias(&["slaveof"]).immutable();
    /// Bytes of the replication stream kept for partial resyncs (`+CONTINUE`).
    repl_backlog_size: u64 = 1024 * 1024 =>
        Setting::memory("repl-backlog-size", 1, i64::MAX as u64).apply(Store::apply_backlog_size);
    /// A replica refuses writes from clients with `-READONLY`.
    replica_read_only: bool = true =>
        Setting::boolean("replica-read-only").alias(&["slave-read-only"]);
    /// A replica whose link is down still answers reads (no: `-MASTERDOWN`).
    replica_serve_stale_data: bool = true =>
        Setting::boolean("replica-serve-stale-data").alias(&["slave-serve-stale-data"]);
    /// The password a replica AUTHs with at its primary.
    masterauth: Option<String> = None => Setting::special("masterauth", any, same);
    /// The user a replica AUTHs as (with `masterauth`); unset: the default user.
    masteruser: Option<String> = None => Setting::special("masteruser", any, same);
    /// Writes are refused (`-NOREPLICAS`) unless this many replicas are online
    /// with a lag of at most `min-replicas-max-lag` seconds (0: off).
    min_replicas_to_write: u64 = 0 =>
        Setting::int("min-replicas-to-write", 0, i32::MAX as i64).alias(&["min-slaves-to-write"]);
    /// See `min-replicas-to-write`.
    min_replicas_max_lag: u64 = 10 =>
        Setting::int("min-replicas-max-lag", 0, i32::MAX as i64).alias(&["min-slaves-max-lag"]);
    /// Full syncs stream the snapshot to replicas that accept it (`$EOF:`) instead
    /// of sending it with its length first.
    repl_diskless_sync: bool = true => Setting::boolean("repl-diskless-sync");
    /// Seconds a diskless full sync waits before it starts.
    repl_diskless_sync_delay: u64 = 5 =>
        Setting::int("repl-diskless-sync-delay", 0, i32::MAX as i64);
    /// Seconds without data from the primary before a replica drops the link.
    repl_timeout: u64 = 60 => Setting::int("repl-timeout", 1, i32::MAX as i64);
    /// Seconds between the PINGs a primary sends its replicas.
    repl_ping_replica_period: u64 = 10 =>
        Setting::int("repl-ping-replica-period", 1, i32::MAX as i64)
            .alias(&["repl-ping-slave-period"]);
    /// Sentinel promotes the replica with the lowest priority first; 0: never.
    replica_priority: u64 = 100 =>
        Setting::int("replica-priority", 0, i32::MAX as i64).alias(&["slave-priority"]);
    /// Sentinel lists this replica (INFO `replica_announced`).
    replica_announced: bool = true => Setting::boolean("replica-announced");

    @views {
        Setting::special("bind", any, same).immutable().view(bind_of, refuse);
        Setting::special("port", any, same).immutable().view(port_of, refuse);
    }
}

fn any(s: &str) -> Result<String, String> {
    Ok(s.to_string())
}

fn same(s: &str) -> String {
    s.to_string()
}

fn refuse(_: &mut EngineConfig, _: Value) -> bool {
    false
}

/// `host port`, or empty/`no one` for none.
fn check_replicaof(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    match parts.as_slice() {
        [] => Ok(String::new()),
        [host, port] if port.parse::<u16>().is_ok() && !host.is_empty() => {
            Ok(format!("{host} {port}"))
        }
        _ => Err(format!("{s:?} is not `host port`")),
    }
}

fn check_nonempty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("argument must not be empty".into());
    }
    Ok(s.to_string())
}

/// `dbfilename` is a name, not a path (Redis refuses paths).
fn check_dbfilename(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains('/') {
        return Err("dbfilename can't be a path, just a filename".into());
    }
    Ok(s.to_string())
}

/// CONFIG GET dir shows the absolute path, as Redis (which chdir()s into it) does.
fn show_dir(s: &str) -> String {
    std::fs::canonicalize(s)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| s.to_string())
}

fn check_listen(s: &str) -> Result<String, String> {
    s.parse::<std::net::SocketAddr>()
        .map(|_| s.to_string())
        .map_err(|e| format!("{s:?} is not an address (host:port): {e}"))
}

/// A file name without a directory (`appendfilename`, `appenddirname`), as Redis's
/// `isValidAOFfilename`.
fn check_file_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s == "." || s == ".." || s.contains('/') {
        return Err("must be a file name, not a path".into());
    }
    Ok(s.to_string())
}

fn bind_of(c: &EngineConfig) -> Value {
    Value::Text(
        c.listen
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_default(),
    )
}

fn port_of(c: &EngineConfig) -> Value {
    Value::Text(
        c.listen
            .rsplit_once(':')
            .map(|(_, p)| p.to_string())
            .unwrap_or_default(),
    )
}

fn check_obl(s: &str) -> Result<String, String> {
    let mut l = crate::outbuf::DEFAULT_LIMITS;
    l.apply(s)?;
    // Kept as given (normalised): CONFIG SET merges it over the current limits.
    Ok(s.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn show_obl(s: &str) -> String {
    let mut l = crate::outbuf::DEFAULT_LIMITS;
    let _ = l.apply(s);
    l.format()
}

fn check_notify(s: &str) -> Result<String, String> {
    crate::keyspace::notify::parse_flags(s)
        .map(|_| s.to_string())
        .ok_or_else(|| "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".into())
}

fn show_notify(s: &str) -> String {
    crate::keyspace::notify::flags_to_string(crate::keyspace::notify::parse_flags(s).unwrap_or(0))
}

/// Percentiles between 0 and 100, shown as Redis prints them (`%f`, trailing zeros
/// trimmed).
fn check_percentiles(s: &str) -> Result<String, String> {
    let mut out = Vec::new();
    for w in s.split_whitespace() {
        let p: f64 = w
            .parse()
            .map_err(|_| "Invalid latency-tracking-info-percentiles parameters".to_string())?;
        if !(0.0..=100.0).contains(&p) {
            return Err(
                "latency-tracking-info-percentiles parameters should sit between [0.0,100.0]"
                    .into(),
            );
        }
        out.push(crate::util::trim_double(&format!("{p:.6}")));
    }
    Ok(out.join(" "))
}

/// The percentiles of `latency-tracking-info-percentiles`.
pub(crate) fn percentiles(s: &str) -> Vec<(String, f64)> {
    s.split_whitespace()
        .filter_map(|w| w.parse().ok().map(|p| (w.to_string(), p)))
        .collect()
}

fn clamp_hz(v: Value) -> Value {
    match v {
        Value::Num(n) => Value::Num(n.clamp(1, 500)),
        v => v,
    }
}

/// The CONFIG parameter `name` (any case, aliases too).
pub(crate) fn lookup(name: &str) -> Option<&'static Setting> {
    let name = name.to_ascii_lowercase();
    SETTINGS.iter().find(|s| s.answers_to(&name))
}

impl EngineConfig {
    /// Checks every setting's value (a config built in code; the file's values are
    /// checked as they are read).
    pub fn validate(&self) -> Result<(), SettingError> {
        for s in SETTINGS {
            let Some(key) = s.key else { continue };
            s.check(self).map_err(|message| SettingError {
                key: key.to_string(),
                message,
            })?;
        }
        Ok(())
    }

    /// Sets one `[engine]` key from a config file or environment value, with the
    /// same checks as CONFIG SET (an unknown key is an error too).
    pub fn set_key(&mut self, key: &str, value: SettingValue) -> Result<(), SettingError> {
        let err = |message: String| SettingError {
            key: key.to_string(),
            message,
        };
        let row = SETTINGS
            .iter()
            .find(|s| s.key == Some(key))
            .ok_or_else(|| {
                err(format!(
                    "unknown key; the [engine] keys are {}",
                    KEYS.join(", ")
                ))
            })?;
        let v = row.accept(value).map_err(err)?;
        if (row.put)(self, v) {
            Ok(())
        } else {
            Err(err("value out of range".into()))
        }
    }

    /// CONFIG GET's text of the parameter `name`.
    pub(crate) fn show(&self, name: &str) -> Option<String> {
        lookup(name).map(|s| s.show(self))
    }
}

/// Checks one `[engine]` key and value as a config file gives it, without a config at
/// hand: what loading the file would say about it.
pub fn check_setting(key: &str, value: SettingValue) -> Result<(), SettingError> {
    EngineConfig::default().set_key(key, value)
}

/// One `[engine]` key as the configuration reference shows it, from its row of the
/// settings table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingDoc {
    /// The `[engine]` key.
    pub key: &'static str,
    /// The CONFIG name; `None` for a key that is set in the file only (`listen`).
    pub config_name: Option<&'static str>,
    /// Older CONFIG names still accepted.
    pub aliases: &'static [&'static str],
    /// What it does: the field's doc comment, on one line.
    pub doc: String,
    /// The default, as CONFIG GET shows it.
    pub default: String,
    /// What values it takes.
    pub accepts: String,
    /// Whether CONFIG SET may change it at run time.
    pub runtime: bool,
    /// A value (TOML) the key refuses, to show what a bad value reports; `None` for
    /// free text.
    pub bad_example: Option<String>,
}

/// Every `[engine]` key, in table order, for the configuration reference.
pub fn settings_reference() -> Vec<SettingDoc> {
    let defaults = EngineConfig::default();
    SETTINGS
        .iter()
        .filter_map(|s| {
            let key = s.key?;
            Some(SettingDoc {
                key,
                config_name: s.in_config().then_some(s.name),
                aliases: s.aliases,
                // One line, intra-doc links as plain code.
                doc: s
                    .doc
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .replace("[`", "`")
                    .replace("`]", "`"),
                // Free text as written (CONFIG GET dir would show this machine's path).
                default: match ((s.get)(&defaults), s.kind) {
                    (Value::Text(t), setting::Kind::Special { .. }) => t,
                    _ => s.show(&defaults),
                },
                accepts: s.kind.describe(),
                runtime: s.in_config() && s.flags & (IMMUTABLE | PROTECTED) == 0,
                bad_example: s.kind.bad_example(),
            })
        })
        .collect()
}

/// The `[engine]` section: every key goes through [`EngineConfig::set_key`], so a
/// file is checked exactly as CONFIG SET checks (and a bad value fails the load, at
/// its line).
impl<'de> serde::Deserialize<'de> for EngineConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(SectionVisitor)
    }
}

struct SectionVisitor;

impl<'de> serde::de::Visitor<'de> for SectionVisitor {
    type Value = EngineConfig;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the [engine] table")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<EngineConfig, A::Error> {
        let mut cfg = EngineConfig::default();
        while let Some(key) = map.next_key::<String>()? {
            // The value is read through a seed, so an error carries the value's place
            // in the file.
            map.next_value_seed(KeySeed {
                key: &key,
                cfg: &mut cfg,
            })?;
        }
        Ok(cfg)
    }
}

/// Reads one key's value into the config.
struct KeySeed<'a> {
    key: &'a str,
    cfg: &'a mut EngineConfig,
}

impl<'de> serde::de::DeserializeSeed<'de> for KeySeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        use serde::de::Error;
        if !KEYS.contains(&self.key) {
            return Err(D::Error::unknown_field(self.key, KEYS));
        }
        let scalar = d.deserialize_any(ScalarVisitor)?;
        let value = match &scalar {
            Scalar::Bool(b) => SettingValue::Bool(*b),
            Scalar::Int(n) => SettingValue::Int(*n),
            Scalar::Float(f) => SettingValue::Float(*f),
            Scalar::Str(s) => SettingValue::Str(s),
        };
        // The message only: the error's span places it at its section and key.
        self.cfg
            .set_key(self.key, value)
            .map_err(|e| D::Error::custom(e.message))
    }
}

/// A TOML scalar.
enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

struct ScalarVisitor;

impl serde::de::Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string, an integer or a boolean")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
        i64::try_from(v)
            .map(Scalar::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Str(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_one_row_and_defaults_pass_their_checks() {
        let keys: Vec<_> = SETTINGS.iter().filter_map(|s| s.key).collect();
        assert_eq!(keys, KEYS);
        EngineConfig::default().validate().unwrap();
        let mut names: Vec<_> = SETTINGS
            .iter()
            .flat_map(|s| std::iter::once(s.name).chain(s.aliases.iter().copied()))
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(
            names.len(),
            SETTINGS.iter().map(|s| 1 + s.aliases.len()).sum::<usize>()
        );
    }

    #[test]
    fn the_reference_has_every_key_with_its_doc() {
        let docs = settings_reference();
        assert_eq!(docs.iter().map(|d| d.key).collect::<Vec<_>>(), KEYS);
        for d in &docs {
            assert!(!d.doc.is_empty(), "{} has no doc comment", d.key);
            if let Some(bad) = &d.bad_example {
                let v: toml::Value =
                    format!("v = {bad}").parse::<toml::Table>().unwrap()["v"].clone();
                let sv = match &v {
                    toml::Value::String(s) => SettingValue::Str(s),
                    toml::Value::Integer(n) => SettingValue::Int(*n),
                    other => panic!("{other:?}"),
                };
                assert!(check_setting(d.key, sv).is_err(), "{} accepts {bad}", d.key);
            }
        }
        let listen = &docs[0];
        assert_eq!(
            (listen.key, listen.config_name, listen.runtime),
            ("listen", None, false)
        );
        assert_eq!(listen.default, "127.0.0.1:6380");
        let maxclients = docs.iter().find(|d| d.key == "maxclients").unwrap();
        assert_eq!(maxclients.accepts, "integer, 1 to 4294967295");
        assert!(maxclients.runtime);
    }

    #[test]
    fn config_values_are_checked_like_redis() {
        let set = |name: &str, v: &str| lookup(name).unwrap().parse(v);
        assert_eq!(set("hash-max-listpack-value", "1kb"), Ok(Value::Num(1024)));
        assert!(set("maxclients", "0")
            .unwrap_err()
            .contains("between 1 and 4294967295"));
        assert!(set("maxmemory", "-1").unwrap_err().contains("memory value"));
        assert_eq!(
            lookup("hash-max-ziplist-entries").map(|s| s.name),
            Some("hash-max-listpack-entries")
        );
        assert_eq!(set("hz", "1000"), Ok(Value::Num(500)));
        assert_eq!(
            set("maxmemory-policy", "ALLKEYS-LRU"),
            Ok(Value::Text("allkeys-lru".into()))
        );
        assert!(
            lookup("listen").is_none(),
            "listen is not a CONFIG parameter"
        );
        let cfg = EngineConfig {
            listen: "10.0.0.1:7000".into(),
            ..Default::default()
        };
        assert_eq!(cfg.show("bind").as_deref(), Some("10.0.0.1"));
        assert_eq!(cfg.show("PORT").as_deref(), Some("7000"));
    }

    #[test]
    fn file_values_go_through_the_same_checks() {
        let mut cfg = EngineConfig::default();
        cfg.set_key("maxclients", SettingValue::Int(7)).unwrap();
        cfg.set_key("proto_max_bulk_len", SettingValue::Str("2mb"))
            .unwrap();
        cfg.set_key("maxmemory_policy", SettingValue::Str("allkeys-LRU"))
            .unwrap();
        cfg.set_key("requirepass", SettingValue::Str("")).unwrap();
        assert_eq!(
            (cfg.maxclients, cfg.proto_max_bulk_len),
            (7, 2 * 1024 * 1024)
        );
        assert_eq!(
            (cfg.maxmemory_policy.as_str(), cfg.requirepass.as_deref()),
            ("allkeys-lru", None)
        );
        let err = |k: &str, v: SettingValue| check_setting(k, v).unwrap_err();
        assert_eq!(err("maxclients", SettingValue::Int(0)).key, "maxclients");
        assert!(err("maxclients", SettingValue::Str("7"))
            .message
            .contains("expected an integer"));
        assert!(err("listen", SettingValue::Int(5))
            .message
            .contains("expected a string"));
        assert!(err("listen", SettingValue::Str("nowhere"))
            .message
            .contains("not an address"));
        assert!(err("notify_keyspace_events", SettingValue::Str("Q"))
            .message
            .contains("Invalid event class"));
        assert!(err("maxclientz", SettingValue::Int(5))
            .message
            .contains("unknown key"));
        assert!(err("databases", SettingValue::Int(0))
            .message
            .contains("between 1 and 10000"));
        let bad = EngineConfig {
            io_threads: 0,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().key, "io_threads");
    }

    #[test]
    fn toml_section_is_read_through_the_table() {
        #[derive(serde::Deserialize)]
        struct File {
            engine: EngineConfig,
        }
        let f: File = toml::from_str(
            "[engine]\nlisten = \"127.0.0.1:0\"\nmaxclients = 7\nmaxmemory = \"1mb\"\nhz = 0\n",
        )
        .unwrap();
        assert_eq!(f.engine.maxclients, 7);
        assert_eq!(f.engine.maxmemory, 1024 * 1024);
        assert_eq!(f.engine.hz, 1, "clamped as CONFIG SET hz 0 is");
        let err = |text: &str| {
            toml::from_str::<File>(text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let e = err("[engine]\nlisten = \"127.0.0.1:0\"\nmaxclients = 0\n");
        assert!(
            e.contains("line 3") && e.contains("maxclients") && e.contains("between 1 and"),
            "{e}"
        );
        let e = err("[engine]\nmaxclientz = 5\n");
        assert!(e.contains("line 2") && e.contains("maxclientz"), "{e}");
        let e = err("[engine]\nlisten = 5\n");
        assert!(
            e.contains("listen") && e.contains("expected a string"),
            "{e}"
        );
        let e = err("[engine]\nmaxmemory_policy = \"sometimes\"\n");
        assert!(e.contains("must be one of the following"), "{e}");
    }
}
