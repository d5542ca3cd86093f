//! Measuring how consistent the cache is.
//!
//! - [`offline`]: `coherent audit --config FILE --out DIR`, a scan of every row of
//!   the rules with a `value` renderer against the cache;
//! - [`online`]: the checker inside `coherent serve` (sampled re-checks of
//!   invalidated keys at set delays after their commit);
//! - [`report`]: the report's types (`report.json`) and the consistency figures;
//! - [`html`]: the self-contained `report.html`;
//! - [`db`]: how both read MySQL (one driver, one session setup, rows rendered by
//!   connectors' row renderer as the cache-aside library stores them);
//! - [`changes`]: keys of rows changed during the offline scan (binlog).

pub mod changes;
pub mod db;
pub mod html;
pub mod offline;
pub mod online;
pub mod report;

pub use offline::run;
