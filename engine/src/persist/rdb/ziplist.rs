//! Ziplists (Redis's `ziplist.c`), read only: Redis 7.0 writes listpacks, but loads the
//! ziplists of older files (lists, hashes and sorted sets, and quicklist v1 nodes).
//! A 10-byte header (total bytes, offset of the last entry, count), entries of previous
//! length + encoding + data, and a 0xFF terminator.

use super::listpack::Elem;
use super::BlobError;

const HEADER: usize = 10;
const END: u8 = 0xFF;

fn err(at: usize, what: &'static str) -> BlobError {
    BlobError {
        blob: "ziplist",
        at,
        what,
    }
}

fn bytes_at(zl: &[u8], at: usize, n: usize) -> Result<&[u8], BlobError> {
    at.checked_add(n)
        .and_then(|end| zl.get(at..end))
        .ok_or_else(|| err(at, "entry runs past the end"))
}

fn le(b: &[u8]) -> i64 {
    let mut v: u64 = 0;
    for (i, &x) in b.iter().enumerate() {
        v |= (x as u64) << (8 * i);
    }
    let shift = 64 - 8 * b.len() as u32;
    ((v << shift) as i64) >> shift
}

/// Decodes and validates a whole ziplist: header size, tail offset and count, every
/// entry's bounds and previous-entry length, the terminator.
pub fn decode(zl: &[u8]) -> Result<Vec<Elem<'_>>, BlobError> {
    if zl.len() < HEADER + 1 {
        return Err(err(0, "shorter than a header"));
    }
    let total = u32::from_le_bytes([zl[0], zl[1], zl[2], zl[3]]) as usize;
    if total != zl.len() {
        return Err(err(0, "header size differs from the data's"));
    }
    let tail = u32::from_le_bytes([zl[4], zl[5], zl[6], zl[7]]) as usize;
    let count = u16::from_le_bytes([zl[8], zl[9]]);
    let mut out = Vec::new();
    let mut p = HEADER;
    let mut prev_len = 0usize;
    let mut last = HEADER;
    loop {
        let first = *zl.get(p).ok_or_else(|| err(p, "no terminator"))?;
        if first == END {
            if p + 1 != zl.len() {
                return Err(err(p, "data after the terminator"));
            }
            break;
        }
        let start = p;
        let (prev, header) = if first < 254 {
            (first as usize, 1)
        } else if first == 254 {
            let b = bytes_at(zl, p + 1, 4)?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 5)
        } else {
            return Err(err(p, "bad previous-entry length"));
        };
        if prev != prev_len {
            return Err(err(p, "previous-entry length does not match"));
        }
        p += header;
        let enc = *zl.get(p).ok_or_else(|| err(p, "entry runs past the end"))?;
        let (elem, end) = match enc >> 6 {
            0 => {
                let n = (enc & 0x3F) as usize;
                (Elem::Str(bytes_at(zl, p + 1, n)?), p + 1 + n)
            }
            1 => {
                let lo = bytes_at(zl, p + 1, 1)?[0];
                let n = (((enc & 0x3F) as usize) << 8) | lo as usize;
                (Elem::Str(bytes_at(zl, p + 2, n)?), p + 2 + n)
            }
            2 => {
                if enc != 0x80 {
                    return Err(err(p, "unknown entry encoding"));
                }
                let b = bytes_at(zl, p + 1, 4)?;
                let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
                (Elem::Str(bytes_at(zl, p + 5, n)?), p + 5 + n)
            }
            _ => {
                let n = match enc {
                    0xC0 => 2,
                    0xD0 => 4,
                    0xE0 => 8,
                    0xF0 => 3,
                    0xFE => 1,
                    0xF1..=0xFD => 0,
                    _ => return Err(err(p, "unknown entry encoding")),
                };
                let v = if n == 0 {
                    (enc & 0x0F) as i64 - 1
                } else {
                    le(bytes_at(zl, p + 1, n)?)
                };
                (Elem::Int(v), p + 1 + n)
            }
        };
        out.push(elem);
        last = start;
        prev_len = end - start;
        p = end;
    }
    if tail != last {
        return Err(err(4, "tail offset does not point at the last entry"));
    }
    if count != u16::MAX && count as usize != out.len() {
        return Err(err(8, "header count differs from the entries"));
    }
    Ok(out)
}

/// Builds ziplists the way Redis 6 wrote them, for tests of the loader.
#[cfg(test)]
pub fn encode(elems: &[&[u8]]) -> Vec<u8> {
    let mut buf = vec![0u8; HEADER];
    let mut prev = 0usize;
    let mut last = HEADER;
    for e in elems {
        let start = buf.len();
        last = start;
        if prev < 254 {
            buf.push(prev as u8);
        } else {
            buf.push(254);
            buf.extend_from_slice(&(prev as u32).to_le_bytes());
        }
        match crate::util::parse_i64(e) {
            Some(v) if (0..=12).contains(&v) => buf.push(0xF1 + v as u8),
            Some(v) if i8::try_from(v).is_ok() => buf.extend_from_slice(&[0xFE, v as u8]),
            Some(v) if i16::try_from(v).is_ok() => {
                buf.push(0xC0);
                buf.extend_from_slice(&(v as i16).to_le_bytes());
            }
            Some(v) if (-8_388_608..=8_388_607).contains(&v) => {
                buf.push(0xF0);
                buf.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
            }
            Some(v) if i32::try_from(v).is_ok() => {
                buf.push(0xD0);
                buf.extend_from_slice(&(v as i32).to_le_bytes());
            }
            Some(v) => {
                buf.push(0xE0);
                buf.extend_from_slice(&v.to_le_bytes());
            }
            None if e.len() < 64 => {
                buf.push(e.len() as u8);
                buf.extend_from_slice(e);
            }
            None if e.len() < 16384 => {
                buf.push(0x40 | (e.len() >> 8) as u8);
                buf.push(e.len() as u8);
                buf.extend_from_slice(e);
            }
            None => {
                buf.push(0x80);
                buf.extend_from_slice(&(e.len() as u32).to_be_bytes());
                buf.extend_from_slice(e);
            }
        }
        prev = buf.len() - start;
    }
    buf.push(END);
    let total = buf.len() as u32;
    buf[..4].copy_from_slice(&total.to_le_bytes());
    buf[4..8].copy_from_slice(&(last as u32).to_le_bytes());
    let count = elems.len().min(u16::MAX as usize) as u16;
    buf[8..10].copy_from_slice(&count.to_le_bytes());
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips_every_encoding() {
        let long = vec![b'q'; 300];
        let huge = vec![b'h'; 17_000];
        let elems: Vec<&[u8]> = vec![
            b"",
            b"a",
            b"0",
            b"12",
            b"13",
            b"-1",
            b"-128",
            b"200",
            b"-32768",
            b"40000",
            b"-8388608",
            b"9000000",
            b"-2147483648",
            b"3000000000",
            b"-9223372036854775808",
            &long,
            &huge,
            b"after-a-big-one",
        ];
        let zl = encode(&elems);
        let got = decode(&zl).unwrap();
        assert_eq!(got.len(), elems.len());
        for (g, e) in got.iter().zip(&elems) {
            assert_eq!(&g.to_bytes()[..], *e);
        }
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    }

    #[test]
    fn garbage_never_panics() {
        let good = encode(&[b"a", b"500", b"hello", &[b'x'; 300]]);
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err());
        }
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..5000 {
            let mut bad = good.clone();
            let i = rng.usize(..bad.len());
            bad[i] = rng.u8(..);
            let _ = decode(&bad);
        }
    }
}
