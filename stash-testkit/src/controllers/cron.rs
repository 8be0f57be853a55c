//! Standard five-field cron schedules (with `@hourly`-style descriptors), evaluated in UTC.
//!
//! Day-of-month and day-of-week follow Vixie cron: when both are restricted, either may match.

use jiff::Timestamp;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    tz: Option<jiff::tz::TimeZone>,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_star: bool,
    weekdays_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(s: &str, names: &[&str], base: u32) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(u32::try_from(i).unwrap_or(0) + base);
    }
    s.parse::<u32>()
        .map_err(|_| format!("failed to parse int from {s}"))
}

fn field(spec: &str, min: u32, max: u32, names: &[&str], base: u32) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in spec.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .map_err(|_| format!("failed to parse int from {s}"))?,
            ),
            None => (part, 1),
        };
        if step == 0 {
            return Err(format!("step of range should be a positive number: {part}"));
        }
        let (lo, hi) = if range == "*" || range == "?" {
            star = step == 1 && spec.split(',').count() == 1;
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, names, base)?, value(b, names, base)?)
        } else {
            let v = value(range, names, base)?;
            (v, if part.contains('/') { max } else { v })
        };
        let hi = if max == 6 && hi == 7 { 6 } else { hi };
        let lo = if max == 6 && lo == 7 { 0 } else { lo };
        if lo < min || hi > max || lo > hi {
            return Err(format!("end of range ({hi}) above maximum ({max}): {part}"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            match v.checked_add(step) {
                Some(next) => v = next,
                None => break,
            }
        }
    }
    Ok((bits, star))
}

impl Schedule {
    /// Parses a standard cron expression.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let expr = expr.trim();
        if expr.starts_with("TZ=") || expr.starts_with("CRON_TZ=") {
            return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
        }
        let expanded = match expr {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {expr}",
                parts.len()
            ));
        }
        let (minutes, _) = field(parts[0], 0, 59, &[], 0)?;
        let (hours, _) = field(parts[1], 0, 23, &[], 0)?;
        let (days, days_star) = field(parts[2], 1, 31, &[], 0)?;
        let (months, _) = field(parts[3], 1, 12, &MONTHS, 1)?;
        let (weekdays, weekdays_star) = field(parts[4], 0, 6, &WEEKDAYS, 0)?;
        Ok(Self {
            tz: None,
            minutes,
            hours: u32::try_from(hours).unwrap_or(0),
            days: u32::try_from(days).unwrap_or(0),
            months: u16::try_from(months).unwrap_or(0),
            weekdays: u8::try_from(weekdays).unwrap_or(0),
            days_star,
            weekdays_star,
        })
    }

    /// Evaluates the schedule in the IANA time zone `name` (`spec.timeZone`) instead of UTC.
    pub fn in_time_zone(mut self, name: &str) -> Result<Self, String> {
        let tz = jiff::tz::TimeZone::get(name).map_err(|_| format!("unknown time zone {name}"))?;
        self.tz = Some(tz);
        Ok(self)
    }

    /// RFC 3339 in the schedule's zone (`Z` for UTC), as the scheduled-timestamp annotation.
    pub fn format(&self, t: Timestamp) -> String {
        match &self.tz {
            Some(tz) if tz.to_offset(t) != jiff::tz::Offset::UTC => t
                .to_zoned(tz.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string(),
            _ => crate::clock::format_time(t),
        }
    }

    /// Whether the minute starting at `t` is scheduled (in the schedule's zone).
    pub fn matches(&self, t: Timestamp) -> bool {
        let dt = match &self.tz {
            Some(tz) => tz.to_datetime(t),
            None => jiff::tz::Offset::UTC.to_datetime(t),
        };
        let bit = |mask: u64, v: i8| v >= 0 && mask & (1u64 << v) != 0;
        if !bit(self.minutes, dt.minute())
            || !bit(u64::from(self.hours), dt.hour())
            || !bit(u64::from(self.months), dt.month())
        {
            return false;
        }
        let dom = bit(u64::from(self.days), dt.day());
        let dow = bit(
            u64::from(self.weekdays),
            dt.weekday().to_sunday_zero_offset(),
        );
        if self.days_star || self.weekdays_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The scheduled times in `(after, until]`: the most recent one and how many there were.
    /// Scans at most about a year of minutes.
    pub fn most_recent(&self, after: Timestamp, until: Timestamp) -> (Option<Timestamp>, usize) {
        let mut t = (after.as_second().div_euclid(60) + 1) * 60;
        let end = until.as_second();
        let mut last = None;
        let mut count = 0;
        let mut steps = 0;
        while t <= end && steps < 600_000 {
            if let Ok(ts) = Timestamp::from_second(t) {
                if self.matches(ts) {
                    last = Some(ts);
                    count += 1;
                }
            }
            t += 60;
            steps += 1;
        }
        (last, count)
    }

    /// The first scheduled time strictly after `t`, within about a year.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let mut s = (t.as_second().div_euclid(60) + 1) * 60;
        for _ in 0..600_000 {
            let ts = Timestamp::from_second(s).ok()?;
            if self.matches(ts) {
                return Some(ts);
            }
            s += 60;
        }
        None
    }
}

/// The schedule of a CronJob spec: `spec.schedule` in `spec.timeZone` (UTC when unset).
pub fn of_cronjob(spec: &serde_json::Value) -> Result<Schedule, String> {
    let schedule = Schedule::parse(spec["schedule"].as_str().unwrap_or_default())?;
    match spec["timeZone"].as_str() {
        Some(tz) => schedule.in_time_zone(tz),
        None => Ok(schedule),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn every_five_minutes() {
        let s = Schedule::parse("*/5 * * * *").unwrap();
        assert!(s.matches(ts("2026-01-01T10:05:00Z")));
        assert!(!s.matches(ts("2026-01-01T10:06:00Z")));
        let (last, n) = s.most_recent(ts("2026-01-01T10:00:00Z"), ts("2026-01-01T10:17:30Z"));
        assert_eq!(last, Some(ts("2026-01-01T10:15:00Z")));
        assert_eq!(n, 3);
        assert_eq!(
            s.next_after(ts("2026-01-01T10:15:00Z")),
            Some(ts("2026-01-01T10:20:00Z"))
        );
    }

    #[test]
    fn vixie_day_semantics_and_names() {
        // 2026-01-05 is a Monday.
        let s = Schedule::parse("0 0 1 * mon").unwrap();
        assert!(s.matches(ts("2026-01-05T00:00:00Z")));
        assert!(s.matches(ts("2026-02-01T00:00:00Z")));
        assert!(!s.matches(ts("2026-01-06T00:00:00Z")));
        assert!(Schedule::parse("@daily")
            .unwrap()
            .matches(ts("2026-03-03T00:00:00Z")));
        assert!(Schedule::parse("0 0 * jan-mar 1-5").is_ok());
        assert!(Schedule::parse("TZ=UTC 0 0 * * *").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("* * *").is_err());
    }

    #[test]
    fn time_zones_shift_the_schedule() {
        let Ok(s) = Schedule::parse("0 9 * * *")
            .unwrap()
            .in_time_zone("Asia/Tokyo")
        else {
            eprintln!("no time zone database here; skipping");
            return;
        };
        // 09:00 in Tokyo is 00:00 UTC.
        assert!(s.matches(ts("2026-01-01T00:00:00Z")));
        assert!(!s.matches(ts("2026-01-01T09:00:00Z")));
        assert_eq!(
            s.format(ts("2026-01-01T00:00:00Z")),
            "2026-01-01T09:00:00+09:00"
        );
        assert!(Schedule::parse("* * * * *")
            .unwrap()
            .in_time_zone("Nowhere/Special")
            .is_err());
    }
}
