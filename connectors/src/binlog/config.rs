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
/// server_id = 64001
/// start = "current"    # "earliest", "gtid:0-1-100", "file:bin.000003:4"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlConfig {
    /// `mysql://user:password@host:port`; the user needs REPLICATION SLAVE,
    /// REPLICATION CLIENT and SELECT on information_schema.
    pub url: String,
    /// This replica's id, unique among the server's replicas.
    pub server_id: u32,
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

impl MysqlConfig {
    /// A config for `url` and `server_id` with defaults for the rest.
    pub fn new(url: impl Into<String>, server_id: u32) -> Self {
        MysqlConfig {
            url: url.into(),
            server_id,
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
}
