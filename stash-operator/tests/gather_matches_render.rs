//! `stash render` shows what the operator does: for every fixture, the objects go into the
//! fake API server (over HTTP, as a user would apply them), the operator gathers each
//! planner's inputs from it (API reads, and again from its reflector caches), and the result
//! must equal the inputs `render` builds from the same files. Before both followed
//! `stash_core::gather`, a BackupConfiguration with a long name had no children in `render`
//! (it matched the raw name against bounded label values) while the operator found them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::core::DeserializeGuard;
use kube::discovery::{pinned_kind, Scope};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use stash_core::api::{BackupConfiguration, BackupSession, Repository, RestoreSession};
use stash_core::plan::{Settings, FIELD_MANAGER};
use stash_core::world::{Inputs, World};
use stash_operator::operator::clock::Clock;
use stash_operator::operator::{cache, children, gather, Context};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const NOW: &str = "2026-11-27T15:00:00Z";

struct FixedClock(Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every fixture set: each folder under `fixtures/` with an `objects.yaml` (the planner cases and
/// `update-status/*`), then each file of `fixtures/invalid/`.
fn fixture_sets() -> Vec<(String, Vec<PathBuf>)> {
    fn walk(root: &Path, dir: &Path, sets: &mut Vec<(String, Vec<PathBuf>)>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("fixture dir readable")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        let name = dir
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if name == "invalid" {
            for f in entries.into_iter().filter(|p| p.is_file()) {
                let file = f.file_name().unwrap().to_string_lossy().into_owned();
                sets.push((format!("invalid/{file}"), vec![f]));
            }
            return;
        }
        let objects = dir.join("objects.yaml");
        if objects.is_file() {
            sets.push((name, vec![objects]));
        }
        for sub in entries.into_iter().filter(|p| p.is_dir()) {
            walk(root, &sub, sets);
        }
    }
    let root = repo_root().join("fixtures");
    let mut sets = Vec::new();
    walk(&root, &root, &mut sets);
    sets
}

/// The objects of the files, `List`s flattened.
fn documents(files: &[PathBuf]) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| e.to_string())?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).map_err(|e| e.to_string())?;
            if v.is_null() {
                continue;
            }
            match v["kind"].as_str() {
                Some(k) if k.ends_with("List") => {
                    out.extend(v["items"].as_array().cloned().unwrap_or_default())
                }
                _ => out.push(v),
            }
        }
    }
    Ok(out)
}

async fn api_for(client: &Client, obj: &Value) -> Result<Api<DynamicObject>, String> {
    let api_version = obj["apiVersion"].as_str().ok_or("no apiVersion")?;
    let kind = obj["kind"].as_str().ok_or("no kind")?;
    let gvk = match api_version.split_once('/') {
        Some((g, v)) => GroupVersionKind::gvk(g, v, kind),
        None => GroupVersionKind::gvk("", api_version, kind),
    };
    let (ar, caps) = pinned_kind(client, &gvk)
        .await
        .map_err(|e| format!("{api_version} {kind}: {e}"))?;
    Ok(match caps.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            obj["metadata"]["namespace"].as_str().unwrap_or("default"),
            &ar,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &ar),
    })
}

/// Stores an object as the API server would hold it after a user applied it and controllers
/// wrote its status: created, status through the status subresource, and deleted (held by its
/// finalizers) when the file says it is being deleted.
async fn store(client: &Client, obj: &Value) -> Result<(), String> {
    if let Some(ns) = obj["metadata"]["namespace"].as_str() {
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        if namespaces
            .get_opt(ns)
            .await
            .map_err(|e| e.to_string())?
            .is_none()
        {
            let body = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
            namespaces
                .create(&PostParams::default(), &body)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let api = api_for(client, obj).await?;
    let name = obj["metadata"]["name"].as_str().ok_or("no name")?;
    let mut body = obj.clone();
    let status = body.as_object_mut().and_then(|o| o.remove("status"));
    let deleting = body["metadata"]
        .as_object_mut()
        .and_then(|m| m.remove("deletionTimestamp"))
        .is_some();
    let body: DynamicObject = serde_json::from_value(body).map_err(|e| e.to_string())?;
    api.create(&PostParams::default(), &body)
        .await
        .map_err(|e| format!("create: {e}"))?;
    if let Some(status) = status {
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .map_err(|e| format!("status: {e}"))?;
    }
    if deleting {
        api.delete(name, &DeleteParams::default())
            .await
            .map_err(|e| format!("delete: {e}"))?;
    }
    Ok(())
}

/// What storing an object changes and gathering does not decide: identity and bookkeeping the
/// server assigns (uid, times, versions, managed fields) and the defaults it fills into Jobs
/// and Pods (their specs and a pod's QoS class; planners read names, labels and status).
/// Applied to both sides.
fn normalized(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if matches!(map.get("kind").and_then(Value::as_str), Some("Job" | "Pod")) {
                    map.remove("spec");
                    if let Some(Value::Object(status)) = map.get_mut("status") {
                        status.remove("qosClass");
                    }
                }
                if let Some(Value::Object(meta)) = map.get_mut("metadata") {
                    for k in [
                        "uid",
                        "resourceVersion",
                        "creationTimestamp",
                        "deletionTimestamp",
                        "deletionGracePeriodSeconds",
                        "generation",
                        "managedFields",
                    ] {
                        meta.remove(k);
                    }
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// The inputs as JSON, every field named (a new field fails to compile here until added).
fn inputs_json(inputs: &Inputs) -> Value {
    let siblings = |s: &[stash_core::plan::backup_session::SiblingSession]| {
        // Creation times are the server's (it assigns them), so only names and phases.
        s.iter()
            .map(|s| json!([s.name, s.phase]))
            .collect::<Vec<_>>()
    };
    let v = match inputs {
        Inputs::BackupConfiguration(i) => {
            let stash_core::plan::backup_configuration::BackupConfigurationInputs {
                bc,
                repository,
                storage_secret_keys,
                storage_secret_forbidden,
                target,
                namespace_labels,
                tasks,
                functions,
                children,
                settings,
                now,
            } = i.as_ref();
            json!({"bc": bc, "repository": repository, "storageSecretKeys": storage_secret_keys,
                "storageSecretForbidden": storage_secret_forbidden, "target": target,
                "namespaceLabels": namespace_labels, "tasks": tasks, "functions": functions,
                "children": children, "settings": settings, "now": now})
        }
        Inputs::BackupSession(i) => {
            let stash_core::plan::backup_session::BackupSessionInputs {
                session,
                invoker,
                repository,
                target,
                tasks,
                functions,
                job,
                pods,
                siblings: sibs,
                settings,
                now,
            } = i.as_ref();
            json!({"session": session, "invoker": invoker, "repository": repository,
                "target": target, "tasks": tasks, "functions": functions, "job": job,
                "pods": pods, "siblings": siblings(sibs), "settings": settings, "now": now})
        }
        Inputs::RestoreSession(i) => {
            let stash_core::plan::restore_session::RestoreSessionInputs {
                session,
                repository,
                storage_secret_keys,
                storage_secret_forbidden,
                target,
                tasks,
                functions,
                job,
                pods,
                settings,
                now,
            } = i.as_ref();
            json!({"session": session, "repository": repository,
                "storageSecretKeys": storage_secret_keys,
                "storageSecretForbidden": storage_secret_forbidden, "target": target,
                "tasks": tasks, "functions": functions, "job": job, "pods": pods,
                "settings": settings, "now": now})
        }
        Inputs::Repository(i) => {
            let stash_core::plan::repository::RepositoryInputs {
                repository,
                references,
                wipe_out_job,
                wipe_out_pods,
                settings,
                now,
            } = i.as_ref();
            json!({"repository": repository, "references": references,
                "wipeOutJob": wipe_out_job, "wipeOutPods": wipe_out_pods,
                "settings": settings, "now": now})
        }
    };
    normalized(v)
}

/// The operator's inputs for the object `render`'s inputs are about.
async fn gathered(ctx: &Context, render: &Inputs) -> Result<Inputs, String> {
    let e = |e: kube::Error| e.to_string();
    let key = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        (
            m.namespace.clone().unwrap_or_default(),
            m.name.clone().unwrap_or_default(),
        )
    };
    let client = ctx.client.clone();
    Ok(match render {
        Inputs::BackupConfiguration(i) => {
            let (ns, name) = key(&i.bc.metadata);
            let bc = Api::<BackupConfiguration>::namespaced(client, &ns)
                .get(&name)
                .await
                .map_err(e)?;
            Inputs::BackupConfiguration(Box::new(
                gather::backup_configuration_inputs(ctx, &bc)
                    .await
                    .map_err(e)?,
            ))
        }
        Inputs::BackupSession(i) => {
            let (ns, name) = key(&i.session.metadata);
            let s = Api::<BackupSession>::namespaced(client, &ns)
                .get(&name)
                .await
                .map_err(e)?;
            Inputs::BackupSession(Box::new(
                gather::backup_session_inputs(ctx, &s).await.map_err(e)?,
            ))
        }
        Inputs::RestoreSession(i) => {
            let (ns, name) = key(&i.session.metadata);
            let rs = Api::<RestoreSession>::namespaced(client, &ns)
                .get(&name)
                .await
                .map_err(e)?;
            Inputs::RestoreSession(Box::new(
                gather::restore_session_inputs(ctx, &rs).await.map_err(e)?,
            ))
        }
        Inputs::Repository(i) => {
            let (ns, name) = key(&i.repository.metadata);
            let repo = Api::<Repository>::namespaced(client, &ns)
                .get(&name)
                .await
                .map_err(e)?;
            Inputs::Repository(Box::new(
                gather::repository_inputs(ctx, &repo).await.map_err(e)?,
            ))
        }
    })
}

/// Reflector caches as the running operator has them, synced.
async fn synced_caches(client: &Client) -> (cache::Caches, Vec<tokio::task::JoinHandle<()>>) {
    // Built as the operator builds them (`operator::run_controllers`), minus the controllers.
    let kinds = stash_core::gather::CHILD_KINDS.len();
    let (readiness, ready) = cache::Readiness::new(7 + kinds);
    let references = cache::References::default();
    let index = references.clone();
    let (backup_configurations, f) = cache::reflect_with(client, &readiness, move |event| {
        index.observe("BackupConfiguration", event, |bc: &BackupConfiguration| {
            bc.spec.repository.as_ref()
        })
    });
    let index = references.clone();
    let (restore_sessions, g) = cache::reflect_with(client, &readiness, move |event| {
        index.observe("RestoreSession", event, |rs: &RestoreSession| {
            rs.spec.repository.as_ref()
        })
    });
    let (repositories, c) = cache::reflect::<DeserializeGuard<Repository>>(client, &readiness);
    let (tasks, a) = cache::reflect(client, &readiness);
    let (functions, b) = cache::reflect(client, &readiness);
    let (appbindings, d) = cache::reflect(client, &readiness);
    let (namespaces, e) = cache::reflect(client, &readiness);
    let children = children::Children::default();
    let mut handles = Vec::new();
    for kind in 0..kinds {
        let kind = u8::try_from(kind).unwrap();
        let watch = children::watch(client, &readiness, children.clone(), kind, |_, _| false);
        handles.push(tokio::spawn(cache::drive(watch)));
    }
    handles.extend([
        tokio::spawn(cache::drive(a)),
        tokio::spawn(cache::drive(b)),
        tokio::spawn(cache::drive(c)),
        tokio::spawn(cache::drive(d)),
        tokio::spawn(cache::drive(e)),
        tokio::spawn(cache::drive(f)),
        tokio::spawn(cache::drive(g)),
    ]);
    let caches = cache::Caches {
        tasks,
        functions,
        repositories,
        appbindings,
        namespaces,
        backup_configurations,
        restore_sessions,
        ready,
        references,
        children,
    };
    caches.wait_ready().await;
    (caches, handles)
}

/// Compares `render`'s inputs with the operator's, per object; returns the differences.
async fn compare(
    label: &str,
    ctx: &Context,
    render: &[Inputs],
    only: impl Fn(&Inputs) -> bool,
) -> Vec<String> {
    let mut diffs = Vec::new();
    for r in render.iter().filter(|r| only(r)) {
        let want = inputs_json(r);
        match gathered(ctx, r).await {
            Ok(got) => {
                let got = inputs_json(&got);
                if got != want {
                    diffs.push(format!(
                        "{label}: {}\n  render:   {}\n  operator: {}",
                        what(r),
                        first_difference(&want, &got).0,
                        first_difference(&want, &got).1,
                    ));
                }
            }
            Err(err) => diffs.push(format!("{label}: {}: gathering failed: {err}", what(r))),
        }
    }
    diffs
}

fn what(i: &Inputs) -> String {
    let (kind, meta) = match i {
        Inputs::BackupConfiguration(i) => ("BackupConfiguration", &i.bc.metadata),
        Inputs::BackupSession(i) => ("BackupSession", &i.session.metadata),
        Inputs::RestoreSession(i) => ("RestoreSession", &i.session.metadata),
        Inputs::Repository(i) => ("Repository", &i.repository.metadata),
    };
    format!("{kind} {}", meta.name.as_deref().unwrap_or_default())
}

/// The first place where two values differ, as `path = value` on each side.
fn first_difference(a: &Value, b: &Value) -> (String, String) {
    fn go(path: String, a: &Value, b: &Value) -> Option<(String, String)> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                keys.into_iter().find_map(|k| {
                    go(
                        format!("{path}.{k}"),
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                    )
                })
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
                .iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (p, q))| go(format!("{path}[{i}]"), p, q)),
            _ if a == b => None,
            _ => Some((format!("{path} = {a}"), format!("{path} = {b}"))),
        }
    }
    go(String::new(), a, b).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_gathers_what_render_plans_from() {
    let settings = Settings::default();
    let now: Timestamp = NOW.parse().unwrap();
    let mut diffs = Vec::new();
    let mut compared = 0;
    for (name, files) in fixture_sets() {
        let invalid = name.starts_with("invalid/");
        let mut world = World::with_catalog(&settings.image);
        let mut loaded = Ok(());
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            if let Err(e) = world.load_yaml(&f.display().to_string(), &text) {
                loaded = Err(e.to_string());
            }
        }
        let objects = documents(&files).map(|mut objects| {
            // Namespaces first, as a user applying the files in order would need.
            objects.sort_by_key(|o| o["kind"] != "Namespace");
            objects
        });
        let (Ok(()), Ok(objects)) = (loaded, objects) else {
            assert!(invalid, "{name}: fixture does not load");
            println!("skipped {name}: render refuses it, so there are no inputs to compare");
            continue;
        };

        let server = stash_testkit::FakeApiServer::builder()
            .tcp(0)
            .start()
            .await
            .unwrap();
        let kubeconfig =
            kube::config::Kubeconfig::read_from(server.kubeconfig_path().unwrap()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = Client::try_from(config).unwrap();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in stash_core::crd::crds() {
            crds.patch(
                &crd.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await
            .unwrap();
        }
        stash_operator::operator::catalog::apply_default_catalog(&client, &settings.image)
            .await
            .unwrap();
        let mut stored = Ok(());
        for o in &objects {
            if let Err(e) = store(&client, o).await {
                stored = Err(format!("{} {}: {e}", o["kind"], o["metadata"]["name"]));
                break;
            }
        }
        if let Err(e) = stored {
            assert!(invalid, "{name}: the API server refuses it: {e}");
            println!("skipped {name}: the API server refuses it ({e})");
            continue;
        }

        let render = world.inputs_all(&settings, &Time(now));
        let is_session = |i: &Inputs| matches!(i, Inputs::BackupSession(_));
        let context = || {
            Context::new(
                client.clone(),
                settings.clone(),
                Arc::new(FixedClock(now)),
                Duration::from_secs(1),
            )
        };
        let reads = context();
        let cached = context();
        let (caches, handles) = synced_caches(&client).await;
        let _ = cached.caches.set(caches);
        let contexts = [("API reads", &reads), ("caches", &cached)];
        for (how, ctx) in contexts {
            let label = format!("{name} ({how})");
            diffs.extend(compare(&label, ctx, &render, |i| !is_session(i)).await);
        }

        // Sessions are planned after the operator's first pass gave their BackupConfiguration
        // a status, as `render` assumes when the files give none: write that status first.
        for r in &render {
            if let Inputs::BackupConfiguration(i) = r {
                if i.bc.status.is_none() {
                    let status = stash_core::plan::backup_configuration::plan(i).status;
                    Api::<BackupConfiguration>::namespaced(
                        client.clone(),
                        i.bc.metadata.namespace.as_deref().unwrap_or_default(),
                    )
                    .patch_status(
                        &i.bc.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "status": status })),
                    )
                    .await
                    .unwrap();
                }
            }
        }
        for (how, ctx) in contexts {
            let label = format!("{name} ({how})");
            diffs.extend(compare(&label, ctx, &render, is_session).await);
        }
        handles.iter().for_each(|h| h.abort());
        compared += render.len();
    }
    println!("compared the inputs of {compared} planner runs");
    assert!(compared > 100, "only {compared} planner runs compared");
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
