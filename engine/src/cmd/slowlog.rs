//! SLOWLOG (`slowlog.c`): GET [count] | LEN | RESET | HELP over the log the
//! dispatcher fills (`crate::observe::slowlog`).

use super::subcommand::{help_reply, subcommand};
use crate::command::{CommandSpec, Ctx, LOADING, STALE};
use crate::error::{CmdError, CmdResult};
use crate::net::reply::Reply;
use bytes::Bytes;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![CommandSpec::new(
        "slowlog",
        -2,
        LOADING | STALE,
        (0, 0, 0),
        slowlog,
    )]
}

const SUBS: &[(&str, i32)] = &[("get", -2), ("len", 2), ("reset", 2), ("help", 2)];

fn slowlog(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let log = &mut ctx.store.observe.slowlog;
    match subcommand("slowlog", SUBS, args)? {
        "get" => {
            if args.len() > 3 {
                return Err(CmdError::err(format!(
                    "unknown subcommand or wrong number of arguments for '{}'. Try SLOWLOG HELP.",
                    String::from_utf8_lossy(&args[1])
                )));
            }
            let count = match args.get(2) {
                None => 10,
                Some(a) => match crate::util::parse_i64(a) {
                    Some(-1) => log.len(),
                    Some(n) if n >= 0 => n as usize,
                    _ => return Err(CmdError::err("count should be greater than or equal to -1")),
                },
            };
            Ok(log.get(count))
        }
        "len" => Ok(Reply::Int(log.len() as i64)),
        "reset" => {
            log.clear();
            Ok(Reply::OK)
        }
        _ => Ok(help_reply(
            "slowlog",
            &[
                "GET [<count>]",
                "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                "    Entries are made of:",
                "    id, timestamp, time in microseconds, arguments array, client IP and port,",
                "    client name",
                "LEN",
                "    Return the length of the slowlog.",
                "RESET",
                "    Reset the slowlog.",
            ],
        )),
    }
}
