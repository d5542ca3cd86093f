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
            let m = MemoryReport::now(ctx.store);
            let keys = ctx.store.total_keys() as i64;
            let int = |n: u64| Reply::Int(n.min(i64::MAX as u64) as i64);
            let pct = |a: u64, b: u64| {
                let p = if b == 0 { 0.0 } else { a as f64 * 100.0 / b as f64 };
                Reply::Double(p)
            };
            let dataset = m.dataset();
            let net = m.used.saturating_sub(m.startup);
            Ok(Reply::Map(vec![
                (Reply::text("peak.allocated"), int(m.peak)),
                (Reply::text("total.allocated"), int(m.used)),
                (Reply::text("startup.allocated"), int(m.startup)),
                (Reply::text("overhead.total"), int(m.overhead)),
                (Reply::text("keys.count"), Reply::Int(keys)),
                (
                    Reply::text("keys.bytes-per-key"),
                    int(if keys == 0 { 0 } else { net / keys as u64 }),
                ),
                (Reply::text("dataset.bytes"), int(dataset)),
                (Reply::text("dataset.percentage"), pct(dataset, net)),
                (Reply::text("peak.percentage"), pct(m.used, m.peak)),
                (Reply::text("fragmentation"), Reply::Double(m.fragmentation())),
                (
                    Reply::text("fragmentation.bytes"),
                    Reply::Int(m.rss as i64 - m.used as i64),
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
    let policy = ctx.store.evict_policy;
    // `allkeys-tinylfu` keeps access ticks, not times, in the clock bits: it answers
    // as an LFU policy, with its sketch's estimate for OBJECT FREQ.
    let tiny = policy == crate::keyspace::evict::Policy::AllKeysTinyLfu;
    let lfu = policy.is_lfu() || tiny;
    let decay = ctx.store.config.lfu_decay_time;
    let estimate = if tiny {
        ctx.db()
            .admission
            .as_deref()
            .map(|a| a.frequency(&args[2]) as i64)
    } else {
        None
    };
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
            match estimate {
                Some(n) => Reply::Int(n),
                None => Reply::Int(crate::keyspace::evict::lfu_decayed(e.lru, decay, now) as i64),
            }
        }
    })
}

/// Bytes one stored key costs besides its key and value's own heap: its slot in the
/// keyspace map (hash, key, entry: 64 bytes) and in the hash index (8 bytes and a
/// control byte).
const PER_KEY: usize = 73;

/// Bytes used by one key: its name's and value's heap plus its share of the keyspace
/// tables (MEMORY USAGE).
pub(crate) fn key_usage(key: &[u8], v: &Value) -> usize {
    // Names up to 22 bytes are stored inline; longer ones in a counted block.
    let name = if key.len() > 22 { key.len() + 16 } else { 0 };
    name + v.mem_usage() + PER_KEY
}

/// Where the process's memory goes, from the counting allocator (INFO memory,
/// MEMORY STATS).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MemoryReport {
    /// Allocated now (`used_memory`).
    pub(crate) used: u64,
    /// Highest `used` seen.
    pub(crate) peak: u64,
    /// Allocated when the store was created.
    pub(crate) startup: u64,
    /// What is not the data set: startup memory, the keyspace's tables, clients.
    pub(crate) overhead: u64,
    /// Resident set size (`used_memory_rss`).
    pub(crate) rss: u64,
}

impl MemoryReport {
    /// Reads the counters now (O(databases)); also moves the peak.
    pub(crate) fn now(store: &mut crate::store::Store) -> MemoryReport {
        let used = crate::alloc::used_memory();
        store.peak_memory = store.peak_memory.max(used);
        let tables: usize = store.dbs.iter().map(|d| d.table_bytes()).sum();
        let overhead = (store.startup_memory + tables).min(used);
        MemoryReport {
            used: used as u64,
            peak: store.peak_memory as u64,
            startup: store.startup_memory as u64,
            overhead: overhead as u64,
            rss: crate::alloc::rss() as u64,
        }
    }
    /// Data set bytes: used minus overhead.
    pub(crate) fn dataset(&self) -> u64 {
        self.used.saturating_sub(self.overhead)
    }
    /// RSS over used (`mem_fragmentation_ratio`).
    pub(crate) fn fragmentation(&self) -> f64 {
        if self.used == 0 {
            0.0
        } else {
            self.rss as f64 / self.used as f64
        }
    }
}
