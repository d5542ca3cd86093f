//! Values to the text MySQL prints: a decoded binlog value ([`render_value`]), or a
//! query result's cell ([`text_cell`]).

use super::{Cell, ColumnRender};
use bytes::Bytes;
use mysql_common::binlog::value::BinlogValue;
use mysql_common::constants::ColumnType;
use mysql_common::value::Value;

/// A cell of a query result: over the text protocol a value arrives as the text
/// MySQL prints (kept as it is) or NULL; a binary-protocol value is rendered as the
/// binlog's would be ([`render_value`] without column metadata; one it cannot render,
/// such as an ENUM index without its labels, is [`Cell::Absent`]).
pub fn text_cell(v: Value, ty: ColumnType) -> Cell {
    match v {
        Value::NULL => Cell::Null,
        Value::Bytes(b) => Cell::Value(Bytes::from(b)),
        other => render_value(
            &BinlogValue::Value(other),
            ty,
            &[],
            &ColumnRender::default(),
        )
        .unwrap_or(Cell::Absent),
    }
}

/// Renders a decoded value as MySQL prints it: integers in decimal, strings as their
/// bytes (any charset, unchanged), DECIMAL exact, dates and times ISO with the
/// column's fractional digits, TIMESTAMP in UTC, ENUM and SET by label, BIT as an
/// unsigned decimal number, JSON as MySQL's text form.
pub fn render_value(
    value: &BinlogValue<'_>,
    ty: ColumnType,
    meta: &[u8],
    col: &ColumnRender,
) -> Result<Cell, String> {
    use ColumnType::*;
    let v = match value {
        BinlogValue::Value(v) => v,
        BinlogValue::Jsonb(j) => {
            let dom = j
                .clone()
                .parse()
                .map_err(|e| format!("bad JSON value: {e}"))?;
            let json = serde_json::Value::from(dom);
            let mut out = String::new();
            write_mysql_json(&json, &mut out);
            return Ok(Cell::Value(Bytes::from(out)));
        }
        BinlogValue::JsonDiff(_) => return Ok(Cell::Absent),
    };
    let fsp = || meta.first().copied().unwrap_or(0).min(6) as usize;
    let out: Vec<u8> = match v {
        Value::NULL => return Ok(Cell::Null),
        Value::Int(i) => match ty {
            MYSQL_TYPE_ENUM => {
                // Index 0 is the "invalid value" MySQL stores as ''.
                let idx = *i as usize;
                if idx == 0 {
                    Vec::new()
                } else {
                    col.enum_values
                        .get(idx - 1)
                        .map(|b| b.to_vec())
                        .ok_or_else(|| {
                            format!("ENUM index {idx} without a label (schema unknown)")
                        })?
                }
            }
            MYSQL_TYPE_TIMESTAMP => iso_from_epoch(*i, 0, 0).into_bytes(),
            _ => {
                let bits = match ty {
                    MYSQL_TYPE_TINY => 8,
                    MYSQL_TYPE_SHORT => 16,
                    MYSQL_TYPE_INT24 => 24,
                    MYSQL_TYPE_LONG => 32,
                    _ => 64,
                };
                if col.unsigned && *i < 0 {
                    // Without signedness metadata the binlog reader decodes
                    // unsigned columns as signed; undo the two's complement.
                    (i128::from(*i) + (1i128 << bits)).to_string().into_bytes()
                } else {
                    i.to_string().into_bytes()
                }
            }
        },
        Value::UInt(u) => u.to_string().into_bytes(),
        Value::Float(f) => f.to_string().into_bytes(),
        Value::Double(d) => d.to_string().into_bytes(),
        Value::Bytes(b) => match ty {
            MYSQL_TYPE_TIMESTAMP2 => {
                let s = std::str::from_utf8(b).map_err(|_| "bad TIMESTAMP value")?;
                let (sec, frac) = s.split_once('.').unwrap_or((s, "0"));
                let sec: i64 = sec.parse().map_err(|_| "bad TIMESTAMP value")?;
                let usec: u32 = frac.parse().map_err(|_| "bad TIMESTAMP value")?;
                iso_from_epoch(sec, usec, fsp()).into_bytes()
            }
            MYSQL_TYPE_BIT => {
                let mut n: u64 = 0;
                for byte in b.iter() {
                    n = (n << 8) | u64::from(*byte);
                }
                n.to_string().into_bytes()
            }
            MYSQL_TYPE_SET => {
                let mut mask: u64 = 0;
                for (k, byte) in b.iter().enumerate().take(8) {
                    mask |= u64::from(*byte) << (8 * k);
                }
                let mut labels: Vec<&[u8]> = Vec::new();
                for bit in 0..64 {
                    if mask & (1 << bit) != 0 {
                        let l = col.set_values.get(bit).ok_or_else(|| {
                            format!("SET bit {bit} without a label (schema unknown)")
                        })?;
                        labels.push(l);
                    }
                }
                labels.join(&b","[..])
            }
            MYSQL_TYPE_YEAR if b.as_slice() == b"1900" => b"0000".to_vec(),
            _ => b.clone(),
        },
        Value::Date(y, m, d, h, i, s, us) => {
            let date = format!("{y:04}-{m:02}-{d:02}");
            match ty {
                MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => date.into_bytes(),
                _ => {
                    let mut t = format!("{date} {h:02}:{i:02}:{s:02}");
                    push_fraction(
                        &mut t,
                        *us,
                        if ty == MYSQL_TYPE_DATETIME2 { fsp() } else { 0 },
                    );
                    t.into_bytes()
                }
            }
        }
        Value::Time(neg, d, h, i, s, us) => {
            let hours = u64::from(*d) * 24 + u64::from(*h);
            let mut t = format!("{}{hours:02}:{i:02}:{s:02}", if *neg { "-" } else { "" });
            push_fraction(&mut t, *us, if ty == MYSQL_TYPE_TIME2 { fsp() } else { 0 });
            t.into_bytes()
        }
    };
    Ok(Cell::Value(Bytes::from(out)))
}

fn push_fraction(out: &mut String, usec: u32, digits: usize) {
    if digits > 0 {
        let f = format!("{usec:06}");
        out.push('.');
        out.push_str(&f[..digits]);
    }
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` in UTC for seconds since the epoch.
fn iso_from_epoch(secs: i64, usec: u32, digits: usize) -> String {
    if secs == 0 && usec == 0 {
        // MySQL's zero timestamp.
        let mut t = "0000-00-00 00:00:00".to_string();
        push_fraction(&mut t, 0, digits);
        return t;
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut t = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    push_fraction(&mut t, usec, digits);
    t
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Writes JSON the way MySQL prints it: `{"a": 1, "b": [1, 2]}`.
fn write_mysql_json(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_mysql_json(x, out);
            }
            out.push(']');
        }
        serde_json::Value::Object(o) => {
            // MySQL orders keys by length, then bytes.
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_mysql_json(&o[k], out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_to_iso() {
        assert_eq!(iso_from_epoch(1_700_000_000, 0, 0), "2023-11-14 22:13:20");
        assert_eq!(
            iso_from_epoch(1_700_000_000, 123_456, 3),
            "2023-11-14 22:13:20.123"
        );
        assert_eq!(iso_from_epoch(0, 0, 0), "0000-00-00 00:00:00");
    }

    #[test]
    fn mysql_json_text() {
        let v: serde_json::Value = serde_json::from_str(r#"{"bb":[1,"x"],"a":null}"#).unwrap();
        let mut s = String::new();
        write_mysql_json(&v, &mut s);
        assert_eq!(s, r#"{"a": null, "bb": [1, "x"]}"#);
    }

    #[test]
    fn renders_integers_and_unsigned() {
        let col = ColumnRender {
            unsigned: true,
            ..Default::default()
        };
        let v = BinlogValue::Value(Value::Int(-1));
        assert_eq!(
            render_value(&v, ColumnType::MYSQL_TYPE_LONG, &[], &col),
            Ok(Cell::Value(Bytes::from_static(b"4294967295")))
        );
        assert_eq!(
            render_value(
                &v,
                ColumnType::MYSQL_TYPE_LONGLONG,
                &[],
                &ColumnRender::default()
            ),
            Ok(Cell::Value(Bytes::from_static(b"-1")))
        );
    }

    #[test]
    fn text_protocol_cells_are_kept_as_printed() {
        let ty = ColumnType::MYSQL_TYPE_BIT;
        assert_eq!(
            text_cell(Value::Bytes(b"\x05".to_vec()), ty),
            Cell::Value(Bytes::from_static(b"\x05")),
            "the text protocol's bytes, not the binlog's rendering"
        );
        assert_eq!(text_cell(Value::NULL, ty), Cell::Null);
        assert_eq!(
            text_cell(Value::Int(42), ColumnType::MYSQL_TYPE_LONG),
            Cell::Value(Bytes::from_static(b"42"))
        );
    }
}
