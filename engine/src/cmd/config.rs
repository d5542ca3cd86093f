//! CONFIG GET/SET/RESETSTAT/REWRITE (`config.c`) over the engine's settings.

use super::subcommand::{help_reply, subcommand};
use crate::command::{CommandSpec, Ctx};
use crate::config::{parse_memory, EngineConfig};
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;
use crate::util::{glob_match, lower};
use bytes::Bytes;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![CommandSpec::new("config", -2, 0, (0, 0, 0), config)]
}

const CONFIG_SUBS: &[(&str, i32)] = &[
    ("get", -3),
    ("set", -4),
    ("resetstat", 2),
    ("rewrite", 2),
    ("help", 2),
];

/// Old names Redis 7.0 still accepts, mapped to the current ones.
const CONFIG_ALIASES: &[(&str, &str)] = &[
    ("hash-max-ziplist-entries", "hash-max-listpack-entries"),
    ("hash-max-ziplist-value", "hash-max-listpack-value"),
    ("zset-max-ziplist-entries", "zset-max-listpack-entries"),
    ("zset-max-ziplist-value", "zset-max-listpack-value"),
    ("list-max-ziplist-size", "list-max-listpack-size"),
];

/// Parameters CONFIG SET refuses to change at run time.
const CONFIG_IMMUTABLE: &[&str] = &["databases", "bind", "port", "io-threads"];

pub(crate) fn canonical(name: &str) -> &str {
    CONFIG_ALIASES
        .iter()
        .find(|(a, _)| *a == name)
        .map_or(name, |(_, c)| c)
}

fn config(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    match subcommand("config", CONFIG_SUBS, args)? {
        "get" => config_get(ctx, args),
        "set" => config_set(ctx, args),
        "resetstat" => {
            let dirty = ctx.store.stats.dirty;
            ctx.store.stats = Default::default();
            ctx.store.stats.dirty = dirty;
            Ok(Reply::OK)
        }
        "rewrite" => Err(CmdError::err("The server is running without a config file")),
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

fn config_get(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let cfg = &ctx.store.config;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |name: String, value: String| {
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, value));
        }
    };
    let names = EngineConfig::PARAMS
        .iter()
        .chain(CONFIG_ALIASES.iter().map(|(a, _)| a));
    for pat in &args[2..] {
        let is_glob = pat.iter().any(|c| matches!(c, b'*' | b'?' | b'['));
        if !is_glob {
            // An exact name answers under the spelling the client used, as Redis does.
            if let Some(v) = cfg.get(canonical(&lower(pat))) {
                push(String::from_utf8_lossy(pat).into_owned(), v);
            }
            continue;
        }
        for n in names.clone() {
            if glob_match(pat, n.as_bytes(), true) {
                if let Some(v) = cfg.get(canonical(n)) {
                    push(n.to_string(), v);
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

/// Checks a value the way Redis's typed configs do, and returns the form the engine's
/// setter expects (memory values converted to plain bytes).
pub(crate) fn config_check(name: &str, value: &str) -> Result<String, String> {
    fn int(v: &str, min: i64, max: i64) -> Result<String, String> {
        let n = crate::util::parse_i64(v.as_bytes())
            .ok_or_else(|| "argument couldn't be parsed into an integer".to_string())?;
        if n < min || n > max {
            return Err(format!(
                "argument must be between {min} and {max} inclusive"
            ));
        }
        Ok(n.to_string())
    }
    fn mem(v: &str, min: u64) -> Result<String, String> {
        if v.starts_with('-') {
            return Err("argument must be a memory value".into());
        }
        let n = parse_memory(v).map_err(|e| e.0)?;
        if n < min {
            return Err(format!(
                "argument must be between {min} and {} inclusive",
                i64::MAX
            ));
        }
        Ok(n.to_string())
    }
    match name {
        "maxclients" => int(value, 1, u32::MAX as i64),
        "hz" | "timeout" => int(value, 0, i32::MAX as i64),
        "hash-max-listpack-entries" | "set-max-intset-entries" | "zset-max-listpack-entries" => {
            int(value, 0, i64::MAX)
        }
        "list-max-listpack-size" => int(value, i32::MIN as i64, i32::MAX as i64),
        "hash-max-listpack-value" | "zset-max-listpack-value" | "maxmemory" => mem(value, 0),
        "proto-max-bulk-len" | "client-query-buffer-limit" => mem(value, 1024 * 1024),
        "notify-keyspace-events" => crate::notify::parse_flags(value)
            .map(|_| value.to_string())
            .ok_or_else(|| "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".into()),
        "appendonly" => {
            if value.eq_ignore_ascii_case("yes") || value.eq_ignore_ascii_case("no") {
                Ok(value.to_ascii_lowercase())
            } else {
                Err("argument must be 'yes' or 'no'".into())
            }
        }
        _ => Ok(value.to_string()),
    }
}

fn config_set(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if !args.len().is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    for p in args[2..].chunks(2) {
        let given = String::from_utf8_lossy(&p[0]).into_owned();
        let name = canonical(&given.to_ascii_lowercase()).to_string();
        if !EngineConfig::PARAMS.contains(&name.as_str()) {
            return Err(CmdError::err(format!(
                "Unknown option or number of arguments for CONFIG SET - '{given}'"
            )));
        }
        let failed = |msg: &str| {
            CmdError::err(format!(
                "CONFIG SET failed (possibly related to argument '{given}') - {msg}"
            ))
        };
        if CONFIG_IMMUTABLE.contains(&name.as_str()) {
            return Err(failed("can't set immutable config"));
        }
        if pairs.iter().any(|(n, _)| *n == name) {
            return Err(failed("duplicate parameter"));
        }
        pairs.push((name, String::from_utf8_lossy(&p[1]).into_owned()));
    }
    // All or nothing, as Redis: apply to a copy and keep it only if every value is good.
    let mut cfg = ctx.store.config.clone();
    for (i, (name, value)) in pairs.iter().enumerate() {
        let given = String::from_utf8_lossy(&args[2 + 2 * i]).into_owned();
        let failed = |msg: String| {
            CmdError::err(format!(
                "CONFIG SET failed (possibly related to argument '{given}') - {msg}"
            ))
        };
        let v = config_check(name, value).map_err(failed)?;
        cfg.set(name, &v).map_err(|e| failed(e.0))?;
    }
    let notify_changed = cfg.notify_keyspace_events != ctx.store.config.notify_keyspace_events;
    ctx.store.config = cfg;
    if notify_changed {
        ctx.store.reload_notify_flags();
    }
    Ok(Reply::OK)
}

// ---------------------------------------------------------------------------------
// MEMORY, OBJECT, DEBUG
