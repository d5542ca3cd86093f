//! The reply side of RESP: one `Reply` value, encoded as RESP2 or RESP3 per client.

use bytes::{BufMut, Bytes, BytesMut};

/// A reply to one command, independent of the protocol version the client speaks.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`
    Simple(&'static str),
    /// A status line built at run time (`+PONG` variants, `+QUEUED` ...).
    Status(String),
    /// `-ERR ...`: the text includes its prefix (`ERR`, `WRONGTYPE`, ...).
    Error(String),
    Int(i64),
    Bulk(Bytes),
    /// Null bulk string in RESP2 (`$-1`), `_` in RESP3.
    Nil,
    /// Null multibulk in RESP2 (`*-1`), `_` in RESP3.
    NilArray,
    Array(Vec<Reply>),
    /// A map in RESP3, a flat array of key, value, key, value in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// A set in RESP3, an array in RESP2.
    Set(Vec<Reply>),
    /// A double: `,1.5` in RESP3, a bulk string in RESP2.
    Double(f64),
    /// `#t`/`#f` in RESP3, `:1`/`:0` in RESP2.
    Bool(bool),
    /// Out-of-band push (pub/sub messages): `>` in RESP3, an array in RESP2.
    Push(Vec<Reply>),
    /// Verbatim string (`=`) in RESP3, bulk in RESP2, e.g. INFO and CLIENT INFO.
    Verbatim(Bytes),
    /// Bytes already encoded (used to pass through replies built elsewhere).
    Raw(Bytes),
    /// Several top-level replies from one command (SUBSCRIBE with many channels),
    /// encoded as their concatenation. Inside an EXEC array it still counts as one
    /// element, exactly as Redis's output does.
    Many(Vec<Reply>),
}

impl Reply {
    /// The canonical `+OK`.
    pub const OK: Reply = Reply::Simple("OK");

    /// A bulk string copied from a slice.
    pub fn bulk(b: &[u8]) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(b))
    }

    /// A bulk string from anything string-like.
    pub fn text(s: impl Into<String>) -> Reply {
        Reply::Bulk(Bytes::from(s.into()))
    }

    /// An error reply; `msg` carries its own code prefix (`ERR`, `WRONGTYPE`, ...).
    pub fn error(msg: impl Into<String>) -> Reply {
        Reply::Error(msg.into())
    }

    /// A bulk reply or nil.
    pub fn opt_bulk(b: Option<Bytes>) -> Reply {
        b.map_or(Reply::Nil, Reply::Bulk)
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the encoding of this reply to `out` for protocol 2 or 3.
    pub fn encode(&self, out: &mut BytesMut, resp3: bool) {
        match self {
            Reply::Simple(s) => line(out, b'+', s.as_bytes()),
            Reply::Status(s) => line(out, b'+', s.as_bytes()),
            Reply::Error(e) => {
                // Error lines must not contain newlines; Redis replaces them with spaces.
                out.put_u8(b'-');
                for &b in e.as_bytes() {
                    out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
                }
                out.put_slice(b"\r\n");
            }
            Reply::Int(i) => {
                out.put_u8(b':');
                put_int(out, *i);
                out.put_slice(b"\r\n");
            }
            Reply::Bulk(b) => put_bulk(out, b),
            Reply::Verbatim(b) => {
                if resp3 {
                    out.put_u8(b'=');
                    put_int(out, b.len() as i64 + 4);
                    out.put_slice(b"\r\ntxt:");
                    out.put_slice(b);
                    out.put_slice(b"\r\n");
                } else {
                    put_bulk(out, b)
                }
            }
            Reply::Nil => out.put_slice(if resp3 { b"_\r\n" } else { b"$-1\r\n" }),
            Reply::NilArray => out.put_slice(if resp3 { b"_\r\n" } else { b"*-1\r\n" }),
            Reply::Array(items) => {
                header(out, b'*', items.len());
                for it in items {
                    it.encode(out, resp3);
                }
            }
            Reply::Set(items) => {
                header(out, if resp3 { b'~' } else { b'*' }, items.len());
                for it in items {
                    it.encode(out, resp3);
                }
            }
            Reply::Push(items) => {
                header(out, if resp3 { b'>' } else { b'*' }, items.len());
                for it in items {
                    it.encode(out, resp3);
                }
            }
            Reply::Map(pairs) => {
                if resp3 {
                    header(out, b'%', pairs.len());
                } else {
                    header(out, b'*', pairs.len() * 2);
                }
                for (k, v) in pairs {
                    k.encode(out, resp3);
                    v.encode(out, resp3);
                }
            }
            Reply::Double(d) => {
                if resp3 {
                    out.put_u8(b',');
                    out.put_slice(crate::util::fmt_double_resp3(*d).as_bytes());
                    out.put_slice(b"\r\n");
                } else {
                    put_bulk(out, crate::util::fmt_double(*d).as_bytes());
                }
            }
            Reply::Bool(b) => {
                if resp3 {
                    out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" });
                } else {
                    out.put_slice(if *b { b":1\r\n" } else { b":0\r\n" });
                }
            }
            Reply::Raw(b) => out.put_slice(b),
            Reply::Many(items) => {
                for it in items {
                    it.encode(out, resp3);
                }
            }
        }
    }
}

fn line(out: &mut BytesMut, tag: u8, s: &[u8]) {
    out.put_u8(tag);
    out.put_slice(s);
    out.put_slice(b"\r\n");
}

fn header(out: &mut BytesMut, tag: u8, n: usize) {
    out.put_u8(tag);
    put_int(out, n as i64);
    out.put_slice(b"\r\n");
}

fn put_bulk(out: &mut BytesMut, b: &[u8]) {
    header(out, b'$', b.len());
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

fn put_int(out: &mut BytesMut, i: i64) {
    let mut buf = itoa_buf();
    out.put_slice(fmt_i64(i, &mut buf));
}

fn itoa_buf() -> [u8; 20] {
    [0u8; 20]
}

fn fmt_i64(i: i64, buf: &mut [u8; 20]) -> &[u8] {
    let neg = i < 0;
    let mut n = i.unsigned_abs();
    let mut pos = buf.len();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if neg {
        // i64::MIN needs 20 chars including '-'; 19 digits + sign fits exactly.
        pos -= 1;
        buf[pos] = b'-';
    }
    &buf[pos..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Reply, resp3: bool) -> String {
        let mut b = BytesMut::new();
        r.encode(&mut b, resp3);
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn encodes_both_protocols() {
        assert_eq!(
            enc(&Reply::Int(i64::MIN), false),
            ":-9223372036854775808\r\n"
        );
        assert_eq!(enc(&Reply::Nil, false), "$-1\r\n");
        assert_eq!(enc(&Reply::Nil, true), "_\r\n");
        let m = Reply::Map(vec![(Reply::text("a"), Reply::Int(1))]);
        assert_eq!(enc(&m, false), "*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&m, true), "%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&Reply::Double(1.5), true), ",1.5\r\n");
        assert_eq!(enc(&Reply::Double(1.5), false), "$3\r\n1.5\r\n");
        assert_eq!(enc(&Reply::error("ERR a\nb"), false), "-ERR a b\r\n");
        let many = Reply::Many(vec![Reply::Int(1), Reply::Push(vec![Reply::Int(2)])]);
        assert_eq!(enc(&many, false), ":1\r\n*1\r\n:2\r\n");
        assert_eq!(enc(&many, true), ":1\r\n>1\r\n:2\r\n");
    }
}
