//! The connector's config sections, declared once here and embedded as they are in a
//! program's own config (the sidecar's): `[mysql]`, `[checkpoint]`, `[target]`,
//! `[retry]` and `[[rules]]`; and the one error every section's validation gives,
//! [`ConfigError`], placed at its file line by [`ConfigFile`] from the TOML spans.

use crate::binlog::config::MysqlConfig;
use crate::checkpoint::{CheckpointConfig, CheckpointKind};
use crate::ha::HaConfig;
use crate::retry::{QueueKind, RetryConfig};
use crate::rules::{RuleConfig, Rules};
use crate::targets::TargetConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use toml_edit::{ImDocument, TableLike};

/// A refused config value: which section, entry and key, where it was written and
/// why. Every section's validation returns it; [`ConfigFile::place`] adds the file
/// and line, a program that sets keys from elsewhere (environment variables) names
/// that instead.
///
/// Displays as `coherent.toml:12: [target] key "url": <message>` (`[[rules]][1]` for
/// the second entry of an array of tables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the value came from: the file's name or, for example, `environment
    /// variable COHERENT_TARGET_URL`; `None` until the error is placed.
    pub origin: Option<String>,
    /// The section (`target`, `rules`); empty for a top-level key or a syntax error.
    pub section: String,
    /// The entry of an array of tables (`[[rules]]`), 0-based.
    pub index: Option<usize>,
    /// The key within the section; empty when the whole section is meant.
    pub key: String,
    /// The 1-based line in the file (`u32` keeps the error small enough to return
    /// by value everywhere).
    pub line: Option<u32>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error about `key` of `[section]`, not yet placed in a file.
    pub fn new(section: &str, key: &str, message: impl Into<String>) -> Self {
        ConfigError {
            origin: None,
            section: section.to_string(),
            index: None,
            key: key.to_string(),
            line: None,
            message: message.into(),
        }
    }

    /// The same error about entry `index` of `[[section]]`.
    pub fn at_index(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            f.write_str(origin)?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            f.write_str(": ")?;
        }
        match (self.section.is_empty(), self.index) {
            (true, _) => {}
            (false, None) => write!(f, "[{}]", self.section)?,
            (false, Some(i)) => write!(f, "[[{}]][{i}]", self.section)?,
        }
        if !self.key.is_empty() {
            if !self.section.is_empty() {
                f.write_str(" ")?;
            }
            write!(f, "key {:?}", self.key)?;
        }
        if !(self.section.is_empty() && self.key.is_empty()) {
            f.write_str(": ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A config file's text and its parsed layout (with the span of every key, value and
/// header), so that an error about a section and key is placed at its line, and a
/// deserializer's error at the section and key its span falls in.
#[derive(Debug)]
pub struct ConfigFile {
    name: String,
    doc: ImDocument<String>,
}

impl ConfigFile {
    /// Parses `text`, read from the file `name`; a syntax error is placed at its line.
    pub fn parse(name: impl Into<String>, text: impl Into<String>) -> Result<Self, ConfigError> {
        let name = name.into();
        let text = text.into();
        match ImDocument::parse(text.clone()) {
            Ok(doc) => Ok(ConfigFile { name, doc }),
            Err(e) => Err(ConfigError {
                origin: Some(name),
                line: e.span().map(|s| line_at(&text, s.start)),
                message: e.message().trim_end().to_string(),
                ..ConfigError::new("", "", "")
            }),
        }
    }

    /// The file's name, as errors show it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        self.doc.raw()
    }

    /// The top-level keys of the file, in file order.
    pub fn top_level_keys(&self) -> impl Iterator<Item = &str> {
        self.doc.as_table().iter().map(|(k, _)| k)
    }

    /// `e` with this file as its origin and the line of its key (or, when the key is
    /// not in the file, of its section's header).
    pub fn place(&self, mut e: ConfigError) -> ConfigError {
        e.line = self.line_of(&e.section, e.index, &e.key);
        e.origin = Some(self.name.clone());
        e
    }

    /// Deserializes the file into `T`; an error is placed at the section, key and line
    /// its span points at.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(self.text()).map_err(|e| {
            let (section, index, key) = match e.span() {
                Some(s) => self.locate(s.start),
                None => (String::new(), None, String::new()),
            };
            ConfigError {
                origin: Some(self.name.clone()),
                section,
                index,
                key,
                line: e.span().map(|s| line_at(self.text(), s.start)),
                message: e.message().trim_end().to_string(),
            }
        })
    }

    /// Refuses a top-level key that is not in `known`, naming the known ones.
    pub fn check_known(&self, known: &[&str]) -> Result<(), ConfigError> {
        for (k, item) in self.doc.as_table().iter() {
            if known.contains(&k) {
                continue;
            }
            let is_section = item.is_table_like() || item.is_array_of_tables();
            let e = if is_section {
                ConfigError::new(k, "", "unknown section")
            } else {
                ConfigError::new("", k, "unknown key")
            };
            let mut e = self.place(e);
            e.message = format!("{}; the top-level keys are {}", e.message, known.join(", "));
            return Err(e);
        }
        Ok(())
    }

    /// The 1-based line of `key` in `[section]` (entry `index` of `[[section]]`), or
    /// of the section's header when the key is not written there.
    pub fn line_of(&self, section: &str, index: Option<usize>, key: &str) -> Option<u32> {
        let root = self.doc.as_table();
        let span = if section.is_empty() {
            root.key(key).and_then(|k| k.span())
        } else {
            let item = root.get(section)?;
            let header = || root.key(section).and_then(|k| k.span());
            let (table, header): (&dyn TableLike, _) = match index {
                None => (item.as_table_like()?, item.span().or_else(header)),
                Some(i) => match item.as_array_of_tables() {
                    Some(a) => {
                        let t = a.get(i)?;
                        (t, t.span())
                    }
                    None => {
                        let v = item.as_array()?.get(i)?;
                        (v.as_inline_table()?, v.span())
                    }
                },
            };
            table.key(key).and_then(|k| k.span()).or(header)
        }?;
        Some(line_at(self.text(), span.start))
    }

    /// The section, entry and key whose key or value covers byte `at` of the text.
    fn locate(&self, at: usize) -> (String, Option<usize>, String) {
        let covers = |s: Option<Range<usize>>| s.is_some_and(|s| s.start <= at && at < s.end);
        let key_in = |t: &dyn TableLike| {
            t.iter()
                .find(|(k, v)| covers(t.key(k).and_then(|k| k.span())) || covers(v.span()))
                .map(|(k, _)| k.to_string())
        };
        let root = self.doc.as_table();
        for (name, item) in root.iter() {
            let named = covers(root.key(name).and_then(|k| k.span()));
            if let Some(t) = item.as_table_like() {
                if let Some(k) = key_in(t) {
                    return (name.into(), None, k);
                }
                if named || covers(item.span()) {
                    return (name.into(), None, String::new());
                }
            } else if let Some(a) = item.as_array_of_tables() {
                for (i, t) in a.iter().enumerate() {
                    if let Some(k) = key_in(t) {
                        return (name.into(), Some(i), k);
                    }
                    if covers(t.span()) {
                        return (name.into(), Some(i), String::new());
                    }
                }
            } else if let Some(arr) = item.as_array() {
                // `rules = [{ table = ..., keys = [...] }]`: inline tables.
                for (i, v) in arr.iter().enumerate() {
                    if let Some(k) = v.as_inline_table().and_then(|t| key_in(t)) {
                        return (name.into(), Some(i), k);
                    }
                    if covers(v.span()) {
                        return (name.into(), Some(i), String::new());
                    }
                }
                if named || covers(item.span()) {
                    return (String::new(), None, name.into());
                }
            } else if named || covers(item.span()) {
                return (String::new(), None, name.into());
            }
        }
        (String::new(), None, String::new())
    }
}

/// The 1-based line of byte `at` of `text`.
fn line_at(text: &str, at: usize) -> u32 {
    let at = at.min(text.len());
    let lines = text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    u32::try_from(lines).unwrap_or(u32::MAX).saturating_add(1)
}

/// The field names a derived `Deserialize` struct reads: the top-level keys it knows,
/// from its declaration (so no list of them is kept by hand).
pub fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields = None;
    // The probe only records what `deserialize_struct` is given, then stops.
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields.unwrap_or(&[])
}

struct FieldProbe<'a>(&'a mut Option<&'static [&'static str]>);

#[derive(Debug)]
struct ProbeDone;

impl fmt::Display for ProbeDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for ProbeDone {}

impl serde::de::Error for ProbeDone {
    fn custom<T: fmt::Display>(_: T) -> Self {
        ProbeDone
    }
}

impl<'de> serde::Deserializer<'de> for FieldProbe<'_> {
    type Error = ProbeDone;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeDone> {
        Err(ProbeDone)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, ProbeDone> {
        *self.0 = Some(fields);
        Err(ProbeDone)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
        enum identifier ignored_any
    }
}

/// The connector's sections of the config file, declared here only: a program
/// reads them from its config file into this struct beside its own sections (the
/// sidecar's `Config::connector`). Without `[mysql]` there is no pipeline, but the
/// other sections are still checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectorConfig {
    /// `[mysql]`: the server whose binlog is tailed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mysql: Option<MysqlConfig>,
    /// `[checkpoint]`.
    pub checkpoint: CheckpointConfig,
    /// `[target]`.
    pub target: TargetConfig,
    /// `[retry]`: where failed deletes wait.
    pub retry: RetryConfig,
    /// `[ha]`: one leader among several processes.
    pub ha: HaConfig,
    /// `[[rules]]`.
    pub rules: Vec<RuleConfig>,
}

impl ConnectorConfig {
    /// Validates every section and compiles the rules; the error names the section,
    /// entry and key.
    pub fn validate(&self) -> Result<Rules, ConfigError> {
        if let Some(mysql) = &self.mysql {
            mysql.validate()?;
        }
        self.checkpoint.validate()?;
        self.target.validate()?;
        self.retry.validate()?;
        self.ha.validate()?;
        if self.ha.enabled {
            if self.checkpoint.store != CheckpointKind::Mysql {
                return Err(ConfigError::new(
                    "ha",
                    "enabled",
                    "requires [checkpoint] store = \"mysql\": a standby resumes from the leader's last checkpoint, which must be on the server, not on the leader's disk",
                ));
            }
            let auto = self.mysql.as_ref().is_some_and(|m| m.auto_host.is_some());
            if auto && self.checkpoint.pipeline.is_none() {
                return Err(ConfigError::new(
                    "checkpoint",
                    "pipeline",
                    "must be set with [ha] enabled and [mysql] server_id = \"auto\": every process of the pipeline must read and write the same checkpoint row (the default row key is the server_id, which differs per host)",
                ));
            }
        }
        Rules::compile(&self.rules).map_err(|e| e.config_error())
    }

    /// `[mysql]`, which a pipeline needs.
    pub fn mysql(&self) -> Result<&MysqlConfig, ConfigError> {
        self.mysql.as_ref().ok_or_else(|| {
            ConfigError::new(
                "mysql",
                "",
                "missing: add url = \"mysql://USER:PASSWORD@HOST:PORT\" and server_id = N",
            )
        })
    }

    /// Makes the relative data file paths (`[checkpoint] path`, `[retry] path`)
    /// relative to `dir`, the program's data directory; absolute ones stay.
    pub fn resolve_paths(&mut self, dir: &Path) {
        for p in [&mut self.checkpoint.path, &mut self.retry.path] {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
    }

    /// The local files the pipeline writes with this config (the file checkpoint,
    /// the embedded retry log), whose directories must exist.
    pub fn data_files(&self) -> Vec<&Path> {
        let mut files = Vec::new();
        if self.checkpoint.store == CheckpointKind::File {
            files.push(self.checkpoint.path.as_path());
        }
        if self.retry.queue == QueueKind::Embedded {
            files.push(self.retry.path.as_path());
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
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

    #[test]
    fn ha_requires_the_mysql_checkpoint_store() {
        let text = format!("{TEXT}\n[ha]\nenabled = true\n");
        let c: ConnectorConfig = toml::from_str(&text).unwrap();
        let e = c.validate().unwrap_err();
        assert_eq!((e.section.as_str(), e.key.as_str()), ("ha", "enabled"));
        assert!(
            e.message
                .contains("requires [checkpoint] store = \"mysql\""),
            "{e}"
        );
        let file = ConfigFile::parse("c.toml", text.as_str()).unwrap();
        let placed = file.place(e).to_string();
        let line = text.lines().position(|l| l == "enabled = true").unwrap() + 1;
        assert!(
            placed.starts_with(&format!("c.toml:{line}: [ha] key \"enabled\": requires")),
            "{placed}"
        );
        let ok = text.replace("store = \"file\"", "store = \"mysql\"");
        let c: ConnectorConfig = toml::from_str(&ok).unwrap();
        assert!(c.validate().is_ok());
        let auto = ok.replace("server_id = 64001", "server_id = \"auto\"");
        let c: ConnectorConfig = toml::from_str(&auto).unwrap();
        assert_eq!(c.validate().unwrap_err().key, "pipeline");
    }

    #[test]
    fn issue_example_parses() {
        let c: ConnectorConfig = toml::from_str(TEXT).unwrap();
        let rules = c.validate().unwrap();
        assert_eq!(rules.rules().len(), 1);
        assert!(rules.covers("app", "users"));
        assert_eq!(c.mysql().unwrap().server_id, 64001);
        let mut c = c;
        c.resolve_paths(Path::new("/var/lib/coherent"));
        assert_eq!(
            c.data_files(),
            [
                Path::new("/var/lib/coherent/coherent.checkpoint"),
                Path::new("/var/lib/coherent/coherent.retry")
            ]
        );
        let none: ConnectorConfig = toml::from_str("[target]\nkind = \"embedded\"\n").unwrap();
        assert!(none.validate().is_ok() && none.mysql().is_err());
        let bad: Result<ConnectorConfig, _> =
            toml::from_str(&TEXT.replace("kind = \"embedded\"", "kind = \"memcached\""));
        assert!(bad.is_err());
    }

    #[test]
    fn errors_are_placed_from_the_spans() {
        let f = ConfigFile::parse("c.toml", TEXT).unwrap();
        assert_eq!(f.line_of("mysql", None, "server_id"), Some(4));
        assert_eq!(f.line_of("target", None, "url"), Some(11), "the header");
        assert_eq!(f.line_of("rules", Some(0), "keys"), Some(16));
        let e = f.place(ConfigError::new(
            "target",
            "url",
            "required for kind = \"redis\"",
        ));
        assert_eq!(
            e.to_string(),
            "c.toml:11: [target] key \"url\": required for kind = \"redis\""
        );
        let e = f.place(ConfigError::new("rules", "keys", "empty").at_index(0));
        assert_eq!(e.to_string(), "c.toml:16: [[rules]][0] key \"keys\": empty");

        // A deserializer's error lands on the key its span covers.
        let f = ConfigFile::parse("c.toml", TEXT.replace("\"embedded\"", "\"memcached\"")).unwrap();
        let e = f.deserialize::<ConnectorConfig>().unwrap_err();
        assert_eq!(
            (e.section.as_str(), e.key.as_str(), e.line),
            ("target", "kind", Some(12))
        );
        assert!(e
            .to_string()
            .starts_with("c.toml:12: [target] key \"kind\": unknown variant"));
        let f = ConfigFile::parse("c.toml", TEXT.replace("columns", "colums")).unwrap();
        let e = f.deserialize::<ConnectorConfig>().unwrap_err();
        assert_eq!(
            (e.section.as_str(), e.index, e.key.as_str(), e.line),
            ("rules", Some(0), "colums", Some(17))
        );
        // A syntax error has its line too.
        let e = ConfigFile::parse("c.toml", "[mysql]\nurl = \n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.to_string().starts_with("c.toml:2: "), "{e}");
    }

    #[test]
    fn unknown_top_level_keys_are_refused() {
        let known = fields_of::<ConnectorConfig>();
        assert_eq!(
            known,
            ["mysql", "checkpoint", "target", "retry", "ha", "rules"]
        );
        let f = ConfigFile::parse("c.toml", format!("{TEXT}\n[mysqll]\nurl = \"x\"\n")).unwrap();
        let e = f.check_known(known).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("c.toml:19: [mysqll]: unknown section"),
            "{e}"
        );
    }
}
