//! API load of the operator: reconciles read Tasks, Functions, Repositories, AppBindings and
//! the invokers of a Repository from reflector caches, so the number of list and get requests
//! does not grow with the number of BackupConfigurations (it did: every Repository reconcile
//! listed every BackupConfiguration, every BackupConfiguration reconcile listed the catalog).

use serde_json::{json, Value};
use stash_operator::commands::run::Embedded;
use stash_testkit::apiserver::{ListOptions, WriteOptions};
use std::time::{Duration, Instant};

const N: usize = 24;

fn objects(i: usize) -> Vec<(&'static str, &'static str, &'static str, Value)> {
    let ns = format!("scale-{}", i % 3);
    let n = format!("db-{i}");
    vec![
        (
            "",
            "v1",
            "secrets",
            json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{n}-repo"), "namespace": ns},
            "stringData": {"RESTIC_PASSWORD": "p", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}}),
        ),
        (
            "",
            "v1",
            "secrets",
            json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{n}-auth"), "namespace": ns},
            "stringData": {"username": "root", "password": "p"}}),
        ),
        (
            "stash.appscode.com",
            "v1alpha1",
            "repositories",
            json!({
            "apiVersion": "stash.appscode.com/v1alpha1", "kind": "Repository",
            "metadata": {"name": format!("{n}-repo"), "namespace": ns},
            "spec": {"backend": {"storageSecretName": format!("{n}-repo"),
                "s3": {"endpoint": "http://s3.invalid", "bucket": "b", "prefix": n}}}}),
        ),
        (
            "appcatalog.appscode.com",
            "v1alpha1",
            "appbindings",
            json!({
            "apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
            "metadata": {"name": n, "namespace": ns},
            "spec": {"type": "kubedb.com/mysql", "version": "8.0.21",
                "clientConfig": {"url": format!("tcp({n}:3306)/")}, "secret": {"name": format!("{n}-auth")}}}),
        ),
        (
            "stash.appscode.com",
            "v1beta1",
            "backupconfigurations",
            json!({
            "apiVersion": "stash.appscode.com/v1beta1", "kind": "BackupConfiguration",
            "metadata": {"name": n, "namespace": ns},
            "spec": {"schedule": "0 3 * * *", "task": {"name": "mysql-backup-8.0.21"},
                "repository": {"name": format!("{n}-repo")},
                "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": true},
                "target": {"ref": {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding", "name": n}}}}),
        ),
    ]
}

/// The embedded environment with `N` BackupConfigurations (and their Repositories,
/// AppBindings and Secrets) over 3 namespaces, once all are Ready and every Repository counts
/// its invoker.
async fn converged() -> Embedded {
    let env = Embedded::start(
        stash_core::plan::DEFAULT_IMAGE,
        env!("CARGO_BIN_EXE_stash").into(),
    )
    .await
    .expect("embedded environment starts");
    // Objects go straight into the store: the only HTTP client is the operator.
    let api = env.server.api();
    let w = WriteOptions::manager("test");
    let ns = api.resource("", "v1", "namespaces").unwrap();
    for k in 0..3 {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("scale-{k}")}});
        api.create(&ns, "", body, &w).unwrap();
    }
    // Repositories last: each is reconciled once when it appears, and counts its invokers then.
    for repositories in [false, true] {
        for i in 0..N {
            for (group, version, plural, body) in objects(i) {
                if (plural == "repositories") != repositories {
                    continue;
                }
                let info = api.resource(group, version, plural).unwrap();
                let namespace = body["metadata"]["namespace"].as_str().unwrap().to_string();
                api.create(&info, &namespace, body, &w).unwrap();
            }
        }
    }
    let bcs = api
        .resource("stash.appscode.com", "v1beta1", "backupconfigurations")
        .unwrap();
    let repos = api
        .resource("stash.appscode.com", "v1alpha1", "repositories")
        .unwrap();
    let ready = |info, want: &str| {
        let list = api.list(info, None, &ListOptions::default()).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["status"]["phase"] == want)
            .count()
    };
    let started = Instant::now();
    while ready(&bcs, "Ready") < N || repos_referenced(api, &repos) < N {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} of {N} BackupConfigurations Ready, {} Repositories referenced; first: {}",
            ready(&bcs, "Ready"),
            repos_referenced(api, &repos),
            api.list(&bcs, None, &ListOptions::default()).unwrap()["items"][0]["status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciles_read_from_caches_not_per_object_requests() {
    let env = converged().await;
    let api = env.server.api();
    let requests = env.server.requests();
    let operator = |verb, resource| requests.count("unknown", verb, resource);
    // A reflector lists once to start (and again only after a lost watch).
    for resource in [
        "backupconfigurations",
        "restoresessions",
        "tasks",
        "functions",
        "repositories",
        "appbindings",
        "namespaces",
    ] {
        assert!(
            operator("list", resource) <= 3,
            "{resource} listed {} times for {N} BackupConfigurations",
            operator("list", resource)
        );
    }
    for resource in ["repositories", "appbindings", "namespaces", "tasks"] {
        assert_eq!(operator("get", resource), 0, "get {resource}");
    }
    // Each BackupConfiguration has 7 children (2 ServiceAccounts, 2 Roles, 2 RoleBindings, its
    // CronJob). A reconcile after the first (its own CronJob appearing, its status, a resync)
    // applies only what changed: nothing. Before, each reconcile applied all 7 again.
    let applies: u64 = ["serviceaccounts", "roles", "rolebindings", "cronjobs"]
        .iter()
        .map(|r| operator("apply", r))
        .sum();
    assert!(
        applies <= 8 * N as u64,
        "{applies} applies for {N} BackupConfigurations of 7 children each"
    );

    // At rest nothing is written (leader-lease renewals aside), and nothing is re-applied.
    let rev = api.store.rev();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes: Vec<String> = api
        .store
        .lock()
        .changes_after(rev)
        .iter()
        .filter(|c| c.key.resource != "coordination.k8s.io/leases")
        .map(|c| format!("{} {}/{}", c.key.resource, c.key.namespace, c.key.name))
        .collect();
    assert!(writes.is_empty(), "writes at rest: {writes:?}");
    let again: u64 = ["serviceaccounts", "roles", "rolebindings", "cronjobs"]
        .iter()
        .map(|r| operator("apply", r))
        .sum();
    assert!(again <= applies + 7, "{} applies at rest", again - applies);
}

/// Repositories whose status counts one referencing BackupConfiguration.
fn repos_referenced(
    api: &stash_testkit::apiserver::Apiserver,
    repos: &stash_testkit::registry::ResourceInfo,
) -> usize {
    let list = api.list(repos, None, &ListOptions::default()).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["status"]["references"]
                .as_array()
                .is_some_and(|refs| refs.len() == 1)
        })
        .count()
}

/// The children a BackupConfiguration reconcile compares with its plan (ServiceAccounts, Roles,
/// RoleBindings, its CronJob) come from metadata-only watches: each kind is listed once to
/// start, not four label-selected lists per reconcile (12 per BackupConfiguration at 10,000).
/// And the writes a reconcile makes itself (its finalizer, its status, its children, among
/// them its CronJob appearing, and the CronJob's status) do not start another: each
/// BackupConfiguration is reconciled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_come_from_watches_and_own_updates_start_no_reconcile() {
    let env = converged().await;
    let requests = env.server.requests();
    let operator = |verb, resource| requests.count("unknown", verb, resource);
    // Before, its CronJob appearing started a second reconcile of each: 2 × N.
    let reconciles = env.reconciles("BackupConfiguration");
    assert!(
        reconciles <= (N + N / 4) as u64,
        "{reconciles} reconciles for {N} BackupConfigurations"
    );
    for resource in ["serviceaccounts", "roles", "rolebindings", "cronjobs"] {
        // One list to start each watch (a lost watch lists again).
        assert!(
            operator("list", resource) <= 3,
            "{resource} listed {} times for {N} BackupConfigurations",
            operator("list", resource)
        );
        assert!(operator("watch", resource) >= 1, "{resource} watched");
    }
    // Each storage Secret is read once: later reconciles (a requeue while the Repository was
    // missing, a resync) find its key names remembered at the version the namespace's Secret
    // watch still shows. A few more while a namespace's watch starts.
    let secret_reads = operator("get", "secrets");
    assert!(
        secret_reads <= N as u64 + 6,
        "{secret_reads} storage-Secret reads for {N} BackupConfigurations"
    );
    for verb in ["list", "watch"] {
        let n = operator(verb, "secrets");
        assert!(
            (1..=6).contains(&n),
            "{verb} secrets: {n} (one per namespace)"
        );
    }

    // At rest: no writes and no reads (the periodic resync is a minute away).
    let api = env.server.api();
    let before = requests.report();
    let rev = api.store.rev();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = api
        .store
        .lock()
        .changes_after(rev)
        .iter()
        .filter(|c| c.key.resource != "coordination.k8s.io/leases")
        .count();
    assert_eq!(writes, 0, "writes at rest");
    // Leader-lease renewals aside, and the pods the fake Job controller lists.
    let after = requests.report();
    let count = |report: &Value, key: &str| report["byResource"]["unknown"][key].as_u64();
    let reads: Vec<String> = after["byResource"]["unknown"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !k.ends_with(" leases") && !k.ends_with(" pods"))
        .filter_map(|k| {
            let n = count(&after, k)? - count(&before, k).unwrap_or(0);
            (n > 0).then(|| format!("{k}: {n}"))
        })
        .collect();
    assert!(reads.is_empty(), "requests in 3 s at rest: {reads:?}");
}

/// The BackupConfiguration's condition `type_`: its status and message.
fn condition(
    api: &stash_testkit::apiserver::Apiserver,
    ns: &str,
    name: &str,
    type_: &str,
) -> (String, String) {
    let bcs = api
        .resource("stash.appscode.com", "v1beta1", "backupconfigurations")
        .unwrap();
    let bc = api.get(&bcs, ns, name).unwrap();
    let c = bc["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or_default();
    (
        c["status"].as_str().unwrap_or_default().into(),
        c["message"].as_str().unwrap_or_default().into(),
    )
}

/// Waits up to 10 s (the periodic resync is a minute away) for `done`.
async fn within_10s(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(10), "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Storage Secrets are not read again while unchanged, yet a change is seen at once: a key
/// removed after Ready gives the condition naming it, a deleted Secret says so, and a Secret
/// created again makes the BackupConfiguration Ready again. Only its own BackupConfiguration
/// reads the changed Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_storage_secret_is_seen_without_a_read_per_reconcile() {
    let env = converged().await;
    let api = env.server.api();
    let requests = env.server.requests();
    let reads = || requests.count("unknown", "get", "secrets");
    let before = reads();
    let secrets = api.resource("", "v1", "secrets").unwrap();
    let (ns, bc, secret) = ("scale-0", "db-0", "db-0-repo");
    let w = WriteOptions::manager("test");
    assert_eq!(
        condition(api, ns, bc, "BackendSecretFound").0,
        "True",
        "Ready before"
    );

    let mut stored = api.get(&secrets, ns, secret).unwrap();
    stored["data"]
        .as_object_mut()
        .expect("data")
        .remove("RESTIC_PASSWORD");
    api.update(&secrets, ns, secret, stored, "", &w).unwrap();
    within_10s("the removed key is named", || {
        let (status, message) = condition(api, ns, bc, "BackendSecretFound");
        status == "False" && message.contains("RESTIC_PASSWORD")
    })
    .await;

    api.delete(&secrets, ns, secret, &Default::default())
        .unwrap();
    within_10s("the deleted Secret is named", || {
        let (status, message) = condition(api, ns, bc, "BackendSecretFound");
        status == "False" && message.contains("does not exist")
    })
    .await;

    let body = objects(0).remove(0).3;
    api.create(&secrets, ns, body, &w).unwrap();
    within_10s("Ready again", || {
        condition(api, ns, bc, "BackendSecretFound").0 == "True"
    })
    .await;

    // The other BackupConfigurations read nothing; this one a few times (each change, and a
    // requeue a second apart while its Secret was missing).
    let read = reads() - before;
    assert!((2..=12).contains(&read), "{read} Secret reads");
}
