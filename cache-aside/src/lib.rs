//! Cache-aside for services, done one correct way: reads through the cache with
//! leases, writes with update-then-delete.
//!
//! # Guide
//!
//! Connect to the cache — Coherent's engine, a Redis, or a Redis Cluster; the API is
//! the same — and wrap it in a [`Cache`]:
//!
//! ```no_run
//! use cache_aside::{Cache, CacheClient, Options};
//! use serde::{Deserialize, Serialize};
//! use std::time::Duration;
//!
//! #[derive(Serialize, Deserialize)]
//! struct User { id: u64, email: String }
//!
//! # async fn db_find_user(_: u64) -> Result<Option<User>, std::io::Error> { Ok(None) }
//! # async fn db_update_email(_: u64, _: &str) -> Result<(), std::io::Error> { Ok(()) }
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = CacheClient::engine("redis://127.0.0.1:6380").await?;
//! // or CacheClient::redis("redis://127.0.0.1:6379"), CacheClient::cluster(&[..])
//! let cache = Cache::new(client, Options {
//!     negative_ttl: Some(Duration::from_secs(30)),
//!     second_delete: Some(Duration::from_millis(500)),
//!     ..Options::default()
//! });
//!
//! // Read: hit, or one loader call per key across all processes, then a fill that is
//! // refused if a writer deleted the key meanwhile.
//! let user: Option<User> = cache
//!     .get_or_load("user:42", Duration::from_secs(300), || db_find_user(42))
//!     .await?;
//!
//! // Write: the database first (commit inside the closure), then delete the keys.
//! cache
//!     .write(&["user:42"], || db_update_email(42, "new@example.com"))
//!     .await?;
//! println!("{:?}", cache.metrics().snapshot());
//! # Ok(()) }
//! ```
//!
//! A runnable version against an in-process engine: `cargo run -p
//! coherent-cache-aside --example quickstart`.
//!
//! # What each part does
//!
//! - **Leases** (Facebook's memcache, NSDI 2013). A miss returns a token; the fill
//!   carries it and is stored only if no delete of the key happened in between. This
//!   closes the stale-fill race: reader reads v42 from the database, a writer commits
//!   v43 and deletes the key, the reader then fills v42 — refused. On the engine these
//!   are the `LEASEGET`/`LEASESET` commands; on Redis, the Lua scripts in [`scripts`].
//! - **Thundering herd.** One token per key per lease interval: other readers get
//!   "wait", poll briefly (`wait_poll`, doubling, never past the lease's remaining
//!   time) and then hit the filled value. After `max_wait` they read the database
//!   without filling. Inside one process, callers of the same key also share a single
//!   load (single-flight).
//! - **Update-then-delete** ([`Cache::write`]): delete after the commit, never before
//!   (deleting first lets a reader refill the old row before the commit). Failed
//!   deletes are retried and then reported as [`Error::Invalidation`]; the optional
//!   delayed second delete covers clients that fill without leases.
//! - **TTL with jitter** on every fill, so keys filled together do not expire
//!   together, and so any entry that escapes every other mechanism still dies.
//! - **Negative caching** of "not found" with its own TTL (`negative_ttl`). Loader
//!   errors are returned, never cached.
//! - **Write time** ([`CacheClient::written_ms`]): when a key's value was written, for
//!   the consistency audit (how old is a stale entry?). The engine records it for
//!   every write (`OBJECT WRITTEN`, 100 ms resolution). On Redis and Redis Cluster the
//!   lease fill records it: the fill turns the lease side key into `{written = <Unix
//!   ms>}` (no `token`) with the value's TTL, so it lives exactly as long as the value
//!   and goes with every invalidation that voids leases. A side key without a `token`
//!   is not a lease: readers are granted one at once. A plain [`CacheClient::set`]
//!   records nothing on Redis (write time unknown).
//! - **Near cache** (opt-in, [`Options::near`], [`near`]): a bounded in-process copy of
//!   values read from the shared cache on a connection with `CLIENT TRACKING` on,
//!   dropped when the server pushes their invalidation (any write, the sidecar's binlog
//!   deletes included) and emptied whenever that connection drops. See
//!   `docs/library/near-cache.md`.
//! - **Metrics** ([`Metrics::snapshot`]): hits (near and shared), misses, lease waits, refused fills,
//!   loader latency (sum, max, histogram), delete retries and failures.
//! - **Codec**: values go through serde; JSON by default ([`Json`]), any [`Codec`].
//!
//! # Guarantees, and where they end
//!
//! With leases, once writers stop and their deletes have landed, no reader that uses
//! this library leaves a value older than the last commit in the cache: every fill
//! either read the database after the last commit, or carried a token that the
//! commit's delete voided. The randomized test `tests/race.rs` checks exactly this over
//! thousands of interleavings, against the engine and a real redis-server, and finds
//! stale values when leases are off; `tests/race_async.rs` does the same through
//! `get_or_load` and `write` with real concurrency.
//!
//! It ends here:
//! - **The delete must happen.** If the process dies between commit and delete, or a
//!   delete fails every retry, the old value stays until the next delete or the TTL.
//!   Run the sidecar's binlog invalidation beside the library: it deletes every key a
//!   committed row maps to, whatever the application did.
//! - **Reads between commit and delete** still see the old value (a window of one
//!   round trip). Strict read-after-write needs reading the database.
//! - **On Redis, deletes must void the lease**: use [`CacheClient::invalidate`], the
//!   `INVALIDATE` script, or `DEL key {key}:lease`. A bare `DEL key` from a client that
//!   knows nothing of leases deletes the value but leaves the token valid (and, after
//!   a fill, the side key's `written`: readers ignore it, and `written_ms` answers
//!   `None` for a missing key, but a plain `SET` that follows reports that older time).
//!   The engine has no such gap: every write that names a key voids its token.
//! - **Clients that fill without leases** (plain SET) can still write stale values;
//!   the delayed second delete and the TTL bound how long they live.
//! - **Clock and interval**: a loader slower than the lease interval loses its lease
//!   (another reader may get a new one); its fill is refused, never stale.
//! - Values returned to a caller can be stale by the time the caller uses them: the
//!   guarantee is about what the cache holds, not about callers' local copies.

mod cache;
pub mod client;
pub mod codec;
pub mod connection;
pub mod error;
pub mod metrics;
pub mod near;
pub mod scripts;

pub use cache::{jitter, Cache, Options};
pub use client::{CacheClient, LeaseRead};
pub use codec::{Codec, Json};
pub use error::Error;
pub use metrics::{Metrics, MetricsSnapshot};
pub use near::{NearError, NearOptions};
