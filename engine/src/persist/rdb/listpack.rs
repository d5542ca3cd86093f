//! Listpacks (Redis's `listpack.c`): the compact encoding of small hashes and sorted
//! sets and of quicklist nodes. A 6-byte header (total bytes, element count), entries
//! of encoding + data + back length, and a 0xFF terminator.

use super::BlobError;
use crate::util::parse_i64;
use bytes::Bytes;

const HEADER: usize = 6;
const END: u8 = 0xFF;
/// The element count of a listpack with 65535 or more entries (they must be counted).
const COUNT_UNKNOWN: u16 = u16::MAX;

/// One element: listpacks store integers in binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem<'a> {
    Int(i64),
    Str(&'a [u8]),
}

impl Elem<'_> {
    /// The element as Redis returns it: integers in decimal.
    pub fn to_bytes(self) -> Bytes {
        match self {
            Elem::Int(i) => Bytes::from(i.to_string()),
            Elem::Str(s) => Bytes::copy_from_slice(s),
        }
    }
}

/// A listpack being built, element by element.
#[derive(Debug, Clone)]
pub struct Builder {
    buf: Vec<u8>,
    count: usize,
}

impl Default for Builder {
    fn default() -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.resize(HEADER, 0);
        Builder { buf, count: 0 }
    }
}

impl Builder {
    /// Appends an element, in binary when it is a canonical integer (`lpAppend`).
    pub fn push(&mut self, s: &[u8]) {
        match parse_i64(s) {
            Some(i) => self.push_int(i),
            None => self.push_str(s),
        }
    }

    /// Appends an integer in the smallest encoding that holds it.
    pub fn push_int(&mut self, v: i64) {
        let start = self.buf.len();
        if (0..=127).contains(&v) {
            self.buf.push(v as u8);
        } else if (-4096..=4095).contains(&v) {
            let u = (v as u64) & 0x1FFF;
            self.buf.push(0xC0 | (u >> 8) as u8);
            self.buf.push(u as u8);
        } else if (-32768..=32767).contains(&v) {
            self.buf.push(0xF1);
            self.buf.extend_from_slice(&(v as i16).to_le_bytes());
        } else if (-8_388_608..=8_388_607).contains(&v) {
            self.buf.push(0xF2);
            self.buf.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
        } else if (i32::MIN as i64..=i32::MAX as i64).contains(&v) {
            self.buf.push(0xF3);
            self.buf.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            self.buf.push(0xF4);
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
        self.end_entry(start);
    }

    /// Appends a string as it is.
    pub fn push_str(&mut self, s: &[u8]) {
        let start = self.buf.len();
        let n = s.len();
        if n < 64 {
            self.buf.push(0x80 | n as u8);
        } else if n < 4096 {
            self.buf.push(0xE0 | (n >> 8) as u8);
            self.buf.push(n as u8);
        } else {
            self.buf.push(0xF0);
            self.buf.extend_from_slice(&(n as u32).to_le_bytes());
        }
        self.buf.extend_from_slice(s);
        self.end_entry(start);
    }

    fn end_entry(&mut self, start: usize) {
        let mut back = [0u8; 5];
        let n = encode_backlen(&mut back, (self.buf.len() - start) as u64);
        self.buf.extend_from_slice(&back[..n]);
        self.count += 1;
    }

    /// Size of the finished listpack in bytes (`lpBytes`).
    pub fn bytes(&self) -> usize {
        self.buf.len() + 1
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no element was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The finished listpack.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(END);
        let total = self.buf.len() as u32;
        let count = if self.count < COUNT_UNKNOWN as usize {
            self.count as u16
        } else {
            COUNT_UNKNOWN
        };
        self.buf[..4].copy_from_slice(&total.to_le_bytes());
        self.buf[4..6].copy_from_slice(&count.to_le_bytes());
        self.buf
    }
}

/// `lpEncodeBacklen`: the entry length in 7-bit groups, most significant first, every
/// byte but the first with its high bit set (it is read backwards).
fn encode_backlen(buf: &mut [u8; 5], l: u64) -> usize {
    if l <= 127 {
        buf[0] = l as u8;
        1
    } else if l < 16383 {
        buf[0] = (l >> 7) as u8;
        buf[1] = (l & 127) as u8 | 128;
        2
    } else if l < 2_097_151 {
        buf[0] = (l >> 14) as u8;
        buf[1] = ((l >> 7) & 127) as u8 | 128;
        buf[2] = (l & 127) as u8 | 128;
        3
    } else if l < 268_435_455 {
        buf[0] = (l >> 21) as u8;
        buf[1] = ((l >> 14) & 127) as u8 | 128;
        buf[2] = ((l >> 7) & 127) as u8 | 128;
        buf[3] = (l & 127) as u8 | 128;
        4
    } else {
        buf[0] = (l >> 28) as u8;
        buf[1] = ((l >> 21) & 127) as u8 | 128;
        buf[2] = ((l >> 14) & 127) as u8 | 128;
        buf[3] = ((l >> 7) & 127) as u8 | 128;
        buf[4] = (l & 127) as u8 | 128;
        5
    }
}

fn err(at: usize, what: &'static str) -> BlobError {
    BlobError {
        blob: "listpack",
        at,
        what,
    }
}

/// Reads `n` little-endian bytes at `at` as a sign-extended integer.
fn le_int(lp: &[u8], at: usize, n: usize) -> Result<i64, BlobError> {
    let b = lp
        .get(at..at + n)
        .ok_or_else(|| err(at, "entry runs past the end"))?;
    let mut v: u64 = 0;
    for (i, &x) in b.iter().enumerate() {
        v |= (x as u64) << (8 * i);
    }
    let shift = 64 - 8 * n as u32;
    Ok(((v << shift) as i64) >> shift)
}

/// Decodes and validates a whole listpack (`lpValidateIntegrity` with deep checks):
/// the header's size and count, every entry's bounds and back length, the terminator.
pub fn decode(lp: &[u8]) -> Result<Vec<Elem<'_>>, BlobError> {
    if lp.len() < HEADER + 1 {
        return Err(err(0, "shorter than a header"));
    }
    let total = u32::from_le_bytes([lp[0], lp[1], lp[2], lp[3]]) as usize;
    if total != lp.len() {
        return Err(err(0, "header size differs from the data's"));
    }
    let count = u16::from_le_bytes([lp[4], lp[5]]);
    let mut out = Vec::new();
    let mut p = HEADER;
    loop {
        let enc = *lp.get(p).ok_or_else(|| err(p, "no terminator"))?;
        if enc == END {
            if p + 1 != lp.len() {
                return Err(err(p, "data after the terminator"));
            }
            break;
        }
        let start = p;
        let (elem, data_end) = match enc {
            0x00..=0x7F => (Elem::Int(enc as i64), p + 1),
            0x80..=0xBF => str_at(lp, p + 1, (enc & 0x3F) as usize)?,
            0xC0..=0xDF => {
                let lo = *lp
                    .get(p + 1)
                    .ok_or_else(|| err(p, "entry runs past the end"))?;
                let u = (((enc & 0x1F) as i64) << 8) | lo as i64;
                let v = if u >= 1 << 12 { u - (1 << 13) } else { u };
                (Elem::Int(v), p + 2)
            }
            0xE0..=0xEF => {
                let lo = *lp
                    .get(p + 1)
                    .ok_or_else(|| err(p, "entry runs past the end"))?;
                str_at(lp, p + 2, (((enc & 0x0F) as usize) << 8) | lo as usize)?
            }
            0xF0 => {
                let n = le_int(lp, p + 1, 4)? as u32 as usize;
                str_at(lp, p + 5, n)?
            }
            0xF1 => (Elem::Int(le_int(lp, p + 1, 2)?), p + 3),
            0xF2 => (Elem::Int(le_int(lp, p + 1, 3)?), p + 4),
            0xF3 => (Elem::Int(le_int(lp, p + 1, 4)?), p + 5),
            0xF4 => (Elem::Int(le_int(lp, p + 1, 8)?), p + 9),
            _ => return Err(err(p, "unknown entry encoding")),
        };
        let mut back = [0u8; 5];
        let n = encode_backlen(&mut back, (data_end - start) as u64);
        if lp.get(data_end..data_end + n) != Some(&back[..n]) {
            return Err(err(data_end, "back length does not match the entry"));
        }
        out.push(elem);
        p = data_end + n;
    }
    if count != COUNT_UNKNOWN && count as usize != out.len() {
        return Err(err(4, "header count differs from the entries"));
    }
    Ok(out)
}

fn str_at(lp: &[u8], at: usize, n: usize) -> Result<(Elem<'_>, usize), BlobError> {
    let end = at
        .checked_add(n)
        .filter(|&e| e <= lp.len())
        .ok_or_else(|| err(at, "string runs past the end"))?;
    Ok((Elem::Str(&lp[at..end]), end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_redis() {
        // RPUSH l a b 1 200 -5000 70000 abcdefghijklmnopqrstuvwxyz, DUMPed by Redis 7.0.15.
        let mut b = Builder::default();
        for e in [
            "a",
            "b",
            "1",
            "200",
            "-5000",
            "70000",
            "abcdefghijklmnopqrstuvwxyz",
        ] {
            b.push(e.as_bytes());
        }
        let lp = b.finish();
        let redis = b"77\x00\x00\x00\x07\x00\x81a\x02\x81b\x02\x01\x01\xc0\xc8\x02\xf1x\xec\x03\xf2p\x11\x01\x04\x9aabcdefghijklmnopqrstuvwxyz\x1b\xff";
        // The DUMP has the listpack's string length (0x37) first.
        assert_eq!(lp, redis[1..]);
        let got: Vec<Bytes> = decode(&lp)
            .unwrap()
            .into_iter()
            .map(Elem::to_bytes)
            .collect();
        assert_eq!(got[4], "-5000");
        assert_eq!(got[6], "abcdefghijklmnopqrstuvwxyz");
    }

    #[test]
    fn every_encoding_roundtrips() {
        let ints = [
            0i64,
            127,
            128,
            -1,
            -4096,
            4095,
            4096,
            -4097,
            32767,
            -32768,
            32768,
            8_388_607,
            -8_388_608,
            8_388_608,
            i32::MAX as i64,
            i32::MIN as i64,
            i64::MAX,
            i64::MIN,
        ];
        let strs = [
            vec![b'x'; 0],
            vec![b'y'; 63],
            vec![b'z'; 64],
            vec![b'w'; 4095],
            vec![b'v'; 4096],
            vec![b'u'; 20_000],
        ];
        let mut b = Builder::default();
        for i in ints {
            b.push_int(i);
        }
        for s in &strs {
            b.push_str(s);
        }
        b.push(b"007");
        let lp = b.finish();
        let got = decode(&lp).unwrap();
        for (i, v) in ints.iter().enumerate() {
            assert_eq!(got[i], Elem::Int(*v));
        }
        for (i, s) in strs.iter().enumerate() {
            assert_eq!(got[ints.len() + i], Elem::Str(s));
        }
        assert_eq!(got.last(), Some(&Elem::Str(b"007")));
    }

    #[test]
    fn large_counts_are_unknown_in_the_header() {
        let mut b = Builder::default();
        for _ in 0..70_000 {
            b.push_int(1);
        }
        let lp = b.finish();
        assert_eq!(&lp[4..6], &[0xFF, 0xFF]);
        assert_eq!(decode(&lp).unwrap().len(), 70_000);
    }

    #[test]
    fn garbage_never_panics() {
        let mut b = Builder::default();
        for e in ["a", "12", "hello world", "-70000"] {
            b.push(e.as_bytes());
        }
        let good = b.finish();
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err());
        }
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..5000 {
            let mut bad = good.clone();
            let i = rng.usize(..bad.len());
            bad[i] = rng.u8(..);
            let _ = decode(&bad);
        }
    }
}
