//! Command handlers, one file per family, each exporting its rows of the command table.

pub mod aof;
pub mod bitfield;
pub mod client;
pub mod command_info;
pub(crate) mod command_meta;
pub mod config;
pub mod connection;
pub mod dump;
pub mod functions;
pub mod geo;
pub mod hashes;
pub mod hyperloglog;
pub mod info;
pub mod keys;
pub(crate) mod keyspecs;
pub mod latency;
pub mod leases;
pub mod lists;
pub mod monitor;
pub mod object;
pub mod persist;
pub mod pqsort;
pub mod pubsub;
pub mod replication;
pub mod scripting;
pub mod server;
pub mod sets;
pub mod slowlog;
pub mod sort;
pub mod stream_groups;
pub mod streams;
pub mod strings;
pub mod subcommand;
pub mod tracking;
pub mod transactions;
pub mod zsets;

use crate::command::CommandSpec;
use crate::error::CmdError;
use bytes::Bytes;

/// Every command the engine knows.
pub fn all() -> Vec<CommandSpec> {
    let mut v = Vec::new();
    v.extend(connection::commands());
    v.extend(server::commands());
    v.extend(persist::commands());
    v.extend(info::commands());
    v.extend(config::commands());
    v.extend(aof::commands());
    v.extend(object::commands());
    v.extend(command_info::commands());
    v.extend(client::commands());
    v.extend(slowlog::commands());
    v.extend(latency::commands());
    v.extend(monitor::commands());
    v.extend(keys::commands());
    v.extend(dump::commands());
    v.extend(strings::commands());
    v.extend(bitfield::commands());
    v.extend(hyperloglog::commands());
    v.extend(lists::commands());
    v.extend(hashes::commands());
    v.extend(sets::commands());
    v.extend(zsets::commands());
    v.extend(streams::commands());
    v.extend(stream_groups::commands());
    v.extend(sort::commands());
    v.extend(geo::commands());
    v.extend(pubsub::commands());
    v.extend(transactions::commands());
    v.extend(leases::commands());
    v.extend(replication::commands());
    v.extend(scripting::commands());
    v.extend(functions::commands());
    v
}

/// Parses an integer argument (`ERR value is not an integer or out of range`).
pub fn int_arg(b: &[u8]) -> Result<i64, CmdError> {
    crate::util::parse_i64(b).ok_or(CmdError::NotInteger)
}

/// Parses a float argument (`ERR value is not a valid float`).
pub fn float_arg(b: &[u8]) -> Result<f64, CmdError> {
    crate::util::parse_f64(b).ok_or(CmdError::NotFloat)
}

/// Parses a blocking timeout in seconds (fractions allowed) into a duration;
/// 0 means forever.
pub fn timeout_arg(b: &[u8]) -> Result<Option<std::time::Duration>, CmdError> {
    let t = crate::util::parse_f64(b).ok_or(CmdError::TimeoutNotFloat)?;
    if t < 0.0 {
        return Err(CmdError::TimeoutNegative);
    }
    if !t.is_finite() || t > 1e12 {
        return Err(CmdError::TimeoutNotFloat);
    }
    if t == 0.0 {
        Ok(None)
    } else {
        Ok(Some(std::time::Duration::from_micros((t * 1e6) as u64)))
    }
}

/// A command line for propagation (`Ctx::propagate_as`), from its parts.
pub fn argv(parts: &[&[u8]]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

/// Copies an argument so that a stored value does not pin the whole request buffer.
pub fn own(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
}

/// Resolves Redis-style start/end indexes (negative from the end) against a length;
/// returns `None` for an empty range.
pub fn range_of(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut s = if start < 0 { len + start } else { start };
    let mut e = if end < 0 { len + end } else { end };
    if s < 0 {
        s = 0;
    }
    if s > e || s >= len {
        return None;
    }
    if e >= len {
        e = len - 1;
    }
    Some((s as usize, e as usize))
}

/// Most elements a negative-count random read (SRANDMEMBER, HRANDFIELD, ZRANDMEMBER)
/// may return. Redis builds such replies for any count and can exhaust its memory on
/// `-9223372036854775807`; the engine refuses past this bound instead.
pub const MAX_RANDOM_REPEAT: u64 = 1 << 24;

/// Refuses a negative random count too large to answer without exhausting memory.
pub fn check_random_repeat(count: i64) -> Result<(), CmdError> {
    if count < 0 && count.unsigned_abs() > MAX_RANDOM_REPEAT {
        // Redis's own text for the counts it refuses (e.g. HRANDFIELD WITHVALUES).
        return Err(CmdError::err("value is out of range"));
    }
    Ok(())
}
