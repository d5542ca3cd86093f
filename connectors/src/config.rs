//! The connector's config sections, for the sidecar to embed in its own config:
//! `[mysql]`, `[checkpoint]`, `[target]` and `[[rules]]`.

use crate::binlog::config::MysqlConfig;
use crate::checkpoint::CheckpointConfig;
use crate::retry::RetryConfig;
use crate::rules::{RuleConfig, Rules};
use crate::targets::TargetConfig;
use serde::{Deserialize, Serialize};

/// The connector's sections of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorConfig {
    /// `[mysql]`.
    pub mysql: MysqlConfig,
    /// `[checkpoint]`.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// `[target]`.
    #[serde(default)]
    pub target: TargetConfig,
    /// `[retry]`: where failed deletes wait.
    #[serde(default)]
    pub retry: RetryConfig,
    /// `[[rules]]`.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

impl ConnectorConfig {
    /// Validates every section; the message names the section and key.
    pub fn validate(&self) -> Result<Rules, String> {
        self.mysql.validate().map_err(|e| format!("[mysql] {e}"))?;
        self.checkpoint
            .validate()
            .map_err(|e| format!("[checkpoint] {e}"))?;
        self.target
            .validate()
            .map_err(|e| format!("[target] {e}"))?;
        self.retry.validate().map_err(|e| format!("[retry] {e}"))?;
        Rules::compile(&self.rules).map_err(|e| format!("[[rules]] {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_example_parses() {
        let text = r#"
[mysql]
url = "mysql://coherent:secret@127.0.0.1:3306"
server_id = 64001
start = "current"

[checkpoint]
store = "file"
path = "coherent.checkpoint"

[target]
kind = "embedded"

[[rules]]
table = "app.users"
keys = ["user:{id}", "user:email:{email}"]
columns = ["email", "name"]
"#;
        let c: ConnectorConfig = toml::from_str(text).unwrap();
        let rules = c.validate().unwrap();
        assert_eq!(rules.rules().len(), 1);
        assert!(rules.covers("app", "users"));
        let bad: Result<ConnectorConfig, _> =
            toml::from_str(&text.replace("kind = \"embedded\"", "kind = \"memcached\""));
        assert!(bad.is_err());
    }
}
