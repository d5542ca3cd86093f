//! How typed values become cache bytes: JSON by default, pluggable.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Encodes and decodes cached values. A codec must never produce bytes starting with
/// a NUL byte: that prefix marks the library's negative-cache entries.
pub trait Codec: Send + Sync + 'static {
    /// Serializes a value.
    fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, String>;
    /// Deserializes a value.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, String>;
}

/// JSON through serde_json: readable with redis-cli, and what the audit's offline
/// comparison renders rows into.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Codec for Json {
    fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, String> {
        serde_json::to_vec(value).map_err(|e| e.to_string())
    }
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// The bytes of a negative-cache entry ("the database has no such row"): the audits
/// count a key holding it as consistent when its row is gone.
pub const NOT_FOUND: &[u8] = b"\0coherent:not-found";
