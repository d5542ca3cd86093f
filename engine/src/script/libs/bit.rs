//! LuaBitOp's `bit` library: 32-bit operations on Lua numbers.

use super::{bad_arg, fail, num_arg, ret, LibResult};
use mlua::{Lua, MultiValue, Table};

/// LuaBitOp's argument conversion: the number rounded to an integer, its low 32 bits.
fn barg(args: &MultiValue, i: usize, f: &str) -> Result<u32, String> {
    match num_arg(args, i) {
        Some(n) => {
            let b = n + 6_755_399_441_055_744.0; // 2^52 + 2^51: rounds to nearest
            Ok(b.to_bits() as u32)
        }
        None => Err(bad_arg(i + 1, f, "number", args.get(i))),
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
                Err(e) => fail(lua, e),
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
                Err(e) => return fail(lua, e),
            };
            for i in 1..args.len() {
                match barg(&args, i, $name) {
                    Ok(x) => acc = op(acc, x),
                    Err(e) => return fail(lua, e),
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
                (Err(e), _) | (_, Err(e)) => fail(lua, e),
            }
        }
    };
}

/// The `bit` table.
pub(crate) fn table(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("tobit", lua.create_function(unary!("tobit", |x| x))?)?;
    t.raw_set("bnot", lua.create_function(unary!("bnot", |x| !x))?)?;
    t.raw_set(
        "bswap",
        lua.create_function(unary!("bswap", |x| x.swap_bytes()))?,
    )?;
    t.raw_set("band", lua.create_function(fold!("band", |a, b| a & b))?)?;
    t.raw_set("bor", lua.create_function(fold!("bor", |a, b| a | b))?)?;
    t.raw_set("bxor", lua.create_function(fold!("bxor", |a, b| a ^ b))?)?;
    t.raw_set(
        "lshift",
        lua.create_function(shift!("lshift", |x, n| x << n))?,
    )?;
    t.raw_set(
        "rshift",
        lua.create_function(shift!("rshift", |x, n| x >> n))?,
    )?;
    t.raw_set(
        "arshift",
        lua.create_function(shift!("arshift", |x, n| ((x as i32) >> n) as u32))?,
    )?;
    t.raw_set(
        "rol",
        lua.create_function(shift!("rol", |x, n| x.rotate_left(n)))?,
    )?;
    t.raw_set(
        "ror",
        lua.create_function(shift!("ror", |x, n| x.rotate_right(n)))?,
    )?;
    t.raw_set(
        "tohex",
        lua.create_function(|lua, args: MultiValue| {
            let x = match barg(&args, 0, "tohex") {
                Ok(x) => x,
                Err(e) => return fail(lua, e),
            };
            let n = if args.len() > 1 {
                match barg(&args, 1, "tohex") {
                    Ok(n) => n as i32,
                    Err(e) => return fail(lua, e),
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
