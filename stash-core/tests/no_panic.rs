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

/// The fixture texts, mutated below into arbitrary (mostly broken) YAML.
fn fixture_texts() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let mut texts = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("fixtures/")
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for dir in dirs {
        for file in [dir.join("objects.yaml")] {
            if let Ok(t) = std::fs::read_to_string(file) {
                texts.push(t);
            }
        }
    }
    for f in std::fs::read_dir(root.join("invalid"))
        .expect("fixtures/invalid")
        .flatten()
    {
        if let Ok(t) = std::fs::read_to_string(f.path()) {
            texts.push(t);
        }
    }
    texts
}

/// One edit of a text: cut a range, repeat a range, or put arbitrary characters in.
#[derive(Debug, Clone)]
enum Edit {
    Cut(usize, usize),
    Repeat(usize, usize),
    Insert(usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0usize..200).prop_map(|(at, n)| Edit::Cut(at, n)),
        (any::<usize>(), 0usize..200).prop_map(|(at, n)| Edit::Repeat(at, n)),
        (any::<usize>(), "(\\PC|[\\n\\t:{}\\[\\]&*!|>'\"%@`-]){0,40}")
            .prop_map(|(at, s)| Edit::Insert(at, s)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let len = chars.len().max(1);
        match e {
            Edit::Cut(at, n) => {
                let a = at % len;
                let b = (a + n).min(chars.len());
                chars.drain(a.min(chars.len())..b);
            }
            Edit::Repeat(at, n) => {
                let a = (at % len).min(chars.len());
                let b = (a + n).min(chars.len());
                let copy: Vec<char> = chars[a..b].to_vec();
                chars.splice(b..b, copy);
            }
            Edit::Insert(at, s) => {
                let a = (at % len).min(chars.len());
                chars.splice(a..a, s.chars());
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// What `stash render` does with a file: read the YAML strictly, then plan everything.
    /// Whatever the text, that ends in objects or an error, never in a panic.
    #[test]
    fn render_never_panics_on_arbitrary_yaml(pick in any::<prop::sample::Index>(), edits in prop::collection::vec(edit(), 1..6), noise in "\\PC{0,200}") {
        let texts = fixture_texts();
        let text = apply(&texts[pick.index(texts.len())], &edits);
        let now = Time("2026-11-27T15:00:00Z".parse().expect("timestamp"));
        for input in [text.as_str(), noise.as_str()] {
            let mut world = World::with_catalog("img");
            if world.load_yaml("input.yaml", input).is_ok() {
                let _ = world.plan_all(&Settings::default(), &now);
            }
        }
    }
}
