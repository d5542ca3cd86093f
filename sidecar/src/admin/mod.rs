//! The admin HTTP server: `/healthz`, `/readyz`, `/status`, `/metrics`.

use crate::telemetry::Telemetry;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `[admin]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Where the admin server listens; empty turns it off.
    pub listen: String,
    /// `/readyz` fails while the binlog lag is above this many seconds.
    pub ready_max_lag_secs: f64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:9180".into(),
            ready_max_lag_secs: 10.0,
        }
    }
}

impl AdminConfig {
    /// Checks values serde accepts but the sidecar cannot use, naming the key.
    pub fn validate(&self) -> Result<(), connectors::config::ConfigError> {
        if !(self.ready_max_lag_secs.is_finite() && self.ready_max_lag_secs > 0.0) {
            return Err(connectors::config::ConfigError::new(
                "admin",
                "ready_max_lag_secs",
                format!(
                    "must be a positive number of seconds, not {}",
                    self.ready_max_lag_secs
                ),
            ));
        }
        Ok(())
    }
}

/// What the handlers read.
#[derive(Clone, Debug)]
pub struct AdminState {
    pub engine: engine::Engine,
    pub engine_addr: String,
    pub telemetry: Arc<Telemetry>,
    pub started: std::time::Instant,
    /// The binlog pipeline, when `[mysql]` is configured.
    pub pipeline: Option<Arc<crate::pipeline::PipelineState>>,
    /// The online audit checker, when `[audit] sample` > 0 and there is a pipeline.
    pub audit: Option<Arc<crate::audit::online::AuditState>>,
    /// `[admin] ready_max_lag_secs`.
    pub ready_max_lag_secs: f64,
}

/// The router, separate from binding so tests can serve it on any listener.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Binds `listen` and serves until `shutdown` resolves.
pub async fn serve(
    listen: &str,
    state: AdminState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("admin: cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "admin server failed");
        }
    });
    Ok(addr)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    // Ready = the engine answers AND (with a pipeline) the binlog is connected and
    // its lag is under the threshold: a cache that misses invalidations is not ready.
    let unavailable = |msg: String| (StatusCode::SERVICE_UNAVAILABLE, msg);
    if !matches!(
        s.engine.execute(0, vec!["PING".into()]),
        engine::Reply::Simple("PONG")
    ) {
        return unavailable("engine not answering\n".into());
    }
    if s.engine.is_loading() {
        return unavailable(
            "loading: replaying the binlog from the snapshot's position before serving\n".into(),
        );
    }
    if let Some(p) = &s.pipeline {
        let snap = p.snapshot();
        // `[ha]` standby: healthy and ready (it serves its engine and waits to lead);
        // the leader is judged by its binlog like any pipeline.
        if snap.ha.as_ref().is_some_and(|h| !h.is_leader()) && snap.failed.is_none() {
            return (StatusCode::OK, "ready (HA standby)\n".to_string());
        }
        // A replica's pipeline is paused: its primary's sidecar invalidates, and the
        // deletes arrive with the replication stream. Ready for reads while that
        // stream flows; with the link down it misses them.
        if snap.paused.is_some() && snap.failed.is_none() {
            if let engine::Role::Replica {
                host,
                port,
                link_up,
            } = s.engine.role()
            {
                return if link_up {
                    (
                        StatusCode::OK,
                        format!("ready (replica of {host}:{port}, link up; binlog pipeline paused: deletes come from the primary)\n"),
                    )
                } else {
                    unavailable(format!(
                        "replica of {host}:{port} with the link down: the primary's deletes do not arrive\n"
                    ))
                };
            }
        }
        if let Some(e) = snap.failed {
            return unavailable(format!("pipeline stopped: {e}\n"));
        }
        if !snap.connected {
            let why = snap.last_error.unwrap_or_else(|| "connecting".into());
            return unavailable(format!("binlog not connected: {why}\n"));
        }
        if snap.lag_seconds > s.ready_max_lag_secs {
            return unavailable(format!(
                "binlog lag {:.3} s is over ready_max_lag_secs = {}\n",
                snap.lag_seconds, s.ready_max_lag_secs
            ));
        }
    }
    (StatusCode::OK, "ready\n".to_string())
}

fn position_json(p: &Option<connectors::binlog::Position>) -> serde_json::Value {
    match p {
        Some(p) => serde_json::json!({
            "file": p.file,
            "pos": p.pos,
            "gtid": gtid_text(p),
        }),
        None => serde_json::Value::Null,
    }
}

/// The position's GTID state as its server prints it: MariaDB's `domain-server-seq`
/// list, or MySQL's executed GTID set (`uuid:1-100`); "" without GTIDs.
fn gtid_text(p: &connectors::binlog::Position) -> String {
    if p.mariadb_gtid.is_empty() {
        p.mysql_gtid.to_string()
    } else {
        p.mariadb_gtid.to_string()
    }
}

fn pipeline_json(p: &crate::pipeline::PipelineState) -> serde_json::Value {
    let s = p.snapshot();
    let state = if s.failed.is_some() {
        "failed"
    } else if s.paused.is_some() {
        "paused"
    } else if s.connected {
        "streaming"
    } else {
        "connecting"
    };
    serde_json::json!({
        "state": state,
        // "engine is a replica of host:port" while paused; null otherwise.
        "paused": s.paused,
        // After a promotion: {"from": "replicated" | "checkpoint", "position", "at"}.
        "resumed": s.resumed.as_ref().map(|r| serde_json::json!({
            "from": r.from,
            "position": position_json(&r.position),
            "at": r.at,
        })),
        "connected": s.connected,
        "position": position_json(&s.stats.applied),
        "gtid": s.stats.applied.as_ref().map(gtid_text),
        "lag_seconds": s.lag_seconds,
        "transactions": s.stats.transactions,
        "rows": s.stats.rows,
        "invalidations": s.stats.invalidations,
        "events": s.events,
        "reconnects": s.reconnects,
        "checkpoint": position_json(&s.stats.checkpointed),
        "checkpoint_saved_at": s.checkpoint_saved_at,
        "last_error": s.last_error,
        "double_deletes": s.stats.double_deletes,
        "pending_double_deletes": s.stats.pending_double_deletes,
        "backpressure_pauses": s.stats.backpressure_pauses,
        "queued_without_trying": s.stats.queued_without_trying,
        "retry": {
            "depth": s.retry.depth,
            "queued": s.retry.enqueued,
            "retries": s.retry.retries,
            "delivered": s.retry.delivered,
            "dead_letters": s.retry.dead_letters,
        },
    })
}

async fn status(State(s): State<AdminState>) -> Json<serde_json::Value> {
    let engine = s.engine.stats();
    Json(serde_json::json!({
        "uptime_seconds": s.started.elapsed().as_secs(),
        "binlog": s.pipeline.as_deref().map(pipeline_json),
        // {"enabled": true, "role": "leader" | "standby", "since": unix, "lock": name}
        // with [ha] enabled; {"enabled": false} otherwise.
        "ha": match s.pipeline.as_deref().and_then(|p| p.snapshot().ha) {
            Some(h) => serde_json::json!({"enabled": true, "role": h.role, "since": h.since, "lock": h.lock}),
            None => serde_json::json!({"enabled": false}),
        },
        // null when sample = 0 or there is no binlog pipeline.
        "audit": s.audit.as_deref().map(crate::audit::online::AuditState::json),
        "engine": {
            "listen": s.engine_addr,
            "keys": engine.keys,
            "connected_clients": engine.connected_clients,
            "commands_processed": engine.commands_processed,
            "expired_keys": engine.expired_keys,
        }
    }))
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.telemetry.render(),
    )
}

#[cfg(test)]
mod gtid_tests {
    use super::*;
    use connectors::binlog::Position;

    #[test]
    fn status_shows_the_mysql_gtid_set_on_mysql_and_mariadbs_state_on_mariadb() {
        let set = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100";
        let mysql = Position {
            file: "binlog.000003".into(),
            pos: 4,
            mysql_gtid: set.parse().expect("gtid set"),
            ..Position::default()
        };
        assert_eq!(position_json(&Some(mysql))["gtid"], set);
        let mariadb = Position {
            file: "bin.000001".into(),
            pos: 4,
            mariadb_gtid: "0-1-5".parse().expect("gtid"),
            ..Position::default()
        };
        assert_eq!(position_json(&Some(mariadb))["gtid"], "0-1-5");
        assert_eq!(position_json(&Some(Position::default()))["gtid"], "");
    }
}
