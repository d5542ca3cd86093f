//! Pub/sub commands (`pubsub.c`): SUBSCRIBE UNSUBSCRIBE PSUBSCRIBE PUNSUBSCRIBE
//! PUBLISH PUBSUB.
//!
//! (Un)subscribe commands answer one push per channel, so they return `Reply::Many`;
//! in RESP2 those are plain arrays, in RESP3 `>` pushes, as Redis writes them.

use crate::command::{CommandSpec, Ctx, FAST, LOADING, NOSCRIPT, PUBSUB, STALE, SUB_OK};
use crate::error::{CmdError, CmdResult};
use crate::net::reply::Reply;
use crate::util::eq_ic;
use bytes::Bytes;

use super::own;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    let sub = PUBSUB | NOSCRIPT | LOADING | STALE | SUB_OK;
    vec![
        CommandSpec::new("subscribe", -2, sub, (0, 0, 0), subscribe),
        CommandSpec::new("unsubscribe", -1, sub, (0, 0, 0), unsubscribe),
        CommandSpec::new("psubscribe", -2, sub, (0, 0, 0), psubscribe),
        CommandSpec::new("punsubscribe", -1, sub, (0, 0, 0), punsubscribe),
        CommandSpec::new(
            "publish",
            3,
            PUBSUB | LOADING | STALE | FAST,
            (0, 0, 0),
            publish,
        ),
        CommandSpec::new("pubsub", -2, 0, (0, 0, 0), pubsub),
    ]
}

/// One `[kind, channel-or-nil, count]` push.
fn notice(kind: &str, channel: Option<&Bytes>, count: usize) -> Reply {
    Reply::Push(vec![
        Reply::text(kind),
        channel.map_or(Reply::Nil, |c| Reply::Bulk(c.clone())),
        Reply::Int(count as i64),
    ])
}

/// One reply, or several concatenated.
fn many(mut replies: Vec<Reply>) -> Reply {
    if replies.len() == 1 {
        replies.remove(0)
    } else {
        Reply::Many(replies)
    }
}

fn subscribe(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let id = ctx.client.id;
    let mut out = Vec::with_capacity(args.len() - 1);
    for ch in &args[1..] {
        if !ctx.client.channels.contains(ch) {
            let ch = own(ch);
            ctx.client.channels.insert(ch.clone());
            ctx.store.pubsub.subscribe(id, ch);
        }
        out.push(notice("subscribe", Some(ch), ctx.client.subscriptions()));
    }
    Ok(many(out))
}

fn unsubscribe(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let id = ctx.client.id;
    let targets: Vec<Bytes> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        ctx.client.channels.iter().cloned().collect()
    };
    if targets.is_empty() {
        return Ok(notice("unsubscribe", None, ctx.client.subscriptions()));
    }
    let mut out = Vec::with_capacity(targets.len());
    for ch in &targets {
        if ctx.client.channels.shift_remove(ch) {
            ctx.store.pubsub.unsubscribe(id, ch);
        }
        out.push(notice("unsubscribe", Some(ch), ctx.client.subscriptions()));
    }
    Ok(many(out))
}

fn psubscribe(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let id = ctx.client.id;
    let mut out = Vec::with_capacity(args.len() - 1);
    for pat in &args[1..] {
        if !ctx.client.patterns.contains(pat) {
            let pat = own(pat);
            ctx.client.patterns.insert(pat.clone());
            ctx.store.pubsub.psubscribe(id, pat);
        }
        out.push(notice("psubscribe", Some(pat), ctx.client.subscriptions()));
    }
    Ok(many(out))
}

fn punsubscribe(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let id = ctx.client.id;
    let targets: Vec<Bytes> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        ctx.client.patterns.iter().cloned().collect()
    };
    if targets.is_empty() {
        return Ok(notice("punsubscribe", None, ctx.client.subscriptions()));
    }
    let mut out = Vec::with_capacity(targets.len());
    for pat in &targets {
        if ctx.client.patterns.shift_remove(pat) {
            ctx.store.pubsub.punsubscribe(id, pat);
        }
        out.push(notice(
            "punsubscribe",
            Some(pat),
            ctx.client.subscriptions(),
        ));
    }
    Ok(many(out))
}

fn publish(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(ctx.store.publish(&args[1], &args[2])))
}

const HELP: &[&str] = &[
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
];

/// Subcommands and their Redis arities (`pubsub|name`).
const SUBCOMMANDS: &[(&str, i32)] = &[
    ("channels", -2),
    ("numsub", -2),
    ("numpat", 2),
    ("shardchannels", -2),
    ("shardnumsub", -2),
    ("help", 2),
];

fn pubsub(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let sub = &args[1];
    let Some(&(name, arity)) = SUBCOMMANDS.iter().find(|(n, _)| eq_ic(sub, n)) else {
        return Err(CmdError::err(format!(
            "unknown subcommand '{}'. Try PUBSUB HELP.",
            String::from_utf8_lossy(&sub[..sub.len().min(128)])
        )));
    };
    let argc = args.len() as i32;
    if (arity > 0 && argc != arity) || argc < -arity {
        return Err(CmdError::Arity(format!("pubsub|{name}")));
    }
    let syntax = || {
        CmdError::err(format!(
            "unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
            String::from_utf8_lossy(&sub[..sub.len().min(128)])
        ))
    };
    match name {
        "help" => Ok(Reply::Array(
            HELP.iter()
                .map(|l| Reply::Status((*l).to_string()))
                .collect(),
        )),
        "channels" => {
            if argc > 3 {
                return Err(syntax());
            }
            let pat = args.get(2).map(|p| p.as_ref());
            Ok(Reply::Array(
                ctx.store
                    .pubsub
                    .channels(pat)
                    .into_iter()
                    .map(Reply::Bulk)
                    .collect(),
            ))
        }
        "numsub" => {
            let mut out = Vec::with_capacity((args.len() - 2) * 2);
            for ch in &args[2..] {
                out.push(Reply::Bulk(ch.clone()));
                out.push(Reply::Int(ctx.store.pubsub.numsub(ch) as i64));
            }
            Ok(Reply::Array(out))
        }
        "numpat" => Ok(Reply::Int(ctx.store.pubsub.numpat() as i64)),
        // Shard channels (SSUBSCRIBE) are not implemented, so none is ever active.
        "shardchannels" => {
            if argc > 3 {
                return Err(syntax());
            }
            Ok(Reply::Array(Vec::new()))
        }
        _ => {
            let mut out = Vec::with_capacity((args.len() - 2) * 2);
            for ch in &args[2..] {
                out.push(Reply::Bulk(ch.clone()));
                out.push(Reply::Int(0));
            }
            Ok(Reply::Array(out))
        }
    }
}
