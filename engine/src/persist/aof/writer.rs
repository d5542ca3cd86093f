//! The AOF writer: a [`PropagationSink`] that buffers the command stream, and one
//! thread that writes the buffer to the current incremental file and fsyncs it as
//! `appendfsync` says.
//!
//! The sink runs under the store lock and only appends bytes; the thread takes the
//! whole buffer at once, so with `always` one fsync covers every write that arrived
//! while the previous fsync ran (group commit), and the store lock is never held
//! across a write or an fsync. A rewrite asks the thread to switch files at a point
//! of the stream (`Switch`): what came before goes to the old file, what comes after
//! to the new one.

use super::manifest::{sync_dir, Manifest};
use super::{aof_dir, AofError, Fsync, Gate, Stats};
use crate::keyspace::propagate::{Propagated, PropagationSink};
use crate::net::frame::{encode_command, push_num};
use crate::store::Store;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long the writer waits for more writes to join a batch, each time the buffer
/// grew, and at most how many times (see the loop in `Aof::run`).
const GATHER_PAUSE: Duration = Duration::from_micros(50);
const GATHER_ROUNDS: usize = 20;

/// A request to continue in a new incremental file.
#[derive(Debug)]
pub(super) struct Switch {
    /// The stream before the switch point: it goes to the old file.
    before: Vec<u8>,
    /// Whether the new file joins the manifest at once (a rewrite of a running AOF,
    /// as `openNewIncrAofForAppend`), or only when the rewrite's base is written
    /// (the AOF being turned on: the old files do not hold the data).
    rotate: bool,
    /// Told when the new file is in use, or why it could not be.
    done: mpsc::Sender<Result<(), AofError>>,
}

#[derive(Debug, Default)]
struct Pending {
    buf: Vec<u8>,
    /// The database the stream's last command ran in (`aof_selected_db`).
    db: Option<usize>,
    /// Stream offset at the end of `buf`.
    offset: u64,
    switch: Option<Switch>,
    stop: bool,
    /// The thread sleeps on the condvar: a write must wake it.
    waiting: bool,
    /// The second of the last `#TS:` annotation.
    last_ts: u64,
}

/// The AOF of one period of `appendonly yes`.
#[derive(Debug)]
pub(crate) struct Aof {
    dir: PathBuf,
    filename: String,
    pending: Mutex<Pending>,
    wake: Condvar,
    gate: Arc<Gate>,
    pub(super) stats: Arc<Stats>,
    pub(super) manifest: Mutex<Manifest>,
    policy: AtomicU8,
    timestamps: AtomicBool,
    /// The manifest lists the file being written: offsets written may be published
    /// as durable.
    established: AtomicBool,
    /// Stream offset written (and fsynced when `always`).
    synced: AtomicU64,
    /// Stopped: a rewrite that finishes after this leaves the files alone.
    pub(super) stopped: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The file and what goes to it. Whoever writes takes the buffer under this lock
    /// (then `pending`'s), so bytes reach the file in stream order: the writer
    /// thread, or with `everysec`/`no` a connection about to reply (as Redis writes
    /// in its event loop), which spares a hand-off to the thread per batch.
    io: Mutex<Io>,
}

/// The writing side's state.
#[derive(Debug)]
struct Io {
    file: Option<Arc<File>>,
    /// Bytes that failed to go out: retried before anything newer.
    carry: Vec<u8>,
    /// Writes done, and writes covered by the last fsync.
    written: u64,
    fsynced: u64,
    last_fsync: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not stop the AOF: the data under these locks is
    // consistent between statements.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PropagationSink for Aof {
    fn propagate(&self, ops: &[Propagated]) {
        let mut p = lock(&self.pending);
        if p.stop {
            return;
        }
        let before = p.buf.len();
        if self.timestamps.load(Ordering::Relaxed) {
            let secs = crate::util::now_ms() / 1000;
            if secs != p.last_ts {
                p.last_ts = secs;
                p.buf.extend_from_slice(b"#TS:");
                push_num(&mut p.buf, secs);
                p.buf.extend_from_slice(b"\r\n");
            }
        }
        for op in ops {
            if p.db != Some(op.db) {
                let db = op.db.to_string();
                encode_command(&mut p.buf, &[b"SELECT".as_slice(), db.as_bytes()]);
                p.db = Some(op.db);
            }
            encode_command(&mut p.buf, &op.argv);
        }
        p.offset += (p.buf.len() - before) as u64;
        // Replies wait for this offset: written to the file (everysec, no) or on disk
        // (always), as Redis writes its AOF buffer before it answers.
        self.gate.appended.fetch_max(p.offset, Ordering::AcqRel);
        self.stats
            .buffer_length
            .store(p.buf.len() as u64, Ordering::Relaxed);
        // With `always` the thread writes and fsyncs; otherwise the connection
        // waiting for this offset writes it (`write_inline`), and the thread only
        // picks up what nobody waits for (in-process writes) on its next tick.
        if p.waiting && self.policy.load(Ordering::Relaxed) == Fsync::Always as u8 {
            p.waiting = false;
            self.wake.notify_one();
        }
    }
}

impl Aof {
    fn new(
        dir: PathBuf,
        filename: String,
        manifest: Manifest,
        gate: Arc<Gate>,
        stats: Arc<Stats>,
        established: bool,
    ) -> Aof {
        let origin = gate.origin();
        Aof {
            dir,
            filename,
            pending: Mutex::new(Pending {
                offset: origin,
                ..Default::default()
            }),
            wake: Condvar::new(),
            gate,
            stats,
            manifest: Mutex::new(manifest),
            policy: AtomicU8::new(Fsync::Everysec as u8),
            timestamps: AtomicBool::new(false),
            established: AtomicBool::new(established),
            synced: AtomicU64::new(origin),
            stopped: AtomicBool::new(false),
            thread: Mutex::new(None),
            io: Mutex::new(Io {
                file: None,
                carry: Vec::new(),
                written: 0,
                fsynced: 0,
                last_fsync: Instant::now(),
            }),
        }
    }

    /// The AOF directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// `appendfilename`.
    pub(super) fn filename(&self) -> &str {
        &self.filename
    }

    /// Follows `appendfsync` and `aof-timestamp-enabled`.
    pub(crate) fn set_policy(&self, policy: Fsync, timestamps: bool) {
        self.policy.store(policy as u8, Ordering::Release);
        self.timestamps.store(timestamps, Ordering::Release);
        let _g = lock(&self.pending);
        self.wake.notify_one();
    }

    /// Whether the manifest lists the file being written.
    pub(crate) fn established(&self) -> bool {
        self.established.load(Ordering::Acquire)
    }

    /// The manifest now lists the file being written: what was written counts.
    pub(super) fn establish(&self) {
        self.established.store(true, Ordering::SeqCst);
        self.gate.publish(self.synced.load(Ordering::SeqCst));
    }

    /// Appends `#COHERENT:<marker>` to the stream (see [`super::mark`]).
    pub(super) fn annotate(&self, marker: &[u8]) {
        let mut p = lock(&self.pending);
        let before = p.buf.len();
        p.buf.extend_from_slice(super::MARKER_PREFIX);
        p.buf.extend_from_slice(marker);
        p.buf.extend_from_slice(b"\r\n");
        p.offset += (p.buf.len() - before) as u64;
        if p.waiting {
            p.waiting = false;
            self.wake.notify_one();
        }
    }

    /// Asks the thread to continue in a new incremental file from this point of the
    /// stream; the receiver hears when it does. Called under the store lock, so the
    /// point is between two execution units.
    pub(super) fn switch(&self, rotate: bool) -> mpsc::Receiver<Result<(), AofError>> {
        let (tx, rx) = mpsc::channel();
        let mut p = lock(&self.pending);
        let before = std::mem::take(&mut p.buf);
        p.switch = Some(Switch {
            before,
            rotate,
            done: tx,
        });
        // The new file starts with a SELECT, as Redis's does after a rewrite.
        p.db = None;
        self.wake.notify_one();
        rx
    }

    fn start_thread(self: &Arc<Self>, file: Option<File>) -> std::io::Result<()> {
        lock(&self.io).file = file.map(Arc::new);
        let me = self.clone();
        let handle = std::thread::Builder::new()
            .name("aof-writer".into())
            .spawn(move || me.run())?;
        *lock(&self.thread) = Some(handle);
        Ok(())
    }

    /// Flushes, fsyncs and stops the thread.
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        {
            let mut p = lock(&self.pending);
            p.stop = true;
            self.wake.notify_one();
        }
        if let Some(h) = lock(&self.thread).take() {
            let _ = h.join();
        }
    }

    /// Whether connections write the buffer themselves (`everysec`, `no`): they
    /// do unless someone else is writing or a switch of files is pending (the thread
    /// does those); `write_inline` returns whether it wrote.
    pub(crate) fn writes_inline(&self) -> bool {
        self.policy.load(Ordering::Acquire) != Fsync::Always as u8
    }

    /// With `everysec` or `no`: writes what is buffered now, from the caller's
    /// thread (see [`Aof::writes_inline`]).
    pub(crate) fn write_inline(&self) -> bool {
        // After a failed write the thread retries, once a second, not every client.
        if self.policy.load(Ordering::Acquire) == Fsync::Always as u8
            || !self.stats.last_write_ok.load(Ordering::Acquire)
        {
            return false;
        }
        let Ok(mut io) = self.io.try_lock() else {
            return false;
        };
        let (mut data, end) = {
            let mut p = lock(&self.pending);
            if p.switch.is_some() || p.stop || p.buf.is_empty() {
                return false;
            }
            self.stats.buffer_length.store(0, Ordering::Relaxed);
            (std::mem::take(&mut p.buf), p.offset)
        };
        if self.write_data(&mut io, &mut data) {
            self.synced.store(end, Ordering::SeqCst);
            self.gate.publish(end);
            true
        } else {
            false
        }
    }

    /// Writes `data` (after anything carried over) to the current file; on an error
    /// keeps it to retry.
    fn write_data(&self, io: &mut Io, data: &mut Vec<u8>) -> bool {
        if !io.carry.is_empty() {
            let mut all = std::mem::take(&mut io.carry);
            all.append(data);
            *data = all;
        }
        if data.is_empty() {
            return true;
        }
        let Some(f) = io.file.clone() else {
            // No file (turning the AOF on failed): nothing to write to.
            data.clear();
            return true;
        };
        if self.write_out(&f, data).is_err() {
            io.carry = std::mem::take(data);
            return false;
        }
        io.written += 1;
        true
    }

    /// The thread's loop.
    fn run(&self) {
        loop {
            let policy_now = self.policy.load(Ordering::Acquire);
            {
                let mut p = lock(&self.pending);
                // Wait for work: with `always` a write wakes us; otherwise a tick
                // picks up writes nobody is waiting for, and fsyncs once a second.
                let tick = if policy_now == Fsync::Always as u8 {
                    Duration::from_millis(1000)
                } else {
                    Duration::from_millis(100)
                };
                if p.buf.is_empty() && p.switch.is_none() && !p.stop {
                    p.waiting = true;
                    let (g, _) = self
                        .wake
                        .wait_timeout(p, tick)
                        .unwrap_or_else(|e| e.into_inner());
                    p = g;
                    p.waiting = false;
                }
                // Group commit (`always`): the first write after a quiet spell wakes
                // us while other clients' writes are still being run; gather until
                // the buffer stops growing (or about 1 ms), so one fsync covers them
                // all instead of the first one alone.
                let mut seen = p.buf.len();
                let mut gathered = 0;
                while policy_now == Fsync::Always as u8
                    && seen > 0
                    && p.switch.is_none()
                    && !p.stop
                    && gathered < GATHER_ROUNDS
                {
                    drop(p);
                    std::thread::sleep(GATHER_PAUSE);
                    p = lock(&self.pending);
                    if p.buf.len() == seen {
                        break;
                    }
                    seen = p.buf.len();
                    gathered += 1;
                }
            }
            // Writers take the buffer under `io`, then `pending`: stream order.
            let mut io = lock(&self.io);
            let (switch, mut data, end, policy, stop) = {
                let mut p = lock(&self.pending);
                self.stats.buffer_length.store(0, Ordering::Relaxed);
                (
                    p.switch.take(),
                    std::mem::take(&mut p.buf),
                    p.offset,
                    self.policy.load(Ordering::Acquire),
                    p.stop,
                )
            };
            let mut ok = true;
            if let Some(sw) = switch {
                let mut before = sw.before;
                if !io.carry.is_empty() {
                    let mut all = std::mem::take(&mut io.carry);
                    all.append(&mut before);
                    before = all;
                }
                // The old file must hold everything before the switch point, on disk,
                // before the new one takes over; if it cannot, there is no switch
                // (the rewrite fails) and the writer stays on the old file.
                let old_done = match io.file.clone() {
                    Some(f) => self
                        .write_out(&f, &before)
                        .and_then(|()| f.sync_data())
                        .map_err(|e| AofError::io(&self.dir, e)),
                    None => Ok(()),
                };
                let old_failed = old_done.is_err();
                let switched = old_done.and_then(|()| self.open_new_incr(sw.rotate));
                match switched {
                    Ok(f) => {
                        io.file = Some(Arc::new(f));
                        io.fsynced = io.written;
                        io.last_fsync = Instant::now();
                        let _ = sw.done.send(Ok(()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot switch to a new AOF incr file");
                        if old_failed && !before.is_empty() {
                            // Not written: retried first, ahead of what follows.
                            io.carry = before;
                        }
                        let _ = sw.done.send(Err(e));
                    }
                }
            }
            ok &= self.write_data(&mut io, &mut data);
            let always = policy == Fsync::Always as u8;
            if ok && !always {
                // Written: what Redis promises before it answers.
                self.synced.store(end, Ordering::SeqCst);
                self.gate.publish(end);
            }
            let unsynced = io.written != io.fsynced;
            let want_sync = unsynced
                && (always
                    || stop
                    || (policy == Fsync::Everysec as u8
                        && io.last_fsync.elapsed() >= Duration::from_secs(1)));
            let to_sync = if want_sync { io.file.clone() } else { None };
            let generation = io.written;
            // The fsync runs without the lock: connections keep writing meanwhile,
            // as Redis's background fsync lets its event loop go on.
            drop(io);
            if let Some(f) = to_sync {
                match f.sync_data() {
                    Ok(()) => {
                        let mut io = lock(&self.io);
                        io.fsynced = io.fsynced.max(generation);
                        io.last_fsync = Instant::now();
                        drop(io);
                        if ok && always {
                            self.synced.store(end, Ordering::SeqCst);
                            // An acknowledgement promises the data comes back after a
                            // crash: only once the manifest lists the file.
                            if self.established.load(Ordering::SeqCst) {
                                self.gate.publish(end);
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "AOF fsync failed");
                        self.stats.last_write_ok.store(false, Ordering::Release);
                        ok = false;
                    }
                }
            } else if ok && always && !unsynced {
                // Nothing new since the last fsync.
                self.synced.store(end, Ordering::SeqCst);
                if self.established.load(Ordering::SeqCst) {
                    self.gate.publish(end);
                }
            }
            if !ok {
                // Redis retries a failed write once a second (and refuses nothing
                // meanwhile here: waiting clients keep waiting).
                std::thread::sleep(Duration::from_secs(1));
            }
            if stop && lock(&self.io).carry.is_empty() {
                self.gate.release();
                return;
            }
        }
    }

    /// Writes `data` at the end of `f`; on an error cuts a partial write off, so the
    /// file ends on a whole command (as `flushAppendOnlyFile` does).
    fn write_out(&self, f: &File, data: &[u8]) -> std::io::Result<()> {
        let mut w = f;
        let mut done = 0;
        while done < data.len() {
            match w.write(&data[done..]) {
                Ok(0) => return self.write_failed(f, done, std::io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return self.write_failed(f, done, e),
            }
        }
        self.stats
            .current_size
            .fetch_add(data.len() as u64, Ordering::AcqRel);
        self.stats.last_write_ok.store(true, Ordering::Release);
        Ok(())
    }

    /// A write failed after `done` bytes: cut them off again, so the file ends on a
    /// whole command (as `flushAppendOnlyFile` does); the caller retries it all.
    fn write_failed(&self, f: &File, done: usize, e: std::io::Error) -> std::io::Result<()> {
        tracing::warn!(error = %e, "error writing the AOF");
        self.stats.last_write_ok.store(false, Ordering::Release);
        if done > 0 {
            if let Ok(md) = f.metadata() {
                let _ = f.set_len(md.len().saturating_sub(done as u64));
            }
        }
        Err(e)
    }

    /// Creates the next incremental file; with `rotate` the manifest lists it at
    /// once.
    fn open_new_incr(&self, rotate: bool) -> Result<File, AofError> {
        let mut m = lock(&self.manifest);
        let mut next = m.clone();
        let name = next.new_incr(&self.filename);
        let path = self.dir.join(&name);
        let f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| AofError::io(&path, e))?;
        if rotate {
            next.persist(&self.dir, &self.filename)?;
        }
        tracing::info!("Creating AOF incr file {name} on background rewrite");
        *m = next;
        Ok(f)
    }
}

/// Opens (creating) a file for appending.
fn open_append(path: &Path) -> Result<File, AofError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| AofError::io(path, e))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Deletes the history files the manifest lists, then drops them from it
/// (`aofDelHistoryFiles`).
pub(super) fn delete_history(dir: &Path, filename: &str, m: &mut Manifest) {
    if m.history.is_empty() {
        return;
    }
    for h in std::mem::take(&mut m.history) {
        tracing::info!("Removing the history file {}", h.name);
        if let Err(e) = std::fs::remove_file(dir.join(&h.name)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %h.name, error = %e, "cannot remove an AOF history file");
            }
        }
    }
    if let Err(e) = m.persist(dir, filename) {
        tracing::warn!(error = %e, "cannot write the AOF manifest");
    }
}

/// Registers a started writer with the store.
fn install(store: &mut Store, aof: Arc<Aof>) {
    aof.set_policy(
        Fsync::from_config(&store.config.appendfsync),
        store.config.aof_timestamp_enabled,
    );
    store.add_propagation_sink(aof.clone());
    store.aof.gate.set_writer(Some(&aof));
    store.aof.writer = Some(aof);
}

/// Loads the AOF and opens it for appending (see [`super::open_at_start`]).
pub(super) fn open_at_start(engine: &crate::Engine) -> Result<Option<super::Replayed>, AofError> {
    let (cfg, gate, stats) = {
        let s = engine.shared().lock();
        (s.config.clone(), s.aof.gate.clone(), s.aof.stats.clone())
    };
    let dir = aof_dir(&cfg);
    let manifest_path = dir.join(Manifest::file_name(&cfg.appendfilename));
    let manifest = if dir.is_dir() {
        Manifest::load(&manifest_path)?
    } else {
        None
    };
    let replayed = match &manifest {
        Some(m) => super::load_files(engine, &dir, m, &cfg)?,
        None => None,
    };
    std::fs::create_dir_all(&dir).map_err(|e| AofError::io(&dir, e))?;
    let mut m = manifest.unwrap_or_default();
    let mut store = engine.shared().lock();
    store.aof.marker = replayed.as_ref().and_then(|r| r.marker.clone());
    if m.base.is_none() && m.incr.is_empty() {
        // A new AOF starts with a base, so that it always has one (as Redis).
        let seq = m.base_seq + 1;
        let name = super::rewrite::base_name(&cfg.appendfilename, seq, cfg.aof_use_rdb_preamble);
        let bytes = super::rewrite::serialize(&store)?;
        super::rewrite::write_file(&dir.join(&name), &bytes)?;
        m.set_base(name.clone(), seq);
        tracing::info!("Creating AOF base file {name} on server start");
    }
    let created = m.incr.is_empty();
    let incr = match m.incr.last() {
        Some(i) => i.name.clone(),
        None => m.new_incr(&cfg.appendfilename),
    };
    let incr_path = dir.join(&incr);
    let file = open_append(&incr_path)?;
    m.persist(&dir, &cfg.appendfilename)?;
    sync_dir(&dir)?;
    if created {
        tracing::info!("Creating AOF incr file {incr} on server start");
    } else {
        tracing::info!("Opening AOF incr file {incr} on server start");
    }
    let base_size = m
        .base
        .as_ref()
        .map(|b| file_len(&dir.join(&b.name)))
        .unwrap_or(0);
    let total: u64 = base_size
        + m.incr
            .iter()
            .map(|i| file_len(&dir.join(&i.name)))
            .sum::<u64>();
    stats.base_size.store(base_size, Ordering::Release);
    stats.current_size.store(total, Ordering::Release);
    stats.rewrite_base_size.store(base_size, Ordering::Release);
    delete_history(&dir, &cfg.appendfilename, &mut m);
    let aof = Arc::new(Aof::new(
        dir,
        cfg.appendfilename.clone(),
        m,
        gate,
        stats,
        true,
    ));
    aof.start_thread(Some(file))
        .map_err(|e| AofError::io(&incr_path, e))?;
    install(&mut store, aof);
    Ok(replayed)
}

/// CONFIG SET appendonly yes: a writer whose first file joins the manifest only
/// with the base of the rewrite started here.
pub(super) fn enable(store: &mut Store) -> Result<(), AofError> {
    let dir = aof_dir(&store.config);
    std::fs::create_dir_all(&dir).map_err(|e| AofError::io(&dir, e))?;
    let filename = store.config.appendfilename.clone();
    let m = Manifest::load(&dir.join(Manifest::file_name(&filename)))?.unwrap_or_default();
    let aof = Arc::new(Aof::new(
        dir.clone(),
        filename,
        m,
        store.aof.gate.clone(),
        store.aof.stats.clone(),
        false,
    ));
    aof.start_thread(None).map_err(|e| AofError::io(&dir, e))?;
    install(store, aof.clone());
    if let Err(e) = super::rewrite::rewrite_with(store, &aof, false) {
        disable(store);
        return Err(e);
    }
    Ok(())
}

/// CONFIG SET appendonly no: flushes and fsyncs what is buffered, stops the thread,
/// and lets nobody wait for it any more.
pub(super) fn disable(store: &mut Store) {
    // A running rewrite is stopped, as `stopAppendOnly` kills the rewrite child.
    if store
        .save
        .child
        .as_ref()
        .is_some_and(|c| c.kind == crate::persist::save::ChildKind::Aof)
    {
        crate::persist::save::kill_child(store);
    }
    store.aof.rewrite_scheduled = false;
    if let Some(aof) = store.aof.writer.take() {
        store.aof.gate.set_writer(None);
        aof.stop();
        let sink: Arc<dyn PropagationSink> = aof.clone();
        store.propagation.remove_sink(&sink);
        store.aof.gate.release();
    }
}

/// Stops the writer when the engine stops (a clean shutdown loses nothing).
pub(crate) fn shutdown(store: &mut Store) {
    disable(store);
}
