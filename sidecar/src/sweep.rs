//! The TTL backstop on external Redis: a periodic, rate-limited sweep that gives keys
//! covered by a rule's `ttl_backstop` a TTL when they have none (a writer that forgot
//! one would otherwise keep a stale value forever).
//!
//! On a Redis Cluster each configured seed node is swept on its own, since SCAN walks
//! one node: list every master in `[target] nodes`.

use connectors::rules::Rules;
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
    if rules.backstops().is_empty() {
        return None;
    }
    let urls: Vec<String> = match target.kind {
        TargetKind::Embedded => return None,
        TargetKind::Redis => target.url.clone().into_iter().collect(),
        TargetKind::RedisCluster => target
            .nodes
            .iter()
            .map(|n| node_url(n, target.password.as_deref()))
            .collect(),
    };
    let rules = rules.clone();
    Some(tokio::spawn(async move {
        loop {
            for url in &urls {
                match sweep_node(url, &rules).await {
                    Ok((scanned, fixed)) => {
                        swept.add(fixed);
                        tracing::info!(node = %redact(url), scanned, fixed, "TTL backstop sweep done")
                    }
                    Err(e) => {
                        tracing::warn!(node = %redact(url), error = %e, "TTL backstop sweep failed")
                    }
                }
            }
            tokio::time::sleep(PERIOD).await;
        }
    }))
}

async fn sweep_node(url: &str, rules: &Rules) -> redis::RedisResult<(u64, u64)> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let report = sweep(&mut conn, rules, SweepConfig::default()).await?;
    Ok((report.scanned, report.fixed))
}

/// A seed node (`host:port` or a URL) as a single-node URL with the cluster password.
fn node_url(node: &str, password: Option<&str>) -> String {
    if node.contains("://") {
        return node.to_string();
    }
    match password {
        Some(p) => format!("redis://:{p}@{node}"),
        None => format!("redis://{node}"),
    }
}

/// A URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_and_redaction() {
        assert_eq!(node_url("127.0.0.1:7000", None), "redis://127.0.0.1:7000");
        assert_eq!(
            node_url("127.0.0.1:7000", Some("pw")),
            "redis://:pw@127.0.0.1:7000"
        );
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
