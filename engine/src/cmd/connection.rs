//! Connection commands: PING ECHO SELECT QUIT AUTH HELLO RESET.

use crate::command::{CommandSpec, Ctx, FAST, LOADING, NOSCRIPT, NO_AUTH, NO_QUEUE, STALE, SUB_OK};
use crate::error::{CmdError, CmdResult};
use crate::net::reply::Reply;
use crate::util::eq_ic;
use bytes::Bytes;

/// The Redis version the engine is compatible with, reported by HELLO and INFO.
pub const REDIS_VERSION: &str = "7.0.15";

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("ping", -1, FAST | SUB_OK | STALE, (0, 0, 0), ping),
        CommandSpec::new("echo", 2, FAST | STALE, (0, 0, 0), echo),
        CommandSpec::new("select", 2, FAST | LOADING | STALE, (0, 0, 0), select),
        CommandSpec::new(
            "quit",
            -1,
            NO_AUTH | FAST | SUB_OK | NO_QUEUE | STALE | LOADING | NOSCRIPT,
            (0, 0, 0),
            quit,
        ),
        CommandSpec::new(
            "auth",
            -2,
            NO_AUTH | FAST | STALE | LOADING | NOSCRIPT,
            (0, 0, 0),
            auth,
        ),
        CommandSpec::new(
            "hello",
            -1,
            NO_AUTH | FAST | STALE | LOADING | NOSCRIPT,
            (0, 0, 0),
            hello,
        ),
        CommandSpec::new(
            "reset",
            1,
            NO_AUTH | FAST | SUB_OK | NO_QUEUE | STALE | LOADING | NOSCRIPT,
            (0, 0, 0),
            reset,
        ),
    ]
}

fn ping(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if args.len() > 2 {
        return Err(CmdError::Arity("ping".into()));
    }
    if ctx.client.in_pubsub_mode() {
        let payload = args.get(1).cloned().unwrap_or_default();
        return Ok(Reply::Array(vec![
            Reply::text("pong"),
            Reply::Bulk(payload),
        ]));
    }
    Ok(match args.get(1) {
        Some(a) => Reply::Bulk(a.clone()),
        None => Reply::Simple("PONG"),
    })
}

fn echo(_ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Bulk(args[1].clone()))
}

fn select(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let id = crate::util::parse_i64(&args[1]).ok_or(CmdError::NotInteger)?;
    if id < 0 || id as usize >= ctx.store.dbs.len() {
        return Err(CmdError::DbIndex);
    }
    ctx.client.db = id as usize;
    Ok(Reply::OK)
}

fn quit(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    ctx.client.close_after_reply = true;
    Ok(Reply::OK)
}

/// Checks a user name and password against `requirepass`.
fn check_password(ctx: &Ctx, user: &[u8], pass: &[u8]) -> Result<(), CmdError> {
    let ok = match &ctx.store.config.requirepass {
        // Without requirepass the default user has `nopass`: any password works.
        None => user == b"default",
        Some(p) => user == b"default" && p.as_bytes() == pass,
    };
    if ok {
        Ok(())
    } else {
        Err(CmdError::Other(
            "WRONGPASS invalid username-password pair or user is disabled.".into(),
        ))
    }
}

fn auth(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if args.len() > 3 {
        return Err(CmdError::Syntax);
    }
    if args.len() == 2 {
        if ctx.store.config.requirepass.is_none() {
            return Err(CmdError::err(
                "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ));
        }
        check_password(ctx, b"default", &args[1])?;
    } else {
        check_password(ctx, &args[1], &args[2])?;
    }
    ctx.client.authenticated = true;
    Ok(Reply::OK)
}

fn hello(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let mut ver = None;
    let mut i = 1;
    if args.len() >= 2 {
        let v = crate::util::parse_i64(&args[1])
            .ok_or_else(|| CmdError::err("Protocol version is not an integer or out of range"))?;
        if !(2..=3).contains(&v) {
            return Err(CmdError::Other(
                "NOPROTO unsupported protocol version".into(),
            ));
        }
        ver = Some(v as u8);
        i = 2;
    }
    let mut name = None;
    let mut authed = false;
    while i < args.len() {
        let more = args.len() - i - 1;
        if eq_ic(&args[i], "auth") && more >= 2 {
            check_password(ctx, &args[i + 1], &args[i + 2])?;
            authed = true;
            i += 3;
        } else if eq_ic(&args[i], "setname") && more >= 1 {
            let n = &args[i + 1];
            if n.iter().any(|&c| c <= b' ' || c > b'~') {
                return Err(CmdError::err(
                    "Client names cannot contain spaces, newlines or special characters.",
                ));
            }
            name = Some(n.clone());
            i += 2;
        } else {
            return Err(CmdError::err(format!(
                "Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&args[i])
            )));
        }
    }
    if authed {
        ctx.client.authenticated = true;
    }
    if !ctx.client.authenticated {
        return Err(CmdError::Other("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into()));
    }
    if let Some(n) = name {
        ctx.client.name = if n.is_empty() { None } else { Some(n) };
    }
    if let Some(v) = ver {
        ctx.client.resp = v;
    }
    Ok(Reply::Map(vec![
        (Reply::text("server"), Reply::text("redis")),
        (Reply::text("version"), Reply::text(REDIS_VERSION)),
        (Reply::text("proto"), Reply::Int(ctx.client.resp as i64)),
        (Reply::text("id"), Reply::Int(ctx.client.id as i64)),
        (Reply::text("mode"), Reply::text("standalone")),
        (
            Reply::text("role"),
            Reply::text(if ctx.store.repl.is_replica() {
                "replica"
            } else {
                "master"
            }),
        ),
        (Reply::text("modules"), Reply::Array(vec![])),
    ]))
}

fn reset(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let id = ctx.client.id;
    ctx.client.multi = None;
    ctx.client.multi_error = false;
    let watched = std::mem::take(&mut ctx.client.watched);
    ctx.store.watches.unwatch(id, &watched);
    let channels = std::mem::take(&mut ctx.client.channels);
    for c in &channels {
        ctx.store.pubsub.unsubscribe(id, c);
    }
    let patterns = std::mem::take(&mut ctx.client.patterns);
    for p in &patterns {
        ctx.store.pubsub.punsubscribe(id, p);
    }
    // Client-side caching ends too, as Redis's clearClientConnectionState.
    ctx.store.tracking.disable(id);
    ctx.client.db = 0;
    ctx.client.resp = 2;
    ctx.client.name = None;
    ctx.client.no_evict = false;
    // Out of MONITOR mode, replies back on (Redis's `clearClientConnectionState`).
    if std::mem::take(&mut ctx.client.monitor) {
        ctx.store.observe.monitors.retain(|&m| m != id);
    }
    ctx.client.reply_off = false;
    ctx.client.reply_skip_next = false;
    ctx.client.authenticated = ctx.store.config.requirepass.is_none();
    Ok(Reply::Simple("RESET"))
}
