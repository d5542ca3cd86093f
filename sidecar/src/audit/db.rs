//! The audits' one way to read MySQL.
//!
//! Both audits read with mysql_async, the driver the binlog source and `coherent
//! check` already use: the offline audit's binlog position is the source's own query
//! ([`connectors::binlog::server::current_position`]), and a row's cells render
//! through connectors' row renderer ([`connectors::row`]) by the column types the
//! driver reports, as the binlog's rows do. Queries go over the text protocol, so a
//! cell arrives as the text MySQL prints.
//!
//! Every session is set up alike, so both audits read the same bytes: TIMESTAMP in
//! UTC (as the binlog decoder renders it, and as lookups by a key's rendered value
//! must compare), utf8mb4, and backslash escapes on (literals quoted by
//! [`mysql_async::Value::as_sql`] mean what they say).

use connectors::row::{json_object, text_cell, Cell, CellKind};
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, Row};

/// The session setup of every connection (see the module's doc).
const SETUP: [&str; 3] = [
    "SET SESSION sql_mode = REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', '')",
    "SET time_zone = '+00:00'",
    "SET NAMES utf8mb4",
];

/// Connections to the `[mysql]` server, made on first use (at most 8 at once).
pub struct Db {
    pool: Pool,
}

impl Db {
    /// A pool for `url`.
    pub fn new(url: &str) -> Result<Db, mysql_async::UrlError> {
        let opts = Opts::from_url(url)?;
        let pool_opts =
            PoolOpts::default().with_constraints(PoolConstraints::new(0, 8).unwrap_or_default());
        let opts = OptsBuilder::from_opts(opts)
            .pool_opts(pool_opts)
            .setup(SETUP.to_vec());
        Ok(Db {
            pool: Pool::new(opts),
        })
    }

    /// A connection (back to the pool when dropped).
    pub async fn conn(&self) -> Result<Conn, mysql_async::Error> {
        self.pool.get_conn().await
    }

    /// Closes the connections once every one is back.
    pub async fn disconnect(self) {
        let _ = self.pool.disconnect().await;
    }
}

/// A row's cells (as MySQL printed them) and the JSON kind of each column.
pub fn cells(row: Row) -> (Vec<Cell>, Vec<CellKind>) {
    let types: Vec<_> = row.columns_ref().iter().map(|c| c.column_type()).collect();
    let kinds = types.iter().map(|t| CellKind::of_column_type(*t)).collect();
    let cells = row
        .unwrap_raw()
        .into_iter()
        .zip(&types)
        .map(|(v, t)| v.map_or(Cell::Absent, |v| text_cell(v, *t)))
        .collect();
    (cells, kinds)
}

/// The JSON object of the leading columns named by `names` (one per name), as the
/// cache-aside `Json` codec stores a struct of those fields.
pub fn value_json(names: &[String], cells: &[Cell], kinds: &[CellKind]) -> serde_json::Value {
    json_object(
        names
            .iter()
            .zip(cells.iter().zip(kinds))
            .map(|(name, (cell, kind))| (name.as_str(), cell, *kind)),
    )
}

/// Quotes an SQL identifier with backticks.
pub fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}
