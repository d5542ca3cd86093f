//! What the server says about its own binlog, asked over an ordinary connection: the
//! one "current binlog position" query, shared by the source (`start = "current"`)
//! and the offline audit (where its binlog reader starts and how far it must read).

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// MySQL's ER_PARSE_ERROR: the statement does not exist on this server.
const ER_PARSE_ERROR: u16 = 1064;

/// The server's current binlog coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPosition {
    /// The binlog file being written.
    pub file: String,
    /// The offset the next event will be written at.
    pub pos: u64,
    /// MySQL's `Executed_Gtid_Set` at exactly this file and offset (the fifth
    /// column, as the server prints it); `None` on MariaDB, which has no such column.
    pub executed_gtid_set: Option<String>,
}

/// `SHOW MASTER STATUS`, or `SHOW BINARY LOG STATUS` on MySQL 8.4, which removed the
/// older name. `Ok(None)`: the server answered with no row (its binlog is off). When
/// both fail, the error is the first query's, unless the server did not know that
/// statement (then the second's says what is wrong).
pub async fn current_position(
    conn: &mut Conn,
) -> Result<Option<ServerPosition>, mysql_async::Error> {
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(row) => row,
        Err(first) => match conn.query_first("SHOW BINARY LOG STATUS").await {
            Ok(row) => row,
            Err(second) if is_parse_error(&first) => return Err(second),
            Err(_) => return Err(first),
        },
    };
    Ok(row.map(|row| ServerPosition {
        file: row.get(0).unwrap_or_default(),
        pos: row.get(1).unwrap_or(4),
        executed_gtid_set: if row.len() > 4 {
            row.get::<Option<String>, _>(4).flatten()
        } else {
            None
        },
    }))
}

fn is_parse_error(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == ER_PARSE_ERROR)
}
