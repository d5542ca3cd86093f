//! GEO commands (`geo.c`): positions kept as sorted-set members whose scores are
//! 52-bit geohashes (see `types::geohash`). GEOADD writes through ZADD; the searches
//! scan the nine cells around the centre, filter by the exact shape and sort by
//! distance as Redis does.

use crate::command::{CommandSpec, Ctx, DENYOOM, MOVABLE_KEYS, READONLY, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::keyspace::notify;
use crate::net::reply::Reply;
use crate::types::geohash::{self, HashBits, Shape, ShapeKind};
use crate::types::{Value, ZSet};
use crate::util::eq_ic;
use bytes::Bytes;
use std::cmp::Ordering;

use super::int_arg;
use super::pqsort::pqsort;
use super::zsets::{double_arg, zadd_generic};

/// This family's rows of the command table.
pub fn commands() -> Vec<CommandSpec> {
    let w = WRITE | DENYOOM;
    vec![
        CommandSpec::new("geoadd", -5, w, (1, 1, 1), geoadd),
        CommandSpec::new("geopos", -2, READONLY, (1, 1, 1), geopos),
        CommandSpec::new("geodist", -4, READONLY, (1, 1, 1), geodist),
        CommandSpec::new("geohash", -2, READONLY, (1, 1, 1), geohash_cmd),
        CommandSpec::new("georadius", -6, w | MOVABLE_KEYS, (1, 1, 1), georadius),
        CommandSpec::new("georadius_ro", -6, READONLY, (1, 1, 1), georadius_ro),
        CommandSpec::new(
            "georadiusbymember",
            -5,
            w | MOVABLE_KEYS,
            (1, 1, 1),
            georadiusbymember,
        ),
        CommandSpec::new(
            "georadiusbymember_ro",
            -5,
            READONLY,
            (1, 1, 1),
            georadiusbymember_ro,
        ),
        CommandSpec::new("geosearch", -7, READONLY, (1, 1, 1), geosearch),
        CommandSpec::new("geosearchstore", -8, w, (1, 2, 1), geosearchstore),
    ]
}

// ---------------------------------------------------------------------------
// Arguments and replies

/// `extractLongLatOrReply`: a longitude and a latitude inside the indexable area.
fn lon_lat(lon: &[u8], lat: &[u8]) -> Result<(f64, f64), CmdError> {
    let lon = double_arg(lon).ok_or(CmdError::NotFloat)?;
    let lat = double_arg(lat).ok_or(CmdError::NotFloat)?;
    if !(geohash::LONG_MIN..=geohash::LONG_MAX).contains(&lon)
        || !(geohash::LAT_MIN..=geohash::LAT_MAX).contains(&lat)
    {
        return Err(CmdError::err(format!(
            "invalid longitude,latitude pair {lon:.6},{lat:.6}"
        )));
    }
    Ok((lon, lat))
}

/// `extractUnitOrReply`: meters per unit.
fn unit(u: &[u8]) -> Result<f64, CmdError> {
    if eq_ic(u, "m") {
        Ok(1.0)
    } else if eq_ic(u, "km") {
        Ok(1000.0)
    } else if eq_ic(u, "ft") {
        Ok(0.3048)
    } else if eq_ic(u, "mi") {
        Ok(1609.34)
    } else {
        Err(CmdError::err(
            "unsupported unit provided. please use M, KM, FT, MI",
        ))
    }
}

/// `extractDistanceOrReply`: a radius and its unit.
fn radius_arg(value: &[u8], u: &[u8]) -> Result<(f64, f64), CmdError> {
    let r = double_arg(value).ok_or_else(|| CmdError::err("need numeric radius"))?;
    if r < 0.0 {
        return Err(CmdError::err("radius cannot be negative"));
    }
    Ok((r, unit(u)?))
}

/// `extractBoxOrReply`: width, height and their unit.
fn box_arg(w: &[u8], h: &[u8], u: &[u8]) -> Result<(f64, f64, f64), CmdError> {
    let w = double_arg(w).ok_or_else(|| CmdError::err("need numeric width"))?;
    let h = double_arg(h).ok_or_else(|| CmdError::err("need numeric height"))?;
    if h < 0.0 || w < 0.0 {
        return Err(CmdError::err("height or width cannot be negative"));
    }
    Ok((w, h, unit(u)?))
}

/// `addReplyDoubleDistance`: four decimals, always a bulk string.
fn distance_reply(d: f64) -> Reply {
    Reply::text(format!("{d:.4}"))
}

/// `ld2string(LD_STR_HUMAN)` of a double: `%.17Lf` without trailing zeros.
fn human(d: f64) -> String {
    if !d.is_finite() {
        return if d.is_nan() {
            "nan".into()
        } else if d > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let s = format!("{d:.17}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// `addReplyHumanLongDouble`: a bulk string in RESP2, a double in RESP3, both with
/// the human text.
fn coord_reply(d: f64, resp3: bool) -> Reply {
    let s = human(d);
    if resp3 {
        Reply::Raw(Bytes::from(format!(",{s}\r\n")))
    } else {
        Reply::text(s)
    }
}

fn position_reply(lon: f64, lat: f64, resp3: bool) -> Reply {
    Reply::Array(vec![coord_reply(lon, resp3), coord_reply(lat, resp3)])
}

/// A double converted to `long long` as x86-64 does (0x8000000000000000 when out of
/// range): WITHHASH replies a score that way.
fn score_as_i64(score: f64) -> i64 {
    let two63 = -(i64::MIN as f64);
    if (-two63..two63).contains(&score) {
        score as i64
    } else {
        i64::MIN
    }
}

/// The sorted set under `key` for reading; `WRONGTYPE` for other types.
fn read_zset<'a>(ctx: &'a mut Ctx, key: &[u8]) -> Result<Option<&'a ZSet>, CmdError> {
    let now = ctx.now();
    Ok(ctx.db().zset_mut(key, now)?.map(|z| &**z))
}

/// The position stored for a member.
fn member_position(z: &ZSet, member: &[u8]) -> Option<(f64, f64)> {
    geohash::decode_score(z.score(member)?)
}

// ---------------------------------------------------------------------------
// GEOADD GEOPOS GEODIST GEOHASH

/// GEOADD key [NX|XX] [CH] lon lat member ...: ZADD with the positions' scores.
fn geoadd(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let (mut nx, mut xx) = (false, false);
    let mut longidx = 2;
    while longidx < args.len() {
        let a = &args[longidx];
        if eq_ic(a, "nx") {
            nx = true;
        } else if eq_ic(a, "xx") {
            xx = true;
        } else if !eq_ic(a, "ch") {
            break;
        }
        longidx += 1;
    }
    let rest = args.len() - longidx;
    if !rest.is_multiple_of(3) || (xx && nx) {
        return Err(CmdError::Syntax);
    }
    let mut zargs = Vec::with_capacity(longidx + rest / 3 * 2);
    zargs.push(Bytes::from_static(b"zadd"));
    zargs.extend(args[1..longidx].iter().cloned());
    for t in args[longidx..].chunks(3) {
        let (lon, lat) = lon_lat(&t[0], &t[1])?;
        let score = geohash::score_of(lon, lat).unwrap_or(0);
        zargs.push(Bytes::from(score.to_string()));
        zargs.push(t[2].clone());
    }
    zadd_generic(ctx, &zargs, false)
}

fn geopos(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let resp3 = ctx.client.resp >= 3;
    let z = read_zset(ctx, &args[1])?;
    Ok(Reply::Array(
        args[2..]
            .iter()
            .map(|m| match z.and_then(|z| member_position(z, m)) {
                Some((lon, lat)) => position_reply(lon, lat, resp3),
                None => Reply::NilArray,
            })
            .collect(),
    ))
}

fn geodist(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let to_meter = match args.len() {
        5 => unit(&args[4])?,
        4 => 1.0,
        _ => return Err(CmdError::Syntax),
    };
    let Some(z) = read_zset(ctx, &args[1])? else {
        return Ok(Reply::Nil);
    };
    let (Some(a), Some(b)) = (z.score(&args[2]), z.score(&args[3])) else {
        return Ok(Reply::Nil);
    };
    match (geohash::decode_score(a), geohash::decode_score(b)) {
        (Some((lon1, lat1)), Some((lon2, lat2))) => Ok(distance_reply(
            geohash::distance(lon1, lat1, lon2, lat2) / to_meter,
        )),
        _ => Ok(Reply::Nil),
    }
}

fn geohash_cmd(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let z = read_zset(ctx, &args[1])?;
    Ok(Reply::Array(
        args[2..]
            .iter()
            .map(|m| {
                z.and_then(|z| member_position(z, m))
                    .and_then(|(lon, lat)| geohash::geohash_string(lon, lat))
                    .map_or(Reply::Nil, Reply::text)
            })
            .collect(),
    ))
}

// ---------------------------------------------------------------------------
// GEORADIUS, GEORADIUSBYMEMBER, GEOSEARCH, GEOSEARCHSTORE

/// Which command a search runs for (Redis's `RADIUS_*`/`GEOSEARCH*` flags).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Search {
    /// GEORADIUS[_RO]: centre and radius from the arguments.
    Coords { store: bool },
    /// GEORADIUSBYMEMBER[_RO]: centre at a member.
    Member { store: bool },
    /// GEOSEARCH / GEOSEARCHSTORE.
    Generic { store: bool },
}

impl Search {
    fn store_allowed(self) -> bool {
        matches!(
            self,
            Search::Coords { store: true } | Search::Member { store: true }
        )
    }
    fn is_generic(self) -> bool {
        matches!(self, Search::Generic { .. })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SortOrder {
    None,
    Asc,
    Desc,
}

/// One match (`geoPoint`).
struct Point {
    lon: f64,
    lat: f64,
    dist: f64,
    score: f64,
    member: Bytes,
}

fn georadius(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    search(ctx, args, 1, Search::Coords { store: true })
}

fn georadius_ro(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    search(ctx, args, 1, Search::Coords { store: false })
}

fn georadiusbymember(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    search(ctx, args, 1, Search::Member { store: true })
}

fn georadiusbymember_ro(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    search(ctx, args, 1, Search::Member { store: false })
}

fn geosearch(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    search(ctx, args, 1, Search::Generic { store: false })
}

fn geosearchstore(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    search(ctx, args, 2, Search::Generic { store: true })
}

/// The parsed options of a search.
struct SearchOpts {
    shape: Shape,
    withdist: bool,
    withhash: bool,
    withcoord: bool,
    sort: SortOrder,
    any: bool,
    /// 0: no limit.
    count: i64,
    store: Option<Bytes>,
    storedist: bool,
}

/// `georadiusGeneric`'s argument parsing, in its order (a missing member or a bad
/// number is reported as soon as it is met).
fn parse_search(z: Option<&ZSet>, args: &[Bytes], kind: Search) -> Result<SearchOpts, CmdError> {
    let mut o = SearchOpts {
        shape: Shape {
            center: (0.0, 0.0),
            conversion: 0.0,
            kind: ShapeKind::Radius(0.0),
        },
        withdist: false,
        withhash: false,
        withcoord: false,
        sort: SortOrder::None,
        any: false,
        count: 0,
        store: None,
        storedist: false,
    };
    let member_pos = |m: &[u8]| {
        z.and_then(|z| member_position(z, m))
            .ok_or_else(|| CmdError::err("could not decode requested zset member"))
    };
    let base = match kind {
        Search::Coords { .. } => {
            o.shape.center = lon_lat(&args[2], &args[3])?;
            let (r, conv) = radius_arg(&args[4], &args[5])?;
            o.shape.kind = ShapeKind::Radius(r);
            o.shape.conversion = conv;
            6
        }
        // Without the key the arguments are still parsed, to pick the reply.
        Search::Member { .. } if z.is_none() => 5,
        Search::Member { .. } => {
            o.shape.center = member_pos(&args[2])?;
            let (r, conv) = radius_arg(&args[3], &args[4])?;
            o.shape.kind = ShapeKind::Radius(r);
            o.shape.conversion = conv;
            5
        }
        Search::Generic { store } => {
            if store {
                o.store = Some(args[1].clone());
                3
            } else {
                2
            }
        }
    };
    let (mut frommember, mut fromloc, mut byradius, mut bybox) = (false, false, false, false);
    let rest = &args[base..];
    let mut i = 0;
    while i < rest.len() {
        let a = &rest[i];
        let left = rest.len() - i - 1;
        if eq_ic(a, "withdist") {
            o.withdist = true;
        } else if eq_ic(a, "withhash") {
            o.withhash = true;
        } else if eq_ic(a, "withcoord") {
            o.withcoord = true;
        } else if eq_ic(a, "any") {
            o.any = true;
        } else if eq_ic(a, "asc") {
            o.sort = SortOrder::Asc;
        } else if eq_ic(a, "desc") {
            o.sort = SortOrder::Desc;
        } else if eq_ic(a, "count") && left >= 1 {
            o.count = int_arg(&rest[i + 1])?;
            if o.count <= 0 {
                return Err(CmdError::err("COUNT must be > 0"));
            }
            i += 1;
        } else if (eq_ic(a, "store") || eq_ic(a, "storedist")) && left >= 1 && kind.store_allowed()
        {
            o.store = Some(rest[i + 1].clone());
            o.storedist = eq_ic(a, "storedist");
            i += 1;
        } else if eq_ic(a, "storedist") && kind == (Search::Generic { store: true }) {
            o.storedist = true;
        } else if eq_ic(a, "frommember") && left >= 1 && kind.is_generic() && !fromloc {
            if z.is_some() {
                o.shape.center = member_pos(&rest[i + 1])?;
            }
            frommember = true;
            i += 1;
        } else if eq_ic(a, "fromlonlat") && left >= 2 && kind.is_generic() && !frommember {
            o.shape.center = lon_lat(&rest[i + 1], &rest[i + 2])?;
            fromloc = true;
            i += 2;
        } else if eq_ic(a, "byradius") && left >= 2 && kind.is_generic() && !bybox {
            let (r, conv) = radius_arg(&rest[i + 1], &rest[i + 2])?;
            o.shape.kind = ShapeKind::Radius(r);
            o.shape.conversion = conv;
            byradius = true;
            i += 2;
        } else if eq_ic(a, "bybox") && left >= 3 && kind.is_generic() && !byradius {
            let (width, height, conv) = box_arg(&rest[i + 1], &rest[i + 2], &rest[i + 3])?;
            o.shape.kind = ShapeKind::Box { width, height };
            o.shape.conversion = conv;
            bybox = true;
            i += 3;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if o.store.is_some() && (o.withdist || o.withhash || o.withcoord) {
        let what = if kind == (Search::Generic { store: true }) {
            "GEOSEARCHSTORE"
        } else {
            "STORE option in GEORADIUS"
        };
        return Err(CmdError::err(format!(
            "{what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        )));
    }
    let name = String::from_utf8_lossy(&args[0]);
    if kind.is_generic() && !(frommember || fromloc) {
        return Err(CmdError::err(format!(
            "exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        )));
    }
    if kind.is_generic() && !(byradius || bybox) {
        return Err(CmdError::err(format!(
            "exactly one of BYRADIUS and BYBOX can be specified for {name}"
        )));
    }
    if o.any && o.count == 0 {
        return Err(CmdError::err("the ANY argument requires COUNT argument"));
    }
    Ok(o)
}

/// `membersOfAllNeighbors`: the members inside the shape, cell by cell in the order
/// of `search_cells`, each cell in score order; with `limit` (ANY), stops once that
/// many were found.
fn points_in_shape(z: &ZSet, shape: &Shape, limit: usize) -> Vec<Point> {
    let cells = geohash::search_cells(shape);
    let mut out = Vec::new();
    let mut last: usize = 0;
    for (i, cell) in cells.iter().enumerate() {
        if *cell == HashBits::default() {
            continue;
        }
        // Huge radii can make neighbours repeat; Redis skips a cell equal to the last
        // one scanned (never comparing with the centre's, index 0).
        if last != 0 && *cell == cells[last] {
            continue;
        }
        if limit != 0 && out.len() >= limit {
            break;
        }
        let (min, max) = geohash::score_range(*cell);
        let (min, max) = (min as f64, max as f64);
        let start = z.partition_point(|m| m.score < min);
        for m in z.iter().skip(start) {
            if m.score >= max {
                break;
            }
            if let Some((lon, lat)) = geohash::decode_score(m.score) {
                if let Some(dist) = geohash::distance_within(shape, lon, lat) {
                    out.push(Point {
                        lon,
                        lat,
                        dist,
                        score: m.score,
                        member: m.member.clone(),
                    });
                }
            }
            if limit != 0 && out.len() >= limit {
                break;
            }
        }
        last = i;
    }
    out
}

fn search(ctx: &mut Ctx, args: &[Bytes], src: usize, kind: Search) -> CmdResult {
    let resp3 = ctx.client.resp >= 3;
    let limits = ctx.zset_limits();
    let (opts, mut points) = {
        let z = read_zset(ctx, &args[src])?;
        let opts = parse_search(z, args, kind)?;
        let points = z.map(|z| {
            let limit = if opts.any { opts.count as usize } else { 0 };
            points_in_shape(z, &opts.shape, limit)
        });
        (opts, points)
    };
    let Some(points) = points.as_mut() else {
        // No such key: an empty result (and an emptied destination).
        return Ok(match &opts.store {
            Some(dst) => {
                let now = ctx.now();
                if ctx.db().remove(dst, now).is_some() {
                    ctx.key_event(notify::GENERIC, "del", dst);
                }
                Reply::Int(0)
            }
            None => Reply::Array(Vec::new()),
        });
    };
    let mut sort = opts.sort;
    // COUNT keeps the nearest, which needs an order (ANY takes whatever came first).
    if opts.count != 0 && sort == SortOrder::None && !opts.any {
        sort = SortOrder::Asc;
    }
    let found = points.len();
    let returned = if opts.count == 0 || (found as i64) < opts.count {
        found
    } else {
        opts.count as usize
    };
    if sort != SortOrder::None {
        let asc = |a: &Point, b: &Point| a.dist.partial_cmp(&b.dist).unwrap_or(Ordering::Equal);
        let cmp = |a: &Point, b: &Point| match sort {
            SortOrder::Desc => asc(a, b).reverse(),
            _ => asc(a, b),
        };
        if returned == found {
            // glibc's qsort is a stable merge sort.
            points.sort_by(cmp);
        } else {
            pqsort(points, cmp, 0, returned as i64 - 1);
        }
    }
    let conversion = opts.shape.conversion;
    let points = &points[..returned];
    let Some(dst) = &opts.store else {
        let nested = opts.withdist || opts.withhash || opts.withcoord;
        let out = points
            .iter()
            .map(|p| {
                if !nested {
                    return Reply::Bulk(p.member.clone());
                }
                let mut v = vec![Reply::Bulk(p.member.clone())];
                if opts.withdist {
                    v.push(distance_reply(p.dist / conversion));
                }
                if opts.withhash {
                    v.push(Reply::Int(score_as_i64(p.score)));
                }
                if opts.withcoord {
                    v.push(position_reply(p.lon, p.lat, resp3));
                }
                Reply::Array(v)
            })
            .collect();
        return Ok(Reply::Array(out));
    };
    let now = ctx.now();
    if points.is_empty() {
        if ctx.db().remove(dst, now).is_some() {
            ctx.key_event(notify::GENERIC, "del", dst);
        }
        return Ok(Reply::Int(0));
    }
    let items: Vec<(Bytes, f64)> = points
        .iter()
        .map(|p| {
            let score = if opts.storedist {
                p.dist / conversion
            } else {
                p.score
            };
            (p.member.clone(), score)
        })
        .collect();
    let z = ZSet::from_pairs(items, limits);
    ctx.db()
        .insert(super::own(dst), Value::ZSet(Box::new(z)), now);
    let event = if kind.is_generic() {
        "geosearchstore"
    } else {
        "georadiusstore"
    };
    ctx.key_event(notify::ZSET, event, dst);
    Ok(Reply::Int(returned as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_text_as_ld2string() {
        assert_eq!(human(13.361389338970184), "13.36138933897018433");
        assert_eq!(human(1.5), "1.5");
        assert_eq!(human(-0.0), "0");
        assert_eq!(human(2.0), "2");
        assert_eq!(human(-1e-20), "0");
    }
}
