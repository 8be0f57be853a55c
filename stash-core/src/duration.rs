//! Go-style durations (`2h`, `1h30m`, `5m0s`) and Stash's size and time formats.

use std::time::Duration;
use thiserror::Error;

/// A duration string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid duration {input:?}: {why}")]
pub struct DurationError {
    /// The text given.
    pub input: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Parses a Go duration (`time.ParseDuration` units ns, us, ms, s, m, h) into whole milliseconds.
/// Negative durations are rejected: no Stash field accepts them.
pub fn parse_go_duration_millis(input: &str) -> Result<u64, DurationError> {
    let err = |why| DurationError {
        input: input.to_string(),
        why,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if s == "0" {
        return Ok(0);
    }
    if s.starts_with('-') {
        return Err(err("negative"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total_nanos: u128 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        if start == i {
            return Err(err("expected a number"));
        }
        let number: f64 = s[start..i].parse().map_err(|_| err("bad number"))?;
        let unit_start = i;
        while i < bytes.len() && !(bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let nanos_per_unit: f64 = match &s[unit_start..i] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        let add = number * nanos_per_unit;
        if !add.is_finite() || add > 1e21 {
            return Err(err("too large"));
        }
        total_nanos += add as u128;
    }
    u64::try_from(total_nanos / 1_000_000).map_err(|_| err("too large"))
}

/// Formats whole seconds like Go's `time.Duration.String()` (`0s`, `22s`, `1m5s`, `1h0m0s`).
pub fn format_go_duration_secs(secs: u64) -> String {
    format_go_duration(Duration::from_secs(secs))
}

/// Go's `time.Duration.String()` for non-negative durations (`0s`, `1.5ms`, `5.123s`,
/// `1m5s`, `1h0m0s`).
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos, 1_000_000));
    }
    let total_secs = d.as_secs();
    let (h, m) = (total_secs / 3600, total_secs % 3600 / 60);
    let secs = trim_fraction(nanos % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

/// `value / unit` with its decimal fraction, trailing zeros dropped (`5.123`, `2`).
fn trim_fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Formats a byte count the way Stash does (`6.815 MiB`, `512 B`).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (size, unit) in UNITS {
        if bytes > size {
            return format!("{:.3} {unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes} B")
}

/// Formats seconds as Stash's processing time: `h:mm:ss` from one hour, else `m:ss`.
pub fn format_processing_time(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("2h", 7_200_000)]
    #[case("5m", 300_000)]
    #[case("1h30m", 5_400_000)]
    #[case("1.5h", 5_400_000)]
    #[case("300ms", 300)]
    #[case("0", 0)]
    #[case("1h0m0s", 3_600_000)]
    fn parses_go_durations(#[case] input: &str, #[case] millis: u64) {
        assert_eq!(parse_go_duration_millis(input), Ok(millis));
    }

    #[rstest]
    #[case("")]
    #[case("5")]
    #[case("-5m")]
    #[case("5x")]
    #[case("h")]
    #[case("99999999999999999999h")]
    fn rejects_bad_durations(#[case] input: &str) {
        assert!(parse_go_duration_millis(input).is_err());
    }

    #[rstest]
    #[case(0, "0s")]
    #[case(22, "22s")]
    #[case(65, "1m5s")]
    #[case(3600, "1h0m0s")]
    fn formats_go_durations(#[case] secs: u64, #[case] text: &str) {
        assert_eq!(format_go_duration_secs(secs), text);
    }

    #[rstest]
    #[case(Duration::from_millis(5123), "5.123s")]
    #[case(Duration::from_micros(1500), "1.5ms")]
    #[case(Duration::from_nanos(7), "7ns")]
    #[case(Duration::from_nanos(2500), "2.5µs")]
    #[case(Duration::from_millis(3_723_500), "1h2m3.5s")]
    fn formats_sub_second_go_durations(#[case] d: Duration, #[case] text: &str) {
        assert_eq!(format_go_duration(d), text);
    }

    #[rstest]
    #[case(512, "512 B")]
    #[case(1024, "1024 B")]
    #[case(3_573_547, "3.408 MiB")]
    #[case(5 << 30, "5.000 GiB")]
    fn formats_bytes_like_stash(#[case] bytes: u64, #[case] text: &str) {
        assert_eq!(format_bytes(bytes), text);
    }

    #[test]
    fn formats_processing_time() {
        assert_eq!(format_processing_time(2), "0:02");
        assert_eq!(format_processing_time(3725), "1:02:05");
    }
}
