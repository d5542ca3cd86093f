//! The append-only file, Redis 7.0's multi-part layout: `dir/appenddirname/` holds a
//! manifest (`appendonly.aof.manifest`), one base file (an RDB when
//! `aof-use-rdb-preamble yes`, commands otherwise) and incremental files of commands.
//!
//! - [`manifest`]: the manifest's format, written atomically.
//! - `writer`: the AOF as a [`crate::PropagationSink`]: commands arrive already
//!   deterministic; the sink only appends them (with SELECT when the database
//!   changes, as `feedAppendOnlyFile`) to a buffer, and one writer thread writes and
//!   fsyncs it. A client's replies wait until everything it saw is written to the
//!   file, and with `appendfsync always` until it is on disk ([`Gate`]); one write
//!   and one fsync cover every write that arrived meanwhile (group commit), and the
//!   store lock is never held across a disk write.
//! - `rewrite`: BGREWRITEAOF and the automatic rewrite: a new base from a
//!   point-in-time copy plus a new incremental file, then the manifest, then the
//!   history files are deleted.
//! - `load`: loading at start (base, then incremental files in manifest order), with
//!   Redis's rules for a torn tail and for corrupt files.

pub mod manifest;

mod load;
mod rewrite;
mod writer;

pub(crate) use load::{load_files, Replayed};
pub(crate) use rewrite::start_rewrite;
pub(crate) use writer::{shutdown, Aof};

use crate::store::Store;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// The annotation line that carries a marker in a command file: `#COHERENT:<marker>`.
/// Redis (and `redis-check-aof`) skip lines starting with `#` when they load an AOF,
/// so files with markers still move to Redis.
pub const MARKER_PREFIX: &[u8] = b"#COHERENT:";

/// The aux field that carries the marker in an RDB base file (Redis keeps unknown
/// aux fields to itself and loads the file).
pub const MARKER_AUX: &str = "coherent-marker";

/// A marker was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkerError {
    /// The AOF is off: there is no stream to mark.
    #[error("the AOF is off")]
    Off,
    /// Not one line of at most 512 bytes.
    #[error("a marker is one line of at most 512 bytes, without CR or LF")]
    Invalid,
}

/// Why the AOF could not be read or written. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum AofError {
    /// A file could not be opened, read, written or synced.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is not one Redis 7.0 would read.
    #[error("bad AOF manifest {path} at line {line}: {what}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// The line (1-based; 0 for the file as a whole).
        line: usize,
        /// Redis's words for the fault.
        what: String,
    },
    /// The manifest names a file that is not there.
    #[error("the AOF file {0} named by the manifest doesn't exist")]
    Missing(PathBuf),
    /// An RDB base file could not be read.
    #[error("error reading the RDB base file {path}, AOF loading aborted: {source}")]
    Base {
        /// The base file.
        path: PathBuf,
        /// What the RDB reader found.
        #[source]
        source: crate::persist::rdb::RdbError,
    },
    /// Not the Redis protocol where a command should start.
    #[error("bad file format reading the append only file {path} at offset {offset}: make a backup of your AOF file, then use redis-check-aof --fix <filename.manifest>")]
    Format {
        /// The file.
        path: PathBuf,
        /// The offset of the command that is wrong.
        offset: u64,
    },
    /// A command the engine does not know.
    #[error("unknown command '{command}' reading the append only file {path}")]
    UnknownCommand {
        /// The file.
        path: PathBuf,
        /// The command's name.
        command: String,
    },
    /// The file ends inside a command and may not be cut there (`aof-load-truncated
    /// no`, or it is not the last file).
    #[error("unexpected end of file reading the append only file {path} (valid up to offset {valid}){why}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Where its last complete command ends.
        valid: u64,
        /// Why it was not cut there.
        why: &'static str,
    },
}

impl AofError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> AofError {
        AofError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What a reply may promise: `appended` is the stream offset of the last byte a
/// command produced, `durable` the offset written to the file (`everysec`, `no`: a
/// crash of the process loses nothing acknowledged, as with Redis, which writes its
/// AOF buffer before it answers) or fsynced (`always`: a crash of the machine loses
/// nothing acknowledged), and listed in the manifest. A connection sends the replies
/// of a batch only once `durable` reaches `appended` as it was when the batch ran, so
/// no client sees (or is told it has) a write that such a crash could take back.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    appended: AtomicU64,
    durable: AtomicU64,
    notify: tokio::sync::Notify,
    /// The running AOF, for connections that write its buffer themselves.
    writer: std::sync::RwLock<Option<std::sync::Weak<Aof>>>,
}

impl Gate {
    /// The offset a connection must wait for, if anything is not yet durable.
    #[inline]
    pub(crate) fn pending(&self) -> Option<u64> {
        let a = self.appended.load(Ordering::Acquire);
        (a > self.durable.load(Ordering::Acquire)).then_some(a)
    }

    /// Waits until `target` is durable: with `everysec`/`no` the caller writes the
    /// buffer itself when nobody else is (as Redis's event loop does before it
    /// answers); otherwise the writer thread's publication wakes it.
    pub(crate) async fn wait(&self, target: u64) {
        loop {
            if self.durable.load(Ordering::Acquire) >= target {
                return;
            }
            let writer = self
                .writer
                .read()
                .ok()
                .and_then(|w| w.as_ref().and_then(std::sync::Weak::upgrade));
            let inline = writer.as_ref().is_some_and(|w| w.writes_inline());
            if inline
                && writer.is_some_and(|w| w.write_inline())
                && self.durable.load(Ordering::Acquire) >= target
            {
                return;
            }
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.durable.load(Ordering::Acquire) >= target {
                return;
            }
            if inline {
                // Someone else is writing: its publication wakes us; a short
                // timeout covers a write that missed the lock just as another one
                // finished, so nobody waits for the thread's tick.
                let _ = tokio::time::timeout(std::time::Duration::from_millis(1), notified).await;
            } else {
                // `always`: the writer thread publishes after its fsync.
                notified.await;
            }
        }
    }

    /// Connections write the buffer of `aof` themselves (or of none).
    pub(crate) fn set_writer(&self, aof: Option<&Arc<Aof>>) {
        if let Ok(mut w) = self.writer.write() {
            *w = aof.map(Arc::downgrade);
        }
    }

    /// Everything up to `offset` is durable.
    pub(crate) fn publish(&self, offset: u64) {
        self.durable.fetch_max(offset, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// The AOF stopped: nobody waits any more for what it had.
    pub(crate) fn release(&self) {
        self.publish(self.appended.load(Ordering::Acquire));
    }

    /// Where a new AOF's stream starts: past every offset handed out.
    fn origin(&self) -> u64 {
        self.appended
            .load(Ordering::Acquire)
            .max(self.durable.load(Ordering::Acquire))
    }
}

/// Counters INFO persistence shows, kept across AOF restarts (`aof_rewrites`...).
#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) rewriting: AtomicBool,
    /// Unix ms when the running rewrite started.
    pub(crate) rewrite_started_ms: AtomicU64,
    pub(crate) last_rewrite_secs: AtomicI64,
    pub(crate) last_rewrite_ok: AtomicBool,
    pub(crate) rewrites: AtomicU64,
    pub(crate) consecutive_failures: AtomicU64,
    pub(crate) last_write_ok: AtomicBool,
    /// The AOF's size: base plus incremental files.
    pub(crate) current_size: AtomicU64,
    /// The base file's size.
    pub(crate) base_size: AtomicU64,
    /// `current_size` after the last rewrite (for auto rewrite's growth).
    pub(crate) rewrite_base_size: AtomicU64,
    /// Bytes waiting in the buffer.
    pub(crate) buffer_length: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            rewriting: AtomicBool::new(false),
            rewrite_started_ms: AtomicU64::new(0),
            last_rewrite_secs: AtomicI64::new(-1),
            last_rewrite_ok: AtomicBool::new(true),
            rewrites: AtomicU64::new(0),
            consecutive_failures: AtomicU64::new(0),
            last_write_ok: AtomicBool::new(true),
            current_size: AtomicU64::new(0),
            base_size: AtomicU64::new(0),
            rewrite_base_size: AtomicU64::new(0),
            buffer_length: AtomicU64::new(0),
        }
    }
}

/// The store's part of the AOF: the running writer, if any, and what outlives it.
#[derive(Debug, Default)]
pub(crate) struct AofState {
    pub(crate) gate: Arc<Gate>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) writer: Option<Arc<Aof>>,
    /// The last marker written or loaded: a rewrite's base carries it on.
    pub(crate) marker: Option<bytes::Bytes>,
    /// BGREWRITEAOF came while a BGSAVE ran: the cron starts it when that ends
    /// (`aof_rewrite_scheduled`).
    pub(crate) rewrite_scheduled: bool,
}

impl Drop for AofState {
    /// An engine dropped in process (not stopped by its server) still writes out
    /// and fsyncs what its AOF buffered.
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            w.stop();
        }
    }
}

/// Appends a marker to the stream at this point (under the store lock, so between two
/// execution units).
pub(crate) fn mark(store: &mut Store, marker: &[u8]) -> Result<(), MarkerError> {
    if marker.len() > 512 || marker.iter().any(|&c| c == b'\r' || c == b'\n') {
        return Err(MarkerError::Invalid);
    }
    let w = store.aof.writer.as_ref().ok_or(MarkerError::Off)?;
    w.annotate(marker);
    store.aof.marker = Some(bytes::Bytes::copy_from_slice(marker));
    Ok(())
}

/// `dir/appenddirname`.
pub(crate) fn aof_dir(cfg: &crate::config::EngineConfig) -> PathBuf {
    Path::new(&cfg.dir).join(&cfg.appenddirname)
}

/// The fsync policy, as `appendfsync` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fsync {
    Always = 0,
    Everysec = 1,
    No = 2,
}

impl Fsync {
    pub(crate) fn from_config(s: &str) -> Fsync {
        match s {
            "always" => Fsync::Always,
            "no" => Fsync::No,
            _ => Fsync::Everysec,
        }
    }
}

/// CONFIG SET appendonly: starts the AOF with a rewrite (as `startAppendOnly`) or
/// stops it (`stopAppendOnly`: flushed and fsynced first).
pub(crate) fn apply_appendonly(store: &mut Store) -> Result<(), String> {
    match (store.config.appendonly, store.aof.writer.is_some()) {
        (true, false) => writer::enable(store).map_err(|e| {
            tracing::warn!(error = %e, "cannot turn on the AOF");
            format!("Unable to turn on AOF: {e}")
        }),
        (false, true) => {
            writer::disable(store);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// CONFIG SET appendfsync / aof-timestamp-enabled: the running writer follows.
pub(crate) fn apply_policy(store: &mut Store) -> Result<(), String> {
    if let Some(w) = &store.aof.writer {
        w.set_policy(
            Fsync::from_config(&store.config.appendfsync),
            store.config.aof_timestamp_enabled,
        );
    }
    Ok(())
}

/// At start with `appendonly yes` (Redis's `loadDataFromDisk` and
/// `aofOpenIfNeededOnServerStart`): loads the AOF named by the manifest, then opens
/// the last incremental file (creating a base and an incremental file for a new
/// AOF) and starts the writer. An error leaves the engine unserved: the server never
/// starts empty over files it could not read.
pub(crate) fn open_at_start(engine: &crate::Engine) -> Result<Option<Replayed>, AofError> {
    writer::open_at_start(engine)
}

/// The serverCron part: an automatic rewrite when the AOF grew by
/// `auto-aof-rewrite-percentage` past `auto-aof-rewrite-min-size`.
pub(crate) fn cron(store: &mut Store) {
    let Some(w) = &store.aof.writer else { return };
    if store.aof.rewrite_scheduled {
        if store.save.child.is_none() && !store.aof.stats.rewriting.load(Ordering::Acquire) {
            if let Err(e) = start_rewrite(store) {
                tracing::warn!(error = %e, "scheduled AOF rewrite not started");
            }
        }
        return;
    }
    let perc = store.config.auto_aof_rewrite_percentage as u64;
    let st = &store.aof.stats;
    if perc == 0
        || st.rewriting.load(Ordering::Acquire)
        || !w.established()
        || store.save.child.is_some()
    {
        return;
    }
    let size = st.current_size.load(Ordering::Acquire);
    if size < store.config.auto_aof_rewrite_min_size {
        return;
    }
    let base = st.rewrite_base_size.load(Ordering::Acquire).max(1);
    let growth = (size * 100 / base).saturating_sub(100);
    if growth >= perc {
        tracing::info!("Starting automatic rewriting of AOF on {growth}% growth");
        if let Err(e) = start_rewrite(store) {
            tracing::warn!(error = %e, "automatic AOF rewrite not started");
        }
    }
}

/// INFO persistence's `aof_*` lines (Redis 7.0's names and order).
pub(crate) fn info(store: &Store, o: &mut String) {
    use std::fmt::Write;
    let st = &store.aof.stats;
    let on = store.aof.writer.is_some();
    let rewriting = st.rewriting.load(Ordering::Acquire);
    let now = crate::util::now_ms();
    let current = if rewriting {
        (now.saturating_sub(st.rewrite_started_ms.load(Ordering::Acquire)) / 1000) as i64
    } else {
        -1
    };
    let ok = |b: bool| if b { "ok" } else { "err" };
    let _ = write!(
        o,
        "aof_enabled:{}\r\naof_rewrite_in_progress:{}\r\naof_rewrite_scheduled:{}\r\n\
         aof_last_rewrite_time_sec:{}\r\naof_current_rewrite_time_sec:{current}\r\n\
         aof_last_bgrewrite_status:{}\r\naof_rewrites:{}\r\n\
         aof_rewrites_consecutive_failures:{}\r\naof_last_write_status:{}\r\n\
         aof_last_cow_size:0\r\nmodule_fork_in_progress:0\r\nmodule_fork_last_cow_size:0\r\n",
        on as u8,
        rewriting as u8,
        store.aof.rewrite_scheduled as u8,
        st.last_rewrite_secs.load(Ordering::Acquire),
        ok(st.last_rewrite_ok.load(Ordering::Acquire)),
        st.rewrites.load(Ordering::Acquire),
        st.consecutive_failures.load(Ordering::Acquire),
        ok(st.last_write_ok.load(Ordering::Acquire)),
    );
    if on {
        let _ = write!(
            o,
            "aof_current_size:{}\r\naof_base_size:{}\r\naof_pending_rewrite:0\r\n\
             aof_buffer_length:{}\r\naof_pending_bio_fsync:0\r\naof_delayed_fsync:0\r\n",
            st.current_size.load(Ordering::Acquire),
            st.base_size.load(Ordering::Acquire),
            st.buffer_length.load(Ordering::Acquire),
        );
    }
}
