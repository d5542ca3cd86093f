//! Server commands (`server.c`, `db.c`): FLUSHALL FLUSHDB DBSIZE.

use crate::command::{CommandSpec, Ctx, FAST, READONLY, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;
use crate::util::eq_ic;
use bytes::Bytes;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("flushall", -1, WRITE, (0, 0, 0), flushall),
        CommandSpec::new("flushdb", -1, WRITE, (0, 0, 0), flushdb),
        CommandSpec::new("dbsize", 1, READONLY | FAST, (0, 0, 0), dbsize),
    ]
}

fn flush_mode(args: &[Bytes]) -> Result<(), CmdError> {
    match args.len() {
        1 => Ok(()),
        2 if eq_ic(&args[1], "async") || eq_ic(&args[1], "sync") => Ok(()),
        _ => Err(CmdError::Syntax),
    }
}

fn flushall(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    flush_mode(args)?;
    for i in 0..ctx.store.dbs.len() {
        // WATCH is invalidated only for keys that existed, so look before clearing.
        ctx.store.touch_db_watchers(i, None);
        ctx.store.dbs[i].clear();
        ctx.store.blocking.signal_db(i);
    }
    ctx.store.stats.dirty += 1;
    Ok(Reply::OK)
}

fn flushdb(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    flush_mode(args)?;
    let db = ctx.client.db;
    ctx.store.touch_db_watchers(db, None);
    ctx.store.dbs[db].clear();
    ctx.store.blocking.signal_db(db);
    ctx.store.stats.dirty += 1;
    Ok(Reply::OK)
}

fn dbsize(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(ctx.db().len() as i64))
}
