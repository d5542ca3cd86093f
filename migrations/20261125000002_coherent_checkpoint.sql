-- Where `[checkpoint] store = "mysql"` keeps the binlog position: one row per
-- pipeline (its name, by default the replica server_id), written only at
-- transaction boundaries, in one transaction per save.
CREATE DATABASE IF NOT EXISTS coherent;

CREATE TABLE IF NOT EXISTS coherent.checkpoint (
    pipeline   VARCHAR(64)     NOT NULL PRIMARY KEY,
    -- Binlog file and the offset just past the last applied transaction.
    file       VARCHAR(255)    NOT NULL,
    position   BIGINT UNSIGNED NOT NULL,
    -- GTID position including that transaction: a MariaDB state (0-1-100,1-2-7)
    -- or a MySQL GTID set (uuid:1-100,uuid2:1-5); NULL without GTIDs.
    gtid       TEXT            NULL,
    -- Server commit time of that transaction, and when the row was written
    -- (both seconds since the epoch).
    commit_ts  INT UNSIGNED    NOT NULL DEFAULT 0,
    saved_at   BIGINT UNSIGNED NOT NULL DEFAULT 0,
    updated_at TIMESTAMP(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
