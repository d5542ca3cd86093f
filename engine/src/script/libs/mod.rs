//! The libraries Redis loads into its Lua VM, in Rust: `bit` (LuaBitOp), `cjson`,
//! `cmsgpack`, `struct`, and `math.random`/`math.randomseed` on Redis's rand48.
//!
//! Each function returns `true, results...` or `false, message`; [`wrap`] puts the
//! Lua wrapper around it that raises the message at the caller's position, as
//! `luaL_error` does in the C libraries.

pub(crate) mod bit;
pub(crate) mod cjson;
pub(crate) mod cmsgpack;
pub(crate) mod structlib;

use mlua::{Function, IntoLua, Lua, MultiValue, Table, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a library function returns (see the module doc).
pub(crate) type LibResult = mlua::Result<MultiValue>;

/// `true, v`.
pub(crate) fn ret(lua: &Lua, v: impl IntoLua) -> LibResult {
    Ok(MultiValue::from_iter([
        Value::Boolean(true),
        v.into_lua(lua)?,
    ]))
}

/// `false, msg`.
pub(crate) fn fail(lua: &Lua, msg: impl AsRef<str>) -> LibResult {
    Ok(MultiValue::from_iter([
        Value::Boolean(false),
        Value::String(lua.create_string(msg.as_ref())?),
    ]))
}

/// Library tables under construction: functions to wrap.
const LIBS: &[&str] = &["bit", "cjson", "cmsgpack", "struct"];

/// Creates the library tables (raw functions) and Redis's `math.random`.
pub(crate) fn install(lua: &Lua) -> mlua::Result<()> {
    let g = lua.globals();
    g.raw_set("bit", bit::table(lua)?)?;
    g.raw_set("cjson", cjson::table(lua)?)?;
    g.raw_set("cmsgpack", cmsgpack::table(lua)?)?;
    g.raw_set("struct", structlib::table(lua)?)?;
    // rand48's state as Redis starts it (`redisLrand48` without a seed).
    let state: super::lua::Rand = Arc::new(AtomicU64::new(0x1234_ABCD_330E));
    let math: Table = g.raw_get("math")?;
    let s = state.clone();
    math.raw_set(
        "random",
        lua.create_function(move |lua, args: MultiValue| random(lua, &s, args))?,
    )?;
    math.raw_set(
        "randomseed",
        lua.create_function(move |lua, args: MultiValue| {
            let seed = int_arg(&args, 0).unwrap_or(0) as i32;
            // srand48: the seed in the high 32 bits, 0x330E below.
            state.store(((seed as u32 as u64) << 16) | 0x330E, Ordering::Relaxed);
            let _ = lua;
            Ok(MultiValue::from_iter([Value::Boolean(true)]))
        })?,
    )?;
    // math.random/randomseed go through the same wrapper as the libraries.
    Ok(())
}

/// Replaces every raw library function with its raising wrapper (`lib` from the
/// VM's boot chunk).
pub(crate) fn wrap(lua: &Lua, lib: &Function) -> mlua::Result<()> {
    let g = lua.globals();
    let math: Table = g.raw_get("math")?;
    for name in ["random", "randomseed"] {
        let f: Function = math.raw_get(name)?;
        math.raw_set(name, lib.call::<Function>(f)?)?;
    }
    for name in LIBS {
        let t: Table = g.raw_get(*name)?;
        let mut fns = Vec::new();
        for pair in t.pairs::<Value, Value>() {
            let (k, v) = pair?;
            if let Value::Function(f) = v {
                fns.push((k, f));
            }
        }
        for (k, f) in fns {
            t.raw_set(k, lib.call::<Function>(f)?)?;
        }
    }
    Ok(())
}

/// `luaL_checkint`-ish: a number argument as an integer (truncated).
pub(crate) fn int_arg(args: &MultiValue, i: usize) -> Option<i64> {
    num_arg(args, i).map(|n| n as i64)
}

/// A number argument (strings that look like numbers too, as Lua coerces them).
pub(crate) fn num_arg(args: &MultiValue, i: usize) -> Option<f64> {
    match args.get(i)? {
        Value::Integer(n) => Some(*n as f64),
        Value::Number(n) => Some(*n),
        Value::String(s) => std::str::from_utf8(&s.as_bytes())
            .ok()
            .and_then(|t| t.trim().parse::<f64>().ok()),
        _ => None,
    }
}

/// `bad argument #n to 'f' (number expected, got x)`.
pub(crate) fn bad_arg(n: usize, f: &str, expected: &str, got: Option<&Value>) -> String {
    let got = match got {
        None => "no value",
        Some(v) => v.type_name(),
    };
    format!("bad argument #{n} to '{f}' ({expected} expected, got {got})")
}

fn random(lua: &Lua, state: &super::lua::Rand, args: MultiValue) -> LibResult {
    const MAX: i64 = i32::MAX as i64;
    let r = (super::lua::lrand48(state) % MAX) as f64 / MAX as f64;
    match args.len() {
        0 => ret(lua, r),
        1 => {
            let Some(u) = int_arg(&args, 0) else {
                return fail(lua, bad_arg(1, "random", "number", args.front()));
            };
            if u < 1 {
                return fail(lua, "bad argument #1 to 'random' (interval is empty)");
            }
            ret(lua, (r * u as f64).floor() + 1.0)
        }
        2 => {
            let (Some(l), Some(u)) = (int_arg(&args, 0), int_arg(&args, 1)) else {
                return fail(lua, bad_arg(1, "random", "number", args.front()));
            };
            if l > u {
                return fail(lua, "bad argument #2 to 'random' (interval is empty)");
            }
            ret(lua, (r * (u - l + 1) as f64).floor() + l as f64)
        }
        _ => fail(lua, "wrong number of arguments"),
    }
}
