//! Numbers as the report shows them: percentages, durations, counts, bytes and rates in
//! the unit that reads best, never `NaN`.

use std::time::{Duration, UNIX_EPOCH};

/// `a / b`, or 0 when `b` is 0.
pub(crate) fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// `value` with `digits` significant digits and no trailing zeros; non-finite as "—".
fn significant(value: f64, digits: i32) -> String {
    if !value.is_finite() {
        return "—".to_owned();
    }
    if value == 0.0 {
        return "0".to_owned();
    }
    let magnitude = value.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).clamp(0, 12) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A ratio as a percentage.
pub(crate) fn pct(value: f64) -> String {
    format!("{}%", significant(value * 100.0, 3))
}

/// A change of a ratio, in percentage points.
pub(crate) fn points(delta: f64) -> String {
    format!("{}{} pp", sign(delta), significant(delta * 100.0, 3))
}

/// A TTL scale factor.
pub(crate) fn scale(value: f64) -> String {
    format!("×{}", significant(value, 3))
}

/// Milliseconds in the unit that reads best.
pub(crate) fn ms(value: f64) -> String {
    let magnitude = value.abs();
    if !value.is_finite() {
        "—".to_owned()
    } else if magnitude == 0.0 {
        "0 ms".to_owned()
    } else if magnitude < 1.0 {
        format!("{} µs", significant(value * 1000.0, 3))
    } else if magnitude < 1000.0 {
        format!("{} ms", significant(value, 3))
    } else if magnitude < 60_000.0 {
        format!("{} s", significant(value / 1000.0, 3))
    } else if magnitude < 3_600_000.0 {
        format!("{} min", significant(value / 60_000.0, 3))
    } else {
        format!("{} h", significant(value / 3_600_000.0, 3))
    }
}

pub(crate) fn signed_ms(delta: f64) -> String {
    format!("{}{}", sign(delta), ms(delta))
}

/// Nanoseconds in the unit that reads best.
pub(crate) fn ns(value: f64) -> String {
    if value.is_finite() && value.abs() >= 1000.0 {
        ms(value / 1_000_000.0)
    } else {
        format!("{} ns", significant(value, 3))
    }
}

pub(crate) fn signed_ns(delta: f64) -> String {
    format!("{}{}", sign(delta), ns(delta))
}

pub(crate) fn sign(value: f64) -> &'static str {
    if value > 0.0 { "+" } else { "" }
}

/// An integer with thousands separators.
pub(crate) fn count(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A byte count in binary units.
pub(crate) fn bytes(value: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = if value.is_finite() { value } else { 0.0 };
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{} {}", significant(value, 3), UNITS[unit])
}

/// Events per second.
pub(crate) fn rate(value: f64) -> String {
    if !value.is_finite() || value <= 0.0 {
        "—".to_owned()
    } else if value >= 1_000_000.0 {
        format!("{} M/s", significant(value / 1_000_000.0, 3))
    } else if value >= 1000.0 {
        format!("{} k/s", significant(value / 1000.0, 3))
    } else {
        format!("{}/s", significant(value, 3))
    }
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn timestamp(seconds: u64) -> String {
    // humantime cannot write years after 9999 (its formatter errors, which `to_string`
    // turns into a panic), and a baseline file can carry any number.
    const YEAR_10000: u64 = 253_402_300_800;
    match UNIX_EPOCH.checked_add(Duration::from_secs(seconds)) {
        Some(time) if seconds < YEAR_10000 => humantime::format_rfc3339_seconds(time)
            .to_string()
            .replacen('T', " ", 1)
            .replace('Z', " UTC"),
        _ => format!("{seconds} s after the Unix epoch"),
    }
}

/// The items joined by commas, or "none".
pub(crate) fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}
