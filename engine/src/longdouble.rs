//! Software x87 `long double` (64-bit mantissa) for INCRBYFLOAT and HINCRBYFLOAT.
//!
//! Redis parses both operands with `strtold`, adds them in 80-bit extended precision
//! and prints the sum with `%.17Lf` (trailing zeros removed). An `f64` gives different
//! text as soon as the sum is not exact (`5.6 + 1500` prints `1505.59999999999999998`
//! in Redis), so this module reproduces the three steps exactly: correctly rounded
//! decimal parsing, round-to-nearest-even addition and exact decimal printing.

use std::cmp::Ordering;

/// A little-endian big unsigned integer, just enough for exact conversions.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Big(Vec<u32>);

impl Big {
    fn from_u64(v: u64) -> Big {
        let mut b = Big(vec![v as u32, (v >> 32) as u32]);
        b.trim();
        b
    }
    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }
    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }
    fn bit_len(&self) -> u64 {
        match self.0.last() {
            None => 0,
            Some(&top) => (self.0.len() as u64 - 1) * 32 + (32 - top.leading_zeros() as u64),
        }
    }
    fn mul_small(&mut self, m: u32) {
        let mut carry = 0u64;
        for l in self.0.iter_mut() {
            let v = *l as u64 * m as u64 + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.0.push(carry as u32);
        }
    }
    fn add_small(&mut self, a: u32) {
        let mut carry = a as u64;
        for l in self.0.iter_mut() {
            if carry == 0 {
                return;
            }
            let v = *l as u64 + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.0.push(carry as u32);
        }
    }
    /// Divides in place; returns the remainder.
    fn divrem_small(&mut self, d: u32) -> u32 {
        let mut rem = 0u64;
        for l in self.0.iter_mut().rev() {
            let v = (rem << 32) | *l as u64;
            *l = (v / d as u64) as u32;
            rem = v % d as u64;
        }
        self.trim();
        rem as u32
    }
    fn shl(&self, n: u64) -> Big {
        let (words, bits) = ((n / 32) as usize, (n % 32) as u32);
        let mut out = vec![0u32; words];
        let mut carry = 0u32;
        for &l in &self.0 {
            if bits == 0 {
                out.push(l);
            } else {
                out.push((l << bits) | carry);
                carry = l >> (32 - bits);
            }
        }
        if carry != 0 {
            out.push(carry);
        }
        let mut b = Big(out);
        b.trim();
        b
    }
    fn shr(&self, n: u64) -> Big {
        let (words, bits) = ((n / 32) as usize, (n % 32) as u32);
        if words >= self.0.len() {
            return Big(Vec::new());
        }
        let src = &self.0[words..];
        let mut out = Vec::with_capacity(src.len());
        for i in 0..src.len() {
            let lo = src[i] >> bits;
            let hi = if bits == 0 {
                0
            } else {
                src.get(i + 1).map_or(0, |&h| h << (32 - bits))
            };
            out.push(lo | hi);
        }
        let mut b = Big(out);
        b.trim();
        b
    }
    fn bit(&self, n: u64) -> bool {
        self.0
            .get((n / 32) as usize)
            .is_some_and(|l| (l >> (n % 32)) & 1 == 1)
    }
    /// Whether any of the lowest `n` bits is set.
    fn any_below(&self, n: u64) -> bool {
        let words = (n / 32) as usize;
        if self.0.iter().take(words).any(|&l| l != 0) {
            return true;
        }
        let bits = n % 32;
        bits != 0
            && self
                .0
                .get(words)
                .is_some_and(|&l| l & ((1u32 << bits) - 1) != 0)
    }
    fn low_u64(&self) -> u64 {
        self.0.first().copied().unwrap_or(0) as u64
            | (self.0.get(1).copied().unwrap_or(0) as u64) << 32
    }
    fn cmp(&self, o: &Big) -> Ordering {
        self.0
            .len()
            .cmp(&o.0.len())
            .then_with(|| self.0.iter().rev().cmp(o.0.iter().rev()))
    }
    fn add(&self, o: &Big) -> Big {
        let n = self.0.len().max(o.0.len());
        let mut out = Vec::with_capacity(n + 1);
        let mut carry = 0u64;
        for i in 0..n {
            let v = self.0.get(i).copied().unwrap_or(0) as u64
                + o.0.get(i).copied().unwrap_or(0) as u64
                + carry;
            out.push(v as u32);
            carry = v >> 32;
        }
        out.push(carry as u32);
        let mut b = Big(out);
        b.trim();
        b
    }
    /// `self - o`, requiring `self >= o`.
    fn sub(&self, o: &Big) -> Big {
        let mut out = Vec::with_capacity(self.0.len());
        let mut borrow = 0i64;
        for i in 0..self.0.len() {
            let mut v = self.0[i] as i64 - o.0.get(i).copied().unwrap_or(0) as i64 - borrow;
            borrow = 0;
            if v < 0 {
                v += 1 << 32;
                borrow = 1;
            }
            out.push(v as u32);
        }
        let mut b = Big(out);
        b.trim();
        b
    }
    fn to_decimal(&self) -> String {
        if self.is_zero() {
            return "0".into();
        }
        let mut n = self.clone();
        let mut chunks = Vec::new();
        while !n.is_zero() {
            chunks.push(n.divrem_small(1_000_000_000));
        }
        let mut s = chunks.pop().map_or(String::new(), |c| c.to_string());
        for c in chunks.iter().rev() {
            s.push_str(&format!("{c:09}"));
        }
        s
    }
}

/// Smallest and largest binary exponents of the top mantissa bit of a normal x87
/// long double.
const MIN_EXP: i64 = -16382;
const MAX_EXP: i64 = 16383;

/// A finite x87 extended value: `(-1)^neg * mant * 2^exp`, `mant` normalized
/// (top bit set) or zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongDouble {
    neg: bool,
    mant: u64,
    exp: i64,
}

/// Rounds `n * 2^exp` (with `sticky` standing for nonzero bits below `n`) to a 64-bit
/// mantissa, nearest-even. `None` when the result overflows the long double range.
fn round_big(n: &Big, exp: i64, sticky: bool, neg: bool) -> Option<LongDouble> {
    let bl = n.bit_len();
    if bl == 0 {
        return Some(LongDouble {
            neg,
            mant: 0,
            exp: 0,
        });
    }
    let (mut mant, mut e) = if bl <= 64 {
        (n.shl(64 - bl).low_u64(), exp - (64 - bl as i64))
    } else {
        let shift = bl - 64;
        let top = n.shr(shift).low_u64();
        let half = n.bit(shift - 1);
        let rest = sticky || (shift >= 2 && n.any_below(shift - 1));
        let mut m = top;
        let mut e = exp + shift as i64;
        if half && (rest || m & 1 == 1) {
            m = m.wrapping_add(1);
            if m == 0 {
                m = 1 << 63;
                e += 1;
            }
        }
        (m, e)
    };
    // The top bit's exponent must stay in the normal range (subnormals are not
    // modelled; they never show up in counters).
    let top_exp = e + 63;
    if top_exp > MAX_EXP {
        return None;
    }
    if top_exp < MIN_EXP {
        mant = 0;
        e = 0;
    }
    Some(LongDouble { neg, mant, exp: e })
}

/// Why `strtold` input is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not a number at all, NaN, or out of range (Redis's `string2ld` failure).
    Invalid,
    /// An infinity (`inf`): valid input whose sum cannot be finite.
    Infinite,
}

impl LongDouble {
    /// Zero.
    pub const ZERO: LongDouble = LongDouble {
        neg: false,
        mant: 0,
        exp: 0,
    };

    /// Parses as Redis's `string2ld`: `strtold` syntax for decimals and infinities,
    /// no leading space, nothing trailing, no NaN, no overflow or underflow to zero.
    pub fn parse(s: &[u8]) -> Result<LongDouble, ParseError> {
        if s.is_empty() || s.len() > 5 * 1024 || s[0].is_ascii_whitespace() {
            return Err(ParseError::Invalid);
        }
        let (neg, body) = match s[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
            return Err(ParseError::Infinite);
        }
        let mut digits = Big(Vec::new());
        let mut i = 0;
        let mut nd = 0usize;
        let mut frac = 0i64;
        let mut seen_digit = false;
        while i < body.len() && body[i].is_ascii_digit() {
            push_digit(&mut digits, body[i], &mut nd);
            seen_digit = true;
            i += 1;
        }
        if i < body.len() && body[i] == b'.' {
            i += 1;
            while i < body.len() && body[i].is_ascii_digit() {
                push_digit(&mut digits, body[i], &mut nd);
                frac += 1;
                seen_digit = true;
                i += 1;
            }
        }
        if !seen_digit {
            return Err(ParseError::Invalid);
        }
        let mut e10: i64 = 0;
        if i < body.len() && (body[i] == b'e' || body[i] == b'E') {
            let mut j = i + 1;
            let eneg = match body.get(j) {
                Some(b'-') => {
                    j += 1;
                    true
                }
                Some(b'+') => {
                    j += 1;
                    false
                }
                _ => false,
            };
            let start = j;
            let mut v: i64 = 0;
            while j < body.len() && body[j].is_ascii_digit() {
                v = (v * 10 + (body[j] - b'0') as i64).min(1_000_000);
                j += 1;
            }
            // strtold stops before an exponent without digits; the rest is garbage.
            if j > start {
                e10 = if eneg { -v } else { v };
                i = j;
            }
        }
        if i != body.len() {
            return Err(ParseError::Invalid);
        }
        let e10 = e10 - frac;
        if digits.is_zero() {
            return Ok(LongDouble {
                neg,
                mant: 0,
                exp: 0,
            });
        }
        // Magnitude bounds: beyond these the value over- or underflows for sure.
        let mag = e10 + nd as i64;
        if mag > 4934 {
            return Err(ParseError::Invalid);
        }
        if mag < -4951 {
            return Err(ParseError::Invalid);
        }
        let r = if e10 >= 0 {
            let mut n = digits;
            for _ in 0..e10 {
                n.mul_small(10);
            }
            round_big(&n, 0, false, neg)
        } else {
            let q = (-e10) as u64;
            // 10^q has about 3.33 bits per digit; shift so the quotient has >= 66 bits.
            let k = (66 + q * 10 / 3 + 2).saturating_sub(digits.bit_len()) + 2;
            let mut n = digits.shl(k);
            let mut sticky = false;
            let mut left = q;
            while left > 0 {
                let step = left.min(9);
                let d = 10u32.pow(step as u32);
                if n.divrem_small(d) != 0 {
                    sticky = true;
                }
                left -= step;
            }
            round_big(&n, -(k as i64), sticky, neg)
        };
        match r {
            Some(v) if v.mant != 0 => Ok(v),
            _ => Err(ParseError::Invalid),
        }
    }

    /// The sum rounded to nearest-even; `None` on overflow to infinity.
    pub fn checked_add(self, o: LongDouble) -> Option<LongDouble> {
        if o.mant == 0 {
            return Some(if self.mant == 0 {
                LongDouble {
                    neg: self.neg && o.neg,
                    ..LongDouble::ZERO
                }
            } else {
                self
            });
        }
        if self.mant == 0 {
            return Some(o);
        }
        let (hi, lo) = if self.exp >= o.exp {
            (self, o)
        } else {
            (o, self)
        };
        let diff = (hi.exp - lo.exp) as u64;
        if diff > 140 {
            // The smaller operand is far below half an ulp of the larger one.
            return Some(hi);
        }
        let a = Big::from_u64(hi.mant).shl(diff);
        let b = Big::from_u64(lo.mant);
        let (sum, neg) = if hi.neg == lo.neg {
            (a.add(&b), hi.neg)
        } else {
            match a.cmp(&b) {
                Ordering::Greater => (a.sub(&b), hi.neg),
                Ordering::Less => (b.sub(&a), lo.neg),
                Ordering::Equal => return Some(LongDouble::ZERO),
            }
        };
        round_big(&sum, lo.exp, false, neg)
    }

    /// `%.17Lf` with trailing zeros (and a trailing dot) removed, `-0` printed as `0`:
    /// Redis's `ld2string(..., LD_STR_HUMAN)`.
    pub fn to_human(self) -> String {
        let (int_part, mut digits) = if self.exp >= 0 {
            (Big::from_u64(self.mant).shl(self.exp as u64), vec![0u8; 17])
        } else {
            let shift = (-self.exp) as u64;
            let m = Big::from_u64(self.mant);
            let int_part = m.shr(shift);
            let mut frac = m.sub(&int_part.shl(shift));
            let mut digits = Vec::with_capacity(17);
            for _ in 0..17 {
                frac.mul_small(10);
                let d = frac.shr(shift);
                digits.push(d.low_u64() as u8);
                frac = frac.sub(&d.shl(shift));
            }
            // Round the 17th decimal: exactly half goes to even.
            let half = Big::from_u64(1).shl(shift - 1);
            let up = match frac.cmp(&half) {
                Ordering::Greater => true,
                Ordering::Equal => digits.last().is_some_and(|d| d % 2 == 1),
                Ordering::Less => false,
            };
            let mut int_part = int_part;
            if up {
                let mut carry = true;
                for d in digits.iter_mut().rev() {
                    if !carry {
                        break;
                    }
                    *d += 1;
                    carry = *d == 10;
                    if carry {
                        *d = 0;
                    }
                }
                if carry {
                    int_part.add_small(1);
                }
            }
            (int_part, digits)
        };
        while digits.last() == Some(&0) {
            digits.pop();
        }
        let mut s = String::new();
        let zero = int_part.is_zero() && digits.is_empty();
        if self.neg && !zero {
            s.push('-');
        }
        s.push_str(&int_part.to_decimal());
        if !digits.is_empty() {
            s.push('.');
            s.extend(digits.iter().map(|d| (b'0' + d) as char));
        }
        s
    }
}

fn push_digit(n: &mut Big, c: u8, nd: &mut usize) {
    if !n.is_zero() || c != b'0' {
        *nd += 1;
    }
    n.mul_small(10);
    n.add_small((c - b'0') as u32);
}

/// Why INCRBYFLOAT-style addition fails.
#[derive(Debug, PartialEq, Eq)]
pub enum IncrError {
    /// An operand is not a valid float (`ERR value is not a valid float`).
    NotFloat,
    /// The sum is infinite (`ERR increment would produce NaN or Infinity`).
    NanOrInf,
}

/// Parses the stored value (None: missing, i.e. 0) and the increment, adds them as
/// Redis does in `long double`, and returns the text Redis stores and replies with.
pub fn incr_by_float(value: Option<&[u8]>, incr: &[u8]) -> Result<String, IncrError> {
    let parse = |b: &[u8]| match LongDouble::parse(b) {
        Ok(v) => Ok(Some(v)),
        Err(ParseError::Infinite) => Ok(None),
        Err(ParseError::Invalid) => Err(IncrError::NotFloat),
    };
    let v = match value {
        Some(b) => parse(b)?,
        None => Some(LongDouble::ZERO),
    };
    let i = parse(incr)?;
    match (v, i) {
        (Some(v), Some(i)) => v
            .checked_add(i)
            .map(LongDouble::to_human)
            .ok_or(IncrError::NanOrInf),
        _ => Err(IncrError::NanOrInf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(v: &str, i: &str) -> String {
        incr_by_float(Some(v.as_bytes()), i.as_bytes()).unwrap_or_else(|e| format!("{e:?}"))
    }

    #[test]
    fn matches_x87_printf() {
        assert_eq!(inc("10.5", "0.1"), "10.6");
        assert_eq!(inc("5.6", "1.5e3"), "1505.59999999999999998");
        assert_eq!(inc("0.1", "0.2"), "0.3");
        assert_eq!(inc("3", "-3"), "0");
        assert_eq!(inc("1e3", "1"), "1001");
        assert_eq!(inc("-1", "0.5"), "-0.5");
        assert_eq!(inc("1", "inf"), "NanOrInf");
        assert_eq!(inc("1", "abc"), "NotFloat");
        assert_eq!(inc(" 1", "1"), "NotFloat");
        assert_eq!(inc("1", "1e5000"), "NotFloat");
        assert_eq!(inc("5.0e3", "0"), "5000");
        assert_eq!(inc("1", "1e20"), "100000000000000000000");
        assert_eq!(inc("0", "0.00000000000000001"), "0.00000000000000001");
        assert_eq!(inc("0", "-0.000000000000000001"), "0");
    }
}
