//! `cjson` as Redis bundles it (lua-cjson 2.1.0 with its default settings): numbers
//! encoded with `%.14g`, `/` escaped, empty tables as `{}`, excessively sparse arrays
//! refused, `cjson.null` a light userdata NULL, and the decoder's error texts.

use super::{fail, ret, LibResult};
use mlua::{LightUserData, Lua, MultiValue, Table, Value};

const MAX_DEPTH: usize = 1000;

/// The `cjson` table.
pub(crate) fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("encode", lua.create_function(encode)?)?;
    t.raw_set("decode", lua.create_function(decode)?)?;
    // Settings: Redis scripts read them; they report lua-cjson's defaults.
    for (name, vals) in [
        ("encode_keep_buffer", vec![Value::Boolean(true)]),
        ("encode_max_depth", vec![Value::Integer(1000)]),
        ("decode_max_depth", vec![Value::Integer(1000)]),
        ("encode_number_precision", vec![Value::Integer(14)]),
        (
            "encode_sparse_array",
            vec![Value::Boolean(false), Value::Integer(2), Value::Integer(10)],
        ),
        ("encode_invalid_numbers", vec![Value::Boolean(false)]),
        ("decode_invalid_numbers", vec![Value::Boolean(true)]),
    ] {
        t.raw_set(
            name,
            lua.create_function(move |_, _: MultiValue| {
                let mut out = vec![Value::Boolean(true)];
                out.extend(vals.iter().cloned());
                Ok(MultiValue::from_iter(out))
            })?,
        )?;
    }
    t.raw_set(
        "null",
        Value::LightUserData(LightUserData(std::ptr::null_mut())),
    )?;
    t.raw_set("_NAME", "cjson")?;
    t.raw_set("_VERSION", "2.1.0")?;
    Ok(t)
}

fn encode(lua: &Lua, args: MultiValue) -> LibResult {
    if args.len() != 1 {
        return fail(lua, "bad argument #1 to 'encode' (expected 1 argument)");
    }
    let mut out = Vec::new();
    match encode_value(&args[0], 0, &mut out) {
        Ok(()) => ret(lua, lua.create_string(&out)?),
        Err(e) => fail(lua, e),
    }
}

fn number(n: f64, out: &mut Vec<u8>) -> Result<(), String> {
    if !n.is_finite() {
        return Err("Cannot serialise number: must not be NaN or Inf".into());
    }
    out.extend_from_slice(crate::util::fmt_g(n, 14).as_bytes());
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

fn encode_value(v: &Value, depth: usize, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(i) => number(*i as f64, out)?,
        Value::Number(n) => number(*n, out)?,
        Value::String(s) => string(&s.as_bytes(), out),
        Value::Table(t) => {
            let depth = depth + 1;
            if depth > MAX_DEPTH {
                return Err(format!("Cannot serialise, excessive nesting ({depth})"));
            }
            encode_table(t, depth, out)?;
        }
        other => {
            return Err(format!(
                "Cannot serialise {}: type not supported",
                other.type_name()
            ))
        }
    }
    Ok(())
}

/// lua-cjson's `lua_array_length`: the table's length if every key is a positive
/// integer (0 for an object), -1 when a key is not.
fn array_length(t: &Table) -> Result<i64, String> {
    let mut max = 0i64;
    let mut items = 0i64;
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair.map_err(|e| e.to_string())?;
        let n = match k {
            Value::Integer(i) => i as f64,
            Value::Number(n) => n,
            _ => return Ok(-1),
        };
        if n.floor() != n || n < 1.0 {
            return Ok(-1);
        }
        max = max.max(n as i64);
        items += 1;
    }
    // encode_sparse_array defaults: convert off, ratio 2, safe 10.
    if max > 10 && max > items * 2 {
        return Err("Cannot serialise table: excessively sparse array".into());
    }
    Ok(max)
}

fn encode_table(t: &Table, depth: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let len = array_length(t)?;
    if len > 0 {
        out.push(b'[');
        for i in 1..=len {
            if i > 1 {
                out.push(b',');
            }
            let v: Value = t.raw_get(i).map_err(|e| e.to_string())?;
            encode_value(&v, depth, out)?;
        }
        out.push(b']');
        return Ok(());
    }
    out.push(b'{');
    let mut first = true;
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| e.to_string())?;
        if !first {
            out.push(b',');
        }
        first = false;
        match &k {
            Value::String(s) => string(&s.as_bytes(), out),
            Value::Integer(i) => {
                out.push(b'"');
                number(*i as f64, out)?;
                out.push(b'"');
            }
            Value::Number(n) => {
                out.push(b'"');
                number(*n, out)?;
                out.push(b'"');
            }
            _ => return Err("Cannot serialise table: table key must be a number or string".into()),
        }
        out.push(b':');
        encode_value(&v, depth, out)?;
    }
    out.push(b'}');
    Ok(())
}

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
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Decoder<'_> {
    /// The next token and the index it starts at.
    fn next(&mut self) -> (Tok, usize) {
        while self.pos < self.s.len() && matches!(self.s[self.pos], b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
        let at = self.pos;
        let Some(&c) = self.s.get(self.pos) else {
            return (Tok::End, at);
        };
        let single = |t| (t, at);
        match c {
            b'{' => {
                self.pos += 1;
                single(Tok::ObjBegin)
            }
            b'}' => {
                self.pos += 1;
                single(Tok::ObjEnd)
            }
            b'[' => {
                self.pos += 1;
                single(Tok::ArrBegin)
            }
            b']' => {
                self.pos += 1;
                single(Tok::ArrEnd)
            }
            b':' => {
                self.pos += 1;
                single(Tok::Colon)
            }
            b',' => {
                self.pos += 1;
                single(Tok::Comma)
            }
            b'"' => (self.string(), at),
            b'-' | b'0'..=b'9' => (self.number(), at),
            _ => {
                for (word, tok) in [
                    (&b"true"[..], Tok::Bool(true)),
                    (b"false", Tok::Bool(false)),
                    (b"null", Tok::Null),
                ] {
                    if self.s[self.pos..].starts_with(word) {
                        self.pos += word.len();
                        return (tok, at);
                    }
                }
                (Tok::Error("invalid token"), at)
            }
        }
    }

    fn number(&mut self) -> Tok {
        let start = self.pos;
        let mut end = start;
        while end < self.s.len()
            && matches!(self.s[end], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        {
            end += 1;
        }
        // strtod takes the longest valid prefix.
        let text = &self.s[start..end];
        for cut in (1..=text.len()).rev() {
            if let Some(n) = std::str::from_utf8(&text[..cut])
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
            {
                self.pos = start + cut;
                return Tok::Num(n);
            }
        }
        Tok::Error("invalid number")
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let h = self.s.get(at..at + 4)?;
        u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    }

    fn string(&mut self) -> Tok {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.pos) else {
                return Tok::Error("unexpected end of string");
            };
            self.pos += 1;
            match c {
                b'"' => return Tok::Str(out),
                b'\\' => {
                    let Some(&e) = self.s.get(self.pos) else {
                        return Tok::Error("unexpected end of string");
                    };
                    self.pos += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let Some(mut cp) = self.hex4(self.pos) else {
                                return Tok::Error("invalid unicode escape code");
                            };
                            self.pos += 4;
                            if (0xD800..0xDC00).contains(&cp) {
                                let low = if self.s.get(self.pos..self.pos + 2) == Some(b"\\u") {
                                    self.hex4(self.pos + 2)
                                } else {
                                    None
                                };
                                match low {
                                    Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                                        self.pos += 6;
                                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                    }
                                    _ => return Tok::Error("invalid unicode escape code"),
                                }
                            } else if (0xDC00..0xE000).contains(&cp) {
                                return Tok::Error("invalid unicode escape code");
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Tok::Error("invalid escape code"),
                    }
                }
                _ => out.push(c),
            }
        }
    }

    fn error(&self, expected: &str, tok: &Tok, at: usize) -> String {
        format!(
            "Expected {expected} but found {} at character {}",
            tok.name(),
            at + 1
        )
    }

    fn value(&mut self, lua: &Lua, tok: Tok, at: usize) -> Result<Value, String> {
        let e = |x: mlua::Error| x.to_string();
        Ok(match tok {
            Tok::Str(s) => Value::String(lua.create_string(&s).map_err(e)?),
            Tok::Num(n) => Value::Number(n),
            Tok::Bool(b) => Value::Boolean(b),
            Tok::Null => Value::LightUserData(LightUserData(std::ptr::null_mut())),
            Tok::ObjBegin | Tok::ArrBegin => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(format!(
                        "Found too many nested data structures ({}) at character {}",
                        self.depth,
                        at + 1
                    ));
                }
                let t = lua.create_table().map_err(e)?;
                if tok == Tok::ObjBegin {
                    self.object(lua, &t)?;
                } else {
                    self.array(lua, &t)?;
                }
                self.depth -= 1;
                Value::Table(t)
            }
            other => return Err(self.error("value", &other, at)),
        })
    }

    fn object(&mut self, lua: &Lua, t: &Table) -> Result<(), String> {
        let (mut tok, mut at) = self.next();
        if tok == Tok::ObjEnd {
            return Ok(());
        }
        loop {
            let Tok::Str(key) = tok else {
                return Err(self.error("object key string", &tok, at));
            };
            let (colon, cat) = self.next();
            if colon != Tok::Colon {
                return Err(self.error("colon", &colon, cat));
            }
            let (vt, vat) = self.next();
            let v = self.value(lua, vt, vat)?;
            let k = lua.create_string(&key).map_err(|e| e.to_string())?;
            t.raw_set(k, v).map_err(|e| e.to_string())?;
            let (sep, sat) = self.next();
            match sep {
                Tok::ObjEnd => return Ok(()),
                Tok::Comma => (tok, at) = self.next(),
                other => return Err(self.error("comma or object end", &other, sat)),
            }
        }
    }

    fn array(&mut self, lua: &Lua, t: &Table) -> Result<(), String> {
        let (mut tok, mut at) = self.next();
        if tok == Tok::ArrEnd {
            return Ok(());
        }
        let mut i = 1;
        loop {
            let v = self.value(lua, tok, at)?;
            t.raw_set(i, v).map_err(|e| e.to_string())?;
            i += 1;
            let (sep, sat) = self.next();
            match sep {
                Tok::ArrEnd => return Ok(()),
                Tok::Comma => (tok, at) = self.next(),
                other => return Err(self.error("comma or array end", &other, sat)),
            }
        }
    }
}

fn decode(lua: &Lua, args: MultiValue) -> LibResult {
    if args.len() != 1 {
        return fail(lua, "bad argument #1 to 'decode' (expected 1 argument)");
    }
    let bytes = match &args[0] {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Integer(i) => i.to_string().into_bytes(),
        Value::Number(n) => crate::util::fmt_g(*n, 14).into_bytes(),
        other => {
            return fail(
                lua,
                format!(
                    "bad argument #1 to 'decode' (string expected, got {})",
                    other.type_name()
                ),
            )
        }
    };
    let mut d = Decoder {
        s: &bytes,
        pos: 0,
        depth: 0,
    };
    let (tok, at) = d.next();
    let v = match d.value(lua, tok, at) {
        Ok(v) => v,
        Err(e) => return fail(lua, e),
    };
    let (end, eat) = d.next();
    if end != Tok::End {
        return fail(lua, d.error("the end", &end, eat));
    }
    ret(lua, v)
}
