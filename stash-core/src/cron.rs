//! Five-field cron schedules as the Kubernetes CronJob controller accepts them
//! (`robfig/cron` standard parser: ranges, steps, lists, month and weekday names, `?`,
//! and the `@yearly` … `@hourly` descriptors), with the next fire time after an instant.

use thiserror::Error;

/// Why a schedule is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CronError {
    /// Not five fields.
    #[error("expected 5 fields (minute hour day-of-month month day-of-week), found {0}")]
    FieldCount(usize),
    /// A field does not parse.
    #[error("{field} field {text:?}: {why}")]
    Field {
        /// Field name.
        field: &'static str,
        /// The field's text.
        text: String,
        /// What is wrong.
        why: String,
    },
    /// A descriptor the Kubernetes controller does not accept.
    #[error("unsupported descriptor {0:?}")]
    Descriptor(String),
    /// A time zone prefix (Kubernetes rejects `TZ=` / `CRON_TZ=` in `schedule`).
    #[error("time zones are not allowed in the schedule")]
    TimeZone,
}

/// A parsed schedule: the allowed values of each field as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    dom_star: bool,
    dow_star: bool,
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl Schedule {
    /// Parses a schedule string.
    pub fn parse(text: &str) -> Result<Schedule, CronError> {
        let text = text.trim();
        if text.starts_with("TZ=") || text.starts_with("CRON_TZ=") {
            return Err(CronError::TimeZone);
        }
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => return Err(CronError::Descriptor(other.into())),
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError::FieldCount(fields.len()));
        }
        let dom_star = has_star(fields[2]);
        let dow_star = has_star(fields[4]);
        let mut days_of_week = parse_field(fields[4], &DOW, true)?;
        // 7 is Sunday too.
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week & !(1 << 7)) | 1;
        }
        Ok(Schedule {
            minutes: parse_field(fields[0], &MINUTE, false)?,
            hours: parse_field(fields[1], &HOUR, false)?,
            days_of_month: parse_field(fields[2], &DOM, false)?,
            months: parse_field(fields[3], &MONTH, false)?,
            days_of_week,
            dom_star,
            dow_star,
        })
    }

    /// The first fire time strictly after `after_unix` (seconds), searching up to five years.
    pub fn next_after(&self, after_unix: i64) -> Option<i64> {
        let mut t = (after_unix.div_euclid(60) + 1) * 60;
        let limit = after_unix + 5 * 366 * 86_400;
        while t <= limit {
            let (year, month, day, hour, minute, weekday) = civil_from_unix(t);
            if self.months & (1 << month) == 0 {
                // Jump to the first minute of the next month.
                let (ny, nm) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                t = unix_from_civil(ny, nm, 1);
                continue;
            }
            if !self.day_matches(day, weekday) {
                t = unix_from_civil(year, month, day) + 86_400;
                continue;
            }
            if self.hours & (1 << hour) == 0 {
                t = (t.div_euclid(3600) + 1) * 3600;
                continue;
            }
            if self.minutes & (1 << minute) == 0 {
                t += 60;
                continue;
            }
            return Some(t);
        }
        None
    }

    /// Whether the minute at this wall-clock time is scheduled (month 1-12, day 1-31,
    /// weekday with Sunday = 0), for callers that convert instants in their own time zone.
    pub fn matches(&self, month: u32, day: u32, hour: u32, minute: u32, weekday: u32) -> bool {
        bit(self.months, month)
            && bit(self.hours, hour)
            && bit(self.minutes, minute)
            && self.day_matches(day, weekday)
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let dom = bit(self.days_of_month, day);
        let dow = bit(self.days_of_week, weekday);
        // Vixie cron: when both fields are restricted, either may match.
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

fn bit(mask: u64, v: u32) -> bool {
    v < 64 && mask & (1 << v) != 0
}

/// robfig/cron's star bit: a field is unrestricted when one of its parts ranges over `*` or
/// `?`, with or without a step (`*/2` too).
fn has_star(field: &str) -> bool {
    field
        .split(',')
        .any(|part| matches!(part.split('/').next(), Some("*" | "?")))
}

fn parse_field(text: &str, spec: &FieldSpec, allow_seven: bool) -> Result<u64, CronError> {
    let fail = |why: String| CronError::Field {
        field: spec.name,
        text: text.to_string(),
        why,
    };
    let max = if allow_seven { 7 } else { spec.max };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| fail(format!("bad step {s:?}")))?;
                if step == 0 {
                    return Err(fail("step must be positive".into()));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(a, spec, max).map_err(&fail)?,
                value(b, spec, max).map_err(&fail)?,
            )
        } else {
            let v = value(range, spec, max).map_err(&fail)?;
            // `5/10` means 5 through the maximum in steps of 10.
            (v, if part.contains('/') { spec.max } else { v })
        };
        if lo > hi {
            return Err(fail(format!("range start {lo} is after its end {hi}")));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    if bits == 0 {
        return Err(fail("matches nothing".into()));
    }
    Ok(bits)
}

fn value(text: &str, spec: &FieldSpec, max: u32) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = spec.names.iter().position(|n| *n == lower) {
        return Ok(spec.min + i as u32);
    }
    let v: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if v < spec.min || v > max {
        return Err(format!("{v} is outside {}-{}", spec.min, spec.max));
    }
    Ok(v)
}

/// Converts unix seconds (UTC) to (year, month, day, hour, minute, weekday with Sunday = 0).
fn civil_from_unix(t: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = (days + 4).rem_euclid(7) as u32;
    (
        year,
        month,
        day,
        (secs / 3600) as u32,
        ((secs % 3600) / 60) as u32,
        weekday,
    )
}

/// Unix seconds of midnight UTC on the given date.
fn unix_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * 86_400
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    // 2026-11-27T15:00:00Z, a Friday.
    const FRI_1500: i64 = 1_795_791_600;

    #[test]
    fn civil_round_trip() {
        assert_eq!(civil_from_unix(FRI_1500), (2026, 11, 27, 15, 0, 5));
        assert_eq!(unix_from_civil(2026, 11, 27) + 15 * 3600, FRI_1500);
        assert_eq!(civil_from_unix(0), (1970, 1, 1, 0, 0, 4));
    }

    #[rstest]
    #[case("*/5 * * * *", FRI_1500, FRI_1500 + 300)]
    #[case("*/5 * * * *", FRI_1500 + 1, FRI_1500 + 300)]
    #[case("0 * * * *", FRI_1500, FRI_1500 + 3600)]
    #[case("@daily", FRI_1500, FRI_1500 + 9 * 3600)]
    #[case("30 2 * * sun", FRI_1500, FRI_1500 + 35 * 3600 + 30 * 60)]
    #[case("0 0 1 jan *", FRI_1500, unix_from_civil(2027, 1, 1))]
    #[case("0 0 29 2 *", FRI_1500, unix_from_civil(2028, 2, 29))]
    #[case("0 0 13 * 5", FRI_1500, unix_from_civil(2026, 12, 4))]
    #[case("15-17/2 3 * * 7", FRI_1500, FRI_1500 + 36 * 3600 + 15 * 60)]
    // `*/2` is a star for the day rule (robfig): odd days that are Mondays, not either.
    #[case("0 0 */2 * mon", FRI_1500, unix_from_civil(2026, 12, 7))]
    fn next_fire_time(#[case] schedule: &str, #[case] after: i64, #[case] expected: i64) {
        let s = Schedule::parse(schedule).expect("valid schedule");
        assert_eq!(s.next_after(after), Some(expected), "{schedule}");
    }

    #[rstest]
    #[case("")]
    #[case("* * * *")]
    #[case("60 * * * *")]
    #[case("* 24 * * *")]
    #[case("* * 0 * *")]
    #[case("* * * 13 *")]
    #[case("*/0 * * * *")]
    #[case("5-1 * * * *")]
    #[case("@every 5m")]
    #[case("TZ=UTC * * * * *")]
    #[case("a * * * *")]
    fn rejects_invalid(#[case] schedule: &str) {
        assert!(
            Schedule::parse(schedule).is_err(),
            "{schedule:?} should be rejected"
        );
    }

    #[test]
    fn impossible_date_has_no_next() {
        let s = Schedule::parse("0 0 31 2 *").expect("parses");
        assert_eq!(s.next_after(FRI_1500), None);
    }
}
