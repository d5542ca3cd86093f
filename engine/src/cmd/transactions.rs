//! Transactions (`multi.c`): MULTI EXEC DISCARD WATCH UNWATCH.
//!
//! The dispatcher queues commands while `client.multi` is `Some` and flags queueing
//! errors in `client.multi_error`; this file opens, runs and discards transactions and
//! keeps the WATCH registry in the store in step with the client's own list.

use crate::client::Client;
use crate::command::{self, CommandSpec, Ctx, FAST, LOADING, NOSCRIPT, NO_QUEUE, STALE};
use crate::error::{CmdError, CmdResult};
use crate::net::reply::Reply;
use crate::store::Store;
use bytes::Bytes;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    let base = NOSCRIPT | LOADING | STALE;
    vec![
        CommandSpec::new("multi", 1, base | FAST | NO_QUEUE, (0, 0, 0), multi),
        CommandSpec::new("exec", 1, base | NO_QUEUE, (0, 0, 0), exec),
        CommandSpec::new("discard", 1, base | FAST | NO_QUEUE, (0, 0, 0), discard),
        CommandSpec::new("watch", -2, base | FAST | NO_QUEUE, (1, -1, 1), watch),
        CommandSpec::new("unwatch", 1, base | FAST, (0, 0, 0), unwatch),
    ]
}

/// Forgets every key the client watches (and its dirty mark).
pub(crate) fn unwatch_all(store: &mut Store, client: &mut Client) {
    let watched = std::mem::take(&mut client.watched);
    store.watches.unwatch(client.id, &watched);
}

/// Redis's `discardTransaction`: drops the queue, the error flag and the WATCHes.
pub(crate) fn discard_transaction(store: &mut Store, client: &mut Client) {
    client.multi = None;
    client.multi_error = false;
    unwatch_all(store, client);
}

fn multi(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    if ctx.client.multi.is_some() {
        // Redis replies the error without dooming the open transaction.
        return Err(CmdError::err("MULTI calls can not be nested"));
    }
    ctx.client.multi = Some(Vec::new());
    ctx.client.multi_error = false;
    Ok(Reply::OK)
}

fn discard(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    if ctx.client.multi.is_none() {
        return Err(CmdError::err("DISCARD without MULTI"));
    }
    discard_transaction(ctx.store, ctx.client);
    Ok(Reply::OK)
}

/// Whether a key that was live when watched has logically expired since (Redis's
/// `isWatchedKeyExpired`): EXEC must fail even if nobody touched the key yet.
fn watched_key_expired(ctx: &Ctx) -> bool {
    let now = ctx.store.now;
    ctx.client.watched.iter().any(|(db, key, _)| {
        !ctx.store.watches.watched_expired(ctx.client.id, *db, key)
            && ctx
                .store
                .dbs
                .get(*db)
                .is_some_and(|d| d.contains_raw(key) && !d.is_live(key, now))
    })
}

fn exec(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let Some(queue) = ctx.client.multi.take() else {
        return Err(CmdError::err("EXEC without MULTI"));
    };
    let doomed = ctx.client.multi_error;
    let dirty = ctx.store.watches.is_dirty(ctx.client.id) || watched_key_expired(ctx);
    // Unwatch before running: the transaction's own writes must not matter.
    discard_transaction(ctx.store, ctx.client);
    if doomed {
        return Err(CmdError::Other(
            "EXECABORT Transaction discarded because of previous errors.".into(),
        ));
    }
    if dirty {
        return Ok(Reply::NilArray);
    }
    let saved_no_block = ctx.client.no_block;
    ctx.client.no_block = true;
    let mut replies = Vec::with_capacity(queue.len());
    // Pushes a queued command makes for this client (a PUBLISH to its own channel, a
    // keyspace event) go inside the array, ahead of that command's reply, as Redis
    // writes them.
    ctx.store.pubsub.capture(ctx.client.id);
    for args in queue {
        // Only commands found in the table were queued.
        let reply = match command::lookup(&args[0]) {
            Some(spec) => {
                let r = command::call(ctx.store, ctx.client, spec, &args);
                command::remember_keys(ctx.store, ctx.client, spec, &args);
                r
            }
            None => Reply::error("ERR unknown command"),
        };
        let mut pushed = ctx.store.pubsub.take_captured();
        if pushed.is_empty() {
            replies.push(reply);
        } else {
            pushed.push(reply);
            replies.push(Reply::Many(pushed));
        }
    }
    ctx.store.pubsub.end_capture();
    ctx.client.no_block = saved_no_block;
    Ok(Reply::Array(replies))
}

fn watch(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if ctx.client.multi.is_some() {
        return Err(CmdError::err("WATCH inside MULTI is not allowed"));
    }
    let id = ctx.client.id;
    // No point in watching more once the transaction is already doomed.
    if ctx.store.watches.is_dirty(id) {
        return Ok(Reply::OK);
    }
    let db = ctx.client.db;
    let now = ctx.now();
    for key in &args[1..] {
        if ctx
            .client
            .watched
            .iter()
            .any(|(d, k, _)| *d == db && k == key)
        {
            continue;
        }
        let d = &ctx.store.dbs[db];
        // A key still in the keyspace but already past its TTL: its later deletion is
        // not a change (Redis 7.0's `expired` flag).
        let expired = d.contains_raw(key) && !d.is_live(key, now);
        let key = super::own(key);
        ctx.store.watches.watch(id, db, key.clone(), expired);
        ctx.client.watched.push((db, key, expired));
    }
    Ok(Reply::OK)
}

fn unwatch(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    unwatch_all(ctx.store, ctx.client);
    Ok(Reply::OK)
}
