//! Redis's conversions between Lua values and replies (`script_lua.c`).
//!
//! Command replies to Lua (`redisProtocolToLuaType`), by the script's protocol
//! (`redis.setresp`): integers are numbers, bulk strings strings, a null `false`
//! (RESP2) or `nil` (RESP3), status replies `{ok=...}`, errors `{err=...}`, arrays
//! tables; under RESP3 maps `{map={...}}`, sets `{set={[e]=true}}`, doubles
//! `{double=n}`, booleans booleans, verbatim strings `{verbatim_string={format=,string=}}`.
//!
//! Script results to replies (`luaReplyToRedisReply`): strings bulk, numbers integers
//! (truncated), booleans `:1`/null (RESP2 script) or booleans (RESP3 script), tables
//! with an `err`/`ok`/`double`/`big_number`/`verbatim_string`/`map`/`set` field, else
//! arrays up to the first nil.

use crate::net::reply::Reply;
use bytes::{BufMut, Bytes, BytesMut};
use mlua::{Lua, Table, Value};

/// A command's reply as the Lua value a script sees, for a script speaking `resp`.
pub(crate) fn reply_to_lua(lua: &Lua, r: &Reply, resp: u8) -> mlua::Result<Value> {
    let resp3 = resp == 3;
    Ok(match r {
        Reply::Simple(s) => status(lua, s.as_bytes())?,
        Reply::Status(s) => status(lua, s.as_bytes())?,
        Reply::Error(e) => Value::Table(super::lua::reply_error_table(lua, e)?),
        Reply::Int(i) => Value::Integer(*i),
        Reply::Bulk(b) => Value::String(lua.create_string(b)?),
        Reply::Nil | Reply::NilArray => {
            if resp3 {
                Value::Nil
            } else {
                Value::Boolean(false)
            }
        }
        Reply::Array(items) | Reply::Push(items) | Reply::Many(items) => seq(lua, items, resp)?,
        Reply::Set(items) => {
            if resp3 {
                let inner = lua.create_table()?;
                for it in items {
                    let k = reply_to_lua(lua, it, resp)?;
                    if !k.is_nil() {
                        inner.raw_set(k, true)?;
                    }
                }
                field(lua, "set", Value::Table(inner))?
            } else {
                seq(lua, items, resp)?
            }
        }
        Reply::Map(pairs) => {
            if resp3 {
                let inner = lua.create_table()?;
                for (k, v) in pairs {
                    let k = reply_to_lua(lua, k, resp)?;
                    if !k.is_nil() {
                        inner.raw_set(k, reply_to_lua(lua, v, resp)?)?;
                    }
                }
                field(lua, "map", Value::Table(inner))?
            } else {
                let t = lua.create_table_with_capacity(pairs.len() * 2, 0)?;
                let mut i = 1;
                for (k, v) in pairs {
                    t.raw_set(i, reply_to_lua(lua, k, resp)?)?;
                    t.raw_set(i + 1, reply_to_lua(lua, v, resp)?)?;
                    i += 2;
                }
                Value::Table(t)
            }
        }
        Reply::Double(d) => {
            if resp3 {
                field(lua, "double", Value::Number(*d))?
            } else {
                Value::String(lua.create_string(crate::util::fmt_double(*d))?)
            }
        }
        Reply::Bool(b) => {
            if resp3 {
                Value::Boolean(*b)
            } else {
                Value::Integer(*b as i64)
            }
        }
        Reply::Verbatim(b) => {
            if resp3 {
                let inner = lua.create_table()?;
                inner.raw_set("format", "txt")?;
                inner.raw_set("string", lua.create_string(b)?)?;
                field(lua, "verbatim_string", Value::Table(inner))?
            } else {
                Value::String(lua.create_string(b)?)
            }
        }
        Reply::Raw(b) => {
            let mut pos = 0;
            match parse(b, &mut pos) {
                Some(r) => reply_to_lua(lua, &r, resp)?,
                None => Value::Boolean(false),
            }
        }
    })
}

fn status(lua: &Lua, s: &[u8]) -> mlua::Result<Value> {
    field(lua, "ok", Value::String(lua.create_string(s)?))
}

fn field(lua: &Lua, name: &str, v: Value) -> mlua::Result<Value> {
    let t = lua.create_table_with_capacity(0, 1)?;
    t.raw_set(name, v)?;
    Ok(Value::Table(t))
}

fn seq(lua: &Lua, items: &[Reply], resp: u8) -> mlua::Result<Value> {
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, it) in items.iter().enumerate() {
        t.raw_set(i + 1, reply_to_lua(lua, it, resp)?)?;
    }
    Ok(Value::Table(t))
}

/// Parses one encoded reply (a `Reply::Raw` some handler built), RESP2 or RESP3.
fn parse(b: &[u8], pos: &mut usize) -> Option<Reply> {
    let tag = *b.get(*pos)?;
    let end = *pos + b[*pos..].windows(2).position(|w| w == b"\r\n")?;
    let line = &b[*pos + 1..end];
    *pos = end + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    let num = || crate::util::parse_i64(line);
    Some(match tag {
        b'+' => Reply::Status(text()),
        b'-' => Reply::Error(text()),
        b':' => Reply::Int(num()?),
        b'_' => Reply::Nil,
        b'#' => Reply::Bool(line == b"t"),
        b',' => Reply::Double(crate::util::parse_f64(line)?),
        b'(' => Reply::Bulk(Bytes::copy_from_slice(line)),
        b'$' | b'=' => {
            let n = num()?;
            if n < 0 {
                return Some(Reply::Nil);
            }
            let n = n as usize;
            let body = b.get(*pos..*pos + n)?;
            *pos += n + 2;
            if tag == b'=' {
                Reply::Verbatim(Bytes::copy_from_slice(body.get(4..).unwrap_or(b"")))
            } else {
                Reply::Bulk(Bytes::copy_from_slice(body))
            }
        }
        b'*' | b'~' | b'>' => {
            let n = num()?;
            if n < 0 {
                return Some(Reply::NilArray);
            }
            let items = (0..n).map(|_| parse(b, pos)).collect::<Option<Vec<_>>>()?;
            if tag == b'~' {
                Reply::Set(items)
            } else {
                Reply::Array(items)
            }
        }
        b'%' => {
            let n = num()?;
            let mut pairs = Vec::new();
            for _ in 0..n {
                let k = parse(b, pos)?;
                pairs.push((k, parse(b, pos)?));
            }
            Reply::Map(pairs)
        }
        _ => return None,
    })
}

/// A script's result as the reply to its caller: `script_resp` decides booleans,
/// `caller_resp` the encodings built here (big numbers, verbatim strings).
pub(crate) fn lua_to_reply(v: &Value, script_resp: u8, caller_resp: u8) -> Reply {
    match v {
        Value::String(s) => Reply::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Boolean(b) => {
            if script_resp == 2 {
                if *b {
                    Reply::Int(1)
                } else {
                    Reply::Nil
                }
            } else {
                Reply::Bool(*b)
            }
        }
        Value::Integer(i) => Reply::Int(*i),
        Value::Number(n) => Reply::Int(c_cast(*n)),
        Value::Table(t) => table_to_reply(t, script_resp, caller_resp),
        _ => Reply::Nil,
    }
}

fn get_str(t: &Table, k: &str) -> Option<Vec<u8>> {
    match t.raw_get::<Value>(k) {
        Ok(Value::String(s)) => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

fn no_newlines(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace(['\r', '\n'], " ")
}

fn table_to_reply(t: &Table, script_resp: u8, caller_resp: u8) -> Reply {
    if let Some(e) = get_str(t, "err") {
        return Reply::Error(String::from_utf8_lossy(&e).into_owned());
    }
    if let Some(s) = get_str(t, "ok") {
        return Reply::Status(no_newlines(&s));
    }
    match t.raw_get::<Value>("double") {
        Ok(Value::Number(d)) => return Reply::Double(d),
        Ok(Value::Integer(i)) => return Reply::Double(i as f64),
        _ => {}
    }
    if let Some(n) = get_str(t, "big_number") {
        let n = no_newlines(&n);
        let mut out = BytesMut::new();
        if caller_resp == 3 {
            out.put_u8(b'(');
            out.put_slice(n.as_bytes());
            out.put_slice(b"\r\n");
        } else {
            Reply::Bulk(Bytes::from(n)).encode(&mut out, false);
        }
        return Reply::Raw(out.freeze());
    }
    if let Ok(Value::Table(v)) = t.raw_get::<Value>("verbatim_string") {
        if let (Some(format), Some(s)) = (get_str(&v, "format"), get_str(&v, "string")) {
            if format == b"txt" || caller_resp != 3 {
                return Reply::Verbatim(Bytes::from(s));
            }
            let mut out = BytesMut::new();
            out.put_slice(format!("={}\r\n", s.len() + 4).as_bytes());
            let mut f = format.clone();
            f.resize(3, b' ');
            out.put_slice(&f[..3]);
            out.put_u8(b':');
            out.put_slice(&s);
            out.put_slice(b"\r\n");
            return Reply::Raw(out.freeze());
        }
    }
    if let Ok(Value::Table(m)) = t.raw_get::<Value>("map") {
        let mut pairs = Vec::new();
        for (k, v) in m.pairs::<Value, Value>().flatten() {
            pairs.push((
                lua_to_reply(&k, script_resp, caller_resp),
                lua_to_reply(&v, script_resp, caller_resp),
            ));
        }
        return Reply::Map(pairs);
    }
    if let Ok(Value::Table(s)) = t.raw_get::<Value>("set") {
        let mut items = Vec::new();
        for (k, _) in s.pairs::<Value, Value>().flatten() {
            items.push(lua_to_reply(&k, script_resp, caller_resp));
        }
        return Reply::Set(items);
    }
    let mut items = Vec::new();
    let mut i = 1;
    loop {
        match t.raw_get::<Value>(i) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(v) => items.push(lua_to_reply(&v, script_resp, caller_resp)),
        }
        i += 1;
    }
    Reply::Array(items)
}

/// C's `(long long)` of a double on x86-64: out of range (and NaN) gives `i64::MIN`.
fn c_cast(n: f64) -> i64 {
    if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&n) {
        i64::MIN
    } else {
        n as i64
    }
}
