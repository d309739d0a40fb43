//! The one duration grammar and the one size grammar of the bridge: the config files, the
//! plugin SDK, every command-line flag, the demo server, the benches and the lab's workload
//! presets all read durations and sizes here, so `5`, `"5"` and `"5s"` mean the same
//! everywhere.
//!
//! **Durations.** A string is either a bare number of seconds (`"30"`, `"0.5"`) or
//! humantime's form: one or more `<number><unit>` terms, spaces allowed between them
//! (`"250ms"`, `"30s"`, `"5m"`, `"1h 30m"`, `"2days"`); units are `ns`, `us`, `ms`,
//! `s`/`sec`, `m`/`min`, `h`/`hr`, `d`/`day`, `w`/`week`, `M`/`month`, `y`/`year` and
//! their longer spellings. A number in a file (TOML or JSON) is seconds too, fractions
//! allowed (`30`, `0.25`); negative, infinite and not-a-number values are refused. A bare
//! number means seconds because the seed's Python settings wrote durations that way, and
//! the config files have accepted it since.
//!
//! **Sizes.** A whole number of bytes, optionally followed by a unit (`"4MiB"`,
//! `"512 KiB"`, `"1GB"`): binary units (`KiB`, `MiB`, `GiB`) are powers of 1024, decimal
//! units (`KB`, `MB`, `GB`) powers of 1000, units match without regard to case.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Visitor};

/// Reads back a number that serde_json handed to a `deserialize_any` visitor as a map.
/// The bridge enables serde_json's `arbitrary_precision` (so JSON-RPC ids and arguments
/// pass through exactly as written), and with it serde_json gives a float, or an integer
/// beyond 64 bits, to `deserialize_any` as a one-entry map holding the number's text.
/// `None` when the map is a real one (TOML never disguises numbers).
pub fn number_in_map<'de, A: de::MapAccess<'de>>(map: A) -> Option<serde_json::Number> {
    serde_json::Number::deserialize(de::value::MapAccessDeserializer::new(map)).ok()
}

/// A `deserialize_any` visitor's `visit_map` for values that may be numbers: a disguised
/// number goes to the visitor's number methods, a real map is the wrong type.
fn visit_number_map<'de, V: Visitor<'de>, A: de::MapAccess<'de>>(
    visitor: V,
    map: A,
) -> Result<V::Value, A::Error> {
    let Some(number) = number_in_map(map) else {
        return Err(de::Error::invalid_type(de::Unexpected::Map, &visitor));
    };
    if let Some(unsigned) = number.as_u64() {
        return visitor.visit_u64(unsigned);
    }
    if let Some(signed) = number.as_i64() {
        return visitor.visit_i64(signed);
    }
    match number.as_f64() {
        Some(float) => visitor.visit_f64(float),
        None => Err(de::Error::invalid_value(
            de::Unexpected::Other("number out of range"),
            &visitor,
        )),
    }
}

/// Parses a duration written as a string: humantime form ("30s", "5m", "250ms", "1h 30m") or a
/// bare number of seconds ("30", "0.5"), which the seed's Python settings used.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("a duration cannot be empty".to_owned());
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let seconds: f64 = trimmed
            .parse()
            .map_err(|_| format!("invalid duration `{trimmed}`"))?;
        return seconds_to_duration(seconds);
    }
    humantime::parse_duration(trimmed).map_err(|e| format!("invalid duration `{trimmed}`: {e}"))
}

/// Converts a number of seconds, refusing negative, infinite and not-a-number values.
fn seconds_to_duration(seconds: f64) -> Result<Duration, String> {
    if seconds < 0.0 {
        return Err(format!("a duration cannot be negative (got {seconds})"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{seconds} is not a usable duration"))
}

/// Parses a byte size written as a string: a whole number with an optional unit.
///
/// Binary units (`KiB`, `MiB`, `GiB`) are powers of 1024 and decimal units (`KB`, `MB`, `GB`)
/// powers of 1000, as their names say; units are matched without regard to case, and a space
/// between number and unit is allowed.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "invalid size `{trimmed}`: it must start with a whole number"
        ));
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "invalid size `{trimmed}`: unknown unit `{}`",
                unit.trim()
            ));
        }
    };
    let too_big = || format!("size `{trimmed}` is too large");
    let number: u64 = digits.parse().map_err(|_| too_big())?;
    let bytes = number.checked_mul(multiplier).ok_or_else(too_big)?;
    usize::try_from(bytes).map_err(|_| too_big())
}

/// A duration as written in a config file (the bridge's or a plugin's): a string
/// [`parse_duration`] reads, or a number of seconds. Range checks are the reader's.
///
/// ```
/// # use mcp_bridge_policy::units::ConfigDuration;
/// # use std::time::Duration;
/// let ttl: ConfigDuration = serde_json::from_str(r#""5m""#).unwrap();
/// assert_eq!(ttl.0, Duration::from_secs(300));
/// let ttl: ConfigDuration = serde_json::from_str("30").unwrap();
/// assert_eq!(Duration::from(ttl), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigDuration(pub Duration);

impl From<Duration> for ConfigDuration {
    fn from(duration: Duration) -> ConfigDuration {
        ConfigDuration(duration)
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(DurationVisitor)
            .map(ConfigDuration)
    }
}

impl From<ConfigDuration> for Duration {
    fn from(raw: ConfigDuration) -> Self {
        raw.0
    }
}

struct DurationVisitor;

impl<'de> Visitor<'de> for DurationVisitor {
    type Value = Duration;

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Duration, A::Error> {
        visit_number_map(self, map)
    }

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"30s\", \"5m\", \"250ms\" or a number of seconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(format!("a duration cannot be negative (got {v})")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        seconds_to_duration(v).map_err(E::custom)
    }
}

/// A TTL as written in a config file: a duration, or `"none"` (any case) for no expiry.
/// Range checks are the reader's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigTtl(pub Option<Duration>);

impl<'de> Deserialize<'de> for ConfigTtl {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TtlVisitor).map(ConfigTtl)
    }
}

struct TtlVisitor;

impl<'de> Visitor<'de> for TtlVisitor {
    type Value = Option<Duration>;

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Option<Duration>, A::Error> {
        visit_number_map(self, map)
    }

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"60s\" or \"5m\", a number of seconds, or \"none\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<Duration>, E> {
        if v.trim().eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        Visitor::visit_str(DurationVisitor, v).map(Some)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<Duration>, E> {
        DurationVisitor.visit_u64(v).map(Some)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<Duration>, E> {
        DurationVisitor.visit_i64(v).map(Some)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<Duration>, E> {
        DurationVisitor.visit_f64(v).map(Some)
    }
}

/// A byte size as written in a config file: a number of bytes or a string [`parse_size`]
/// reads. Range checks are the reader's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigSize(pub usize);

impl<'de> Deserialize<'de> for ConfigSize {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SizeVisitor).map(ConfigSize)
    }
}

struct SizeVisitor;

impl<'de> Visitor<'de> for SizeVisitor {
    type Value = usize;

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<usize, A::Error> {
        visit_number_map(self, map)
    }

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size in bytes, or a string such as \"512KiB\", \"4MiB\" or \"1GB\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        parse_size(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
        usize::try_from(v).map_err(|_| E::custom(format!("size {v} is too large")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
        usize::try_from(v).map_err(|_| E::custom(format!("a size cannot be negative (got {v})")))
    }
}

/// Formats a byte count the way a person would write it in the configuration file.
pub fn format_size(bytes: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} B")
}

/// Formats a duration in humantime form, which `parse_duration` reads back.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_strings() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 45 "), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("1.2.3").is_err());
        assert!(parse_duration("-1").is_err());
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1s 500ms"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn duration_numbers() {
        #[derive(Deserialize)]
        struct T {
            d: ConfigDuration,
        }
        let d = |text: &str| toml::from_str::<T>(text).map(|t| t.d.0);
        assert_eq!(d("d = 30").ok(), Some(Duration::from_secs(30)));
        assert_eq!(d("d = 30.0").ok(), Some(Duration::from_secs(30)));
        assert_eq!(d("d = 0.25").ok(), Some(Duration::from_millis(250)));
        assert_eq!(d("d = \"2m\"").ok(), Some(Duration::from_secs(120)));
        assert!(d("d = -1").is_err());
        assert!(d("d = -1.5").is_err());
        assert!(d("d = nan").is_err());
        assert!(d("d = inf").is_err());
        assert!(d("d = true").is_err());
        let json = |text: &str| serde_json::from_str::<ConfigDuration>(text).map(|d| d.0);
        assert_eq!(json("12").ok(), Some(Duration::from_secs(12)));
        assert_eq!(json("1.5").ok(), Some(Duration::from_millis(1500)));
        assert_eq!(json("2.5e1").ok(), Some(Duration::from_secs(25)));
        assert_eq!(json("\"1s\"").ok(), Some(Duration::from_secs(1)));
        assert!(json("-1.5").is_err());
        assert!(json("100000000000000000000000").is_err());
        let table = json("{\"a\": 1}").err().map(|e| e.to_string());
        assert!(
            table
                .as_deref()
                .is_some_and(|e| e.contains("expected a duration")),
            "{table:?}"
        );
    }

    /// JSON configuration files (`mcpServers`) give floats to the same visitors through
    /// serde_json's `arbitrary_precision` form.
    #[test]
    fn json_floats_reach_every_number_visitor() {
        let ttl = |text: &str| serde_json::from_str::<ConfigTtl>(text).map(|t| t.0);
        assert_eq!(ttl("0.5").ok(), Some(Some(Duration::from_millis(500))));
        assert_eq!(ttl("\"none\"").ok(), Some(None));
        let size = |text: &str| serde_json::from_str::<ConfigSize>(text).map(|s| s.0);
        assert_eq!(size("1024").ok(), Some(1024));
        let float = size("1.5").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(float.contains("floating point"), "{float}");
    }

    #[test]
    fn ttl_values() {
        #[derive(Deserialize)]
        struct T {
            t: ConfigTtl,
        }
        let t = |text: &str| toml::from_str::<T>(text).map(|t| t.t.0);
        assert_eq!(t("t = \"none\"").ok(), Some(None));
        assert_eq!(t("t = \" None \"").ok(), Some(None));
        assert_eq!(t("t = \"60s\"").ok(), Some(Some(Duration::from_secs(60))));
        assert_eq!(t("t = 0").ok(), Some(Some(Duration::ZERO)));
        assert_eq!(t("t = 1.5").ok(), Some(Some(Duration::from_millis(1500))));
        assert!(t("t = \"never\"").is_err());
        assert!(t("t = -1").is_err());
        assert!(t("t = false").is_err());
    }

    #[test]
    fn size_strings() {
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("3KB"), Ok(3_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("100B"), Ok(100));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("16 mib"), Ok(16 << 20));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("4 MiBs").is_err());
        assert!(parse_size("1.5MiB").is_err());
        assert!(parse_size("-4MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn size_numbers() {
        #[derive(Deserialize)]
        struct T {
            s: ConfigSize,
        }
        let s = |text: &str| toml::from_str::<T>(text).map(|t| t.s.0);
        assert_eq!(s("s = 1024").ok(), Some(1024));
        assert_eq!(s("s = \"1KiB\"").ok(), Some(1024));
        assert!(s("s = -1").is_err());
        assert!(s("s = 1.5").is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(4 << 20), "4 MiB");
        assert_eq!(format_size(1536), "1536 B");
        assert_eq!(format_size(100), "100 B");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m 30s");
    }
}
