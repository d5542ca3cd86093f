//! Generic key commands (`db.c`, `expire.c`): deletion, existence, renaming, copying
//! and moving between databases, key listing and scanning, and TTLs.

use crate::command::{CommandSpec, Ctx, FAST, READONLY, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::keyspace::notify;
use crate::net::reply::Reply;
use crate::util::{eq_ic, glob_match};
use bytes::Bytes;

use super::{argv, int_arg};

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("del", -2, WRITE, (1, -1, 1), del),
        CommandSpec::new("unlink", -2, WRITE | FAST, (1, -1, 1), del),
        CommandSpec::new("exists", -2, READONLY | FAST, (1, -1, 1), exists),
        CommandSpec::new("type", 2, READONLY | FAST, (1, 1, 1), type_cmd),
        CommandSpec::new("rename", 3, WRITE, (1, 2, 1), rename),
        CommandSpec::new("renamenx", 3, WRITE | FAST, (1, 2, 1), renamenx),
        CommandSpec::new("copy", -3, WRITE, (1, 2, 1), copy),
        CommandSpec::new("move", 3, WRITE | FAST, (1, 1, 1), move_cmd),
        CommandSpec::new("keys", 2, READONLY, (0, 0, 0), keys),
        CommandSpec::new("scan", -2, READONLY, (0, 0, 0), scan),
        CommandSpec::new("randomkey", 1, READONLY, (0, 0, 0), randomkey),
        CommandSpec::new("touch", -2, READONLY | FAST, (1, -1, 1), touch),
        CommandSpec::new("expire", -3, WRITE | FAST, (1, 1, 1), expire),
        CommandSpec::new("pexpire", -3, WRITE | FAST, (1, 1, 1), pexpire),
        CommandSpec::new("expireat", -3, WRITE | FAST, (1, 1, 1), expireat),
        CommandSpec::new("pexpireat", -3, WRITE | FAST, (1, 1, 1), pexpireat),
        CommandSpec::new("ttl", 2, READONLY | FAST, (1, 1, 1), ttl),
        CommandSpec::new("pttl", 2, READONLY | FAST, (1, 1, 1), pttl),
        CommandSpec::new("expiretime", 2, READONLY | FAST, (1, 1, 1), expiretime),
        CommandSpec::new("pexpiretime", 2, READONLY | FAST, (1, 1, 1), pexpiretime),
        CommandSpec::new("persist", 2, WRITE | FAST, (1, 1, 1), persist),
    ]
}

/// `ERR source and destination objects are the same`.
fn same_object() -> CmdError {
    CmdError::err("source and destination objects are the same")
}

/// Parses a database index as `getIntFromObjectOrReply` + `selectDb` do.
fn db_index(ctx: &Ctx, b: &[u8]) -> Result<usize, CmdError> {
    let v = int_arg(b)?;
    if v < i32::MIN as i64 || v > i32::MAX as i64 {
        return Err(CmdError::err(
            "value is out of range, value must between -2147483648 and 2147483647",
        ));
    }
    if v < 0 || v as usize >= ctx.store.dbs.len() {
        return Err(CmdError::DbIndex);
    }
    Ok(v as usize)
}

/// DEL and UNLINK. UNLINK (and DEL with `lazyfree-lazy-user-del`) frees big values
/// on the lazy-free thread, off the command path.
fn del(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let lazy = eq_ic(&args[0], "unlink") || ctx.store.config.lazyfree_lazy_user_del;
    let mut n = 0;
    for k in &args[1..] {
        if let Some(e) = ctx.db().remove(k, now) {
            if lazy {
                let effort = e.value.free_effort();
                crate::lazyfree::free(e, effort);
            }
            ctx.key_event(notify::GENERIC, "del", k);
            n += 1;
        }
    }
    Ok(Reply::Int(n))
}

fn exists(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    let n = args[1..]
        .iter()
        .filter(|k| db.lookup(k, now).is_some())
        .count();
    Ok(Reply::Int(n as i64))
}

fn touch(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    exists(ctx, args)
}

fn type_cmd(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    Ok(Reply::Simple(
        ctx.db()
            .peek(&args[1], now)
            .map_or("none", |e| e.value.type_name()),
    ))
}

/// `renameGenericCommand`: moves the value with its TTL; with `nx`, refuses to
/// overwrite an existing destination.
fn rename_generic(ctx: &mut Ctx, args: &[Bytes], nx: bool) -> CmdResult {
    let (src, dst) = (&args[1], &args[2]);
    let now = ctx.now();
    if ctx.db().lookup(src, now).is_none() {
        return Err(CmdError::NoSuchKey);
    }
    if src == dst {
        return Ok(if nx { Reply::Int(0) } else { Reply::OK });
    }
    let db = ctx.db();
    if nx && db.lookup(dst, now).is_some() {
        return Ok(Reply::Int(0));
    }
    let Some((e, at)) = db.remove_with_expire(src, now) else {
        return Err(CmdError::NoSuchKey);
    };
    db.remove(dst, now);
    db.insert_entry(dst, e, at);
    ctx.key_event(notify::GENERIC, "rename_from", src);
    ctx.key_event(notify::GENERIC, "rename_to", dst);
    Ok(if nx { Reply::Int(1) } else { Reply::OK })
}

fn rename(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    rename_generic(ctx, args, false)
}

fn renamenx(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    rename_generic(ctx, args, true)
}

fn copy(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (src, dst) = (&args[1], &args[2]);
    let src_db = ctx.client.db;
    let mut dst_db = src_db;
    let mut replace = false;
    let mut j = 3;
    while j < args.len() {
        if eq_ic(&args[j], "replace") {
            replace = true;
        } else if eq_ic(&args[j], "db") && j + 1 < args.len() {
            dst_db = db_index(ctx, &args[j + 1])?;
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    if src_db == dst_db && src == dst {
        return Err(same_object());
    }
    let now = ctx.now();
    let Some(e) = ctx.db().lookup(src, now).cloned() else {
        return Ok(Reply::Int(0));
    };
    let at = ctx.db().expire_of(src, now).unwrap_or(0);
    let target = &mut ctx.store.dbs[dst_db];
    if target.lookup(dst, now).is_some() {
        if !replace {
            return Ok(Reply::Int(0));
        }
        target.remove(dst, now);
    }
    let mut e = e;
    e.touch(now);
    target.insert_entry(dst, e, at);
    ctx.store
        .key_changed(dst_db, dst, notify::GENERIC, "copy_to");
    Ok(Reply::Int(1))
}

fn move_cmd(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let src_db = ctx.client.db;
    let dst_db = db_index(ctx, &args[2])?;
    if src_db == dst_db {
        return Err(same_object());
    }
    let now = ctx.now();
    if ctx.db().lookup(key, now).is_none() {
        return Ok(Reply::Int(0));
    }
    if ctx.store.dbs[dst_db].lookup(key, now).is_some() {
        return Ok(Reply::Int(0));
    }
    let Some((e, at)) = ctx.db().remove_with_expire(key, now) else {
        return Ok(Reply::Int(0));
    };
    ctx.store.dbs[dst_db].insert_entry(key, e, at);
    ctx.store
        .key_changed(src_db, key, notify::GENERIC, "move_from");
    ctx.store
        .key_changed(dst_db, key, notify::GENERIC, "move_to");
    Ok(Reply::Int(1))
}

fn keys(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let pat = &args[1];
    let all = pat.as_ref() == b"*";
    let out = ctx
        .db()
        .iter_live(now)
        .filter(|(k, _)| all || glob_match(pat, k, false))
        .map(|(k, _)| Reply::Bulk(k.to_bytes()))
        .collect();
    Ok(Reply::Array(out))
}

/// Parses a SCAN cursor as Redis's `strtoul`-based `parseScanCursorOrReply`:
/// leading spaces and a sign are accepted (a negative cursor wraps around).
fn scan_cursor(b: &[u8]) -> Result<u64, CmdError> {
    let err = || CmdError::err("invalid cursor");
    let s = std::str::from_utf8(b).map_err(|_| err())?;
    let s = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        // strtoul consumed nothing: only an entirely empty argument ends at '\0'.
        return if b.is_empty() { Ok(0) } else { Err(err()) };
    }
    if !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(err());
    }
    let v: u64 = digits.parse().map_err(|_| err())?;
    Ok(if neg { v.wrapping_neg() } else { v })
}

fn scan(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let cursor = scan_cursor(&args[1])?;
    let mut count: usize = 10;
    let mut pattern: Option<&Bytes> = None;
    let mut type_name: Option<&Bytes> = None;
    let mut i = 2;
    while i < args.len() {
        let more = i + 1 < args.len();
        if eq_ic(&args[i], "count") && more {
            let c = int_arg(&args[i + 1])?;
            if c < 1 {
                return Err(CmdError::Syntax);
            }
            count = usize::try_from(c).unwrap_or(usize::MAX);
        } else if eq_ic(&args[i], "match") && more {
            let p = &args[i + 1];
            pattern = if p.as_ref() == b"*" { None } else { Some(p) };
        } else if eq_ic(&args[i], "type") && more {
            type_name = Some(&args[i + 1]);
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    let now = ctx.now();
    let mut found: Vec<Bytes> = Vec::new();
    let db = ctx.db();
    let next = db.scan(cursor, count, |k, _| found.push(k.to_bytes()));
    let mut out = Vec::with_capacity(found.len());
    for k in found {
        if let Some(p) = pattern {
            if !glob_match(p, &k, false) {
                continue;
            }
        }
        // Expired keys are reclaimed on the way, as Redis's scan does.
        let Some(e) = db.peek(&k, now) else {
            continue;
        };
        if let Some(t) = type_name {
            if !eq_ic(t, e.value.type_name()) {
                continue;
            }
        }
        out.push(Reply::Bulk(k));
    }
    Ok(Reply::Array(vec![
        Reply::text(next.to_string()),
        Reply::Array(out),
    ]))
}

fn randomkey(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    Ok(Reply::opt_bulk(ctx.db().random_key(now)))
}

/// `expireGenericCommand`: `basetime` is added to the argument (0 for the *AT forms),
/// `seconds` tells the unit. A time already past deletes the key.
fn expire_generic(ctx: &mut Ctx, args: &[Bytes], basetime: i64, seconds: bool) -> CmdResult {
    let cmd = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for a in &args[3..] {
        if eq_ic(a, "nx") {
            nx = true;
        } else if eq_ic(a, "xx") {
            xx = true;
        } else if eq_ic(a, "gt") {
            gt = true;
        } else if eq_ic(a, "lt") {
            lt = true;
        } else {
            return Err(CmdError::err(format!(
                "Unsupported option {}",
                String::from_utf8_lossy(a)
            )));
        }
    }
    if nx && (xx || gt || lt) {
        return Err(CmdError::err(
            "NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(CmdError::err(
            "GT and LT options at the same time are not compatible",
        ));
    }
    let mut when = int_arg(&args[2])?;
    let invalid = || CmdError::InvalidExpire(cmd.clone());
    if seconds {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
            return Err(invalid());
        }
        when *= 1000;
    }
    if when > i64::MAX - basetime {
        return Err(invalid());
    }
    when += basetime;
    let key = &args[1];
    let now = ctx.now();
    let Some(current) = ctx.db().expire_of(key, now) else {
        return Ok(Reply::Int(0));
    };
    // -1 stands for "no TTL", as Redis's getExpire.
    let current: i64 = if current == 0 { -1 } else { current as i64 };
    if (nx && current != -1)
        || (xx && current == -1)
        || (gt && (when <= current || current == -1))
        || (lt && current != -1 && when >= current)
    {
        return Ok(Reply::Int(0));
    }
    if when <= now as i64 {
        ctx.db().remove(key, now);
        ctx.key_event(notify::GENERIC, "del", key);
        ctx.propagate_as(argv(&[b"DEL", key]));
    } else {
        ctx.db().set_expire(key, when as u64, now);
        ctx.key_event(notify::GENERIC, "expire", key);
        // Propagated as PEXPIREAT with the absolute time (options kept), as Redis.
        if ctx.propagating() && (cmd != "pexpireat") {
            let mut v = args.to_vec();
            v[0] = Bytes::from_static(b"PEXPIREAT");
            v[2] = Bytes::from(when.to_string());
            ctx.propagate_as(v);
        }
    }
    Ok(Reply::Int(1))
}

fn expire(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now() as i64;
    expire_generic(ctx, args, now, true)
}

fn pexpire(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now() as i64;
    expire_generic(ctx, args, now, false)
}

fn expireat(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    expire_generic(ctx, args, 0, true)
}

fn pexpireat(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    expire_generic(ctx, args, 0, false)
}

/// `ttlGenericCommand`: -2 for a missing key, -1 without TTL, otherwise the remaining
/// (or, with `absolute`, the absolute) time in ms or rounded seconds.
fn ttl_generic(ctx: &mut Ctx, args: &[Bytes], ms: bool, absolute: bool) -> CmdResult {
    let now = ctx.now();
    let Some(at) = ctx.db().expire_of(&args[1], now) else {
        return Ok(Reply::Int(-2));
    };
    if at == 0 {
        return Ok(Reply::Int(-1));
    }
    let t = if absolute {
        at as i64
    } else {
        (at as i64 - now as i64).max(0)
    };
    Ok(Reply::Int(if ms { t } else { (t + 500) / 1000 }))
}

fn ttl(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, args, false, false)
}

fn pttl(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, args, true, false)
}

fn expiretime(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, args, false, true)
}

fn pexpiretime(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, args, true, true)
}

fn persist(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    if ctx.db().persist(&args[1], now) {
        ctx.key_event(notify::GENERIC, "persist", &args[1]);
        Ok(Reply::Int(1))
    } else {
        Ok(Reply::Int(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_like_strtoul() {
        assert_eq!(scan_cursor(b"0"), Ok(0));
        assert_eq!(scan_cursor(b"  12"), Ok(12));
        assert_eq!(scan_cursor(b"-1"), Ok(u64::MAX));
        assert_eq!(scan_cursor(b""), Ok(0));
        assert!(scan_cursor(b"abc").is_err());
        assert!(scan_cursor(b"1 ").is_err());
        assert!(scan_cursor(b"99999999999999999999999").is_err());
    }
}
