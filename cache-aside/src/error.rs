//! Errors of `get_or_load` and `write`.

/// An error of the cache-aside operations; `E` is the application's own error type
/// (the loader's or the write action's).
#[derive(Debug, thiserror::Error)]
pub enum Error<E> {
    /// The loader failed. Nothing was cached.
    #[error("loader failed: {0}")]
    Loader(E),
    /// The write action failed. No key was deleted.
    #[error("write failed: {0}")]
    Write(E),
    /// The cache could not be read (the loader was not called).
    #[error("cache error: {0}")]
    Cache(#[source] redis::RedisError),
    /// The write action COMMITTED, but deleting these keys failed after every retry.
    /// They may serve the old value until the sidecar's binlog invalidation or the
    /// TTL removes them; alert on it.
    #[error("write committed but invalidating {keys:?} failed: {source}")]
    Invalidation {
        /// Keys that may still hold the old value.
        keys: Vec<String>,
        /// The last error.
        #[source]
        source: redis::RedisError,
    },
    /// A cached value could not be decoded, or a loaded value encoded.
    #[error("codec error: {0}")]
    Codec(String),
}
