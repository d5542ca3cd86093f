//! Writing RDB primitives as `rdb.c` does: lengths (`rdbSaveLen`), strings with their
//! integer and LZF encodings (`rdbSaveRawString`), binary doubles, and quicklist nodes
//! split as Redis's quicklist splits a list pushed at the tail.

use super::listpack;
use super::lzf::Compressor;
use std::io::{self, Write};

/// Quicklist node size limits of the negative `list-max-listpack-size` values -1..-5.
const NODE_SIZE_LEVELS: [usize; 5] = [4096, 8192, 16384, 32768, 65536];
/// Largest node whatever a positive fill says (`SIZE_SAFETY_LIMIT`).
const NODE_SAFETY_LIMIT: usize = 8192;
/// What `_quicklistNodeAllowInsert` adds to an element's size for its entry overhead.
const SIZE_ESTIMATE_OVERHEAD: usize = 8;
/// Elements from this size up get a node of their own (`packed_threshold`).
const PLAIN_THRESHOLD: usize = 1 << 30;

/// Writes primitives; holds the LZF compressor's table between strings.
#[derive(Debug)]
pub(crate) struct Encoder {
    compression: bool,
    lzf: Compressor,
}

impl Encoder {
    /// `compression`: `rdbcompression`, LZF for strings longer than 20 bytes.
    pub(crate) fn new(compression: bool) -> Self {
        Encoder {
            compression,
            lzf: Compressor::default(),
        }
    }

    /// `rdbSaveLen`.
    pub(crate) fn len<W: Write>(&self, w: &mut W, n: u64) -> io::Result<()> {
        if n < 1 << 6 {
            w.write_all(&[n as u8])
        } else if n < 1 << 14 {
            w.write_all(&[0x40 | (n >> 8) as u8, n as u8])
        } else if n <= u32::MAX as u64 {
            w.write_all(&[0x80])?;
            w.write_all(&(n as u32).to_be_bytes())
        } else {
            w.write_all(&[0x81])?;
            w.write_all(&n.to_be_bytes())
        }
    }

    /// `rdbSaveRawString`: as an 8/16/32-bit integer when the text is one (up to 11
    /// bytes), LZF-compressed when enabled, longer than 20 bytes and at least 4 bytes
    /// smaller, else as it is.
    pub(crate) fn string<W: Write>(&mut self, w: &mut W, s: &[u8]) -> io::Result<()> {
        if s.len() <= 11 {
            if let Some(v) = crate::util::parse_i64(s) {
                if let Ok(v) = i8::try_from(v) {
                    return w.write_all(&[0xC0, v as u8]);
                }
                if let Ok(v) = i16::try_from(v) {
                    let b = v.to_le_bytes();
                    return w.write_all(&[0xC1, b[0], b[1]]);
                }
                if let Ok(v) = i32::try_from(v) {
                    w.write_all(&[0xC2])?;
                    return w.write_all(&v.to_le_bytes());
                }
            }
        }
        if self.compression && s.len() > 20 {
            if let Some(c) = self.lzf.compress(s, s.len() - 4) {
                w.write_all(&[0xC3])?;
                self.len(w, c.len() as u64)?;
                self.len(w, s.len() as u64)?;
                return w.write_all(&c);
            }
        }
        self.len(w, s.len() as u64)?;
        w.write_all(s)
    }

    /// `rdbSaveBinaryDoubleValue`.
    pub(crate) fn binary_double<W: Write>(&self, w: &mut W, d: f64) -> io::Result<()> {
        w.write_all(&d.to_le_bytes())
    }

    /// A list as RDB_TYPE_LIST_QUICKLIST_2: the node count, then each node's container
    /// (1 plain, 2 packed) and its element or listpack. `fill` is
    /// `list-max-listpack-size`.
    pub(crate) fn quicklist<'a, W: Write>(
        &mut self,
        w: &mut W,
        items: impl Iterator<Item = &'a [u8]>,
        fill: i64,
    ) -> io::Result<()> {
        let nodes = split_nodes(items, fill);
        self.len(w, nodes.len() as u64)?;
        for node in nodes {
            match node {
                Node::Plain(item) => {
                    self.len(w, 1)?;
                    self.string(w, item)?;
                }
                Node::Packed(lp) => {
                    self.len(w, 2)?;
                    self.string(w, &lp.finish())?;
                }
            }
        }
        Ok(())
    }
}

/// A quicklist node.
enum Node<'a> {
    Plain(&'a [u8]),
    Packed(listpack::Builder),
}

/// Splits a list into nodes as RPUSH fills them (`quicklistPushTail`).
fn split_nodes<'a>(items: impl Iterator<Item = &'a [u8]>, fill: i64) -> Vec<Node<'a>> {
    // quicklistSetFill's bounds.
    let fill = fill.clamp(-5, (1 << 15) - 1);
    let mut nodes = Vec::new();
    let mut current: Option<listpack::Builder> = None;
    for item in items {
        if item.len() >= PLAIN_THRESHOLD {
            if let Some(lp) = current.take() {
                nodes.push(Node::Packed(lp));
            }
            nodes.push(Node::Plain(item));
            continue;
        }
        let room = current
            .as_ref()
            .is_some_and(|lp| allows_insert(lp.bytes(), lp.len(), fill, item.len()));
        if !room {
            if let Some(lp) = current.take() {
                nodes.push(Node::Packed(lp));
            }
        }
        current.get_or_insert_with(Default::default).push(item);
    }
    if let Some(lp) = current {
        nodes.push(Node::Packed(lp));
    }
    nodes
}

/// `_quicklistNodeAllowInsert` of Redis 7.0: whether a node of `node_bytes` and
/// `count` elements takes one more of `size` bytes.
fn allows_insert(node_bytes: usize, count: usize, fill: i64, size: usize) -> bool {
    let new_size = node_bytes + size + SIZE_ESTIMATE_OVERHEAD;
    if fill < 0 {
        let level = (-fill - 1) as usize;
        if NODE_SIZE_LEVELS
            .get(level)
            .is_some_and(|&max| new_size <= max)
        {
            return true;
        }
    }
    if new_size > NODE_SAFETY_LIMIT {
        return false;
    }
    (count as i64) < fill
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(f: impl FnOnce(&mut Encoder, &mut Vec<u8>) -> io::Result<()>) -> Vec<u8> {
        let mut e = Encoder::new(true);
        let mut out = Vec::new();
        f(&mut e, &mut out).unwrap();
        out
    }

    #[test]
    fn lengths() {
        assert_eq!(encoded(|e, w| e.len(w, 63)), [63]);
        assert_eq!(encoded(|e, w| e.len(w, 64)), [0x40, 64]);
        assert_eq!(encoded(|e, w| e.len(w, 16383)), [0x7F, 0xFF]);
        assert_eq!(encoded(|e, w| e.len(w, 16384)), [0x80, 0, 0, 0x40, 0]);
        assert_eq!(
            encoded(|e, w| e.len(w, 1 << 32)),
            [0x81, 0, 0, 0, 1, 0, 0, 0, 0]
        );
    }

    #[test]
    fn strings_as_redis_writes_them() {
        assert_eq!(encoded(|e, w| e.string(w, b"12345")), b"\xc1\x39\x30");
        assert_eq!(encoded(|e, w| e.string(w, b"-1")), b"\xc0\xff");
        assert_eq!(
            encoded(|e, w| e.string(w, b"2147483647")),
            b"\xc2\xff\xff\xff\x7f"
        );
        // Too wide for 32 bits, or not canonical: written as text.
        assert_eq!(
            encoded(|e, w| e.string(w, b"2147483648")),
            b"\x0a2147483648"
        );
        assert_eq!(encoded(|e, w| e.string(w, b"012")), b"\x03012");
        assert_eq!(
            encoded(|e, w| e.string(w, b"abcdefabcdefabcdefabcdefabcdef")),
            b"\xc3\x0e\x1e\x06abcdefa\xe0\x0c\x05\x01ef"
        );
        let mut plain = Encoder::new(false);
        let mut out = Vec::new();
        plain.string(&mut out, &[b'a'; 30]).unwrap();
        assert_eq!(out.len(), 31);
    }

    #[test]
    fn nodes_split_by_size_and_count() {
        let items: Vec<Vec<u8>> = (0..2000)
            .map(|i| format!("element-{i}").into_bytes())
            .collect();
        let refs = || items.iter().map(|v| v.as_slice());
        // -2: 8 KiB nodes.
        let nodes = split_nodes(refs(), -2);
        assert!(nodes.len() > 1);
        for n in &nodes {
            if let Node::Packed(lp) = n {
                assert!(lp.bytes() <= 8192);
            }
        }
        // A count limit.
        let nodes = split_nodes(refs(), 100);
        assert_eq!(nodes.len(), 20);
        // A huge element gets a plain node of its own.
        let big = vec![0u8; PLAIN_THRESHOLD];
        let list: Vec<&[u8]> = vec![b"a", &big, b"b"];
        let nodes = split_nodes(list.into_iter(), -2);
        assert!(matches!(
            nodes[..],
            [Node::Packed(_), Node::Plain(_), Node::Packed(_)]
        ));
    }
}
