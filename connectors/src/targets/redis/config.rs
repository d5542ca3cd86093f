//! From `[target]` to a connected client (through the cache-aside library's
//! [`cache_aside::connection`], the one Redis connection module).

use crate::targets::{TargetConfig, TargetError, TargetKind};
use cache_aside::connection::{ConnectOptions, Endpoint, RedisConn};
use redis::IntoConnectionInfo;
use std::time::Duration;

pub use cache_aside::connection::node_url;

/// Checks a `redis://` / `rediss://` URL.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("rediss://") && !cfg!(feature = "tls") {
        return Err("rediss:// needs coherent-connectors built with feature `tls`".into());
    }
    // The URL itself is not repeated: it may hold a password.
    url.into_connection_info()
        .map(|_| ())
        .map_err(|e| format!("expected redis://[user][:password@]host:port[/db] ({e})"))
}

fn unavailable(e: redis::RedisError) -> TargetError {
    TargetError::Unavailable(e.to_string())
}

/// Where `[target]` points: its `url`, or its cluster's seed `nodes`.
pub fn endpoint(config: &TargetConfig) -> Result<Endpoint, TargetError> {
    match config.kind {
        TargetKind::Redis => {
            let url = config
                .url
                .as_deref()
                .ok_or_else(|| TargetError::Refused("url: required".into()))?;
            Endpoint::node(url).map_err(unavailable)
        }
        TargetKind::RedisCluster => Endpoint::cluster(&config.nodes).map_err(unavailable),
        TargetKind::Embedded => Err(TargetError::Refused(
            "kind = \"embedded\" is not an external Redis".into(),
        )),
    }
}

/// Connects to the single node or the cluster `config` names, with `[target]
/// password` for a cluster's nodes.
pub async fn connect_with(
    config: &TargetConfig,
    options: ConnectOptions,
) -> Result<RedisConn, TargetError> {
    let options = options.password(config.password.clone());
    RedisConn::connect(&endpoint(config)?, &options)
        .await
        .map_err(unavailable)
}

/// Connects as the delete target does: connect and response timeouts of the client
/// itself stay under the batch timeout, so a dead node fails a batch rather than
/// hanging it; a cluster request is retried 3 times (redirections, reconnects).
pub async fn connect(config: &TargetConfig) -> Result<RedisConn, TargetError> {
    let t = config.batch_timeout.0.max(Duration::from_millis(10));
    connect_with(config, ConnectOptions::new().timeouts(t, t).retries(3)).await
}
