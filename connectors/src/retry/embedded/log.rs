//! The queue's file format: framed, checksummed records, appended.

use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A queued delete as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Bytes,
    pub position: Arc<str>,
    pub attempts: u32,
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Enqueue { id: u64, due: u64, entry: Entry },
    Ack { id: u64 },
    Retry { id: u64, attempts: u32, due: u64 },
    Dead { id: u64 },
}

impl Record {
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        match self {
            Record::Enqueue { id, due, entry } => {
                out.push(1);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&entry.attempts.to_le_bytes());
                out.extend_from_slice(&due.to_le_bytes());
                out.extend_from_slice(&(entry.key.len() as u32).to_le_bytes());
                out.extend_from_slice(&entry.key);
                let p = entry.position.as_bytes();
                out.extend_from_slice(&(p.len() as u32).to_le_bytes());
                out.extend_from_slice(p);
            }
            Record::Ack { id } => {
                out.push(2);
                out.extend_from_slice(&id.to_le_bytes());
            }
            Record::Retry { id, attempts, due } => {
                out.push(3);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&attempts.to_le_bytes());
                out.extend_from_slice(&due.to_le_bytes());
            }
            Record::Dead { id } => {
                out.push(4);
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
        let body = &out[start + 8..];
        let len = body.len() as u32;
        let crc = crc32fast::hash(body);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Option<Record> {
        let mut c = Cursor(b);
        let r = match c.u8()? {
            1 => {
                let id = c.u64()?;
                let attempts = c.u32()?;
                let due = c.u64()?;
                let kl = c.u32()? as usize;
                let key = Bytes::copy_from_slice(c.take(kl)?);
                let pl = c.u32()? as usize;
                let position: Arc<str> = std::str::from_utf8(c.take(pl)?).ok()?.into();
                Record::Enqueue {
                    id,
                    due,
                    entry: Entry {
                        key,
                        position,
                        attempts,
                    },
                }
            }
            2 => Record::Ack { id: c.u64()? },
            3 => Record::Retry {
                id: c.u64()?,
                attempts: c.u32()?,
                due: c.u64()?,
            },
            4 => Record::Dead { id: c.u64()? },
            _ => return None,
        };
        c.0.is_empty().then_some(r)
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    }
}

/// An append-only record file.
pub struct Log {
    path: PathBuf,
    file: File,
    size: u64,
    buf: Vec<u8>,
}

/// A damaged record that is not a torn tail: bytes follow it.
#[derive(Debug)]
pub struct Damaged {
    /// Where the damaged record starts.
    pub offset: u64,
    /// What is wrong with it.
    pub reason: &'static str,
    /// Bytes after it.
    pub after: u64,
}

/// Why [`Log::open`] failed.
#[derive(Debug)]
pub enum OpenError {
    /// The file system.
    Io(io::Error),
    /// A record in the middle is damaged.
    Damaged(Damaged),
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Io(e)
    }
}

/// Parses whole records from `data`; returns them, the length of the valid prefix
/// and, when it stops early, the damaged record (offset and reason) it stopped at.
fn parse(data: &[u8]) -> (Vec<Record>, usize, Option<(usize, &'static str)>) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        if data.len() - at < 8 {
            return (out, at, Some((at, "incomplete frame header")));
        }
        let len = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
        let crc = u32::from_le_bytes([data[at + 4], data[at + 5], data[at + 6], data[at + 7]]);
        let Some(body) = data.get(at + 8..at + 8 + len) else {
            return (
                out,
                at,
                Some((at, "record longer than the rest of the file")),
            );
        };
        if crc32fast::hash(body) != crc {
            return (out, at, Some((at, "checksum mismatch")));
        }
        let Some(r) = Record::decode(body) else {
            return (out, at, Some((at, "undecodable record")));
        };
        out.push(r);
        at += 8 + len;
    }
    (out, at, None)
}

/// Whether the bad bytes from `at` can only be a write the crash interrupted: the
/// last frame runs past the end of the file, or ends exactly at it (a whole-frame
/// write whose content never reached the disk), or everything from `at` is zeros
/// (space the file system allocated but never wrote). A bad frame with more
/// records after it is damage in the middle.
fn torn_tail(data: &[u8], at: usize) -> bool {
    let rest = &data[at..];
    if rest.len() < 8 || rest.iter().all(|&b| b == 0) {
        return true;
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    8usize.saturating_add(len) >= rest.len()
}

impl Log {
    /// Opens or creates `path`, returning its records. A torn tail (a crash during
    /// the last append) is cut; a damaged record with more bytes after it is refused
    /// ([`OpenError::Damaged`]): cutting there would drop queued deletes.
    pub fn open(path: &Path) -> Result<(Log, Vec<Record>), OpenError> {
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let (records, valid, bad) = parse(&data);
        if let Some((at, reason)) = bad {
            if !torn_tail(&data, at) {
                let len = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
                let end = (at + 8).saturating_add(len as usize).min(data.len());
                return Err(OpenError::Damaged(Damaged {
                    offset: at as u64,
                    reason,
                    after: (data.len() - end) as u64,
                }));
            }
            tracing::warn!(path = %path.display(), offset = valid, cut = data.len() - valid, reason,
                "retry queue: torn tail after a crash cut off");
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        Ok((
            Log {
                path: path.to_path_buf(),
                file,
                size: valid as u64,
                buf: Vec::new(),
            },
            records,
        ))
    }

    /// Appends `records` in one write; with `sync`, fdatasync before returning.
    pub fn append(&mut self, records: &[Record], sync: bool) -> io::Result<()> {
        self.buf.clear();
        for r in records {
            r.encode(&mut self.buf);
        }
        self.file.write_all(&self.buf)?;
        self.size += self.buf.len() as u64;
        if sync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Bytes in the file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Every record in the file.
    pub fn read_all(&self) -> io::Result<Vec<Record>> {
        Ok(parse(&std::fs::read(&self.path)?).0)
    }

    /// Replaces the file with `records`: temp file, fsync, rename, fsync dir.
    pub fn rewrite(&mut self, records: &[Record]) -> io::Result<()> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".compact");
        let tmp = PathBuf::from(tmp);
        let mut buf = Vec::new();
        for r in records {
            r.encode(&mut buf);
        }
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(d) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(d)?.sync_all()?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.size = buf.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_is_cut() {
        let d = std::env::temp_dir().join(format!("coherent-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let p = d.join("q");
        let (mut log, recs) = Log::open(&p).unwrap();
        assert!(recs.is_empty());
        let e = Record::Enqueue {
            id: 1,
            due: 5,
            entry: Entry {
                key: Bytes::from_static(b"k"),
                position: "bin.000001:4".into(),
                attempts: 1,
            },
        };
        log.append(&[e.clone(), Record::Ack { id: 1 }], true)
            .unwrap();
        drop(log);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        let (log, recs) = Log::open(&p).unwrap();
        assert_eq!(recs, vec![e.clone(), Record::Ack { id: 1 }]);
        assert_eq!(log.size(), std::fs::metadata(&p).unwrap().len());
        drop(log);
        // A whole last frame with a bad checksum (its content never reached the
        // disk) and a zero-filled tail are torn tails too.
        let mut torn = Vec::new();
        Record::Ack { id: 7 }.encode(&mut torn);
        torn[10] ^= 0xff;
        torn.extend_from_slice(&[0; 40]);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&torn[..torn.len() - 40]).unwrap();
        drop(f);
        let (log, recs) = Log::open(&p).unwrap();
        assert_eq!(recs.len(), 2);
        drop(log);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[0; 40]).unwrap();
        drop(f);
        let (_, recs) = Log::open(&p).unwrap();
        assert_eq!(recs, vec![e, Record::Ack { id: 1 }]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn damaged_middle_record_is_refused_and_nothing_is_cut() {
        let d = std::env::temp_dir().join(format!("coherent-log-mid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let p = d.join("q");
        let (mut log, _) = Log::open(&p).unwrap();
        let recs: Vec<Record> = (1..=3).map(|id| Record::Ack { id }).collect();
        log.append(&recs, true).unwrap();
        drop(log);
        let mut data = std::fs::read(&p).unwrap();
        let before = data.clone();
        // The second record (17 bytes each: 8 of frame, 9 of body) loses a bit.
        data[17 + 9] ^= 1;
        std::fs::write(&p, &data).unwrap();
        let Err(OpenError::Damaged(dmg)) = Log::open(&p) else {
            panic!("a damaged middle record must be refused");
        };
        assert_eq!(
            (dmg.offset, dmg.after, dmg.reason),
            (17, 17, "checksum mismatch")
        );
        assert_eq!(
            std::fs::read(&p).unwrap().len(),
            before.len(),
            "nothing cut"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
