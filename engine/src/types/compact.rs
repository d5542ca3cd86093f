//! A compact byte string for keys and string values: 24 bytes, with up to 22 bytes
//! stored inline (no allocation, like Redis's embstr saving its second allocation) and
//! longer strings in a shared `Arc<[u8]>` (cheap to clone, and a large value can be
//! handed to a reply without copying).
//!
//! A heap string may have spare capacity at the end of its buffer, so that APPEND and
//! SETRANGE in a loop grow it in amortised O(1) as Redis's `sdsMakeRoomFor` does.

use bytes::Bytes;
use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// Longest string stored inline.
pub const INLINE_CAP: usize = 22;

/// Values from this length up are handed to replies by sharing the buffer
/// (`Bytes::from_owner`) instead of copying it; below, a copy is cheaper.
const SHARE_FROM: usize = 512;

/// Growth of an edited heap string beyond this many bytes is linear (+1 MiB), below
/// it doubles: Redis's `SDS_MAX_PREALLOC`.
const MAX_PREALLOC: usize = 1024 * 1024;

/// The length of an inline string. An enum rather than a `u8` so that its 233 unused
/// values are a niche: `Repr`'s heap variant and `Value`'s boxed variants are told
/// apart by this byte, which keeps both `CompactBytes` and `Value` at 24 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum InlineLen {
    L0 = 0,
    L1,
    L2,
    L3,
    L4,
    L5,
    L6,
    L7,
    L8,
    L9,
    L10,
    L11,
    L12,
    L13,
    L14,
    L15,
    L16,
    L17,
    L18,
    L19,
    L20,
    L21,
    L22,
}

const LENS: [InlineLen; INLINE_CAP + 1] = {
    use InlineLen::*;
    [
        L0, L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12, L13, L14, L15, L16, L17, L18, L19,
        L20, L21, L22,
    ]
};

#[derive(Clone)]
enum Repr {
    Inline {
        buf: [u8; INLINE_CAP],
        len: InlineLen,
    },
    /// `buf[..buf.len() - spare]` is the string; the rest is capacity for growth.
    Heap { buf: Arc<[u8]>, spare: u32 },
}

/// An immutable-by-default byte string of 24 bytes; see the module documentation.
#[derive(Clone)]
pub struct CompactBytes(Repr);

const _: () = assert!(std::mem::size_of::<CompactBytes>() == 24);
const _: () = assert!(std::mem::size_of::<Option<CompactBytes>>() == 24);

impl CompactBytes {
    /// The empty string.
    pub const fn new() -> Self {
        CompactBytes(Repr::Inline {
            buf: [0; INLINE_CAP],
            len: InlineLen::L0,
        })
    }

    /// A copy of `s`: inline when it fits, otherwise one exact-size allocation.
    pub fn copy_from_slice(s: &[u8]) -> Self {
        if s.len() <= INLINE_CAP {
            let mut buf = [0; INLINE_CAP];
            buf[..s.len()].copy_from_slice(s);
            CompactBytes(Repr::Inline {
                buf,
                len: LENS[s.len()],
            })
        } else {
            CompactBytes(Repr::Heap {
                buf: Arc::from(s),
                spare: 0,
            })
        }
    }

    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { buf, len } => &buf[..*len as usize],
            Repr::Heap { buf, spare } => &buf[..buf.len() - *spare as usize],
        }
    }

    /// Whether the bytes live inside the struct (no allocation).
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline { .. })
    }

    /// Heap bytes owned by this string beyond the struct itself (capacity included),
    /// for memory estimates.
    pub fn heap_size(&self) -> usize {
        match &self.0 {
            Repr::Inline { .. } => 0,
            // Arc's two counters precede the bytes.
            Repr::Heap { buf, .. } => buf.len() + 16,
        }
    }

    /// The bytes as a `Bytes` for a reply: large heap strings share the buffer, small
    /// ones are copied (one allocation either way).
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            Repr::Heap { buf, spare } if buf.len() >= SHARE_FROM => {
                let len = buf.len() - *spare as usize;
                let b = Bytes::from_owner(ArcBytes(buf.clone()));
                if *spare == 0 {
                    b
                } else {
                    b.slice(..len)
                }
            }
            _ => Bytes::copy_from_slice(self.as_slice()),
        }
    }

    /// Resizes the string to `new_len` bytes (new bytes are zero) and returns them for
    /// editing. The buffer is reused when this string is its only owner and it has the
    /// room; otherwise it is copied into a new one with room to grow as `sdsMakeRoomFor`.
    pub fn resize_mut(&mut self, new_len: usize) -> &mut [u8] {
        let old_len = self.len();
        let reuse = match &mut self.0 {
            Repr::Inline { len, .. } if new_len <= INLINE_CAP => {
                *len = LENS[new_len];
                true
            }
            // Reuse a unique buffer with the room, unless that leaves more spare than
            // the u32 holds (only possible after a large shrink).
            Repr::Heap { buf, spare }
                if buf.len() >= new_len && buf.len() - new_len <= u32::MAX as usize =>
            {
                match Arc::get_mut(buf) {
                    Some(b) => {
                        // Bytes past the old end may hold data from before a shrink.
                        if new_len > old_len {
                            b[old_len..new_len].fill(0);
                        }
                        *spare = (b.len() - new_len) as u32;
                        true
                    }
                    None => false,
                }
            }
            _ => false,
        };
        if !reuse {
            let cap = if new_len <= INLINE_CAP {
                new_len
            } else if new_len > old_len {
                // Greedy growth only when the string grows, as Redis does on edits.
                if new_len < MAX_PREALLOC {
                    new_len * 2
                } else {
                    new_len + MAX_PREALLOC
                }
            } else {
                new_len
            };
            let keep = old_len.min(new_len);
            if cap <= INLINE_CAP {
                let mut buf = [0; INLINE_CAP];
                buf[..keep].copy_from_slice(&self.as_slice()[..keep]);
                self.0 = Repr::Inline {
                    buf,
                    len: LENS[new_len],
                };
            } else {
                // One zeroed allocation of the final size (the iterator is TrustedLen).
                let mut fresh: Arc<[u8]> = std::iter::repeat_n(0u8, cap).collect();
                if let Some(b) = Arc::get_mut(&mut fresh) {
                    b[..keep].copy_from_slice(&self.as_slice()[..keep]);
                }
                self.0 = Repr::Heap {
                    buf: fresh,
                    spare: (cap - new_len) as u32,
                };
            }
        }
        match &mut self.0 {
            Repr::Inline { buf, len } => &mut buf[..*len as usize],
            Repr::Heap { buf, spare } => {
                let end = buf.len() - *spare as usize;
                match Arc::get_mut(buf) {
                    Some(b) => &mut b[..end],
                    // Unreachable: the buffer above is unique. Fall back to an empty
                    // edit window rather than panicking.
                    None => &mut [],
                }
            }
        }
    }

    /// Appends bytes (APPEND), growing the buffer greedily.
    pub fn extend_from_slice(&mut self, add: &[u8]) {
        let old = self.len();
        let dst = self.resize_mut(old + add.len());
        if dst.len() == old + add.len() {
            dst[old..].copy_from_slice(add);
        }
    }
}

/// An `Arc<[u8]>` as the owner of a `Bytes`.
struct ArcBytes(Arc<[u8]>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Default for CompactBytes {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for CompactBytes {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for CompactBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// Lets maps keyed by `CompactBytes` be looked up with a `&[u8]`; sound because
/// `Hash`, `Eq` and `Ord` below are exactly those of the byte slice.
impl Borrow<[u8]> for CompactBytes {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Hash for CompactBytes {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

impl PartialEq for CompactBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for CompactBytes {}

impl PartialOrd for CompactBytes {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for CompactBytes {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl PartialEq<[u8]> for CompactBytes {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<&[u8]> for CompactBytes {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_slice() == *other
    }
}

impl PartialEq<Bytes> for CompactBytes {
    fn eq(&self, other: &Bytes) -> bool {
        self.as_slice() == other.as_ref()
    }
}

impl From<&[u8]> for CompactBytes {
    fn from(s: &[u8]) -> Self {
        Self::copy_from_slice(s)
    }
}

impl From<&Bytes> for CompactBytes {
    fn from(s: &Bytes) -> Self {
        Self::copy_from_slice(s)
    }
}

impl From<Bytes> for CompactBytes {
    fn from(s: Bytes) -> Self {
        Self::copy_from_slice(&s)
    }
}

impl From<Vec<u8>> for CompactBytes {
    fn from(v: Vec<u8>) -> Self {
        if v.len() <= INLINE_CAP {
            Self::copy_from_slice(&v)
        } else {
            CompactBytes(Repr::Heap {
                buf: Arc::from(v),
                spare: 0,
            })
        }
    }
}

impl From<&str> for CompactBytes {
    fn from(s: &str) -> Self {
        Self::copy_from_slice(s.as_bytes())
    }
}

impl From<String> for CompactBytes {
    fn from(s: String) -> Self {
        Self::from(s.into_bytes())
    }
}

impl From<&CompactBytes> for Bytes {
    fn from(c: &CompactBytes) -> Bytes {
        c.to_bytes()
    }
}

impl fmt::Debug for CompactBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Same form as `Bytes`'s Debug: b"..." with escapes.
        write!(f, "b\"")?;
        for &c in self.as_slice() {
            if c == b'"' || c == b'\\' {
                write!(f, "\\{}", c as char)?;
            } else if (0x20..0x7f).contains(&c) {
                write!(f, "{}", c as char)?;
            } else {
                write!(f, "\\x{c:02x}")?;
            }
        }
        write!(f, "\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;

    #[test]
    fn inline_heap_boundary() {
        let a = CompactBytes::from(&[7u8; 22][..]);
        assert!(a.is_inline());
        assert_eq!(a.as_slice(), &[7u8; 22][..]);
        let b = CompactBytes::from(&[7u8; 23][..]);
        assert!(!b.is_inline());
        assert_eq!(b.as_slice(), &[7u8; 23][..]);
        assert!(CompactBytes::new().is_inline());
        assert!(CompactBytes::new().is_empty());
        assert!(CompactBytes::from(vec![1u8; 22]).is_inline());
        assert!(!CompactBytes::from(vec![1u8; 23]).is_inline());
    }

    #[test]
    fn hashes_and_compares_as_slice() {
        let s = RandomState::new();
        for n in [0, 1, 21, 22, 23, 100] {
            let v: Vec<u8> = (0..n as u8).collect();
            let c = CompactBytes::from(&v[..]);
            assert_eq!(s.hash_one(&c), s.hash_one(&v[..]));
            assert_eq!(c, v[..]);
            assert_eq!(c, Bytes::from(v.clone()));
        }
        let (a, b) = (CompactBytes::from("a"), CompactBytes::from("b"));
        assert!(a < b);
        let (long, short) = (
            CompactBytes::from(&[1u8; 30][..]),
            CompactBytes::from(&[1u8; 22][..]),
        );
        assert!(long > short);
    }

    #[test]
    fn borrow_lookups() {
        let mut m = indexmap::IndexMap::new();
        m.insert(CompactBytes::from("short"), 1);
        m.insert(CompactBytes::from(&[b'x'; 40][..]), 2);
        assert_eq!(m.get(&b"short"[..]), Some(&1));
        assert_eq!(m.get(&[b'x'; 40][..]), Some(&2));
        assert_eq!(m.get(&b"missing"[..]), None);
        let mut h = std::collections::HashMap::new();
        h.insert(CompactBytes::from(&[3u8; 23][..]), ());
        assert!(h.contains_key(&[3u8; 23][..]));
    }

    #[test]
    fn to_bytes_small_and_large() {
        for n in [0, 5, 22, 23, 511, 512, 4096] {
            let v = vec![9u8; n];
            assert_eq!(CompactBytes::from(&v[..]).to_bytes(), v);
        }
    }

    #[test]
    fn resize_and_append() {
        let mut c = CompactBytes::from("abc");
        c.extend_from_slice(b"def");
        assert_eq!(c, b"abcdef"[..]);
        assert!(c.is_inline());
        // Crossing the inline boundary moves to the heap with room to grow.
        c.extend_from_slice(&[b'x'; 20]);
        assert!(!c.is_inline());
        assert_eq!(c.len(), 26);
        assert!(c.heap_size() >= 52);
        // Further appends reuse the buffer.
        let cap = c.heap_size();
        c.extend_from_slice(b"yz");
        assert_eq!(c.heap_size(), cap);
        assert_eq!(&c[24..], b"xxyz");
        // Growing with resize zero-fills, even over bytes left by a shrink.
        let mut d = CompactBytes::from(&[5u8; 40][..]);
        d.resize_mut(30);
        assert_eq!(d.len(), 30);
        let w = d.resize_mut(35);
        assert_eq!(&w[30..], &[0; 5]);
        assert_eq!(&w[..30], &[5; 30][..]);
        // A shared buffer is copied, not edited under the other owner.
        let shared = d.clone();
        d.resize_mut(35)[0] = 1;
        assert_eq!(shared[0], 5);
        assert_eq!(d[0], 1);
        // Shrinking a heap string below the inline size keeps the heap buffer if unique.
        let mut e = CompactBytes::from(&[1u8; 30][..]);
        e.resize_mut(3);
        assert_eq!(e, [1u8, 1, 1][..]);
        // A large appended value handed to a reply shares its buffer.
        let mut big = CompactBytes::new();
        for _ in 0..100 {
            big.extend_from_slice(&[2u8; 50]);
        }
        assert_eq!(big.len(), 5000);
        assert_eq!(big.to_bytes(), vec![2u8; 5000]);
    }
}
