//! Lua 5.1's number conversions as the C libraries see them: `lua_tonumber` of a
//! string (glibc's `strtod`, hexadecimal, `inf` and `nan` included), `lua_tointeger`
//! (a C cast), and numbers printed with `%.14g`.

use mlua::Value;

/// C's `isspace` in the C locale.
pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// glibc's `strtod` on `s` (read as a C string: it ends at a NUL): the value and how
/// many bytes it read (0 when there is no number, as `endptr == nptr`).
pub(crate) fn strtod(s: &[u8]) -> (f64, usize) {
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    let mut i = 0;
    while is_space(at(i)) {
        i += 1;
    }
    let neg = match at(i) {
        b'-' => {
            i += 1;
            true
        }
        b'+' => {
            i += 1;
            false
        }
        _ => false,
    };
    let sign = |v: f64| if neg { -v } else { v };
    let lower = |j: usize, word: &[u8]| {
        word.iter()
            .enumerate()
            .all(|(k, w)| at(j + k).to_ascii_lowercase() == *w)
    };
    if lower(i, b"inf") {
        let n = if lower(i, b"infinity") { 8 } else { 3 };
        return (sign(f64::INFINITY), i + n);
    }
    if lower(i, b"nan") {
        let mut end = i + 3;
        if at(end) == b'(' {
            let mut j = end + 1;
            while at(j).is_ascii_alphanumeric() || at(j) == b'_' {
                j += 1;
            }
            if at(j) == b')' {
                end = j + 1;
            }
        }
        return (sign(f64::NAN), end);
    }
    if at(i) == b'0' && (at(i + 1) | 0x20) == b'x' {
        let h = i + 2;
        if at(h).is_ascii_hexdigit() || (at(h) == b'.' && at(h + 1).is_ascii_hexdigit()) {
            let (v, end) = hex_float(s, h);
            return (sign(v), end);
        }
        // Only the "0" is a number.
        return (sign(0.0), i + 1);
    }
    let start = i;
    let mut digits = 0;
    while at(i).is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if at(i) == b'.' {
        i += 1;
        while at(i).is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return (0.0, 0);
    }
    let mut end = i;
    if at(i) | 0x20 == b'e' {
        let mut j = i + 1;
        if matches!(at(j), b'+' | b'-') {
            j += 1;
        }
        if at(j).is_ascii_digit() {
            while at(j).is_ascii_digit() {
                j += 1;
            }
            end = j;
        }
    }
    let text = std::str::from_utf8(&s[start..end]).unwrap_or("0");
    // Rust's parser rounds correctly, as glibc's does.
    let v = text.parse::<f64>().unwrap_or(0.0);
    (sign(v), end)
}

/// A hexadecimal float's digits from `s[i..]` (`1f.8p3`): its value and end.
fn hex_float(s: &[u8], mut i: usize) -> (f64, usize) {
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    let mut mant: u64 = 0;
    let mut exp: i64 = 0;
    let mut sticky = false;
    let mut seen_point = false;
    loop {
        let c = at(i);
        if c == b'.' && !seen_point {
            seen_point = true;
            i += 1;
            continue;
        }
        let Some(d) = (c as char).to_digit(16) else {
            break;
        };
        if mant >> 60 == 0 {
            mant = (mant << 4) | d as u64;
            if seen_point {
                exp -= 4;
            }
        } else {
            // Digits past 64 bits only decide rounding.
            sticky |= d != 0;
            if !seen_point {
                exp += 4;
            }
        }
        i += 1;
    }
    if at(i) | 0x20 == b'p' {
        let mut j = i + 1;
        let neg = match at(j) {
            b'-' => {
                j += 1;
                true
            }
            b'+' => {
                j += 1;
                false
            }
            _ => false,
        };
        if at(j).is_ascii_digit() {
            let mut e: i64 = 0;
            while at(j).is_ascii_digit() {
                e = (e * 10 + (at(j) - b'0') as i64).min(1 << 20);
                j += 1;
            }
            exp += if neg { -e } else { e };
            i = j;
        }
    }
    if sticky {
        mant |= 1;
    }
    let v = mant as f64 * 2f64.powi(exp.clamp(-2000, 2000) as i32);
    (v, i)
}

/// `lua_tonumber`: a number, or a string that is one (`luaO_str2d`: `strtod`, then
/// only white space to the end).
pub(crate) fn to_number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(n) => Some(*n as f64),
        Value::Number(n) => Some(*n),
        Value::String(s) => str_to_number(&s.as_bytes()),
        _ => None,
    }
}

/// `luaO_str2d` on a Lua string (which C reads up to its first NUL).
pub(crate) fn str_to_number(s: &[u8]) -> Option<f64> {
    let s = match s.iter().position(|&b| b == 0) {
        Some(n) => &s[..n],
        None => s,
    };
    let (v, n) = strtod(s);
    if n == 0 {
        return None;
    }
    s[n..].iter().all(|&b| is_space(b)).then_some(v)
}

/// `lua_tointeger`: the C cast of a double to `ptrdiff_t` (x86's result for the
/// undefined cases: the minimum).
pub(crate) fn to_integer(n: f64) -> i64 {
    if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&n) {
        i64::MIN
    } else {
        n as i64
    }
}

/// A C cast of a double to `int` (x86's `cvttsd2si`: the minimum when out of range).
pub(crate) fn to_int(n: f64) -> i32 {
    if !(-2_147_483_648.0..2_147_483_648.0).contains(&n) {
        i32::MIN
    } else {
        n as i32
    }
}

/// `lua_number2str`: `%.14g`.
pub(crate) fn to_string(n: f64) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if n.is_infinite() {
        return if n < 0.0 { "-inf" } else { "inf" }.into();
    }
    crate::util::fmt_g(n, 14)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtod_reads_what_glibc_reads() {
        assert_eq!(strtod(b"12abc"), (12.0, 2));
        assert_eq!(strtod(b"-1.5e3x"), (-1500.0, 6));
        assert_eq!(strtod(b"1e"), (1.0, 1));
        assert_eq!(strtod(b"0x1F"), (31.0, 4));
        assert_eq!(strtod(b"0x"), (0.0, 1));
        assert_eq!(strtod(b"0x1p4"), (16.0, 5));
        assert_eq!(strtod(b"Infinity"), (f64::INFINITY, 8));
        assert_eq!(strtod(b"-inf"), (f64::NEG_INFINITY, 4));
        assert!(strtod(b"nan(x)").0.is_nan());
        assert_eq!(strtod(b"nan(x)").1, 6);
        assert_eq!(strtod(b"."), (0.0, 0));
        assert_eq!(strtod(b"+"), (0.0, 0));
        assert_eq!(str_to_number(b" 5 "), Some(5.0));
        assert_eq!(str_to_number(b"5x"), None);
        assert_eq!(str_to_number(b"0x10"), Some(16.0));
    }
}
