//! LuaBitOp's `bit` library: 32-bit operations on Lua numbers.

use super::{lib_fn, num_arg, ret, type_error, LibError, LibResult};
use mlua::{Lua, MultiValue, Table};

/// LuaBitOp's argument conversion: the number rounded to an integer, its low 32 bits.
fn barg(args: &MultiValue, i: usize, _f: &str) -> Result<u32, LibError> {
    match num_arg(args, i) {
        Some(n) => {
            let b = n + 6_755_399_441_055_744.0; // 2^52 + 2^51: rounds to nearest
            Ok(b.to_bits() as u32)
        }
        None => Err(LibError::arg(i + 1, type_error("number", args.get(i)))),
    }
}

fn out(lua: &Lua, v: u32) -> LibResult {
    ret(lua, v as i32 as f64)
}

macro_rules! unary {
    ($name:literal, $body:expr) => {
        |lua: &Lua, args: MultiValue| -> LibResult {
            match barg(&args, 0, $name) {
                Ok(x) => {
                    let f: fn(u32) -> u32 = $body;
                    out(lua, f(x))
                }
                Err(e) => e.raise(lua),
            }
        }
    };
}

macro_rules! fold {
    ($name:literal, $op:expr) => {
        |lua: &Lua, args: MultiValue| -> LibResult {
            let op: fn(u32, u32) -> u32 = $op;
            let mut acc = match barg(&args, 0, $name) {
                Ok(x) => x,
                Err(e) => return e.raise(lua),
            };
            // LuaBitOp reads the others from the last one down.
            for i in (1..args.len()).rev() {
                match barg(&args, i, $name) {
                    Ok(x) => acc = op(acc, x),
                    Err(e) => return e.raise(lua),
                }
            }
            out(lua, acc)
        }
    };
}

macro_rules! shift {
    ($name:literal, $op:expr) => {
        |lua: &Lua, args: MultiValue| -> LibResult {
            let op: fn(u32, u32) -> u32 = $op;
            match (barg(&args, 0, $name), barg(&args, 1, $name)) {
                (Ok(x), Ok(n)) => out(lua, op(x, n & 31)),
                (Err(e), _) | (_, Err(e)) => e.raise(lua),
            }
        }
    };
}

/// The `bit` table.
pub(crate) fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("tobit", lib_fn(lua, unary!("tobit", |x| x))?)?;
    t.raw_set("bnot", lib_fn(lua, unary!("bnot", |x| !x))?)?;
    t.raw_set("bswap", lib_fn(lua, unary!("bswap", |x| x.swap_bytes()))?)?;
    t.raw_set("band", lib_fn(lua, fold!("band", |a, b| a & b))?)?;
    t.raw_set("bor", lib_fn(lua, fold!("bor", |a, b| a | b))?)?;
    t.raw_set("bxor", lib_fn(lua, fold!("bxor", |a, b| a ^ b))?)?;
    t.raw_set("lshift", lib_fn(lua, shift!("lshift", |x, n| x << n))?)?;
    t.raw_set("rshift", lib_fn(lua, shift!("rshift", |x, n| x >> n))?)?;
    t.raw_set(
        "arshift",
        lib_fn(lua, shift!("arshift", |x, n| ((x as i32) >> n) as u32))?,
    )?;
    t.raw_set("rol", lib_fn(lua, shift!("rol", |x, n| x.rotate_left(n)))?)?;
    t.raw_set("ror", lib_fn(lua, shift!("ror", |x, n| x.rotate_right(n)))?)?;
    t.raw_set(
        "tohex",
        lib_fn(lua, |lua, args: MultiValue| {
            let x = match barg(&args, 0, "tohex") {
                Ok(x) => x,
                Err(e) => return e.raise(lua),
            };
            let n = if args.len() > 1 {
                match barg(&args, 1, "tohex") {
                    Ok(n) => n as i32,
                    Err(e) => return e.raise(lua),
                }
            } else {
                8
            };
            let upper = n < 0;
            let n = n.unsigned_abs().min(8) as usize;
            let s = if upper {
                format!("{x:08X}")
            } else {
                format!("{x:08x}")
            };
            ret(lua, s[8 - n..].to_string())
        })?,
    )?;
    Ok(t)
}
