//! Streams (`t_stream.c`): entries in compact byte blocks under an ordered map keyed by
//! each block's first ID, as Redis keeps listpacks under a radix tree, plus consumer
//! groups with their pending entries lists.
//!
//! A block (`Node`) starts with its "master" field names (those of its first entry);
//! an entry whose field names are the master's stores only its values (Redis's
//! `SAMEFIELDS` flag), and IDs are deltas from the block's key, so a typical entry
//! costs its values plus a few bytes. Deleting marks an entry's flag in place; a block
//! whose entries are all deleted is dropped. Blocks close as Redis's do (by
//! `stream-node-max-bytes` measured as the Redis listpack would be, and by
//! `stream-node-max-entries`), so XINFO's `radix-tree-keys` and the RDB's listpacks
//! match Redis's.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::fmt;

/// A stream entry ID: milliseconds and sequence number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    /// `0-0`.
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    /// The last possible ID.
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    /// A new ID.
    pub const fn new(ms: u64, seq: u64) -> Self {
        StreamId { ms, seq }
    }

    /// The next ID, `None` past the last.
    pub fn incr(self) -> Option<StreamId> {
        if self.seq < u64::MAX {
            Some(StreamId::new(self.ms, self.seq + 1))
        } else if self.ms < u64::MAX {
            Some(StreamId::new(self.ms + 1, 0))
        } else {
            None
        }
    }

    /// The previous ID, `None` before `0-0`.
    pub fn decr(self) -> Option<StreamId> {
        if self.seq > 0 {
            Some(StreamId::new(self.ms, self.seq - 1))
        } else if self.ms > 0 {
            Some(StreamId::new(self.ms - 1, u64::MAX))
        } else {
            None
        }
    }

    /// Whether this is `0-0`.
    pub fn is_zero(self) -> bool {
        self == StreamId::MIN
    }

    /// The ID as a reply bulk.
    pub fn to_bytes(self) -> Bytes {
        Bytes::from(self.to_string())
    }

    /// The 16-byte big-endian form Redis keys its radix tree and PELs with.
    pub fn to_be_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.ms.to_be_bytes());
        b[8..].copy_from_slice(&self.seq.to_be_bytes());
        b
    }

    /// Reads the 16-byte big-endian form.
    pub fn from_be_bytes(b: &[u8]) -> Option<StreamId> {
        if b.len() != 16 {
            return None;
        }
        let ms = u64::from_be_bytes(b[..8].try_into().ok()?);
        let seq = u64::from_be_bytes(b[8..].try_into().ok()?);
        Some(StreamId::new(ms, seq))
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Block limits (`stream-node-max-bytes`, `stream-node-max-entries`).
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub max_bytes: usize,
    pub max_entries: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_bytes: 4096,
            max_entries: 100,
        }
    }
}

/// Largest listpack Redis builds (`STREAM_LISTPACK_MAX_SIZE`, 1 GiB).
pub const LISTPACK_MAX_SIZE: usize = 1 << 30;

const FLAG_DELETED: u8 = 1;
const FLAG_SAMEFIELDS: u8 = 2;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint at `*pos`. Blocks are only written by this module, so a short read
/// means a bug; it yields 0 rather than a panic.
fn get_varint(b: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    while let Some(&byte) = b.get(*pos) {
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    v
}

fn put_bytes(out: &mut Vec<u8>, s: &[u8]) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

fn get_bytes<'a>(b: &'a [u8], pos: &mut usize) -> &'a [u8] {
    let n = get_varint(b, pos) as usize;
    let start = (*pos).min(b.len());
    let end = start.saturating_add(n).min(b.len());
    *pos = end;
    &b[start..end]
}

/// Bytes one element takes in a Redis listpack (encoding, data, back length).
pub fn lp_entry_size(s: &[u8]) -> usize {
    match crate::util::parse_i64(s) {
        Some(v) if s.len() <= 20 => lp_int_size(v),
        _ => {
            let l = s.len();
            let enc = if l < 64 {
                1 + l
            } else if l < 4096 {
                2 + l
            } else {
                5 + l
            };
            enc + lp_backlen_size(enc)
        }
    }
}

/// Bytes an integer element takes in a Redis listpack.
pub fn lp_int_size(v: i64) -> usize {
    let enc = if (0..=127).contains(&v) {
        1
    } else if (-4096..=4095).contains(&v) {
        2
    } else if (-32768..=32767).contains(&v) {
        3
    } else if (-8_388_608..=8_388_607).contains(&v) {
        4
    } else if (-2_147_483_648..=2_147_483_647).contains(&v) {
        5
    } else {
        9
    };
    enc + lp_backlen_size(enc)
}

fn lp_backlen_size(l: usize) -> usize {
    match l {
        0..=127 => 1,
        128..=16383 => 2,
        16384..=2_097_151 => 3,
        2_097_152..=268_435_455 => 4,
        _ => 5,
    }
}

/// One block of entries (Redis's listpack under a radix-tree key).
#[derive(Debug, Clone)]
struct Node {
    /// Live entries.
    count: u32,
    /// Entries marked deleted.
    deleted: u32,
    /// Bytes the block takes as a Redis listpack, less its count and deleted integers
    /// (which change size as they grow).
    lp_rest: u32,
    /// Where the entries start in `data` (after the master field names).
    entries_at: u32,
    /// The master fields (`count`, then each name), then each entry: flags, ms and seq
    /// deltas, then the field count and names unless SAMEFIELDS, then the values.
    data: Vec<u8>,
}

impl Node {
    fn lp_bytes(&self) -> usize {
        self.lp_rest as usize + lp_int_size(self.count as i64) + lp_int_size(self.deleted as i64)
    }

    /// A new block whose master fields are the names in `fv` (field, value, ...).
    fn new(fv: &[Bytes]) -> Node {
        let numfields = fv.len() / 2;
        let mut data = Vec::new();
        let mut lp_rest = 6 + 1; // header, terminator
        put_varint(&mut data, numfields as u64);
        lp_rest += lp_int_size(numfields as i64);
        for i in 0..numfields {
            put_bytes(&mut data, &fv[i * 2]);
            lp_rest += lp_entry_size(&fv[i * 2]);
        }
        lp_rest += lp_int_size(0); // master terminator
        let entries_at = data.len() as u32;
        Node {
            count: 0,
            deleted: 0,
            lp_rest: lp_rest as u32,
            entries_at,
            data,
        }
    }

    /// Appends an entry with its flags (SAMEFIELDS when its names are the master's),
    /// counting it as live or deleted by its flags.
    fn push_entry(&mut self, master: StreamId, flags: u8, id: StreamId, fv: &[Bytes]) {
        let same = flags & FLAG_SAMEFIELDS != 0;
        let numfields = fv.len() / 2;
        let ms_delta = id.ms.wrapping_sub(master.ms);
        let seq_delta = id.seq.wrapping_sub(master.seq);
        let d = &mut self.data;
        d.push(flags);
        put_varint(d, ms_delta);
        put_varint(d, seq_delta);
        let mut lp = lp_int_size(flags as i64)
            + lp_int_size(ms_delta as i64)
            + lp_int_size(seq_delta as i64);
        if !same {
            put_varint(d, numfields as u64);
            lp += lp_int_size(numfields as i64);
        }
        for i in 0..numfields {
            if !same {
                put_bytes(d, &fv[i * 2]);
                lp += lp_entry_size(&fv[i * 2]);
            }
            put_bytes(d, &fv[i * 2 + 1]);
            lp += lp_entry_size(&fv[i * 2 + 1]);
        }
        let lp_count = if same {
            numfields + 3
        } else {
            numfields * 2 + 4
        };
        lp += lp_int_size(lp_count as i64);
        self.lp_rest += lp as u32;
        if flags & FLAG_DELETED != 0 {
            self.deleted += 1;
        } else {
            self.count += 1;
        }
    }

    /// Whether the names in `fv` (field, value, ...) are the master's, read in place.
    fn same_fields(&self, fv: &[Bytes]) -> bool {
        let mut pos = 0;
        let n = get_varint(&self.data, &mut pos) as usize;
        n == fv.len() / 2
            && fv
                .iter()
                .step_by(2)
                .all(|f| get_bytes(&self.data, &mut pos) == &f[..])
    }

    fn master_fields(&self) -> Vec<&[u8]> {
        let mut pos = 0;
        let n = get_varint(&self.data, &mut pos);
        (0..n).map(|_| get_bytes(&self.data, &mut pos)).collect()
    }

    /// Decodes the entry at `pos`: its flags, ID and fields/values, and where the next
    /// starts.
    fn entry_at(&self, master: StreamId, master_fields: &[&[u8]], mut pos: usize) -> RawEntry {
        let d = &self.data;
        let start = pos;
        let flags = d.get(pos).copied().unwrap_or(0);
        pos += 1;
        let ms = master.ms.wrapping_add(get_varint(d, &mut pos));
        let seq = master.seq.wrapping_add(get_varint(d, &mut pos));
        let mut fv = Vec::new();
        if flags & FLAG_SAMEFIELDS != 0 {
            for f in master_fields {
                fv.push(Bytes::copy_from_slice(f));
                fv.push(Bytes::copy_from_slice(get_bytes(d, &mut pos)));
            }
        } else {
            let n = get_varint(d, &mut pos);
            for _ in 0..n {
                fv.push(Bytes::copy_from_slice(get_bytes(d, &mut pos)));
                fv.push(Bytes::copy_from_slice(get_bytes(d, &mut pos)));
            }
        }
        RawEntry {
            start,
            next: pos,
            flags,
            id: StreamId::new(ms, seq),
            fields: fv,
        }
    }

    /// Skips the entry at `pos` without copying; returns (flags, id, next).
    fn skip_at(&self, master: StreamId, nmaster: usize, mut pos: usize) -> (u8, StreamId, usize) {
        let d = &self.data;
        let flags = d.get(pos).copied().unwrap_or(0);
        pos += 1;
        let ms = master.ms.wrapping_add(get_varint(d, &mut pos));
        let seq = master.seq.wrapping_add(get_varint(d, &mut pos));
        if flags & FLAG_SAMEFIELDS != 0 {
            for _ in 0..nmaster {
                get_bytes(d, &mut pos);
            }
        } else {
            let n = get_varint(d, &mut pos);
            for _ in 0..n * 2 {
                get_bytes(d, &mut pos);
            }
        }
        (flags, StreamId::new(ms, seq), pos)
    }

    /// Offsets, flags and IDs of every entry, deleted ones included.
    fn scan(&self, master: StreamId) -> Vec<(usize, u8, StreamId)> {
        let nmaster = self.master_fields().len();
        let mut out = Vec::with_capacity((self.count + self.deleted) as usize);
        let mut pos = self.entries_at as usize;
        while pos < self.data.len() {
            let (flags, id, next) = self.skip_at(master, nmaster, pos);
            out.push((pos, flags, id));
            pos = next;
        }
        out
    }
}

struct RawEntry {
    start: usize,
    next: usize,
    flags: u8,
    id: StreamId,
    fields: Vec<Bytes>,
}

/// An entry as replies carry it: its ID and flat field, value pairs.
pub type StreamEntry = (StreamId, Vec<Bytes>);

/// A pending entry of a consumer group (Redis's `streamNACK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Last delivery time, Unix ms.
    pub delivery_time: u64,
    pub delivery_count: u64,
    /// The consumer that owns it.
    pub consumer: Bytes,
}

/// A consumer of a group.
#[derive(Debug, Clone, Default)]
pub struct Consumer {
    /// Last time it was seen (read or claimed), Unix ms.
    pub seen_time: u64,
    /// The IDs it owns in the group's PEL.
    pub pel: std::collections::BTreeSet<StreamId>,
}

/// A consumer group (Redis's `streamCG`).
#[derive(Debug, Clone, Default)]
pub struct Group {
    /// The last ID delivered to the group.
    pub last_id: StreamId,
    /// Logical entries read, -1 when unknown (`SCG_INVALID_ENTRIES_READ`).
    pub entries_read: i64,
    /// Delivered but not acknowledged entries.
    pub pel: BTreeMap<StreamId, Pending>,
    /// Consumers by name (ordered as Redis's rax).
    pub consumers: BTreeMap<Bytes, Consumer>,
}

/// `SCG_INVALID_ENTRIES_READ`.
pub const INVALID_ENTRIES_READ: i64 = -1;

/// A stream.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    nodes: BTreeMap<StreamId, Node>,
    length: u64,
    pub last_id: StreamId,
    pub first_id: StreamId,
    pub max_deleted_id: StreamId,
    pub entries_added: u64,
    /// Consumer groups by name.
    pub groups: BTreeMap<Bytes, Group>,
}

/// How XADD/XTRIM trim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trim {
    None,
    MaxLen(u64),
    MinId(StreamId),
}

/// Why an append failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendError {
    /// The ID is not greater than the last one (`EDOM`).
    IdTooSmall,
    /// The entry is larger than a listpack may be (`ERANGE`).
    TooLarge,
}

impl Stream {
    /// Live entries.
    pub fn len(&self) -> u64 {
        self.length
    }

    /// Whether the stream holds no entries (a stream key stays even when empty).
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// Blocks (XINFO's `radix-tree-keys`).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The nodes of the radix tree Redis would hold for these blocks (XINFO's
    /// `radix-tree-nodes`): the compressed trie of the blocks' 16-byte big-endian
    /// keys, with its head node, as `rax.c` shapes it.
    pub fn rax_nodes(&self) -> usize {
        fn count(keys: &[[u8; 16]], depth: usize) -> usize {
            if depth == 16 {
                return 1;
            }
            let (first, last) = (&keys[0], &keys[keys.len() - 1]);
            let mut p = 0;
            while depth + p < 16 && first[depth + p] == last[depth + p] {
                p += 1;
            }
            if p > 0 {
                return 1 + count(keys, depth + p);
            }
            let mut n = 1;
            let mut i = 0;
            while i < keys.len() {
                let c = keys[i][depth];
                let mut j = i;
                while j < keys.len() && keys[j][depth] == c {
                    j += 1;
                }
                n += count(&keys[i..j], depth + 1);
                i = j;
            }
            n
        }
        let keys: Vec<[u8; 16]> = self.nodes.keys().map(|k| k.to_be_bytes()).collect();
        if keys.is_empty() {
            return 1;
        }
        count(&keys, 0)
    }

    /// Appends an entry; `fv` is field, value, ... `id` is the exact ID to use, or
    /// `None` for the next one after `now_ms`; `seq_given` false with an `id` is the
    /// `ms-*` form.
    pub fn append(
        &mut self,
        fv: &[Bytes],
        id: Option<StreamId>,
        seq_given: bool,
        now_ms: u64,
        limits: StreamLimits,
    ) -> Result<StreamId, AppendError> {
        let id = match id {
            None => {
                if now_ms > self.last_id.ms {
                    StreamId::new(now_ms, 0)
                } else {
                    self.last_id.incr().ok_or(AppendError::IdTooSmall)?
                }
            }
            Some(id) if seq_given => id,
            Some(id) => {
                if self.last_id.ms == id.ms {
                    if self.last_id.seq == u64::MAX {
                        return Err(AppendError::IdTooSmall);
                    }
                    StreamId::new(id.ms, self.last_id.seq + 1)
                } else {
                    id
                }
            }
        };
        if id <= self.last_id {
            return Err(AppendError::IdTooSmall);
        }
        let total: usize = fv.iter().map(|b| b.len()).sum();
        if total > LISTPACK_MAX_SIZE {
            return Err(AppendError::TooLarge);
        }
        let max_bytes = if limits.max_bytes == 0 || limits.max_bytes > LISTPACK_MAX_SIZE {
            LISTPACK_MAX_SIZE
        } else {
            limits.max_bytes
        };
        let new_node = match self.nodes.iter().next_back() {
            None => true,
            Some((_, n)) => {
                n.lp_bytes() + total >= max_bytes
                    || (limits.max_entries != 0
                        && (n.count + n.deleted) as usize >= limits.max_entries)
            }
        };
        if new_node {
            self.nodes.insert(id, Node::new(fv));
        }
        let Some((&master, node)) = self.nodes.iter_mut().next_back() else {
            return Err(AppendError::TooLarge);
        };
        let same = node.same_fields(fv);
        let flags = if same { FLAG_SAMEFIELDS } else { 0 };
        node.push_entry(master, flags, id, fv);
        self.length += 1;
        self.entries_added += 1;
        self.last_id = id;
        if self.length == 1 {
            self.first_id = id;
        }
        Ok(id)
    }

    /// Entries with IDs in `start..=end`, at most `count` (0: all), newest first when
    /// `rev`.
    pub fn range(
        &self,
        start: StreamId,
        end: StreamId,
        count: usize,
        rev: bool,
    ) -> Vec<StreamEntry> {
        let mut out = Vec::new();
        if start > end {
            return out;
        }
        let from = self
            .nodes
            .range(..=start)
            .next_back()
            .map(|(k, _)| *k)
            .unwrap_or(start);
        let nodes: Vec<(&StreamId, &Node)> = if rev {
            self.nodes.range(from..=end).rev().collect()
        } else {
            self.nodes.range(from..=end).collect()
        };
        for (&master, node) in nodes {
            let mf = node.master_fields();
            let scan = node.scan(master);
            let mut visit = |pos: usize| -> bool {
                let e = node.entry_at(master, &mf, pos);
                out.push((e.id, e.fields));
                count != 0 && out.len() >= count
            };
            if rev {
                for &(pos, flags, id) in scan.iter().rev() {
                    if flags & FLAG_DELETED != 0 || id > end {
                        continue;
                    }
                    if id < start {
                        return out;
                    }
                    if visit(pos) {
                        return out;
                    }
                }
            } else {
                for &(pos, flags, id) in &scan {
                    if flags & FLAG_DELETED != 0 || id < start {
                        continue;
                    }
                    if id > end {
                        return out;
                    }
                    if visit(pos) {
                        return out;
                    }
                }
            }
        }
        out
    }

    /// The entry with this ID, if present.
    pub fn get(&self, id: StreamId) -> Option<Vec<Bytes>> {
        self.range(id, id, 1, false).pop().map(|(_, f)| f)
    }

    /// The first or last live entry.
    pub fn edge(&self, last: bool) -> Option<StreamEntry> {
        if last {
            self.range(StreamId::MIN, StreamId::MAX, 1, true).pop()
        } else {
            self.range(StreamId::MIN, StreamId::MAX, 1, false).pop()
        }
    }

    /// Deletes one entry (XDEL); true if it was there.
    pub fn delete(&mut self, id: StreamId) -> bool {
        let Some((&master, node)) = self.nodes.range_mut(..=id).next_back() else {
            return false;
        };
        let nmaster = node.master_fields().len();
        let mut pos = node.entries_at as usize;
        let mut found = None;
        while pos < node.data.len() {
            let (flags, eid, next) = node.skip_at(master, nmaster, pos);
            if eid == id {
                if flags & FLAG_DELETED == 0 {
                    found = Some(pos);
                }
                break;
            }
            if eid > id {
                break;
            }
            pos = next;
        }
        let Some(pos) = found else {
            return false;
        };
        node.data[pos] |= FLAG_DELETED;
        node.count -= 1;
        node.deleted += 1;
        self.length -= 1;
        if node.count == 0 {
            self.nodes.remove(&master);
        }
        true
    }

    /// Recomputes `first_id` after removals (`streamGetEdgeID(s,1,1,...)`).
    pub fn refresh_first_id(&mut self) {
        self.first_id = if self.length == 0 {
            StreamId::MIN
        } else {
            self.edge(false).map(|(id, _)| id).unwrap_or(StreamId::MIN)
        };
    }

    /// Trims as `streamTrim`: whole blocks first; within a block only when exact.
    /// `limit` caps the entries removed (0: no cap). Returns the number removed.
    pub fn trim(&mut self, how: Trim, approx: bool, limit: u64) -> u64 {
        if how == Trim::None {
            return 0;
        }
        let mut deleted = 0u64;
        while let Some((&master, node)) = self.nodes.iter().next() {
            if let Trim::MaxLen(max) = how {
                if self.length <= max {
                    break;
                }
            }
            let entries = node.count as u64;
            if limit != 0 && deleted + entries > limit {
                break;
            }
            let remove = match how {
                Trim::MaxLen(max) => self.length - entries >= max,
                Trim::MinId(min) => {
                    let last = node.scan(master).last().map(|e| e.2).unwrap_or(master);
                    last < min
                }
                Trim::None => false,
            };
            if remove {
                self.nodes.remove(&master);
                self.length -= entries;
                deleted += entries;
                continue;
            }
            if approx {
                break;
            }
            let scan = node.scan(master);
            let mut marks = Vec::new();
            let mut length = self.length;
            for (pos, flags, id) in scan {
                let stop = match how {
                    Trim::MaxLen(max) => length <= max,
                    Trim::MinId(min) => id >= min,
                    Trim::None => true,
                };
                if stop {
                    break;
                }
                if flags & FLAG_DELETED == 0 {
                    marks.push(pos);
                    length -= 1;
                }
            }
            if let Some(node) = self.nodes.get_mut(&master) {
                for &pos in &marks {
                    node.data[pos] |= FLAG_DELETED;
                }
                let n = marks.len() as u32;
                node.count -= n;
                node.deleted += n;
            }
            self.length = length;
            deleted += marks.len() as u64;
            break;
        }
        self.refresh_first_id();
        deleted
    }

    /// Whether `start..=end` may hold a deleted entry (`streamRangeHasTombstones`).
    pub fn range_has_tombstones(&self, start: StreamId, end: StreamId) -> bool {
        if self.length == 0 || self.max_deleted_id.is_zero() {
            return false;
        }
        if self.first_id > self.max_deleted_id {
            return false;
        }
        start <= self.max_deleted_id && self.max_deleted_id <= end
    }

    /// The logical position of `id` from the first entry ever added, when it can be
    /// known (`streamEstimateDistanceFromFirstEverEntry`).
    pub fn estimate_distance(&self, id: StreamId) -> i64 {
        if self.entries_added == 0 {
            return 0;
        }
        if self.length == 0 && id <= self.last_id {
            return self.entries_added as i64;
        }
        if id == self.last_id {
            return self.entries_added as i64;
        }
        if id > self.last_id {
            return INVALID_ENTRIES_READ;
        }
        if self.max_deleted_id.is_zero() || self.max_deleted_id < self.first_id {
            if id < self.first_id {
                return (self.entries_added - self.length) as i64;
            }
            if id == self.first_id {
                return (self.entries_added - self.length + 1) as i64;
            }
        }
        INVALID_ENTRIES_READ
    }

    /// A group's lag (`streamReplyWithCGLag`); `None` when unknown.
    pub fn group_lag(&self, g: &Group) -> Option<i64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if g.entries_read != INVALID_ENTRIES_READ
            && !self.range_has_tombstones(g.last_id, StreamId::MAX)
        {
            return Some(self.entries_added as i64 - g.entries_read);
        }
        let read = self.estimate_distance(g.last_id);
        (read != INVALID_ENTRIES_READ).then(|| self.entries_added as i64 - read)
    }

    /// Rebuilds a stream's entries from blocks as a file holds them (deleted entries
    /// and flags kept, so that saving again writes the same listpacks). The caller
    /// sets the IDs, counters and groups. Errors name what is inconsistent.
    pub fn from_blocks(blocks: Vec<Block>) -> Result<Stream, &'static str> {
        let mut s = Stream::default();
        let mut prev: Option<StreamId> = None;
        for b in blocks {
            if prev.is_some_and(|p| b.master <= p) {
                return Err("stream nodes out of order");
            }
            let mut names = Vec::with_capacity(b.master_fields.len() * 2);
            for f in &b.master_fields {
                names.push(f.clone());
                names.push(Bytes::new());
            }
            let mut node = Node::new(&names);
            for (flags, id, fv) in &b.entries {
                if id < &b.master || prev.is_some_and(|p| *id <= p) {
                    return Err("stream entries out of order");
                }
                if fv.len() % 2 != 0 {
                    return Err("a stream entry with an odd field count");
                }
                if flags & FLAG_SAMEFIELDS != 0
                    && (fv.len() / 2 != b.master_fields.len()
                        || fv
                            .iter()
                            .step_by(2)
                            .zip(&b.master_fields)
                            .any(|(a, m)| a != m))
                {
                    return Err("a stream entry marked with the master's fields that has others");
                }
                node.push_entry(b.master, *flags, *id, fv);
                prev = Some(*id);
            }
            if node.count != b.count || node.deleted != b.deleted {
                return Err("a stream node whose counts differ from its entries");
            }
            if node.count == 0 {
                return Err("a stream node without live entries");
            }
            s.length += node.count as u64;
            s.nodes.insert(b.master, node);
        }
        Ok(s)
    }

    /// Every block as (first ID, live, deleted, master fields, entries with their
    /// flags), for the RDB writer.
    pub fn blocks(&self) -> Vec<Block> {
        self.nodes
            .iter()
            .map(|(&master, node)| {
                let mf: Vec<Bytes> = node
                    .master_fields()
                    .into_iter()
                    .map(Bytes::copy_from_slice)
                    .collect();
                let mfr: Vec<&[u8]> = mf.iter().map(|b| &b[..]).collect();
                let mut entries = Vec::new();
                let mut pos = node.entries_at as usize;
                while pos < node.data.len() {
                    let e = node.entry_at(master, &mfr, pos);
                    debug_assert!(e.start == pos);
                    entries.push((e.flags, e.id, e.fields));
                    pos = e.next;
                }
                Block {
                    master,
                    count: node.count,
                    deleted: node.deleted,
                    master_fields: mf,
                    entries,
                }
            })
            .collect()
    }

    /// Rough heap footprint in bytes (MEMORY USAGE, INFO).
    pub fn mem_usage(&self) -> usize {
        let nodes: usize = self
            .nodes
            .values()
            .map(|n| n.data.capacity() + std::mem::size_of::<Node>() + 32)
            .sum();
        let groups: usize = self
            .groups
            .iter()
            .map(|(name, g)| {
                name.len()
                    + 64
                    + g.pel.len() * 64
                    + g.consumers
                        .iter()
                        .map(|(n, c)| n.len() + 48 + c.pel.len() * 24)
                        .sum::<usize>()
            })
            .sum();
        std::mem::size_of::<Stream>() + nodes + groups
    }
}

/// One block as the RDB writer sees it.
#[derive(Debug, Clone)]
pub struct Block {
    /// The block's key: its first entry's ID.
    pub master: StreamId,
    pub count: u32,
    pub deleted: u32,
    pub master_fields: Vec<Bytes>,
    /// (flags, ID, field/value pairs) of every entry, deleted ones included.
    pub entries: Vec<(u8, StreamId, Vec<Bytes>)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fv(pairs: &[&str]) -> Vec<Bytes> {
        pairs
            .iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    #[test]
    fn append_range_delete_trim() {
        let mut s = Stream::default();
        let lim = StreamLimits {
            max_bytes: 4096,
            max_entries: 3,
        };
        for i in 1..=10u64 {
            let f = if i % 4 == 0 {
                fv(&["other", "x"])
            } else {
                fv(&["a", &i.to_string()])
            };
            assert_eq!(
                s.append(&f, Some(StreamId::new(i, 0)), true, 0, lim),
                Ok(StreamId::new(i, 0))
            );
        }
        assert_eq!(s.len(), 10);
        assert_eq!(s.node_count(), 4);
        let all = s.range(StreamId::MIN, StreamId::MAX, 0, false);
        assert_eq!(all.len(), 10);
        assert_eq!(all[3].1, fv(&["other", "x"]));
        assert_eq!(all[4].1, fv(&["a", "5"]));
        let rev = s.range(StreamId::new(3, 0), StreamId::new(7, 0), 2, true);
        assert_eq!(rev.iter().map(|e| e.0.ms).collect::<Vec<_>>(), vec![7, 6]);
        assert!(s.delete(StreamId::new(5, 0)));
        assert!(!s.delete(StreamId::new(5, 0)));
        assert_eq!(s.len(), 9);
        assert_eq!(s.trim(Trim::MaxLen(5), false, 0), 4);
        assert_eq!(s.len(), 5);
        assert_eq!(s.first_id, StreamId::new(6, 0));
        assert_eq!(
            s.append(&fv(&["a", "1"]), Some(StreamId::new(10, 0)), true, 0, lim),
            Err(AppendError::IdTooSmall)
        );
        assert_eq!(
            s.append(&fv(&["a", "1"]), Some(StreamId::new(10, 0)), false, 0, lim),
            Ok(StreamId::new(10, 1))
        );
    }

    #[test]
    fn listpack_sizes_follow_redis() {
        assert_eq!(lp_int_size(0), 2);
        assert_eq!(lp_int_size(127), 2);
        assert_eq!(lp_int_size(128), 3);
        assert_eq!(lp_entry_size(b"hello"), 7);
        assert_eq!(lp_entry_size(b"100"), 2);
        assert_eq!(lp_entry_size(b"0100"), 6);
        // The same sizes as the listpack the RDB writer builds.
        let samples: Vec<Vec<u8>> = vec![
            b"x".to_vec(),
            b"-1".to_vec(),
            b"5000".to_vec(),
            b"-40000".to_vec(),
            b"9000000".to_vec(),
            b"3000000000".to_vec(),
            b"9223372036854775807".to_vec(),
            vec![b'a'; 63],
            vec![b'a'; 64],
            vec![b'a'; 4095],
            vec![b'a'; 4096],
            vec![b'a'; 20000],
        ];
        for s in samples {
            let mut lp = crate::persist::rdb::listpack::Builder::default();
            let before = lp.bytes();
            lp.push(&s);
            assert_eq!(lp.bytes() - before, lp_entry_size(&s), "{}", s.len());
        }
    }
}
