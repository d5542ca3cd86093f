//! The manifest of a multi-part AOF (Redis 7.0's `aof.c`): which base file and which
//! incremental files make up the data, in load order, and which files are history
//! waiting to be deleted.
//!
//! One line per file, `file <name> seq <n> type <b|h|i>`: the base first, then history,
//! then the incremental files in increasing `seq`. Written to `temp-<name>.manifest`,
//! fsynced, renamed over the manifest, and the directory fsynced, so a crash leaves
//! either the old manifest or the new one.

use super::AofError;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

/// What a file of the AOF is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// The snapshot of the last rewrite (`b`).
    Base,
    /// Written by a command since the last rewrite (`i`).
    Incr,
    /// Replaced by a rewrite; deleted soon (`h`).
    History,
}

impl FileType {
    fn letter(self) -> char {
        match self {
            FileType::Base => 'b',
            FileType::Incr => 'i',
            FileType::History => 'h',
        }
    }
}

/// One line of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AofInfo {
    /// The file's name in the AOF directory (never a path).
    pub name: String,
    /// Its sequence number.
    pub seq: u64,
    /// Its role.
    pub kind: FileType,
}

/// The manifest in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The base file, if any.
    pub base: Option<AofInfo>,
    /// History files, to delete.
    pub history: Vec<AofInfo>,
    /// Incremental files in load order.
    pub incr: Vec<AofInfo>,
    /// The newest base sequence number handed out.
    pub base_seq: u64,
    /// The newest incremental sequence number handed out.
    pub incr_seq: u64,
}

/// Redis's `MANIFEST_MAX_LINE`.
const MAX_LINE: usize = 1024;

impl Manifest {
    /// The manifest's file name for `appendfilename`.
    pub fn file_name(appendfilename: &str) -> String {
        format!("{appendfilename}.manifest")
    }

    /// Reads the manifest at `path`; `Ok(None)` if there is none.
    pub fn load(path: &Path) -> Result<Option<Manifest>, AofError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                Manifest::parse(&bytes)
                    .map(Some)
                    .map_err(|(line, what)| AofError::Manifest {
                        path: path.to_path_buf(),
                        line,
                        what,
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AofError::io(path, e)),
        }
    }

    /// Parses a manifest as `aofLoadManifestFromFile` does; an error says the line
    /// number (0 for the file as a whole) and what is wrong, in Redis's words.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, (usize, String)> {
        let mut m = Manifest::default();
        let mut maxseq = 0u64;
        let mut linenum = 0usize;
        let mut rest = bytes;
        while !rest.is_empty() {
            linenum += 1;
            // fgets: at most MAX_LINE bytes, through the newline.
            let chunk = &rest[..rest.len().min(MAX_LINE)];
            let nl = chunk.iter().position(|&c| c == b'\n');
            let consumed = nl.map_or(chunk.len(), |i| i + 1);
            let line = &chunk[..nl.unwrap_or(chunk.len())];
            rest = &rest[consumed..];
            if line.first() == Some(&b'#') {
                continue;
            }
            if nl.is_none() {
                return Err((
                    linenum,
                    "The AOF manifest file contains too long line".into(),
                ));
            }
            let text = std::str::from_utf8(line)
                .map_err(|_| (linenum, "Invalid AOF manifest file format".to_string()))?;
            let info = parse_line(text).map_err(|e| (linenum, e))?;
            match info.kind {
                FileType::Base => {
                    if m.base.is_some() {
                        return Err((linenum, "Found duplicate base file information".into()));
                    }
                    m.base_seq = info.seq;
                    m.base = Some(info);
                }
                FileType::History => m.history.push(info),
                FileType::Incr => {
                    if info.seq <= maxseq {
                        return Err((linenum, "Found a non-monotonic sequence number".into()));
                    }
                    maxseq = info.seq;
                    m.incr_seq = info.seq;
                    m.incr.push(info);
                }
            }
        }
        if linenum == 0 {
            return Err((0, "Found an empty AOF manifest".into()));
        }
        Ok(m)
    }

    /// The manifest's text: base, history, incremental files.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for ai in self.base.iter().chain(&self.history).chain(&self.incr) {
            let _ = writeln!(
                s,
                "file {} seq {} type {}",
                ai.name,
                ai.seq,
                ai.kind.letter()
            );
        }
        s
    }

    /// Adds a new incremental file (`getNewIncrAofName`); returns its name.
    pub fn new_incr(&mut self, appendfilename: &str) -> String {
        self.incr_seq += 1;
        let name = format!("{appendfilename}.{}.incr.aof", self.incr_seq);
        self.incr.push(AofInfo {
            name: name.clone(),
            seq: self.incr_seq,
            kind: FileType::Incr,
        });
        name
    }

    /// Makes `name` the base, the previous base history
    /// (`getNewBaseFileNameAndMarkPreAsHistory`).
    pub fn set_base(&mut self, name: String, seq: u64) {
        if let Some(mut old) = self.base.take() {
            old.kind = FileType::History;
            self.history.insert(0, old);
        }
        self.base_seq = seq;
        self.base = Some(AofInfo {
            name,
            seq,
            kind: FileType::Base,
        });
    }

    /// Turns every incremental file but the last `keep` into history
    /// (`markRewrittenIncrAofAsHistory`).
    pub fn incr_to_history(&mut self, keep: usize) {
        let cut = self.incr.len().saturating_sub(keep);
        for mut ai in self.incr.drain(..cut).rev() {
            ai.kind = FileType::History;
            self.history.insert(0, ai);
        }
    }

    /// Writes the manifest into `dir` under `appendfilename`: a temporary file,
    /// fsynced, renamed over the manifest, then the directory fsynced.
    pub fn persist(&self, dir: &Path, appendfilename: &str) -> Result<(), AofError> {
        let name = Manifest::file_name(appendfilename);
        let tmp = dir.join(format!("temp-{name}"));
        let path = dir.join(&name);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(self.render().as_bytes())?;
            f.sync_all()
        };
        write().map_err(|e| AofError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| AofError::io(&path, e))?;
        sync_dir(dir)
    }
}

/// Fsyncs a directory, so that a rename or a new file in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), AofError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AofError::io(dir, e))
}

/// One line: `key value` pairs, `file`, `seq` and `type` required, others ignored
/// (forward compatibility, as in Redis).
fn parse_line(line: &str) -> Result<AofInfo, String> {
    let bad = || "Invalid AOF manifest file format".to_string();
    let words = split_args(line.trim_matches([' ', '\t', '\r'])).ok_or_else(bad)?;
    if words.len() < 6 || words.len() % 2 != 0 {
        return Err(bad());
    }
    let (mut name, mut seq, mut kind) = (None, 0u64, None);
    for pair in words.chunks(2) {
        let v = &pair[1];
        match pair[0].to_ascii_lowercase().as_str() {
            "file" => {
                if v.contains('/') || v.is_empty() {
                    return Err("File can't be a path, just a filename".into());
                }
                name = Some(v.clone());
            }
            // atoll: leading digits, 0 when there are none.
            "seq" => {
                let digits: String = v.chars().take_while(|c| c.is_ascii_digit()).collect();
                seq = digits.parse().unwrap_or(0);
            }
            "type" => {
                kind = Some(match v.chars().next() {
                    Some('b') => FileType::Base,
                    Some('i') => FileType::Incr,
                    Some('h') => FileType::History,
                    _ => return Err("Unknown AOF file type".into()),
                })
            }
            _ => {}
        }
    }
    match (name, seq, kind) {
        (Some(name), seq, Some(kind)) if seq != 0 => Ok(AofInfo { name, seq, kind }),
        _ => Err(bad()),
    }
}

/// Splits a line into words as `sdssplitargs` does for the manifest: spaces between,
/// double quotes with backslash escapes around a word that needs them.
fn split_args(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else {
            return Some(out);
        };
        let mut word = String::new();
        if c == '"' || c == '\'' {
            let quote = c;
            chars.next();
            loop {
                match chars.next()? {
                    '\\' if quote == '"' => match chars.next()? {
                        'n' => word.push('\n'),
                        'r' => word.push('\r'),
                        't' => word.push('\t'),
                        other => word.push(other),
                    },
                    ch if ch == quote => break,
                    ch => word.push(ch),
                }
            }
            // A closing quote must be followed by a space or the end.
            if chars.peek().is_some_and(|c| !c.is_ascii_whitespace()) {
                return None;
            }
        } else {
            while let Some(&ch) = chars.peek() {
                if ch.is_ascii_whitespace() {
                    break;
                }
                word.push(ch);
                chars.next();
            }
        }
        out.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_redis_lines() {
        let text = "file appendonly.aof.2.base.rdb seq 2 type b\n\
                    file appendonly.aof.1.incr.aof seq 1 type h\n\
                    file appendonly.aof.3.incr.aof seq 3 type i\n\
                    file appendonly.aof.4.incr.aof seq 4 type i\n";
        let m = Manifest::parse(text.as_bytes()).unwrap();
        assert_eq!(m.base.as_ref().map(|b| b.seq), Some(2));
        assert_eq!(m.incr.len(), 2);
        assert_eq!((m.base_seq, m.incr_seq), (2, 4));
        assert_eq!(m.render(), text);
    }

    #[test]
    fn refuses_what_redis_refuses() {
        let err = |t: &str| Manifest::parse(t.as_bytes()).unwrap_err();
        assert_eq!(err("").1, "Found an empty AOF manifest");
        assert_eq!(err("file a seq 1\n").1, "Invalid AOF manifest file format");
        assert_eq!(
            err("file a seq 1 type b\nfile b seq 2 type b\n"),
            (2, "Found duplicate base file information".into())
        );
        assert_eq!(
            err("file a seq 2 type i\nfile b seq 2 type i\n").1,
            "Found a non-monotonic sequence number"
        );
        assert_eq!(
            err("file x/a seq 1 type i\n").1,
            "File can't be a path, just a filename"
        );
        assert_eq!(err("file a seq 1 type z\n").1, "Unknown AOF file type");
        assert_eq!(
            err("file a seq x type i\n").1,
            "Invalid AOF manifest file format"
        );
        assert_eq!(err("\n").1, "Invalid AOF manifest file format");
        let long = format!("file {} seq 1 type i\n", "a".repeat(2000));
        assert_eq!(err(&long).1, "The AOF manifest file contains too long line");
        // Comments are skipped; unknown pairs are ignored.
        let m = Manifest::parse(b"# hi\nfile a seq 1 type i extra 1\n").unwrap();
        assert_eq!(m.incr[0].name, "a");
    }

    #[test]
    fn rewrite_bookkeeping() {
        let mut m = Manifest::default();
        let first = m.new_incr("appendonly.aof");
        assert_eq!(first, "appendonly.aof.1.incr.aof");
        m.set_base("appendonly.aof.1.base.rdb".into(), 1);
        m.new_incr("appendonly.aof");
        m.incr_to_history(1);
        m.set_base("appendonly.aof.2.base.rdb".into(), 2);
        assert_eq!(
            m.render(),
            "file appendonly.aof.2.base.rdb seq 2 type b\n\
             file appendonly.aof.1.base.rdb seq 1 type h\n\
             file appendonly.aof.1.incr.aof seq 1 type h\n\
             file appendonly.aof.2.incr.aof seq 2 type i\n"
        );
    }
}
