//! MONITOR: the client receives every command other clients run, as status lines
//! (`crate::observe::monitor` writes them).

use crate::command::{CommandSpec, Ctx, ADMIN, LOADING, NOSCRIPT, STALE};
use crate::error::CmdResult;
use crate::net::reply::Reply;
use bytes::Bytes;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![CommandSpec::new(
        "monitor",
        1,
        ADMIN | NOSCRIPT | LOADING | STALE,
        (0, 0, 0),
        monitor,
    )]
}

fn monitor(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let id = ctx.client.id;
    // An in-process caller has no connection to feed.
    if id != 0 && !ctx.client.monitor {
        ctx.client.monitor = true;
        ctx.store.observe.monitors.push(id);
    }
    Ok(Reply::OK)
}
