//! MONITOR's feed (`replicationFeedMonitors`): each command a client ran, as one
//! status line to every monitoring client.

use crate::client::Client;
use crate::net::reply::Reply;
use crate::store::Store;
use bytes::Bytes;
use std::fmt::Write as _;

/// Sends `args`, run by `client`, to every monitor: `+<sec>.<usec> [<db> <addr>]
/// "arg" ...`. A script's commands show as `lua`, the embedding process's own as
/// `embedded`.
pub(crate) fn feed(store: &mut Store, client: &Client, args: &[Bytes]) {
    let us = crate::util::now_us();
    let who = if client.script {
        "lua"
    } else if client.addr.is_empty() {
        "embedded"
    } else {
        client.addr.as_str()
    };
    let mut line = format!(
        "{}.{:06} [{} {}] ",
        us / 1_000_000,
        us % 1_000_000,
        client.db,
        who
    );
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        repr(&mut line, a);
    }
    let msg = Reply::Status(line);
    let pubsub = &store.pubsub;
    store
        .observe
        .monitors
        .retain(|&id| pubsub.push_to(id, &msg));
}

/// Redis's `sdscatrepr`: a quoted string with `\\`, `\"`, `\n`, `\r`, `\t`, `\a`, `\b`
/// escaped and other unprintable bytes as `\xHH`.
pub(crate) fn repr(out: &mut String, s: &[u8]) {
    out.push('"');
    for &c in s {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            7 => out.push_str("\\a"),
            8 => out.push_str("\\b"),
            c if (0x20..0x7f).contains(&c) => out.push(c as char),
            c => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_as_sdscatrepr() {
        let mut s = String::new();
        super::repr(&mut s, b"a\"b\\c\n\x01\x07 ~");
        assert_eq!(s, r#""a\"b\\c\n\x01\a ~""#);
    }
}
