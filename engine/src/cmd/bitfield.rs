//! BITFIELD and BITFIELD_RO (`bitops.c`): signed and unsigned integers of 1 to 64
//! bits at any bit offset of a string, read, written and incremented with the
//! WRAP, SAT or FAIL overflow policy.

use crate::command::{CommandSpec, Ctx, DENYOOM, FAST, READONLY, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::keyspace::notify;
use crate::net::reply::Reply;
use crate::types::Value;
use crate::util::{eq_ic, parse_i64};
use bytes::Bytes;

use super::int_arg;
use super::strings::{insert_raw, read_str, str_entry};

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("bitfield", -2, WRITE | DENYOOM, (1, 1, 1), bitfield),
        CommandSpec::new("bitfield_ro", -2, READONLY | FAST, (1, 1, 1), bitfield_ro),
    ]
}

fn bitfield(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    bitfield_generic(ctx, args, false)
}

fn bitfield_ro(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    bitfield_generic(ctx, args, true)
}

/// What happens when a SET or INCRBY does not fit its type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Overflow {
    /// Modular arithmetic (two's complement for signed types); the default.
    Wrap,
    /// Clamp to the type's minimum or maximum.
    Sat,
    /// Leave the field alone and reply nil.
    Fail,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum OpKind {
    Get,
    Set,
    IncrBy,
}

/// One parsed subcommand (`struct bitfieldOp`).
#[derive(Clone, Copy, Debug)]
struct Op {
    kind: OpKind,
    offset: u64,
    /// The SET value or the INCRBY increment.
    value: i64,
    overflow: Overflow,
    bits: u32,
    signed: bool,
}

/// The part of an argument C's string functions see: up to the first NUL byte.
fn c_str(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n])
}

/// `getBitfieldTypeFromArgument`: `i1`..`i64` or `u1`..`u63`.
fn parse_type(arg: &[u8]) -> Result<(bool, u32), CmdError> {
    let err = || {
        CmdError::err(
            "Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.",
        )
    };
    let signed = match arg.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return Err(err()),
    };
    let bits = parse_i64(c_str(&arg[1..])).ok_or_else(err)?;
    let max = if signed { 64 } else { 63 };
    if !(1..=max).contains(&bits) {
        return Err(err());
    }
    Ok((signed, bits as u32))
}

/// `getBitOffsetFromArgument` with `#` allowed: `#N` means N times the type's width.
/// The offset's byte must stay below `proto-max-bulk-len`.
fn parse_offset(ctx: &Ctx, arg: &[u8], bits: u32) -> Result<u64, CmdError> {
    let err = || CmdError::err("bit offset is not an integer or out of range");
    let (hash, digits) = match arg.first() {
        Some(b'#') => (true, &arg[1..]),
        _ => (false, arg),
    };
    let mut v = parse_i64(digits).ok_or_else(err)?;
    if hash {
        // C multiplies a long long without an overflow check; wrapping keeps its result.
        v = v.wrapping_mul(bits as i64);
    }
    if v < 0 || (v as u64 >> 3) >= ctx.store.config.proto_max_bulk_len {
        return Err(err());
    }
    Ok(v as u64)
}

/// Parses every subcommand before anything runs, as Redis does: the first bad one is
/// the reply and nothing is executed.
fn parse_ops(ctx: &Ctx, args: &[Bytes]) -> Result<Vec<Op>, CmdError> {
    let mut ops = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < args.len() {
        let left = args.len() - j - 1;
        let sub = &args[j];
        let kind = if eq_ic(sub, "get") && left >= 2 {
            OpKind::Get
        } else if eq_ic(sub, "set") && left >= 3 {
            OpKind::Set
        } else if eq_ic(sub, "incrby") && left >= 3 {
            OpKind::IncrBy
        } else if eq_ic(sub, "overflow") && left >= 1 {
            let name = &args[j + 1];
            overflow = if eq_ic(name, "wrap") {
                Overflow::Wrap
            } else if eq_ic(name, "sat") {
                Overflow::Sat
            } else if eq_ic(name, "fail") {
                Overflow::Fail
            } else {
                return Err(CmdError::err("Invalid OVERFLOW type specified"));
            };
            j += 2;
            continue;
        } else {
            return Err(CmdError::Syntax);
        };
        let (signed, bits) = parse_type(&args[j + 1])?;
        let offset = parse_offset(ctx, &args[j + 2], bits)?;
        let value = if kind == OpKind::Get {
            0
        } else {
            int_arg(&args[j + 3])?
        };
        ops.push(Op {
            kind,
            offset,
            value,
            overflow,
            bits,
            signed,
        });
        j += if kind == OpKind::Get { 3 } else { 4 };
    }
    Ok(ops)
}

/// `getUnsignedBitfield`: `bits` bits from `offset`, most significant first. Bytes
/// past the end of the string read as zero.
fn get_unsigned(p: &[u8], offset: u64, bits: u32) -> u64 {
    let mut v = 0u64;
    for i in 0..bits as u64 {
        let pos = offset + i;
        let byte = p.get((pos >> 3) as usize).copied().unwrap_or(0);
        let bit = (byte >> (7 - (pos & 7))) & 1;
        v = (v << 1) | bit as u64;
    }
    v
}

/// `getSignedBitfield`: the field sign-extended from its top bit.
fn get_signed(p: &[u8], offset: u64, bits: u32) -> i64 {
    let v = get_unsigned(p, offset, bits);
    if bits < 64 && v & (1u64 << (bits - 1)) != 0 {
        (v | (u64::MAX << bits)) as i64
    } else {
        v as i64
    }
}

/// `setUnsignedBitfield`: writes the low `bits` bits of `value` (the buffer covers
/// the field).
fn set_bits(p: &mut [u8], offset: u64, bits: u32, value: u64) {
    for i in 0..bits as u64 {
        let bitval = ((value >> (bits as u64 - 1 - i)) & 1) as u8;
        let pos = offset + i;
        if let Some(byte) = p.get_mut((pos >> 3) as usize) {
            let shift = 7 - (pos & 7);
            *byte = (*byte & !(1 << shift)) | (bitval << shift);
        }
    }
}

/// `checkUnsignedBitfieldOverflow`: whether `value + incr` leaves `0..=max`, and with
/// WRAP or SAT the value to store instead.
fn unsigned_overflow(value: u64, incr: i64, bits: u32, ow: Overflow) -> (bool, u64) {
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let maxincr = max.wrapping_sub(value) as i64;
    let minincr = (value as i64).wrapping_neg();
    let wrap = || value.wrapping_add(incr as u64) & !(u64::MAX << bits);
    if value > max || (incr > 0 && incr > maxincr) {
        match ow {
            Overflow::Wrap => (true, wrap()),
            Overflow::Sat => (true, max),
            Overflow::Fail => (true, 0),
        }
    } else if incr < 0 && incr < minincr {
        match ow {
            Overflow::Wrap => (true, wrap()),
            Overflow::Sat => (true, 0),
            Overflow::Fail => (true, 0),
        }
    } else {
        (false, 0)
    }
}

/// `checkSignedBitfieldOverflow`: as `unsigned_overflow` for `min..=max` of a
/// two's-complement field.
fn signed_overflow(value: i64, incr: i64, bits: u32, ow: Overflow) -> (bool, i64) {
    let max = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let maxincr = (max as u64).wrapping_sub(value as u64) as i64;
    let minincr = min.wrapping_sub(value);
    let wrap = || {
        let mut c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let mask = u64::MAX << bits;
            if c & (1u64 << (bits - 1)) != 0 {
                c |= mask;
            } else {
                c &= !mask;
            }
        }
        c as i64
    };
    let over =
        value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr);
    let under =
        value < min || (bits != 64 && incr < minincr) || (value < 0 && incr < 0 && incr < minincr);
    match (over, under, ow) {
        (false, false, _) => (false, 0),
        (_, _, Overflow::Wrap) => (true, wrap()),
        (true, _, Overflow::Sat) => (true, max),
        (false, true, Overflow::Sat) => (true, min),
        (_, _, Overflow::Fail) => (true, 0),
    }
}

/// Runs a SET or INCRBY on the buffer: its reply, and whether the field changed
/// (or the string was created or grown, which counts as a change).
fn write_op(p: &mut [u8], op: &Op, grown: bool) -> (Reply, bool) {
    let (over, old, new, reply) = if op.signed {
        let old = get_signed(p, op.offset, op.bits);
        let (over, new, ret) = if op.kind == OpKind::IncrBy {
            let (over, limited) = signed_overflow(old, op.value, op.bits, op.overflow);
            let new = if over {
                limited
            } else {
                old.wrapping_add(op.value)
            };
            (over, new, new)
        } else {
            let (over, limited) = signed_overflow(op.value, 0, op.bits, op.overflow);
            (over, if over { limited } else { op.value }, old)
        };
        (over, old as u64, new as u64, ret)
    } else {
        let old = get_unsigned(p, op.offset, op.bits);
        let (over, new, ret) = if op.kind == OpKind::IncrBy {
            let (over, limited) = unsigned_overflow(old, op.value, op.bits, op.overflow);
            let new = if over {
                limited
            } else {
                old.wrapping_add(op.value as u64)
            };
            (over, new, new as i64)
        } else {
            let value = op.value as u64;
            let (over, limited) = unsigned_overflow(value, 0, op.bits, op.overflow);
            (over, if over { limited } else { value }, old as i64)
        };
        (over, old, new, ret)
    };
    if over && op.overflow == Overflow::Fail {
        return (Reply::Nil, false);
    }
    set_bits(p, op.offset, op.bits, new);
    (Reply::Int(reply), grown || old != new)
}

/// A GET's reply.
fn read_op(p: &[u8], op: &Op) -> Reply {
    if op.signed {
        Reply::Int(get_signed(p, op.offset, op.bits))
    } else {
        Reply::Int(get_unsigned(p, op.offset, op.bits) as i64)
    }
}

/// Runs the operations in order over a buffer already grown to cover every write.
fn run_ops(p: &mut [u8], ops: &[Op], grown: bool) -> (Vec<Reply>, usize) {
    let mut changes = 0;
    let replies = ops
        .iter()
        .map(|op| {
            if op.kind == OpKind::Get {
                return read_op(p, op);
            }
            let (reply, changed) = write_op(p, op, grown);
            changes += changed as usize;
            reply
        })
        .collect();
    (replies, changes)
}

fn bitfield_generic(ctx: &mut Ctx, args: &[Bytes], readonly: bool) -> CmdResult {
    let ops = parse_ops(ctx, args)?;
    let key = &args[1];
    let writes = ops.iter().any(|o| o.kind != OpKind::Get);
    if !writes {
        let s = read_str(ctx, key)?.unwrap_or_default();
        return Ok(Reply::Array(ops.iter().map(|op| read_op(&s, op)).collect()));
    }
    if readonly {
        return Err(CmdError::err(
            "BITFIELD_RO only supports the GET subcommand",
        ));
    }
    // Room up to the farthest bit any write reaches (`lookupStringForBitCommand`).
    let last_bit = ops
        .iter()
        .filter(|o| o.kind != OpKind::Get)
        .map(|o| o.offset + o.bits as u64 - 1)
        .max()
        .unwrap_or(0);
    let need = (last_bit >> 3) as usize + 1;
    let now = ctx.now();
    let db = ctx.db();
    let (replies, changes) = match str_entry(db, key, now)? {
        Some(e) => {
            // The string is unshared (reported `raw`) even if nothing changes.
            e.set_raw(true);
            let (replies, changes) = match &mut e.value {
                Value::Str(b) => {
                    let old_len = b.len();
                    let p = b.resize_mut(old_len.max(need));
                    run_ops(p, &ops, p.len() != old_len)
                }
                _ => (Vec::new(), 0),
            };
            if changes > 0 {
                e.set_written(now);
            }
            (replies, changes)
        }
        None => {
            // Created even when every write fails (then without an event), as Redis.
            let mut v = vec![0u8; need];
            let out = run_ops(&mut v, &ops, true);
            insert_raw(db, key, v, now);
            out
        }
    };
    if changes > 0 {
        ctx.key_event(notify::STRING, "setbit", key);
    }
    Ok(Reply::Array(replies))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_span_bytes_msb_first() {
        // Redis's example: u5 = 23 at offset 7 of zeroes gives 00000001 01110000.
        let mut p = [0u8; 2];
        set_bits(&mut p, 7, 5, 23);
        assert_eq!(p, [0b0000_0001, 0b0111_0000]);
        assert_eq!(get_unsigned(&p, 7, 5), 23);
        assert_eq!(get_signed(&p, 7, 5), 23 - 32);
        // Reads past the end see zeroes.
        assert_eq!(get_unsigned(&p, 12, 16), 0);
        let mut q = [0u8; 8];
        set_bits(&mut q, 0, 64, i64::MIN as u64);
        assert_eq!(get_signed(&q, 0, 64), i64::MIN);
    }

    #[test]
    fn overflow_policies() {
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Wrap), (true, 4));
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Sat), (true, 255));
        assert_eq!(unsigned_overflow(5, -10, 8, Overflow::Wrap), (true, 251));
        assert_eq!(unsigned_overflow(5, -10, 8, Overflow::Sat), (true, 0));
        assert_eq!(unsigned_overflow(5, -5, 8, Overflow::Fail), (false, 0));
        assert!(unsigned_overflow(u64::MAX, 0, 8, Overflow::Fail).0);
        assert_eq!(signed_overflow(127, 1, 8, Overflow::Wrap), (true, -128));
        assert_eq!(signed_overflow(-128, -1, 8, Overflow::Sat), (true, -128));
        assert_eq!(signed_overflow(100, 100, 8, Overflow::Sat), (true, 127));
        assert_eq!(
            signed_overflow(i64::MAX, 1, 64, Overflow::Wrap),
            (true, i64::MIN)
        );
        assert_eq!(signed_overflow(-3, 2, 64, Overflow::Fail), (false, 0));
    }

    #[test]
    fn types() {
        assert_eq!(parse_type(b"i64"), Ok((true, 64)));
        assert_eq!(parse_type(b"u63"), Ok((false, 63)));
        assert!(parse_type(b"u64").is_err());
        assert!(parse_type(b"i0").is_err());
        assert!(parse_type(b"i08").is_err());
        assert!(parse_type(b"").is_err());
        assert!(parse_type(b"x8").is_err());
    }
}
