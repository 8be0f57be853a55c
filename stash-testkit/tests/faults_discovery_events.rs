//! Fault injection, discovery, metadata-only watches and the kube-runtime event recorder.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, ListParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::discovery::Discovery;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use stash_testkit::{FakeApiServer, FaultRule};

const WAIT: Duration = Duration::from_secs(20);

async fn setup() -> (FakeApiServer, Client) {
    let server = FakeApiServer::start().await.unwrap();
    let client = Client::new(server.router(), "default");
    (server, client)
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

#[tokio::test]
async fn injected_failures_and_delays_apply_n_times() {
    let (server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    server
        .faults()
        .inject(FaultRule::fail("create", "configmaps", 503, 1));
    let err = cms
        .create(&PostParams::default(), &cm("a"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 503),
        "{err:?}"
    );
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();

    server
        .faults()
        .inject(FaultRule::fail("get", "configmaps", 429, 1));
    let err = cms.get("a").await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 429 && s.reason == "TooManyRequests"),
        "{err:?}"
    );

    server.faults().inject(FaultRule::delay(
        "get",
        "configmaps",
        Duration::from_millis(300),
        1,
    ));
    let t = Instant::now();
    cms.get("a").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    let t = Instant::now();
    cms.get("a").await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(300));
    assert!(server.faults().list().is_empty());
}

#[tokio::test]
async fn a_failure_after_the_fact_keeps_the_write() {
    let (server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    server
        .faults()
        .inject(FaultRule::fail_after("create", "configmaps", 500, 1));
    let err = cms
        .create(&PostParams::default(), &cm("lost-answer"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 500),
        "{err:?}"
    );
    // The create took effect: the object is there, and creating it again is a conflict.
    cms.get("lost-answer").await.unwrap();
    let again = cms
        .create(&PostParams::default(), &cm("lost-answer"))
        .await
        .unwrap_err();
    assert!(
        matches!(&again, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{again:?}"
    );
}

#[tokio::test]
async fn watchers_recover_from_cut_streams() {
    let (server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let mut names = watcher(cms.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    cms.create(&PostParams::default(), &cm("before"))
        .await
        .unwrap();
    let first = tokio::time::timeout(WAIT, names.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("before"));
    server.faults().cut_watches();
    tokio::time::sleep(Duration::from_millis(50)).await;
    cms.create(&PostParams::default(), &cm("after"))
        .await
        .unwrap();
    let next = tokio::time::timeout(WAIT, names.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        next.metadata.name.as_deref(),
        Some("after"),
        "the watch resumed from its last resourceVersion"
    );
}

#[tokio::test]
async fn discovery_lists_builtins_and_new_crds() {
    let (_server, client) = setup().await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    let crd = serde_json::from_value(json!({
        "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster",
                 "names": {"kind": "Gadget", "plural": "gadgets"},
                 "versions": [{"name": "v1alpha1", "served": true, "storage": false, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                              {"name": "v1beta1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    for group in [
        "",
        "batch",
        "apps",
        "rbac.authorization.k8s.io",
        "coordination.k8s.io",
        "events.k8s.io",
        "apiextensions.k8s.io",
        "example.com",
    ] {
        assert!(discovery.has_group(group), "missing group {group:?}");
    }
    let example = discovery.get("example.com").unwrap();
    assert_eq!(example.preferred_version(), Some("v1beta1"));
    let (ar, caps) = example.recommended_kind("Gadget").unwrap();
    assert_eq!(ar.plural, "gadgets");
    assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
    let aggregated = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    assert!(
        aggregated.has_group("example.com")
            && aggregated.has_group("batch")
            && aggregated.has_group("")
    );
    let (ar, _) = aggregated
        .get("example.com")
        .unwrap()
        .recommended_kind("Gadget")
        .unwrap();
    assert_eq!(ar.version, "v1beta1");
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
}

#[tokio::test]
async fn metadata_watcher_gets_partial_objects() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let metas: Api<PartialObjectMeta<ConfigMap>> = Api::default_namespaced(client.clone());
    let mut stream = watcher(metas, watcher::Config::default())
        .applied_objects()
        .boxed();
    let mut labelled = cm("meta");
    labelled.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
    cms.create(&PostParams::default(), &labelled).await.unwrap();
    let got = tokio::time::timeout(WAIT, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.metadata.name.as_deref(), Some("meta"));
    assert_eq!(got.metadata.labels.unwrap()["a"], "b");
    let listed = cms.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
}

#[tokio::test]
async fn recorder_creates_then_updates_an_event_series() {
    let (_server, client) = setup().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let target = cms
        .create(&PostParams::default(), &cm("subject"))
        .await
        .unwrap();
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: target.metadata.name.clone(),
        namespace: Some("default".into()),
        uid: target.metadata.uid.clone(),
        ..ObjectReference::default()
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "stash-operator".into(),
            instance: None,
        },
    );
    let event = Event {
        type_: EventType::Normal,
        reason: "Synced".into(),
        note: Some("all good".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();
    let events: Api<K8sEvent> = Api::default_namespaced(client);
    let listed = events.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].reason.as_deref(), Some("Synced"));
    assert_eq!(listed[0].series.as_ref().map(|s| s.count), Some(2));
}
