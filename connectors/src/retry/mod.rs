//! The durable retry queue: deletes that did not land (timeout, refused
//! connection, MOVED storm) wait here, with their key, the binlog position that
//! caused them and their attempt count, and are retried with exponential backoff
//! and jitter until they land; after `max_attempts` they are parked in a
//! dead-letter store (counted, logged, in [`RetryStatsSnapshot`] for `/status`).
//!
//! A delete counts as handled, for the checkpoint, once it landed or once
//! [`RetryQueue::enqueue`] returned (fsync'd locally, or confirmed by RabbitMQ).
//!
//! The backends are storage only ([`store::QueueStore`]: push, take what is due,
//! ack, requeue with a next due time, dead-letter):
//!
//! - [`embedded`]: an append-only local file (default);
//! - [`rabbitmq`]: a durable RabbitMQ queue, delayed retries through per-message
//!   TTL and a dead-letter exchange.
//!
//! One [`worker`] drives either through the target's stack with one set of
//! attempt, backoff, jitter and dead-letter rules.

pub mod embedded;
pub mod rabbitmq;
pub mod store;
pub mod worker;

use crate::config::ConfigError;
use crate::duration::HumanDuration;
use crate::targets::DeleteService;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use store::QueueStore;

pub use embedded::EmbeddedQueue;
pub use rabbitmq::RabbitQueue;

/// Errors of the retry queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The local queue file.
    #[error("retry queue file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Another process holds the queue file.
    #[error("retry queue: {0}")]
    Locked(#[from] crate::filelock::LockError),
    /// A record in the middle of the log is damaged: start-up stops rather than
    /// drop the deletes after it (which the checkpoint may already have moved past).
    #[error("retry queue file {path}: damaged record at byte offset {offset} ({reason}), followed by {after} more bytes; it is not a torn tail, so nothing is cut: restore the file from a backup, or move it away to start with an empty queue (the deletes it holds are then lost; `coherent invalidate` re-sends them)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the damaged record starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
        /// Bytes after the damaged record.
        after: u64,
    },
    /// RabbitMQ.
    #[error("retry queue (rabbitmq): {0}")]
    Amqp(String),
    /// Bad `[retry]` section.
    #[error("{0}")]
    Config(#[from] ConfigError),
}

/// The `[retry]` section.
///
/// ```toml
/// [retry]
/// queue = "embedded"            # or "rabbitmq"
/// path = "coherent.retry"       # embedded: the append-only log (+ ".dead")
/// # url = "amqp://guest:guest@127.0.0.1:5672/%2f"   # rabbitmq
/// max_attempts = 20
/// backoff = "100ms"             # first retry; doubles, with jitter
/// max_backoff = "30s"
/// max_depth = 1000000           # binlog reading pauses above this many queued deletes
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Which queue.
    #[serde(default)]
    pub queue: QueueKind,
    /// Embedded queue file.
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// RabbitMQ URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Prefix of the RabbitMQ exchange and queue names.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Attempts (including the first, in-line one) before a delete is dead-lettered.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Pause before the first retry.
    #[serde(default = "default_backoff")]
    pub backoff: HumanDuration,
    /// Longest pause between retries.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: HumanDuration,
    /// Queued deletes above which the pipeline stops reading the binlog.
    #[serde(default = "default_depth")]
    pub max_depth: u64,
    /// Deletes per retry batch.
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_path() -> PathBuf {
    PathBuf::from("coherent.retry")
}
fn default_prefix() -> String {
    "coherent.deletes".into()
}
fn default_attempts() -> u32 {
    20
}
fn default_backoff() -> HumanDuration {
    HumanDuration(Duration::from_millis(100))
}
fn default_max_backoff() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_depth() -> u64 {
    1_000_000
}
fn default_batch() -> usize {
    512
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            queue: QueueKind::Embedded,
            path: default_path(),
            url: None,
            prefix: default_prefix(),
            max_attempts: default_attempts(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
            max_depth: default_depth(),
            batch: default_batch(),
        }
    }
}

impl RetryConfig {
    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, message: String| Err(ConfigError::new("retry", key, message));
        if self.max_attempts == 0 {
            return bad("max_attempts", "must be at least 1".into());
        }
        if self.batch == 0 {
            return bad("batch", "must be at least 1".into());
        }
        if self.max_depth == 0 {
            return bad("max_depth", "must be at least 1".into());
        }
        // A zero pause would retry a refused delete in a tight loop.
        if self.backoff.is_zero() {
            return bad("backoff", "must be more than 0, like \"100ms\"".into());
        }
        if self.max_backoff < self.backoff {
            return bad(
                "max_backoff",
                format!("must be at least backoff ({})", self.backoff),
            );
        }
        match self.queue {
            QueueKind::Embedded if self.path.as_os_str().is_empty() => {
                bad("path", "must not be empty".into())
            }
            QueueKind::Rabbitmq => match &self.url {
                None => bad("url", "required for queue = \"rabbitmq\"".into()),
                Some(url) => match url.parse::<lapin::uri::AMQPUri>() {
                    Ok(_) => Ok(()),
                    // The URL is not repeated: it may hold a password.
                    Err(e) => bad(
                        "url",
                        format!("expected amqp://user:password@host:port/vhost ({e})"),
                    ),
                },
            },
            _ => Ok(()),
        }
    }

    /// The pause before retry number `attempts` (1-based): exponential from
    /// `backoff`, capped at `max_backoff`, with "equal jitter" (half fixed, half
    /// random) so a burst of failures does not retry in lockstep.
    pub fn backoff_for(&self, attempts: u32) -> Duration {
        let base = self.backoff.0.as_millis() as u64;
        let exp = base.saturating_mul(1u64 << attempts.saturating_sub(1).min(32));
        let capped = exp.min(self.max_backoff.0.as_millis() as u64).max(1);
        let half = capped / 2;
        Duration::from_millis(half + fastrand::u64(0..=capped - half))
    }
}

/// Queue kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    /// Local append-only file.
    #[default]
    Embedded,
    /// RabbitMQ.
    Rabbitmq,
}

/// A queued delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuedDelete {
    /// The key.
    #[serde(serialize_with = "ser_bytes")]
    pub key: Bytes,
    /// Binlog position of the transaction that caused it.
    pub position: String,
    /// Attempts so far.
    pub attempts: u32,
}

fn ser_bytes<S: serde::Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(b))
}

/// Live counters, shared by the queue, its worker and the pipeline.
#[derive(Debug, Default)]
pub struct RetryStats {
    depth: AtomicU64,
    enqueued: AtomicU64,
    retries: AtomicU64,
    delivered: AtomicU64,
    dead_letters: AtomicU64,
}

/// A copy of the counters, for `/status` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetryStatsSnapshot {
    /// Deletes waiting (queued or in flight).
    pub depth: u64,
    /// Deletes ever queued.
    pub enqueued: u64,
    /// Failed retry attempts.
    pub retries: u64,
    /// Queued deletes that landed.
    pub delivered: u64,
    /// Deletes parked in the dead-letter store.
    pub dead_letters: u64,
}

impl RetryStats {
    /// A copy.
    pub fn snapshot(&self) -> RetryStatsSnapshot {
        RetryStatsSnapshot {
            depth: self.depth.load(Ordering::Relaxed),
            enqueued: self.enqueued.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dead_letters: self.dead_letters.load(Ordering::Relaxed),
        }
    }
    pub(crate) fn set_depth(&self, d: u64) {
        self.depth.store(d, Ordering::Relaxed);
    }
    pub(crate) fn add_depth(&self, d: i64) {
        if d >= 0 {
            self.depth.fetch_add(d as u64, Ordering::Relaxed);
        } else {
            let _ = self
                .depth
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(d.unsigned_abs()))
                });
        }
    }
    pub(crate) fn count(&self, enqueued: u64, retries: u64, delivered: u64, dead: u64) {
        self.enqueued.fetch_add(enqueued, Ordering::Relaxed);
        self.retries.fetch_add(retries, Ordering::Relaxed);
        self.delivered.fetch_add(delivered, Ordering::Relaxed);
        self.dead_letters.fetch_add(dead, Ordering::Relaxed);
    }
}

/// Milliseconds since the epoch (due times survive restarts).
pub(crate) use crate::clock::now_ms;

/// The configured queue.
#[derive(Clone)]
pub enum RetryQueue {
    /// Local file.
    Embedded(Arc<EmbeddedQueue>),
    /// RabbitMQ.
    RabbitMq(Arc<RabbitQueue>),
}

impl RetryQueue {
    /// Opens (embedded: replays the file; rabbitmq: connects and declares).
    pub async fn open(cfg: &RetryConfig) -> Result<Self, QueueError> {
        cfg.validate()?;
        Ok(match cfg.queue {
            QueueKind::Embedded => {
                RetryQueue::Embedded(Arc::new(EmbeddedQueue::open(cfg.clone())?))
            }
            QueueKind::Rabbitmq => {
                RetryQueue::RabbitMq(Arc::new(RabbitQueue::open(cfg.clone()).await?))
            }
        })
    }

    /// Queues `keys` (caused by the transaction at `position`) durably: when this
    /// returns Ok a crash cannot lose them. Their first retry comes one backoff
    /// later ([`worker::first_retry_in`]).
    pub async fn enqueue(&self, keys: &[Bytes], position: &str) -> Result<(), QueueError> {
        match self {
            RetryQueue::Embedded(q) => {
                q.push(keys, position, worker::first_retry_in(q.config()))
                    .await
            }
            RetryQueue::RabbitMq(q) => {
                q.push(keys, position, worker::first_retry_in(q.config()))
                    .await
            }
        }
    }

    /// Deletes waiting.
    pub fn depth(&self) -> u64 {
        self.stats().depth
    }

    /// Counters.
    pub fn stats(&self) -> RetryStatsSnapshot {
        match self {
            RetryQueue::Embedded(q) => q.stats().snapshot(),
            RetryQueue::RabbitMq(q) => q.stats().snapshot(),
        }
    }

    /// The dead-letter store's contents.
    pub async fn dead_letters(&self) -> Result<Vec<QueuedDelete>, QueueError> {
        match self {
            RetryQueue::Embedded(q) => q.dead_letters().await,
            RetryQueue::RabbitMq(q) => q.dead_letters().await,
        }
    }

    /// The configured `max_depth`.
    pub fn max_depth(&self) -> u64 {
        match self {
            RetryQueue::Embedded(q) => q.config().max_depth,
            RetryQueue::RabbitMq(q) => q.config().max_depth,
        }
    }

    /// Starts the worker that retries queued deletes through `deletes` (the target
    /// in its stack).
    pub fn spawn_worker(&self, deletes: DeleteService) -> tokio::task::JoinHandle<()> {
        match self {
            RetryQueue::Embedded(q) => tokio::spawn(worker::run(q.clone(), deletes)),
            RetryQueue::RabbitMq(q) => tokio::spawn(worker::run(q.clone(), deletes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_cap() {
        let c = RetryConfig::default();
        for _ in 0..100 {
            let b1 = c.backoff_for(1).as_millis();
            assert!((50..=100).contains(&b1), "{b1}");
            let b4 = c.backoff_for(4).as_millis();
            assert!((400..=800).contains(&b4), "{b4}");
            let b30 = c.backoff_for(30).as_millis();
            assert!((15_000..=30_000).contains(&b30), "{b30}");
        }
    }
}
