//! Column names, primary keys and rendering details of the tables in the binlog.
//!
//! A table map event carries column types but names only when the server runs with
//! `binlog_row_metadata=FULL`. Without them, names come from `information_schema`,
//! cached per table and dropped whenever a DDL statement passes in the stream, so an
//! `ALTER TABLE` mid-stream maps columns right before and after it. A cached or
//! looked-up schema is only used when its column types match the table map; a
//! mismatch (the table changed in a way the binlog position has not reached yet)
//! stops the pipeline instead of guessing.

use crate::row::{render_value, Cell, ColumnRender, RawImage, Row};
use bytes::Bytes;
use mysql_async::prelude::Queryable;
use mysql_common::binlog::events::{OptionalMetadataField, TableMapEvent};
use mysql_common::constants::ColumnType;
use std::collections::HashMap;
use std::sync::Arc;

/// Why a table's columns could not be named.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// information_schema could not be queried.
    #[error("cannot read columns of `{db}`.`{table}` from information_schema: {source}")]
    Query {
        /// Database.
        db: String,
        /// Table.
        table: String,
        /// Driver error.
        source: mysql_async::Error,
    },
    /// The table no longer exists, or its columns differ from the binlog's table map.
    #[error("columns of `{db}`.`{table}` in information_schema do not match the binlog ({detail}); the table changed after this binlog position: run the server with binlog_row_metadata=FULL to decode history across schema changes")]
    Mismatch {
        /// Database.
        db: String,
        /// Table.
        table: String,
        /// What differs.
        detail: String,
    },
    /// The table map's optional metadata is malformed.
    #[error("bad table map metadata for `{db}`.`{table}`: {detail}")]
    BadMetadata {
        /// Database.
        db: String,
        /// Table.
        table: String,
        /// What is wrong.
        detail: String,
    },
}

/// One column as information_schema describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoColumn {
    /// `COLUMN_NAME`.
    pub name: String,
    /// `DATA_TYPE` (`int`, `varchar`, ...).
    pub data_type: String,
    /// `COLUMN_TYPE` (`int(10) unsigned`, `enum('a','b')`, ...).
    pub column_type: String,
    /// `COLUMN_KEY = 'PRI'`.
    pub primary: bool,
}

/// A table's columns as the pipeline needs them.
#[derive(Debug, Clone)]
pub struct TableSchema {
    /// Database name.
    pub db: String,
    /// Table name.
    pub table: String,
    /// Column names in table order.
    pub columns: Arc<[String]>,
    /// Indexes of the primary key columns.
    pub primary_key: Vec<usize>,
    render: Vec<ColumnRender>,
    types: Vec<(ColumnType, Vec<u8>)>,
    signature: Vec<u8>,
}

impl TableSchema {
    /// Renders a raw image into named cells.
    pub fn render(&self, image: &RawImage) -> Result<Row, String> {
        let mut cells = Vec::with_capacity(image.len());
        for (i, v) in image.iter().enumerate() {
            let cell = match v {
                None => Cell::Absent,
                Some(v) => {
                    let (ty, meta) = self
                        .types
                        .get(i)
                        .ok_or_else(|| format!("column {i} beyond the table map"))?;
                    let col = self.render.get(i).cloned().unwrap_or_default();
                    render_value(v, *ty, meta, &col)
                        .map_err(|e| format!("column `{}`: {e}", self.column_name(i)))?
                }
            };
            cells.push(cell);
        }
        Ok(Row {
            columns: self.columns.clone(),
            cells,
        })
    }

    fn column_name(&self, i: usize) -> &str {
        self.columns.get(i).map(String::as_str).unwrap_or("?")
    }
}

/// Raw column types of a table map: a cheap way to tell whether a cached schema still
/// describes it.
fn signature(tme: &TableMapEvent<'_>) -> Vec<u8> {
    (0..tme.columns_count() as usize)
        .map(|i| match tme.get_raw_column_type(i) {
            Ok(Some(t)) => t as u8,
            _ => 0xff,
        })
        .collect()
}

fn types_of(tme: &TableMapEvent<'_>) -> Vec<(ColumnType, Vec<u8>)> {
    (0..tme.columns_count() as usize)
        .map(|i| {
            let ty = tme
                .get_column_type(i)
                .ok()
                .flatten()
                .unwrap_or(ColumnType::MYSQL_TYPE_NULL);
            let meta = tme.get_column_metadata(i).unwrap_or(&[]).to_vec();
            (ty, meta)
        })
        .collect()
}

/// Metadata the table map itself carries (binlog_row_metadata=FULL, or MySQL's
/// MINIMAL for signedness).
#[derive(Debug, Default)]
struct MapMetadata {
    names: Vec<String>,
    primary: Vec<usize>,
    enums: Vec<Vec<Bytes>>,
    sets: Vec<Vec<Bytes>>,
}

fn map_metadata(tme: &TableMapEvent<'_>) -> std::io::Result<MapMetadata> {
    let mut m = MapMetadata::default();
    for f in tme.iter_optional_meta() {
        match f? {
            OptionalMetadataField::ColumnName(n) => {
                for name in n.iter_names() {
                    m.names.push(name?.name().into_owned());
                }
            }
            OptionalMetadataField::SimplePrimaryKey(pk) => {
                for i in pk.iter_indexes() {
                    m.primary.push(i? as usize);
                }
            }
            OptionalMetadataField::PrimaryKeyWithPrefix(pk) => {
                for k in pk.iter_keys() {
                    m.primary.push(k?.column_index() as usize);
                }
            }
            OptionalMetadataField::EnumStrValue(e) => {
                for vals in e.iter_values() {
                    let vals = vals?;
                    m.enums.push(
                        vals.values()
                            .iter()
                            .map(|v| Bytes::copy_from_slice(v.value_raw()))
                            .collect(),
                    );
                }
            }
            OptionalMetadataField::SetStrValue(s) => {
                for vals in s.iter_values() {
                    let vals = vals?;
                    m.sets.push(
                        vals.values()
                            .iter()
                            .map(|v| Bytes::copy_from_slice(v.value_raw()))
                            .collect(),
                    );
                }
            }
            _ => {}
        }
    }
    Ok(m)
}

/// Rendering details of column `i` from the table map's own metadata (ENUM and SET
/// labels); what offline decoding of a file can know without a server.
pub fn render_info_from_metadata(tme: &TableMapEvent<'_>, i: usize) -> ColumnRender {
    let Ok(m) = map_metadata(tme) else {
        return ColumnRender::default();
    };
    render_from_map(tme, &m)
        .into_iter()
        .nth(i)
        .unwrap_or_default()
}

fn render_from_map(tme: &TableMapEvent<'_>, m: &MapMetadata) -> Vec<ColumnRender> {
    let mut enums = m.enums.iter();
    let mut sets = m.sets.iter();
    (0..tme.columns_count() as usize)
        .map(|i| match tme.get_column_type(i).ok().flatten() {
            Some(ColumnType::MYSQL_TYPE_ENUM) => ColumnRender {
                enum_values: enums.next().cloned().unwrap_or_default(),
                ..Default::default()
            },
            Some(ColumnType::MYSQL_TYPE_SET) => ColumnRender {
                set_values: sets.next().cloned().unwrap_or_default(),
                ..Default::default()
            },
            _ => ColumnRender::default(),
        })
        .collect()
}

/// Where column definitions come from when the binlog does not carry names.
pub trait ColumnLookup: Send {
    /// Columns of `db`.`table` in ordinal order; empty when the table does not exist.
    fn columns(
        &mut self,
        db: &str,
        table: &str,
    ) -> impl std::future::Future<Output = Result<Vec<InfoColumn>, SchemaError>> + Send;
}

/// information_schema over a connection pool (a separate connection from the binlog
/// stream, which cannot run queries).
#[derive(Debug, Clone)]
pub struct InfoSchema {
    pool: mysql_async::Pool,
}

impl InfoSchema {
    /// Uses `pool` for lookups.
    pub fn new(pool: mysql_async::Pool) -> Self {
        InfoSchema { pool }
    }
}

impl ColumnLookup for InfoSchema {
    async fn columns(&mut self, db: &str, table: &str) -> Result<Vec<InfoColumn>, SchemaError> {
        let wrap = |source| SchemaError::Query {
            db: db.to_string(),
            table: table.to_string(),
            source,
        };
        let mut conn = self.pool.get_conn().await.map_err(wrap)?;
        let rows: Vec<(String, String, String, String)> = conn
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, COLUMN_KEY FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (db, table),
            )
            .await
            .map_err(wrap)?;
        Ok(rows
            .into_iter()
            .map(|(name, data_type, column_type, key)| InfoColumn {
                name,
                data_type: data_type.to_ascii_lowercase(),
                column_type,
                primary: key.eq_ignore_ascii_case("PRI"),
            })
            .collect())
    }
}

/// Per-table schemas, resolved from table maps and, when needed, information_schema.
#[derive(Debug)]
pub struct SchemaCache<L> {
    lookup: Option<L>,
    cache: HashMap<(String, String), Arc<TableSchema>>,
    /// Schema lookups made (for tests and metrics).
    pub lookups: u64,
}

impl<L: ColumnLookup> SchemaCache<L> {
    /// A cache that falls back on `lookup` (none: names must come from the binlog).
    pub fn new(lookup: Option<L>) -> Self {
        SchemaCache {
            lookup,
            cache: HashMap::new(),
            lookups: 0,
        }
    }

    /// Forgets every cached schema: called when a DDL statement passes, since its
    /// text is not parsed to find which tables it changed.
    pub fn invalidate_all(&mut self) {
        self.cache.clear();
    }

    /// The schema of the table a table map describes.
    pub async fn resolve(
        &mut self,
        tme: &TableMapEvent<'_>,
    ) -> Result<Arc<TableSchema>, SchemaError> {
        let db = tme.database_name().into_owned();
        let table = tme.table_name().into_owned();
        let sig = signature(tme);
        let key = (db.clone(), table.clone());
        if let Some(s) = self.cache.get(&key) {
            if s.signature == sig {
                return Ok(s.clone());
            }
        }
        let bad = |detail: String| SchemaError::BadMetadata {
            db: db.clone(),
            table: table.clone(),
            detail,
        };
        let meta = map_metadata(tme).map_err(|e| bad(e.to_string()))?;
        let n = tme.columns_count() as usize;
        let mut render = render_from_map(tme, &meta);
        let (names, primary) = if meta.names.len() == n {
            (meta.names.clone(), meta.primary.clone())
        } else {
            let Some(lookup) = self.lookup.as_mut() else {
                return Err(SchemaError::Mismatch {
                    db,
                    table,
                    detail: "the binlog carries no column names and no information_schema connection is configured".into(),
                });
            };
            self.lookups += 1;
            let info = lookup.columns(&db, &table).await?;
            let mismatch = |detail: String| SchemaError::Mismatch {
                db: db.clone(),
                table: table.clone(),
                detail,
            };
            if info.len() < n {
                return Err(mismatch(format!(
                    "binlog has {n} columns, information_schema {}",
                    info.len()
                )));
            }
            // Columns added at the end after this position (ALTER TABLE ... ADD
            // COLUMN) leave the prefix intact; any type difference in it is fatal.
            for (i, c) in info.iter().take(n).enumerate() {
                let ty = tme
                    .get_column_type(i)
                    .ok()
                    .flatten()
                    .ok_or_else(|| mismatch(format!("column {i} has an unknown type")))?;
                if !compatible(ty, &c.data_type) {
                    return Err(mismatch(format!(
                        "column {} `{}` is {} in information_schema but {:?} in the binlog",
                        i + 1,
                        c.name,
                        c.data_type,
                        ty
                    )));
                }
                let r = &mut render[i];
                let ct = c.column_type.to_ascii_lowercase();
                r.unsigned = ct.contains("unsigned");
                if ty == ColumnType::MYSQL_TYPE_ENUM && r.enum_values.is_empty() {
                    r.enum_values = parse_labels(&c.column_type);
                }
                if ty == ColumnType::MYSQL_TYPE_SET && r.set_values.is_empty() {
                    r.set_values = parse_labels(&c.column_type);
                }
            }
            let names = info.iter().take(n).map(|c| c.name.clone()).collect();
            let primary = info
                .iter()
                .take(n)
                .enumerate()
                .filter(|(_, c)| c.primary)
                .map(|(i, _)| i)
                .collect();
            (names, primary)
        };
        let schema = Arc::new(TableSchema {
            db,
            table,
            columns: names.into(),
            primary_key: primary,
            render,
            types: types_of(tme),
            signature: sig,
        });
        self.cache.insert(key, schema.clone());
        Ok(schema)
    }
}

/// Whether a binlog column type can store an information_schema `DATA_TYPE`.
fn compatible(ty: ColumnType, data_type: &str) -> bool {
    use ColumnType::*;
    let dt = data_type;
    match ty {
        MYSQL_TYPE_TINY => dt == "tinyint" || dt == "bool" || dt == "boolean",
        MYSQL_TYPE_SHORT => dt == "smallint",
        MYSQL_TYPE_INT24 => dt == "mediumint",
        MYSQL_TYPE_LONG => dt == "int" || dt == "integer",
        MYSQL_TYPE_LONGLONG => dt == "bigint",
        MYSQL_TYPE_FLOAT => dt == "float",
        MYSQL_TYPE_DOUBLE => dt == "double" || dt == "real",
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => dt == "decimal" || dt == "numeric",
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => dt == "date",
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => dt == "datetime",
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => dt == "timestamp",
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => dt == "time",
        MYSQL_TYPE_YEAR => dt == "year",
        MYSQL_TYPE_BIT => dt == "bit",
        MYSQL_TYPE_ENUM => dt == "enum",
        MYSQL_TYPE_SET => dt == "set",
        MYSQL_TYPE_JSON => dt == "json",
        MYSQL_TYPE_GEOMETRY => true,
        MYSQL_TYPE_STRING | MYSQL_TYPE_VAR_STRING | MYSQL_TYPE_VARCHAR => {
            matches!(
                dt,
                "char" | "varchar" | "binary" | "varbinary" | "inet6" | "inet4" | "uuid"
            )
        }
        MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB => {
            dt.ends_with("blob") || dt.ends_with("text") || dt == "json" || dt == "longtext"
        }
        _ => true,
    }
}

/// The labels of `enum('a','b''c')` / `set(...)`.
fn parse_labels(column_type: &str) -> Vec<Bytes> {
    let Some(start) = column_type.find('(') else {
        return Vec::new();
    };
    let body = &column_type.as_bytes()[start + 1..];
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\'' {
            let mut label = Vec::new();
            i += 1;
            while i < body.len() {
                if body[i] == b'\'' {
                    if body.get(i + 1) == Some(&b'\'') {
                        label.push(b'\'');
                        i += 2;
                        continue;
                    }
                    break;
                }
                label.push(body[i]);
                i += 1;
            }
            out.push(Bytes::from(label));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_enum_labels() {
        assert_eq!(
            parse_labels("enum('a','b''c','')"),
            vec![
                Bytes::from_static(b"a"),
                Bytes::from_static(b"b'c"),
                Bytes::from_static(b"")
            ]
        );
    }

    #[test]
    fn type_compatibility() {
        assert!(compatible(ColumnType::MYSQL_TYPE_LONG, "int"));
        assert!(!compatible(ColumnType::MYSQL_TYPE_LONG, "varchar"));
        assert!(compatible(ColumnType::MYSQL_TYPE_BLOB, "text"));
    }
}
