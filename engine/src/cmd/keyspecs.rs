//! Redis 7.0's key specs (`getKeysUsingKeySpecs`): where a call's keys are, read from
//! the command's COMMAND INFO entry (`begin_search` index or keyword, `find_keys`
//! range or keynum), each key with its spec's flags. COMMAND GETKEYS and
//! GETKEYSANDFLAGS use them.

use crate::net::reply::Reply;
use bytes::Bytes;

/// One key found: its position in the call and its spec's flags (a set reply).
pub(crate) type Found = (usize, Reply);

fn field<'a>(m: &'a Reply, name: &str) -> Option<&'a Reply> {
    match m {
        Reply::Map(pairs) => pairs.iter().find_map(|(k, v)| match k {
            Reply::Bulk(b) if b.as_ref() == name.as_bytes() => Some(v),
            Reply::Status(s) if s == name => Some(v),
            _ => None,
        }),
        _ => None,
    }
}

fn int(m: &Reply, name: &str) -> Option<i64> {
    match field(m, name)? {
        Reply::Int(n) => Some(*n),
        _ => None,
    }
}

fn word(m: &Reply, name: &str) -> Option<String> {
    match field(m, name)? {
        Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Status(s) => Some(s.clone()),
        _ => None,
    }
}

/// Whether a spec's flags hold `flag`.
fn has_flag(spec: &Reply, flag: &str) -> bool {
    matches!(field(spec, "flags"), Some(Reply::Set(v)) | Some(Reply::Array(v))
        if v.iter().any(|f| matches!(f, Reply::Status(s) if s == flag)))
}

/// Whether the specs can be trusted (none `incomplete` nor `variable_flags`, as
/// Redis prefers its getkeys callbacks then).
pub(crate) fn reliable(specs: &[Reply]) -> bool {
    !specs.is_empty()
        && specs
            .iter()
            .all(|s| !has_flag(s, "incomplete") && !has_flag(s, "variable_flags"))
}

/// The keys of `argv` (the call, argv[0] its name) by `specs`; `None` when a spec does
/// not fit the call (Redis's `invalid_spec`).
pub(crate) fn find(specs: &[Reply], argv: &[Bytes], arity: i64) -> Option<Vec<Found>> {
    let argc = argv.len() as i64;
    let mut out = Vec::new();
    for spec in specs {
        let bs = field(spec, "begin_search")?;
        let bspec = field(bs, "spec")?;
        let first = match word(bs, "type")?.as_str() {
            "index" => int(bspec, "index")?,
            "keyword" => {
                let kw = word(bspec, "keyword")?;
                let from = int(bspec, "startfrom")?;
                let (start, end, step) = if from >= 0 {
                    (from, argc, 1)
                } else {
                    (argc + from, 0, -1)
                };
                let mut i = start;
                let mut found = None;
                while i != end && i >= 1 && i < argc {
                    if argv[i as usize].eq_ignore_ascii_case(kw.as_bytes()) {
                        found = Some(i + 1);
                        break;
                    }
                    i += step;
                }
                match found {
                    Some(f) => f,
                    None => continue,
                }
            }
            _ => return None,
        };
        let fk = field(spec, "find_keys")?;
        let fspec = field(fk, "spec")?;
        let (first, last, step) = match word(fk, "type")?.as_str() {
            "range" => {
                let lastkey = int(fspec, "lastkey")?;
                let limit = int(fspec, "limit")?;
                let last = if lastkey >= 0 {
                    first + lastkey
                } else if limit <= 1 {
                    argc + lastkey
                } else {
                    first + ((argc - first) / limit + lastkey)
                };
                (first, last, int(fspec, "keystep")?)
            }
            "keynum" => {
                let idx = first + int(fspec, "keynumidx")?;
                if idx >= argc {
                    return None;
                }
                let n = crate::util::parse_i64(&argv[idx as usize]).filter(|&n| n >= 0)?;
                let first = first + int(fspec, "firstkey")?;
                (first, first + n - 1, int(fspec, "keystep")?)
            }
            _ => return None,
        };
        // First or last out of bounds: a syntax error (no keys: `numkeys` 0 too).
        if last >= argc || last < first || first >= argc {
            return None;
        }
        let flags = field(spec, "flags").cloned().unwrap_or(Reply::Set(vec![]));
        let mut i = first;
        while i <= last {
            if i >= argc || i < first {
                if arity < 0 {
                    // Redis: no dispatch-time arity check for these; no key here.
                    i += step.max(1);
                    continue;
                }
                return None;
            }
            out.push((i as usize, flags.clone()));
            i += step.max(1);
        }
    }
    Some(out)
}

fn flag_set(words: &[&'static str]) -> Reply {
    Reply::Set(words.iter().map(|w| Reply::Simple(w)).collect())
}

/// Redis's own getkeys callbacks for commands whose specs are incomplete or have
/// variable flags, where the engine has the command: SET (`setGetKeys`: GET makes
/// the key read too) and SORT (`sortGetKeys`: the STORE destination). `None` for
/// the others, found by the table's key positions.
pub(crate) fn callback(name: &str, argv: &[Bytes]) -> Option<Vec<Found>> {
    match name {
        "set" => {
            let get = argv.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"get"));
            let flags = if get {
                flag_set(&["RW", "access", "update"])
            } else {
                flag_set(&["OW", "update"])
            };
            Some(vec![(1, flags)])
        }
        "sort" | "sort_ro" => {
            let mut out = vec![(1, flag_set(&["RO", "access"]))];
            let mut store = None;
            let mut i = 2;
            while i < argv.len() {
                let a = crate::util::lower(&argv[i]);
                let skip = match a.as_str() {
                    "limit" => 2,
                    "get" | "by" => 1,
                    "store" => {
                        if i + 1 < argv.len() {
                            store = Some(i + 1);
                        }
                        1
                    }
                    _ => 0,
                };
                i += skip + 1;
            }
            if let Some(s) = store {
                out.push((s, flag_set(&["OW", "update"])));
            }
            Some(out)
        }
        _ => None,
    }
}
