//! The libraries Redis loads into its Lua VM, in Rust: `bit` (LuaBitOp), `cjson`,
//! `cmsgpack`, `struct`, and `math.random`/`math.randomseed` on Redis's rand48.
//!
//! In Redis they are C functions, and their errors come from `luaL_error` (which
//! prefixes the calling Lua line, `user_script:1: `) and `luaL_argerror` (which names
//! the function as the calling instruction does: `bad argument #1 to 'decode'`). A
//! Rust callback cannot raise such errors itself (mlua wraps them), and a Lua wrapper
//! would be a frame of its own (in tail position, `return cjson.decode(x)`, the
//! script's line is gone). So each library function is a C closure, [`trampoline`],
//! over its Rust half: the Rust half returns an [`Outcome`] tag and its values, and
//! the trampoline, a C function like Redis's, returns them or raises the error.

pub(crate) mod bit;
pub(crate) mod cjson;
pub(crate) mod cmsgpack;
pub(crate) mod num;
pub(crate) mod structlib;

use mlua::{ffi, Function, IntoLua, Lua, MultiValue, Table, Value};
use std::os::raw::c_int;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

/// What a library function's Rust half returns (see the module doc): an outcome tag
/// (see [`Outcome`]) and its values.
pub(crate) type LibResult = mlua::Result<MultiValue>;

/// `LUAI_MAXCSTACK` of Redis's Lua: `lua_checkstack` fails past this many slots in
/// one C frame (`stack overflow (...)` errors of the libraries).
pub(crate) const MAX_CSTACK: usize = 8000;

/// How the trampoline treats what the Rust half returned; the tag is its first value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// `true, values...`: return the values.
    Return,
    /// `false, msg`: `luaL_error` (the caller's position, then `msg`).
    Error,
    /// `n, msg`: `luaL_argerror(n, msg)`.
    ArgError,
    /// `nil, msg`: raise `msg` as it is (errors the VM raises inside a C function,
    /// such as `table index is nil`, carry no position).
    Raw,
    /// `table, n`: return `table[1..n]` (see [`Results`]).
    Spread,
}

/// `true, v`.
pub(crate) fn ret(lua: &Lua, v: impl IntoLua) -> LibResult {
    Ok(MultiValue::from_iter([
        Value::Boolean(true),
        v.into_lua(lua)?,
    ]))
}

/// Results gathered in a Lua table rather than held in Rust: mlua keeps each Lua
/// string or table a Rust value holds in a slot of its own, and Lua 5.1 has no more
/// than [`MAX_CSTACK`] of them, fewer than the values a library may return.
pub(crate) struct Results {
    t: Table,
    n: i64,
}

impl Results {
    /// An empty list.
    pub(crate) fn new(lua: &Lua) -> mlua::Result<Results> {
        Ok(Results {
            t: lua.create_table()?,
            n: 0,
        })
    }

    /// How many values it holds.
    pub(crate) fn len(&self) -> usize {
        self.n as usize
    }

    /// Appends a value.
    pub(crate) fn push(&mut self, v: Value) -> mlua::Result<()> {
        self.n += 1;
        self.t.raw_set(self.n, v)
    }

    /// Replaces the value at `i` (1-based).
    pub(crate) fn set(&mut self, i: i64, v: Value) -> mlua::Result<()> {
        self.t.raw_set(i, v)
    }

    /// Removes and returns the last value.
    pub(crate) fn pop(&mut self) -> mlua::Result<Value> {
        let v: Value = self.t.raw_get(self.n)?;
        self.t.raw_set(self.n, Value::Nil)?;
        self.n -= 1;
        Ok(v)
    }

    /// The last value (nil when empty).
    pub(crate) fn last(&self) -> mlua::Result<Value> {
        self.t.raw_get(self.n)
    }

    /// The library result returning the values.
    pub(crate) fn ret(self) -> LibResult {
        Ok(MultiValue::from_iter([
            Value::Table(self.t),
            Value::Integer(self.n),
        ]))
    }
}

/// The tables (and keys) a deep walk is inside of: the first [`Stash::NEAR`] held in
/// Rust, deeper ones in a Lua table, so that nesting as deep as Lua's C stack allows
/// does not run out of mlua's reference slots (see [`Results`]).
pub(crate) struct Stash {
    near: Vec<Value>,
    far: Option<Table>,
    len: usize,
}

impl Stash {
    /// Values kept in Rust before the Lua table takes over.
    const NEAR: usize = 2000;

    /// An empty stash.
    pub(crate) fn new() -> Stash {
        Stash {
            near: Vec::new(),
            far: None,
            len: 0,
        }
    }

    /// Appends a value.
    pub(crate) fn push(&mut self, lua: &Lua, v: Value) -> mlua::Result<()> {
        if self.len < Self::NEAR {
            self.near.push(v);
        } else {
            if self.far.is_none() {
                self.far = Some(lua.create_table()?);
            }
            if let Some(t) = &self.far {
                t.raw_set(self.len - Self::NEAR + 1, v)?;
            }
        }
        self.len += 1;
        Ok(())
    }

    /// The value at `i` (0-based).
    pub(crate) fn get(&self, i: usize) -> mlua::Result<Value> {
        if i < Self::NEAR {
            return Ok(self.near.get(i).cloned().unwrap_or(Value::Nil));
        }
        match &self.far {
            Some(t) => t.raw_get(i - Self::NEAR + 1),
            None => Ok(Value::Nil),
        }
    }

    /// Replaces the value at `i` (0-based, below the length).
    pub(crate) fn set(&mut self, i: usize, v: Value) -> mlua::Result<()> {
        if i < Self::NEAR {
            if let Some(slot) = self.near.get_mut(i) {
                *slot = v;
            }
            return Ok(());
        }
        match &self.far {
            Some(t) => t.raw_set(i - Self::NEAR + 1, v),
            None => Ok(()),
        }
    }

    /// Removes the last value.
    pub(crate) fn pop(&mut self) -> mlua::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        self.len -= 1;
        if self.len < Self::NEAR {
            self.near.pop();
        } else if let Some(t) = &self.far {
            t.raw_set(self.len - Self::NEAR + 1, Value::Nil)?;
        }
        Ok(())
    }
}

/// `lua_next`: the pair after `key` (nil: the first) in table `t`, without holding
/// the table's pairs in Rust (see [`Results`]).
pub(crate) fn raw_next(lua: &Lua, t: &Table, key: Value) -> mlua::Result<Option<(Value, Value)>> {
    // SAFETY: the closure runs with the table and the key on the stack; `lua_next`
    // pops the key and pushes the next pair, or nothing at the end (then two nils
    // keep the result's shape). Its "invalid key" error is raised in protected mode.
    let (_, k, v): (Value, Value, Value) = unsafe {
        lua.exec_raw((t.clone(), key), |l| {
            if ffi::lua_next(l, -2) == 0 {
                ffi::lua_pushnil(l);
                ffi::lua_pushnil(l);
            }
        })?
    };
    Ok(if k.is_nil() { None } else { Some((k, v)) })
}

/// `false, msg`: `luaL_error(msg)`.
pub(crate) fn fail(lua: &Lua, msg: impl AsRef<[u8]>) -> LibResult {
    Ok(MultiValue::from_iter([
        Value::Boolean(false),
        Value::String(lua.create_string(msg.as_ref())?),
    ]))
}

/// `luaL_argerror(n, msg)`.
pub(crate) fn arg_error(lua: &Lua, n: usize, msg: impl AsRef<[u8]>) -> LibResult {
    Ok(MultiValue::from_iter([
        Value::Integer(n as i64),
        Value::String(lua.create_string(msg.as_ref())?),
    ]))
}

/// An error the VM itself raises inside a C function (no position).
pub(crate) fn raw_error(lua: &Lua, msg: impl AsRef<[u8]>) -> LibResult {
    Ok(MultiValue::from_iter([
        Value::Nil,
        Value::String(lua.create_string(msg.as_ref())?),
    ]))
}

/// An error of a library's argument checks: the argument and `luaL_argerror`'s text.
#[derive(Debug, Clone)]
pub(crate) enum LibError {
    /// `luaL_error`.
    Error(Vec<u8>),
    /// `luaL_argerror`.
    Arg(usize, Vec<u8>),
    /// Raised by the VM without a position.
    Raw(String),
    /// A failure of the binding itself (propagated as a Rust error).
    Lua(mlua::Error),
}

impl From<mlua::Error> for LibError {
    fn from(e: mlua::Error) -> LibError {
        LibError::Lua(e)
    }
}

impl LibError {
    /// The library result that raises this error.
    pub(crate) fn raise(self, lua: &Lua) -> LibResult {
        match self {
            LibError::Error(m) => fail(lua, m),
            LibError::Arg(n, m) => arg_error(lua, n, m),
            LibError::Raw(m) => raw_error(lua, m),
            LibError::Lua(e) => Err(e),
        }
    }

    /// `luaL_argerror` with a text.
    pub(crate) fn arg(n: usize, m: impl Into<String>) -> LibError {
        LibError::Arg(n, m.into().into_bytes())
    }

    /// `luaL_error` with a text.
    pub(crate) fn msg(m: impl Into<String>) -> LibError {
        LibError::Error(m.into().into_bytes())
    }
}

fn outcome(l: *mut ffi::lua_State) -> Outcome {
    // SAFETY: index 1 exists (the caller checked the stack height).
    unsafe {
        match ffi::lua_type(l, 1) {
            ffi::LUA_TBOOLEAN if ffi::lua_toboolean(l, 1) != 0 => Outcome::Return,
            ffi::LUA_TBOOLEAN => Outcome::Error,
            ffi::LUA_TNUMBER => Outcome::ArgError,
            ffi::LUA_TTABLE => Outcome::Spread,
            _ => Outcome::Raw,
        }
    }
}

/// The C function behind every library function: calls its Rust half (upvalue 1)
/// with its arguments and returns or raises what that returned (see [`Outcome`]).
/// Being a C function, it is the frame `luaL_where(L, 1)` and `luaL_argerror` look
/// from, as Redis's library functions are.
unsafe extern "C-unwind" fn trampoline(l: *mut ffi::lua_State) -> c_int {
    let n = ffi::lua_gettop(l);
    ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
    ffi::lua_insert(l, 1);
    ffi::lua_call(l, n, ffi::LUA_MULTRET);
    let nres = ffi::lua_gettop(l);
    if nres == 0 {
        return 0;
    }
    match outcome(l) {
        Outcome::Return => nres - 1,
        Outcome::Error => {
            ffi::luaL_where(l, 1);
            ffi::lua_pushvalue(l, 2);
            ffi::lua_concat(l, 2);
            ffi::lua_error(l)
        }
        Outcome::ArgError => {
            let narg = ffi::lua_tointeger(l, 1) as c_int;
            ffi::luaL_argerror(l, narg, ffi::lua_tostring(l, 2))
        }
        Outcome::Raw => {
            ffi::lua_pushvalue(l, 2);
            ffi::lua_error(l)
        }
        Outcome::Spread => {
            let k = ffi::lua_tointeger(l, 2) as c_int;
            ffi::lua_settop(l, 1);
            if ffi::lua_checkstack(l, k) == 0 {
                return ffi::luaL_error(l, c"stack overflow (too many results)".as_ptr());
            }
            for i in 1..=k {
                ffi::lua_rawgeti(l, 1, i as ffi::lua_Integer);
            }
            k
        }
    }
}

/// A library function: `f` behind the C trampoline.
pub(crate) fn lib_fn<F>(lua: &Lua, f: F) -> mlua::Result<Function>
where
    F: Fn(&Lua, MultiValue) -> LibResult + mlua::MaybeSend + 'static,
{
    let raw = lua.create_function(f)?;
    // SAFETY: pushes one C closure over the one argument (the Rust function), the
    // only value `exec_raw` then reads back.
    unsafe {
        lua.exec_raw::<Function>(raw, |l| {
            ffi::lua_pushcclosure(l, trampoline, 1);
        })
    }
}

/// rand48's state, as Redis starts it (`redisLrand48` without a seed). It is a C
/// static in Redis: one sequence for the process, which SCRIPT FLUSH does not
/// restart and the EVAL and FUNCTION VMs share.
static RAND: LazyLock<super::lua::Rand> =
    LazyLock::new(|| Arc::new(AtomicU64::new(0x1234_ABCD_330E)));

/// Creates the library tables and Redis's `math.random`/`math.randomseed`.
pub(crate) fn install(lua: &Lua) -> mlua::Result<()> {
    let g = lua.globals();
    // Redis makes these tables read-only; a metatable refuses new keys (assigning
    // an existing key is not caught: Lua 5.1 has no hook for it).
    let protect: Function = lua
        .load(
            r#"
local t = ...
local error = error
setmetatable(t, {
  __newindex = function() error("Attempt to modify a readonly table", 2) end,
  __metatable = false,
})
"#,
        )
        .set_name("=coherent")
        .into_function()?;
    for (name, t) in [
        ("bit", bit::table(lua)?),
        ("cjson", cjson::table(lua)?),
        ("cmsgpack", cmsgpack::table(lua)?),
        ("struct", structlib::table(lua)?),
    ] {
        protect.call::<()>(t.clone())?;
        g.raw_set(name, t)?;
    }
    let state = RAND.clone();
    let math: Table = g.raw_get("math")?;
    let s = state.clone();
    math.raw_set(
        "random",
        lib_fn(lua, move |lua, args: MultiValue| random(lua, &s, args))?,
    )?;
    math.raw_set(
        "randomseed",
        lib_fn(lua, move |lua, args: MultiValue| {
            let seed = match check_integer(&args, 0) {
                Ok(s) => s as i32,
                Err(e) => return e.raise(lua),
            };
            // srand48: the seed in the high 32 bits, 0x330E below.
            state.store(((seed as u32 as u64) << 16) | 0x330E, Ordering::Relaxed);
            Ok(MultiValue::from_iter([Value::Boolean(true)]))
        })?,
    )?;
    Ok(())
}

/// A number argument (strings that look like numbers too, as Lua coerces them).
pub(crate) fn num_arg(args: &MultiValue, i: usize) -> Option<f64> {
    args.get(i).and_then(num::to_number)
}

/// `luaL_typerror`'s text: `number expected, got string`.
pub(crate) fn type_error(expected: &str, got: Option<&Value>) -> String {
    format!("{expected} expected, got {}", type_name(got))
}

/// `luaL_typename`: the type of an argument, `no value` past the last one.
pub(crate) fn type_name(v: Option<&Value>) -> &'static str {
    match v {
        None => "no value",
        Some(Value::LightUserData(_)) => "userdata",
        Some(Value::Integer(_)) => "number",
        Some(v) => v.type_name(),
    }
}

/// `luaL_checknumber`.
pub(crate) fn check_number(args: &MultiValue, i: usize) -> Result<f64, LibError> {
    num_arg(args, i).ok_or_else(|| LibError::arg(i + 1, type_error("number", args.get(i))))
}

/// `luaL_checkinteger` (`lua_Integer`, a `ptrdiff_t`).
pub(crate) fn check_integer(args: &MultiValue, i: usize) -> Result<i64, LibError> {
    check_number(args, i).map(num::to_integer)
}

/// `luaL_optinteger`: `default` when the argument is nil or absent.
pub(crate) fn opt_integer(args: &MultiValue, i: usize, default: i64) -> Result<i64, LibError> {
    match args.get(i) {
        None | Some(Value::Nil) => Ok(default),
        Some(_) => check_integer(args, i),
    }
}

/// `luaL_checklstring`: a string, or a number as Lua prints it.
pub(crate) fn check_bytes(args: &MultiValue, i: usize) -> Result<Vec<u8>, LibError> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(Value::Integer(n)) => Ok(num::to_string(*n as f64).into_bytes()),
        Some(Value::Number(n)) => Ok(num::to_string(*n).into_bytes()),
        other => Err(LibError::arg(i + 1, type_error("string", other))),
    }
}

fn random(lua: &Lua, state: &super::lua::Rand, args: MultiValue) -> LibResult {
    const MAX: i64 = i32::MAX as i64;
    let r = (super::lua::lrand48(state) % MAX) as f64 / MAX as f64;
    match args.len() {
        0 => ret(lua, r),
        1 => {
            let u = match check_integer(&args, 0) {
                Ok(u) => u as i32 as i64,
                Err(e) => return e.raise(lua),
            };
            if u < 1 {
                return arg_error(lua, 1, "interval is empty");
            }
            ret(lua, (r * u as f64).floor() + 1.0)
        }
        2 => {
            let l = match check_integer(&args, 0) {
                Ok(l) => l as i32 as i64,
                Err(e) => return e.raise(lua),
            };
            let u = match check_integer(&args, 1) {
                Ok(u) => u as i32 as i64,
                Err(e) => return e.raise(lua),
            };
            if l > u {
                return arg_error(lua, 2, "interval is empty");
            }
            ret(lua, (r * (u - l + 1) as f64).floor() + l as f64)
        }
        _ => fail(lua, "wrong number of arguments"),
    }
}
