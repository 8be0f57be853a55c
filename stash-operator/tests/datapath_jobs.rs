//! The `stash backup-mysql` and `restore-mysql` commands end to end: they read the storage
//! Secret and the AppBinding (with its Secret and secretTransforms) from an API server (the
//! testkit's fake one, over kubeconfig), run against a real MariaDB, and report in output.json.

use std::path::Path;
use std::process::{Command, Output};

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{json, Value};
use stash_testkit::providers::MysqlServer;
use stash_testkit::FakeApiServer;

fn appbinding_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "appbindings.appcatalog.appscode.com"},
        "spec": {
            "group": "appcatalog.appscode.com",
            "names": {"kind": "AppBinding", "plural": "appbindings", "singular": "appbinding", "listKind": "AppBindingList"},
            "scope": "Namespaced",
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    })
}

async fn create(
    client: &kube::Client,
    gvk: GroupVersionKind,
    plural: &str,
    ns: Option<&str>,
    obj: Value,
) {
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let obj: DynamicObject = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create");
}

/// Creates the objects a Stash backup of `db` reads: the storage Secret, the AppBinding and its
/// Secret, whose keys are renamed by a secretTransform.
async fn seed_api(client: &kube::Client, db: &MysqlServer) {
    let namespace = GroupVersionKind::gvk("", "v1", "Namespace");
    create(
        client,
        namespace,
        "namespaces",
        None,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}),
    )
    .await;
    let crd = GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition");
    create(
        client,
        crd,
        "customresourcedefinitions",
        None,
        appbinding_crd(),
    )
    .await;
    let secret = GroupVersionKind::gvk("", "v1", "Secret");
    create(
        client,
        secret.clone(),
        "secrets",
        Some("demo"),
        json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "repo-secret"},
            "stringData": {"RESTIC_PASSWORD": "repo pw"}
        }),
    )
    .await;
    create(
        client,
        secret,
        "secrets",
        Some("demo"),
        json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-auth"},
            "stringData": {"USER": db.user(), "password": db.password()}
        }),
    )
    .await;
    let ab = GroupVersionKind::gvk("appcatalog.appscode.com", "v1alpha1", "AppBinding");
    create(
        client,
        ab,
        "appbindings",
        Some("demo"),
        json!({
            "apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
            "metadata": {"name": "sample-mysql"},
            "spec": {
                "type": "kubedb.com/mysql",
                "clientConfig": {"url": format!("tcp({}:{})/", db.host(), db.port())},
                "secret": {"name": "db-auth"},
                "secretTransforms": [{"renameKey": {"from": "USER", "to": "username"}}]
            }
        }),
    )
    .await;
}

fn stash(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stash"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run stash")
}

fn output_json(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("output.json")).expect("output.json")).unwrap()
}

#[test]
fn backup_and_restore_commands_read_the_api_and_report_like_stash() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime
        .block_on(FakeApiServer::builder().tcp(0).start())
        .expect("fake api server");
    let kubeconfig = server.kubeconfig_path().expect("kubeconfig").to_path_buf();
    let client = runtime.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        kube::Client::try_from(config).unwrap()
    });
    let source = MysqlServer::start().expect("source");
    source
        .execute("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v VARBINARY(8)); INSERT INTO shop.t VALUES (1, 0x00ff27), (2, 'two;');")
        .unwrap();
    runtime.block_on(seed_api(&client, &source));

    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    let scratch = work.path().join("scratch");
    let out_dir = work.path().join("out");
    let common = |out: &Path| -> Vec<String> {
        [
            "--provider=local".to_owned(),
            format!("--bucket={}", repo.display()),
            "--storage-secret-name=repo-secret".to_owned(),
            "--storage-secret-namespace=demo".to_owned(),
            format!("--scratch-dir={}", scratch.display()),
            "--namespace=demo".to_owned(),
            "--appbinding=sample-mysql".to_owned(),
            "--wait-timeout=10".to_owned(),
            format!("--output-dir={}", out.display()),
        ]
        .to_vec()
    };
    let mut args = vec!["backup-mysql".to_owned()];
    args.extend(common(&out_dir));
    args.push("--mysql-args=--databases shop --skip-dump-date".to_owned());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = stash(&kubeconfig, &argv);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = output_json(&out_dir);
    let stats = &out["targetStatus"]["stats"][0];
    assert_eq!(stats["phase"], "Succeeded", "{out}");
    assert_eq!(stats["hostname"], "host-0");
    assert_eq!(out["targetStatus"]["ref"]["name"], "sample-mysql");
    assert_eq!(out["targetStatus"]["ref"]["namespace"], "demo");
    assert_eq!(stats["snapshots"][0]["path"], "dumpfile.sql");
    assert_eq!(stats["snapshots"][0]["fileStats"]["newFiles"], 1);
    // Credential files do not outlive the run.
    let leftovers: Vec<_> = std::fs::read_dir(&scratch).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Stock restic reads the snapshot the command reported.
    let dumped = Command::new("restic")
        .args(["dump", "--no-cache", "latest", "/dumpfile.sql"])
        .env("RESTIC_REPOSITORY", &repo)
        .env("RESTIC_PASSWORD", "repo pw")
        .output()
        .unwrap();
    assert!(dumped.status.success());
    let snap = stats["snapshots"][0]["name"].as_str().unwrap().to_owned();
    assert!(String::from_utf8_lossy(&dumped.stdout).contains("INSERT INTO `t`"));

    // Restore into a fresh server behind the same AppBinding name in another namespace.
    let fresh = MysqlServer::start().expect("fresh");
    runtime.block_on(async {
        let secret = GroupVersionKind::gvk("", "v1", "Secret");
        create(
            &client,
            secret,
            "secrets",
            Some("demo"),
            json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "fresh-auth"},
                "stringData": {"username": fresh.user(), "password": fresh.password()}
            }),
        )
        .await;
        let ab = GroupVersionKind::gvk("appcatalog.appscode.com", "v1alpha1", "AppBinding");
        create(&client, ab, "appbindings", Some("demo"), json!({
            "apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
            "metadata": {"name": "fresh-mysql"},
            "spec": {"clientConfig": {"url": format!("tcp({}:{})/", fresh.host(), fresh.port())},
                     "secret": {"name": "fresh-auth"}}
        })).await;
    });
    let restore_out = work.path().join("restore-out");
    let mut args = vec!["restore-mysql".to_owned()];
    args.extend(common(&restore_out));
    args.retain(|a| a != "--appbinding=sample-mysql");
    args.push("--appbinding=fresh-mysql".to_owned());
    args.push(format!("--snapshot={snap}"));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = stash(&kubeconfig, &argv);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = output_json(&restore_out);
    assert_eq!(
        out["targetStatus"]["stats"][0]["phase"], "Succeeded",
        "{out}"
    );
    assert_eq!(fresh.checksums().unwrap(), source.checksums().unwrap());

    // A wrong password: Failed in output.json, exit 0 like Stash, 1 with --strict-exit.
    runtime.block_on(async {
        let secret = GroupVersionKind::gvk("", "v1", "Secret");
        create(
            &client,
            secret,
            "secrets",
            Some("demo"),
            json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bad-auth"},
                "stringData": {"username": source.user(), "password": "wrong"}
            }),
        )
        .await;
        let ab = GroupVersionKind::gvk("appcatalog.appscode.com", "v1alpha1", "AppBinding");
        create(&client, ab, "appbindings", Some("demo"), json!({
            "apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
            "metadata": {"name": "bad-mysql"},
            "spec": {"clientConfig": {"url": format!("tcp({}:{})/", source.host(), source.port())},
                     "secret": {"name": "bad-auth"}}
        })).await;
    });
    let bad_out = work.path().join("bad-out");
    let mut args = vec!["backup-mysql".to_owned()];
    args.extend(common(&bad_out));
    args.retain(|a| a != "--appbinding=sample-mysql" && !a.starts_with("--wait-timeout"));
    args.push("--appbinding=bad-mysql".to_owned());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = stash(&kubeconfig, &argv);
    assert!(run.status.success());
    let out = output_json(&bad_out);
    let stats = &out["targetStatus"]["stats"][0];
    assert_eq!(stats["phase"], "Failed");
    assert!(
        stats["error"].as_str().unwrap().contains("Access denied"),
        "{out}"
    );
    assert!(!stats["error"].as_str().unwrap().contains("wrong"));
    let mut strict = argv.clone();
    strict.push("--strict-exit");
    assert_eq!(stash(&kubeconfig, &strict).status.code(), Some(1));
    drop(server);
}
