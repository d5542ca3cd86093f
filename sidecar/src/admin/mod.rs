//! The admin HTTP server: `/healthz`, `/readyz`, `/status`, `/metrics`.

use crate::telemetry::Telemetry;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;

/// `[admin]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Where the admin server listens; empty turns it off.
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:9180".into(),
        }
    }
}

/// What the handlers read.
#[derive(Clone, Debug)]
pub struct AdminState {
    pub engine: engine::Engine,
    pub engine_addr: String,
    pub telemetry: Arc<Telemetry>,
    pub started: std::time::Instant,
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
    // The engine is ready once it accepts commands; the binlog pipeline adds its own
    // condition (connected, lag under threshold) when it runs.
    match s.engine.execute(0, vec!["PING".into()]) {
        engine::Reply::Simple("PONG") => (StatusCode::OK, "ready\n"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "engine not answering\n"),
    }
}

async fn status(State(s): State<AdminState>) -> Json<serde_json::Value> {
    let (keys, clients, commands, expired) = {
        let st = s.engine.shared().lock();
        (
            st.total_keys(),
            st.clients.len(),
            st.stats.commands,
            st.stats.expired_keys,
        )
    };
    Json(serde_json::json!({
        "uptime_seconds": s.started.elapsed().as_secs(),
        "engine": {
            "listen": s.engine_addr,
            "keys": keys,
            "connected_clients": clients,
            "commands_processed": commands,
            "expired_keys": expired,
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
