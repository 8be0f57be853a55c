//! Retention: which snapshots `restic forget` keeps under a policy, with restic's semantics
//! (restic 0.13/0.14, the versions Stash ships): snapshots are grouped by host and paths, each
//! group sorted newest first; a snapshot is kept when it carries one of the keep-tag lists, or
//! when it opens a new bucket (last: every snapshot; hourly/daily/weekly/monthly/yearly: its
//! calendar bucket in UTC) of a keep rule that still has a count left. An empty policy keeps all.

use crate::api::RetentionPolicy;
use std::collections::BTreeMap;

/// A snapshot as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotInfo {
    /// Snapshot id.
    pub id: String,
    /// Creation time, unix seconds (UTC).
    pub time: i64,
    /// The sub-second part of the creation time, in nanoseconds: it orders two snapshots taken
    /// within the same second, as restic's full-precision times do.
    pub nanos: u32,
    /// Host name.
    pub host: String,
    /// Paths backed up.
    pub paths: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
}

/// A kept snapshot and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// Snapshot id.
    pub id: String,
    /// restic's reasons: `last snapshot`, `daily snapshot`, `has tags [a b]`, ...
    pub reasons: Vec<String>,
}

/// The outcome of applying a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    /// Snapshots kept, newest first within each group, groups in key order.
    pub keep: Vec<Kept>,
    /// Ids of snapshots to forget, in the same order.
    pub forget: Vec<String>,
}

/// True when `policy` has no keep rule (no positive count, no tag list): it keeps every
/// snapshot. restic refuses such a policy; we read it as "forget nothing".
pub fn keeps_everything(policy: &RetentionPolicy) -> bool {
    let counts = [
        policy.keep_last,
        policy.keep_hourly,
        policy.keep_daily,
        policy.keep_weekly,
        policy.keep_monthly,
        policy.keep_yearly,
    ];
    counts.iter().all(|c| c.unwrap_or(0) <= 0) && tag_lists(policy).is_empty()
}

fn tag_lists(policy: &RetentionPolicy) -> Vec<Vec<String>> {
    policy
        .keep_tags
        .iter()
        .flatten()
        .map(|l| {
            l.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.is_empty())
        .collect()
}

/// Applies `policy` to `snapshots`.
pub fn select(snapshots: &[SnapshotInfo], policy: &RetentionPolicy) -> RetentionPlan {
    let mut groups: BTreeMap<(String, Vec<String>), Vec<&SnapshotInfo>> = BTreeMap::new();
    for s in snapshots {
        let mut paths = s.paths.clone();
        paths.sort();
        groups.entry((s.host.clone(), paths)).or_default().push(s);
    }
    let mut plan = RetentionPlan::default();
    for (_, mut group) in groups {
        group.sort_by(|a, b| {
            (b.time, b.nanos)
                .cmp(&(a.time, a.nanos))
                .then_with(|| a.id.cmp(&b.id))
        });
        apply_to_group(&group, policy, &mut plan);
    }
    plan
}

type Bucketer = fn(i64, usize) -> i64;

fn apply_to_group(group: &[&SnapshotInfo], policy: &RetentionPolicy, plan: &mut RetentionPlan) {
    let count = |v: Option<i64>| v.unwrap_or(0).max(0);
    let tag_lists = tag_lists(policy);
    let mut buckets: [(i64, Bucketer, Option<i64>, &str); 6] = [
        (
            count(policy.keep_last),
            |_, nr| nr as i64,
            None,
            "last snapshot",
        ),
        (
            count(policy.keep_hourly),
            |t, _| hour_bucket(t),
            None,
            "hourly snapshot",
        ),
        (
            count(policy.keep_daily),
            |t, _| day_bucket(t),
            None,
            "daily snapshot",
        ),
        (
            count(policy.keep_weekly),
            |t, _| week_bucket(t),
            None,
            "weekly snapshot",
        ),
        (
            count(policy.keep_monthly),
            |t, _| day_bucket(t) / 100,
            None,
            "monthly snapshot",
        ),
        (
            count(policy.keep_yearly),
            |t, _| day_bucket(t) / 10_000,
            None,
            "yearly snapshot",
        ),
    ];
    let empty = keeps_everything(policy);
    for (nr, snap) in group.iter().enumerate() {
        if empty {
            plan.keep.push(Kept {
                id: snap.id.clone(),
                reasons: vec!["policy is empty".into()],
            });
            continue;
        }
        let mut reasons = Vec::new();
        for list in &tag_lists {
            if list.iter().all(|t| snap.tags.contains(t)) {
                reasons.push(format!("has tags [{}]", list.join(" ")));
            }
        }
        for (left, bucketer, last, reason) in buckets.iter_mut() {
            if *left > 0 {
                let value = bucketer(snap.time, nr);
                if *last != Some(value) {
                    *last = Some(value);
                    *left -= 1;
                    reasons.push(reason.to_string());
                }
            }
        }
        if reasons.is_empty() {
            plan.forget.push(snap.id.clone());
        } else {
            plan.keep.push(Kept {
                id: snap.id.clone(),
                reasons,
            });
        }
    }
}

/// (year, month, day) of a unix time, UTC.
fn ymd(t: i64) -> (i64, i64, i64) {
    let z = t.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn day_bucket(t: i64) -> i64 {
    let (y, m, d) = ymd(t);
    y * 10_000 + m * 100 + d
}

fn hour_bucket(t: i64) -> i64 {
    day_bucket(t) * 100 + t.rem_euclid(86_400) / 3600
}

/// ISO year * 100 + ISO week, as Go's `ISOWeek`.
fn week_bucket(t: i64) -> i64 {
    let days = t.div_euclid(86_400);
    // Monday = 1 .. Sunday = 7; 1970-01-01 was a Thursday.
    let weekday = (days + 3).rem_euclid(7) + 1;
    // The Thursday of this ISO week decides the ISO year.
    let thursday = days - weekday + 4;
    let (iso_year, _, _) = ymd(thursday * 86_400);
    let jan1 = days_from_civil(iso_year, 1, 1);
    let week = (thursday - jan1) / 7 + 1;
    iso_year * 100 + week
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const H: i64 = 3600;
    const D: i64 = 86_400;
    // 2026-01-01T00:00:00Z, a Thursday.
    const JAN1: i64 = 1_767_225_600;

    fn snap(id: &str, time: i64) -> SnapshotInfo {
        SnapshotInfo {
            id: id.into(),
            time,
            nanos: 0,
            host: "host-0".into(),
            paths: vec!["/dumpfile.sql".into()],
            tags: vec![],
        }
    }

    fn policy() -> RetentionPolicy {
        RetentionPolicy {
            name: "p".into(),
            ..Default::default()
        }
    }

    fn kept(plan: &RetentionPlan) -> Vec<&str> {
        plan.keep.iter().map(|k| k.id.as_str()).collect()
    }

    /// Ten snapshots, one every 12 hours from JAN1 (s0 oldest .. s9 newest).
    fn every_twelve_hours() -> Vec<SnapshotInfo> {
        (0..10)
            .map(|i| snap(&format!("s{i}"), JAN1 + i * 12 * H))
            .collect()
    }

    #[rstest]
    #[case::keep_last_3(RetentionPolicy { keep_last: Some(3), ..policy() }, &["s9", "s8", "s7"])]
    #[case::keep_daily_3(RetentionPolicy { keep_daily: Some(3), ..policy() }, &["s9", "s7", "s5"])]
    #[case::keep_hourly_2(RetentionPolicy { keep_hourly: Some(2), ..policy() }, &["s9", "s8"])]
    #[case::last_and_daily_overlap(RetentionPolicy { keep_last: Some(2), keep_daily: Some(2), ..policy() }, &["s9", "s8", "s7"])]
    #[case::weekly(RetentionPolicy { keep_weekly: Some(5), ..policy() }, &["s9", "s7"])]
    #[case::monthly(RetentionPolicy { keep_monthly: Some(1), ..policy() }, &["s9"])]
    #[case::yearly(RetentionPolicy { keep_yearly: Some(3), ..policy() }, &["s9"])]
    #[case::empty_keeps_all(policy(), &["s9", "s8", "s7", "s6", "s5", "s4", "s3", "s2", "s1", "s0"])]
    #[case::zero_is_empty(RetentionPolicy { keep_last: Some(0), ..policy() }, &["s9", "s8", "s7", "s6", "s5", "s4", "s3", "s2", "s1", "s0"])]
    fn keeps_like_restic(#[case] p: RetentionPolicy, #[case] expect: &[&str]) {
        let plan = select(&every_twelve_hours(), &p);
        assert_eq!(kept(&plan), expect);
        assert_eq!(plan.keep.len() + plan.forget.len(), 10);
    }

    #[test]
    fn weekly_uses_iso_weeks() {
        // 2026-01-01 is a Thursday: ISO week 1 of 2026. 2025-12-29 (Monday) is in it too.
        assert_eq!(week_bucket(JAN1), 202601);
        assert_eq!(week_bucket(JAN1 - 3 * D), 202601);
        assert_eq!(week_bucket(JAN1 - 4 * D), 202552);
        assert_eq!(week_bucket(JAN1 + 4 * D), 202602);
        // 2021-01-03 (Sunday) belongs to ISO week 53 of 2020.
        assert_eq!(week_bucket(1_609_632_000), 202053);
    }

    #[test]
    fn tags_keep_without_counting() {
        let mut snaps = every_twelve_hours();
        snaps[2].tags = vec!["release".into(), "v1".into()];
        snaps[4].tags = vec!["release".into()];
        let p = RetentionPolicy {
            keep_last: Some(1),
            keep_tags: Some(vec!["release,v1".into()]),
            ..policy()
        };
        let plan = select(&snaps, &p);
        assert_eq!(kept(&plan), ["s9", "s2"]);
        assert_eq!(plan.keep[1].reasons, ["has tags [release v1]"]);
    }

    #[test]
    fn groups_by_host_and_paths() {
        let mut snaps = every_twelve_hours();
        for s in snaps.iter_mut().take(5) {
            s.host = "host-1".into();
        }
        let plan = select(
            &snaps,
            &RetentionPolicy {
                keep_last: Some(2),
                ..policy()
            },
        );
        assert_eq!(kept(&plan), ["s9", "s8", "s4", "s3"]);
        assert_eq!(plan.forget, ["s7", "s6", "s5", "s2", "s1", "s0"]);
    }

    #[test]
    fn reasons_name_every_rule() {
        let plan = select(
            &every_twelve_hours(),
            &RetentionPolicy {
                keep_last: Some(1),
                keep_daily: Some(1),
                keep_monthly: Some(1),
                ..policy()
            },
        );
        assert_eq!(
            plan.keep[0].reasons,
            ["last snapshot", "daily snapshot", "monthly snapshot"]
        );
    }

    #[test]
    fn snapshots_of_the_same_second_are_ordered_by_their_fraction() {
        let mut older = snap("bbbb", JAN1);
        older.nanos = 100;
        let mut newer = snap("aaaa", JAN1);
        newer.nanos = 900;
        let policy = RetentionPolicy {
            keep_last: Some(1),
            ..Default::default()
        };
        let plan = select(&[older, newer], &policy);
        assert_eq!(
            plan.keep.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            ["aaaa"]
        );
    }
}
