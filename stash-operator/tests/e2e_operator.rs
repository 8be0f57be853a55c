//! End to end on the testkit: fake API server, controller-manager and kubelet running our own
//! binary, real MariaDB, the embedded S3 server. Stash-shaped objects in, backups and a restore
//! out, driven only through the API and the virtual clock.

mod support;

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::json;
use stash_core::api::{BackupConfiguration, BackupSession, Repository, RestoreSession};
use stash_operator::commands::run::demo;
use stash_operator::commands::run::Embedded;
use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_retention_history_and_restore() {
    let dbs = tokio::task::spawn_blocking(databases).await.expect("join");
    let env = start().await;
    for o in demo::objects(&dbs.source, &dbs.target, &dbs.s3) {
        env.apply(&o).await.expect("apply");
    }
    let bc = bc_ready(&env).await;
    let conds: Vec<(String, String)> = bc
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| (c.type_, c.status))
        .collect();
    for t in [
        "RepositoryFound",
        "BackendSecretFound",
        "ValidationPassed",
        "BackupTargetFound",
        "CronJobCreated",
    ] {
        assert!(
            conds.contains(&(t.to_string(), "True".to_string())),
            "{t} not True in {conds:?}"
        );
    }

    // First scheduled backup: one schedule later, one session runs to completion.
    let first = next_backup(&env, &Default::default()).await;
    let stats = first.status.as_ref().unwrap().targets.as_ref().unwrap()[0]
        .stats
        .clone()
        .unwrap();
    assert_eq!(stats[0].hostname.as_deref(), Some("host-0"));
    let snap = &stats[0].snapshots.as_ref().unwrap()[0];
    assert!(
        snap.name.as_deref().is_some_and(|n| n.len() == 8),
        "{snap:?}"
    );
    let repo = Api::<Repository>::namespaced(env.client.clone(), NS)
        .get("s3-repo")
        .await
        .unwrap();
    let rs = repo.status.expect("repository status");
    assert_eq!(rs.integrity, Some(true));
    assert!(rs.snapshot_count.unwrap_or(0) >= 1);
    assert!(rs.last_backup_time.is_some());

    // Three more ticks: four backups in all; retention keeps two snapshots and the history
    // limit two sessions.
    let mut succeeded = std::collections::BTreeSet::from([first.name_any()]);
    for _ in 2..=4 {
        let next = next_backup(&env, &succeeded).await;
        succeeded.insert(next.name_any());
    }
    let repo = wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(30),
        "repository status after four backups",
        || async {
            let repo = Api::<Repository>::namespaced(env.client.clone(), NS)
                .get("s3-repo")
                .await
                .ok()?;
            (repo.status.as_ref()?.snapshot_count == Some(2)).then_some(repo)
        },
    )
    .await;
    assert!(
        repo.status
            .unwrap()
            .snapshots_removed_on_last_cleanup
            .unwrap_or(0)
            >= 1
    );
    let finished: Vec<String> = wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(30),
        "history cleanup",
        || async {
            let f: Vec<String> = sessions(&env)
                .await
                .iter()
                .filter(|s| matches!(phase(s).as_str(), "Succeeded" | "Failed" | "Skipped"))
                .map(|s| s.name_any())
                .collect();
            (f.len() == 2).then_some(f)
        },
    )
    .await;
    assert!(
        finished.iter().all(|n| succeeded.contains(n)),
        "{finished:?}"
    );

    // Restore into the second server.
    env.apply(&demo::restore_session())
        .await
        .expect("restore session");
    let api = Api::<RestoreSession>::namespaced(env.client.clone(), NS);
    let restored = wait_for(
        &env,
        Duration::from_secs(10),
        Duration::from_secs(120),
        "restore finished",
        || async {
            let r = api.get("sample-mysql-restore").await.ok()?;
            let p = r.status.as_ref()?.phase.clone()?;
            matches!(p.as_str(), "Succeeded" | "Failed").then_some(r)
        },
    )
    .await;
    assert_eq!(
        restored.status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded"),
        "{:?}",
        restored.status
    );
    let (a, b) = tokio::task::spawn_blocking(move || {
        (
            dbs.source.checksums().unwrap(),
            dbs.target.checksums().unwrap(),
        )
    })
    .await
    .unwrap();
    assert!(!a.is_empty());
    assert_eq!(a, b);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_invalid_killed_and_deleted() {
    let dbs = tokio::task::spawn_blocking(databases).await.expect("join");
    let env = start().await;
    for o in demo::objects(&dbs.source, &dbs.target, &dbs.s3) {
        env.apply(&o).await.expect("apply");
    }
    bc_ready(&env).await;
    let bcs = Api::<BackupConfiguration>::namespaced(env.client.clone(), NS);

    // Paused: the CronJob is suspended and no session appears however far the clock moves.
    bcs.patch(
        "sample-mysql-backup",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": true}})),
    )
    .await
    .unwrap();
    let cronjobs = Api::<CronJob>::namespaced(env.client.clone(), NS);
    wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(30),
        "CronJob suspended",
        || async {
            let cj = cronjobs
                .get("stash-trigger-sample-mysql-backup")
                .await
                .ok()?;
            (cj.spec.suspend == Some(true)).then_some(())
        },
    )
    .await;
    for _ in 0..5 {
        env.server.advance(Duration::from_secs(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        sessions(&env).await.is_empty(),
        "a paused configuration created sessions"
    );

    // A backup whose pod is killed ends Failed with a reason. The AppBinding points at a closed
    // port, so the backup container waits for the database until it is killed.
    env.apply(&json!({
        "apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
        "metadata": {"name": "source-mysql", "namespace": NS},
        "spec": {"clientConfig": {"url": "tcp(127.0.0.1:9)/"}, "secret": {"name": "source-mysql-auth"}}
    }))
    .await
    .unwrap();
    bcs.patch(
        "sample-mysql-backup",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": false}})),
    )
    .await
    .unwrap();
    let running = wait_for(
        &env,
        Duration::from_secs(60),
        Duration::from_secs(60),
        "a Running session",
        || async {
            sessions(&env)
                .await
                .into_iter()
                .find(|s| phase(s) == "Running")
        },
    )
    .await;
    let job = stash_core::names::backup_job_name(&running.name_any(), 0);
    wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(30),
        "the backup process",
        || async {
            let status = std::process::Command::new("pkill")
                .args([
                    "-KILL",
                    "-f",
                    &format!("backupsession={}", running.name_any()),
                ])
                .status()
                .ok()?;
            status.success().then_some(())
        },
    )
    .await;
    let failed = wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(60),
        "the killed session to fail",
        || async {
            let s = Api::<BackupSession>::namespaced(env.client.clone(), NS)
                .get(&running.name_any())
                .await
                .ok()?;
            (phase(&s) == "Failed").then_some(s)
        },
    )
    .await;
    let error = failed.status.unwrap().targets.unwrap()[0]
        .stats
        .clone()
        .unwrap()[0]
        .error
        .clone()
        .unwrap_or_default();
    assert!(
        error.contains(&job) || error.contains("exited with code"),
        "no reason in {error:?}"
    );

    // Invalid: a bad schedule shows a condition naming the field.
    bcs.patch(
        "sample-mysql-backup",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"schedule": "every five minutes"}})),
    )
    .await
    .unwrap();
    let message = wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(30),
        "Invalid phase",
        || async {
            let bc = bcs.get("sample-mysql-backup").await.ok()?;
            let st = bc.status?;
            (st.phase.as_deref() == Some("Invalid")).then(|| {
                st.conditions
                    .unwrap_or_default()
                    .into_iter()
                    .find(|c| c.type_ == "ValidationPassed")
                    .and_then(|c| c.message)
                    .unwrap_or_default()
            })
        },
    )
    .await;
    assert!(message.contains("spec.schedule"), "{message}");

    // Deleting the configuration removes its CronJob and RBAC.
    bcs.patch(
        "sample-mysql-backup",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"schedule": "*/5 * * * *"}})),
    )
    .await
    .unwrap();
    bc_ready(&env).await;
    bcs.delete("sample-mysql-backup", &DeleteParams::default())
        .await
        .unwrap();
    let sa = Api::<ServiceAccount>::namespaced(env.client.clone(), NS);
    let rb = Api::<RoleBinding>::namespaced(env.client.clone(), NS);
    wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(30),
        "children gone",
        || async {
            let gone = cronjobs
                .get_opt("stash-trigger-sample-mysql-backup")
                .await
                .ok()?
                .is_none()
                && sa
                    .get_opt("backupconfiguration-sample-mysql-backup-0")
                    .await
                    .ok()?
                    .is_none()
                && rb
                    .get_opt("backupconfiguration-sample-mysql-backup-0")
                    .await
                    .ok()?
                    .is_none()
                && bcs.get_opt("sample-mysql-backup").await.ok()?.is_none();
            gone.then_some(())
        },
    )
    .await;
    env.stop().await;
}

/// Waits, without moving the clock, for the session `name` to reach a final phase.
async fn final_session(env: &Embedded, name: &str) -> BackupSession {
    let api = Api::<BackupSession>::namespaced(env.client.clone(), NS);
    wait_for(
        env,
        Duration::ZERO,
        Duration::from_secs(90),
        &format!("session {name} to finish"),
        || async {
            let s = api.get(name).await.ok()?;
            matches!(phase(&s).as_str(), "Succeeded" | "Failed" | "Skipped").then_some(s)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_sessions_wait_for_their_configuration_and_run() {
    use kube::api::PostParams;
    use stash_testkit::faults::FaultRule;
    let dbs = tokio::task::spawn_blocking(databases).await.expect("join");
    let env = start().await;
    // The configuration stays unevaluated for a few seconds: its first status writes fail.
    env.server
        .faults()
        .inject(FaultRule::fail("patch", "backupconfigurations", 500, 3));
    // As one `kubectl create -f`: the configuration, then at once a hand-written session
    // without the invoker labels.
    for o in demo::objects(&dbs.source, &dbs.target, &dbs.s3) {
        if o["kind"] == "BackupConfiguration" {
            let bc: BackupConfiguration = serde_json::from_value(o).unwrap();
            Api::<BackupConfiguration>::namespaced(env.client.clone(), NS)
                .create(&PostParams::default(), &bc)
                .await
                .unwrap();
        } else {
            env.apply(&o).await.expect("apply");
        }
    }
    let manual: BackupSession = serde_json::from_value(json!({
        "apiVersion": "stash.appscode.com/v1beta1", "kind": "BackupSession",
        "metadata": {"name": "manual-backup", "namespace": NS},
        "spec": {"invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": "sample-mysql-backup"}}
    }))
    .unwrap();
    Api::<BackupSession>::namespaced(env.client.clone(), NS)
        .create(&PostParams::default(), &manual)
        .await
        .unwrap();
    let s = final_session(&env, "manual-backup").await;
    assert_eq!(phase(&s), "Succeeded", "{:?}", s.status);

    // `stash trigger` takes the next backup and prints the session's name.
    let kubeconfig = env
        .server
        .kubeconfig_path()
        .expect("kubeconfig")
        .to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_stash"))
            .args(["trigger", "sample-mysql-backup", "-n", NS])
            .env("KUBECONFIG", kubeconfig)
            .output()
            .expect("stash trigger runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(name.starts_with("sample-mysql-backup-"), "{name:?}");
    let s = final_session(&env, &name).await;
    assert_eq!(phase(&s), "Succeeded", "{:?}", s.status);
    let snapshots = s.status.unwrap().targets.unwrap()[0].stats.clone().unwrap()[0]
        .snapshots
        .clone()
        .unwrap_or_default();
    assert_eq!(snapshots.len(), 1, "the triggered session took a snapshot");
    env.stop().await;
}
