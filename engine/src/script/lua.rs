//! The Lua 5.1 VM as Redis 7.0 sets it up: the libraries it loads, the sandbox
//! (reading a missing global or writing one is an error, no `os`/`io`/`loadfile`/
//! `dofile`/`print`), the `redis` API, the error handler that gives errors their
//! `script: <name>, on @user_script:<line>.` suffix, and one run of a script.
//!
//! The API functions are Rust closures behind small Lua wrappers (chunk `=coherent`):
//! a Rust callback cannot raise an arbitrary Lua value, while Redis raises error
//! *tables* from `redis.call`; the wrappers raise what the Rust side returns as an
//! error, and the error handler skips their frames when it names the script's line.

use super::convert;
use super::RunState;
use crate::client::Client;
use crate::command::{self, DENYOOM, WRITE};
use crate::net::reply::Reply;
use crate::store::Store;
use bytes::Bytes;
use mlua::{
    ffi, Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::os::raw::{c_char, c_int};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;

/// Which VM: EVAL's, or FUNCTION's (whose globals switch between the library-loading
/// API and the run-time API, as `function_lua.c` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Eval,
    Function,
}

/// `redis.set_repl` flags.
pub(crate) const REPL_NONE: i64 = 0;
const REPL_AOF: i64 = 1;
const REPL_REPLICA: i64 = 2;
const REPL_ALL: i64 = 3;

/// Globals Redis 7.0 leaves to scripts (everything else the libraries define is removed).
const GLOBALS: &[&str] = &[
    "_G",
    "_VERSION",
    "assert",
    "bit",
    "cjson",
    "cmsgpack",
    "collectgarbage",
    "coroutine",
    "error",
    "gcinfo",
    "getmetatable",
    "ipairs",
    "load",
    "loadstring",
    "math",
    "next",
    "pairs",
    "pcall",
    "rawequal",
    "rawget",
    "rawset",
    "redis",
    "select",
    "setmetatable",
    "string",
    "struct",
    "table",
    "tonumber",
    "tostring",
    "type",
    "unpack",
    "xpcall",
    "__redis__err__handler",
];

/// The Lua half of the API (see the module doc).
const BOOT: &str = r#"
local raw, imp = ...
local error, type, tostring, dbg, xpcall = error, type, tostring, debug, xpcall
local select, unpack = select, unpack

local function handler(err)
  local l = 2
  local i = dbg.getinfo(l, 'nSl')
  while i and (i.what == 'C' or i.what == 'tail' or i.source == '=coherent') do
    l = l + 1
    i = dbg.getinfo(l, 'nSl')
  end
  if type(err) ~= 'table' then
    err = {err = 'ERR ' .. tostring(err)}
  end
  if i then
    err['source'] = i.source
    err['line'] = i.currentline
  end
  return err
end

local function pack(...) return {n = select('#', ...), ...} end

local redis = {}
redis.call = raw.call
redis.pcall = function(...)
  local v = imp.call(...)
  return v
end
redis.setresp = raw.setresp
redis.set_repl = raw.set_repl
redis.acl_check_cmd = raw.acl_check_cmd
redis.sha1hex = raw.sha1hex
redis.log = raw.log
redis.error_reply = function(...) return (raw.error_reply(...)) end
redis.status_reply = function(...) return (raw.status_reply(...)) end
redis.breakpoint = function() return false end
redis.debug = function() return nil end
redis.replicate_commands = function() return true end

-- Redis's pcall: an error table with an `err` field is caught as that string.
local rawpcall = pcall
pcall = function(...)
  local r = pack(rawpcall(...))
  if not r[1] and type(r[2]) == 'table' then
    local e = r[2].err
    if type(e) == 'string' or type(e) == 'number' then
      return false, e
    end
  end
  return unpack(r, 1, r.n)
end

local function run(f) return xpcall(f, handler) end
local function run_fn(f, keys, args)
  return xpcall(function() return f(keys, args) end, handler)
end
return redis, handler, run, run_fn
"#;

/// One Lua VM and the functions compiled in it.
pub(crate) struct Vm {
    pub(crate) lua: Lua,
    kind: Kind,
    /// `function(f)` running `f` under the error handler.
    run: Function,
    /// `function(f, keys, args)` for functions.
    run_fn: Function,
    /// The current run's [`Exec`], which the API functions (made once, in [`Vm::new`])
    /// reach; null outside [`Vm::run`].
    slot: ExecSlot,
    /// Compiled scripts by SHA-1 (EVAL).
    pub(crate) compiled: HashMap<String, Function>,
    /// FUNCTION's globals (`None` for EVAL's VM).
    fenv: Option<FunctionEnv>,
    /// Set while a library loads: the instant (µs) past which the load is stopped.
    load_deadline: Arc<AtomicU64>,
}

/// The globals of FUNCTION's VM, as `function_lua.c` switches them.
struct FunctionEnv {
    /// The table library code and functions see as their globals.
    env: Table,
    /// Its metatable, whose `__index` is switched.
    meta: Table,
    /// The run-time API (Redis's `GLOBALS_API_NAME`).
    run_api: Table,
    /// The load-time API (Redis's `LIBRARY_API_NAME`).
    load_api: Table,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("kind", &self.kind)
            .field("compiled", &self.compiled.len())
            .finish()
    }
}

/// A Redis-style error table `{err = "CODE msg"}` for a message of the scripting
/// layer (`luaPushError`: a message without a code gets `ERR`).
pub(crate) fn error_table(lua: &Lua, msg: &str) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("err", error_text(msg))?;
    Ok(t)
}

/// The error table of a command's error reply (`-CODE msg` as `luaPushErrorBuff`
/// splits it: the code is the first word).
pub(crate) fn reply_error_table(lua: &Lua, reply: &str) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("err", error_text(&format!("-{reply}")))?;
    Ok(t)
}

/// `luaPushErrorBuff`'s normalisation of an error text.
pub(crate) fn error_text(s: &str) -> String {
    let (code, msg) = match s.strip_prefix('-') {
        Some(body) => match body.split_once(' ') {
            Some((c, m)) => (c, m),
            None => ("ERR", body),
        },
        None => ("ERR", s),
    };
    format!("{code} {}", msg.trim_matches(|c| c == '\r' || c == '\n'))
}

/// What an API function returns to its trampoline: a value, and whether to raise it.
pub(crate) type Ret = mlua::Result<(Value, bool)>;

/// Raises a Redis error table for `line`.
pub(crate) fn raise(lua: &Lua, line: &str) -> Ret {
    Ok((Value::Table(error_table(lua, line)?), true))
}

fn ok(v: Value) -> Ret {
    Ok((v, false))
}

impl Vm {
    /// A fresh VM of `kind`, sandboxed, with the `redis` API and the libraries.
    pub(crate) fn new(kind: Kind, run: Arc<RunState>) -> mlua::Result<Vm> {
        // SAFETY: `debug` is loaded only to build the error handler, which keeps a
        // private reference; scripts cannot reach it (it is removed from the globals).
        let lua = unsafe {
            Lua::unsafe_new_with(
                StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::DEBUG,
                LuaOptions::new(),
            )
        };
        let g = lua.globals();
        super::libs::install(&lua)?;
        let raw = lua.create_table()?;
        raw.raw_set("error_reply", lua.create_function(error_reply)?)?;
        raw.raw_set("status_reply", lua.create_function(status_reply)?)?;
        lua.set_named_registry_value("coherent.sha1hex", lua.create_function(sha1hex)?)?;
        lua.set_named_registry_value("coherent.log", lua.create_function(log)?)?;
        lua.set_named_registry_value(
            "coherent.acl_check_cmd",
            lua.create_function(acl_check_cmd)?,
        )?;
        // SAFETY: the trampolines only call the registry function named after them
        // and raise its result (see `trampoline!`).
        unsafe {
            raw.raw_set("call", lua.create_c_function(t_call)?)?;
            raw.raw_set("setresp", lua.create_c_function(t_setresp)?)?;
            raw.raw_set("set_repl", lua.create_c_function(t_set_repl)?)?;
            raw.raw_set("acl_check_cmd", lua.create_c_function(t_acl)?)?;
            raw.raw_set("sha1hex", lua.create_c_function(t_sha1hex)?)?;
            raw.raw_set("log", lua.create_c_function(t_log)?)?;
            raw.raw_set("register_function", lua.create_c_function(t_register)?)?;
        }
        // The run-time API, made once: the functions reach the running script's `Exec`
        // through `slot` (a scope per run would make, register and free three closures
        // on every call).
        let slot = ExecSlot::default();
        let call = api_function(&lua, &slot, |e, l, a| e.redis_call(l, a))?;
        lua.set_named_registry_value("coherent.call", call.clone())?;
        lua.set_named_registry_value(
            "coherent.setresp",
            api_function(&lua, &slot, |e, l, a| e.setresp(l, a))?,
        )?;
        lua.set_named_registry_value(
            "coherent.set_repl",
            api_function(&lua, &slot, |e, l, a| e.set_repl(l, a))?,
        )?;
        let imp = lua.create_table()?;
        imp.raw_set("call", call)?;
        let register: Function = raw.raw_get("register_function")?;
        raw.raw_set("register_function", Value::Nil)?;
        let (redis, handler, run_f, run_fn): (Table, Function, Function, Function) = lua
            .load(BOOT)
            .set_name("=coherent")
            .call((raw, imp.clone()))?;
        for (k, v) in [
            ("REPL_ALL", REPL_ALL),
            ("REPL_AOF", REPL_AOF),
            ("REPL_SLAVE", REPL_REPLICA),
            ("REPL_REPLICA", REPL_REPLICA),
            ("REPL_NONE", REPL_NONE),
            ("LOG_DEBUG", 0),
            ("LOG_VERBOSE", 1),
            ("LOG_NOTICE", 2),
            ("LOG_WARNING", 3),
            ("REDIS_VERSION_NUM", 0x07000f),
        ] {
            redis.raw_set(k, v)?;
        }
        redis.raw_set("REDIS_VERSION", "7.0.15")?;
        g.raw_set("redis", redis.clone())?;
        g.raw_set("__redis__err__handler", handler)?;
        // The sandbox: only Redis's globals remain.
        let mut drop_keys = Vec::new();
        for pair in g.pairs::<Value, Value>() {
            let (k, _) = pair?;
            if let Value::String(s) = &k {
                if GLOBALS.iter().any(|n| n.as_bytes() == &*s.as_bytes()) {
                    continue;
                }
            }
            drop_keys.push(k);
        }
        for k in drop_keys {
            g.raw_set(k, Value::Nil)?;
        }
        let protect = lua
            .load(
                r#"
local t = ...
local error, tostring = error, tostring
setmetatable(t, {
  __index = function(_, k)
    error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
  end,
  __newindex = function() error("Attempt to modify a readonly table", 2) end,
  __metatable = false,
})
"#,
            )
            .set_name("=coherent")
            .into_function()?;
        let fenv = match kind {
            Kind::Eval => {
                protect.call::<()>(g.clone())?;
                None
            }
            Kind::Function => {
                // Library code and functions see `env`, whose reads go to `run_api`.
                let run_api = lua.create_table()?;
                for pair in g.pairs::<Value, Value>() {
                    let (k, v) = pair?;
                    run_api.raw_set(k, v)?;
                }
                // The load-time globals hold nothing but a `redis` table with
                // `register_function`, `log` and the version (`LIBRARY_API_NAME` of
                // `function_lua.c`); both tables refuse other reads and all writes.
                let load_redis = lua.create_table()?;
                for k in [
                    "log",
                    "LOG_DEBUG",
                    "LOG_VERBOSE",
                    "LOG_NOTICE",
                    "LOG_WARNING",
                    "REDIS_VERSION",
                    "REDIS_VERSION_NUM",
                ] {
                    load_redis.raw_set(k, redis.raw_get::<Value>(k)?)?;
                }
                load_redis.raw_set("register_function", register.clone())?;
                let load_api = lua.create_table()?;
                load_api.raw_set("redis", load_redis.clone())?;
                protect.call::<()>(load_redis)?;
                protect.call::<()>(load_api.clone())?;
                protect.call::<()>(run_api.clone())?;
                // Library code and functions see `env`; its `__index` is `load_api`
                // while a library loads and `run_api` otherwise.
                let env = lua.create_table()?;
                let meta = lua.create_table()?;
                meta.raw_set("__index", run_api.clone())?;
                let newindex = lua
                    .load("return function() error('Attempt to modify a readonly table', 2) end")
                    .set_name("=coherent")
                    .call::<Function>(())?;
                meta.raw_set("__newindex", newindex)?;
                meta.raw_set("__metatable", false)?;
                env.set_metatable(Some(meta.clone()))?;
                lua.set_named_registry_value(
                    "coherent.register",
                    lua.create_function(|lua, _: MultiValue| {
                        raise(
                            lua,
                            "redis.register_function can only be called on FUNCTION LOAD command",
                        )
                    })?,
                )?;
                Some(FunctionEnv {
                    env,
                    meta,
                    run_api,
                    load_api,
                })
            }
        };
        // The watchdog: BUSY past the threshold, and the kill flag; while a library
        // loads, its time limit (Redis's `luaEngineLoadHook`) instead.
        let load_deadline = Arc::new(AtomicU64::new(0));
        let deadline = load_deadline.clone();
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(1000),
            move |_, _| {
                let until = deadline.load(Ordering::Relaxed);
                if until != 0 {
                    if crate::util::now_us() > until {
                        return Err(mlua::Error::RuntimeError(LOAD_TIMEOUT.into()));
                    }
                    return Ok(VmState::Continue);
                }
                run.tick();
                if run.killed() {
                    return Err(mlua::Error::RuntimeError("script killed".into()));
                }
                Ok(VmState::Continue)
            },
        )?;
        Ok(Vm {
            lua,
            kind,
            run: run_f,
            run_fn,
            slot,
            compiled: HashMap::new(),
            fenv,
            load_deadline,
        })
    }

    /// Compiles an EVAL body (`Error compiling script` on failure), cached by SHA-1.
    pub(crate) fn compile(&mut self, sha: &str, body: &[u8]) -> Result<Function, String> {
        if let Some(f) = self.compiled.get(sha) {
            return Ok(f.clone());
        }
        let f = self
            .lua
            .load(body)
            .set_name("@user_script")
            .set_mode(mlua::chunk::ChunkMode::Text)
            .into_function()
            .map_err(|e| {
                format!(
                    "ERR Error compiling script (new function): {}",
                    lua_message(&e)
                )
            })?;
        self.compiled.insert(sha.to_string(), f.clone());
        Ok(f)
    }

    /// Runs an EVAL script or a function (`keys`/`args` as KEYS/ARGV, or as the
    /// function's two arguments) and converts its result for the caller.
    pub(crate) fn run(
        &self,
        exec: Exec<'_>,
        func: &Function,
        name: &str,
        keys: &[Bytes],
        args: &[Bytes],
    ) -> Reply {
        let caller_resp = exec.caller_resp;
        let is_eval = self.kind == Kind::Eval;
        let mut exec = exec;
        let guard = SlotGuard::set(&self.slot, &mut exec);
        let result = if is_eval {
            self.call_eval(func, keys, args)
        } else {
            self.call_fn(func, keys, args)
        };
        drop(guard);
        match result {
            Ok((true, v)) => convert::lua_to_reply(&v, exec.client.resp, caller_resp),
            Ok((false, v)) => error_reply_of(&v, name, &exec.run),
            Err(e) => Reply::error(format!("ERR Error running script: {}", lua_message(&e))),
        }
    }

    /// An EVAL script's run: KEYS and ARGV (new tables each run, as Redis's
    /// `luaCreateArray`: a script may keep or change them) and the call under the error
    /// handler, in one protected call on the raw API (mlua's conversions would protect
    /// each table and string on its own).
    ///
    /// No explicit GC step: Redis's `luaCallFunction` runs `lua_gc(STEP, 50)` every 50
    /// calls, which here cost more than the script (a step sized for 1 KB of garbage a
    /// call, several times what a short script leaves). Lua's incremental collector
    /// already steps on allocation (pause 200%, step multiplier 200), which bounds the
    /// heap at about twice the live data (a test in `tests/scripting.rs` checks it).
    fn call_eval(
        &self,
        func: &Function,
        keys: &[Bytes],
        args: &[Bytes],
    ) -> mlua::Result<(bool, Value)> {
        // SAFETY: `f` works on the stack `exec_raw` gives it ([run, func]) within Lua's
        // limits (LUA_MINSTACK slots: it pushes at most three), holds nothing that needs
        // dropping (a Lua error longjmps out of it) and leaves the two results.
        unsafe {
            self.lua.exec_raw((&self.run, func), |l| {
                set_array(l, c"KEYS", keys);
                set_array(l, c"ARGV", args);
                ffi::lua_call(l, 1, 2);
            })
        }
    }

    /// A function's run: `keys` and `args` as its two arguments.
    fn call_fn(
        &self,
        func: &Function,
        keys: &[Bytes],
        args: &[Bytes],
    ) -> mlua::Result<(bool, Value)> {
        let keys_t = self.lua.create_sequence_from(
            keys.iter()
                .map(|k| self.lua.create_string(k))
                .collect::<mlua::Result<Vec<_>>>()?,
        )?;
        let args_t = self.lua.create_sequence_from(
            args.iter()
                .map(|k| self.lua.create_string(k))
                .collect::<mlua::Result<Vec<_>>>()?,
        )?;
        self.run_fn.call((func.clone(), keys_t, args_t))
    }

    /// Runs library code for FUNCTION LOAD (`luaEngineCreate`) with the load-time
    /// globals; `register` is called for each `redis.register_function` and returns
    /// the value to give back and whether to raise it. Errors are Redis's texts
    /// without the `ERR ` of the reply.
    pub(crate) fn load_library(
        &self,
        code: &[u8],
        register: &mut dyn FnMut(&Lua, MultiValue) -> Ret,
    ) -> Result<(), String> {
        let Some(fe) = &self.fenv else {
            return Err("not a function VM".into());
        };
        let f = self
            .lua
            .load(code)
            .set_name("@user_function")
            .set_mode(mlua::chunk::ChunkMode::Text)
            .set_environment(fe.env.clone())
            .into_function()
            .map_err(|e| format!("Error compiling function: {}", lua_message(&e)))?;
        let register = RefCell::new(register);
        let r = self.lua.scope(|scope| {
            let reg = scope.create_function(|lua, a: MultiValue| {
                let mut r = register.borrow_mut();
                (*r)(lua, a)
            })?;
            let outside: Value = self.lua.named_registry_value("coherent.register")?;
            self.lua
                .set_named_registry_value("coherent.register", reg)?;
            fe.meta.raw_set("__index", fe.load_api.clone())?;
            self.load_deadline
                .store(crate::util::now_us() + LOAD_TIMEOUT_US, Ordering::Relaxed);
            let out = self.run.call::<MultiValue>(f.clone());
            self.load_deadline.store(0, Ordering::Relaxed);
            fe.meta.raw_set("__index", fe.run_api.clone())?;
            self.lua
                .set_named_registry_value("coherent.register", outside)?;
            out
        });
        self.load_deadline.store(0, Ordering::Relaxed);
        let _ = fe.meta.raw_set("__index", fe.run_api.clone());
        let out = r.map_err(|e| format!("Error registering functions: {}", lua_message(&e)))?;
        let mut it = out.into_iter();
        if matches!(it.next(), Some(Value::Boolean(true))) {
            return Ok(());
        }
        let msg = match it.next() {
            Some(Value::Table(t)) => t
                .raw_get::<Option<mlua::LuaString>>("err")
                .ok()
                .flatten()
                .map(|s| s.to_string_lossy())
                .unwrap_or_default(),
            _ => String::new(),
        };
        // The hook's error reaches the handler as a Rust error value, not a text.
        let msg = if msg.contains(LOAD_TIMEOUT) {
            format!("ERR {LOAD_TIMEOUT}")
        } else {
            msg
        };
        Err(format!("Error registering functions: {msg}"))
    }
}

/// `luaEngineLoadHook`'s error, and its limit.
const LOAD_TIMEOUT: &str = "FUNCTION LOAD timeout";
const LOAD_TIMEOUT_US: u64 = 500_000;

/// The text of a Lua error as Lua printed it (mlua adds its own prefixes).
pub(crate) fn lua_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => lua_message(cause),
        other => other.to_string(),
    }
}

/// The reply for a script that raised `v` (what the error handler returned).
fn error_reply_of(v: &Value, name: &str, run: &RunState) -> Reply {
    let (mut msg, source, line) = match v {
        Value::Table(t) => (
            t.raw_get::<Option<mlua::LuaString>>("err")
                .ok()
                .flatten()
                .map(|s| String::from_utf8_lossy(&s.as_bytes()).into_owned()),
            t.raw_get::<Option<mlua::LuaString>>("source")
                .ok()
                .flatten()
                .map(|s| s.to_string_lossy()),
            t.raw_get::<Option<i64>>("line").ok().flatten(),
        ),
        _ => (None, None, None),
    };
    if run.killed() {
        // Redis 7.0 says SCRIPT KILL for a killed function too.
        msg = Some(super::KILLED.to_string());
    }
    let msg = msg.unwrap_or_default();
    match (source, line) {
        (Some(s), Some(l)) => Reply::Error(format!("{msg} script: {name}, on {s}:{l}.")),
        _ => Reply::Error(msg),
    }
}

/// Sets global `name` (raw: the globals are read-only to scripts) to a new array of
/// `items`.
///
/// # Safety
/// `l` must be a Lua state in protected mode (a memory error longjmps) with three free
/// stack slots.
unsafe fn set_array(l: *mut ffi::lua_State, name: &std::ffi::CStr, items: &[Bytes]) {
    ffi::lua_pushstring(l, name.as_ptr());
    ffi::lua_createtable(l, items.len().try_into().unwrap_or(0), 0);
    for (i, it) in items.iter().enumerate() {
        ffi::lua_pushlstring(l, it.as_ptr() as *const c_char, it.len());
        ffi::lua_rawseti_(l, -2, (i + 1) as c_int);
    }
    ffi::lua_rawset(l, ffi::LUA_GLOBALSINDEX);
}

/// Where the API functions find the running script's [`Exec`]: a pointer set by
/// [`SlotGuard`] for the length of [`Vm::run`], null otherwise. (Atomic only because
/// mlua's `send` feature wants the functions `Send`; a VM runs on one thread at a time.)
#[derive(Debug, Clone, Default)]
struct ExecSlot(Arc<AtomicPtr<Exec<'static>>>);

/// Points the slot at one run's `Exec` and clears it when dropped (also on a panic).
struct SlotGuard<'s>(&'s ExecSlot);

impl<'s> SlotGuard<'s> {
    fn set(slot: &'s ExecSlot, exec: &mut Exec<'_>) -> SlotGuard<'s> {
        // The lifetime is erased here and restored by `with_exec`, which only runs
        // while this guard (and so `exec`'s borrow in `Vm::run`) lives.
        let p: *mut Exec<'_> = exec;
        slot.0.store(p.cast(), Ordering::Relaxed);
        SlotGuard(slot)
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.0 .0.store(ptr::null_mut(), Ordering::Relaxed);
    }
}

/// An API function (`redis.call`, `setresp`, `set_repl`) calling `f` on the running
/// script's `Exec`. Outside a run (a function kept by library code and called at
/// load time) it raises an error, as the unset registry entry did.
fn api_function(
    lua: &Lua,
    slot: &ExecSlot,
    f: fn(&mut Exec<'static>, &Lua, MultiValue) -> Ret,
) -> mlua::Result<Function> {
    let slot = slot.clone();
    lua.create_function(move |lua, a: MultiValue| {
        // Taken out for the call: a nested call (none can happen: scripts cannot call
        // scripts) would find the slot empty rather than alias the `Exec`.
        let p = slot.0.swap(ptr::null_mut(), Ordering::Relaxed);
        if p.is_null() {
            return raise(
                lua,
                "This Redis lib call is only available while a script runs",
            );
        }
        // SAFETY: a non-null pointer was stored by `SlotGuard::set` from the `&mut Exec`
        // that `Vm::run` owns and does not touch until the guard is dropped, which nulls
        // it; the swap above makes this the only reference until it is put back.
        let r = f(unsafe { &mut *p }, lua, a);
        slot.0.store(p, Ordering::Relaxed);
        r
    })
}

/// What one run of a script works with.
pub(crate) struct Exec<'a> {
    pub(crate) store: &'a mut Store,
    /// The script's own client: its database, its protocol (`redis.setresp`).
    pub(crate) client: Client,
    /// The protocol of the client that called the script.
    pub(crate) caller_resp: u8,
    /// EVAL_RO, FCALL_RO or the `no-writes` flag.
    pub(crate) read_only: bool,
    /// `allow-oom`.
    pub(crate) allow_oom: bool,
    /// Over `maxmemory` when the script started.
    pub(crate) oom: bool,
    /// Whether a write command ran.
    pub(crate) wrote: bool,
    /// `redis.set_repl`.
    pub(crate) repl: i64,
    pub(crate) run: Arc<RunState>,
    /// A tracking caller's id and the keys it declared: each read-only command the
    /// script runs remembers those keys for it, as Redis's `trackingRememberKeys` on
    /// the `script_caller`. `None` when the caller does not track.
    pub(crate) tracking: Option<(u64, Vec<Bytes>)>,
}

impl Exec<'_> {
    /// A script client for the caller's database, speaking RESP2 until `setresp`.
    pub(crate) fn script_client(db: usize) -> Client {
        let mut c = Client::in_process(db);
        c.resp = 2;
        c.script = true;
        c
    }

    fn redis_call(&mut self, lua: &Lua, args: MultiValue) -> Ret {
        if args.is_empty() {
            return raise(
                lua,
                "Please specify at least one argument for this redis lib call",
            );
        }
        let mut argv = Vec::with_capacity(args.len());
        for v in args.iter() {
            match v {
                Value::String(s) => argv.push(Bytes::copy_from_slice(&s.as_bytes())),
                Value::Integer(i) => argv.push(Bytes::from(i.to_string())),
                Value::Number(n) => argv.push(Bytes::from(crate::util::fmt_g(*n, 17))),
                _ => {
                    return raise(
                        lua,
                        "Lua redis lib command arguments must be strings or integers",
                    )
                }
            }
        }
        let reply = self.call(argv);
        match &reply {
            Reply::Error(e) => Ok((Value::Table(reply_error_table(lua, e)?), true)),
            r => ok(convert::reply_to_lua(lua, r, self.client.resp)?),
        }
    }

    /// Redis's `scriptCall`: the checks a script's command passes, then the dispatcher.
    fn call(&mut self, argv: Vec<Bytes>) -> Reply {
        if self.run.killed() {
            return Reply::error(super::KILLED);
        }
        let Some(spec) = command::lookup(&argv[0]) else {
            return Reply::error("ERR Unknown Redis command called from script");
        };
        let argc = argv.len() as i32;
        if (spec.arity > 0 && argc != spec.arity) || argc < -spec.arity {
            return Reply::error("ERR Wrong number of args calling Redis command from script");
        }
        if let Err(e) = super::allowed_in_script(spec, &argv) {
            return Reply::error(e);
        }
        if spec.flags & WRITE != 0 {
            if self.read_only {
                return Reply::error("ERR Write commands are not allowed from read-only scripts.");
            }
            if !self.allow_oom && self.oom && !self.wrote && spec.flags & DENYOOM != 0 {
                return Reply::error("OOM command not allowed when used memory > 'maxmemory'.");
            }
            self.wrote = true;
            self.run.wrote();
        }
        let mark = self.store.propagation.unit_len();
        let reply = command::call(self.store, &mut self.client, spec, &argv);
        if self.repl & (REPL_AOF | REPL_REPLICA) == 0 {
            self.store.propagation.truncate_unit(mark);
        }
        if let Some((id, keys)) = &self.tracking {
            if spec.flags & command::READONLY != 0 {
                self.store.tracking.remember(*id, keys.iter());
            }
        }
        reply
    }

    fn setresp(&mut self, lua: &Lua, args: MultiValue) -> Ret {
        if args.len() != 1 {
            return raise(lua, "redis.setresp() requires one argument.");
        }
        let v = match &args[0] {
            Value::Integer(i) => *i,
            Value::Number(n) => *n as i64,
            _ => -1,
        };
        if v != 2 && v != 3 {
            return raise(lua, "RESP version must be 2 or 3.");
        }
        self.client.resp = v as u8;
        ok(Value::Nil)
    }

    fn set_repl(&mut self, lua: &Lua, args: MultiValue) -> Ret {
        if args.len() != 1 {
            return raise(lua, "redis.set_repl() requires one argument.");
        }
        let v = match &args[0] {
            Value::Integer(i) => *i,
            Value::Number(n) => *n as i64,
            _ => -1,
        };
        if !(0..=REPL_ALL).contains(&v) {
            return raise(
                lua,
                "Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
            );
        }
        self.repl = v;
        ok(Value::Nil)
    }
}

fn acl_check_cmd(lua: &Lua, args: MultiValue) -> Ret {
    let Some(Value::String(name)) = args.front() else {
        return raise(
            lua,
            "Please specify at least one argument for this redis lib call",
        );
    };
    match command::lookup(&name.as_bytes()) {
        Some(_) => ok(Value::Boolean(true)),
        None => raise(lua, "Invalid command passed to redis.acl_check_cmd()"),
    }
}

fn lua_string_arg(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Integer(i) => Some(i.to_string().into_bytes()),
        Value::Number(n) => Some(crate::util::fmt_g(*n, 14).into_bytes()),
        _ => None,
    }
}

fn error_reply(lua: &Lua, args: MultiValue) -> Ret {
    let msg = match (args.len(), args.front()) {
        (1, Some(Value::String(s))) => s.to_string_lossy(),
        (1, Some(v @ (Value::Integer(_) | Value::Number(_)))) => {
            String::from_utf8_lossy(&lua_string_arg(v).unwrap_or_default()).into_owned()
        }
        _ => {
            return ok(Value::Table(error_table(
                lua,
                "wrong number or type of arguments",
            )?))
        }
    };
    let msg = msg.strip_prefix('-').unwrap_or(&msg);
    ok(Value::Table(reply_error_table(lua, msg)?))
}

fn status_reply(lua: &Lua, args: MultiValue) -> Ret {
    let s = match (args.len(), args.front()) {
        (1, Some(v)) => lua_string_arg(v),
        _ => None,
    };
    let Some(s) = s else {
        return ok(Value::Table(error_table(
            lua,
            "wrong number or type of arguments",
        )?));
    };
    let t = lua.create_table()?;
    t.raw_set("ok", lua.create_string(s)?)?;
    ok(Value::Table(t))
}

fn sha1hex(lua: &Lua, args: MultiValue) -> Ret {
    if args.len() != 1 {
        return raise(lua, "wrong number of arguments");
    }
    let body = lua_string_arg(&args[0]).unwrap_or_default();
    ok(Value::String(lua.create_string(super::sha1_hex(&body))?))
}

fn log(lua: &Lua, args: MultiValue) -> Ret {
    if args.len() < 2 {
        return raise(lua, "redis.log() requires two arguments or more.");
    }
    let level = match &args[0] {
        Value::Integer(i) => *i,
        Value::Number(n) => *n as i64,
        _ => return raise(lua, "First argument must be a number (log level)."),
    };
    if !(0..=3).contains(&level) {
        return raise(lua, "Invalid debug level.");
    }
    let text: Vec<String> = args
        .iter()
        .skip(1)
        .map(|v| String::from_utf8_lossy(&lua_string_arg(v).unwrap_or_default()).into_owned())
        .collect();
    let text = text.join(" ");
    match level {
        0 => tracing::debug!(target: "script", "{text}"),
        1 | 2 => tracing::info!(target: "script", "{text}"),
        _ => tracing::warn!(target: "script", "{text}"),
    }
    ok(Value::Nil)
}

/// Redis's `redisLrand48`/`redisSrand48` state for `math.random`, shared by the
/// VM's closures.
pub(crate) type Rand = Arc<AtomicU64>;

/// lrand48's step: returns the next 31-bit value.
pub(crate) fn lrand48(state: &Rand) -> i64 {
    let x = state.load(Ordering::Relaxed);
    let next = (x.wrapping_mul(0x5_DEEC_E66D).wrapping_add(0xB)) & 0xFFFF_FFFF_FFFF;
    state.store(next, Ordering::Relaxed);
    (next >> 17) as i64
}

/// A C function (so that a script's `return redis.call(...)` keeps its own frame, as
/// Redis's C API does: a Lua wrapper would be a tail call and lose the script's line)
/// that calls the registry function `$key` with its arguments; that returns a value
/// and whether to raise it, as Redis raises its error tables.
macro_rules! trampoline {
    ($name:ident, $key:literal) => {
        unsafe extern "C-unwind" fn $name(l: *mut mlua::ffi::lua_State) -> c_int {
            use mlua::ffi;
            let n = ffi::lua_gettop(l);
            ffi::lua_getfield(
                l,
                ffi::LUA_REGISTRYINDEX,
                concat!($key, "\0").as_ptr() as *const c_char,
            );
            ffi::lua_insert(l, 1);
            ffi::lua_call(l, n, 2);
            let raise = ffi::lua_toboolean(l, -1) != 0;
            ffi::lua_settop(l, -2);
            if raise {
                ffi::lua_error(l);
            }
            1
        }
    };
}

trampoline!(t_call, "coherent.call");
trampoline!(t_setresp, "coherent.setresp");
trampoline!(t_set_repl, "coherent.set_repl");
trampoline!(t_acl, "coherent.acl_check_cmd");
trampoline!(t_sha1hex, "coherent.sha1hex");
trampoline!(t_log, "coherent.log");
trampoline!(t_register, "coherent.register");
