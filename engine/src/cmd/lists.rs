//! List commands (`t_list.c`), including the blocking pops (BLPOP BRPOP BLMOVE
//! BRPOPLPUSH BLMPOP), with Redis 7.0.15's argument order, errors and events.

use crate::blocking::BlockKind;
use crate::client::BlockRequest;
use crate::command::{CommandSpec, Ctx, BLOCKING, DENYOOM, FAST, NOSCRIPT, READONLY, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::keyspace::notify;
use crate::net::reply::Reply;
use crate::types::list::End;
use crate::util::eq_ic;
use bytes::Bytes;
use std::time::Duration;

use super::{int_arg, own, range_of};

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("lpush", -3, WRITE | DENYOOM | FAST, (1, 1, 1), lpush),
        CommandSpec::new("rpush", -3, WRITE | DENYOOM | FAST, (1, 1, 1), rpush),
        CommandSpec::new("lpushx", -3, WRITE | DENYOOM | FAST, (1, 1, 1), lpushx),
        CommandSpec::new("rpushx", -3, WRITE | DENYOOM | FAST, (1, 1, 1), rpushx),
        CommandSpec::new("linsert", 5, WRITE | DENYOOM, (1, 1, 1), linsert),
        CommandSpec::new("lpop", -2, WRITE | FAST, (1, 1, 1), lpop),
        CommandSpec::new("rpop", -2, WRITE | FAST, (1, 1, 1), rpop),
        CommandSpec::new("llen", 2, READONLY | FAST, (1, 1, 1), llen),
        CommandSpec::new("lrange", 4, READONLY, (1, 1, 1), lrange),
        CommandSpec::new("lindex", 3, READONLY, (1, 1, 1), lindex),
        CommandSpec::new("lset", 4, WRITE | DENYOOM, (1, 1, 1), lset),
        CommandSpec::new("lrem", 4, WRITE, (1, 1, 1), lrem),
        CommandSpec::new("ltrim", 4, WRITE, (1, 1, 1), ltrim),
        CommandSpec::new("lpos", -3, READONLY, (1, 1, 1), lpos),
        CommandSpec::new("lmove", 5, WRITE | DENYOOM, (1, 2, 1), lmove),
        CommandSpec::new("rpoplpush", 3, WRITE | DENYOOM, (1, 2, 1), rpoplpush),
        // LMPOP and BLMPOP have movable keys: Redis's legacy key range is (0, 0, 0).
        CommandSpec::new("lmpop", -4, WRITE, (0, 0, 0), lmpop),
        CommandSpec::new("blpop", -3, WRITE | NOSCRIPT | BLOCKING, (1, -2, 1), blpop),
        CommandSpec::new("brpop", -3, WRITE | NOSCRIPT | BLOCKING, (1, -2, 1), brpop),
        CommandSpec::new(
            "blmove",
            6,
            WRITE | DENYOOM | NOSCRIPT | BLOCKING,
            (1, 2, 1),
            blmove,
        ),
        CommandSpec::new(
            "brpoplpush",
            4,
            WRITE | DENYOOM | NOSCRIPT | BLOCKING,
            (1, 2, 1),
            brpoplpush,
        ),
        CommandSpec::new("blmpop", -5, WRITE | BLOCKING, (0, 0, 0), blmpop),
    ]
}

// ---------------------------------------------------------------------------
// Argument helpers

/// `LEFT` / `RIGHT` (`getListPositionFromObjectOrReply`).
fn end_arg(b: &[u8]) -> Result<End, CmdError> {
    if eq_ic(b, "left") {
        Ok(End::Left)
    } else if eq_ic(b, "right") {
        Ok(End::Right)
    } else {
        Err(CmdError::Syntax)
    }
}

/// Redis's `getRangeLongFromObjectOrReply(min, LONG_MAX, msg)`: both a non-integer and
/// a value below `min` answer with `msg`.
fn long_at_least(b: &[u8], min: i64, msg: &str) -> Result<i64, CmdError> {
    match crate::util::parse_i64(b) {
        Some(v) if v >= min => Ok(v),
        _ => Err(CmdError::err(msg)),
    }
}

/// `getPositiveLongFromObjectOrReply` without a custom message.
fn positive_arg(b: &[u8]) -> Result<i64, CmdError> {
    long_at_least(b, 0, "value is out of range, must be positive")
}

/// A blocking timeout in seconds, converted as Redis 7.0 does: `(long long)(t * 1000)`
/// milliseconds, so anything under 1 ms (even a tiny negative) means "forever", and
/// values whose milliseconds overflow a long long become negative.
fn timeout_secs(b: &[u8]) -> Result<Option<Duration>, CmdError> {
    let t = crate::util::parse_f64(b).ok_or(CmdError::TimeoutNotFloat)?;
    let ms = (t * 1000.0).trunc();
    // Outside the i64 range the C conversion yields LLONG_MIN on x86-64.
    if !(ms > -9.223_372_036_854_776e18 && ms < 9.223_372_036_854_776e18) || ms < 0.0 {
        return Err(CmdError::TimeoutNegative);
    }
    let ms = ms as u64;
    Ok((ms > 0).then(|| Duration::from_millis(ms)))
}

fn push_event(end: End) -> &'static str {
    match end {
        End::Left => "lpush",
        End::Right => "rpush",
    }
}

fn pop_event(end: End) -> &'static str {
    match end {
        End::Left => "lpop",
        End::Right => "rpop",
    }
}

/// Whether this call is the re-run of a blocked client's command (the dispatcher runs
/// it on a stand-in with the blocked client's id while the client is still parked).
fn is_retry(ctx: &Ctx) -> bool {
    ctx.serving_blocked()
}

/// Events after elements were popped from `key` (`listElementsRemoved`): the pop event,
/// then `del` when the list became empty and was deleted.
fn popped(ctx: &mut Ctx, key: &[u8], end: End) {
    ctx.key_event(notify::LIST, pop_event(end), key);
    if ctx.db().remove_if_empty(key) {
        ctx.key_event(notify::GENERIC, "del", key);
    }
}

fn bulks(v: Vec<Bytes>) -> Reply {
    Reply::Array(v.into_iter().map(Reply::Bulk).collect())
}

// ---------------------------------------------------------------------------
// Push

fn push_generic(ctx: &mut Ctx, args: &[Bytes], end: End, only_existing: bool) -> CmdResult {
    let now = ctx.now();
    let key = &args[1];
    let db = ctx.db();
    let list = if only_existing {
        match db.list_mut(key, now)? {
            Some(l) => l,
            None => return Ok(Reply::Int(0)),
        }
    } else {
        db.list_or_create(key, now)?
    };
    for v in &args[2..] {
        list.push(end, own(v));
    }
    let len = list.len() as i64;
    ctx.key_event(notify::LIST, push_event(end), key);
    Ok(Reply::Int(len))
}

fn lpush(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    push_generic(ctx, args, End::Left, false)
}

fn rpush(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    push_generic(ctx, args, End::Right, false)
}

fn lpushx(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    push_generic(ctx, args, End::Left, true)
}

fn rpushx(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    push_generic(ctx, args, End::Right, true)
}

fn linsert(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let after = if eq_ic(&args[2], "after") {
        true
    } else if eq_ic(&args[2], "before") {
        false
    } else {
        return Err(CmdError::Syntax);
    };
    let now = ctx.now();
    let Some(list) = ctx.db().list_mut(&args[1], now)? else {
        return Ok(Reply::Int(0));
    };
    if !list.insert_at_pivot(&args[3], own(&args[4]), after) {
        return Ok(Reply::Int(-1));
    }
    let len = list.len() as i64;
    ctx.key_event(notify::LIST, "linsert", &args[1]);
    Ok(Reply::Int(len))
}

// ---------------------------------------------------------------------------
// Pop

fn pop_generic(ctx: &mut Ctx, args: &[Bytes], end: End, name: &str) -> CmdResult {
    if args.len() > 3 {
        return Err(CmdError::Arity(name.to_string()));
    }
    let count = match args.get(2) {
        Some(c) => Some(positive_arg(c)?),
        None => None,
    };
    let now = ctx.now();
    let key = &args[1];
    let Some(list) = ctx.db().list_mut(key, now)? else {
        return Ok(if count.is_some() {
            Reply::NilArray
        } else {
            Reply::Nil
        });
    };
    let reply = match count {
        Some(0) => return Ok(Reply::Array(Vec::new())),
        None => match list.pop(end) {
            Some(v) => Reply::Bulk(v),
            None => return Ok(Reply::Nil),
        },
        Some(n) => bulks(list.pop_many(end, n as usize)),
    };
    popped(ctx, key, end);
    Ok(reply)
}

fn lpop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    pop_generic(ctx, args, End::Left, "lpop")
}

fn rpop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    pop_generic(ctx, args, End::Right, "rpop")
}

// ---------------------------------------------------------------------------
// Reads and in-place edits

fn llen(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let n = ctx.db().list(&args[1], now)?.map_or(0, |l| l.len());
    Ok(Reply::Int(n as i64))
}

fn lrange(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let start = int_arg(&args[2])?;
    let end = int_arg(&args[3])?;
    let now = ctx.now();
    let Some(list) = ctx.db().list(&args[1], now)? else {
        return Ok(Reply::Array(Vec::new()));
    };
    let out = match range_of(start, end, list.len()) {
        Some((s, e)) => list.items().range(s..=e).cloned().collect(),
        None => Vec::new(),
    };
    Ok(bulks(out))
}

fn lindex(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let Some(list) = ctx.db().list(&args[1], now)? else {
        return Ok(Reply::Nil);
    };
    let index = int_arg(&args[2])?;
    Ok(Reply::opt_bulk(list.get(index).cloned()))
}

fn lset(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let Some(list) = ctx.db().list_mut(&args[1], now)? else {
        return Err(CmdError::NoSuchKey);
    };
    let index = int_arg(&args[2])?;
    if !list.set(index, own(&args[3])) {
        return Err(CmdError::IndexOutOfRange);
    }
    ctx.key_event(notify::LIST, "lset", &args[1]);
    Ok(Reply::OK)
}

fn lrem(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let count = int_arg(&args[2])?;
    let now = ctx.now();
    let key = &args[1];
    let Some(list) = ctx.db().list_mut(key, now)? else {
        return Ok(Reply::Int(0));
    };
    let removed = list.remove(&args[3], count);
    if removed > 0 {
        ctx.key_event(notify::LIST, "lrem", key);
        if ctx.db().remove_if_empty(key) {
            ctx.key_event(notify::GENERIC, "del", key);
        }
    }
    Ok(Reply::Int(removed as i64))
}

fn ltrim(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let start = int_arg(&args[2])?;
    let end = int_arg(&args[3])?;
    let now = ctx.now();
    let key = &args[1];
    let Some(list) = ctx.db().list_mut(key, now)? else {
        return Ok(Reply::OK);
    };
    let keep = range_of(start, end, list.len());
    list.trim(keep);
    // Redis sends `ltrim` even when nothing was trimmed.
    ctx.key_event(notify::LIST, "ltrim", key);
    if ctx.db().remove_if_empty(key) {
        ctx.key_event(notify::GENERIC, "del", key);
    }
    Ok(Reply::OK)
}

fn lpos(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let ele = &args[2];
    let mut rank: i64 = 1;
    let mut count: i64 = -1; // -1: no COUNT option
    let mut maxlen: i64 = 0;
    let mut j = 3;
    while j < args.len() {
        let opt = &args[j];
        let more = j + 1 < args.len();
        if eq_ic(opt, "rank") && more {
            j += 1;
            rank = int_arg(&args[j])?;
            if rank == 0 {
                return Err(CmdError::err(
                    "RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
        } else if eq_ic(opt, "count") && more {
            j += 1;
            count = long_at_least(&args[j], 0, "COUNT can't be negative")?;
        } else if eq_ic(opt, "maxlen") && more {
            j += 1;
            maxlen = long_at_least(&args[j], 0, "MAXLEN can't be negative")?;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    // A negative rank searches from the tail. Like Redis, negating LONG_MIN wraps and
    // leaves a negative rank that every match satisfies.
    let from_tail = rank < 0;
    if from_tail {
        rank = rank.wrapping_neg();
    }
    let now = ctx.now();
    let Some(list) = ctx.db().list(&args[1], now)? else {
        return Ok(if count != -1 {
            Reply::Array(Vec::new())
        } else {
            Reply::Nil
        });
    };
    let len = list.len() as i64;
    let items = list.items();
    let pos = |i: i64| if from_tail { len - i - 1 } else { i };
    let mut out = Vec::new();
    let mut found = None;
    let mut matches: i64 = 0;
    for i in 0..len {
        if maxlen != 0 && i >= maxlen {
            break;
        }
        let idx = pos(i) as usize;
        if items[idx] != *ele {
            continue;
        }
        matches += 1;
        if matches >= rank {
            if count != -1 {
                out.push(Reply::Int(idx as i64));
                if count != 0 && matches.wrapping_sub(rank).wrapping_add(1) >= count {
                    break;
                }
            } else {
                found = Some(idx as i64);
                break;
            }
        }
    }
    Ok(if count != -1 {
        Reply::Array(out)
    } else {
        found.map_or(Reply::Nil, Reply::Int)
    })
}

// ---------------------------------------------------------------------------
// Moves

/// `lmoveGenericCommand`: pops from `src`, pushes onto `dst`, replies with the element.
fn lmove_generic(ctx: &mut Ctx, src: &Bytes, dst: &Bytes, from: End, to: End) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    match db.list(src, now)? {
        Some(l) if !l.is_empty() => {}
        _ => return Ok(Reply::Nil),
    }
    if src != dst {
        // Type-check the destination before anything moves.
        db.list(dst, now)?;
    }
    let Some(v) = db.list_mut(src, now)?.and_then(|l| l.pop(from)) else {
        return Ok(Reply::Nil);
    };
    // When src == dst the (possibly now empty) list is still stored: the element goes
    // back onto it, as Redis rotates in place.
    db.list_or_create(dst, now)?.push(to, v.clone());
    ctx.key_event(notify::LIST, push_event(to), dst);
    popped(ctx, src, from);
    Ok(Reply::Bulk(v))
}

fn lmove(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let from = end_arg(&args[3])?;
    let to = end_arg(&args[4])?;
    lmove_generic(ctx, &args[1], &args[2], from, to)
}

fn rpoplpush(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    lmove_generic(ctx, &args[1], &args[2], End::Right, End::Left)
}

/// Blocks the client on `keys`, or answers `immediate` at once when blocking is not
/// allowed (inside MULTI/EXEC).
///
/// Redis 7.0 answers every list pop that timed out with a null *array*
/// (`replyToBlockedClientTimedOut`), BLMOVE and BRPOPLPUSH included, while their
/// non-blocking answer inside MULTI is a null bulk: hence two replies.
fn block_or_null(
    ctx: &mut Ctx,
    keys: &[Bytes],
    timeout: Option<Duration>,
    immediate: Reply,
) -> CmdResult {
    if ctx.client.no_block {
        return Ok(immediate);
    }
    ctx.client.block = Some(BlockRequest {
        keys: keys.iter().map(own).collect(),
        timeout,
        timeout_reply: Reply::NilArray,
        kind: BlockKind::List,
        rerun: None,
        gone: None,
    });
    Ok(immediate)
}

fn blmove_generic(
    ctx: &mut Ctx,
    args: &[Bytes],
    from: End,
    to: End,
    timeout: Option<Duration>,
) -> CmdResult {
    let now = ctx.now();
    let (src, dst) = (&args[1], &args[2]);
    let retry = is_retry(ctx);
    let has_items = match ctx.db().list(src, now) {
        Ok(l) => l.is_some_and(|l| !l.is_empty()),
        // Redis 7.0 serves parked clients only from keys that hold lists: one whose
        // source became another type keeps waiting.
        Err(_) if retry => false,
        Err(e) => return Err(e),
    };
    if has_items {
        // Replays as the non-blocking form: a replica must never block.
        if ctx.propagating() {
            let v = if args.len() == 6 {
                super::argv(&[b"LMOVE", src, dst, &args[3], &args[4]])
            } else {
                super::argv(&[b"RPOPLPUSH", src, dst])
            };
            ctx.propagate_as(v);
        }
        lmove_generic(ctx, src, dst, from, to)
    } else {
        block_or_null(ctx, std::slice::from_ref(src), timeout, Reply::Nil)
    }
}

fn blmove(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let from = end_arg(&args[3])?;
    let to = end_arg(&args[4])?;
    let timeout = timeout_secs(&args[5])?;
    blmove_generic(ctx, args, from, to, timeout)
}

fn brpoplpush(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let timeout = timeout_secs(&args[3])?;
    blmove_generic(ctx, args, End::Right, End::Left, timeout)
}

// ---------------------------------------------------------------------------
// Multi-key pops

/// Pops from the first non-empty list among `keys`. `count` of `None` is BLPOP's
/// `[key, element]` reply; `Some(n)` is LMPOP's `[key, [elements...]]`. Returns `None`
/// when every list is empty or missing.
fn pop_first(
    ctx: &mut Ctx,
    keys: &[Bytes],
    end: End,
    count: Option<usize>,
) -> Result<Option<Reply>, CmdError> {
    let now = ctx.now();
    let retry = is_retry(ctx);
    for key in keys {
        let list = match ctx.db().list_mut(key, now) {
            Ok(Some(l)) if !l.is_empty() => l,
            Ok(_) => continue,
            // See blmove_generic: a parked client skips keys of another type.
            Err(_) if retry => continue,
            Err(e) => return Err(e),
        };
        let (reply, n) = match count {
            None => match list.pop(end) {
                Some(v) => (
                    Reply::Array(vec![Reply::Bulk(key.clone()), Reply::Bulk(v)]),
                    None,
                ),
                None => continue,
            },
            Some(n) => {
                let items = list.pop_many(end, n);
                let n = items.len();
                (
                    Reply::Array(vec![Reply::Bulk(key.clone()), bulks(items)]),
                    Some(n),
                )
            }
        };
        popped(ctx, key, end);
        // Replays as [LR]POP of the key it popped from (a replica must never block,
        // and must pop from the same key): `LPOP key` for BLPOP, `LPOP key n` for
        // [B]LMPOP, as Redis.
        if ctx.propagating() {
            let pop: &[u8] = if matches!(end, End::Left) {
                b"LPOP"
            } else {
                b"RPOP"
            };
            let mut v = super::argv(&[pop, key]);
            if let Some(n) = n {
                v.push(Bytes::from(n.to_string()));
            }
            ctx.propagate_as(v);
        }
        return Ok(Some(reply));
    }
    Ok(None)
}

fn bpop_generic(ctx: &mut Ctx, args: &[Bytes], end: End) -> CmdResult {
    let timeout = timeout_secs(&args[args.len() - 1])?;
    let keys = &args[1..args.len() - 1];
    match pop_first(ctx, keys, end, None)? {
        Some(r) => Ok(r),
        None => block_or_null(ctx, keys, timeout, Reply::NilArray),
    }
}

fn blpop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    bpop_generic(ctx, args, End::Left)
}

fn brpop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    bpop_generic(ctx, args, End::Right)
}

/// Parses `numkeys key... LEFT|RIGHT [COUNT n]` starting at `numkeys_idx`
/// (`lmpopGenericCommand`): returns the keys' range, the end and the count.
fn mpop_args(args: &[Bytes], numkeys_idx: usize) -> Result<(usize, usize, End, i64), CmdError> {
    let numkeys = long_at_least(&args[numkeys_idx], 1, "numkeys should be greater than 0")?;
    let where_idx = usize::try_from(numkeys)
        .ok()
        .and_then(|n| n.checked_add(numkeys_idx + 1))
        .filter(|&i| i < args.len())
        .ok_or(CmdError::Syntax)?;
    let end = end_arg(&args[where_idx])?;
    let mut count = -1;
    let mut j = where_idx + 1;
    while j < args.len() {
        if count == -1 && eq_ic(&args[j], "count") && j + 1 < args.len() {
            j += 1;
            count = long_at_least(&args[j], 1, "count should be greater than 0")?;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    Ok((numkeys_idx + 1, where_idx, end, count.max(1)))
}

fn lmpop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (first, last, end, count) = mpop_args(args, 1)?;
    let n = usize::try_from(count).unwrap_or(usize::MAX);
    Ok(pop_first(ctx, &args[first..last], end, Some(n))?.unwrap_or(Reply::NilArray))
}

fn blmpop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (first, last, end, count) = mpop_args(args, 2)?;
    let timeout = timeout_secs(&args[1])?;
    let n = usize::try_from(count).unwrap_or(usize::MAX);
    let keys = &args[first..last];
    match pop_first(ctx, keys, end, Some(n))? {
        Some(r) => Ok(r),
        None => block_or_null(ctx, keys, timeout, Reply::NilArray),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_convert_like_redis() {
        assert_eq!(timeout_secs(b"0").ok(), Some(None));
        // Under a millisecond truncates to 0: wait forever, even when negative.
        assert_eq!(timeout_secs(b"0.0001").ok(), Some(None));
        assert_eq!(timeout_secs(b"-0.0001").ok(), Some(None));
        assert_eq!(
            timeout_secs(b"0.25").ok(),
            Some(Some(Duration::from_millis(250)))
        );
        assert_eq!(timeout_secs(b"-1"), Err(CmdError::TimeoutNegative));
        assert_eq!(timeout_secs(b"inf"), Err(CmdError::TimeoutNegative));
        assert_eq!(timeout_secs(b"1e30"), Err(CmdError::TimeoutNegative));
        assert_eq!(timeout_secs(b"abc"), Err(CmdError::TimeoutNotFloat));
        assert_eq!(timeout_secs(b"nan"), Err(CmdError::TimeoutNotFloat));
    }

    #[test]
    fn mpop_arguments() {
        let a = |s: &str| -> Vec<Bytes> {
            s.split(' ')
                .map(|x| Bytes::copy_from_slice(x.as_bytes()))
                .collect()
        };
        assert!(matches!(
            mpop_args(&a("lmpop 2 a b left count 3"), 1),
            Ok((2, 4, End::Left, 3))
        ));
        assert_eq!(
            mpop_args(&a("lmpop 9223372036854775807 a left"), 1).err(),
            Some(CmdError::Syntax)
        );
        assert_eq!(
            mpop_args(&a("lmpop 1 a left count 1 count 1"), 1).err(),
            Some(CmdError::Syntax)
        );
    }
}
