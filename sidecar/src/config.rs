//! The sidecar's configuration: a TOML file, overridden by `COHERENT_*` environment
//! variables, overridden by command-line flags.

use anyhow::{bail, Context, Result};
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
}

impl Config {
    /// Loads `path` (if given), applies `COHERENT_<SECTION>_<KEY>` variables, validates.
    pub fn load(path: Option<&Path>) -> Result<Config> {
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
        let overridden = apply_env(&mut doc, std::env::vars())?;
        let cfg: Config = Config::deserialize(toml::Value::Table(doc)).map_err(|e| {
            anyhow::anyhow!(
                "{name} with environment overrides {}: {}",
                overridden.join(", "),
                e.message()
            )
        })?;
        cfg.engine
            .validate()
            .map_err(|e| anyhow::anyhow!("{name}: [engine] {e}"))?;
        Ok(cfg)
    }
}

/// Applies `COHERENT_ENGINE_LISTEN=...` style overrides: the first word after the
/// prefix is the section, the rest (lower-cased) the key. Values parse as TOML
/// scalars when they can (numbers, booleans), as strings otherwise. Returns the names
/// of the variables applied.
pub fn apply_env(
    doc: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<Vec<String>> {
    let mut applied = Vec::new();
    const SECTIONS: &[&str] = &["engine", "admin"];
    for (k, v) in vars {
        let Some(rest) = k.strip_prefix("COHERENT_") else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        if !SECTIONS.contains(&section) {
            // COHERENT_LOG and similar are read elsewhere.
            continue;
        }
        if key.is_empty() {
            bail!("environment variable {k}: no key after the section");
        }
        let value = format!("v = {v}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(v.clone()));
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

    #[test]
    fn env_overrides_and_types() {
        let mut doc: toml::Table = "[engine]\nlisten = \"127.0.0.1:1\"\n".parse().unwrap();
        apply_env(
            &mut doc,
            vec![
                (
                    "COHERENT_ENGINE_LISTEN".to_string(),
                    "127.0.0.1:2".to_string(),
                ),
                ("COHERENT_ENGINE_MAXCLIENTS".to_string(), "7".to_string()),
                ("PATH".to_string(), "/bin".to_string()),
            ]
            .into_iter(),
        )
        .unwrap();
        let cfg = Config::deserialize(toml::Value::Table(doc)).unwrap();
        assert_eq!(cfg.engine.listen, "127.0.0.1:2");
        assert_eq!(cfg.engine.maxclients, 7);
    }

    #[test]
    fn bad_key_names_its_line() {
        let dir = std::env::temp_dir().join(format!("coherent-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.toml");
        std::fs::write(&p, "[engine]\nlisten = \"127.0.0.1:0\"\nmaxclientz = 5\n").unwrap();
        let err = Config::load(Some(&p)).unwrap_err().to_string();
        assert!(err.contains("bad.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("maxclientz"), "{err}");
        std::fs::write(&p, "[engine]\nlisten = 5\n").unwrap();
        let err = Config::load(Some(&p)).unwrap_err().to_string();
        assert!(err.contains("listen"), "{err}");
    }
}
