//! Loading the AOF at start (`loadAppendOnlyFiles` / `loadSingleAppendOnlyFile`): the
//! base (an RDB or commands), then each incremental file in manifest order, each
//! command run as a client with no connection would run it.
//!
//! A file that ends inside a command is "truncated": the last file is cut at its
//! last complete command and loaded with a warning when `aof-load-truncated yes`; any
//! other truncated file, a file that is not the Redis protocol, an unknown command,
//! a base that is not a readable RDB, and a file the manifest names but the disk does
//! not have, stop the load with an [`AofError`] naming the file.

use super::manifest::Manifest;
use super::AofError;
use crate::client::Client;
use crate::config::EngineConfig;
use crate::persist::rdb::{Limits, LoadOptions};
use crate::types::hash::HashLimits;
use crate::types::zset::ZSetLimits;
use bytes::Bytes;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// What a load did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Files read (base and incremental).
    pub files: usize,
    /// Commands run from command files.
    pub commands: u64,
    /// The file cut at its last complete command, and where (aof-load-truncated).
    pub truncated: Option<(PathBuf, u64)>,
    /// The last marker in the stream (see [`super::MARKER_PREFIX`]).
    pub marker: Option<Bytes>,
}

/// Redis's `AOF_ANNOTATION_LINE_MAX_LEN`: the longest line read at a time.
const LINE_MAX: usize = 1024;

/// Loads every file the manifest names into `engine`; `Ok(None)` when the AOF holds
/// no data at all (every file empty).
pub(crate) fn load_files(
    engine: &crate::Engine,
    dir: &Path,
    m: &Manifest,
    cfg: &EngineConfig,
) -> Result<Option<Replayed>, AofError> {
    let files: Vec<(&str, bool)> = m
        .base
        .iter()
        .map(|b| (b.name.as_str(), true))
        .chain(m.incr.iter().map(|i| (i.name.as_str(), false)))
        .collect();
    if files.is_empty() {
        return Ok(None);
    }
    let mut total = 0u64;
    for (name, _) in &files {
        let path = dir.join(name);
        match std::fs::metadata(&path) {
            Ok(md) => total += md.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AofError::Missing(path))
            }
            Err(e) => return Err(AofError::io(&path, e)),
        }
    }
    if total == 0 {
        return Ok(None);
    }
    let mut out = Replayed::default();
    let n = files.len();
    for (i, (name, is_base)) in files.into_iter().enumerate() {
        let path = dir.join(name);
        let last = i + 1 == n;
        let started = std::time::Instant::now();
        load_one(engine, &path, last, cfg, &mut out)?;
        out.files += 1;
        tracing::info!(
            "DB loaded from {} file {name}: {:.3} seconds",
            if is_base { "base" } else { "incr" },
            started.elapsed().as_secs_f64()
        );
    }
    Ok(Some(out))
}

fn load_options(cfg: &EngineConfig) -> LoadOptions {
    LoadOptions {
        limits: Limits {
            hash: HashLimits {
                max_entries: cfg.hash_max_listpack_entries,
                max_value: cfg.hash_max_listpack_value,
            },
            zset: ZSetLimits {
                max_entries: cfg.zset_max_listpack_entries,
                max_value: cfg.zset_max_listpack_value,
            },
            set_max_intset_entries: cfg.set_max_intset_entries,
        },
        databases: cfg.databases,
        // As Redis's RDBFLAGS_AOF_PREAMBLE: the tail replays against the base as it was.
        keep_expired: true,
    }
}

fn load_one(
    engine: &crate::Engine,
    path: &Path,
    last: bool,
    cfg: &EngineConfig,
    out: &mut Replayed,
) -> Result<(), AofError> {
    let file = std::fs::File::open(path).map_err(|e| AofError::io(path, e))?;
    let mut r = BufReader::with_capacity(1 << 16, file);
    let head = r.fill_buf().map_err(|e| AofError::io(path, e))?;
    if head.is_empty() {
        return Ok(());
    }
    if head.starts_with(b"REDIS") {
        // An RDB base (multi-part bases are RDB only; an old-style preamble with a
        // command tail is not read here).
        tracing::info!("Reading RDB base file on AOF loading...");
        let loaded = engine
            .load_rdb(r, &load_options(cfg))
            .map_err(|source| AofError::Base {
                path: path.to_path_buf(),
                source,
            })?;
        if let Some(m) = loaded.aux(super::MARKER_AUX) {
            out.marker = Some(m.clone());
        }
        return Ok(());
    }
    replay(engine, path, r, last, cfg.aof_load_truncated, out)
}

/// How reading one command ended.
enum Step {
    Command(Vec<Bytes>),
    Marker(Bytes),
    Eof,
    Truncated,
    Format,
}

/// Reads a line of at most `LINE_MAX` bytes through its newline (fgets); `None` at
/// the end of the file.
fn line(r: &mut impl BufRead, buf: &mut Vec<u8>, pos: &mut u64) -> std::io::Result<Option<()>> {
    buf.clear();
    let n = r.by_ref().take(LINE_MAX as u64).read_until(b'\n', buf)?;
    *pos += n as u64;
    Ok((n != 0).then_some(()))
}

/// Reads one command (the loop body of `loadSingleAppendOnlyFile`).
fn next_command(r: &mut impl BufRead, pos: &mut u64) -> std::io::Result<Step> {
    let mut buf = Vec::with_capacity(64);
    loop {
        if line(r, &mut buf, pos)?.is_none() {
            return Ok(Step::Eof);
        }
        if buf[0] == b'#' {
            if let Some(m) = buf.strip_prefix(super::MARKER_PREFIX) {
                let m = m.strip_suffix(b"\n").unwrap_or(m);
                let m = m.strip_suffix(b"\r").unwrap_or(m);
                return Ok(Step::Marker(Bytes::copy_from_slice(m)));
            }
            // An annotation (`#TS:...`); a long one is read on in pieces, each
            // skipped the same way unless it happens to start like a command.
            continue;
        }
        break;
    }
    if buf[0] != b'*' {
        return Ok(Step::Format);
    }
    if buf.len() == 1 {
        return Ok(Step::Truncated);
    }
    let argc = atoi(&buf[1..]);
    if argc < 1 {
        return Ok(Step::Format);
    }
    // Lengths from the file never size an allocation beyond what is read.
    let mut argv = Vec::with_capacity((argc as usize).min(1024));
    for _ in 0..argc {
        if line(r, &mut buf, pos)?.is_none() {
            return Ok(Step::Truncated);
        }
        if buf[0] != b'$' {
            return Ok(Step::Format);
        }
        let len = atoi(&buf[1..]).max(0) as u64;
        let mut arg = Vec::new();
        let got = r.by_ref().take(len).read_to_end(&mut arg)? as u64;
        *pos += got;
        if got < len {
            return Ok(Step::Truncated);
        }
        let mut crlf = Vec::with_capacity(2);
        let got = r.by_ref().take(2).read_to_end(&mut crlf)? as u64;
        *pos += got;
        if got < 2 {
            return Ok(Step::Truncated);
        }
        argv.push(Bytes::from(arg));
    }
    Ok(Step::Command(argv))
}

/// C's `atoi`/`strtol`: optional sign, leading digits, 0 when none.
fn atoi(s: &[u8]) -> i64 {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for &c in digits.iter().take_while(|c| c.is_ascii_digit()) {
        n = n.saturating_mul(10).saturating_add((c - b'0') as i64);
    }
    if neg {
        -n
    } else {
        n
    }
}

/// Runs the commands of one file.
fn replay(
    engine: &crate::Engine,
    path: &Path,
    mut r: impl BufRead,
    last: bool,
    load_truncated: bool,
    out: &mut Replayed,
) -> Result<(), AofError> {
    let mut client = Client::in_process(0);
    let mut pos = 0u64;
    let mut valid_up_to = 0u64;
    let mut valid_before_multi = 0u64;
    let shared = engine.shared().clone();
    loop {
        let start = pos;
        let step = next_command(&mut r, &mut pos).map_err(|e| AofError::io(path, e))?;
        let argv = match step {
            Step::Command(argv) => argv,
            Step::Marker(m) => {
                out.marker = Some(m);
                valid_up_to = pos;
                continue;
            }
            Step::Eof => break,
            Step::Format => {
                return Err(AofError::Format {
                    path: path.to_path_buf(),
                    offset: start,
                })
            }
            Step::Truncated => {
                return truncated(path, valid_up_to, last, load_truncated, out);
            }
        };
        if crate::command::lookup(&argv[0]).is_none() {
            return Err(AofError::UnknownCommand {
                path: path.to_path_buf(),
                command: String::from_utf8_lossy(&argv[0]).into_owned(),
            });
        }
        if argv[0].eq_ignore_ascii_case(b"multi") {
            valid_before_multi = valid_up_to;
        }
        let mut store = shared.lock();
        let reply = crate::command::execute(&mut store, &mut client, argv);
        drop(store);
        if let crate::net::reply::Reply::Error(e) = &reply {
            // Redis runs the file's commands without looking at replies; an error
            // here is worth a line in the log.
            tracing::warn!(file = %path.display(), offset = start, error = %e, "AOF command failed");
        }
        out.commands += 1;
        valid_up_to = pos;
    }
    if client.multi.is_some() {
        tracing::warn!(
            "Revert incomplete MULTI/EXEC transaction in AOF file {}",
            path.display()
        );
        return truncated(path, valid_before_multi, last, load_truncated, out);
    }
    Ok(())
}

/// The file ends inside a command: cut it at `valid` when allowed, or refuse.
fn truncated(
    path: &Path,
    valid: u64,
    last: bool,
    load_truncated: bool,
    out: &mut Replayed,
) -> Result<(), AofError> {
    let refuse = |why| AofError::Truncated {
        path: path.to_path_buf(),
        valid,
        why,
    };
    if !last {
        return Err(refuse(": the truncated file is not the last file"));
    }
    if !load_truncated {
        return Err(refuse(
            ": set aof-load-truncated yes to load it up to there, or use redis-check-aof --fix",
        ));
    }
    tracing::warn!(
        "!!! Warning: short read while loading the AOF file {}!!!",
        path.display()
    );
    tracing::warn!(
        "!!! Truncating the AOF {} at offset {valid} !!!",
        path.display()
    );
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| AofError::io(path, e))?;
    f.set_len(valid).map_err(|e| AofError::io(path, e))?;
    f.sync_all().map_err(|e| AofError::io(path, e))?;
    tracing::warn!(
        "AOF {} loaded anyway because aof-load-truncated is enabled",
        path.display()
    );
    out.truncated = Some((path.to_path_buf(), valid));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(input: &[u8]) -> Vec<String> {
        let mut r = input;
        let mut pos = 0;
        let mut out = Vec::new();
        loop {
            match next_command(&mut r, &mut pos).unwrap() {
                Step::Command(a) => out.push(format!(
                    "{}@{pos}",
                    a.iter()
                        .map(|x| String::from_utf8_lossy(x).into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                )),
                Step::Marker(m) => out.push(format!("marker {}", String::from_utf8_lossy(&m))),
                Step::Eof => return out,
                Step::Truncated => {
                    out.push("truncated".into());
                    return out;
                }
                Step::Format => {
                    out.push("format".into());
                    return out;
                }
            }
        }
    }

    #[test]
    fn reads_commands_annotations_and_torn_tails() {
        let set = b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n";
        assert_eq!(steps(set), vec!["SET a 1@27"]);
        let mut with_ts = b"#TS:1700000000\r\n".to_vec();
        with_ts.extend_from_slice(set);
        assert_eq!(steps(&with_ts), vec!["SET a 1@43"]);
        let mut with_marker = b"#COHERENT:bin.000003:1234\r\n".to_vec();
        with_marker.extend_from_slice(set);
        assert_eq!(
            steps(&with_marker),
            vec!["marker bin.000003:1234", "SET a 1@54"]
        );
        for cut in 1..set.len() {
            assert_eq!(steps(&set[..cut]), vec!["truncated"], "cut at {cut}");
        }
        assert_eq!(steps(b"hello\r\n"), vec!["format"]);
        assert_eq!(steps(b"*0\r\n"), vec!["format"]);
        assert_eq!(steps(b"*1\r\n+x\r\n"), vec!["format"]);
    }
}
