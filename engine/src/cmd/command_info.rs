//! COMMAND (`server.c`): the command table as clients see it (COUNT INFO DOCS GETKEYS
//! LIST).

use super::command_meta as meta;
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
    ("getkeysandflags", -4),
    ("list", -2),
    ("help", 2),
];

/// A command's COMMAND INFO entry: Redis's own for the commands Redis has; for
/// Coherent's own (LEASEGET, ...) one built from the table, with Redis's ten fields.
fn command_row(spec: &CommandSpec) -> Reply {
    if let Some(r) = meta::info(spec.name) {
        return r.clone();
    }
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

/// A command's COMMAND DOCS value: Redis's own, or a summary for Coherent's commands.
fn docs_of(spec: &CommandSpec) -> Reply {
    if let Some(r) = meta::docs(spec.name) {
        return r.clone();
    }
    let summary = match spec.name {
        "leaseget" => "Returns a key's value, or a lease token to fill it (Coherent)",
        "leaseset" => "Sets a key's value if the lease token is still valid (Coherent)",
        "leaseinfo" => "Returns the milliseconds left of a key's lease (Coherent)",
        _ => "A Coherent command",
    };
    Reply::Map(vec![
        (Reply::text("summary"), Reply::text(summary)),
        (Reply::text("since"), Reply::text("1.0.0")),
        (Reply::text("group"), Reply::text("generic")),
        (Reply::text("complexity"), Reply::text("O(1)")),
    ])
}

/// The entry (INFO or DOCS) of a name that may be `container|sub`: the container's
/// own, or the subcommand's inside it (INFO's tenth field, DOCS's `subcommands`).
fn find_entry(name: &[u8], docs: bool) -> Option<(String, Reply)> {
    let name = crate::util::lower(name);
    let (top, sub) = match name.split_once('|') {
        Some((t, _)) => (t, Some(name.as_str())),
        None => (name.as_str(), None),
    };
    let spec = command::lookup(top.as_bytes())?;
    let whole = if docs {
        docs_of(spec)
    } else {
        command_row(spec)
    };
    let Some(sub) = sub else {
        return Some((spec.name.to_string(), whole));
    };
    let found = match (&whole, docs) {
        (Reply::Array(f), false) => match f.get(9) {
            Some(Reply::Array(subs)) | Some(Reply::Set(subs)) => subs
                .iter()
                .find(|e| matches!(e, Reply::Array(g) if is_named(g.first(), sub)))
                .cloned(),
            _ => None,
        },
        (Reply::Map(m), true) => m.iter().find_map(|(k, v)| match (k, v) {
            (k, Reply::Map(inner)) if is_named(Some(k), "subcommands") => inner
                .iter()
                .find(|(n, _)| is_named(Some(n), sub))
                .map(|(_, d)| d.clone()),
            _ => None,
        }),
        _ => None,
    };
    found.map(|r| (sub.to_string(), r))
}

fn is_named(r: Option<&Reply>, name: &str) -> bool {
    match r {
        Some(Reply::Bulk(b)) => b.as_ref() == name.as_bytes(),
        Some(Reply::Status(s)) => s == name,
        _ => false,
    }
}

fn sorted_specs() -> Vec<&'static CommandSpec> {
    let mut v: Vec<_> = command::table().values().collect();
    v.sort_by_key(|s| s.name);
    v
}

/// Every command name COMMAND LIST shows: the engine's commands and their
/// subcommands (`config|get`), with each one's ACL categories.
fn all_names() -> Vec<(String, Vec<&'static str>)> {
    let mut out = Vec::new();
    for s in sorted_specs() {
        out.push((s.name.to_string(), meta::categories(s.name)));
        for sub in meta::subcommands(s.name) {
            let cats = meta::categories(&sub);
            out.push((sub, cats));
        }
    }
    out
}

/// A COMMAND LIST FILTERBY test over (name, ACL categories).
type NameFilter = dyn Fn(&(String, Vec<&str>)) -> bool;

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
                    .map(|n| find_entry(n, false).map_or(Reply::Nil, |(_, r)| r))
                    .collect(),
            ))
        }
        "docs" => {
            let found: Vec<(String, Reply)> = if args.len() == 2 {
                sorted_specs()
                    .into_iter()
                    .map(|s| (s.name.to_string(), docs_of(s)))
                    .collect()
            } else {
                args[2..]
                    .iter()
                    .filter_map(|n| find_entry(n, true))
                    .collect()
            };
            Ok(Reply::Map(
                found
                    .into_iter()
                    .map(|(n, d)| (Reply::text(n), d))
                    .collect(),
            ))
        }
        "getkeys" => getkeys(&args[2..], false),
        "getkeysandflags" => getkeys(&args[2..], true),
        "list" => {
            let names = all_names();
            let keep: Box<NameFilter> = match args.len() {
                2 => Box::new(|_| true),
                5 if eq_ic(&args[2], "filterby") => {
                    let v = args[4].clone();
                    if eq_ic(&args[3], "pattern") {
                        Box::new(move |(n, _)| glob_match(&v, n.as_bytes(), true))
                    } else if eq_ic(&args[3], "aclcat") {
                        let cat = crate::util::lower(&v);
                        Box::new(move |(_, c)| c.iter().any(|c| c.eq_ignore_ascii_case(&cat)))
                    } else if eq_ic(&args[3], "module") {
                        // No modules.
                        Box::new(|_| false)
                    } else {
                        return Err(CmdError::Syntax);
                    }
                }
                _ => return Err(CmdError::Syntax),
            };
            Ok(Reply::Array(
                names
                    .iter()
                    .filter(|n| keep(n))
                    .map(|(n, _)| Reply::text(n.clone()))
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

/// The key arguments of `call` (argv[0] its name) with their flags, as COMMAND
/// GETKEYSANDFLAGS finds them (key specs, Redis's getkeys callbacks, the table's
/// positions), and whether the command has the `no_mandatory_keys` flag. Also how
/// client-side caching finds the keys a movable-keys read (ZUNION, XREAD, ...) read.
pub(crate) fn locate_keys(call: &[Bytes]) -> Result<(Vec<super::keyspecs::Found>, bool), CmdError> {
    let Some(spec) = command::lookup(&call[0]) else {
        return Err(CmdError::err("Invalid command specified"));
    };
    let sub_name = (call.len() > 1 && spec.flags & command::LABEL_SUB != 0)
        .then(|| format!("{}|{}", spec.name, crate::util::lower(&call[1])))
        .filter(|n| meta::has_subcommand(n));
    let entry = match &sub_name {
        Some(n) => find_entry(n.as_bytes(), false).map(|(_, r)| r),
        None => Some(command_row(spec)),
    };
    let fields = match &entry {
        Some(Reply::Array(f)) => f.as_slice(),
        _ => &[],
    };
    let arity = match fields.get(1) {
        Some(Reply::Int(n)) => *n,
        _ => spec.arity as i64,
    };
    let key_specs: &[Reply] = match fields.get(8) {
        Some(Reply::Array(v)) | Some(Reply::Set(v)) => v,
        _ => &[],
    };
    let flags = match fields.get(2) {
        Some(Reply::Set(v)) => v.clone(),
        _ => Vec::new(),
    };
    let has_flag = |f: &str| {
        flags
            .iter()
            .any(|x| matches!(x, Reply::Status(s) if s == f))
    };
    if key_specs.is_empty() && spec.first_key <= 0 {
        return Err(CmdError::err("The command has no key arguments"));
    }
    let argc = call.len() as i64;
    if (arity > 0 && argc != arity) || argc < -arity {
        return Err(CmdError::err(
            "Invalid number of arguments specified for command",
        ));
    }
    let found = if super::keyspecs::reliable(key_specs) {
        super::keyspecs::find(key_specs, call, arity)
            .or_else(|| super::keyspecs::callback(spec.name, call))
            .unwrap_or_default()
    } else if let Some(found) = super::keyspecs::callback(spec.name, call) {
        found
    } else {
        let first_flags = key_specs
            .first()
            .and_then(|s| match s {
                Reply::Map(m) => m.iter().find(|(k, _)| is_named(Some(k), "flags")),
                _ => None,
            })
            .map(|(_, v)| v.clone())
            .unwrap_or(Reply::Set(vec![]));
        let mut v = Vec::new();
        let keys = spec.keys(call);
        for k in keys {
            if let Some(i) = call.iter().position(|a| std::ptr::eq(a, k)) {
                v.push((i, first_flags.clone()));
            }
        }
        v
    };
    Ok((found, has_flag("no_mandatory_keys")))
}

/// COMMAND GETKEYS / GETKEYSANDFLAGS (`commandGetKeys`): the keys of a call by its
/// key specs, as Redis finds them; by the table's key positions when the specs are
/// incomplete (SORT's STORE, ...), as Redis's getkeys callbacks do.
fn getkeys(call: &[Bytes], with_flags: bool) -> CmdResult {
    let (found, no_mandatory_keys) = locate_keys(call)?;
    if found.is_empty() {
        if no_mandatory_keys {
            return Ok(Reply::Array(vec![]));
        }
        return Err(CmdError::err("Invalid arguments specified for command"));
    }
    Ok(Reply::Array(
        found
            .into_iter()
            .map(|(i, f)| {
                let key = Reply::Bulk(call[i].clone());
                if with_flags {
                    Reply::Array(vec![key, f])
                } else {
                    key
                }
            })
            .collect(),
    ))
}
