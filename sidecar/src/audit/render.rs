//! A database row rendered as the cache-aside library stores it, and the SQL quoting
//! the audit's queries need.

use mysql_async::consts::ColumnType;

/// The cache-aside library's negative-cache entry ("no such row").
pub const NOT_FOUND: &[u8] = b"\0coherent:not-found";

/// Renders one text-protocol cell to JSON by its column type, as serde_json encodes
/// the matching Rust field (integers and floats as numbers, the rest as strings).
/// The offline scan reads with sqlx ([`text_cell_json`]); this mysql_async form is
/// kept for readers on mysql_async (the online checker) and checked equal by a test.
pub fn cell_json(v: &mysql_async::Value, ty: ColumnType) -> serde_json::Value {
    use serde_json::Value as J;
    let b = match v {
        mysql_async::Value::NULL => return J::Null,
        mysql_async::Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        mysql_async::Value::Int(i) => return J::from(*i),
        mysql_async::Value::UInt(u) => return J::from(*u),
        mysql_async::Value::Float(f) => return J::from(*f as f64),
        mysql_async::Value::Double(f) => return J::from(*f),
        other => other.as_sql(true).trim_matches('\'').to_string(),
    };
    text_json(b, CellKind::of_mysql_async(ty))
}

/// How a text cell renders to JSON, by its column's type: the one decision
/// [`cell_json`] (mysql_async) and [`text_cell_json`] (sqlx) share, so both give
/// byte-identical JSON for the same text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    /// TINYINT..BIGINT and YEAR: a JSON integer.
    Int,
    /// FLOAT and DOUBLE: a JSON number.
    Float,
    /// Everything else (DECIMAL, strings, dates, ...): a JSON string.
    Text,
}

impl CellKind {
    /// The kind of a mysql_async column type.
    pub fn of_mysql_async(ty: ColumnType) -> Self {
        match ty {
            ColumnType::MYSQL_TYPE_TINY
            | ColumnType::MYSQL_TYPE_SHORT
            | ColumnType::MYSQL_TYPE_INT24
            | ColumnType::MYSQL_TYPE_LONG
            | ColumnType::MYSQL_TYPE_LONGLONG
            | ColumnType::MYSQL_TYPE_YEAR => CellKind::Int,
            ColumnType::MYSQL_TYPE_FLOAT | ColumnType::MYSQL_TYPE_DOUBLE => CellKind::Float,
            _ => CellKind::Text,
        }
    }

    /// The kind of an sqlx column, by its type name (`TypeInfo::name`): sqlx names
    /// TINYINT(1) "BOOLEAN", which MySQL sends as TINY, so it is an integer too.
    pub fn of_sqlx_name(name: &str) -> Self {
        let base = name.split(' ').next().unwrap_or(name);
        match base {
            "BOOLEAN" | "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
                CellKind::Int
            }
            "FLOAT" | "DOUBLE" => CellKind::Float,
            _ => CellKind::Text,
        }
    }

    /// The kind of an information_schema `DATA_TYPE` (lower case, no width).
    pub fn of_data_type(data_type: &str) -> Self {
        match data_type.to_ascii_lowercase().as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
                CellKind::Int
            }
            "float" | "double" | "real" => CellKind::Float,
            _ => CellKind::Text,
        }
    }
}

/// Renders one text-protocol cell (`None`: NULL) to JSON by its kind.
pub fn text_cell_json(text: Option<&[u8]>, kind: CellKind) -> serde_json::Value {
    match text {
        None => serde_json::Value::Null,
        Some(b) => text_json(String::from_utf8_lossy(b).into_owned(), kind),
    }
}

fn text_json(b: String, kind: CellKind) -> serde_json::Value {
    use serde_json::Value as J;
    match kind {
        CellKind::Int => b
            .parse::<i64>()
            .map(J::from)
            .or_else(|_| b.parse::<u64>().map(J::from))
            .unwrap_or(J::String(b)),
        CellKind::Float => b.parse::<f64>().map(J::from).unwrap_or(J::String(b)),
        CellKind::Text => J::String(b),
    }
}

/// Quotes an SQL identifier with backticks.
pub fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sqlx path and the mysql_async path give the same JSON for the same text.
    #[test]
    fn both_drivers_render_alike() {
        let cases: &[(&[u8], ColumnType, &str)] = &[
            (b"42", ColumnType::MYSQL_TYPE_LONGLONG, "BIGINT"),
            (
                b"18446744073709551615",
                ColumnType::MYSQL_TYPE_LONGLONG,
                "BIGINT UNSIGNED",
            ),
            (b"1", ColumnType::MYSQL_TYPE_TINY, "BOOLEAN"),
            (b"2024", ColumnType::MYSQL_TYPE_YEAR, "YEAR"),
            (b"1.5", ColumnType::MYSQL_TYPE_DOUBLE, "DOUBLE"),
            (b"1e300", ColumnType::MYSQL_TYPE_FLOAT, "FLOAT"),
            (b"10.50", ColumnType::MYSQL_TYPE_NEWDECIMAL, "DECIMAL"),
            (
                b"a \"q\" \xc3\xa9",
                ColumnType::MYSQL_TYPE_VAR_STRING,
                "VARCHAR",
            ),
            (
                b"2026-11-25 10:00:00",
                ColumnType::MYSQL_TYPE_DATETIME,
                "DATETIME",
            ),
        ];
        for (text, ty, name) in cases {
            let a = cell_json(&mysql_async::Value::Bytes(text.to_vec()), *ty).to_string();
            let b = text_cell_json(Some(text), CellKind::of_sqlx_name(name)).to_string();
            assert_eq!(a, b, "{name}");
        }
        assert_eq!(text_cell_json(None, CellKind::Int), serde_json::Value::Null);
        assert_eq!(CellKind::of_data_type("BIGINT"), CellKind::Int);
        assert_eq!(CellKind::of_data_type("varchar"), CellKind::Text);
    }
}
