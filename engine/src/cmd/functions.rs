//! FUNCTION and FCALL (`functions.c`): the commands over the library registry of
//! `crate::script::functions`.
//!
//! FUNCTION LOAD / DELETE / FLUSH / RESTORE change the registry: they count as a
//! change for the save points and propagate as called (Redis flags them `write`).
//! FCALL runs a function as EVAL runs a script (`super::scripting::run`): its effects
//! propagate, not the call.

use super::subcommand::{help_reply, sub_arity, unknown_sub};
use crate::command::{CommandSpec, Ctx, DENYOOM, MOVABLE_KEYS, NOSCRIPT, STALE, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::net::reply::Reply;
use crate::script::flags;
use crate::script::functions::{RestorePolicy, ENGINE};
use crate::util::{eq_ic, glob_match};
use bytes::Bytes;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    let f = NOSCRIPT | STALE;
    vec![
        CommandSpec::new("function", -2, NOSCRIPT, (0, 0, 0), function),
        CommandSpec::new("fcall", -3, f | MOVABLE_KEYS, (3, 3, 1), fcall),
        CommandSpec::new("fcall_ro", -3, f | MOVABLE_KEYS, (3, 3, 1), fcall_ro),
    ]
}

fn fcall(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    fcall_generic(ctx, args, false)
}

fn fcall_ro(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    fcall_generic(ctx, args, true)
}

/// `fcallCommandGeneric`: the function, the key count, the flag checks, the run.
fn fcall_generic(ctx: &mut Ctx, args: &[Bytes], ro: bool) -> CmdResult {
    super::scripting::feed_monitors(ctx, args);
    let Some((_, f)) = ctx.store.scripting.functions.get(&args[1]) else {
        return Err(CmdError::err("Function not found"));
    };
    let (name, f_flags, func) = (f.name.clone(), f.flags, f.func.clone());
    let n = crate::util::parse_i64(&args[2])
        .ok_or_else(|| CmdError::err("Bad number of keys provided"))?;
    if n > args.len() as i64 - 3 {
        return Err(CmdError::err(
            "Number of keys can't be greater than number of args",
        ));
    }
    if n < 0 {
        return Err(CmdError::err("Number of keys can't be negative"));
    }
    let (keys, argv) = args[3..].split_at(n as usize);
    super::scripting::check_flags(ctx, f_flags, ro)?;
    // The VM leaves the registry for the run (the function's commands need the store).
    let Some(vm) = ctx.store.scripting.functions.take_vm() else {
        return Err(CmdError::err("Function not found"));
    };
    ctx.store
        .scripting
        .run
        .set_current(&name, args, ctx.store.scripting.functions.counts());
    let reply = super::scripting::run(ctx, &vm, &func, &name, f_flags, ro, keys, argv, true);
    ctx.store.scripting.functions.put_vm(vm);
    Ok(reply)
}

const FUNCTION_HELP: &[&str] = &[
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
    "      libraries with the new libraries (notice that even on this option there is a chance of failure",
    "      in case of functions name collision with another library).",
];

/// `addReplySubcommandSyntaxError`: the subcommand as the client wrote it.
fn syntax(sub: &[u8]) -> CmdError {
    CmdError::err(format!(
        "unknown subcommand or wrong number of arguments for '{}'. Try FUNCTION HELP.",
        String::from_utf8_lossy(sub)
    ))
}

fn function(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    let arity = match sub.as_str() {
        "help" | "stats" | "dump" | "kill" => 2,
        "delete" => 3,
        "load" | "restore" => -3,
        "flush" | "list" => -2,
        _ => return Err(unknown_sub("function", &args[1])),
    };
    sub_arity("function", &sub, arity, args)?;
    match sub.as_str() {
        "load" | "restore" => write_gate(ctx, true)?,
        "delete" | "flush" => write_gate(ctx, false)?,
        _ => {}
    }
    match sub.as_str() {
        "help" => Ok(help_reply("function", FUNCTION_HELP)),
        "load" => load(ctx, args),
        "delete" => {
            let name = String::from_utf8_lossy(&args[2]);
            if !ctx.store.scripting.functions.delete(&name) {
                return Err(CmdError::err("Library not found"));
            }
            changed(ctx, args);
            Ok(Reply::OK)
        }
        "flush" => {
            if args.len() > 3 {
                return Err(syntax(&args[1]));
            }
            if let Some(m) = args.get(2) {
                if !eq_ic(m, "sync") && !eq_ic(m, "async") {
                    return Err(CmdError::err(
                        "FUNCTION FLUSH only supports SYNC|ASYNC option",
                    ));
                }
            }
            ctx.store.scripting.functions.flush();
            changed(ctx, args);
            Ok(Reply::OK)
        }
        "list" => list(ctx, args),
        "stats" => Ok(stats(ctx)),
        "dump" => Ok(Reply::Bulk(Bytes::from(
            ctx.store
                .scripting
                .functions
                .dump(ctx.store.config.rdbcompression),
        ))),
        "kill" => Ok(ctx.store.scripting.run.kill(false)),
        _ => restore(ctx, args),
    }
}

/// The row the write subcommands would have in a table of subcommands: Redis flags
/// FUNCTION LOAD and RESTORE `write denyoom`, DELETE and FLUSH `write`.
const WRITE_ROW: CommandSpec = CommandSpec::new(
    "function",
    -2,
    WRITE | DENYOOM | NOSCRIPT,
    (0, 0, 0),
    function,
);

/// `processCommand`'s refusals of a write, which the container's row cannot ask for
/// its subcommands: MISCONF after a failed BGSAVE, READONLY on a read-only replica,
/// NOREPLICAS, and OOM for the deny-oom ones. The primary's stream passes them all.
fn write_gate(ctx: &mut Ctx, denyoom: bool) -> Result<(), CmdError> {
    if ctx.client.master {
        return Ok(());
    }
    if ctx.client.id != 0 && crate::persist::save::writes_denied(ctx.store) {
        return Err(CmdError::Other(crate::command::MISCONF.into()));
    }
    if let Some(e) = crate::repl::gate(ctx.store, ctx.client, &WRITE_ROW) {
        return Err(e);
    }
    if denyoom
        && ctx.store.config.maxmemory != 0
        && ctx.store.perform_evictions() == crate::keyspace::evict::Evict::Fail
    {
        return Err(CmdError::Oom);
    }
    Ok(())
}

/// A change of the registry: dirty for the save points, propagated as called.
fn changed(ctx: &mut Ctx, args: &[Bytes]) {
    ctx.store.stats.dirty += 1;
    ctx.also_propagate(args.to_vec());
    let counts = ctx.store.scripting.functions.counts();
    ctx.store.scripting.run.set_counts(counts);
}

fn load(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let mut replace = false;
    for a in &args[2..args.len() - 1] {
        if eq_ic(a, "replace") {
            replace = true;
        } else {
            return Err(CmdError::err(format!(
                "Unknown option given: {}",
                String::from_utf8_lossy(a)
            )));
        }
    }
    let code = super::own(&args[args.len() - 1]);
    let run = ctx.store.scripting.run.clone();
    let name = ctx
        .store
        .scripting
        .functions
        .load(&code, replace, &run)
        .map_err(CmdError::err)?;
    changed(ctx, args);
    Ok(Reply::Bulk(Bytes::from(name)))
}

fn restore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if args.len() > 4 {
        return Err(syntax(&args[1]));
    }
    let policy = match args.get(3) {
        None => RestorePolicy::Append,
        Some(p) if eq_ic(p, "append") => RestorePolicy::Append,
        Some(p) if eq_ic(p, "replace") => RestorePolicy::Replace,
        Some(p) if eq_ic(p, "flush") => RestorePolicy::Flush,
        Some(_) => {
            return Err(CmdError::err(
                "Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            ))
        }
    };
    let run = ctx.store.scripting.run.clone();
    ctx.store
        .scripting
        .functions
        .restore(&args[2], policy, &run)
        .map_err(CmdError::err)?;
    changed(ctx, args);
    Ok(Reply::OK)
}

/// FUNCTION LIST: a map per library (an array of pairs in RESP2), functions as maps,
/// flags as a set, a missing description as null.
fn list(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (mut with_code, mut pattern): (bool, Option<&Bytes>) = (false, None);
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        if !with_code && eq_ic(a, "withcode") {
            with_code = true;
        } else if pattern.is_none() && eq_ic(a, "libraryname") {
            if i >= args.len() - 1 {
                return Err(CmdError::err("library name argument was not given"));
            }
            i += 1;
            pattern = Some(&args[i]);
        } else {
            return Err(CmdError::err(format!(
                "Unknown argument {}",
                String::from_utf8_lossy(a)
            )));
        }
        i += 1;
    }
    let text = |s: &str| Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()));
    let mut out = Vec::new();
    for lib in ctx.store.scripting.functions.libraries() {
        if let Some(p) = pattern {
            if !glob_match(p, lib.name.as_bytes(), true) {
                continue;
            }
        }
        let functions = lib
            .functions
            .iter()
            .map(|f| {
                Reply::Map(vec![
                    (text("name"), text(&f.name)),
                    (
                        text("description"),
                        f.desc.clone().map_or(Reply::Nil, Reply::Bulk),
                    ),
                    (text("flags"), flag_set(f.flags)),
                ])
            })
            .collect();
        let mut fields = vec![
            (text("library_name"), text(&lib.name)),
            (text("engine"), text(ENGINE)),
            (text("functions"), Reply::Array(functions)),
        ];
        if with_code {
            fields.push((text("library_code"), Reply::Bulk(lib.code.clone())));
        }
        out.push(Reply::Map(fields));
    }
    Ok(Reply::Array(out))
}

/// `addReplyCommandFlags`: the set flags' names.
fn flag_set(f: u32) -> Reply {
    Reply::Set(
        flags::NAMES
            .iter()
            .filter(|(bit, _)| f & bit != 0)
            .map(|(_, n)| Reply::Status((*n).to_string()))
            .collect(),
    )
}

/// FUNCTION STATS as the store sees it: no function runs while a command has the
/// lock (a busy script's FUNCTION STATS is answered outside it, by
/// [`stats_reply`]).
fn stats(ctx: &mut Ctx) -> Reply {
    stats_reply(None, ctx.store.scripting.functions.counts())
}

/// FUNCTION STATS: the running script (its name, the command that called it and how
/// long it has run) and the engine's library and function counts.
pub(crate) fn stats_reply(
    running: Option<crate::script::Running>,
    (libraries, functions): (usize, usize),
) -> Reply {
    let text = |s: &str| Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()));
    let running = match running {
        None => Reply::Nil,
        Some((name, argv, ms)) => Reply::Map(vec![
            (text("name"), text(&name)),
            (
                text("command"),
                Reply::Array(argv.into_iter().map(Reply::Bulk).collect()),
            ),
            (text("duration_ms"), Reply::Int(ms as i64)),
        ]),
    };
    Reply::Map(vec![
        (text("running_script"), running),
        (
            text("engines"),
            Reply::Map(vec![(
                text(ENGINE),
                Reply::Map(vec![
                    (text("libraries_count"), Reply::Int(libraries as i64)),
                    (text("functions_count"), Reply::Int(functions as i64)),
                ]),
            )]),
        ),
    ])
}
