-- The example application's schema: what the demo, the example service and the
-- integration tests write to, and what the invalidation rules in examples/ cover.
CREATE DATABASE IF NOT EXISTS app;

CREATE TABLE IF NOT EXISTS app.users (
    id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    email      VARCHAR(255)    NOT NULL,
    name       VARCHAR(255)    NOT NULL,
    visits     INT             NOT NULL DEFAULT 0,
    updated_at TIMESTAMP(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    UNIQUE KEY users_email (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS app.orders (
    id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id    BIGINT UNSIGNED NOT NULL,
    total      DECIMAL(12,2)   NOT NULL,
    status     ENUM('new','paid','shipped') NOT NULL DEFAULT 'new',
    KEY orders_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
