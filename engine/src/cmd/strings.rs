//! String commands (`t_string.c`, `bitops.c`): GET/SET and friends, counters,
//! ranges, LCS and the bit operations.

use crate::command::{CommandSpec, Ctx, DENYOOM, FAST, READONLY, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::keyspace::db::{Db, Entry};
use crate::keyspace::notify;
use crate::net::reply::Reply;
use crate::types::{CompactBytes, Value};
use crate::util::eq_ic;
use bytes::Bytes;

use super::{argv, int_arg};

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("get", 2, READONLY | FAST, (1, 1, 1), get),
        CommandSpec::new("set", -3, WRITE | DENYOOM, (1, 1, 1), set),
        CommandSpec::new("setnx", 3, WRITE | DENYOOM | FAST, (1, 1, 1), setnx),
        CommandSpec::new("setex", 4, WRITE | DENYOOM, (1, 1, 1), setex),
        CommandSpec::new("psetex", 4, WRITE | DENYOOM, (1, 1, 1), psetex),
        CommandSpec::new("getset", 3, WRITE | DENYOOM | FAST, (1, 1, 1), getset),
        CommandSpec::new("getdel", 2, WRITE | FAST, (1, 1, 1), getdel),
        CommandSpec::new("getex", -2, WRITE | FAST, (1, 1, 1), getex),
        CommandSpec::new("mget", -2, READONLY | FAST, (1, -1, 1), mget),
        CommandSpec::new("mset", -3, WRITE | DENYOOM, (1, -1, 2), mset),
        CommandSpec::new("msetnx", -3, WRITE | DENYOOM, (1, -1, 2), msetnx),
        CommandSpec::new("incr", 2, WRITE | DENYOOM | FAST, (1, 1, 1), incr),
        CommandSpec::new("decr", 2, WRITE | DENYOOM | FAST, (1, 1, 1), decr),
        CommandSpec::new("incrby", 3, WRITE | DENYOOM | FAST, (1, 1, 1), incrby),
        CommandSpec::new("decrby", 3, WRITE | DENYOOM | FAST, (1, 1, 1), decrby),
        CommandSpec::new(
            "incrbyfloat",
            3,
            WRITE | DENYOOM | FAST,
            (1, 1, 1),
            incrbyfloat,
        ),
        CommandSpec::new("append", 3, WRITE | DENYOOM, (1, 1, 1), append),
        CommandSpec::new("strlen", 2, READONLY | FAST, (1, 1, 1), strlen),
        CommandSpec::new("getrange", 4, READONLY, (1, 1, 1), getrange),
        CommandSpec::new("substr", 4, READONLY, (1, 1, 1), getrange),
        CommandSpec::new("setrange", 4, WRITE | DENYOOM, (1, 1, 1), setrange),
        CommandSpec::new("lcs", -3, READONLY, (1, 2, 1), lcs),
        CommandSpec::new("setbit", 4, WRITE | DENYOOM, (1, 1, 1), setbit),
        CommandSpec::new("getbit", 3, READONLY | FAST, (1, 1, 1), getbit),
        CommandSpec::new("bitcount", -2, READONLY, (1, 1, 1), bitcount),
        CommandSpec::new("bitpos", -3, READONLY, (1, 1, 1), bitpos),
        CommandSpec::new("bitop", -4, WRITE | DENYOOM, (2, -1, 1), bitop),
    ]
}

/// `ERR string exceeds maximum allowed size (proto-max-bulk-len)`.
fn too_long() -> CmdError {
    CmdError::err("string exceeds maximum allowed size (proto-max-bulk-len)")
}

/// Redis's `checkStringLength`: the result of growing a string to `size + append`
/// bytes must stay within `proto-max-bulk-len`.
fn check_len(ctx: &Ctx, size: u64, append: u64) -> Result<(), CmdError> {
    match size.checked_add(append) {
        Some(t) if t <= ctx.store.config.proto_max_bulk_len => Ok(()),
        _ => Err(too_long()),
    }
}

/// A string value for reading; `WRONGTYPE` for other types.
pub(super) fn read_str(ctx: &mut Ctx, key: &[u8]) -> Result<Option<Bytes>, CmdError> {
    let now = ctx.now();
    Ok(ctx.db().get_str(key, now)?.map(CompactBytes::to_bytes))
}

/// The live entry of a string key for in-place edits; `WRONGTYPE` for other types.
pub(super) fn str_entry<'a>(
    db: &'a mut Db,
    key: &[u8],
    now: u64,
) -> Result<Option<&'a mut Entry>, CmdError> {
    match db.lookup_mut(key, now) {
        None => Ok(None),
        Some(e) => match e.value {
            Value::Str(_) => Ok(Some(e)),
            _ => Err(CmdError::WrongType),
        },
    }
}

/// Opens a string entry for an in-place edit, grown to at least `min_len` bytes (new
/// bytes are zero). The buffer is reused when not shared and grows greedily, so that
/// APPEND in a loop does not copy the whole value each time. The value is now `raw`,
/// as Redis's `dbUnshareStringValue` makes it.
fn edit_str(e: &mut Entry, min_len: usize) -> &mut [u8] {
    e.set_raw(true);
    match &mut e.value {
        Value::Str(b) => {
            let n = b.len().max(min_len);
            b.resize_mut(n)
        }
        _ => &mut [],
    }
}

/// Stores a string built by an edit command on a missing key, reported as `raw`.
pub(super) fn insert_raw(db: &mut Db, key: &[u8], v: Vec<u8>, now: u64) {
    db.insert(key, Value::Str(CompactBytes::from(v)), now);
    if let Some(e) = db.lookup_mut(key, now) {
        e.set_raw(true);
    }
}

fn get(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::opt_bulk(read_str(ctx, &args[1])?))
}

/// Option flags of SET and GETEX (`parseExtendedStringArgumentsOrReply`).
#[derive(Default)]
struct SetOpts {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    /// The expire argument and its kind.
    expire: Option<(Bytes, ExpireKind)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ExpireKind {
    Ex,
    Px,
    ExAt,
    PxAt,
}

/// Parses SET (`is_set`) or GETEX options from `args[start..]`, with Redis's rules on
/// which options exclude which (a conflicting option is a plain syntax error).
fn parse_set_opts(args: &[Bytes], start: usize, is_set: bool) -> Result<SetOpts, CmdError> {
    let mut o = SetOpts::default();
    let mut j = start;
    while j < args.len() {
        let a = &args[j];
        let has_next = j + 1 < args.len();
        let no_expire = o.expire.is_none();
        let exp_is = |k: ExpireKind| o.expire.as_ref().is_none_or(|(_, kk)| *kk == k);
        if eq_ic(a, "nx") && !o.xx && is_set {
            o.nx = true;
        } else if eq_ic(a, "xx") && !o.nx && is_set {
            o.xx = true;
        } else if eq_ic(a, "get") && is_set {
            o.get = true;
        } else if eq_ic(a, "keepttl") && !o.persist && no_expire && is_set {
            o.keepttl = true;
        } else if eq_ic(a, "persist") && !is_set && no_expire && !o.keepttl {
            o.persist = true;
        } else if let Some(kind) = expire_kind(a) {
            if o.keepttl || o.persist || !exp_is(kind) || !has_next {
                return Err(CmdError::Syntax);
            }
            o.expire = Some((args[j + 1].clone(), kind));
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    Ok(o)
}

fn expire_kind(a: &[u8]) -> Option<ExpireKind> {
    if eq_ic(a, "ex") {
        Some(ExpireKind::Ex)
    } else if eq_ic(a, "px") {
        Some(ExpireKind::Px)
    } else if eq_ic(a, "exat") {
        Some(ExpireKind::ExAt)
    } else if eq_ic(a, "pxat") {
        Some(ExpireKind::PxAt)
    } else {
        None
    }
}

/// `getExpireMillisecondsOrReply`: the absolute expiry in ms of an EX/PX/EXAT/PXAT
/// argument, or `ERR invalid expire time in '<cmd>' command`.
fn expire_ms(arg: &[u8], kind: ExpireKind, now: u64, cmd: &str) -> Result<u64, CmdError> {
    let v = int_arg(arg)?;
    let seconds = matches!(kind, ExpireKind::Ex | ExpireKind::ExAt);
    let invalid = || CmdError::InvalidExpire(cmd.to_string());
    if v <= 0 || (seconds && v > i64::MAX / 1000) {
        return Err(invalid());
    }
    let mut ms = if seconds { v * 1000 } else { v };
    if matches!(kind, ExpireKind::Ex | ExpireKind::Px) {
        // Redis adds without an overflow check and then refuses a non-positive result.
        ms = ms.wrapping_add(now as i64);
    }
    if ms <= 0 {
        return Err(invalid());
    }
    Ok(ms as u64)
}

/// Outcome of `set_generic` when NX/XX refuse the write.
enum SetOutcome {
    Done,
    Aborted,
}

/// `setGenericCommand` without the reply: validates the expiry, applies NX/XX, stores
/// the value and sends the `set` (and `expire`) events. With `get`, returns the old
/// value first (WRONGTYPE when it is not a string).
fn set_generic(
    ctx: &mut Ctx,
    key: &Bytes,
    val: &Bytes,
    o: &SetOpts,
    cmd: &str,
) -> Result<(SetOutcome, Option<Bytes>), CmdError> {
    let now = ctx.now();
    let when = match &o.expire {
        Some((arg, kind)) => Some(expire_ms(arg, *kind, now, cmd)?),
        None => None,
    };
    let old = if o.get { read_str(ctx, key)? } else { None };
    // The lookup answers NX/XX and lazily expires an old value (so its `expired`
    // event fires as in Redis); without TTLs in the db and without NX/XX it is a
    // wasted probe on the hottest path.
    let db = ctx.db();
    let found = if o.nx || o.xx || db.volatile_len() > 0 {
        db.lookup(key, now).is_some()
    } else {
        false
    };
    if (o.nx && found) || (o.xx && !found) {
        return Ok((SetOutcome::Aborted, old));
    }
    let db = ctx.db();
    if o.keepttl {
        db.insert_keep_ttl(key, Value::Str(CompactBytes::from(val)), now);
    } else {
        db.insert(key, Value::Str(CompactBytes::from(val)), now);
    }
    if let Some(at) = when {
        db.set_expire(key, at, now);
    }
    ctx.key_event(notify::STRING, "set", key);
    if let Some(at) = when {
        ctx.key_event(notify::GENERIC, "expire", key);
        // A relative expiry goes to replicas and the AOF as an absolute one, so that
        // replaying it later keeps the same deadline (as Redis: SET ... PXAT).
        if ctx.propagating()
            && o.expire
                .as_ref()
                .is_some_and(|(_, k)| *k != ExpireKind::PxAt)
        {
            let at = at.to_string();
            ctx.propagate_as(argv(&[b"SET", key, val, b"PXAT", at.as_bytes()]));
        }
    }
    Ok((SetOutcome::Done, old))
}

fn set(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let o = parse_set_opts(args, 3, true)?;
    let (outcome, old) = set_generic(ctx, &args[1], &args[2], &o, "set")?;
    Ok(match (o.get, outcome) {
        (true, _) => Reply::opt_bulk(old),
        (false, SetOutcome::Done) => Reply::OK,
        (false, SetOutcome::Aborted) => Reply::Nil,
    })
}

fn setnx(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let o = SetOpts {
        nx: true,
        ..Default::default()
    };
    Ok(match set_generic(ctx, &args[1], &args[2], &o, "setnx")?.0 {
        SetOutcome::Done => Reply::Int(1),
        SetOutcome::Aborted => Reply::Int(0),
    })
}

fn setex_generic(ctx: &mut Ctx, args: &[Bytes], kind: ExpireKind, cmd: &str) -> CmdResult {
    let o = SetOpts {
        expire: Some((args[2].clone(), kind)),
        ..Default::default()
    };
    set_generic(ctx, &args[1], &args[3], &o, cmd)?;
    Ok(Reply::OK)
}

fn setex(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    setex_generic(ctx, args, ExpireKind::Ex, "setex")
}

fn psetex(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    setex_generic(ctx, args, ExpireKind::Px, "psetex")
}

fn getset(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let old = read_str(ctx, &args[1])?;
    let now = ctx.now();
    ctx.db()
        .insert(&args[1], Value::Str(CompactBytes::from(&args[2])), now);
    ctx.key_event(notify::STRING, "set", &args[1]);
    Ok(Reply::opt_bulk(old))
}

fn getdel(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let Some(v) = read_str(ctx, &args[1])? else {
        return Ok(Reply::Nil);
    };
    let now = ctx.now();
    ctx.db().remove(&args[1], now);
    ctx.key_event(notify::GENERIC, "del", &args[1]);
    Ok(Reply::Bulk(v))
}

fn getex(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let o = parse_set_opts(args, 2, false)?;
    let key = &args[1];
    let Some(v) = read_str(ctx, key)? else {
        return Ok(Reply::Nil);
    };
    let now = ctx.now();
    let Some((arg, kind)) = &o.expire else {
        if o.persist && ctx.db().persist(key, now) {
            ctx.key_event(notify::GENERIC, "persist", key);
            ctx.propagate_as(argv(&[b"PERSIST", key]));
        }
        return Ok(Reply::Bulk(v));
    };
    let at = expire_ms(arg, *kind, now, "getex")?;
    let absolute = matches!(kind, ExpireKind::ExAt | ExpireKind::PxAt);
    if absolute && at <= now {
        ctx.db().remove(key, now);
        ctx.key_event(notify::GENERIC, "del", key);
        ctx.propagate_as(argv(&[b"DEL", key]));
    } else {
        ctx.db().set_expire(key, at, now);
        ctx.key_event(notify::GENERIC, "expire", key);
        if ctx.propagating() {
            ctx.propagate_as(argv(&[b"PEXPIREAT", key, at.to_string().as_bytes()]));
        }
    }
    Ok(Reply::Bulk(v))
}

fn mget(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    let out = args[1..]
        .iter()
        .map(|k| match db.lookup(k, now) {
            Some(Entry {
                value: Value::Str(b),
                ..
            }) => Reply::Bulk(b.to_bytes()),
            _ => Reply::Nil,
        })
        .collect();
    Ok(Reply::Array(out))
}

fn mset_generic(ctx: &mut Ctx, args: &[Bytes], nx: bool) -> Result<bool, CmdError> {
    if args.len().is_multiple_of(2) {
        return Err(CmdError::Arity(
            if nx { "msetnx" } else { "mset" }.to_string(),
        ));
    }
    let now = ctx.now();
    if nx {
        let db = ctx.db();
        if args[1..]
            .chunks(2)
            .any(|kv| db.lookup(&kv[0], now).is_some())
        {
            return Ok(false);
        }
    }
    for kv in args[1..].chunks(2) {
        ctx.db()
            .insert(&kv[0], Value::Str(CompactBytes::from(&kv[1])), now);
        ctx.key_event(notify::STRING, "set", &kv[0]);
    }
    Ok(true)
}

fn mset(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    mset_generic(ctx, args, false)?;
    Ok(Reply::OK)
}

fn msetnx(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(mset_generic(ctx, args, true)? as i64))
}

/// `incrDecrCommand`: adds to an integer string, keeping its TTL.
fn incr_decr(ctx: &mut Ctx, key: &Bytes, by: i64) -> CmdResult {
    let old = match read_str(ctx, key)? {
        Some(b) => int_arg(&b)?,
        None => 0,
    };
    let new = old.checked_add(by).ok_or(CmdError::Overflow)?;
    let now = ctx.now();
    ctx.db()
        .insert_keep_ttl(key, Value::Str(CompactBytes::from(new.to_string())), now);
    ctx.key_event(notify::STRING, "incrby", key);
    Ok(Reply::Int(new))
}

fn incr(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    incr_decr(ctx, &args[1], 1)
}

fn decr(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    incr_decr(ctx, &args[1], -1)
}

fn incrby(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let by = int_arg(&args[2])?;
    incr_decr(ctx, &args[1], by)
}

fn decrby(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let by = int_arg(&args[2])?;
    if by == i64::MIN {
        return Err(CmdError::err("decrement would overflow"));
    }
    incr_decr(ctx, &args[1], -by)
}

fn incrbyfloat(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    use crate::longdouble::{incr_by_float, IncrError};
    let key = &args[1];
    let old = read_str(ctx, key)?;
    // Redis works in x87 long double; the software model reproduces its digits.
    let text = match incr_by_float(old.as_deref(), &args[2]) {
        Ok(t) => Bytes::from(t),
        Err(IncrError::NotFloat) => return Err(CmdError::NotFloat),
        Err(IncrError::NanOrInf) => {
            return Err(CmdError::err("increment would produce NaN or Infinity"))
        }
    };
    let now = ctx.now();
    ctx.db()
        .insert_keep_ttl(key, Value::Str(CompactBytes::from(&text)), now);
    ctx.key_event(notify::STRING, "incrbyfloat", key);
    // The result, not the increment: float formatting must not differ on a replica.
    if ctx.propagating() {
        ctx.propagate_as(argv(&[b"SET", key, &text, b"KEEPTTL"]));
    }
    Ok(Reply::Bulk(text))
}

fn append(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (key, add) = (&args[1], &args[2]);
    let now = ctx.now();
    let cur_len = match str_entry(ctx.db(), key, now)? {
        None => None,
        Some(e) => Some(match &e.value {
            Value::Str(b) => b.len(),
            _ => 0,
        }),
    };
    let total = match cur_len {
        None => {
            ctx.db()
                .insert(key, Value::Str(CompactBytes::from(add)), now);
            add.len()
        }
        Some(len) => {
            check_len(ctx, len as u64, add.len() as u64)?;
            let Some(e) = str_entry(ctx.db(), key, now)? else {
                return Ok(Reply::Int(0));
            };
            let v = edit_str(e, len + add.len());
            v[len..].copy_from_slice(add);
            v.len()
        }
    };
    ctx.key_event(notify::STRING, "append", key);
    Ok(Reply::Int(total as i64))
}

fn strlen(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(
        read_str(ctx, &args[1])?.map_or(0, |b| b.len()) as i64
    ))
}

fn getrange(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let mut start = int_arg(&args[2])?;
    let mut end = int_arg(&args[3])?;
    let empty = Reply::Bulk(Bytes::new());
    let Some(s) = read_str(ctx, &args[1])? else {
        return Ok(empty);
    };
    if start < 0 && end < 0 && start > end {
        return Ok(empty);
    }
    let len = s.len() as i64;
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return Ok(empty);
    }
    Ok(Reply::Bulk(s.slice(start as usize..=end as usize)))
}

fn setrange(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (key, val) = (&args[1], &args[3]);
    let offset = int_arg(&args[2])?;
    if offset < 0 {
        return Err(CmdError::err("offset is out of range"));
    }
    let offset = offset as u64;
    let now = ctx.now();
    let cur_len = match str_entry(ctx.db(), key, now)? {
        None => None,
        Some(e) => Some(match &e.value {
            Value::Str(b) => b.len(),
            _ => 0,
        }),
    };
    match cur_len {
        None => {
            if val.is_empty() {
                return Ok(Reply::Int(0));
            }
            check_len(ctx, offset, val.len() as u64)?;
            let mut v = vec![0u8; offset as usize + val.len()];
            v[offset as usize..].copy_from_slice(val);
            let total = v.len();
            insert_raw(ctx.db(), key, v, now);
            ctx.key_event(notify::STRING, "setrange", key);
            Ok(Reply::Int(total as i64))
        }
        Some(len) => {
            if val.is_empty() {
                return Ok(Reply::Int(len as i64));
            }
            check_len(ctx, offset, val.len() as u64)?;
            let Some(e) = str_entry(ctx.db(), key, now)? else {
                return Ok(Reply::Int(0));
            };
            let end = offset as usize + val.len();
            let v = edit_str(e, end);
            v[offset as usize..end].copy_from_slice(val);
            let total = v.len();
            ctx.key_event(notify::STRING, "setrange", key);
            Ok(Reply::Int(total as i64))
        }
    }
}

/// `getBitOffsetFromArgument` for SETBIT/GETBIT: a non-negative bit offset whose byte
/// stays below `proto-max-bulk-len`.
fn bit_offset(ctx: &Ctx, b: &[u8]) -> Result<u64, CmdError> {
    let err = || CmdError::err("bit offset is not an integer or out of range");
    let v = crate::util::parse_i64(b).ok_or_else(err)?;
    if v < 0 || (v as u64 >> 3) >= ctx.store.config.proto_max_bulk_len {
        return Err(err());
    }
    Ok(v as u64)
}

fn setbit(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let offset = bit_offset(ctx, &args[2])?;
    let err = || CmdError::err("bit is not an integer or out of range");
    let on = crate::util::parse_i64(&args[3]).ok_or_else(err)?;
    if on & !1 != 0 {
        return Err(err());
    }
    let now = ctx.now();
    let byte = (offset >> 3) as usize;
    let bit = 7 - (offset & 7) as u8;
    let db = ctx.db();
    let set = |v: &mut [u8]| {
        let old = (v[byte] >> bit) & 1;
        v[byte] = (v[byte] & !(1 << bit)) | ((on as u8) << bit);
        old
    };
    let old = match str_entry(db, key, now)? {
        Some(e) => set(edit_str(e, byte + 1)),
        None => {
            let mut v = vec![0u8; byte + 1];
            let old = set(&mut v);
            insert_raw(db, key, v, now);
            old
        }
    };
    ctx.key_event(notify::STRING, "setbit", key);
    Ok(Reply::Int(old as i64))
}

fn getbit(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let offset = bit_offset(ctx, &args[2])?;
    let Some(s) = read_str(ctx, &args[1])? else {
        return Ok(Reply::Int(0));
    };
    let byte = (offset >> 3) as usize;
    let bit = 7 - (offset & 7) as u8;
    Ok(Reply::Int(s.get(byte).map_or(0, |b| (b >> bit) & 1) as i64))
}

/// Resolves a BITCOUNT/BITPOS range as `bitops.c` does. `end == None` means "to the
/// end of the string". Returns the inclusive bit range, or `None` when it is empty.
fn bit_range(len: usize, start: i64, end: Option<i64>, isbit: bool) -> Option<(u64, u64)> {
    let mut totlen = len as i64;
    if isbit {
        totlen <<= 3;
    }
    let mut end = end.unwrap_or(totlen - 1);
    let mut start = start;
    if start < 0 {
        start = start.saturating_add(totlen);
    }
    if end < 0 {
        end = end.saturating_add(totlen);
    }
    start = start.max(0);
    end = end.max(0);
    if end >= totlen {
        end = totlen - 1;
    }
    if start > end {
        return None;
    }
    if isbit {
        Some((start as u64, end as u64))
    } else {
        Some(((start as u64) << 3, ((end as u64) << 3) + 7))
    }
}

fn bit_at(s: &[u8], i: u64) -> u8 {
    (s[(i >> 3) as usize] >> (7 - (i & 7))) & 1
}

fn bitcount(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let Some(s) = read_str(ctx, &args[1])? else {
        return Ok(Reply::Int(0));
    };
    let (start, end, isbit) = match args.len() {
        2 => (0, None, false),
        4 | 5 => {
            let start = int_arg(&args[2])?;
            let end = int_arg(&args[3])?;
            if start < 0 && end < 0 && start > end {
                return Ok(Reply::Int(0));
            }
            let isbit = match args.get(4) {
                None => false,
                Some(a) if eq_ic(a, "bit") => true,
                Some(a) if eq_ic(a, "byte") => false,
                Some(_) => return Err(CmdError::Syntax),
            };
            (start, Some(end), isbit)
        }
        _ => return Err(CmdError::Syntax),
    };
    let Some((lo, hi)) = bit_range(s.len(), start, end, isbit) else {
        return Ok(Reply::Int(0));
    };
    let mut count: u64 = 0;
    let mut i = lo;
    // Whole bytes in the middle are counted with popcount, the ragged edges bit by bit.
    while i <= hi {
        if i & 7 == 0 && i + 7 <= hi {
            count += s[(i >> 3) as usize].count_ones() as u64;
            i += 8;
        } else {
            count += bit_at(&s, i) as u64;
            i += 1;
        }
    }
    Ok(Reply::Int(count as i64))
}

fn bitpos(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let bit = int_arg(&args[2])?;
    if bit != 0 && bit != 1 {
        return Err(CmdError::err("The bit argument must be 1 or 0."));
    }
    let Some(s) = read_str(ctx, &args[1])? else {
        return Ok(Reply::Int(if bit == 1 { -1 } else { 0 }));
    };
    let (start, end, isbit) = match args.len() {
        3 => (0, None, false),
        4..=6 => {
            let start = int_arg(&args[3])?;
            let isbit = match args.get(5) {
                None => false,
                Some(a) if eq_ic(a, "bit") => true,
                Some(a) if eq_ic(a, "byte") => false,
                Some(_) => return Err(CmdError::Syntax),
            };
            let end = match args.get(4) {
                Some(a) => Some(int_arg(a)?),
                None => None,
            };
            (start, end, isbit)
        }
        _ => return Err(CmdError::Syntax),
    };
    let Some((lo, hi)) = bit_range(s.len(), start, end, isbit) else {
        return Ok(Reply::Int(-1));
    };
    let want = bit as u8;
    let skip = if want == 1 { 0u8 } else { 0xFF };
    let mut i = lo;
    while i <= hi {
        if i & 7 == 0 && i + 7 <= hi && s[(i >> 3) as usize] == skip {
            i += 8;
            continue;
        }
        if bit_at(&s, i) == want {
            return Ok(Reply::Int(i as i64));
        }
        i += 1;
    }
    // Looking for a clear bit without an explicit end: the string is padded with zeros
    // on the right, so the first clear bit is just past the end.
    if want == 0 && end.is_none() {
        return Ok(Reply::Int((hi + 1) as i64));
    }
    Ok(Reply::Int(-1))
}

fn bitop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    #[derive(PartialEq)]
    enum Op {
        And,
        Or,
        Xor,
        Not,
    }
    let op = if eq_ic(&args[1], "and") {
        Op::And
    } else if eq_ic(&args[1], "or") {
        Op::Or
    } else if eq_ic(&args[1], "xor") {
        Op::Xor
    } else if eq_ic(&args[1], "not") {
        Op::Not
    } else {
        return Err(CmdError::Syntax);
    };
    if op == Op::Not && args.len() != 4 {
        return Err(CmdError::err(
            "BITOP NOT must be called with a single source key.",
        ));
    }
    let mut srcs: Vec<Bytes> = Vec::with_capacity(args.len() - 3);
    for k in &args[3..] {
        srcs.push(read_str(ctx, k)?.unwrap_or_default());
    }
    let maxlen = srcs.iter().map(|s| s.len()).max().unwrap_or(0);
    let target = &args[2];
    let now = ctx.now();
    if maxlen == 0 {
        if ctx.db().remove(target, now).is_some() {
            ctx.key_event(notify::GENERIC, "del", target);
        }
        return Ok(Reply::Int(0));
    }
    let byte = |s: &Bytes, i: usize| s.get(i).copied().unwrap_or(0);
    let res: Vec<u8> = (0..maxlen)
        .map(|i| {
            let mut it = srcs.iter().map(|s| byte(s, i));
            let first = it.next().unwrap_or(0);
            match op {
                Op::Not => !first,
                Op::And => it.fold(first, |a, b| a & b),
                Op::Or => it.fold(first, |a, b| a | b),
                Op::Xor => it.fold(first, |a, b| a ^ b),
            }
        })
        .collect();
    insert_raw(ctx.db(), target, res, now);
    ctx.key_event(notify::STRING, "set", target);
    Ok(Reply::Int(maxlen as i64))
}

/// One matching range found by LCS IDX: positions in A, positions in B, length.
type LcsMatch = ((u32, u32), (u32, u32), u32);

/// The longest common subsequence of `a` and `b` with Redis's table walk, so that
/// the string and the IDX ranges come out exactly as Redis's (ties go towards `j--`).
fn lcs_compute(a: &[u8], b: &[u8]) -> (Vec<u8>, Vec<LcsMatch>) {
    let (alen, blen) = (a.len(), b.len());
    let w = blen + 1;
    let mut t = vec![0u32; (alen + 1) * w];
    for i in 1..=alen {
        for j in 1..=blen {
            t[i * w + j] = if a[i - 1] == b[j - 1] {
                t[(i - 1) * w + j - 1] + 1
            } else {
                t[(i - 1) * w + j].max(t[i * w + j - 1])
            };
        }
    }
    let mut idx = t[alen * w + blen] as usize;
    let mut result = vec![0u8; idx];
    let mut ranges = Vec::new();
    let none = alen as u32;
    let (mut as_, mut ae, mut bs, mut be) = (none, 0u32, 0u32, 0u32);
    let (mut i, mut j) = (alen, blen);
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            result[idx - 1] = a[i - 1];
            if as_ == none {
                as_ = (i - 1) as u32;
                ae = as_;
                bs = (j - 1) as u32;
                be = bs;
            } else if as_ == i as u32 && bs == j as u32 {
                as_ -= 1;
                bs -= 1;
            } else {
                emit = true;
            }
            if as_ == 0 || bs == 0 {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            j -= 1;
        } else {
            let l1 = t[(i - 1) * w + j];
            let l2 = t[i * w + j - 1];
            if l1 > l2 {
                i -= 1;
            } else {
                j -= 1;
            }
            if as_ != none {
                emit = true;
            }
        }
        if emit {
            ranges.push(((as_, ae), (bs, be), ae.wrapping_sub(as_).wrapping_add(1)));
            as_ = none;
        }
    }
    (result, ranges)
}

fn lcs(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let mut vals = [Bytes::new(), Bytes::new()];
    for (n, k) in args[1..3].iter().enumerate() {
        match ctx.db().lookup(k, now) {
            None => {}
            Some(Entry {
                value: Value::Str(b),
                ..
            }) => vals[n] = b.to_bytes(),
            Some(_) => {
                return Err(CmdError::err(
                    "The specified keys must contain string values",
                ))
            }
        }
    }
    let (mut getlen, mut getidx, mut withmatchlen) = (false, false, false);
    let mut minmatchlen: i64 = 0;
    let mut j = 3;
    while j < args.len() {
        let a = &args[j];
        if eq_ic(a, "idx") {
            getidx = true;
        } else if eq_ic(a, "len") {
            getlen = true;
        } else if eq_ic(a, "withmatchlen") {
            withmatchlen = true;
        } else if eq_ic(a, "minmatchlen") && j + 1 < args.len() {
            minmatchlen = int_arg(&args[j + 1])?.max(0);
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    if getidx && getlen {
        return Err(CmdError::err(
            "If you want both the length and indexes, please just use IDX.",
        ));
    }
    let (a, b) = (&vals[0], &vals[1]);
    if a.len() as u64 >= u32::MAX as u64 - 1 || b.len() as u64 >= u32::MAX as u64 - 1 {
        return Err(CmdError::err("String too long for LCS"));
    }
    let cells = (a.len() as u64 + 1) * (b.len() as u64 + 1);
    if cells.saturating_mul(4) > ctx.store.config.proto_max_bulk_len {
        return Err(CmdError::err(
            "Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    let (result, ranges) = lcs_compute(a, b);
    let len = result.len() as i64;
    if getidx {
        let matches = ranges
            .into_iter()
            .filter(|r| minmatchlen == 0 || r.2 as i64 >= minmatchlen)
            .map(|((a0, a1), (b0, b1), l)| {
                let mut v = vec![
                    Reply::Array(vec![Reply::Int(a0 as i64), Reply::Int(a1 as i64)]),
                    Reply::Array(vec![Reply::Int(b0 as i64), Reply::Int(b1 as i64)]),
                ];
                if withmatchlen {
                    v.push(Reply::Int(l as i64));
                }
                Reply::Array(v)
            })
            .collect();
        return Ok(Reply::Map(vec![
            (Reply::text("matches"), Reply::Array(matches)),
            (Reply::text("len"), Reply::Int(len)),
        ]));
    }
    if getlen {
        return Ok(Reply::Int(len));
    }
    Ok(Reply::Bulk(Bytes::from(result)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcs_like_redis() {
        let (s, r) = lcs_compute(b"ohmytext", b"mynewtext");
        assert_eq!(s, b"mytext");
        assert_eq!(r, vec![((4, 7), (5, 8), 4), ((2, 3), (0, 1), 2)]);
        let (s, r) = lcs_compute(b"", b"abc");
        assert!(s.is_empty() && r.is_empty());
    }

    #[test]
    fn bit_ranges() {
        assert_eq!(bit_range(3, 0, None, false), Some((0, 23)));
        assert_eq!(bit_range(3, 1, Some(1), false), Some((8, 15)));
        assert_eq!(bit_range(3, 5, Some(30), true), Some((5, 23)));
        assert_eq!(bit_range(3, 2, Some(1), false), None);
        assert_eq!(bit_range(0, 0, None, false), None);
    }
}
