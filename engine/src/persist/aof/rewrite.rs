//! AOF rewrite (BGREWRITEAOF, the automatic rewrite, turning the AOF on): a new base
//! from a point-in-time copy of the data and a new incremental file from the same
//! point, then the manifest (atomically), then the old files are deleted.
//!
//! With `aof-use-rdb-preamble yes` the base is the no-fork [`Snapshot`] that BGSAVE
//! writes: it begins under the store lock at the same moment the writer is told to
//! continue in a new incremental file, so base + new incremental file hold exactly
//! the data, and a thread of its own walks the databases a chunk of keys per turn of
//! the lock while clients go on writing (into the new file). The rewrite is the
//! store's background job ([`ChildKind::Aof`]), so it and BGSAVE exclude each other.
//!
//! Without the preamble (RESTORE commands), or while a BGSAVE holds the databases'
//! hooks, the copy is serialized in memory under the store lock instead; the file
//! is still written, fsynced and renamed by the thread, outside the lock.

use super::manifest::sync_dir;
use super::writer::{delete_history, Aof};
use super::AofError;
use crate::engine::Shared;
use crate::net::frame::encode_command;
use crate::persist::rdb::{self, Eviction, WriteOptions};
use crate::persist::save::{write_atomically, Child, ChildKind, PersistError};
use crate::persist::snapshot::{Snapshot, SnapshotError};
use crate::store::Store;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        let opts = base_options(store);
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
    // The libraries first, as Redis's `rewriteFunctions`.
    for code in store.scripting.functions.codes() {
        encode_command(&mut out, &[b"FUNCTION".as_slice(), b"LOAD", &code]);
    }
    for (i, db) in store.dbs.iter().enumerate() {
        let mut selected = false;
        for (key, entry) in db.iter_live(now) {
            if !selected {
                encode_command(&mut out, &[b"SELECT".as_slice(), i.to_string().as_bytes()]);
                selected = true;
            }
            let payload = rdb::dump_payload(&entry.value, true, cfg.list_max_listpack_size);
            let at = db.expire_at(key).to_string();
            let mut argv: Vec<&[u8]> = vec![b"RESTORE", key, at.as_bytes(), &payload];
            if at != "0" {
                argv.push(b"ABSTTL");
            }
            encode_command(&mut out, &argv);
        }
    }
    Ok(out)
}

/// How an RDB base is written: `aof-base 1`, and the marker as the
/// [`super::MARKER_AUX`] aux field so a rewrite carries it on.
fn base_options(store: &Store) -> WriteOptions {
    let cfg = &store.config;
    WriteOptions {
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
        functions: store.scripting.functions.codes(),
        ..Default::default()
    }
}

/// Where a rewrite's base comes from.
enum Base {
    /// Serialized under the lock already.
    Bytes(Vec<u8>),
    /// A no-fork snapshot, written by the rewrite's thread.
    Snapshot {
        snapshot: Snapshot,
        shared: Arc<Shared>,
        /// `rdb-key-save-delay`.
        delay: Duration,
        /// The job's identity in `store.save.child`.
        cancel: Arc<AtomicBool>,
    },
}

impl Base {
    /// Writes the base to `path` (atomically), returning its size.
    fn write(self, path: &Path) -> Result<u64, AofError> {
        match self {
            Base::Bytes(bytes) => {
                write_file(path, &bytes)?;
                Ok(bytes.len() as u64)
            }
            Base::Snapshot {
                snapshot,
                shared,
                delay,
                ..
            } => {
                write_atomically(path, |w| {
                    snapshot.write(&shared, w, delay).map_err(|e| match e {
                        SnapshotError::Rdb(source) => PersistError::Encode {
                            path: path.to_path_buf(),
                            source,
                        },
                        SnapshotError::Cancelled => PersistError::Cancelled {
                            path: path.to_path_buf(),
                        },
                    })
                })
                .map_err(|e| AofError::io(path, std::io::Error::other(e)))?;
                std::fs::metadata(path)
                    .map(|m| m.len())
                    .map_err(|e| AofError::io(path, e))
            }
        }
    }
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

/// BGREWRITEAOF on a running AOF (`bgrewriteaofCommand`): started, or scheduled for
/// when the running BGSAVE ends; the text is the reply's.
pub(crate) fn start_rewrite(store: &mut Store) -> Result<&'static str, String> {
    let Some(aof) = store.aof.writer.clone() else {
        return Err("ERR AOF is off: turn it on with CONFIG SET appendonly yes".into());
    };
    if store.aof.stats.rewriting.load(Ordering::Acquire) {
        return Err("ERR Background append only file rewriting already in progress".into());
    }
    if store.save.child.is_some() {
        store.aof.rewrite_scheduled = true;
        return Ok("Background append only file rewriting scheduled");
    }
    store.aof.rewrite_scheduled = false;
    rewrite_with(store, &aof, true)
        .map_err(|e| format!("ERR Can't rewrite append only file in background: {e}"))?;
    Ok("Background append only file rewriting started")
}

/// Starts a rewrite of `aof` (see the module doc); `rotate` as [`super::writer`]'s
/// switch.
pub(super) fn rewrite_with(
    store: &mut Store,
    aof: &Arc<Aof>,
    rotate: bool,
) -> Result<(), AofError> {
    let stats = store.aof.stats.clone();
    // The snapshot needs the engine's lock to walk under and the databases' hooks,
    // which a running BGSAVE holds: then the copy is made in memory as before.
    let shared = store.shared.upgrade();
    let base = match shared {
        Some(shared) if store.config.aof_use_rdb_preamble && store.save.child.is_none() => {
            let snapshot = Snapshot::begin(store, base_options(store));
            let cancel = snapshot.cancel_flag();
            store.save.progress = snapshot.progress();
            store.save.progress_total = store.total_keys() as u64;
            store.save.child = Some(Child {
                kind: ChildKind::Aof,
                started: Instant::now(),
                dirty_at_start: store.stats.dirty,
                cancel: cancel.clone(),
            });
            Base::Snapshot {
                snapshot,
                shared,
                delay: Duration::from_micros(store.config.rdb_key_save_delay),
                cancel,
            }
        }
        _ => Base::Bytes(serialize(store)?),
    };
    let job = match &base {
        Base::Snapshot { shared, cancel, .. } => Some((shared.clone(), cancel.clone())),
        Base::Bytes(_) => None,
    };
    stats.rewriting.store(true, Ordering::Release);
    stats
        .rewrite_started_ms
        .store(crate::util::now_ms(), Ordering::Release);
    let switched = aof.switch(rotate);
    let rdb = store.config.aof_use_rdb_preamble;
    let aof = aof.clone();
    let job_on_fail = job.clone();
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
                .and_then(|()| finish(&aof, base, rdb));
            if let Some((shared, cancel)) = &job {
                job_done(&mut shared.lock(), cancel);
            }
            // Killed (CONFIG SET appendonly no, SHUTDOWN, DEBUG RELOAD): as Redis's
            // `killAppendOnlyChild`, neither a success nor a failure.
            let killed = job
                .as_ref()
                .is_some_and(|(_, cancel)| cancel.load(Ordering::Relaxed));
            let st = &aof.stats;
            if !killed {
                st.last_rewrite_secs
                    .store(started.elapsed().as_secs() as i64, Ordering::Release);
            }
            match result {
                Err(_) if killed => tracing::info!("Background AOF rewrite killed"),
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
        if let Some((_, cancel)) = &job_on_fail {
            job_done(store, cancel);
        }
        return Err(AofError::io(Path::new("aof-rewrite thread"), e));
    }
    tracing::info!("Background append only file rewriting started");
    Ok(())
}

/// Ends the rewrite's background job `mine` (if it still is the store's: one that was
/// killed is not): another snapshot may begin.
fn job_done(store: &mut Store, mine: &Arc<AtomicBool>) {
    if store
        .save
        .child
        .as_ref()
        .is_some_and(|c| Arc::ptr_eq(&c.cancel, mine))
    {
        store.save.child = None;
        for db in &mut store.dbs {
            db.set_before_write(None);
        }
    }
}

/// The rewrite's second half (`backgroundRewriteDoneHandler`): the base file, the
/// manifest naming it and the newest incremental file, the history deleted.
fn finish(aof: &Aof, base: Base, rdb: bool) -> Result<(), AofError> {
    let stopped = || {
        AofError::io(
            aof.dir(),
            std::io::Error::other("the AOF was turned off during the rewrite"),
        )
    };
    if aof.stopped.load(Ordering::SeqCst) {
        return Err(stopped());
    }
    // One rewrite runs at a time, so the sequence number holds while the base is
    // written, without the manifest's lock (the snapshot's walk takes long).
    let seq = aof
        .manifest
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .base_seq
        + 1;
    let name = base_name(aof.filename(), seq, rdb);
    let path = aof.dir().join(&name);
    let size = base.write(&path)?;
    let mut m = aof.manifest.lock().unwrap_or_else(|p| p.into_inner());
    if aof.stopped.load(Ordering::SeqCst) {
        let _ = std::fs::remove_file(&path);
        return Err(stopped());
    }
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
    st.base_size.store(size, Ordering::Release);
    st.current_size.store(size + incr_size, Ordering::Release);
    st.rewrite_base_size
        .store(size + incr_size, Ordering::Release);
    aof.establish();
    delete_history(aof.dir(), aof.filename(), &mut m);
    Ok(())
}
