//! One process per data file: an exclusive advisory lock on `<file>.lock`, holding
//! the holder's pid and host name so the second process can say who has it.
//!
//! The lock sits on a separate file because the data files are replaced by rename
//! (the checkpoint on every save, the retry log on compaction): a lock on the data
//! file itself would stay on the replaced inode. The kernel releases the lock when
//! the holder exits, however it exits (kill -9 included), so a stale lock file
//! never blocks a restart; its text is only informative.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why a data file could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "{path} is in use by another coherent process ({holder}; lock file {lock}): two processes must not share a data file; stop the other one or give this one its own data_dir"
    )]
    Held {
        /// The data file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// What the lock file says about the holder (`pid N on host H`).
        holder: String,
    },
    /// The lock file could not be opened, locked or written.
    #[error("cannot lock {path} (lock file {lock}): {source}")]
    Io {
        /// The data file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A held lock on a data file; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    lock: PathBuf,
}

impl FileLock {
    /// Locks `path` (through `path + ".lock"`, created when missing) or fails at once
    /// naming the holder; never waits.
    pub fn acquire(path: &Path) -> Result<FileLock, LockError> {
        let mut lock = path.as_os_str().to_os_string();
        lock.push(".lock");
        let lock = PathBuf::from(lock);
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            lock: lock.clone(),
            source,
        };
        if let Some(d) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(io)?;
        }
        // Not truncated on open: the holder's text must survive a refused attempt.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim() {
                    "" => "holder unknown".to_string(),
                    t => t.to_string(),
                };
                return Err(LockError::Held {
                    path: path.to_path_buf(),
                    lock,
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let me = format!("pid {} on host {}\n", std::process::id(), host_name());
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(me.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(FileLock { _file: file, lock })
    }

    /// The lock file.
    pub fn lock_path(&self) -> &Path {
        &self.lock
    }
}

/// This machine's name (the pod's name in Kubernetes), for the holder text.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_naming_the_holder_and_released_on_drop() {
        let d = std::env::temp_dir().join(format!("coherent-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let p = d.join("cp");
        let held = FileLock::acquire(&p).expect("first lock");
        let err = FileLock::acquire(&p).expect_err("second lock refused");
        let msg = err.to_string();
        assert!(matches!(err, LockError::Held { .. }), "{msg}");
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert_eq!(held.lock_path(), d.join("cp.lock"));
        drop(held);
        FileLock::acquire(&p).expect("free again once dropped");
        let _ = std::fs::remove_dir_all(&d);
    }
}
