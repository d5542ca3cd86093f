//! A checkpoint in a local file, replaced atomically: write a temporary file next to
//! it, fsync it, rename it over the old one, fsync the directory. A crash at any
//! point leaves either the old or the new checkpoint, never a torn one.

use super::{Checkpoint, CheckpointError, CheckpointStore};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Checkpoints in one JSON file.
#[derive(Debug, Clone)]
pub struct FileCheckpointStore {
    path: PathBuf,
    /// Serializes saves: a save whose future was dropped keeps running on the
    /// blocking pool, and two writers sharing the temporary file would fail.
    writing: std::sync::Arc<std::sync::Mutex<()>>,
    /// The exclusive lock on the file, when taken ([`FileCheckpointStore::exclusive`]).
    lock: Option<std::sync::Arc<crate::filelock::FileLock>>,
}

impl FileCheckpointStore {
    /// A store writing `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileCheckpointStore {
            path: path.into(),
            writing: Default::default(),
            lock: None,
        }
    }

    /// This store holding `path + ".lock"` exclusively (until the last clone is
    /// dropped or the process exits): a second process fails here, naming the holder.
    pub fn exclusive(mut self) -> Result<Self, CheckpointError> {
        if self.lock.is_none() {
            self.lock = Some(std::sync::Arc::new(crate::filelock::FileLock::acquire(
                &self.path,
            )?));
        }
        Ok(self)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> CheckpointError {
        CheckpointError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn load_sync(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| CheckpointError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            })
    }

    fn save_sync(&self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        let _one_writer = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let body = serde_json::to_vec_pretty(cp).map_err(|e| CheckpointError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut tmp_name = self.path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        {
            let mut f = std::fs::File::create(&tmp).map_err(|e| self.io(e))?;
            f.write_all(&body).map_err(|e| self.io(e))?;
            f.write_all(b"\n").map_err(|e| self.io(e))?;
            f.sync_all().map_err(|e| self.io(e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io(e))?;
        // The rename is durable only once the directory entry is.
        let d = std::fs::File::open(&dir).map_err(|e| self.io(e))?;
        d.sync_all().map_err(|e| self.io(e))?;
        Ok(())
    }
}

impl CheckpointStore for FileCheckpointStore {
    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.load_sync())
            .await
            .unwrap_or_else(|e| Err(self.io(std::io::Error::other(e))))
    }

    async fn save(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let me = self.clone();
        let cp = checkpoint.clone();
        tokio::task::spawn_blocking(move || me.save_sync(&cp))
            .await
            .unwrap_or_else(|e| Err(self.io(std::io::Error::other(e))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::Position;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("coherent-cp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn save_load_replace() {
        let d = tmpdir("rt");
        let store = FileCheckpointStore::new(d.join("cp"));
        assert_eq!(store.load().await.unwrap(), None);
        let mut cp = Checkpoint {
            position: Position {
                file: "bin.000001".into(),
                pos: 100,
                mariadb_gtid: "0-1-5".parse().unwrap(),
                ..Default::default()
            },
            timestamp: 1,
            saved_at: 2,
        };
        store.save(&cp).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(cp.clone()));
        cp.position.pos = 200;
        store.save(&cp).await.unwrap();
        assert_eq!(store.load().await.unwrap().unwrap().position.pos, 200);
        assert!(!d.join("cp.tmp").exists());
        std::fs::write(d.join("cp"), "garbage").unwrap();
        let err = store.load().await.unwrap_err();
        assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn concurrent_saves_do_not_collide() {
        let d = tmpdir("concurrent");
        let store = FileCheckpointStore::new(d.join("cp"));
        let threads: Vec<_> = (0..8u64)
            .map(|i| {
                let s = store.clone();
                std::thread::spawn(move || {
                    for n in 0..50u64 {
                        let cp = Checkpoint {
                            position: Position {
                                file: "bin.000001".into(),
                                pos: 4 + i * 1000 + n,
                                ..Default::default()
                            },
                            timestamp: 0,
                            saved_at: 0,
                        };
                        s.save_sync(&cp).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(store.load_sync().unwrap().is_some());
    }

    #[test]
    fn a_second_exclusive_store_is_refused() {
        let d = tmpdir("exclusive");
        let a = FileCheckpointStore::new(d.join("cp")).exclusive().unwrap();
        let err = FileCheckpointStore::new(d.join("cp"))
            .exclusive()
            .expect_err("held by a");
        assert!(matches!(err, CheckpointError::Locked(_)), "{err}");
        assert!(err
            .to_string()
            .contains("in use by another coherent process"));
        // A reader without the lock still loads (coherent check).
        assert_eq!(
            FileCheckpointStore::new(d.join("cp")).load_sync().unwrap(),
            None
        );
        drop(a);
        FileCheckpointStore::new(d.join("cp")).exclusive().unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }
}
