//! Helpers for commands with subcommands (CONFIG GET, CLIENT LIST, ...): arity and
//! unknown-subcommand errors in Redis's wording, and HELP replies.

use crate::error::CmdError;
use crate::net::reply::Reply;
use crate::util::eq_ic;
use bytes::Bytes;
// Helpers shared with the CLIENT family: containers with subcommands.

/// Checks a subcommand's arity (argv[0] is the container, argv[1] the subcommand),
/// replying as Redis does with `container|sub` in the message.
pub fn sub_arity(container: &str, sub: &str, arity: i32, args: &[Bytes]) -> Result<(), CmdError> {
    let argc = args.len() as i32;
    if (arity > 0 && argc != arity) || argc < -arity {
        return Err(CmdError::Arity(format!("{container}|{sub}")));
    }
    Ok(())
}

/// `ERR unknown subcommand 'x'. Try CONTAINER HELP.`
pub fn unknown_sub(container: &str, sub: &[u8]) -> CmdError {
    let s: String = String::from_utf8_lossy(sub).chars().take(128).collect();
    CmdError::err(format!(
        "unknown subcommand '{s}'. Try {} HELP.",
        container.to_ascii_uppercase()
    ))
}

/// A HELP reply: the usage line, the given lines, then Redis's closing HELP entry.
pub fn help_reply(container: &str, lines: &[&str]) -> Reply {
    let mut v = vec![Reply::Status(format!(
        "{} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        container.to_ascii_uppercase()
    ))];
    v.extend(lines.iter().map(|l| Reply::Status((*l).to_string())));
    v.push(Reply::Simple("HELP"));
    v.push(Reply::Simple("    Prints this help."));
    Reply::Array(v)
}

/// Finds `args[1]` in a subcommand table of (name, arity) and checks the arity;
/// returns the lower-case subcommand name.
pub fn subcommand(
    container: &str,
    table: &[(&'static str, i32)],
    args: &[Bytes],
) -> Result<&'static str, CmdError> {
    let sub = &args[1];
    let Some(&(name, arity)) = table.iter().find(|(n, _)| eq_ic(sub, n)) else {
        return Err(unknown_sub(container, sub));
    };
    sub_arity(container, name, arity, args)?;
    Ok(name)
}
