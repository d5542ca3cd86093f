//! INFO (`server.c` genRedisInfoString): sections in Redis's order and format.

use super::object::MemoryReport;
use crate::command::{CommandSpec, Ctx, LOADING, STALE};
use crate::error::CmdResult;
use crate::keyspace::db::lru_clock;
use crate::net::reply::Reply;
use crate::util::eq_ic;
use bytes::Bytes;
use std::fmt::Write as _;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![CommandSpec::new(
        "info",
        -1,
        LOADING | STALE,
        (0, 0, 0),
        info,
    )]
}

/// Redis's `bytesToHuman`.
pub(crate) fn human(n: u64) -> String {
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

/// `a` as a percentage of `b`.
fn pct(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 * 100.0 / b as f64
    }
}

/// Physical memory of the machine in bytes, from /proc/meminfo (0 when unknown).
fn total_system_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
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
        .or_else(|| ctx.store.config.show("port"))
        .unwrap_or_else(|| "0".into())
}

fn info_section(ctx: &mut Ctx, name: &str, o: &mut String) {
    // Only the memory section reads the allocator and /proc.
    let memory = (name == "memory").then(|| MemoryReport::now(ctx.store));
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
            f!("run_id:{}", store.repl.run_id);
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
            f!("connected_clients:{}", store.clients.connected());
            f!("cluster_connections:0");
            f!("maxclients:{}", cfg.maxclients);
            f!("client_recent_max_input_buffer:0");
            f!(
                "client_recent_max_output_buffer:{}",
                store.clients.output_bytes().1
            );
            f!("blocked_clients:{}", store.blocking.count());
            f!("tracking_clients:{}", store.tracking.client_count());
            f!("clients_in_timeout_table:{}", store.blocking.count());
        }
        "memory" => {
            let Some(m) = memory else { return };
            let used = m.used;
            o.push_str("# Memory\r\n");
            f!("used_memory:{used}");
            f!("used_memory_human:{}", human(used));
            f!("used_memory_rss:{}", m.rss);
            f!("used_memory_rss_human:{}", human(m.rss));
            f!("used_memory_peak:{}", m.peak);
            f!("used_memory_peak_human:{}", human(m.peak));
            f!("used_memory_peak_perc:{:.2}%", pct(used, m.peak));
            f!("used_memory_overhead:{}", m.overhead);
            f!("used_memory_startup:{}", m.startup);
            f!("used_memory_dataset:{}", m.dataset());
            f!(
                "used_memory_dataset_perc:{:.2}%",
                pct(m.dataset(), used.saturating_sub(m.startup))
            );
            f!("allocator_allocated:{used}");
            f!("allocator_active:{used}");
            f!("allocator_resident:{}", m.rss);
            f!("total_system_memory:{}", total_system_memory());
            f!("total_system_memory_human:{}", human(total_system_memory()));
            // Redis 7.0's scripting fields: the two VMs' own counts, the cached
            // scripts and the libraries (their bytes, plus a fixed overhead per entry
            // where Redis counts its dict and struct sizes).
            let sc = &store.scripting;
            let vm_eval = sc.eval_vm.as_ref().map_or(0, |v| v.lua.used_memory());
            let vm_functions = sc.functions.vm_memory();
            let scripts_eval: usize = sc.scripts.values().map(|s| s.body.len() + 64).sum();
            let functions_mem = sc.functions.memory();
            let (libraries, functions) = sc.functions.counts();
            f!("used_memory_lua:{vm_eval}");
            f!("used_memory_vm_eval:{vm_eval}");
            f!("used_memory_lua_human:{}", human(vm_eval as u64));
            f!("used_memory_scripts_eval:{scripts_eval}");
            f!("number_of_cached_scripts:{}", sc.scripts.len());
            f!("number_of_functions:{functions}");
            f!("number_of_libraries:{libraries}");
            f!("used_memory_vm_functions:{vm_functions}");
            f!("used_memory_vm_total:{}", vm_eval + vm_functions);
            f!(
                "used_memory_vm_total_human:{}",
                human((vm_eval + vm_functions) as u64)
            );
            f!("used_memory_functions:{functions_mem}");
            f!("used_memory_scripts:{}", scripts_eval + functions_mem);
            f!(
                "used_memory_scripts_human:{}",
                human((scripts_eval + functions_mem) as u64)
            );
            f!("maxmemory:{}", cfg.maxmemory);
            f!("maxmemory_human:{}", human(cfg.maxmemory));
            f!("maxmemory_policy:{}", cfg.maxmemory_policy);
            f!("mem_fragmentation_ratio:{:.2}", m.fragmentation());
            f!("mem_fragmentation_bytes:{}", m.rss as i64 - used as i64);
            f!("mem_not_counted_for_evict:0");
            f!(
                "mem_replication_backlog:{}",
                if store.repl.active {
                    store.repl.backlog.histlen()
                } else {
                    0
                }
            );
            f!("mem_clients_slaves:0");
            f!("mem_clients_normal:{}", store.clients.output_bytes().0);
            f!("mem_aof_buffer:0");
            f!("mem_allocator:libc");
            f!("active_defrag_running:0");
            f!("lazyfree_pending_objects:{}", crate::lazyfree::pending());
            f!("lazyfreed_objects:{}", crate::lazyfree::freed());
        }
        "persistence" => {
            let sv = &store.save;
            let running = sv.child.as_ref();
            let rdb_running = sv.bgsave_running();
            o.push_str("# Persistence\r\n");
            f!("loading:{}", sv.loading as u8);
            if sv.loading {
                f!("async_loading:0");
                f!("loading_start_time:{}", sv.loading_started);
                f!("loading_total_bytes:0");
                f!("loading_rdb_used_mem:0");
                f!("loading_loaded_bytes:0");
                f!("loading_loaded_perc:0.00");
                f!("loading_eta_seconds:1");
            } else {
                f!("async_loading:0");
            }
            // No fork: the copy-on-write counters stay 0; the snapshot's progress is real.
            f!("current_cow_peak:0");
            f!("current_cow_size:0");
            f!("current_cow_size_age:0");
            f!("current_fork_perc:0.00");
            let (processed, total) = if running.is_some() {
                (
                    sv.progress.load(std::sync::atomic::Ordering::Relaxed),
                    sv.progress_total,
                )
            } else {
                (0, 0)
            };
            f!("current_save_keys_processed:{processed}");
            f!("current_save_keys_total:{total}");
            f!(
                "rdb_changes_since_last_save:{}",
                st.dirty.saturating_sub(sv.dirty_at_save)
            );
            f!("rdb_bgsave_in_progress:{}", rdb_running as u8);
            f!("rdb_last_save_time:{}", sv.lastsave);
            f!(
                "rdb_last_bgsave_status:{}",
                if sv.last_bgsave_ok { "ok" } else { "err" }
            );
            f!("rdb_last_bgsave_time_sec:{}", sv.last_bgsave_secs);
            let current = match running {
                Some(c) if rdb_running => c.started.elapsed().as_secs() as i64,
                _ => -1,
            };
            f!("rdb_current_bgsave_time_sec:{current}");
            f!("rdb_saves:{}", sv.saves);
            f!("rdb_last_cow_size:0");
            f!("rdb_last_load_keys_expired:{}", sv.last_load_expired);
            f!("rdb_last_load_keys_loaded:{}", sv.last_load_loaded);
            crate::persist::aof::info(store, o);
        }
        "stats" => {
            o.push_str("# Stats\r\n");
            f!("total_connections_received:{}", st.connections);
            f!("total_commands_processed:{}", st.commands);
            f!("instantaneous_ops_per_sec:0");
            f!("total_net_input_bytes:{}", st.net_input_bytes);
            f!("total_net_output_bytes:{}", st.net_output_bytes);
            f!("rejected_connections:{}", st.rejected_connections);
            f!("sync_full:{}", store.repl.sync_full);
            f!("sync_partial_ok:{}", store.repl.sync_partial_ok);
            f!("sync_partial_err:{}", store.repl.sync_partial_err);
            f!("expired_keys:{}", st.expired_keys);
            f!("evicted_keys:{}", st.evicted_keys);
            f!("keyspace_hits:{}", st.keyspace_hits);
            f!("keyspace_misses:{}", st.keyspace_misses);
            f!("pubsub_channels:{}", store.pubsub.channels(None).len());
            f!("pubsub_patterns:{}", store.pubsub.numpat());
            f!("total_forks:0");
            let t = &store.tracking;
            f!("tracking_total_keys:{}", t.key_count());
            f!("tracking_total_items:{}", t.item_count());
            f!("tracking_total_prefixes:{}", t.prefix_count());
            f!("unexpected_error_replies:0");
            f!("total_error_replies:{}", store.observe.error_replies);
        }
        "replication" => store.repl_info(o),
        "cpu" => {
            let (user, sys) = cpu_times();
            o.push_str("# CPU\r\n");
            f!("used_cpu_sys:{sys:.6}");
            f!("used_cpu_user:{user:.6}");
            f!("used_cpu_sys_children:0.000000");
            f!("used_cpu_user_children:0.000000");
        }
        "modules" => o.push_str("# Modules\r\n"),
        "commandstats" | "errorstats" | "latencystats" => {
            crate::observe::info::section(store, name, o);
        }
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
