//! Value types and their encodings, one file per type as in Redis's `t_*.c`.

pub mod compact;
pub mod geohash;
pub mod hash;
pub mod hll;
pub mod list;
pub mod set;
pub mod stream;
pub mod zset;

pub use compact::CompactBytes;
pub use hash::Hash;
pub use list::List;
pub use set::Set;
pub use stream::Stream;
pub use zset::ZSet;

/// A value stored under a key.
///
/// 24 bytes, the size of its string: the collections are boxed, and their variants
/// are told apart from strings by the unused values of `CompactBytes`'s length byte
/// (niche filling), so a keyspace of small strings pays nothing for them.
#[derive(Debug, Clone)]
pub enum Value {
    Str(CompactBytes),
    List(Box<List>),
    Hash(Box<Hash>),
    Set(Box<Set>),
    ZSet(Box<ZSet>),
    Stream(Box<Stream>),
}

const _: () = assert!(std::mem::size_of::<Value>() == 24);

impl Value {
    /// The name TYPE replies with.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
            Value::Stream(_) => "stream",
        }
    }

    /// Whether a collection holds no elements (such keys are deleted, as Redis does).
    pub fn is_empty_collection(&self) -> bool {
        match self {
            Value::Str(_) => false,
            Value::List(l) => l.is_empty(),
            Value::Hash(h) => h.is_empty(),
            Value::Set(s) => s.is_empty(),
            Value::ZSet(z) => z.is_empty(),
            // An empty stream is a key of its own (its last ID and groups remain).
            Value::Stream(_) => false,
        }
    }

    /// How many allocations freeing the value takes, roughly (Redis's
    /// `lazyfreeGetFreeEffort`): its element count; 1 for a string.
    pub fn free_effort(&self) -> usize {
        match self {
            Value::Str(_) => 1,
            Value::List(l) => l.len(),
            Value::Hash(h) => h.len(),
            Value::Set(s) => s.len(),
            Value::ZSet(z) => z.len(),
            // Redis counts the radix tree's nodes (each a listpack to free).
            Value::Stream(s) => s.node_count(),
        }
    }

    /// Rough heap footprint in bytes, for MEMORY USAGE and INFO memory.
    pub fn mem_usage(&self) -> usize {
        match self {
            Value::Str(b) => b.len(),
            Value::List(l) => l.mem_usage(),
            Value::Hash(h) => h.mem_usage(),
            Value::Set(s) => s.mem_usage(),
            Value::ZSet(z) => z.mem_usage(),
            Value::Stream(s) => s.mem_usage(),
        }
    }
}

/// The encoding OBJECT ENCODING reports for a string value.
pub fn string_encoding(b: &[u8], raw: bool) -> &'static str {
    // An edited string (APPEND, SETRANGE, SETBIT, BITOP) stays `raw` even when its
    // bytes look like an integer: Redis does not re-encode it.
    if raw {
        "raw"
    } else if b.len() <= 20 && crate::util::parse_i64(b).is_some() {
        "int"
    } else if b.len() > 44 {
        "raw"
    } else {
        "embstr"
    }
}
