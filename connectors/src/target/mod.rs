//! Invalidation targets: where deletes go.

pub mod embedded;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::future::Future;

pub use embedded::EmbeddedTarget;

/// A delete that did not land.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The target answered with an error.
    #[error("target refused the delete: {0}")]
    Refused(String),
    /// The target could not be reached.
    #[error("target unavailable: {0}")]
    Unavailable(String),
}

/// A cache that keys can be deleted from.
pub trait Target: Send + Sync {
    /// Deletes `keys` as one batch. Ok means every key is gone (deleting a missing
    /// key is fine); on Err none may be assumed deleted and the batch is retried.
    fn delete_batch(&self, keys: &[Bytes]) -> impl Future<Output = Result<(), TargetError>> + Send;
}

/// The `[target]` section.
///
/// ```toml
/// [target]
/// kind = "embedded"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Which cache receives the deletes.
    #[serde(default)]
    pub kind: TargetKind,
    /// Database number in the embedded engine.
    #[serde(default)]
    pub db: usize,
}

impl Default for TargetConfig {
    fn default() -> Self {
        TargetConfig {
            kind: TargetKind::Embedded,
            db: 0,
        }
    }
}

/// Target kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// The sidecar's own engine, in process.
    #[default]
    Embedded,
}
