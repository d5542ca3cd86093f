//! Set commands (`t_set.c`), with Redis 7.0's replies, errors and events.

use crate::command::{CommandSpec, Ctx, DENYOOM, FAST, READONLY, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::notify;
use crate::reply::Reply;
use crate::types::{Set, Value};
use crate::util::eq_ic;
use bytes::Bytes;

use super::hashes::{parse_cursor, parse_scan_opts, random_count_arg, scan_reply};
use super::{int_arg, own};

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("sadd", -3, WRITE | DENYOOM | FAST, (1, 1, 1), sadd),
        CommandSpec::new("srem", -3, WRITE | FAST, (1, 1, 1), srem),
        CommandSpec::new("smove", 4, WRITE | FAST, (1, 2, 1), smove),
        CommandSpec::new("sismember", 3, READONLY | FAST, (1, 1, 1), sismember),
        CommandSpec::new("smismember", -3, READONLY | FAST, (1, 1, 1), smismember),
        CommandSpec::new("scard", 2, READONLY | FAST, (1, 1, 1), scard),
        CommandSpec::new("smembers", 2, READONLY, (1, 1, 1), smembers),
        CommandSpec::new("spop", -2, WRITE | FAST, (1, 1, 1), spop),
        CommandSpec::new("srandmember", -2, READONLY, (1, 1, 1), srandmember),
        CommandSpec::new("sinter", -2, READONLY, (1, -1, 1), sinter),
        // Key positions come from numkeys (movablekeys), as COMMAND INFO reports 0 0 0.
        CommandSpec::new("sintercard", -3, READONLY, (0, 0, 0), sintercard),
        CommandSpec::new("sinterstore", -3, WRITE | DENYOOM, (1, -1, 1), sinterstore),
        CommandSpec::new("sunion", -2, READONLY, (1, -1, 1), sunion),
        CommandSpec::new("sunionstore", -3, WRITE | DENYOOM, (1, -1, 1), sunionstore),
        CommandSpec::new("sdiff", -2, READONLY, (1, -1, 1), sdiff),
        CommandSpec::new("sdiffstore", -3, WRITE | DENYOOM, (1, -1, 1), sdiffstore),
        CommandSpec::new("sscan", -3, READONLY, (1, 1, 1), sscan),
    ]
}

/// Read access to a set (`None` when the key is missing).
fn read<'a>(ctx: &'a mut Ctx, key: &[u8]) -> Result<Option<&'a mut Set>, CmdError> {
    let now = ctx.now();
    ctx.db().set_mut(key, now)
}

fn bulks(members: impl IntoIterator<Item = Bytes>) -> Vec<Reply> {
    members.into_iter().map(Reply::Bulk).collect()
}

fn sadd(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (now, max) = (ctx.now(), ctx.intset_max());
    let s = ctx.db().set_or_create(&args[1], now)?;
    let mut added = 0;
    for m in &args[2..] {
        if s.insert(own(m), max) {
            added += 1;
        }
    }
    if added > 0 {
        ctx.key_event(notify::SET, "sadd", &args[1]);
    }
    Ok(Reply::Int(added))
}

fn srem(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    let Some(s) = db.set_mut(&args[1], now)? else {
        return Ok(Reply::Int(0));
    };
    let mut deleted = 0;
    for m in &args[2..] {
        if s.remove(m) {
            deleted += 1;
            if s.is_empty() {
                break;
            }
        }
    }
    let removed = db.remove_if_empty(&args[1]);
    if deleted > 0 {
        ctx.key_event(notify::SET, "srem", &args[1]);
        if removed {
            ctx.key_event(notify::GENERIC, "del", &args[1]);
        }
    }
    Ok(Reply::Int(deleted))
}

fn smove(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (src, dst, m) = (&args[1], &args[2], &args[3]);
    let (now, max) = (ctx.now(), ctx.intset_max());
    let db = ctx.db();
    // A missing source answers 0 before the destination's type is looked at.
    if db.set_mut(src, now)?.is_none() {
        return Ok(Reply::Int(0));
    }
    db.set_mut(dst, now)?;
    if src == dst {
        let has = db.set_mut(src, now)?.is_some_and(|s| s.contains(m));
        return Ok(Reply::Int(has as i64));
    }
    if !db.set_mut(src, now)?.is_some_and(|s| s.remove(m)) {
        return Ok(Reply::Int(0));
    }
    let src_removed = db.remove_if_empty(src);
    let added = db.set_or_create(dst, now)?.insert(own(m), max);
    ctx.key_event(notify::SET, "srem", src);
    if src_removed {
        ctx.key_event(notify::GENERIC, "del", src);
    }
    if added {
        ctx.key_event(notify::SET, "sadd", dst);
    }
    Ok(Reply::Int(1))
}

fn sismember(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(
        read(ctx, &args[1])?.is_some_and(|s| s.contains(&args[2])) as i64,
    ))
}

fn smismember(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let s = read(ctx, &args[1])?;
    let s = s.as_deref();
    Ok(Reply::Array(
        args[2..]
            .iter()
            .map(|m| Reply::Int(s.is_some_and(|s| s.contains(m)) as i64))
            .collect(),
    ))
}

fn scard(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(
        read(ctx, &args[1])?.map_or(0, |s| s.len()) as i64
    ))
}

fn smembers(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Set(
        read(ctx, &args[1])?.map_or_else(Vec::new, |s| bulks(s.iter())),
    ))
}

fn spop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let now = ctx.now();
    let popped = match args.len() {
        2 => {
            let db = ctx.db();
            let Some(m) = db.set_mut(key, now)?.and_then(|s| s.pop_random()) else {
                return Ok(Reply::Nil);
            };
            let removed = db.remove_if_empty(key);
            ctx.key_event(notify::SET, "spop", key);
            if removed {
                ctx.key_event(notify::GENERIC, "del", key);
            }
            return Ok(Reply::Bulk(m));
        }
        3 => {
            let count = int_arg(&args[2])
                .ok()
                .filter(|c| *c >= 0)
                .ok_or(CmdError::NotPositive)? as u64;
            let db = ctx.db();
            let Some(s) = db.set_mut(key, now)? else {
                return Ok(Reply::Set(Vec::new()));
            };
            if count == 0 {
                return Ok(Reply::Set(Vec::new()));
            }
            if count >= s.len() as u64 {
                // The whole set goes, in its own order (ascending for an intset).
                std::mem::take(s).members()
            } else {
                (0..count).filter_map(|_| s.pop_random()).collect()
            }
        }
        _ => return Err(CmdError::Syntax),
    };
    let removed = ctx.db().remove_if_empty(key);
    ctx.key_event(notify::SET, "spop", key);
    if removed {
        ctx.key_event(notify::GENERIC, "del", key);
    }
    Ok(Reply::Set(bulks(popped)))
}

fn srandmember(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    match args.len() {
        2 => {
            return Ok(Reply::opt_bulk(
                read(ctx, &args[1])?.and_then(|s| s.random()),
            ))
        }
        3 => {}
        _ => return Err(CmdError::Syntax),
    }
    let l = random_count_arg(&args[2])?;
    let Some(s) = read(ctx, &args[1])? else {
        return Ok(Reply::Array(Vec::new()));
    };
    let count = l.unsigned_abs();
    let out = if count == 0 {
        Vec::new()
    } else if l < 0 || count == 1 {
        (0..count).filter_map(|_| s.random()).collect()
    } else if count >= s.len() as u64 {
        s.members()
    } else {
        s.random_distinct(count as usize)
    };
    Ok(Reply::Array(bulks(out)))
}

/// Looks up the sets behind `keys` for SINTER/SUNION/SDIFF: missing keys are `None`,
/// a key of another type is `WRONGTYPE` (checked in order, past missing keys, as Redis).
fn load_sets<'a>(ctx: &'a mut Ctx, keys: &[Bytes]) -> Result<Vec<Option<&'a Set>>, CmdError> {
    let now = ctx.now();
    let db = ctx.db();
    // First pass: lazy expiry and type checks, which need `&mut`.
    for k in keys {
        db.set_mut(k, now)?;
    }
    let db: &crate::db::Db = db;
    Ok(keys
        .iter()
        .map(|k| match db.get_live(k, now).map(|e| &e.value) {
            Some(Value::Set(s)) => Some(s),
            _ => None,
        })
        .collect())
}

/// The intersection, iterating the smallest set (so an intset yields ascending
/// members, as in Redis); stops after `limit` members when `limit` > 0.
fn intersect(sets: &[Option<&Set>], limit: usize) -> Vec<Bytes> {
    let mut sets: Vec<&Set> = match sets.iter().copied().collect::<Option<Vec<_>>>() {
        Some(v) => v,
        None => return Vec::new(),
    };
    // Stable, like glibc's qsort (a merge sort) that Redis calls.
    sets.sort_by_key(|s| s.len());
    let Some((first, rest)) = sets.split_first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in first.iter() {
        if rest.iter().all(|s| s.contains(&m)) {
            out.push(m);
            if limit > 0 && out.len() >= limit {
                break;
            }
        }
    }
    out
}

/// The union or the difference, built into a fresh set as Redis does (so an all-integer
/// result is an intset and replies in ascending order).
fn union_or_diff(sets: &[Option<&Set>], diff: bool, max_intset: usize) -> Set {
    let mut out = Set::default();
    if diff {
        let Some(Some(first)) = sets.first() else {
            return out;
        };
        for m in first.iter() {
            if !sets[1..].iter().flatten().any(|s| s.contains(&m)) {
                out.insert(m, max_intset);
            }
        }
    } else {
        for s in sets.iter().flatten() {
            for m in s.iter() {
                out.insert(m, max_intset);
            }
        }
    }
    out
}

/// Stores a SINTERSTORE/SUNIONSTORE/SDIFFSTORE result, or deletes the destination
/// when the result is empty.
fn store_result(ctx: &mut Ctx, dst: &Bytes, result: Set, event: &str) -> CmdResult {
    let now = ctx.now();
    let n = result.len() as i64;
    if n > 0 {
        ctx.db().insert(own(dst), Value::Set(result), now);
        ctx.key_event(notify::SET, event, dst);
    } else if ctx.db().remove(dst, now).is_some() {
        ctx.key_event(notify::GENERIC, "del", dst);
    }
    Ok(Reply::Int(n))
}

fn sinter(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let sets = load_sets(ctx, &args[1..])?;
    Ok(Reply::Set(bulks(intersect(&sets, 0))))
}

fn sinterstore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let max = ctx.intset_max();
    let sets = load_sets(ctx, &args[2..])?;
    let result = Set::build(intersect(&sets, 0), max);
    store_result(ctx, &args[1], result, "sinterstore")
}

fn sintercard(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let numkeys = int_arg(&args[1])
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| CmdError::err("numkeys should be greater than 0"))?;
    if numkeys > args.len() as i64 - 2 {
        return Err(CmdError::err(
            "Number of keys can't be greater than number of args",
        ));
    }
    let end = 2 + numkeys as usize;
    let mut limit = 0usize;
    let mut i = end;
    while i < args.len() {
        if eq_ic(&args[i], "limit") && i + 1 < args.len() {
            let l = int_arg(&args[i + 1])
                .ok()
                .filter(|l| *l >= 0)
                .ok_or_else(|| CmdError::err("LIMIT can't be negative"))?;
            limit = usize::try_from(l).unwrap_or(usize::MAX);
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let sets = load_sets(ctx, &args[2..end])?;
    Ok(Reply::Int(intersect(&sets, limit).len() as i64))
}

fn sunion(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let max = ctx.intset_max();
    let sets = load_sets(ctx, &args[1..])?;
    Ok(Reply::Set(bulks(union_or_diff(&sets, false, max).iter())))
}

fn sunionstore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let max = ctx.intset_max();
    let sets = load_sets(ctx, &args[2..])?;
    let result = union_or_diff(&sets, false, max);
    store_result(ctx, &args[1], result, "sunionstore")
}

fn sdiff(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let max = ctx.intset_max();
    let sets = load_sets(ctx, &args[1..])?;
    Ok(Reply::Set(bulks(union_or_diff(&sets, true, max).iter())))
}

fn sdiffstore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let max = ctx.intset_max();
    let sets = load_sets(ctx, &args[2..])?;
    let result = union_or_diff(&sets, true, max);
    store_result(ctx, &args[1], result, "sdiffstore")
}

fn sscan(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let cursor = parse_cursor(&args[2])?;
    let Some(s) = read(ctx, &args[1])? else {
        return Ok(scan_reply(0, Vec::new()));
    };
    let opts = parse_scan_opts(args, 3)?;
    let mut items = Vec::new();
    let mut push = |m: Bytes| {
        if opts.matches(&m) {
            items.push(Reply::Bulk(m));
        }
    };
    let next = match s {
        // An intset is small: Redis returns it whole with cursor 0.
        Set::Intset(_) => {
            s.iter().for_each(&mut push);
            0
        }
        Set::Table(_) => s.scan(cursor, opts.count, push),
    };
    Ok(scan_reply(next, items))
}
