//! Checkpoints: the binlog position after the last transaction whose deletes all
//! landed. Written only at transaction boundaries, only after the deletes of every
//! transaction up to it were applied; on restart the source resumes from it.

pub mod file;
pub mod mysql;

use crate::binlog::Position;
use crate::config::ConfigError;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::PathBuf;

pub use file::FileCheckpointStore;
pub use mysql::MysqlCheckpointStore;

/// Errors loading or saving a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("checkpoint file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another process holds the checkpoint file.
    #[error(transparent)]
    Locked(#[from] crate::filelock::LockError),
    /// The file exists but is not a checkpoint.
    #[error("checkpoint file {path} is corrupt ({reason}); delete it to start from [mysql] start")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint table could not be read or written.
    #[error("checkpoint table coherent.checkpoint (pipeline {pipeline:?}): {source}")]
    Database {
        /// The row key.
        pipeline: String,
        /// The driver error.
        source: sqlx::Error,
    },
    /// `[ha]`: the save was refused because this process no longer holds the
    /// leader's lock (or its lock connection failed).
    #[error("checkpoint row {pipeline:?} not saved: {source}")]
    Fenced {
        /// The row key.
        pipeline: String,
        /// How the lock was found lost.
        source: crate::ha::HaError,
    },
    /// The row exists but does not hold a checkpoint.
    #[error("checkpoint row {pipeline:?} in coherent.checkpoint is corrupt ({reason}); delete it to start from [mysql] start")]
    CorruptRow {
        /// The row key.
        pipeline: String,
        /// What is wrong.
        reason: String,
    },
}

/// What a checkpoint records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Resume after this position.
    pub position: Position,
    /// Server commit time of the transaction at the position (seconds since epoch).
    pub timestamp: u32,
    /// Wall-clock time the checkpoint was written (seconds since epoch).
    pub saved_at: u64,
}

/// Where checkpoints are kept.
pub trait CheckpointStore: Send + Sync {
    /// The saved checkpoint, `None` when there is none yet.
    fn load(&self) -> impl Future<Output = Result<Option<Checkpoint>, CheckpointError>> + Send;
    /// Saves `checkpoint` durably, replacing the previous one; once this returns Ok
    /// a crash cannot bring back an older one.
    fn save(
        &self,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<(), CheckpointError>> + Send;
}

/// The `[checkpoint]` section.
///
/// ```toml
/// [checkpoint]
/// store = "file"              # or "mysql": table coherent.checkpoint
/// path = "coherent.checkpoint"  # for "file"
/// # url = "mysql://..."         # for "mysql"; default: [mysql] url
/// # pipeline = "orders"         # for "mysql": the row key; default: [mysql] server_id
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// `file` or `mysql`.
    #[serde(default)]
    pub store: CheckpointKind,
    /// The file, for `store = "file"`.
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// At most one checkpoint write per this many milliseconds (0 = after every
    /// transaction); an older checkpoint only means re-deleting a few keys.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// For `store = "mysql"`: the server holding `coherent.checkpoint` (the user
    /// needs CREATE, SELECT, INSERT, UPDATE on `coherent.*`); `[mysql] url` when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// For `store = "mysql"`: the row key; the replica `server_id` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
}

/// Checkpoint store kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointKind {
    /// A local file, written atomically.
    #[default]
    File,
    /// A table in MySQL (the migrations/ schema).
    Mysql,
}

fn default_path() -> PathBuf {
    PathBuf::from("coherent.checkpoint")
}

/// Smallest `interval_ms` for the MySQL store (see [`CheckpointConfig::validate`]).
pub const MIN_MYSQL_INTERVAL_MS: u64 = 50;

fn default_interval() -> u64 {
    200
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            store: CheckpointKind::File,
            path: default_path(),
            interval_ms: default_interval(),
            url: None,
            pipeline: None,
        }
    }
}

impl CheckpointConfig {
    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, message: String| Err(ConfigError::new("checkpoint", key, message));
        match self.store {
            CheckpointKind::File if self.path.as_os_str().is_empty() => {
                bad("path", "must not be empty".into())
            }
            CheckpointKind::Mysql => {
                if self.interval_ms < MIN_MYSQL_INTERVAL_MS {
                    // The save is itself a binlogged transaction: with no interval
                    // the pipeline would checkpoint its own checkpoint forever.
                    return bad("interval_ms", format!(
                        "must be at least {MIN_MYSQL_INTERVAL_MS} with store = \"mysql\" (each checkpoint write is a binlog transaction the pipeline reads back)"
                    ));
                }
                if let Some(url) = &self.url {
                    if let Err(e) = mysql_async::Opts::from_url(url) {
                        return bad("url", e.to_string());
                    }
                }
                match &self.pipeline {
                    Some(p) if p.is_empty() || p.len() > 64 => {
                        bad("pipeline", "must be 1 to 64 characters".into())
                    }
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

/// The store `[checkpoint]` selects, for code that picks it at run time.
#[derive(Debug, Clone)]
pub enum AnyCheckpointStore {
    /// `store = "file"`.
    File(FileCheckpointStore),
    /// `store = "mysql"`.
    Mysql(MysqlCheckpointStore),
}

impl AnyCheckpointStore {
    /// The store, holding its file exclusively (a file store; the MySQL store is
    /// shared by design): what the running pipeline uses, so a second process
    /// pointed at the same file stops with an error naming the holder. Readers
    /// (`coherent check`) open without it.
    pub fn exclusive(self) -> Result<Self, CheckpointError> {
        Ok(match self {
            AnyCheckpointStore::File(f) => AnyCheckpointStore::File(f.exclusive()?),
            m => m,
        })
    }

    /// Opens the store of `config`; `mysql_url` and `server_id` (from `[mysql]`)
    /// are the defaults of `url` and `pipeline`.
    pub async fn open(
        config: &CheckpointConfig,
        mysql_url: &str,
        server_id: u32,
    ) -> Result<Self, CheckpointError> {
        Ok(match config.store {
            CheckpointKind::File => {
                AnyCheckpointStore::File(FileCheckpointStore::new(&config.path))
            }
            CheckpointKind::Mysql => {
                let url = config.url.as_deref().unwrap_or(mysql_url);
                let name = config
                    .pipeline
                    .clone()
                    .unwrap_or_else(|| server_id.to_string());
                AnyCheckpointStore::Mysql(MysqlCheckpointStore::connect(url, name).await?)
            }
        })
    }
}

impl AnyCheckpointStore {
    /// `[ha]`: saves go through the leader's lock connection, fenced by the lock
    /// (see [`crate::ha`]); a no-op for the file store, which `[ha]` refuses.
    pub fn fenced(self, lease: std::sync::Arc<crate::ha::Lease>) -> Self {
        match self {
            AnyCheckpointStore::Mysql(s) => AnyCheckpointStore::Mysql(s.with_fence(lease)),
            other => other,
        }
    }

    /// The row key of the MySQL store (`None` for the file store).
    pub fn pipeline(&self) -> Option<&str> {
        match self {
            AnyCheckpointStore::Mysql(s) => Some(s.pipeline()),
            AnyCheckpointStore::File(_) => None,
        }
    }
}

impl CheckpointStore for AnyCheckpointStore {
    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        match self {
            AnyCheckpointStore::File(s) => s.load().await,
            AnyCheckpointStore::Mysql(s) => s.load().await,
        }
    }

    async fn save(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        match self {
            AnyCheckpointStore::File(s) => s.save(checkpoint).await,
            AnyCheckpointStore::Mysql(s) => s.save(checkpoint).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_store_config() {
        let c: CheckpointConfig = toml::from_str(
            "store = \"mysql\"\nurl = \"mysql://u:p@127.0.0.1:3306\"\npipeline = \"orders\"\n",
        )
        .unwrap();
        assert_eq!(c.store, CheckpointKind::Mysql);
        assert_eq!(c.validate(), Ok(()));
        let c: CheckpointConfig = toml::from_str("store = \"mysql\"\n").unwrap();
        assert_eq!(c.validate(), Ok(()));
        let c: CheckpointConfig =
            toml::from_str("store = \"mysql\"\nurl = \"http://x\"\n").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "url");
        let c: CheckpointConfig = toml::from_str("store = \"mysql\"\npipeline = \"\"\n").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "pipeline");
        assert!(toml::from_str::<CheckpointConfig>("store = \"redis\"\n").is_err());
        let c: CheckpointConfig = toml::from_str("store = \"mysql\"\ninterval_ms = 0\n").unwrap();
        assert_eq!(c.validate().unwrap_err().key, "interval_ms");
        let c: CheckpointConfig = toml::from_str("store = \"file\"\ninterval_ms = 0\n").unwrap();
        assert_eq!(c.validate(), Ok(()));
    }
}
