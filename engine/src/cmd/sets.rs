//! Set commands (`t_set.c`), with Redis 7.0's replies, errors and events.

use crate::command::{CommandSpec, Ctx, DENYOOM, FAST, READONLY, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::keyspace::notify;
use crate::net::reply::Reply;
use crate::types::{Set, Value};
use crate::util::eq_ic;
use bytes::Bytes;

use super::hashes::{parse_cursor, parse_scan_opts, random_count_arg, scan_reply};
use super::{int_arg, own};

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("sadd", -3, WRITE | DENYOOM | FAST, (1, 1, 1), sadd),
        CommandSpec::new("srem", -3, WRITE | FAST, (1, 1, 1), srem),
        CommandSpec::new("smove", 4, WRITE | FAST, (1, 2, 1), smove),
        CommandSpec::new("sismember", 3, READONLY | FAST, (1, 1, 1), sismember),
        CommandSpec::new("smismember", -3, READONLY | FAST, (1, 1, 1), smismember),
        CommandSpec::new("scard", 2, READONLY | FAST, (1, 1, 1), scard),
        CommandSpec::new("smembers", 2, READONLY, (1, 1, 1), smembers),
        CommandSpec::new("spop", -2, WRITE | FAST, (1, 1, 1), spop),
        CommandSpec::new("srandmember", -2, READONLY, (1, 1, 1), srandmember),
        CommandSpec::new("sinter", -2, READONLY, (1, -1, 1), sinter),
        // Key positions come from numkeys (movablekeys), as COMMAND INFO reports 0 0 0.
        CommandSpec::new("sintercard", -3, READONLY, (0, 0, 0), sintercard),
        CommandSpec::new("sinterstore", -3, WRITE | DENYOOM, (1, -1, 1), sinterstore),
        CommandSpec::new("sunion", -2, READONLY, (1, -1, 1), sunion),
        CommandSpec::new("sunionstore", -3, WRITE | DENYOOM, (1, -1, 1), sunionstore),
        CommandSpec::new("sdiff", -2, READONLY, (1, -1, 1), sdiff),
        CommandSpec::new("sdiffstore", -3, WRITE | DENYOOM, (1, -1, 1), sdiffstore),
        CommandSpec::new("sscan", -3, READONLY, (1, 1, 1), sscan),
    ]
}

/// Read access to a set (`None` when the key is missing).
fn read<'a>(ctx: &'a mut Ctx, key: &[u8]) -> Result<Option<&'a Set>, CmdError> {
    let now = ctx.now();
    ctx.db().set(key, now)
}

fn bulks(members: impl IntoIterator<Item = Bytes>) -> Vec<Reply> {
    members.into_iter().map(Reply::Bulk).collect()
}

fn sadd(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (now, max) = (ctx.now(), ctx.intset_max());
    let s = ctx.db().set_or_create(&args[1], now)?;
    let mut added = 0;
    for m in &args[2..] {
        if s.insert(own(m), max) {
            added += 1;
        }
    }
    if added > 0 {
        ctx.key_event(notify::SET, "sadd", &args[1]);
    }
    Ok(Reply::Int(added))
}

fn srem(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    let Some(s) = db.set_mut(&args[1], now)? else {
        return Ok(Reply::Int(0));
    };
    let mut deleted = 0;
    for m in &args[2..] {
        if s.remove(m) {
            deleted += 1;
            if s.is_empty() {
                break;
            }
        }
    }
    let removed = db.remove_if_empty(&args[1]);
    if deleted > 0 {
        ctx.key_event(notify::SET, "srem", &args[1]);
        if removed {
            ctx.key_event(notify::GENERIC, "del", &args[1]);
        }
    }
    Ok(Reply::Int(deleted))
}

fn smove(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (src, dst, m) = (&args[1], &args[2], &args[3]);
    let (now, max) = (ctx.now(), ctx.intset_max());
    let db = ctx.db();
    // A missing source answers 0 before the destination's type is looked at.
    if db.set_mut(src, now)?.is_none() {
        return Ok(Reply::Int(0));
    }
    db.set_mut(dst, now)?;
    if src == dst {
        let has = db.set_mut(src, now)?.is_some_and(|s| s.contains(m));
        return Ok(Reply::Int(has as i64));
    }
    if !db.set_mut(src, now)?.is_some_and(|s| s.remove(m)) {
        return Ok(Reply::Int(0));
    }
    let src_removed = db.remove_if_empty(src);
    let added = db.set_or_create(dst, now)?.insert(own(m), max);
    ctx.key_event(notify::SET, "srem", src);
    if src_removed {
        ctx.key_event(notify::GENERIC, "del", src);
    }
    if added {
        ctx.key_event(notify::SET, "sadd", dst);
    }
    Ok(Reply::Int(1))
}

fn sismember(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(
        read(ctx, &args[1])?.is_some_and(|s| s.contains(&args[2])) as i64,
    ))
}

fn smismember(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let s = read(ctx, &args[1])?;
    Ok(Reply::Array(
        args[2..]
            .iter()
            .map(|m| Reply::Int(s.is_some_and(|s| s.contains(m)) as i64))
            .collect(),
    ))
}

fn scard(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(
        read(ctx, &args[1])?.map_or(0, |s| s.len()) as i64
    ))
}

fn smembers(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Set(
        read(ctx, &args[1])?.map_or_else(Vec::new, |s| bulks(s.iter())),
    ))
}

fn spop(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let key = &args[1];
    let now = ctx.now();
    let popped = match args.len() {
        2 => {
            let db = ctx.db();
            let Some(m) = db.set_mut(key, now)?.and_then(|s| s.pop_random()) else {
                return Ok(Reply::Nil);
            };
            let removed = db.remove_if_empty(key);
            ctx.key_event(notify::SET, "spop", key);
            if removed {
                ctx.key_event(notify::GENERIC, "del", key);
            }
            // A random pop replays as the removal of what it popped.
            if ctx.propagating() {
                ctx.propagate_as(super::argv(&[b"SREM", key, &m]));
            }
            return Ok(Reply::Bulk(m));
        }
        3 => {
            let count = int_arg(&args[2])
                .ok()
                .filter(|c| *c >= 0)
                .ok_or(CmdError::NotPositive)? as u64;
            let db = ctx.db();
            let Some(s) = db.set_mut(key, now)? else {
                return Ok(Reply::Set(Vec::new()));
            };
            if count == 0 {
                return Ok(Reply::Set(Vec::new()));
            }
            if count >= s.len() as u64 {
                // The whole set goes, in its own order (ascending for an intset).
                let all = std::mem::take(s).members();
                ctx.propagate_as(super::argv(&[b"DEL", key]));
                all
            } else {
                let popped: Vec<Bytes> = (0..count).filter_map(|_| s.pop_random()).collect();
                if ctx.propagating() {
                    // SREMs of what was popped, 1024 members at a time, as Redis.
                    for chunk in popped.chunks(1024) {
                        let mut v = super::argv(&[b"SREM", key]);
                        v.extend(chunk.iter().cloned());
                        ctx.also_propagate(v);
                    }
                    ctx.prevent_propagation();
                }
                popped
            }
        }
        _ => return Err(CmdError::Syntax),
    };
    let removed = ctx.db().remove_if_empty(key);
    ctx.key_event(notify::SET, "spop", key);
    if removed {
        ctx.key_event(notify::GENERIC, "del", key);
    }
    Ok(Reply::Set(bulks(popped)))
}

fn srandmember(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    match args.len() {
        2 => {
            return Ok(Reply::opt_bulk(
                read(ctx, &args[1])?.and_then(|s| s.random()),
            ))
        }
        3 => {}
        _ => return Err(CmdError::Syntax),
    }
    let l = random_count_arg(&args[2])?;
    let Some(s) = read(ctx, &args[1])? else {
        return Ok(Reply::Array(Vec::new()));
    };
    let count = l.unsigned_abs();
    let out = if count == 0 {
        Vec::new()
    } else if l < 0 || count == 1 {
        (0..count).filter_map(|_| s.random()).collect()
    } else if count >= s.len() as u64 {
        s.members()
    } else {
        s.random_distinct(count as usize)
    };
    Ok(Reply::Array(bulks(out)))
}

/// Looks up the sets behind `keys` for SINTER/SUNION/SDIFF: missing keys are `None`,
/// a key of another type is `WRONGTYPE` (checked in order, past missing keys, as Redis).
fn load_sets<'a>(ctx: &'a mut Ctx, keys: &[Bytes]) -> Result<Vec<Option<&'a Set>>, CmdError> {
    let now = ctx.now();
    let db = ctx.db();
    // First pass: lazy expiry and type checks, which need `&mut`.
    for k in keys {
        db.set_mut(k, now)?;
    }
    let db: &crate::keyspace::db::Db = db;
    Ok(keys
        .iter()
        .map(|k| match db.get_live(k, now).map(|e| &e.value) {
            Some(Value::Set(s)) => Some(&**s),
            _ => None,
        })
        .collect())
}

/// The intersection, iterating the smallest set (so an intset yields ascending
/// members, as in Redis); stops after `limit` members when `limit` > 0.
fn intersect(sets: &[Option<&Set>], limit: usize) -> Vec<Bytes> {
    let mut sets: Vec<&Set> = match sets.iter().copied().collect::<Option<Vec<_>>>() {
        Some(v) => v,
        None => return Vec::new(),
    };
    // Stable, like glibc's qsort (a merge sort) that Redis calls.
    sets.sort_by_key(|s| s.len());
    let Some((first, rest)) = sets.split_first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in first.iter() {
        if rest.iter().all(|s| s.contains(&m)) {
            out.push(m);
            if limit > 0 && out.len() >= limit {
                break;
            }
        }
    }
    out
}

/// The union or the difference, built into a fresh set as Redis does (so an all-integer
/// result is an intset and replies in ascending order).
fn union_or_diff(sets: &[Option<&Set>], diff: bool, max_intset: usize) -> Set {
    let mut out = Set::default();
    if diff {
        let Some(Some(first)) = sets.first() else {
            return out;
        };
        for m in first.iter() {
            if !sets[1..].iter().flatten().any(|s| s.contains(&m)) {
                out.insert(m, max_intset);
            }
        }
    } else {
        for s in sets.iter().flatten() {
            for m in s.iter() {
                out.insert(m, max_intset);
            }
        }
    }
    out
}

/// Stores a SINTERSTORE/SUNIONSTORE/SDIFFSTORE result, or deletes the destination
/// when the result is empty.
fn store_result(ctx: &mut Ctx, dst: &Bytes, result: Set, event: &str) -> CmdResult {
    let now = ctx.now();
    let n = result.len() as i64;
    if n > 0 {
        ctx.db().insert(dst, Value::Set(Box::new(result)), now);
        ctx.key_event(notify::SET, event, dst);
    } else if ctx.db().remove(dst, now).is_some() {
        ctx.key_event(notify::GENERIC, "del", dst);
    }
    Ok(Reply::Int(n))
}

fn sinter(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let sets = load_sets(ctx, &args[1..])?;
    Ok(Reply::Set(bulks(intersect(&sets, 0))))
}

fn sinterstore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let max = ctx.intset_max();
    let sets = load_sets(ctx, &args[2..])?;
    let result = Set::build(intersect(&sets, 0), max);
    store_result(ctx, &args[1], result, "sinterstore")
}

fn sintercard(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let numkeys = int_arg(&args[1])
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| CmdError::err("numkeys should be greater than 0"))?;
    if numkeys > args.len() as i64 - 2 {
        return Err(CmdError::err(
            "Number of keys can't be greater than number of args",
        ));
    }
    let end = 2 + numkeys as usize;
    let mut limit = 0usize;
    let mut i = end;
    while i < args.len() {
        if eq_ic(&args[i], "limit") && i + 1 < args.len() {
            let l = int_arg(&args[i + 1])
                .ok()
                .filter(|l| *l >= 0)
                .ok_or_else(|| CmdError::err("LIMIT can't be negative"))?;
            limit = usize::try_from(l).unwrap_or(usize::MAX);
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let sets = load_sets(ctx, &args[2..end])?;
    Ok(Reply::Int(intersect(&sets, limit).len() as i64))
}

fn sunion(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let max = ctx.intset_max();
    let sets = load_sets(ctx, &args[1..])?;
    Ok(Reply::Set(bulks(union_or_diff(&sets, false, max).iter())))
}

fn sunionstore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let max = ctx.intset_max();
    let sets = load_sets(ctx, &args[2..])?;
    let result = union_or_diff(&sets, false, max);
    store_result(ctx, &args[1], result, "sunionstore")
}

fn sdiff(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let max = ctx.intset_max();
    let sets = load_sets(ctx, &args[1..])?;
    Ok(Reply::Set(bulks(union_or_diff(&sets, true, max).iter())))
}

fn sdiffstore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let max = ctx.intset_max();
    let sets = load_sets(ctx, &args[2..])?;
    let result = union_or_diff(&sets, true, max);
    store_result(ctx, &args[1], result, "sdiffstore")
}

fn sscan(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let cursor = parse_cursor(&args[2])?;
    let Some(s) = read(ctx, &args[1])? else {
        return Ok(scan_reply(0, Vec::new()));
    };
    let opts = parse_scan_opts(args, 3)?;
    let mut items = Vec::new();
    let mut push = |m: Bytes| {
        if opts.matches(&m) {
            items.push(Reply::Bulk(m));
        }
    };
    let next = match s {
        // An intset is small: Redis returns it whole with cursor 0.
        Set::Intset(_) => {
            s.iter().for_each(&mut push);
            0
        }
        Set::Table(_) => s.scan(cursor, opts.count, push),
    };
    Ok(scan_reply(next, items))
}

#[cfg(test)]
mod tests {
    use crate::client::Client;
    use crate::config::EngineConfig;
    use crate::keyspace::KeyHook;
    use crate::store::Store;
    use crate::types::Value;
    use bytes::Bytes;
    use std::sync::{Arc, Mutex};

    /// Records (key, event) pairs from `key_event`.
    #[derive(Debug, Default)]
    struct Events(Mutex<Vec<(String, String)>>);

    impl KeyHook for Events {
        fn modified(&self, _db: usize, key: &[u8], event: &str) {
            if let Ok(mut v) = self.0.lock() {
                v.push((String::from_utf8_lossy(key).into_owned(), event.to_string()));
            }
        }
    }

    struct Fixture {
        store: Store,
        client: Client,
        events: Arc<Events>,
    }

    impl Fixture {
        fn new() -> Self {
            let mut store = Store::new(EngineConfig::default());
            let events = Arc::new(Events::default());
            store.add_hook(events.clone());
            Fixture {
                store,
                client: Client::detached(1, 0, 2),
                events,
            }
        }
        fn run(&mut self, line: &str) -> crate::net::reply::Reply {
            let args = line
                .split(' ')
                .map(|s| Bytes::from(s.to_string()))
                .collect();
            crate::command::execute(&mut self.store, &mut self.client, args)
        }
        /// Events since the last call, as "key:event".
        fn take(&self) -> Vec<String> {
            let mut v = self.events.0.lock().unwrap();
            v.drain(..).map(|(k, e)| format!("{k}:{e}")).collect()
        }
        fn encoding(&mut self, key: &str) -> &'static str {
            match self.store.dbs[0].peek(key.as_bytes(), 0).map(|e| &e.value) {
                Some(Value::Set(s)) => s.encoding(),
                Some(Value::Hash(h)) => h.encoding(),
                _ => "none",
            }
        }
    }

    #[test]
    fn set_events() {
        let mut f = Fixture::new();
        f.run("SADD a 1 2");
        f.run("SADD a 1");
        assert_eq!(f.take(), ["a:sadd"]);
        f.run("SMOVE a b 1");
        assert_eq!(f.take(), ["a:srem", "b:sadd"]);
        f.run("SMOVE a b 2");
        assert_eq!(f.take(), ["a:srem", "a:del", "b:sadd"]);
        f.run("SADD c 1");
        f.take();
        // Moving into a set that already has the member only changes the source.
        f.run("SMOVE c b 1");
        assert_eq!(f.take(), ["c:srem", "c:del"]);
        f.run("SINTERSTORE d b nokey");
        assert!(f.take().is_empty());
        f.run("SUNIONSTORE d b");
        assert_eq!(f.take(), ["d:sunionstore"]);
        f.run("SDIFFSTORE d b b");
        assert_eq!(f.take(), ["d:del"]);
        f.run("SINTERSTORE d b b");
        assert_eq!(f.take(), ["d:sinterstore"]);
        f.run("SPOP d 5");
        assert_eq!(f.take(), ["d:spop", "d:del"]);
        f.run("SREM b 9");
        assert!(f.take().is_empty());
        f.run("SREM b 1 2");
        assert_eq!(f.take(), ["b:srem", "b:del"]);
    }

    #[test]
    fn hash_events() {
        let mut f = Fixture::new();
        f.run("HSET h a 1");
        f.run("HSET h a 1");
        f.run("HSETNX h a 2");
        f.run("HINCRBY h n 1");
        f.run("HINCRBYFLOAT h n 1.5");
        f.run("HINCRBY h n 1");
        assert_eq!(
            f.take(),
            ["h:hset", "h:hset", "h:hincrby", "h:hincrbyfloat"]
        );
        f.run("HDEL h zz");
        f.run("HDEL h a n");
        assert_eq!(f.take(), ["h:hdel", "h:del"]);
    }

    #[test]
    fn encodings_follow_thresholds() {
        let mut f = Fixture::new();
        f.run("SADD s 1 2 3");
        assert_eq!(f.encoding("s"), "intset");
        f.run("SADD s x");
        assert_eq!(f.encoding("s"), "hashtable");
        f.run("SREM s x");
        assert_eq!(f.encoding("s"), "hashtable");
        let ints: Vec<String> = (0..512).map(|i| i.to_string()).collect();
        f.run(&format!("SADD big {}", ints.join(" ")));
        assert_eq!(f.encoding("big"), "intset");
        f.run("SADD big 512");
        assert_eq!(f.encoding("big"), "hashtable");
        f.run("SUNIONSTORE u big");
        assert_eq!(f.encoding("u"), "hashtable");
        f.run("SINTERSTORE u big s");
        assert_eq!(f.encoding("u"), "intset");

        f.run("HSET h a 1");
        assert_eq!(f.encoding("h"), "listpack");
        f.run(&format!("HSET h b {}", "x".repeat(65)));
        assert_eq!(f.encoding("h"), "hashtable");
        // hash-max-listpack-entries is 512 by default in Redis 7.0.15.
        let pairs: Vec<String> = (0..512).map(|i| format!("f{i} v")).collect();
        f.run(&format!("HSET g {}", pairs.join(" ")));
        assert_eq!(f.encoding("g"), "listpack");
        f.run("HSET g f0 w");
        assert_eq!(f.encoding("g"), "listpack");
        f.run("HSET g f512 v");
        assert_eq!(f.encoding("g"), "hashtable");
    }
}
