-- coherent reads the binlog as a replica; the daemon shape also keeps its checkpoint
-- and HA lock on this server (coherent.checkpoint).
CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED WITH mysql_native_password BY 'secret';
GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'repl'@'%';
GRANT CREATE, SELECT, INSERT, UPDATE ON coherent.* TO 'repl'@'%';
