//! The TTL backstop on external Redis: a periodic, rate-limited sweep that gives keys
//! covered by a rule's `ttl_backstop` a TTL when they have none (a writer that forgot
//! one would otherwise keep a stale value forever).
//!
//! On a Redis Cluster each master is swept on its own, since SCAN walks one node: the
//! masters are listed by `CLUSTER SLOTS` at every sweep
//! ([`cache_aside::connection::RedisConn::masters`]), so a failover or a resharding
//! is followed and replicas are never swept.

use cache_aside::connection::ConnectOptions;
use connectors::rules::Rules;
use connectors::targets::redis::config::connect_with;
use connectors::targets::redis::sweeper::{sweep, SweepConfig};
use connectors::targets::{TargetConfig, TargetKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Time between sweeps.
const PERIOD: Duration = Duration::from_secs(60);

/// Keys the sweeper gave a backstop TTL, for `/metrics` (clones share the count).
#[derive(Debug, Clone, Default)]
pub struct SweptKeys(Arc<AtomicU64>);

impl SweptKeys {
    /// Keys fixed so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// Starts the sweeper when the target is an external Redis and some rule has a
/// backstop, counting the keys it fixes in `swept`; `None` otherwise (the embedded
/// engine applies backstops itself).
pub fn spawn(
    target: &TargetConfig,
    rules: &Rules,
    swept: SweptKeys,
) -> Option<tokio::task::JoinHandle<()>> {
    if rules.backstops().is_empty() || target.kind == TargetKind::Embedded {
        return None;
    }
    let target = target.clone();
    let rules = rules.clone();
    Some(tokio::spawn(async move {
        loop {
            sweep_masters(&target, &rules, &swept).await;
            tokio::time::sleep(PERIOD).await;
        }
    }))
}

/// One sweep of every node holding keys: the Redis, or each master of the cluster.
/// A failure is logged; the next period tries again on a fresh connection.
async fn sweep_masters(target: &TargetConfig, rules: &Rules, swept: &SweptKeys) {
    let nodes = match connect_with(target, ConnectOptions::new()).await {
        Ok(conn) => conn.masters().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let nodes = match nodes {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "TTL backstop sweep failed");
            return;
        }
    };
    for node in nodes {
        match sweep(&node, rules, SweepConfig::default()).await {
            Ok(r) => {
                swept.add(r.fixed);
                tracing::info!(node = %node.addr(), scanned = r.scanned, fixed = r.fixed, "TTL backstop sweep done")
            }
            Err(e) => {
                tracing::warn!(node = %node.addr(), error = %e, "TTL backstop sweep failed")
            }
        }
    }
}
