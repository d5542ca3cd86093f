//! Hash commands (`t_hash.c`), with Redis 7.0's replies, errors and events.

use crate::command::{CommandSpec, Ctx, DENYOOM, FAST, READONLY, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::keyspace::notify;
use crate::net::reply::Reply;
use crate::types::Hash;
use crate::util::{eq_ic, glob_match};
use bytes::Bytes;

use super::{int_arg, own};

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("hset", -4, WRITE | DENYOOM | FAST, (1, 1, 1), hset),
        CommandSpec::new("hmset", -4, WRITE | DENYOOM | FAST, (1, 1, 1), hmset),
        CommandSpec::new("hsetnx", 4, WRITE | DENYOOM | FAST, (1, 1, 1), hsetnx),
        CommandSpec::new("hget", 3, READONLY | FAST, (1, 1, 1), hget),
        CommandSpec::new("hmget", -3, READONLY | FAST, (1, 1, 1), hmget),
        CommandSpec::new("hdel", -3, WRITE | FAST, (1, 1, 1), hdel),
        CommandSpec::new("hlen", 2, READONLY | FAST, (1, 1, 1), hlen),
        CommandSpec::new("hstrlen", 3, READONLY | FAST, (1, 1, 1), hstrlen),
        CommandSpec::new("hexists", 3, READONLY | FAST, (1, 1, 1), hexists),
        CommandSpec::new("hkeys", 2, READONLY, (1, 1, 1), hkeys),
        CommandSpec::new("hvals", 2, READONLY, (1, 1, 1), hvals),
        CommandSpec::new("hgetall", 2, READONLY, (1, 1, 1), hgetall),
        CommandSpec::new("hincrby", 4, WRITE | DENYOOM | FAST, (1, 1, 1), hincrby),
        CommandSpec::new(
            "hincrbyfloat",
            4,
            WRITE | DENYOOM | FAST,
            (1, 1, 1),
            hincrbyfloat,
        ),
        CommandSpec::new("hscan", -3, READONLY, (1, 1, 1), hscan),
        CommandSpec::new("hrandfield", -2, READONLY, (1, 1, 1), hrandfield),
    ]
}

/// Read access to a hash (`None` when the key is missing).
fn read<'a>(ctx: &'a mut Ctx, key: &[u8]) -> Result<Option<&'a Hash>, CmdError> {
    let now = ctx.now();
    ctx.db().hash(key, now)
}

/// HSET and HMSET share everything but the reply.
fn set_pairs(ctx: &mut Ctx, args: &[Bytes]) -> Result<i64, CmdError> {
    if args.len() % 2 == 1 {
        return Err(CmdError::Arity(crate::util::lower(&args[0])));
    }
    let (now, limits) = (ctx.now(), ctx.hash_limits());
    let h = ctx.db().hash_or_create(&args[1], now)?;
    h.try_conversion(&args[2..], limits);
    let mut created = 0;
    for pair in args[2..].chunks(2) {
        if h.insert(own(&pair[0]), own(&pair[1]), limits) {
            created += 1;
        }
    }
    ctx.key_event(notify::HASH, "hset", &args[1]);
    Ok(created)
}

fn hset(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(set_pairs(ctx, args)?))
}

fn hmset(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    set_pairs(ctx, args)?;
    Ok(Reply::OK)
}

fn hsetnx(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (now, limits) = (ctx.now(), ctx.hash_limits());
    let h = ctx.db().hash_or_create(&args[1], now)?;
    if h.contains(&args[2]) {
        return Ok(Reply::Int(0));
    }
    h.try_conversion(&args[2..4], limits);
    h.insert(own(&args[2]), own(&args[3]), limits);
    ctx.key_event(notify::HASH, "hset", &args[1]);
    Ok(Reply::Int(1))
}

fn hget(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::opt_bulk(
        read(ctx, &args[1])?.and_then(|h| h.get(&args[2]).cloned()),
    ))
}

fn hmget(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let h = read(ctx, &args[1])?;
    Ok(Reply::Array(
        args[2..]
            .iter()
            .map(|f| Reply::opt_bulk(h.and_then(|h| h.get(f).cloned())))
            .collect(),
    ))
}

fn hdel(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    let Some(h) = db.hash_mut(&args[1], now)? else {
        return Ok(Reply::Int(0));
    };
    let mut deleted = 0;
    for f in &args[2..] {
        if h.remove(f) {
            deleted += 1;
            if h.is_empty() {
                // Redis stops at the last field: the key is gone.
                break;
            }
        }
    }
    let removed = db.remove_if_empty(&args[1]);
    if deleted > 0 {
        ctx.key_event(notify::HASH, "hdel", &args[1]);
        if removed {
            ctx.key_event(notify::GENERIC, "del", &args[1]);
        }
    }
    Ok(Reply::Int(deleted))
}

fn hlen(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(
        read(ctx, &args[1])?.map_or(0, |h| h.len()) as i64
    ))
}

fn hstrlen(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(
        read(ctx, &args[1])?
            .and_then(|h| h.get(&args[2]).map(|v| v.len()))
            .unwrap_or(0) as i64,
    ))
}

fn hexists(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(
        read(ctx, &args[1])?.is_some_and(|h| h.contains(&args[2])) as i64,
    ))
}

fn hkeys(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Array(
        read(ctx, &args[1])?.map_or_else(Vec::new, |h| {
            h.iter().map(|(f, _)| Reply::Bulk(f.clone())).collect()
        }),
    ))
}

fn hvals(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Array(
        read(ctx, &args[1])?.map_or_else(Vec::new, |h| {
            h.iter().map(|(_, v)| Reply::Bulk(v.clone())).collect()
        }),
    ))
}

fn hgetall(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Map(read(ctx, &args[1])?.map_or_else(
        Vec::new,
        |h| {
            h.iter()
                .map(|(f, v)| (Reply::Bulk(f.clone()), Reply::Bulk(v.clone())))
                .collect()
        },
    )))
}

fn hincrby(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let incr = int_arg(&args[3])?;
    let (now, limits) = (ctx.now(), ctx.hash_limits());
    let h = ctx.db().hash_or_create(&args[1], now)?;
    let old = match h.get(&args[2]) {
        Some(v) => crate::util::parse_i64(v)
            .ok_or_else(|| CmdError::err("hash value is not an integer"))?,
        None => 0,
    };
    let new = old.checked_add(incr).ok_or(CmdError::Overflow)?;
    h.insert(own(&args[2]), Bytes::from(new.to_string()), limits);
    ctx.key_event(notify::HASH, "hincrby", &args[1]);
    Ok(Reply::Int(new))
}

fn hincrbyfloat(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let incr = super::float_arg(&args[3])?;
    if incr.is_infinite() {
        return Err(CmdError::err("value is NaN or Infinity"));
    }
    let (now, limits) = (ctx.now(), ctx.hash_limits());
    let h = ctx.db().hash_or_create(&args[1], now)?;
    let old = match h.get(&args[2]) {
        Some(v) => {
            crate::util::parse_f64(v).ok_or_else(|| CmdError::err("hash value is not a float"))?
        }
        None => 0.0,
    };
    let new = old + incr;
    if !new.is_finite() {
        return Err(CmdError::err("increment would produce NaN or Infinity"));
    }
    let text = Bytes::from(crate::util::fmt_long_double(new));
    h.insert(own(&args[2]), text.clone(), limits);
    ctx.key_event(notify::HASH, "hincrbyfloat", &args[1]);
    if ctx.propagating() {
        ctx.propagate_as(super::argv(&[b"HSET", &args[1], &args[2], &text]));
    }
    Ok(Reply::Bulk(text))
}

/// The count of HRANDFIELD/SRANDMEMBER: an integer in `-LONG_MAX..=LONG_MAX`.
pub(crate) fn random_count_arg(b: &[u8]) -> Result<i64, CmdError> {
    let l = int_arg(b)?;
    if l == i64::MIN {
        return Err(CmdError::err(
            "value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    super::check_random_repeat(l)?;
    Ok(l)
}

/// Options shared by HSCAN and SSCAN (and usable by ZSCAN): `MATCH pattern`, `COUNT n`.
#[derive(Debug)]
pub(crate) struct ScanOpts {
    /// `None` when absent or `*` (Redis skips matching then).
    pub pattern: Option<Bytes>,
    pub count: usize,
}

impl ScanOpts {
    /// Whether an element passes the MATCH filter.
    pub fn matches(&self, m: &[u8]) -> bool {
        self.pattern
            .as_ref()
            .is_none_or(|p| glob_match(p, m, false))
    }
}

/// Parses a SCAN cursor as Redis does with `strtoul`: an optional sign (a negative
/// value wraps), decimal digits, nothing else; an empty string is cursor 0.
pub(crate) fn parse_cursor(b: &[u8]) -> Result<u64, CmdError> {
    let invalid = || CmdError::err("invalid cursor");
    if b.is_empty() {
        return Ok(0);
    }
    if matches!(b[0], b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r') {
        return Err(invalid());
    }
    let (neg, digits) = match b[0] {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    let mut v: u64 = 0;
    for &d in digits {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
            .ok_or_else(invalid)?;
    }
    Ok(if neg { v.wrapping_neg() } else { v })
}

/// Parses the options of a *SCAN command starting at `args[from]`.
pub(crate) fn parse_scan_opts(args: &[Bytes], from: usize) -> Result<ScanOpts, CmdError> {
    let mut opts = ScanOpts {
        pattern: None,
        count: 10,
    };
    let mut i = from;
    while i < args.len() {
        let more = i + 1 < args.len();
        if eq_ic(&args[i], "count") && more {
            let n = int_arg(&args[i + 1])?;
            if n < 1 {
                return Err(CmdError::Syntax);
            }
            opts.count = usize::try_from(n).unwrap_or(usize::MAX);
        } else if eq_ic(&args[i], "match") && more {
            let p = &args[i + 1];
            opts.pattern = if p.as_ref() == b"*" {
                None
            } else {
                Some(p.clone())
            };
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    Ok(opts)
}

/// The reply of every *SCAN command: the next cursor and the elements.
pub(crate) fn scan_reply(cursor: u64, items: Vec<Reply>) -> Reply {
    Reply::Array(vec![
        Reply::Bulk(Bytes::from(cursor.to_string())),
        Reply::Array(items),
    ])
}

fn hscan(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let cursor = parse_cursor(&args[2])?;
    let Some(h) = read(ctx, &args[1])? else {
        return Ok(scan_reply(0, Vec::new()));
    };
    let opts = parse_scan_opts(args, 3)?;
    let mut items = Vec::new();
    let mut push = |f: &Bytes, v: &Bytes| {
        if opts.matches(f) {
            items.push(Reply::Bulk(f.clone()));
            items.push(Reply::Bulk(v.clone()));
        }
    };
    let next = match h {
        // A listpack is small: Redis returns it whole with cursor 0.
        Hash::Listpack(_) => {
            h.iter().for_each(|(f, v)| push(f, v));
            0
        }
        Hash::Table(_) => h.scan(cursor, opts.count, push),
    };
    Ok(scan_reply(next, items))
}

fn hrandfield(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if args.len() == 2 {
        return Ok(Reply::opt_bulk(
            read(ctx, &args[1])?.and_then(|h| h.random().map(|(f, _)| f.clone())),
        ));
    }
    let l = random_count_arg(&args[2])?;
    let withvalues = match args.len() {
        3 => false,
        4 if eq_ic(&args[3], "withvalues") => true,
        _ => return Err(CmdError::Syntax),
    };
    if withvalues && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&l) {
        return Err(CmdError::err("value is out of range"));
    }
    let resp3 = ctx.client.resp >= 3;
    let Some(h) = read(ctx, &args[1])? else {
        return Ok(Reply::Array(Vec::new()));
    };
    let (count, uniq) = (l.unsigned_abs(), l >= 0);
    if count == 0 {
        return Ok(Reply::Array(Vec::new()));
    }
    // RESP3 nests each field/value pair; RESP2 flattens them.
    let mut out = Vec::new();
    let mut push = |f: &Bytes, v: &Bytes| {
        if !withvalues {
            out.push(Reply::Bulk(f.clone()));
        } else if resp3 {
            out.push(Reply::Array(vec![
                Reply::Bulk(f.clone()),
                Reply::Bulk(v.clone()),
            ]));
        } else {
            out.push(Reply::Bulk(f.clone()));
            out.push(Reply::Bulk(v.clone()));
        }
    };
    if !uniq || count == 1 {
        for _ in 0..count {
            if let Some((f, v)) = h.random() {
                push(f, v);
            }
        }
    } else if count >= h.len() as u64 {
        // The whole hash, in its own order (insertion order for a listpack).
        h.iter().for_each(|(f, v)| push(f, v));
    } else {
        for (f, v) in h.random_distinct(count as usize) {
            push(f, v);
        }
    }
    Ok(Reply::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_parsing_follows_strtoul() {
        assert_eq!(parse_cursor(b""), Ok(0));
        assert_eq!(parse_cursor(b"+0"), Ok(0));
        assert_eq!(parse_cursor(b"17"), Ok(17));
        assert_eq!(parse_cursor(b"-1"), Ok(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615"), Ok(u64::MAX));
        for bad in [
            &b"18446744073709551616"[..],
            b" 1",
            b"1 ",
            b"x",
            b"+",
            b"-",
            b"1a",
        ] {
            assert!(parse_cursor(bad).is_err(), "{bad:?}");
        }
    }
}
