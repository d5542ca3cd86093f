//! A rule's table as the audit reads it: its layout (primary key, column kinds, the
//! columns to select), its templates with their results, and the row lookups by
//! key (`WHERE (cols) IN (...)`).

use super::class::Class;
use crate::audit::db::{cells, ident, value_json};
use crate::audit::report::{Counts, StaleKey};
use anyhow::{bail, Context, Result};
use connectors::row::{Cell, CellKind};
use connectors::rules::{KeyTemplate, RuleConfig};
use mysql_async::prelude::{FromRow, Queryable};
use mysql_async::Conn;
use std::collections::{HashMap, HashSet};

/// Keys looked up per query when an index starts with the template's columns.
const LOOKUP_BATCH: usize = 500;
/// Keys looked up per query when the template's columns lead no index: each query
/// scans the table, so they are fewer and larger.
pub(super) const UNINDEXED_BATCH: usize = 20_000;

/// A table's primary key columns, in order.
const PRIMARY_KEY: &str = "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION";
/// A table's columns and their `DATA_TYPE`s.
const COLUMNS: &str = "SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?";
/// The first column of each of a table's indexes.
const LEADING: &str = "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND SEQ_IN_INDEX = 1";

/// One key template of a rule, with its results.
pub(super) struct Template {
    /// The template.
    pub tmpl: KeyTemplate,
    /// Whether its cached value is the rendered row (the rule's `value.keys`, by
    /// default its first template): else a cached key is counted `unchecked`
    /// (a pointer such as `user:email:{email}` -> id is not compared by value).
    pub compared: bool,
    /// Counts per class.
    pub counts: Counts,
    /// Stale keys listed (at most [`super::MAX_LISTED`]).
    pub stale_keys: Vec<StaleKey>,
    /// Orphan keys listed (at most [`super::MAX_LISTED`]).
    pub orphan_keys: Vec<String>,
    /// Keys re-checked.
    pub rechecked: u64,
    /// Keys first found stale/orphan whose row changed during the scan, each once
    /// (a set: the scan and the orphan pass can both meet a key), with the class
    /// the scan had already counted for it, which the re-check's class replaces
    /// (`None`: not counted yet).
    pub recheck: HashMap<Vec<u8>, Option<Class>>,
    /// Whether an index starts with one of the template's columns (lookups by key
    /// are index reads; else each lookup query scans the table).
    pub indexed: bool,
}

impl Template {
    /// Keys per row-lookup query.
    pub fn lookup_batch(&self) -> usize {
        if self.indexed {
            LOOKUP_BATCH
        } else {
            UNINDEXED_BATCH
        }
    }
}

/// A rule being audited.
pub(super) struct Table {
    /// The rule's `table` (`db.table`).
    pub rule_table: String,
    /// Database.
    pub db: String,
    /// Table.
    pub table: String,
    /// The renderer's columns first (in field order), then the templates' others.
    pub select: Vec<String>,
    /// How many of `select` the value renders.
    pub value_cols: usize,
    /// `information_schema` kind of each column (type checks of parsed keys).
    pub kinds: HashMap<String, CellKind>,
    /// Primary key columns (the scan's order).
    pub pk: Vec<String>,
    /// The rule's templates.
    pub templates: Vec<Template>,
    /// Rows scanned.
    pub rows: u64,
}

impl Table {
    /// The position of column `c` in `select`.
    pub fn col(&self, c: &str) -> Option<usize> {
        self.select.iter().position(|x| x == c)
    }

    /// `SELECT <select> FROM db.table`.
    pub fn select_sql(&self) -> String {
        format!(
            "SELECT {} FROM {}.{}",
            self.select
                .iter()
                .map(|c| ident(c))
                .collect::<Vec<_>>()
                .join(", "),
            ident(&self.db),
            ident(&self.table)
        )
    }
}

/// Reads a rule's table layout: primary key, column kinds, the columns to select.
pub(super) async fn prepare(rule: &RuleConfig, aux: &mut Conn) -> Result<Table> {
    let renderer = rule.value.as_ref().context("rule without value")?;
    if renderer.format != "json" {
        bail!(
            "rule {}: value format {:?} is not supported (only \"json\")",
            rule.table,
            renderer.format
        );
    }
    let (db, table) = rule
        .table
        .split_once('.')
        .filter(|(_, t)| *t != "*")
        .with_context(|| {
            format!(
                "rule {}: the audit needs db.table, not a wildcard",
                rule.table
            )
        })?;
    if rule.keys.is_empty() {
        bail!("rule {}: no key template", rule.table);
    }
    // The templates whose cached value is the rendered row: the same function the
    // online checker reads (`value.keys`, by default the first template).
    if let Some(n) = renderer
        .keys
        .iter()
        .flatten()
        .find(|n| !rule.keys.contains(n))
    {
        bail!(
            "rule {}: value.keys names {n:?}, which is not one of its keys",
            rule.table
        );
    }
    let compared = rule.value_templates();
    let mut templates = Vec::new();
    for (i, text) in rule.keys.iter().enumerate() {
        let tmpl = KeyTemplate::parse(text).map_err(|e| anyhow::anyhow!("{text}: {e}"))?;
        templates.push(Template {
            tmpl,
            compared: compared.contains(&i),
            counts: Counts::default(),
            stale_keys: Vec::new(),
            orphan_keys: Vec::new(),
            rechecked: 0,
            recheck: HashMap::new(),
            indexed: false,
        });
    }
    let pk: Vec<String> = about(aux, "the primary key", db, table, PRIMARY_KEY).await?;
    let cols: Vec<(String, String)> = about(aux, "the columns", db, table, COLUMNS).await?;
    if cols.is_empty() {
        bail!("rule {}: table {db}.{table} not found", rule.table);
    }
    let leading: Vec<String> = about(aux, "the indexes", db, table, LEADING).await?;
    for t in templates.iter_mut() {
        t.indexed = t.tmpl.columns().any(|c| leading.iter().any(|l| l == c));
    }
    let kinds: HashMap<String, CellKind> = cols
        .into_iter()
        .map(|(c, t)| (c, CellKind::of_data_type(&t)))
        .collect();
    let mut select: Vec<String> = renderer.columns.clone();
    for t in &templates {
        for c in t.tmpl.columns() {
            if !select.iter().any(|x| x == c) {
                select.push(c.to_string());
            }
        }
    }
    for c in &select {
        if !kinds.contains_key(c) {
            bail!("rule {}: {db}.{table} has no column `{c}`", rule.table);
        }
    }
    Ok(Table {
        rule_table: rule.table.clone(),
        db: db.to_string(),
        table: table.to_string(),
        value_cols: renderer.columns.len(),
        select,
        kinds,
        pk,
        templates,
        rows: 0,
    })
}

/// An information_schema query about `db`.`table` (its two `?`), `what` naming it in
/// the error.
async fn about<T: FromRow + Send + 'static>(
    aux: &mut Conn,
    what: &str,
    db: &str,
    table: &str,
    sql: &str,
) -> Result<Vec<T>> {
    aux.exec(sql, (db, table))
        .await
        .with_context(|| format!("cannot read {what} of {db}.{table}"))
}

/// The value a row renders to (the renderer's columns, which lead `select`).
pub(super) fn render_value(t: &Table, cells: &[Cell], kinds: &[CellKind]) -> serde_json::Value {
    value_json(&t.select[..t.value_cols], cells, kinds)
}

/// The key template `tmpl` renders for a row of `t` (`None`: a placeholder is NULL).
pub(super) fn render_key(t: &Table, tmpl: &KeyTemplate, cells: &[Cell]) -> Option<Vec<u8>> {
    tmpl.render_with(|c| t.col(c).and_then(|i| cells.get(i)).and_then(Cell::text))
}

/// Looks up the rows `keys` (of template `ki`) were rendered from: the value each
/// key's row renders to, for the keys some row renders to exactly (the lookup
/// compares with the column's collation; the key must match byte for byte).
pub(super) async fn lookup(
    t: &Table,
    ki: usize,
    keys: &[Vec<u8>],
    aux: &mut Conn,
) -> Result<HashMap<Vec<u8>, serde_json::Value>> {
    let tmpl = &t.templates[ki].tmpl;
    let cols: Vec<&str> = {
        let mut v: Vec<&str> = Vec::new();
        for c in tmpl.columns() {
            if !v.contains(&c) {
                v.push(c);
            }
        }
        v
    };
    let mut found = HashMap::new();
    let wanted: HashSet<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    let mut tuples: Vec<String> = Vec::new();
    for k in keys {
        for split in tmpl.parse_key(k) {
            // An integer column cannot hold a value that is not an integer: such a
            // key comes from no row.
            let ok = split.iter().all(|(c, v)| {
                t.kinds.get(*c) != Some(&CellKind::Int)
                    || std::str::from_utf8(v)
                        .is_ok_and(|s| s.parse::<i64>().is_ok() || s.parse::<u64>().is_ok())
            });
            if !ok {
                continue;
            }
            // Template order of distinct columns is `cols`' order.
            let lits: Vec<String> = split.iter().map(|(_, v)| sql_string(v)).collect();
            tuples.push(if lits.len() == 1 {
                lits[0].clone()
            } else {
                format!("({})", lits.join(", "))
            });
        }
    }
    let lhs = if cols.len() == 1 {
        ident(cols[0])
    } else {
        format!(
            "({})",
            cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
        )
    };
    for chunk in tuples.chunks(t.templates[ki].lookup_batch()) {
        let sql = format!("{} WHERE {lhs} IN ({})", t.select_sql(), chunk.join(", "));
        let rows: Vec<mysql_async::Row> = aux
            .query(sql)
            .await
            .with_context(|| format!("row lookup in {}", t.rule_table))?;
        for row in rows {
            let (cells, kinds) = cells(row);
            if let Some(key) = render_key(t, tmpl, &cells) {
                if wanted.contains(key.as_slice()) {
                    found.insert(key, render_value(t, &cells, &kinds));
                }
            }
        }
    }
    Ok(found)
}

/// An SQL string literal for `v`, coercible to the column's type and collation (so
/// an index is used; a bare `X'..'` would compare as a binary string, and as a
/// number against a numeric column). Printable ASCII without quote or backslash is
/// quoted as is; anything else is sent as `_utf8mb4 X'..'`, which needs no escaping
/// whatever the sql_mode (NO_BACKSLASH_ESCAPES).
pub(super) fn sql_string(v: &[u8]) -> String {
    if v.iter()
        .all(|b| (0x20..0x7f).contains(b) && *b != b'\'' && *b != b'\\')
    {
        return format!("'{}'", String::from_utf8_lossy(v));
    }
    // `_utf8mb4 X'..'` is a character string (coercible to the column's collation),
    // unlike a bare X'..', and needs no escaping.
    let mut s = String::with_capacity(v.len() * 2 + 12);
    s.push_str("_utf8mb4 X'");
    for b in v {
        s.push_str(&format!("{b:02x}"));
    }
    s.push('\'');
    s
}

#[cfg(test)]
mod tests {
    use super::sql_string;

    #[test]
    fn sql_strings_need_no_escaping() {
        assert_eq!(sql_string(b"42"), "'42'");
        assert_eq!(sql_string(b"a@x.org"), "'a@x.org'");
        // Quotes, backslashes and non-ASCII go as hex: no sql_mode can misread them.
        assert_eq!(sql_string(b"o'k"), "_utf8mb4 X'6f276b'");
        assert_eq!(sql_string(b"a\\"), "_utf8mb4 X'615c'");
        assert_eq!(sql_string("é".as_bytes()), "_utf8mb4 X'c3a9'");
        assert_eq!(sql_string(b""), "''");
    }
}
