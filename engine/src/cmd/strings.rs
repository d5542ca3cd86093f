//! String commands (`t_string.c`).

use crate::command::{CommandSpec, Ctx, DENYOOM, FAST, READONLY, WRITE};
use crate::error::CmdResult;
use crate::notify;
use crate::reply::Reply;
use crate::types::Value;
use bytes::Bytes;

use super::own;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("get", 2, READONLY | FAST, (1, 1, 1), get),
        CommandSpec::new("set", -3, WRITE | DENYOOM, (1, 1, 1), set),
    ]
}

fn get(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    Ok(Reply::opt_bulk(ctx.db().get_str(&args[1], now)?.cloned()))
}

fn set(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    ctx.db()
        .insert(own(&args[1]), Value::Str(own(&args[2])), now);
    ctx.key_event(notify::STRING, "set", &args[1]);
    Ok(Reply::OK)
}
