//! BGREWRITEAOF (`aof.c`): rewrite the append-only file from a point-in-time copy of
//! the data, in the background.

use crate::command::{CommandSpec, Ctx, ADMIN, NOSCRIPT};
use crate::error::{CmdError, CmdResult};
use crate::net::reply::Reply;
use bytes::Bytes;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![CommandSpec::new(
        "bgrewriteaof",
        1,
        ADMIN | NOSCRIPT,
        (0, 0, 0),
        bgrewriteaof,
    )]
}

fn bgrewriteaof(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let started = crate::persist::aof::start_rewrite(ctx.store).map_err(CmdError::Other)?;
    Ok(Reply::Simple(started))
}
