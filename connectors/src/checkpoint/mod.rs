//! Checkpoints: the binlog position after the last transaction whose deletes all
//! landed. Written only at transaction boundaries, only after the deletes of every
//! transaction up to it were applied; on restart the source resumes from it.

pub mod file;

use crate::binlog::Position;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::PathBuf;

pub use file::FileCheckpointStore;

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
    /// The file exists but is not a checkpoint.
    #[error("checkpoint file {path} is corrupt ({reason}); delete it to start from [mysql] start")]
    Corrupt {
        /// The file.
        path: PathBuf,
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
/// store = "file"              # or "mysql" (not yet implemented)
/// path = "coherent.checkpoint"
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

fn default_interval() -> u64 {
    200
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            store: CheckpointKind::File,
            path: default_path(),
            interval_ms: default_interval(),
        }
    }
}

impl CheckpointConfig {
    /// Checks the section.
    pub fn validate(&self) -> Result<(), String> {
        match self.store {
            CheckpointKind::File if self.path.as_os_str().is_empty() => {
                Err("path: must not be empty".into())
            }
            CheckpointKind::Mysql => {
                Err("store = \"mysql\" is not implemented yet; use \"file\"".into())
            }
            _ => Ok(()),
        }
    }
}
