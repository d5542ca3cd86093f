//! The RDB format of Redis 7.0 (RDB version 10), as `rdb.c` writes and reads it.
//!
//! - [`write_rdb`] / [`read_rdb`]: a whole file (every database, TTLs, aux fields, the
//!   CRC64 trailer).
//! - [`dump_payload`] / [`restore_payload`]: one value as DUMP and RESTORE carry it
//!   (type byte, object, 2-byte RDB version, CRC64).
//!
//! Values are written in the encodings Redis 7.0 writes for the same value (quicklist
//! v2 of listpacks, listpack or hashtable hashes, intset or hashtable sets, listpack or
//! skiplist sorted sets), so a value loaded by either server reports the same OBJECT
//! ENCODING. The reader also loads what older Redis versions wrote (ziplists, zipmaps,
//! quicklist v1, text scores, linked lists). Streams and module values are refused
//! with an error that names the key; module aux data and functions are skipped and
//! counted. Corrupt input is an [`RdbError`] that says what and where, never a panic.
//!
//! Layout: [`lzf`] and [`crc64`] are the compression and the checksum; [`listpack`],
//! [`ziplist`], [`zipmap`] and [`intset`] the compact blobs; `encode`/`decode` the
//! primitives (lengths, strings, doubles) and the objects; `object` the only place
//! that knows the engine's value types; `file` and `payload` the two containers.

pub mod crc64;
mod decode;
pub(crate) mod encode;
pub(crate) mod file;
pub mod intset;
pub mod listpack;
pub mod lzf;
mod object;
mod payload;
pub mod ziplist;
pub mod zipmap;

pub use file::{read_rdb, write_rdb, Eviction, LoadOptions, Loaded, Skipped, WriteOptions};
pub use object::{set_idle, Limits};
pub use payload::{
    dump_payload, read_function_payload, restore_payload, write_functions, PayloadError,
};

/// The RDB version this codec writes, and the newest it reads.
pub const RDB_VERSION: u16 = 10;

/// The `redis-ver` aux field: the Redis release whose files these are.
pub const REDIS_VERSION: &str = "7.0.15";

/// Object types (`RDB_TYPE_*`): the byte before a key.
pub mod kind {
    pub const STRING: u8 = 0;
    pub const LIST: u8 = 1;
    pub const SET: u8 = 2;
    pub const ZSET: u8 = 3;
    pub const HASH: u8 = 4;
    pub const ZSET_2: u8 = 5;
    pub const MODULE_PRE_GA: u8 = 6;
    pub const MODULE_2: u8 = 7;
    pub const HASH_ZIPMAP: u8 = 9;
    pub const LIST_ZIPLIST: u8 = 10;
    pub const SET_INTSET: u8 = 11;
    pub const ZSET_ZIPLIST: u8 = 12;
    pub const HASH_ZIPLIST: u8 = 13;
    pub const LIST_QUICKLIST: u8 = 14;
    pub const STREAM_LISTPACKS: u8 = 15;
    pub const HASH_LISTPACK: u8 = 16;
    pub const ZSET_LISTPACK: u8 = 17;
    pub const LIST_QUICKLIST_2: u8 = 18;
    pub const STREAM_LISTPACKS_2: u8 = 19;
}

/// Opcodes (`RDB_OPCODE_*`): bytes in a type's place that are not a key.
pub mod opcode {
    pub const FUNCTION2: u8 = 245;
    pub const FUNCTION_PRE_GA: u8 = 246;
    pub const MODULE_AUX: u8 = 247;
    pub const IDLE: u8 = 248;
    pub const FREQ: u8 = 249;
    pub const AUX: u8 = 250;
    pub const RESIZEDB: u8 = 251;
    pub const EXPIRETIME_MS: u8 = 252;
    pub const EXPIRETIME: u8 = 253;
    pub const SELECTDB: u8 = 254;
    pub const EOF: u8 = 255;
}

/// A fault inside a compact blob (listpack, ziplist, zipmap, intset): which blob,
/// what, and at which byte of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{blob}: {what} at byte {at}")]
pub struct BlobError {
    pub blob: &'static str,
    pub at: usize,
    pub what: &'static str,
}

/// Why RDB data could not be read or written. Offsets count bytes from the start of
/// the file (or payload).
#[derive(Debug, thiserror::Error)]
pub enum RdbError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an RDB file: the header is {0:?}, expected REDIS and a 4-digit version")]
    NotRdb(String),
    #[error("RDB version {0} is not supported (this reader knows 1 to {RDB_VERSION})")]
    Version(u32),
    #[error("data ends at offset {offset} inside {what}")]
    Truncated { offset: u64, what: &'static str },
    #[error("corrupt data at offset {offset}: {what}")]
    Corrupt { offset: u64, what: String },
    #[error("corrupt {source} (blob at offset {offset})")]
    Blob {
        offset: u64,
        #[source]
        source: BlobError,
    },
    #[error("key {key:?} at offset {offset}: {what} values are not supported")]
    Unsupported {
        offset: u64,
        key: String,
        what: &'static str,
    },
    #[error("checksum mismatch: the file says {stored:016x}, its data gives {computed:016x}")]
    Checksum { stored: u64, computed: u64 },
    /// A FUNCTION library of the file could not be created (Redis refuses the file
    /// too: `Failed loading library`).
    #[error("failed loading library: {0}")]
    Library(String),
}

impl RdbError {
    fn corrupt(offset: u64, what: impl Into<String>) -> RdbError {
        RdbError::Corrupt {
            offset,
            what: what.into(),
        }
    }
}

/// A key for an error message: printable, and cut to a sane length.
fn show_key(key: &[u8]) -> String {
    let s = String::from_utf8_lossy(key);
    if s.chars().count() > 64 {
        let cut: String = s.chars().take(64).collect();
        format!("{cut}...")
    } else {
        s.into_owned()
    }
}
