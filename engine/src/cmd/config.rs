//! CONFIG GET/SET/RESETSTAT/REWRITE (`config.c`) over the engine's settings.

use super::subcommand::{help_reply, subcommand};
use crate::command::{CommandSpec, Ctx};
use crate::config::{self, Setting, IMMUTABLE, PROTECTED, SETTINGS};
use crate::error::{CmdError, CmdResult};
use crate::net::reply::Reply;
use crate::util::{glob_match, lower};
use bytes::Bytes;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    // Allowed while loading and on a stale replica, as Redis's CONFIG subcommands.
    vec![CommandSpec::new(
        "config",
        -2,
        crate::command::ADMIN
            | crate::command::NOSCRIPT
            | crate::command::LOADING
            | crate::command::STALE,
        (0, 0, 0),
        config,
    )]
}

const CONFIG_SUBS: &[(&str, i32)] = &[
    ("get", -3),
    ("set", -4),
    ("resetstat", 2),
    ("rewrite", 2),
    ("help", 2),
];

fn config(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    match subcommand("config", CONFIG_SUBS, args)? {
        "get" => config_get(ctx, args),
        "set" => config_set(ctx, args),
        "resetstat" => {
            let dirty = ctx.store.stats.dirty;
            ctx.store.stats = Default::default();
            ctx.store.stats.dirty = dirty;
            ctx.store.observe.reset_stats();
            Ok(Reply::OK)
        }
        "rewrite" => {
            let Some(file) = ctx.store.config_file.clone() else {
                return Err(CmdError::err("The server is running without a config file"));
            };
            config::rewrite::rewrite(&ctx.store.config, &file).map_err(|e| {
                tracing::warn!(file = %file.path.display(), error = %e, "CONFIG REWRITE failed");
                CmdError::err(format!("Rewriting config file: {e}"))
            })?;
            tracing::info!(file = %file.path.display(), "CONFIG REWRITE executed with success");
            Ok(Reply::OK)
        }
        _ => Ok(help_reply(
            "config",
            &[
                "GET <pattern>",
                "    Return parameters matching the glob-like <pattern> and their values.",
                "SET <directive> <value>",
                "    Set the configuration <directive> to <value>.",
                "RESETSTAT",
                "    Reset statistics reported by the INFO command.",
                "REWRITE",
                "    Rewrite the configuration file.",
            ],
        )),
    }
}

/// CONFIG GET: every parameter matching any pattern, each once, as a map. An exact
/// name answers under the spelling the client used, as Redis does.
fn config_get(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let cfg = &ctx.store.config;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |name: String, value: String| {
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, value));
        }
    };
    for pat in &args[2..] {
        let is_glob = pat.iter().any(|c| matches!(c, b'*' | b'?' | b'['));
        if !is_glob {
            if let Some(s) = config::lookup(&lower(pat)) {
                push(String::from_utf8_lossy(pat).into_owned(), s.show(cfg));
            }
            continue;
        }
        for s in SETTINGS.iter().filter(|s| s.in_config()) {
            for name in std::iter::once(&s.name).chain(s.aliases) {
                if glob_match(pat, name.as_bytes(), true) {
                    push(name.to_string(), s.show(cfg));
                }
            }
        }
    }
    Ok(Reply::Map(
        out.into_iter()
            .map(|(n, v)| (Reply::text(n), Reply::text(v)))
            .collect(),
    ))
}

/// CONFIG SET of one or more pairs: all or nothing, with Redis's checks and texts.
fn config_set(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if !args.len().is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    let failed = |given: &str, msg: &str| {
        CmdError::err(format!(
            "CONFIG SET failed (possibly related to argument '{given}') - {msg}"
        ))
    };
    let mut pairs: Vec<(&Setting, String, String)> = Vec::new();
    for p in args[2..].chunks(2) {
        let given = String::from_utf8_lossy(&p[0]).into_owned();
        let Some(s) = config::lookup(&given) else {
            return Err(CmdError::err(format!(
                "Unknown option or number of arguments for CONFIG SET - '{given}'"
            )));
        };
        if s.flags & IMMUTABLE != 0 {
            return Err(failed(&given, "can't set immutable config"));
        }
        if s.flags & PROTECTED != 0 {
            return Err(failed(&given, "can't set protected config"));
        }
        // Redis 7.0 registers an alias as a config of its own: the same name twice
        // is a duplicate, a name and its alias are not.
        if pairs.iter().any(|(_, g, _)| g.eq_ignore_ascii_case(&given)) {
            return Err(failed(&given, "duplicate parameter"));
        }
        pairs.push((s, given, String::from_utf8_lossy(&p[1]).into_owned()));
    }
    // Applied to a copy that replaces the config only if every value is good.
    let mut cfg = ctx.store.config.clone();
    for (s, given, value) in &pairs {
        let v = s.parse(value).map_err(|e| failed(given, &e))?;
        if !(s.put)(&mut cfg, v) {
            return Err(failed(given, "argument is out of range"));
        }
    }
    let previous = std::mem::replace(&mut ctx.store.config, cfg);
    for (s, given, _) in &pairs {
        if let Some(apply) = s.apply {
            apply(ctx.store);
        }
        if let Some(apply) = s.try_apply {
            if let Err(e) = apply(ctx.store) {
                ctx.store.config = previous;
                return Err(failed(given, &e));
            }
        }
    }
    Ok(Reply::OK)
}
