//! Persistence in Redis's own formats, so files move between Redis 7.0 and the engine
//! in both directions. [`rdb`] is the RDB codec (objects, whole files and DUMP
//! payloads); SAVE/BGSAVE, the AOF and the snapshot machinery build on it.

pub mod rdb;
