//! Server commands (`server.c`, `db.c`, `debug.c`): FLUSHALL FLUSHDB DBSIZE SWAPDB TIME
//! ROLE SHUTDOWN DEBUG.

use super::object::obj_info;
use super::subcommand::help_reply;
use crate::command::{
    CommandSpec, Ctx, ADMIN, FAST, LOADING, NOSCRIPT, PROTECTED, READONLY, STALE, WRITE,
};
use crate::error::{CmdError, CmdResult};
use crate::keyspace::db::lru_clock;
use crate::net::reply::Reply;
use crate::util::eq_ic;
use bytes::Bytes;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    let admin = ADMIN | NOSCRIPT | LOADING | STALE;
    vec![
        CommandSpec::new("flushall", -1, WRITE, (0, 0, 0), flushall),
        CommandSpec::new("flushdb", -1, WRITE, (0, 0, 0), flushdb),
        CommandSpec::new("dbsize", 1, READONLY | FAST, (0, 0, 0), dbsize),
        CommandSpec::new("swapdb", 3, WRITE | FAST, (0, 0, 0), swapdb),
        CommandSpec::new("time", 1, LOADING | STALE | FAST, (0, 0, 0), time),
        CommandSpec::new("debug", -2, admin | PROTECTED, (0, 0, 0), debug),
        CommandSpec::new("shutdown", -1, admin, (0, 0, 0), shutdown),
    ]
}

// ---------------------------------------------------------------------------------
// Keyspace-wide commands.

/// Whether FLUSHALL/FLUSHDB frees lazily: ASYNC, or neither SYNC nor ASYNC with
/// `lazyfree-lazy-user-flush yes` (Redis's `getFlushCommandFlags`).
fn flush_mode(ctx: &Ctx, args: &[Bytes]) -> Result<bool, CmdError> {
    match args.len() {
        1 => Ok(ctx.store.config.lazyfree_lazy_user_flush),
        2 if eq_ic(&args[1], "async") => Ok(true),
        2 if eq_ic(&args[1], "sync") => Ok(false),
        _ => Err(CmdError::Syntax),
    }
}

fn flushall(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let lazy = flush_mode(ctx, args)?;
    ctx.store.flush_with(None, lazy);
    Ok(Reply::OK)
}

fn flushdb(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let lazy = flush_mode(ctx, args)?;
    ctx.store.flush_with(Some(ctx.client.db), lazy);
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
        ctx.store.swap(a, b);
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
    if let Err(e) = crate::persist::save::shutdown_save(ctx.store, save, nosave) {
        tracing::error!(error = %e, "error trying to save the DB, can't exit");
        // FORCE (and NOW) shut down anyway, as in Redis.
        if !other {
            return Err(CmdError::err("Errors trying to SHUTDOWN. Check logs."));
        }
    }
    ctx.store.shutdown_requested = true;
    // Redis closes the connection without replying.
    Ok(Reply::Raw(Bytes::new()))
}

// ---------------------------------------------------------------------------------
// INFO

fn debug(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let sub = &args[1];
    let n = args.len();
    if eq_ic(sub, "help") && n == 2 {
        return Ok(help_reply(
            "debug",
            &[
                "OBJECT <key>",
                "    Show low level info about the `key` and associated value.",
                "RELOAD [option ...]",
                "    Save the RDB on disk and reload it back to memory. Available options:",
                "    * MERGE: Merge the content of the RDB instead of flushing.",
                "    * NOFLUSH: Do not flush the RDB before loading (not supported here).",
                "    * NOSAVE: the database will be loaded from an existing RDB file.",
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
    if eq_ic(sub, "reload") {
        return debug_reload(ctx, &args[2..]);
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

/// DEBUG RELOAD [NOSAVE]: saves the file (unless NOSAVE), empties the keyspace and
/// loads the file back, as Redis's does; a running background save is stopped first.
fn debug_reload(ctx: &mut Ctx, opts: &[Bytes]) -> CmdResult {
    let mut save = true;
    for o in opts {
        if eq_ic(o, "nosave") {
            save = false;
        } else if eq_ic(o, "merge") || eq_ic(o, "noflush") {
            return Err(CmdError::err(format!(
                "DEBUG RELOAD {} is not supported",
                String::from_utf8_lossy(o).to_ascii_uppercase()
            )));
        } else {
            return Err(CmdError::err(
                "DEBUG RELOAD only supports the MERGE, NOFLUSH and NOSAVE options.",
            ));
        }
    }
    crate::persist::save::kill_child(ctx.store);
    if save {
        crate::persist::save::save_sync(ctx.store).map_err(|e| {
            tracing::error!(error = %e, "DEBUG RELOAD: save failed");
            CmdError::Other("ERR".into())
        })?;
    }
    let path = crate::persist::save::rdb_path(ctx.store);
    let opts = crate::persist::save::load_options(ctx.store);
    let load_err = |e: &dyn std::fmt::Display| {
        tracing::error!(file = %path.display(), error = %e, "DEBUG RELOAD: load failed");
        CmdError::err("Error trying to load the RDB dump, check server logs.")
    };
    let file = std::fs::File::open(&path).map_err(|e| load_err(&e))?;
    let loaded = crate::persist::rdb::read_rdb(std::io::BufReader::new(file), ctx.now(), &opts)
        .map_err(|e| load_err(&e))?;
    ctx.store.load_dbs(loaded).map_err(|e| load_err(&e))?;
    Ok(Reply::OK)
}

// ---------------------------------------------------------------------------------
// COMMAND

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::info::human;
    use crate::command;
    use crate::config::EngineConfig;

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
        run(&mut store, &mut c, &["RPUSH", "k", "v"]);
        // Client 7 watches `k` in db 1 (missing there, present in db 0, so the swap
        // changes it); client 9 watches `w`, missing on both sides, which Redis leaves
        // untouched; a connected client is blocked on `k` in db 1.
        store.watches.watch(7, 1, Bytes::from_static(b"k"), false);
        store.watches.watch(9, 1, Bytes::from_static(b"w"), false);
        let (push, _pushes) = tokio::sync::mpsc::unbounded_channel();
        let kill = std::sync::Arc::new(tokio::sync::Notify::new());
        let blocked = store.connect(
            String::new(),
            String::new(),
            push,
            kill,
            std::sync::Arc::default(),
        );
        if let Some(mut b) = store.clients.checkout(blocked) {
            b.db = 1;
            store.clients.checkin(b);
        }
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        store.blocking.block(
            blocked,
            crate::blocking::Blocked {
                args: vec![Bytes::from_static(b"LPOP"), Bytes::from_static(b"k")],
                kind: crate::blocking::BlockKind::List,
                gone: None,
                db: 1,
                keys: vec![Bytes::from_static(b"k")],
                tx,
            },
        );
        assert_eq!(run(&mut store, &mut c, &["SWAPDB", "0", "1"]), Reply::OK);
        assert!(store.watches.is_dirty(7));
        assert!(!store.watches.is_dirty(9));
        assert_eq!(
            rx.try_recv().ok(),
            Some(Reply::Bulk(Bytes::from_static(b"v")))
        );
        // The list moved to db 1 and its one element went to the parked client.
        assert_eq!(run(&mut store, &mut c, &["DBSIZE"]), Reply::Int(0));
        c.db = 1;
        assert_eq!(run(&mut store, &mut c, &["DBSIZE"]), Reply::Int(0));
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
