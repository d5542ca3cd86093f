//! Persistence commands (`rdb.c`): SAVE BGSAVE LASTSAVE. The work is
//! `crate::persist::save`'s; DEBUG RELOAD and SHUTDOWN's saving are in `server`.

use crate::command::{CommandSpec, Ctx, ADMIN, FAST, LOADING, NOSCRIPT, STALE};
use crate::error::{CmdError, CmdResult};
use crate::net::reply::Reply;
use crate::persist::save::{self, ChildKind};
use crate::util::eq_ic;
use bytes::Bytes;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("save", 1, ADMIN | NOSCRIPT, (0, 0, 0), save_cmd),
        CommandSpec::new("bgsave", -1, ADMIN | NOSCRIPT, (0, 0, 0), bgsave),
        CommandSpec::new("lastsave", 1, LOADING | STALE | FAST, (0, 0, 0), lastsave),
    ]
}

/// Redis's reply to a save that failed: a bare `-ERR` (the reason goes to the log).
fn failed(e: save::PersistError) -> CmdError {
    tracing::error!(error = %e, "save failed");
    CmdError::Other("ERR".into())
}

fn save_cmd(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    if ctx.store.save.bgsave_running() {
        return Err(CmdError::err("Background save already in progress"));
    }
    ctx.store.save.saves += 1;
    save::save_sync(ctx.store).map_err(failed)?;
    Ok(Reply::OK)
}

fn bgsave(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let schedule = match args.len() {
        1 => false,
        2 if eq_ic(&args[1], "schedule") => true,
        _ => return Err(CmdError::Syntax),
    };
    match ctx.store.save.child.as_ref().map(|c| c.kind) {
        Some(ChildKind::Rdb | ChildKind::Replication) => {
            Err(CmdError::err("Background save already in progress"))
        }
        Some(ChildKind::Aof) if schedule => {
            ctx.store.save.bgsave_scheduled = true;
            Ok(Reply::Simple("Background saving scheduled"))
        }
        Some(ChildKind::Aof) => Err(CmdError::err(
            "Another child process is active (AOF?): can't BGSAVE right now. Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever possible.",
        )),
        None => {
            save::bgsave_start(ctx.store).map_err(failed)?;
            Ok(Reply::Simple("Background saving started"))
        }
    }
}

fn lastsave(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(ctx.store.save.lastsave as i64))
}
