//! From `[target]` to a connected client.

use super::service::RedisConn;
use crate::targets::{TargetConfig, TargetError, TargetKind};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::IntoConnectionInfo;
use std::time::Duration;

/// A seed node may be written `host:port`; the client wants a URL.
pub fn node_url(node: &str) -> String {
    if node.contains("://") {
        node.to_string()
    } else {
        format!("redis://{node}")
    }
}

/// Checks a `redis://` / `rediss://` URL.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("rediss://") && !cfg!(feature = "tls") {
        return Err("rediss:// needs coherent-connectors built with feature `tls`".into());
    }
    url.into_connection_info()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn unavailable(e: redis::RedisError) -> TargetError {
    TargetError::Unavailable(e.to_string())
}

/// Connects to the single node or the cluster `config` names.
pub async fn connect(config: &TargetConfig) -> Result<RedisConn, TargetError> {
    // Connect and response timeouts of the client itself stay under the batch
    // timeout so a dead node fails a batch rather than hanging it.
    let t = config.batch_timeout.0.max(Duration::from_millis(10));
    match config.kind {
        TargetKind::Redis => {
            let url = config
                .url
                .as_deref()
                .ok_or_else(|| TargetError::Refused("url: required".into()))?;
            let client = redis::Client::open(url).map_err(unavailable)?;
            let cm = ConnectionManager::new_with_config(
                client,
                ConnectionManagerConfig::new()
                    .set_connection_timeout(t)
                    .set_response_timeout(t)
                    .set_number_of_retries(1)
                    .set_max_delay(200),
            )
            .await
            .map_err(unavailable)?;
            Ok(RedisConn::Single(Box::new(cm)))
        }
        TargetKind::RedisCluster => {
            let nodes: Vec<String> = config.nodes.iter().map(|n| node_url(n)).collect();
            let mut b = ClusterClientBuilder::new(nodes)
                .connection_timeout(t)
                .response_timeout(t)
                .retries(3);
            if let Some(p) = &config.password {
                b = b.password(p.clone());
            }
            let client = b.build().map_err(unavailable)?;
            let conn = client.get_async_connection().await.map_err(unavailable)?;
            Ok(RedisConn::Cluster(conn))
        }
        TargetKind::Embedded => Err(TargetError::Refused(
            "kind = \"embedded\" is not an external Redis".into(),
        )),
    }
}
