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
    #[error("invalid start {0:?}: expected \"current\", \"earliest\", \"gtid:D-S-N[,D-S-N...]\" or \"file:NAME:POS\"")]
    InvalidStart(String),
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
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)?;
        if !self.mariadb_gtid.is_empty() {
            write!(f, " (gtid {})", self.mariadb_gtid)?;
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
                    let state: MariadbGtidState = g.parse()?;
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
        };
        let j = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Position>(&j).unwrap(), p);
    }
}
