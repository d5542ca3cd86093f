//! The stream loop: connect as a replica, read events, assemble transactions, and
//! reconnect (with backoff) from the last delivered transaction when the connection
//! breaks, the server restarts or the stream stalls.
//!
//! MariaDB needs a few things mysql_async does not do: `@mariadb_slave_capability=4`
//! (or no GTID events are sent), `@slave_connect_state` to resume from a GTID, and
//! `@master_heartbeat_period` (or an idle stream is indistinguishable from a dead one).

use super::config::MysqlConfig;
use super::decode::{DecodeError, Decoded, Decoder, TableFilter};
use super::position::{MariadbGtidState, MysqlGtidSet, Position, PositionError, StartPosition};
use super::probe::SourceProbe;
use super::schema::{InfoSchema, SchemaCache, SchemaError};
use super::server::current_position;
use super::{RowChange, Transaction};
use futures_util::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Opts, Pool};
use std::sync::Arc;
use std::time::Duration;

/// MySQL/MariaDB error: the requested binlog position or GTID is not available.
const ER_MASTER_FATAL_ERROR_READING_BINLOG: u16 = 1236;

/// Why the source stopped or had to reconnect.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The server could not be reached or refused the login.
    #[error("cannot connect to MySQL: {0}")]
    Connect(#[source] mysql_async::Error),
    /// The connection broke while streaming.
    #[error("binlog stream failed at {position}: {source}")]
    Stream {
        /// Last transaction boundary delivered.
        position: Position,
        /// Driver error (boxed: the position beside it is large).
        source: Box<mysql_async::Error>,
    },
    /// The server closed the stream.
    #[error("the server closed the binlog stream at {0}")]
    Closed(Position),
    /// Neither an event nor a heartbeat arrived in time.
    #[error("binlog stream stalled: nothing received for {0:?}")]
    Stalled(Duration),
    /// The position to resume from is no longer on the server.
    #[error("the server cannot stream from {position}: {message}. The binlog was probably purged (or the position is not a transaction boundary): changes since then are lost to this connector; clear the cache (FLUSHALL) and restart from start = \"current\" after deleting the checkpoint")]
    Purged {
        /// The position asked for.
        position: Position,
        /// The server's message.
        message: String,
    },
    /// A server-side query failed (grants, variables).
    #[error("query failed: {0}")]
    Query(#[source] mysql_async::Error),
    /// The binlog could not be decoded: the pipeline stops here, nothing is skipped.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The start position does not fit the server (a MariaDB GTID on MySQL, ...).
    #[error("{0}")]
    Config(String),
    /// Column names could not be resolved.
    #[error("at {position}: {source}")]
    Schema {
        /// Last transaction boundary delivered.
        position: Position,
        /// The cause (boxed: it is large and rare).
        source: Box<SchemaError>,
    },
}

impl SourceError {
    /// True for failures a reconnect can cure (network, restarts, stalls); false for
    /// ones that need an operator (purged binlog, undecodable events, bad schema).
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Connect(e) => {
                !matches!(e, mysql_async::Error::Server(s) if s.code == ER_MASTER_FATAL_ERROR_READING_BINLOG)
            }
            SourceError::Stream { source: e, .. } => {
                let e: &mysql_async::Error = e;
                !matches!(e, mysql_async::Error::Server(s) if s.code == ER_MASTER_FATAL_ERROR_READING_BINLOG)
            }
            SourceError::Closed(_) | SourceError::Stalled(_) => true,
            SourceError::Schema { source, .. } => matches!(**source, SchemaError::Query { .. }),
            _ => false,
        }
    }
}

/// Counters of the source, for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Binlog events received.
    pub events: u64,
    /// Row changes delivered.
    pub rows: u64,
    /// Transactions delivered.
    pub transactions: u64,
    /// Successful reconnects after a failure.
    pub reconnects: u64,
    /// Schema lookups in information_schema.
    pub schema_lookups: u64,
}

/// Reconnect policy: exponential backoff between `min` and `max`; `max_attempts`
/// consecutive failures (0 = forever) end the stream with the last error.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// First delay.
    pub min: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Consecutive failed attempts before giving up; 0 retries forever.
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(10),
            max_attempts: 0,
        }
    }
}

struct Live {
    stream: BinlogStream,
    decoder: Decoder,
}

/// Where one connection starts streaming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    /// Binlog file (empty with a GTID start).
    pub file: String,
    /// Offset in `file`.
    pub pos: u64,
    /// MariaDB: resume after this state (`@slave_connect_state`).
    pub mariadb_gtid: Option<MariadbGtidState>,
    /// MySQL: the GTIDs executed before the start; with `gtid_dump` the server
    /// sends every transaction not in it, else it only seeds the tracked set.
    pub mysql_gtid: MysqlGtidSet,
    /// Use COM_BINLOG_DUMP_GTID with `mysql_gtid` as the SID block.
    pub gtid_dump: bool,
}

/// The replication request for `start`: COM_BINLOG_DUMP_GTID with the GTID set as
/// its SID block for a MySQL GTID start, COM_BINLOG_DUMP by file and offset
/// otherwise (MariaDB's GTID start travels in `@slave_connect_state`).
pub fn binlog_request(server_id: u32, start: &StreamStart) -> BinlogStreamRequest<'_> {
    let request = BinlogStreamRequest::new(server_id);
    if start.gtid_dump {
        request
            .with_gtid()
            .with_filename(start.file.as_bytes())
            .with_pos(4u64)
            .with_gtid_set(start.mysql_gtid.to_sids())
    } else {
        request
            .with_filename(start.file.as_bytes())
            .with_pos(start.pos)
    }
}

/// True when a MySQL server runs with `gtid_mode=ON` (a GTID dump needs it).
async fn mysql_gtid_mode_on(conn: &mut Conn) -> bool {
    matches!(
        conn.query_first::<String, _>("SELECT @@GLOBAL.gtid_mode").await,
        Ok(Some(m)) if m.eq_ignore_ascii_case("ON")
    )
}

/// A binlog source: yields committed transactions in binlog order.
pub struct BinlogSource {
    config: MysqlConfig,
    filter: Option<TableFilter>,
    /// Where the next connection starts: the last transaction delivered, or the
    /// checkpoint before any was.
    resume: Option<Position>,
    live: Option<Live>,
    schema: SchemaCache<InfoSchema>,
    pool: Pool,
    backoff: Backoff,
    stats: SourceStats,
    is_mariadb: bool,
    /// Set while a read is in progress: if the read's future is dropped (a
    /// `select!` elsewhere won), the stream sits mid-transaction and must be
    /// re-opened from the last delivered position.
    reading: bool,
    /// Counters readable from other tasks while this source is busy.
    probe: Arc<SourceProbe>,
}

impl std::fmt::Debug for BinlogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinlogSource")
            .field("resume", &self.resume)
            .field("stats", &self.stats)
            .finish()
    }
}

impl BinlogSource {
    /// A source for `config`, resuming after `checkpoint` when given (else from
    /// `config.start`). `filter` limits decoding to the tables it accepts.
    pub fn new(
        config: MysqlConfig,
        checkpoint: Option<Position>,
        filter: Option<TableFilter>,
    ) -> Result<Self, SourceError> {
        let opts = Opts::from_url(&config.url)
            .map_err(|e| SourceError::Connect(mysql_async::Error::Url(e)))?;
        let pool = Pool::new(opts);
        Ok(BinlogSource {
            config,
            filter,
            resume: checkpoint,
            live: None,
            schema: SchemaCache::new(Some(InfoSchema::new(pool.clone()))),
            pool,
            backoff: Backoff::default(),
            stats: SourceStats::default(),
            is_mariadb: false,
            reading: false,
            probe: Arc::default(),
        })
    }

    /// Reports through `probe` (a source replacing another keeps the live view that
    /// `/readyz` and the metrics already read).
    pub fn with_probe(mut self, probe: Arc<SourceProbe>) -> Self {
        self.probe = probe;
        self
    }

    /// Replaces the reconnect policy.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> SourceStats {
        let mut s = self.stats.clone();
        s.schema_lookups = self.schema.lookups;
        s
    }

    /// A live view of connection state and counters, readable while the source is
    /// streaming or reconnecting.
    pub fn probe(&self) -> Arc<SourceProbe> {
        self.probe.clone()
    }

    /// The position the next connection would start from.
    pub fn resume_position(&self) -> Option<&Position> {
        self.resume.as_ref()
    }

    /// The next committed transaction. Retryable failures reconnect with backoff
    /// and resume after the last transaction returned, so none is lost; the others
    /// are returned and the source should not be used further.
    pub async fn next_transaction(&mut self) -> Result<Transaction, SourceError> {
        if self.reading {
            // The previous call was cancelled part-way through a transaction.
            self.disconnect().await;
            self.reading = false;
        }
        let mut failures = 0u32;
        let mut delay = self.backoff.min;
        loop {
            let res = match self.live.is_some() {
                true => {
                    self.reading = true;
                    let r = self.read_transaction().await;
                    self.reading = false;
                    r
                }
                false => match self.connect().await {
                    Ok(()) => {
                        if failures > 0 {
                            self.stats.reconnects += 1;
                            self.probe.reconnected();
                        }
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            match res {
                Ok(t) => return Ok(t),
                Err(e) if e.is_retryable() => {
                    self.probe.error(&e);
                    self.disconnect().await;
                    failures += 1;
                    if self.backoff.max_attempts != 0 && failures >= self.backoff.max_attempts {
                        return Err(e);
                    }
                    tracing::warn!(error = %e, ?delay, "binlog source: reconnecting");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.backoff.max);
                }
                Err(e) => {
                    self.probe.error(&e);
                    self.disconnect().await;
                    return Err(e);
                }
            }
        }
    }

    /// Connects now rather than on the first read, fixing where "current" is.
    pub async fn ensure_connected(&mut self) -> Result<(), SourceError> {
        if self.live.is_none() {
            self.connect().await?;
        }
        Ok(())
    }

    /// Closes the stream (the next call reconnects).
    pub async fn disconnect(&mut self) {
        self.probe.set_connected(false);
        if let Some(live) = self.live.take() {
            // Closing a broken stream fails; that is fine, the socket is gone either way.
            let _ = tokio::time::timeout(Duration::from_secs(2), live.stream.close()).await;
        }
    }

    /// Closes the stream and the schema-lookup pool.
    pub async fn shutdown(mut self) {
        self.disconnect().await;
        let _ = self.pool.disconnect().await;
    }

    async fn connect(&mut self) -> Result<(), SourceError> {
        let opts = Opts::from_url(&self.config.url)
            .map_err(|e| SourceError::Connect(mysql_async::Error::Url(e)))?;
        let mut conn = Conn::new(opts).await.map_err(SourceError::Connect)?;
        let version: String = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(SourceError::Connect)?
            .unwrap_or_default();
        self.is_mariadb = version.to_ascii_lowercase().contains("mariadb");
        let start = self.start_position(&mut conn, &version).await?;
        let q = |e| SourceError::Connect(e);
        if self.is_mariadb {
            // Without this MariaDB treats us as a pre-GTID replica and sends no GTID
            // events, so no GTID position could be recorded.
            conn.query_drop("SET @mariadb_slave_capability=4")
                .await
                .map_err(q)?;
        }
        let ns = self.config.heartbeat().as_nanos();
        conn.query_drop(format!("SET @master_heartbeat_period={ns}"))
            .await
            .map_err(q)?;
        if let Some(g) = &start.mariadb_gtid {
            conn.exec_drop("SET @slave_connect_state=?", (g.to_string(),))
                .await
                .map_err(q)?;
            conn.query_drop("SET @slave_gtid_strict_mode=0")
                .await
                .map_err(q)?;
            conn.query_drop("SET @slave_gtid_ignore_duplicates=0")
                .await
                .map_err(q)?;
        }
        let request = binlog_request(self.config.server_id, &start);
        let stream = conn
            .get_binlog_stream(request)
            .await
            .map_err(SourceError::Connect)?;
        let start = Position {
            file: start.file,
            pos: start.pos,
            mariadb_gtid: start.mariadb_gtid.unwrap_or_default(),
            mysql_gtid: start.mysql_gtid,
        };
        tracing::info!(position = %start, mariadb = self.is_mariadb, "binlog source: streaming");
        if self.resume.is_none() {
            // Later reconnects resume from where this first connection started.
            self.resume = Some(start.clone());
        }
        self.probe.set_connected(true);
        self.live = Some(Live {
            stream,
            decoder: Decoder::new(start, self.filter.clone()),
        });
        Ok(())
    }

    /// Where and how the next connection starts.
    async fn start_position(
        &mut self,
        conn: &mut Conn,
        version: &str,
    ) -> Result<StreamStart, SourceError> {
        let q = SourceError::Query;
        let file_pos = |file: String, pos: u64, mysql_gtid: MysqlGtidSet| StreamStart {
            file,
            pos,
            mariadb_gtid: None,
            mysql_gtid,
            gtid_dump: false,
        };
        let gtid_dump = |set: MysqlGtidSet| StreamStart {
            file: String::new(),
            pos: 4,
            mariadb_gtid: None,
            mysql_gtid: set,
            gtid_dump: true,
        };
        if let Some(p) = &self.resume {
            if self.is_mariadb && !p.mariadb_gtid.is_empty() {
                return Ok(StreamStart {
                    file: String::new(),
                    pos: 4,
                    mariadb_gtid: Some(p.mariadb_gtid.clone()),
                    mysql_gtid: MysqlGtidSet::default(),
                    gtid_dump: false,
                });
            }
            if !self.is_mariadb && !p.mysql_gtid.is_empty() && mysql_gtid_mode_on(conn).await {
                // A GTID set survives failovers and purges of earlier files.
                return Ok(gtid_dump(p.mysql_gtid.clone()));
            }
            return Ok(file_pos(p.file.clone(), p.pos.max(4), p.mysql_gtid.clone()));
        }
        match self.config.start.clone() {
            StartPosition::Current => {
                if self.is_mariadb {
                    let g: Option<String> = conn
                        .query_first("SELECT @@GLOBAL.gtid_binlog_pos")
                        .await
                        .map_err(q)?;
                    let state: MariadbGtidState = g.unwrap_or_default().parse().unwrap_or_default();
                    if !state.is_empty() {
                        return Ok(StreamStart {
                            file: String::new(),
                            pos: 4,
                            mariadb_gtid: Some(state),
                            mysql_gtid: MysqlGtidSet::default(),
                            gtid_dump: false,
                        });
                    }
                }
                let now = current_position(conn).await.map_err(q)?.ok_or_else(|| {
                    SourceError::Query(mysql_async::Error::Other(
                        "SHOW MASTER STATUS returned nothing: is log_bin on?".into(),
                    ))
                })?;
                // MySQL's executed GTID set at exactly this file and offset: the set
                // the stream continues from.
                let mut set = MysqlGtidSet::default();
                if !self.is_mariadb {
                    if let Some(text) = &now.executed_gtid_set {
                        set = text.parse().map_err(|e: PositionError| {
                            SourceError::Config(format!("the server's Executed_Gtid_Set: {e}"))
                        })?;
                    }
                }
                Ok(file_pos(now.file, now.pos, set))
            }
            StartPosition::Earliest => {
                let row: Option<mysql_async::Row> =
                    conn.query_first("SHOW BINARY LOGS").await.map_err(q)?;
                let file: String = row.and_then(|r| r.get(0)).unwrap_or_default();
                // The first file's previous-GTIDs event supplies the purged set.
                Ok(file_pos(file, 4, MysqlGtidSet::default()))
            }
            StartPosition::Gtid(g) => {
                if !self.is_mariadb {
                    return Err(SourceError::Config(format!(
                        "start = \"gtid:{g}\" is a MariaDB GTID (domain-server-sequence) but the server is MySQL {version}: give a MySQL GTID set such as \"gtid:3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100\" (see SELECT @@GLOBAL.gtid_executed)"
                    )));
                }
                Ok(StreamStart {
                    file: String::new(),
                    pos: 4,
                    mariadb_gtid: Some(g),
                    mysql_gtid: MysqlGtidSet::default(),
                    gtid_dump: false,
                })
            }
            StartPosition::MysqlGtid(set) => {
                if self.is_mariadb {
                    return Err(SourceError::Config(format!(
                        "start = \"gtid:{set}\" is a MySQL GTID set (uuid:intervals) but the server is MariaDB {version}: give a MariaDB GTID such as \"gtid:0-1-100\" (see SELECT @@GLOBAL.gtid_binlog_pos)"
                    )));
                }
                if !mysql_gtid_mode_on(conn).await {
                    return Err(SourceError::Config(format!(
                        "start = \"gtid:{set}\" needs gtid_mode=ON on the server; use \"file:NAME:POS\" or \"current\" instead"
                    )));
                }
                Ok(gtid_dump(set))
            }
            StartPosition::File { file, pos } => Ok(file_pos(file, pos, MysqlGtidSet::default())),
        }
    }

    /// Reads events until a transaction boundary.
    async fn read_transaction(&mut self) -> Result<Transaction, SourceError> {
        let stall = self.config.heartbeat() * 3;
        let mut changes: Vec<RowChange> = Vec::new();
        let mut events = 0u64;
        loop {
            let resume = self.resume.clone().unwrap_or_default();
            let Some(live) = self.live.as_mut() else {
                return Err(SourceError::Closed(resume));
            };
            let next = match tokio::time::timeout(stall, live.stream.next()).await {
                Err(_) => return Err(SourceError::Stalled(stall)),
                Ok(None) => return Err(SourceError::Closed(resume)),
                Ok(Some(Err(e))) => {
                    if let mysql_async::Error::Server(s) = &e {
                        if s.code == ER_MASTER_FATAL_ERROR_READING_BINLOG {
                            return Err(SourceError::Purged {
                                position: resume,
                                message: s.message.clone(),
                            });
                        }
                    }
                    return Err(SourceError::Stream {
                        position: resume,
                        source: Box::new(e),
                    });
                }
                Ok(Some(Ok(ev))) => ev,
            };
            self.stats.events += 1;
            self.probe.event();
            events += 1;
            match live.decoder.decode(&next, None)? {
                Decoded::Rows(raw) => {
                    let schema = self.schema.resolve(&raw.table).await.map_err(|source| {
                        SourceError::Schema {
                            position: resume.clone(),
                            source: Box::new(source),
                        }
                    })?;
                    let live = self
                        .live
                        .as_ref()
                        .ok_or(SourceError::Closed(resume.clone()))?;
                    for (b, a) in &raw.rows {
                        let render = |img: &Option<crate::row::RawImage>| {
                            img.as_ref()
                                .map(|i| schema.render(i))
                                .transpose()
                                .map_err(|e| live.decoder.error(next.header().event_type_raw(), e))
                        };
                        changes.push(RowChange {
                            db: schema.db.clone(),
                            table: schema.table.clone(),
                            kind: raw.kind,
                            before: render(b)?,
                            after: render(a)?,
                        });
                    }
                }
                Decoded::Commit {
                    position,
                    timestamp,
                } => {
                    return Ok(self.deliver(changes, position, timestamp, None, events));
                }
                Decoded::Ddl {
                    query,
                    position,
                    timestamp,
                    ..
                } => {
                    self.schema.invalidate_all();
                    return Ok(self.deliver(changes, position, timestamp, Some(query), events));
                }
                Decoded::Heartbeat => self.probe.heartbeat(),
                Decoded::SkippedRows(_) | Decoded::Nothing => {}
            }
        }
    }

    fn deliver(
        &mut self,
        changes: Vec<RowChange>,
        position: Position,
        timestamp: u32,
        ddl: Option<String>,
        events: u64,
    ) -> Transaction {
        self.stats.transactions += 1;
        self.stats.rows += changes.len() as u64;
        self.resume = Some(position.clone());
        self.probe.delivered_one();
        Transaction {
            changes,
            position,
            timestamp,
            ddl,
            events,
        }
    }
}
