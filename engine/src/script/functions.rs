//! FUNCTION libraries (`functions.c`, `function_lua.c`): the registry of libraries
//! and their functions, one Lua VM for all of them, library creation from code with
//! Redis's checks and error texts, and the FUNCTION DUMP / RESTORE payloads.
//!
//! Errors are returned as Redis's texts without the `ERR ` the reply adds.

use super::lua::{self, Kind, Ret, Vm};
use super::{flags, RunState};
use bytes::Bytes;
use mlua::{Lua, MultiValue, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The one engine Redis 7.0 has.
pub(crate) const ENGINE: &str = "LUA";

/// One registered function.
#[derive(Debug, Clone)]
pub(crate) struct FunctionInfo {
    /// Its name as registered.
    pub(crate) name: String,
    /// `description`, when given.
    pub(crate) desc: Option<Bytes>,
    /// Script flags (`flags::*`).
    pub(crate) flags: u32,
    /// The Lua function.
    pub(crate) func: mlua::Function,
}

/// A library: its code (shebang included) and the functions it registered, in
/// registration order.
#[derive(Debug, Clone)]
pub(crate) struct Library {
    /// The `name=` of its shebang.
    pub(crate) name: String,
    /// The code as loaded.
    pub(crate) code: Bytes,
    /// Its functions.
    pub(crate) functions: Vec<FunctionInfo>,
}

/// The function libraries and their VM.
#[derive(Debug, Default)]
pub(crate) struct Functions {
    vm: Option<Vm>,
    /// Libraries by name (case-sensitive, as Redis's `librariesDictType`).
    libraries: BTreeMap<String, Library>,
    /// Lower-case function name to its library (Redis's function dict ignores case).
    index: HashMap<String, String>,
}

/// How FUNCTION RESTORE treats existing libraries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestorePolicy {
    /// Drop them all first.
    Flush,
    /// Keep them; a name collision fails the restore.
    Append,
    /// Libraries of the same name are replaced.
    Replace,
}

/// Redis's `functionsVerifyName`: letters, digits and `_`, at least one.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

const BAD_NAME: &str = "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

/// `functionExtractLibMetaData`: the engine and library name of the shebang, and where
/// the code the engine compiles starts (at the shebang's newline, so that line
/// numbers stay the user's).
fn metadata(code: &[u8]) -> Result<(String, String, usize), String> {
    if !code.starts_with(b"#!") {
        return Err("Missing library metadata".into());
    }
    let Some(end) = code.iter().position(|&b| b == b'\n') else {
        return Err("Invalid library metadata".into());
    };
    let parts = match crate::net::frame::split_args(&code[..end]) {
        Some(p) if !p.is_empty() => p,
        _ => return Err("Invalid library metadata".into()),
    };
    let engine = String::from_utf8_lossy(parts[0].get(2..).unwrap_or_default()).into_owned();
    let mut name: Option<String> = None;
    for part in &parts[1..] {
        if part.len() >= 5 && part[..5].eq_ignore_ascii_case(b"name=") {
            if name.is_some() {
                return Err(
                    "Invalid metadata value, name argument was given multiple times".into(),
                );
            }
            name = Some(String::from_utf8_lossy(&part[5..]).into_owned());
            continue;
        }
        return Err(format!(
            "Invalid metadata value given: {}",
            String::from_utf8_lossy(part)
        ));
    }
    let name = name.ok_or_else(|| "Library name was not given".to_string())?;
    Ok((engine, name, end))
}

/// A Lua value as `luaGetStringSds` takes it: a string, or a number as Lua prints it.
fn lua_string(lua: &Lua, v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Integer(_) | Value::Number(_) => lua
            .coerce_string(v.clone())
            .ok()
            .flatten()
            .map(|s| s.as_bytes().to_vec()),
        _ => None,
    }
}

/// `luaRegisterFunctionReadArgs`: the registration's name, description, flags and
/// callback, or the error to raise.
fn read_registration(lua: &Lua, args: &MultiValue) -> Result<FunctionInfo, &'static str> {
    match args.len() {
        1 => {
            let Value::Table(t) = &args[0] else {
                return Err("calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).");
            };
            let (mut name, mut desc, mut f_flags, mut func) = (None, None, 0, None);
            for pair in t.pairs::<Value, Value>() {
                let Ok((k, v)) = pair else {
                    return Err(
                        "named argument key given to redis.register_function is not a string",
                    );
                };
                let Some(key) = lua_string(lua, &k) else {
                    return Err(
                        "named argument key given to redis.register_function is not a string",
                    );
                };
                if key.eq_ignore_ascii_case(b"function_name") {
                    name = Some(lua_string(lua, &v).ok_or(
                        "function_name argument given to redis.register_function must be a string",
                    )?);
                } else if key.eq_ignore_ascii_case(b"description") {
                    desc = Some(lua_string(lua, &v).ok_or(
                        "description argument given to redis.register_function must be a string",
                    )?);
                } else if key.eq_ignore_ascii_case(b"callback") {
                    let Value::Function(f) = v else {
                        return Err(
                            "callback argument given to redis.register_function must be a function",
                        );
                    };
                    func = Some(f);
                } else if key.eq_ignore_ascii_case(b"flags") {
                    let Value::Table(list) = v else {
                        return Err("flags argument to redis.register_function must be a table representing function flags");
                    };
                    f_flags = read_flags(lua, &list).ok_or("unknown flag given")?;
                } else {
                    return Err("unknown argument given to redis.register_function");
                }
            }
            let name = name.ok_or("redis.register_function must get a function name argument")?;
            let func = func.ok_or("redis.register_function must get a callback argument")?;
            Ok(FunctionInfo {
                name: String::from_utf8_lossy(&name).into_owned(),
                desc: desc.map(Bytes::from),
                flags: f_flags,
                func,
            })
        }
        2 => {
            let name = lua_string(lua, &args[0])
                .ok_or("first argument to redis.register_function must be a string")?;
            let Value::Function(func) = &args[1] else {
                return Err("second argument to redis.register_function must be a function");
            };
            Ok(FunctionInfo {
                name: String::from_utf8_lossy(&name).into_owned(),
                desc: None,
                flags: 0,
                func: func.clone(),
            })
        }
        _ => Err("wrong number of arguments to redis.register_function"),
    }
}

/// `luaRegisterFunctionReadFlags`: the array part up to the first nil, each a flag
/// name (any case); `None` for anything else.
fn read_flags(lua: &Lua, list: &mlua::Table) -> Option<u32> {
    let mut f = 0;
    for i in 1.. {
        let v: Value = list.get(i).ok()?;
        if v == Value::Nil {
            break;
        }
        let name = lua_string(lua, &v)?.to_ascii_lowercase();
        f |= flags::parse(&name)?;
    }
    Some(f)
}

impl Functions {
    /// The VM, made on first use.
    fn vm(&mut self, run: &Arc<RunState>) -> Result<&Vm, String> {
        if self.vm.is_none() {
            let vm = Vm::new(Kind::Function, run.clone())
                .map_err(|e| format!("Error creating the Lua VM: {e}"))?;
            self.vm = Some(vm);
        }
        self.vm
            .as_ref()
            .ok_or_else(|| "Error creating the Lua VM".to_string())
    }

    /// `functionsCreateWithLibraryCtx`'s checks of the shebang: the library name and
    /// where the code to run starts.
    fn prepare(code: &[u8]) -> Result<(String, usize), String> {
        let (engine, name, start) = metadata(code)?;
        if !valid_name(name.as_bytes()) {
            return Err(BAD_NAME.into());
        }
        if !engine.eq_ignore_ascii_case(ENGINE) {
            return Err(format!("Engine '{engine}' not found"));
        }
        Ok((name, start))
    }

    /// Runs library code, collecting its registrations.
    fn run_library(
        &mut self,
        code: &[u8],
        run: &Arc<RunState>,
    ) -> Result<Vec<FunctionInfo>, String> {
        let vm = self.vm(run)?;
        let mut registered: Vec<FunctionInfo> = Vec::new();
        let mut register = |lua: &Lua, args: MultiValue| -> Ret {
            let f = match read_registration(lua, &args) {
                Ok(f) => f,
                Err(e) => return lua::raise(lua, e),
            };
            if !valid_name(f.name.as_bytes()) {
                return lua::raise(lua, BAD_NAME);
            }
            if registered.iter().any(|r| r.name == f.name) {
                return lua::raise(lua, "Function already exists in the library");
            }
            registered.push(f);
            Ok((Value::Nil, false))
        };
        vm.load_library(code, &mut register)?;
        Ok(registered)
    }

    /// The first function of `lib` whose name another library (not `except`) has.
    fn collision(&self, lib: &Library, except: Option<&str>) -> Option<String> {
        lib.functions.iter().find_map(|f| {
            self.index
                .get(&f.name.to_ascii_lowercase())
                .filter(|owner| Some(owner.as_str()) != except)
                .map(|_| f.name.clone())
        })
    }

    fn link(&mut self, lib: Library) {
        for f in &lib.functions {
            self.index
                .entry(f.name.to_ascii_lowercase())
                .or_insert_with(|| lib.name.clone());
        }
        self.libraries.insert(lib.name.clone(), lib);
    }

    fn unlink(&mut self, name: &str) -> Option<Library> {
        let lib = self.libraries.remove(name)?;
        for f in &lib.functions {
            let k = f.name.to_ascii_lowercase();
            if self.index.get(&k).is_some_and(|o| o == name) {
                self.index.remove(&k);
            }
        }
        Some(lib)
    }

    /// FUNCTION LOAD: the library's name, or the error.
    pub(crate) fn load(
        &mut self,
        code: &Bytes,
        replace: bool,
        run: &Arc<RunState>,
    ) -> Result<String, String> {
        let (name, start) = Self::prepare(code)?;
        if !replace && self.libraries.contains_key(&name) {
            return Err(format!("Library '{name}' already exists"));
        }
        let lib = Library {
            functions: self.run_library(&code[start..], run)?,
            name,
            code: code.clone(),
        };
        if lib.functions.is_empty() {
            return Err("No functions registered".into());
        }
        if let Some(f) = self.collision(&lib, Some(&lib.name)) {
            return Err(format!("Function {f} already exists"));
        }
        self.unlink(&lib.name);
        let name = lib.name.clone();
        self.link(lib);
        Ok(name)
    }

    /// FUNCTION DELETE: whether the library existed.
    pub(crate) fn delete(&mut self, name: &str) -> bool {
        self.unlink(name).is_some()
    }

    /// FUNCTION FLUSH: every library goes, and the VM with them.
    pub(crate) fn flush(&mut self) {
        self.libraries.clear();
        self.index.clear();
        self.vm = None;
    }

    /// A function by name (any case) and its library.
    pub(crate) fn get(&self, name: &[u8]) -> Option<(&Library, &FunctionInfo)> {
        let key = String::from_utf8_lossy(name).to_ascii_lowercase();
        let lib = self.libraries.get(self.index.get(&key)?)?;
        let f = lib
            .functions
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(&key))?;
        Some((lib, f))
    }

    /// Takes the VM out for a run (present whenever a library is).
    pub(crate) fn take_vm(&mut self) -> Option<Vm> {
        self.vm.take()
    }

    /// Puts the VM back after a run.
    pub(crate) fn put_vm(&mut self, vm: Vm) {
        self.vm = Some(vm);
    }

    /// The libraries in name order.
    pub(crate) fn libraries(&self) -> impl Iterator<Item = &Library> {
        self.libraries.values()
    }

    /// Bytes the functions' VM holds (INFO's `used_memory_vm_functions`).
    pub(crate) fn vm_memory(&self) -> usize {
        self.vm.as_ref().map_or(0, |v| v.lua.used_memory())
    }

    /// Bytes of the libraries: their code and names, and a fixed overhead per
    /// library and function (INFO's `used_memory_functions`).
    pub(crate) fn memory(&self) -> usize {
        self.libraries
            .values()
            .map(|l| {
                l.code.len()
                    + l.name.len()
                    + 96
                    + l.functions
                        .iter()
                        .map(|f| f.name.len() + f.desc.as_ref().map_or(0, |d| d.len()) + 64)
                        .sum::<usize>()
            })
            .sum()
    }

    /// Number of libraries and of functions (FUNCTION STATS).
    pub(crate) fn counts(&self) -> (usize, usize) {
        (
            self.libraries.len(),
            self.libraries.values().map(|l| l.functions.len()).sum(),
        )
    }

    /// The libraries' code, what RDB files and the AOF rewrite save.
    pub(crate) fn codes(&self) -> Vec<Bytes> {
        self.libraries.values().map(|l| l.code.clone()).collect()
    }

    /// A registry of the libraries of `codes` (an RDB file's, in file order), made
    /// in this registry's VM, to replace this one; on an error this one is unchanged.
    pub(crate) fn staged(
        &mut self,
        codes: &[Bytes],
        run: &Arc<RunState>,
    ) -> Result<Functions, String> {
        let mut staged = Functions {
            vm: self.vm.take(),
            ..Default::default()
        };
        match staged.load_all(codes, false, run) {
            Ok(()) => Ok(staged),
            Err(e) => {
                self.vm = staged.vm.take();
                Err(e)
            }
        }
    }

    /// Creates each library of `codes` into `self` (Redis's `rdbFunctionLoad`).
    fn load_all(
        &mut self,
        codes: &[Bytes],
        replace: bool,
        run: &Arc<RunState>,
    ) -> Result<(), String> {
        for code in codes {
            self.load(code, replace, run)?;
        }
        Ok(())
    }

    /// FUNCTION DUMP: an opcode 245 and string per library, the RDB version and the
    /// CRC64 (`functionDumpCommand`).
    pub(crate) fn dump(&self, compression: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = crate::persist::rdb::write_functions(&mut out, &self.codes(), compression);
        out.extend_from_slice(&crate::persist::rdb::RDB_VERSION.to_le_bytes());
        let crc = crate::persist::rdb::crc64::checksum(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// FUNCTION RESTORE (`functionRestoreCommand`).
    pub(crate) fn restore(
        &mut self,
        payload: &[u8],
        policy: RestorePolicy,
        run: &Arc<RunState>,
    ) -> Result<(), String> {
        let codes = crate::persist::rdb::read_function_payload(payload)?;
        // The payload's libraries are created apart (they may not collide among
        // themselves), then joined.
        let mut staged = Functions {
            vm: self.vm.take(),
            ..Default::default()
        };
        let created = staged.load_all(&codes, false, run);
        self.vm = staged.vm.take();
        created?;
        let libs: Vec<Library> = std::mem::take(&mut staged.libraries)
            .into_values()
            .collect();
        if policy == RestorePolicy::Flush {
            self.libraries.clear();
            self.index.clear();
            for lib in libs {
                self.link(lib);
            }
            return Ok(());
        }
        // `libraryJoin`: library names first, then function names; on an error the
        // libraries taken out go back.
        let mut removed = Vec::new();
        let mut err = None;
        for lib in &libs {
            if self.libraries.contains_key(&lib.name) {
                if policy == RestorePolicy::Append {
                    err = Some(format!("Library {} already exists", lib.name));
                    break;
                }
                removed.extend(self.unlink(&lib.name));
            }
        }
        if err.is_none() {
            err = libs
                .iter()
                .find_map(|l| self.collision(l, None))
                .map(|f| format!("Function {f} already exists"));
        }
        if let Some(e) = err {
            for lib in removed {
                self.link(lib);
            }
            return Err(e);
        }
        for lib in libs {
            self.link(lib);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    #[test]
    fn metadata_errors() {
        assert_eq!(
            metadata(b"return 1").unwrap_err(),
            "Missing library metadata"
        );
        assert_eq!(
            metadata(b"#!lua name=x").unwrap_err(),
            "Invalid library metadata"
        );
        assert_eq!(
            metadata(b"#!lua\n").unwrap_err(),
            "Library name was not given"
        );
        assert_eq!(
            metadata(b"#!lua a=b\n").unwrap_err(),
            "Invalid metadata value given: a=b"
        );
        assert_eq!(
            metadata(b"#!lua  NAME=x\n").unwrap(),
            ("lua".into(), "x".into(), 13)
        );
    }

    #[test]
    fn load_list_delete_and_collisions() {
        let run = Arc::new(RunState::default());
        let mut f = Functions::default();
        let code = b("#!lua name=l1\nredis.register_function('f1', function() return 1 end)");
        assert_eq!(f.load(&code, false, &run).unwrap(), "l1");
        assert_eq!(
            f.load(&code, false, &run).unwrap_err(),
            "Library 'l1' already exists"
        );
        assert_eq!(f.load(&code, true, &run).unwrap(), "l1");
        let other = b("#!lua name=l2\nredis.register_function('F1', function() return 1 end)");
        assert_eq!(
            f.load(&other, false, &run).unwrap_err(),
            "Function F1 already exists"
        );
        assert!(f.get(b"F1").is_some());
        assert_eq!(f.counts(), (1, 1));
        let payload = f.dump(true);
        assert!(f.delete("l1"));
        assert!(!f.delete("l1"));
        f.restore(&payload, RestorePolicy::Append, &run).unwrap();
        assert_eq!(
            f.restore(&payload, RestorePolicy::Append, &run)
                .unwrap_err(),
            "Library l1 already exists"
        );
        f.restore(&payload, RestorePolicy::Replace, &run).unwrap();
        assert_eq!(f.codes(), vec![code.clone()]);
        // A file's libraries: all or none.
        let bad = b("#!lua name=bad\nreturn 1");
        assert_eq!(
            f.staged(&[other.clone(), bad], &run).unwrap_err(),
            "No functions registered"
        );
        assert_eq!(f.codes(), vec![code]);
        let staged = f.staged(std::slice::from_ref(&other), &run).unwrap();
        assert_eq!(staged.codes(), vec![other]);
    }
}
