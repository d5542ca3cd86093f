//! The example service: users in MySQL, read through the cache with leases
//! (`cache_aside::Cache::get_or_load`), written with update-then-delete
//! (`Cache::write`). The sidecar's binlog invalidation runs beside it and deletes the
//! same keys from every committed row change, whatever this service does.
//!
//! Keys (the same as the sidecar's rule for `app.users`):
//! `user:{id}` and `user:email:{email}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cache_aside::{Cache, Error};
use serde::{Deserialize, Serialize};
use sqlx::mysql::{MySqlPool, MySqlRow};
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;

/// A row of `app.users` as the cache stores it (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub email: String,
    pub name: String,
    pub visits: i32,
}

/// POST /users.
#[derive(Debug, Deserialize)]
pub struct NewUser {
    pub email: String,
    pub name: String,
}

/// PUT /users/{id}: the fields to change.
#[derive(Debug, Deserialize)]
pub struct UserUpdate {
    pub email: Option<String>,
    pub name: Option<String>,
}

/// What every handler shares.
pub struct AppState {
    pub pool: MySqlPool,
    pub cache: Cache,
    /// TTL of cached users (jitter is added by the library).
    pub ttl: Duration,
}

/// The HTTP routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/users", axum::routing::post(create_user))
        .route("/users/{id}", get(get_user).put(update_user))
        .route("/users/by-email/{email}", get(get_user_by_email))
        .route("/cache/metrics", get(metrics))
        .with_state(state)
}

/// An HTTP error.
#[derive(Debug)]
pub struct AppError(StatusCode, String);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl<E: std::fmt::Display> From<Error<E>> for AppError {
    fn from(e: Error<E>) -> Self {
        let code = match &e {
            Error::Write(_) => StatusCode::CONFLICT,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        AppError(code, e.to_string())
    }
}

fn not_found() -> AppError {
    AppError(StatusCode::NOT_FOUND, "no such user".into())
}

fn row_to_user(r: MySqlRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        name: r.try_get("name")?,
        visits: r.try_get("visits")?,
    })
}

const BY_ID: &str = "SELECT id, email, name, visits FROM app.users WHERE id = ?";
const BY_EMAIL: &str = "SELECT id, email, name, visits FROM app.users WHERE email = ?";

async fn get_user(
    State(s): State<Arc<AppState>>,
    Path(id): Path<u64>,
) -> Result<Json<User>, AppError> {
    let pool = s.pool.clone();
    let user = s
        .cache
        .get_or_load(&format!("user:{id}"), s.ttl, || async move {
            let row = sqlx::query(BY_ID).bind(id).fetch_optional(&pool).await?;
            row.map(row_to_user).transpose()
        })
        .await?;
    user.map(Json).ok_or_else(not_found)
}

async fn get_user_by_email(
    State(s): State<Arc<AppState>>,
    Path(email): Path<String>,
) -> Result<Json<User>, AppError> {
    let pool = s.pool.clone();
    let key = format!("user:email:{email}");
    let user = s
        .cache
        .get_or_load(&key, s.ttl, || async move {
            let row = sqlx::query(BY_EMAIL)
                .bind(&email)
                .fetch_optional(&pool)
                .await?;
            row.map(row_to_user).transpose()
        })
        .await?;
    user.map(Json).ok_or_else(not_found)
}

async fn create_user(
    State(s): State<Arc<AppState>>,
    Json(new): Json<NewUser>,
) -> Result<(StatusCode, Json<User>), AppError> {
    let pool = s.pool.clone();
    // A "not found" for this email may be cached (negative caching): delete it after
    // the commit, like any other write.
    let email_key = format!("user:email:{}", new.email);
    let (email, name) = (new.email.clone(), new.name.clone());
    let id = s
        .cache
        .write(&[&email_key], || async move {
            let r = sqlx::query("INSERT INTO app.users (email, name) VALUES (?, ?)")
                .bind(&email)
                .bind(&name)
                .execute(&pool)
                .await?;
            Ok::<_, sqlx::Error>(r.last_insert_id())
        })
        .await?;
    // The id is known only now; a negative entry for it may exist too.
    s.cache
        .invalidate(&[&format!("user:{id}")])
        .await
        .map_err(|e| AppError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let user = User {
        id,
        email: new.email,
        name: new.name,
        visits: 0,
    };
    Ok((StatusCode::CREATED, Json(user)))
}

async fn update_user(
    State(s): State<Arc<AppState>>,
    Path(id): Path<u64>,
    Json(upd): Json<UserUpdate>,
) -> Result<Json<User>, AppError> {
    // The keys of the row before and after the change: both emails. (The sidecar
    // derives the same keys from the binlog's before and after images, so a change
    // that races with this read is still invalidated.)
    let old = sqlx::query(BY_ID)
        .bind(id)
        .fetch_optional(&s.pool)
        .await
        .map_err(|e| AppError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
        .map(row_to_user)
        .transpose()
        .map_err(|e| AppError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .ok_or_else(not_found)?;
    let new = User {
        email: upd.email.unwrap_or_else(|| old.email.clone()),
        name: upd.name.unwrap_or_else(|| old.name.clone()),
        ..old.clone()
    };
    let keys = [
        format!("user:{id}"),
        format!("user:email:{}", old.email),
        format!("user:email:{}", new.email),
    ];
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let pool = s.pool.clone();
    let (email, name) = (new.email.clone(), new.name.clone());
    s.cache
        .write(&refs, || async move {
            let mut tx = pool.begin().await?;
            sqlx::query("UPDATE app.users SET email = ?, name = ? WHERE id = ?")
                .bind(&email)
                .bind(&name)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await // commit first; the library deletes after this returns
        })
        .await?;
    Ok(Json(new))
}

async fn metrics(State(s): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let m = s.cache.metrics().snapshot();
    Json(serde_json::json!({
        "hits": m.hits,
        "negative_hits": m.negative_hits,
        "misses": m.misses,
        "lease_waits": m.lease_waits,
        "wait_timeouts": m.wait_timeouts,
        "singleflight_joins": m.singleflight_joins,
        "fills": m.fills,
        "refused_fills": m.refused_fills,
        "fill_errors": m.fill_errors,
        "loads": m.loads,
        "load_errors": m.load_errors,
        "load_micros_total": m.load_micros_total,
        "load_micros_max": m.load_micros_max,
        "deletes": m.deletes,
        "delete_retries": m.delete_retries,
        "delete_failures": m.delete_failures,
        "near_hits": m.near_hits,
        "shared_hits": m.shared_hits,
        "near_fills": m.near_fills,
        "invalidations_received": m.invalidations_received,
        "near_flushes": m.near_flushes,
        "near_entries": s.cache.near_len(),
    }))
}

/// Creates the database if missing and applies the migrations in `dir`.
pub async fn migrate(database_url: &str, dir: &std::path::Path) -> anyhow::Result<MySqlPool> {
    use sqlx::migrate::MigrateDatabase;
    if !sqlx::MySql::database_exists(database_url).await? {
        sqlx::MySql::create_database(database_url).await?;
    }
    let pool = MySqlPool::connect(database_url).await?;
    sqlx::migrate::Migrator::new(dir).await?.run(&pool).await?;
    Ok(pool)
}
