//! Redis's partial quicksort (`pqsort.c`, NetBSD's Bentley-McIlroy qsort that only
//! recurses into partitions overlapping the wanted range). SORT ... BY ... LIMIT and
//! GEO searches with COUNT use it; ported as is, so that elements which compare
//! equal come out in the same order as from Redis.

use std::cmp::Ordering;

/// Sorts `v` enough that positions `lrange..=rrange` hold what a full sort would put
/// there. `rrange` may be -1 (an empty range), as Redis can pass.
pub fn pqsort<T>(v: &mut [T], cmp: impl Fn(&T, &T) -> Ordering, lrange: i64, rrange: i64) {
    let n = v.len();
    partial(v, 0, n, &cmp, (lrange, rrange));
}

fn med3<T>(v: &[T], a: usize, b: usize, c: usize, cmp: &impl Fn(&T, &T) -> Ordering) -> usize {
    if cmp(&v[a], &v[b]).is_lt() {
        if cmp(&v[b], &v[c]).is_lt() {
            b
        } else if cmp(&v[a], &v[c]).is_lt() {
            c
        } else {
            a
        }
    } else if cmp(&v[b], &v[c]).is_gt() {
        b
    } else if cmp(&v[a], &v[c]).is_lt() {
        a
    } else {
        c
    }
}

/// Swaps `n` elements from `a` with `n` from `b`, one pair at a time.
fn vecswap<T>(v: &mut [T], a: usize, b: usize, n: usize) {
    for i in 0..n {
        v.swap(a + i, b + i);
    }
}

/// Whether the partition `start..start+len` holds any position of the range (Redis
/// compares byte addresses; this is the same test on element positions).
fn overlaps(start: usize, len: usize, range: (i64, i64)) -> bool {
    let (s, e) = (start as i64, (start + len) as i64 - 1);
    let (l, r) = range;
    !((l < s && r < s) || (l > e && r > e))
}

fn partial<T>(
    v: &mut [T],
    mut a: usize,
    mut n: usize,
    cmp: &impl Fn(&T, &T) -> Ordering,
    range: (i64, i64),
) {
    loop {
        if n < 7 {
            for pm in a + 1..a + n {
                let mut pl = pm;
                while pl > a && cmp(&v[pl - 1], &v[pl]).is_gt() {
                    v.swap(pl, pl - 1);
                    pl -= 1;
                }
            }
            return;
        }
        let mut pm = a + n / 2;
        if n > 7 {
            let mut pl = a;
            let mut pn = a + n - 1;
            if n > 40 {
                let d = n / 8;
                pl = med3(v, pl, pl + d, pl + 2 * d, cmp);
                pm = med3(v, pm - d, pm, pm + d, cmp);
                pn = med3(v, pn - 2 * d, pn - d, pn, cmp);
            }
            pm = med3(v, pl, pm, pn, cmp);
        }
        v.swap(a, pm);
        let (mut pa, mut pb) = (a + 1, a + 1);
        let (mut pc, mut pd) = (a + n - 1, a + n - 1);
        loop {
            while pb <= pc {
                let c = cmp(&v[pb], &v[a]);
                if c.is_gt() {
                    break;
                }
                if c.is_eq() {
                    v.swap(pa, pb);
                    pa += 1;
                }
                pb += 1;
            }
            while pb <= pc {
                let c = cmp(&v[pc], &v[a]);
                if c.is_lt() {
                    break;
                }
                if c.is_eq() {
                    v.swap(pc, pd);
                    pd -= 1;
                }
                pc -= 1;
            }
            if pb > pc {
                break;
            }
            v.swap(pb, pc);
            pb += 1;
            pc -= 1;
        }
        let pn = a + n;
        let r = (pa - a).min(pb - pa);
        vecswap(v, a, pb - r, r);
        let r = (pd - pc).min(pn - pd - 1);
        vecswap(v, pb, pn - r, r);
        let r = pb - pa;
        if r > 1 && overlaps(a, r, range) {
            partial(v, a, r, cmp, range);
        }
        let r = pd - pc;
        if r > 1 {
            // The right partition by iteration rather than recursion, as Redis.
            a = pn - r;
            n = r;
            if overlaps(a, n, range) {
                continue;
            }
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_matches_a_full_sort() {
        let mut rng = fastrand::Rng::with_seed(7);
        for len in [0usize, 1, 5, 7, 8, 40, 41, 100, 500] {
            for _ in 0..20 {
                let v: Vec<u32> = (0..len).map(|_| rng.u32(..50)).collect();
                let mut full = v.clone();
                full.sort();
                if len == 0 {
                    pqsort(&mut v.clone(), |a, b| a.cmp(b), 0, -1);
                    continue;
                }
                let l = rng.usize(..len);
                let r = rng.usize(l..len);
                let mut p = v.clone();
                pqsort(&mut p, |a, b| a.cmp(b), l as i64, r as i64);
                assert_eq!(p[l..=r], full[l..=r], "len {len} range {l}..={r}");
                let mut p = v.clone();
                pqsort(&mut p, |a, b| a.cmp(b), 0, len as i64 - 1);
                assert_eq!(p, full);
            }
        }
    }
}
