//! Binlog positions: where to start streaming and where a transaction ended.
//!
//! A position is always taken at a transaction boundary (after the XID event, the
//! COMMIT query, or a DDL's own query event), so resuming from it never replays half a
//! transaction and never skips one.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Errors parsing a position or a GTID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    /// The `start` value is none of the accepted forms.
    #[error("invalid start {0:?}: expected \"current\", \"earliest\", \"gtid:D-S-N[,D-S-N...]\" (MariaDB), \"gtid:UUID:1-100[,UUID:1-5:7]\" (MySQL) or \"file:NAME:POS\"")]
    InvalidStart(String),
    /// A MySQL GTID set is malformed.
    #[error("invalid MySQL GTID set {set:?}: {reason} (expected UUID:N-M[:N-M...][:tag:N-M...][,UUID:...], e.g. 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7)")]
    InvalidGtidSet {
        /// The text.
        set: String,
        /// What is wrong.
        reason: String,
    },
    /// A MariaDB GTID is not `domain-server-sequence`.
    #[error("invalid MariaDB GTID {0:?}: expected domain-server-sequence, e.g. 0-1-100")]
    InvalidGtid(String),
}

/// One MariaDB GTID: `domain-server-sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MariadbGtid {
    /// Replication domain id.
    pub domain: u32,
    /// Id of the server that wrote the transaction.
    pub server: u32,
    /// Sequence number within the domain.
    pub sequence: u64,
}

impl fmt::Display for MariadbGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.sequence)
    }
}

impl FromStr for MariadbGtid {
    type Err = PositionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PositionError::InvalidGtid(s.to_string());
        let mut parts = s.trim().splitn(3, '-');
        let domain = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let server = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let sequence = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        Ok(MariadbGtid {
            domain,
            server,
            sequence,
        })
    }
}

/// A MariaDB GTID position: the last GTID seen in each replication domain, the form
/// `@slave_connect_state` takes (`0-1-100,1-2-7`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MariadbGtidState {
    domains: BTreeMap<u32, MariadbGtid>,
}

impl MariadbGtidState {
    /// Records `gtid` as the latest of its domain.
    pub fn update(&mut self, gtid: MariadbGtid) {
        self.domains.insert(gtid.domain, gtid);
    }

    /// True when no domain has a GTID yet.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// The GTID recorded for `domain`.
    pub fn get(&self, domain: u32) -> Option<MariadbGtid> {
        self.domains.get(&domain).copied()
    }
}

impl fmt::Display for MariadbGtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.domains.values().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{g}")?;
        }
        Ok(())
    }
}

impl FromStr for MariadbGtidState {
    type Err = PositionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut state = MariadbGtidState::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            state.update(part.parse()?);
        }
        Ok(state)
    }
}

impl TryFrom<String> for MariadbGtidState {
    type Error = PositionError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<MariadbGtidState> for String {
    fn from(s: MariadbGtidState) -> String {
        s.to_string()
    }
}

/// Where a transaction ended: the binlog file, the offset just past its last event,
/// and (on MariaDB) the GTID state including it. Resuming from it streams the next
/// transaction first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Binlog file name on the server (`bin.000003`).
    pub file: String,
    /// Offset just past the transaction's last event.
    pub pos: u64,
    /// MariaDB GTID state after the transaction; empty on MySQL or before any GTID.
    #[serde(default, skip_serializing_if = "MariadbGtidState::is_empty")]
    pub mariadb_gtid: MariadbGtidState,
    /// MySQL GTID set executed up to and including the transaction; empty on
    /// MariaDB or with `gtid_mode=OFF`.
    #[serde(default, skip_serializing_if = "MysqlGtidSet::is_empty")]
    pub mysql_gtid: MysqlGtidSet,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)?;
        if !self.mariadb_gtid.is_empty() {
            write!(f, " (gtid {})", self.mariadb_gtid)?;
        }
        if !self.mysql_gtid.is_empty() {
            write!(f, " (gtid {})", self.mysql_gtid)?;
        }
        Ok(())
    }
}

/// The `[mysql] start` setting: where to begin when there is no checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StartPosition {
    /// The server's current end of binlog: only changes made from now on.
    #[default]
    Current,
    /// The oldest binlog the server still has.
    Earliest,
    /// Just after the given MariaDB GTID state.
    Gtid(MariadbGtidState),
    /// Every transaction not in the given MySQL GTID set (COM_BINLOG_DUMP_GTID).
    MysqlGtid(MysqlGtidSet),
    /// A binlog file and offset (must be a transaction boundary).
    File {
        /// Binlog file name.
        file: String,
        /// Offset in the file.
        pos: u64,
    },
}

impl FromStr for StartPosition {
    type Err = PositionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PositionError::InvalidStart(s.to_string());
        match s.trim() {
            "current" => Ok(StartPosition::Current),
            "earliest" => Ok(StartPosition::Earliest),
            t => {
                if let Some(g) = t.strip_prefix("gtid:") {
                    // A MySQL set always has a ':' after its UUID; a MariaDB GTID never does.
                    if g.contains(':') {
                        let set: MysqlGtidSet = g.parse()?;
                        if set.is_empty() {
                            return Err(bad());
                        }
                        return Ok(StartPosition::MysqlGtid(set));
                    }
                    let state: MariadbGtidState = g.parse().map_err(|_| bad())?;
                    if state.is_empty() {
                        return Err(bad());
                    }
                    Ok(StartPosition::Gtid(state))
                } else if let Some(fp) = t.strip_prefix("file:") {
                    // The file name may itself contain ':' only in theory; split at the last one.
                    let (file, pos) = fp.rsplit_once(':').ok_or_else(bad)?;
                    let pos: u64 = pos.parse().map_err(|_| bad())?;
                    if file.is_empty() || pos < 4 {
                        return Err(bad());
                    }
                    Ok(StartPosition::File {
                        file: file.to_string(),
                        pos,
                    })
                } else {
                    Err(bad())
                }
            }
        }
    }
}

impl fmt::Display for StartPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartPosition::Current => f.write_str("current"),
            StartPosition::Earliest => f.write_str("earliest"),
            StartPosition::Gtid(g) => write!(f, "gtid:{g}"),
            StartPosition::MysqlGtid(g) => write!(f, "gtid:{g}"),
            StartPosition::File { file, pos } => write!(f, "file:{file}:{pos}"),
        }
    }
}

impl TryFrom<String> for StartPosition {
    type Error = PositionError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<StartPosition> for String {
    fn from(s: StartPosition) -> String {
        s.to_string()
    }
}

/// A MySQL server UUID (the source id of a GTID), 16 raw bytes.
pub type Uuid = [u8; 16];

/// The largest transaction number MySQL assigns (`MAX_GNO`, 2^63 - 1).
pub const MAX_GNO: u64 = i64::MAX as u64;

/// The intervals of one (UUID, tag) pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SidIntervals {
    uuid: Uuid,
    /// Lowercase tag; empty for untagged GTIDs.
    tag: String,
    /// Sorted, disjoint and non-adjacent `[start, end)` ranges.
    intervals: Vec<(u64, u64)>,
}

/// A MySQL GTID set, as `@@gtid_executed` prints it:
/// `uuid:1-5:7,uuid2:1-3`, with MySQL 8.4 tags as `uuid:1-5:tag:1-3`.
///
/// Intervals are kept merged (adding 6 to `1-5` gives `1-6`), so the set stays as
/// small as the server's own and can be sent as the SID block of
/// COM_BINLOG_DUMP_GTID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MysqlGtidSet {
    /// Sorted by (uuid, tag); the untagged entry of a UUID comes first.
    sids: Vec<SidIntervals>,
}

impl MysqlGtidSet {
    /// True when the set holds no GTID.
    pub fn is_empty(&self) -> bool {
        self.sids.is_empty()
    }

    /// Adds one transaction, `uuid[:tag]:gno`. `gno` 0 (anonymous) is ignored.
    pub fn add(&mut self, uuid: Uuid, tag: &str, gno: u64) {
        if gno == 0 {
            return;
        }
        self.add_interval(uuid, tag, gno, gno.saturating_add(1));
    }

    /// Adds the transactions `start..end` (end exclusive) of `uuid[:tag]`.
    pub fn add_interval(&mut self, uuid: Uuid, tag: &str, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // MySQL tags are case-insensitive and print in lowercase.
        let lower;
        let tag = if tag.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = tag.to_ascii_lowercase();
            lower.as_str()
        } else {
            tag
        };
        let idx = match self
            .sids
            .binary_search_by(|s| (&s.uuid, s.tag.as_str()).cmp(&(&uuid, tag)))
        {
            Ok(i) => i,
            Err(i) => {
                self.sids.insert(
                    i,
                    SidIntervals {
                        uuid,
                        tag: tag.to_string(),
                        intervals: Vec::new(),
                    },
                );
                i
            }
        };
        insert_interval(&mut self.sids[idx].intervals, start, end);
    }

    /// Adds every transaction of `other`.
    pub fn union(&mut self, other: &MysqlGtidSet) {
        for s in &other.sids {
            for &(a, b) in &s.intervals {
                self.add_interval(s.uuid, &s.tag, a, b);
            }
        }
    }

    /// True when `uuid[:tag]:gno` is in the set.
    pub fn contains(&self, uuid: Uuid, tag: &str, gno: u64) -> bool {
        self.sids
            .iter()
            .find(|s| s.uuid == uuid && s.tag == tag)
            .is_some_and(|s| s.intervals.iter().any(|&(a, b)| a <= gno && gno < b))
    }

    /// Number of transactions in the set.
    pub fn count(&self) -> u64 {
        self.sids
            .iter()
            .flat_map(|s| s.intervals.iter())
            .map(|(a, b)| b - a)
            .sum()
    }

    /// The set as the SID block of COM_BINLOG_DUMP_GTID (tagged entries switch
    /// mysql_common to the MySQL 8.4 tagged wire format).
    pub fn to_sids(&self) -> Vec<mysql_common::packets::Sid<'static>> {
        use mysql_common::packets::{GnoInterval, Sid, Tag};
        self.sids
            .iter()
            .map(|s| {
                let sid = Sid::new(s.uuid).with_intervals(
                    s.intervals
                        .iter()
                        .map(|&(a, b)| GnoInterval::new(a, b))
                        .collect(),
                );
                match Tag::new(s.tag.clone()) {
                    Ok(tag) if !s.tag.is_empty() => sid.with_tag(tag),
                    // Tags were validated on the way in; an empty one means untagged.
                    _ => sid,
                }
            })
            .collect()
    }
}

/// Inserts `[start, end)` into sorted disjoint non-adjacent ranges, merging.
fn insert_interval(v: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    // Fast path: transactions arrive in order and extend the last range.
    if let Some(last) = v.last_mut() {
        if last.0 <= start && start <= last.1 {
            last.1 = last.1.max(end);
            return;
        }
    }
    // First range that ends at or after `start` (overlapping or adjacent).
    let i = v.partition_point(|&(_, b)| b < start);
    let mut j = i;
    let (mut s, mut e) = (start, end);
    while j < v.len() && v[j].0 <= e {
        s = s.min(v[j].0);
        e = e.max(v[j].1);
        j += 1;
    }
    v.splice(i..j, std::iter::once((s, e)));
}

/// Parses `8-4-4-4-12` hyphenated or 32-digit hex UUIDs.
pub fn parse_uuid(s: &str) -> Option<Uuid> {
    let hex: Vec<u8> = if s.len() == 36 {
        let dashes = [8, 13, 18, 23];
        for (i, c) in s.bytes().enumerate() {
            if (c == b'-') != dashes.contains(&i) {
                return None;
            }
        }
        s.bytes().filter(|&c| c != b'-').collect()
    } else if s.len() == 32 {
        s.bytes().collect()
    } else {
        return None;
    };
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let h = (pair[0] as char).to_digit(16)?;
        let l = (pair[1] as char).to_digit(16)?;
        out[i] = (h * 16 + l) as u8;
    }
    Some(out)
}

/// Formats a UUID as MySQL prints it (lowercase, hyphenated).
pub fn format_uuid(u: &Uuid) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Checks a GTID tag as MySQL does (`[a-z_][a-z0-9_]{0,31}`, case-insensitive).
fn valid_tag(t: &str) -> bool {
    let mut c = t.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && t.len() <= 32
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

impl fmt::Display for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut prev: Option<&Uuid> = None;
        for s in &self.sids {
            if prev != Some(&s.uuid) {
                if prev.is_some() {
                    f.write_str(",")?;
                }
                f.write_str(&format_uuid(&s.uuid))?;
                prev = Some(&s.uuid);
            }
            if !s.tag.is_empty() {
                write!(f, ":{}", s.tag)?;
            }
            for &(a, b) in &s.intervals {
                if b == a + 1 {
                    write!(f, ":{a}")?;
                } else {
                    write!(f, ":{a}-{}", b - 1)?;
                }
            }
        }
        Ok(())
    }
}

impl FromStr for MysqlGtidSet {
    type Err = PositionError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| PositionError::InvalidGtidSet {
            set: text.to_string(),
            reason,
        };
        let mut set = MysqlGtidSet::default();
        // MySQL prints long sets with ",\n" between UUIDs.
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut comps = part.split(':').map(str::trim);
            let u = comps.next().unwrap_or_default();
            let uuid = parse_uuid(u).ok_or_else(|| bad(format!("{u:?} is not a UUID")))?;
            let mut tag = String::new();
            let mut any = false;
            let mut tag_has_interval = true;
            for c in comps {
                if c.is_empty() {
                    return Err(bad(format!("empty component in {part:?}")));
                }
                if !c.starts_with(|ch: char| ch.is_ascii_digit()) {
                    if !valid_tag(c) {
                        return Err(bad(format!(
                            "{c:?} is neither an interval nor a tag ([a-z_][a-z0-9_]{{0,31}})"
                        )));
                    }
                    if !tag_has_interval {
                        return Err(bad(format!("tag {tag:?} has no interval")));
                    }
                    tag = c.to_ascii_lowercase();
                    tag_has_interval = false;
                    continue;
                }
                let num = |n: &str| -> Result<u64, PositionError> {
                    match n.parse::<u64>() {
                        Ok(v) if (1..=MAX_GNO).contains(&v) => Ok(v),
                        _ => Err(bad(format!(
                            "{n:?} is not a transaction number (1..{MAX_GNO})"
                        ))),
                    }
                };
                let (a, b) = match c.split_once('-') {
                    Some((a, b)) => (num(a)?, num(b)?),
                    None => {
                        let a = num(c)?;
                        (a, a)
                    }
                };
                if b < a {
                    return Err(bad(format!("interval {c:?} ends before it starts")));
                }
                set.add_interval(uuid, &tag, a, b + 1);
                any = true;
                tag_has_interval = true;
            }
            if !any || !tag_has_interval {
                return Err(bad(format!(
                    "{part:?} has no interval after its UUID or tag"
                )));
            }
        }
        Ok(set)
    }
}

impl TryFrom<String> for MysqlGtidSet {
    type Error = PositionError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<MysqlGtidSet> for String {
    fn from(s: MysqlGtidSet) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_forms() {
        assert_eq!("current".parse(), Ok(StartPosition::Current));
        assert_eq!("earliest".parse(), Ok(StartPosition::Earliest));
        assert_eq!(
            "file:bin.000003:4".parse(),
            Ok(StartPosition::File {
                file: "bin.000003".into(),
                pos: 4
            })
        );
        let g: StartPosition = "gtid:0-1-100,2-5-7".parse().unwrap();
        assert_eq!(g.to_string(), "gtid:0-1-100,2-5-7");
        assert!("gtid:".parse::<StartPosition>().is_err());
        assert!("gtid:0-1".parse::<StartPosition>().is_err());
        assert!("file:bin.000001".parse::<StartPosition>().is_err());
        assert!("file:bin.000001:x".parse::<StartPosition>().is_err());
        assert!("later".parse::<StartPosition>().is_err());
    }

    #[test]
    fn gtid_state_keeps_latest_per_domain() {
        let mut s: MariadbGtidState = "0-1-5".parse().unwrap();
        s.update(MariadbGtid {
            domain: 0,
            server: 2,
            sequence: 6,
        });
        s.update(MariadbGtid {
            domain: 3,
            server: 1,
            sequence: 1,
        });
        assert_eq!(s.to_string(), "0-2-6,3-1-1");
    }

    #[test]
    fn position_roundtrips_through_json() {
        let p = Position {
            file: "bin.000002".into(),
            pos: 1234,
            mariadb_gtid: "0-1-9".parse().unwrap(),
            ..Default::default()
        };
        let j = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Position>(&j).unwrap(), p);
    }

    const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const U2: &str = "a0000000-0000-0000-0000-00000000000b";

    #[test]
    fn mysql_gtid_set_parses_and_formats() {
        let s: MysqlGtidSet = format!("{U2}:1-3, {U1}:7:1-5").parse().unwrap();
        // Sorted by UUID, intervals sorted and merged.
        assert_eq!(s.to_string(), format!("{U1}:1-5:7,{U2}:1-3"));
        assert_eq!(s.count(), 9);
        // Upper case, 32-digit UUIDs and MySQL's ",\n" separator are accepted.
        let up: MysqlGtidSet = format!("{},\n{U2}:1-3", format!("{U1}:1-5:7").to_uppercase())
            .parse()
            .unwrap();
        assert_eq!(up, s);
        let plain: MysqlGtidSet = format!("{}:1-5:7,{U2}:1-3", U1.replace('-', ""))
            .parse()
            .unwrap();
        assert_eq!(plain, s);
        // Overlapping and adjacent intervals merge on the way in.
        let m: MysqlGtidSet = format!("{U1}:5-9:1-4:12:11:20-20").parse().unwrap();
        assert_eq!(m.to_string(), format!("{U1}:1-9:11-12:20"));
        assert!("".parse::<MysqlGtidSet>().unwrap().is_empty());
    }

    #[test]
    fn mysql_gtid_set_tags() {
        let s: MysqlGtidSet = format!("{U1}:Tag_B:4:1-2:tag_a:1-3,{U1}:10")
            .parse()
            .unwrap();
        // Untagged first, then tags in order, lowercase, one UUID group.
        assert_eq!(s.to_string(), format!("{U1}:10:tag_a:1-3:tag_b:1-2:4"));
        let u = parse_uuid(U1).unwrap();
        assert!(s.contains(u, "tag_b", 4));
        assert!(!s.contains(u, "tag_b", 3));
        assert!(!s.contains(u, "", 1));
        let mut t = s.clone();
        t.add(u, "TAG_B", 3);
        assert_eq!(t.to_string(), format!("{U1}:10:tag_a:1-3:tag_b:1-4"));
        assert_eq!(t.to_string().parse::<MysqlGtidSet>().unwrap(), t);
    }

    #[test]
    fn mysql_gtid_set_rejects_garbage() {
        for bad in [
            "nope",
            "3e11fa47-71ca-11e1-9e33:1-5",
            U1,
            &format!("{U1}:"),
            &format!("{U1}:0"),
            &format!("{U1}:5-3"),
            &format!("{U1}:1-x"),
            &format!("{U1}:1::2"),
            &format!("{U1}:tag"),
            &format!("{U1}:1:tag"),
            &format!("{U1}:9tag:1"),
            &format!("{U1}:bad-tag:1"),
            &format!("{U1}:{}", u64::MAX),
            &format!("{U1}:1-{}", u64::MAX),
            "zz11fa47-71ca-11e1-9e33-c80aa9429562:1",
        ] {
            let e = bad.parse::<MysqlGtidSet>().unwrap_err();
            assert!(
                matches!(e, PositionError::InvalidGtidSet { .. }),
                "{bad}: {e}"
            );
        }
        let e = format!("{U1}:5-3").parse::<MysqlGtidSet>().unwrap_err();
        assert!(e.to_string().contains("ends before it starts"), "{e}");
    }

    #[test]
    fn mysql_gtid_set_merges_as_transactions_complete() {
        let u = parse_uuid(U1).unwrap();
        let mut s = MysqlGtidSet::default();
        for g in [1, 2, 3, 7, 5, 6, 9, 4] {
            s.add(u, "", g);
        }
        assert_eq!(s.to_string(), format!("{U1}:1-7:9"));
        s.add(u, "", 8);
        assert_eq!(s.to_string(), format!("{U1}:1-9"));
        s.add(u, "", 0); // anonymous: not a GTID
        s.add(u, "", 3); // already there
        assert_eq!(s.to_string(), format!("{U1}:1-9"));
        let other: MysqlGtidSet = format!("{U1}:20-30:10,{U2}:1").parse().unwrap();
        s.union(&other);
        assert_eq!(s.to_string(), format!("{U1}:1-10:20-30,{U2}:1"));
        // Interval spanning several existing ones.
        s.add_interval(u, "", 5, 40);
        assert_eq!(s.to_string(), format!("{U1}:1-39,{U2}:1"));
        assert_eq!(format_uuid(&u), U1);
    }

    #[test]
    fn start_accepts_both_gtid_forms() {
        let m: StartPosition = format!("gtid:{U1}:1-100").parse().unwrap();
        assert!(matches!(m, StartPosition::MysqlGtid(_)));
        assert_eq!(m.to_string(), format!("gtid:{U1}:1-100"));
        let t: StartPosition = format!("gtid:{U1}:1-100:tag:1").parse().unwrap();
        assert_eq!(t.to_string(), format!("gtid:{U1}:1-100:tag:1"));
        assert!(matches!(
            "gtid:0-1-100".parse::<StartPosition>(),
            Ok(StartPosition::Gtid(_))
        ));
        let e = format!("gtid:{U1}:x").parse::<StartPosition>().unwrap_err();
        assert!(e.to_string().contains("MySQL GTID set"), "{e}");
        for bad in ["gtid:0-1", "gtid:abc", "gtid:0-1-x"] {
            let e = bad.parse::<StartPosition>().unwrap_err().to_string();
            assert!(e.contains("MariaDB") && e.contains("MySQL"), "{bad}: {e}");
        }
    }

    #[test]
    fn sids_serialize_as_com_binlog_dump_gtid() {
        use mysql_common::packets::ComBinlogDumpGtid;
        use mysql_common::proto::MySerialize;
        let set: MysqlGtidSet = format!("{U1}:1-5:7").parse().unwrap();
        let cmd = ComBinlogDumpGtid::new(64001).with_sids(set.to_sids());
        let mut buf = Vec::new();
        cmd.serialize(&mut buf);
        // COM_BINLOG_DUMP_GTID, flags (BINLOG_THROUGH_GTID = 4), server id,
        // filename length 0, pos 0, then the SID block.
        let mut want = vec![0x1e];
        want.extend_from_slice(&4u16.to_le_bytes());
        want.extend_from_slice(&64001u32.to_le_bytes());
        want.extend_from_slice(&0u32.to_le_bytes());
        want.extend_from_slice(&0u64.to_le_bytes());
        let block_len = 8 + 16 + 8 + 2 * 16;
        want.extend_from_slice(&(block_len as u32).to_le_bytes());
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&parse_uuid(U1).unwrap());
        want.extend_from_slice(&2u64.to_le_bytes());
        for (a, b) in [(1u64, 6u64), (7, 8)] {
            want.extend_from_slice(&a.to_le_bytes());
            want.extend_from_slice(&b.to_le_bytes());
        }
        assert_eq!(buf, want);

        // Tagged: the whole block switches to MySQL 8.4's TSID format.
        let tagged: MysqlGtidSet = format!("{U1}:1:tg:2").parse().unwrap();
        let cmd = ComBinlogDumpGtid::new(1).with_sids(tagged.to_sids());
        let mut buf = Vec::new();
        cmd.serialize(&mut buf);
        let block = &buf[1 + 2 + 4 + 4 + 8 + 4..];
        let n = u64::from_le_bytes(block[..8].try_into().unwrap());
        assert_eq!(n >> 56, 1, "tagged format marker");
        assert_eq!((n >> 8) & 0xffff_ffff_ffff, 2, "two sids");
        // Second sid: uuid, tag length 2 (varlen: n << 1), "tg", 1 interval [2, 3).
        let second = &block[8 + 16 + 1 + 8 + 16..];
        assert_eq!(&second[..16], &parse_uuid(U1).unwrap());
        assert_eq!(&second[17..19], b"tg");
        assert_eq!(u64::from_le_bytes(second[19..27].try_into().unwrap()), 1);
    }

    #[test]
    fn position_with_mysql_gtid_roundtrips_through_json() {
        let p = Position {
            file: "binlog.000002".into(),
            pos: 99,
            mysql_gtid: format!("{U1}:1-5").parse().unwrap(),
            ..Default::default()
        };
        let j = serde_json::to_string(&p).unwrap();
        assert!(j.contains(&format!("\"mysql_gtid\":\"{U1}:1-5\"")), "{j}");
        assert_eq!(serde_json::from_str::<Position>(&j).unwrap(), p);
        assert_eq!(p.to_string(), format!("binlog.000002:99 (gtid {U1}:1-5)"));
    }
}
