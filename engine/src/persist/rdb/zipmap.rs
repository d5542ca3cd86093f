//! Zipmaps (Redis's `zipmap.c`), read only: the small-hash encoding of files from
//! Redis 2.4 and older, which Redis 7.0 still loads. A count byte, then key length, key,
//! value length, free-space byte, value and free space per pair, and a 0xFF terminator.

use super::BlobError;

const BIGLEN: u8 = 254;
const END: u8 = 0xFF;

fn err(at: usize, what: &'static str) -> BlobError {
    BlobError {
        blob: "zipmap",
        at,
        what,
    }
}

/// Reads a length at `p`; `None` at the terminator.
fn length(zm: &[u8], p: usize) -> Result<Option<(usize, usize)>, BlobError> {
    match zm.get(p) {
        None => Err(err(p, "no terminator")),
        Some(&END) => Ok(None),
        Some(&BIGLEN) => {
            let b = zm
                .get(p + 1..p + 5)
                .ok_or_else(|| err(p, "length runs past the end"))?;
            Ok(Some((
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize,
                5,
            )))
        }
        Some(&n) => Ok(Some((n as usize, 1))),
    }
}

fn slice(zm: &[u8], at: usize, n: usize) -> Result<&[u8], BlobError> {
    at.checked_add(n)
        .and_then(|end| zm.get(at..end))
        .ok_or_else(|| err(at, "entry runs past the end"))
}

/// A (field, value) pair borrowed from a zipmap.
pub type Pair<'a> = (&'a [u8], &'a [u8]);

/// Decodes and validates a whole zipmap into (field, value) pairs.
pub fn decode(zm: &[u8]) -> Result<Vec<Pair<'_>>, BlobError> {
    let count = *zm.first().ok_or_else(|| err(0, "empty"))?;
    let mut p = 1;
    let mut out = Vec::new();
    while let Some((klen, h)) = length(zm, p)? {
        p += h;
        let key = slice(zm, p, klen)?;
        p += klen;
        let (vlen, h) = length(zm, p)?.ok_or_else(|| err(p, "a key without a value"))?;
        p += h;
        let free = *zm.get(p).ok_or_else(|| err(p, "entry runs past the end"))? as usize;
        p += 1;
        let value = slice(zm, p, vlen)?;
        p += vlen;
        slice(zm, p, free)?;
        p += free;
        out.push((key, value));
    }
    if p + 1 != zm.len() {
        return Err(err(p, "data after the terminator"));
    }
    if count < BIGLEN && count as usize != out.len() {
        return Err(err(0, "count differs from the entries"));
    }
    Ok(out)
}

/// Builds zipmaps the way Redis 2.4 wrote them, for tests of the loader.
#[cfg(test)]
pub fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    fn len(buf: &mut Vec<u8>, n: usize) {
        if n < BIGLEN as usize {
            buf.push(n as u8);
        } else {
            buf.push(BIGLEN);
            buf.extend_from_slice(&(n as u32).to_le_bytes());
        }
    }
    let mut buf = vec![pairs.len().min(BIGLEN as usize) as u8];
    for (k, v) in pairs {
        len(&mut buf, k.len());
        buf.extend_from_slice(k);
        len(&mut buf, v.len());
        // One byte of free space after each value, as an in-place update leaves it.
        buf.push(1);
        buf.extend_from_slice(v);
        buf.push(0);
    }
    buf.push(END);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips() {
        let big = vec![b'b'; 300];
        let pairs: Vec<(&[u8], &[u8])> = vec![(b"f", b"v"), (b"", b""), (b"big", &big)];
        let zm = encode(&pairs);
        assert_eq!(decode(&zm).unwrap(), pairs);
        for cut in 0..zm.len() {
            assert!(decode(&zm[..cut]).is_err());
        }
    }
}
