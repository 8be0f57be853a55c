//! Retention checked against the oracle: the stock `restic forget --dry-run` on a real
//! repository must keep exactly the snapshots `retention::select` keeps.

use stash_core::api::RetentionPolicy;
use stash_core::retention::{select, SnapshotInfo};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Repo {
    dir: PathBuf,
}

impl Repo {
    fn new() -> Repo {
        let dir = std::env::temp_dir().join(format!("stash-retention-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let repo = Repo { dir };
        repo.restic(&["init"], None);
        repo
    }

    fn restic(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let mut child = Command::new("restic")
            .args(args)
            .env("RESTIC_REPOSITORY", &self.dir)
            .env("RESTIC_PASSWORD", "retention-oracle")
            .env("TZ", "UTC")
            .env("RESTIC_CACHE_DIR", self.dir.with_extension("cache"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("restic is installed (scripts/setup.sh)");
        if let Some(data) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(data)
                .expect("write");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("restic finishes");
        assert!(
            out.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(self.dir.with_extension("cache"));
    }
}

fn civil(t: i64) -> String {
    // restic --time takes "YYYY-MM-DD HH:MM:SS" in local time; restic runs with TZ=UTC.
    let ts: k8s_openapi::jiff::Timestamp =
        k8s_openapi::jiff::Timestamp::from_second(t).expect("time");
    ts.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

#[test]
fn select_agrees_with_restic_forget() {
    let repo = Repo::new();
    // 2026-01-01T00:00:00Z; snapshots every 7 hours over about 4 days, plus one a month back,
    // one a year back, and two hosts.
    let base = 1_767_225_600i64;
    let mut times: Vec<(i64, &str, Vec<&str>)> = (0..14)
        .map(|i| (base + i * 7 * 3600, "host-0", vec![]))
        .collect();
    times.push((base - 31 * 86_400, "host-0", vec!["release"]));
    times.push((base - 370 * 86_400, "host-0", vec![]));
    times.push((base + 3600, "host-1", vec![]));
    times.push((base + 5 * 3600, "host-1", vec!["release", "verified"]));
    for (i, (t, host, tags)) in times.iter().enumerate() {
        let mut args = vec![
            "backup",
            "--stdin",
            "--stdin-filename",
            "dumpfile.sql",
            "--host",
            host,
            "--time",
        ];
        let when = civil(*t);
        args.push(&when);
        let tag_args: Vec<String> = tags.iter().map(|t| format!("--tag={t}")).collect();
        args.extend(tag_args.iter().map(String::as_str));
        repo.restic(&args, Some(format!("-- dump {i}\n").as_bytes()));
    }
    let listed: serde_json::Value =
        serde_json::from_str(&repo.restic(&["snapshots", "--json"], None)).expect("json");
    let snapshots: Vec<SnapshotInfo> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|s| SnapshotInfo {
            id: s["id"].as_str().expect("id").to_string(),
            time: s["time"]
                .as_str()
                .expect("time")
                .parse::<k8s_openapi::jiff::Timestamp>()
                .expect("ts")
                .as_second(),
            nanos: s["time"]
                .as_str()
                .expect("time")
                .parse::<k8s_openapi::jiff::Timestamp>()
                .expect("ts")
                .subsec_nanosecond()
                .unsigned_abs(),
            host: s["hostname"].as_str().expect("host").to_string(),
            paths: s["paths"]
                .as_array()
                .expect("paths")
                .iter()
                .map(|p| p.as_str().unwrap_or_default().to_string())
                .collect(),
            tags: s["tags"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .map(|x| x.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    assert_eq!(snapshots.len(), times.len());

    let p = |f: fn(&mut RetentionPolicy)| {
        let mut policy = RetentionPolicy {
            name: "p".into(),
            ..Default::default()
        };
        f(&mut policy);
        policy
    };
    let policies = [
        p(|x| x.keep_last = Some(3)),
        p(|x| x.keep_hourly = Some(5)),
        p(|x| x.keep_daily = Some(2)),
        p(|x| x.keep_weekly = Some(2)),
        p(|x| x.keep_monthly = Some(2)),
        p(|x| x.keep_yearly = Some(2)),
        p(|x| {
            x.keep_last = Some(1);
            x.keep_daily = Some(3);
            x.keep_monthly = Some(3);
        }),
        p(|x| {
            x.keep_last = Some(1);
            x.keep_tags = Some(vec!["release".into()]);
        }),
        p(|x| {
            x.keep_daily = Some(1);
            x.keep_tags = Some(vec!["release,verified".into()]);
        }),
    ];
    for policy in &policies {
        let mut args = vec!["forget".to_string(), "--dry-run".into(), "--json".into()];
        for (flag, v) in [
            ("--keep-last", policy.keep_last),
            ("--keep-hourly", policy.keep_hourly),
            ("--keep-daily", policy.keep_daily),
            ("--keep-weekly", policy.keep_weekly),
            ("--keep-monthly", policy.keep_monthly),
            ("--keep-yearly", policy.keep_yearly),
        ] {
            if let Some(n) = v {
                args.push(format!("{flag}={n}"));
            }
        }
        for t in policy.keep_tags.iter().flatten() {
            args.push(format!("--keep-tag={t}"));
        }
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = repo.restic(&arg_refs, None);
        let start = out.find('[').expect("json array in forget output");
        let groups: serde_json::Value =
            serde_json::from_str(out[start..].trim()).expect("forget json");
        let restic_keep: BTreeSet<String> = groups
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|g| g["keep"].as_array().cloned().unwrap_or_default())
            .map(|s| s["id"].as_str().expect("id").to_string())
            .collect();
        let ours: BTreeSet<String> = select(&snapshots, policy)
            .keep
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(ours, restic_keep, "policy {policy:?}");
    }
    assert!(Path::new(&repo.dir).exists());
}
