//! Hooks end to end (stash.md §9) on the testkit with real MariaDB, the embedded S3 server and
//! a small HTTP listener of the test: the post hook follows its executionPolicy and sees the
//! outcome, a failing pre hook fails the session with its reason and no snapshot is taken.

mod support;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::{json, Value};
use stash_core::api::{BackupConfiguration, BackupSession, Condition};
use stash_operator::commands::run::demo;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

/// One request the listener received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    uri: String,
    authorization: String,
    content_type: String,
    body: String,
}

/// A local HTTP endpoint for hooks: answers 503 under `/unavailable`, 200 elsewhere, and keeps
/// every request.
struct Listener {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Listener {
    async fn start() -> Listener {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let app = axum::Router::new()
            .fallback(
                |State(log): State<Arc<Mutex<Vec<Received>>>>,
                 method: Method,
                 uri: Uri,
                 headers: HeaderMap,
                 body: String| async move {
                    let header = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    log.lock().unwrap().push(Received {
                        method: method.to_string(),
                        uri: uri.to_string(),
                        authorization: header("authorization"),
                        content_type: header("content-type"),
                        body,
                    });
                    if uri.path().starts_with("/unavailable") {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                },
            )
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Listener { port, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn target_condition(s: &BackupSession, type_: &str) -> Option<Condition> {
    s.status
        .as_ref()?
        .targets
        .as_ref()?
        .first()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .cloned()
}

async fn patch_bc(env: &stash_operator::commands::run::Embedded, patch: Value) {
    Api::<BackupConfiguration>::namespaced(env.client.clone(), NS)
        .patch(
            "sample-mysql-backup",
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .expect("patch BackupConfiguration");
}

/// Every container log of the namespace's pods, joined.
async fn all_logs(env: &stash_operator::commands::run::Embedded) -> String {
    use k8s_openapi::api::core::v1::Pod;
    let pods = Api::<Pod>::namespaced(env.client.clone(), NS);
    let mut text = String::new();
    for p in pods.list(&ListParams::default()).await.unwrap().items {
        let spec = p.spec.clone().unwrap_or_default();
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            let lp = LogParams {
                container: Some(c.name.clone()),
                ..LogParams::default()
            };
            text.push_str(&pods.logs(&p.name_any(), &lp).await.unwrap_or_default());
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_backup_http_hook_follows_its_execution_policy() {
    let dbs = tokio::task::spawn_blocking(databases).await.expect("join");
    let listener = Listener::start().await;
    let env = start().await;
    for o in demo::objects(&dbs.source, &dbs.target, &dbs.s3) {
        env.apply(&o).await.expect("apply");
    }
    let hook = |policy: &str| {
        json!({"spec": {"hooks": {"postBackup": {
            "httpPost": {
                "host": "127.0.0.1", "port": listener.port, "path": "/notify?token=path-secret", "scheme": "HTTP",
                "httpHeaders": [{"name": "Authorization", "value": "Bearer hook-token"}],
                "body": "{\"phase\": \"{{ .Status.Phase }}\", \"session\": \"{{ .Name }}\", \"target\": \"{{ .Target.Name }}\"}"
            },
            "executionPolicy": policy
        }}}})
    };
    patch_bc(&env, hook("OnSuccess")).await;
    bc_ready(&env).await;

    // OnSuccess after a good backup: one POST with the rendered body and the header.
    let mut known = BTreeSet::new();
    let first = next_backup(&env, &known).await;
    known.insert(first.name_any());
    let got = listener.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].uri, "/notify?token=path-secret");
    assert_eq!(got[0].authorization, "Bearer hook-token");
    assert_eq!(got[0].content_type, "application/json");
    let body: Value = serde_json::from_str(&got[0].body).expect("JSON body");
    assert_eq!(
        body,
        json!({"phase": "Succeeded", "session": first.name_any(), "target": "source-mysql"})
    );
    let cond = target_condition(&first, "PostBackupHookExecutionSucceeded").expect("condition");
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("True", Some("SuccessfullyExecutedPostBackupHook"))
    );

    // OnFailure after a good backup: not sent, the condition says why.
    patch_bc(&env, hook("OnFailure")).await;
    let second = next_backup(&env, &known).await;
    known.insert(second.name_any());
    assert_eq!(listener.received().len(), 1, "OnFailure fired on success");
    let cond = target_condition(&second, "PostBackupHookExecutionSucceeded").expect("condition");
    assert_eq!(cond.status, "True");
    assert!(
        cond.message
            .as_deref()
            .unwrap_or_default()
            .starts_with("Skipping executing postBackup. Reason: executionPolicy is \"OnFailure\""),
        "{cond:?}"
    );

    // OnFailure after a failed backup (a database that does not exist): sent, with phase Failed.
    patch_bc(
        &env,
        json!({"spec": {"task": {"name": "mysql-backup-8.0.21", "params": [{"name": "args", "value": "--databases no_such_database"}]}}}),
    )
    .await;
    let third = next_session(&env, &known).await;
    assert_eq!(phase(&third), "Failed", "{:?}", third.status);
    let got = listener.received();
    assert_eq!(got.len(), 2, "{got:?}");
    let body: Value = serde_json::from_str(&got[1].body).expect("JSON body");
    assert_eq!(body["phase"], "Failed");
    assert_eq!(body["session"], third.name_any());

    // The header's token and the URL's secret path appear in no log.
    let logs = all_logs(&env).await;
    assert!(!logs.is_empty());
    assert!(!logs.contains("hook-token"), "a hook header reached a log");
    assert!(
        !logs.contains("path-secret"),
        "a hook URL path reached a log"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_pre_backup_hook_fails_the_session_and_takes_no_snapshot() {
    let dbs = tokio::task::spawn_blocking(databases).await.expect("join");
    let listener = Listener::start().await;
    let env = start().await;
    for o in demo::objects(&dbs.source, &dbs.target, &dbs.s3) {
        env.apply(&o).await.expect("apply");
    }
    patch_bc(
        &env,
        json!({"spec": {"hooks": {"preBackup": {"httpGet": {"host": "127.0.0.1", "port": listener.port, "path": "/unavailable"}}}}}),
    )
    .await;
    bc_ready(&env).await;

    let session = next_session(&env, &BTreeSet::new()).await;
    assert_eq!(phase(&session), "Failed", "{:?}", session.status);
    assert_eq!(listener.received().len(), 1, "the hook did not run once");
    let cond = target_condition(&session, "PreBackupHookExecutionSucceeded").expect("condition");
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("False", Some("FailedToExecutePreBackupHook"))
    );
    assert!(
        cond.message
            .as_deref()
            .unwrap_or_default()
            .contains("HTTP probe failed with statuscode: 503"),
        "{cond:?}"
    );
    let stats = session.status.as_ref().unwrap().targets.as_ref().unwrap()[0]
        .stats
        .clone()
        .unwrap_or_default();
    assert_eq!(stats.len(), 1, "{stats:?}");
    assert_eq!(stats[0].phase.as_deref(), Some("Failed"));
    assert!(
        stats[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("statuscode: 503"),
        "{stats:?}"
    );
    assert!(stats[0].snapshots.as_deref().unwrap_or_default().is_empty());

    // No snapshot: stock restic finds no repository, or an empty one.
    let out = restic(&dbs.s3, &["snapshots", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        let snaps: Vec<Value> = serde_json::from_str(&stdout).expect("restic JSON");
        assert!(snaps.is_empty(), "a snapshot was taken: {stdout}");
    } else {
        assert!(
            stderr.contains("does not exist") || stderr.contains("unable to open config"),
            "{stderr}"
        );
    }
    env.stop().await;
}

/// Stock restic's view of the demo repository.
fn restic(s3: &stash_testkit::providers::s3::S3Server, args: &[&str]) -> std::process::Output {
    std::process::Command::new("restic")
        .args(args)
        .arg("--no-cache")
        .env(
            "RESTIC_REPOSITORY",
            s3.restic_repository("stash-demo", "demo/mysql"),
        )
        .env("RESTIC_PASSWORD", "demo-repository-password")
        .env("AWS_ACCESS_KEY_ID", s3.access_key())
        .env("AWS_SECRET_ACCESS_KEY", s3.secret_key())
        .output()
        .expect("restic")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_backup_exec_hook_writes_a_row_the_backup_contains() {
    use stash_operator::commands::run::database_pod::{DatabasePod, ROOT_CLIENT};
    let (target, s3) = tokio::task::spawn_blocking(|| {
        let target = stash_testkit::providers::mysql::MysqlServer::start().expect("MariaDB");
        let s3 = stash_testkit::providers::s3::S3Server::start().expect("S3");
        s3.create_bucket("stash-demo").expect("bucket");
        (target, s3)
    })
    .await
    .expect("join");
    let env = start().await;
    let source = DatabasePod::new("source-mysql", NS).expect("database pod");
    for o in demo::objects_with_pod(&source, &target, &s3) {
        env.apply(&o).await.expect("apply");
    }
    let ready = source.clone();
    let served = tokio::task::spawn_blocking(move || ready.wait_ready(Duration::from_secs(60)))
        .await
        .expect("join");
    if let Err(e) = served {
        dump_state(&env).await;
        panic!("the database pod does not serve: {e}");
    }
    let insert = format!(
        "{ROOT_CLIENT} -e \"CREATE TABLE shop.hook_marker (note VARCHAR(128)); INSERT INTO shop.hook_marker VALUES ('written by {{{{ .Name }}}} in {{{{ .Target.Name }}}}')\""
    );
    patch_bc(
        &env,
        json!({"spec": {"hooks": {"preBackup": {"exec": {"command": ["sh", "-c", insert]}, "containerName": "mariadb"}}}}),
    )
    .await;
    bc_ready(&env).await;

    let session = next_backup(&env, &BTreeSet::new()).await;
    let cond = target_condition(&session, "PreBackupHookExecutionSucceeded").expect("condition");
    assert_eq!(cond.status, "True", "{cond:?}");
    let marker = format!("written by {} in source-mysql", session.name_any());
    // The hook ran in the database pod, before the dump ...
    let probe = source.clone();
    let rows =
        tokio::task::spawn_blocking(move || probe.query("SELECT note FROM shop.hook_marker"))
            .await
            .expect("join")
            .expect("query");
    assert_eq!(rows, vec![vec![marker.clone()]]);
    // ... so the snapshot, read by stock restic, holds the row.
    let dump = restic(&s3, &["dump", "latest", "/dumpfile.sql"]);
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        text.contains("CREATE TABLE `hook_marker`"),
        "no marker table in the dump"
    );
    assert!(text.contains(&marker), "no marker row in the dump");

    // A restore with a postRestore hook: the hook reports the restore's outcome, and the
    // RestoreSession finishes only after its condition is there.
    let listener = Listener::start().await;
    let mut restore = demo::restore_session();
    restore["spec"]["hooks"] = json!({"postRestore": {"httpPost": {
        "host": "127.0.0.1", "port": listener.port, "path": "/restored",
        "form": [{"key": "phase", "values": ["{{ .Status.Phase }}"]}, {"key": "note", "values": ["a b"]}],
    }, "executionPolicy": "OnSuccess"}});
    env.apply(&restore).await.expect("restore session");
    let api = Api::<stash_core::api::RestoreSession>::namespaced(env.client.clone(), NS);
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
    let st = restored.status.clone().unwrap_or_default();
    assert_eq!(st.phase.as_deref(), Some("Succeeded"), "{st:?}");
    let cond = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PostRestoreHookExecutionSucceeded")
        .expect("postRestore condition");
    assert_eq!(cond.status, "True", "{cond:?}");
    let got = listener.received();
    assert_eq!(got.len(), 1, "{got:?}");
    // The form wins over the body and is urlencoded; templates render only in the body.
    assert_eq!(got[0].content_type, "application/x-www-form-urlencoded");
    assert_eq!(got[0].body, "note=a+b&phase=%7B%7B+.Status.Phase+%7D%7D");
    let rows = tokio::task::spawn_blocking(move || target.checksums())
        .await
        .expect("join")
        .expect("checksums");
    assert!(
        rows.iter().any(|(t, _)| t == "shop.hook_marker"),
        "{rows:?}"
    );
    env.stop().await;
}
