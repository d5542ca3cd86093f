//! `user-service`: the example service. Configuration from the environment:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | `mysql://root@127.0.0.1:3306/app` | MySQL (or MariaDB) |
//! | `CACHE_KIND` | `engine` | `engine` (Coherent), `redis` or `cluster` |
//! | `CACHE_URL` | `redis://127.0.0.1:6380` | cache URL; for `cluster`, comma-separated seeds |
//! | `LISTEN` | `127.0.0.1:8080` | HTTP address |
//! | `MIGRATIONS` | `migrations` | directory of sqlx migrations applied at start ("" skips) |
//! | `CACHE_TTL_SECS` | `300` | TTL of cached users |
//! | `NEGATIVE_TTL_SECS` | `30` | TTL of cached "not found" (0: off) |
//! | `SECOND_DELETE_MS` | `500` | delayed second delete (0: off) |
//! | `NEAR_CACHE_ENTRIES` | `10000` | near cache in process, kept by tracking invalidations (0: off; not on a cluster) |
//! | `NEAR_CACHE_BYTES` | `67108864` | the near cache's bound in bytes |

use cache_aside::{Cache, CacheClient, NearOptions, Options};
use coherent_example_users::{migrate, router, AppState};
use std::sync::Arc;
use std::time::Duration;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn env_u64(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

fn nonzero_ms(v: u64) -> Option<Duration> {
    (v > 0).then(|| Duration::from_millis(v))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let db_url = env("DATABASE_URL", "mysql://root@127.0.0.1:3306/app");
    let migrations = env("MIGRATIONS", "migrations");
    let pool = if migrations.is_empty() {
        sqlx::mysql::MySqlPool::connect(&db_url).await?
    } else {
        migrate(&db_url, std::path::Path::new(&migrations)).await?
    };
    let cache_url = env("CACHE_URL", "redis://127.0.0.1:6380");
    let client = match env("CACHE_KIND", "engine").as_str() {
        "engine" => CacheClient::engine(&cache_url).await?,
        "redis" => CacheClient::redis(&cache_url).await?,
        "cluster" => {
            let seeds: Vec<&str> = cache_url.split(',').map(str::trim).collect();
            CacheClient::cluster(&seeds).await?
        }
        other => anyhow::bail!("CACHE_KIND={other:?}: expected engine, redis or cluster"),
    };
    let opts = Options {
        negative_ttl: nonzero_ms(env_u64("NEGATIVE_TTL_SECS", 30)? * 1000),
        second_delete: nonzero_ms(env_u64("SECOND_DELETE_MS", 500)?),
        near: match env_u64("NEAR_CACHE_ENTRIES", 10_000)? {
            0 => None,
            max_entries => Some(NearOptions {
                max_entries,
                max_bytes: env_u64("NEAR_CACHE_BYTES", 64 * 1024 * 1024)?,
                ..NearOptions::default()
            }),
        },
        ..Options::default()
    };
    let state = Arc::new(AppState {
        pool,
        cache: Cache::new(client, opts),
        ttl: Duration::from_secs(env_u64("CACHE_TTL_SECS", 300)?),
    });
    let listen = env("LISTEN", "127.0.0.1:8080");
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("user-service listening on {listen}");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
