//! A row as the JSON the cache-aside library's `Json` codec stores for a struct of
//! its columns: integers and floats as numbers, NULL as null, everything else
//! (DECIMAL, strings, dates, ...) as strings. What the audits compare cached values
//! with.

use super::Cell;
use mysql_common::constants::ColumnType;
use serde_json::Value as J;

/// How a cell renders to JSON, by its column's type.
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
    /// The kind of a column of this type (a query result's or a table map's;
    /// TINYINT(1), a "BOOLEAN", is a TINY: an integer).
    pub fn of_column_type(ty: ColumnType) -> Self {
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

    /// The kind of an information_schema `DATA_TYPE` (any case, no width).
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

impl Cell {
    /// The cell as JSON in a field of this kind: a number that does not parse stays
    /// a string; NULL (and a cell not in the image) is null.
    pub fn json(&self, kind: CellKind) -> J {
        let Some(b) = self.text() else {
            return J::Null;
        };
        let text = String::from_utf8_lossy(b).into_owned();
        match kind {
            CellKind::Int => text
                .parse::<i64>()
                .map(J::from)
                .or_else(|_| text.parse::<u64>().map(J::from))
                .unwrap_or(J::String(text)),
            CellKind::Float => text.parse::<f64>().map(J::from).unwrap_or(J::String(text)),
            CellKind::Text => J::String(text),
        }
    }
}

/// A JSON object of `(name, cell, kind)` fields, in order.
pub fn json_object<'a>(fields: impl IntoIterator<Item = (&'a str, &'a Cell, CellKind)>) -> J {
    let obj = fields
        .into_iter()
        .map(|(name, cell, kind)| (name.to_string(), cell.json(kind)))
        .collect();
    J::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// What each kind of column renders to, to the byte (the audits compare cached
    /// values with it).
    #[test]
    fn cells_render_by_their_column_kind() {
        let cases: &[(&[u8], ColumnType, &str)] = &[
            (b"42", ColumnType::MYSQL_TYPE_LONGLONG, "42"),
            (
                b"18446744073709551615",
                ColumnType::MYSQL_TYPE_LONGLONG,
                "18446744073709551615",
            ),
            (b"-7", ColumnType::MYSQL_TYPE_LONG, "-7"),
            (b"1", ColumnType::MYSQL_TYPE_TINY, "1"),
            (b"2024", ColumnType::MYSQL_TYPE_YEAR, "2024"),
            (b"1.5", ColumnType::MYSQL_TYPE_DOUBLE, "1.5"),
            (b"1e300", ColumnType::MYSQL_TYPE_FLOAT, "1e+300"),
            (b"10.50", ColumnType::MYSQL_TYPE_NEWDECIMAL, r#""10.50""#),
            (
                b"a \"q\" \xc3\xa9",
                ColumnType::MYSQL_TYPE_VAR_STRING,
                r#""a \"q\" é""#,
            ),
            (
                b"2026-11-25 10:00:00",
                ColumnType::MYSQL_TYPE_DATETIME,
                r#""2026-11-25 10:00:00""#,
            ),
            (b"abc", ColumnType::MYSQL_TYPE_LONG, r#""abc""#),
        ];
        for (text, ty, json) in cases {
            let cell = Cell::Value(Bytes::from_static(text));
            let kind = CellKind::of_column_type(*ty);
            assert_eq!(cell.json(kind).to_string(), *json, "{ty:?}");
        }
        assert_eq!(Cell::Null.json(CellKind::Int), J::Null);
        assert_eq!(CellKind::of_data_type("BIGINT"), CellKind::Int);
        assert_eq!(CellKind::of_data_type("varchar"), CellKind::Text);
        assert_eq!(CellKind::of_data_type("double"), CellKind::Float);
    }

    #[test]
    fn objects_of_named_cells() {
        let (id, name) = (Cell::Value(Bytes::from_static(b"1")), Cell::Null);
        let o = json_object([("id", &id, CellKind::Int), ("name", &name, CellKind::Text)]);
        assert_eq!(o.to_string(), r#"{"id":1,"name":null}"#);
    }
}
