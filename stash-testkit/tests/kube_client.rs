//! kube-rs against the in-process router: CRUD, errors, SSA conflicts, status and generation,
//! pagination, finalizers and a watcher/reflector that survives a forced 410.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{finalizer, reflector, watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use stash_testkit::FakeApiServer;

const WAIT: Duration = Duration::from_secs(20);

async fn setup() -> (FakeApiServer, Client) {
    let server = FakeApiServer::builder()
        .bookmark_interval(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    let client = Client::new(server.router(), "default");
    (server, client)
}

fn cm(name: &str, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": "demo"}}, "data": data}),
    )
    .unwrap()
}

fn api_error(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn crud_errors_and_optimistic_concurrency() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let created = cms
        .create(&PostParams::default(), &cm("a", json!({"k": "v"})))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    assert!(!uid.is_empty());
    assert!(created.metadata.creation_timestamp.is_some());
    let rv1: u64 = created
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();

    let dup = api_error(
        cms.create(&PostParams::default(), &cm("a", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    let missing = api_error(cms.get("nope").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "configmaps \"nope\" not found");

    let mut fresh = cms.get("a").await.unwrap();
    fresh.data = Some([("k".to_string(), "w".to_string())].into());
    let replaced = cms
        .replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    let rv2: u64 = replaced
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);
    let stale = api_error(
        cms.replace("a", &PostParams::default(), &fresh)
            .await
            .unwrap_err(),
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));

    // A write that changes nothing keeps the resourceVersion.
    let same = cms
        .replace("a", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version,
        replaced.metadata.resource_version
    );

    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    cms.create(&dry, &cm("dry", json!({}))).await.unwrap();
    assert_eq!(api_error(cms.get("dry").await.unwrap_err()).code, 404);

    let gen: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let named = cms.create(&PostParams::default(), &gen).await.unwrap();
    let name = named.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    let deleted = cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_right(), "a plain delete returns a Status");
    assert_eq!(api_error(cms.get("a").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn selectors_and_consistent_pagination() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    for i in 0..5 {
        let mut c = cm(&format!("c{i}"), json!({}));
        if i % 2 == 0 {
            c.metadata.labels = Some([("parity".to_string(), "even".to_string())].into());
        }
        cms.create(&PostParams::default(), &c).await.unwrap();
    }
    let even = cms
        .list(&ListParams::default().labels("parity=even"))
        .await
        .unwrap();
    assert_eq!(even.items.len(), 3);
    let odd = cms
        .list(&ListParams::default().labels("parity notin (even)"))
        .await
        .unwrap();
    let odd_names: Vec<_> = odd
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    assert!(odd_names.contains(&"c1".to_string()) && odd_names.contains(&"c3".to_string()));
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=c2"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let bad = api_error(
        cms.list(&ListParams::default().fields("data.x=1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(bad.code, 400);

    let first = cms
        .list(&ListParams::default().labels("parity=even").limit(2))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().expect("a continue token");
    assert_eq!(first.metadata.remaining_item_count, Some(1));
    // Objects created after the first page do not show up in later pages.
    let mut late = cm("c9", json!({}));
    late.metadata.labels = Some([("parity".to_string(), "even".to_string())].into());
    cms.create(&PostParams::default(), &late).await.unwrap();
    let second = cms
        .list(
            &ListParams::default()
                .labels("parity=even")
                .limit(2)
                .continue_token(&token),
        )
        .await
        .unwrap();
    let names: Vec<_> = second
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    assert_eq!(names, vec!["c4".to_string()]);
    assert!(second.metadata.continue_.is_none());
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
}

#[tokio::test]
async fn two_field_managers_conflict_and_force_resolves() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"k": "from-a", "a-only": "1"}});
    cms.patch(
        "shared",
        &PatchParams::apply("manager-a"),
        &Patch::Apply(&a),
    )
    .await
    .unwrap();
    let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"k": "from-b"}});
    let err = api_error(
        cms.patch(
            "shared",
            &PatchParams::apply("manager-b"),
            &Patch::Apply(&b),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"manager-a\": .data.k"
    );
    let causes = err.details.unwrap().causes;
    assert_eq!(causes[0].reason, "FieldManagerConflict");
    assert_eq!(causes[0].field, ".data.k");

    let forced = cms
        .patch(
            "shared",
            &PatchParams::apply("manager-b").force(),
            &Patch::Apply(&b),
        )
        .await
        .unwrap();
    let data = forced.data.unwrap();
    assert_eq!(data["k"], "from-b");
    assert_eq!(data["a-only"], "1");
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(
        managers,
        vec!["manager-a".to_string(), "manager-b".to_string()]
    );

    // manager-a drops a-only from its config: nobody else owns it, so it is removed.
    let a2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {}});
    let after = cms
        .patch(
            "shared",
            &PatchParams::apply("manager-a"),
            &Patch::Apply(&a2),
        )
        .await
        .unwrap();
    let data = after.data.unwrap_or_default();
    assert!(!data.contains_key("a-only"));
    assert_eq!(data["k"], "from-b");

    let wrong_version =
        json!({"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "shared"}});
    let err = api_error(
        cms.patch(
            "shared",
            &PatchParams::apply("m"),
            &Patch::Apply(&wrong_version),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    assert!(
        err.message
            .starts_with("Incorrect version specified in apply patch"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn job_status_subresource_and_generation() {
    let (_server, client) = setup().await;
    let jobs: Api<Job> = Api::default_namespaced(client);
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "j"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
        "status": {"succeeded": 5}
    }))
    .unwrap();
    let created = jobs.create(&PostParams::default(), &job).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.status.as_ref().and_then(|s| s.succeeded).is_none(),
        "create drops status"
    );
    assert!(
        created.status.is_some(),
        "built-in strategies reset status to an empty struct"
    );
    let spec = created.spec.clone().unwrap();
    assert_eq!(spec.backoff_limit, Some(6));
    let uid = created.metadata.uid.clone().unwrap();
    assert_eq!(
        spec.selector.unwrap().match_labels.unwrap()["batch.kubernetes.io/controller-uid"],
        uid
    );
    assert_eq!(
        spec.template.metadata.unwrap().labels.unwrap()["job-name"],
        "j"
    );

    let status = json!({"status": {"active": 1}});
    let patched = jobs
        .patch_status("j", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(patched.status.unwrap().active, Some(1));
    assert_eq!(patched.metadata.generation, Some(1));

    let main = json!({"spec": {"parallelism": 2}, "status": {"active": 7}});
    let patched = jobs
        .patch("j", &PatchParams::default(), &Patch::Merge(&main))
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    assert_eq!(
        patched.status.unwrap().active,
        Some(1),
        "the main endpoint keeps status"
    );

    let template =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "other"}]}}}});
    let err = api_error(
        jobs.patch("j", &PatchParams::default(), &Patch::Strategic(&template))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("spec.template: Invalid value"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("field is immutable"),
        "{}",
        err.message
    );

    // Re-applying the same Job keeps the server-generated selector and labels: no change.
    let applied = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "sj"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox", "env": [{"name": "A", "value": "1"}]}]}}}});
    let first = jobs
        .patch("sj", &PatchParams::apply("op"), &Patch::Apply(&applied))
        .await
        .unwrap();
    let second = jobs
        .patch("sj", &PatchParams::apply("op"), &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(
        first.metadata.resource_version,
        second.metadata.resource_version
    );

    let invalid: Job = serde_json::from_value(json!({
        "metadata": {"name": "bad"},
        "spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "x"}]}}}
    }))
    .unwrap();
    let err = api_error(
        jobs.create(&PostParams::default(), &invalid)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        err.details.unwrap().causes[0].field,
        "spec.template.spec.restartPolicy"
    );
}

fn widget_crd() -> serde_json::Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "required": ["size"], "properties": {
                        "size": {"type": "integer"}, "color": {"type": "string", "default": "blue"}}},
                    "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
                }}}
            }]
        }
    })
}

#[tokio::test]
async fn custom_resources_follow_their_crd() {
    let (_server, client) = setup().await;
    let gvk = GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition");
    let crds: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
    let crd: DynamicObject = serde_json::from_value(widget_crd()).unwrap();
    let created = crds.create(&PostParams::default(), &crd).await.unwrap();
    // As on a real server, the create answers the CRD before its names are accepted; the
    // API server establishes it right after (a second write, on status).
    assert!(created.data["status"]["conditions"].is_null());
    let name = created.metadata.name.clone().unwrap();
    let established = crds.get(&name).await.unwrap();
    let conditions = established.data["status"]["conditions"]
        .as_array()
        .unwrap()
        .clone();
    assert!(conditions
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True"));

    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"size": 3, "unknown": true}, "status": {"ready": true}
    }))
    .unwrap();
    let w = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(
        w.data["spec"],
        json!({"size": 3, "color": "blue"}),
        "pruned and defaulted"
    );
    assert!(
        w.data.get("status").is_none(),
        "status only through the subresource"
    );
    assert_eq!(w.metadata.generation, Some(1));

    let invalid: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "bad"}, "spec": {"size": "big"}
    }))
    .unwrap();
    let err = api_error(
        widgets
            .create(&PostParams::default(), &invalid)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert_eq!(err.details.unwrap().causes[0].field, "spec.size");

    let mut no_rv = w.clone();
    no_rv.metadata.resource_version = None;
    let err = api_error(
        widgets
            .replace("w", &PostParams::default(), &no_rv)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("must be specified for an update"),
        "{}",
        err.message
    );

    let status = json!({"status": {"ready": true}});
    let s = widgets
        .patch_status("w", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(s.data["status"]["ready"], true);
    assert_eq!(
        s.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );
    let smp = api_error(
        widgets
            .patch("w", &PatchParams::default(), &Patch::Strategic(&json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(smp.code, 415);

    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let gone = api_error(widgets.get("w").await.unwrap_err());
    assert_eq!(gone.code, 404);
}

#[tokio::test]
async fn finalizer_helper_runs_apply_then_cleanup() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    cms.create(&PostParams::default(), &cm("fin", json!({})))
        .await
        .unwrap();
    let cleanups = Arc::new(AtomicUsize::new(0));
    let run = |obj: ConfigMap| {
        let cms = cms.clone();
        let cleanups = cleanups.clone();
        async move {
            finalizer(
                &cms,
                "example.com/cleanup",
                Arc::new(obj),
                |event| async move {
                    if let finalizer::Event::Cleanup(_) = event {
                        cleanups.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok::<_, std::convert::Infallible>(
                        kube::runtime::controller::Action::await_change(),
                    )
                },
            )
            .await
        }
    };
    run(cms.get("fin").await.unwrap()).await.unwrap();
    let with_finalizer = cms.get("fin").await.unwrap();
    assert_eq!(
        with_finalizer.metadata.finalizers,
        Some(vec!["example.com/cleanup".to_string()])
    );

    let pending = cms.delete("fin", &DeleteParams::default()).await.unwrap();
    let pending = pending
        .left()
        .expect("object remains while a finalizer is set");
    assert!(pending.metadata.deletion_timestamp.is_some());
    run(cms.get("fin").await.unwrap()).await.unwrap();
    assert_eq!(cleanups.load(Ordering::SeqCst), 1);
    assert_eq!(api_error(cms.get("fin").await.unwrap_err()).code, 404);
}

async fn wait_for_names(store: &reflector::Store<ConfigMap>, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    tokio::time::timeout(WAIT, async {
        loop {
            let mut have: Vec<String> = store
                .state()
                .iter()
                .filter_map(|c| c.metadata.name.clone())
                .collect();
            have.sort();
            if have == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "store never reached {want:?}: {:?}",
            store
                .state()
                .iter()
                .map(|c| c.metadata.name.clone())
                .collect::<Vec<_>>()
        )
    });
}

async fn reflector_survives_forced_410(config: watcher::Config) {
    let (server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    for n in ["one", "two", "three"] {
        cms.create(&PostParams::default(), &cm(n, json!({})))
            .await
            .unwrap();
    }
    let (store, writer) = reflector::store();
    let inits = Arc::new(AtomicUsize::new(0));
    let counter = inits.clone();
    let stream = reflector(writer, watcher(cms.clone(), config)).inspect(move |ev| {
        if let Ok(watcher::Event::Init) = ev {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let task = tokio::spawn(stream.for_each(|_| async {}));
    tokio::time::timeout(WAIT, store.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    wait_for_names(&store, &["one", "two", "three"]).await;

    cms.create(&PostParams::default(), &cm("four", json!({})))
        .await
        .unwrap();
    wait_for_names(&store, &["one", "two", "three", "four"]).await;

    server.expire_watches();
    cms.delete("one", &DeleteParams::default()).await.unwrap();
    cms.create(&PostParams::default(), &cm("five", json!({})))
        .await
        .unwrap();
    wait_for_names(&store, &["two", "three", "four", "five"]).await;
    assert!(
        inits.load(Ordering::SeqCst) >= 2,
        "the watcher re-listed after the 410"
    );
    task.abort();
}

#[tokio::test]
async fn list_watch_reflector_stays_in_sync_across_410() {
    reflector_survives_forced_410(watcher::Config::default().page_size(1)).await;
}

#[tokio::test]
async fn streaming_list_reflector_stays_in_sync_across_410() {
    reflector_survives_forced_410(watcher::Config::default().streaming_lists()).await;
}

#[tokio::test]
async fn watcher_sees_selector_transitions() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let mut stream = watcher(cms.clone(), watcher::Config::default().labels("app=demo"))
        .applied_objects()
        .boxed();
    cms.create(&PostParams::default(), &cm("t", json!({})))
        .await
        .unwrap();
    let first = tokio::time::timeout(WAIT, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("t"));

    let mut raw = watcher(cms.clone(), watcher::Config::default().labels("app=demo")).boxed();
    // Skip the initial listing.
    loop {
        match tokio::time::timeout(WAIT, raw.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            watcher::Event::InitDone => break,
            _ => continue,
        }
    }
    let relabel = json!({"metadata": {"labels": {"app": "other"}}});
    cms.patch("t", &PatchParams::default(), &Patch::Merge(&relabel))
        .await
        .unwrap();
    match tokio::time::timeout(WAIT, raw.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        watcher::Event::Delete(obj) => assert_eq!(obj.metadata.name.as_deref(), Some("t")),
        other => panic!("expected Delete when the object stops matching, got {other:?}"),
    }
}

#[tokio::test]
async fn kube_client_from_the_written_kubeconfig_over_tcp() {
    let server = FakeApiServer::builder().tcp(0).start().await.unwrap();
    let path = server.kubeconfig_path().unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = Client::try_from(config).unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(
        names,
        vec!["default", "kube-node-lease", "kube-public", "kube-system"]
    );
}

#[tokio::test]
async fn delete_collection_preconditions_and_dry_runs() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    for name in ["d1", "d2", "keep"] {
        let mut c = cm(name, json!({}));
        if name == "keep" {
            c.metadata.labels = Some([("app".to_string(), "other".to_string())].into());
        }
        cms.create(&PostParams::default(), &c).await.unwrap();
    }
    let dry = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    cms.delete("d1", &dry).await.unwrap();
    assert!(
        cms.get_opt("d1").await.unwrap().is_some(),
        "dry-run delete keeps the object"
    );
    let patch = json!({"data": {"x": "y"}});
    let dry_patch = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    let previewed = cms
        .patch("d1", &dry_patch, &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(previewed.data.unwrap()["x"], "y");
    assert!(
        !cms.get("d1")
            .await
            .unwrap()
            .data
            .unwrap_or_default()
            .contains_key("x"),
        "dry-run patch changes nothing"
    );

    let wrong_uid = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("nope".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let err = api_error(cms.delete("d1", &wrong_uid).await.unwrap_err());
    assert_eq!(err.code, 409);

    let deleted = cms
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=demo"),
        )
        .await
        .unwrap();
    let names: Vec<String> = deleted
        .left()
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(names, vec!["d1", "d2"]);
    let left: Vec<String> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(left, vec!["keep"]);
}

/// Stored objects are written to the wire from their stored form (managed fields as stored
/// JSON text, no copy per object). What a client reads is what the server's `present` gives
/// (how objects were served before): gets, list items, metadata-only reads and watch events
/// agree with one another, and the managed fields are those the applies recorded.
#[tokio::test]
async fn gets_lists_and_watch_events_serve_the_same_objects() {
    let (server, client) = setup().await;
    let gvk = GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition");
    let crds: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
    let crd: DynamicObject = serde_json::from_value(widget_crd()).unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let start = server.api().store.rev();

    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for (manager, data) in [
        ("alice", json!({"a": "1"})),
        ("bob", json!({"b": "\"2\" é"})),
    ] {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data});
        cms.patch("c", &PatchParams::apply(manager), &Patch::Apply(&body))
            .await
            .unwrap();
    }
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}});
    widgets
        .patch("w", &PatchParams::apply("carol"), &Patch::Apply(&w))
        .await
        .unwrap();
    widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"ready": true}})),
        )
        .await
        .unwrap();

    let request = |path: String, accept: &'static str| {
        let client = client.clone();
        async move {
            let req = http::Request::get(path)
                .header(http::header::ACCEPT, accept)
                .body(Vec::new())
                .unwrap();
            client.request_text(req).await.unwrap()
        }
    };
    let get = |path: String| async move {
        serde_json::from_str::<serde_json::Value>(&request(path, "application/json").await).unwrap()
    };
    const META: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
    const META_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    for (group, version, plural, name, builtin) in [
        ("", "v1", "configmaps", "c", true),
        ("example.com", "v1", "widgets", "w", false),
    ] {
        let base = if group.is_empty() {
            format!("/api/{version}/namespaces/default/{plural}")
        } else {
            format!("/apis/{group}/{version}/namespaces/default/{plural}")
        };
        let info = server.api().resource(group, version, plural).unwrap();
        let stored = server
            .api()
            .store
            .lock()
            .get(&stash_testkit::apiserver::Apiserver::key(
                &info, "default", name,
            ))
            .unwrap();
        let presented = stash_testkit::apiserver::Apiserver::present(&info, &stored);

        let got = get(format!("{base}/{name}")).await;
        assert_eq!(
            got, presented,
            "{plural}: a get serves the presented object"
        );
        let list = get(base.clone()).await;
        let mut item = got.clone();
        if builtin {
            let m = item.as_object_mut().unwrap();
            m.remove("apiVersion");
            m.remove("kind");
        }
        assert_eq!(
            list["items"],
            json!([item]),
            "{plural}: list items are gets"
        );
        let meta: serde_json::Value =
            serde_json::from_str(&request(format!("{base}/{name}"), META).await).unwrap();
        let want = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": got["metadata"]});
        assert_eq!(meta, want);
        let metas: serde_json::Value =
            serde_json::from_str(&request(base.clone(), META_LIST).await).unwrap();
        assert_eq!(metas["items"], json!([want]));
        assert_eq!(metas["kind"], "PartialObjectMetadataList");

        let events = request(
            format!("{base}?watch=true&resourceVersion={start}&timeoutSeconds=1"),
            "application/json",
        )
        .await;
        let last: serde_json::Value = serde_json::from_str(events.lines().last().unwrap()).unwrap();
        assert_eq!(last["object"], got, "{plural}: the last event is the get");
    }

    let managed = get("/api/v1/namespaces/default/configmaps/c".into()).await["metadata"]
        ["managedFields"]
        .clone();
    let fields: Vec<_> = managed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["manager"].clone(),
                e["operation"].clone(),
                e["fieldsV1"].clone(),
            )
        })
        .collect();
    assert_eq!(
        fields,
        vec![
            (
                json!("alice"),
                json!("Apply"),
                json!({"f:data": {"f:a": {}}})
            ),
            (json!("bob"), json!("Apply"), json!({"f:data": {"f:b": {}}})),
        ]
    );
}
