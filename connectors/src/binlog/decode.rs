//! Binlog event decoding: raw `mysql_common` events in, transaction boundaries and
//! row images out.
//!
//! [`Decoder`] is the state machine shared by the live stream and by offline files:
//! it tracks the binlog file name, the offset, the MariaDB GTID state and whether a
//! transaction is open, and turns each event into a [`Decoded`] item. It does not know
//! column names: [`super::schema`] resolves those and [`crate::row::render_value`]
//! turns values into the bytes MySQL would print.
//!
//! mysql_common panics on a few malformed inputs (a short read in `Event::read`, an
//! empty metadata slice); the file reader checks sizes before handing bytes over, and
//! row decoding runs under `catch_unwind`, so a broken binlog is an error, never a
//! crash.

use super::position::{MariadbGtid, MariadbGtidState, MysqlGtidSet, Position, Uuid};
use crate::row::{render_value, RawImage};
use mysql_common::binlog::consts::{BinlogVersion, EventType};
use mysql_common::binlog::events::{
    Event, EventData, GtidEvent, OptionalMetadataField, RowsEventData, TableMapEvent,
    TransactionPayloadEvent,
};
use mysql_common::binlog::value::BinlogValue;
use mysql_common::binlog::EventStreamReader;
use mysql_common::constants::ColumnType;
use mysql_common::value::Value;
use std::collections::HashMap;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// MariaDB's `ANNOTATE_ROWS_EVENT`: the SQL text of the following rows events.
pub const MARIADB_ANNOTATE_ROWS_EVENT: u8 = 160;
/// MariaDB's `BINLOG_CHECKPOINT_EVENT`: crash-recovery bookkeeping, no data.
pub const MARIADB_BINLOG_CHECKPOINT_EVENT: u8 = 161;
/// MariaDB's `GTID_EVENT`: starts a transaction (replaces BEGIN).
pub const MARIADB_GTID_EVENT: u8 = 162;
/// MariaDB's `GTID_LIST_EVENT`: the GTID state at the start of a binlog file.
pub const MARIADB_GTID_LIST_EVENT: u8 = 163;
/// MariaDB's `START_ENCRYPTION_EVENT`: only in files, never on the wire.
pub const MARIADB_START_ENCRYPTION_EVENT: u8 = 164;

/// MariaDB GTID flag: the transaction is one statement with no COMMIT/XID after it.
const FL_STANDALONE: u8 = 1;
/// MariaDB GTID flag: a commit id follows the domain id.
const FL_GROUP_COMMIT_ID: u8 = 2;

/// Why a binlog could not be decoded. Carries the position of the offending event so
/// an operator can inspect it with `mysqlbinlog --start-position`.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode binlog at {file}:{pos} (event type {event_type}): {reason}")]
pub struct DecodeError {
    /// Binlog file being read.
    pub file: String,
    /// Offset of the event (its start when known, else the end of the previous one).
    pub pos: u64,
    /// Raw event type byte (0 when the header itself is unreadable).
    pub event_type: u8,
    /// What went wrong.
    pub reason: String,
}

/// The kind of a row change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A row was inserted: after image only.
    Insert,
    /// A row was updated: before and after images.
    Update,
    /// A row was deleted: before image only.
    Delete,
}

/// The rows of one rows event, not yet named or rendered.
#[derive(Debug, Clone)]
pub struct RawRows {
    /// The table map the rows refer to.
    pub table: Arc<TableMapEvent<'static>>,
    /// Insert, update or delete.
    pub kind: ChangeKind,
    /// (before, after) images per row.
    pub rows: Vec<(Option<RawImage>, Option<RawImage>)>,
}

/// What one event means for the transaction stream.
#[derive(Debug)]
pub enum Decoded {
    /// Row changes of a table (inside the open transaction).
    Rows(RawRows),
    /// Row changes of a table no rule cares about: counted, not decoded.
    SkippedRows(u64),
    /// The open transaction committed; `position` is just after it.
    Commit {
        /// Where to resume to stream the next transaction.
        position: Position,
        /// Commit timestamp (seconds since the epoch) from the event header.
        timestamp: u32,
    },
    /// A statement outside any transaction (DDL): a boundary of its own, and schemas
    /// must be re-read.
    Ddl {
        /// Default database of the statement.
        schema: String,
        /// The SQL text.
        query: String,
        /// Where to resume to stream the next transaction.
        position: Position,
        /// Event timestamp.
        timestamp: u32,
    },
    /// Keep-alive from the server.
    Heartbeat,
    /// Nothing for the pipeline (format description, GTID, rotate, ...).
    Nothing,
}

/// Decides which tables' rows are decoded: the others are skipped without the cost
/// of decoding them.
pub type TableFilter = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// The transaction state machine over a stream of events.
pub struct Decoder {
    file: String,
    /// End offset of the last event that carried one (events inside a MySQL
    /// transaction payload carry 0).
    last_pos: u64,
    gtid_state: MariadbGtidState,
    pending_gtid: Option<MariadbGtid>,
    /// MySQL GTIDs executed up to the last boundary (start set, previous-GTIDs
    /// events, and every committed transaction's GTID).
    mysql_gtid: MysqlGtidSet,
    /// The MySQL GTID of the open transaction (uuid, lowercase tag, gno).
    pending_mysql: Option<(Uuid, String, u64)>,
    in_txn: bool,
    /// The next query event is a whole transaction (MariaDB FL_STANDALONE).
    standalone: bool,
    seen_fde: bool,
    tables: HashMap<u64, Arc<TableMapEvent<'static>>>,
    filter: Option<TableFilter>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("file", &self.file)
            .field("last_pos", &self.last_pos)
            .field("gtid_state", &self.gtid_state)
            .field("mysql_gtid", &self.mysql_gtid)
            .field("in_txn", &self.in_txn)
            .finish()
    }
}

impl Decoder {
    /// A decoder starting at `start` (the file name may be empty until the first
    /// rotate event names it).
    pub fn new(start: Position, filter: Option<TableFilter>) -> Self {
        Decoder {
            file: start.file,
            last_pos: start.pos,
            gtid_state: start.mariadb_gtid,
            pending_gtid: None,
            mysql_gtid: start.mysql_gtid,
            pending_mysql: None,
            in_txn: false,
            standalone: false,
            seen_fde: false,
            tables: HashMap::new(),
            filter,
        }
    }

    /// The position after the last complete transaction or event seen.
    pub fn position(&self) -> Position {
        Position {
            file: self.file.clone(),
            pos: self.last_pos,
            mariadb_gtid: self.gtid_state.clone(),
            mysql_gtid: self.mysql_gtid.clone(),
        }
    }

    /// True while inside a transaction (its boundary not yet seen).
    pub fn in_transaction(&self) -> bool {
        self.in_txn
    }

    /// A decode error at the current event.
    pub fn error(&self, event_type: u8, reason: impl Into<String>) -> DecodeError {
        DecodeError {
            file: self.file.clone(),
            pos: self.last_pos,
            event_type,
            reason: reason.into(),
        }
    }

    /// Decodes one event. `raw` are the event's bytes exactly as received (header
    /// included, checksum included), needed only to repair MariaDB's first rotate event.
    pub fn decode(&mut self, event: &Event, raw: Option<&[u8]>) -> Result<Decoded, DecodeError> {
        let header = event.header();
        let ty = header.event_type_raw();
        let err = |d: &Decoder, e: &dyn std::fmt::Display| d.error(ty, e.to_string());
        let log_pos = u64::from(header.log_pos());
        verify_checksum(event).map_err(|e| self.error(ty, e))?;
        let out = match ty {
            MARIADB_GTID_EVENT => {
                let (gtid, flags) = parse_mariadb_gtid(event.data(), header.server_id())
                    .ok_or_else(|| self.error(ty, "short MariaDB GTID event"))?;
                self.pending_gtid = Some(gtid);
                self.standalone = flags & FL_STANDALONE != 0;
                self.in_txn = !self.standalone;
                Decoded::Nothing
            }
            MARIADB_GTID_LIST_EVENT => {
                let list = parse_mariadb_gtid_list(event.data())
                    .ok_or_else(|| self.error(ty, "short MariaDB GTID list event"))?;
                for g in list {
                    // The list is the state at the start of a file; it never moves a
                    // domain backwards past what a later transaction already recorded.
                    if self
                        .gtid_state
                        .get(g.domain)
                        .is_none_or(|c| c.sequence < g.sequence)
                    {
                        self.gtid_state.update(g);
                    }
                }
                Decoded::Nothing
            }
            MARIADB_ANNOTATE_ROWS_EVENT
            | MARIADB_BINLOG_CHECKPOINT_EVENT
            | MARIADB_START_ENCRYPTION_EVENT => Decoded::Nothing,
            t if t == EventType::ROTATE_EVENT as u8 => {
                let name = rotate_name(event, raw, self.seen_fde);
                if !name.is_empty() {
                    self.file = name;
                }
                if let Ok(Some(EventData::RotateEvent(r))) = event.read_data() {
                    self.last_pos = r.position();
                }
                // A rotate is never inside a transaction, so the position is now a
                // valid place to resume from.
                return Ok(Decoded::Nothing);
            }
            t if t == EventType::FORMAT_DESCRIPTION_EVENT as u8 => {
                self.seen_fde = true;
                // The server writes a fresh FDE at each file start and after a restart:
                // an open transaction without commit there was never committed.
                self.in_txn = false;
                self.pending_mysql = None;
                self.tables.clear();
                Decoded::Nothing
            }
            t if t == EventType::HEARTBEAT_EVENT as u8 => return Ok(Decoded::Heartbeat),
            t if t == EventType::GTID_EVENT as u8
                || t == EventType::GTID_TAGGED_LOG_EVENT as u8 =>
            {
                // The GTID of the transaction that follows; it joins the set only
                // when that transaction's boundary passes.
                let g = catch_unwind(AssertUnwindSafe(|| event.read_event::<GtidEvent>()))
                    .map_err(|_| self.error(ty, "malformed GTID event (reader panicked)"))?
                    .map_err(|e| self.error(ty, format!("bad GTID event: {e}")))?;
                let tag = g.tag().map(|t| t.to_ascii_lowercase()).unwrap_or_default();
                self.pending_mysql = (g.gno() != 0).then(|| (g.sid(), tag, g.gno()));
                Decoded::Nothing
            }
            t if t == EventType::ANONYMOUS_GTID_EVENT as u8 => {
                // gtid_mode=OFF: the next transaction has no GTID.
                self.pending_mysql = None;
                Decoded::Nothing
            }
            t if t == EventType::PREVIOUS_GTIDS_EVENT as u8 => {
                // Every GTID in files before this one: executed before anything this
                // stream can deliver, so part of the set (and a purged one must not
                // be asked for again on resume).
                let prev = parse_previous_gtids(event.data())
                    .ok_or_else(|| self.error(ty, "malformed previous-GTIDs event"))?;
                self.mysql_gtid.union(&prev);
                Decoded::Nothing
            }
            t if t == EventType::TABLE_MAP_EVENT as u8 => {
                let tme = event
                    .read_event::<TableMapEvent<'_>>()
                    .map_err(|e| err(self, &e))?;
                self.tables
                    .insert(tme.table_id(), Arc::new(tme.into_owned()));
                Decoded::Nothing
            }
            t if t == EventType::XID_EVENT as u8 => {
                // Only the fact of the commit matters, not the xid; some 5.1 servers
                // wrote XID events with trailing bytes, which are fine.
                if event.data().len() < 8 {
                    return Err(self.error(ty, "short XID event"));
                }
                self.end_txn(log_pos);
                return Ok(Decoded::Commit {
                    position: self.position(),
                    timestamp: header.timestamp(),
                });
            }
            t if t == EventType::QUERY_EVENT as u8 => return self.query(event, log_pos),
            t if t == EventType::TRANSACTION_PAYLOAD_EVENT as u8 => {
                // mysql_async silently yields nothing when a payload fails to
                // decompress; check it here so a transaction is never lost that way.
                check_payload(event).map_err(|e| err(self, &e))?;
                Decoded::Nothing
            }
            t if is_rows_event(t) => self.rows(event)?,
            t if t == EventType::XA_PREPARE_LOG_EVENT as u8 => {
                // The prepared part of an XA transaction: its rows are in, treat it
                // as the boundary (the later XA COMMIT has no rows).
                self.end_txn(log_pos);
                return Ok(Decoded::Commit {
                    position: self.position(),
                    timestamp: header.timestamp(),
                });
            }
            t => {
                match EventType::try_from(t) {
                    Ok(EventType::PRE_GA_WRITE_ROWS_EVENT)
                    | Ok(EventType::PRE_GA_UPDATE_ROWS_EVENT)
                    | Ok(EventType::PRE_GA_DELETE_ROWS_EVENT)
                    | Ok(EventType::LOAD_EVENT)
                    | Ok(EventType::NEW_LOAD_EVENT)
                    | Ok(EventType::EXEC_LOAD_EVENT)
                    | Ok(EventType::CREATE_FILE_EVENT) => {
                        return Err(self.error(t, "row format not supported (pre-GA rows event or LOAD DATA in statement format); use binlog_format=ROW"));
                    }
                    Ok(EventType::INCIDENT_EVENT) => {
                        return Err(self.error(t, "incident event: the server lost changes (see its error log); resync the cache and start from a new position"));
                    }
                    Ok(_) => {
                        // Every other known type carries no row data (GTIDs, intvar,
                        // rand, user var, rows query, previous GTIDs, ...). They are not
                        // parsed: mysql_common can abort on a corrupt count in some of
                        // them, and the checksum already vouches for their bytes.
                        Decoded::Nothing
                    }
                    Err(_) => return Err(self.error(
                        t,
                        "unknown event type (MariaDB compressed events need log_bin_compress=OFF)",
                    )),
                }
            }
        };
        if log_pos != 0 && !self.in_txn {
            self.last_pos = log_pos;
        }
        Ok(out)
    }

    fn end_txn(&mut self, log_pos: u64) {
        if log_pos != 0 {
            self.last_pos = log_pos;
        }
        if let Some(g) = self.pending_gtid.take() {
            self.gtid_state.update(g);
        }
        if let Some((uuid, tag, gno)) = self.pending_mysql.take() {
            self.mysql_gtid.add(uuid, &tag, gno);
        }
        self.in_txn = false;
        self.standalone = false;
    }

    fn query(&mut self, event: &Event, log_pos: u64) -> Result<Decoded, DecodeError> {
        let ty = event.header().event_type_raw();
        let q = match event.read_data() {
            Ok(Some(EventData::QueryEvent(q))) => q,
            Ok(_) => return Err(self.error(ty, "not a query event")),
            Err(e) => return Err(self.error(ty, format!("bad query event: {e}"))),
        };
        let text = q.query();
        let word = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let second = text
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_ascii_uppercase();
        let timestamp = event.header().timestamp();
        match (word.as_str(), second.as_str()) {
            ("BEGIN", _) | ("XA", "START") | ("XA", "BEGIN") => {
                self.in_txn = true;
                Ok(Decoded::Nothing)
            }
            ("COMMIT", _)
            | ("ROLLBACK", "")
            | ("XA", "PREPARE")
            | ("XA", "COMMIT")
            | ("XA", "ROLLBACK") => {
                // ROLLBACK is logged only when non-transactional tables were changed:
                // their rows stay changed, so it ends the transaction like COMMIT.
                self.end_txn(log_pos);
                Ok(Decoded::Commit {
                    position: self.position(),
                    timestamp,
                })
            }
            _ if self.in_txn => Ok(Decoded::Nothing), // SAVEPOINT, XA END, ...
            _ => {
                self.end_txn(log_pos);
                Ok(Decoded::Ddl {
                    schema: q.schema().into_owned(),
                    query: text.into_owned(),
                    position: self.position(),
                    timestamp,
                })
            }
        }
    }

    fn rows(&mut self, event: &Event) -> Result<Decoded, DecodeError> {
        let ty = event.header().event_type_raw();
        let data = match event.read_data() {
            Ok(Some(EventData::RowsEvent(r))) => r,
            Ok(_) => return Err(self.error(ty, "not a rows event")),
            Err(e) => return Err(self.error(ty, format!("bad rows event: {e}"))),
        };
        let tme = self.tables.get(&data.table_id()).cloned().ok_or_else(|| {
            self.error(
                ty,
                format!(
                    "rows event for table id {} without a table map",
                    data.table_id()
                ),
            )
        })?;
        if let Some(f) = &self.filter {
            if !f(&tme.database_name(), &tme.table_name()) {
                return Ok(Decoded::SkippedRows(1));
            }
        }
        let kind = match data {
            RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => {
                ChangeKind::Insert
            }
            RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => {
                ChangeKind::Delete
            }
            _ => ChangeKind::Update,
        };
        let rows = catch_unwind(AssertUnwindSafe(|| decode_rows(&data, &tme)))
            .map_err(|_| self.error(ty, "malformed rows event (decoder panicked)"))?
            .map_err(|e| {
                self.error(
                    ty,
                    format!(
                        "bad row in `{}`.`{}`: {e}",
                        tme.database_name(),
                        tme.table_name()
                    ),
                )
            })?;
        Ok(Decoded::Rows(RawRows {
            table: tme,
            kind,
            rows,
        }))
    }
}

/// Checks an event's CRC32 when the stream carries checksums. mysql_common does not,
/// and a corrupt length inside an event can make it allocate without bound.
fn verify_checksum(event: &Event) -> Result<(), String> {
    use mysql_common::binlog::consts::BinlogChecksumAlg;
    let footer = event.footer();
    if !footer.get_checksum_enabled() {
        return Ok(());
    }
    let Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32)) = footer.get_checksum_alg() else {
        return Ok(());
    };
    let Some(stored) = event.checksum() else {
        return Ok(());
    };
    let computed = event.calc_checksum(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32);
    if computed.to_le_bytes() != stored {
        return Err(format!(
            "checksum mismatch (stored {:08x}, computed {computed:08x}): the event is corrupt",
            u32::from_le_bytes(stored)
        ));
    }
    Ok(())
}

fn is_rows_event(t: u8) -> bool {
    use EventType::*;
    [
        WRITE_ROWS_EVENT_V1,
        UPDATE_ROWS_EVENT_V1,
        DELETE_ROWS_EVENT_V1,
        WRITE_ROWS_EVENT,
        UPDATE_ROWS_EVENT,
        DELETE_ROWS_EVENT,
        PARTIAL_UPDATE_ROWS_EVENT,
    ]
    .iter()
    .any(|e| *e as u8 == t)
}

/// Decodes every row of a rows event, placing each value at its column index.
///
/// This walks the row images itself rather than through mysql_common's `BinlogRow`,
/// to check metadata lengths before mysql_common indexes into them and to decode
/// negative TIME(1)/TIME(2) values, whose fraction mysql_common computes with an
/// unsigned subtraction (a panic in debug builds, a wrong value in release ones).
fn decode_rows(
    data: &RowsEventData<'_>,
    tme: &TableMapEvent<'static>,
) -> std::io::Result<Vec<(Option<RawImage>, Option<RawImage>)>> {
    use mysql_common::io::ParseBuf;
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let n = data.num_columns() as usize;
    if n > tme.columns_count() as usize {
        return Err(invalid(format!(
            "rows event has {n} columns, its table map {}",
            tme.columns_count()
        )));
    }
    let mut cols = Vec::with_capacity(n);
    for i in 0..n {
        let ty = tme
            .get_column_type(i)
            .map_err(|e| invalid(e.to_string()))?
            .ok_or_else(|| invalid(format!("no type for column {i}")))?;
        let meta = tme.get_column_metadata(i).unwrap_or(&[]);
        let need = meta_len(ty);
        if meta.len() < need {
            return Err(invalid(format!(
                "column {i} ({ty:?}) has {} metadata bytes, needs {need}",
                meta.len()
            )));
        }
        cols.push((ty, meta));
    }
    let unsigned = signedness(tme, &cols)?;
    let before_cols: Option<Vec<bool>> = data
        .columns_before_image()
        .map(|b| (0..n).map(|i| b.get(i).is_some_and(|x| *x)).collect());
    let after_cols: Option<Vec<bool>> = data
        .columns_after_image()
        .map(|b| (0..n).map(|i| b.get(i).is_some_and(|x| *x)).collect());
    let partial = matches!(data, RowsEventData::PartialUpdateRowsEvent(_));
    let mut buf = ParseBuf(data.rows_data());
    let mut out = Vec::new();
    while !buf.is_empty() {
        let before = match &before_cols {
            Some(p) => Some(read_image(&mut buf, p, &cols, &unsigned, false, tme)?),
            None => None,
        };
        let after = match &after_cols {
            Some(p) => Some(read_image(&mut buf, p, &cols, &unsigned, partial, tme)?),
            None => None,
        };
        out.push((before, after));
    }
    Ok(out)
}

/// Metadata bytes mysql_common reads for a column type.
fn meta_len(ty: ColumnType) -> usize {
    use ColumnType::*;
    match ty {
        MYSQL_TYPE_STRING
        | MYSQL_TYPE_NEWDECIMAL
        | MYSQL_TYPE_ENUM
        | MYSQL_TYPE_SET
        | MYSQL_TYPE_BIT => 2,
        MYSQL_TYPE_TIMESTAMP2
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIME2
        | MYSQL_TYPE_JSON
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_GEOMETRY
        | MYSQL_TYPE_VECTOR
        | MYSQL_TYPE_TYPED_ARRAY => 1,
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => 0,
        _ => 0,
    }
}

/// UNSIGNED flags per column from the table map's SIGNEDNESS metadata (MySQL sends
/// it by default; MariaDB with binlog_row_metadata=FULL).
fn signedness(
    tme: &TableMapEvent<'static>,
    cols: &[(ColumnType, &[u8])],
) -> std::io::Result<Vec<bool>> {
    let mut out = vec![false; cols.len()];
    for f in tme.iter_optional_meta() {
        if let OptionalMetadataField::Signedness(bits) = f? {
            let mut k = 0;
            for (i, (ty, _)) in cols.iter().enumerate() {
                if ty.is_numeric_type() {
                    out[i] = bits.get(k).is_some_and(|b| *b);
                    k += 1;
                }
            }
        }
    }
    Ok(out)
}

fn read_image<'a>(
    buf: &mut mysql_common::io::ParseBuf<'a>,
    present: &[bool],
    cols: &[(ColumnType, &'a [u8])],
    unsigned: &[bool],
    shared_image: bool,
    tme: &TableMapEvent<'static>,
) -> std::io::Result<RawImage> {
    let short = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "row image cut short");
    // A partial update's after image starts with value options and, for partial
    // JSON, a bitmap of the JSON columns that carry diffs instead of values.
    let mut partial_json: Option<Vec<bool>> = None;
    if shared_image {
        let options = buf.checked_eat_lenenc_int().ok_or_else(short)?;
        if options & 1 != 0 {
            let count = tme.json_column_count();
            let bytes = buf.checked_eat(count.div_ceil(8)).ok_or_else(short)?;
            partial_json = Some(
                (0..count)
                    .map(|i| bytes[i / 8] & (1 << (i % 8)) != 0)
                    .collect(),
            );
        }
    }
    let count = present.iter().filter(|p| **p).count();
    let nulls = buf.checked_eat(count.div_ceil(8)).ok_or_else(short)?;
    let mut image: RawImage = vec![None; cols.len()];
    let mut k = 0;
    let mut json_idx = 0;
    for (i, (ty, meta)) in cols.iter().enumerate() {
        let is_partial = if *ty == ColumnType::MYSQL_TYPE_JSON {
            json_idx += 1;
            partial_json
                .as_ref()
                .and_then(|p| p.get(json_idx - 1).copied())
                .unwrap_or(false)
        } else {
            false
        };
        if !present[i] {
            continue;
        }
        let null = nulls[k / 8] & (1 << (k % 8)) != 0;
        k += 1;
        image[i] = Some(if null {
            BinlogValue::Value(Value::NULL)
        } else if *ty == ColumnType::MYSQL_TYPE_TIME2 && matches!(meta[0], 1 | 2) {
            let b = buf.checked_eat(4).ok_or_else(short)?;
            let mut int = i64::from(u32::from_be_bytes([0, b[0], b[1], b[2]])) - 0x80_0000;
            let mut frac = i64::from(b[3]);
            if int < 0 && frac > 0 {
                int += 1;
                frac -= 0x100;
            }
            let packed = (int << 24) + frac * 10_000;
            BinlogValue::Value(mysql_common::binlog::misc::time_from_packed(packed))
        } else {
            buf.parse::<BinlogValue<'_>>((*ty, *meta, unsigned[i], is_partial))?
                .into_owned()
        });
    }
    Ok(image)
}

/// Verifies that a MySQL transaction payload decompresses to its announced size.
fn check_payload(event: &Event) -> Result<(), String> {
    let tpe = event
        .read_event::<TransactionPayloadEvent<'_>>()
        .map_err(|e| format!("bad transaction payload event: {e}"))?;
    let mut reader = tpe
        .decompressed()
        .map_err(|e| format!("cannot decompress transaction payload: {e}"))?;
    let mut sink = Vec::new();
    reader
        .read_to_end(&mut sink)
        .map_err(|e| format!("cannot decompress transaction payload: {e}"))?;
    if sink.is_empty() {
        return Err("transaction payload decompressed to nothing".into());
    }
    Ok(())
}

/// The file name of a rotate event. MariaDB checksums the artificial rotate event it
/// sends before the format description, which the reader cannot know yet, so the 4
/// CRC32 bytes end up in the name (mysql_async issue 189); they are stripped when
/// they are the CRC32 of the rest of the event.
fn rotate_name(event: &Event, raw: Option<&[u8]>, seen_fde: bool) -> String {
    let name: Vec<u8> = match event.read_data() {
        Ok(Some(EventData::RotateEvent(r))) => r.name_raw().to_vec(),
        _ => return String::new(),
    };
    if !seen_fde && name.len() > 4 {
        let stripped = &name[..name.len() - 4];
        let tail = &name[name.len() - 4..];
        let crc_ok = match raw {
            Some(raw) if raw.len() > 4 => {
                crc32fast::hash(&raw[..raw.len() - 4]).to_le_bytes() == raw[raw.len() - 4..]
            }
            _ => {
                // Without the raw bytes, rebuild the header the server hashed.
                let h = event.header();
                let mut buf = Vec::with_capacity(19 + event.data().len());
                buf.extend_from_slice(&h.timestamp().to_le_bytes());
                buf.push(h.event_type_raw());
                buf.extend_from_slice(&h.server_id().to_le_bytes());
                buf.extend_from_slice(&h.event_size().to_le_bytes());
                buf.extend_from_slice(&h.log_pos().to_le_bytes());
                buf.extend_from_slice(&h.flags_raw().to_le_bytes());
                buf.extend_from_slice(&event.data()[..event.data().len() - 4]);
                crc32fast::hash(&buf).to_le_bytes() == tail
            }
        };
        if crc_ok {
            return String::from_utf8_lossy(stripped).into_owned();
        }
    }
    String::from_utf8_lossy(&name).into_owned()
}

/// Parses a MySQL previous-GTIDs event body (untagged, or MySQL 8.4's tagged
/// format). Sizes are checked against the data before anything is allocated.
pub fn parse_previous_gtids(data: &[u8]) -> Option<MysqlGtidSet> {
    fn take<'a>(d: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if d.len() < n {
            return None;
        }
        let (a, b) = d.split_at(n);
        *d = b;
        Some(a)
    }
    fn u64le(d: &mut &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(take(d, 8)?.try_into().ok()?))
    }
    // MySQL serialization library's varlen integer (the tag length).
    fn varlen(d: &mut &[u8]) -> Option<u64> {
        let ones = d.first()?.trailing_ones() as usize;
        if ones == 8 {
            take(d, 1)?;
            return u64le(d);
        }
        let raw = take(d, ones + 1)?;
        let mut b = [0u8; 8];
        b[..raw.len()].copy_from_slice(raw);
        Some(u64::from_le_bytes(b) >> (ones + 1))
    }
    let mut d = data;
    let header = u64le(&mut d)?;
    let tagged = header >> 56 != 0;
    let n = if tagged {
        (header >> 8) & ((1 << 48) - 1)
    } else {
        header & ((1 << 56) - 1)
    };
    let mut set = MysqlGtidSet::default();
    for _ in 0..n {
        let uuid: Uuid = take(&mut d, 16)?.try_into().ok()?;
        let tag = if tagged {
            let len = usize::try_from(varlen(&mut d)?).ok()?;
            std::str::from_utf8(take(&mut d, len)?)
                .ok()?
                .to_ascii_lowercase()
        } else {
            String::new()
        };
        let k = u64le(&mut d)?;
        if k > (d.len() / 16) as u64 {
            return None;
        }
        for _ in 0..k {
            let a = u64le(&mut d)?;
            let b = u64le(&mut d)?;
            set.add_interval(uuid, &tag, a, b);
        }
    }
    Some(set)
}

/// Parses a MariaDB GTID event body: sequence (8), domain (4), flags (1), then an
/// optional commit id. The server id comes from the event header.
pub fn parse_mariadb_gtid(data: &[u8], server: u32) -> Option<(MariadbGtid, u8)> {
    let sequence = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
    let domain = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
    let flags = *data.get(12)?;
    if flags & FL_GROUP_COMMIT_ID != 0 {
        data.get(13..21)?;
    }
    Some((
        MariadbGtid {
            domain,
            server,
            sequence,
        },
        flags,
    ))
}

/// Parses a MariaDB GTID list event body: a count (low 28 bits) then that many
/// (domain 4, server 4, sequence 8) entries.
pub fn parse_mariadb_gtid_list(data: &[u8]) -> Option<Vec<MariadbGtid>> {
    let count = u32::from_le_bytes(data.get(0..4)?.try_into().ok()?) & 0x0fff_ffff;
    let mut out = Vec::with_capacity(count.min(1024) as usize);
    for i in 0..count as usize {
        let at = 4 + i * 16;
        let e = data.get(at..at + 16)?;
        out.push(MariadbGtid {
            domain: u32::from_le_bytes(e[0..4].try_into().ok()?),
            server: u32::from_le_bytes(e[4..8].try_into().ok()?),
            sequence: u64::from_le_bytes(e[8..16].try_into().ok()?),
        });
    }
    Some(out)
}

/// Counts from decoding a whole binlog file offline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSummary {
    /// Events read (inner events of transaction payloads included).
    pub events: u64,
    /// Row images decoded (an update counts once).
    pub rows: u64,
    /// Transactions committed (XID / COMMIT).
    pub commits: u64,
    /// Standalone statements (DDL).
    pub ddls: u64,
    /// The position after each commit and DDL, in order, as the live source
    /// would deliver them (GTID sets included).
    pub boundaries: Vec<Position>,
    /// The decoder's position at the end of the file.
    pub end: Position,
}

/// Decodes a complete binlog file (4-byte magic, then events) with the same decoder
/// the live stream uses. Errors name the offset and the reason; nothing panics.
pub fn decode_file(name: &str, bytes: &[u8]) -> Result<FileSummary, DecodeError> {
    let fail = |pos: usize, ty: u8, reason: String| DecodeError {
        file: name.to_string(),
        pos: pos as u64,
        event_type: ty,
        reason,
    };
    if bytes.len() < 4 || bytes[..4] != [0xfe, b'b', b'i', b'n'] {
        return Err(fail(0, 0, "not a binlog file (bad magic header)".into()));
    }
    let mut esr = EventStreamReader::new(BinlogVersion::Version4);
    let mut dec = Decoder::new(
        Position {
            file: name.to_string(),
            pos: 4,
            ..Default::default()
        },
        None,
    );
    let mut sum = FileSummary::default();
    let mut at = 4usize;
    while at < bytes.len() {
        let hdr = bytes.get(at..at + 19).ok_or_else(|| {
            fail(
                at,
                0,
                format!("truncated event header: {} of 19 bytes", bytes.len() - at),
            )
        })?;
        let ty = hdr[4];
        let size = u32::from_le_bytes([hdr[9], hdr[10], hdr[11], hdr[12]]) as usize;
        let checksum_len = match esr.get_fde().footer().get_checksum_alg() {
            Ok(Some(a)) if a as u8 != 0 => 4,
            _ => 0,
        };
        let min = 19
            + if ty == EventType::FORMAT_DESCRIPTION_EVENT as u8 {
                5
            } else {
                checksum_len
            };
        if size < min {
            return Err(fail(
                at,
                ty,
                format!("event size {size} is smaller than its header"),
            ));
        }
        let ev_bytes = bytes.get(at..at + size).ok_or_else(|| {
            fail(
                at,
                ty,
                format!(
                    "truncated event: {size} bytes announced, {} left in file",
                    bytes.len() - at
                ),
            )
        })?;
        let event = catch_unwind(AssertUnwindSafe(|| esr.read(ev_bytes)))
            .map_err(|_| fail(at, ty, "malformed event (reader panicked)".into()))?
            .map_err(|e| fail(at, ty, format!("malformed event: {e}")))?
            .ok_or_else(|| fail(at, ty, "empty event".into()))?;
        let mut inner = Vec::new();
        if ty == EventType::TRANSACTION_PAYLOAD_EVENT as u8 {
            let tpe = event
                .read_event::<TransactionPayloadEvent<'_>>()
                .map_err(|e| fail(at, ty, format!("bad transaction payload: {e}")))?;
            let mut payload = Vec::new();
            tpe.decompressed()
                .and_then(|mut r| r.read_to_end(&mut payload))
                .map_err(|e| {
                    fail(
                        at,
                        ty,
                        format!("cannot decompress transaction payload: {e}"),
                    )
                })?;
            let mut cursor = std::io::Cursor::new(payload);
            loop {
                let read = catch_unwind(AssertUnwindSafe(|| esr.read_decompressed(&mut cursor)))
                    .map_err(|_| fail(at, ty, "malformed event in payload".into()))?
                    .map_err(|e| fail(at, ty, format!("malformed event in payload: {e}")))?;
                match read {
                    Some(e) => inner.push(e),
                    None => break,
                }
            }
        }
        for ev in std::iter::once(&event).chain(inner.iter()) {
            sum.events += 1;
            // Report errors at this file's offset, not the decoder's idea of the
            // file (a relay log names the source server's files).
            let decoded = dec
                .decode(ev, Some(ev_bytes))
                .map_err(|e| fail(at, e.event_type, e.reason))?;
            match decoded {
                Decoded::Rows(r) => {
                    // Render every value, as the pipeline would.
                    for (b, a) in &r.rows {
                        for image in [b, a].into_iter().flatten() {
                            for (i, v) in image.iter().enumerate() {
                                if let Some(v) = v {
                                    let ty = r
                                        .table
                                        .get_column_type(i)
                                        .ok()
                                        .flatten()
                                        .unwrap_or(ColumnType::MYSQL_TYPE_NULL);
                                    let meta = r.table.get_column_metadata(i).unwrap_or(&[]);
                                    let col = super::schema::render_info_from_metadata(&r.table, i);
                                    render_value(v, ty, meta, &col)
                                        .map_err(|e| fail(at, ev.header().event_type_raw(), e))?;
                                }
                            }
                        }
                        sum.rows += 1;
                    }
                }
                Decoded::Commit { position, .. } => {
                    sum.commits += 1;
                    sum.boundaries.push(position);
                }
                Decoded::Ddl { position, .. } => {
                    sum.ddls += 1;
                    sum.boundaries.push(position);
                }
                _ => {}
            }
        }
        at += size;
    }
    sum.end = dec.position();
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_gtid_parsing() {
        let mut d = Vec::new();
        d.extend_from_slice(&42u64.to_le_bytes());
        d.extend_from_slice(&3u32.to_le_bytes());
        d.push(FL_STANDALONE);
        let (g, f) = parse_mariadb_gtid(&d, 7).unwrap();
        assert_eq!(g.to_string(), "3-7-42");
        assert_eq!(f, FL_STANDALONE);
        assert!(parse_mariadb_gtid(&d[..5], 7).is_none());
        let mut l = 1u32.to_le_bytes().to_vec();
        l.extend_from_slice(&0u32.to_le_bytes());
        l.extend_from_slice(&1u32.to_le_bytes());
        l.extend_from_slice(&9u64.to_le_bytes());
        assert_eq!(parse_mariadb_gtid_list(&l).unwrap()[0].to_string(), "0-1-9");
        assert!(parse_mariadb_gtid_list(&l[..10]).is_none());
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;
    use std::path::PathBuf;

    fn testdata() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/mysql-binlogs")
    }

    /// (file, events, rows, commits, ddls) for every file that must decode fully.
    const GOOD: &[(&str, u64, u64, u64, u64)] = &[
        ("binlog-invisible-columns.000001", 22, 3, 3, 2),
        ("binlog_56_gtid_reserved_word.000001", 20, 1, 2, 4),
        ("binlog_savepoint.000001", 12, 0, 1, 0),
        ("binlog_transaction.000001", 20, 0, 3, 6),
        ("binlog_transaction_previous_GTID_no_tag.000001", 3, 0, 0, 0),
        ("binlog_transaction_with_GTID.000001", 11, 0, 1, 2),
        ("binlog_transaction_with_GTID_TAG.000001", 8, 1, 1, 0),
        ("binlog_transaction_with_anonymous_GTID.000001", 9, 0, 1, 1),
        ("bug11747887-bin.000003", 9, 0, 1, 3),
        ("bug16266.000001", 6, 0, 0, 4),
        ("bug27213339-bin.000001", 95, 0, 0, 46),
        ("bug32407.001", 7, 2, 1, 1),
        ("bug33029-slave-relay-bin.000001", 43, 0, 0, 28),
        ("json-opaque.binlog", 25, 8, 1, 2),
        ("json.binlog.000001", 36, 18, 6, 2),
        ("mariadb-bin.000001", 13, 2, 2, 0),
        ("master-bin.000001", 3, 0, 0, 0),
        ("minimal_row_metadata.000001", 8, 1, 1, 0),
        ("mysql-enum-string-set.000001", 21, 3, 3, 2),
        ("mysql_type_bit.000001", 11, 1, 1, 2),
        ("rpl_atomic_ddl_rollback_full.000001", 11, 0, 0, 4),
        ("rpl_atomic_ddl_rollback_table.000001", 7, 0, 0, 2),
        ("rpl_atomic_ddl_rollback_view.000001", 7, 0, 0, 2),
        (
            "rpl_cross_version_default_utf8mb4_collation.000001",
            19,
            0,
            2,
            3,
        ),
        ("rpl_unfiltered_hidden_gcol.000001", 15, 1, 1, 2),
        ("slave-relay-bin.000001", 6, 0, 0, 2),
        ("time_issue.000001", 8, 1, 1, 0),
        ("transaction_compression.000001", 9, 1, 1, 0),
        ("update-full-row.binlog", 10, 7, 1, 0),
        ("update-partial-row.binlog", 10, 7, 1, 0),
        ("vector.binlog", 38, 10, 3, 7),
        ("ver_5_1-wl2325_r.001", 0, 0, 0, 0),
        ("ver_5_1_23.001", 24, 5, 1, 6),
        ("ver_trunk_row_v2.001", 40, 5, 9, 3),
        ("write-full-row.binlog", 9, 7, 1, 0),
        ("write-partial-row.binlog", 10, 7, 1, 0),
    ];

    /// (file, offset, words the error must contain): broken on purpose, or a format
    /// the connector refuses rather than skips.
    const BAD: &[(&str, u64, &str)] = &[
        ("binlog_truncated_event.000001", 4, "truncated event header"),
        (
            "binlog_truncated_prev_gtid_event.000001",
            120,
            "truncated event header",
        ),
        ("corrupt-relay-bin.000624", 0, "bad query event"),
        // An INCIDENT (LOST_EVENTS) event: the source server says changes are
        // missing, and a MySQL replica stops there too (error 1590).
        ("bug40482-bin.000001", 106, "incident event"),
        // MySQL 5.1 pre-GA row events (types 20-22), which mysql_common cannot decode.
        ("ver_5_1-wl2325_s.001", 411, "pre-GA"),
    ];

    #[test]
    fn decodes_every_test_binlog() {
        let mut names: Vec<String> = std::fs::read_dir(testdata())
            .expect("connectors/testdata/mysql-binlogs in the repository")
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "README.md")
            .collect();
        names.sort();
        assert_eq!(
            names.len(),
            GOOD.len() + BAD.len(),
            "every file is listed: {names:?}"
        );
        for n in &names {
            let bytes = std::fs::read(testdata().join(n)).unwrap();
            let res = decode_file(n, &bytes);
            if let Some((_, offset, words)) = BAD.iter().find(|b| b.0 == n) {
                let e = res.expect_err(n);
                let msg = e.to_string();
                assert!(msg.contains(words), "{n}: {msg}");
                assert!(msg.contains(n.as_str()), "error names the file: {msg}");
                if *offset != 0 {
                    assert_eq!(e.pos, *offset, "{n}: {msg}");
                }
            } else {
                let (_, ev, rows, commits, ddls) = GOOD.iter().find(|g| g.0 == n).unwrap();
                let s = res.unwrap_or_else(|e| panic!("{n}: {e}"));
                if *ev != 0 {
                    assert_eq!(
                        (s.events, s.rows, s.commits, s.ddls),
                        (*ev, *rows, *commits, *ddls),
                        "{n}"
                    );
                } else {
                    assert!(s.events > 0, "{n}");
                }
            }
        }
    }

    #[test]
    fn truncating_any_file_anywhere_never_panics() {
        for n in [
            "mariadb-bin.000001",
            "json.binlog.000001",
            "transaction_compression.000001",
        ] {
            let bytes = std::fs::read(testdata().join(n)).unwrap();
            for cut in (0..bytes.len()).step_by(7) {
                let _ = decode_file(n, &bytes[..cut]);
            }
            // Flip bytes too: errors are fine, panics are not.
            for i in (4..bytes.len()).step_by(13) {
                let mut b = bytes.clone();
                b[i] ^= 0x5a;
                let _ = decode_file(n, &b);
            }
        }
    }

    fn gtids_of(n: &str) -> (Vec<String>, String) {
        let bytes = std::fs::read(testdata().join(n)).unwrap();
        let s = decode_file(n, &bytes).unwrap();
        let sets = s
            .boundaries
            .iter()
            .map(|p| p.mysql_gtid.to_string())
            .collect();
        (sets, s.end.mysql_gtid.to_string())
    }

    /// MySQL GTIDs join the set as their transactions commit (not when the GTID
    /// event passes), intervals merge, previous-GTIDs events seed the set, and
    /// anonymous transactions add nothing.
    #[test]
    fn mysql_gtid_sets_of_test_binlogs() {
        let u = "006c2cf2-b1ea-11e4-9057-8c705a3d3e78";
        assert_eq!(
            gtids_of("binlog_transaction_with_GTID.000001"),
            (
                vec![format!("{u}:1"), format!("{u}:1-2"), format!("{u}:1-3")],
                format!("{u}:1-3")
            )
        );
        // MySQL 5.6: six GTIDs, one per statement (DDL and DML).
        let (sets, end) = gtids_of("binlog_56_gtid_reserved_word.000001");
        let u56 = "11111111-1111-1111-1111-111111111111";
        let want: Vec<String> = (1..=6)
            .map(|n| match n {
                1 => format!("{u56}:1"),
                n => format!("{u56}:1-{n}"),
            })
            .collect();
        assert_eq!(sets, want);
        assert_eq!(end, format!("{u56}:1-6"));
        // Tagged (MySQL 8.4): previous GTIDs 1-13 and mytag:1-2, then mytag:3.
        assert_eq!(
            gtids_of("binlog_transaction_with_GTID_TAG.000001"),
            (
                vec!["55778904-0299-11f1-b1b8-4ef0c4956feb:1-13:mytag:1-3".to_string()],
                "55778904-0299-11f1-b1b8-4ef0c4956feb:1-13:mytag:1-3".to_string()
            )
        );
        // Only a previous-GTIDs event: the set of the files before it.
        assert_eq!(
            gtids_of("binlog_transaction_previous_GTID_no_tag.000001"),
            (
                vec![],
                "b9b88c66-0755-11f1-9899-4a9da94c4d71:1-2".to_string()
            )
        );
        // gtid_mode=OFF: anonymous GTIDs, no set at all.
        let (sets, end) = gtids_of("binlog_transaction_with_anonymous_GTID.000001");
        assert_eq!(sets, vec![String::new(), String::new()]);
        assert_eq!(end, "");
        // A compressed transaction payload still ends at a boundary with the set.
        assert_eq!(
            gtids_of("transaction_compression.000001").0,
            vec!["357df524-4139-11ee-9979-b033ee13919e:1".to_string()]
        );
    }

    /// The decoder continues from a checkpoint's set: a resumed stream merges
    /// the new transactions into it.
    #[test]
    fn mysql_gtid_set_continues_from_start_position() {
        let n = "binlog_transaction_with_GTID.000001";
        let bytes = std::fs::read(testdata().join(n)).unwrap();
        let u = "006c2cf2-b1ea-11e4-9057-8c705a3d3e78";
        let start = Position {
            file: n.into(),
            pos: 4,
            mysql_gtid: format!("{u}:4-10,11111111-1111-1111-1111-111111111111:1")
                .parse()
                .unwrap(),
            ..Default::default()
        };
        let mut esr = EventStreamReader::new(BinlogVersion::Version4);
        let mut dec = Decoder::new(start, None);
        let mut at = 4;
        let mut last = None;
        while at < bytes.len() {
            let size = u32::from_le_bytes(bytes[at + 9..at + 13].try_into().unwrap()) as usize;
            let ev = esr.read(&bytes[at..at + size]).unwrap().unwrap();
            if let Decoded::Commit { position, .. } | Decoded::Ddl { position, .. } =
                dec.decode(&ev, None).unwrap()
            {
                last = Some(position);
            }
            at += size;
        }
        assert_eq!(
            last.unwrap().mysql_gtid.to_string(),
            format!("{u}:1-10,11111111-1111-1111-1111-111111111111:1")
        );
    }

    #[test]
    fn previous_gtids_parser_checks_sizes() {
        // A count far beyond the data is an error, not an allocation.
        let mut d = u64::MAX.wrapping_shr(8).to_le_bytes().to_vec();
        d.extend_from_slice(&[0u8; 40]);
        assert!(parse_previous_gtids(&d).is_none());
        let mut d = 1u64.to_le_bytes().to_vec();
        d.extend_from_slice(&[7u8; 16]);
        d.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse_previous_gtids(&d).is_none());
        assert!(parse_previous_gtids(&[1, 2]).is_none());
        assert!(parse_previous_gtids(&0u64.to_le_bytes())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn mariadb_file_rotate_name_is_clean_and_names_columns() {
        let bytes = std::fs::read(testdata().join("mariadb-bin.000001")).unwrap();
        let s = decode_file("mariadb-bin.000001", &bytes).unwrap();
        assert_eq!(s.rows, 2);
    }
}
