//! The sidecar's configuration: a TOML file, overridden by `COHERENT_*` environment
//! variables, overridden by command-line flags.
//!
//! The sidecar's own keys and sections: `data_dir`, `[engine]`, `[admin]`,
//! `[telemetry]`, `[audit]`. The connector's sections, `[mysql]`, `[checkpoint]`,
//! `[target]`, `[retry]`, `[[rules]]`, are declared once, in
//! [`connectors::ConnectorConfig`], and read from the same file into
//! [`Config::connector`]. Without `[mysql]` the sidecar runs the engine alone.
//!
//! Every refused value is a [`ConfigError`] naming the file and line (from the TOML
//! spans) or the environment variable, the section and the key, at load time:
//! `coherent.toml:12: [target] key "url": ...`.

use anyhow::{bail, Context, Result};
use connectors::config::{fields_of, ConfigError, ConfigFile};
use connectors::rules::Rules;
use connectors::ConnectorConfig;
use engine::{EngineConfig, SettingValue};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `data_dir`: the directory of the sidecar's data files (the file checkpoint, the
    /// embedded retry log); relative paths in `[checkpoint]` and `[retry]` are
    /// resolved against it. Created when the pipeline starts. Default `data`
    /// (relative to the working directory).
    pub data_dir: PathBuf,
    /// `[engine]`: the embedded Redis-compatible server.
    pub engine: EngineConfig,
    /// `[admin]`: health, status and metrics over HTTP.
    pub admin: crate::admin::AdminConfig,
    /// `[telemetry]`: optional OTLP export of metrics and traces.
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// `[audit]`: the online consistency checker (sampled re-checks of invalidated
    /// keys; needs `[mysql]`).
    pub audit: crate::audit::online::AuditConfig,
    /// The connector's sections, read by its own declaration; their relative file
    /// paths resolved against `data_dir`.
    #[serde(skip)]
    pub connector: ConnectorConfig,
}

/// The default `data_dir`.
pub const DEFAULT_DATA_DIR: &str = "data";

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            engine: EngineConfig::default(),
            admin: Default::default(),
            telemetry: Default::default(),
            audit: Default::default(),
            connector: ConnectorConfig::default(),
        }
    }
}

/// A config file and the pipeline's compiled rules, ready to run.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The merged, validated config.
    pub config: Config,
    /// `Some` when `[mysql]` is configured: the connector's sections (as in
    /// `config.connector`) and their compiled rules.
    pub connector: Option<(ConnectorConfig, Rules)>,
}

/// Every top-level key a file may hold: the sidecar's and the connector's, from
/// their declarations.
fn known_keys() -> Vec<&'static str> {
    let mut keys = fields_of::<Config>().to_vec();
    keys.extend_from_slice(fields_of::<ConnectorConfig>());
    keys
}

/// Places `e`: at the environment variable that set its key, else at its file line.
fn place(e: ConfigError, file: &ConfigFile, env: &[String]) -> ConfigError {
    let var = match (e.section.as_str(), e.index) {
        ("", _) => format!("COHERENT_{}", e.key),
        (s, Some(i)) => format!("COHERENT_{s}_{i}_{}", e.key),
        (s, None) => format!("COHERENT_{s}_{}", e.key),
    }
    .to_ascii_uppercase();
    let origin = if env.contains(&var) {
        Some(var)
    } else if e.index.is_some() && env.iter().any(|v| v == "COHERENT_RULES") {
        Some("COHERENT_RULES".to_string())
    } else {
        None
    };
    match origin {
        Some(var) => ConfigError {
            origin: Some(format!("environment variable {var}")),
            line: None,
            ..e
        },
        None => {
            let placed = file.place(e);
            // Not in the file: the variables that set other keys of its section
            // (`COHERENT_TARGET_KIND=redis` without a URL) are why it matters.
            let prefix = format!("COHERENT_{}_", placed.section.to_ascii_uppercase());
            let set: Vec<&str> = env
                .iter()
                .filter(|v| !placed.section.is_empty() && v.starts_with(&prefix))
                .map(String::as_str)
                .collect();
            if placed.line.is_some() || set.is_empty() {
                return placed;
            }
            ConfigError {
                origin: Some(format!(
                    "{} with environment overrides {}",
                    file.name(),
                    set.join(", ")
                )),
                ..placed
            }
        }
    }
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
        Self::load_text(&name, text, vars)
    }

    /// [`Config::load_with_env`] of a file's text, named `name` in errors.
    pub fn load_text(
        name: &str,
        text: String,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<Loaded> {
        let name = name.to_string();
        // The file on its own first: its errors carry their line, which a document
        // merged with the environment no longer has.
        let file = ConfigFile::parse(&name, text)?;
        file.check_known(&known_keys())?;
        let mut cfg: Config = file.deserialize()?;
        cfg.connector = file.deserialize()?;
        let mut doc: toml::Table = file
            .text()
            .parse()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{name}: {}", e.message()))?;
        let overridden = apply_env(&mut doc, vars)?;
        if !overridden.is_empty() {
            // The merged document has no spans: the error is placed at the section
            // that fails on its own, and at the variables applied.
            let merged = |e: toml::de::Error| ConfigError {
                origin: Some(format!(
                    "{name} with environment overrides {}",
                    overridden.join(", ")
                )),
                ..ConfigError::new(failing_section(&doc), "", e.message())
            };
            let connector =
                ConnectorConfig::deserialize(toml::Value::Table(doc.clone())).map_err(merged)?;
            cfg = Config::deserialize(toml::Value::Table(doc.clone())).map_err(merged)?;
            cfg.connector = connector;
        }
        let at = |e: ConfigError| place(e, &file, &overridden);
        cfg.engine
            .validate()
            .map_err(|e| at(ConfigError::new("engine", &e.key, e.message)))?;
        cfg.admin.validate().map_err(at)?;
        cfg.telemetry.validate().map_err(at)?;
        cfg.audit.validate().map_err(at)?;
        if cfg.data_dir.as_os_str().is_empty() {
            return Err(at(ConfigError::new("", "data_dir", "must not be empty")).into());
        }
        // Every connector section is checked, [mysql] or not: a bad [target] or
        // [retry] is refused now, not when the first delete is sent.
        let rules = cfg.connector.validate().map_err(at)?;
        let before: Vec<PathBuf> = cfg
            .connector
            .data_files()
            .into_iter()
            .map(Path::to_path_buf)
            .collect();
        cfg.connector.resolve_paths(&cfg.data_dir);
        // Before data_dir, relative paths were the working directory's: a file left
        // there is not read any more, so say where it should go.
        for (old, new) in before.iter().zip(cfg.connector.data_files()) {
            if old.as_path() != new && old.exists() && !new.exists() {
                tracing::warn!(
                    "{name}: {} is in the working directory; data files are now read from data_dir: move it to {}",
                    old.display(),
                    new.display()
                );
            }
        }
        let connector = match &cfg.connector.mysql {
            None => {
                if !cfg.connector.rules.is_empty() {
                    tracing::warn!(
                        "{name}: [[rules]] without a [mysql] section: nothing will be invalidated"
                    );
                }
                None
            }
            Some(_) => Some((cfg.connector.clone(), rules)),
        };
        Ok(Loaded {
            config: cfg,
            connector,
        })
    }
}

/// The first top-level key of `doc` that the sidecar's or the connector's
/// declaration refuses on its own ("" when none does alone).
fn failing_section(doc: &toml::Table) -> &str {
    doc.iter()
        .find(|(k, v)| {
            let one = toml::Value::Table([((*k).clone(), (*v).clone())].into_iter().collect());
            Config::deserialize(one.clone()).is_err() || ConnectorConfig::deserialize(one).is_err()
        })
        .map_or("", |(k, _)| k.as_str())
}

/// Converts an environment value for an `[engine]` key to what the settings table
/// takes; arrays and tables are no engine value.
fn setting_value(v: &toml::Value) -> Option<SettingValue<'_>> {
    Some(match v {
        toml::Value::String(s) => SettingValue::Str(s),
        toml::Value::Integer(n) => SettingValue::Int(*n),
        toml::Value::Float(f) => SettingValue::Float(*f),
        toml::Value::Boolean(b) => SettingValue::Bool(*b),
        _ => return None,
    })
}

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
/// - `COHERENT_DATA_DIR` sets `data_dir`.
/// - `COHERENT_<SECTION>_<KEY>` for every section (`[engine]`, `[admin]`, `[mysql]`,
///   `[checkpoint]`, `[target]`, `[retry]`, ...): the first word after the prefix is the section, the rest (lower-cased)
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
        if rest == "data_dir" {
            doc.insert(rest, toml::Value::String(v.clone()));
            applied.push(k.clone());
            continue;
        }
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        // The sections (tables) the sidecar and the connector declare.
        if !known_keys().contains(&section) || matches!(section, "data_dir" | "rules") {
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
            | ("checkpoint", "path" | "url")
            | ("retry", "path" | "url")
            | ("target", "url" | "password")
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
        if section == "engine" {
            // Checked here, through the engine's settings table, so the error names
            // the variable.
            let checked = match setting_value(&value) {
                Some(sv) => engine::check_setting(key, sv).map_err(|e| e.message),
                None => Err("expected a string, an integer or a boolean".to_string()),
            };
            if let Err(message) = checked {
                return Err(ConfigError {
                    origin: Some(format!("environment variable {k}")),
                    ..ConfigError::new("engine", key, message)
                }
                .into());
            }
        }
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
        assert_eq!(cc.mysql().unwrap().server_id, 64001);
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
        let mysql = cc.mysql().unwrap();
        assert_eq!(mysql.url, "mysql://u:p@127.0.0.1:1234");
        assert_eq!(mysql.server_id, 77);
        assert_eq!(mysql.start.to_string(), "gtid:0-1-5");
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
            err.contains("audit-bad.toml:4: [audit] key \"sample\""),
            "{err}"
        );
        let p = tmp("audit-bad2.toml", "[audit]\ndelays_ms = [3000, 1000]\n");
        let err = format!(
            "{:#}",
            Config::load_with_env(Some(&p), env(&[])).unwrap_err()
        );
        assert!(
            err.contains("audit-bad2.toml:2: [audit] key \"delays_ms\""),
            "{err}"
        );
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
    fn env_merge_errors_name_the_variables_and_the_section() {
        let p = tmp("engine-only.toml", "[engine]\nlisten = \"127.0.0.1:0\"\n");
        let err = Config::load_with_env(
            Some(&p),
            env(&[("COHERENT_MYSQL_URL", "mysql://u@127.0.0.1:1")]),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            format!(
                "{} with environment overrides COHERENT_MYSQL_URL: [mysql]: missing field `server_id`",
                p.display()
            )
        );
        // Relative data paths are resolved against data_dir, absolute ones kept.
        let l = Config::load_with_env(
            Some(&p),
            env(&[
                ("COHERENT_DATA_DIR", "/srv/coherent"),
                ("COHERENT_RETRY_PATH", "/tmp/r.log"),
            ]),
        )
        .unwrap();
        let c = &l.config.connector;
        assert_eq!(
            (c.checkpoint.path.as_path(), c.retry.path.as_path()),
            (
                Path::new("/srv/coherent/coherent.checkpoint"),
                Path::new("/tmp/r.log")
            )
        );
    }

    #[test]
    fn bad_key_names_its_line() {
        let p = tmp(
            "bad.toml",
            "[engine]\nlisten = \"127.0.0.1:0\"\nmaxclientz = 5\n",
        );
        let err = Config::load(Some(&p)).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:3: [engine] key \"maxclientz\"", p.display())),
            "{err}"
        );
        let p = tmp("bad2.toml", "[engine]\nlisten = 5\n");
        let err = Config::load(Some(&p)).unwrap_err().to_string();
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn bad_connector_values_name_file_line_and_key() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // (replace, with, expected line, expected key)
            ("server_id = 64001", "server_id = 0", ":10:", "server_id"),
            ("server_id = 64001", "serverid = 1", ":10:", "serverid"),
            ("start = \"current\"", "start = \"later\"", ":11:", "start"),
            (
                "url = \"mysql://coherent:secret@127.0.0.1:3306\"",
                "url = \"http://x\"",
                ":9:",
                "url",
            ),
            (
                "kind = \"embedded\"",
                "kind = \"memcached\"",
                ":18:",
                "kind",
            ),
            ("store = \"file\"", "store = \"sqlite\"", ":14:", "store"),
            (
                "table = \"app.orders\"",
                "table = \"orders\"",
                ":26:",
                "table",
            ),
            (
                "keys = [\"order:{id}\"]",
                "keys = [\"order:{id\"]",
                ":27:",
                "keys",
            ),
            ("keys = [\"order:{id}\"]", "keys = []", ":27:", "keys"),
            (
                "columns = [\"email\", \"name\"]",
                "colums = [\"email\"]",
                ":23:",
                "colums",
            ),
            (
                "ready_max_lag_secs = 5",
                "ready_max_lag_secs = -1",
                ":6:",
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
                err.contains(&format!("case{i}.toml{line} "))
                    && err.contains(&format!("key \"{key}\"")),
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
