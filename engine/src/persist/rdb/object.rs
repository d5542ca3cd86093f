//! The one place that knows the engine's value types: writes a [`Value`] in the RDB
//! encoding Redis 7.0 writes for it, and turns a decoded object into a `Value` with
//! the encoding Redis 7.0 gives it on load (`rdbLoadObject`'s conversion rules).

use super::decode::Object;
use super::encode::Encoder;
use super::{intset, kind, listpack};
use crate::keyspace::db::Entry;
use crate::types::hash::HashLimits;
use crate::types::zset::ZSetLimits;
use crate::types::{CompactBytes, Hash, List, Set, Value, ZSet};
use bytes::Bytes;
use indexmap::{IndexMap, IndexSet};
use std::collections::HashSet;
use std::io::{self, Write};

/// The encoding thresholds a loaded value is converted by (the `*-max-*` settings).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub hash: HashLimits,
    pub zset: ZSetLimits,
    pub set_max_intset_entries: usize,
}

impl Default for Limits {
    /// Redis 7.0's defaults.
    fn default() -> Self {
        Limits {
            hash: HashLimits {
                max_entries: 512,
                max_value: 64,
            },
            zset: ZSetLimits {
                max_entries: 128,
                max_value: 64,
            },
            set_max_intset_entries: 512,
        }
    }
}

/// The RDB type byte Redis 7.0 writes for a value (`rdbSaveObjectType`).
pub(crate) fn type_of(v: &Value) -> u8 {
    match v {
        Value::Str(_) => kind::STRING,
        Value::List(_) => kind::LIST_QUICKLIST_2,
        Value::Hash(h) => match **h {
            Hash::Listpack(_) => kind::HASH_LISTPACK,
            Hash::Table(_) => kind::HASH,
        },
        Value::Set(s) => match **s {
            Set::Intset(_) => kind::SET_INTSET,
            Set::Table(_) => kind::SET,
        },
        Value::ZSet(z) => {
            if z.encoding() == "listpack" {
                kind::ZSET_LISTPACK
            } else {
                kind::ZSET_2
            }
        }
        Value::Stream(_) => kind::STREAM_LISTPACKS_2,
    }
}

/// A stream block as the listpack Redis keeps under its radix-tree key: the master
/// entry (count, deleted, field names, 0), then each entry (flags, ID deltas, fields
/// unless SAMEFIELDS, values, element count).
pub(crate) fn stream_listpack(b: &crate::types::stream::Block) -> Vec<u8> {
    let mut lp = listpack::Builder::default();
    lp.push_int(b.count as i64);
    lp.push_int(b.deleted as i64);
    lp.push_int(b.master_fields.len() as i64);
    for f in &b.master_fields {
        lp.push(f);
    }
    lp.push_int(0);
    for (flags, id, fv) in &b.entries {
        lp.push_int(*flags as i64);
        lp.push_int(id.ms.wrapping_sub(b.master.ms) as i64);
        lp.push_int(id.seq.wrapping_sub(b.master.seq) as i64);
        let same = flags & 2 != 0;
        let n = fv.len() / 2;
        if !same {
            lp.push_int(n as i64);
        }
        for pair in fv.chunks(2) {
            if !same {
                lp.push(&pair[0]);
            }
            if let Some(v) = pair.get(1) {
                lp.push(v);
            }
        }
        lp.push_int(if same { n + 3 } else { n * 2 + 4 } as i64);
    }
    lp.finish()
}

/// Writes a stream as `RDB_TYPE_STREAM_LISTPACKS_2` (Redis 7.0's `rdbSaveObject`).
fn write_stream<W: Write>(
    enc: &mut Encoder,
    w: &mut W,
    s: &crate::types::Stream,
) -> io::Result<()> {
    let blocks = s.blocks();
    enc.len(w, blocks.len() as u64)?;
    for b in &blocks {
        enc.string(w, &b.master.to_be_bytes())?;
        enc.string(w, &stream_listpack(b))?;
    }
    enc.len(w, s.len())?;
    for id in [s.last_id, s.first_id, s.max_deleted_id] {
        enc.len(w, id.ms)?;
        enc.len(w, id.seq)?;
    }
    enc.len(w, s.entries_added)?;
    enc.len(w, s.groups.len() as u64)?;
    for (name, g) in &s.groups {
        enc.string(w, name)?;
        enc.len(w, g.last_id.ms)?;
        enc.len(w, g.last_id.seq)?;
        enc.len(w, g.entries_read as u64)?;
        enc.len(w, g.pel.len() as u64)?;
        for (id, p) in &g.pel {
            w.write_all(&id.to_be_bytes())?;
            w.write_all(&p.delivery_time.to_le_bytes())?;
            enc.len(w, p.delivery_count)?;
        }
        enc.len(w, g.consumers.len() as u64)?;
        for (cname, c) in &g.consumers {
            enc.string(w, cname)?;
            w.write_all(&c.seen_time.to_le_bytes())?;
            enc.len(w, c.pel.len() as u64)?;
            for id in &c.pel {
                w.write_all(&id.to_be_bytes())?;
            }
        }
    }
    Ok(())
}

/// Writes the object of `v` (without its type byte) as `rdbSaveObject` does.
/// `list_fill` is `list-max-listpack-size`.
pub(crate) fn write_value<W: Write>(
    enc: &mut Encoder,
    w: &mut W,
    v: &Value,
    list_fill: i64,
) -> io::Result<()> {
    match v {
        Value::Str(s) => enc.string(w, s),
        Value::List(l) => enc.quicklist(w, l.items().iter().map(|b| b.as_ref()), list_fill),
        Value::Hash(h) => match &**h {
            Hash::Listpack(pairs) => {
                let mut lp = listpack::Builder::default();
                for (f, v) in pairs {
                    lp.push(f);
                    lp.push(v);
                }
                enc.string(w, &lp.finish())
            }
            Hash::Table(map) => {
                enc.len(w, map.len() as u64)?;
                for (f, v) in map {
                    enc.string(w, f)?;
                    enc.string(w, v)?;
                }
                Ok(())
            }
        },
        Value::Set(s) => match &**s {
            Set::Intset(ints) => enc.string(w, &intset::encode(ints)),
            Set::Table(members) => {
                enc.len(w, members.len() as u64)?;
                for m in members {
                    enc.string(w, m)?;
                }
                Ok(())
            }
        },
        Value::ZSet(z) => {
            if type_of(v) == kind::ZSET_LISTPACK {
                let mut lp = listpack::Builder::default();
                for sm in z.iter() {
                    lp.push(&sm.member);
                    lp.push(score_text(sm.score).as_bytes());
                }
                enc.string(w, &lp.finish())
            } else {
                // Greatest first, as Redis saves a skiplist (each insert on load is
                // then at the head).
                enc.len(w, z.len() as u64)?;
                for sm in z.iter().rev() {
                    enc.string(w, &sm.member)?;
                    enc.binary_double(w, sm.score)?;
                }
                Ok(())
            }
        }
        Value::Stream(s) => write_stream(enc, w, s),
    }
}

/// A score as a listpack sorted set stores it (`d2string` of Redis 7.0): integers in
/// the safe range as integers, others as `%.17g`.
fn score_text(d: f64) -> String {
    const SAFE: f64 = 4_503_599_627_370_496.0; // 2^52
    if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.to_string()
    } else if d == 0.0 {
        if d.is_sign_negative() { "-0" } else { "0" }.to_string()
    } else if d > -(SAFE - 1.0) && d < SAFE && d == (d as i64) as f64 {
        (d as i64).to_string()
    } else {
        crate::util::fmt_g(d, 17)
    }
}

/// Sets an entry's last access to `idle` seconds before `now` (Unix ms) on the 24-bit
/// LRU clock, wrapping as Redis 7.0 does for idle times past the clock (IDLE opcode,
/// RESTORE ... IDLETIME).
pub fn set_idle(entry: &mut Entry, idle: u64, now: u64) {
    let secs = ((now / 1000) as i64).saturating_sub(idle.min(i64::MAX as u64) as i64);
    entry.touch(secs.rem_euclid(1 << 24) as u64 * 1000);
}

/// Why a decoded object cannot become a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// A collection without elements (Redis skips such keys in a file and refuses them
    /// in RESTORE).
    Empty,
    /// Something Redis's loader reports as corruption.
    Corrupt(&'static str),
}

/// Builds the engine's value for a decoded object, converting encodings as Redis 7.0's
/// loader does for the same object and limits.
pub(crate) fn into_value(obj: Object, limits: &Limits) -> Result<Value, Invalid> {
    if obj.is_empty() {
        return Err(Invalid::Empty);
    }
    Ok(match obj {
        Object::Str(s) => Value::Str(CompactBytes::from(s)),
        Object::List(items) => {
            let mut l = List::new();
            for item in items {
                l.push_back(item);
            }
            Value::List(Box::new(l))
        }
        Object::Hash { pairs, compact } => {
            Value::Hash(Box::new(hash(pairs, compact, limits.hash)?))
        }
        Object::IntSet(ints) => {
            if ints.len() > limits.set_max_intset_entries {
                let members = ints.iter().map(|i| Bytes::from(i.to_string())).collect();
                Value::Set(Box::new(Set::Table(members)))
            } else {
                Value::Set(Box::new(Set::Intset(ints)))
            }
        }
        Object::Set(members) => Value::Set(Box::new(set(members, limits.set_max_intset_entries)?)),
        Object::ZSet { pairs, compact } => {
            Value::ZSet(Box::new(zset(pairs, compact, limits.zset)?))
        }
    })
}

fn hash(pairs: Vec<(Bytes, Bytes)>, compact: bool, limits: HashLimits) -> Result<Hash, Invalid> {
    let mut seen = HashSet::with_capacity(pairs.len());
    if !pairs.iter().all(|(f, _)| seen.insert(f.clone())) {
        return Err(Invalid::Corrupt("duplicate hash fields"));
    }
    let too_long =
        |(f, v): &(Bytes, Bytes)| f.len() > limits.max_value || v.len() > limits.max_value;
    // A listpack from the file converts only past the entry limit; pairs written one
    // by one stay a listpack only while they fit every limit.
    let table = pairs.len() > limits.max_entries || (!compact && pairs.iter().any(too_long));
    Ok(if table {
        Hash::Table(pairs.into_iter().collect::<IndexMap<_, _>>())
    } else {
        Hash::Listpack(pairs)
    })
}

fn set(members: Vec<Bytes>, max_intset: usize) -> Result<Set, Invalid> {
    let dup = Invalid::Corrupt("duplicate set members");
    let ints: Option<Vec<i64>> = if members.len() > max_intset {
        None
    } else {
        members.iter().map(|m| crate::util::parse_i64(m)).collect()
    };
    Ok(match ints {
        Some(mut ints) => {
            ints.sort_unstable();
            if ints.windows(2).any(|w| w[0] == w[1]) {
                return Err(dup);
            }
            Set::Intset(ints)
        }
        None => {
            let n = members.len();
            let table: IndexSet<Bytes> = members.into_iter().collect();
            if table.len() != n {
                return Err(dup);
            }
            Set::Table(table)
        }
    })
}

fn zset(pairs: Vec<(Bytes, f64)>, compact: bool, limits: ZSetLimits) -> Result<ZSet, Invalid> {
    if pairs.iter().any(|(_, s)| s.is_nan()) {
        return Err(Invalid::Corrupt("a sorted set score that is NaN"));
    }
    let skiplist = if compact {
        pairs.len() > limits.max_entries
    } else {
        pairs.len() > limits.max_entries || pairs.iter().any(|(m, _)| m.len() > limits.max_value)
    };
    let n = pairs.len();
    let mut z = ZSet::new();
    z.set_skiplist(skiplist);
    let unlimited = ZSetLimits {
        max_entries: usize::MAX,
        max_value: usize::MAX,
    };
    for (m, s) in pairs {
        z.insert(m, s, unlimited);
    }
    if z.len() != n {
        return Err(Invalid::Corrupt("duplicate sorted set members"));
    }
    Ok(z)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_as_d2string() {
        assert_eq!(score_text(1.0), "1");
        assert_eq!(score_text(-3.0), "-3");
        assert_eq!(score_text(2.5), "2.5");
        assert_eq!(score_text(0.1), "0.10000000000000001");
        assert_eq!(score_text(1e20), "1e+20");
        assert_eq!(score_text(f64::INFINITY), "inf");
        assert_eq!(score_text(-0.0), "-0");
    }

    #[test]
    fn load_rules_follow_redis() {
        let lim = Limits::default();
        let b = |s: &str| Bytes::from(s.to_string());
        // Pairs written one by one but small: a listpack.
        let h = into_value(
            Object::Hash {
                pairs: vec![(b("f"), b("v"))],
                compact: false,
            },
            &lim,
        )
        .unwrap();
        assert!(matches!(h, Value::Hash(ref h) if h.encoding() == "listpack"));
        // A long value written one by one: a table.
        let h = into_value(
            Object::Hash {
                pairs: vec![(b("f"), b(&"x".repeat(65)))],
                compact: false,
            },
            &lim,
        )
        .unwrap();
        assert!(matches!(h, Value::Hash(ref h) if h.encoding() == "hashtable"));
        // Integers only: an intset, sorted.
        let s = into_value(Object::Set(vec![b("3"), b("1")]), &lim).unwrap();
        assert!(
            matches!(s, Value::Set(ref s) if s.encoding() == "intset" && s.members() == vec![b("1"), b("3")])
        );
        assert_eq!(
            into_value(Object::Set(vec![b("1"), b("1")]), &lim).err(),
            Some(Invalid::Corrupt("duplicate set members"))
        );
        assert_eq!(
            into_value(Object::List(vec![]), &lim).err(),
            Some(Invalid::Empty)
        );
        let z = into_value(
            Object::ZSet {
                pairs: vec![(b("a"), 1.0), (b("b"), f64::NAN)],
                compact: false,
            },
            &lim,
        );
        assert!(matches!(z, Err(Invalid::Corrupt(_))));
    }
}
