//! `Cache`: get-or-load with leases and single-flight, update-then-delete writes.

use crate::client::{CacheClient, LeaseRead};
use crate::codec::{Codec, Json, NOT_FOUND};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::near::{NearCache, NearOptions};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Tuning of a [`Cache`]. `Options::default()` suits most services.
#[derive(Debug, Clone)]
pub struct Options {
    /// Use leases (LEASEGET/LEASESET or their scripts). Without them reads are plain
    /// GET + SET and the stale-fill race is open; only for comparison and for caches
    /// that cannot run scripts.
    pub leases: bool,
    /// Each fill's TTL is `ttl + random(0..=ttl * ttl_jitter)`, so keys filled
    /// together do not expire together.
    pub ttl_jitter: f64,
    /// Cache "not found" for this long (None: do not cache it).
    pub negative_ttl: Option<Duration>,
    /// First poll delay after a "wait" reply; doubles up to `wait_poll_max`. A waiter
    /// never sleeps longer than the engine's hint (the lease's remaining time).
    pub wait_poll: Duration,
    /// Longest single poll delay.
    pub wait_poll_max: Duration,
    /// After waiting this long on another reader's lease, load without filling.
    pub max_wait: Duration,
    /// Attempts of each delete in `write` (1 + retries).
    pub delete_attempts: u32,
    /// Pause before the first delete retry; doubles each time.
    pub delete_backoff: Duration,
    /// Delete the keys a second time after this delay (delayed double delete), for
    /// clients that fill without leases. None: once.
    pub second_delete: Option<Duration>,
    /// A near cache in front of the shared one ([`crate::near`]): values read from
    /// the shared cache on a tracking connection are kept in process until the server
    /// says they changed. None (the default): every read goes to the shared cache.
    /// Needs a single server (the engine or a Redis 6+), not a cluster.
    pub near: Option<NearOptions>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            leases: true,
            ttl_jitter: 0.1,
            negative_ttl: None,
            wait_poll: Duration::from_millis(10),
            wait_poll_max: Duration::from_millis(200),
            max_wait: Duration::from_secs(2),
            delete_attempts: 4,
            delete_backoff: Duration::from_millis(20),
            second_delete: None,
            near: None,
        }
    }
}

/// What one in-process load produced, shared with the callers that joined it:
/// the encoded value (None: not found), or `Err` when the leader failed.
type FlightResult = Option<Result<Option<Arc<Vec<u8>>>, ()>>;

/// A value and its encoding (shared with joined callers).
type Loaded<T> = (Option<T>, Option<Arc<Vec<u8>>>);

type Flights = Mutex<HashMap<String, watch::Receiver<FlightResult>>>;

struct Inner<C> {
    client: CacheClient,
    opts: Options,
    codec: C,
    metrics: Metrics,
    flights: Flights,
    near: Option<NearCache>,
}

/// The cache-aside handle: cheap to clone, share it across the service.
pub struct Cache<C: Codec = Json> {
    inner: Arc<Inner<C>>,
}

impl<C: Codec> Clone for Cache<C> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Codec> std::fmt::Debug for Cache<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("client", &self.inner.client)
            .field("opts", &self.inner.opts)
            .finish()
    }
}

impl Cache<Json> {
    /// A cache with JSON values.
    pub fn new(client: CacheClient, opts: Options) -> Self {
        Self::with_codec(client, opts, Json)
    }
}

/// Removes a flight from the table when its leader finishes or is cancelled; a
/// cancelled leader's dropped sender wakes the joined callers, which then load alone.
struct FlightGuard<'a> {
    flights: &'a Flights,
    key: String,
    tx: watch::Sender<FlightResult>,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut f = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if f.get(&self.key)
            .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()))
        {
            f.remove(&self.key);
        }
    }
}

impl<C: Codec> Cache<C> {
    /// A cache with another codec.
    ///
    /// With [`Options::near`] on a cluster there is no near cache (tracking is per
    /// node): reads go to the shared cache as without one.
    pub fn with_codec(client: CacheClient, opts: Options, codec: C) -> Self {
        let metrics = Metrics::default();
        let near = match (&opts.near, client.node_info()) {
            (Some(o), Some(info)) => Some(NearCache::new(info, o.clone(), metrics.near.clone())),
            _ => None,
        };
        Cache {
            inner: Arc::new(Inner {
                client,
                opts,
                codec,
                metrics,
                flights: Mutex::new(HashMap::new()),
                near,
            }),
        }
    }

    /// Entries in the near cache (0 without one).
    pub fn near_len(&self) -> usize {
        self.inner.near.as_ref().map_or(0, NearCache::len)
    }

    /// Whether the near cache holds `key` (false without one).
    pub fn near_contains(&self, key: &str) -> bool {
        self.inner
            .near
            .as_ref()
            .is_some_and(|n| n.get_local(key).is_some())
    }

    /// Drops the near cache's tracking connection, as a network failure would: the
    /// near cache empties at once and refills after the next read reconnects.
    pub async fn near_disconnect(&self) {
        if let Some(n) = &self.inner.near {
            n.disconnect().await;
        }
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The underlying client (lease primitives, plain GET/SET, invalidate).
    pub fn client(&self) -> &CacheClient {
        &self.inner.client
    }

    /// Reads `key`; on a miss calls `loader` (the database read) and fills the cache
    /// with its result for `ttl` (plus jitter).
    ///
    /// `Ok(None)` means the loader found nothing (cached only if `negative_ttl` is
    /// set). A loader error is returned as [`Error::Loader`] and nothing is cached.
    /// Concurrent callers in this process for the same key share one load; callers in
    /// other processes wait on the lease holder instead of loading (one database read
    /// per key per miss). If a writer deletes the key while the loader runs, the fill
    /// is refused (the value may be stale) and the loaded value is still returned to
    /// this caller.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        loader: F,
    ) -> Result<Option<T>, Error<E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let inner = &*self.inner;
        // The near cache first: no round trip at all.
        if let Some(bytes) = inner.near.as_ref().and_then(|n| n.get_local(key)) {
            return self.decode(&bytes, true).map(|(v, _)| v);
        }
        // Join an in-flight load of the same key, or lead one.
        let joined = {
            let mut f = inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            match f.get(key) {
                Some(rx) => Err(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    f.insert(key.to_string(), rx);
                    Ok(tx)
                }
            }
        };
        match joined {
            Ok(tx) => {
                let guard = FlightGuard {
                    flights: &inner.flights,
                    key: key.to_string(),
                    tx,
                };
                let r = self.fetch(key, ttl, loader).await;
                let shared = match &r {
                    Ok((_, bytes)) => Ok(bytes.clone()),
                    Err(_) => Err(()),
                };
                guard.tx.send_replace(Some(shared));
                drop(guard);
                r.map(|(v, _)| v)
            }
            Err(mut rx) => {
                inner.metrics.join();
                let shared = loop {
                    if let Some(r) = rx.borrow_and_update().clone() {
                        break Some(r);
                    }
                    if rx.changed().await.is_err() {
                        break rx.borrow().clone();
                    }
                };
                match shared {
                    Some(Ok(None)) => Ok(None),
                    Some(Ok(Some(bytes))) => {
                        inner.codec.decode(&bytes).map(Some).map_err(Error::Codec)
                    }
                    // The leader failed or was cancelled: load on our own, so that our
                    // caller gets its own loader's result or error.
                    _ => self.fetch(key, ttl, loader).await.map(|(v, _)| v),
                }
            }
        }
    }

    /// One read-through without single-flight. Returns the value and its encoding.
    async fn fetch<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        loader: F,
    ) -> Result<Loaded<T>, Error<E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let inner = &*self.inner;
        let (m, opts) = (&inner.metrics, &inner.opts);
        if let Some(near) = &inner.near {
            // A tracked read: a hit is kept in the near cache until invalidated. A
            // miss (or a tracking connection that is down) goes the usual way; the
            // fill it leads to reaches the near cache on the next read.
            if let Ok(Some(bytes)) = near.read(key).await {
                return self.decode_hit(bytes);
            }
        }
        if !opts.leases {
            if let Some(bytes) = inner.client.get(key).await.map_err(Error::Cache)? {
                return self.decode_hit(bytes);
            }
            m.miss();
            let (value, bytes) = self.load(loader).await?;
            if let Some((b, t)) = self.fill_bytes(&bytes, ttl) {
                match inner.client.set(key, &b, Some(t)).await {
                    Ok(()) => m.fill(),
                    Err(_) => m.fill_error(),
                }
            }
            return Ok((value, bytes));
        }
        let started = Instant::now();
        let mut poll = opts.wait_poll;
        let mut counted_miss = false;
        loop {
            let read = inner.client.lease_get(key).await.map_err(Error::Cache)?;
            match read {
                LeaseRead::Value(bytes) => return self.decode_hit(bytes),
                LeaseRead::Lease(token) => {
                    if !counted_miss {
                        m.miss();
                    }
                    let (value, bytes) = match self.load(loader).await {
                        Ok(v) => v,
                        Err(e) => {
                            // Give the lease back so the next reader loads at once
                            // instead of waiting out the interval. A delete is always
                            // safe in cache-aside; it voids our token.
                            let _ = inner.client.invalidate(&[key]).await;
                            return Err(e);
                        }
                    };
                    if let Some((b, t)) = self.fill_bytes(&bytes, ttl) {
                        match inner.client.lease_set(key, token, &b, Some(t)).await {
                            Ok(true) => m.fill(),
                            Ok(false) => m.refused(),
                            Err(_) => m.fill_error(),
                        }
                    }
                    return Ok((value, bytes));
                }
                LeaseRead::Wait(hint_ms) => {
                    if !counted_miss {
                        m.miss();
                        counted_miss = true;
                    }
                    m.lease_wait();
                    let waited = started.elapsed();
                    if waited >= opts.max_wait {
                        // The holder is slow or gone: serve from the database, and do
                        // not fill (we hold no token).
                        m.wait_timeout();
                        return self.load(loader).await;
                    }
                    let sleep = poll
                        .min(Duration::from_millis(hint_ms))
                        .min(opts.max_wait - waited);
                    tokio::time::sleep(sleep).await;
                    poll = (poll * 2).min(opts.wait_poll_max);
                }
            }
        }
    }

    fn decode_hit<T: DeserializeOwned, E>(&self, bytes: Vec<u8>) -> Result<Loaded<T>, Error<E>> {
        if bytes == NOT_FOUND {
            self.inner.metrics.negative_hit(false);
            return Ok((None, None));
        }
        self.inner.metrics.hit(false);
        let v = self.inner.codec.decode(&bytes).map_err(Error::Codec)?;
        Ok((Some(v), Some(Arc::new(bytes))))
    }

    /// A hit's value (`near`: from the near cache).
    fn decode<T: DeserializeOwned, E>(
        &self,
        bytes: &Arc<Vec<u8>>,
        near: bool,
    ) -> Result<Loaded<T>, Error<E>> {
        if bytes.as_slice() == NOT_FOUND {
            self.inner.metrics.negative_hit(near);
            return Ok((None, None));
        }
        self.inner.metrics.hit(near);
        let v = self.inner.codec.decode(bytes).map_err(Error::Codec)?;
        Ok((Some(v), Some(bytes.clone())))
    }

    /// Calls the loader, timing it, and encodes its value.
    async fn load<T, E, F, Fut>(&self, loader: F) -> Result<Loaded<T>, Error<E>>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let t = Instant::now();
        let r = loader().await;
        self.inner.metrics.load(t.elapsed(), r.is_ok());
        match r.map_err(Error::Loader)? {
            None => Ok((None, None)),
            Some(v) => {
                let b = self.inner.codec.encode(&v).map_err(Error::Codec)?;
                Ok((Some(v), Some(Arc::new(b))))
            }
        }
    }

    /// The bytes and TTL to fill with, or None when nothing is to be cached (a "not
    /// found" without negative caching).
    fn fill_bytes(
        &self,
        bytes: &Option<Arc<Vec<u8>>>,
        ttl: Duration,
    ) -> Option<(Vec<u8>, Duration)> {
        let o = &self.inner.opts;
        match bytes {
            Some(b) => Some((b.to_vec(), jitter(ttl, o.ttl_jitter))),
            None => o
                .negative_ttl
                .map(|n| (NOT_FOUND.to_vec(), jitter(n, o.ttl_jitter))),
        }
    }

    /// Update-then-delete: runs the database write (`action`, which should commit its
    /// transaction before returning), then deletes `keys` so the next read loads the
    /// new row. A delete that fails is retried `delete_attempts` times; if it still
    /// fails the error says the write committed ([`Error::Invalidation`]). With
    /// `second_delete`, the keys are deleted again after that delay, in the background.
    /// If `action` fails, nothing is deleted.
    pub async fn write<T, E, F, Fut>(&self, keys: &[&str], action: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let value = action().await.map_err(Error::Write)?;
        self.invalidate(keys)
            .await
            .map_err(|source| Error::Invalidation {
                keys: keys.iter().map(|k| k.to_string()).collect(),
                source,
            })?;
        if let Some(delay) = self.inner.opts.second_delete {
            let this = self.clone();
            let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                // Failures are counted in `delete_failures`; the binlog invalidation
                // and the TTL remain as backstops.
                let _ = this.invalidate(&refs).await;
            });
        }
        Ok(value)
    }

    /// Deletes keys (voiding their leases), with the configured retries.
    pub async fn invalidate(&self, keys: &[&str]) -> Result<(), redis::RedisError> {
        let (m, o) = (&self.inner.metrics, &self.inner.opts);
        // This process's own copies go at once (the push follows).
        if let Some(n) = &self.inner.near {
            for k in keys {
                n.forget(k);
            }
        }
        let mut backoff = o.delete_backoff;
        let mut attempt = 1;
        loop {
            match self.inner.client.invalidate(keys).await {
                Ok(n) => {
                    m.deleted(n);
                    return Ok(());
                }
                Err(e) if attempt >= o.delete_attempts.max(1) => {
                    m.delete_failure();
                    return Err(e);
                }
                Err(_) => {
                    m.delete_retry();
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
            }
        }
    }
}

/// `ttl + random(0..=ttl * frac)`.
pub fn jitter(ttl: Duration, frac: f64) -> Duration {
    if frac <= 0.0 || !frac.is_finite() {
        return ttl;
    }
    let extra = ttl.as_millis() as f64 * frac * fastrand::f64();
    ttl + Duration::from_millis(extra as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_range() {
        let t = Duration::from_secs(100);
        for _ in 0..1000 {
            let j = jitter(t, 0.1);
            assert!(j >= t && j <= Duration::from_secs(110));
        }
        assert_eq!(jitter(t, 0.0), t);
    }
}
