//! Generic key commands (`db.c`, `expire.c`).

use crate::command::{CommandSpec, Ctx, WRITE};
use crate::error::CmdResult;
use crate::notify;
use crate::reply::Reply;
use bytes::Bytes;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![CommandSpec::new("del", -2, WRITE, (1, -1, 1), del)]
}

fn del(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let mut n = 0;
    for k in &args[1..] {
        if ctx.db().remove(k, now).is_some() {
            ctx.key_event(notify::GENERIC, "del", k);
            n += 1;
        }
    }
    Ok(Reply::Int(n))
}
