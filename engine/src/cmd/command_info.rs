//! COMMAND (`server.c`): the command table as clients see it (COUNT INFO DOCS GETKEYS
//! LIST).

use super::subcommand::{help_reply, subcommand};
use crate::command::{self, CommandSpec, Ctx, LOADING, STALE};
use crate::error::{CmdError, CmdResult};
use crate::net::reply::Reply;
use crate::util::{eq_ic, glob_match};
use bytes::Bytes;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![CommandSpec::new(
        "command",
        -1,
        LOADING | STALE,
        (0, 0, 0),
        command_cmd,
    )]
}

const COMMAND_SUBS: &[(&str, i32)] = &[
    ("count", 2),
    ("info", -2),
    ("docs", -2),
    ("getkeys", -4),
    ("list", -2),
    ("help", 2),
];

/// One COMMAND INFO row, Redis 7.0's ten fields (ACL categories, tips, key specs and
/// subcommands left empty).
fn command_row(spec: &CommandSpec) -> Reply {
    Reply::Array(vec![
        Reply::text(spec.name),
        Reply::Int(spec.arity as i64),
        Reply::Set(spec.flag_names().into_iter().map(Reply::Simple).collect()),
        Reply::Int(spec.first_key as i64),
        Reply::Int(spec.last_key as i64),
        Reply::Int(spec.step as i64),
        Reply::Set(vec![]),
        Reply::Set(vec![]),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
    ])
}

fn sorted_specs() -> Vec<&'static CommandSpec> {
    let mut v: Vec<_> = command::table().values().collect();
    v.sort_by_key(|s| s.name);
    v
}

fn command_cmd(_ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if args.len() == 1 {
        return Ok(Reply::Array(
            sorted_specs().into_iter().map(command_row).collect(),
        ));
    }
    match subcommand("command", COMMAND_SUBS, args)? {
        "count" => Ok(Reply::Int(command::table().len() as i64)),
        "info" => {
            if args.len() == 2 {
                return Ok(Reply::Array(
                    sorted_specs().into_iter().map(command_row).collect(),
                ));
            }
            Ok(Reply::Array(
                args[2..]
                    .iter()
                    .map(|n| command::lookup(n).map_or(Reply::Nil, command_row))
                    .collect(),
            ))
        }
        "docs" => {
            let specs: Vec<&CommandSpec> = if args.len() == 2 {
                sorted_specs()
            } else {
                args[2..]
                    .iter()
                    .filter_map(|n| command::lookup(n))
                    .collect()
            };
            Ok(Reply::Map(
                specs
                    .into_iter()
                    .map(|s| {
                        (
                            Reply::text(s.name),
                            Reply::Map(vec![
                                (Reply::text("summary"), Reply::text("")),
                                (Reply::text("since"), Reply::text("1.0.0")),
                                (Reply::text("group"), Reply::text("generic")),
                            ]),
                        )
                    })
                    .collect(),
            ))
        }
        "getkeys" => {
            let Some(spec) = command::lookup(&args[2]) else {
                return Err(CmdError::err("Invalid command specified"));
            };
            if spec.first_key <= 0 {
                return Err(CmdError::err("The command has no key arguments"));
            }
            let call = &args[2..];
            let argc = call.len() as i32;
            if (spec.arity > 0 && argc != spec.arity) || argc < -spec.arity {
                return Err(CmdError::err(
                    "Invalid number of arguments specified for command",
                ));
            }
            let keys = spec.keys(call);
            if keys.is_empty() {
                return Err(CmdError::err("Invalid arguments specified for command"));
            }
            Ok(Reply::Array(
                keys.into_iter().map(|k| Reply::Bulk(k.clone())).collect(),
            ))
        }
        "list" => {
            let mut pattern: Option<&Bytes> = None;
            let mut none = false;
            match args.len() {
                2 => {}
                5 if eq_ic(&args[2], "filterby") => {
                    if eq_ic(&args[3], "pattern") {
                        pattern = Some(&args[4]);
                    } else if eq_ic(&args[3], "module") || eq_ic(&args[3], "aclcat") {
                        // No modules, and ACL categories are not tracked.
                        none = true;
                    } else {
                        return Err(CmdError::Syntax);
                    }
                }
                _ => return Err(CmdError::Syntax),
            }
            Ok(Reply::Array(
                sorted_specs()
                    .into_iter()
                    .filter(|s| {
                        !none && pattern.is_none_or(|p| glob_match(p, s.name.as_bytes(), true))
                    })
                    .map(|s| Reply::text(s.name))
                    .collect(),
            ))
        }
        _ => Ok(help_reply(
            "command",
            &[
                "(no subcommand)",
                "    Return details about all Redis commands.",
                "COUNT",
                "    Return the total number of commands in this Redis server.",
                "LIST",
                "    Return a list of all commands in this Redis server.",
                "INFO [<command-name> ...]",
                "    Return details about multiple Redis commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
                "DOCS [<command-name> ...]",
                "    Return documentation details about multiple Redis commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
                "GETKEYS <full-command>",
                "    Return the keys from a full Redis command.",
                "GETKEYSANDFLAGS <full-command>",
                "    Return the keys and the access flags from a full Redis command.",
            ],
        )),
    }
}
