//! Replication commands: REPLICAOF/SLAVEOF, ROLE, WAIT, FAILOVER, and what replicas
//! send their primary (REPLCONF, PSYNC, SYNC). The protocol itself is in
//! `crate::repl`.

use crate::blocking::BlockKind;
use crate::client::BlockRequest;
use crate::command::{CommandSpec, Ctx, ADMIN, FAST, LOADING, NOSCRIPT, STALE};
use crate::error::{CmdError, CmdResult};
use crate::net::reply::Reply;
use crate::repl::{Failover, ReplicaState, Wait};
use crate::util::eq_ic;
use bytes::Bytes;
use std::time::{Duration, Instant};

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new(
            "replicaof",
            3,
            ADMIN | NOSCRIPT | STALE,
            (0, 0, 0),
            replicaof,
        ),
        CommandSpec::new("slaveof", 3, ADMIN | NOSCRIPT | STALE, (0, 0, 0), replicaof),
        CommandSpec::new(
            "role",
            1,
            NOSCRIPT | LOADING | STALE | FAST,
            (0, 0, 0),
            role,
        ),
        CommandSpec::new("wait", 3, NOSCRIPT, (0, 0, 0), wait),
        CommandSpec::new(
            "replconf",
            -1,
            ADMIN | NOSCRIPT | LOADING | STALE,
            (0, 0, 0),
            replconf,
        ),
        CommandSpec::new("psync", -3, ADMIN | NOSCRIPT, (0, 0, 0), psync),
        CommandSpec::new("sync", 1, ADMIN | NOSCRIPT, (0, 0, 0), psync),
        CommandSpec::new(
            "failover",
            -1,
            ADMIN | NOSCRIPT | STALE,
            (0, 0, 0),
            failover,
        ),
    ]
}

fn replicaof(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if eq_ic(&args[1], "no") && eq_ic(&args[2], "one") {
        if ctx.store.repl.is_replica() {
            crate::repl::replica::unset_master(ctx.store);
        }
        return Ok(Reply::OK);
    }
    if ctx.client.replica {
        return Err(CmdError::err(
            "Command is not valid when client is a replica.",
        ));
    }
    if ctx.store.repl.failover != Failover::None {
        return Err(CmdError::err("REPLICAOF not allowed while failing over."));
    }
    let port = crate::util::parse_i64(&args[2]).ok_or(CmdError::NotInteger)?;
    let port = u16::try_from(port).map_err(|_| CmdError::err("Invalid master port"))?;
    let host = String::from_utf8_lossy(&args[1]).into_owned();
    if let Some(m) = &ctx.store.repl.master {
        if m.host.eq_ignore_ascii_case(&host) && m.port == port {
            return Ok(Reply::Status(
                "OK Already connected to specified master".into(),
            ));
        }
    }
    crate::repl::replica::set_master(ctx.store, host, port);
    Ok(Reply::OK)
}

fn role(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    Ok(ctx.store.repl_role_reply())
}

fn wait(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if ctx.store.repl.is_replica() {
        return Err(CmdError::err("WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated."));
    }
    let wanted = crate::cmd::int_arg(&args[1])?;
    let timeout = crate::cmd::int_arg(&args[2])?;
    if timeout < 0 {
        return Err(CmdError::err("timeout is negative"));
    }
    let offset = ctx.store.repl.offset();
    let n = ctx.store.repl.acked(offset);
    if n as i64 >= wanted || ctx.client.no_block {
        return Ok(Reply::Int(n as i64));
    }
    ctx.client.block = Some(BlockRequest {
        keys: Vec::new(),
        timeout: (timeout > 0).then(|| Duration::from_millis(timeout as u64)),
        timeout_reply: Reply::Int(0),
        kind: BlockKind::Wait,
        // Never re-run (no keys wake it): kept so that its end, by ACKs or timeout,
        // counts in INFO commandstats as Redis's `updateStatsOnUnblock` does.
        rerun: Some(args.to_vec()),
        gone: None,
    });
    ctx.store.repl.waits.push(Wait {
        client: ctx.client.id,
        offset,
        replicas: wanted.max(0) as usize,
    });
    // The replicas say where they are at once, not at their next periodic ACK.
    if ctx.store.repl.active {
        ctx.store
            .repl
            .backlog
            .feed_command(&[b"REPLCONF", b"GETACK", b"*"]);
    }
    Ok(Reply::Nil)
}

fn replconf(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    crate::repl::primary::replconf(ctx.store, ctx.client, args)
}

fn psync(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if ctx.client.multi.is_some() {
        return Err(CmdError::err("Command not allowed inside a transaction"));
    }
    crate::repl::primary::psync(ctx.store, ctx.client, args)
}

/// FAILOVER [TO host port [FORCE]] [ABORT] [TIMEOUT ms] (`failoverCommand`).
fn failover(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let mut to: Option<(String, u16)> = None;
    let (mut force, mut abort) = (false, false);
    let mut timeout: Option<u64> = None;
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        if eq_ic(a, "to") && i + 2 < args.len() && to.is_none() {
            let port = crate::util::parse_i64(&args[i + 2]).ok_or(CmdError::NotInteger)?;
            let port = u16::try_from(port).map_err(|_| CmdError::err("Invalid port"))?;
            to = Some((String::from_utf8_lossy(&args[i + 1]).into_owned(), port));
            i += 3;
        } else if eq_ic(a, "timeout") && i + 1 < args.len() && timeout.is_none() {
            let t = crate::util::parse_i64(&args[i + 1]).ok_or(CmdError::NotInteger)?;
            if t <= 0 {
                return Err(CmdError::err("FAILOVER timeout must be greater than 0"));
            }
            timeout = Some(t as u64);
            i += 2;
        } else if eq_ic(a, "force") && !force {
            force = true;
            i += 1;
        } else if eq_ic(a, "abort") && !abort {
            abort = true;
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let repl = &mut ctx.store.repl;
    if abort {
        if force || timeout.is_some() || to.is_some() {
            return Err(CmdError::err(
                "FAILOVER abort cannot be used with other options.",
            ));
        }
        if repl.failover == Failover::None {
            return Err(CmdError::err("No failover in progress."));
        }
        ctx.store.set_failover(Failover::None);
        return Ok(Reply::OK);
    }
    if force && (to.is_none() || timeout.is_none()) {
        return Err(CmdError::err(
            "FAILOVER with force option requires both a timeout and target HOST and IP.",
        ));
    }
    if repl.is_replica() {
        return Err(CmdError::err(
            "FAILOVER is not valid when server is a replica.",
        ));
    }
    if repl.failover != Failover::None {
        return Err(CmdError::err("FAILOVER already in progress."));
    }
    let online: Vec<(String, u16, u64)> = repl
        .replicas
        .values()
        .filter(|r| r.state == ReplicaState::Online)
        .map(|r| (r.ip.clone(), r.port, r.ack))
        .collect();
    if online.is_empty() {
        return Err(CmdError::err("FAILOVER requires connected replicas."));
    }
    let (host, port) = match to {
        Some((h, p)) => {
            if !online.iter().any(|(ih, ip, _)| *ih == h && *ip == p) {
                return Err(CmdError::err(
                    "FAILOVER target HOST and PORT is not a replica.",
                ));
            }
            (h, p)
        }
        None => {
            let best = online
                .iter()
                .max_by_key(|r| r.2)
                .map(|r| (r.0.clone(), r.1));
            best.ok_or_else(|| CmdError::err("FAILOVER requires connected replicas."))?
        }
    };
    let offset = repl.offset();
    if repl.active {
        repl.backlog.feed_command(&[b"REPLCONF", b"GETACK", b"*"]);
    }
    ctx.store.set_failover(Failover::WaitForSync {
        host,
        port,
        force,
        deadline: timeout.map(|t| Instant::now() + Duration::from_millis(t)),
        offset,
    });
    Ok(Reply::OK)
}
