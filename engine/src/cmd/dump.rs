//! DUMP and RESTORE (`cluster.c` in Redis 7.0): a value as a serialized payload in
//! the RDB format ([`crate::persist::rdb`]), interchangeable with Redis's.

use crate::command::{CommandSpec, Ctx, DENYOOM, READONLY, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::keyspace::db::Entry;
use crate::keyspace::notify;
use crate::net::reply::Reply;
use crate::persist::rdb::{self, Limits, PayloadError};
use crate::util::eq_ic;
use bytes::Bytes;

use super::int_arg;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("dump", 2, READONLY, (1, 1, 1), dump),
        CommandSpec::new("restore", -4, WRITE | DENYOOM, (1, 1, 1), restore),
    ]
}

/// `list-max-listpack-size`: how a list is cut into quicklist nodes in the payload.
/// Payloads are always LZF-compressed where it pays, as with Redis's default
/// `rdbcompression yes` (the engine has no such setting yet).
fn list_fill(ctx: &Ctx) -> i64 {
    ctx.store.config.list_max_listpack_size
}

/// The encoding thresholds a restored value is converted by.
fn limits(ctx: &Ctx) -> Limits {
    Limits {
        hash: ctx.hash_limits(),
        zset: ctx.zset_limits(),
        set_max_intset_entries: ctx.intset_max(),
    }
}

fn dump(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let fill = list_fill(ctx);
    Ok(match ctx.db().lookup_mut(&args[1], now) {
        None => Reply::Nil,
        Some(e) => Reply::Bulk(Bytes::from(rdb::dump_payload(&e.value, true, fill))),
    })
}

/// RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency],
/// checked in Redis's order: options, existing key, TTL, payload.
fn restore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq): (Option<u64>, Option<i64>) = (None, None);
    let mut j = 4;
    while j < args.len() {
        let more = j + 1 < args.len();
        if eq_ic(&args[j], "replace") {
            replace = true;
        } else if eq_ic(&args[j], "absttl") {
            absttl = true;
        } else if eq_ic(&args[j], "idletime") && more && freq.is_none() {
            let v = int_arg(&args[j + 1])?;
            if v < 0 {
                return Err(CmdError::err("Invalid IDLETIME value, must be >= 0"));
            }
            idle = Some(v as u64);
            j += 1;
        } else if eq_ic(&args[j], "freq") && more && idle.is_none() {
            let v = int_arg(&args[j + 1])?;
            if !(0..=255).contains(&v) {
                return Err(CmdError::err("Invalid FREQ value, must be >= 0 and <= 255"));
            }
            // Validated, then unused: the engine does not count accesses.
            freq = Some(v);
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    let key = &args[1];
    let now = ctx.now();
    if !replace && ctx.db().lookup_mut(key, now).is_some() {
        return Err(CmdError::Other(
            "BUSYKEY Target key name already exists.".into(),
        ));
    }
    let ttl = int_arg(&args[2])?;
    if ttl < 0 {
        return Err(CmdError::err("Invalid TTL value, must be >= 0"));
    }
    let value = rdb::restore_payload(&args[3], &limits(ctx)).map_err(|e| match e {
        PayloadError::VersionOrChecksum => {
            CmdError::err("DUMP payload version or checksum are wrong")
        }
        PayloadError::Format(_) => CmdError::err("Bad data format"),
    })?;
    let deleted = replace && ctx.db().remove(key, now).is_some();
    // A relative TTL past i64 wraps to the past, as in Redis (the key is not created).
    let at = if ttl != 0 && !absttl {
        ttl.wrapping_add(now as i64)
    } else {
        ttl
    };
    if at != 0 && at <= now as i64 {
        if deleted {
            ctx.key_event(notify::GENERIC, "del", key);
        }
        return Ok(Reply::OK);
    }
    let mut entry = Entry::new(value, now);
    if let Some(idle) = idle {
        rdb::set_idle(&mut entry, idle, now);
    }
    ctx.db().insert_entry(key, entry, at as u64);
    ctx.key_event(notify::GENERIC, "restore", key);
    Ok(Reply::OK)
}
