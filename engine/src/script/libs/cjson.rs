//! `cjson` as Redis bundles it (lua-cjson 2.1.0, `deps/lua/src/lua_cjson.c`): numbers
//! encoded with `%.14g`, `/` escaped, empty tables as `{}`, excessively sparse arrays
//! refused, `cjson.null` a light userdata NULL, the decoder's error texts and its
//! C-string reading (a NUL ends the text), and the settings functions
//! (`encode_sparse_array`, `encode_max_depth`, `decode_max_depth`,
//! `encode_number_precision`, `encode_keep_buffer`, `encode_invalid_numbers`,
//! `decode_invalid_numbers`), which change the behaviour of that `cjson` table for
//! the life of the VM (`cjson.new()` makes a table with settings of its own).
//!
//! Encoder and decoder walk nested values with explicit stacks, so deep nesting
//! does not recurse on the Rust stack; they count the Lua stack slots the C code
//! would use, to fail where it fails.

use super::{
    arg_error, check_bytes, check_integer, lib_fn, num, ret, type_name, LibError, LibResult,
    MAX_CSTACK,
};
use mlua::{LightUserData, Lua, MultiValue, Table, Value};
use std::sync::{Arc, Mutex};

/// lua-cjson's settings (`json_config_t`), with its defaults.
#[derive(Debug, Clone, Copy)]
struct Config {
    sparse_convert: i32,
    sparse_ratio: i32,
    sparse_safe: i32,
    encode_max_depth: i32,
    decode_max_depth: i32,
    encode_invalid_numbers: i32,
    decode_invalid_numbers: i32,
    keep_buffer: i32,
    precision: i32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            sparse_convert: 0,
            sparse_ratio: 2,
            sparse_safe: 10,
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            encode_invalid_numbers: 0,
            decode_invalid_numbers: 1,
            keep_buffer: 1,
            precision: 14,
        }
    }
}

type Shared = Arc<Mutex<Config>>;

fn get(cfg: &Shared) -> Config {
    *cfg.lock().unwrap_or_else(|e| e.into_inner())
}

fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

/// The `cjson` table.
pub(crate) fn table(lua: &Lua) -> mlua::Result<Table> {
    let cfg: Shared = Arc::new(Mutex::new(Config::default()));
    let t = lua.create_table()?;
    let c = cfg.clone();
    t.raw_set(
        "encode",
        lib_fn(lua, move |lua, a| encode(lua, &get(&c), a))?,
    )?;
    let c = cfg.clone();
    t.raw_set(
        "decode",
        lib_fn(lua, move |lua, a| decode(lua, &get(&c), a))?,
    )?;
    setting(lua, &t, &cfg, ("encode_sparse_array", 3), |c, a| {
        Ok(vec![
            enum_option(a, 0, &mut c.sparse_convert, BOOL)?,
            int_option(a, 1, &mut c.sparse_ratio, 0, i32::MAX)?,
            int_option(a, 2, &mut c.sparse_safe, 0, i32::MAX)?,
        ])
    })?;
    setting(lua, &t, &cfg, ("encode_max_depth", 1), |c, a| {
        Ok(vec![int_option(
            a,
            0,
            &mut c.encode_max_depth,
            1,
            i32::MAX,
        )?])
    })?;
    setting(lua, &t, &cfg, ("decode_max_depth", 1), |c, a| {
        Ok(vec![int_option(
            a,
            0,
            &mut c.decode_max_depth,
            1,
            i32::MAX,
        )?])
    })?;
    setting(lua, &t, &cfg, ("encode_number_precision", 1), |c, a| {
        Ok(vec![int_option(a, 0, &mut c.precision, 1, 14)?])
    })?;
    setting(lua, &t, &cfg, ("encode_keep_buffer", 1), |c, a| {
        Ok(vec![enum_option(a, 0, &mut c.keep_buffer, BOOL)?])
    })?;
    setting(lua, &t, &cfg, ("encode_invalid_numbers", 1), |c, a| {
        Ok(vec![enum_option(
            a,
            0,
            &mut c.encode_invalid_numbers,
            &["off", "on", "null"],
        )?])
    })?;
    setting(lua, &t, &cfg, ("decode_invalid_numbers", 1), |c, a| {
        Ok(vec![enum_option(
            a,
            0,
            &mut c.decode_invalid_numbers,
            BOOL,
        )?])
    })?;
    t.raw_set(
        "new",
        lib_fn(lua, |lua, _: MultiValue| ret(lua, table(lua)?))?,
    )?;
    t.raw_set("null", null())?;
    t.raw_set("_NAME", "cjson")?;
    t.raw_set("_VERSION", "2.1.0")?;
    Ok(t)
}

const BOOL: &[&str] = &["off", "on"];

/// A settings function `name` of `nargs` options: `json_arg_init` (at most `nargs`
/// arguments), then `f` on the settings, which returns the values to answer.
fn setting<F>(
    lua: &Lua,
    t: &Table,
    cfg: &Shared,
    (name, nargs): (&str, usize),
    f: F,
) -> mlua::Result<()>
where
    F: Fn(&mut Config, &MultiValue) -> Result<Vec<SettingValue>, LibError>
        + mlua::MaybeSend
        + 'static,
{
    let cfg = cfg.clone();
    t.raw_set(
        name,
        lib_fn(lua, move |lua, a: MultiValue| {
            if a.len() > nargs {
                return arg_error(lua, nargs + 1, "found too many arguments");
            }
            let mut c = cfg.lock().unwrap_or_else(|e| e.into_inner());
            // Options set before a failing one stay set, as in C.
            let out = f(&mut c, &a);
            drop(c);
            match out {
                Ok(vals) => {
                    let mut r = vec![Value::Boolean(true)];
                    for v in vals {
                        r.push(match v {
                            SettingValue::Bool(b) => Value::Boolean(b),
                            SettingValue::Int(i) => Value::Integer(i as i64),
                            SettingValue::Str(s) => Value::String(lua.create_string(s)?),
                        });
                    }
                    Ok(MultiValue::from_iter(r))
                }
                Err(e) => e.raise(lua),
            }
        })?,
    )
}

/// What a settings function answers for one option.
enum SettingValue {
    Bool(bool),
    Int(i32),
    Str(&'static str),
}

/// `json_enum_option` (with `bool_true` 1, as every caller has it).
fn enum_option(
    a: &MultiValue,
    i: usize,
    setting: &mut i32,
    options: &'static [&'static str],
) -> Result<SettingValue, LibError> {
    match a.get(i) {
        None | Some(Value::Nil) => {}
        Some(Value::Boolean(b)) => *setting = *b as i32,
        Some(_) => {
            // luaL_checkoption
            let name = check_bytes(a, i)?;
            let name = match name.iter().position(|&b| b == 0) {
                Some(n) => name[..n].to_vec(),
                None => name,
            };
            match options.iter().position(|o| o.as_bytes() == name) {
                Some(k) => *setting = k as i32,
                None => {
                    let mut m = b"invalid option '".to_vec();
                    m.extend_from_slice(&name);
                    m.push(b'\'');
                    return Err(LibError::Arg(i + 1, m));
                }
            }
        }
    }
    Ok(if *setting == 0 || *setting == 1 {
        SettingValue::Bool(*setting == 1)
    } else {
        SettingValue::Str(options[*setting as usize])
    })
}

/// `json_integer_option` (its range error names argument 1 whatever the option).
fn int_option(
    a: &MultiValue,
    i: usize,
    setting: &mut i32,
    min: i32,
    max: i32,
) -> Result<SettingValue, LibError> {
    if !matches!(a.get(i), None | Some(Value::Nil)) {
        let value = check_integer(a, i)? as i32;
        if !(min <= value && value <= max) {
            return Err(LibError::arg(
                1,
                format!("expected integer between {min} and {max}"),
            ));
        }
        *setting = value;
    }
    Ok(SettingValue::Int(*setting))
}

// ===== Encoding =====

fn encode(lua: &Lua, cfg: &Config, args: MultiValue) -> LibResult {
    if args.len() != 1 {
        return arg_error(lua, 1, "expected 1 argument");
    }
    let mut out = Vec::new();
    match encode_value(lua, &args[0], cfg, &mut out) {
        Ok(()) => ret(lua, lua.create_string(&out)?),
        Err(e) => e.raise(lua),
    }
}

/// `json_encode_exception`.
fn exception(v: Option<&Value>, reason: &str) -> LibError {
    LibError::msg(format!("Cannot serialise {}: {reason}", type_name(v)))
}

/// `%.<precision>g` as glibc prints it.
fn fmt_number(n: f64, precision: i32) -> String {
    if !n.is_finite() {
        return num::to_string(n);
    }
    crate::util::fmt_g(n, precision.clamp(1, 14) as usize)
}

fn number(v: &Value, n: f64, cfg: &Config, out: &mut Vec<u8>) -> Result<(), LibError> {
    match cfg.encode_invalid_numbers {
        0 if !n.is_finite() => return Err(exception(Some(v), "must not be NaN or Inf")),
        1 if n.is_nan() => {
            out.extend_from_slice(b"nan");
            return Ok(());
        }
        2 if !n.is_finite() => {
            out.extend_from_slice(b"null");
            return Ok(());
        }
        _ => {}
    }
    out.extend_from_slice(fmt_number(n, cfg.precision).as_bytes());
    Ok(())
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// A table being written: an array (its length and next index) or an object (its
/// pairs read ahead when they fit [`PAIRS_BUDGET`], else walked with `next` as the
/// C code does); its table and last key are in the walk's stash.
enum EFrame {
    Array {
        len: i64,
        i: i64,
    },
    Object {
        first: bool,
        ahead: Option<(std::vec::IntoIter<(Value, Value)>, usize)>,
    },
}

/// Keys and values an encoding may hold in Rust at once (see `super::Results`):
/// reading an object's pairs ahead is quicker than a `next` call per pair.
const PAIRS_BUDGET: usize = 3000;

impl EFrame {
    /// Lua stack slots the C encoder holds for it: the value, or the key and value.
    fn slots(&self) -> usize {
        match self {
            EFrame::Array { .. } => 1,
            EFrame::Object { .. } => 2,
        }
    }
}

/// `lua_array_length`: the array's length (the largest key), 0 for an empty table,
/// -1 for an object (or a sparse array converted to one).
fn array_length(t: &Table, cfg: &Config) -> Result<i64, LibError> {
    let mut max: i32 = 0;
    let mut items: i32 = 0;
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair?;
        let n = match &k {
            Value::Integer(i) => *i as f64,
            Value::Number(n) => *n,
            _ => return Ok(-1),
        };
        if n == 0.0 || n.floor() != n || n < 1.0 {
            return Ok(-1);
        }
        if n > max as f64 {
            max = num::to_int(n);
        }
        items = items.wrapping_add(1);
    }
    if cfg.sparse_ratio > 0 && max > items.wrapping_mul(cfg.sparse_ratio) && max > cfg.sparse_safe {
        if cfg.sparse_convert == 0 {
            return Err(LibError::msg(
                "Cannot serialise table: excessively sparse array",
            ));
        }
        return Ok(-1);
    }
    Ok(max as i64)
}

fn encode_value(lua: &Lua, v: &Value, cfg: &Config, out: &mut Vec<u8>) -> Result<(), LibError> {
    let mut stack: Vec<EFrame> = Vec::new();
    // Frame k's table at 2k, its last key at 2k+1.
    let mut held = super::Stash::new();
    // Lua stack slots in use: the argument, then per open table its value or pair.
    let mut height = 1;
    // Keys and values read ahead by the open objects.
    let mut ahead_held = 0;
    let mut next: Option<Value> = Some(v.clone());
    loop {
        if let Some(v) = next.take() {
            match &v {
                Value::Nil => out.extend_from_slice(b"null"),
                Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
                Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
                Value::Integer(i) => number(&v, *i as f64, cfg, out)?,
                Value::Number(n) => number(&v, *n, cfg, out)?,
                Value::String(s) => string(&s.as_bytes(), out),
                Value::Table(t) => {
                    let depth = stack.len() + 1;
                    if depth as i64 > cfg.encode_max_depth as i64 || height + 3 > MAX_CSTACK {
                        return Err(LibError::msg(format!(
                            "Cannot serialise, excessive nesting ({depth})"
                        )));
                    }
                    let len = array_length(t, cfg)?;
                    let frame = if len > 0 {
                        out.push(b'[');
                        EFrame::Array { len, i: 0 }
                    } else {
                        out.push(b'{');
                        let mut pairs = Vec::new();
                        for pair in t.pairs::<Value, Value>() {
                            if ahead_held + 2 * (pairs.len() + 1) > PAIRS_BUDGET {
                                pairs.clear();
                                break;
                            }
                            pairs.push(pair?);
                        }
                        let ahead = if pairs.is_empty() {
                            None
                        } else {
                            let n = 2 * pairs.len();
                            ahead_held += n;
                            Some((pairs.into_iter(), n))
                        };
                        EFrame::Object { first: true, ahead }
                    };
                    height += frame.slots();
                    stack.push(frame);
                    held.push(lua, v.clone())?;
                    held.push(lua, Value::Nil)?;
                }
                other => return Err(exception(Some(other), "type not supported")),
            }
        }
        let depth = stack.len();
        let Some(top) = stack.last_mut() else {
            return Ok(());
        };
        let Value::Table(t) = held.get(2 * depth - 2)? else {
            return Ok(());
        };
        let closed = match top {
            EFrame::Array { len, i } => {
                if *i == *len {
                    out.push(b']');
                    true
                } else {
                    if *i > 0 {
                        out.push(b',');
                    }
                    *i += 1;
                    next = Some(t.raw_get(*i)?);
                    false
                }
            }
            EFrame::Object { first, ahead } => match match ahead.as_mut() {
                Some((pairs, _)) => pairs.next(),
                None => super::raw_next(lua, &t, held.get(2 * depth - 1)?)?,
            } {
                None => {
                    out.push(b'}');
                    true
                }
                Some((k, v)) => {
                    if !*first {
                        out.push(b',');
                    }
                    *first = false;
                    match &k {
                        Value::Integer(n) => {
                            out.push(b'"');
                            number(&k, *n as f64, cfg, out)?;
                            out.extend_from_slice(b"\":");
                        }
                        Value::Number(n) => {
                            out.push(b'"');
                            number(&k, *n, cfg, out)?;
                            out.extend_from_slice(b"\":");
                        }
                        Value::String(s) => {
                            string(&s.as_bytes(), out);
                            out.push(b':');
                        }
                        other => {
                            return Err(exception(
                                Some(other),
                                "table key must be a number or string",
                            ))
                        }
                    }
                    if ahead.is_none() {
                        held.set(2 * depth - 1, k)?;
                    }
                    next = Some(v);
                    false
                }
            },
        };
        if closed {
            if let Some(f) = stack.pop() {
                height -= f.slots();
                if let EFrame::Object {
                    ahead: Some((_, n)),
                    ..
                } = f
                {
                    ahead_held -= n;
                }
            }
            held.pop()?;
            held.pop()?;
        }
    }
}

// ===== Decoding =====

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Str(Vec<u8>),
    Num(f64),
    Bool(bool),
    Null,
    Colon,
    Comma,
    End,
    Error(&'static str),
}

impl Tok {
    fn name(&self) -> &'static str {
        match self {
            Tok::ObjBegin => "T_OBJ_BEGIN",
            Tok::ObjEnd => "T_OBJ_END",
            Tok::ArrBegin => "T_ARR_BEGIN",
            Tok::ArrEnd => "T_ARR_END",
            Tok::Str(_) => "T_STRING",
            Tok::Num(_) => "T_NUMBER",
            Tok::Bool(_) => "T_BOOLEAN",
            Tok::Null => "T_NULL",
            Tok::Colon => "T_COLON",
            Tok::Comma => "T_COMMA",
            Tok::End => "T_END",
            Tok::Error(e) => e,
        }
    }
}

struct Decoder<'a> {
    /// The text up to its first NUL (C reads it as a C string).
    s: &'a [u8],
    pos: usize,
    depth: i64,
    invalid_numbers: bool,
    max_depth: i64,
}

fn hex_digit(c: u8) -> Option<u32> {
    (c as char).to_digit(16)
}

impl Decoder<'_> {
    fn at(&self, i: usize) -> u8 {
        self.s.get(i).copied().unwrap_or(0)
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        (0..4).try_fold(0u32, |a, k| Some((a << 4) | hex_digit(self.at(at + k))?))
    }

    /// `json_is_invalid_number` at the current position.
    fn is_invalid_number(&self) -> bool {
        let mut p = self.pos;
        if self.at(p) == b'+' {
            return true;
        }
        if self.at(p) == b'-' {
            p += 1;
        }
        let c = self.at(p);
        if c == b'0' {
            let c2 = self.at(p + 1);
            return c2 | 0x20 == b'x' || c2.is_ascii_digit();
        }
        // A signed char: bytes past 0x7f are "<= '9'" too.
        if c <= b'9' || c >= 0x80 {
            return false;
        }
        let rest = &self.s[p.min(self.s.len())..];
        let starts = |w: &[u8]| rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(w);
        starts(b"inf") || starts(b"nan")
    }

    /// The next token and the index it is reported at (errors: where they happened).
    fn next(&mut self) -> (Tok, usize) {
        while matches!(self.at(self.pos), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
        let at = self.pos;
        let c = self.at(at);
        let single = match c {
            0 => return (Tok::End, at),
            b'{' => Some(Tok::ObjBegin),
            b'}' => Some(Tok::ObjEnd),
            b'[' => Some(Tok::ArrBegin),
            b']' => Some(Tok::ArrEnd),
            b',' => Some(Tok::Comma),
            b':' => Some(Tok::Colon),
            _ => None,
        };
        if let Some(t) = single {
            self.pos += 1;
            return (t, at);
        }
        if c == b'"' {
            return self.string();
        }
        if c == b'-' || c.is_ascii_digit() {
            if !self.invalid_numbers && self.is_invalid_number() {
                return (Tok::Error("invalid number"), at);
            }
            return self.number();
        }
        if !matches!(c, b'f' | b'i' | b'I' | b'n' | b'N' | b't' | b'+') {
            return (Tok::Error("invalid token"), at);
        }
        let rest = &self.s[at..];
        for (word, tok) in [
            (&b"true"[..], Tok::Bool(true)),
            (b"false", Tok::Bool(false)),
            (b"null", Tok::Null),
        ] {
            if rest.starts_with(word) {
                self.pos += word.len();
                return (tok, at);
            }
        }
        if self.invalid_numbers && self.is_invalid_number() {
            return self.number();
        }
        (Tok::Error("invalid token"), at)
    }

    fn number(&mut self) -> (Tok, usize) {
        let at = self.pos;
        let (v, n) = num::strtod(&self.s[at..]);
        if n == 0 {
            return (Tok::Error("invalid number"), at);
        }
        self.pos += n;
        (Tok::Num(v), at)
    }

    fn string(&mut self) -> (Tok, usize) {
        let start = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let c = self.at(self.pos);
            match c {
                b'"' => break,
                0 => return (Tok::Error("unexpected end of string"), self.pos),
                b'\\' => {
                    let e = self.at(self.pos + 1);
                    let ch = match e {
                        b'"' | b'\\' | b'/' => e,
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            match self.unicode() {
                                Some(len) => {
                                    out.extend_from_slice(&len.0[..len.1]);
                                }
                                None => {
                                    return (Tok::Error("invalid unicode escape code"), self.pos)
                                }
                            }
                            continue;
                        }
                        _ => return (Tok::Error("invalid escape code"), self.pos),
                    };
                    out.push(ch);
                    self.pos += 2;
                }
                _ => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        self.pos += 1;
        (Tok::Str(out), start)
    }

    /// `json_append_unicode_escape` at a `\u`: the UTF-8 bytes (advancing past the
    /// escape), or None.
    fn unicode(&mut self) -> Option<([u8; 4], usize)> {
        let mut cp = self.hex4(self.pos + 2)?;
        let mut len = 6;
        if cp & 0xF800 == 0xD800 {
            if cp & 0x400 != 0 {
                return None;
            }
            if self.at(self.pos + 6) != b'\\' || self.at(self.pos + 7) != b'u' {
                return None;
            }
            let low = self.hex4(self.pos + 8)?;
            if low & 0xFC00 != 0xDC00 {
                return None;
            }
            cp = (((cp & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000;
            len = 12;
        }
        let mut b = [0u8; 4];
        let n = if cp <= 0x7F {
            b[0] = cp as u8;
            1
        } else if cp <= 0x7FF {
            b[0] = ((cp >> 6) | 0xC0) as u8;
            b[1] = ((cp & 0x3F) | 0x80) as u8;
            2
        } else if cp <= 0xFFFF {
            b[0] = ((cp >> 12) | 0xE0) as u8;
            b[1] = (((cp >> 6) & 0x3F) | 0x80) as u8;
            b[2] = ((cp & 0x3F) | 0x80) as u8;
            3
        } else {
            b[0] = ((cp >> 18) | 0xF0) as u8;
            b[1] = (((cp >> 12) & 0x3F) | 0x80) as u8;
            b[2] = (((cp >> 6) & 0x3F) | 0x80) as u8;
            b[3] = ((cp & 0x3F) | 0x80) as u8;
            4
        };
        self.pos += len;
        Some((b, n))
    }

    fn error(expected: &str, tok: &Tok, at: usize) -> LibError {
        LibError::msg(format!(
            "Expected {expected} but found {} at character {}",
            tok.name(),
            at + 1
        ))
    }

    /// `json_decode_descend`: one level deeper, within the depth limit and Lua's
    /// stack (`height` slots in use, `slots` more needed).
    fn descend(&mut self, height: usize, slots: usize) -> Result<(), LibError> {
        self.depth += 1;
        if self.depth <= self.max_depth && height + slots <= MAX_CSTACK {
            return Ok(());
        }
        Err(LibError::msg(format!(
            "Found too many nested data structures ({}) at character {}",
            self.depth, self.pos
        )))
    }

    /// One value starting with token `tok` (the whole text's, at the top).
    fn value(&mut self, lua: &Lua, tok: (Tok, usize)) -> Result<Value, LibError> {
        // An open object (its pending key) or array (its next index), with the Lua
        // stack height once its table is pushed; the tables are in `held`.
        enum DFrame {
            Obj { key: Vec<u8>, top: usize },
            Arr { i: i64, top: usize },
        }
        let mut stack: Vec<DFrame> = Vec::new();
        let mut held = super::Stash::new();
        let mut pending = tok;
        let mut height = 1;
        loop {
            let (tok, at) = pending;
            let mut v = match tok {
                Tok::Str(s) => Value::String(lua.create_string(&s)?),
                Tok::Num(n) => Value::Number(n),
                Tok::Bool(b) => Value::Boolean(b),
                Tok::Null => null(),
                Tok::ObjBegin => {
                    self.descend(height, 3)?;
                    let t = lua.create_table()?;
                    let (tok, at) = self.next();
                    if tok == Tok::ObjEnd {
                        self.depth -= 1;
                        Value::Table(t)
                    } else {
                        let key = self.key(tok, at)?;
                        stack.push(DFrame::Obj {
                            key,
                            top: height + 1,
                        });
                        held.push(lua, Value::Table(t))?;
                        height += 2;
                        pending = self.next();
                        continue;
                    }
                }
                Tok::ArrBegin => {
                    self.descend(height, 2)?;
                    let t = lua.create_table()?;
                    let (tok, at) = self.next();
                    if tok == Tok::ArrEnd {
                        self.depth -= 1;
                        Value::Table(t)
                    } else {
                        stack.push(DFrame::Arr {
                            i: 1,
                            top: height + 1,
                        });
                        held.push(lua, Value::Table(t))?;
                        height += 1;
                        pending = (tok, at);
                        continue;
                    }
                }
                other => return Err(Self::error("value", &other, at)),
            };
            // Store the value; a closed container is a value for its parent.
            loop {
                let depth = stack.len();
                let Some(frame) = stack.last_mut() else {
                    return Ok(v);
                };
                let Value::Table(t) = held.get(depth - 1)? else {
                    return Ok(v);
                };
                match frame {
                    DFrame::Obj { key, top } => {
                        t.raw_set(lua.create_string(&*key)?, v)?;
                        let (tok, at) = self.next();
                        if tok == Tok::ObjEnd {
                            self.depth -= 1;
                        } else if tok != Tok::Comma {
                            return Err(Self::error("comma or object end", &tok, at));
                        } else {
                            let (tok, at) = self.next();
                            *key = self.key(tok, at)?;
                            height = *top + 1;
                            pending = self.next();
                            break;
                        }
                    }
                    DFrame::Arr { i, top } => {
                        t.raw_set(*i, v)?;
                        *i += 1;
                        let (tok, at) = self.next();
                        if tok == Tok::ArrEnd {
                            self.depth -= 1;
                        } else if tok != Tok::Comma {
                            return Err(Self::error("comma or array end", &tok, at));
                        } else {
                            height = *top;
                            pending = self.next();
                            break;
                        }
                    }
                }
                stack.pop();
                held.pop()?;
                v = Value::Table(t);
            }
        }
    }

    /// An object's key and its colon.
    fn key(&mut self, tok: Tok, at: usize) -> Result<Vec<u8>, LibError> {
        let Tok::Str(key) = tok else {
            return Err(Self::error("object key string", &tok, at));
        };
        let (colon, cat) = self.next();
        if colon != Tok::Colon {
            return Err(Self::error("colon", &colon, cat));
        }
        Ok(key)
    }
}

fn decode(lua: &Lua, cfg: &Config, args: MultiValue) -> LibResult {
    if args.len() != 1 {
        return arg_error(lua, 1, "expected 1 argument");
    }
    let bytes = match check_bytes(&args, 0) {
        Ok(b) => b,
        Err(e) => return e.raise(lua),
    };
    if bytes.len() >= 2 && (bytes[0] == 0 || bytes[1] == 0) {
        return super::fail(lua, "JSON parser does not support UTF-16 or UTF-32");
    }
    let text = match bytes.iter().position(|&b| b == 0) {
        Some(n) => &bytes[..n],
        None => &bytes[..],
    };
    let mut d = Decoder {
        s: text,
        pos: 0,
        depth: 0,
        invalid_numbers: cfg.decode_invalid_numbers != 0,
        max_depth: cfg.decode_max_depth as i64,
    };
    let first = d.next();
    let v = match d.value(lua, first) {
        Ok(v) => v,
        Err(e) => return e.raise(lua),
    };
    let (end, at) = d.next();
    if end != Tok::End {
        return Decoder::error("the end", &end, at).raise(lua);
    }
    ret(lua, v)
}
