//! Stream commands (`t_stream.c`): XADD XLEN XRANGE XREVRANGE XDEL XTRIM XSETID, and
//! XREAD/XREADGROUP with blocking. Consumer-group management is in `stream_groups.rs`.

use super::{int_arg, own};
use crate::blocking::BlockKind;
use crate::client::BlockRequest;
use crate::command::{CommandSpec, Ctx, BLOCKING, DENYOOM, FAST, READONLY, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::keyspace::notify;
use crate::net::reply::Reply;
use crate::types::stream::{
    AppendError, Consumer, Group, Pending, Stream, StreamEntry, StreamId, Trim,
    INVALID_ENTRIES_READ,
};
use crate::types::Value;
use crate::util::{eq_ic, parse_i64};
use bytes::Bytes;

/// The command table rows of this family.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("xadd", -5, WRITE | DENYOOM | FAST, (1, 1, 1), xadd),
        CommandSpec::new("xlen", 2, READONLY | FAST, (1, 1, 1), xlen),
        CommandSpec::new("xrange", -4, READONLY, (1, 1, 1), xrange),
        CommandSpec::new("xrevrange", -4, READONLY, (1, 1, 1), xrevrange),
        CommandSpec::new("xdel", -3, WRITE | FAST, (1, 1, 1), xdel),
        CommandSpec::new("xtrim", -4, WRITE, (1, 1, 1), xtrim),
        CommandSpec::new("xsetid", -3, WRITE | DENYOOM | FAST, (1, 1, 1), xsetid),
        CommandSpec::new("xread", -4, READONLY | BLOCKING, (0, 0, 0), xread),
        CommandSpec::new("xreadgroup", -7, WRITE | BLOCKING, (0, 0, 0), xreadgroup),
    ]
}

/// `ERR Invalid stream ID specified as stream command argument`.
pub(crate) fn invalid_id() -> CmdError {
    CmdError::err("Invalid stream ID specified as stream command argument")
}

/// Redis's `string2ull`: a plain integer, else what C's `strtoull` accepts whole
/// (leading blanks, a sign, digits; a `-` wraps around as in C).
fn string2ull(s: &[u8]) -> Option<u64> {
    if let Some(v) = parse_i64(s) {
        return u64::try_from(v).ok();
    }
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        neg = s[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut v: u64 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        v = v.checked_mul(10)?.checked_add(u64::from(s[i] - b'0'))?;
        i += 1;
    }
    if i == start || i != s.len() {
        return None;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// Parses an ID as `streamGenericParseIDOrReply`: `-`, `+` (unless `strict`),
/// `ms`, `ms-seq`, and `ms-*` when `seq_given` is asked for (it is then set false).
pub(crate) fn parse_id(
    b: &[u8],
    missing_seq: u64,
    strict: bool,
    seq_given: Option<&mut bool>,
) -> Result<StreamId, CmdError> {
    // The C code copies into a 128-byte buffer and stops at a NUL.
    if b.len() > 127 {
        return Err(invalid_id());
    }
    let b = match b.iter().position(|&c| c == 0) {
        Some(n) => &b[..n],
        None => b,
    };
    if strict && (b == b"-" || b == b"+") {
        return Err(invalid_id());
    }
    if b == b"-" {
        return Ok(StreamId::MIN);
    }
    if b == b"+" {
        return Ok(StreamId::MAX);
    }
    if let Some(g) = seq_given {
        *g = true;
        // `ms-*`: the sequence is picked by XADD.
        if let Some(ms) = b.strip_suffix(b"-*") {
            if !ms.contains(&b'-') {
                let ms = string2ull(ms).ok_or_else(invalid_id)?;
                *g = false;
                return Ok(StreamId::new(ms, 0));
            }
        }
    }
    match b.iter().position(|&c| c == b'-') {
        Some(dash) => {
            let ms = string2ull(&b[..dash]).ok_or_else(invalid_id)?;
            let seq = string2ull(&b[dash + 1..]).ok_or_else(invalid_id)?;
            Ok(StreamId::new(ms, seq))
        }
        None => {
            let ms = string2ull(b).ok_or_else(invalid_id)?;
            Ok(StreamId::new(ms, missing_seq))
        }
    }
}

/// `streamParseStrictIDOrReply` with no sequence wildcard.
pub(crate) fn strict_id(b: &[u8]) -> Result<StreamId, CmdError> {
    parse_id(b, 0, true, None)
}

/// An entry as replies carry it: `[id, [field, value, ...]]`.
pub(crate) fn entry_reply((id, fv): StreamEntry) -> Reply {
    Reply::Array(vec![
        Reply::Bulk(id.to_bytes()),
        Reply::Array(fv.into_iter().map(Reply::Bulk).collect()),
    ])
}

/// Entries as an array reply.
pub(crate) fn entries_reply(v: Vec<StreamEntry>) -> Reply {
    Reply::Array(v.into_iter().map(entry_reply).collect())
}

/// The stream at `key` for reading (`WRONGTYPE` for another type).
pub(crate) fn read_stream<'a>(
    ctx: &'a mut Ctx,
    key: &[u8],
) -> Result<Option<&'a Stream>, CmdError> {
    let now = ctx.now();
    Ok(ctx.db().stream(key, now)?.map(|s| &**s))
}

/// The stream at `key` for writing.
pub(crate) fn write_stream<'a>(
    ctx: &'a mut Ctx,
    key: &[u8],
) -> Result<Option<&'a mut Stream>, CmdError> {
    let now = ctx.now();
    Ok(ctx.db().stream_mut(key, now)?.map(|s| &mut **s))
}

// ---------------------------------------------------------------------------
// XADD / XTRIM

/// What `streamParseAddOrTrimArgsOrReply` gathers.
struct AddTrim {
    trim: Trim,
    approx: bool,
    limit: u64,
    nomkstream: bool,
    id: Option<StreamId>,
    seq_given: bool,
    /// Where the ID (XADD) stands; the fields follow.
    id_idx: usize,
}

fn parse_add_trim(
    args: &[Bytes],
    xadd: bool,
    node_max_entries: usize,
) -> Result<AddTrim, CmdError> {
    let mut a = AddTrim {
        trim: Trim::None,
        approx: false,
        limit: 0,
        nomkstream: false,
        id: None,
        seq_given: true,
        id_idx: args.len(),
    };
    let mut limit_given = false;
    let mut limit: i64 = 0;
    let mut i = 2;
    let both = "syntax error, MAXLEN and MINID options at the same time are not compatible";
    while i < args.len() {
        let more = args.len() - 1 - i;
        let opt = &args[i][..];
        if xadd && opt == b"*" {
            break;
        } else if eq_ic(opt, "maxlen") && more > 0 {
            if a.trim != Trim::None {
                return Err(CmdError::err(both));
            }
            a.approx = false;
            let next = &args[i + 1][..];
            if more >= 2 && next == b"~" {
                a.approx = true;
                i += 1;
            } else if more >= 2 && next == b"=" {
                i += 1;
            }
            let n = int_arg(&args[i + 1])?;
            if n < 0 {
                return Err(CmdError::err("The MAXLEN argument must be >= 0."));
            }
            i += 1;
            a.trim = Trim::MaxLen(n as u64);
        } else if eq_ic(opt, "minid") && more > 0 {
            if a.trim != Trim::None {
                return Err(CmdError::err(both));
            }
            a.approx = false;
            let next = &args[i + 1][..];
            if more >= 2 && next == b"~" {
                a.approx = true;
                i += 1;
            } else if more >= 2 && next == b"=" {
                i += 1;
            }
            let id = strict_id(&args[i + 1])?;
            i += 1;
            a.trim = Trim::MinId(id);
        } else if eq_ic(opt, "limit") && more > 0 {
            limit = int_arg(&args[i + 1])?;
            if limit < 0 {
                return Err(CmdError::err("The LIMIT argument must be >= 0."));
            }
            limit_given = true;
            i += 1;
        } else if xadd && eq_ic(opt, "nomkstream") {
            a.nomkstream = true;
        } else if xadd {
            let mut seq_given = true;
            a.id = Some(parse_id(opt, 0, true, Some(&mut seq_given))?);
            a.seq_given = seq_given;
            break;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    a.id_idx = i;
    if limit != 0 && a.trim == Trim::None {
        return Err(CmdError::err(
            "syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if !xadd && a.trim == Trim::None {
        return Err(CmdError::err(
            "syntax error, XTRIM must be called with a trimming strategy",
        ));
    }
    if limit_given {
        if !a.approx {
            return Err(CmdError::err(
                "syntax error, LIMIT cannot be used without the special ~ option",
            ));
        }
        a.limit = limit as u64;
    } else if a.approx {
        let l = 100u64.saturating_mul(node_max_entries as u64);
        a.limit = if l == 0 || l > 10_000 { 10_000 } else { l };
    }
    Ok(a)
}

/// The trim clause a replica replays: exact, with the value the trim reached, so
/// that a limited or approximate trim removes the same entries there.
fn replay_trim(s: &Stream, a: &AddTrim) -> Vec<Bytes> {
    match a.trim {
        Trim::None => Vec::new(),
        Trim::MaxLen(n) => {
            let v = if a.approx { s.len() } else { n };
            vec![
                Bytes::from_static(b"MAXLEN"),
                Bytes::from_static(b"="),
                Bytes::from(v.to_string()),
            ]
        }
        Trim::MinId(id) => {
            let v = if a.approx {
                s.edge(false).map(|e| e.0).unwrap_or(StreamId::MIN)
            } else {
                id
            };
            vec![
                Bytes::from_static(b"MINID"),
                Bytes::from_static(b"="),
                v.to_bytes(),
            ]
        }
    }
}

fn xadd(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let a = parse_add_trim(args, true, ctx.stream_limits().max_entries)?;
    let field_pos = a.id_idx + 1;
    let nfv = args.len().saturating_sub(field_pos);
    if nfv < 2 || !nfv.is_multiple_of(2) {
        return Err(CmdError::Arity("xadd".into()));
    }
    if a.id.is_some() && a.seq_given && a.id == Some(StreamId::MIN) {
        return Err(CmdError::err(
            "The ID specified in XADD must be greater than 0-0",
        ));
    }
    let key = &args[1];
    let now = ctx.now();
    let limits = ctx.stream_limits();
    let propagating = ctx.propagating();
    let exists = read_stream(ctx, key)?.is_some();
    if !exists {
        if a.nomkstream {
            return Ok(Reply::Nil);
        }
        ctx.db()
            .insert(own(key), Value::Stream(Box::default()), now);
    }
    let Some(s) = write_stream(ctx, key)? else {
        return Ok(Reply::Nil);
    };
    if s.last_id == StreamId::MAX {
        return Err(CmdError::err(
            "The stream has exhausted the last possible ID, unable to add more items",
        ));
    }
    let id = match s.append(&args[field_pos..], a.id, a.seq_given, now, limits) {
        Ok(id) => id,
        Err(e) => {
            let msg = match e {
                AppendError::IdTooSmall => {
                    "The ID specified in XADD is equal or smaller than the target stream top item"
                }
                AppendError::TooLarge => "Elements are too large to be stored",
            };
            if !exists {
                ctx.db().remove(key, now);
            }
            return Err(CmdError::err(msg));
        }
    };
    let trimmed = s.trim(a.trim, a.approx, a.limit);
    let replay_trim = if propagating {
        Some(replay_trim(s, &a))
    } else {
        None
    };
    ctx.key_event(notify::STREAM, "xadd", key);
    if trimmed > 0 {
        ctx.key_event(notify::STREAM, "xtrim", key);
    }
    // Replays with the concrete ID and an exact trim.
    if let Some(trim) = replay_trim {
        let mut v = vec![Bytes::from_static(b"XADD"), key.clone()];
        if a.nomkstream {
            v.push(Bytes::from_static(b"NOMKSTREAM"));
        }
        v.extend(trim);
        v.push(id.to_bytes());
        v.extend(args[field_pos..].iter().cloned());
        ctx.propagate_as(v);
    }
    Ok(Reply::Bulk(id.to_bytes()))
}

fn xtrim(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let a = parse_add_trim(args, false, ctx.stream_limits().max_entries)?;
    let key = &args[1];
    let propagating = ctx.propagating();
    let Some(s) = write_stream(ctx, key)? else {
        return Ok(Reply::Int(0));
    };
    let n = s.trim(a.trim, a.approx, a.limit);
    if n > 0 {
        let trim = propagating.then(|| replay_trim(s, &a));
        ctx.key_event(notify::STREAM, "xtrim", key);
        if let Some(trim) = trim {
            let mut v = vec![Bytes::from_static(b"XTRIM"), key.clone()];
            v.extend(trim);
            ctx.propagate_as(v);
        }
    }
    Ok(Reply::Int(n as i64))
}

// ---------------------------------------------------------------------------
// XLEN XRANGE XREVRANGE XDEL XSETID

fn xlen(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(
        read_stream(ctx, &args[1])?.map_or(0, |s| s.len() as i64),
    ))
}

/// An interval bound (`streamParseIntervalIDOrReply`): `(` makes it exclusive.
fn interval_id(b: &[u8], missing_seq: u64) -> Result<(StreamId, bool), CmdError> {
    if b.len() > 1 && b[0] == b'(' {
        Ok((parse_id(&b[1..], missing_seq, true, None)?, true))
    } else {
        Ok((parse_id(b, missing_seq, false, None)?, false))
    }
}

fn xrange_generic(ctx: &mut Ctx, args: &[Bytes], rev: bool) -> CmdResult {
    let (sa, ea) = if rev {
        (&args[3], &args[2])
    } else {
        (&args[2], &args[3])
    };
    let (mut start, sx) = interval_id(sa, 0)?;
    if sx {
        start = start
            .incr()
            .ok_or_else(|| CmdError::err("invalid start ID for the interval"))?;
    }
    let (mut end, ex) = interval_id(ea, u64::MAX)?;
    if ex {
        end = end
            .decr()
            .ok_or_else(|| CmdError::err("invalid end ID for the interval"))?;
    }
    let mut count: i64 = -1;
    let mut j = 4;
    while j < args.len() {
        if eq_ic(&args[j], "count") && j + 1 < args.len() {
            count = int_arg(&args[j + 1])?.max(0);
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let Some(s) = read_stream(ctx, &args[1])? else {
        return Ok(Reply::Array(Vec::new()));
    };
    if count == 0 {
        return Ok(Reply::NilArray);
    }
    let count = if count < 0 { 0 } else { count as usize };
    Ok(entries_reply(s.range(start, end, count, rev)))
}

fn xrange(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    xrange_generic(ctx, args, false)
}

fn xrevrange(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    xrange_generic(ctx, args, true)
}

fn xdel(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    if read_stream(ctx, key)?.is_none() {
        return Ok(Reply::Int(0));
    }
    let ids = args[2..]
        .iter()
        .map(|a| strict_id(a))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(s) = write_stream(ctx, key)? else {
        return Ok(Reply::Int(0));
    };
    let mut deleted = 0;
    let mut first = false;
    for id in ids {
        if s.delete(id) {
            if id == s.first_id {
                first = true;
            }
            if id > s.max_deleted_id {
                s.max_deleted_id = id;
            }
            deleted += 1;
        }
    }
    if deleted > 0 {
        if s.is_empty() {
            s.first_id = StreamId::MIN;
        } else if first {
            s.refresh_first_id();
        }
        ctx.key_event(notify::STREAM, "xdel", key);
    }
    Ok(Reply::Int(deleted))
}

fn xsetid(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let id = strict_id(&args[2])?;
    let mut entries_added: i64 = -1;
    let mut max_xdel = StreamId::MIN;
    let mut i = 3;
    while i < args.len() {
        let more = args.len() - 1 - i;
        if eq_ic(&args[i], "entriesadded") && more > 0 {
            entries_added = int_arg(&args[i + 1])?;
            if entries_added < 0 {
                return Err(CmdError::err("entries_added must be positive"));
            }
            i += 2;
        } else if eq_ic(&args[i], "maxdeletedid") && more > 0 {
            max_xdel = strict_id(&args[i + 1])?;
            if id < max_xdel {
                return Err(CmdError::err(
                    "The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                ));
            }
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let key = &args[1];
    let Some(s) = write_stream(ctx, key)? else {
        return Err(CmdError::NoSuchKey);
    };
    if id < s.max_deleted_id {
        return Err(CmdError::err(
            "The ID specified in XSETID is smaller than current max_deleted_entry_id",
        ));
    }
    if !s.is_empty() {
        let top = s.edge(true).map(|e| e.0).unwrap_or(StreamId::MIN);
        if id < top {
            return Err(CmdError::err(
                "The ID specified in XSETID is smaller than the target stream top item",
            ));
        }
        if entries_added != -1 && s.len() > entries_added as u64 {
            return Err(CmdError::err(
                "The entries_added specified in XSETID is smaller than the target stream length",
            ));
        }
    }
    s.last_id = id;
    if entries_added != -1 {
        s.entries_added = entries_added as u64;
    }
    if !max_xdel.is_zero() {
        s.max_deleted_id = max_xdel;
    }
    ctx.key_event_unwatched(notify::STREAM, "xsetid", key);
    Ok(Reply::OK)
}

// ---------------------------------------------------------------------------
// XREAD / XREADGROUP

/// `XREAD_BLOCKED_DEFAULT_COUNT`: a parked reader with no COUNT gets at most this many
/// entries per stream when served.
const BLOCKED_DEFAULT_COUNT: i64 = 1000;

/// Where an XREAD/XREADGROUP read starts for one stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadFrom {
    /// Entries after this ID.
    After(StreamId),
    /// `>`: entries the group has not delivered yet.
    New,
}

fn xread(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    xread_generic(ctx, args, false)
}

fn xreadgroup(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    xread_generic(ctx, args, true)
}

/// XREAD's BLOCK timeout (`getTimeoutFromObjectOrReply` in milliseconds).
fn block_ms(b: &[u8]) -> Result<Option<std::time::Duration>, CmdError> {
    let ms =
        parse_i64(b).ok_or_else(|| CmdError::err("timeout is not an integer or out of range"))?;
    if ms < 0 {
        return Err(CmdError::err("timeout is negative"));
    }
    Ok((ms > 0).then(|| std::time::Duration::from_millis(ms as u64)))
}

fn xread_generic(ctx: &mut Ctx, args: &[Bytes], group_mode: bool) -> CmdResult {
    let mut timeout: Option<Option<std::time::Duration>> = None;
    let mut count: i64 = 0;
    let mut streams_arg = 0;
    let mut nstreams = 0;
    let mut noack = false;
    let mut group: Option<(Bytes, Bytes)> = None;
    let mut i = 1;
    while i < args.len() {
        let more = args.len() - i - 1;
        let o = &args[i][..];
        if eq_ic(o, "block") && more > 0 {
            i += 1;
            timeout = Some(block_ms(&args[i])?);
        } else if eq_ic(o, "count") && more > 0 {
            i += 1;
            count = int_arg(&args[i])?.max(0);
        } else if eq_ic(o, "streams") && more > 0 {
            streams_arg = i + 1;
            let n = args.len() - streams_arg;
            if !n.is_multiple_of(2) {
                let sym = if group_mode { '>' } else { '$' };
                return Err(CmdError::err(format!(
                    "Unbalanced {} list of streams: for each stream key an ID or '{sym}' must be specified.",
                    String::from_utf8_lossy(&args[0])
                )));
            }
            nstreams = n / 2;
            break;
        } else if eq_ic(o, "group") && more >= 2 {
            if !group_mode {
                return Err(CmdError::err(
                    "The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            group = Some((args[i + 1].clone(), args[i + 2].clone()));
            i += 2;
        } else if eq_ic(o, "noack") {
            if !group_mode {
                return Err(CmdError::err(
                    "The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            noack = true;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if streams_arg == 0 {
        return Err(CmdError::Syntax);
    }
    if group_mode && group.is_none() {
        return Err(CmdError::err("Missing GROUP option for XREADGROUP"));
    }
    if group_mode {
        // Replays as the XCLAIM and XGROUP SETID of what it delivered, never as a
        // read a replica would serve differently.
        ctx.prevent_propagation();
    }
    let retry = ctx.serving_blocked();
    let keys: Vec<Bytes> = args[streams_arg..streams_arg + nstreams].to_vec();
    let mut from = Vec::with_capacity(nstreams);
    for (k, key) in keys.iter().enumerate() {
        let idarg = &args[streams_arg + nstreams + k];
        let s = read_stream(ctx, key)?;
        if let Some((g, _)) = &group {
            let has_group = s.is_some_and(|s| s.groups.contains_key(g));
            if !has_group {
                if retry {
                    return Err(CmdError::Other(
                        "NOGROUP the consumer group this client was blocked on no longer exists"
                            .into(),
                    ));
                }
                return Err(CmdError::Other(format!(
                    "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(g)
                )));
            }
        }
        if &idarg[..] == b"$" {
            if group_mode {
                return Err(CmdError::err(
                    "The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
                ));
            }
            from.push(ReadFrom::After(s.map_or(StreamId::MIN, |s| s.last_id)));
        } else if &idarg[..] == b">" {
            if !group_mode {
                return Err(CmdError::err(
                    "The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.",
                ));
            }
            from.push(ReadFrom::New);
        } else {
            from.push(ReadFrom::After(strict_id(idarg)?));
        }
    }
    let now = ctx.now();
    // A parked reader is answered from the key that became ready, alone.
    let only = if retry {
        ctx.store.blocking.serving.clone()
    } else {
        None
    };
    let mut out: Vec<(Reply, Reply)> = Vec::new();
    for (k, key) in keys.iter().enumerate() {
        if only.as_ref().is_some_and(|o| o != key) {
            continue;
        }
        let entries = match &group {
            None => {
                let Some(s) = read_stream(ctx, key)? else {
                    continue;
                };
                let ReadFrom::After(gt) = from[k] else {
                    continue;
                };
                // Served now if a live entry follows `gt` (the last ID bounds them).
                if s.is_empty() || s.last_id <= gt {
                    continue;
                }
                let Some(start) = gt.incr() else { continue };
                let entries = s.range(start, StreamId::MAX, count as usize, false);
                if entries.is_empty() {
                    continue;
                }
                entries_reply(entries)
            }
            Some((g, c)) => match group_read(ctx, key, g, c, from[k], count, noack, now)? {
                Some(r) => r,
                None => continue,
            },
        };
        out.push((Reply::Bulk(key.clone()), entries));
    }
    if !out.is_empty() {
        return Ok(if ctx.client.resp >= 3 {
            Reply::Map(out)
        } else {
            Reply::Array(
                out.into_iter()
                    .map(|(k, v)| Reply::Array(vec![k, v]))
                    .collect(),
            )
        });
    }
    let Some(timeout) = timeout else {
        return Ok(Reply::NilArray);
    };
    if ctx.client.no_block {
        return Ok(Reply::NilArray);
    }
    // Parked: re-run later with `$` resolved to the ID it stood for, and the default
    // count of a blocked read.
    let count = if count > 0 {
        count
    } else {
        BLOCKED_DEFAULT_COUNT
    };
    let mut rerun = vec![Bytes::copy_from_slice(&args[0])];
    if let Some((g, c)) = &group {
        rerun.extend([Bytes::from_static(b"GROUP"), g.clone(), c.clone()]);
    }
    rerun.extend([
        Bytes::from_static(b"COUNT"),
        Bytes::from(count.to_string()),
        Bytes::from_static(b"BLOCK"),
        Bytes::from_static(b"0"),
    ]);
    if noack {
        rerun.push(Bytes::from_static(b"NOACK"));
    }
    rerun.push(Bytes::from_static(b"STREAMS"));
    rerun.extend(keys.iter().cloned());
    for f in &from {
        rerun.push(match f {
            ReadFrom::After(id) => id.to_bytes(),
            ReadFrom::New => Bytes::from_static(b">"),
        });
    }
    ctx.client.block = Some(BlockRequest {
        keys,
        timeout,
        timeout_reply: Reply::NilArray,
        kind: BlockKind::Stream,
        rerun: Some(rerun),
        gone: group
            .is_some()
            .then(|| Reply::Error("UNBLOCKED the stream key no longer exists".into())),
    });
    Ok(Reply::NilArray)
}

/// XREADGROUP on one stream: new entries (`>`) delivered to the group and added to
/// the PEL, or the consumer's own pending history. `None` when `>` finds nothing.
#[allow(clippy::too_many_arguments)]
fn group_read(
    ctx: &mut Ctx,
    key: &Bytes,
    gname: &Bytes,
    cname: &Bytes,
    from: ReadFrom,
    count: i64,
    noack: bool,
    now: u64,
) -> Result<Option<Reply>, CmdError> {
    let propagating = ctx.propagating();
    let mut also: Vec<Vec<Bytes>> = Vec::new();
    let Some(s) = write_stream(ctx, key)? else {
        return Ok(None);
    };
    let Some(g) = s.groups.get_mut(gname) else {
        return Ok(None);
    };
    // `>` with nothing new is not served now: no consumer is created (Redis creates
    // it only when it serves the read).
    let mut new_entries = Vec::new();
    if from == ReadFrom::New {
        let last = g.last_id;
        if s.last_id > last {
            if let Some(start) = last.incr() {
                new_entries = s.range(start, StreamId::MAX, count as usize, false);
            }
        }
        if new_entries.is_empty() {
            return Ok(None);
        }
    }
    let Some(g) = s.groups.get_mut(gname) else {
        return Ok(None);
    };
    let (consumer, created) = consumer_of(g, cname, now);
    consumer.seen_time = now;
    if created && propagating {
        also.push(vec![
            Bytes::from_static(b"XGROUP"),
            Bytes::from_static(b"CREATECONSUMER"),
            key.clone(),
            gname.clone(),
            cname.clone(),
        ]);
    }
    let take = if count == 0 {
        usize::MAX
    } else {
        count as usize
    };
    let reply = match from {
        ReadFrom::After(gt) => {
            // The consumer's history: its own pending entries after `gt`; one
            // deleted since is reported with a null body.
            let ids: Vec<StreamId> = match gt.incr() {
                Some(start) => consumer.pel.range(start..).take(take).copied().collect(),
                None => Vec::new(),
            };
            let found: Vec<Option<Vec<Bytes>>> = ids.iter().map(|id| s.get(*id)).collect();
            let mut out = Vec::with_capacity(ids.len());
            if let Some(g) = s.groups.get_mut(gname) {
                for (id, fv) in ids.into_iter().zip(found) {
                    match fv {
                        Some(fv) => {
                            if let Some(p) = g.pel.get_mut(&id) {
                                p.delivery_time = now;
                                p.delivery_count += 1;
                                // Redis replicates nothing here; an XCLAIM keeps a
                                // replica's delivery counts equal.
                                if propagating {
                                    let p = p.clone();
                                    also.push(xclaim_replay(key, gname, g, id, &p));
                                }
                            }
                            out.push(entry_reply((id, fv)));
                        }
                        None => out.push(Reply::Array(vec![
                            Reply::Bulk(id.to_bytes()),
                            Reply::NilArray,
                        ])),
                    }
                }
            }
            Some(Reply::Array(out))
        }
        ReadFrom::New => {
            deliver(
                s,
                gname,
                cname,
                &new_entries,
                noack,
                now,
                key,
                propagating,
                &mut also,
            );
            Some(entries_reply(new_entries))
        }
    };
    for a in also {
        ctx.also_propagate(a);
    }
    if created {
        ctx.key_event_unwatched(notify::STREAM, "xgroup-createconsumer", key);
    }
    if reply.is_some() {
        // The group changed: through the write path, with no notification (Redis
        // sends none for a read).
        ctx.key_event_unwatched(0, "xreadgroup", key);
    }
    Ok(reply)
}

/// Records the delivery of `entries` to a group's consumer (the part of
/// `streamReplyWithRange` that updates the group): the group's last ID and read
/// counter, and unless NOACK a PEL entry per entry, taken over from another consumer
/// if it was pending there. Collects the replay commands (XCLAIM per entry, then
/// XGROUP SETID).
#[allow(clippy::too_many_arguments)]
fn deliver(
    s: &mut Stream,
    gname: &Bytes,
    cname: &Bytes,
    entries: &[StreamEntry],
    noack: bool,
    now: u64,
    key: &Bytes,
    propagating: bool,
    also: &mut Vec<Vec<Bytes>>,
) {
    let mut moved_last = false;
    for (id, _) in entries {
        let id = *id;
        let (entries_read, last_id) = match s.groups.get(gname) {
            Some(g) => (g.entries_read, g.last_id),
            None => return,
        };
        if id > last_id {
            let new_read = if entries_read != INVALID_ENTRIES_READ
                && !s.range_has_tombstones(id, StreamId::MAX)
            {
                Some(entries_read + 1)
            } else if s.entries_added != 0 {
                Some(s.estimate_distance(id))
            } else {
                None
            };
            if let Some(g) = s.groups.get_mut(gname) {
                if let Some(r) = new_read {
                    g.entries_read = r;
                }
                g.last_id = id;
            }
            moved_last = true;
        }
        let Some(g) = s.groups.get_mut(gname) else {
            return;
        };
        if !noack {
            let nack = Pending {
                delivery_time: now,
                delivery_count: 1,
                consumer: own(cname),
            };
            if let Some(old) = g.pel.insert(id, nack.clone()) {
                if let Some(c) = g.consumers.get_mut(&old.consumer) {
                    c.pel.remove(&id);
                }
            }
            g.consumers.entry(own(cname)).or_default().pel.insert(id);
            if propagating {
                also.push(xclaim_replay(key, gname, g, id, &nack));
            }
        }
    }
    if moved_last && propagating {
        if let Some(g) = s.groups.get(gname) {
            also.push(setid_replay(key, gname, g));
        }
    }
}

/// `streamPropagateXCLAIM`: how a replica learns of a delivery.
pub(crate) fn xclaim_replay(
    key: &Bytes,
    gname: &Bytes,
    g: &Group,
    id: StreamId,
    nack: &Pending,
) -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"XCLAIM"),
        key.clone(),
        gname.clone(),
        nack.consumer.clone(),
        Bytes::from_static(b"0"),
        id.to_bytes(),
        Bytes::from_static(b"TIME"),
        Bytes::from(nack.delivery_time.to_string()),
        Bytes::from_static(b"RETRYCOUNT"),
        Bytes::from(nack.delivery_count.to_string()),
        Bytes::from_static(b"FORCE"),
        Bytes::from_static(b"JUSTID"),
        Bytes::from_static(b"LASTID"),
        g.last_id.to_bytes(),
    ]
}

/// `streamPropagateGroupID`: the group's last ID and read counter.
pub(crate) fn setid_replay(key: &Bytes, gname: &Bytes, g: &Group) -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"XGROUP"),
        Bytes::from_static(b"SETID"),
        key.clone(),
        gname.clone(),
        g.last_id.to_bytes(),
        Bytes::from_static(b"ENTRIESREAD"),
        Bytes::from(g.entries_read.to_string()),
    ]
}

/// A consumer for `name`, created if missing; true when it was created.
pub(crate) fn consumer_of<'a>(
    g: &'a mut Group,
    name: &Bytes,
    now: u64,
) -> (&'a mut Consumer, bool) {
    let created = !g.consumers.contains_key(name);
    let c = g.consumers.entry(own(name)).or_insert_with(|| Consumer {
        seen_time: now,
        pel: Default::default(),
    });
    (c, created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_as_redis() {
        assert_eq!(
            parse_id(b"5", 0, false, None).ok(),
            Some(StreamId::new(5, 0))
        );
        assert_eq!(
            parse_id(b"5", u64::MAX, false, None).ok(),
            Some(StreamId::new(5, u64::MAX))
        );
        assert_eq!(
            parse_id(b"5-3", 0, false, None).ok(),
            Some(StreamId::new(5, 3))
        );
        assert_eq!(parse_id(b"-", 0, false, None).ok(), Some(StreamId::MIN));
        assert!(parse_id(b"-", 0, true, None).is_err());
        assert!(parse_id(b"5-*", 0, true, None).is_err());
        let mut g = true;
        assert_eq!(
            parse_id(b"5-*", 0, true, Some(&mut g)).ok(),
            Some(StreamId::new(5, 0))
        );
        assert!(!g);
        assert!(parse_id(b"-5", 0, false, None).is_err());
        assert_eq!(
            parse_id(b"+5", 0, false, None).ok(),
            Some(StreamId::new(5, 0))
        );
        assert!(parse_id(b"18446744073709551616", 0, false, None).is_err());
        assert_eq!(
            parse_id(b"18446744073709551615-1", 0, false, None).ok(),
            Some(StreamId::new(u64::MAX, 1))
        );
    }
}
