//! Retention on both engines: snapshots with chosen times and hosts (written through stash-repo,
//! as restic lays them out), then what update-status does: list, `retention::select` in
//! stash-core, and `forget_snapshots` with exactly the chosen ids. Exactly those ids are gone,
//! every other snapshot is left, and stock restic agrees the repository is sound.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;

use stash_core::retention::{select, SnapshotInfo as CoreSnapshot};
use stash_operator::datapath::backend::{engine_env, BackendConfig, Provider};
use stash_operator::datapath::restic_cli::{CacheMode, ResticCli};
use stash_operator::jobs::flags::EngineKind;
use stash_operator::jobs::select_engine;
use stash_repo::backend::FileKind;
use stash_repo::format::Snapshot;
use stash_repo::{backup_stream, BackupOptions, LocalBackend, Repository};

#[test]
fn in_process_engine_forgets_exactly_the_selected_ids() {
    forget_removes_exactly_what_retention_select_forgets(EngineKind::InProcess);
}

#[test]
fn restic_engine_forgets_exactly_the_selected_ids() {
    forget_removes_exactly_what_retention_select_forgets(EngineKind::Restic);
}

fn forget_removes_exactly_what_retention_select_forgets(kind: EngineKind) {
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
        kind,
        &env,
        ResticCli::new("restic", env.clone(), CacheMode::Disabled),
    )
    .unwrap();

    let listed = engine.snapshots(None).unwrap();
    let before: Vec<CoreSnapshot> = listed.iter().map(|s| s.for_retention().unwrap()).collect();
    assert_eq!(before.len(), 41);
    // The conversion keeps what restic groups and orders by.
    assert!(before.iter().all(|s| s.paths == ["/dumpfile.sql"]));
    assert_eq!(
        before.iter().filter(|s| s.host == "host-1").count(),
        20,
        "{kind:?}"
    );
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
    // Forget a subset the engine's own retention rules would never pick on their own (every
    // other chosen id): what is gone must be exactly the ids handed over.
    let subset: Vec<String> = plan.forget.iter().step_by(2).cloned().collect();
    engine.forget_snapshots(&subset, false).unwrap();
    let left: BTreeSet<String> = engine
        .snapshots(None)
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    let all: BTreeSet<String> = before.iter().map(|s| s.id.clone()).collect();
    let gone: BTreeSet<String> = all.difference(&left).cloned().collect();
    assert_eq!(gone, subset.iter().cloned().collect(), "{kind:?}");

    // The rest of the selection, pruned: what is left is exactly what select keeps.
    let rest: Vec<String> = plan.forget.iter().skip(1).step_by(2).cloned().collect();
    engine.forget_snapshots(&rest, true).unwrap();
    let left: BTreeSet<String> = engine
        .snapshots(None)
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    let want: BTreeSet<String> = plan.keep.iter().map(|k| k.id.clone()).collect();
    assert_eq!(left, want, "{kind:?}");

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
