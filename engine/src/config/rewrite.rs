//! CONFIG REWRITE (`rewriteConfig`) for a TOML file: the running settings go back
//! into the file's engine section, edited in place with `toml_edit` so the user's
//! comments, key order and other sections stay. As Redis does, a key the file holds
//! is rewritten with the running value, and a key it lacks is added only when the
//! running value is not the default. The file is replaced atomically (a temporary
//! file renamed over it).

use super::{EngineConfig, Value, SETTINGS};
use std::path::PathBuf;

/// The config file the engine was started from, and the section its settings are in.
#[derive(Debug, Clone)]
pub(crate) struct ConfigFile {
    pub(crate) path: PathBuf,
    pub(crate) section: String,
}

/// Writes `cfg` into `file`; the error is the reason, for Redis's
/// `ERR Rewriting config file: <reason>`.
pub(crate) fn rewrite(cfg: &EngineConfig, file: &ConfigFile) -> Result<(), String> {
    let text = std::fs::read_to_string(&file.path).map_err(|e| e.to_string())?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    if !doc.contains_key(&file.section) {
        doc.insert(
            &file.section,
            toml_edit::Item::Table(toml_edit::Table::new()),
        );
    }
    let table = doc[&file.section]
        .as_table_like_mut()
        .ok_or_else(|| format!("[{}] is not a table", file.section))?;
    let defaults = EngineConfig::default();
    for s in SETTINGS {
        let Some(key) = s.key else { continue };
        let now = (s.get)(cfg);
        let present = table.contains_key(key);
        if !present && now == (s.get)(&defaults) {
            continue;
        }
        let mut v = toml_value(now.clone());
        match table.get_mut(key).and_then(|i| i.as_value_mut()) {
            Some(old) => {
                if means(s, old).as_ref() == Some(&now) {
                    continue;
                }
                // Keeps the comment after the value.
                *v.decor_mut() = old.decor().clone();
                *old = v;
            }
            None => {
                table.insert(key, toml_edit::Item::Value(v));
            }
        }
    }
    let dir = file
        .path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = file
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.rewrite-{}", std::process::id()));
    std::fs::write(&tmp, doc.to_string()).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &file.path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.to_string()
    })
}

fn toml_value(v: Value) -> toml_edit::Value {
    match v {
        Value::Bool(b) => b.into(),
        Value::Num(n) => match i64::try_from(n) {
            Ok(n) => n.into(),
            Err(_) => n.to_string().into(),
        },
        Value::Text(t) => t.into(),
    }
}

/// What a value in the file means for setting `s` (`"64mb"` as bytes), so a line
/// that already says the running value is left exactly as the user wrote it.
fn means(s: &super::Setting, v: &toml_edit::Value) -> Option<Value> {
    let sv = match v {
        toml_edit::Value::Boolean(b) => super::SettingValue::Bool(*b.value()),
        toml_edit::Value::Integer(n) => super::SettingValue::Int(*n.value()),
        toml_edit::Value::String(t) => super::SettingValue::Str(t.value()),
        _ => return None,
    };
    s.accept(sv).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_comments_and_other_sections() {
        let dir = std::env::temp_dir().join(format!("rewrite-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("coherent.toml");
        std::fs::write(
            &path,
            "# top comment\ndata_dir = \"x\"\n\n[engine]\n# the address\nlisten = \"127.0.0.1:0\"\nhz = 10 # ticks\nmaxmemory = \"64mb\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        let cfg = EngineConfig {
            listen: "127.0.0.1:0".into(),
            hz: 50,
            maxmemory: 64 * 1024 * 1024,
            maxclients: 7,
            ..Default::default()
        };
        let file = ConfigFile {
            path: path.clone(),
            section: "engine".into(),
        };
        rewrite(&cfg, &file).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# top comment\ndata_dir = \"x\"\n"),
            "{text}"
        );
        assert!(
            text.contains("# the address\nlisten = \"127.0.0.1:0\"\n"),
            "{text}"
        );
        assert!(text.contains("hz = 50 # ticks\n"), "{text}");
        // A value the file states differently but that means the same is left alone.
        assert!(text.contains("maxmemory = \"64mb\"\n"), "{text}");
        assert!(text.contains("maxclients = 7\n"), "{text}");
        assert!(
            text.contains("[admin]\nlisten = \"127.0.0.1:0\"\n"),
            "{text}"
        );
        // Reads back to the same settings.
        #[derive(serde::Deserialize)]
        struct File {
            engine: EngineConfig,
        }
        #[derive(serde::Deserialize)]
        struct Whole {
            #[serde(flatten)]
            f: File,
            #[allow(dead_code)]
            admin: toml::Table,
            #[allow(dead_code)]
            data_dir: String,
        }
        let back: Whole = toml::from_str(&text).unwrap();
        assert_eq!(back.f.engine, cfg);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
