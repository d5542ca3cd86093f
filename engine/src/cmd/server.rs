//! Server commands (`server.c`, `db.c`, `config.c`, `object.c`, `debug.c`):
//! FLUSHALL FLUSHDB DBSIZE SWAPDB TIME INFO CONFIG MEMORY OBJECT DEBUG SHUTDOWN
//! LASTSAVE ROLE COMMAND.

use crate::command::{
    self, CommandSpec, Ctx, ADMIN, FAST, LOADING, NOSCRIPT, READONLY, STALE, WRITE,
};
use crate::config::{parse_memory, EngineConfig};
use crate::db::lru_clock;
use crate::error::{CmdError, CmdResult};
use crate::reply::Reply;
use crate::types::{string_encoding, Value};
use crate::util::{eq_ic, glob_match, lower};
use bytes::Bytes;
use std::fmt::Write as _;
use std::sync::OnceLock;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    let admin = ADMIN | NOSCRIPT | LOADING | STALE;
    vec![
        CommandSpec::new("flushall", -1, WRITE, (0, 0, 0), flushall),
        CommandSpec::new("flushdb", -1, WRITE, (0, 0, 0), flushdb),
        CommandSpec::new("dbsize", 1, READONLY | FAST, (0, 0, 0), dbsize),
        CommandSpec::new("swapdb", 3, WRITE | FAST, (0, 0, 0), swapdb),
        CommandSpec::new("time", 1, LOADING | STALE | FAST, (0, 0, 0), time),
        CommandSpec::new("info", -1, LOADING | STALE, (0, 0, 0), info),
        CommandSpec::new("config", -2, 0, (0, 0, 0), config),
        CommandSpec::new("memory", -2, 0, (0, 0, 0), memory),
        CommandSpec::new("object", -2, 0, (0, 0, 0), object),
        CommandSpec::new("debug", -2, admin, (0, 0, 0), debug),
        CommandSpec::new("shutdown", -1, admin, (0, 0, 0), shutdown),
        CommandSpec::new("lastsave", 1, LOADING | STALE | FAST, (0, 0, 0), lastsave),
        CommandSpec::new(
            "role",
            1,
            NOSCRIPT | LOADING | STALE | FAST,
            (0, 0, 0),
            role,
        ),
        CommandSpec::new("command", -1, LOADING | STALE, (0, 0, 0), command_cmd),
    ]
}

// ---------------------------------------------------------------------------------
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
fn subcommand(
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

// ---------------------------------------------------------------------------------
// Keyspace-wide commands.

fn flush_mode(args: &[Bytes]) -> Result<(), CmdError> {
    match args.len() {
        1 => Ok(()),
        2 if eq_ic(&args[1], "async") || eq_ic(&args[1], "sync") => Ok(()),
        _ => Err(CmdError::Syntax),
    }
}

fn flushall(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    flush_mode(args)?;
    for i in 0..ctx.store.dbs.len() {
        // WATCH is invalidated only for keys that existed, so look before clearing.
        ctx.store.touch_db_watchers(i, None);
        ctx.store.dbs[i].clear();
        ctx.store.blocking.signal_db(i);
    }
    ctx.store.stats.dirty += 1;
    Ok(Reply::OK)
}

fn flushdb(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    flush_mode(args)?;
    let db = ctx.client.db;
    ctx.store.touch_db_watchers(db, None);
    ctx.store.dbs[db].clear();
    ctx.store.blocking.signal_db(db);
    ctx.store.stats.dirty += 1;
    Ok(Reply::OK)
}

fn dbsize(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(ctx.db().len() as i64))
}

fn swapdb(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let a =
        crate::util::parse_i64(&args[1]).ok_or_else(|| CmdError::err("invalid first DB index"))?;
    let b =
        crate::util::parse_i64(&args[2]).ok_or_else(|| CmdError::err("invalid second DB index"))?;
    let n = ctx.store.dbs.len() as i64;
    if a < 0 || a >= n || b < 0 || b >= n {
        return Err(CmdError::DbIndex);
    }
    let (a, b) = (a as usize, b as usize);
    if a != b {
        // Watchers of keys that exist on either side see them change (before the swap,
        // as Redis's touchAllWatchedKeysInDb); blocked clients may now find data.
        ctx.store.touch_db_watchers(a, Some(b));
        ctx.store.touch_db_watchers(b, Some(a));
        ctx.store.dbs.swap(a, b);
        ctx.store.blocking.signal_db(a);
        ctx.store.blocking.signal_db(b);
        ctx.store.stats.dirty += 1;
    }
    Ok(Reply::OK)
}

fn time(_ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    let us = crate::util::now_us();
    Ok(Reply::Array(vec![
        Reply::text((us / 1_000_000).to_string()),
        Reply::text((us % 1_000_000).to_string()),
    ]))
}

/// Unix seconds when the store was created (LASTSAVE: nothing is ever saved).
fn start_unix_secs(ctx: &Ctx) -> u64 {
    let up = ctx.store.started.elapsed().as_millis() as u64;
    crate::util::now_ms().saturating_sub(up) / 1000
}

fn lastsave(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(start_unix_secs(ctx) as i64))
}

fn role(_ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    Ok(Reply::Array(vec![
        Reply::text("master"),
        Reply::Int(0),
        Reply::Array(vec![]),
    ]))
}

fn shutdown(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (mut save, mut nosave, mut other, mut abort) = (false, false, false, false);
    for a in &args[1..] {
        if eq_ic(a, "nosave") {
            nosave = true;
        } else if eq_ic(a, "save") {
            save = true;
        } else if eq_ic(a, "now") || eq_ic(a, "force") {
            other = true;
        } else if eq_ic(a, "abort") {
            abort = true;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    if (abort && (save || nosave || other)) || (save && nosave) {
        return Err(CmdError::Syntax);
    }
    if abort {
        return Err(CmdError::err("No shutdown in progress."));
    }
    ctx.store.shutdown_requested = true;
    // Redis closes the connection without replying.
    Ok(Reply::Raw(Bytes::new()))
}

// ---------------------------------------------------------------------------------
// INFO

/// 40 random hex characters, fixed for the life of the process (run_id, master_replid).
fn random_id(slot: &'static OnceLock<String>) -> &'static str {
    slot.get_or_init(|| {
        (0..40)
            .map(|_| char::from(b"0123456789abcdef"[fastrand::usize(..16)]))
            .collect()
    })
}

/// Redis's `bytesToHuman`.
fn human(n: u64) -> String {
    let d = n as f64;
    if n < 1024 {
        format!("{n}B")
    } else if n < 1024 * 1024 {
        format!("{:.2}K", d / 1024.0)
    } else if n < 1024 * 1024 * 1024 {
        format!("{:.2}M", d / (1024.0 * 1024.0))
    } else {
        format!("{:.2}G", d / (1024.0 * 1024.0 * 1024.0))
    }
}

/// Memory Redis reports right after start; the engine's own overhead is of that order.
const BASE_MEMORY: usize = 870_000;

/// Estimated bytes used by one key: its value plus key and dict-entry overhead.
fn key_usage(key: &[u8], v: &Value) -> usize {
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
    (BASE_MEMORY + data + store.clients.len() * 20_000) as u64
}

/// CPU seconds (user, system) of this process, from /proc where available.
fn cpu_times() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0);
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and
    // 13th of them, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    (tick(11), tick(12))
}

/// The sections INFO prints, in Redis's order, and whether `default` includes them.
const SECTIONS: &[(&str, bool)] = &[
    ("server", true),
    ("clients", true),
    ("memory", true),
    ("persistence", true),
    ("stats", true),
    ("replication", true),
    ("cpu", true),
    ("modules", true),
    ("commandstats", false),
    ("errorstats", true),
    ("latencystats", false),
    ("cluster", true),
    ("keyspace", true),
];

fn info(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let mut wanted: Vec<&str> = Vec::new();
    if args.len() == 1 {
        wanted = SECTIONS.iter().filter(|s| s.1).map(|s| s.0).collect();
    }
    for a in &args[1..] {
        if eq_ic(a, "all") || eq_ic(a, "everything") {
            wanted = SECTIONS.iter().map(|s| s.0).collect();
        } else if eq_ic(a, "default") {
            wanted.extend(SECTIONS.iter().filter(|s| s.1).map(|s| s.0));
        } else if let Some(s) = SECTIONS.iter().find(|s| eq_ic(a, s.0)) {
            wanted.push(s.0);
        }
    }
    let mut out = String::new();
    for (name, _) in SECTIONS {
        if !wanted.contains(name) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        info_section(ctx, name, &mut out);
    }
    Ok(Reply::Verbatim(Bytes::from(out)))
}

/// The port clients reached us on (the config may say port 0).
fn tcp_port(ctx: &Ctx) -> String {
    ctx.client
        .laddr
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .or_else(|| ctx.store.config.get("port"))
        .unwrap_or_else(|| "0".into())
}

fn info_section(ctx: &mut Ctx, name: &str, o: &mut String) {
    static RUN_ID: OnceLock<String> = OnceLock::new();
    static REPL_ID: OnceLock<String> = OnceLock::new();
    let store = &*ctx.store;
    let cfg = &store.config;
    let st = &store.stats;
    let up = store.started.elapsed().as_secs();
    macro_rules! f {
        ($($arg:tt)*) => {{ let _ = write!(o, $($arg)*); o.push_str("\r\n"); }};
    }
    match name {
        "server" => {
            o.push_str("# Server\r\n");
            f!("redis_version:{}", super::connection::REDIS_VERSION);
            f!("redis_git_sha1:00000000");
            f!("redis_git_dirty:0");
            f!("redis_build_id:0");
            f!("redis_mode:standalone");
            f!("os:{} {}", std::env::consts::OS, std::env::consts::ARCH);
            f!("arch_bits:{}", usize::BITS);
            f!("monotonic_clock:POSIX clock_gettime");
            f!("multiplexing_api:tokio");
            f!("atomicvar_api:c11-builtin");
            f!("gcc_version:0.0.0");
            f!("process_id:{}", std::process::id());
            f!("process_supervised:no");
            f!("run_id:{}", random_id(&RUN_ID));
            f!("tcp_port:{}", tcp_port(ctx));
            f!("server_time_usec:{}", crate::util::now_us());
            f!("uptime_in_seconds:{up}");
            f!("uptime_in_days:{}", up / 86400);
            f!("hz:{}", cfg.hz);
            f!("configured_hz:{}", cfg.hz);
            f!("lru_clock:{}", lru_clock(store.now));
            f!(
                "executable:{}",
                std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
            f!("config_file:");
            f!("io_threads_active:0");
        }
        "clients" => {
            o.push_str("# Clients\r\n");
            f!("connected_clients:{}", store.clients.len());
            f!("cluster_connections:0");
            f!("maxclients:{}", cfg.maxclients);
            f!("client_recent_max_input_buffer:0");
            f!("client_recent_max_output_buffer:0");
            f!("blocked_clients:{}", store.blocking.count());
            f!("tracking_clients:0");
            f!("clients_in_timeout_table:{}", store.blocking.count());
        }
        "memory" => {
            let used = used_memory(store);
            o.push_str("# Memory\r\n");
            f!("used_memory:{used}");
            f!("used_memory_human:{}", human(used));
            f!("used_memory_rss:{used}");
            f!("used_memory_rss_human:{}", human(used));
            f!("used_memory_peak:{used}");
            f!("used_memory_peak_human:{}", human(used));
            f!("used_memory_overhead:{BASE_MEMORY}");
            f!("used_memory_startup:{BASE_MEMORY}");
            f!(
                "used_memory_dataset:{}",
                used.saturating_sub(BASE_MEMORY as u64)
            );
            f!("maxmemory:{}", cfg.maxmemory);
            f!("maxmemory_human:{}", human(cfg.maxmemory));
            f!("maxmemory_policy:{}", cfg.maxmemory_policy);
            f!("mem_fragmentation_ratio:1.00");
            f!("mem_allocator:libc");
            f!("lazyfree_pending_objects:0");
            f!("lazyfreed_objects:0");
        }
        "persistence" => {
            o.push_str("# Persistence\r\n");
            f!("loading:0");
            f!("async_loading:0");
            f!("rdb_changes_since_last_save:{}", st.dirty);
            f!("rdb_bgsave_in_progress:0");
            f!("rdb_last_save_time:{}", start_unix_secs(ctx));
            f!("rdb_last_bgsave_status:ok");
            f!("rdb_last_bgsave_time_sec:-1");
            f!("rdb_current_bgsave_time_sec:-1");
            f!("rdb_saves:0");
            f!("aof_enabled:0");
            f!("aof_rewrite_in_progress:0");
            f!("aof_rewrite_scheduled:0");
            f!("aof_last_rewrite_time_sec:-1");
            f!("aof_current_rewrite_time_sec:-1");
            f!("aof_last_bgrewrite_status:ok");
            f!("aof_last_write_status:ok");
        }
        "stats" => {
            o.push_str("# Stats\r\n");
            f!("total_connections_received:{}", st.connections);
            f!("total_commands_processed:{}", st.commands);
            f!("instantaneous_ops_per_sec:0");
            f!("total_net_input_bytes:{}", st.net_input_bytes);
            f!("total_net_output_bytes:{}", st.net_output_bytes);
            f!("rejected_connections:{}", st.rejected_connections);
            f!("expired_keys:{}", st.expired_keys);
            f!("evicted_keys:{}", st.evicted_keys);
            f!("keyspace_hits:{}", st.keyspace_hits);
            f!("keyspace_misses:{}", st.keyspace_misses);
            f!("pubsub_channels:{}", store.pubsub.channels(None).len());
            f!("pubsub_patterns:{}", store.pubsub.numpat());
            f!("total_forks:0");
        }
        "replication" => {
            o.push_str("# Replication\r\n");
            f!("role:master");
            f!("connected_slaves:0");
            f!("master_failover_state:no-failover");
            f!("master_replid:{}", random_id(&REPL_ID));
            f!("master_replid2:0000000000000000000000000000000000000000");
            f!("master_repl_offset:0");
            f!("second_repl_offset:-1");
            f!("repl_backlog_active:0");
            f!("repl_backlog_size:1048576");
            f!("repl_backlog_first_byte_offset:0");
            f!("repl_backlog_histlen:0");
        }
        "cpu" => {
            let (user, sys) = cpu_times();
            o.push_str("# CPU\r\n");
            f!("used_cpu_sys:{sys:.6}");
            f!("used_cpu_user:{user:.6}");
            f!("used_cpu_sys_children:0.000000");
            f!("used_cpu_user_children:0.000000");
        }
        "modules" => o.push_str("# Modules\r\n"),
        "commandstats" => o.push_str("# Commandstats\r\n"),
        "errorstats" => o.push_str("# Errorstats\r\n"),
        "latencystats" => o.push_str("# Latencystats\r\n"),
        "cluster" => {
            o.push_str("# Cluster\r\n");
            f!("cluster_enabled:0");
        }
        "keyspace" => {
            o.push_str("# Keyspace\r\n");
            for (i, db) in store.dbs.iter().enumerate() {
                if !db.is_empty() {
                    f!(
                        "db{i}:keys={},expires={},avg_ttl=0",
                        db.len(),
                        db.volatile_len()
                    );
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------
// CONFIG

const CONFIG_SUBS: &[(&str, i32)] = &[
    ("get", -3),
    ("set", -4),
    ("resetstat", 2),
    ("rewrite", 2),
    ("help", 2),
];

/// Old names Redis 7.0 still accepts, mapped to the current ones.
const CONFIG_ALIASES: &[(&str, &str)] = &[
    ("hash-max-ziplist-entries", "hash-max-listpack-entries"),
    ("hash-max-ziplist-value", "hash-max-listpack-value"),
    ("zset-max-ziplist-entries", "zset-max-listpack-entries"),
    ("zset-max-ziplist-value", "zset-max-listpack-value"),
    ("list-max-ziplist-size", "list-max-listpack-size"),
];

/// Parameters CONFIG SET refuses to change at run time.
const CONFIG_IMMUTABLE: &[&str] = &["databases", "bind", "port"];

fn canonical(name: &str) -> &str {
    CONFIG_ALIASES
        .iter()
        .find(|(a, _)| *a == name)
        .map_or(name, |(_, c)| c)
}

fn config(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    match subcommand("config", CONFIG_SUBS, args)? {
        "get" => config_get(ctx, args),
        "set" => config_set(ctx, args),
        "resetstat" => {
            let dirty = ctx.store.stats.dirty;
            ctx.store.stats = Default::default();
            ctx.store.stats.dirty = dirty;
            Ok(Reply::OK)
        }
        "rewrite" => Err(CmdError::err("The server is running without a config file")),
        _ => Ok(help_reply(
            "config",
            &[
                "GET <pattern>",
                "    Return parameters matching the glob-like <pattern> and their values.",
                "SET <directive> <value>",
                "    Set the configuration <directive> to <value>.",
                "RESETSTAT",
                "    Reset statistics reported by the INFO command.",
                "REWRITE",
                "    Rewrite the configuration file.",
            ],
        )),
    }
}

fn config_get(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let cfg = &ctx.store.config;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |name: String, value: String| {
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, value));
        }
    };
    let names = EngineConfig::PARAMS
        .iter()
        .chain(CONFIG_ALIASES.iter().map(|(a, _)| a));
    for pat in &args[2..] {
        let is_glob = pat.iter().any(|c| matches!(c, b'*' | b'?' | b'['));
        if !is_glob {
            // An exact name answers under the spelling the client used, as Redis does.
            if let Some(v) = cfg.get(canonical(&lower(pat))) {
                push(String::from_utf8_lossy(pat).into_owned(), v);
            }
            continue;
        }
        for n in names.clone() {
            if glob_match(pat, n.as_bytes(), true) {
                if let Some(v) = cfg.get(canonical(n)) {
                    push(n.to_string(), v);
                }
            }
        }
    }
    Ok(Reply::Map(
        out.into_iter()
            .map(|(n, v)| (Reply::text(n), Reply::text(v)))
            .collect(),
    ))
}

/// Checks a value the way Redis's typed configs do, and returns the form the engine's
/// setter expects (memory values converted to plain bytes).
fn config_check(name: &str, value: &str) -> Result<String, String> {
    fn int(v: &str, min: i64, max: i64) -> Result<String, String> {
        let n = crate::util::parse_i64(v.as_bytes())
            .ok_or_else(|| "argument couldn't be parsed into an integer".to_string())?;
        if n < min || n > max {
            return Err(format!(
                "argument must be between {min} and {max} inclusive"
            ));
        }
        Ok(n.to_string())
    }
    fn mem(v: &str, min: u64) -> Result<String, String> {
        if v.starts_with('-') {
            return Err("argument must be a memory value".into());
        }
        let n = parse_memory(v).map_err(|e| e.0)?;
        if n < min {
            return Err(format!(
                "argument must be between {min} and {} inclusive",
                i64::MAX
            ));
        }
        Ok(n.to_string())
    }
    match name {
        "maxclients" => int(value, 1, u32::MAX as i64),
        "hz" | "timeout" => int(value, 0, i32::MAX as i64),
        "hash-max-listpack-entries" | "set-max-intset-entries" | "zset-max-listpack-entries" => {
            int(value, 0, i64::MAX)
        }
        "list-max-listpack-size" => int(value, i32::MIN as i64, i32::MAX as i64),
        "hash-max-listpack-value" | "zset-max-listpack-value" | "maxmemory" => mem(value, 0),
        "proto-max-bulk-len" | "client-query-buffer-limit" => mem(value, 1024 * 1024),
        "notify-keyspace-events" => crate::notify::parse_flags(value)
            .map(|_| value.to_string())
            .ok_or_else(|| "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".into()),
        "appendonly" => {
            if value.eq_ignore_ascii_case("yes") || value.eq_ignore_ascii_case("no") {
                Ok(value.to_ascii_lowercase())
            } else {
                Err("argument must be 'yes' or 'no'".into())
            }
        }
        _ => Ok(value.to_string()),
    }
}

fn config_set(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if !args.len().is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    for p in args[2..].chunks(2) {
        let given = String::from_utf8_lossy(&p[0]).into_owned();
        let name = canonical(&given.to_ascii_lowercase()).to_string();
        if !EngineConfig::PARAMS.contains(&name.as_str()) {
            return Err(CmdError::err(format!(
                "Unknown option or number of arguments for CONFIG SET - '{given}'"
            )));
        }
        let failed = |msg: &str| {
            CmdError::err(format!(
                "CONFIG SET failed (possibly related to argument '{given}') - {msg}"
            ))
        };
        if CONFIG_IMMUTABLE.contains(&name.as_str()) {
            return Err(failed("can't set immutable config"));
        }
        if pairs.iter().any(|(n, _)| *n == name) {
            return Err(failed("duplicate parameter"));
        }
        pairs.push((name, String::from_utf8_lossy(&p[1]).into_owned()));
    }
    // All or nothing, as Redis: apply to a copy and keep it only if every value is good.
    let mut cfg = ctx.store.config.clone();
    for (i, (name, value)) in pairs.iter().enumerate() {
        let given = String::from_utf8_lossy(&args[2 + 2 * i]).into_owned();
        let failed = |msg: String| {
            CmdError::err(format!(
                "CONFIG SET failed (possibly related to argument '{given}') - {msg}"
            ))
        };
        let v = config_check(name, value).map_err(failed)?;
        cfg.set(name, &v).map_err(|e| failed(e.0))?;
    }
    let notify_changed = cfg.notify_keyspace_events != ctx.store.config.notify_keyspace_events;
    ctx.store.config = cfg;
    if notify_changed {
        ctx.store.reload_notify_flags();
    }
    Ok(Reply::OK)
}

// ---------------------------------------------------------------------------------
// MEMORY, OBJECT, DEBUG

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
    ("help", 2),
];

/// OBJECT ENCODING of a value.
pub fn encoding_of(e: &crate::db::Entry) -> &'static str {
    match &e.value {
        Value::Str(b) => string_encoding(b, e.is_raw()),
        Value::List(l) => l.encoding(),
        Value::Hash(h) => h.encoding(),
        Value::Set(s) => s.encoding(),
        Value::ZSet(z) => z.encoding(),
    }
}

/// What OBJECT and DEBUG OBJECT report about a value, read without copying it.
struct ObjInfo {
    encoding: &'static str,
    refcount: i64,
    lru: u32,
    mem: usize,
}

/// Looks a key up without touching its LRU clock (OBJECT is not an access).
fn obj_info(ctx: &mut Ctx, key: &[u8]) -> Option<ObjInfo> {
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

fn debug(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let sub = &args[1];
    let n = args.len();
    if eq_ic(sub, "help") && n == 2 {
        return Ok(help_reply(
            "debug",
            &[
                "OBJECT <key>",
                "    Show low level info about the `key` and associated value.",
                "SET-ACTIVE-EXPIRE <0|1>",
                "    Setting it to 0 disables expiring keys in background when they are not",
                "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
                "    default.",
                "SLEEP <seconds>",
                "    Stop the server for <seconds>. Decimals allowed.",
            ],
        ));
    }
    if eq_ic(sub, "sleep") && n == 3 {
        // Like Redis, the whole server stops: the store lock is held while sleeping.
        let secs = crate::util::parse_f64(&args[2]).unwrap_or(0.0);
        if secs.is_finite() && secs > 0.0 {
            std::thread::sleep(std::time::Duration::from_secs_f64(secs.min(3600.0)));
        }
        return Ok(Reply::OK);
    }
    if eq_ic(sub, "set-active-expire") && n == 3 {
        // atoi semantics: anything that is not a non-zero number disables it.
        let v = String::from_utf8_lossy(&args[2]);
        let digits: String = v
            .trim_start()
            .chars()
            .enumerate()
            .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+')))
            .map(|(_, c)| c)
            .collect();
        ctx.store.active_expire = digits.parse::<i64>().unwrap_or(0) != 0;
        return Ok(Reply::OK);
    }
    if eq_ic(sub, "object") && n == 3 {
        let now = ctx.now();
        let Some(e) = obj_info(ctx, &args[2]) else {
            return Err(CmdError::err("no such key"));
        };
        let clock = lru_clock(now);
        return Ok(Reply::Status(format!(
            "Value at:0x0 refcount:{} encoding:{} serializedlength:{} lru:{} lru_seconds_idle:{}",
            e.refcount,
            e.encoding,
            e.mem,
            e.lru,
            clock.saturating_sub(e.lru)
        )));
    }
    Err(CmdError::err(format!(
        "unknown subcommand or wrong number of arguments for '{}'. Try DEBUG HELP.",
        String::from_utf8_lossy(sub)
    )))
}

// ---------------------------------------------------------------------------------
// COMMAND

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_are_checked_like_redis() {
        assert_eq!(
            config_check("hash-max-listpack-value", "1kb"),
            Ok("1024".into())
        );
        assert!(config_check("maxclients", "0")
            .unwrap_err()
            .contains("between 1 and 4294967295"));
        assert!(config_check("maxmemory", "-1")
            .unwrap_err()
            .contains("memory value"));
        assert_eq!(
            canonical("hash-max-ziplist-entries"),
            "hash-max-listpack-entries"
        );
    }

    fn run(
        store: &mut crate::store::Store,
        client: &mut crate::client::Client,
        a: &[&str],
    ) -> Reply {
        let args = a.iter().map(|s| Bytes::from(s.to_string())).collect();
        command::execute(store, client, args)
    }

    #[test]
    fn swapdb_touches_watchers_and_wakes_blocked_clients() {
        let mut store = crate::store::Store::new(EngineConfig::default());
        let mut c = crate::client::Client::detached(1, 0, 2);
        run(&mut store, &mut c, &["SET", "k", "v"]);
        // Client 7 watches `k` in db 1 (missing there, present in db 0, so the swap
        // changes it); client 9 watches `w`, missing on both sides, which Redis leaves
        // untouched; client 8 is blocked on `k` in db 1.
        store.watch(7, 1, Bytes::from_static(b"k"), false);
        store.watch(9, 1, Bytes::from_static(b"w"), false);
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        store.blocking.block(
            8,
            crate::blocking::Blocked {
                args: vec![Bytes::from_static(b"GET"), Bytes::from_static(b"k")],
                db: 1,
                resp: 2,
                keys: vec![Bytes::from_static(b"k")],
                tx,
            },
        );
        assert_eq!(run(&mut store, &mut c, &["SWAPDB", "0", "1"]), Reply::OK);
        assert!(store.is_dirty(7));
        assert!(!store.is_dirty(9));
        assert_eq!(
            rx.try_recv().ok(),
            Some(Reply::Bulk(Bytes::from_static(b"v")))
        );
        assert_eq!(run(&mut store, &mut c, &["DBSIZE"]), Reply::Int(0));
        c.db = 1;
        assert_eq!(run(&mut store, &mut c, &["DBSIZE"]), Reply::Int(1));
    }

    #[test]
    fn config_set_is_all_or_nothing_and_reloads_notify_flags() {
        let mut store = crate::store::Store::new(EngineConfig::default());
        let mut c = crate::client::Client::detached(1, 0, 2);
        let r = run(
            &mut store,
            &mut c,
            &["CONFIG", "SET", "timeout", "5", "hz", "x"],
        );
        assert!(r.is_error());
        assert_eq!(store.config.timeout, 0);
        let r = run(
            &mut store,
            &mut c,
            &["CONFIG", "SET", "notify-keyspace-events", "KEA"],
        );
        assert_eq!(r, Reply::OK);
        assert_eq!(store.config.notify_keyspace_events, "KEA");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(2048), "2.00K");
    }
}
