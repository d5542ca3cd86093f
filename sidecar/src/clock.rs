//! Wall-clock helpers of the audits. Seconds and the commit-to-apply lag are the
//! connector's ([`connectors::clock`]), so the pipeline and the audits agree.

pub use connectors::clock::now_secs;

/// Unix time in milliseconds, signed for the audits' differences (the engine's clock,
/// through [`connectors::clock::now_ms`]).
pub fn now_ms() -> i64 {
    i64::try_from(connectors::clock::now_ms()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_agrees_in_both_units() {
        let (s, ms) = (now_secs(), now_ms());
        assert!(
            s > 1.7e9 && ((s * 1000.0) as i64 - ms).abs() < 1000,
            "{s} {ms}"
        );
    }
}
