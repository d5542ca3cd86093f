-- Where `[checkpoint] store = "mysql"` keeps the binlog position: one row per
-- pipeline (its replica server_id), written only at transaction boundaries.
CREATE DATABASE IF NOT EXISTS coherent;

CREATE TABLE IF NOT EXISTS coherent.checkpoint (
    pipeline   VARCHAR(64)   NOT NULL PRIMARY KEY,
    file       VARCHAR(255)  NOT NULL,
    position   BIGINT UNSIGNED NOT NULL,
    gtid       TEXT          NULL,
    updated_at TIMESTAMP(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
