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
            Err(second) => return Err(both_failed(first, second)),
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

/// The error to report when both statements failed: MySQL 8.4 answers `SHOW MASTER
/// STATUS` with ER_PARSE_ERROR (the statement is gone), so then the newer
/// statement's error says what is really wrong (a missing grant, say); any other
/// first error (MariaDB or MySQL before 8.4, which know it) is the real one.
fn both_failed(first: mysql_async::Error, second: mysql_async::Error) -> mysql_async::Error {
    if is_parse_error(&first) {
        second
    } else {
        first
    }
}

fn is_parse_error(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == ER_PARSE_ERROR)
}

/// The `server_id`s of the replicas connected to the server now: `SHOW SLAVE HOSTS`
/// (MariaDB, MySQL up to 8.3), or `SHOW REPLICAS` on MySQL 8.4, which removed the
/// older name. The first column is the id on both. Lists replicas that registered
/// (COM_REGISTER_SLAVE), which mysql_async's binlog stream, and so every Coherent
/// pipeline, does.
pub async fn replica_server_ids(conn: &mut Conn) -> Result<Vec<u32>, mysql_async::Error> {
    let rows: Vec<mysql_async::Row> = match conn.query("SHOW SLAVE HOSTS").await {
        Ok(rows) => rows,
        Err(first) if is_parse_error(&first) => conn.query("SHOW REPLICAS").await?,
        Err(first) => return Err(first),
    };
    Ok(rows
        .into_iter()
        .filter_map(|r| r.get::<Option<u32>, _>(0).flatten())
        .collect())
}

/// Why `server_id = "auto"` was refused at start.
#[derive(Debug, thiserror::Error)]
pub enum ServerIdError {
    /// The id is taken: the server would disconnect one of the two replicas each
    /// time the other connects.
    #[error("[mysql] server_id = \"auto\" gave {id} (from host name {host:?}), but a replica connected to the server already uses server_id {id}; set server_id to a number unique among the server's replicas, or give this host another name")]
    InUse {
        /// The derived id.
        id: u32,
        /// The host name it was derived from.
        host: String,
    },
    /// The replica list could not be read.
    #[error("[mysql] server_id = \"auto\": cannot list the server's replicas (SHOW SLAVE HOSTS / SHOW REPLICAS; the user needs REPLICATION SLAVE or REPLICATION CLIENT): {0}")]
    Query(#[from] mysql_async::Error),
}

/// MySQL's ER_SPECIFIC_ACCESS_DENIED_ERROR.
const ER_SPECIFIC_ACCESS_DENIED: u16 = 1227;

/// For `server_id = "auto"` (`host` the name it was derived from): refuses `id`
/// when a connected replica already uses it. Run once at start, before the binlog
/// stream opens; a fixed id is the operator's own choice and is not checked.
///
/// `Ok(false)`: the user may not list replicas (MariaDB wants REPLICATION MASTER
/// ADMIN for it, more than a replica needs), so nothing was checked; the caller
/// warns. Refusing to start would make the check's grant a requirement of "auto".
pub async fn check_auto_server_id(url: &str, id: u32, host: &str) -> Result<bool, ServerIdError> {
    let mut conn = Conn::from_url(url).await?;
    let ids = replica_server_ids(&mut conn).await;
    let _ = conn.disconnect().await;
    let ids = match ids {
        Err(mysql_async::Error::Server(e)) if e.code == ER_SPECIFIC_ACCESS_DENIED => {
            return Ok(false)
        }
        other => other?,
    };
    if ids.contains(&id) {
        return Err(ServerIdError::InUse {
            id,
            host: host.to_string(),
        });
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16, message: &str) -> mysql_async::Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: message.into(),
            state: "42000".into(),
        })
    }

    fn code(e: &mysql_async::Error) -> u16 {
        match e {
            mysql_async::Error::Server(s) => s.code,
            _ => 0,
        }
    }

    /// MySQL 8.4's answer to `SHOW MASTER STATUS` is a parse error: the fallback's
    /// error is reported (here: the grant it lacks).
    #[test]
    fn mysql_8_4_parse_error_reports_the_fallbacks_error() {
        let first = server(
            1064,
            "You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use near 'MASTER STATUS' at line 1",
        );
        assert!(is_parse_error(&first));
        let second = server(1227, "Access denied; you need (at least one of) the SUPER, REPLICATION CLIENT privilege(s) for this operation");
        assert_eq!(code(&both_failed(first, second)), 1227);
    }

    /// A server that knows `SHOW MASTER STATUS` and refused it for another reason:
    /// that reason is reported, not the unknown newer statement's parse error.
    #[test]
    fn other_first_errors_are_reported_as_they_are() {
        let first = server(
            1227,
            "Access denied; you need the REPLICATION CLIENT privilege",
        );
        let second = server(
            1064,
            "You have an error in your SQL syntax near 'BINARY LOG STATUS'",
        );
        assert!(!is_parse_error(&first));
        assert_eq!(code(&both_failed(first, second)), 1227);
    }
}
