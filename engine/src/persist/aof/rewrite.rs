//! AOF rewrite (BGREWRITEAOF, the automatic rewrite, turning the AOF on): a new base
//! from a point-in-time copy of the data and a new incremental file from the same
//! point, then the manifest (atomically), then the old files are deleted.
//!
//! The copy is serialized in memory under the store lock, at the same moment the
//! writer is told to switch files, so base + new incremental file hold exactly the
//! data. The file is written, fsynced and renamed by a thread of its own, outside
//! the lock.

use super::manifest::sync_dir;
use super::writer::{delete_history, push_command, Aof};
use super::AofError;
use crate::persist::rdb::{self, Eviction, WriteOptions};
use crate::store::Store;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A base file's name (`getNewBaseFileNameAndMarkPreAsHistory`).
pub(super) fn base_name(appendfilename: &str, seq: u64, rdb: bool) -> String {
    let ext = if rdb { "rdb" } else { "aof" };
    format!("{appendfilename}.{seq}.base.{ext}")
}

/// The data as a base file: an RDB with `aof-base 1` (`aof-use-rdb-preamble yes`),
/// or commands. Commands are one `RESTORE key ttl payload ABSTTL` per key, after a
/// SELECT per database: Redis writes type-specific commands (RPUSH, HSET, ...) there;
/// RESTORE rebuilds the same value with its encoding and TTL in one command, and
/// Redis and `redis-check-aof` read it as well.
pub(super) fn serialize(store: &Store) -> Result<Vec<u8>, AofError> {
    let cfg = &store.config;
    let now = crate::util::now_ms();
    let mut out = Vec::new();
    if cfg.aof_use_rdb_preamble {
        let opts = WriteOptions {
            list_max_listpack_size: cfg.list_max_listpack_size,
            eviction: Eviction::for_policy(&cfg.maxmemory_policy),
            aof_base: true,
            aux: store
                .aof
                .marker
                .iter()
                .map(|m| {
                    (
                        bytes::Bytes::from_static(super::MARKER_AUX.as_bytes()),
                        m.clone(),
                    )
                })
                .collect(),
            ..Default::default()
        };
        rdb::write_rdb(&store.dbs, now, &opts, &mut out).map_err(|e| AofError::Base {
            path: "(memory)".into(),
            source: e,
        })?;
        return Ok(out);
    }
    if let Some(m) = &store.aof.marker {
        out.extend_from_slice(super::MARKER_PREFIX);
        out.extend_from_slice(m);
        out.extend_from_slice(b"\r\n");
    }
    for (i, db) in store.dbs.iter().enumerate() {
        let mut selected = false;
        for (key, entry) in db.iter_live(now) {
            if !selected {
                push_command(&mut out, &[b"SELECT".as_slice(), i.to_string().as_bytes()]);
                selected = true;
            }
            let payload = rdb::dump_payload(&entry.value, true, cfg.list_max_listpack_size);
            let at = db.expire_at(key).to_string();
            let mut argv: Vec<&[u8]> = vec![b"RESTORE", key, at.as_bytes(), &payload];
            if at != "0" {
                argv.push(b"ABSTTL");
            }
            push_command(&mut out, &argv);
        }
    }
    Ok(out)
}

/// Writes `bytes` to `path` through a temporary file: written, fsynced, renamed,
/// directory fsynced.
pub(super) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), AofError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!("temp-rewriteaof-bg-{}.aof", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(AofError::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| AofError::io(path, e))?;
    sync_dir(dir)
}

/// BGREWRITEAOF on a running AOF; the error is the reply's text.
pub(crate) fn start_rewrite(store: &mut Store) -> Result<(), String> {
    let Some(aof) = store.aof.writer.clone() else {
        return Err("ERR AOF is off: turn it on with CONFIG SET appendonly yes".into());
    };
    if store.aof.stats.rewriting.load(Ordering::Acquire) {
        return Err("ERR Background append only file rewriting already in progress".into());
    }
    rewrite_with(store, &aof, true)
        .map_err(|e| format!("ERR Can't rewrite append only file in background: {e}"))
}

/// Starts a rewrite of `aof` (see the module doc); `rotate` as [`super::writer`]'s
/// switch.
pub(super) fn rewrite_with(
    store: &mut Store,
    aof: &Arc<Aof>,
    rotate: bool,
) -> Result<(), AofError> {
    let stats = store.aof.stats.clone();
    let bytes = serialize(store)?;
    stats.rewriting.store(true, Ordering::Release);
    stats
        .rewrite_started_ms
        .store(crate::util::now_ms(), Ordering::Release);
    let switched = aof.switch(rotate);
    let rdb = store.config.aof_use_rdb_preamble;
    let aof = aof.clone();
    let spawned = std::thread::Builder::new()
        .name("aof-rewrite".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            let result = switched
                .recv()
                .unwrap_or_else(|_| {
                    Err(AofError::io(
                        aof.dir(),
                        std::io::Error::other("the AOF writer stopped"),
                    ))
                })
                .and_then(|()| finish(&aof, &bytes, rdb));
            let st = &aof.stats;
            st.last_rewrite_secs
                .store(started.elapsed().as_secs() as i64, Ordering::Release);
            match result {
                Ok(()) => {
                    st.last_rewrite_ok.store(true, Ordering::Release);
                    st.rewrites.fetch_add(1, Ordering::AcqRel);
                    st.consecutive_failures.store(0, Ordering::Release);
                    tracing::info!("Background AOF rewrite finished successfully");
                }
                Err(e) => {
                    st.last_rewrite_ok.store(false, Ordering::Release);
                    st.consecutive_failures.fetch_add(1, Ordering::AcqRel);
                    tracing::warn!(error = %e, "Background AOF rewrite failed");
                }
            }
            st.rewriting.store(false, Ordering::Release);
        });
    if let Err(e) = spawned {
        stats.rewriting.store(false, Ordering::Release);
        return Err(AofError::io(Path::new("aof-rewrite thread"), e));
    }
    tracing::info!("Background append only file rewriting started");
    Ok(())
}

/// The rewrite's second half (`backgroundRewriteDoneHandler`): the base file, the
/// manifest naming it and the newest incremental file, the history deleted.
fn finish(aof: &Aof, bytes: &[u8], rdb: bool) -> Result<(), AofError> {
    if aof.stopped.load(Ordering::SeqCst) {
        return Err(AofError::io(
            aof.dir(),
            std::io::Error::other("the AOF was turned off during the rewrite"),
        ));
    }
    let mut m = aof.manifest.lock().unwrap_or_else(|p| p.into_inner());
    let seq = m.base_seq + 1;
    let name = base_name(aof.filename(), seq, rdb);
    write_file(&aof.dir().join(&name), bytes)?;
    let mut next = m.clone();
    next.set_base(name, seq);
    next.incr_to_history(1);
    next.persist(aof.dir(), aof.filename())?;
    *m = next;
    let incr_size = m
        .incr
        .last()
        .and_then(|i| std::fs::metadata(aof.dir().join(&i.name)).ok())
        .map_or(0, |md| md.len());
    let st = &aof.stats;
    let base = bytes.len() as u64;
    st.base_size.store(base, Ordering::Release);
    st.current_size.store(base + incr_size, Ordering::Release);
    st.rewrite_base_size
        .store(base + incr_size, Ordering::Release);
    aof.establish();
    delete_history(aof.dir(), aof.filename(), &mut m);
    Ok(())
}
