//! External Redis and Redis Cluster as invalidation targets.
//!
//! [`config`] turns `[target]` into a client (a [`RedisConn`], the cache-aside
//! library's one Redis connection), [`service`] is the tower `Service`
//! that sends one delete batch (pipelined on one node, one command per hash slot
//! on a cluster), [`sweeper`] applies TTL backstops, and [`RedisTarget`] adds the
//! lease side keys to each batch. Like every target, it runs in the shared
//! [`super::stack`].

pub mod config;
pub mod service;
pub mod sweeper;

#[cfg(test)]
mod integration_tests;

use super::stack::DeleteRequest;
use super::{TargetConfig, TargetError};
use bytes::Bytes;
use cache_aside::scripts::lease_key_bytes;
use std::task::{Context, Poll};
use tower::Service;

pub use cache_aside::connection::RedisConn;
pub use service::RedisDeleteService;

/// An external Redis (or Cluster) as a target.
#[derive(Clone)]
pub struct RedisTarget {
    conn: RedisConn,
    service: RedisDeleteService,
    void_leases: bool,
}

impl RedisTarget {
    /// Connects as `config` says (`kind = "redis"` or `"redis-cluster"`).
    pub async fn connect(config: &TargetConfig) -> Result<Self, TargetError> {
        let conn = config::connect(config).await?;
        let service = RedisDeleteService::new(conn.clone(), config.command);
        Ok(RedisTarget {
            conn,
            service,
            void_leases: config.void_leases,
        })
    }

    /// The connection (for the sweeper and tests).
    pub fn conn(&self) -> &RedisConn {
        &self.conn
    }
}

impl Service<DeleteRequest> for RedisTarget {
    type Response = ();
    type Error = TargetError;
    type Future = <RedisDeleteService as Service<DeleteRequest>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TargetError>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, req: DeleteRequest) -> Self::Future {
        if req.keys.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        if self.void_leases {
            let mut all = Vec::with_capacity(req.keys.len() * 2);
            for k in req.keys.iter() {
                all.push(k.clone());
                all.push(Bytes::from(lease_key_bytes(k)));
            }
            return self.service.call(DeleteRequest { keys: all.into() });
        }
        self.service.call(req)
    }
}
