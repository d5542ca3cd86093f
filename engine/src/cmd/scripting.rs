//! EVAL scripts (`eval.c`): EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, SCRIPT.
//!
//! The VM and the run of a script are `crate::script`'s; this file parses the
//! commands, keeps the script cache and applies the flag checks Redis makes before a
//! script runs (`scriptPrepareForRun`).

use super::subcommand::{help_reply, sub_arity, unknown_sub};
use crate::command::{CommandSpec, Ctx, MOVABLE_KEYS, NOSCRIPT, STALE, TRACKED_READ};
use crate::error::{CmdError, CmdResult};
use crate::net::reply::Reply;
use crate::script::lua::{Exec, Kind, Vm, REPL_NONE};
use crate::script::{flags, parse_shebang, sha1_hex, Script};
use crate::util::eq_ic;
use bytes::Bytes;
use std::borrow::Cow;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    let f = NOSCRIPT | STALE;
    vec![
        CommandSpec::new("eval", -3, f | MOVABLE_KEYS, (3, 3, 1), eval),
        CommandSpec::new("evalsha", -3, f | MOVABLE_KEYS, (3, 3, 1), evalsha),
        // Read-only in Redis: a tracking client remembers their keys.
        CommandSpec::new(
            "eval_ro",
            -3,
            f | TRACKED_READ | MOVABLE_KEYS,
            (3, 3, 1),
            eval_ro,
        ),
        CommandSpec::new(
            "evalsha_ro",
            -3,
            f | TRACKED_READ | MOVABLE_KEYS,
            (3, 3, 1),
            evalsha_ro,
        ),
        CommandSpec::new("script", -2, NOSCRIPT, (0, 0, 0), script),
    ]
}

fn eval(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    eval_generic(ctx, args, false, false)
}

fn evalsha(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    eval_generic(ctx, args, true, false)
}

fn eval_ro(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    eval_generic(ctx, args, false, true)
}

fn evalsha_ro(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    eval_generic(ctx, args, true, true)
}

/// Splits `numkeys key... arg...` (args[2] on) into keys and arguments.
pub(crate) fn split_keys(args: &[Bytes]) -> Result<(&[Bytes], &[Bytes]), CmdError> {
    let n = super::int_arg(&args[2])?;
    if n < 0 {
        return Err(CmdError::err("Number of keys can't be negative"));
    }
    let rest = &args[3..];
    if n as usize > rest.len() {
        return Err(CmdError::err(
            "Number of keys can't be greater than number of args",
        ));
    }
    Ok(rest.split_at(n as usize))
}

const NOSCRIPT_ERR: &str = "NOSCRIPT No matching script. Please use EVAL.";

/// MONITOR sees EVAL and FCALL (flagged `skip_monitor`) before the commands they run,
/// as Redis's `evalCommand` and `fcallCommandGeneric` feed them first.
pub(crate) fn feed_monitors(ctx: &mut Ctx, args: &[Bytes]) {
    if !ctx.store.observe.monitors.is_empty() {
        crate::observe::monitor::feed(ctx.store, ctx.client, args);
    }
}

fn eval_generic(ctx: &mut Ctx, args: &[Bytes], by_sha: bool, ro: bool) -> CmdResult {
    feed_monitors(ctx, args);
    let (keys, argv) = split_keys(args)?;
    // EVALSHA's name, lowered on the stack (no allocation on the hot path).
    let mut lowered = [0u8; 40];
    let (sha, body): (Cow<'_, str>, Bytes) = if by_sha {
        let sha = lower_sha(&args[1], &mut lowered);
        match sha.and_then(|sha| Some((sha, ctx.store.scripting.scripts.get(sha)?))) {
            Some((sha, s)) => (Cow::Borrowed(sha), s.body.clone()),
            None => return Err(CmdError::Other(NOSCRIPT_ERR.into())),
        }
    } else {
        (Cow::Owned(sha1_hex(&args[1])), args[1].clone())
    };
    let shebang = parse_shebang(&body).map_err(CmdError::Other)?;
    let (script_flags, code) = match shebang {
        Some((f, len)) => (f, body.slice(len..)),
        None => (flags::EVAL_COMPAT_MODE, body.clone()),
    };
    check_flags(ctx, script_flags, ro)?;
    let mut vm = take_vm(ctx)?;
    let func = match vm.compile(&sha, &code) {
        Ok(f) => f,
        Err(e) => {
            ctx.store.scripting.eval_vm = Some(vm);
            return Err(CmdError::Other(e));
        }
    };
    if !by_sha {
        ctx.store
            .scripting
            .scripts
            .entry(sha.to_string())
            .or_insert_with(|| Script {
                body: super::own(&body),
            });
    }
    let counts = ctx.store.scripting.functions.counts();
    ctx.store.scripting.run.set_current(&sha, args, counts);
    let reply = run(ctx, &vm, &func, &sha, script_flags, ro, keys, argv, false);
    ctx.store.scripting.eval_vm = Some(vm);
    Ok(reply)
}

/// `name` lowered into `buf` if it can be a SHA-1 in hex (40 ASCII characters; the
/// script cache's keys are lower case).
fn lower_sha<'b>(name: &[u8], buf: &'b mut [u8; 40]) -> Option<&'b str> {
    if name.len() != 40 || !name.is_ascii() {
        return None;
    }
    buf.copy_from_slice(name);
    buf.make_ascii_lowercase();
    std::str::from_utf8(buf).ok()
}

/// The EVAL VM, made on first use; the caller puts it back.
fn take_vm(ctx: &mut Ctx) -> Result<Vm, CmdError> {
    match ctx.store.scripting.eval_vm.take() {
        Some(vm) => Ok(vm),
        None => Vm::new(Kind::Eval, ctx.store.scripting.run.clone())
            .map_err(|e| CmdError::err(format!("Error creating the Lua VM: {e}"))),
    }
}

/// Redis's checks of a script's flags before it runs (`scriptPrepareForRun` and the
/// deny-oom rule of `processCommand` for scripts with a shebang).
pub(crate) fn check_flags(ctx: &mut Ctx, script_flags: u32, ro: bool) -> Result<(), CmdError> {
    if script_flags & flags::EVAL_COMPAT_MODE != 0 {
        return Ok(());
    }
    if script_flags & flags::NO_WRITES == 0 {
        if crate::persist::save::writes_denied(ctx.store) {
            return Err(CmdError::Other(crate::command::MISCONF.into()));
        }
        if ro {
            return Err(CmdError::err(
                "Can not execute a script with write flag using *_ro command.",
            ));
        }
        if script_flags & flags::ALLOW_OOM == 0 && over_maxmemory(ctx) {
            return Err(CmdError::Oom);
        }
    }
    Ok(())
}

/// Redis's `pre_command_oom_state`: over `maxmemory` with nothing left to evict.
fn over_maxmemory(ctx: &mut Ctx) -> bool {
    ctx.store.config.maxmemory != 0
        && ctx.store.perform_evictions() == crate::keyspace::evict::Evict::Fail
}

/// Runs `func` (an EVAL script or a function) for the calling client: the run state
/// for BUSY, the script's own client, and the script itself propagating nothing but
/// the commands it ran (one MULTI/EXEC unit).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    ctx: &mut Ctx,
    vm: &Vm,
    func: &mlua::Function,
    name: &str,
    script_flags: u32,
    ro: bool,
    keys: &[Bytes],
    args: &[Bytes],
    function: bool,
) -> Reply {
    let oom = over_maxmemory(ctx);
    let run = ctx.store.scripting.run.clone();
    run.begin(function, ctx.store.config.busy_reply_threshold);
    let exec = Exec {
        client: Exec::script_client(ctx.client.db),
        caller_resp: ctx.client.resp,
        read_only: ro || script_flags & flags::NO_WRITES != 0,
        allow_oom: script_flags & flags::ALLOW_OOM != 0,
        oom,
        wrote: false,
        repl: 3,
        run: run.clone(),
        tracking: ctx
            .store
            .tracking
            .get(ctx.client.id)
            .is_some()
            .then(|| (ctx.client.id, keys.to_vec())),
        store: &mut *ctx.store,
    };
    let _ = REPL_NONE;
    let reply = vm.run(exec, func, name, keys, args);
    let shut_down = run.shut_down();
    run.end();
    ctx.prevent_propagation();
    if shut_down {
        // SHUTDOWN NOSAVE from another client stopped it: as Redis, which exits from
        // inside the script, the client gets no reply and nothing is saved at exit
        // (the connection closes on `shutdown_requested`).
        ctx.store.shutdown_requested = true;
        return Reply::Raw(Bytes::new());
    }
    reply
}

const SCRIPT_HELP: &[&str] = &[
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
];

fn script(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    let arity = match sub.as_str() {
        "help" => 2,
        "exists" => -3,
        "flush" => -2,
        "kill" => 2,
        "load" => 3,
        _ => return Err(unknown_sub("script", &args[1])),
    };
    sub_arity("script", &sub, arity, args)?;
    match sub.as_str() {
        "help" => Ok(help_reply("script", SCRIPT_HELP)),
        "exists" => Ok(Reply::Array(
            args[2..]
                .iter()
                .map(|s| {
                    let sha = String::from_utf8_lossy(s).to_ascii_lowercase();
                    Reply::Int(ctx.store.scripting.scripts.contains_key(&sha) as i64)
                })
                .collect(),
        )),
        "flush" => {
            match args.get(2) {
                None => {}
                Some(m) if args.len() == 3 && (eq_ic(m, "sync") || eq_ic(m, "async")) => {}
                Some(_) => {
                    return Err(CmdError::err("SCRIPT FLUSH only support SYNC|ASYNC option"))
                }
            }
            ctx.store.scripting.scripts.clear();
            ctx.store.scripting.eval_vm = None;
            Ok(Reply::OK)
        }
        "kill" => Ok(ctx.store.scripting.run.kill(true)),
        _ => {
            let body = &args[2];
            let sha = sha1_hex(body);
            if !ctx.store.scripting.scripts.contains_key(&sha) {
                if let Some((_, len)) = parse_shebang(body).map_err(CmdError::Other)? {
                    let _ = len;
                }
                let mut vm = take_vm(ctx)?;
                let code = match parse_shebang(body) {
                    Ok(Some((_, len))) => body.slice(len..),
                    _ => body.clone(),
                };
                let r = vm.compile(&sha, &code);
                ctx.store.scripting.eval_vm = Some(vm);
                r.map_err(CmdError::Other)?;
                ctx.store.scripting.scripts.insert(
                    sha.clone(),
                    Script {
                        body: super::own(body),
                    },
                );
            }
            Ok(Reply::text(sha))
        }
    }
}
