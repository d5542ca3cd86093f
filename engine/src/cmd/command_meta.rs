//! Redis 7.0's command metadata, as redis-server 7.0.15 itself reports it: the
//! replies of `COMMAND INFO` and `COMMAND DOCS` over RESP3, captured byte for byte by
//! `engine/data/capture_commands.py` and embedded here. COMMAND INFO/DOCS/LIST answer
//! from them for the commands the engine has, and the dispatcher's observers read a
//! command's flags (`admin`, `skip_monitor`, `skip_slowlog`) from them.

use crate::net::reply::Reply;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::OnceLock;

static INFO_RESP3: &[u8] = include_bytes!("../../data/command_info.resp3");
static DOCS_RESP3: &[u8] = include_bytes!("../../data/command_docs.resp3");

/// What the observers need of a command's flags.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Flags {
    pub(crate) admin: bool,
    pub(crate) skip_monitor: bool,
    pub(crate) skip_slowlog: bool,
    pub(crate) may_replicate: bool,
    /// Keys found by arguments (numkeys, STREAMS), not only by fixed positions. The
    /// table carries it as `MOVABLE_KEYS`, which a unit test holds to this.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) movablekeys: bool,
    /// `noscript`: a script may not call it (for a container, per subcommand).
    pub(crate) noscript: bool,
    /// The arity (a subcommand's own, which a script's call is checked against).
    pub(crate) arity: i64,
}

/// The parsed metadata.
struct Meta {
    /// Top-level COMMAND INFO entries by name.
    info: HashMap<String, Reply>,
    /// Top-level COMMAND DOCS values by name.
    docs: HashMap<String, Reply>,
    /// Flags of every command and subcommand (`config|get`), by full name.
    flags: HashMap<String, Flags>,
    /// ACL categories of every command and subcommand, by full name.
    categories: HashMap<String, Vec<String>>,
}

fn meta() -> &'static Meta {
    static META: OnceLock<Meta> = OnceLock::new();
    META.get_or_init(|| {
        let mut m = Meta {
            info: HashMap::new(),
            docs: HashMap::new(),
            flags: HashMap::new(),
            categories: HashMap::new(),
        };
        if let Some((Reply::Array(entries), _)) = parse(INFO_RESP3) {
            for e in entries {
                if let Some(name) = entry_name(&e) {
                    index_entry(&mut m, &e);
                    m.info.insert(name, e);
                }
            }
        }
        if let Some((Reply::Map(pairs), _)) = parse(DOCS_RESP3) {
            for (k, v) in pairs {
                if let Some(name) = text(&k) {
                    m.docs.insert(name, v);
                }
            }
        }
        m
    })
}

/// Records the flags and categories of an INFO entry and its subcommands.
fn index_entry(m: &mut Meta, e: &Reply) {
    let Reply::Array(f) = e else { return };
    let Some(name) = entry_name(e) else { return };
    let words = |r: Option<&Reply>| -> Vec<String> {
        match r {
            Some(Reply::Set(v)) | Some(Reply::Array(v)) => v.iter().filter_map(text).collect(),
            _ => Vec::new(),
        }
    };
    let flags = words(f.get(2));
    let has = |w: &str| flags.iter().any(|f| f == w);
    m.flags.insert(
        name.clone(),
        Flags {
            admin: has("admin"),
            skip_monitor: has("skip_monitor"),
            skip_slowlog: has("skip_slowlog"),
            may_replicate: has("may_replicate"),
            movablekeys: has("movablekeys"),
            noscript: has("noscript"),
            arity: match f.get(1) {
                Some(Reply::Int(n)) => *n,
                _ => 0,
            },
        },
    );
    m.categories.insert(name, words(f.get(6)));
    if let Some(Reply::Array(subs) | Reply::Set(subs)) = f.get(9) {
        for s in subs {
            index_entry(m, s);
        }
    }
}

fn entry_name(e: &Reply) -> Option<String> {
    match e {
        Reply::Array(f) => f.first().and_then(text),
        _ => None,
    }
}

fn text(r: &Reply) -> Option<String> {
    match r {
        Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Status(s) => Some(s.clone()),
        _ => None,
    }
}

/// Redis's COMMAND INFO entry of a top-level command.
pub(crate) fn info(name: &str) -> Option<&'static Reply> {
    meta().info.get(name)
}

/// Redis's COMMAND DOCS value of a top-level command.
pub(crate) fn docs(name: &str) -> Option<&'static Reply> {
    meta().docs.get(name)
}

/// The flags of a command or subcommand (`config|get`); none for one Redis lacks.
pub(crate) fn flags(full_name: &str) -> Flags {
    meta().flags.get(full_name).copied().unwrap_or_default()
}

/// Whether Redis has this `container|sub` subcommand.
pub(crate) fn has_subcommand(full_name: &str) -> bool {
    meta().flags.contains_key(full_name)
}

/// The names of `name`'s subcommands (`config|get`, ...), as Redis lists them.
pub(crate) fn subcommands(name: &str) -> Vec<String> {
    let Some(Reply::Array(f)) = info(name) else {
        return Vec::new();
    };
    match f.get(9) {
        Some(Reply::Array(subs)) | Some(Reply::Set(subs)) => {
            subs.iter().filter_map(entry_name).collect()
        }
        _ => Vec::new(),
    }
}

/// The ACL categories of a command or subcommand, without the `@`.
pub(crate) fn categories(full_name: &str) -> Vec<&'static str> {
    meta()
        .categories
        .get(full_name)
        .map(|v| v.iter().map(|c| c.trim_start_matches('@')).collect())
        .unwrap_or_default()
}

/// Parses one RESP3 reply; returns it and the bytes it took. Only the types the
/// captured replies hold are read; anything else is `None`.
fn parse(b: &[u8]) -> Option<(Reply, usize)> {
    let end = b.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&b[1..end]).ok()?;
    let mut used = end + 2;
    let n = || line.parse::<i64>().ok();
    let many = |count: usize, used: &mut usize| -> Option<Vec<Reply>> {
        let mut v = Vec::with_capacity(count);
        for _ in 0..count {
            let (r, k) = parse(&b[*used..])?;
            *used += k;
            v.push(r);
        }
        Some(v)
    };
    let r = match b[0] {
        b'+' => Reply::Status(line.to_string()),
        b':' => Reply::Int(n()?),
        b'_' => Reply::Nil,
        b'$' => {
            let len = usize::try_from(n()?).ok()?;
            let s = Bytes::copy_from_slice(b.get(used..used + len)?);
            used += len + 2;
            Reply::Bulk(s)
        }
        b'*' => Reply::Array(many(usize::try_from(n()?).ok()?, &mut used)?),
        b'~' => Reply::Set(many(usize::try_from(n()?).ok()?, &mut used)?),
        b'%' => {
            let flat = many(2 * usize::try_from(n()?).ok()?, &mut used)?;
            let mut it = flat.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Reply::Map(pairs)
        }
        _ => return None,
    };
    Some((r, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_captured_metadata_parses() {
        assert!(matches!(info("get"), Some(Reply::Array(f)) if f.len() == 10));
        assert!(matches!(docs("get"), Some(Reply::Map(_))));
        assert!(flags("config|set").admin);
        assert!(flags("exec").skip_slowlog);
        assert!(has_subcommand("client|list") && !has_subcommand("client|nope"));
        assert!(categories("pfadd").contains(&"hyperloglog"));
        assert!(subcommands("config").contains(&"config|get".to_string()));
    }
}
