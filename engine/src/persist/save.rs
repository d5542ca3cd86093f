//! RDB files on disk as Redis's `rdb.c` and `serverCron` handle them: SAVE, BGSAVE,
//! the `save` schedule, saving at shutdown, and loading at start.
//!
//! A file is written to `temp-<pid>-<n>.rdb` in `dir`, fsynced, renamed over
//! `dbfilename`, and the directory fsynced, so a crash leaves the old file or the new
//! one, never a torn one. BGSAVE runs on a thread of its own over a point-in-time
//! [`Snapshot`]; its state (Redis's `lastsave`, `lastbgsave_status`, ...) is
//! [`SaveState`], which INFO persistence and `stop-writes-on-bgsave-error` read.

use super::rdb::{Eviction, LoadOptions, Loaded, RdbError, WriteOptions};
use super::snapshot::{Snapshot, SnapshotError};
use crate::engine::{Engine, Shared};
use crate::store::Store;
use bytes::Bytes;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Seconds between BGSAVE attempts of the schedule after one failed
/// (`CONFIG_BGSAVE_RETRY_DELAY`).
const BGSAVE_RETRY_DELAY: u64 = 5;

/// Why a file could not be saved or loaded; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The temporary file could not be created.
    #[error("failed opening the temp RDB file {path} for saving: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing, syncing or renaming failed.
    #[error("failed writing the RDB file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Serializing failed.
    #[error("failed writing the RDB file {path}: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: RdbError,
    },
    /// The snapshot was cancelled.
    #[error("the save to {path} was cancelled")]
    Cancelled { path: PathBuf },
    /// The file exists but could not be opened or read.
    #[error("cannot read the RDB file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid RDB file (corrupt, truncated, unsupported): the engine
    /// refuses to start rather than start empty over it.
    #[error("the RDB file {path} cannot be loaded: {source}")]
    Load {
        path: PathBuf,
        #[source]
        source: RdbError,
    },
    /// A save of this kind is already running.
    #[error("a background save is already in progress")]
    InProgress,
}

/// What runs in the background (Redis's `child_type`): one at a time, since a database
/// holds one snapshot hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildKind {
    /// BGSAVE (or the schedule).
    Rdb,
    /// An AOF rewrite.
    Aof,
    /// A full sync's snapshot, streamed to a replica (Redis's socket-target RDB child).
    Replication,
}

/// The background job running, if any.
#[derive(Debug)]
pub(crate) struct Child {
    pub(crate) kind: ChildKind,
    pub(crate) started: Instant,
    /// `stats.dirty` when it began: what it saved.
    pub(crate) dirty_at_start: u64,
    pub(crate) cancel: Arc<AtomicBool>,
}

/// The store's persistence state (Redis's `server.lastsave` and friends).
#[derive(Debug)]
pub(crate) struct SaveState {
    /// Unix seconds of the last successful save (start time before any).
    pub(crate) lastsave: u64,
    /// `stats.dirty` as of the last successful save.
    pub(crate) dirty_at_save: u64,
    /// Whether the last BGSAVE succeeded.
    pub(crate) last_bgsave_ok: bool,
    /// Seconds the last BGSAVE took (-1: none yet).
    pub(crate) last_bgsave_secs: i64,
    /// Unix seconds of the last BGSAVE attempt.
    pub(crate) last_bgsave_try: u64,
    /// SAVEs and BGSAVEs started (`rdb_saves`).
    pub(crate) saves: u64,
    /// A BGSAVE waits for the running job (BGSAVE SCHEDULE).
    pub(crate) bgsave_scheduled: bool,
    /// The running background job.
    pub(crate) child: Option<Child>,
    /// The dataset is being loaded: clients get `-LOADING` (see [`Engine::set_loading`]).
    pub(crate) loading: bool,
    /// Unix seconds loading began.
    pub(crate) loading_started: u64,
    /// Keys the last load took and dropped as expired.
    pub(crate) last_load_loaded: u64,
    pub(crate) last_load_expired: u64,
    /// Aux fields the embedding process adds to every file (Coherent's binlog position).
    pub(crate) aux: Vec<(Bytes, Bytes)>,
    /// Keys processed by the running background job (`current_save_keys_processed`).
    pub(crate) progress: Arc<AtomicU64>,
    /// Keys the running job started with (`current_save_keys_total`).
    pub(crate) progress_total: u64,
    /// The last `save` setting parsed, and its parse (the cron reads it each second).
    params: (String, Vec<(u64, u64)>),
}

impl SaveState {
    /// Fresh state: "last saved" at start, as Redis.
    pub(crate) fn new() -> Self {
        SaveState {
            lastsave: crate::util::now_ms() / 1000,
            dirty_at_save: 0,
            last_bgsave_ok: true,
            last_bgsave_secs: -1,
            last_bgsave_try: 0,
            saves: 0,
            bgsave_scheduled: false,
            child: None,
            loading: false,
            loading_started: 0,
            last_load_loaded: 0,
            last_load_expired: 0,
            aux: Vec::new(),
            progress: Arc::new(AtomicU64::new(0)),
            progress_total: 0,
            params: (String::new(), Vec::new()),
        }
    }

    /// Whether a BGSAVE runs, or a full sync's snapshot (an RDB child in Redis too:
    /// INFO's `rdb_bgsave_in_progress`, SAVE refused).
    pub(crate) fn bgsave_running(&self) -> bool {
        self.child
            .as_ref()
            .is_some_and(|c| matches!(c.kind, ChildKind::Rdb | ChildKind::Replication))
    }
}

/// Parses the `save` setting: pairs of seconds and changes, or "" for none.
pub(crate) fn parse_save_params(s: &str) -> Result<Vec<(u64, u64)>, String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    if !words.len().is_multiple_of(2) {
        return Err("Invalid save parameters".into());
    }
    words
        .chunks(2)
        .map(|p| match (p[0].parse::<u64>(), p[1].parse::<u64>()) {
            (Ok(secs), Ok(changes)) if secs <= i32::MAX as u64 && changes <= i32::MAX as u64 => {
                Ok((secs, changes))
            }
            _ => Err("Invalid save parameters".into()),
        })
        .collect()
}

/// The `save` setting in Redis's form ("3600 1 300 100").
pub(crate) fn normalize_save(s: &str) -> Result<String, String> {
    Ok(parse_save_params(s)?
        .iter()
        .map(|(a, b)| format!("{a} {b}"))
        .collect::<Vec<_>>()
        .join(" "))
}

/// The file `dir`/`dbfilename` names.
pub(crate) fn rdb_path(store: &Store) -> PathBuf {
    Path::new(&store.config.dir).join(&store.config.dbfilename)
}

/// How the store's files are written, from its settings.
pub(crate) fn write_options(store: &Store) -> WriteOptions {
    let c = &store.config;
    WriteOptions {
        compression: c.rdbcompression,
        checksum: c.rdbchecksum,
        list_max_listpack_size: c.list_max_listpack_size,
        eviction: Eviction::for_policy(&c.maxmemory_policy),
        // Redis writes its allocator's count; the engine's estimate is O(keys), too
        // slow to take under the lock at the start of a BGSAVE.
        used_mem: 0,
        aof_base: false,
        aux: store.save.aux.clone(),
        functions: store.scripting.functions.codes(),
    }
}

/// How files are loaded, from the settings.
pub(crate) fn load_options(store: &Store) -> LoadOptions {
    let c = &store.config;
    LoadOptions {
        limits: crate::persist::rdb::Limits {
            hash: crate::types::hash::HashLimits {
                max_entries: c.hash_max_listpack_entries,
                max_value: c.hash_max_listpack_value,
            },
            zset: crate::types::zset::ZSetLimits {
                max_entries: c.zset_max_listpack_entries,
                max_value: c.zset_max_listpack_value,
            },
            set_max_intset_entries: c.set_max_intset_entries,
        },
        databases: c.databases,
        keep_expired: false,
    }
}

/// A temporary name next to `target`, unique in this process.
fn temp_path(target: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = target.parent().unwrap_or(Path::new("."));
    dir.join(format!("temp-{}-{n}.rdb", std::process::id()))
}

/// Writes a file the safe way: `write` fills a temporary file, which is then fsynced,
/// renamed over `target`, and the directory fsynced. On any error the temporary file
/// is removed and `target` is left as it was.
pub(crate) fn write_atomically<T>(
    target: &Path,
    write: impl FnOnce(BufWriter<File>) -> Result<(BufWriter<File>, T), PersistError>,
) -> Result<T, PersistError> {
    let tmp = temp_path(target);
    let file = File::create(&tmp).map_err(|source| PersistError::Create {
        path: tmp.clone(),
        source,
    })?;
    let finish = || -> Result<T, PersistError> {
        let (w, out) = write(BufWriter::with_capacity(1 << 16, file))?;
        let werr = |source| PersistError::Write {
            path: tmp.clone(),
            source,
        };
        let file = w.into_inner().map_err(|e| werr(e.into_error()))?;
        file.sync_all().map_err(werr)?;
        drop(file);
        std::fs::rename(&tmp, target).map_err(|source| PersistError::Write {
            path: target.to_path_buf(),
            source,
        })?;
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        // The rename is durable only once the directory is.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| PersistError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(out)
    };
    let r = finish();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// SAVE: writes the store to its file now, holding the lock (`rdbSave`). On success
/// the changes counter restarts and `lastsave` moves.
pub(crate) fn save_sync(store: &mut Store) -> Result<(), PersistError> {
    let path = rdb_path(store);
    let opts = write_options(store);
    let now = crate::util::now_ms();
    let dirty = store.stats.dirty;
    write_atomically(&path, |mut w| {
        crate::persist::rdb::write_rdb(&store.dbs, now, &opts, &mut w).map_err(|source| {
            PersistError::Encode {
                path: path.clone(),
                source,
            }
        })?;
        Ok((w, ()))
    })?;
    store.save.dirty_at_save = dirty;
    store.save.lastsave = now / 1000;
    store.save.last_bgsave_ok = true;
    tracing::info!(file = %path.display(), "DB saved on disk");
    Ok(())
}

/// BGSAVE: begins a point-in-time snapshot and writes it on a thread of its own. The
/// caller holds the lock (`store`) and checked that nothing runs in the background.
pub(crate) fn bgsave_start(store: &mut Store) -> Result<(), PersistError> {
    let Some(shared) = store.shared.upgrade() else {
        // A store without an engine around it (unit tests): save in the foreground.
        return save_sync(store);
    };
    if store.save.child.is_some() {
        return Err(PersistError::InProgress);
    }
    let path = rdb_path(store);
    let opts = write_options(store);
    let snapshot = Snapshot::begin(store, opts);
    let cancel = snapshot.cancel_flag();
    let mine = cancel.clone();
    let on_fail = cancel.clone();
    let now = crate::util::now_ms();
    store.save.last_bgsave_try = now / 1000;
    store.save.saves += 1;
    store.save.bgsave_scheduled = false;
    store.save.progress = snapshot.progress();
    store.save.progress_total = store.total_keys() as u64;
    store.save.child = Some(Child {
        kind: ChildKind::Rdb,
        started: Instant::now(),
        dirty_at_start: store.stats.dirty,
        cancel,
    });
    let delay = Duration::from_micros(store.config.rdb_key_save_delay);
    tracing::info!("Background saving started");
    let spawned = std::thread::Builder::new()
        .name("bgsave".into())
        .spawn(move || {
            let r = write_atomically(&path, |w| {
                snapshot.write(&shared, w, delay).map_err(|e| match e {
                    SnapshotError::Rdb(source) => PersistError::Encode {
                        path: path.clone(),
                        source,
                    },
                    SnapshotError::Cancelled => PersistError::Cancelled { path: path.clone() },
                })
            });
            bgsave_done(&mut shared.lock(), &mine, r.map(|_| ()), now);
        });
    if let Err(e) = spawned {
        // Nothing runs: undo as a failed save would.
        let e = PersistError::Write {
            path: rdb_path(store),
            source: e,
        };
        bgsave_done(store, &on_fail, Err(e), now);
    }
    Ok(())
}

/// Records how a BGSAVE ended (`backgroundSaveDoneHandler`). `mine` identifies the
/// job: one that was killed is no longer the store's child (another may be).
fn bgsave_done(
    store: &mut Store,
    mine: &Arc<AtomicBool>,
    r: Result<(), PersistError>,
    started_ms: u64,
) {
    if !store
        .save
        .child
        .as_ref()
        .is_some_and(|c| Arc::ptr_eq(&c.cancel, mine))
    {
        return;
    }
    let Some(child) = store.save.child.take() else {
        return;
    };
    store.save.last_bgsave_secs = child.started.elapsed().as_secs() as i64;
    match r {
        Ok(()) => {
            store.save.dirty_at_save = child.dirty_at_start;
            store.save.lastsave = started_ms / 1000;
            store.save.last_bgsave_ok = true;
            tracing::info!("Background saving terminated with success");
        }
        Err(PersistError::Cancelled { .. }) => {
            tracing::info!("Background saving cancelled");
        }
        Err(e) => {
            store.save.last_bgsave_ok = false;
            tracing::error!(error = %e, "Background saving error");
        }
    }
    // Another snapshot may begin: every hook is gone.
    for db in &mut store.dbs {
        db.set_before_write(None);
    }
}

/// Stops the running background job, if any, and removes its hooks (SHUTDOWN, DEBUG
/// RELOAD): its thread notices at its next chunk and removes its temporary file.
pub(crate) fn kill_child(store: &mut Store) {
    if let Some(child) = store.save.child.take() {
        child.cancel.store(true, Ordering::Relaxed);
        for db in &mut store.dbs {
            db.set_before_write(None);
        }
        tracing::info!("Background saving killed");
    }
}

/// The schedule, from the server's cron (`serverCron`): a scheduled BGSAVE starts when
/// nothing runs; otherwise a BGSAVE starts when a save point is reached (at least
/// `changes` changes and `secs` seconds since the last save), retrying a failed one
/// only after [`BGSAVE_RETRY_DELAY`].
pub(crate) fn cron(store: &mut Store) {
    if store.save.child.is_some() || store.save.loading {
        return;
    }
    if store.save.bgsave_scheduled {
        let _ = bgsave_start(store);
        return;
    }
    if store.save.params.0 != store.config.save {
        let parsed = parse_save_params(&store.config.save).unwrap_or_default();
        store.save.params = (store.config.save.clone(), parsed);
    }
    let now = crate::util::now_ms() / 1000;
    let dirty = store.stats.dirty - store.save.dirty_at_save;
    let s = &store.save;
    let due = s.params.1.iter().any(|&(secs, changes)| {
        dirty >= changes
            && now.saturating_sub(s.lastsave) > secs
            && (now.saturating_sub(s.last_bgsave_try) > BGSAVE_RETRY_DELAY || s.last_bgsave_ok)
    });
    if due {
        tracing::info!(changes = dirty, "save point reached: saving");
        if let Err(e) = bgsave_start(store) {
            tracing::error!(error = %e, "cannot start the scheduled save");
        }
    }
}

/// Whether writes are refused because the last BGSAVE failed
/// (`stop-writes-on-bgsave-error` with save points set).
#[inline]
pub(crate) fn writes_denied(store: &Store) -> bool {
    !store.save.last_bgsave_ok
        && store.config.stop_writes_on_bgsave_error
        && !store.config.save.is_empty()
}

/// Saves as shutting down requires (`prepareForShutdown`): a running background job is
/// stopped; then the file is saved when `save` is forced, or when save points are set
/// and `nosave` is not.
pub(crate) fn shutdown_save(
    store: &mut Store,
    save: bool,
    nosave: bool,
) -> Result<(), PersistError> {
    kill_child(store);
    if save || (!nosave && !store.config.save.is_empty()) {
        tracing::info!("Saving the final RDB snapshot before exiting");
        save_sync(store)?;
    }
    Ok(())
}

/// What loading at start found.
#[derive(Debug)]
#[non_exhaustive]
pub struct StartupLoad {
    /// The file read.
    pub path: PathBuf,
    /// Keys loaded.
    pub keys: u64,
    /// The file's aux fields (Coherent's binlog position among them).
    pub aux: Vec<(Bytes, Bytes)>,
}

impl StartupLoad {
    /// The value of an aux field.
    pub fn aux(&self, name: &str) -> Option<&Bytes> {
        self.aux
            .iter()
            .find(|(k, _)| k.as_ref() == name.as_bytes())
            .map(|(_, v)| v)
    }
}

/// Loads `dir`/`dbfilename` into the engine, replacing its data: `None` when there is
/// no such file (a first start), an error naming the file when it cannot be read. The
/// engine never starts empty over a file it could not read.
pub fn load_rdb_file(engine: &Engine) -> Result<Option<StartupLoad>, PersistError> {
    let (path, opts) = {
        let store = engine.shared().lock();
        (rdb_path(&store), load_options(&store))
    };
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PersistError::Open { path, source }),
    };
    let started = Instant::now();
    let reader = std::io::BufReader::with_capacity(1 << 16, file);
    let loaded: Loaded = engine
        .load_rdb(reader, &opts)
        .map_err(|source| PersistError::Load {
            path: path.clone(),
            source,
        })?;
    let mut store = engine.shared().lock();
    let keys = store.total_keys() as u64;
    store.save.last_load_loaded = keys;
    store.save.last_load_expired = loaded.skipped.expired;
    // What is loaded is what is on disk.
    store.save.dirty_at_save = store.stats.dirty;
    tracing::info!(
        file = %path.display(),
        keys,
        secs = started.elapsed().as_secs_f64(),
        "DB loaded from disk"
    );
    Ok(Some(StartupLoad {
        path,
        keys,
        aux: loaded.aux,
    }))
}

/// Loads the persisted data at start, as Redis's `loadDataFromDisk`: the RDB file, or
/// with `appendonly yes` the AOF, which `Server::bind` already loaded (a file it could
/// not read stopped the start there). For the AOF, the last marker in its stream is
/// reported as the aux field [`crate::persist::aof::MARKER_AUX`]; `None` when the AOF
/// was new (no keys, no marker).
pub fn load_at_start(engine: &Engine) -> Result<Option<StartupLoad>, PersistError> {
    let store = engine.shared().lock();
    if !store.config.appendonly {
        drop(store);
        return load_rdb_file(engine);
    }
    let keys = store.total_keys() as u64;
    let marker = store.aof.marker.clone();
    if keys == 0 && marker.is_none() {
        return Ok(None);
    }
    let aux = marker
        .map(|m| {
            (
                Bytes::from_static(crate::persist::aof::MARKER_AUX.as_bytes()),
                m,
            )
        })
        .into_iter()
        .collect();
    Ok(Some(StartupLoad {
        path: crate::persist::aof::aof_dir(&store.config),
        keys,
        aux,
    }))
}

impl Shared {
    /// Saves at shutdown when save points are set (SIGTERM, SIGINT, the embedding
    /// process's shutdown); SHUTDOWN did its own.
    pub(crate) fn save_on_exit(&self) -> Result<(), PersistError> {
        let mut store = self.lock();
        if store.shutdown_requested {
            return Ok(());
        }
        shutdown_save(&mut store, false, false)
    }
}
