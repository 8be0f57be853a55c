//! Property test: arbitrary field values in every reconciled kind never panic a planner.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use stash_core::plan::Settings;
use stash_core::world::World;

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-zA-Z0-9 ./*,:=${}@_-]{0,80}".prop_map(Value::String),
        Just(json!("*/5 * * * *")),
        Just(json!("2026-11-27T15:00:00Z")),
        Just(json!("AppBinding")),
        Just(json!("Running")),
        Just(json!("Failed")),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let keys = prop::sample::select(vec![
        "schedule",
        "task",
        "name",
        "params",
        "value",
        "repository",
        "namespace",
        "target",
        "ref",
        "kind",
        "alias",
        "retentionPolicy",
        "keepLast",
        "keepDaily",
        "keepTags",
        "paused",
        "backupHistoryLimit",
        "timeOut",
        "retryConfig",
        "maxRetry",
        "delay",
        "hooks",
        "preBackup",
        "postBackup",
        "runtimeSettings",
        "pod",
        "container",
        "tempDir",
        "rules",
        "snapshots",
        "targetHosts",
        "sourceHost",
        "phase",
        "targets",
        "stats",
        "totalHosts",
        "conditions",
        "type",
        "status",
        "backend",
        "s3",
        "rest",
        "url",
        "bucket",
        "endpoint",
        "storageSecretName",
        "invoker",
        "retryLeft",
        "steps",
        "image",
        "args",
        "usagePolicy",
    ]);
    leaf().prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| Value::Object(
                m.into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect::<Map<_, _>>()
            )),
        ]
    })
}

fn object(api_version: &str, kind: &str, name: &str, spec: Value, status: Value) -> Value {
    json!({
        "apiVersion": api_version, "kind": kind,
        "metadata": {"name": name, "namespace": "demo", "creationTimestamp": "2026-11-27T14:00:00Z"},
        "spec": spec, "status": status,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn planners_never_panic(bc in value(), bs in value(), bs_status in value(), rs in value(), repo in value(), ab in value()) {
        let mut world = World::with_catalog("img");
        // Objects that do not deserialize are rejected with an error; the rest are planned.
        for v in [
            object("stash.appscode.com/v1beta1", "BackupConfiguration", "bc", bc, Value::Null),
            object("stash.appscode.com/v1beta1", "BackupSession", "bs", bs, bs_status),
            object("stash.appscode.com/v1beta1", "RestoreSession", "rs", rs, Value::Null),
            object("stash.appscode.com/v1alpha1", "Repository", "repo", repo, Value::Null),
            object("appcatalog.appscode.com/v1alpha1", "AppBinding", "ab", ab, Value::Null),
        ] {
            // The strict-input check reads the same arbitrary values.
            let _ = stash_core::strict::check(&v);
            let _ = world.add(v);
        }
        let now = Time("2026-11-27T15:00:00Z".parse().expect("timestamp"));
        let plans = world.plan_all(&Settings::default(), &now);
        prop_assert!(plans.iter().all(|p| p.object.is_some()));
    }
}
