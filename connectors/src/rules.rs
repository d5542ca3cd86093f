//! Rules: which cache keys a row change invalidates.
//!
//! ```toml
//! [[rules]]
//! table = "app.users"                       # db.table, or db.* for every table of db
//! keys = ["user:{id}", "user:email:{email}"]
//! columns = ["email", "name"]               # optional: only changes to these invalidate
//! ```
//!
//! A change yields the keys of its before image and of its after image, so a changed
//! email deletes both the old and the new `user:email:*` key. Placeholder values are
//! the bytes MySQL prints for the column (see [`crate::row::render_value`]).
//!
//! A rule may say how a row renders into its cached value, for the audits:
//! `value = { columns = ["id", "email"], keys = ["user:{id}"] }`. `keys` lists the
//! templates whose cached value *is* the rendered row (default: the first template
//! only); the other templates (pointers such as `user:email:{email}` -> id) are not
//! compared by value. [`Rule::value_templates`] is the one place both audits read it.

use crate::binlog::{Cell, ChangeKind, Row, RowChange};
use crate::config::ConfigError;
use crate::duration::HumanDuration;
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Errors in a rule's configuration or when applying it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// `table` is not `db.table` or `db.*`.
    #[error("rules[{index}].table {table:?}: expected \"db.table\" or \"db.*\"")]
    Table {
        /// Rule index.
        index: usize,
        /// The value.
        table: String,
    },
    /// A key template is empty or has an unbalanced or empty placeholder.
    #[error("rules[{index}].keys {template:?}: {reason}")]
    Template {
        /// Rule index.
        index: usize,
        /// The template.
        template: String,
        /// What is wrong.
        reason: String,
    },
    /// `keys` is empty.
    #[error("rules[{index}].keys: at least one key template is needed")]
    NoKeys {
        /// Rule index.
        index: usize,
    },
    /// A placeholder names a column the table does not have.
    #[error("rule for {table:?}: key {template:?} uses column `{column}`, which `{db}`.`{table_name}` does not have")]
    UnknownColumn {
        /// The rule's table pattern.
        table: String,
        /// The template.
        template: String,
        /// The missing column.
        column: String,
        /// The row's database.
        db: String,
        /// The row's table.
        table_name: String,
    },
    /// `value.keys` names a template that is not in the rule's `keys`.
    #[error("rules[{index}].value.keys {template:?}: not one of the rule's keys {keys:?}")]
    ValueKey {
        /// Rule index.
        index: usize,
        /// The unknown template.
        template: String,
        /// The rule's templates.
        keys: Vec<String>,
    },
    /// `value.format` is not one the audits render (only `"json"`).
    #[error("rules[{index}].value.format {format:?}: only \"json\" is supported")]
    ValueFormat {
        /// Rule index.
        index: usize,
        /// The format given.
        format: String,
    },
    /// A placeholder's column is not in the row image (binlog_row_image is not FULL).
    #[error("key {template:?} needs column `{column}` of `{db}`.`{table}`, which the binlog row image does not carry: set binlog_row_image=FULL")]
    AbsentColumn {
        /// The template.
        template: String,
        /// The column.
        column: String,
        /// Database.
        db: String,
        /// Table.
        table: String,
    },
}

impl RuleError {
    /// The error as a config error about its `[[rules]]` entry and key (compile-time
    /// errors; the others, about rows, name no entry).
    pub fn config_error(&self) -> ConfigError {
        let (index, key, message) = match self {
            RuleError::Table { index, table } => (
                *index,
                "table",
                format!("{table:?}: expected \"db.table\" or \"db.*\""),
            ),
            RuleError::Template {
                index,
                template,
                reason,
            } => (*index, "keys", format!("{template:?}: {reason}")),
            RuleError::NoKeys { index } => (
                *index,
                "keys",
                "at least one key template is needed".to_string(),
            ),
            RuleError::ValueKey {
                index,
                template,
                keys,
            } => (
                *index,
                "value",
                format!("keys {template:?}: not one of the rule's keys {keys:?}"),
            ),
            RuleError::ValueFormat { index, format } => (
                *index,
                "value",
                format!("format {format:?}: only \"json\" is supported"),
            ),
            other => return ConfigError::new("rules", "", other.to_string()),
        };
        ConfigError::new("rules", key, message).at_index(index)
    }
}

/// One `[[rules]]` entry as written in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// `db.table` or `db.*`.
    pub table: String,
    /// Key templates with `{column}` placeholders.
    pub keys: Vec<String>,
    /// Only updates changing one of these columns invalidate (inserts and deletes
    /// always do). Absent: every update invalidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// Delete each key again this long after the first delete (`"0"` turns it off).
    #[serde(default = "default_double_delete")]
    pub double_delete: HumanDuration,
    /// Maximum TTL of a key the rule covers (`"0"`/absent: none). Applied by the
    /// external-Redis sweeper ([`crate::targets::redis::sweeper`]) and, through
    /// [`Rules::backstops`], by the embedded engine.
    #[serde(default, skip_serializing_if = "HumanDuration::is_zero")]
    pub ttl_backstop: HumanDuration,
    /// How a row renders into its cached value, for the audits:
    /// `value = { format = "json", columns = ["id", "email"] }`; under the templates of
    /// [`ValueRenderer::keys`] (default: the first one), see [`Rule::value_templates`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ValueRenderer>,
}

/// A rule's value renderer: what the cache-aside library stores for a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueRenderer {
    /// `"json"`: a JSON object of `columns` in order, as serde_json encodes a struct
    /// of those fields (the cache-aside `Json` codec). Integers as numbers, NULL as null.
    #[serde(default = "default_format")]
    pub format: String,
    /// The columns, in field order.
    pub columns: Vec<String>,
    /// The key templates (as written in the rule's `keys`) whose cached value is the
    /// rendered row. Absent: the rule's first template only. Other templates (e.g. a
    /// secondary key caching the id) are not compared by value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
}

impl RuleConfig {
    /// Indices into `keys` of the templates whose cached value is the rendered row:
    /// empty without a `value` renderer; `value.keys` when given (names that are not
    /// in `keys` are skipped here; [`Rules::compile`] rejects them); else `[0]`.
    pub fn value_templates(&self) -> Vec<usize> {
        value_templates_of(self).unwrap_or_else(|(found, _)| found)
    }
}

/// [`RuleConfig::value_templates`], with the first name `value.keys` lists that is
/// not a template of the rule as the error (next to the indices found).
fn value_templates_of(c: &RuleConfig) -> Result<Vec<usize>, (Vec<usize>, String)> {
    let Some(v) = &c.value else {
        return Ok(Vec::new());
    };
    let Some(names) = &v.keys else {
        return Ok(vec![0]);
    };
    let mut found = Vec::with_capacity(names.len());
    let mut unknown = None;
    for n in names {
        match c.keys.iter().position(|k| k == n) {
            Some(i) if !found.contains(&i) => found.push(i),
            Some(_) => {}
            None => unknown = unknown.or_else(|| Some(n.clone())),
        }
    }
    found.sort_unstable();
    match unknown {
        None => Ok(found),
        Some(n) => Err((found, n)),
    }
}

fn default_format() -> String {
    "json".into()
}

/// The design's default second-delete delay.
pub const DEFAULT_DOUBLE_DELETE: Duration = Duration::from_millis(500);

fn default_double_delete() -> HumanDuration {
    HumanDuration(DEFAULT_DOUBLE_DELETE)
}

/// At most this many splits of one key are returned by [`KeyTemplate::parse_key`].
pub const MAX_KEY_SPLITS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Bytes),
    Column(String),
}

/// A parsed key template such as `user:email:{email}`. `{{` and `}}` are literal braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    text: String,
    segments: Vec<Segment>,
}

impl KeyTemplate {
    /// Parses a template.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("empty key template".into());
        }
        let mut segments = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => return Err("unclosed `{` in key template".into()),
                            Some(ch) => name.push(ch),
                        }
                    }
                    let name = name.trim().to_string();
                    if name.is_empty() {
                        return Err("empty `{}` placeholder".into());
                    }
                    if !lit.is_empty() {
                        segments.push(Segment::Literal(Bytes::from(std::mem::take(&mut lit))));
                    }
                    segments.push(Segment::Column(name));
                }
                '}' => return Err("unmatched `}` in key template (write `}}` for a brace)".into()),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            segments.push(Segment::Literal(Bytes::from(lit)));
        }
        Ok(KeyTemplate {
            text: text.to_string(),
            segments,
        })
    }

    /// The template as a glob: placeholders become `*`, literal glob characters are
    /// escaped with a backslash.
    pub fn glob(&self) -> String {
        let mut g = String::new();
        for s in &self.segments {
            match s {
                Segment::Column(_) => g.push('*'),
                Segment::Literal(b) => {
                    for c in String::from_utf8_lossy(b).chars() {
                        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                            g.push('\\');
                        }
                        g.push(c);
                    }
                }
            }
        }
        g
    }

    /// The key for a row given as a column lookup; `None` when a column is NULL or
    /// missing.
    pub fn render_with<'a>(&self, get: impl Fn(&str) -> Option<&'a [u8]>) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for s in &self.segments {
            match s {
                Segment::Literal(b) => out.extend_from_slice(b),
                Segment::Column(c) => out.extend_from_slice(get(c)?),
            }
        }
        Some(out)
    }

    /// The template as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Number of literal bytes: of two templates that both parse a key, the one with
    /// more literal bytes is the more specific (`user:email:{e}` over `user:{id}`).
    pub fn literal_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(b) => b.len(),
                Segment::Column(_) => 0,
            })
            .sum()
    }

    /// The placeholder values `key` could have been rendered from: one entry per
    /// possible split, each `(column, value)` once per distinct column in template
    /// order. Empty when the key does not fit the template. A split is ambiguous
    /// when a value may contain the literal that follows it (`{a}:{b}` over `x:y:z`)
    /// or two placeholders are adjacent; every split is returned (at most
    /// [`MAX_KEY_SPLITS`]), so a caller looking rows up finds the one that exists.
    /// A column used twice must have the same value at both places.
    pub fn parse_key<'k>(&self, key: &'k [u8]) -> Vec<Vec<(&str, &'k [u8])>> {
        let mut out = Vec::new();
        let mut cur = Vec::with_capacity(self.segments.len());
        self.split(0, key, 0, &mut cur, &mut out);
        out.into_iter()
            .filter_map(|values| {
                let mut cols: Vec<(&str, &'k [u8])> = Vec::new();
                let placeholders = self.segments.iter().filter_map(|s| match s {
                    Segment::Column(c) => Some(c.as_str()),
                    Segment::Literal(_) => None,
                });
                for (c, v) in placeholders.zip(values) {
                    match cols.iter().find(|(x, _)| *x == c) {
                        Some((_, seen)) if *seen != v => return None,
                        Some(_) => {}
                        None => cols.push((c, v)),
                    }
                }
                Some(cols)
            })
            .collect()
    }

    /// Depth-first over the segments from `seg`, the key consumed up to `pos`.
    fn split<'k>(
        &self,
        seg: usize,
        key: &'k [u8],
        pos: usize,
        cur: &mut Vec<&'k [u8]>,
        out: &mut Vec<Vec<&'k [u8]>>,
    ) {
        if out.len() >= MAX_KEY_SPLITS {
            return;
        }
        let rest = &key[pos..];
        match self.segments.get(seg) {
            None => {
                // Splits giving one column two values are dropped here, before they
                // count against MAX_KEY_SPLITS, so they cannot crowd out a valid one.
                if rest.is_empty() && self.repeats_agree(cur) {
                    out.push(cur.clone());
                }
            }
            Some(Segment::Literal(l)) => {
                if rest.starts_with(l) {
                    self.split(seg + 1, key, pos + l.len(), cur, out);
                }
            }
            Some(Segment::Column(_)) => {
                let ends: Vec<usize> = match self.segments.get(seg + 1) {
                    // Last segment: the value is the rest of the key.
                    None => vec![rest.len()],
                    // The value ends where an occurrence of the next literal starts.
                    Some(Segment::Literal(l)) => (0..=rest.len())
                        .filter(|&i| rest[i..].starts_with(l))
                        .collect(),
                    // Adjacent placeholders: any split.
                    Some(Segment::Column(_)) => (0..=rest.len()).collect(),
                };
                for end in ends {
                    cur.push(&rest[..end]);
                    self.split(seg + 1, key, pos + end, cur, out);
                    cur.pop();
                }
            }
        }
    }

    /// Whether a column used at several placeholders has the same value at each
    /// (`values` parallel to the placeholders).
    fn repeats_agree(&self, values: &[&[u8]]) -> bool {
        let cols: Vec<&str> = self.columns().collect();
        cols.iter().enumerate().all(|(i, c)| {
            cols[..i]
                .iter()
                .position(|x| x == c)
                .is_none_or(|j| values.get(j) == values.get(i))
        })
    }

    /// The columns the template uses.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Column(c) => Some(c.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The key for `row`; `Ok(None)` when a placeholder column is NULL (no cache
    /// entry can be keyed by NULL).
    pub fn render(&self, row: &Row, db: &str, table: &str) -> Result<Option<Bytes>, RuleError> {
        let mut out = BytesMut::new();
        for s in &self.segments {
            match s {
                Segment::Literal(b) => out.extend_from_slice(b),
                Segment::Column(c) => match row.get(c) {
                    Some(Cell::Value(v)) => out.extend_from_slice(v),
                    Some(Cell::Null) => return Ok(None),
                    Some(Cell::Absent) => {
                        return Err(RuleError::AbsentColumn {
                            template: self.text.clone(),
                            column: c.clone(),
                            db: db.into(),
                            table: table.into(),
                        })
                    }
                    None => {
                        return Err(RuleError::UnknownColumn {
                            table: format!("{db}.{table}"),
                            template: self.text.clone(),
                            column: c.clone(),
                            db: db.into(),
                            table_name: table.into(),
                        })
                    }
                },
            }
        }
        Ok(Some(out.freeze()))
    }
}

/// A `db.table` / `db.*` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePattern {
    db: String,
    /// `None` for `db.*`.
    table: Option<String>,
}

impl TablePattern {
    /// Parses `db.table` or `db.*`.
    pub fn parse(s: &str) -> Option<Self> {
        let (db, table) = s.trim().split_once('.')?;
        if db.is_empty() || table.is_empty() || db == "*" {
            return None;
        }
        Some(TablePattern {
            db: db.to_string(),
            table: (table != "*").then(|| table.to_string()),
        })
    }

    /// Whether the pattern covers `db`.`table`.
    pub fn matches(&self, db: &str, table: &str) -> bool {
        self.db == db && self.table.as_deref().is_none_or(|t| t == table)
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pattern: TablePattern,
    source: String,
    keys: Vec<KeyTemplate>,
    columns: Option<Vec<String>>,
    double_delete: Duration,
    ttl_backstop: Duration,
    value: Option<ValueRenderer>,
    value_templates: Vec<usize>,
}

/// Which row image of a change a key was rendered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// The row before the change (updates and deletes).
    Before,
    /// The row after the change (inserts and updates).
    After,
}

/// One key a change invalidates, with where it came from: see [`Rules::for_each_key`].
#[derive(Debug, Clone)]
pub struct KeyOrigin<'a> {
    /// Index of the rule in [`Rules::rules`].
    pub rule: usize,
    /// Index of the template in that rule's [`Rule::keys`].
    pub template: usize,
    /// The image the key was rendered from.
    pub image: Image,
    /// That image.
    pub row: &'a Row,
    /// The key.
    pub key: Bytes,
}

impl Rule {
    /// The table pattern as written.
    pub fn table(&self) -> &str {
        &self.source
    }

    /// The parsed key templates.
    pub fn keys(&self) -> &[KeyTemplate] {
        &self.keys
    }

    /// The value renderer, when the rule has one.
    pub fn value(&self) -> Option<&ValueRenderer> {
        self.value.as_ref()
    }

    /// Indices into [`Rule::keys`] of the templates whose cached value is the rendered
    /// row (`value.keys`, default the first template; empty without a renderer).
    /// The audits compare only these by value.
    pub fn value_templates(&self) -> &[usize] {
        &self.value_templates
    }

    /// Delay of the second delete (zero: none).
    pub fn double_delete(&self) -> Duration {
        self.double_delete
    }

    /// Maximum TTL of the keys this rule covers (zero: none).
    pub fn ttl_backstop(&self) -> Duration {
        self.ttl_backstop
    }

    /// `SCAN MATCH` globs covering the rule's keys: each placeholder becomes `*`,
    /// glob characters in literals are escaped.
    pub fn key_globs(&self) -> Vec<String> {
        self.keys.iter().map(KeyTemplate::glob).collect()
    }

    /// Whether this update touches a watched column (always true without `columns`).
    fn triggered(&self, change: &RowChange) -> bool {
        let (Some(cols), ChangeKind::Update) = (&self.columns, change.kind) else {
            return true;
        };
        let (Some(b), Some(a)) = (&change.before, &change.after) else {
            return true;
        };
        // A watched column absent from either image counts as changed: without the
        // value there is no proof it did not change.
        cols.iter().any(|c| match (b.get(c), a.get(c)) {
            (Some(Cell::Absent), _) | (_, Some(Cell::Absent)) => true,
            (x, y) => x != y,
        })
    }
}

/// All rules, compiled.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// Compiles and validates the `[[rules]]` entries.
    pub fn compile(configs: &[RuleConfig]) -> Result<Self, RuleError> {
        let mut rules = Vec::with_capacity(configs.len());
        for (index, c) in configs.iter().enumerate() {
            let pattern = TablePattern::parse(&c.table).ok_or_else(|| RuleError::Table {
                index,
                table: c.table.clone(),
            })?;
            if c.keys.is_empty() {
                return Err(RuleError::NoKeys { index });
            }
            let keys = c
                .keys
                .iter()
                .map(|k| {
                    KeyTemplate::parse(k).map_err(|reason| RuleError::Template {
                        index,
                        template: k.clone(),
                        reason,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            // Refused here, at load, rather than when an audit first renders a row.
            if let Some(v) = c.value.as_ref().filter(|v| v.format != "json") {
                return Err(RuleError::ValueFormat {
                    index,
                    format: v.format.clone(),
                });
            }
            let value_templates =
                value_templates_of(c).map_err(|(_, template)| RuleError::ValueKey {
                    index,
                    template,
                    keys: c.keys.clone(),
                })?;
            rules.push(Rule {
                pattern,
                source: c.table.clone(),
                keys,
                columns: c.columns.clone(),
                double_delete: c.double_delete.0,
                ttl_backstop: c.ttl_backstop.0,
                value: c.value.clone(),
                value_templates,
            });
        }
        Ok(Rules { rules })
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// `(glob, max TTL)` for every key template of every rule with a TTL backstop:
    /// the hook through which the embedded engine caps TTLs of covered keys.
    pub fn backstops(&self) -> Vec<(String, Duration)> {
        self.rules
            .iter()
            .filter(|r| !r.ttl_backstop.is_zero())
            .flat_map(|r| r.key_globs().into_iter().map(|g| (g, r.ttl_backstop)))
            .collect()
    }

    /// Whether any rule covers `db`.`table` (the source decodes only those).
    pub fn covers(&self, db: &str, table: &str) -> bool {
        self.rules.iter().any(|r| r.pattern.matches(db, table))
    }

    /// Adds the keys `change` invalidates to `out`: for every matching rule, every
    /// template over the before image and over the after image.
    pub fn keys_for(&self, change: &RowChange, out: &mut KeyBatch) -> Result<(), RuleError> {
        self.for_each_key(change, |k| {
            let delay = self
                .rules
                .get(k.rule)
                .map_or(Duration::ZERO, |r| r.double_delete);
            out.push_delayed(k.key, delay);
        })
    }

    /// Calls `f` with every key `change` invalidates and where it came from: for each
    /// matching, triggered rule in order, the before image then the after image, each
    /// template in order (duplicates included; a NULL placeholder yields no key). The
    /// one walk behind [`Rules::keys_for`] (the pipeline's hot path: nothing is
    /// allocated beyond the keys themselves) and the online audit's sampling.
    pub fn for_each_key<'c>(
        &self,
        change: &'c RowChange,
        mut f: impl FnMut(KeyOrigin<'c>),
    ) -> Result<(), RuleError> {
        for (ri, rule) in self.rules.iter().enumerate() {
            if !rule.pattern.matches(&change.db, &change.table) || !rule.triggered(change) {
                continue;
            }
            let images = [
                (Image::Before, change.before.as_ref()),
                (Image::After, change.after.as_ref()),
            ];
            for (image, row) in images {
                let Some(row) = row else { continue };
                for (ti, t) in rule.keys.iter().enumerate() {
                    if let Some(key) = t.render(row, &change.db, &change.table)? {
                        f(KeyOrigin {
                            rule: ri,
                            template: ti,
                            image,
                            row,
                            key,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// The keys of one transaction: duplicates dropped, first occurrence kept, so the
/// order stays the binlog's.
#[derive(Debug, Clone, Default)]
pub struct KeyBatch {
    keys: Vec<Bytes>,
    delays: Vec<Duration>,
    seen: std::collections::HashMap<Bytes, usize>,
}

impl KeyBatch {
    /// Adds `key` (without a second delete) unless it is already in the batch.
    pub fn push(&mut self, key: Bytes) {
        self.push_delayed(key, Duration::ZERO);
    }

    /// Adds `key` with a second delete after `delay` (zero: none); a key already in
    /// the batch keeps the longer of the two delays.
    pub fn push_delayed(&mut self, key: Bytes, delay: Duration) {
        match self.seen.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let d = &mut self.delays[*e.get()];
                *d = (*d).max(delay);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                self.keys.push(e.key().clone());
                self.delays.push(delay);
                e.insert(self.keys.len() - 1);
            }
        }
    }

    /// The second-delete delay of each key, parallel to [`KeyBatch::keys`].
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// The keys in order.
    pub fn keys(&self) -> &[Bytes] {
        &self.keys
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key was added.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.delays.clear();
        self.seen.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::row;
    use std::sync::Arc;

    fn rules(toml_text: &str) -> Rules {
        #[derive(Deserialize)]
        struct F {
            rules: Vec<RuleConfig>,
        }
        let f: F = toml::from_str(toml_text).unwrap();
        Rules::compile(&f.rules).unwrap()
    }

    #[test]
    fn update_yields_before_and_after_keys() {
        let r = rules(
            r#"
            [[rules]]
            table = "app.users"
            keys = ["user:{id}", "user:email:{email}"]
        "#,
        );
        let cols = ["id", "email", "name"];
        let change = RowChange {
            db: "app".into(),
            table: "users".into(),
            kind: ChangeKind::Update,
            before: Some(row(&cols, &[Some("7"), Some("a@x"), Some("A")])),
            after: Some(row(&cols, &[Some("7"), Some("b@x"), Some("A")])),
        };
        let mut out = KeyBatch::default();
        r.keys_for(&change, &mut out).unwrap();
        let out: Vec<&[u8]> = out.keys().iter().map(|b| b.as_ref()).collect();
        assert_eq!(
            out,
            vec![&b"user:7"[..], b"user:email:a@x", b"user:email:b@x"]
        );
    }

    #[test]
    fn columns_filter_and_wildcard_and_null() {
        let r = rules(
            r#"
            [[rules]]
            table = "app.*"
            keys = ["t:{id}:{{x}}", "e:{email}"]
            columns = ["email"]
        "#,
        );
        let cols = ["id", "email", "name"];
        let mut change = RowChange {
            db: "app".into(),
            table: "anything".into(),
            kind: ChangeKind::Update,
            before: Some(row(&cols, &[Some("1"), None, Some("A")])),
            after: Some(row(&cols, &[Some("1"), None, Some("B")])),
        };
        let mut out = KeyBatch::default();
        r.keys_for(&change, &mut out).unwrap();
        assert!(out.is_empty(), "name is not watched");
        change.after = Some(row(&cols, &[Some("1"), Some("z"), Some("B")]));
        r.keys_for(&change, &mut out).unwrap();
        let out: Vec<&[u8]> = out.keys().iter().map(|b| b.as_ref()).collect();
        assert_eq!(
            out,
            vec![&b"t:1:{x}"[..], b"e:z"],
            "NULL email gives no key"
        );
        assert!(!r.covers("other", "t"));
        assert!(r.covers("app", "t"));
    }

    #[test]
    fn bad_configs_are_rejected() {
        let bad = |t: &str, k: &str| {
            Rules::compile(&[RuleConfig {
                table: t.into(),
                keys: vec![k.into()],
                columns: None,
                double_delete: HumanDuration::default(),
                ttl_backstop: HumanDuration::default(),
                value: None,
            }])
            .unwrap_err()
            .to_string()
        };
        assert!(bad("users", "u:{id}").contains("db.table"));
        assert!(bad("app.users", "u:{id").contains("unclosed"));
        assert!(bad("app.users", "u:{}").contains("empty"));
        assert!(bad("app.users", "u:}").contains("unmatched"));
    }

    #[test]
    fn unknown_column_is_an_error() {
        let r = rules("[[rules]]\ntable = \"a.b\"\nkeys = [\"k:{nope}\"]\n");
        let change = RowChange {
            db: "a".into(),
            table: "b".into(),
            kind: ChangeKind::Insert,
            before: None,
            after: Some(Row {
                columns: Arc::from(vec!["id".to_string()]),
                cells: vec![Cell::Value(Bytes::from_static(b"1"))],
            }),
        };
        let err = r.keys_for(&change, &mut KeyBatch::default()).unwrap_err();
        assert!(matches!(err, RuleError::UnknownColumn { .. }), "{err}");
    }

    #[test]
    fn parse_key_inverts_render() {
        let t = KeyTemplate::parse("user:email:{email}").unwrap();
        assert_eq!(
            t.parse_key(b"user:email:a@x.org"),
            vec![vec![("email", &b"a@x.org"[..])]]
        );
        assert!(t.parse_key(b"user:42").is_empty(), "literal prefix differs");
        assert_eq!(t.parse_key(b"user:email:"), vec![vec![("email", &b""[..])]]);
        // Round trip through render_with.
        let t = KeyTemplate::parse("t:{a}/{b}:{{x}}").unwrap();
        let key = t
            .render_with(|c| Some(if c == "a" { &b"1"[..] } else { &b"two"[..] }))
            .unwrap();
        assert_eq!(key, b"t:1/two:{x}");
        assert_eq!(
            t.parse_key(&key),
            vec![vec![("a", &b"1"[..]), ("b", &b"two"[..])]]
        );
        assert!(t.parse_key(b"t:1/two:{y}").is_empty(), "suffix literal");
        assert_eq!(t.literal_len(), 2 + 1 + 4);
    }

    #[test]
    fn parse_key_returns_every_split_and_checks_repeated_columns() {
        let t = KeyTemplate::parse("{a}:{b}").unwrap();
        assert_eq!(
            t.parse_key(b"x:y:z"),
            vec![
                vec![("a", &b"x"[..]), ("b", &b"y:z"[..])],
                vec![("a", &b"x:y"[..]), ("b", &b"z"[..])],
            ]
        );
        let adj = KeyTemplate::parse("k{a}{b}").unwrap();
        assert_eq!(adj.parse_key(b"k12").len(), 3);
        let rep = KeyTemplate::parse("{id}-{id}").unwrap();
        assert_eq!(rep.parse_key(b"7-7"), vec![vec![("id", &b"7"[..])]]);
        assert!(rep.parse_key(b"7-8").is_empty(), "same column, two values");
        let many = KeyTemplate::parse("{a}{b}").unwrap();
        assert_eq!(many.parse_key(&[b'x'; 100]).len(), MAX_KEY_SPLITS);
        // 40 splits of `{a}` exist, only the last one gives `id` one value: the
        // invalid ones must not use up the MAX_KEY_SPLITS budget.
        let rep = KeyTemplate::parse("{id}:{a}:{id}").unwrap();
        let key = format!("7:{}:7", vec!["x"; 40].join(":"));
        let splits = rep.parse_key(key.as_bytes());
        assert_eq!(splits.len(), 1, "{splits:?}");
        assert_eq!(splits[0][0], ("id", &b"7"[..]));
    }

    fn users(value: &str) -> Rules {
        rules(&format!(
            "[[rules]]\ntable = \"app.users\"\nkeys = [\"user:{{id}}\", \"user:email:{{email}}\", \"u:{{id}}\"]\n{value}\n"
        ))
    }

    #[test]
    fn value_templates_default_to_the_first_and_follow_value_keys() {
        assert!(
            users("").rules()[0].value_templates().is_empty(),
            "no renderer"
        );
        assert!(users("").rules()[0].value().is_none());
        let r = users("value = { columns = [\"id\"] }");
        assert_eq!(r.rules()[0].value_templates(), [0]);
        let r = users("value = { columns = [\"id\"], keys = [\"u:{id}\", \"user:{id}\"] }");
        assert_eq!(r.rules()[0].value_templates(), [0, 2]);
        assert_eq!(r.rules()[0].value().map(|v| v.columns.len()), Some(1));
        let r = users("value = { columns = [\"id\"], keys = [] }");
        assert!(r.rules()[0].value_templates().is_empty(), "explicitly none");
        // The config form agrees and skips unknown names; compile rejects them.
        let cfg = RuleConfig {
            table: "app.users".into(),
            keys: vec!["user:{id}".into(), "user:email:{email}".into()],
            columns: None,
            double_delete: HumanDuration::default(),
            ttl_backstop: HumanDuration::default(),
            value: Some(ValueRenderer {
                format: "json".into(),
                columns: vec!["id".into()],
                keys: Some(vec!["user:email:{email}".into(), "nope:{id}".into()]),
            }),
        };
        assert_eq!(cfg.value_templates(), [1]);
        let err = Rules::compile(&[cfg]).unwrap_err();
        assert!(
            matches!(&err, RuleError::ValueKey { template, .. } if template == "nope:{id}"),
            "{err}"
        );
    }

    #[test]
    fn for_each_key_names_rule_template_and_image() {
        let r = rules(
            r#"
            [[rules]]
            table = "app.users"
            keys = ["user:{id}", "user:email:{email}"]
            [[rules]]
            table = "app.*"
            keys = ["any:{id}"]
        "#,
        );
        let cols = ["id", "email"];
        let change = RowChange {
            db: "app".into(),
            table: "users".into(),
            kind: ChangeKind::Update,
            before: Some(row(&cols, &[Some("7"), Some("a@x")])),
            after: Some(row(&cols, &[Some("7"), None])),
        };
        let mut seen = Vec::new();
        r.for_each_key(&change, |k| {
            seen.push((
                k.rule,
                k.template,
                k.image,
                String::from_utf8_lossy(&k.key).into_owned(),
                k.row.get("email").cloned(),
            ))
        })
        .unwrap();
        let a = Some(Cell::Value(Bytes::from_static(b"a@x")));
        assert_eq!(
            seen,
            [
                (0, 0, Image::Before, "user:7".to_string(), a.clone()),
                (0, 1, Image::Before, "user:email:a@x".to_string(), a.clone()),
                (0, 0, Image::After, "user:7".to_string(), Some(Cell::Null)),
                (1, 0, Image::Before, "any:7".to_string(), a),
                (1, 0, Image::After, "any:7".to_string(), Some(Cell::Null)),
            ]
        );
        // keys_for is the same walk, deduplicated.
        let mut out = KeyBatch::default();
        r.keys_for(&change, &mut out).unwrap();
        assert_eq!(out.len(), 3);
    }
}
