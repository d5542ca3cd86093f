//! `cmsgpack` as Redis bundles it (lua-cmsgpack 0.4.0, `deps/lua/src/lua_cmsgpack.c`):
//! `pack(...)`, `unpack(s)`, `unpack_one(s [, offset])`, `unpack_limit(s, limit [,
//! offset])`, byte for byte.
//!
//! Its choices, kept here: a Lua number that is an exact 64-bit integer is packed as
//! the smallest integer type, any other as a float32 when that is exact, else a
//! float64; a table whose keys are exactly 1..n is an array (an empty one too), any
//! other a map in `next` order; tables nested 16 deep pack as nil; strings use fixstr,
//! str8, str16 or str32; functions and other values pack as nil. Unpacking makes
//! every integer a Lua number (a uint64 past 2^63 wraps negative, as the C cast
//! does), and raises on truncated input, on the types it does not know (bin, ext),
//! and past Lua's C stack limit.

use super::{
    arg_error, check_bytes, check_integer, fail, lib_fn, num, opt_integer, ret, LibError,
    LibResult, Results, MAX_CSTACK,
};
use mlua::{Lua, MultiValue, Table, Value};

/// `LUACMSGPACK_MAX_NESTING`: a table this deep is packed as nil.
const MAX_NESTING: usize = 16;

/// The `cmsgpack` table.
pub(crate) fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("pack", lib_fn(lua, pack)?)?;
    t.raw_set(
        "unpack",
        lib_fn(lua, |lua, args| unpack_full(lua, &args, 0, 0))?,
    )?;
    t.raw_set(
        "unpack_one",
        lib_fn(lua, |lua, args: MultiValue| {
            let offset = match opt_integer(&args, 1, 0) {
                Ok(o) => o,
                Err(e) => return e.raise(lua),
            };
            unpack_full(lua, &first(args), 1, offset)
        })?,
    )?;
    t.raw_set(
        "unpack_limit",
        lib_fn(lua, |lua, args: MultiValue| {
            let limit = match check_integer(&args, 1) {
                Ok(l) => l,
                Err(e) => return e.raise(lua),
            };
            let offset = match opt_integer(&args, 2, 0) {
                Ok(o) => o,
                Err(e) => return e.raise(lua),
            };
            unpack_full(lua, &first(args), limit, offset)
        })?,
    )?;
    t.raw_set("_NAME", "cmsgpack")?;
    t.raw_set("_VERSION", "lua-cmsgpack 0.4.0")?;
    t.raw_set("_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo")?;
    t.raw_set("_DESCRIPTION", "MessagePack C implementation for Lua")?;
    Ok(t)
}

/// The arguments cut to the first (`lua_pop(L, lua_gettop(L)-1)`).
fn first(args: MultiValue) -> MultiValue {
    MultiValue::from_iter(args.into_iter().take(1))
}

fn pack(lua: &Lua, args: MultiValue) -> LibResult {
    if args.is_empty() {
        return arg_error(lua, 0, "MessagePack pack needs input.");
    }
    let mut out = Vec::new();
    for v in args.iter() {
        encode(v, 0, &mut out).map_err(mlua::Error::external)?;
    }
    ret(lua, lua.create_string(&out)?)
}

fn encode(v: &Value, level: usize, out: &mut Vec<u8>) -> Result<(), mlua::Error> {
    match v {
        Value::String(s) => bytes(&s.as_bytes(), out),
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(i) => number(*i as f64, out),
        Value::Number(n) => number(*n, out),
        Value::Table(t) if level < MAX_NESTING => {
            // The pairs are walked as the C code does, never all held at once (see
            // `Results`): once to classify, once to count, once to write.
            if is_array(t)? {
                let len = t.raw_len();
                header(len as u64, 0x90, 0xdc, 0xdd, out);
                for j in 1..=len {
                    let item: Value = t.raw_get(j)?;
                    encode(&item, level + 1, out)?;
                }
            } else {
                let mut n: u64 = 0;
                for pair in t.pairs::<Value, Value>() {
                    pair?;
                    n += 1;
                }
                header(n, 0x80, 0xde, 0xdf, out);
                for pair in t.pairs::<Value, Value>() {
                    let (k, v) = pair?;
                    encode(&k, level + 1, out)?;
                    encode(&v, level + 1, out)?;
                }
            }
        }
        _ => out.push(0xc0),
    }
    Ok(())
}

/// `table_is_an_array`: every key a number that is a positive C `int`, and as many
/// keys as the largest.
fn is_array(t: &Table) -> mlua::Result<bool> {
    let mut max: i32 = 0;
    let mut count: i32 = 0;
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair?;
        let n = match k {
            Value::Integer(i) => i as f64,
            Value::Number(n) => n,
            _ => return Ok(false),
        };
        if n <= 0.0 || n.is_infinite() || num::to_int(n) as f64 != n {
            return Ok(false);
        }
        max = max.max(n as i32);
        count += 1;
    }
    Ok(max == count)
}

/// An array or map header: fix form (`fix | n`) up to 15, then 16 and 32 bits.
fn header(n: u64, fix: u8, b16: u8, b32: u8, out: &mut Vec<u8>) {
    if n <= 15 {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(b16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(b32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn bytes(s: &[u8], out: &mut Vec<u8>) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

/// `mp_encode_lua_number`: an integer when the C cast to int64 gives it back.
fn number(n: f64, out: &mut Vec<u8>) {
    let i = num::to_integer(n);
    if !n.is_infinite() && i as f64 == n {
        int(i, out);
        return;
    }
    let f = n as f32;
    if f as f64 == n {
        out.push(0xca);
        out.extend_from_slice(&f.to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn int(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        if n <= 127 {
            out.push(n as u8);
        } else if n <= 0xff {
            out.extend_from_slice(&[0xcc, n as u8]);
        } else if n <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// `mp_unpack_full`: up to `limit` values from `offset`; with a limit or an offset,
/// the offset to continue from (-1 at the end) comes first.
fn unpack_full(lua: &Lua, args: &MultiValue, limit: i64, offset: i64) -> LibResult {
    let s = match check_bytes(args, 0) {
        Ok(s) => s,
        Err(e) => return e.raise(lua),
    };
    let len = s.len();
    if offset < 0 || limit < 0 {
        // Redis prints the input's length where the limit belongs.
        return fail(
            lua,
            format!(
                "Invalid request to unpack with offset of {} and limit of {}.",
                offset as i32, len as i32
            ),
        );
    }
    if offset as u64 > len as u64 {
        return fail(
            lua,
            format!(
                "Start offset {} greater than input length {}.",
                offset as i32, len as i32
            ),
        );
    }
    let decode_all = limit == 0 && offset == 0;
    let limit = if decode_all { i32::MAX as i64 } else { limit };
    let mut d = Decoder {
        lua,
        s: &s,
        pos: offset as usize,
    };
    let mut values = Results::new(lua)?;
    if !decode_all {
        // The offset to continue from comes first; set once known.
        values.push(Value::Nil)?;
    }
    let mut count: usize = 0;
    while d.pos < len && (count as i64) < limit {
        match d.value(1 + count) {
            Ok(v) => values.push(v)?,
            Err(e) => return e.raise(lua),
        }
        count += 1;
    }
    if !decode_all {
        if 1 + count + 1 > MAX_CSTACK {
            return fail(lua, "stack overflow (in function mp_unpack_full)");
        }
        let next = if d.pos == len { -1 } else { d.pos as i64 };
        values.set(1, Value::Integer(next))?;
    }
    values.ret()
}

/// A container being filled: the items left, and the Lua stack height with its
/// table pushed (the C decoder recurses on Lua's stack); a map also whether its key
/// is read. Its table and key are in the walk's stash.
enum Frame {
    Array {
        left: usize,
        index: i64,
        top: usize,
    },
    Map {
        left: usize,
        has_key: bool,
        top: usize,
    },
}

struct Decoder<'a> {
    lua: &'a Lua,
    s: &'a [u8],
    pos: usize,
}

const EOF: &str = "Missing bytes in input.";

impl Decoder<'_> {
    fn need(&self, n: usize) -> Result<(), LibError> {
        if self.s.len() - self.pos < n {
            return Err(LibError::msg(EOF));
        }
        Ok(())
    }

    fn be(&self, from: usize, n: usize) -> u64 {
        self.s[self.pos + from..self.pos + from + n]
            .iter()
            .fold(0u64, |a, &b| (a << 8) | b as u64)
    }

    /// One whole value; `height` is the Lua stack height before it is pushed.
    fn value(&mut self, height: usize) -> Result<Value, LibError> {
        let lua = self.lua;
        let mut stack: Vec<Frame> = Vec::new();
        // Frame k's table at 2k, a map's read key at 2k+1.
        let mut held = super::Stash::new();
        let mut height = height;
        loop {
            // One item: a scalar, or a container opened (then `continue`).
            let item = match self.item(height)? {
                Item::Value(v) => v,
                Item::Array(n) => {
                    let t = lua.create_table()?;
                    if height + 2 > MAX_CSTACK {
                        return Err(LibError::msg(
                            "stack overflow (in function mp_decode_to_lua_array)",
                        ));
                    }
                    if n == 0 {
                        Value::Table(t)
                    } else {
                        stack.push(Frame::Array {
                            left: n,
                            index: 1,
                            top: height + 1,
                        });
                        held.push(lua, Value::Table(t))?;
                        held.push(lua, Value::Nil)?;
                        height += 2;
                        continue;
                    }
                }
                Item::Map(n) => {
                    let t = lua.create_table()?;
                    if n == 0 {
                        Value::Table(t)
                    } else {
                        stack.push(Frame::Map {
                            left: n,
                            has_key: false,
                            top: height + 1,
                        });
                        held.push(lua, Value::Table(t))?;
                        held.push(lua, Value::Nil)?;
                        height += 1;
                        continue;
                    }
                }
            };
            // Store it in its container; a full container is itself an item.
            let mut done = item;
            loop {
                let depth = stack.len();
                let Some(frame) = stack.last_mut() else {
                    return Ok(done);
                };
                let Value::Table(t) = held.get(2 * depth - 2)? else {
                    return Ok(done);
                };
                match frame {
                    Frame::Array { left, index, top } => {
                        t.raw_set(*index, done)?;
                        *index += 1;
                        *left -= 1;
                        if *left > 0 {
                            height = *top + 1;
                            break;
                        }
                    }
                    Frame::Map { left, has_key, top } => {
                        if !*has_key {
                            *has_key = true;
                            held.set(2 * depth - 1, done)?;
                            height = *top + 1;
                            break;
                        }
                        *has_key = false;
                        let k = held.get(2 * depth - 1)?;
                        match &k {
                            Value::Nil => return Err(LibError::Raw("table index is nil".into())),
                            Value::Number(n) if n.is_nan() => {
                                return Err(LibError::Raw("table index is NaN".into()))
                            }
                            _ => {}
                        }
                        t.raw_set(k, done)?;
                        held.set(2 * depth - 1, Value::Nil)?;
                        *left -= 1;
                        if *left > 0 {
                            height = *top;
                            break;
                        }
                    }
                }
                stack.pop();
                held.pop()?;
                held.pop()?;
                done = Value::Table(t);
            }
        }
    }

    /// `mp_decode_to_lua_type` up to the point where it recurses.
    fn item(&mut self, height: usize) -> Result<Item, LibError> {
        self.need(1)?;
        if height + 1 > MAX_CSTACK {
            return Err(LibError::msg(
                "stack overflow (too many return values at once; \
                 use unpack_one or unpack_limit instead.)",
            ));
        }
        let b = self.s[self.pos];
        let num = |v: f64| Item::Value(Value::Number(v));
        let (item, used) = match b {
            0xcc => {
                self.need(2)?;
                (num(self.be(1, 1) as f64), 2)
            }
            0xd0 => {
                self.need(2)?;
                (num(self.be(1, 1) as u8 as i8 as f64), 2)
            }
            0xcd => {
                self.need(3)?;
                (num(self.be(1, 2) as f64), 3)
            }
            0xd1 => {
                self.need(3)?;
                (num(self.be(1, 2) as u16 as i16 as f64), 3)
            }
            0xce => {
                self.need(5)?;
                (num(self.be(1, 4) as f64), 5)
            }
            0xd2 => {
                self.need(5)?;
                (num(self.be(1, 4) as u32 as i32 as f64), 5)
            }
            // `lua_pushinteger` of the uint64 cast to `ptrdiff_t`: past 2^63 it wraps.
            0xcf | 0xd3 => {
                self.need(9)?;
                (num(self.be(1, 8) as i64 as f64), 9)
            }
            0xc0 => (Item::Value(Value::Nil), 1),
            0xc3 => (Item::Value(Value::Boolean(true)), 1),
            0xc2 => (Item::Value(Value::Boolean(false)), 1),
            0xca => {
                self.need(5)?;
                (num(f32::from_bits(self.be(1, 4) as u32) as f64), 5)
            }
            0xcb => {
                self.need(9)?;
                (num(f64::from_bits(self.be(1, 8))), 9)
            }
            0xd9..=0xdb => {
                let h = match b {
                    0xd9 => 2,
                    0xda => 3,
                    _ => 5,
                };
                self.need(h)?;
                let l = self.be(1, h - 1) as usize;
                self.need(h + l)?;
                let s = &self.s[self.pos + h..self.pos + h + l];
                let v = self
                    .lua
                    .create_string(s)
                    .map_err(|e| LibError::msg(e.to_string()))?;
                (Item::Value(Value::String(v)), h + l)
            }
            0xdc | 0xde => {
                self.need(3)?;
                let l = self.be(1, 2) as usize;
                (
                    if b == 0xdc {
                        Item::Array(l)
                    } else {
                        Item::Map(l)
                    },
                    3,
                )
            }
            0xdd | 0xdf => {
                self.need(5)?;
                let l = self.be(1, 4) as usize;
                (
                    if b == 0xdd {
                        Item::Array(l)
                    } else {
                        Item::Map(l)
                    },
                    5,
                )
            }
            _ if b & 0x80 == 0 => (num(b as f64), 1),
            _ if b & 0xe0 == 0xe0 => (num(b as i8 as f64), 1),
            _ if b & 0xe0 == 0xa0 => {
                let l = (b & 0x1f) as usize;
                self.need(1 + l)?;
                let s = &self.s[self.pos + 1..self.pos + 1 + l];
                let v = self
                    .lua
                    .create_string(s)
                    .map_err(|e| LibError::msg(e.to_string()))?;
                (Item::Value(Value::String(v)), 1 + l)
            }
            _ if b & 0xf0 == 0x90 => (Item::Array((b & 0xf) as usize), 1),
            _ if b & 0xf0 == 0x80 => (Item::Map((b & 0xf) as usize), 1),
            _ => return Err(LibError::msg("Bad data format in input.")),
        };
        self.pos += used;
        Ok(item)
    }
}

enum Item {
    Value(Value),
    Array(usize),
    Map(usize),
}
