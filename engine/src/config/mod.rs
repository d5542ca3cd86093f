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

mod setting;

pub(crate) use setting::{Setting, Value, IMMUTABLE};
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
    /// Largest sparse HyperLogLog before it turns dense.
    hll_sparse_max_bytes: u64 = crate::types::hll::DEFAULT_SPARSE_MAX_BYTES as u64 =>
        Setting::memory("hll-sparse-max-bytes", 0, i64::MAX as u64);
    /// Active expiry cycles per second (clamped to 1..=500 as in Redis).
    hz: u32 = 10 => Setting::int("hz", 0, i32::MAX as i64).normalize(clamp_hz);
    /// Memory limit in bytes (0: none).
    maxmemory: u64 = 0 => Setting::memory("maxmemory", 0, i64::MAX as u64);
    /// Eviction policy (`noeviction`, `allkeys-lru`, ...).
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
        ],
    );
    /// Seconds an idle client may stay connected (0: forever).
    timeout: u64 = 0 => Setting::int("timeout", 0, i32::MAX as i64);
    /// Threads that run client connections (Redis's `io-threads`, default 1). Commands
    /// run one at a time under the store lock either way; on a small machine one
    /// thread avoids lock hand-offs between threads and is fastest.
    io_threads: usize = 1 => Setting::int("io-threads", 1, 128).immutable();
    /// Lease interval in ms (LEASEGET): one token per key per interval; a lease older
    /// than this is void and may be granted again.
    lease_interval_ms: u64 = 10_000 => Setting::int("lease-interval-ms", 1, i64::MAX);

    @views {
        Setting::special("bind", any, same).immutable().view(bind_of, refuse);
        Setting::special("port", any, same).immutable().view(port_of, refuse);
        // Accepted and ignored until persistence exists (clients such as
        // redis-benchmark set them).
        Setting::special("save", any, same).view(|_| Value::Text(String::new()), ignore);
        Setting::boolean("appendonly").view(|_| Value::Bool(false), ignore);
    }
}

fn any(s: &str) -> Result<String, String> {
    Ok(s.to_string())
}

fn same(s: &str) -> String {
    s.to_string()
}

fn ignore(_: &mut EngineConfig, _: Value) -> bool {
    true
}

fn refuse(_: &mut EngineConfig, _: Value) -> bool {
    false
}

fn check_listen(s: &str) -> Result<String, String> {
    s.parse::<std::net::SocketAddr>()
        .map(|_| s.to_string())
        .map_err(|e| format!("{s:?} is not an address (host:port): {e}"))
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

fn check_notify(s: &str) -> Result<String, String> {
    crate::keyspace::notify::parse_flags(s)
        .map(|_| s.to_string())
        .ok_or_else(|| "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".into())
}

fn show_notify(s: &str) -> String {
    crate::keyspace::notify::flags_to_string(crate::keyspace::notify::parse_flags(s).unwrap_or(0))
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
