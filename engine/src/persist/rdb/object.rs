//! The one place that knows the engine's value types: writes a [`Value`] in the RDB
//! encoding Redis 7.0 writes for it, and turns a decoded object into a `Value` with
//! the encoding Redis 7.0 gives it on load (`rdbLoadObject`'s conversion rules).

use super::decode::Object;
use super::encode::Encoder;
use super::{intset, kind, listpack};
use crate::keyspace::db::Entry;
use crate::types::hash::HashLimits;
use crate::types::stream::{Block, Consumer, Group, Pending, StreamId};
use crate::types::zset::ZSetLimits;
use crate::types::{CompactBytes, Hash, List, Set, Stream, Value, ZSet};
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
        Object::Stream(parts) => Value::Stream(Box::new(stream(*parts)?)),
    })
}

/// One stream block from its radix-tree key and listpack (`streamAppendItem`'s
/// layout): master entry, then each entry with its flags, ID deltas, fields unless
/// SAMEFIELDS, values and element count.
fn stream_block(key: &[u8], lp: &[u8]) -> Result<Block, Invalid> {
    const NOT_A_NODE: &str = "a stream listpack that is not a stream node";
    let master = StreamId::from_be_bytes(key).ok_or(Invalid::Corrupt("a bad stream node key"))?;
    let elems = listpack::decode(lp).map_err(|_| Invalid::Corrupt("a bad stream listpack"))?;
    let mut it = elems.into_iter();
    let int = |it: &mut std::vec::IntoIter<listpack::Elem>| -> Result<i64, Invalid> {
        match it.next() {
            Some(listpack::Elem::Int(v)) => Ok(v),
            Some(listpack::Elem::Str(s)) => crate::util::parse_i64(s).ok_or(Invalid::Corrupt(
                "a stream listpack with text where a number belongs",
            )),
            None => Err(Invalid::Corrupt("a stream listpack that ends too soon")),
        }
    };
    let count = int(&mut it)?;
    let deleted = int(&mut it)?;
    let nfields = int(&mut it)?;
    if count < 0 || deleted < 0 || nfields < 0 {
        return Err(Invalid::Corrupt(NOT_A_NODE));
    }
    let mut master_fields = Vec::with_capacity(nfields.min(1024) as usize);
    for _ in 0..nfields {
        master_fields.push(
            it.next()
                .ok_or(Invalid::Corrupt("a stream listpack that ends too soon"))?
                .to_bytes(),
        );
    }
    if int(&mut it)? != 0 {
        return Err(Invalid::Corrupt(NOT_A_NODE));
    }
    let mut entries = Vec::new();
    while it.len() > 0 {
        let flags = int(&mut it)?;
        let ms = int(&mut it)? as u64;
        let seq = int(&mut it)? as u64;
        let same = flags & 2 != 0;
        let n = if same {
            master_fields.len() as i64
        } else {
            int(&mut it)?
        };
        if !(0..=i64::from(u32::MAX)).contains(&n) || !(0..=3).contains(&flags) {
            return Err(Invalid::Corrupt(NOT_A_NODE));
        }
        let mut fv = Vec::with_capacity(n.min(1024) as usize * 2);
        for i in 0..n as usize {
            let field = if same {
                master_fields
                    .get(i)
                    .cloned()
                    .ok_or(Invalid::Corrupt(NOT_A_NODE))?
            } else {
                it.next().ok_or(bad_end())?.to_bytes()
            };
            fv.push(field);
            fv.push(it.next().ok_or(bad_end())?.to_bytes());
        }
        let lp_count = int(&mut it)?;
        let want = if same { n + 3 } else { n * 2 + 4 };
        if lp_count != want {
            return Err(Invalid::Corrupt(
                "a stream entry whose element count is wrong",
            ));
        }
        let id = StreamId::new(master.ms.wrapping_add(ms), master.seq.wrapping_add(seq));
        entries.push((flags as u8, id, fv));
    }
    Ok(Block {
        master,
        count: u32::try_from(count)
            .map_err(|_| Invalid::Corrupt("a stream node count too large"))?,
        deleted: u32::try_from(deleted)
            .map_err(|_| Invalid::Corrupt("a stream node count too large"))?,
        master_fields,
        entries,
    })
}

fn bad_end() -> Invalid {
    Invalid::Corrupt("a stream listpack that ends too soon")
}

fn id_of((ms, seq): (u64, u64)) -> StreamId {
    StreamId::new(ms, seq)
}

/// Builds a stream from its file parts as `rdbLoadObject` does: version 1 files get
/// the first ID, tombstone and counters Redis 7.0 derives for them.
fn stream(p: crate::persist::rdb::decode::StreamParts) -> Result<Stream, Invalid> {
    let blocks = p
        .blocks
        .iter()
        .map(|(k, lp)| stream_block(k, lp))
        .collect::<Result<Vec<_>, _>>()?;
    let mut s = Stream::from_blocks(blocks).map_err(Invalid::Corrupt)?;
    if s.len() != p.length {
        return Err(Invalid::Corrupt(
            "a stream length that differs from its entries",
        ));
    }
    s.last_id = id_of(p.last_id);
    if s.edge(true).is_some_and(|(top, _)| top > s.last_id) {
        return Err(Invalid::Corrupt("a stream last ID below its top entry"));
    }
    match p.v2 {
        Some((first, maxdel, added)) => {
            s.first_id = id_of(first);
            s.max_deleted_id = id_of(maxdel);
            s.entries_added = added;
        }
        None => {
            s.refresh_first_id();
            s.max_deleted_id = StreamId::MIN;
            s.entries_added = s.len();
        }
    }
    for g in p.groups {
        let last_id = id_of(g.last_id);
        let entries_read = match g.entries_read {
            Some(n) => n,
            None => s.estimate_distance(last_id),
        };
        let mut group = Group {
            last_id,
            entries_read,
            ..Group::default()
        };
        for (id, time, count) in g.pel {
            let id = StreamId::from_be_bytes(&id).ok_or(Invalid::Corrupt("a bad pending ID"))?;
            group.pel.insert(
                id,
                Pending {
                    delivery_time: time,
                    delivery_count: count,
                    consumer: Bytes::new(),
                },
            );
        }
        for (name, seen, ids) in g.consumers {
            let mut c = Consumer {
                seen_time: seen,
                pel: Default::default(),
            };
            for id in ids {
                let id =
                    StreamId::from_be_bytes(&id).ok_or(Invalid::Corrupt("a bad pending ID"))?;
                let Some(p) = group.pel.get_mut(&id) else {
                    return Err(Invalid::Corrupt(
                        "a consumer's pending entry missing from its group's",
                    ));
                };
                if !p.consumer.is_empty() {
                    return Err(Invalid::Corrupt("a pending entry owned by two consumers"));
                }
                p.consumer = name.clone();
                c.pel.insert(id);
            }
            if group.consumers.insert(name, c).is_some() {
                return Err(Invalid::Corrupt("duplicate consumers in a group"));
            }
        }
        if group.pel.values().any(|p| p.consumer.is_empty()) {
            return Err(Invalid::Corrupt("a pending entry that no consumer owns"));
        }
        if s.groups.insert(g.name, group).is_some() {
            return Err(Invalid::Corrupt("duplicate consumer groups"));
        }
    }
    Ok(s)
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

    /// A two-entry stream block, as the writer lays it out, and its parts.
    fn stream_parts() -> crate::persist::rdb::decode::StreamParts {
        let mut s = Stream::default();
        let lim = crate::types::stream::StreamLimits::default();
        let fv = |a: &str, b: &str| vec![Bytes::from(a.to_string()), Bytes::from(b.to_string())];
        let _ = s.append(&fv("f", "1"), Some(StreamId::new(1, 0)), true, 0, lim);
        let _ = s.append(&fv("g", "2"), Some(StreamId::new(2, 0)), true, 0, lim);
        let blocks = s
            .blocks()
            .iter()
            .map(|b| (b.master.to_be_bytes().to_vec(), stream_listpack(b)))
            .collect();
        crate::persist::rdb::decode::StreamParts {
            blocks,
            length: 2,
            last_id: (2, 0),
            v2: Some(((1, 0), (0, 0), 2)),
            groups: vec![crate::persist::rdb::decode::GroupParts {
                name: Bytes::from_static(b"g"),
                last_id: (2, 0),
                entries_read: Some(2),
                pel: vec![(StreamId::new(1, 0).to_be_bytes(), 5, 1)],
                consumers: vec![(
                    Bytes::from_static(b"c"),
                    5,
                    vec![StreamId::new(1, 0).to_be_bytes()],
                )],
            }],
        }
    }

    #[test]
    fn streams_load_and_refuse_inconsistent_parts() {
        let lim = Limits::default();
        let good = stream_parts();
        let Ok(Value::Stream(s)) = into_value(Object::Stream(Box::new(good.clone())), &lim) else {
            panic!("a consistent stream loads");
        };
        assert_eq!(s.len(), 2);
        assert_eq!(s.groups[&Bytes::from_static(b"g")].pel.len(), 1);
        let refused = |p: crate::persist::rdb::decode::StreamParts| match into_value(
            Object::Stream(Box::new(p)),
            &lim,
        ) {
            Err(Invalid::Corrupt(why)) => why,
            other => panic!("accepted: {other:?}"),
        };
        let mut p = good.clone();
        p.length = 3;
        assert!(refused(p).contains("length"));
        let mut p = good.clone();
        p.last_id = (1, 0);
        assert!(refused(p).contains("last ID"));
        let mut p = good.clone();
        p.groups[0].consumers[0].2 = vec![StreamId::new(9, 0).to_be_bytes()];
        assert!(refused(p).contains("missing"));
        let mut p = good.clone();
        p.groups[0].consumers.clear();
        assert!(refused(p).contains("no consumer"));
        // A master entry whose count does not match its entries.
        let mut p = good.clone();
        p.blocks[0].1 = stream_listpack(&crate::types::stream::Block {
            master: StreamId::new(1, 0),
            count: 3,
            deleted: 0,
            master_fields: vec![Bytes::from_static(b"f")],
            entries: vec![(
                2,
                StreamId::new(1, 0),
                vec![Bytes::from_static(b"f"), Bytes::from_static(b"1")],
            )],
        });
        assert!(refused(p).contains("counts"));
        // A listpack that is not a stream node at all.
        let mut p = good;
        let mut b = listpack::Builder::default();
        b.push_int(5);
        p.blocks[0].1 = b.finish();
        assert!(!refused(p).is_empty());
    }

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
