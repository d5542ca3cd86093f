//! Lease commands (Coherent's own; Redis has none): LEASEGET, LEASESET, LEASEINFO.
//!
//! ```text
//! LEASEGET key                      -> ["value", <bulk>]   hit
//!                                      ["lease", <token>]  miss, the caller holds the lease
//!                                      ["wait",  <ms>]     miss, another caller's lease is
//!                                                          younger than lease-interval-ms
//! LEASESET key token value [EX seconds | PX milliseconds]
//!                                   -> +OK when token is the key's current valid token
//!                                      (the value is stored, the lease consumed)
//!                                      null bulk otherwise: nothing is stored
//! LEASEINFO key                     -> ms left of the key's lease, or -2
//! ```
//!
//! Tokens are positive 64-bit integers. Any modification of the key between LEASEGET
//! and LEASESET (DEL/UNLINK even of the missing key, SET, expiry, FLUSHDB, the
//! sidecar's in-process DEL) voids the token; see [`crate::lease`].
//!
//! The value is read and written through the GET and SET rows of the command table, so
//! these commands behave exactly as GET (WRONGTYPE, hit/miss stats) and SET (TTL,
//! notifications, WATCH) do, whatever the keyspace's internal layout.

use crate::command::{
    lookup, CommandSpec, Ctx, DENYOOM, FAST, LEASE_AWARE, READONLY, TRACKED_READ, WRITE,
};
use crate::error::{CmdError, CmdResult};
use crate::lease::Grant;
use crate::net::reply::Reply;
use crate::util::eq_ic;
use bytes::Bytes;

use super::int_arg;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        // Not WRITE: it changes no key, and the dispatcher voids the leases of keys a
        // WRITE command names.
        CommandSpec::new(
            "leaseget",
            2,
            DENYOOM | FAST | TRACKED_READ,
            (1, 1, 1),
            leaseget,
        ),
        CommandSpec::new(
            "leaseset",
            -4,
            WRITE | DENYOOM | LEASE_AWARE,
            (1, 1, 1),
            leaseset,
        ),
        CommandSpec::new("leaseinfo", 2, READONLY | FAST, (1, 1, 1), leaseinfo),
    ]
}

/// Runs another command's handler in this context (GET, SET).
fn delegate(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    match lookup(&args[0]) {
        Some(spec) => (spec.handler)(ctx, args),
        None => Err(CmdError::err("internal: command table incomplete")),
    }
}

fn tagged(tag: &'static str, r: Reply) -> Reply {
    Reply::Array(vec![Reply::Bulk(Bytes::from_static(tag.as_bytes())), r])
}

fn leaseget(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    match delegate(ctx, &[Bytes::from_static(b"get"), key.clone()])? {
        Reply::Nil => {}
        hit => return Ok(tagged("value", hit)),
    }
    // GET may have expired the key lazily: publish that (and void the old lease) now,
    // so that the dispatcher's later flush does not void the token granted below.
    ctx.store.flush_expired();
    let (db, now) = (ctx.client.db, ctx.now());
    let interval = ctx.store.config.lease_interval_ms;
    Ok(match ctx.store.leases.grant(db, key, now, interval) {
        Grant::Token(t) => tagged("lease", Reply::Int(t as i64)),
        Grant::Wait(ms) => tagged("wait", Reply::Int(ms.min(i64::MAX as u64) as i64)),
    })
}

fn leaseset(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (key, value) = (&args[1], &args[3]);
    // Options first (syntax), then the numbers, as SET does.
    let expire = match args.len() {
        4 => None,
        6 if eq_ic(&args[4], "ex") => Some((true, &args[5])),
        6 if eq_ic(&args[4], "px") => Some((false, &args[5])),
        _ => return Err(CmdError::Syntax),
    };
    let token = int_arg(&args[2])?;
    let now = ctx.now();
    let px = match expire {
        None => None,
        Some((seconds, arg)) => {
            let v = int_arg(arg)?;
            let invalid = || CmdError::InvalidExpire("leaseset".into());
            let ms = if seconds {
                v.checked_mul(1000)
            } else {
                Some(v)
            };
            match ms {
                Some(ms) if v > 0 && ms.checked_add(now as i64).is_some() => Some(ms),
                _ => return Err(invalid()),
            }
        }
    };
    let (db, interval) = (ctx.client.db, ctx.store.config.lease_interval_ms);
    if token <= 0
        || !ctx
            .store
            .leases
            .consume(db, key, token as u64, now, interval)
    {
        return Ok(Reply::Nil);
    }
    // Replays as the SET it is: the token means nothing to a replica (SET rewrites
    // this again to SET ... PXAT when there is an expiry).
    if ctx.propagating() {
        ctx.propagate_as(super::argv(&[b"SET", key, value]));
    }
    let mut set = vec![Bytes::from_static(b"set"), key.clone(), value.clone()];
    if let Some(ms) = px {
        set.push(Bytes::from_static(b"px"));
        set.push(Bytes::from(ms.to_string()));
    }
    delegate(ctx, &set)
}

fn leaseinfo(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (db, now) = (ctx.client.db, ctx.now());
    let interval = ctx.store.config.lease_interval_ms;
    Ok(Reply::Int(
        match ctx.store.leases.remaining(db, &args[1], now, interval) {
            Some(ms) => ms.min(i64::MAX as u64) as i64,
            None => -2,
        },
    ))
}
