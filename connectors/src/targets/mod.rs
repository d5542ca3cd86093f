//! Invalidation targets: where deletes go.
//!
//! A target is a tower `Service` that deletes one batch of keys ([`Target`]):
//!
//! - [`embedded`]: the sidecar's own engine, in process (the default).
//! - [`redis`]: an external Redis or Redis Cluster, laid out like a Vector sink
//!   (`config.rs`, `service.rs` with a tower `Service` sending one delete batch,
//!   `integration_tests.rs`), plus the TTL-backstop `sweeper.rs`.
//!
//! Every target, whichever it is, is driven through the same tower stack
//! ([`stack::build`]): timeout, concurrency limit, quick in-line retries, metrics;
//! retries over longer spans belong to the durable retry queue ([`crate::retry`]),
//! not to in-memory loops.

pub mod embedded;
pub mod redis;
pub mod stack;

use crate::config::ConfigError;
use crate::duration::HumanDuration;
use serde::{Deserialize, Serialize};
use std::task::{Context, Poll};
use std::time::Duration;
use tower::Service;

pub use embedded::EmbeddedTarget;
pub use redis::RedisTarget;
pub use stack::{DeleteRequest, DeleteService};

/// A delete that did not land.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TargetError {
    /// The target answered with an error.
    #[error("target refused the delete: {0}")]
    Refused(String),
    /// The target could not be reached.
    #[error("target unavailable: {0}")]
    Unavailable(String),
    /// The batch did not complete within the batch timeout.
    #[error("delete batch timed out after {0:?}")]
    Timeout(Duration),
    /// Not tried: the target failed a batch less than this long ago (the
    /// pipeline's breaker, [`stack::breaker`]).
    #[error("target not tried: it failed less than {0:?} ago")]
    Failing(Duration),
}

/// A cache that keys can be deleted from: a tower service taking one batch
/// ([`DeleteRequest`]). Ok means every key is gone (deleting a missing key is fine);
/// on Err none may be assumed deleted and the batch is retried. Implemented by every
/// service of that shape.
pub trait Target:
    Service<DeleteRequest, Response = (), Error = TargetError, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Target for S where
    S: Service<DeleteRequest, Response = (), Error = TargetError, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// The `[target]` section.
///
/// ```toml
/// [target]
/// kind = "redis"                      # "embedded" (default), "redis", "redis-cluster"
/// url = "redis://:secret@127.0.0.1:6379/0"   # kind = "redis" (rediss:// with feature `tls`)
/// # nodes = ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]  # kind = "redis-cluster"
/// # password = "secret"               # cluster only (single node: in the URL)
/// command = "unlink"                  # or "del"
/// batch_timeout = "2s"
/// concurrency = 4                     # batches in flight (pipeline + retry worker)
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
    /// `redis://[user][:password@]host:port[/db]` for `kind = "redis"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Seed nodes for `kind = "redis-cluster"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Password for the cluster's nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The delete command.
    #[serde(default)]
    pub command: DeleteCommand,
    /// A batch that has not landed after this long counts as failed.
    #[serde(default = "default_batch_timeout")]
    pub batch_timeout: HumanDuration,
    /// Delete batches in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// External Redis: also delete each key's lease side key (`{key}:lease`, as the
    /// cache-aside library's Lua scripts keep it), so an invalidation voids
    /// outstanding lease tokens there as it does in the embedded engine, and drops the
    /// `written` time a lease fill left there (the audit reads it: with `false`, it
    /// stays until the value's TTL would have ended).
    #[serde(default = "default_void_leases")]
    pub void_leases: bool,
}

fn default_void_leases() -> bool {
    true
}

fn default_batch_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}

fn default_concurrency() -> usize {
    4
}

impl Default for TargetConfig {
    fn default() -> Self {
        TargetConfig {
            kind: TargetKind::Embedded,
            db: 0,
            url: None,
            nodes: Vec::new(),
            password: None,
            command: DeleteCommand::default(),
            batch_timeout: default_batch_timeout(),
            concurrency: default_concurrency(),
            void_leases: default_void_leases(),
        }
    }
}

impl TargetConfig {
    /// A `kind = "redis"` config for `url`.
    pub fn redis(url: impl Into<String>) -> Self {
        TargetConfig {
            kind: TargetKind::Redis,
            url: Some(url.into()),
            ..TargetConfig::default()
        }
    }

    /// A `kind = "redis-cluster"` config for `nodes`.
    pub fn redis_cluster(nodes: Vec<String>) -> Self {
        TargetConfig {
            kind: TargetKind::RedisCluster,
            nodes,
            ..TargetConfig::default()
        }
    }

    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, message: String| Err(ConfigError::new("target", key, message));
        if self.batch_timeout.is_zero() {
            return bad("batch_timeout", "must be more than 0".into());
        }
        if self.concurrency == 0 {
            return bad("concurrency", "must be at least 1".into());
        }
        match self.kind {
            TargetKind::Embedded => Ok(()),
            TargetKind::Redis => match self.url.as_deref() {
                None => bad("url", "required for kind = \"redis\"".into()),
                Some(url) => match redis::config::check_url(url) {
                    Ok(()) => Ok(()),
                    Err(e) => bad("url", e.to_string()),
                },
            },
            TargetKind::RedisCluster => {
                if self.nodes.is_empty() {
                    return bad(
                        "nodes",
                        "at least one seed node is required for kind = \"redis-cluster\"".into(),
                    );
                }
                for n in &self.nodes {
                    if let Err(e) = redis::config::check_url(&redis::config::node_url(n)) {
                        return bad("nodes", format!("{n:?}: {e}"));
                    }
                }
                Ok(())
            }
        }
    }
}

/// Target kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// The sidecar's own engine, in process.
    #[default]
    Embedded,
    /// One external Redis server.
    Redis,
    /// A Redis Cluster, found from seed nodes.
    RedisCluster,
}

/// The command that deletes keys on an external Redis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteCommand {
    /// Non-blocking delete: memory is reclaimed in a background thread.
    #[default]
    Unlink,
    /// Blocking delete.
    Del,
}

impl DeleteCommand {
    /// The command name.
    pub fn name(self) -> &'static str {
        match self {
            DeleteCommand::Unlink => "UNLINK",
            DeleteCommand::Del => "DEL",
        }
    }
}

/// Any configured target, so the pipeline and the retry worker need no generics
/// over the config's choice.
#[derive(Clone)]
pub enum AnyTarget {
    /// In-process engine.
    Embedded(EmbeddedTarget),
    /// External Redis or Redis Cluster.
    Redis(Box<RedisTarget>),
}

impl std::fmt::Debug for AnyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnyTarget::Embedded(_) => f.write_str("AnyTarget::Embedded"),
            AnyTarget::Redis(_) => f.write_str("AnyTarget::Redis"),
        }
    }
}

impl AnyTarget {
    /// Installs the TTL backstops of `rules` into the embedded engine (see
    /// [`EmbeddedTarget::install_backstops`]); external Redis gets them from the
    /// sweeper instead, so this returns 0 there.
    pub fn install_backstops(&self, rules: &crate::rules::Rules) -> usize {
        match self {
            AnyTarget::Embedded(t) => t.install_backstops(rules),
            AnyTarget::Redis(_) => 0,
        }
    }

    /// Builds the target `config` describes; `engine` is used for `kind = "embedded"`.
    pub async fn from_config(
        config: &TargetConfig,
        engine: Option<engine::Engine>,
    ) -> Result<Self, TargetError> {
        config
            .validate()
            .map_err(|e| TargetError::Refused(e.to_string()))?;
        match config.kind {
            TargetKind::Embedded => {
                let engine = engine.ok_or_else(|| {
                    TargetError::Unavailable("kind = \"embedded\" needs the engine".into())
                })?;
                Ok(AnyTarget::Embedded(EmbeddedTarget::new(engine, config.db)))
            }
            TargetKind::Redis | TargetKind::RedisCluster => Ok(AnyTarget::Redis(Box::new(
                RedisTarget::connect(config).await?,
            ))),
        }
    }
}

impl Service<DeleteRequest> for AnyTarget {
    type Response = ();
    type Error = TargetError;
    type Future = futures_util::future::Either<
        <EmbeddedTarget as Service<DeleteRequest>>::Future,
        <RedisTarget as Service<DeleteRequest>>::Future,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TargetError>> {
        match self {
            AnyTarget::Embedded(t) => t.poll_ready(cx),
            AnyTarget::Redis(t) => t.poll_ready(cx),
        }
    }

    fn call(&mut self, req: DeleteRequest) -> Self::Future {
        use futures_util::future::Either;
        match self {
            AnyTarget::Embedded(t) => Either::Left(t.call(req)),
            AnyTarget::Redis(t) => Either::Right(t.call(req)),
        }
    }
}
