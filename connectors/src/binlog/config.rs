//! `[mysql]`: which server to tail and where to start.

use super::position::StartPosition;
use crate::config::ConfigError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The `[mysql]` section.
///
/// ```toml
/// [mysql]
/// url = "mysql://coherent:secret@127.0.0.1:3306"
/// server_id = 64001     # or "auto": derived from the host name (see [`auto_server_id`])
/// start = "current"    # "earliest", "gtid:0-1-100", "file:bin.000003:4"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "MysqlToml")]
pub struct MysqlConfig {
    /// `mysql://user:password@host:port`; the user needs REPLICATION SLAVE,
    /// REPLICATION CLIENT and SELECT on information_schema.
    pub url: String,
    /// This replica's id, unique among the server's replicas (with `"auto"`, the id
    /// derived from the host name).
    pub server_id: u32,
    /// `server_id = "auto"` was written: the id was derived from `auto_host`, and
    /// start-up refuses it when another connected replica already uses it.
    #[serde(skip)]
    pub auto_host: Option<String>,
    /// Where to start when no checkpoint exists.
    #[serde(default)]
    pub start: StartPosition,
    /// Seconds between server heartbeats on an idle binlog; the stream is declared
    /// stalled (and reconnected) after three missed ones.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    /// What a checkpoint whose binlog the server purged does: stop the pipeline
    /// (`fail`, the default) or backfill every rule table and go on from the
    /// server's current position (`invalidate`).
    #[serde(default)]
    pub on_purged: OnPurged,
}

/// `[mysql] on_purged`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnPurged {
    /// Stop with the reason: an operator decides.
    #[default]
    Fail,
    /// Take the server's current position, delete the keys of every row of every
    /// rule table (`coherent invalidate --all`), resume at that position.
    Invalidate,
}

fn default_heartbeat() -> u64 {
    5
}

/// `server_id` as written: a number or `"auto"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ServerIdToml {
    Id(u32),
    Word(String),
}

/// The `[mysql]` table as written, before `server_id = "auto"` is resolved.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MysqlToml {
    url: String,
    server_id: ServerIdToml,
    #[serde(default)]
    start: StartPosition,
    #[serde(default = "default_heartbeat")]
    heartbeat_secs: u64,
    #[serde(default)]
    on_purged: OnPurged,
}

impl TryFrom<MysqlToml> for MysqlConfig {
    type Error = String;

    fn try_from(t: MysqlToml) -> Result<Self, String> {
        let (server_id, auto_host) = match t.server_id {
            ServerIdToml::Id(id) => (id, None),
            ServerIdToml::Word(w) if w == "auto" => {
                let host = host_name();
                (auto_server_id(&host), Some(host))
            }
            ServerIdToml::Word(w) => {
                return Err(format!(
                    "server_id: expected a replica id (1 to 4294967295) or \"auto\", found {w:?}"
                ))
            }
        };
        Ok(MysqlConfig {
            url: t.url,
            server_id,
            auto_host,
            start: t.start,
            heartbeat_secs: t.heartbeat_secs,
            on_purged: t.on_purged,
        })
    }
}

/// The first id `server_id = "auto"` can give.
pub const AUTO_SERVER_ID_MIN: u32 = 1_000_000_000;
/// How many ids `"auto"` spreads host names over: ids 1000000000 to 1999999999.
/// Operators who number replicas by hand use small ids, below this range.
pub const AUTO_SERVER_ID_SPAN: u32 = 1_000_000_000;

/// The replica id of `server_id = "auto"` on host `host`: FNV-1a (64-bit) of the
/// name, into [`AUTO_SERVER_ID_MIN`] .. + [`AUTO_SERVER_ID_SPAN`]. Stable across
/// restarts and builds (a fixed hash, not std's seeded one), so a pod keeps its id
/// for its life; two names colliding is caught at start (see
/// `BinlogSource::check_server_id`).
pub fn auto_server_id(host: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in host.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // The remainder is below the span, so the sum fits in u32.
    AUTO_SERVER_ID_MIN + (h % u64::from(AUTO_SERVER_ID_SPAN)) as u32
}

/// This machine's host name (in Kubernetes: the pod's name): the kernel's, else
/// `$HOSTNAME`, else "localhost".
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

impl MysqlConfig {
    /// A config for `url` and `server_id` with defaults for the rest.
    pub fn new(url: impl Into<String>, server_id: u32) -> Self {
        MysqlConfig {
            url: url.into(),
            server_id,
            auto_host: None,
            start: StartPosition::Current,
            heartbeat_secs: default_heartbeat(),
            on_purged: OnPurged::Fail,
        }
    }

    /// Checks what serde cannot: the URL parses, the id is non-zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, message: String| Err(ConfigError::new("mysql", key, message));
        if let Err(e) = mysql_async::Opts::from_url(&self.url) {
            return bad("url", e.to_string());
        }
        if self.server_id == 0 {
            return bad(
                "server_id",
                "must be a non-zero replica id, unique among the server's replicas".into(),
            );
        }
        if self.heartbeat_secs == 0 || self.heartbeat_secs > 3600 {
            return bad("heartbeat_secs", "must be between 1 and 3600".into());
        }
        Ok(())
    }

    /// The heartbeat period.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        let c: MysqlConfig = toml::from_str(
            "url = \"mysql://u:p@127.0.0.1:3306\"\nserver_id = 64001\nstart = \"gtid:0-1-100\"\n",
        )
        .unwrap();
        assert_eq!(c.start.to_string(), "gtid:0-1-100");
        assert_eq!(c.validate(), Ok(()));
        let bad: Result<MysqlConfig, _> =
            toml::from_str("url = \"mysql://x\"\nserver_id = 1\nstart = \"later\"\n");
        assert!(bad.unwrap_err().to_string().contains("invalid start"));
        let zero = MysqlConfig::new("mysql://u@127.0.0.1:1", 0);
        assert_eq!(zero.validate().unwrap_err().key, "server_id");
        assert!(MysqlConfig::new("http://x", 1).validate().is_err());
    }

    #[test]
    fn auto_server_id_is_stable_and_in_range() {
        let c: MysqlConfig =
            toml::from_str("url = \"mysql://u:p@127.0.0.1:3306\"\nserver_id = \"auto\"\n").unwrap();
        let host = c.auto_host.clone().expect("auto");
        assert_eq!(host, host_name());
        assert_eq!(c.server_id, auto_server_id(&host));
        assert_eq!(c.validate(), Ok(()));
        // Fixed values: the id must not change between builds or restarts.
        assert_eq!(auto_server_id("coherent-0"), auto_server_id("coherent-0"));
        assert_ne!(auto_server_id("coherent-0"), auto_server_id("coherent-1"));
        for h in ["", "a", "web-7d9f8-abcde", "x".repeat(300).as_str()] {
            let id = auto_server_id(h);
            assert!((AUTO_SERVER_ID_MIN..AUTO_SERVER_ID_MIN + AUTO_SERVER_ID_SPAN).contains(&id));
        }
        let bad = toml::from_str::<MysqlConfig>("url = \"mysql://x\"\nserver_id = \"automatic\"\n");
        assert!(bad.unwrap_err().to_string().contains("or \"auto\""));
        let fixed: MysqlConfig = toml::from_str("url = \"mysql://x\"\nserver_id = 7\n").unwrap();
        assert_eq!((fixed.server_id, fixed.auto_host), (7, None));
    }
}
