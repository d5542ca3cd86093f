//! How a queued delete travels as a RabbitMQ message: the key is the body; the
//! headers carry its attempts (`x-attempts`), the binlog position that caused it
//! (`x-position`) and the Unix milliseconds before which it must not be retried
//! (`x-due`); the message id ties its copies together (see `outstanding.rs`).

use bytes::Bytes;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use std::time::Duration;

/// A message to publish: routing key (queue name), body (the key), properties.
pub(super) type Msg = (String, Bytes, BasicProperties);

/// What the headers of a delivery say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Headers {
    pub(super) attempts: u32,
    pub(super) position: String,
    /// 0 when absent (messages of an older version: due at once).
    pub(super) due_ms: u64,
}

/// Persistent properties of a delete; with `expiration`, it waits that long in the
/// retry queue (per-message TTL) before coming back.
pub(super) fn props(
    id: Option<&str>,
    position: &str,
    attempts: u32,
    due_ms: u64,
    expiration: Option<Duration>,
) -> BasicProperties {
    let mut h = FieldTable::default();
    h.insert(
        "x-attempts".into(),
        AMQPValue::LongLongInt(i64::from(attempts)),
    );
    h.insert(
        "x-position".into(),
        AMQPValue::LongString(LongString::from(position)),
    );
    h.insert(
        "x-due".into(),
        AMQPValue::LongLongInt(i64::try_from(due_ms).unwrap_or(i64::MAX)),
    );
    let mut p = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(h);
    if let Some(id) = id {
        p = p.with_message_id(ShortString::from(id));
    }
    match expiration {
        Some(d) => p.with_expiration(ShortString::from(d.as_millis().max(1).to_string())),
        None => p,
    }
}

/// The message id, if it has one.
pub(super) fn message_id(p: &BasicProperties) -> Option<&str> {
    p.message_id().as_ref().map(|s| s.as_str())
}

/// Reads the headers (missing ones: 1 attempt, no position, due at once).
pub(super) fn headers(p: &BasicProperties) -> Headers {
    let mut out = Headers {
        attempts: 1,
        position: String::new(),
        due_ms: 0,
    };
    if let Some(h) = p.headers() {
        for (k, v) in h.inner() {
            match (k.as_str(), v) {
                ("x-attempts", AMQPValue::LongLongInt(n)) => {
                    out.attempts = u32::try_from(*n).unwrap_or(0)
                }
                ("x-position", AMQPValue::LongString(s)) => {
                    out.position = String::from_utf8_lossy(s.as_bytes()).into_owned()
                }
                ("x-due", AMQPValue::LongLongInt(n)) => out.due_ms = u64::try_from(*n).unwrap_or(0),
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_default() {
        let p = props(Some("a-1"), "bin.000001:4", 3, 1_700_000_000_123, None);
        assert_eq!(
            headers(&p),
            Headers {
                attempts: 3,
                position: "bin.000001:4".into(),
                due_ms: 1_700_000_000_123
            }
        );
        assert_eq!(message_id(&p), Some("a-1"));
        let bare = BasicProperties::default();
        assert_eq!(headers(&bare).attempts, 1);
        assert_eq!(headers(&bare).due_ms, 0);
        assert_eq!(message_id(&bare), None);
    }
}
