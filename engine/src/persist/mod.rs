//! Persistence in Redis's own formats, so files move between Redis 7.0 and the engine
//! in both directions. [`rdb`] is the RDB codec (objects, whole files and DUMP
//! payloads); [`snapshot`] the point-in-time snapshot without fork that BGSAVE (and
//! the AOF rewrite) write from; [`save`] the files on disk: SAVE, BGSAVE, the `save`
//! schedule, saving at shutdown and loading at start; [`aof`] the append-only file
//! (Redis 7.0's multi-part layout).

pub mod aof;
pub mod rdb;
pub mod save;
pub mod snapshot;

pub use save::{load_at_start, load_rdb_file, ChildKind, PersistError, StartupLoad};
