//! End to end on the testkit: a local-backend Repository on a PersistentVolumeClaim written by
//! two backup Jobs and read by a restore Job through a hostPath volume, each session with its
//! own interim volume; and
//! `spec.wipeOut` deleting an S3 repository (and being refused for a local one).
//!
//! The data is checked where the volume really is (the claim's host directory, or the S3
//! bucket) with the stock restic CLI, so a Job that wrote its repository anywhere else (for
//! example into its own filesystem at `mountPath`) fails these tests.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DeleteParams, ListParams};
use kube::ResourceExt;
use serde_json::{json, Value};
use stash_core::api::{BackupConfiguration, BackupSession, Repository, RestoreSession};
use stash_operator::commands::run::demo;
use stash_operator::commands::run::Embedded;
use stash_testkit::controllers::kubelet::claim_dir;
use stash_testkit::providers::mysql::MysqlServer;
use stash_testkit::providers::s3::S3Server;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NS: &str = "demo";
const IMAGE: &str = stash_core::plan::DEFAULT_IMAGE;
const PASSWORD: &str = "local-repository-password";

/// Advances the clock by `step` every 300 ms until `check` returns Some; fails after `limit`.
async fn wait_for<T, F, Fut>(
    env: &Embedded,
    step: Duration,
    limit: Duration,
    what: &str,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        if !step.is_zero() {
            env.server.advance(step).await;
        }
    }
}

async fn sessions(env: &Embedded) -> Vec<BackupSession> {
    let mut items = Api::<BackupSession>::namespaced(env.client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("list sessions")
        .items;
    items.sort_by_key(|s| s.name_any());
    items
}

fn phase(s: &BackupSession) -> String {
    s.status
        .as_ref()
        .and_then(|x| x.phase.clone())
        .unwrap_or_default()
}

/// One schedule later, the one new session finishes; it must succeed.
async fn next_backup(env: &Embedded, known: &[String]) -> BackupSession {
    env.server.advance(Duration::from_secs(300)).await;
    let s = wait_for(
        env,
        Duration::ZERO,
        Duration::from_secs(90),
        "the next backup",
        || async {
            let s = sessions(env)
                .await
                .into_iter()
                .find(|s| !known.contains(&s.name_any()))?;
            matches!(phase(&s).as_str(), "Succeeded" | "Failed" | "Skipped").then_some(s)
        },
    )
    .await;
    assert_eq!(phase(&s), "Succeeded", "{:?}", s.status);
    s
}

/// Stock restic on a repository, with its password in the environment.
fn restic(repository: &str, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new("restic")
        .args(args)
        .arg("--no-cache")
        .env("RESTIC_REPOSITORY", repository)
        .env("RESTIC_PASSWORD", PASSWORD)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("restic runs")
}

/// Removes a host directory the kubelet created as a mount point, even when the test fails.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pvc(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": NS},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_repository_on_a_claim_two_backups_interim_volumes_and_restore() {
    let (source, target) = tokio::task::spawn_blocking(|| {
        let source = MysqlServer::start().expect("source MariaDB");
        demo::seed(&source).expect("seed");
        (source, MysqlServer::start().expect("target MariaDB"))
    })
    .await
    .expect("join");
    let kubelet_root = tempfile::tempdir().expect("kubelet root");
    let env = Embedded::start_with_kubelet_root(
        IMAGE,
        env!("CARGO_BIN_EXE_stash").into(),
        Some(kubelet_root.path().to_path_buf()),
    )
    .await
    .expect("embedded environment starts");
    // The mount path exists nowhere on the host: only the mounted claim can hold the data.
    let mount_root = RemoveOnDrop(format!("/stash-rs-e2e-{}", std::process::id()).into());
    let mount_path = format!("{}/repository", mount_root.0.display());
    let interim = json!({"metadata": {"name": "interim"},
                         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        demo::secret("local-secret", &[("RESTIC_PASSWORD", PASSWORD)]),
        json!({"apiVersion": "stash.appscode.com/v1alpha1", "kind": "Repository",
               "metadata": {"name": "local-repo", "namespace": NS},
               "spec": {"backend": {"storageSecretName": "local-secret",
                                    "local": {"mountPath": mount_path, "persistentVolumeClaim": {"claimName": "repo-pvc"}}}}}),
        demo::secret(
            "source-mysql-auth",
            &[("username", source.user()), ("password", source.password())],
        ),
        demo::appbinding("source-mysql", &source),
        demo::secret(
            "restored-mysql-auth",
            &[("username", target.user()), ("password", target.password())],
        ),
        demo::appbinding("restored-mysql", &target),
        json!({"apiVersion": "stash.appscode.com/v1beta1", "kind": "BackupConfiguration",
               "metadata": {"name": "local-backup", "namespace": NS},
               "spec": {"schedule": "*/5 * * * *",
                        "task": {"name": "mysql-backup-8.0.21", "params": [{"name": "args", "value": "--databases shop --single-transaction"}]},
                        "repository": {"name": "local-repo"},
                        "target": {"ref": {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding", "name": "source-mysql"}},
                        "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": true},
                        "interimVolumeTemplate": interim,
                        "backupHistoryLimit": 1}}),
    ];
    for o in &objects {
        env.apply(o).await.expect("apply");
    }

    let bcs = Api::<BackupConfiguration>::namespaced(env.client.clone(), NS);
    wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(30),
        "BackupConfiguration Ready",
        || async {
            let bc = bcs.get("local-backup").await.ok()?;
            (bc.status?.phase.as_deref() == Some("Ready")).then_some(())
        },
    )
    .await;
    // Without the claim the backup pod cannot be scheduled, as on a real cluster.
    let first_name = {
        env.server.advance(Duration::from_secs(300)).await;
        let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(env.client.clone(), NS);
        wait_for(
            &env,
            Duration::ZERO,
            Duration::from_secs(60),
            "an unschedulable backup pod",
            || async {
                let pod = pods
                    .list(&ListParams::default())
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .next()?;
                let st = pod.status?;
                let cond = st
                    .conditions?
                    .into_iter()
                    .find(|c| c.type_ == "PodScheduled")?;
                (cond.status == "False"
                    && cond
                        .message
                        .as_deref()
                        .unwrap_or_default()
                        .contains("repo-pvc"))
                .then_some(())
            },
        )
        .await;
        env.apply(&pvc("repo-pvc")).await.expect("claim");
        let first = wait_for(
            &env,
            Duration::ZERO,
            Duration::from_secs(90),
            "the first backup",
            || async {
                let s = sessions(&env).await.into_iter().next()?;
                matches!(phase(&s).as_str(), "Succeeded" | "Failed").then_some(s)
            },
        )
        .await;
        assert_eq!(phase(&first), "Succeeded", "{:?}", first.status);
        first.name_any()
    };
    let claims = Api::<PersistentVolumeClaim>::namespaced(env.client.clone(), NS);
    let first_claim = claims
        .get(&format!("interim-{first_name}"))
        .await
        .expect("the first session's interim claim");
    let owner = &first_claim.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("BackupSession", first_name.as_str())
    );

    // A second backup, by a second Job, into the same repository.
    let second = next_backup(&env, std::slice::from_ref(&first_name)).await;
    assert_ne!(second.name_any(), first_name);
    claims
        .get(&format!("interim-{}", second.name_any()))
        .await
        .expect("the second session's interim claim");
    // History limit 1: the first session goes, and its claim with it.
    wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(60),
        "the first interim claim collected",
        || async {
            claims
                .get_opt(&format!("interim-{first_name}"))
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;

    // Both snapshots are on the claim's volume, and stock restic reads them.
    let data = claim_dir(kubelet_root.path(), NS, "repo-pvc");
    let repo = data.display().to_string();
    let out = restic(&repo, &[], &["snapshots", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snaps: Vec<Value> = serde_json::from_slice(&out.stdout).expect("snapshots json");
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    assert!(snaps.iter().all(|s| s["hostname"] == "host-0"));
    let check = restic(&repo, &[], &["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        !Path::new(&mount_path).join("config").exists(),
        "a repository was written to the host at {mount_path}"
    );
    let status = Api::<Repository>::namespaced(env.client.clone(), NS)
        .get("local-repo")
        .await
        .expect("repository")
        .status
        .expect("status");
    assert_eq!(status.snapshot_count, Some(2));

    // The restore reads the same files through a hostPath volume (the claim's directory on
    // the node), at another mount path.
    env.apply(&json!({"apiVersion": "stash.appscode.com/v1alpha1", "kind": "Repository",
                      "metadata": {"name": "node-repo", "namespace": NS},
                      "spec": {"backend": {"storageSecretName": "local-secret",
                               "local": {"mountPath": format!("{mount_path}-node"), "hostPath": {"path": repo, "type": "Directory"}}}}}))
        .await
        .expect("hostPath repository");
    env.apply(&json!({"apiVersion": "stash.appscode.com/v1beta1", "kind": "RestoreSession",
                      "metadata": {"name": "local-restore", "namespace": NS},
                      "spec": {"task": {"name": "mysql-restore-8.0.21"}, "repository": {"name": "node-repo"},
                               "interimVolumeTemplate": {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
                               "target": {"ref": {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding", "name": "restored-mysql"},
                                          "rules": [{"snapshots": ["latest"]}]}}}))
        .await
        .expect("restore session");
    let restores = Api::<RestoreSession>::namespaced(env.client.clone(), NS);
    let restored = wait_for(
        &env,
        Duration::from_secs(10),
        Duration::from_secs(120),
        "the restore",
        || async {
            let r = restores.get("local-restore").await.ok()?;
            let p = r.status.as_ref()?.phase.clone()?;
            matches!(p.as_str(), "Succeeded" | "Failed").then_some(r)
        },
    )
    .await;
    assert_eq!(
        restored.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded"),
        "{:?}",
        restored.status
    );
    claims
        .get("stash-interim-volume-local-restore")
        .await
        .expect("the restore's interim claim");
    let (a, b) = tokio::task::spawn_blocking(move || {
        (
            source.checksums().expect("a"),
            target.checksums().expect("b"),
        )
    })
    .await
    .expect("join");
    assert!(!a.is_empty());
    assert_eq!(a, b);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wipe_out_deletes_an_s3_repository_and_is_refused_for_local() {
    let s3 = tokio::task::spawn_blocking(|| {
        let s3 = S3Server::start().expect("S3");
        s3.create_bucket("stash-wipe").expect("bucket");
        s3
    })
    .await
    .expect("join");
    let s3_env = [
        ("AWS_ACCESS_KEY_ID", s3.access_key().to_string()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key().to_string()),
    ];
    let s3_env: Vec<(&str, &str)> = s3_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Two repositories in the bucket; only the one under demo/mysql goes.
    let doomed = s3.restic_repository("stash-wipe", "/demo/mysql");
    let kept = s3.restic_repository("stash-wipe", "/demo/other");
    let file = tempfile::NamedTempFile::new().expect("file");
    std::fs::write(file.path(), b"some data").expect("write");
    for repo in [&doomed, &kept] {
        for args in [
            vec!["init"],
            vec!["backup", file.path().to_str().expect("utf-8")],
        ] {
            let out = restic(repo, &s3_env, &args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let host_dir = tempfile::tempdir().expect("hostPath");
    let local = host_dir.path().display().to_string();
    let out = restic(&local, &[], &["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let env = Embedded::start(IMAGE, env!("CARGO_BIN_EXE_stash").into())
        .await
        .expect("embedded environment starts");
    for o in [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        demo::secret(
            "s3-secret",
            &[
                ("RESTIC_PASSWORD", PASSWORD),
                ("AWS_ACCESS_KEY_ID", s3.access_key()),
                ("AWS_SECRET_ACCESS_KEY", s3.secret_key()),
            ],
        ),
        json!({"apiVersion": "stash.appscode.com/v1alpha1", "kind": "Repository", "metadata": {"name": "s3-repo", "namespace": NS},
               "spec": {"wipeOut": true, "backend": {"storageSecretName": "s3-secret",
                        "s3": {"endpoint": s3.endpoint(), "bucket": "stash-wipe", "prefix": "/demo/mysql", "region": "us-east-1"}}}}),
        demo::secret("local-secret", &[("RESTIC_PASSWORD", PASSWORD)]),
        json!({"apiVersion": "stash.appscode.com/v1alpha1", "kind": "Repository", "metadata": {"name": "local-repo", "namespace": NS},
               "spec": {"wipeOut": true, "backend": {"storageSecretName": "local-secret",
                        "local": {"mountPath": "/safe/data", "hostPath": {"path": local}}}}}),
    ] {
        env.apply(&o).await.expect("apply");
    }
    let repos = Api::<Repository>::namespaced(env.client.clone(), NS);
    // The local one is refused up front with a condition naming the field.
    let message = wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(30),
        "local wipeOut refused",
        || async {
            let r = repos.get("local-repo").await.ok()?;
            let c = r
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "ValidationPassed")?;
            (c.status == "False").then(|| c.message.unwrap_or_default())
        },
    )
    .await;
    assert!(
        message.contains("spec.wipeOut") && message.contains("local"),
        "{message}"
    );
    wait_for(
        &env,
        Duration::ZERO,
        Duration::from_secs(30),
        "finalizers",
        || async {
            let all = repos.list(&ListParams::default()).await.ok()?.items;
            (all.len() == 2
                && all
                    .iter()
                    .all(|r| r.finalizers().contains(&"stash".to_string())))
            .then_some(())
        },
    )
    .await;

    for name in ["s3-repo", "local-repo"] {
        repos
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    wait_for(
        &env,
        Duration::from_secs(5),
        Duration::from_secs(60),
        "both Repositories gone",
        || async {
            repos
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;

    // The S3 repository is gone: stock restic finds no repository there.
    let out = restic(&doomed, &s3_env, &["snapshots"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Is there a repository at the following location?"),
        "{stderr}"
    );
    // Its neighbour under another prefix, and the refused local repository, are intact.
    for (repo, env) in [(&kept, s3_env.as_slice()), (&local, &[][..])] {
        let out = restic(repo, env, &["snapshots"]);
        assert!(
            out.status.success(),
            "{repo}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    env.stop().await;
}
