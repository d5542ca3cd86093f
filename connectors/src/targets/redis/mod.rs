//! External Redis and Redis Cluster as invalidation targets.
//!
//! [`config`] turns `[target]` into a client, [`service`] is the tower `Service`
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
use std::task::{Context, Poll};
use tower::Service;

pub use service::{RedisConn, RedisDeleteService};

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
                all.push(lease_key(k));
            }
            return self.service.call(DeleteRequest { keys: all.into() });
        }
        self.service.call(req)
    }
}

/// The side key holding `key`'s lease on Redis: `{key}:lease`, or `key:lease` when
/// the key already has a hash tag, so it always lands in the key's cluster slot. It
/// must match `cache_aside::scripts::lease_key` (a test checks both agree).
pub fn lease_key(key: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(key.len() + 8);
    if has_hash_tag(key) {
        out.extend_from_slice(key);
    } else {
        out.push(b'{');
        out.extend_from_slice(key);
        out.push(b'}');
    }
    out.extend_from_slice(b":lease");
    Bytes::from(out)
}

/// Redis Cluster's rule: a `{` followed later by a `}` with at least one byte between.
fn has_hash_tag(k: &[u8]) -> bool {
    match k.iter().position(|&b| b == b'{') {
        Some(open) => matches!(k[open + 1..].iter().position(|&b| b == b'}'), Some(len) if len > 0),
        None => false,
    }
}

#[cfg(test)]
mod lease_key_tests {
    use super::*;

    #[test]
    fn lease_keys_match_the_library_and_share_their_slot() {
        for k in ["user:42", "user:{42}:name", "a{}b", "{x}", "", "x}y"] {
            let lk = lease_key(k.as_bytes());
            assert_eq!(
                lk,
                Bytes::from(cache_aside::scripts::lease_key(k)),
                "the sidecar must void the side key the library's scripts use"
            );
            // A key with a `}` but no hash tag cannot share a slot with any other
            // key; the library documents that leases need such keys to avoid `}`.
            if !k.is_empty() && (!k.contains('}') || has_hash_tag(k.as_bytes())) {
                assert_eq!(
                    redis::cluster_routing::get_slot(k.as_bytes()),
                    redis::cluster_routing::get_slot(&lk),
                    "{k}"
                );
            }
        }
        assert_eq!(lease_key(b"user:42"), Bytes::from("{user:42}:lease"));
        assert_eq!(lease_key(b"user:{42}:n"), Bytes::from("user:{42}:n:lease"));
    }
}
