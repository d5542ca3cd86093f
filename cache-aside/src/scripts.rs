//! The lease protocol on a real Redis or Redis Cluster, as Lua scripts.
//!
//! The engine has LEASEGET/LEASESET built in; Redis does not, so the same protocol runs
//! as four scripts, called with EVALSHA (loaded when the client connects; the `redis`
//! crate re-loads a script and retries once when a server answers NOSCRIPT, e.g. after
//! a restart or SCRIPT FLUSH).
//!
//! A key's lease lives in a side key, [`lease_key`] (`{key}:lease`), a hash. While a
//! lease is outstanding it holds the [`FIELD_TOKEN`] and its [`FIELD_GRANTED`] time
//! (Unix ms) with a PX of the lease interval, so the lease expires by itself. A
//! successful fill replaces it with [`FIELD_WRITTEN`] (Unix ms of the fill, from the
//! server's TIME) and no token, with
//! the value's own TTL (or none, when the value has none), so the write time lives
//! exactly as long as the value: the consistency audit reads it
//! ([`crate::CacheClient::written_ms`]) to tell how old a stale entry is. A lease is
//! outstanding only while the side key has a `token` field. The side key shares the
//! key's hash slot, so every script touches one slot and runs on a cluster.
//!
//! On Redis, a delete voids a token only if it deletes the side key too: invalidate
//! with [`INVALIDATE`] (what [`crate::CacheClient::invalidate`] and the sidecar's
//! external-Redis target call) or with `DEL key {key}:lease`. A plain `DEL key` from a
//! client that knows nothing of leases does not void it (the engine has no such gap).
//! As a second line, LEASESET refuses to fill a key that exists (someone else wrote it).
//! A plain `DEL key` after a fill leaves the side key with `written` only; that is not
//! a lease, so the next reader is granted one at once.

/// `KEYS = [key, lease_key]`, `ARGV = [interval_ms, new_token]` ->
/// `{"value", v}` | `{"lease", token}` | `{"wait", ms}`.
///
/// Only a side key with a `token` field is a lease outstanding: one that holds just
/// `written` (left by a plain `DEL key` after a fill) must not make readers wait.
pub const LEASEGET: &str = r#"
local v = redis.call('GET', KEYS[1])
if v then return {'value', v} end
if redis.call('HEXISTS', KEYS[2], 'token') == 1 then
  local left = redis.call('PTTL', KEYS[2])
  if left > 0 then return {'wait', left} end
end
local t = redis.call('TIME')
local now = tostring(t[1]) .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'token', ARGV[2], 'granted', now)
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return {'lease', ARGV[2]}
"#;

/// `KEYS = [key, lease_key]`, `ARGV = [token, value, px_ms or "0"]` -> `OK` | nil.
///
/// A fill stores the value and turns the side key into `{written = <Unix ms>}` with the
/// value's TTL (PEXPIRE px, or PERSIST when the value has none). A refused fill leaves
/// no side key when it consumed the token (the key exists: its write time is unknown).
pub const LEASESET: &str = r#"
if redis.call('HGET', KEYS[2], 'token') ~= ARGV[1] then return false end
redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
if ARGV[3] ~= '0' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
local t = redis.call('TIME')
local now = tostring(t[1]) .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[2], 'written', now)
if ARGV[3] ~= '0' then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
else
  redis.call('PERSIST', KEYS[2])
end
return redis.status_reply('OK')
"#;

/// `KEYS = [key1, lease_key1, key2, lease_key2, ...]` -> number of keys deleted.
/// Deletes each key and its side key: voids its lease, and drops its write time. On a cluster call it once per key (each pair
/// is one slot).
pub const INVALIDATE: &str = r#"
local n = 0
for i = 1, #KEYS, 2 do
  n = n + redis.call('DEL', KEYS[i])
  redis.call('DEL', KEYS[i + 1])
end
return n
"#;

/// `KEYS = [key, lease_key]` -> the `written` field (Unix ms, as a string) | nil.
///
/// Nil when the key does not exist, even if a side key with `written` is left over (a
/// plain `DEL key` does not delete it), so the answer means what the engine's
/// `OBJECT WRITTEN` means.
pub const WRITTEN: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('HGET', KEYS[2], 'written')
"#;

/// The lease hash's field holding the outstanding token (absent: no lease).
pub const FIELD_TOKEN: &str = "token";
/// The lease hash's field holding when the token was granted (Unix ms).
pub const FIELD_GRANTED: &str = "granted";
/// The lease hash's field a successful fill leaves: when the value was written (Unix
/// ms, the server's clock). The audits read it as the value's write time.
pub const FIELD_WRITTEN: &str = "written";

/// The side key that holds `key`'s lease on Redis: `{key}:lease`, or `key:lease` when
/// the key already has a hash tag (`user:{42}:name` -> `user:{42}:name:lease`), so it
/// always lands in the key's cluster slot.
///
/// Limit: a key without a valid hash tag that contains `}` (or an empty tag `{}`)
/// cannot be wrapped in a tag of its own; such a side key works on a single Redis but
/// may be in another slot on a cluster (the script then fails with CROSSSLOT, it never
/// fills silently).
pub fn lease_key(key: &str) -> String {
    String::from_utf8_lossy(&lease_key_bytes(key.as_bytes())).into_owned()
}

/// [`lease_key`] for a key that is any bytes (the sidecar's invalidations and the
/// audits, which meet keys as the binlog renders them).
pub fn lease_key_bytes(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 8);
    if has_hash_tag(key) {
        out.extend_from_slice(key);
    } else {
        out.push(b'{');
        out.extend_from_slice(key);
        out.push(b'}');
    }
    out.extend_from_slice(b":lease");
    out
}

/// Redis Cluster's rule: a `{` followed later by a `}` with at least one byte between.
fn has_hash_tag(k: &[u8]) -> bool {
    match k.iter().position(|&b| b == b'{') {
        Some(open) => matches!(k[open + 1..].iter().position(|&b| b == b'}'), Some(len) if len > 0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_keys_share_the_slot() {
        assert_eq!(lease_key("user:1"), "{user:1}:lease");
        assert_eq!(lease_key("user:{42}:name"), "user:{42}:name:lease");
        assert_eq!(lease_key("a{b"), "{a{b}:lease");
        assert_eq!(lease_key("a{}b"), "{a{}b}:lease");
        for k in ["user:1", "user:{42}:name", "a{b", "plain"] {
            assert_eq!(
                redis::cluster_routing::get_slot(k.as_bytes()),
                redis::cluster_routing::get_slot(lease_key(k).as_bytes()),
                "{k}"
            );
        }
    }

    /// The byte form is the rule; the string form is the same bytes, and a side key
    /// shares its key's slot unless the key has a `}` but no hash tag (the limit
    /// [`lease_key`] documents).
    #[test]
    fn both_forms_agree_and_share_the_slot() {
        for k in ["user:42", "user:{42}:name", "a{}b", "{x}", "", "x}y"] {
            let lk = lease_key_bytes(k.as_bytes());
            assert_eq!(lk, lease_key(k).into_bytes(), "{k}");
            if !k.is_empty() && (!k.contains('}') || has_hash_tag(k.as_bytes())) {
                assert_eq!(
                    redis::cluster_routing::get_slot(k.as_bytes()),
                    redis::cluster_routing::get_slot(&lk),
                    "{k}"
                );
            }
        }
        assert_eq!(lease_key_bytes(b"user:42"), b"{user:42}:lease");
        assert_eq!(lease_key_bytes(b"user:{42}:n"), b"user:{42}:n:lease");
        assert_eq!(lease_key_bytes(b"k\xff"), b"{k\xff}:lease");
    }

    /// The scripts name the fields the constants name (the audits read them).
    #[test]
    fn scripts_use_the_field_names() {
        for f in [FIELD_TOKEN, FIELD_GRANTED] {
            assert!(LEASEGET.contains(&format!("'{f}'")), "{f}");
        }
        for s in [LEASESET, WRITTEN] {
            assert!(s.contains(&format!("'{FIELD_WRITTEN}'")));
        }
    }
}
