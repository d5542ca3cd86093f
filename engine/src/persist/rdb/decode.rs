//! Reading RDB primitives (lengths, strings, doubles) and objects, as `rdbLoadLen`,
//! `rdbGenericLoadStringObject` and `rdbLoadObject` do, from any `Read`. Every read
//! checks its bounds; lengths from the data never size an allocation up front.

use super::crc64::Running;
use super::listpack::Elem;
use super::{intset, kind, listpack, lzf, show_key, ziplist, zipmap, BlobError, RdbError};
use bytes::Bytes;
use std::io::Read;

/// Most elements reserved up front from a length read in the data.
const RESERVE_MAX: u64 = 4096;
/// Bytes read at a time for a long string, so a lying length fails at the end of the
/// data instead of allocating what it claims.
const CHUNK: u64 = 1 << 20;

/// A value as the data holds it, before the engine's encoding rules are applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Object {
    Str(Vec<u8>),
    List(Vec<Bytes>),
    /// `compact`: written as a listpack, ziplist or zipmap (rather than as pairs).
    Hash {
        pairs: Vec<(Bytes, Bytes)>,
        compact: bool,
    },
    /// An intset (ascending, unique).
    IntSet(Vec<i64>),
    /// Members written one by one.
    Set(Vec<Bytes>),
    /// `compact`: written as a listpack or ziplist.
    ZSet {
        pairs: Vec<(Bytes, f64)>,
        compact: bool,
    },
    /// A stream: its listpacks and metadata, as written.
    Stream(Box<StreamParts>),
}

/// A stream as `RDB_TYPE_STREAM_LISTPACKS[_2]` holds it; `object::into_value` builds
/// the engine's stream from it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StreamParts {
    /// (radix-tree key, listpack) of each block.
    pub(crate) blocks: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) length: u64,
    pub(crate) last_id: (u64, u64),
    /// Version 2 only.
    pub(crate) v2: Option<StreamV2>,
    pub(crate) groups: Vec<GroupParts>,
}

/// What version 2 adds: the first ID, the largest deleted ID, entries ever added.
pub(crate) type StreamV2 = ((u64, u64), (u64, u64), u64);

/// One consumer group as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GroupParts {
    pub(crate) name: Bytes,
    pub(crate) last_id: (u64, u64),
    /// Version 2 only.
    pub(crate) entries_read: Option<i64>,
    /// (ID, delivery time, delivery count).
    pub(crate) pel: Vec<([u8; 16], u64, u64)>,
    /// (name, seen time, the IDs it owns).
    pub(crate) consumers: Vec<(Bytes, u64, Vec<[u8; 16]>)>,
}

impl Object {
    /// Whether a collection has no elements (Redis refuses such keys).
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Object::Str(_) => false,
            Object::List(v) => v.is_empty(),
            Object::Hash { pairs, .. } => pairs.is_empty(),
            Object::IntSet(v) => v.is_empty(),
            Object::Set(v) => v.is_empty(),
            Object::ZSet { pairs, .. } => pairs.is_empty(),
            // An empty stream is a key of its own.
            Object::Stream(_) => false,
        }
    }
}

/// A length as stored: a plain number, or the marker of a specially encoded string.
enum Length {
    Plain(u64),
    Encoded(u8),
}

/// An RDB reader: buffers its input, counts the offset and keeps the running CRC64 of
/// what it consumed (updated a buffer at a time, not per read).
pub(crate) struct Reader<R> {
    inner: R,
    buf: Box<[u8]>,
    /// Next unread byte of `buf`, and the end of the valid data in it.
    pos: usize,
    end: usize,
    /// Consumed bytes from here to `pos` are not in `crc` yet.
    crc_from: usize,
    offset: u64,
    crc: Running,
}

impl<R: Read> Reader<R> {
    /// A reader with a 64 KiB buffer (files).
    pub(crate) fn new(inner: R) -> Self {
        Self::with_capacity(inner, 1 << 16)
    }

    /// A reader with a buffer of `cap` bytes (a payload already in memory needs no
    /// more than its size).
    pub(crate) fn with_capacity(inner: R, cap: usize) -> Self {
        Reader {
            inner,
            buf: vec![0; cap.max(16)].into_boxed_slice(),
            pos: 0,
            end: 0,
            crc_from: 0,
            offset: 0,
            crc: Running::default(),
        }
    }

    /// Bytes read so far.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// CRC64 of everything read so far.
    pub(crate) fn checksum(&mut self) -> u64 {
        self.crc.update(&self.buf[self.crc_from..self.pos]);
        self.crc_from = self.pos;
        self.crc.value()
    }

    /// Reads more input into the buffer; the end of the data is `Truncated` at the
    /// current offset.
    fn refill(&mut self, what: &'static str) -> Result<(), RdbError> {
        self.crc.update(&self.buf[self.crc_from..self.pos]);
        self.pos = 0;
        self.crc_from = 0;
        self.end = 0;
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(0) => {
                    return Err(RdbError::Truncated {
                        offset: self.offset,
                        what,
                    })
                }
                Ok(n) => {
                    self.end = n;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(RdbError::Io(e)),
            }
        }
    }

    /// Fills `out`; the end of the data is `Truncated` at the current offset.
    pub(crate) fn fill(&mut self, out: &mut [u8], what: &'static str) -> Result<(), RdbError> {
        let mut done = 0;
        while done < out.len() {
            if self.pos == self.end {
                self.refill(what)?;
            }
            let n = (out.len() - done).min(self.end - self.pos);
            out[done..done + n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            self.offset += n as u64;
            done += n;
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, RdbError> {
        if self.pos == self.end {
            self.refill(what)?;
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        self.offset += 1;
        Ok(b)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], RdbError> {
        let mut b = [0u8; N];
        self.fill(&mut b, what)?;
        Ok(b)
    }

    /// `n` bytes, read in chunks.
    pub(crate) fn bytes(&mut self, n: u64, what: &'static str) -> Result<Vec<u8>, RdbError> {
        let mut out = Vec::with_capacity(n.min(CHUNK) as usize);
        let mut left = n;
        while left > 0 {
            let step = left.min(CHUNK) as usize;
            let at = out.len();
            out.resize(at + step, 0);
            self.fill(&mut out[at..], what)?;
            left -= step as u64;
        }
        Ok(out)
    }

    /// `rdbLoadLenByRef`.
    fn length_or_encoding(&mut self, what: &'static str) -> Result<Length, RdbError> {
        let at = self.offset;
        let b = self.u8(what)?;
        Ok(match b >> 6 {
            0 => Length::Plain((b & 0x3F) as u64),
            1 => {
                let lo = self.u8(what)?;
                Length::Plain((((b & 0x3F) as u64) << 8) | lo as u64)
            }
            3 => Length::Encoded(b & 0x3F),
            _ => match b {
                0x80 => Length::Plain(u32::from_be_bytes(self.array(what)?) as u64),
                0x81 => Length::Plain(u64::from_be_bytes(self.array(what)?)),
                _ => {
                    return Err(RdbError::corrupt(
                        at,
                        format!("unknown length encoding 0x{b:02x} in {what}"),
                    ))
                }
            },
        })
    }

    /// A plain length (`rdbLoadLen`).
    pub(crate) fn len(&mut self, what: &'static str) -> Result<u64, RdbError> {
        let at = self.offset;
        match self.length_or_encoding(what)? {
            Length::Plain(n) => Ok(n),
            Length::Encoded(_) => Err(RdbError::corrupt(
                at,
                format!("an encoded string where {what} should be a length"),
            )),
        }
    }

    /// A string in any of its encodings: raw, 8/16/32-bit integer, LZF.
    pub(crate) fn string(&mut self, what: &'static str) -> Result<Vec<u8>, RdbError> {
        let at = self.offset;
        match self.length_or_encoding(what)? {
            Length::Plain(n) => self.bytes(n, what),
            Length::Encoded(0) => Ok((self.u8(what)? as i8).to_string().into_bytes()),
            Length::Encoded(1) => Ok(i16::from_le_bytes(self.array(what)?)
                .to_string()
                .into_bytes()),
            Length::Encoded(2) => Ok(i32::from_le_bytes(self.array(what)?)
                .to_string()
                .into_bytes()),
            Length::Encoded(3) => {
                let clen = self.len(what)?;
                let len = self.len(what)?;
                let data = self.bytes(clen, what)?;
                let len = usize::try_from(len).map_err(|_| {
                    RdbError::corrupt(at, format!("LZF length too large in {what}"))
                })?;
                lzf::decompress(&data, len)
                    .map_err(|e| RdbError::corrupt(at, format!("{e} in {what}")))
            }
            Length::Encoded(e) => Err(RdbError::corrupt(
                at,
                format!("unknown string encoding {e} in {what}"),
            )),
        }
    }

    /// A string as `Bytes`.
    fn bulk(&mut self, what: &'static str) -> Result<Bytes, RdbError> {
        self.string(what).map(Bytes::from)
    }

    /// `rdbLoadBinaryDoubleValue`: 8 bytes, little-endian IEEE 754.
    pub(crate) fn binary_double(&mut self, what: &'static str) -> Result<f64, RdbError> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }

    /// `rdbLoadDoubleValue`: the text form of RDB versions before 8 (ZSET v1).
    fn text_double(&mut self, what: &'static str) -> Result<f64, RdbError> {
        let at = self.offset;
        match self.u8(what)? {
            253 => Ok(f64::NAN),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            n => {
                let text = self.bytes(n as u64, what)?;
                parse_score(&text)
                    .ok_or_else(|| RdbError::corrupt(at, format!("bad double text in {what}")))
            }
        }
    }

    /// A compact blob (listpack, ziplist, ...), decoded by `f`; its faults carry the
    /// blob's offset.
    fn blob<T>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&[u8]) -> Result<T, BlobError>,
    ) -> Result<T, RdbError> {
        let offset = self.offset;
        let data = self.string(what)?;
        f(&data).map_err(|source| RdbError::Blob { offset, source })
    }

    /// A stream's parts (`rdbLoadObject` for the stream types).
    fn stream(&mut self, is_v2: bool) -> Result<StreamParts, RdbError> {
        let n = self.len("a stream's node count")?;
        let mut blocks = Vec::with_capacity(n.min(RESERVE_MAX) as usize);
        for _ in 0..n {
            let at = self.offset;
            let key = self.string("a stream node key")?;
            if key.len() != 16 {
                return Err(RdbError::corrupt(
                    at,
                    "a stream node key that is not the size of an ID",
                ));
            }
            let at = self.offset;
            let lp = self.string("a stream listpack")?;
            if lp.len() <= 7 {
                return Err(RdbError::corrupt(at, "an empty listpack inside a stream"));
            }
            blocks.push((key, lp));
        }
        let length = self.len("a stream length")?;
        let last_id = (self.len("a stream ID")?, self.len("a stream ID")?);
        let v2 = if is_v2 {
            let first = (self.len("a stream ID")?, self.len("a stream ID")?);
            let maxdel = (self.len("a stream ID")?, self.len("a stream ID")?);
            Some((first, maxdel, self.len("a stream's entries added")?))
        } else {
            None
        };
        let ngroups = self.len("a stream's group count")?;
        let mut groups = Vec::with_capacity(ngroups.min(RESERVE_MAX) as usize);
        for _ in 0..ngroups {
            let name = self.bulk("a consumer group name")?;
            let last_id = (self.len("a stream ID")?, self.len("a stream ID")?);
            let entries_read = if is_v2 {
                Some(self.len("a group's entries read")? as i64)
            } else {
                None
            };
            let npel = self.len("a group PEL size")?;
            let mut pel = Vec::with_capacity(npel.min(RESERVE_MAX) as usize);
            for _ in 0..npel {
                let id = self.array::<16>("a pending entry ID")?;
                let time = u64::from_le_bytes(self.array::<8>("a delivery time")?);
                let count = self.len("a delivery count")?;
                pel.push((id, time, count));
            }
            let nconsumers = self.len("a consumer count")?;
            let mut consumers = Vec::with_capacity(nconsumers.min(RESERVE_MAX) as usize);
            for _ in 0..nconsumers {
                let cname = self.bulk("a consumer name")?;
                let seen = u64::from_le_bytes(self.array::<8>("a seen time")?);
                let nids = self.len("a consumer PEL size")?;
                let mut ids = Vec::with_capacity(nids.min(RESERVE_MAX) as usize);
                for _ in 0..nids {
                    ids.push(self.array::<16>("a consumer's pending ID")?);
                }
                consumers.push((cname, seen, ids));
            }
            groups.push(GroupParts {
                name,
                last_id,
                entries_read,
                pel,
                consumers,
            });
        }
        Ok(StreamParts {
            blocks,
            length,
            last_id,
            v2,
            groups,
        })
    }

    /// `rdbLoadObject`: the value of type `t` (the key is for error messages).
    pub(crate) fn object(&mut self, t: u8, key: &[u8]) -> Result<Object, RdbError> {
        let at = self.offset;
        let unsupported = |what| RdbError::Unsupported {
            offset: at,
            key: show_key(key),
            what,
        };
        Ok(match t {
            kind::STRING => Object::Str(self.string("a string value")?),
            kind::LIST => {
                let n = self.len("a list length")?;
                let mut items = Vec::with_capacity(n.min(RESERVE_MAX) as usize);
                for _ in 0..n {
                    items.push(self.bulk("a list element")?);
                }
                Object::List(items)
            }
            kind::SET => {
                let n = self.len("a set length")?;
                let mut members = Vec::with_capacity(n.min(RESERVE_MAX) as usize);
                for _ in 0..n {
                    members.push(self.bulk("a set member")?);
                }
                Object::Set(members)
            }
            kind::ZSET | kind::ZSET_2 => {
                let n = self.len("a sorted set length")?;
                let mut pairs = Vec::with_capacity(n.min(RESERVE_MAX) as usize);
                for _ in 0..n {
                    let member = self.bulk("a sorted set member")?;
                    let score = if t == kind::ZSET_2 {
                        self.binary_double("a score")?
                    } else {
                        self.text_double("a score")?
                    };
                    pairs.push((member, score));
                }
                Object::ZSet {
                    pairs,
                    compact: false,
                }
            }
            kind::HASH => {
                let n = self.len("a hash length")?;
                let mut pairs = Vec::with_capacity(n.min(RESERVE_MAX) as usize);
                for _ in 0..n {
                    let field = self.bulk("a hash field")?;
                    let value = self.bulk("a hash value")?;
                    pairs.push((field, value));
                }
                Object::Hash {
                    pairs,
                    compact: false,
                }
            }
            kind::HASH_ZIPMAP => self.blob("a zipmap", |zm| {
                let pairs = zipmap::decode(zm)?
                    .into_iter()
                    .map(|(f, v)| (Bytes::copy_from_slice(f), Bytes::copy_from_slice(v)))
                    .collect();
                Ok(Object::Hash {
                    pairs,
                    compact: true,
                })
            })?,
            kind::LIST_ZIPLIST => self.blob("a ziplist", |zl| {
                Ok(Object::List(elems(ziplist::decode(zl)?)))
            })?,
            kind::SET_INTSET => {
                self.blob("an intset", |is| Ok(Object::IntSet(intset::decode(is)?)))?
            }
            kind::ZSET_ZIPLIST => {
                let offset = self.offset;
                let items = self.blob("a ziplist", |zl| Ok(elems(ziplist::decode(zl)?)))?;
                zset_pairs(offset, items)?
            }
            kind::ZSET_LISTPACK => {
                let offset = self.offset;
                let items = self.blob("a listpack", |lp| Ok(elems(listpack::decode(lp)?)))?;
                zset_pairs(offset, items)?
            }
            kind::HASH_ZIPLIST | kind::HASH_LISTPACK => {
                let offset = self.offset;
                let items = if t == kind::HASH_ZIPLIST {
                    self.blob("a ziplist", |zl| Ok(elems(ziplist::decode(zl)?)))?
                } else {
                    self.blob("a listpack", |lp| Ok(elems(listpack::decode(lp)?)))?
                };
                if !items.len().is_multiple_of(2) {
                    return Err(RdbError::corrupt(
                        offset,
                        "a hash with an odd element count",
                    ));
                }
                let mut it = items.into_iter();
                let mut pairs = Vec::new();
                while let (Some(f), Some(v)) = (it.next(), it.next()) {
                    pairs.push((f, v));
                }
                Object::Hash {
                    pairs,
                    compact: true,
                }
            }
            kind::LIST_QUICKLIST | kind::LIST_QUICKLIST_2 => {
                let nodes = self.len("a quicklist length")?;
                let mut items = Vec::new();
                for _ in 0..nodes {
                    let container = if t == kind::LIST_QUICKLIST_2 {
                        let at = self.offset;
                        match self.len("a quicklist node container")? {
                            1 => Container::Plain,
                            2 => Container::Packed,
                            c => {
                                return Err(RdbError::corrupt(
                                    at,
                                    format!("unknown quicklist node container {c}"),
                                ))
                            }
                        }
                    } else {
                        Container::Ziplist
                    };
                    match container {
                        Container::Plain => items.push(self.bulk("a quicklist plain node")?),
                        Container::Packed => items.extend(
                            self.blob("a quicklist node", |lp| Ok(elems(listpack::decode(lp)?)))?,
                        ),
                        Container::Ziplist => items.extend(
                            self.blob("a quicklist node", |zl| Ok(elems(ziplist::decode(zl)?)))?,
                        ),
                    }
                }
                Object::List(items)
            }
            kind::STREAM_LISTPACKS | kind::STREAM_LISTPACKS_2 => {
                Object::Stream(Box::new(self.stream(t == kind::STREAM_LISTPACKS_2)?))
            }
            kind::MODULE_PRE_GA | kind::MODULE_2 => return Err(unsupported("module")),
            other => {
                return Err(RdbError::corrupt(
                    at.saturating_sub(1),
                    format!("unknown object type {other} for key {:?}", show_key(key)),
                ))
            }
        })
    }
}

/// What a quicklist node holds.
enum Container {
    /// One element as a plain string (v2, elements of 1 GiB and more).
    Plain,
    /// A listpack (v2).
    Packed,
    /// A ziplist (v1).
    Ziplist,
}

fn elems(v: Vec<Elem<'_>>) -> Vec<Bytes> {
    v.into_iter().map(Elem::to_bytes).collect()
}

/// (member, score) pairs of a listpack or ziplist sorted set; scores are integers or
/// text (`zzlGetScore`).
fn zset_pairs(offset: u64, items: Vec<Bytes>) -> Result<Object, RdbError> {
    if !items.len().is_multiple_of(2) {
        return Err(RdbError::corrupt(
            offset,
            "a sorted set with an odd element count",
        ));
    }
    let mut it = items.into_iter();
    let mut pairs = Vec::new();
    while let (Some(m), Some(s)) = (it.next(), it.next()) {
        let score = parse_score(&s)
            .ok_or_else(|| RdbError::corrupt(offset, "a sorted set score that is not a number"))?;
        pairs.push((m, score));
    }
    Ok(Object::ZSet {
        pairs,
        compact: true,
    })
}

/// A score written as text (`strtod`): decimal, `inf`/`-inf`, `nan`.
fn parse_score(text: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(text).ok()?;
    match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" | "-nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::rdb::encode::Encoder;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// Serialises with the encoder's primitives: `Len(n)` a length, `Str(s)` a string,
    /// `Raw(bytes)` bytes as they are.
    enum Part<'a> {
        Len(u64),
        Str(&'a [u8]),
        Raw(&'a [u8]),
    }

    fn bytes(parts: &[Part]) -> Vec<u8> {
        let mut e = Encoder::new(false);
        let mut out = Vec::new();
        for p in parts {
            match p {
                Part::Len(n) => e.len(&mut out, *n).unwrap(),
                Part::Str(s) => e.string(&mut out, s).unwrap(),
                Part::Raw(r) => out.extend_from_slice(r),
            }
        }
        out
    }

    fn read(t: u8, data: &[u8]) -> Result<Object, RdbError> {
        Reader::new(data).object(t, b"key")
    }

    #[test]
    fn old_encodings() {
        use Part::*;
        let zl = ziplist::encode(&[b"a", b"12", b"-70000"]);
        let list = vec![b("a"), b("12"), b("-70000")];
        assert_eq!(
            read(kind::LIST_ZIPLIST, &bytes(&[Str(&zl)])).unwrap(),
            Object::List(list.clone())
        );
        // Quicklist v1: ziplist nodes (an empty one is skipped, as Redis does).
        let empty = ziplist::encode(&[]);
        let ql = bytes(&[Len(3), Str(&zl), Str(&empty), Str(&zl)]);
        let twice: Vec<Bytes> = list.iter().chain(&list).cloned().collect();
        assert_eq!(
            read(kind::LIST_QUICKLIST, &ql).unwrap(),
            Object::List(twice)
        );
        // The linked list of RDB versions before 7.
        let linked = bytes(&[Len(2), Str(b"x"), Str(b"300")]);
        assert_eq!(
            read(kind::LIST, &linked).unwrap(),
            Object::List(vec![b("x"), b("300")])
        );
        // Hashes as a zipmap and as a ziplist.
        let zm = zipmap::encode(&[(b"f", b"v"), (b"n", b"1")]);
        let pairs = vec![(b("f"), b("v")), (b("n"), b("1"))];
        let want = Object::Hash {
            pairs: pairs.clone(),
            compact: true,
        };
        assert_eq!(read(kind::HASH_ZIPMAP, &bytes(&[Str(&zm)])).unwrap(), want);
        let zl = ziplist::encode(&[b"f", b"v", b"n", b"1"]);
        assert_eq!(read(kind::HASH_ZIPLIST, &bytes(&[Str(&zl)])).unwrap(), want);
        let odd = ziplist::encode(&[b"f", b"v", b"n"]);
        assert!(read(kind::HASH_ZIPLIST, &bytes(&[Str(&odd)])).is_err());
        // Sorted sets as a ziplist (integer and text scores) and with text doubles.
        let zl = ziplist::encode(&[b"a", b"1", b"b", b"2.5", b"c", b"inf"]);
        let zpairs = vec![(b("a"), 1.0), (b("b"), 2.5), (b("c"), f64::INFINITY)];
        assert_eq!(
            read(kind::ZSET_ZIPLIST, &bytes(&[Str(&zl)])).unwrap(),
            Object::ZSet {
                pairs: zpairs.clone(),
                compact: true
            }
        );
        let v1 = bytes(&[
            Len(3),
            Str(b"a"),
            Raw(b"\x011"),
            Str(b"b"),
            Raw(b"\x032.5"),
            Str(b"c"),
            Raw(b"\xfe"),
        ]);
        assert_eq!(
            read(kind::ZSET, &v1).unwrap(),
            Object::ZSet {
                pairs: zpairs,
                compact: false
            }
        );
        let nan = bytes(&[Len(1), Str(b"a"), Raw(b"\xfd")]);
        assert!(
            matches!(read(kind::ZSET, &nan).unwrap(), Object::ZSet { ref pairs, .. } if pairs[0].1.is_nan())
        );
        // Quicklist v2 with a plain node.
        let mut lp = listpack::Builder::default();
        lp.push(b"p");
        let ql2 = bytes(&[
            Len(2),
            Len(1),
            Str(b"plain element"),
            Len(2),
            Str(&lp.finish()),
        ]);
        assert_eq!(
            read(kind::LIST_QUICKLIST_2, &ql2).unwrap(),
            Object::List(vec![b("plain element"), b("p")])
        );
        let bad_container = bytes(&[Len(1), Len(3), Str(b"x")]);
        assert!(read(kind::LIST_QUICKLIST_2, &bad_container)
            .unwrap_err()
            .to_string()
            .contains("container 3"));
    }

    #[test]
    fn unsupported_and_unknown_types_name_the_key() {
        assert!(read(kind::MODULE_2, b"")
            .unwrap_err()
            .to_string()
            .contains("module"));
        assert!(read(8, b"")
            .unwrap_err()
            .to_string()
            .contains("unknown object type 8"));
    }

    #[test]
    fn strings_and_lengths() {
        // 64-bit length, LZF, and the integer encodings.
        let mut r = Reader::new(&b"\x81\x00\x00\x00\x00\x00\x00\x00\x02ab"[..]);
        assert_eq!(r.string("s").unwrap(), b"ab");
        let mut r = Reader::new(&b"\xc0\x80\xc1\x00\x80\xc2\x00\x00\x00\x80"[..]);
        assert_eq!(r.string("s").unwrap(), b"-128");
        assert_eq!(r.string("s").unwrap(), b"-32768");
        assert_eq!(r.string("s").unwrap(), b"-2147483648");
        let mut r = Reader::new(&b"\xc3\x0e\x1e\x06abcdefa\xe0\x0c\x05\x01ef"[..]);
        assert_eq!(r.string("s").unwrap(), b"abcdefabcdefabcdefabcdefabcdef");
        // A string that claims more than there is fails at the end, without
        // allocating what it claims.
        let mut r = Reader::new(&b"\x81\x00\x00\x00\xff\x00\x00\x00\x00abc"[..]);
        assert!(matches!(
            r.string("s"),
            Err(RdbError::Truncated { offset: 12, .. })
        ));
        let mut r = Reader::new(&b"\xc4"[..]);
        assert!(r
            .string("s")
            .unwrap_err()
            .to_string()
            .contains("unknown string encoding 4"));
        let mut r = Reader::new(&b"\xc0\x01"[..]);
        assert!(r.len("a length").is_err());
    }
}
