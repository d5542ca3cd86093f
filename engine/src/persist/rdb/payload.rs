//! DUMP payloads (`createDumpPayload` / `verifyDumpPayload`): the type byte and object
//! as in an RDB file, then the RDB version (2 bytes, little-endian) and the CRC64 of
//! everything before it (8 bytes, little-endian).

use super::crc64;
use super::decode::Reader;
use super::encode::Encoder;
use super::object::{self, Invalid, Limits};
use super::{RdbError, RDB_VERSION};
use crate::types::Value;

/// Why RESTORE refuses a payload; each maps to one of Redis's two replies.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// `ERR DUMP payload version or checksum are wrong`.
    #[error("payload version or checksum are wrong")]
    VersionOrChecksum,
    /// `ERR Bad data format`.
    #[error("bad data format: {0}")]
    Format(#[from] RdbError),
}

/// The DUMP payload of a value. `compression` is `rdbcompression`, `list_fill`
/// `list-max-listpack-size`.
pub fn dump_payload(value: &Value, compression: bool, list_fill: i64) -> Vec<u8> {
    let mut out = vec![object::type_of(value)];
    let mut enc = Encoder::new(compression);
    // Writing into a Vec cannot fail.
    let _ = object::write_value(&mut enc, &mut out, value, list_fill);
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64::checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The value of a DUMP payload, with the encoding Redis gives it under `limits`.
pub fn restore_payload(payload: &[u8], limits: &Limits) -> Result<Value, PayloadError> {
    if payload.len() < 10 {
        return Err(PayloadError::VersionOrChecksum);
    }
    let footer = &payload[payload.len() - 10..];
    let version = u16::from_le_bytes([footer[0], footer[1]]);
    if version > RDB_VERSION {
        return Err(PayloadError::VersionOrChecksum);
    }
    let stored = u64::from_le_bytes(
        footer[2..10]
            .try_into()
            .map_err(|_| PayloadError::VersionOrChecksum)?,
    );
    if crc64::checksum(&payload[..payload.len() - 8]) != stored {
        return Err(PayloadError::VersionOrChecksum);
    }
    // The object is read from the whole payload, footer included, as Redis reads it:
    // an object that runs into the footer is not an error there.
    let mut r = Reader::with_capacity(payload, payload.len());
    let t = r.u8("the type")?;
    let obj = r.object(t, b"")?;
    object::into_value(obj, limits).map_err(|e| {
        let what = match e {
            Invalid::Empty => "an empty collection",
            Invalid::Corrupt(what) => what,
        };
        PayloadError::Format(RdbError::corrupt(0, what))
    })
}

/// Writes each library's code as `RDB_OPCODE_FUNCTION2` and a string
/// (`rdbSaveFunctions`), for RDB files and FUNCTION DUMP alike.
pub fn write_functions<W: std::io::Write>(
    w: &mut W,
    codes: &[bytes::Bytes],
    compression: bool,
) -> std::io::Result<()> {
    let mut enc = Encoder::new(compression);
    for code in codes {
        w.write_all(&[super::opcode::FUNCTION2])?;
        enc.string(w, code)?;
    }
    Ok(())
}

/// The libraries' code in a FUNCTION DUMP payload (`functionRestoreCommand`), or
/// Redis's error text (without `ERR `).
pub fn read_function_payload(payload: &[u8]) -> Result<Vec<bytes::Bytes>, String> {
    let bad = || "DUMP payload version or checksum are wrong".to_string();
    if payload.len() < 10 {
        return Err(bad());
    }
    let footer = &payload[payload.len() - 10..];
    let version = u16::from_le_bytes([footer[0], footer[1]]);
    let stored = u64::from_le_bytes(footer[2..10].try_into().map_err(|_| bad())?);
    if version > RDB_VERSION || crc64::checksum(&payload[..payload.len() - 8]) != stored {
        return Err(bad());
    }
    let mut r = Reader::with_capacity(payload, payload.len());
    let mut codes = Vec::new();
    while payload.len() as u64 - r.offset() > 10 {
        let t = r
            .u8("the type")
            .map_err(|_| "can not read data type".to_string())?;
        match t {
            super::opcode::FUNCTION2 => {}
            super::opcode::FUNCTION_PRE_GA => {
                return Err("Pre-GA function format not supported".into())
            }
            _ => return Err("given type is not a function".into()),
        }
        let code = r
            .string("a function library")
            .map_err(|_| "Failed loading library payload".to_string())?;
        codes.push(bytes::Bytes::from(code));
    }
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::hash::HashLimits;
    use crate::types::zset::ZSetLimits;
    use crate::types::{CompactBytes, Hash, List, Set, ZSet};
    use bytes::Bytes;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// Values built as the commands in the comments build them, and what Redis 7.0.15
    /// answered DUMP with.
    fn redis_dumps() -> Vec<(Value, &'static str)> {
        let mut list = List::new();
        // RPUSH l a b 1 200 -5000 70000 abcdefghijklmnopqrstuvwxyz
        for e in [
            "a",
            "b",
            "1",
            "200",
            "-5000",
            "70000",
            "abcdefghijklmnopqrstuvwxyz",
        ] {
            list.push_back(b(e));
        }
        let mut hash = Hash::default();
        // HSET h f v n 12
        hash.insert(b("f"), b("v"), HashLimits::default());
        hash.insert(b("n"), b("12"), HashLimits::default());
        // SADD s 1 2 3
        let set = Set::build([b("1"), b("2"), b("3")], 512);
        // ZADD z 1 a 2.5 b 0.1 c
        let mut z = ZSet::new();
        for (m, s) in [("a", 1.0), ("b", 2.5), ("c", 0.1)] {
            z.insert(b(m), s, ZSetLimits::default());
        }
        vec![
            (Value::List(Box::new(list)), "120102373700000007008161028162020101c0c802f178ec03f2701101049a6162636465666768696a6b6c6d6e6f707172737475767778797a1bff0a00e6c4ad2a0e7fa09a"),
            (Value::Hash(Box::new(hash)), "1012120000000400816602817602816e020c01ff0a0001369481d35b8974"),
            (Value::Set(Box::new(set)), "0b0e02000000030000000100020003000a00a5025ce26d6e4d1b"),
            (Value::ZSet(Box::new(z)), "11c3232c0d2c000000060081630293302e3130e005000f3114816102010181620283322e3504ff0a00abd762dc832dddfd"),
            (Value::Str(CompactBytes::from("abcdefabcdefabcdefabcdefabcdef")), "00c30e1e0661626364656661e00c050165660a001ad34fb248b80d1d"),
            (Value::Str(CompactBytes::from("12345")), "00c139300a009d94ea2793fc08b9"),
        ]
    }

    #[test]
    fn dumps_are_redis_bytes_and_restore() {
        for (value, redis) in redis_dumps() {
            let payload = dump_payload(&value, true, -2);
            assert_eq!(payload, hex(redis), "{value:?}");
            let back = restore_payload(&payload, &Limits::default()).unwrap();
            assert_eq!(dump_payload(&back, true, -2), payload);
        }
    }

    #[test]
    fn bad_footers_and_bodies() {
        let good = hex("00c139300a009d94ea2793fc08b9");
        let lim = Limits::default();
        assert!(matches!(
            restore_payload(&good[..9], &lim),
            Err(PayloadError::VersionOrChecksum)
        ));
        let mut bad_crc = good.clone();
        *bad_crc.last_mut().unwrap() ^= 1;
        assert!(matches!(
            restore_payload(&bad_crc, &lim),
            Err(PayloadError::VersionOrChecksum)
        ));
        // Version 11 (Redis 7.2) is too new even with a right checksum.
        let mut v11 = good[..good.len() - 10].to_vec();
        v11.extend_from_slice(&11u16.to_le_bytes());
        let crc = crc64::checksum(&v11);
        v11.extend_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            restore_payload(&v11, &lim),
            Err(PayloadError::VersionOrChecksum)
        ));
        // A right footer over a body that is cut short or garbled: a format error, or
        // a value when what is read of the footer happens to fit (as in Redis).
        let seal = |body: &[u8]| {
            let mut p = body.to_vec();
            p.extend_from_slice(&RDB_VERSION.to_le_bytes());
            let crc = crc64::checksum(&p);
            p.extend_from_slice(&crc.to_le_bytes());
            p
        };
        for (value, _) in redis_dumps() {
            let full = dump_payload(&value, true, -2);
            let body = &full[..full.len() - 10];
            for cut in 0..body.len() {
                assert!(!matches!(
                    restore_payload(&seal(&body[..cut]), &lim),
                    Err(PayloadError::VersionOrChecksum)
                ));
            }
            assert!(matches!(
                restore_payload(&seal(&body[..1]), &lim),
                Err(PayloadError::Format(_))
            ));
        }
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..20_000 {
            let (value, _) = &redis_dumps()[rng.usize(..6)];
            let full = dump_payload(value, rng.bool(), -2);
            let mut body = full[..full.len() - 10].to_vec();
            for _ in 0..rng.usize(1..4) {
                let i = rng.usize(..body.len());
                body[i] = rng.u8(..);
            }
            let _ = restore_payload(&seal(&body), &lim);
        }
        // A stream cut short is refused; a minimal version-1 stream (no nodes,
        // length 0, last ID 5-0, no groups) loads as an empty stream.
        assert!(restore_payload(&seal(&[15, 0, 0]), &lim).is_err());
        match restore_payload(&seal(&[15, 0, 0, 5, 0, 0]), &lim) {
            Ok(crate::types::Value::Stream(s)) => {
                assert!(s.is_empty());
                assert_eq!(s.last_id, crate::types::stream::StreamId::new(5, 0));
            }
            other => panic!("{other:?}"),
        }
    }
}
