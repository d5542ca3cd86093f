//! External Redis and Redis Cluster as invalidation targets.
//!
//! [`config`] turns `[target]` into a client, [`service`] is the tower `Service`
//! that sends one delete batch (pipelined on one node, one command per hash slot
//! on a cluster), [`sweeper`] applies TTL backstops, and [`RedisTarget`] wraps the
//! service in the shared [`super::stack`].

pub mod config;
pub mod service;
pub mod sweeper;

#[cfg(test)]
mod integration_tests;

use super::stack::{self, DeleteRequest, DeleteService, StackConfig};
use super::{Target, TargetConfig, TargetError};
use bytes::Bytes;
use tower::ServiceExt;

pub use service::{RedisConn, RedisDeleteService};

/// An external Redis (or Cluster) behind the timeout / concurrency / retry stack.
#[derive(Clone)]
pub struct RedisTarget {
    conn: RedisConn,
    stack: DeleteService,
}

impl RedisTarget {
    /// Connects as `config` says (`kind = "redis"` or `"redis-cluster"`).
    pub async fn connect(config: &TargetConfig) -> Result<Self, TargetError> {
        let conn = config::connect(config).await?;
        let svc = RedisDeleteService::new(conn.clone(), config.command);
        let stack = stack::build(
            svc,
            StackConfig {
                timeout: config.batch_timeout.0,
                concurrency: config.concurrency,
                ..StackConfig::default()
            },
        );
        Ok(RedisTarget { conn, stack })
    }

    /// The connection (for the sweeper and tests).
    pub fn conn(&self) -> &RedisConn {
        &self.conn
    }
}

impl Target for RedisTarget {
    async fn delete_batch(&self, keys: &[Bytes]) -> Result<(), TargetError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.stack.clone().oneshot(DeleteRequest::new(keys)).await
    }
}
