//! The request side of RESP: turns bytes from a socket into command argument vectors.
//!
//! Requests are either multibulk arrays (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or inline
//! commands (`GET k\r\n`), exactly as Redis accepts them. Error texts match Redis's so
//! that a client sees the same `-ERR Protocol error: ...` from us as from Redis.

use bytes::{Bytes, BytesMut};

/// Longest inline command or multibulk/bulk header Redis accepts (PROTO_INLINE_MAX_SIZE).
pub const INLINE_MAX: usize = 64 * 1024;
/// Largest number of arguments in one multibulk request: Redis 7.0 accepts up to INT_MAX
/// (older versions stopped at 1024*1024). Nothing is preallocated from this count.
pub const MAX_MULTIBULK: i64 = i32::MAX as i64;

/// A request the parser cannot accept; the connection answers it and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    #[error("Protocol error: too big mbulk count string")]
    TooBigMbulkCount,
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedDollar(char),
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulk,
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulk,
}

/// Before AUTH, Redis refuses more arguments than this in one request...
pub const UNAUTH_MAX_MULTIBULK: i64 = 10;
/// ...and bulk strings longer than this, so an unauthenticated client cannot make the
/// server buffer much.
pub const UNAUTH_MAX_BULK: i64 = 16384;

/// Parses one request from the front of `buf`, without resuming state (tests).
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some(args))` with the bytes consumed
/// from `buf` (an empty `args` for a blank inline line or `*0`, which Redis ignores).
#[cfg(test)]
pub fn parse_request(
    buf: &mut BytesMut,
    max_bulk_len: i64,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    Parser::default().parse(buf, max_bulk_len, true)
}

/// A request parser that remembers how far it got in an incomplete multibulk request,
/// so a large request arriving in many reads is scanned once, not once per read.
#[derive(Debug, Default)]
pub struct Parser {
    partial: Option<Partial>,
    /// The emptied `spans` of the last request, reused so that a request costs one
    /// allocation (its argument vector), not two.
    spare: Vec<(usize, usize)>,
}

/// Largest `spans` capacity kept for reuse (a huge request's is dropped).
const SPARE_MAX: usize = 64;

#[derive(Debug)]
struct Partial {
    /// Arguments announced by the `*N` header.
    count: usize,
    /// Where the next `$len` header starts.
    pos: usize,
    /// Bounds of the arguments complete so far.
    spans: Vec<(usize, usize)>,
}

impl Parser {
    /// Bytes of the complete arguments of a request still arriving (CLIENT LIST's
    /// `argv-mem` for a client mid-request).
    pub fn partial_args_len(&self) -> usize {
        self.partial
            .as_ref()
            .map_or(0, |p| p.spans.iter().map(|(a, b)| b - a).sum())
    }

    /// Parses the next request. `authenticated` selects Redis's stricter limits for
    /// clients that still have to AUTH.
    pub fn parse(
        &mut self,
        buf: &mut BytesMut,
        max_bulk_len: i64,
        authenticated: bool,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        if buf.is_empty() {
            return Ok(None);
        }
        if buf[0] != b'*' {
            self.partial = None;
            return parse_inline(buf);
        }
        let mut st = match self.partial.take() {
            Some(st) => st,
            None => {
                let (count, eol) = match quick_len(buf, 1).filter(|&(n, _)| n <= MAX_MULTIBULK) {
                    Some(found) => found,
                    None => {
                        let Some(eol) = find_crlf(buf, 0) else {
                            if buf.len() > INLINE_MAX {
                                return Err(ProtocolError::TooBigMbulkCount);
                            }
                            return Ok(None);
                        };
                        match parse_len(&buf[1..eol]) {
                            Some(n) if n <= MAX_MULTIBULK => (n, eol),
                            _ => return Err(ProtocolError::InvalidMultibulkLength),
                        }
                    }
                };
                if !authenticated && count > UNAUTH_MAX_MULTIBULK {
                    return Err(ProtocolError::UnauthenticatedMultibulk);
                }
                if count <= 0 {
                    let _ = buf.split_to(eol + 2);
                    return Ok(Some(Vec::new()));
                }
                let mut spans = std::mem::take(&mut self.spare);
                spans.clear();
                spans.reserve((count as usize).min(1024));
                Partial {
                    count: count as usize,
                    pos: eol + 2,
                    spans,
                }
            }
        };
        let max_bulk = if authenticated {
            max_bulk_len
        } else {
            max_bulk_len.min(UNAUTH_MAX_BULK)
        };
        while st.spans.len() < st.count {
            let pos = st.pos;
            if pos >= buf.len() {
                self.partial = Some(st);
                return Ok(None);
            }
            if buf[pos] != b'$' {
                return Err(ProtocolError::ExpectedDollar(buf[pos] as char));
            }
            let (len, eol) = match quick_len(buf, pos + 1) {
                Some((n, eol)) => (Some(n), eol),
                None => {
                    let Some(eol) = find_crlf(buf, pos) else {
                        if buf.len() - pos > INLINE_MAX {
                            return Err(ProtocolError::TooBigBulkCount);
                        }
                        self.partial = Some(st);
                        return Ok(None);
                    };
                    (parse_len(&buf[pos + 1..eol]), eol)
                }
            };
            let len = match len {
                Some(n) if !authenticated && n > max_bulk && n <= max_bulk_len => {
                    return Err(ProtocolError::UnauthenticatedBulk)
                }
                Some(n) if (0..=max_bulk).contains(&n) => n as usize,
                _ => return Err(ProtocolError::InvalidBulkLength),
            };
            let start = eol + 2;
            let end = start + len;
            if end + 2 > buf.len() {
                // Make room for the whole bulk at once rather than growing in steps.
                buf.reserve(end + 2 - buf.len());
                self.partial = Some(st);
                return Ok(None);
            }
            st.spans.push((start, end));
            st.pos = end + 2;
        }
        let frame = buf.split_to(st.pos).freeze();
        let args = st.spans.iter().map(|&(s, e)| frame.slice(s..e)).collect();
        if st.spans.capacity() <= SPARE_MAX {
            self.spare = st.spans;
        }
        Ok(Some(args))
    }
}

/// The usual header in one pass: 1 to 18 digits (no leading zero but "0" itself)
/// then CRLF, read at `from`; returns the number and where the CR is. `None` sends
/// everything else (signs, incomplete or malformed headers) down the general path,
/// which gives the same values and reports errors as Redis.
#[inline]
fn quick_len(buf: &[u8], from: usize) -> Option<(i64, usize)> {
    let mut v: i64 = 0;
    let mut i = from;
    while i < buf.len() && i - from < 18 && buf[i].is_ascii_digit() {
        v = v * 10 + (buf[i] - b'0') as i64;
        i += 1;
    }
    let digits = i - from;
    if digits == 0 || (digits > 1 && buf[from] == b'0') {
        return None;
    }
    if i + 1 < buf.len() && buf[i] == b'\r' && buf[i + 1] == b'\n' {
        Some((v, i))
    } else {
        None
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let hay = &buf[from..];
    let mut i = 0;
    while let Some(p) = memchr(b'\r', &hay[i..]) {
        let at = i + p;
        if at + 1 < hay.len() {
            if hay[at + 1] == b'\n' {
                return Some(from + at);
            }
            i = at + 1;
        } else {
            return None;
        }
    }
    None
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Parses a signed decimal the way Redis's `string2ll` does for protocol headers.
fn parse_len(digits: &[u8]) -> Option<i64> {
    crate::util::parse_i64(digits)
}

fn parse_inline(buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let Some(nl) = memchr(b'\n', buf) else {
        if buf.len() > INLINE_MAX {
            return Err(ProtocolError::TooBigInline);
        }
        return Ok(None);
    };
    let line = buf.split_to(nl + 1);
    let mut end = nl;
    if end > 0 && line[end - 1] == b'\r' {
        end -= 1;
    }
    split_args(&line[..end])
        .map(|args| Some(args.into_iter().map(Bytes::from).collect()))
        .ok_or(ProtocolError::UnbalancedQuotes)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Splits an inline command line like Redis's `sdssplitargs`: whitespace separated,
/// with "double quotes" (supporting \n \r \t \b \a \xHH escapes) and 'single quotes'.
/// Returns `None` on unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n {
            return Some(out);
        }
        let mut cur = Vec::new();
        let mut inq = false;
        let mut insq = false;
        loop {
            if inq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && hex(line[i + 2]).is_some()
                    && hex(line[i + 3]).is_some()
                {
                    cur.push(hex(line[i + 2])? * 16 + hex(line[i + 3])?);
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    // A closing quote must be followed by a space or the end.
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else if insq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        i += 1;
                        break;
                    }
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    c => cur.push(c),
                }
            }
            i += 1;
        }
        out.push(cur);
    }
}

/// Appends `n` in decimal, without allocating (this runs for every propagated write).
pub(crate) fn push_num(out: &mut Vec<u8>, n: u64) {
    let mut b = [0u8; 20];
    let mut i = b.len();
    let mut n = n;
    loop {
        i -= 1;
        b[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&b[i..]);
}

/// Appends one command in the Redis protocol, as a client sends it: the one encoder of
/// the command stream for the AOF, its rewrite, the replication backlog and a replica's
/// REPLCONF ACK (Redis's `catAppendOnlyGenericCommand`).
pub(crate) fn encode_command<A: AsRef<[u8]>>(out: &mut Vec<u8>, argv: &[A]) {
    out.push(b'*');
    push_num(out, argv.len() as u64);
    out.extend_from_slice(b"\r\n");
    for a in argv {
        let a = a.as_ref();
        out.push(b'$');
        push_num(out, a.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let mut b = BytesMut::from(input);
        parse_request(&mut b, 512 * 1024 * 1024)
    }

    #[test]
    fn multibulk_complete_and_partial() {
        let full = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        assert_eq!(
            parse(full).unwrap().unwrap(),
            vec![Bytes::from("GET"), Bytes::from("k")]
        );
        for cut in 1..full.len() {
            assert_eq!(parse(&full[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn resumes_a_request_split_across_reads() {
        let full = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n*1\r\n$4\r\nPING\r\n";
        let mut p = Parser::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in full.iter() {
            buf.extend_from_slice(&[b]);
            while let Some(args) = p.parse(&mut buf, 1 << 20, true).unwrap() {
                got.push(args);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0][2], Bytes::from("hello"));
        assert_eq!(got[1][0], Bytes::from("PING"));
        assert!(buf.is_empty());
    }

    #[test]
    fn unauthenticated_limits() {
        let mut p = Parser::default();
        let mut b = BytesMut::from(&b"*11\r\n"[..]);
        assert_eq!(
            p.parse(&mut b, 1 << 20, false).unwrap_err(),
            ProtocolError::UnauthenticatedMultibulk
        );
        let mut b = BytesMut::from(&b"*1\r\n$16385\r\n"[..]);
        assert_eq!(
            Parser::default().parse(&mut b, 1 << 20, false).unwrap_err(),
            ProtocolError::UnauthenticatedBulk
        );
        let mut b = BytesMut::from(&b"*1\r\n$16385\r\n"[..]);
        assert_eq!(
            Parser::default().parse(&mut b, 1 << 20, true).unwrap(),
            None
        );
    }

    #[test]
    fn protocol_errors_match_redis() {
        assert_eq!(
            parse(b"*x\r\n").unwrap_err().to_string(),
            "Protocol error: invalid multibulk length"
        );
        assert_eq!(
            parse(b"*1\r\n+GET\r\n").unwrap_err().to_string(),
            "Protocol error: expected '$', got '+'"
        );
        assert_eq!(
            parse(b"*1\r\n$-5\r\n").unwrap_err().to_string(),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(
            parse(b"SET \"a b\r\n").unwrap_err(),
            ProtocolError::UnbalancedQuotes
        );
        let big = vec![b'a'; INLINE_MAX + 1];
        assert_eq!(parse(&big).unwrap_err(), ProtocolError::TooBigInline);
    }

    #[test]
    fn header_fast_path_agrees_with_the_general_one() {
        let ok = |input: &[u8]| parse(input).unwrap();
        assert_eq!(ok(b"*0\r\n"), Some(Vec::new()));
        assert_eq!(ok(b"*1\r\n$0\r\n\r\n"), Some(vec![Bytes::new()]));
        assert_eq!(ok(b"*1\r\n$10\r\n0123456789\r\n").unwrap()[0].len(), 10);
        assert_eq!(ok(b"*-1\r\n"), Some(Vec::new()));
        assert_eq!(ok(b"*1\r\n$12\r"), None);
        assert_eq!(ok(b"*12"), None);
        for (bad, e) in [
            (&b"*01\r\n"[..], ProtocolError::InvalidMultibulkLength),
            (b"*2147483648\r\n", ProtocolError::InvalidMultibulkLength),
            (
                b"*999999999999999999\r\n",
                ProtocolError::InvalidMultibulkLength,
            ),
            (b"*1\r\n$03\r\nabc\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$3x\r\nabc\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$+3\r\nabc\r\n", ProtocolError::InvalidBulkLength),
            (b"*+1\r\n$1\r\na\r\n", ProtocolError::InvalidMultibulkLength),
            (
                b"*1\r\n$999999999999999999\r\n",
                ProtocolError::InvalidBulkLength,
            ),
        ] {
            assert_eq!(
                parse(bad).unwrap_err(),
                e,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn inline_quotes_and_escapes() {
        let args = parse(b"SET \"a\\x41\\n\" 'it\\'s'\r\n").unwrap().unwrap();
        assert_eq!(
            args,
            vec![Bytes::from("SET"), Bytes::from("aA\n"), Bytes::from("it's")]
        );
        assert_eq!(parse(b"\r\n").unwrap().unwrap(), Vec::<Bytes>::new());
    }
}
