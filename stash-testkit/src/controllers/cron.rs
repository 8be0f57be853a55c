//! CronJob schedules: stash-core's parser (Kubernetes' five fields and `@hourly`-style
//! descriptors), evaluated in UTC or in the CronJob's `spec.timeZone`.

use jiff::Timestamp;

/// A parsed schedule and the zone it runs in.
#[derive(Debug, Clone)]
pub struct Schedule {
    tz: Option<jiff::tz::TimeZone>,
    fields: stash_core::cron::Schedule,
}

impl Schedule {
    /// Parses a standard cron expression.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let fields = stash_core::cron::Schedule::parse(expr).map_err(|e| match e {
            stash_core::cron::CronError::TimeZone => {
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead".to_owned()
            }
            other => other.to_string(),
        })?;
        Ok(Self { tz: None, fields })
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
        let field = |v: i8| u32::try_from(v).unwrap_or(u32::MAX);
        self.fields.matches(
            field(dt.month()),
            field(dt.day()),
            field(dt.hour()),
            field(dt.minute()),
            field(dt.weekday().to_sunday_zero_offset()),
        )
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
