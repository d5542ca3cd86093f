//! The classes a key ends in, and how a (row, cached value) pair settles.

use crate::audit::report::Counts;
use cache_aside::codec::NOT_FOUND;

/// A key's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// Cached and equal to the row.
    Consistent,
    /// Cached and different from the row.
    Stale,
    /// Not cached.
    Missing,
    /// Cached without a row.
    Orphan,
    /// Cached, of a template not compared by value.
    Unchecked,
    /// Neither row nor value (or a negative entry for a missing row): nothing to count.
    Nothing,
}

/// A (row, cached value) pair: settled, or different (to confirm).
pub(super) enum Settled {
    /// Settled in this class.
    Class(Class),
    /// The cached value differs from the row (or there is no row).
    Differs,
}

/// Settles `cached` against `row` (the rendered row; `None`: no row). `compared`:
/// whether the template's cached value is the rendered row.
pub(super) fn settle(
    row: Option<&serde_json::Value>,
    cached: Option<&[u8]>,
    compared: bool,
) -> Settled {
    match (row, cached) {
        (Some(_), None) => Settled::Class(Class::Missing),
        (None, None) => Settled::Class(Class::Nothing),
        (None, Some(c)) if c == NOT_FOUND => Settled::Class(Class::Nothing),
        (Some(_), Some(_)) if !compared => Settled::Class(Class::Unchecked),
        (Some(r), Some(c)) if same_json(c, r) => Settled::Class(Class::Consistent),
        _ => Settled::Differs,
    }
}

/// Whether the cached bytes are the JSON of `expected` (any spacing or key order).
pub(super) fn same_json(cached: &[u8], expected: &serde_json::Value) -> bool {
    serde_json::from_slice::<serde_json::Value>(cached).is_ok_and(|v| &v == expected)
}

/// The counter of `class` in `c`.
fn counter(c: &mut Counts, class: Class) -> Option<&mut u64> {
    match class {
        Class::Consistent => Some(&mut c.consistent),
        Class::Stale => Some(&mut c.stale),
        Class::Missing => Some(&mut c.missing),
        Class::Orphan => Some(&mut c.orphan),
        Class::Unchecked => Some(&mut c.unchecked),
        Class::Nothing => None,
    }
}

/// Counts one key in `class`.
pub(super) fn count(c: &mut Counts, class: Class) {
    if let Some(n) = counter(c, class) {
        *n += 1;
    }
}

/// Takes back one key counted in `class` (its re-check classified it again).
pub(super) fn uncount(c: &mut Counts, class: Class) {
    if let Some(n) = counter(c, class) {
        *n = n.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settle_classes() {
        let row = serde_json::json!({"id": 1});
        let class =
            |r: Option<&serde_json::Value>, c: Option<&[u8]>, cmp: bool| match settle(r, c, cmp) {
                Settled::Class(c) => Some(c),
                Settled::Differs => None,
            };
        assert_eq!(
            class(Some(&row), Some(b"{\"id\": 1}"), true),
            Some(Class::Consistent)
        );
        assert_eq!(class(Some(&row), None, true), Some(Class::Missing));
        assert_eq!(class(None, None, true), Some(Class::Nothing));
        assert_eq!(class(None, Some(NOT_FOUND), true), Some(Class::Nothing));
        assert_eq!(class(Some(&row), Some(b"{\"id\": 2}"), true), None);
        assert_eq!(
            class(None, Some(b"{\"id\": 1}"), true),
            None,
            "row gone, value cached"
        );
        // A pointer template: any cached value is unchecked, never stale; without
        // a row it is still an orphan candidate.
        assert_eq!(class(Some(&row), Some(b"1"), false), Some(Class::Unchecked));
        assert_eq!(class(None, Some(b"1"), false), None);
    }
}
