//! OBJECT and MEMORY (`object.c`): encodings, idle time, frequency, memory usage.

use super::subcommand::{help_reply, subcommand};
use crate::command::{CommandSpec, Ctx};
use crate::error::{CmdError, CmdResult};
use crate::keyspace::db::lru_clock;
use crate::net::reply::Reply;
use crate::types::{string_encoding, Value};
use crate::util::eq_ic;
use bytes::Bytes;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("memory", -2, 0, (0, 0, 0), memory),
        CommandSpec::new("object", -2, 0, (0, 0, 0), object),
    ]
}

const MEMORY_SUBS: &[(&str, i32)] = &[
    ("usage", -3),
    ("doctor", 2),
    ("stats", 2),
    ("malloc-stats", 2),
    ("purge", 2),
    ("help", 2),
];

fn memory(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    match subcommand("memory", MEMORY_SUBS, args)? {
        "usage" => {
            let mut i = 3;
            while i < args.len() {
                if eq_ic(&args[i], "samples") && i + 1 < args.len() {
                    let n = super::int_arg(&args[i + 1])?;
                    if n < 0 {
                        return Err(CmdError::Syntax);
                    }
                    i += 2;
                } else {
                    return Err(CmdError::Syntax);
                }
            }
            let now = ctx.now();
            Ok(match ctx.db().peek(&args[2], now) {
                None => Reply::Nil,
                Some(e) => Reply::Int(key_usage(&args[2], &e.value) as i64),
            })
        }
        "doctor" => Ok(Reply::Verbatim(Bytes::from_static(
            b"Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs on this base.",
        ))),
        "stats" => {
            let used = used_memory(ctx.store) as i64;
            let keys = ctx.store.total_keys() as i64;
            Ok(Reply::Map(vec![
                (Reply::text("peak.allocated"), Reply::Int(used)),
                (Reply::text("total.allocated"), Reply::Int(used)),
                (Reply::text("startup.allocated"), Reply::Int(BASE_MEMORY as i64)),
                (Reply::text("keys.count"), Reply::Int(keys)),
                (
                    Reply::text("dataset.bytes"),
                    Reply::Int(used - BASE_MEMORY as i64),
                ),
            ]))
        }
        "malloc-stats" => Ok(Reply::Verbatim(Bytes::from_static(
            b"Stats not supported for the current allocator",
        ))),
        "purge" => Ok(Reply::OK),
        _ => Ok(help_reply(
            "memory",
            &[
                "DOCTOR",
                "    Return memory problems reports.",
                "MALLOC-STATS",
                "    Return internal statistics report from the memory allocator.",
                "PURGE",
                "    Attempt to purge dirty pages for reclamation by the allocator.",
                "STATS",
                "    Return information about the memory usage of the server.",
                "USAGE <key> [SAMPLES <count>]",
                "    Return memory in bytes used by <key> and its value. Nested values are",
                "    sampled up to <count> times (default: 5, 0 means sample all).",
            ],
        )),
    }
}

const OBJECT_SUBS: &[(&str, i32)] = &[
    ("encoding", 3),
    ("freq", 3),
    ("idletime", 3),
    ("refcount", 3),
    ("written", 3),
    ("help", 2),
];

/// OBJECT ENCODING of a value.
pub fn encoding_of(e: &crate::keyspace::db::Entry) -> &'static str {
    match &e.value {
        Value::Str(b) => string_encoding(b, e.is_raw()),
        Value::List(l) => l.encoding(),
        Value::Hash(h) => h.encoding(),
        Value::Set(s) => s.encoding(),
        Value::ZSet(z) => z.encoding(),
        Value::Stream(_) => "stream",
    }
}

/// What OBJECT and DEBUG OBJECT report about a value, read without copying it.
/// What OBJECT and DEBUG OBJECT report about a key.
pub(crate) struct ObjInfo {
    pub(crate) encoding: &'static str,
    pub(crate) refcount: i64,
    pub(crate) lru: u32,
    pub(crate) mem: usize,
    /// When the value was last written, Unix ms at 100 ms resolution.
    pub(crate) written: u64,
}

/// Looks a key up without touching its LRU clock (OBJECT is not an access).
pub(crate) fn obj_info(ctx: &mut Ctx, key: &[u8]) -> Option<ObjInfo> {
    let now = ctx.now();
    let cfg = &ctx.store.config;
    let policy = &cfg.maxmemory_policy;
    // Redis stops sharing small integers when an LRU/LFU policy needs per-object data.
    let sharing = cfg.maxmemory == 0 || !(policy.contains("lru") || policy.contains("lfu"));
    let e = ctx.db().peek(key, now)?;
    let shared = sharing
        && matches!(&e.value, Value::Str(b) if string_encoding(b, e.is_raw()) == "int"
            && crate::util::parse_i64(b).is_some_and(|n| (0..10_000).contains(&n)));
    Some(ObjInfo {
        encoding: encoding_of(e),
        refcount: if shared { i32::MAX as i64 } else { 1 },
        lru: e.lru(),
        mem: e.value.mem_usage(),
        written: e.written_at(),
    })
}

fn object(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let sub = subcommand("object", OBJECT_SUBS, args)?;
    if sub == "help" {
        return Ok(help_reply(
            "object",
            &[
                "ENCODING <key>",
                "    Return the kind of internal representation used in order to store the value",
                "    associated with a <key>.",
                "FREQ <key>",
                "    Return the access frequency index of the <key>. The returned integer is",
                "    proportional to the logarithm of the recent access frequency of the key.",
                "IDLETIME <key>",
                "    Return the idle time of the <key>, that is the approximated number of",
                "    seconds elapsed since the last access to the key.",
                "REFCOUNT <key>",
                "    Return the number of references of the value associated with the specified",
                "    <key>.",
            ],
        ));
    }
    let now = ctx.now();
    let lfu = ctx.store.config.maxmemory_policy.contains("lfu");
    let Some(e) = obj_info(ctx, &args[2]) else {
        return Ok(Reply::Nil);
    };
    Ok(match sub {
        "encoding" => Reply::text(e.encoding),
        "refcount" => Reply::Int(e.refcount),
        // Coherent's own (kept out of HELP, which answers as Redis does): when the
        // value was last written, Unix ms at 100 ms resolution, for the audit.
        "written" => Reply::Int(e.written as i64),
        "idletime" => {
            if lfu {
                return Err(CmdError::err("An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust."));
            }
            let clock = lru_clock(now);
            let idle = if clock >= e.lru {
                clock - e.lru
            } else {
                clock + (0xFF_FFFF - e.lru)
            };
            Reply::Int(idle as i64)
        }
        _ => {
            if !lfu {
                return Err(CmdError::err("An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust."));
            }
            // Access frequency is not tracked; report Redis's initial counter.
            Reply::Int(5)
        }
    })
}

/// Memory Redis reports right after start; the engine's own overhead is of that order.
pub(crate) const BASE_MEMORY: usize = 870_000;

/// Estimated bytes used by one key: its value plus key and dict-entry overhead.
pub(crate) fn key_usage(key: &[u8], v: &Value) -> usize {
    key.len() + v.mem_usage() + 56
}

/// Estimated memory in use: a fixed base plus every key's estimate. O(keys).
pub fn used_memory(store: &crate::store::Store) -> u64 {
    let data: usize = store
        .dbs
        .iter()
        .flat_map(|d| d.iter())
        .map(|(k, e)| key_usage(k, &e.value))
        .sum();
    (BASE_MEMORY + data + store.clients.connected() * 20_000) as u64
}
