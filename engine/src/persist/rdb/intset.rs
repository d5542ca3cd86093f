//! Intsets (Redis's `intset.c`): a sorted array of integers of one width (2, 4 or 8
//! bytes), little-endian, after a header of the width and the count.

use super::BlobError;

fn err(at: usize, what: &'static str) -> BlobError {
    BlobError {
        blob: "intset",
        at,
        what,
    }
}

/// Encodes ascending integers with the narrowest width that holds them all.
pub fn encode(values: &[i64]) -> Vec<u8> {
    let width: usize = if values.iter().all(|&v| i16::try_from(v).is_ok()) {
        2
    } else if values.iter().all(|&v| i32::try_from(v).is_ok()) {
        4
    } else {
        8
    };
    let mut buf = Vec::with_capacity(8 + width * values.len());
    buf.extend_from_slice(&(width as u32).to_le_bytes());
    buf.extend_from_slice(&(values.len() as u32).to_le_bytes());
    for &v in values {
        buf.extend_from_slice(&v.to_le_bytes()[..width]);
    }
    buf
}

/// Decodes and validates an intset (`intsetValidateIntegrity` with deep checks: the
/// width, the size, strictly ascending members).
pub fn decode(is: &[u8]) -> Result<Vec<i64>, BlobError> {
    if is.len() < 8 {
        return Err(err(0, "shorter than a header"));
    }
    let width = u32::from_le_bytes([is[0], is[1], is[2], is[3]]) as usize;
    if !matches!(width, 2 | 4 | 8) {
        return Err(err(0, "unknown integer width"));
    }
    let count = u32::from_le_bytes([is[4], is[5], is[6], is[7]]) as usize;
    if count.checked_mul(width).and_then(|n| n.checked_add(8)) != Some(is.len()) {
        return Err(err(4, "count does not match the size"));
    }
    let mut out: Vec<i64> = Vec::with_capacity(count);
    for (i, chunk) in is[8..].chunks_exact(width).enumerate() {
        let mut v: u64 = 0;
        for (j, &x) in chunk.iter().enumerate() {
            v |= (x as u64) << (8 * j);
        }
        let shift = 64 - 8 * width as u32;
        let v = ((v << shift) as i64) >> shift;
        if out.last().is_some_and(|&last| last >= v) {
            return Err(err(8 + i * width, "members not in ascending order"));
        }
        out.push(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_and_redis_bytes() {
        // SADD s 1 2 3, DUMPed by Redis 7.0.15: 0b 0e + these bytes.
        assert_eq!(
            encode(&[1, 2, 3]),
            b"\x02\x00\x00\x00\x03\x00\x00\x00\x01\x00\x02\x00\x03\x00"
        );
        for set in [
            vec![-32768, 32767],
            vec![-1, 40000],
            vec![i64::MIN, 0, i64::MAX],
            vec![],
        ] {
            assert_eq!(decode(&encode(&set)).unwrap(), set);
        }
        assert_eq!(encode(&[1, 40000])[0], 4);
        assert_eq!(encode(&[1, 1 << 40])[0], 8);
    }

    #[test]
    fn rejects_bad_sets() {
        assert!(decode(&encode(&[3, 2])).is_err());
        assert!(decode(&encode(&[2, 2])).is_err());
        let good = encode(&[1, 2, 3]);
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err());
        }
        let mut bad = good.clone();
        bad[0] = 3;
        assert!(decode(&bad).is_err());
    }
}
