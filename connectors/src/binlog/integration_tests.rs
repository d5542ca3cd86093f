//! Integration tests against a private MariaDB.
