//! Consumer groups (`t_stream.c`): XGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM and
//! XINFO. Reading through a group (XREADGROUP) is in `streams.rs`, beside XREAD.

use super::int_arg;
use super::streams::{
    consumer_of, entry_reply, read_stream, setid_replay, strict_id, write_stream, xclaim_replay,
};
use super::subcommand::help_reply;
use crate::command::{CommandSpec, Ctx, DENYOOM, FAST, READONLY, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::keyspace::notify;
use crate::net::reply::Reply;
use crate::types::stream::{Group, Pending, Stream, StreamId, INVALID_ENTRIES_READ};
use crate::types::Value;
use crate::util::eq_ic;
use bytes::Bytes;

/// The command table rows of this family.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("xgroup", -2, WRITE | DENYOOM, (2, 2, 1), xgroup),
        CommandSpec::new("xack", -4, WRITE | FAST, (1, 1, 1), xack),
        CommandSpec::new("xpending", -3, READONLY, (1, 1, 1), xpending),
        CommandSpec::new("xclaim", -6, WRITE | FAST, (1, 1, 1), xclaim),
        CommandSpec::new("xautoclaim", -6, WRITE | FAST, (1, 1, 1), xautoclaim),
        CommandSpec::new("xinfo", -2, READONLY, (2, 2, 1), xinfo),
    ]
}

fn nogroup(text: String) -> CmdError {
    CmdError::Other(format!("NOGROUP {text}"))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `addReplySubcommandSyntaxError`.
fn sub_syntax(container: &str, sub: &[u8]) -> CmdError {
    let s: String = lossy(sub).chars().take(128).collect();
    CmdError::err(format!(
        "unknown subcommand or wrong number of arguments for '{s}'. Try {container} HELP."
    ))
}

/// Subcommand arities, checked first as Redis's command table does.
const XGROUP_SUBS: &[(&str, i32)] = &[
    ("create", -5),
    ("setid", -5),
    ("destroy", 4),
    ("createconsumer", 5),
    ("delconsumer", 5),
    ("help", 2),
];

const XINFO_SUBS: &[(&str, i32)] = &[("stream", -3), ("groups", 3), ("consumers", 4), ("help", 2)];

fn xgroup(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let sub = super::subcommand::subcommand("xgroup", XGROUP_SUBS, args)?;
    if sub == "help" {
        return Ok(help_reply(
            "xgroup",
            &[
                "CREATE <key> <groupname> <id|$> [option]",
                "    Create a new consumer group. Options are:",
                "    * MKSTREAM",
                "      Create the empty stream if it does not exist.",
                "    * ENTRIESREAD entries_read",
                "      Set the group's entries_read counter (internal use).",
                "CREATECONSUMER <key> <groupname> <consumer>",
                "    Create a new consumer in the specified group.",
                "DELCONSUMER <key> <groupname> <consumer>",
                "    Remove the specified consumer.",
                "DESTROY <key> <groupname>",
                "    Remove the specified group.",
                "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
                "    Set the current group ID and entries_read counter.",
            ],
        ));
    }
    let opt = &args[1];
    let key = &args[2];
    let gname = &args[3];
    let mut mkstream = false;
    let mut entries_read = INVALID_ENTRIES_READ;
    let (create, setid) = (sub == "create", sub == "setid");
    if args.len() > 5 && (create || setid) {
        let mut i = 5;
        while i < args.len() {
            if create && eq_ic(&args[i], "mkstream") {
                mkstream = true;
                i += 1;
            } else if eq_ic(&args[i], "entriesread") && i + 1 < args.len() {
                entries_read = int_arg(&args[i + 1])?;
                if entries_read < 0 && entries_read != INVALID_ENTRIES_READ {
                    return Err(CmdError::err(
                        "value for ENTRIESREAD must be positive or -1",
                    ));
                }
                i += 2;
            } else {
                return Err(sub_syntax("XGROUP", opt));
            }
        }
    }
    let exists = read_stream(ctx, key)?.is_some();
    if !mkstream && !exists {
        return Err(CmdError::err(
            "The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
        ));
    }
    let has_group = read_stream(ctx, key)?.is_some_and(|s| s.groups.contains_key(gname));
    if exists && !has_group && matches!(sub, "setid" | "createconsumer" | "delconsumer") {
        return Err(nogroup(format!(
            "No such consumer group '{}' for key name '{}'",
            lossy(gname),
            lossy(key)
        )));
    }
    let now = ctx.now();
    match sub {
        "create" if args.len() <= 8 => {
            let id = if &args[4][..] == b"$" {
                read_stream(ctx, key)?.map_or(StreamId::MIN, |s| s.last_id)
            } else {
                strict_id(&args[4])?
            };
            if !exists {
                ctx.db()
                    .insert(super::own(key), Value::Stream(Box::default()), now);
            }
            let Some(s) = write_stream(ctx, key)? else {
                return Ok(Reply::Nil);
            };
            if s.groups.contains_key(gname) {
                return Err(CmdError::Other(
                    "BUSYGROUP Consumer Group name already exists".into(),
                ));
            }
            s.groups.insert(
                super::own(gname),
                Group {
                    last_id: id,
                    entries_read,
                    ..Group::default()
                },
            );
            // A stream made by MKSTREAM is a new key, which WATCH sees; a group
            // added to an existing stream is not.
            if exists {
                ctx.key_event_unwatched(notify::STREAM, "xgroup-create", key);
            } else {
                ctx.key_event(notify::STREAM, "xgroup-create", key);
            }
            Ok(Reply::OK)
        }
        "setid" if args.len() == 5 || args.len() == 7 => {
            let Some(s) = write_stream(ctx, key)? else {
                return Ok(Reply::Nil);
            };
            let id = if &args[4][..] == b"$" {
                s.last_id
            } else {
                super::streams::parse_id(&args[4], 0, false, None)?
            };
            if let Some(g) = s.groups.get_mut(gname) {
                g.last_id = id;
                g.entries_read = entries_read;
            }
            ctx.key_event_unwatched(notify::STREAM, "xgroup-setid", key);
            Ok(Reply::OK)
        }
        "destroy" => {
            let Some(s) = write_stream(ctx, key)? else {
                return Ok(Reply::Int(0));
            };
            if s.groups.remove(gname).is_none() {
                return Ok(Reply::Int(0));
            }
            // Through the write path, which also wakes the group's parked readers:
            // they are released with NOGROUP.
            ctx.key_event_unwatched(notify::STREAM, "xgroup-destroy", key);
            Ok(Reply::Int(1))
        }
        "createconsumer" => {
            let Some(s) = write_stream(ctx, key)? else {
                return Ok(Reply::Int(0));
            };
            let Some(g) = s.groups.get_mut(gname) else {
                return Ok(Reply::Int(0));
            };
            let (_, created) = consumer_of(g, &args[4], now);
            if created {
                ctx.key_event_unwatched(notify::STREAM, "xgroup-createconsumer", key);
            }
            Ok(Reply::Int(created as i64))
        }
        "delconsumer" => {
            let Some(s) = write_stream(ctx, key)? else {
                return Ok(Reply::Int(0));
            };
            let Some(g) = s.groups.get_mut(gname) else {
                return Ok(Reply::Int(0));
            };
            let Some(c) = g.consumers.remove(&args[4]) else {
                return Ok(Reply::Int(0));
            };
            for id in &c.pel {
                g.pel.remove(id);
            }
            ctx.key_event_unwatched(notify::STREAM, "xgroup-delconsumer", key);
            Ok(Reply::Int(c.pel.len() as i64))
        }
        _ => Err(sub_syntax("XGROUP", opt)),
    }
}

fn xack(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let has = read_stream(ctx, key)?.is_some_and(|s| s.groups.contains_key(&args[2]));
    if !has {
        return Ok(Reply::Int(0));
    }
    let ids = args[3..]
        .iter()
        .map(|a| strict_id(a))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(g) = write_stream(ctx, key)?.and_then(|s| s.groups.get_mut(&args[2])) else {
        return Ok(Reply::Int(0));
    };
    let mut acked = 0;
    for id in ids {
        if let Some(p) = g.pel.remove(&id) {
            if let Some(c) = g.consumers.get_mut(&p.consumer) {
                c.pel.remove(&id);
            }
            acked += 1;
        }
    }
    if acked > 0 {
        // No notification (Redis sends none), but the write path sees the change.
        ctx.key_event_unwatched(0, "xack", key);
    }
    Ok(Reply::Int(acked))
}

/// An interval bound as XPENDING and XAUTOCLAIM take it.
fn bound(b: &[u8], missing_seq: u64, start: bool) -> Result<StreamId, CmdError> {
    if b.len() > 1 && b[0] == b'(' {
        let id = super::streams::parse_id(&b[1..], missing_seq, true, None)?;
        if start {
            id.incr()
                .ok_or_else(|| CmdError::err("invalid start ID for the interval"))
        } else {
            id.decr()
                .ok_or_else(|| CmdError::err("invalid end ID for the interval"))
        }
    } else {
        super::streams::parse_id(b, missing_seq, false, None)
    }
}

fn xpending(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let argc = args.len();
    let justinfo = argc == 3;
    if argc != 3 && !(6..=9).contains(&argc) {
        return Err(CmdError::Syntax);
    }
    let mut range = None;
    let mut minidle: i64 = 0;
    let mut consumer: Option<&Bytes> = None;
    if argc >= 6 {
        let mut at = 3;
        if eq_ic(&args[3], "idle") {
            minidle = int_arg(&args[4])?;
            if argc < 8 {
                return Err(CmdError::Syntax);
            }
            at += 2;
        }
        let count = int_arg(&args[at + 2])?.max(0);
        let start = bound(&args[at], 0, true)?;
        let end = bound(&args[at + 1], u64::MAX, false)?;
        consumer = args.get(at + 3);
        range = Some((start, end, count));
    }
    let key = &args[1];
    let gname = &args[2];
    let now = ctx.now();
    let s = read_stream(ctx, key)?;
    let Some(g) = s.and_then(|s| s.groups.get(gname)) else {
        return Err(nogroup(format!(
            "No such key '{}' or consumer group '{}'",
            lossy(key),
            lossy(gname)
        )));
    };
    if justinfo {
        let (Some(first), Some(last)) = (g.pel.keys().next(), g.pel.keys().next_back()) else {
            return Ok(Reply::Array(vec![
                Reply::Int(0),
                Reply::Nil,
                Reply::Nil,
                Reply::NilArray,
            ]));
        };
        let per: Vec<Reply> = g
            .consumers
            .iter()
            .filter(|(_, c)| !c.pel.is_empty())
            .map(|(n, c)| {
                Reply::Array(vec![
                    Reply::Bulk(n.clone()),
                    Reply::Bulk(Bytes::from(c.pel.len().to_string())),
                ])
            })
            .collect();
        return Ok(Reply::Array(vec![
            Reply::Int(g.pel.len() as i64),
            Reply::Bulk(first.to_bytes()),
            Reply::Bulk(last.to_bytes()),
            Reply::Array(per),
        ]));
    }
    let Some((start, end, mut count)) = range else {
        return Err(CmdError::Syntax);
    };
    let ids: Vec<StreamId> = match consumer {
        Some(name) => match g.consumers.get(name) {
            Some(c) => c.pel.range(start..).copied().collect(),
            None => return Ok(Reply::Array(Vec::new())),
        },
        None => g.pel.range(start..).map(|(id, _)| *id).collect(),
    };
    let mut out = Vec::new();
    for id in ids {
        if count == 0 || id > end {
            break;
        }
        let Some(p) = g.pel.get(&id) else { continue };
        let idle = now as i64 - p.delivery_time as i64;
        if minidle != 0 && idle < minidle {
            continue;
        }
        count -= 1;
        out.push(Reply::Array(vec![
            Reply::Bulk(id.to_bytes()),
            Reply::Bulk(p.consumer.clone()),
            Reply::Int(idle.max(0)),
            Reply::Int(p.delivery_count as i64),
        ]));
    }
    Ok(Reply::Array(out))
}

/// Gives a pending entry to `cname` (creating the consumer), as XCLAIM and
/// XAUTOCLAIM do; returns the updated NACK.
fn claim_one(
    g: &mut Group,
    id: StreamId,
    cname: &Bytes,
    now: u64,
    delivery_time: u64,
    retrycount: Option<u64>,
    justid: bool,
) -> Option<Pending> {
    let old = g.pel.get(&id)?.consumer.clone();
    if old != *cname {
        if let Some(c) = g.consumers.get_mut(&old) {
            c.pel.remove(&id);
        }
    }
    let (c, _) = consumer_of(g, cname, now);
    c.seen_time = now;
    c.pel.insert(id);
    let p = g.pel.get_mut(&id)?;
    p.delivery_time = delivery_time;
    match retrycount {
        Some(n) => p.delivery_count = n,
        None if !justid => p.delivery_count += 1,
        None => {}
    }
    p.consumer = cname.clone();
    Some(p.clone())
}

fn xclaim(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let gname = &args[2];
    let cname = super::own(&args[3]);
    let has = read_stream(ctx, key)?.is_some_and(|s| s.groups.contains_key(gname));
    if !has {
        return Err(nogroup(format!(
            "No such key '{}' or consumer group '{}'",
            lossy(key),
            lossy(gname)
        )));
    }
    let minidle = crate::util::parse_i64(&args[4])
        .ok_or_else(|| CmdError::err("Invalid min-idle-time argument for XCLAIM"))?
        .max(0);
    let mut ids = Vec::new();
    let mut j = 5;
    while j < args.len() {
        match strict_id(&args[j]) {
            Ok(id) => ids.push(id),
            Err(_) => break,
        }
        j += 1;
    }
    let now = ctx.now();
    let (mut force, mut justid) = (false, false);
    let mut delivery: Option<i64> = None;
    let mut retrycount: Option<i64> = None;
    let mut lastid = StreamId::MIN;
    while j < args.len() {
        let more = args.len() - 1 - j;
        let opt = &args[j][..];
        let int_opt = |b: &[u8], what: &str| {
            crate::util::parse_i64(b)
                .ok_or_else(|| CmdError::err(format!("Invalid {what} option argument for XCLAIM")))
        };
        if eq_ic(opt, "force") {
            force = true;
        } else if eq_ic(opt, "justid") {
            justid = true;
        } else if eq_ic(opt, "idle") && more > 0 {
            j += 1;
            delivery = Some(now as i64 - int_opt(&args[j], "IDLE")?);
        } else if eq_ic(opt, "time") && more > 0 {
            j += 1;
            delivery = Some(int_opt(&args[j], "TIME")?);
        } else if eq_ic(opt, "retrycount") && more > 0 {
            j += 1;
            retrycount = Some(int_opt(&args[j], "RETRYCOUNT")?);
        } else if eq_ic(opt, "lastid") && more > 0 {
            j += 1;
            lastid = strict_id(&args[j])?;
        } else {
            return Err(CmdError::err(format!(
                "Unrecognized XCLAIM option '{}'",
                lossy(opt)
            )));
        }
        j += 1;
    }
    let delivery_time = match delivery {
        Some(t) if t >= 0 && t <= now as i64 => t as u64,
        _ => now,
    };
    let propagating = ctx.propagating();
    let Some(s) = write_stream(ctx, key)? else {
        return Ok(Reply::Array(Vec::new()));
    };
    let exists: Vec<Option<Vec<Bytes>>> = ids.iter().map(|id| s.get(*id)).collect();
    let Some(g) = s.groups.get_mut(gname) else {
        return Ok(Reply::Array(Vec::new()));
    };
    let mut propagate_last = false;
    if lastid > g.last_id {
        g.last_id = lastid;
        propagate_last = true;
    }
    let mut also = Vec::new();
    let mut out = Vec::new();
    let mut changed = propagate_last;
    let mut created = false;
    for (id, fv) in ids.iter().copied().zip(exists) {
        let Some(fv) = fv else {
            // Gone from the stream: its pending entry goes too.
            if let Some(p) = g.pel.remove(&id) {
                if let Some(c) = g.consumers.get_mut(&p.consumer) {
                    c.pel.remove(&id);
                }
                if propagating {
                    also.push(xclaim_replay(key, gname, g, id, &p));
                }
                propagate_last = false;
                changed = true;
            }
            continue;
        };
        let mut forced = false;
        if force && !g.pel.contains_key(&id) {
            g.pel.insert(
                id,
                Pending {
                    delivery_time: now,
                    delivery_count: 1,
                    consumer: Bytes::new(),
                },
            );
            forced = true;
        }
        let Some(p) = g.pel.get(&id) else { continue };
        if !forced && minidle != 0 && (now as i64 - p.delivery_time as i64) < minidle {
            continue;
        }
        created |= !g.consumers.contains_key(&cname);
        let retry = retrycount.map(|n| n as u64);
        let Some(nack) = claim_one(g, id, &cname, now, delivery_time, retry, justid) else {
            continue;
        };
        out.push(if justid {
            Reply::Bulk(id.to_bytes())
        } else {
            entry_reply((id, fv))
        });
        if propagating {
            also.push(xclaim_replay(key, gname, g, id, &nack));
        }
        propagate_last = false;
        changed = true;
    }
    if propagate_last && propagating {
        also.push(setid_replay(key, gname, g));
    }
    ctx.prevent_propagation();
    for a in also {
        ctx.also_propagate(a);
    }
    if created {
        ctx.key_event_unwatched(notify::STREAM, "xgroup-createconsumer", key);
    }
    if changed {
        ctx.key_event_unwatched(0, "xclaim", key);
    }
    Ok(Reply::Array(out))
}

fn xautoclaim(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let gname = &args[2];
    let cname = super::own(&args[3]);
    let minidle = crate::util::parse_i64(&args[4])
        .ok_or_else(|| CmdError::err("Invalid min-idle-time argument for XAUTOCLAIM"))?
        .max(0);
    let start = bound(&args[5], 0, true)?;
    let mut count: i64 = 100;
    let mut justid = false;
    let mut j = 6;
    while j < args.len() {
        let more = args.len() - 1 - j;
        if eq_ic(&args[j], "count") && more > 0 {
            let max = i64::MAX / 16;
            count = match crate::util::parse_i64(&args[j + 1]) {
                Some(n) if (1..=max).contains(&n) => n,
                _ => return Err(CmdError::err("COUNT must be > 0")),
            };
            j += 1;
        } else if eq_ic(&args[j], "justid") {
            justid = true;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    let has = read_stream(ctx, key)?.is_some_and(|s| s.groups.contains_key(gname));
    if !has {
        return Err(nogroup(format!(
            "No such key '{}' or consumer group '{}'",
            lossy(key),
            lossy(gname)
        )));
    }
    let now = ctx.now();
    let propagating = ctx.propagating();
    let Some(s) = write_stream(ctx, key)? else {
        return Ok(Reply::Nil);
    };
    let stream: &Stream = s;
    let candidates: Vec<StreamId> = match stream.groups.get(gname) {
        Some(g) => g.pel.range(start..).map(|(id, _)| *id).collect(),
        None => Vec::new(),
    };
    let mut attempts = count.saturating_mul(10);
    let mut claimed = Vec::new();
    let mut deleted = Vec::new();
    let mut also = Vec::new();
    let mut created = false;
    let mut next = 0;
    while attempts > 0 && count > 0 && next < candidates.len() {
        attempts -= 1;
        let id = candidates[next];
        next += 1;
        let fv = s.get(id);
        let Some(g) = s.groups.get_mut(gname) else {
            break;
        };
        let Some(fv) = fv else {
            if let Some(p) = g.pel.remove(&id) {
                if let Some(c) = g.consumers.get_mut(&p.consumer) {
                    c.pel.remove(&id);
                }
                if propagating {
                    also.push(xclaim_replay(key, gname, g, id, &p));
                }
            }
            deleted.push(Reply::Bulk(id.to_bytes()));
            count -= 1;
            continue;
        };
        let Some(p) = g.pel.get(&id) else { continue };
        if minidle != 0 && (now as i64 - p.delivery_time as i64) < minidle {
            continue;
        }
        created |= !g.consumers.contains_key(&cname);
        let Some(nack) = claim_one(g, id, &cname, now, now, None, justid) else {
            continue;
        };
        claimed.push(if justid {
            Reply::Bulk(id.to_bytes())
        } else {
            entry_reply((id, fv))
        });
        count -= 1;
        if propagating {
            also.push(xclaim_replay(key, gname, g, id, &nack));
        }
    }
    let cursor = candidates.get(next).copied().unwrap_or(StreamId::MIN);
    let changed = !claimed.is_empty() || !deleted.is_empty();
    ctx.prevent_propagation();
    for a in also {
        ctx.also_propagate(a);
    }
    if created {
        ctx.key_event_unwatched(notify::STREAM, "xgroup-createconsumer", key);
    }
    if changed {
        ctx.key_event_unwatched(0, "xautoclaim", key);
    }
    Ok(Reply::Array(vec![
        Reply::Bulk(cursor.to_bytes()),
        Reply::Array(claimed),
        Reply::Array(deleted),
    ]))
}

fn lag_reply(s: &Stream, g: &Group) -> Reply {
    s.group_lag(g).map_or(Reply::Nil, Reply::Int)
}

fn entries_read_reply(g: &Group) -> Reply {
    if g.entries_read == INVALID_ENTRIES_READ {
        Reply::Nil
    } else {
        Reply::Int(g.entries_read)
    }
}

fn field(name: &'static str) -> Reply {
    Reply::Bulk(Bytes::from_static(name.as_bytes()))
}

fn xinfo(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let sub = super::subcommand::subcommand("xinfo", XINFO_SUBS, args)?;
    if sub == "help" {
        return Ok(help_reply(
            "xinfo",
            &[
                "CONSUMERS <key> <groupname>",
                "    Show consumers of <groupname>.",
                "GROUPS <key>",
                "    Show the stream consumer groups.",
                "STREAM <key> [FULL [COUNT <count>]",
                "    Show information about the stream.",
            ],
        ));
    }
    let key = &args[2];
    let now = ctx.now();
    let Some(s) = read_stream(ctx, key)? else {
        return Err(CmdError::NoSuchKey);
    };
    match sub {
        "consumers" => {
            let Some(g) = s.groups.get(&args[3]) else {
                return Err(nogroup(format!(
                    "No such consumer group '{}' for key name '{}'",
                    lossy(&args[3]),
                    lossy(key)
                )));
            };
            Ok(Reply::Array(
                g.consumers
                    .iter()
                    .map(|(n, c)| {
                        Reply::Map(vec![
                            (field("name"), Reply::Bulk(n.clone())),
                            (field("pending"), Reply::Int(c.pel.len() as i64)),
                            (
                                field("idle"),
                                Reply::Int((now as i64 - c.seen_time as i64).max(0)),
                            ),
                        ])
                    })
                    .collect(),
            ))
        }
        "groups" => Ok(Reply::Array(
            s.groups
                .iter()
                .map(|(n, g)| {
                    Reply::Map(vec![
                        (field("name"), Reply::Bulk(n.clone())),
                        (field("consumers"), Reply::Int(g.consumers.len() as i64)),
                        (field("pending"), Reply::Int(g.pel.len() as i64)),
                        (
                            field("last-delivered-id"),
                            Reply::Bulk(g.last_id.to_bytes()),
                        ),
                        (field("entries-read"), entries_read_reply(g)),
                        (field("lag"), lag_reply(s, g)),
                    ])
                })
                .collect(),
        )),
        _ => xinfo_stream(s, &args[1], &args[3..]),
    }
}

fn xinfo_stream(s: &Stream, sub: &[u8], opts: &[Bytes]) -> CmdResult {
    let mut count: i64 = 10;
    let full = match opts.len() {
        0 => false,
        1 | 3 => {
            if !eq_ic(&opts[0], "full") {
                return Err(sub_syntax("XINFO", sub));
            }
            if opts.len() == 3 {
                if !eq_ic(&opts[1], "count") {
                    return Err(sub_syntax("XINFO", sub));
                }
                count = int_arg(&opts[2])?;
                if count < 0 {
                    count = 10;
                }
            }
            true
        }
        _ => return Err(sub_syntax("XINFO", sub)),
    };
    let mut m = vec![
        (field("length"), Reply::Int(s.len() as i64)),
        (field("radix-tree-keys"), Reply::Int(s.node_count() as i64)),
        (field("radix-tree-nodes"), Reply::Int(s.rax_nodes() as i64)),
        (
            field("last-generated-id"),
            Reply::Bulk(s.last_id.to_bytes()),
        ),
        (
            field("max-deleted-entry-id"),
            Reply::Bulk(s.max_deleted_id.to_bytes()),
        ),
        (field("entries-added"), Reply::Int(s.entries_added as i64)),
        (
            field("recorded-first-entry-id"),
            Reply::Bulk(s.first_id.to_bytes()),
        ),
    ];
    if !full {
        m.push((field("groups"), Reply::Int(s.groups.len() as i64)));
        let edge = |last| s.edge(last).map_or(Reply::Nil, entry_reply);
        m.push((field("first-entry"), edge(false)));
        m.push((field("last-entry"), edge(true)));
        return Ok(Reply::Map(m));
    }
    let n = count as usize;
    m.push((
        field("entries"),
        super::streams::entries_reply(s.range(StreamId::MIN, StreamId::MAX, n, false)),
    ));
    let take = if n == 0 { usize::MAX } else { n };
    let groups = s
        .groups
        .iter()
        .map(|(name, g)| {
            let pel = g
                .pel
                .iter()
                .take(take)
                .map(|(id, p)| {
                    Reply::Array(vec![
                        Reply::Bulk(id.to_bytes()),
                        Reply::Bulk(p.consumer.clone()),
                        Reply::Int(p.delivery_time as i64),
                        Reply::Int(p.delivery_count as i64),
                    ])
                })
                .collect();
            let consumers = g
                .consumers
                .iter()
                .map(|(cn, c)| {
                    let cpel = c
                        .pel
                        .iter()
                        .take(take)
                        .filter_map(|id| {
                            let p = g.pel.get(id)?;
                            Some(Reply::Array(vec![
                                Reply::Bulk(id.to_bytes()),
                                Reply::Int(p.delivery_time as i64),
                                Reply::Int(p.delivery_count as i64),
                            ]))
                        })
                        .collect();
                    Reply::Map(vec![
                        (field("name"), Reply::Bulk(cn.clone())),
                        (field("seen-time"), Reply::Int(c.seen_time as i64)),
                        (field("pel-count"), Reply::Int(c.pel.len() as i64)),
                        (field("pending"), Reply::Array(cpel)),
                    ])
                })
                .collect();
            Reply::Map(vec![
                (field("name"), Reply::Bulk(name.clone())),
                (
                    field("last-delivered-id"),
                    Reply::Bulk(g.last_id.to_bytes()),
                ),
                (field("entries-read"), entries_read_reply(g)),
                (field("lag"), lag_reply(s, g)),
                (field("pel-count"), Reply::Int(g.pel.len() as i64)),
                (field("pending"), Reply::Array(pel)),
                (field("consumers"), Reply::Array(consumers)),
            ])
        })
        .collect();
    m.push((field("groups"), Reply::Array(groups)));
    Ok(Reply::Map(m))
}
