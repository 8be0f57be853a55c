//! The in-process engine's retention: snapshots with chosen times and hosts (written through
//! stash-repo, as restic lays them out), then `apply_retention`; exactly the ids stash-core's
//! `retention::select` forgets are gone, and stock restic agrees the repository is sound.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;

use stash_core::retention::{select, SnapshotInfo as CoreSnapshot};
use stash_operator::datapath::backend::{engine_env, BackendConfig, Provider};
use stash_operator::datapath::restic_cli::{CacheMode, ResticCli};
use stash_operator::datapath::RetentionPolicy;
use stash_operator::job_support::flags::EngineKind;
use stash_operator::job_support::select_engine;
use stash_repo::backend::FileKind;
use stash_repo::format::Snapshot;
use stash_repo::{backup_stream, BackupOptions, LocalBackend, Repository};

#[test]
fn forget_removes_exactly_what_retention_select_forgets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let repo = Repository::init(Arc::new(LocalBackend::new(&path)), b"pw").unwrap();
    let base = backup_stream(
        &repo,
        &mut &b"-- Dump completed\n"[..],
        &BackupOptions {
            hostname: "host-0".into(),
            ..BackupOptions::default()
        },
    )
    .unwrap();
    let (_, template) = repo
        .find_snapshot(&base.snapshot_id.to_hex(), None, None)
        .unwrap();
    // Two hosts, snapshots every 5 hours over four days, one tagged.
    for host in ["host-0", "host-1"] {
        for i in 0..20i64 {
            let time = chrono::DateTime::from_timestamp(1_767_225_600 + i * 5 * 3600, 0)
                .unwrap()
                .to_rfc3339();
            let snap = Snapshot {
                time,
                hostname: host.into(),
                tags: (i == 3).then(|| vec!["keep".to_owned()]),
                ..template.clone()
            };
            repo.save_unpacked(FileKind::Snapshot, &serde_json::to_vec(&snap).unwrap())
                .unwrap();
        }
    }

    let config = BackendConfig {
        provider: Provider::Local,
        bucket: path.display().to_string(),
        endpoint: String::new(),
        region: String::new(),
        prefix: String::new(),
        insecure_tls: false,
        max_connections: 0,
    };
    let secret = BTreeMap::from([("RESTIC_PASSWORD".to_owned(), b"pw".to_vec())]);
    let env = engine_env(&config, &secret, dir.path()).unwrap();
    let engine = select_engine(
        EngineKind::InProcess,
        &env,
        ResticCli::new("restic", env.clone(), CacheMode::Disabled),
    )
    .unwrap();

    let before: Vec<CoreSnapshot> = engine
        .snapshots(None)
        .unwrap()
        .into_iter()
        .map(|s| CoreSnapshot {
            time: chrono::DateTime::parse_from_rfc3339(&s.time)
                .unwrap()
                .timestamp(),
            nanos: chrono::DateTime::parse_from_rfc3339(&s.time)
                .unwrap()
                .timestamp_subsec_nanos(),
            id: s.id,
            host: s.hostname,
            paths: s.paths,
            tags: s.tags.unwrap_or_default(),
        })
        .collect();
    assert_eq!(before.len(), 41);
    let policy = RetentionPolicy {
        keep_last: 2,
        keep_daily: 2,
        keep_tags: vec!["keep".into()],
        prune: true,
        ..Default::default()
    };
    let plan = select(
        &before,
        &stash_core::api::RetentionPolicy {
            keep_last: Some(2),
            keep_daily: Some(2),
            keep_tags: Some(vec!["keep".into()]),
            ..Default::default()
        },
    );
    assert!(!plan.forget.is_empty());
    let outcome = engine.apply_retention(&policy).unwrap();
    assert_eq!(
        (outcome.kept, outcome.removed),
        (plan.keep.len(), plan.forget.len())
    );
    let left: BTreeSet<String> = engine
        .snapshots(None)
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    let want: BTreeSet<String> = plan.keep.iter().map(|k| k.id.clone()).collect();
    assert_eq!(left, want);

    // The prune (restic's) found nothing wrong, and restic checks the result.
    let check = Command::new("restic")
        .args(["check", "--read-data", "--no-cache"])
        .envs(&env.env)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
