//! Durations in the config: `"500ms"`, `"2s"`, `"5m"`, `"1h"`, `"1d"`, or `0` / `"0"`
//! (off). A bare integer is milliseconds.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A config duration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Parses `"500ms"`, `"2s"`, `"1h"`, ...
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| {
            format!("invalid duration {s:?}: expected e.g. \"500ms\", \"2s\", \"1h\"")
        })?;
        let ms = match unit.trim() {
            "" if n == 0 => 0,
            "ms" => n,
            "s" => n.saturating_mul(1000),
            "m" => n.saturating_mul(60_000),
            "h" => n.saturating_mul(3_600_000),
            "d" => n.saturating_mul(86_400_000),
            _ => {
                return Err(format!(
                    "invalid duration {s:?}: unit must be ms, s, m, h or d"
                ))
            }
        };
        Ok(HumanDuration(Duration::from_millis(ms)))
    }

    /// True for zero (feature off).
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            write!(f, "0")
        } else if ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurationVisitor)
    }
}

/// Reads a bare integer (milliseconds) or a string with a unit; a negative number is
/// refused with its own message rather than as "no variant matched".
struct DurationVisitor;

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = HumanDuration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration like \"500ms\", \"2s\", \"1h\" or milliseconds")
    }

    fn visit_u64<E: serde::de::Error>(self, ms: u64) -> Result<HumanDuration, E> {
        Ok(HumanDuration(Duration::from_millis(ms)))
    }

    fn visit_i64<E: serde::de::Error>(self, ms: i64) -> Result<HumanDuration, E> {
        u64::try_from(ms)
            .map(|ms| HumanDuration(Duration::from_millis(ms)))
            .map_err(|_| E::custom(format!("invalid duration {ms}: must not be negative")))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<HumanDuration, E> {
        HumanDuration::parse(s).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(
            HumanDuration::parse("500ms").unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(
            HumanDuration::parse("1h").unwrap().0,
            Duration::from_secs(3600)
        );
        assert_eq!(HumanDuration::parse("0").unwrap().0, Duration::ZERO);
        assert!(HumanDuration::parse("5 parsecs").is_err());
        assert!(HumanDuration::parse("ms").is_err());
        assert_eq!(HumanDuration::parse("2s").unwrap().to_string(), "2s");
        let read = |v: &str| {
            toml::from_str::<std::collections::HashMap<String, HumanDuration>>(&format!("d = {v}"))
        };
        assert_eq!(read("250").unwrap()["d"].0, Duration::from_millis(250));
        assert_eq!(read("\"3s\"").unwrap()["d"].0, Duration::from_secs(3));
        let e = read("-5").unwrap_err();
        assert!(e.message().contains("must not be negative"), "{e}");
        assert!(read("1.5").is_err());
    }
}
