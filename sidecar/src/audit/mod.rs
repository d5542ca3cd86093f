//! Measuring how consistent the cache is.
//!
//! - [`offline`]: `coherent audit --config FILE --out DIR`, a scan of every row of
//!   the rules with a `value` renderer against the cache;
//! - [`online`]: the checker inside `coherent serve` (sampled re-checks of
//!   invalidated keys at set delays after their commit);
//! - [`report`]: the report's types (`report.json`) and the consistency figures;
//! - [`html`]: the self-contained `report.html`;
//! - [`render`]: a database row rendered as the cache-aside library stores it.

pub mod html;
pub mod offline;
pub mod online;
pub mod render;
pub mod report;

pub use offline::run;
