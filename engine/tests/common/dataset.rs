//! A data set covering every type and encoding, TTLs, binary keys and streams in
//! several databases, a reader of a server's whole data, and a comparison: for the
//! tests that move data between the engine and redis-server (RDB files, DUMP
//! payloads, the AOF).

use super::{Conn, Resp};

/// Databases compared (the default `databases 16` of both servers).
pub const DBS: usize = 16;

/// Sends commands pipelined and returns their replies; panics on an error reply.
pub fn pipeline(c: &mut Conn, cmds: &[Vec<Vec<u8>>]) -> Vec<Resp> {
    for cmd in cmds {
        let args: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
        c.send(&args);
    }
    cmds.iter()
        .map(|cmd| {
            let r = c.read();
            if let Resp::Error(e) = &r {
                panic!("{:?}: {e}", String::from_utf8_lossy(&cmd[0]));
            }
            r
        })
        .collect()
}

/// A command from words (`"SET k v"`), or from byte strings.
pub fn words(s: &str) -> Vec<Vec<u8>> {
    s.split(' ').map(|w| w.as_bytes().to_vec()).collect()
}

pub fn cmd(args: &[&[u8]]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.to_vec()).collect()
}

/// Every type in each of its encodings, TTLs, binary keys and values, in five
/// databases (the same commands for both servers).
pub fn populate(c: &mut Conn) {
    let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut push = |v: Vec<Vec<u8>>| cmds.push(v);
    push(words("SELECT 0"));
    push(words("SET str:int -12345"));
    push(words("SET str:bigint 9223372036854775807"));
    push(words("SET str:embstr hello"));
    push(cmd(&[
        b"SET",
        b"str:raw",
        "compressible text ".repeat(20).as_bytes(),
    ]));
    push(cmd(&[
        b"SET",
        b"str:random",
        &(0..200u32)
            .map(|i| (i * 97 % 251) as u8)
            .collect::<Vec<_>>(),
    ]));
    push(cmd(&[b"SET", b"str:\x00bin\xff", b"\x00\x01\x02"]));
    push(cmd(&[b"SET", b"str:empty", b""]));
    push(words("SET 42 key-that-is-an-integer"));
    push(words("PEXPIRE str:embstr 100000"));
    push(words("PEXPIREAT str:int 4102444800000"));
    // Lists: one node, several 8 KiB nodes, a node with one big element.
    push(words("RPUSH list:small a b 1 -2 300 70000 12345678901"));
    for chunk in 0..6 {
        let mut c = vec![b"RPUSH".to_vec(), b"list:long".to_vec()];
        c.extend((0..500).map(|i| format!("element-{}", chunk * 500 + i).into_bytes()));
        push(c);
    }
    push(cmd(&[
        b"RPUSH",
        b"list:big",
        b"head",
        &vec![b'B'; 20_000],
        b"tail",
    ]));
    push(words("PEXPIRE list:long 200000"));
    push(words("SELECT 1"));
    // Hashes: listpack, and hashtable by size and by a long value.
    push(words("HSET hash:lp name ada born 1815 n -7"));
    let mut big = vec![b"HSET".to_vec(), b"hash:ht".to_vec()];
    for i in 0..600 {
        big.push(format!("field:{i}").into_bytes());
        big.push(i.to_string().into_bytes());
    }
    push(big);
    push(cmd(&[b"HSET", b"hash:longvalue", b"f", &[b'v'; 100]]));
    // Sets: intsets of each width, hashtables by strings and by size.
    push(words("SADD set:int16 1 2 3 -4"));
    push(words("SADD set:int32 1 100000"));
    push(words("SADD set:int64 1 10000000000"));
    push(words("SADD set:strings a b c 1"));
    let mut big = vec![b"SADD".to_vec(), b"set:bigints".to_vec()];
    big.extend((0..600).map(|i| (i * 3).to_string().into_bytes()));
    push(big);
    push(words("PEXPIRE set:strings 300000"));
    push(words("SELECT 9"));
    // Sorted sets: listpack (integer, fractional, infinite scores) and skiplist.
    push(words(
        "ZADD zset:lp 1 a 2.5 b -inf c inf d 0.1 e 1e20 f -3 g",
    ));
    let mut big = vec![b"ZADD".to_vec(), b"zset:sl".to_vec()];
    for i in 0..300 {
        big.push(format!("{}", i as f64 / 7.0).into_bytes());
        big.push(format!("member:{i}").into_bytes());
    }
    push(big);
    push(cmd(&[b"ZADD", b"zset:longmember", b"1", &[b'm'; 80]]));
    push(words("PEXPIRE zset:sl 400000"));
    push(words("SELECT 15"));
    push(words("SET last db"));
    push(words("SELECT 0"));
    pipeline(c, &cmds);
}

/// One key as both servers must agree on it; `ttl` is PTTL (-1 for none).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyState {
    pub db: usize,
    pub key: Vec<u8>,
    pub kind: Resp,
    pub encoding: Resp,
    pub value: Resp,
    pub ttl: i64,
}

/// Every key of every database with its type, encoding, value and PTTL.
pub fn snapshot(c: &mut Conn) -> Vec<KeyState> {
    let mut out = Vec::new();
    for db in 0..DBS {
        pipeline(c, &[words(&format!("SELECT {db}"))]);
        let Resp::Array(Some(keys)) = c.cmd(&["KEYS", "*"]) else {
            panic!("KEYS failed");
        };
        let mut keys: Vec<Vec<u8>> = keys
            .into_iter()
            .filter_map(|k| match k {
                Resp::Bulk(Some(k)) => Some(k),
                _ => None,
            })
            .collect();
        keys.sort();
        for key in keys {
            let kind = pipeline(c, &[cmd(&[b"TYPE", &key])]).remove(0);
            let read: &[&[u8]] = match &kind {
                Resp::Simple(t) if t == "string" => &[b"GET"],
                Resp::Simple(t) if t == "list" => &[b"LRANGE", b"0", b"-1"],
                Resp::Simple(t) if t == "hash" => &[b"HGETALL"],
                Resp::Simple(t) if t == "set" => &[b"SMEMBERS"],
                Resp::Simple(t) if t == "zset" => &[b"ZRANGE", b"0", b"-1", b"WITHSCORES"],
                // Everything a stream holds: entries, IDs, counters, groups, PELs
                // with their delivery times and counts, consumers' seen times.
                Resp::Simple(t) if t == "stream" => &[b"XINFO", b"STREAM", b"FULL", b"COUNT", b"0"],
                other => panic!("unexpected type {other:?}"),
            };
            let get = if read[0] == b"XINFO" {
                let mut v = vec![read[0].to_vec(), read[1].to_vec(), key.clone()];
                v.extend(read[2..].iter().map(|a| a.to_vec()));
                v
            } else {
                let mut v = vec![read[0].to_vec(), key.clone()];
                v.extend(read[1..].iter().map(|a| a.to_vec()));
                v
            };
            let r = pipeline(
                c,
                &[
                    get,
                    cmd(&[b"OBJECT", b"ENCODING", &key]),
                    cmd(&[b"PTTL", &key]),
                ],
            );
            let value = match &kind {
                Resp::Simple(t) if t == "hash" => r[0].clone().sorted_pairs(),
                Resp::Simple(t) if t == "set" => r[0].clone().sorted(),
                _ => r[0].clone(),
            };
            let Resp::Int(ttl) = r[2] else {
                panic!("PTTL failed");
            };
            out.push(KeyState {
                db,
                key,
                kind,
                encoding: r[1].clone(),
                value,
                ttl,
            });
        }
    }
    pipeline(c, &[words("SELECT 0")]);
    out
}

/// Same keys, types, encodings and values; TTLs both absent or within 10 s of each
/// other (the servers read them at different moments).
pub fn assert_same(what: &str, a: &[KeyState], b: &[KeyState]) {
    let names = |v: &[KeyState]| -> Vec<(usize, Vec<u8>)> {
        v.iter().map(|k| (k.db, k.key.clone())).collect()
    };
    assert_eq!(names(a), names(b), "{what}: the key sets differ");
    for (x, y) in a.iter().zip(b) {
        let key = String::from_utf8_lossy(&x.key);
        assert_eq!(
            (&x.kind, &x.encoding, &x.value),
            (&y.kind, &y.encoding, &y.value),
            "{what}: db {} key {key:?}",
            x.db
        );
        assert!(
            (x.ttl == -1 && y.ttl == -1)
                || (x.ttl > 0 && y.ttl > 0 && (x.ttl - y.ttl).abs() < 10_000),
            "{what}: db {} key {key:?}: PTTL {} vs {}",
            x.db,
            x.ttl,
            y.ttl
        );
    }
}

/// Streams in database 3: entries with the master's fields and others, tombstones,
/// several blocks, an emptied stream, and consumer groups with pending entries.
pub fn populate_streams(c: &mut Conn) {
    let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut push = |v: Vec<Vec<u8>>| cmds.push(v);
    push(words("SELECT 3"));
    push(words("XADD stream:small 1-1 name ada born 1815"));
    push(words("XADD stream:small 1-2 name alan born 1912"));
    push(words("XADD stream:small 5-0 other field n -7"));
    push(words("XADD stream:small 5-1 name grace born 1906"));
    push(words("XDEL stream:small 1-2"));
    push(words("PEXPIRE stream:small 500000"));
    for i in 1..=260 {
        let v = "payload ".repeat(i % 7);
        push(cmd(&[
            b"XADD",
            b"stream:big",
            format!("{i}-{i}").as_bytes(),
            b"n",
            i.to_string().as_bytes(),
            b"text",
            v.as_bytes(),
        ]));
    }
    push(words("XDEL stream:big 100-100 101-101 200-200"));
    push(words("XTRIM stream:big MINID 3-3"));
    push(words("XADD stream:empty 7-7 a b"));
    push(words("XDEL stream:empty 7-7"));
    push(words("XGROUP CREATE stream:big readers 0"));
    push(words("XGROUP CREATE stream:big late $ ENTRIESREAD 3"));
    push(words(
        "XREADGROUP GROUP readers alice COUNT 10 STREAMS stream:big >",
    ));
    push(words(
        "XREADGROUP GROUP readers bob COUNT 5 STREAMS stream:big >",
    ));
    push(words(
        "XREADGROUP GROUP readers bob NOACK COUNT 5 STREAMS stream:big >",
    ));
    push(words("XACK stream:big readers 4-4 5-5"));
    push(words(
        "XCLAIM stream:big readers carol 0 6-6 7-7 TIME 1700000000000",
    ));
    push(words("XGROUP CREATECONSUMER stream:big readers idle"));
    push(words("XGROUP CREATE stream:empty g $"));
    push(words("SELECT 0"));
    pipeline(c, &cmds);
}
