//! Persistence in Redis's own formats, so files move between Redis 7.0 and the engine
//! in both directions. [`rdb`] is the RDB codec (objects, whole files and DUMP
//! payloads); [`aof`] is the append-only file
//! (Redis 7.0's multi-part layout); SAVE/BGSAVE and the snapshot machinery build on
//! the codec too.

pub mod aof;
pub mod rdb;
