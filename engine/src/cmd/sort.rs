//! SORT and SORT_RO (`sort.c`): sort a list, set or sorted set by its elements or by
//! values looked up through a `BY` pattern, reply with the elements or with values
//! fetched through `GET` patterns, or store the result as a list.

use crate::command::{CommandSpec, Ctx, DENYOOM, MOVABLE_KEYS, READONLY, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::keyspace::db::Db;
use crate::keyspace::notify;
use crate::net::reply::Reply;
use crate::types::{List, Value};
use crate::util::eq_ic;
use bytes::Bytes;
use std::cmp::Ordering;

use super::int_arg;
use super::pqsort::pqsort;

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("sort", -2, WRITE | DENYOOM | MOVABLE_KEYS, (1, 1, 1), sort),
        CommandSpec::new("sort_ro", -2, READONLY | MOVABLE_KEYS, (1, 1, 1), sort_ro),
    ]
}

fn sort(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    sort_generic(ctx, args, false)
}

fn sort_ro(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    sort_generic(ctx, args, true)
}

/// The options of one SORT call.
#[derive(Default)]
struct SortOpts {
    desc: bool,
    alpha: bool,
    /// LIMIT offset and count (count < 0: to the end).
    limit_start: i64,
    limit_count: i64,
    store: Option<Bytes>,
    by: Option<Bytes>,
    /// `BY` names a constant (no `*`): keep the container's own order.
    dontsort: bool,
    gets: Vec<Bytes>,
}

/// Parses the options after the key as `sortCommandGeneric` does: the last ASC/DESC
/// wins, every GET adds an output column, STORE is refused by SORT_RO.
fn parse_opts(args: &[Bytes], readonly: bool) -> Result<SortOpts, CmdError> {
    let mut o = SortOpts {
        limit_count: -1,
        ..SortOpts::default()
    };
    let mut j = 2;
    while j < args.len() {
        let left = args.len() - j - 1;
        let a = &args[j];
        if eq_ic(a, "asc") {
            o.desc = false;
        } else if eq_ic(a, "desc") {
            o.desc = true;
        } else if eq_ic(a, "alpha") {
            o.alpha = true;
        } else if eq_ic(a, "limit") && left >= 2 {
            o.limit_start = int_arg(&args[j + 1])?;
            o.limit_count = int_arg(&args[j + 2])?;
            j += 2;
        } else if !readonly && eq_ic(a, "store") && left >= 1 {
            o.store = Some(args[j + 1].clone());
            j += 1;
        } else if eq_ic(a, "by") && left >= 1 {
            let pattern = &args[j + 1];
            // A pattern without `*` (in its C-string part) names one constant key:
            // nothing to sort by. A later BY with a `*` does not undo this.
            if !c_str(pattern).contains(&b'*') {
                o.dontsort = true;
            }
            o.by = Some(pattern.clone());
            j += 1;
        } else if eq_ic(a, "get") && left >= 1 {
            o.gets.push(args[j + 1].clone());
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    Ok(o)
}

/// The part of an argument C's string functions see: up to the first NUL byte.
fn c_str(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n])
}

/// `lookupKeyByPattern`: `#` is the element itself; otherwise the first `*` is
/// replaced by the element and the key read as a string, or, with `->field` after
/// the `*`, as a hash field. `None` when the pattern has no `*` or nothing is there.
fn lookup_by_pattern(db: &mut Db, now: u64, pattern: &[u8], subst: &Bytes) -> Option<Bytes> {
    let cpat = c_str(pattern);
    if cpat == b"#" {
        return Some(subst.clone());
    }
    let star = cpat.iter().position(|&c| c == b'*')?;
    // `strstr(p+1, "->")` with something after the arrow; the field then runs to the
    // end of the whole argument.
    let arrow = cpat[star + 1..]
        .windows(2)
        .position(|w| w == b"->")
        .map(|i| star + 1 + i)
        .filter(|&f| f + 2 < cpat.len());
    let key_end = arrow.unwrap_or(pattern.len());
    let mut key = Vec::with_capacity(key_end + subst.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(subst);
    key.extend_from_slice(&pattern[star + 1..key_end]);
    let entry = db.lookup_mut(&key, now)?;
    match (arrow, &entry.value) {
        (Some(f), Value::Hash(h)) => h.get(&pattern[f + 2..]).cloned(),
        (None, Value::Str(s)) => Some(s.to_bytes()),
        _ => None,
    }
}

/// One element to sort (`redisSortObject`).
struct Item {
    obj: Bytes,
    /// Numeric weight (0 when the BY key is missing).
    score: f64,
    /// ALPHA weight from the BY key (`None` when missing).
    cmpobj: Option<Bytes>,
}

impl Item {
    fn new(obj: Bytes) -> Item {
        Item {
            obj,
            score: 0.0,
            cmpobj: None,
        }
    }
}

/// Which comparison `sortCompare` makes.
#[derive(Clone, Copy)]
struct Order {
    desc: bool,
    alpha: bool,
    by_pattern: bool,
    /// With STORE Redis compares bytes; without, ALPHA uses `strcoll`.
    store: bool,
}

/// `strcoll` in the C.UTF-8 locale Redis runs under: code point order, which for
/// byte strings is byte order, up to the first NUL.
fn collate(a: &[u8], b: &[u8]) -> Ordering {
    c_str(a).cmp(c_str(b))
}

/// `sortCompare`. Scores are never NaN here: a NaN is a conversion error, and then
/// nothing is sorted.
fn compare(a: &Item, b: &Item, o: Order) -> Ordering {
    let cmp = if !o.alpha {
        match a.score.partial_cmp(&b.score) {
            Some(Ordering::Equal) | None => a.obj.cmp(&b.obj),
            Some(ord) => ord,
        }
    } else if o.by_pattern {
        match (&a.cmpobj, &b.cmpobj) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) if o.store => x.cmp(y),
            (Some(x), Some(y)) => collate(x, y),
        }
    } else if o.store {
        a.obj.cmp(&b.obj)
    } else {
        collate(&a.obj, &b.obj)
    };
    if o.desc {
        cmp.reverse()
    } else {
        cmp
    }
}

/// The numeric weight of a value as SORT reads it: C's `strtod` over the whole
/// string (leading spaces, hex and `inf` allowed), refusing NaN and any `ERANGE`
/// (overflow, and underflow to zero or to a subnormal).
fn sort_score(b: &[u8]) -> Option<f64> {
    let (v, range_err) = super::zsets::c_strtod(b)?;
    let subnormal = v != 0.0 && v.abs() < f64::MIN_POSITIVE;
    if range_err || subnormal || v.is_nan() {
        None
    } else {
        Some(v)
    }
}

/// The container being sorted, copied out of the keyspace.
enum Source {
    List(Vec<Bytes>),
    Set(Vec<Bytes>),
    ZSet(Vec<Bytes>),
}

/// Reads the key to sort (a missing key is an empty list). A sorted set is marked
/// `skiplist`, as Redis converts it destructively before sorting.
fn load_source(ctx: &mut Ctx, key: &[u8]) -> Result<Source, CmdError> {
    let now = ctx.now();
    let Some(entry) = ctx.db().lookup_mut(key, now) else {
        return Ok(Source::List(Vec::new()));
    };
    match &mut entry.value {
        Value::List(l) => Ok(Source::List(l.items().iter().cloned().collect())),
        Value::Set(s) => Ok(Source::Set(s.iter().collect())),
        Value::ZSet(z) => {
            z.set_skiplist(true);
            Ok(Source::ZSet(z.iter().map(|m| m.member.clone()).collect()))
        }
        _ => Err(CmdError::WrongType),
    }
}

fn sort_generic(ctx: &mut Ctx, args: &[Bytes], readonly: bool) -> CmdResult {
    let mut o = parse_opts(args, readonly)?;
    let source = load_source(ctx, &args[1])?;
    // An unsorted set would store (or replicate) in hash order: sort it by its
    // elements instead.
    if o.dontsort && matches!(source, Source::Set(_)) && o.store.is_some() {
        o.dontsort = false;
        o.alpha = true;
        o.by = None;
    }
    let len = match &source {
        Source::List(v) | Source::Set(v) | Source::ZSet(v) => v.len() as i64,
    };
    // LIMIT sanity checks, as Redis's (C long arithmetic, wrapping on absurd counts).
    let mut start = o.limit_start.max(0);
    let mut end = if o.limit_count < 0 {
        len - 1
    } else {
        start.wrapping_add(o.limit_count).wrapping_sub(1)
    };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    if end >= len {
        end = len - 1;
    }
    let mut items: Vec<Item> = match source {
        // Containers with an order of their own keep it when there is nothing to sort;
        // only the LIMIT range is loaded, from the end for DESC.
        Source::List(v) | Source::ZSet(v) if o.dontsort => {
            let ranged = start != 0 || end != len - 1;
            let want = if ranged {
                (end - start + 1).max(0)
            } else {
                len
            } as usize;
            let taken: Vec<Item> = if end >= start {
                let skip = start.max(0) as usize;
                if o.desc {
                    v.into_iter()
                        .rev()
                        .skip(skip)
                        .take(want)
                        .map(Item::new)
                        .collect()
                } else {
                    v.into_iter().skip(skip).take(want).map(Item::new).collect()
                }
            } else {
                Vec::new()
            };
            if end >= start {
                end -= start;
                start = 0;
            }
            taken
        }
        Source::List(v) | Source::Set(v) | Source::ZSet(v) => {
            v.into_iter().map(Item::new).collect()
        }
    };
    let mut conversion_error = false;
    if !o.dontsort {
        let now = ctx.now();
        for it in items.iter_mut() {
            let byval = match &o.by {
                Some(p) => match lookup_by_pattern(ctx.db(), now, p, &it.obj) {
                    Some(v) => v,
                    None => continue,
                },
                None => it.obj.clone(),
            };
            if o.alpha {
                if o.by.is_some() {
                    it.cmpobj = Some(byval);
                }
            } else {
                match sort_score(&byval) {
                    Some(s) => it.score = s,
                    None => conversion_error = true,
                }
            }
        }
        // Redis sorts anyway and then replies with the error; the order is unused.
        if !conversion_error {
            let order = Order {
                desc: o.desc,
                alpha: o.alpha,
                by_pattern: o.by.is_some(),
                store: o.store.is_some(),
            };
            let cmp = |a: &Item, b: &Item| compare(a, b, order);
            if o.by.is_some() && (start != 0 || end != items.len() as i64 - 1) {
                pqsort(&mut items, cmp, start, end);
            } else {
                // Stable, as glibc's merge-sorting qsort (ties keep the container order).
                items.sort_by(cmp);
            }
        }
    }
    if conversion_error {
        return Err(CmdError::err(
            "One or more scores can't be converted into double",
        ));
    }
    let range: &[Item] = if end >= start && start >= 0 {
        let hi = (end as usize).min(items.len().saturating_sub(1));
        items.get(start as usize..=hi).unwrap_or(&[])
    } else {
        &[]
    };
    let now = ctx.now();
    match &o.store {
        None => {
            let mut out = Vec::with_capacity(range.len() * o.gets.len().max(1));
            for it in range {
                if o.gets.is_empty() {
                    out.push(Reply::Bulk(it.obj.clone()));
                }
                for g in &o.gets {
                    out.push(Reply::opt_bulk(lookup_by_pattern(
                        ctx.db(),
                        now,
                        g,
                        &it.obj,
                    )));
                }
            }
            Ok(Reply::Array(out))
        }
        Some(dst) => {
            let mut list = List::new();
            for it in range {
                if o.gets.is_empty() {
                    list.push_back(it.obj.clone());
                }
                for g in &o.gets {
                    let v = lookup_by_pattern(ctx.db(), now, g, &it.obj).unwrap_or_default();
                    list.push_back(v);
                }
            }
            let n = list.len();
            if n > 0 {
                ctx.db()
                    .insert(super::own(dst), Value::List(Box::new(list)), now);
                ctx.key_event(notify::LIST, "sortstore", dst);
            } else if ctx.db().remove(dst, now).is_some() {
                ctx.key_event(notify::GENERIC, "del", dst);
            }
            Ok(Reply::Int(n as i64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_read_like_strtod() {
        assert_eq!(sort_score(b"1.5"), Some(1.5));
        assert_eq!(sort_score(b"  7"), Some(7.0));
        assert_eq!(sort_score(b""), Some(0.0));
        assert_eq!(sort_score(b"0x10"), Some(16.0));
        assert_eq!(sort_score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(sort_score(b"nan"), None);
        assert_eq!(sort_score(b"1e400"), None);
        assert_eq!(sort_score(b"1e-310"), None);
        assert_eq!(sort_score(b"12abc"), None);
    }

    #[test]
    fn alpha_collation_stops_at_nul() {
        assert_eq!(collate(b"a\0z", b"a\0b"), Ordering::Equal);
        assert_eq!(collate(b"ab", b"b"), Ordering::Less);
    }
}
