//! HyperLogLog commands (`hyperloglog.c`): PFADD, PFCOUNT, PFMERGE, PFSELFTEST and
//! PFDEBUG over string values in Redis's own sparse and dense layouts (see
//! `types::hll`).

use crate::command::{CommandSpec, Ctx, ADMIN, DENYOOM, FAST, READONLY, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::keyspace::notify;
use crate::net::reply::Reply;
use crate::types::hll::{self, Corrupt, Encoding};
use crate::types::{CompactBytes, Value};
use crate::util::eq_ic;
use bytes::Bytes;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("pfadd", -2, WRITE | DENYOOM | FAST, (1, 1, 1), pfadd),
        CommandSpec::new("pfcount", -2, READONLY, (1, -1, 1), pfcount),
        CommandSpec::new("pfmerge", -2, WRITE | DENYOOM, (1, -1, 1), pfmerge),
        CommandSpec::new("pfselftest", 1, ADMIN, (0, 0, 0), pfselftest),
        CommandSpec::new("pfdebug", 3, WRITE | DENYOOM | ADMIN, (2, 2, 1), pfdebug),
    ]
}

/// `hll-sparse-max-bytes`: past this length a sparse HLL turns dense.
fn sparse_max_bytes(ctx: &Ctx) -> usize {
    usize::try_from(ctx.store.config.hll_sparse_max_bytes).unwrap_or(usize::MAX)
}

/// The reply for a string that is not an HLL.
fn not_hll() -> CmdError {
    CmdError::Other("WRONGTYPE Key is not a valid HyperLogLog string value.".into())
}

fn corrupt(_: Corrupt) -> CmdError {
    CmdError::Other(Corrupt.to_string())
}

/// `isHLLObjectOrReply` on a stored value: the string and its encoding.
fn as_hll(v: &Value) -> Result<(&CompactBytes, Encoding), CmdError> {
    match v {
        Value::Str(s) => Ok((s, hll::encoding_of(s).ok_or_else(not_hll)?)),
        _ => Err(CmdError::WrongType),
    }
}

/// The HLL stored under `key` for editing: its string, unshared (reported `raw` as
/// after Redis's `dbUnshareStringValue`), and its encoding. `None` when missing.
fn hll_mut<'a>(
    ctx: &'a mut Ctx,
    key: &[u8],
) -> Result<Option<(&'a mut CompactBytes, Encoding)>, CmdError> {
    let now = ctx.now();
    let Some(e) = ctx.db().lookup_mut(key, now) else {
        return Ok(None);
    };
    let enc = as_hll(&e.value)?.1;
    e.set_raw(true);
    match &mut e.value {
        Value::Str(s) => Ok(Some((s, enc))),
        _ => Err(CmdError::WrongType),
    }
}

/// Stores a new HLL string (Redis creates it raw).
fn insert_new(ctx: &mut Ctx, key: &[u8], h: Vec<u8>) {
    let now = ctx.now();
    let db = ctx.db();
    db.insert(key, Value::Str(CompactBytes::from(h)), now);
    if let Some(e) = db.lookup_mut(key, now) {
        e.set_raw(true);
    }
}

fn pfadd(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let max = sparse_max_bytes(ctx);
    let mut updated = 0;
    let mut failed = None;
    match hll_mut(ctx, key)? {
        None => {
            // A new key counts as an update even without elements.
            let mut h = hll::new_sparse();
            updated += 1;
            for ele in &args[2..] {
                match hll::add(&mut h, ele, max) {
                    Ok(grew) => updated += grew as usize,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if failed.is_none() {
                hll::invalidate(&mut h);
            }
            insert_new(ctx, key, h);
        }
        Some((s, Encoding::Dense)) => {
            // Dense registers are edited where they are.
            let len = s.len();
            let h = s.resize_mut(len);
            for ele in &args[2..] {
                updated += hll::dense_add(h, ele) as usize;
            }
            if updated > 0 {
                hll::invalidate(h);
            }
        }
        Some((s, Encoding::Sparse)) => {
            let mut h = s.to_vec();
            for ele in &args[2..] {
                match hll::add(&mut h, ele, max) {
                    Ok(grew) => updated += grew as usize,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if updated > 0 && failed.is_none() {
                hll::invalidate(&mut h);
            }
            if updated > 0 {
                *s = CompactBytes::from(h);
            }
        }
    }
    // A corrupt HLL stops PFADD where it is, without an event (as Redis).
    if let Some(e) = failed {
        return Err(corrupt(e));
    }
    if updated > 0 {
        let now = ctx.now();
        if let Some(e) = ctx.db().lookup_mut(key, now) {
            e.set_written(now);
        }
        ctx.key_event(notify::STRING, "pfadd", key);
    }
    Ok(Reply::Int((updated > 0) as i64))
}

fn pfcount(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    if args.len() > 2 {
        // The union of several HLLs, computed on one byte per register.
        let mut max = Box::new([0u8; hll::REGISTERS]);
        let now = ctx.now();
        for key in &args[1..] {
            let Some(e) = ctx.db().lookup_mut(key, now) else {
                continue;
            };
            let (s, _) = as_hll(&e.value)?;
            hll::merge_into(&mut max, s).map_err(corrupt)?;
        }
        return Ok(Reply::Int(hll::estimate(&hll::raw_histogram(&max)) as i64));
    }
    let key = &args[1];
    let Some((s, _)) = hll_mut(ctx, key)? else {
        return Ok(Reply::Int(0));
    };
    if let Some(card) = hll::cached_card(s) {
        return Ok(Reply::Int(card as i64));
    }
    let card = hll::estimate(&hll::histogram(s).map_err(corrupt)?);
    let len = s.len();
    hll::set_card(s.resize_mut(len), card);
    // Caching the result rewrites the value: Redis signals the key as modified (WATCH)
    // without a keyspace event, and so does the engine (class 0 publishes nothing).
    ctx.key_event(0, "pfcount", key);
    Ok(Reply::Int(card as i64))
}

fn pfmerge(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let mut max = Box::new([0u8; hll::REGISTERS]);
    let mut use_dense = false;
    let now = ctx.now();
    // The destination is one of the sources.
    for key in &args[1..] {
        let Some(e) = ctx.db().lookup_mut(key, now) else {
            continue;
        };
        let (s, enc) = as_hll(&e.value)?;
        use_dense |= enc == Encoding::Dense;
        hll::merge_into(&mut max, s).map_err(corrupt)?;
    }
    let dst = &args[1];
    let max_bytes = sparse_max_bytes(ctx);
    let mut h = match hll_mut(ctx, dst)? {
        Some((s, _)) => s.to_vec(),
        None => hll::new_sparse(),
    };
    if use_dense && hll::encoding_of(&h) == Some(Encoding::Sparse) {
        h = hll::sparse_to_dense(&h).map_err(corrupt)?;
    }
    for (i, &m) in max.iter().enumerate() {
        if m == 0 {
            continue;
        }
        // As in Redis, a failed sparse edit (a corrupt destination) is not reported.
        let _ = match hll::encoding_of(&h) {
            Some(Encoding::Dense) => Ok(hll::dense_set(&mut h, i, m)),
            _ => hll::sparse_set(&mut h, i, m, max_bytes),
        };
    }
    hll::invalidate(&mut h);
    match hll_mut(ctx, dst)? {
        Some((s, _)) => *s = CompactBytes::from(h),
        None => insert_new(ctx, dst, h),
    }
    if let Some(e) = ctx.db().lookup_mut(dst, now) {
        e.set_written(now);
    }
    // PFMERGE announces itself as a mass PFADD.
    ctx.key_event(notify::STRING, "pfadd", dst);
    Ok(Reply::OK)
}

/// PFSELFTEST: Redis's 1000 rounds of register round trips, then ten million
/// elements into a sparse and a dense HLL side by side.
fn pfselftest(ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    hll::self_test(1000, 10_000_000, sparse_max_bytes(ctx)).map_err(CmdError::Other)?;
    Ok(Reply::OK)
}

/// PFDEBUG GETREG|DECODE|ENCODING|TODENSE key.
fn pfdebug(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (sub, key) = (&args[1], &args[2]);
    let Some((s, enc)) = hll_mut(ctx, key)? else {
        return Err(CmdError::err("The specified key does not exist"));
    };
    if eq_ic(sub, "getreg") || eq_ic(sub, "todense") {
        let converted = enc == Encoding::Sparse;
        if converted {
            *s = CompactBytes::from(hll::sparse_to_dense(s).map_err(corrupt)?);
        }
        let reply = if eq_ic(sub, "getreg") {
            let regs = &s[hll::HDR..];
            Reply::Array(
                (0..hll::REGISTERS)
                    .map(|i| Reply::Int(hll::dense_get(regs, i) as i64))
                    .collect(),
            )
        } else {
            Reply::Int(converted as i64)
        };
        if converted {
            // A new encoding is a new value for persistence and replicas; Redis
            // propagates it without signalling WATCH, the engine's write path does both.
            ctx.key_event(0, "pfdebug", key);
        }
        return Ok(reply);
    }
    if eq_ic(sub, "decode") {
        if enc != Encoding::Sparse {
            return Err(CmdError::err("HLL encoding is not sparse"));
        }
        return Ok(Reply::text(hll::decode(s)));
    }
    if eq_ic(sub, "encoding") {
        return Ok(Reply::Simple(enc.name()));
    }
    Err(CmdError::err(format!(
        "Unknown PFDEBUG subcommand '{}'",
        String::from_utf8_lossy(sub)
    )))
}
