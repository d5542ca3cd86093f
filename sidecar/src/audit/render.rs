//! A database row rendered as the cache-aside library stores it, and the SQL quoting
//! the audit's queries need.

use mysql_async::consts::ColumnType;

/// The cache-aside library's negative-cache entry ("no such row").
pub const NOT_FOUND: &[u8] = b"\0coherent:not-found";

/// Renders one text-protocol cell to JSON by its column type, as serde_json encodes
/// the matching Rust field (integers and floats as numbers, the rest as strings).
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
    match ty {
        ColumnType::MYSQL_TYPE_TINY
        | ColumnType::MYSQL_TYPE_SHORT
        | ColumnType::MYSQL_TYPE_INT24
        | ColumnType::MYSQL_TYPE_LONG
        | ColumnType::MYSQL_TYPE_LONGLONG
        | ColumnType::MYSQL_TYPE_YEAR => b
            .parse::<i64>()
            .map(J::from)
            .or_else(|_| b.parse::<u64>().map(J::from))
            .unwrap_or(J::String(b)),
        ColumnType::MYSQL_TYPE_FLOAT | ColumnType::MYSQL_TYPE_DOUBLE => {
            b.parse::<f64>().map(J::from).unwrap_or(J::String(b))
        }
        _ => J::String(b),
    }
}

/// Quotes an SQL identifier with backticks.
pub fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}
