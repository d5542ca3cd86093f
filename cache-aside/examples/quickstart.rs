//! A runnable tour: starts Coherent's engine in-process on a free port, then reads and
//! writes "users" of a pretend database through the cache.
//!
//!     cargo run -p coherent-cache-aside --example quickstart
//!
//! Against a running cache instead, connect with `CacheClient::engine(url)`,
//! `CacheClient::redis(url)` or `CacheClient::cluster(&[..])`; nothing else changes.

use cache_aside::{Cache, CacheClient, Options};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    id: u64,
    email: String,
}

/// Stands in for MySQL.
#[derive(Default, Clone)]
struct Database(Arc<Mutex<HashMap<u64, User>>>);

impl Database {
    async fn find(&self, id: u64) -> Result<Option<User>, std::io::Error> {
        println!("  (database read of user {id})");
        Ok(self.0.lock().unwrap().get(&id).cloned())
    }
    async fn update_email(&self, id: u64, email: &str) -> Result<(), std::io::Error> {
        let mut m = self.0.lock().unwrap();
        let u = m
            .get_mut(&id)
            .ok_or_else(|| std::io::Error::other("no such user"))?;
        u.email = email.to_string();
        Ok(()) // committed
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = engine::Server::bind(engine::EngineConfig {
        listen: "127.0.0.1:0".into(),
        ..Default::default()
    })
    .await?;
    let url = format!("redis://{}", server.local_addr()?);
    tokio::spawn(server.run(std::future::pending()));

    let db = Database::default();
    db.0.lock().unwrap().insert(
        42,
        User {
            id: 42,
            email: "old@example.com".into(),
        },
    );

    let cache = Cache::new(
        CacheClient::engine(&url).await?,
        Options {
            negative_ttl: Some(Duration::from_secs(30)),
            second_delete: Some(Duration::from_millis(500)),
            ..Options::default()
        },
    );
    let ttl = Duration::from_secs(300);
    let key = "user:42";

    println!("first read (miss -> lease -> load -> fill):");
    let u = cache.get_or_load(key, ttl, || db.find(42)).await?;
    println!("  {u:?}");
    println!("second read (hit):");
    let u = cache.get_or_load(key, ttl, || db.find(42)).await?;
    println!("  {u:?}");

    println!("write (update, commit, then delete the key):");
    cache
        .write(&[key], || db.update_email(42, "new@example.com"))
        .await?;
    let u = cache.get_or_load(key, ttl, || db.find(42)).await?;
    println!("  after the write: {u:?}");

    println!("a user that does not exist (negative caching):");
    for _ in 0..2 {
        let u: Option<User> = cache.get_or_load("user:404", ttl, || db.find(404)).await?;
        println!("  {u:?}");
    }
    println!("metrics: {:#?}", cache.metrics().snapshot());
    Ok(())
}
