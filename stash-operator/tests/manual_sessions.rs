//! Manual backups against the fake API server: `stash trigger` creates the session Stash's
//! `kubectl stash trigger` creates, in process and as the real binary; and the operator finds a
//! configuration's sessions by `spec.invoker`, agreeing with render's gatherer.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use stash_core::api::{BackupConfiguration, BackupSession};
use stash_operator::commands::trigger::{trigger, TriggerError};
use stash_operator::operator::{gather, Context};
use stash_testkit::FakeApiServer;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const NS: &str = "demo";

async fn install(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in stash_core::crd::crds() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("CRD created");
    }
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
}

fn configuration() -> BackupConfiguration {
    serde_json::from_value(json!({
        "apiVersion": "stash.appscode.com/v1beta1", "kind": "BackupConfiguration",
        "metadata": {"name": "sample-mysql-backup", "namespace": NS},
        "spec": {"schedule": "*/5 * * * *", "repository": {"name": "s3-repo"},
                 "retryConfig": {"maxRetry": 2, "delay": "1m"},
                 "target": {"ref": {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding", "name": "sample-mysql"}}}
    }))
    .unwrap()
}

async fn in_process() -> (FakeApiServer, Client) {
    let server = FakeApiServer::start().await.expect("server starts");
    let client = Client::new(server.router(), "default");
    install(&client).await;
    (server, client)
}

#[tokio::test]
async fn trigger_creates_the_session_kubectl_stash_creates() {
    let (_server, client) = in_process().await;
    let bc = Api::<BackupConfiguration>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &configuration())
        .await
        .unwrap();
    let first = trigger(&client, NS, "sample-mysql-backup").await.unwrap();
    let second = trigger(&client, NS, "sample-mysql-backup").await.unwrap();
    assert_ne!(first, second, "every trigger is a new session");
    let s = Api::<BackupSession>::namespaced(client.clone(), NS)
        .get(&first)
        .await
        .unwrap();
    assert!(first.starts_with("sample-mysql-backup-"), "{first}");
    assert_eq!(
        s.metadata.generate_name.as_deref(),
        Some("sample-mysql-backup-")
    );
    let labels = s.labels();
    assert_eq!(labels.get("app").map(String::as_str), Some("stash"));
    assert_eq!(
        labels
            .get("stash.appscode.com/invoker-type")
            .map(String::as_str),
        Some("BackupConfiguration")
    );
    assert_eq!(
        labels
            .get("stash.appscode.com/invoker-name")
            .map(String::as_str),
        Some("sample-mysql-backup")
    );
    let invoker = s.spec.invoker.clone().expect("spec.invoker");
    assert_eq!(invoker.api_group.as_deref(), Some("stash.appscode.com"));
    assert_eq!(invoker.kind, "BackupConfiguration");
    assert_eq!(invoker.name, "sample-mysql-backup");
    // Like kubectl stash: no retryLeft, so a failed manual backup is not retried.
    assert_eq!(s.spec.retry_left, None);
    let owners = s.owner_references();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "BackupConfiguration");
    assert_eq!(owners[0].api_version, "stash.appscode.com/v1beta1");
    assert_eq!(owners[0].name, "sample-mysql-backup");
    assert_eq!(Some(owners[0].uid.clone()), bc.metadata.uid);
    assert_eq!(owners[0].controller, Some(true));
    assert_eq!(owners[0].block_owner_deletion, Some(true));

    match trigger(&client, NS, "no-such-backup").await {
        Err(e @ TriggerError::NotFound { .. }) => assert_eq!(
            e.to_string(),
            "BackupConfiguration demo/no-such-backup not found"
        ),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

fn stash(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stash"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("stash runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trigger_command_prints_the_new_session() {
    let server = FakeApiServer::builder()
        .tcp(0)
        .start()
        .await
        .expect("server starts");
    let client = Client::new(server.router(), "default");
    install(&client).await;
    Api::<BackupConfiguration>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &configuration())
        .await
        .unwrap();
    let kubeconfig = server.kubeconfig_path().expect("kubeconfig").to_path_buf();

    let k = kubeconfig.clone();
    let out = tokio::task::spawn_blocking(move || {
        stash(&k, &["trigger", "sample-mysql-backup", "-n", NS])
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
    let s = Api::<BackupSession>::namespaced(client.clone(), NS)
        .get(&name)
        .await
        .expect("the printed session exists");
    assert_eq!(s.spec.invoker.unwrap().name, "sample-mysql-backup");

    // The kubeconfig's namespace (default) holds no such configuration: a clear error, exit 1.
    let k = kubeconfig.clone();
    let out = tokio::task::spawn_blocking(move || stash(&k, &["trigger", "sample-mysql-backup"]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("BackupConfiguration default/sample-mysql-backup not found"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// Creates `value` and then writes its status, as a controller would have.
async fn create_with_status(client: &Client, value: Value) {
    let api = Api::<BackupSession>::namespaced(client.clone(), NS);
    let mut session: BackupSession = serde_json::from_value(value).expect("session");
    let status = session.status.take();
    let name = session.name_any();
    api.create(&PostParams::default(), &session).await.unwrap();
    if let Some(status) = status {
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn the_operator_finds_sessions_by_spec_invoker_as_render_does() {
    let (server, client) = in_process().await;
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/session-manual-skipped-running/objects.yaml"),
    )
    .expect("fixture");
    let mut world = stash_core::world::World::with_catalog("img");
    world.load_yaml("objects.yaml", &text).expect("loads");
    let mut newest = None;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).expect("yaml");
        if v["kind"] == "BackupSession" {
            let labelled = v["metadata"]["labels"].is_object();
            assert!(!labelled, "the fixture's sessions carry no invoker labels");
            newest = Some(v.clone());
            create_with_status(&client, v).await;
        }
    }
    let ctx = Context::new(
        client.clone(),
        Default::default(),
        Arc::new(server.clock().clone()),
        Duration::from_secs(1),
    );
    let mut operator: Vec<(String, String)> =
        gather::sibling_sessions(&ctx, NS, "sample-mysql-backup")
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.name, s.phase))
            .collect();
    operator.sort();
    assert_eq!(
        operator,
        [
            ("manual-backup-1".to_string(), "Running".to_string()),
            ("manual-backup-2".to_string(), String::new())
        ],
        "label-less sessions count; the BackupBatch's does not"
    );
    let newest: BackupSession = serde_json::from_value(newest.expect("a session")).unwrap();
    let now = Time("2026-11-27T15:00:00Z".parse().unwrap());
    let mut render: Vec<(String, String)> = world
        .backup_session_inputs(&newest, None, &Default::default(), &now)
        .siblings
        .into_iter()
        .map(|s| (s.name, s.phase))
        .collect();
    render.sort();
    assert_eq!(
        operator, render,
        "render's gatherer agrees with the operator's"
    );
}
