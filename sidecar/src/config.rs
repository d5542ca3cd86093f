//! The sidecar's configuration: a TOML file, overridden by `COHERENT_*` environment
//! variables, overridden by command-line flags.
//!
//! Sections: `[engine]`, `[admin]`, `[telemetry]`, `[audit]`, and the connector's `[mysql]`, `[checkpoint]`,
//! `[target]`, `[[rules]]` (see [`connectors::ConnectorConfig`]). Without `[mysql]`
//! the sidecar runs the engine alone.

use anyhow::{bail, Context, Result};
use connectors::binlog::config::MysqlConfigError;
use connectors::binlog::MysqlConfig;
use connectors::checkpoint::CheckpointConfig;
use connectors::retry::RetryConfig;
use connectors::rules::{RuleConfig, RuleError, Rules};
use connectors::targets::TargetConfig;
use connectors::ConnectorConfig;
use engine::EngineConfig;
use serde::Deserialize;
use std::path::Path;

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[engine]`: the embedded Redis-compatible server.
    pub engine: EngineConfig,
    /// `[admin]`: health, status and metrics over HTTP.
    pub admin: crate::admin::AdminConfig,
    /// `[mysql]`: the server whose binlog is tailed; absent = no pipeline.
    pub mysql: Option<MysqlConfig>,
    /// `[checkpoint]`: where the binlog position is saved.
    pub checkpoint: CheckpointConfig,
    /// `[target]`: where deletes go.
    pub target: TargetConfig,
    /// `[[rules]]`: row changes -> cache keys.
    pub rules: Vec<RuleConfig>,
    /// `[retry]`: where deletes the target refused wait to be retried.
    pub retry: RetryConfig,
    /// `[telemetry]`: optional OTLP export of metrics and traces.
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// `[audit]`: the online consistency checker (sampled re-checks of invalidated
    /// keys; needs `[mysql]`).
    pub audit: crate::audit::online::AuditConfig,
}

/// A config file and the pipeline's compiled rules, ready to run.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The merged, validated config.
    pub config: Config,
    /// `Some` when `[mysql]` is configured.
    pub connector: Option<(ConnectorConfig, Rules)>,
}

/// Where a value came from, for error messages.
struct Origin<'a> {
    name: &'a str,
    text: &'a str,
    env: &'a [String],
}

impl Origin<'_> {
    /// "FILE line N: [section] key" (or the environment variable that set it).
    fn at(&self, section: &str, index: Option<usize>, key: &str) -> String {
        let var = match index {
            Some(i) => format!("COHERENT_{}_{i}_{}", section, key).to_ascii_uppercase(),
            None => format!("COHERENT_{}_{}", section, key).to_ascii_uppercase(),
        };
        if self.env.iter().any(|v| v == &var) {
            return format!("environment variable {var}");
        }
        if index.is_some() && self.env.iter().any(|v| v == "COHERENT_RULES") {
            return "environment variable COHERENT_RULES".to_string();
        }
        match line_of(self.text, section, index, key) {
            Some(n) => format!("{} line {n}", self.name),
            None => self.name.to_string(),
        }
    }
}

/// The 1-based line of `key` in `[section]` (or in the `index`-th `[[section]]`).
fn line_of(text: &str, section: &str, index: Option<usize>, key: &str) -> Option<usize> {
    let mut current = String::new();
    let mut seen = 0usize;
    let mut header_line = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(h) = line.strip_prefix("[[") {
            current = h.split("]]").next().unwrap_or("").trim().to_string();
            if current == section {
                seen += 1;
            }
        } else if let Some(h) = line.strip_prefix('[') {
            current = h.split(']').next().unwrap_or("").trim().to_string();
        } else {
            let in_section = current == section && index.is_none_or(|i| seen == i + 1);
            if in_section {
                if header_line.is_none() {
                    header_line = Some(n + 1);
                }
                let k = line
                    .split('=')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_matches('"');
                if line.contains('=') && k == key {
                    return Some(n + 1);
                }
            }
            continue;
        }
        if current == section && index.is_none_or(|i| seen == i + 1) {
            header_line = Some(n + 1);
        }
    }
    // The key is missing: point at the section header.
    header_line
}

impl Config {
    /// Loads `path` (if given), applies `COHERENT_<SECTION>_<KEY>` variables, validates.
    pub fn load(path: Option<&Path>) -> Result<Loaded> {
        Self::load_with_env(path, std::env::vars())
    }

    /// [`Config::load`] with the environment given (tests).
    pub fn load_with_env(
        path: Option<&Path>,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<Loaded> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p)
                .with_context(|| format!("cannot read config file {}", p.display()))?,
            None => String::new(),
        };
        let name = path.map_or("<defaults>".to_string(), |p| p.display().to_string());
        // Parse the file on its own first: errors from the text carry line, column and
        // the offending line, which a merged document no longer has.
        toml::from_str::<Config>(&text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let mut doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{name}: {e}"))?;
        let overridden = apply_env(&mut doc, vars)?;
        let cfg: Config = Config::deserialize(toml::Value::Table(doc)).map_err(|e| {
            anyhow::anyhow!(
                "{name} with environment overrides {}: {}",
                overridden.join(", "),
                e.message()
            )
        })?;
        let origin = Origin {
            name: &name,
            text: &text,
            env: &overridden,
        };
        cfg.engine
            .validate()
            .map_err(|e| anyhow::anyhow!("{name}: [engine] {e}"))?;
        cfg.admin.validate().map_err(|(key, e)| {
            anyhow::anyhow!("{}: [admin] {key}: {e}", origin.at("admin", None, key))
        })?;
        cfg.telemetry.validate().map_err(|(key, e)| {
            anyhow::anyhow!(
                "{}: [telemetry] {key}: {e}",
                origin.at("telemetry", None, key)
            )
        })?;
        cfg.audit.validate().map_err(|e| {
            let key = e.config_key().unwrap_or("");
            anyhow::anyhow!("{}: [audit] {key}: {e}", origin.at("audit", None, key))
        })?;
        let connector = match &cfg.mysql {
            None => {
                if !cfg.rules.is_empty() {
                    tracing::warn!(
                        "{name}: [[rules]] without a [mysql] section: nothing will be invalidated"
                    );
                }
                None
            }
            Some(mysql) => {
                let cc = ConnectorConfig {
                    mysql: mysql.clone(),
                    checkpoint: cfg.checkpoint.clone(),
                    target: cfg.target.clone(),
                    rules: cfg.rules.clone(),
                    retry: cfg.retry.clone(),
                };
                Some((cc.clone(), validate_connector(&cc, &origin)?))
            }
        };
        Ok(Loaded {
            config: cfg,
            connector,
        })
    }
}

/// [`ConnectorConfig::validate`], with each error placed at its file line.
fn validate_connector(cc: &ConnectorConfig, origin: &Origin) -> Result<Rules> {
    if let Err(e) = cc.mysql.validate() {
        let key = match e {
            MysqlConfigError::Url(_) => "url",
            MysqlConfigError::ServerId => "server_id",
            MysqlConfigError::Heartbeat => "heartbeat_secs",
        };
        bail!("{}: [mysql] {e}", origin.at("mysql", None, key));
    }
    if let Err(e) = cc.checkpoint.validate() {
        let key = e.split([':', ' ']).next().unwrap_or("store");
        bail!("{}: [checkpoint] {e}", origin.at("checkpoint", None, key));
    }
    Rules::compile(&cc.rules).map_err(|e| {
        let (index, key) = match &e {
            RuleError::Table { index, .. } => (*index, "table"),
            RuleError::Template { index, .. } | RuleError::NoKeys { index } => (*index, "keys"),
            _ => (0, "table"),
        };
        anyhow::anyhow!("{}: [[rules]] {e}", origin.at("rules", Some(index), key))
    })
}

/// Sections whose keys `COHERENT_<SECTION>_<KEY>` sets.
const SECTIONS: &[&str] = &[
    "engine",
    "admin",
    "mysql",
    "checkpoint",
    "target",
    "retry",
    "telemetry",
    "audit",
];

/// Parses an environment value as a TOML value when it is one (numbers, booleans,
/// arrays, inline tables), as a plain string otherwise.
fn env_value(v: &str) -> toml::Value {
    format!("v = {v}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or(toml::Value::String(v.to_string()))
}

/// Applies environment overrides and returns the names of the variables applied:
/// - `COHERENT_<SECTION>_<KEY>` for `[engine]`, `[admin]`, `[mysql]`, `[checkpoint]`,
///   `[target]`: the first word after the prefix is the section, the rest (lower-cased)
///   the key (`COHERENT_MYSQL_SERVER_ID=64001`).
/// - `COHERENT_RULES` replaces every `[[rules]]` with a TOML array of inline tables
///   (`[{table = "app.users", keys = ["user:{id}"]}]`).
/// - `COHERENT_RULES_<N>_<KEY>` sets one key of the N-th rule (0-based; N equal to the
///   number of rules appends one). `keys` and `columns` take a TOML array or a
///   comma-separated list.
///
/// Values parse as TOML when they can (numbers, booleans, arrays), as strings otherwise.
pub fn apply_env(
    doc: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<Vec<String>> {
    let mut applied = Vec::new();
    // Sorted, so COHERENT_RULES comes before COHERENT_RULES_0_* and rules append in order.
    let mut vars: Vec<(String, String)> =
        vars.filter(|(k, _)| k.starts_with("COHERENT_")).collect();
    vars.sort();
    for (k, v) in vars {
        let Some(rest) = k.strip_prefix("COHERENT_") else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        if rest == "rules" {
            match env_value(&v) {
                a @ toml::Value::Array(_) => {
                    doc.insert("rules".into(), a);
                    applied.push(k.clone());
                }
                _ => bail!("environment variable {k}: expected a TOML array of rules, like [{{table = \"app.users\", keys = [\"user:{{id}}\"]}}]"),
            }
            continue;
        }
        if let Some(r) = rest.strip_prefix("rules_") {
            let (n, key) = r.split_once('_').unwrap_or((r, ""));
            let n: usize = n.parse().map_err(|_| {
                anyhow::anyhow!("environment variable {k}: expected COHERENT_RULES_<N>_<KEY> with N a rule number")
            })?;
            if key.is_empty() {
                bail!("environment variable {k}: no key after the rule number");
            }
            let rules = doc
                .entry("rules")
                .or_insert_with(|| toml::Value::Array(Vec::new()));
            let toml::Value::Array(rules) = rules else {
                bail!("environment variable {k}: rules is not an array in the config");
            };
            if n > rules.len() {
                bail!(
                    "environment variable {k}: rule {n} does not exist (there are {}; use N = {} to add one)",
                    rules.len(),
                    rules.len()
                );
            }
            if n == rules.len() {
                rules.push(toml::Value::Table(Default::default()));
            }
            let value = match (key, env_value(&v)) {
                ("keys" | "columns", toml::Value::String(s)) => toml::Value::Array(
                    s.split(',')
                        .map(|p| toml::Value::String(p.trim().to_string()))
                        .filter(|p| p.as_str() != Some(""))
                        .collect(),
                ),
                // Table names and templates are strings even when they look like numbers.
                ("table", _) => toml::Value::String(v.clone()),
                (_, val) => val,
            };
            match &mut rules[n] {
                toml::Value::Table(t) => {
                    t.insert(key.to_string(), value);
                }
                _ => bail!("environment variable {k}: rule {n} is not a table"),
            }
            applied.push(k.clone());
            continue;
        }
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        if !SECTIONS.contains(&section) {
            // COHERENT_LOG, COHERENT_CONFIG and similar are read elsewhere.
            continue;
        }
        if key.is_empty() {
            bail!("environment variable {k}: no key after the section");
        }
        let value = match (section, key) {
            // Strings whatever they look like (a password of digits is still a password).
            ("mysql", "url" | "start")
            | ("engine", "requirepass")
            | ("checkpoint", "path")
            | ("telemetry", "otlp_endpoint") => toml::Value::String(v.clone()),
            // COHERENT_AUDIT_DELAYS_MS="1000,10000,60000" (or a TOML array).
            ("audit", "delays_ms") => match env_value(&v) {
                toml::Value::String(s) => s
                    .split(',')
                    .map(|p| p.trim().parse::<i64>().map(toml::Value::Integer))
                    .collect::<Result<Vec<_>, _>>()
                    .map(toml::Value::Array)
                    .unwrap_or(toml::Value::String(s)),
                i @ toml::Value::Integer(_) => toml::Value::Array(vec![i]),
                other => other,
            },
            _ => env_value(&v),
        };
        let table = doc
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        match table {
            toml::Value::Table(t) => {
                t.insert(key.to_string(), value);
                applied.push(k.clone());
            }
            _ => bail!("environment variable {k}: [{section}] is not a table in the config"),
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn tmp(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("coherent-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const FULL: &str = r#"[engine]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"
ready_max_lag_secs = 5

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

[[rules]]
table = "app.orders"
keys = ["order:{id}"]
"#;

    #[test]
    fn env_overrides_and_types() {
        let mut doc: toml::Table = "[engine]\nlisten = \"127.0.0.1:1\"\n".parse().unwrap();
        apply_env(
            &mut doc,
            env(&[
                ("COHERENT_ENGINE_LISTEN", "127.0.0.1:2"),
                ("COHERENT_ENGINE_MAXCLIENTS", "7"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        let cfg = Config::deserialize(toml::Value::Table(doc)).unwrap();
        assert_eq!(cfg.engine.listen, "127.0.0.1:2");
        assert_eq!(cfg.engine.maxclients, 7);
    }

    #[test]
    fn full_file_with_connector_sections() {
        let p = tmp("full.toml", FULL);
        let l = Config::load_with_env(Some(&p), env(&[])).unwrap();
        let (cc, rules) = l.connector.expect("pipeline configured");
        assert_eq!(cc.mysql.server_id, 64001);
        assert_eq!(rules.rules().len(), 2);
        assert_eq!(l.config.admin.ready_max_lag_secs, 5.0);
        // Without [mysql] there is no pipeline.
        let p = tmp("engine.toml", "[engine]\nlisten = \"127.0.0.1:0\"\n");
        assert!(Config::load_with_env(Some(&p), env(&[]))
            .unwrap()
            .connector
            .is_none());
    }

    #[test]
    fn env_sets_connector_sections_and_rules() {
        let p = tmp("env.toml", FULL);
        let l = Config::load_with_env(
            Some(&p),
            env(&[
                ("COHERENT_MYSQL_URL", "mysql://u:p@127.0.0.1:1234"),
                ("COHERENT_MYSQL_SERVER_ID", "77"),
                ("COHERENT_MYSQL_START", "gtid:0-1-5"),
                ("COHERENT_CHECKPOINT_PATH", "/tmp/x.cp"),
                ("COHERENT_CHECKPOINT_INTERVAL_MS", "0"),
                ("COHERENT_TARGET_DB", "3"),
                ("COHERENT_ADMIN_READY_MAX_LAG_SECS", "2.5"),
                ("COHERENT_RULES_1_KEYS", "order:{id}, user:{user_id}:orders"),
                ("COHERENT_RULES_2_TABLE", "app.items"),
                ("COHERENT_RULES_2_KEYS", "[\"item:{id}\"]"),
            ]),
        )
        .unwrap();
        let (cc, rules) = l.connector.unwrap();
        assert_eq!(cc.mysql.url, "mysql://u:p@127.0.0.1:1234");
        assert_eq!(cc.mysql.server_id, 77);
        assert_eq!(cc.mysql.start.to_string(), "gtid:0-1-5");
        assert_eq!(cc.checkpoint.path, std::path::PathBuf::from("/tmp/x.cp"));
        assert_eq!(cc.checkpoint.interval_ms, 0);
        assert_eq!(cc.target.db, 3);
        assert_eq!(l.config.admin.ready_max_lag_secs, 2.5);
        assert_eq!(cc.rules[1].keys, ["order:{id}", "user:{user_id}:orders"]);
        assert_eq!(cc.rules[2].table, "app.items");
        assert_eq!(rules.rules().len(), 3);

        // The whole [[rules]] array from one variable, [mysql] from variables only.
        let p = tmp("envonly.toml", "");
        let l = Config::load_with_env(
            Some(&p),
            env(&[
                ("COHERENT_MYSQL_URL", "mysql://u@127.0.0.1:1"),
                ("COHERENT_MYSQL_SERVER_ID", "9"),
                (
                    "COHERENT_RULES",
                    r#"[{table = "app.users", keys = ["user:{id}"]}, {table = "app.*", keys = ["t:{id}"]}]"#,
                ),
            ]),
        )
        .unwrap();
        assert_eq!(l.connector.unwrap().0.rules.len(), 2);

        let err = Config::load_with_env(Some(&p), env(&[("COHERENT_RULES_5_TABLE", "a.b")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("COHERENT_RULES_5_TABLE"), "{err}");
    }

    #[test]
    fn telemetry_section_and_env() {
        let p = tmp(
            "tel.toml",
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nexport_interval = \"250ms\"\n",
        );
        let l = Config::load_with_env(Some(&p), env(&[])).unwrap();
        let t = &l.config.telemetry;
        assert_eq!(t.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
        assert_eq!(t.export_interval.0, std::time::Duration::from_millis(250));
        let p = tmp("tel2.toml", "");
        let l = Config::load_with_env(
            Some(&p),
            env(&[("COHERENT_TELEMETRY_OTLP_ENDPOINT", "http://10.0.0.1:4318")]),
        )
        .unwrap();
        assert_eq!(
            l.config.telemetry.otlp_endpoint.as_deref(),
            Some("http://10.0.0.1:4318")
        );
        assert_eq!(l.config.telemetry.export_interval.0.as_secs(), 10);
        let err = Config::load_with_env(
            Some(&p),
            env(&[("COHERENT_TELEMETRY_OTLP_ENDPOINT", "grpc://x")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("COHERENT_TELEMETRY_OTLP_ENDPOINT"), "{err}");
    }

    #[test]
    fn audit_section_env_and_errors() {
        let p = tmp(
            "audit.toml",
            "[audit]\nsample = 1.0\ndelays_ms = [500, 2000]\nconfirm_grace_ms = 250\n",
        );
        let l = Config::load_with_env(Some(&p), env(&[])).unwrap();
        assert_eq!(l.config.audit.sample, 1.0);
        assert_eq!(l.config.audit.delays_ms, [500, 2000]);
        assert_eq!(l.config.audit.confirm_grace_ms, 250);
        let l = Config::load_with_env(
            Some(&p),
            env(&[
                ("COHERENT_AUDIT_SAMPLE", "0.5"),
                ("COHERENT_AUDIT_DELAYS_MS", "1000, 10000,60000"),
            ]),
        )
        .unwrap();
        assert_eq!(l.config.audit.sample, 0.5);
        assert_eq!(l.config.audit.delays_ms, [1000, 10000, 60000]);
        let l =
            Config::load_with_env(Some(&p), env(&[("COHERENT_AUDIT_DELAYS_MS", "3000")])).unwrap();
        assert_eq!(l.config.audit.delays_ms, [3000]);
        // Defaults.
        let l = Config::load_with_env(Some(&tmp("noaudit.toml", "")), env(&[])).unwrap();
        assert_eq!(l.config.audit.sample, 0.01);
        assert_eq!(l.config.audit.delays_ms, [1000, 10000, 60000]);
        // Errors name the file line and key, or the variable.
        let p = tmp("audit-bad.toml", "[engine]\n\n[audit]\nsample = 2\n");
        let err = format!(
            "{:#}",
            Config::load_with_env(Some(&p), env(&[])).unwrap_err()
        );
        assert!(
            err.contains("audit-bad.toml line 4") && err.contains("[audit] sample"),
            "{err}"
        );
        let p = tmp("audit-bad2.toml", "[audit]\ndelays_ms = [3000, 1000]\n");
        let err = format!(
            "{:#}",
            Config::load_with_env(Some(&p), env(&[])).unwrap_err()
        );
        assert!(err.contains("line 2") && err.contains("delays_ms"), "{err}");
        let err = format!(
            "{:#}",
            Config::load_with_env(Some(&p), env(&[("COHERENT_AUDIT_DELAYS_MS", "1000,x")]))
                .unwrap_err()
        );
        assert!(err.contains("COHERENT_AUDIT_DELAYS_MS"), "{err}");
        let err = format!(
            "{:#}",
            Config::load_with_env(Some(&p), env(&[("COHERENT_AUDIT_SAMPLE", "-1")])).unwrap_err()
        );
        assert!(err.contains("COHERENT_AUDIT_SAMPLE"), "{err}");
    }

    #[test]
    fn bad_key_names_its_line() {
        let p = tmp(
            "bad.toml",
            "[engine]\nlisten = \"127.0.0.1:0\"\nmaxclientz = 5\n",
        );
        let err = Config::load(Some(&p)).unwrap_err().to_string();
        assert!(err.contains("bad.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("maxclientz"), "{err}");
        let p = tmp("bad2.toml", "[engine]\nlisten = 5\n");
        let err = Config::load(Some(&p)).unwrap_err().to_string();
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn bad_connector_values_name_file_line_and_key() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // (replace, with, expected line, expected key)
            ("server_id = 64001", "server_id = 0", "line 10", "server_id"),
            ("server_id = 64001", "serverid = 1", "line 10", "serverid"),
            (
                "start = \"current\"",
                "start = \"later\"",
                "line 11",
                "start",
            ),
            (
                "url = \"mysql://coherent:secret@127.0.0.1:3306\"",
                "url = \"http://x\"",
                "line 9",
                "url",
            ),
            (
                "kind = \"embedded\"",
                "kind = \"memcached\"",
                "line 18",
                "kind",
            ),
            ("store = \"file\"", "store = \"sqlite\"", "line 14", "store"),
            (
                "table = \"app.orders\"",
                "table = \"orders\"",
                "line 26",
                "table",
            ),
            (
                "keys = [\"order:{id}\"]",
                "keys = [\"order:{id\"]",
                "line 27",
                "keys",
            ),
            ("keys = [\"order:{id}\"]", "keys = []", "line 27", "keys"),
            (
                "columns = [\"email\", \"name\"]",
                "colums = [\"email\"]",
                "line 23",
                "colums",
            ),
            (
                "ready_max_lag_secs = 5",
                "ready_max_lag_secs = -1",
                "line 6",
                "ready_max_lag_secs",
            ),
        ];
        for (i, (from, to, line, key)) in cases.iter().enumerate() {
            assert!(FULL.contains(from), "{from}");
            let p = tmp(&format!("case{i}.toml"), &FULL.replace(from, to));
            let err = format!(
                "{:#}",
                Config::load_with_env(Some(&p), env(&[])).unwrap_err()
            );
            assert!(
                err.contains(&format!("case{i}.toml")) && err.contains(line) && err.contains(key),
                "case {i} ({to}): {err}"
            );
        }
        // A bad value from the environment names the variable.
        let p = tmp("envbad.toml", FULL);
        let err = Config::load_with_env(Some(&p), env(&[("COHERENT_MYSQL_SERVER_ID", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("COHERENT_MYSQL_SERVER_ID"), "{err}");
    }
}
