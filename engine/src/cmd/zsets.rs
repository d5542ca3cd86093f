//! Sorted set commands (`t_zset.c`).

use crate::blocking::BlockKind;
use crate::client::BlockRequest;
use crate::command::{
    CommandSpec, Ctx, BLOCKING, DENYOOM, FAST, MOVABLE_KEYS, NOSCRIPT, READONLY, WRITE,
};
use crate::error::{CmdError, CmdResult};
use crate::keyspace::notify;
use crate::net::reply::Reply;
use crate::types::zset::ScoredMember;
use crate::types::{Value, ZSet};
use crate::util::{eq_ic, glob_match};
use bytes::Bytes;
use std::collections::HashMap;

use super::{int_arg, own, range_of, timeout_arg};

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    let w = WRITE | DENYOOM;
    vec![
        CommandSpec::new("zadd", -4, w | FAST, (1, 1, 1), zadd),
        CommandSpec::new("zincrby", 4, w | FAST, (1, 1, 1), zincrby),
        CommandSpec::new("zscore", 3, READONLY | FAST, (1, 1, 1), zscore),
        CommandSpec::new("zmscore", -3, READONLY | FAST, (1, 1, 1), zmscore),
        CommandSpec::new("zcard", 2, READONLY | FAST, (1, 1, 1), zcard),
        CommandSpec::new("zcount", 4, READONLY | FAST, (1, 1, 1), zcount),
        CommandSpec::new("zlexcount", 4, READONLY | FAST, (1, 1, 1), zlexcount),
        CommandSpec::new("zrank", 3, READONLY | FAST, (1, 1, 1), zrank),
        CommandSpec::new("zrevrank", 3, READONLY | FAST, (1, 1, 1), zrevrank),
        CommandSpec::new("zrange", -4, READONLY, (1, 1, 1), zrange),
        CommandSpec::new("zrangestore", -5, w, (1, 2, 1), zrangestore),
        CommandSpec::new("zrevrange", -4, READONLY, (1, 1, 1), zrevrange),
        CommandSpec::new("zrangebyscore", -4, READONLY, (1, 1, 1), zrangebyscore),
        CommandSpec::new(
            "zrevrangebyscore",
            -4,
            READONLY,
            (1, 1, 1),
            zrevrangebyscore,
        ),
        CommandSpec::new("zrangebylex", -4, READONLY, (1, 1, 1), zrangebylex),
        CommandSpec::new("zrevrangebylex", -4, READONLY, (1, 1, 1), zrevrangebylex),
        CommandSpec::new("zrem", -3, WRITE | FAST, (1, 1, 1), zrem),
        CommandSpec::new("zremrangebyrank", 4, WRITE, (1, 1, 1), zremrangebyrank),
        CommandSpec::new("zremrangebyscore", 4, WRITE, (1, 1, 1), zremrangebyscore),
        CommandSpec::new("zremrangebylex", 4, WRITE, (1, 1, 1), zremrangebylex),
        CommandSpec::new("zpopmin", -2, WRITE | FAST, (1, 1, 1), zpopmin),
        CommandSpec::new("zpopmax", -2, WRITE | FAST, (1, 1, 1), zpopmax),
        CommandSpec::new(
            "bzpopmin",
            -3,
            WRITE | FAST | NOSCRIPT | BLOCKING,
            (1, -2, 1),
            bzpopmin,
        ),
        CommandSpec::new(
            "bzpopmax",
            -3,
            WRITE | FAST | NOSCRIPT | BLOCKING,
            (1, -2, 1),
            bzpopmax,
        ),
        CommandSpec::new("zmpop", -4, WRITE, (0, 0, 0), zmpop),
        CommandSpec::new("bzmpop", -5, WRITE | BLOCKING, (0, 0, 0), bzmpop),
        CommandSpec::new("zunion", -3, READONLY, (0, 0, 0), zunion),
        CommandSpec::new("zinter", -3, READONLY, (0, 0, 0), zinter),
        CommandSpec::new("zdiff", -3, READONLY, (0, 0, 0), zdiff),
        CommandSpec::new("zunionstore", -4, w | MOVABLE_KEYS, (1, 1, 1), zunionstore),
        CommandSpec::new("zinterstore", -4, w | MOVABLE_KEYS, (1, 1, 1), zinterstore),
        CommandSpec::new("zdiffstore", -4, w | MOVABLE_KEYS, (1, 1, 1), zdiffstore),
        CommandSpec::new("zintercard", -3, READONLY, (0, 0, 0), zintercard),
        CommandSpec::new("zscan", -3, READONLY, (1, 1, 1), zscan),
        CommandSpec::new("zrandmember", -2, READONLY, (1, 1, 1), zrandmember),
    ]
}

// ---------------------------------------------------------------------------
// Shared helpers

/// Read access to a sorted set (WRONGTYPE for other types).
fn read<'a>(ctx: &'a mut Ctx, key: &[u8]) -> Result<Option<&'a ZSet>, CmdError> {
    let now = ctx.now();
    Ok(ctx.db().zset(key, now)?.map(|z| &**z))
}

/// Write access to a sorted set (WRONGTYPE for other types).
fn write<'a>(ctx: &'a mut Ctx, key: &[u8]) -> Result<Option<&'a mut ZSet>, CmdError> {
    let now = ctx.now();
    Ok(ctx.db().zset_mut(key, now)?.map(|z| &mut **z))
}

/// Sends the events of a removal: the command's own, then `del` if the key emptied.
fn after_removal(ctx: &mut Ctx, key: &[u8], event: &str) {
    let removed = ctx.db().remove_if_empty(key);
    ctx.key_event(notify::ZSET, event, key);
    if removed {
        ctx.key_event(notify::GENERIC, "del", key);
    }
}

/// One (member, score) pair as Redis replies it: nested `[member, score]` in RESP3
/// when `nested`, two flat elements otherwise.
fn push_pair(out: &mut Vec<Reply>, m: &Bytes, s: f64, nested: bool) {
    if nested {
        out.push(Reply::Array(vec![Reply::Bulk(m.clone()), Reply::Double(s)]));
    } else {
        out.push(Reply::Bulk(m.clone()));
        out.push(Reply::Double(s));
    }
}

/// A list of members, with scores when asked (RESP3 nests each pair).
fn members_reply(ctx: &Ctx, items: &[(Bytes, f64)], withscores: bool) -> Reply {
    let resp3 = ctx.client.resp >= 3;
    let mut out = Vec::with_capacity(items.len() * if withscores { 2 } else { 1 });
    for (m, s) in items {
        if withscores {
            push_pair(&mut out, m, *s, resp3);
        } else {
            out.push(Reply::Bulk(m.clone()));
        }
    }
    Reply::Array(out)
}

/// An optionally signed decimal of 1 to 15 digits (so below 2^53) as f64; `None`
/// for anything else (left to `c_strtod`).
fn small_int(b: &[u8]) -> Option<f64> {
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u64;
    }
    // Negated as a float so "-0" is -0.0, as strtod reads it.
    let v = v as f64;
    Some(if neg { -v } else { v })
}

/// C's `strtod` over a whole string (leading whitespace skipped, decimal, hex with
/// optional `p` exponent, `inf`/`infinity`, `nan`). Returns the value and whether
/// `errno` would be `ERANGE` with an infinite or zero result; `None` when the string is
/// not entirely a number. The empty string reads as 0, as `strtod` leaves it unparsed
/// but at its end.
pub(super) fn c_strtod(s: &[u8]) -> Option<(f64, bool)> {
    if s.is_empty() {
        return Some((0.0, false));
    }
    let t = std::str::from_utf8(s).ok()?;
    let t = t.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        Some(_) => (false, t),
        None => return None,
    };
    let lower = body.to_ascii_lowercase();
    let (v, range_err) = match lower.as_str() {
        "inf" | "infinity" => (f64::INFINITY, false),
        "nan" => (f64::NAN, false),
        _ if lower.starts_with("0x") => (parse_hex_float(&lower[2..])?, false),
        _ => {
            // Rust's parser takes a few spellings C refuses; allow only C's shape.
            if !lower
                .bytes()
                .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'+' | b'-'))
                || !lower.starts_with(|c: char| c.is_ascii_digit() || c == '.')
            {
                return None;
            }
            let v: f64 = lower.parse().ok()?;
            let mantissa = lower.split('e').next().unwrap_or("");
            let nonzero = mantissa.bytes().any(|c| (b'1'..=b'9').contains(&c));
            (v, v.is_infinite() || (v == 0.0 && nonzero))
        }
    };
    Some((if neg { -v } else { v }, range_err))
}

/// The part of a hex float after `0x`: hex digits, optional fraction, optional `p`
/// binary exponent.
fn parse_hex_float(s: &str) -> Option<f64> {
    let (mant, exp) = match s.split_once('p') {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (s, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in int.chars().chain(frac.chars()) {
        v = v * 16.0 + f64::from(c.to_digit(16)?);
    }
    Some(v * 2f64.powi(exp - 4 * frac.len() as i32))
}

/// Parses a score or weight as Redis's `getDoubleFromObject`: no leading space, the
/// whole string, no overflow or underflow to zero, no NaN.
pub(super) fn double_arg(b: &[u8]) -> Option<f64> {
    if b.is_empty() || b[0].is_ascii_whitespace() {
        return None;
    }
    // The usual score is a small integer ("0", "-12"): below 2^53 it is exact in f64,
    // the value strtod gives, without the general parser's allocation.
    if let Some(v) = small_int(b) {
        return Some(v);
    }
    match c_strtod(b)? {
        (v, false) if !v.is_nan() => Some(v),
        _ => None,
    }
}

/// Parses a range bound as `zslParseRange`: `strtod` over the whole string, NaN refused.
fn strtod_full(s: &[u8]) -> Option<f64> {
    c_strtod(s).map(|(v, _)| v).filter(|v| !v.is_nan())
}

/// A score interval (`zrangespec`).
#[derive(Debug, Clone, Copy)]
struct ScoreRange {
    min: f64,
    minex: bool,
    max: f64,
    maxex: bool,
}

impl ScoreRange {
    fn parse(min: &[u8], max: &[u8]) -> Result<ScoreRange, CmdError> {
        let item = |b: &[u8]| -> Option<(f64, bool)> {
            match b.first() {
                Some(b'(') => strtod_full(&b[1..]).map(|v| (v, true)),
                _ => strtod_full(b).map(|v| (v, false)),
            }
        };
        match (item(min), item(max)) {
            (Some((min, minex)), Some((max, maxex))) => Ok(ScoreRange {
                min,
                minex,
                max,
                maxex,
            }),
            _ => Err(CmdError::MinMaxNotFloat),
        }
    }
    fn gte_min(&self, s: f64) -> bool {
        if self.minex {
            s > self.min
        } else {
            s >= self.min
        }
    }
    fn lte_max(&self, s: f64) -> bool {
        if self.maxex {
            s < self.max
        } else {
            s <= self.max
        }
    }
    fn is_empty(&self) -> bool {
        self.min > self.max || (self.min == self.max && (self.minex || self.maxex))
    }
    /// The ranks `start..end` of the members inside the interval.
    fn ranks(&self, z: &ZSet) -> (usize, usize) {
        if self.is_empty() {
            return (0, 0);
        }
        let start = z.partition_point(|x| !self.gte_min(x.score));
        let end = z.partition_point(|x| self.lte_max(x.score));
        (start, end.max(start))
    }
}

/// One end of a lexicographic interval (`zlexrangespec`).
#[derive(Debug, Clone)]
enum LexItem {
    Min,
    Max,
    Inc(Bytes),
    Exc(Bytes),
}

impl LexItem {
    fn parse(b: &[u8]) -> Option<LexItem> {
        match b.first() {
            Some(b'+') if b.len() == 1 => Some(LexItem::Max),
            Some(b'-') if b.len() == 1 => Some(LexItem::Min),
            Some(b'(') => Some(LexItem::Exc(Bytes::copy_from_slice(&b[1..]))),
            Some(b'[') => Some(LexItem::Inc(Bytes::copy_from_slice(&b[1..]))),
            _ => None,
        }
    }
    fn exclusive(&self) -> bool {
        !matches!(self, LexItem::Inc(_))
    }
}

/// A lexicographic interval.
#[derive(Debug, Clone)]
struct LexRange {
    min: LexItem,
    max: LexItem,
}

impl LexRange {
    fn parse(min: &[u8], max: &[u8]) -> Result<LexRange, CmdError> {
        match (LexItem::parse(min), LexItem::parse(max)) {
            (Some(min), Some(max)) => Ok(LexRange { min, max }),
            _ => Err(CmdError::MinMaxNotString),
        }
    }
    fn gte_min(&self, m: &[u8]) -> bool {
        match &self.min {
            LexItem::Min => true,
            LexItem::Max => false,
            LexItem::Inc(x) => m >= &x[..],
            LexItem::Exc(x) => m > &x[..],
        }
    }
    fn lte_max(&self, m: &[u8]) -> bool {
        match &self.max {
            LexItem::Max => true,
            LexItem::Min => false,
            LexItem::Inc(x) => m <= &x[..],
            LexItem::Exc(x) => m < &x[..],
        }
    }
    /// Whether no string can be inside, as `zslIsInLexRange`'s first test.
    fn is_empty(&self) -> bool {
        use std::cmp::Ordering::*;
        let cmp = match (&self.min, &self.max) {
            (LexItem::Min, LexItem::Min) | (LexItem::Max, LexItem::Max) => Equal,
            (LexItem::Min, _) | (_, LexItem::Max) => Less,
            (LexItem::Max, _) | (_, LexItem::Min) => Greater,
            (LexItem::Inc(a) | LexItem::Exc(a), LexItem::Inc(b) | LexItem::Exc(b)) => a.cmp(b),
        };
        cmp == Greater || (cmp == Equal && (self.min.exclusive() || self.max.exclusive()))
    }
    /// The ranks `start..end` of the members inside the interval (members assumed
    /// ordered, i.e. all scores equal, as Redis assumes).
    fn ranks(&self, z: &ZSet) -> (usize, usize) {
        if self.is_empty() {
            return (0, 0);
        }
        let start = z.partition_point(|x| !self.gte_min(&x.member));
        let end = z.partition_point(|x| self.lte_max(&x.member));
        (start, end.max(start))
    }
}

/// Applies `LIMIT offset count` to the ranks `start..end`, walking forward or
/// backward; returns the selected ranks in reply order.
fn limit_ranks(start: usize, end: usize, rev: bool, offset: i64, count: i64) -> Vec<usize> {
    if offset < 0 || start >= end {
        return Vec::new();
    }
    let n = end - start;
    let offset = offset as usize;
    if offset >= n {
        return Vec::new();
    }
    let avail = n - offset;
    let take = if count < 0 {
        avail
    } else {
        avail.min(count as usize)
    };
    if rev {
        (0..take).map(|i| end - 1 - offset - i).collect()
    } else {
        (0..take).map(|i| start + offset + i).collect()
    }
}

fn pairs_at(z: &ZSet, ranks: &[usize]) -> Vec<(Bytes, f64)> {
    let (Some(&a), Some(&b)) = (ranks.first(), ranks.last()) else {
        return Vec::new();
    };
    let (lo, hi, rev) = if a <= b { (a, b, false) } else { (b, a, true) };
    let mut v: Vec<(Bytes, f64)> = z
        .range(lo, hi)
        .into_iter()
        .map(|sm| (sm.member.clone(), sm.score))
        .collect();
    if rev {
        v.reverse();
    }
    v
}

/// Stores a computed result in `dst` (or deletes it when empty) and replies with its
/// size, as `zrangeResultFinalizeStore` and `zunionInterDiffGenericCommand` do.
fn store_result(ctx: &mut Ctx, dst: &Bytes, items: Vec<(Bytes, f64)>, event: &str) -> CmdResult {
    let now = ctx.now();
    let n = items.len();
    if n == 0 {
        if ctx.db().remove(dst, now).is_some() {
            ctx.key_event(notify::GENERIC, "del", dst);
        }
        return Ok(Reply::Int(0));
    }
    let limits = ctx.zset_limits();
    let z = ZSet::from_pairs(items, limits);
    ctx.db().insert(own(dst), Value::ZSet(Box::new(z)), now);
    ctx.key_event(notify::ZSET, event, dst);
    Ok(Reply::Int(n as i64))
}

// ---------------------------------------------------------------------------
// ZADD / ZINCRBY

fn zadd(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    zadd_generic(ctx, args, false)
}

fn zincrby(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    zadd_generic(ctx, args, true)
}

pub(super) fn zadd_generic(ctx: &mut Ctx, args: &[Bytes], mut incr: bool) -> CmdResult {
    let key = &args[1];
    let (mut nx, mut xx, mut ch, mut gt, mut lt) = (false, false, false, false, false);
    let mut idx = 2;
    while idx < args.len() {
        let a = &args[idx];
        if eq_ic(a, "nx") {
            nx = true;
        } else if eq_ic(a, "xx") {
            xx = true;
        } else if eq_ic(a, "ch") {
            ch = true;
        } else if eq_ic(a, "incr") {
            incr = true;
        } else if eq_ic(a, "gt") {
            gt = true;
        } else if eq_ic(a, "lt") {
            lt = true;
        } else {
            break;
        }
        idx += 1;
    }
    let elements = args.len() - idx;
    if elements == 0 || !elements.is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    if nx && xx {
        return Err(CmdError::err(
            "XX and NX options at the same time are not compatible",
        ));
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return Err(CmdError::err(
            "GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if incr && elements > 2 {
        return Err(CmdError::err(
            "INCR option supports a single increment-element pair",
        ));
    }
    let mut pairs = Vec::with_capacity(elements / 2);
    for p in args[idx..].chunks(2) {
        pairs.push((double_arg(&p[0]).ok_or(CmdError::NotFloat)?, &p[1]));
    }
    let now = ctx.now();
    let limits = ctx.zset_limits();
    let reply_of = |processed: bool, score: f64, added: i64, updated: i64| {
        if incr {
            if processed {
                Reply::Double(score)
            } else {
                Reply::Nil
            }
        } else {
            Reply::Int(if ch { added + updated } else { added })
        }
    };
    // One key lookup: XX never creates the key, anything else finds or creates it.
    let z = if xx {
        match ctx.db().zset_mut(key, now)? {
            Some(z) => z,
            None => return Ok(reply_of(false, 0.0, 0, 0)),
        }
    } else {
        ctx.db().zset_or_create(key, now)?
    };
    let (mut added, mut updated, mut processed) = (0i64, 0i64, false);
    let mut last = 0.0;
    let mut failed = false;
    for (score, member) in pairs {
        match z.score(member) {
            Some(cur) => {
                if nx {
                    continue;
                }
                let mut score = score;
                if incr {
                    score += cur;
                    if score.is_nan() {
                        failed = true;
                        break;
                    }
                }
                if (lt && score >= cur) || (gt && score <= cur) {
                    continue;
                }
                processed = true;
                last = score;
                if score != cur {
                    z.insert(own(member), score, limits);
                    updated += 1;
                }
            }
            None => {
                if xx {
                    continue;
                }
                z.insert(own(member), score, limits);
                added += 1;
                processed = true;
                last = score;
            }
        }
    }
    // Only a set created above and left empty is removed (checked here, so the
    // usual ZADD pays no second key lookup).
    if z.is_empty() {
        ctx.db().remove_if_empty(key);
    }
    if added > 0 || updated > 0 {
        ctx.key_event(notify::ZSET, if incr { "zincr" } else { "zadd" }, key);
    }
    if failed {
        return Err(CmdError::err("resulting score is not a number (NaN)"));
    }
    Ok(reply_of(processed, last, added, updated))
}

// ---------------------------------------------------------------------------
// Point reads

fn zscore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(match read(ctx, &args[1])?.and_then(|z| z.score(&args[2])) {
        Some(s) => Reply::Double(s),
        None => Reply::Nil,
    })
}

fn zmscore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let z = read(ctx, &args[1])?;
    let out = args[2..]
        .iter()
        .map(|m| match z.as_ref().and_then(|z| z.score(m)) {
            Some(s) => Reply::Double(s),
            None => Reply::Nil,
        })
        .collect();
    Ok(Reply::Array(out))
}

fn zcard(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(
        read(ctx, &args[1])?.map_or(0, |z| z.len()) as i64
    ))
}

fn zcount(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let r = ScoreRange::parse(&args[2], &args[3])?;
    Ok(Reply::Int(read(ctx, &args[1])?.map_or(0, |z| {
        let (s, e) = r.ranks(z);
        e - s
    }) as i64))
}

fn zlexcount(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let r = LexRange::parse(&args[2], &args[3])?;
    Ok(Reply::Int(read(ctx, &args[1])?.map_or(0, |z| {
        let (s, e) = r.ranks(z);
        e - s
    }) as i64))
}

fn zrank(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(match read(ctx, &args[1])?.and_then(|z| z.rank(&args[2])) {
        Some(r) => Reply::Int(r as i64),
        None => Reply::Nil,
    })
}

fn zrevrank(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(
        match read(ctx, &args[1])?.and_then(|z| z.rank(&args[2]).map(|r| z.len() - 1 - r)) {
            Some(r) => Reply::Int(r as i64),
            None => Reply::Nil,
        },
    )
}

// ---------------------------------------------------------------------------
// ZRANGE and friends (`zrangeGenericCommand`)

#[derive(Clone, Copy, PartialEq)]
enum RangeType {
    Auto,
    Rank,
    Score,
    Lex,
}

fn zrange(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, None, RangeType::Auto, None)
}
fn zrangestore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, &args[1..], Some(&args[1]), RangeType::Auto, None)
}
fn zrevrange(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, None, RangeType::Rank, Some(true))
}
fn zrangebyscore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, None, RangeType::Score, Some(false))
}
fn zrevrangebyscore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, None, RangeType::Score, Some(true))
}
fn zrangebylex(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, None, RangeType::Lex, Some(false))
}
fn zrevrangebylex(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    zrange_generic(ctx, args, None, RangeType::Lex, Some(true))
}

/// `args` starts one before the source key (for ZRANGESTORE, at the destination).
fn zrange_generic(
    ctx: &mut Ctx,
    args: &[Bytes],
    store: Option<&Bytes>,
    mut rtype: RangeType,
    mut rev: Option<bool>,
) -> CmdResult {
    let key = &args[1];
    let (mut withscores, mut offset, mut limit) = (false, 0i64, -1i64);
    let mut j = 4;
    while j < args.len() {
        let a = &args[j];
        let left = args.len() - j - 1;
        if store.is_none() && eq_ic(a, "withscores") {
            withscores = true;
        } else if eq_ic(a, "limit") && left >= 2 {
            offset = int_arg(&args[j + 1])?;
            limit = int_arg(&args[j + 2])?;
            j += 2;
        } else if rev.is_none() && eq_ic(a, "rev") {
            rev = Some(true);
        } else if rtype == RangeType::Auto && eq_ic(a, "bylex") {
            rtype = RangeType::Lex;
        } else if rtype == RangeType::Auto && eq_ic(a, "byscore") {
            rtype = RangeType::Score;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    let rev = rev.unwrap_or(false);
    if rtype == RangeType::Auto {
        rtype = RangeType::Rank;
    }
    if limit != -1 && rtype == RangeType::Rank {
        return Err(CmdError::err(
            "syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && rtype == RangeType::Lex {
        return Err(CmdError::err(
            "syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (mut a, mut b) = (&args[2], &args[3]);
    if rev && rtype != RangeType::Rank {
        std::mem::swap(&mut a, &mut b);
    }
    enum Spec {
        Rank(i64, i64),
        Score(ScoreRange),
        Lex(LexRange),
    }
    let spec = match rtype {
        RangeType::Score => Spec::Score(ScoreRange::parse(a, b)?),
        RangeType::Lex => Spec::Lex(LexRange::parse(a, b)?),
        _ => Spec::Rank(int_arg(a)?, int_arg(b)?),
    };
    let items = match read(ctx, key)? {
        None => Vec::new(),
        Some(z) => {
            let ranks = match spec {
                Spec::Rank(s, e) => match range_of(s, e, z.len()) {
                    None => Vec::new(),
                    Some((s, e)) => {
                        if rev {
                            let n = z.len();
                            (s..=e).map(|i| n - 1 - i).collect()
                        } else {
                            (s..=e).collect()
                        }
                    }
                },
                Spec::Score(r) => {
                    let (s, e) = r.ranks(z);
                    limit_ranks(s, e, rev, offset, limit)
                }
                Spec::Lex(r) => {
                    let (s, e) = r.ranks(z);
                    limit_ranks(s, e, rev, offset, limit)
                }
            };
            pairs_at(z, &ranks)
        }
    };
    match store {
        Some(dst) => store_result(ctx, dst, items, "zrangestore"),
        None => Ok(members_reply(ctx, &items, withscores)),
    }
}

// ---------------------------------------------------------------------------
// Removal

fn zrem(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let Some(z) = write(ctx, key)? else {
        return Ok(Reply::Int(0));
    };
    let mut n = 0;
    for m in &args[2..] {
        if z.remove(m) {
            n += 1;
            if z.is_empty() {
                break;
            }
        }
    }
    if n > 0 {
        after_removal(ctx, key, "zrem");
    }
    Ok(Reply::Int(n))
}

fn remove_ranks(
    ctx: &mut Ctx,
    key: &Bytes,
    event: &str,
    pick: impl Fn(&ZSet) -> (usize, usize),
) -> CmdResult {
    let Some(z) = write(ctx, key)? else {
        return Ok(Reply::Int(0));
    };
    let (s, e) = pick(z);
    if s >= e {
        return Ok(Reply::Int(0));
    }
    let victims: Vec<Bytes> = z
        .range(s, e - 1)
        .into_iter()
        .map(|sm| sm.member.clone())
        .collect();
    for m in &victims {
        z.remove(m);
    }
    after_removal(ctx, key, event);
    Ok(Reply::Int(victims.len() as i64))
}

fn zremrangebyrank(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (s, e) = (int_arg(&args[2])?, int_arg(&args[3])?);
    remove_ranks(ctx, &args[1], "zremrangebyrank", |z| {
        range_of(s, e, z.len()).map_or((0, 0), |(s, e)| (s, e + 1))
    })
}

fn zremrangebyscore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let r = ScoreRange::parse(&args[2], &args[3])?;
    remove_ranks(ctx, &args[1], "zremrangebyscore", |z| r.ranks(z))
}

fn zremrangebylex(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let r = LexRange::parse(&args[2], &args[3])?;
    remove_ranks(ctx, &args[1], "zremrangebylex", |z| r.ranks(z))
}

// ---------------------------------------------------------------------------
// Popping

/// How a pop replies (`genericZpopCommand`'s `emitkey` and `use_nested_array`), and
/// how it replays.
#[derive(Clone, Copy)]
struct PopShape {
    emit_key: bool,
    nested: bool,
    /// Propagated as `ZPOPMIN|ZPOPMAX key` (BZPOP*) or, with `count`, `... key n`
    /// (ZMPOP, BZMPOP): a replica must never block and must pop from the same key.
    replay: Replay,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Replay {
    AsCalled,
    Pop,
    PopCount,
}

/// Pops up to `count` members from the first existing key. `None` when every key is
/// missing.
fn pop_first(
    ctx: &mut Ctx,
    keys: &[Bytes],
    max: bool,
    count: usize,
    shape: PopShape,
) -> Result<Option<Reply>, CmdError> {
    // A parked client re-run skips keys of another type, as lists do: it is served
    // from a key that holds a sorted set, never answered WRONGTYPE by another.
    let retry = ctx.serving_blocked();
    for key in keys {
        let z = match write(ctx, key) {
            Ok(Some(z)) => z,
            Ok(None) => continue,
            Err(_) if retry => continue,
            Err(e) => return Err(e),
        };
        let n = count.min(z.len());
        let ranks: Vec<usize> = if max {
            (0..n).map(|i| z.len() - 1 - i).collect()
        } else {
            (0..n).collect()
        };
        let items = pairs_at(z, &ranks);
        for (m, _) in &items {
            z.remove(m);
        }
        after_removal(ctx, key, if max { "zpopmax" } else { "zpopmin" });
        if shape.replay != Replay::AsCalled && ctx.propagating() {
            let pop: &[u8] = if max { b"ZPOPMAX" } else { b"ZPOPMIN" };
            let mut v = super::argv(&[pop, key]);
            if shape.replay == Replay::PopCount {
                v.push(Bytes::from(items.len().to_string()));
            }
            ctx.propagate_as(v);
        }
        let mut out = Vec::new();
        for (m, s) in &items {
            push_pair(&mut out, m, *s, shape.nested);
        }
        let body = Reply::Array(out);
        return Ok(Some(if shape.emit_key {
            if shape.nested {
                Reply::Array(vec![Reply::Bulk(key.clone()), body])
            } else if let Reply::Array(mut v) = body {
                v.insert(0, Reply::Bulk(key.clone()));
                Reply::Array(v)
            } else {
                body
            }
        } else {
            body
        }));
    }
    Ok(None)
}

fn zpop(ctx: &mut Ctx, args: &[Bytes], max: bool) -> CmdResult {
    if args.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let count = match args.get(2) {
        None => None,
        Some(c) => {
            let c = int_arg(c).map_err(|_| CmdError::NotPositive)?;
            if c < 0 {
                return Err(CmdError::NotPositive);
            }
            Some(c as usize)
        }
    };
    if count == Some(0) {
        // Redis still checks the key's type before answering the empty array.
        read(ctx, &args[1])?;
        return Ok(Reply::Array(Vec::new()));
    }
    let shape = PopShape {
        emit_key: false,
        nested: ctx.client.resp >= 3 && count.is_some(),
        replay: Replay::AsCalled,
    };
    Ok(pop_first(ctx, &args[1..2], max, count.unwrap_or(1), shape)?
        .unwrap_or(Reply::Array(Vec::new())))
}

fn zpopmin(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    zpop(ctx, args, false)
}
fn zpopmax(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    zpop(ctx, args, true)
}

/// Blocks on `keys`, or answers the timeout reply at once inside MULTI.
fn block_on(ctx: &mut Ctx, keys: &[Bytes], timeout: Option<std::time::Duration>) -> CmdResult {
    if ctx.client.no_block {
        return Ok(Reply::NilArray);
    }
    ctx.client.block = Some(BlockRequest {
        keys: keys.to_vec(),
        timeout,
        timeout_reply: Reply::NilArray,
        kind: BlockKind::ZSet,
        rerun: None,
        gone: None,
    });
    Ok(Reply::NilArray)
}

fn bzpop(ctx: &mut Ctx, args: &[Bytes], max: bool) -> CmdResult {
    let timeout = timeout_arg(&args[args.len() - 1])?;
    let keys = &args[1..args.len() - 1];
    let shape = PopShape {
        emit_key: true,
        nested: false,
        replay: Replay::Pop,
    };
    match pop_first(ctx, keys, max, 1, shape)? {
        Some(r) => Ok(r),
        None => block_on(ctx, keys, timeout),
    }
}

fn bzpopmin(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    bzpop(ctx, args, false)
}
fn bzpopmax(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    bzpop(ctx, args, true)
}

/// ZMPOP/BZMPOP: `args` starts at numkeys.
fn zmpop_generic(
    ctx: &mut Ctx,
    args: &[Bytes],
    timeout: Option<Option<std::time::Duration>>,
) -> CmdResult {
    let positive = |b: &[u8], what: &str| -> Result<i64, CmdError> {
        match crate::util::parse_i64(b) {
            Some(n) if n >= 1 => Ok(n),
            _ => Err(CmdError::err(format!("{what} should be greater than 0"))),
        }
    };
    let numkeys = positive(&args[0], "numkeys")? as usize;
    let where_idx = match numkeys.checked_add(1) {
        Some(i) if i < args.len() => i,
        _ => return Err(CmdError::Syntax),
    };
    let max = if eq_ic(&args[where_idx], "min") {
        false
    } else if eq_ic(&args[where_idx], "max") {
        true
    } else {
        return Err(CmdError::Syntax);
    };
    let mut count = None;
    let mut j = where_idx + 1;
    while j < args.len() {
        if count.is_none() && eq_ic(&args[j], "count") && j + 1 < args.len() {
            count = Some(positive(&args[j + 1], "count")? as usize);
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let keys = &args[1..where_idx];
    let shape = PopShape {
        emit_key: true,
        nested: true,
        replay: Replay::PopCount,
    };
    match pop_first(ctx, keys, max, count.unwrap_or(1), shape)? {
        Some(r) => Ok(r),
        None => match timeout {
            Some(t) => block_on(ctx, keys, t),
            None => Ok(Reply::NilArray),
        },
    }
}

fn zmpop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    zmpop_generic(ctx, &args[1..], None)
}

fn bzmpop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let t = timeout_arg(&args[1])?;
    zmpop_generic(ctx, &args[2..], Some(t))
}

// ---------------------------------------------------------------------------
// ZUNION / ZINTER / ZDIFF (`zunionInterDiffGenericCommand`)

#[derive(Clone, Copy, PartialEq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

fn aggregate(target: &mut f64, val: f64, agg: Aggregate) {
    match agg {
        Aggregate::Sum => {
            *target += val;
            // inf + -inf: Redis keeps the convention of 0.
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Aggregate::Min => {
            if val < *target {
                *target = val
            }
        }
        Aggregate::Max => {
            if val > *target {
                *target = val
            }
        }
    }
}

/// One input: a sorted set or a plain set (members scored 1).
struct Input {
    map: HashMap<Bytes, f64>,
    weight: f64,
}

/// The shared body. `args` starts at numkeys; `dst` for the STORE variants.
fn setop(
    ctx: &mut Ctx,
    cmd: &str,
    args: &[Bytes],
    dst: Option<&Bytes>,
    op: SetOp,
    card_only: bool,
) -> CmdResult {
    let numkeys = int_arg(&args[0])?;
    if numkeys < 1 {
        return Err(CmdError::err(format!(
            "at least 1 input key is needed for '{cmd}' command"
        )));
    }
    let numkeys = numkeys as usize;
    if numkeys > args.len() - 1 {
        return Err(CmdError::Syntax);
    }
    let now = ctx.now();
    let mut inputs = Vec::with_capacity(numkeys);
    for key in &args[1..=numkeys] {
        let map: HashMap<Bytes, f64> = match ctx.db().lookup(key, now).map(|e| &e.value) {
            None => HashMap::new(),
            Some(Value::ZSet(z)) => z.iter().map(|sm| (sm.member.clone(), sm.score)).collect(),
            Some(Value::Set(s)) => s.members().into_iter().map(|m| (m, 1.0)).collect(),
            Some(_) => return Err(CmdError::WrongType),
        };
        inputs.push(Input { map, weight: 1.0 });
    }
    let (mut agg, mut withscores, mut limit) = (Aggregate::Sum, false, 0usize);
    let mut j = numkeys + 1;
    while j < args.len() {
        let remaining = args.len() - j;
        let a = &args[j];
        if op != SetOp::Diff && !card_only && remaining > numkeys && eq_ic(a, "weights") {
            for (i, inp) in inputs.iter_mut().enumerate() {
                inp.weight = double_arg(&args[j + 1 + i])
                    .ok_or_else(|| CmdError::err("weight value is not a float"))?;
            }
            j += numkeys + 1;
        } else if op != SetOp::Diff && !card_only && remaining >= 2 && eq_ic(a, "aggregate") {
            let v = &args[j + 1];
            agg = if eq_ic(v, "sum") {
                Aggregate::Sum
            } else if eq_ic(v, "min") {
                Aggregate::Min
            } else if eq_ic(v, "max") {
                Aggregate::Max
            } else {
                return Err(CmdError::Syntax);
            };
            j += 2;
        } else if dst.is_none() && !card_only && eq_ic(a, "withscores") {
            withscores = true;
            j += 1;
        } else if card_only && remaining >= 2 && eq_ic(a, "limit") {
            limit = match crate::util::parse_i64(&args[j + 1]) {
                Some(n) if n >= 0 => n as usize,
                _ => return Err(CmdError::err("LIMIT can't be negative")),
            };
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let weighted = |s: f64, w: f64| {
        let v = s * w;
        if v.is_nan() {
            0.0
        } else {
            v
        }
    };
    let mut result: Vec<(Bytes, f64)> = Vec::new();
    match op {
        SetOp::Inter => {
            // Smallest first, as Redis sorts its inputs by cardinality.
            inputs.sort_by_key(|i| i.map.len());
            let (first, rest) = inputs.split_at(1);
            for (m, &s) in &first[0].map {
                let mut score = weighted(s, first[0].weight);
                let mut all = true;
                for other in rest {
                    match other.map.get(m) {
                        Some(&v) => aggregate(&mut score, weighted(v, other.weight), agg),
                        None => {
                            all = false;
                            break;
                        }
                    }
                }
                if all {
                    result.push((m.clone(), score));
                    if card_only && limit > 0 && result.len() >= limit {
                        break;
                    }
                }
            }
        }
        SetOp::Union => {
            inputs.sort_by_key(|i| i.map.len());
            let mut acc: HashMap<Bytes, f64> = HashMap::new();
            for inp in &inputs {
                for (m, &s) in &inp.map {
                    let v = weighted(s, inp.weight);
                    match acc.get_mut(m) {
                        Some(t) => aggregate(t, v, agg),
                        None => {
                            acc.insert(m.clone(), v);
                        }
                    }
                }
            }
            result = acc.into_iter().collect();
        }
        SetOp::Diff => {
            let (first, rest) = inputs.split_at(1);
            for (m, &s) in &first[0].map {
                if !rest.iter().any(|o| o.map.contains_key(m)) {
                    result.push((m.clone(), s));
                }
            }
        }
    }
    if card_only {
        return Ok(Reply::Int(result.len() as i64));
    }
    result.sort_by(|a, b| {
        a.1.partial_cmp(&b.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    });
    match dst {
        Some(d) => {
            let event = match op {
                SetOp::Union => "zunionstore",
                SetOp::Inter => "zinterstore",
                SetOp::Diff => "zdiffstore",
            };
            store_result(ctx, d, result, event)
        }
        None => Ok(members_reply(ctx, &result, withscores)),
    }
}

fn zunion(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    setop(ctx, "zunion", &args[1..], None, SetOp::Union, false)
}
fn zinter(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    setop(ctx, "zinter", &args[1..], None, SetOp::Inter, false)
}
fn zdiff(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    setop(ctx, "zdiff", &args[1..], None, SetOp::Diff, false)
}
fn zunionstore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    setop(
        ctx,
        "zunionstore",
        &args[2..],
        Some(&args[1]),
        SetOp::Union,
        false,
    )
}
fn zinterstore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    setop(
        ctx,
        "zinterstore",
        &args[2..],
        Some(&args[1]),
        SetOp::Inter,
        false,
    )
}
fn zdiffstore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    setop(
        ctx,
        "zdiffstore",
        &args[2..],
        Some(&args[1]),
        SetOp::Diff,
        false,
    )
}
fn zintercard(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    setop(ctx, "zintercard", &args[1..], None, SetOp::Inter, true)
}

// ---------------------------------------------------------------------------
// ZSCAN / ZRANDMEMBER

/// Parses a SCAN cursor as `strtoull` over the whole string.
fn parse_cursor(b: &[u8]) -> Option<u64> {
    let t = std::str::from_utf8(b).ok()?;
    let t = t.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v: u64 = digits.parse().ok()?;
    Some(if neg { v.wrapping_neg() } else { v })
}

fn zscan(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    parse_cursor(&args[2]).ok_or_else(|| CmdError::err("invalid cursor"))?;
    let empty = || Reply::Array(vec![Reply::text("0"), Reply::Array(Vec::new())]);
    if read(ctx, &args[1])?.is_none() {
        return Ok(empty());
    }
    let mut pattern: Option<&Bytes> = None;
    let mut j = 3;
    while j < args.len() {
        let left = args.len() - j - 1;
        if eq_ic(&args[j], "count") && left >= 1 {
            if int_arg(&args[j + 1])? < 1 {
                return Err(CmdError::Syntax);
            }
            j += 2;
        } else if eq_ic(&args[j], "match") && left >= 1 {
            pattern = Some(&args[j + 1]);
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let Some(z) = read(ctx, &args[1])? else {
        return Ok(empty());
    };
    // The whole set in one step: SCAN's guarantees hold and COUNT is only a hint
    // (Redis does the same for listpack-encoded sets).
    let mut out = Vec::new();
    for sm in z.iter() {
        if pattern.is_some_and(|p| !glob_match(p, &sm.member, false)) {
            continue;
        }
        out.push(Reply::Bulk(sm.member.clone()));
        out.push(Reply::text(crate::util::fmt_double(sm.score)));
    }
    Ok(Reply::Array(vec![Reply::text("0"), Reply::Array(out)]))
}

fn zrandmember(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if args.len() == 2 {
        return Ok(match read(ctx, &args[1])? {
            None => Reply::Nil,
            Some(z) => match z.get(fastrand::usize(..z.len())) {
                Some(sm) => Reply::Bulk(sm.member.clone()),
                None => Reply::Nil,
            },
        });
    }
    let l = int_arg(&args[2])?;
    if l == i64::MIN {
        return Err(CmdError::err(
            "value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    let withscores = match args.len() {
        3 => false,
        4 if eq_ic(&args[3], "withscores") => true,
        _ => return Err(CmdError::Syntax),
    };
    if withscores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&l) {
        return Err(CmdError::err("value is out of range"));
    }
    super::check_random_repeat(l)?;
    let Some(z) = read(ctx, &args[1])? else {
        return Ok(Reply::Array(Vec::new()));
    };
    let size = z.len();
    let items: Vec<(Bytes, f64)> = if l == 0 {
        Vec::new()
    } else if l < 0 {
        (0..l.unsigned_abs())
            .filter_map(|_| z.get(fastrand::usize(..size)))
            .map(|sm| (sm.member.clone(), sm.score))
            .collect()
    } else {
        let mut all: Vec<&ScoredMember> = z.iter().collect();
        fastrand::shuffle(&mut all);
        all.truncate(l as usize);
        all.into_iter()
            .map(|sm| (sm.member.clone(), sm.score))
            .collect()
    };
    Ok(members_reply(ctx, &items, withscores))
}
