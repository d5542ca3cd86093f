//! LZF, the compression of RDB strings (Redis's `lzf_c.c`/`lzf_d.c`, liblzf 3.6).
//!
//! Written here rather than taken from a crate: the `lzf` crate is deprecated, and
//! byte-identical DUMP payloads need exactly Redis's compressor (liblzf 3.6 with a
//! 2^16-slot hash table, `VERY_FAST`, no reference to the first input byte, matches
//! up to the last byte). Decompression is the same for every LZF encoder.
//!
//! Format: `000LLLLL` + L+1 literal bytes; `LLLooooo oooooooo` a back reference of
//! L+2 bytes at distance `o`+1; `111ooooo LLLLLLLL oooooooo` one of L+9 bytes.

/// Hash table bits (`HLOG`).
const HLOG: u32 = 16;
const HSIZE: usize = 1 << HLOG;
/// Longest literal run.
const MAX_LIT: usize = 1 << 5;
/// Farthest back reference.
const MAX_OFF: usize = 1 << 13;
/// Longest back reference, minus 2.
const MAX_REF: usize = (1 << 8) + (1 << 3);

/// An LZF compressor. It keeps its hash table between calls: entries are absolute
/// positions in a stream of all inputs so far, so an entry from an earlier input is
/// told apart without clearing 512 KiB per string.
pub struct Compressor {
    table: Vec<u64>,
    /// Stream position of the current input's first byte.
    base: u64,
}

impl Default for Compressor {
    fn default() -> Self {
        Compressor {
            table: vec![0; HSIZE],
            // Entries hold `base + pos + 1`; 0 never matches.
            base: 1,
        }
    }
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor").finish_non_exhaustive()
    }
}

#[inline]
fn first(input: &[u8], i: usize) -> u32 {
    ((input[i] as u32) << 8) | input[i + 1] as u32
}

#[inline]
fn next(v: u32, input: &[u8], i: usize) -> u32 {
    (v << 8) | input[i + 2] as u32
}

#[inline]
fn idx(h: u32) -> usize {
    ((h >> (3 * 8 - HLOG)).wrapping_sub(h.wrapping_mul(5)) as usize) & (HSIZE - 1)
}

impl Compressor {
    /// Compresses `input` into at most `max_out` bytes, as `lzf_compress(in, len, out,
    /// max_out)`; `None` when the result would not fit (Redis then stores the string
    /// as it is).
    pub fn compress(&mut self, input: &[u8], max_out: usize) -> Option<Vec<u8>> {
        let in_len = input.len();
        if in_len == 0 || max_out == 0 {
            return None;
        }
        let base = self.base;
        // The next call's positions start past this input (and its +1 shift).
        self.base = base + in_len as u64 + 1;
        let mut out: Vec<u8> = Vec::with_capacity(max_out.min(in_len + in_len / 16 + 8));
        let mut ip = 0usize;
        let mut lit = 0usize;
        // The control byte of the current literal run, filled in when the run ends.
        out.push(0);
        if in_len < 3 {
            // Too short for the main loop (`ip < in_end - 2` never holds).
            return self.finish(input, ip, lit, out, max_out);
        }
        let mut hval = first(input, ip);
        while ip < in_len - 2 {
            hval = next(hval, input, ip);
            let slot = idx(hval);
            let stored = self.table[slot];
            self.table[slot] = base + ip as u64;
            // A reference from this input, strictly after its first byte, within reach.
            let reference = stored
                .checked_sub(base)
                .map(|r| r as usize)
                .filter(|&r| r > 0 && r < ip && ip - r - 1 < MAX_OFF);
            let matched = reference.filter(|&r| {
                input[r] == input[ip]
                    && input[r + 1] == input[ip + 1]
                    && input[r + 2] == input[ip + 2]
            });
            if let Some(r) = matched {
                let off = ip - r - 1;
                let maxlen = (in_len - ip - 2).min(MAX_REF);
                // Room for the longest reference, counting the literal run's control
                // byte only when the run is not empty.
                if out.len() - (lit == 0) as usize + 3 + 1 >= max_out {
                    return None;
                }
                // Stop the literal run (drop its control byte when it is empty).
                let ctrl = out.len() - lit - 1;
                out[ctrl] = (lit as u8).wrapping_sub(1);
                if lit == 0 {
                    out.pop();
                }
                // Bytes [0, len) match; as in lzf_c.c the first 16 are compared without
                // the maxlen bound when maxlen > 16 (the input always has them).
                let mut len = 2;
                let mut done = false;
                if maxlen > 16 {
                    for _ in 0..16 {
                        len += 1;
                        if input[r + len] != input[ip + len] {
                            done = true;
                            break;
                        }
                    }
                }
                if !done {
                    loop {
                        len += 1;
                        if !(len < maxlen && input[r + len] == input[ip + len]) {
                            break;
                        }
                    }
                }
                len -= 2;
                ip += 1;
                if len < 7 {
                    out.push(((off >> 8) + (len << 5)) as u8);
                } else {
                    out.push(((off >> 8) + (7 << 5)) as u8);
                    out.push((len - 7) as u8);
                }
                out.push(off as u8);
                // Start a new literal run.
                lit = 0;
                out.push(0);
                ip += len + 1;
                if ip >= in_len - 2 {
                    break;
                }
                // VERY_FAST: hash the last two positions of the match.
                ip -= 2;
                hval = first(input, ip);
                hval = next(hval, input, ip);
                self.table[idx(hval)] = base + ip as u64;
                ip += 1;
                hval = next(hval, input, ip);
                self.table[idx(hval)] = base + ip as u64;
                ip += 1;
            } else {
                if out.len() >= max_out {
                    return None;
                }
                lit += 1;
                out.push(input[ip]);
                ip += 1;
                if lit == MAX_LIT {
                    let ctrl = out.len() - lit - 1;
                    out[ctrl] = (lit - 1) as u8;
                    lit = 0;
                    out.push(0);
                }
            }
        }
        self.finish(input, ip, lit, out, max_out)
    }

    /// Copies the last (at most two) bytes as literals and closes the run.
    fn finish(
        &mut self,
        input: &[u8],
        mut ip: usize,
        mut lit: usize,
        mut out: Vec<u8>,
        max_out: usize,
    ) -> Option<Vec<u8>> {
        if out.len() + 3 > max_out {
            return None;
        }
        while ip < input.len() {
            lit += 1;
            out.push(input[ip]);
            ip += 1;
            if lit == MAX_LIT {
                let ctrl = out.len() - lit - 1;
                out[ctrl] = (lit - 1) as u8;
                lit = 0;
                out.push(0);
            }
        }
        let ctrl = out.len() - lit - 1;
        out[ctrl] = (lit as u8).wrapping_sub(1);
        if lit == 0 {
            out.pop();
        }
        Some(out)
    }
}

/// Why compressed data could not be expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LzfError {
    #[error("LZF data ends inside a run at byte {0}")]
    Truncated(usize),
    #[error("LZF back reference before the start of the output at byte {0}")]
    BadReference(usize),
    #[error("LZF data expands past the expected {0} bytes")]
    TooLong(usize),
    #[error("LZF data expands to {got} bytes, expected {expected}")]
    TooShort { got: usize, expected: usize },
}

/// Expands `input` into exactly `expected` bytes.
pub fn decompress(input: &[u8], expected: usize) -> Result<Vec<u8>, LzfError> {
    // The expected length comes from the file: do not trust it with one allocation.
    let mut out: Vec<u8> = Vec::with_capacity(expected.min(input.len().saturating_mul(64)));
    let mut ip = 0;
    while ip < input.len() {
        let ctrl = input[ip] as usize;
        let at = ip;
        ip += 1;
        if ctrl < 32 {
            let n = ctrl + 1;
            let lit = input.get(ip..ip + n).ok_or(LzfError::Truncated(at))?;
            if out.len() + n > expected {
                return Err(LzfError::TooLong(expected));
            }
            out.extend_from_slice(lit);
            ip += n;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *input.get(ip).ok_or(LzfError::Truncated(at))? as usize;
                ip += 1;
            }
            let low = *input.get(ip).ok_or(LzfError::Truncated(at))? as usize;
            ip += 1;
            let back = ((ctrl & 0x1f) << 8) + low + 1;
            let len = len + 2;
            if back > out.len() {
                return Err(LzfError::BadReference(at));
            }
            if out.len() + len > expected {
                return Err(LzfError::TooLong(expected));
            }
            // Byte by byte: the source may overlap what is being written.
            let start = out.len() - back;
            for i in 0..len {
                let b = out[start + i];
                out.push(b);
            }
        }
    }
    if out.len() != expected {
        return Err(LzfError::TooShort {
            got: out.len(),
            expected,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(c: &mut Compressor, data: &[u8]) -> Option<Vec<u8>> {
        let out = c.compress(data, data.len().saturating_sub(4))?;
        assert_eq!(decompress(&out, data.len()).unwrap(), data);
        Some(out)
    }

    #[test]
    fn matches_redis_output() {
        // DUMP of SET str abcdefabcdefabcdefabcdefabcdef on Redis 7.0.15: c3 0e 1e + these.
        let mut c = Compressor::default();
        let out = roundtrip(&mut c, b"abcdefabcdefabcdefabcdefabcdef").unwrap();
        assert_eq!(out, b"\x06abcdefa\xe0\x0c\x05\x01ef");
    }

    #[test]
    fn matches_reach_the_last_bytes() {
        // liblzf 3.6 (Redis 7.0) takes a 3-byte match with only 4 bytes left; older
        // versions wanted 5. Seen in the DUMP of a long list by redis-server 7.0.15.
        let mut input = b"-abc".to_vec();
        input.extend_from_slice(&b"0123456789".repeat(3));
        input.extend_from_slice(b"abc!");
        let out = roundtrip(&mut Compressor::default(), &input).unwrap();
        let n = out.len();
        // ... a 3-byte reference to "abc" 33 bytes back, then a literal "!".
        assert_eq!(&out[n - 4..], &[0x20, 32, 0, b'!']);
    }

    #[test]
    fn roundtrips_and_refuses_what_does_not_shrink() {
        let mut c = Compressor::default();
        let mut rng = fastrand::Rng::with_seed(7);
        for n in [0usize, 1, 2, 3, 5, 21, 40, 100, 1000, 70_000] {
            let random: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            // Random bytes do not compress by 4 bytes.
            assert!(roundtrip(&mut c, &random).is_none());
            let text: Vec<u8> = (0..n).map(|i| b"hello world "[i % 12]).collect();
            // Short inputs cannot gain 4 bytes (the first byte is never referenced).
            if n >= 40 {
                assert!(roundtrip(&mut c, &text).is_some());
            }
            let runs: Vec<u8> = (0..n).map(|i| (i / 300) as u8).collect();
            if n > 20 {
                assert!(roundtrip(&mut c, &runs).is_some());
            }
        }
        // The table kept from earlier inputs changes nothing.
        let fresh = Compressor::default().compress(&[b'x'; 500], 496);
        assert_eq!(c.compress(&[b'x'; 500], 496), fresh);
    }

    #[test]
    fn corrupt_input_is_an_error() {
        assert_eq!(decompress(&[5, b'a'], 6), Err(LzfError::Truncated(0)));
        assert_eq!(
            decompress(&[0, b'a', 0x20, 5], 9),
            Err(LzfError::BadReference(2))
        );
        assert_eq!(
            decompress(&[0, b'a', 0x20, 0], 2),
            Err(LzfError::TooLong(2))
        );
        assert!(matches!(
            decompress(&[0, b'a'], 2),
            Err(LzfError::TooShort {
                got: 1,
                expected: 2
            })
        ));
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..2000 {
            let n = rng.usize(0..40);
            let junk: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            let _ = decompress(&junk, rng.usize(0..200));
        }
    }
}
