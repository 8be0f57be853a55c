//! Carries out a plan: server-side apply of children, deletions, finalizer, status, events.
//! Decides nothing: every choice was made by the planner.

use super::Context;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy,
};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};
use stash_core::plan::{finalizer_for, EventSpec, FinalizerAction, ObjectKey, Plan, FIELD_MANAGER};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

/// An ApiResource for a kind whose plural we know.
pub fn api_resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.to_string()),
    };
    ApiResource {
        group,
        version,
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        plural: plural.to_string(),
    }
}

/// The plural of the kinds planners emit (all are regular: lower-case plus `s`).
fn plural(kind: &str) -> String {
    format!("{}s", kind.to_ascii_lowercase())
}

fn dynamic_api(
    ctx: &Context,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let ar = api_resource(api_version, kind, &plural(kind));
    match namespace {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &ar),
        None => Api::all_with(ctx.client.clone(), &ar),
    }
}

/// Errors while carrying out a plan.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// An object in the plan lacks apiVersion, kind or name (a planner bug).
    #[error("planned object without apiVersion/kind/name: {0}")]
    Malformed(String),
    /// The API refused a write.
    #[error("{action} {what}: {source}")]
    Api {
        /// What was being done.
        action: &'static str,
        /// To what.
        what: String,
        /// The error.
        source: kube::Error,
    },
}

impl ApplyError {
    /// A stable reason for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Malformed(_) => "MalformedPlan",
            ApplyError::Api { action, .. } => action,
        }
    }
}

/// What this process last applied to each child: a hash of the applied body and one of the
/// resourceVersion the server answered (0 while the apply is under way). A child whose live
/// resourceVersion is still that one, and whose desired body hashes the same, is not applied
/// again (an apply that changes nothing still costs the server a request; at 10,000
/// BackupConfigurations, 7 per reconcile). Three numbers per child, no string: the map holds
/// 70,000 children at 10,000 BackupConfigurations.
#[derive(Default)]
pub struct Applied {
    by_key: std::sync::Mutex<HashMap<u64, (u64, u64)>>,
}

fn hash_of(v: &impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fn key_hash(k: &ObjectKey) -> u64 {
    hash_of(&(&k.api_version, &k.kind, &k.namespace, &k.name))
}

/// The hash [`Applied`] keeps of a resourceVersion; never 0, which marks an apply under way.
fn version_hash(resource_version: &str) -> u64 {
    hash_of(&resource_version).max(1)
}

impl Applied {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (u64, u64)>> {
        // Entries are replaced whole: a poisoned map is still consistent.
        self.by_key.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `body` was applied to `key` and the child is unchanged since (`live`: its
    /// resourceVersion now).
    fn current(&self, key: &ObjectKey, body: u64, live: Option<&String>) -> bool {
        let Some(live) = live else { return false };
        self.lock().get(&key_hash(key)) == Some(&(body, version_hash(live)))
    }

    /// Whether a change of `key` seen at resourceVersion `rv` is this process's own write: an
    /// apply of it is under way, or the last one answered with `rv`. Its invoker's reconcile
    /// planned it, so it need not start another.
    pub fn own_write(&self, key: &ObjectKey, rv: &str) -> bool {
        self.lock()
            .get(&key_hash(key))
            .is_some_and(|&(_, applied)| applied == 0 || applied == version_hash(rv))
    }

    /// Records an apply of `body` to `key`: `Some("")` under way, `Some(rv)` answered with
    /// `rv`, `None` failed (forgotten).
    fn record(&self, key: &ObjectKey, body: u64, rv: Option<String>) {
        let mut map = self.lock();
        match rv {
            Some(rv) if rv.is_empty() => map.insert(key_hash(key), (body, 0)),
            Some(rv) => map.insert(key_hash(key), (body, version_hash(&rv))),
            None => map.remove(&key_hash(key)),
        };
    }
}

/// Carries out `plan` for `obj`: finalizer first (so children never outlive cleanup), then
/// applies, deletions, the status (with the object's resourceVersion, so a status the job
/// wrote meanwhile is never overwritten), then events.
pub async fn execute<K>(ctx: &Context, obj: &K, plan: &Plan) -> Result<(), ApplyError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    execute_with(ctx, obj, plan, None).await
}

/// [`execute`], knowing the live children's resourceVersions (`live`): a child this process
/// applied with the same body, unchanged since, is not applied again.
pub async fn execute_with<K>(
    ctx: &Context,
    obj: &K,
    plan: &Plan,
    live: Option<&BTreeMap<ObjectKey, String>>,
) -> Result<(), ApplyError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let ns = obj.namespace();
    let name = obj.name_any();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns.as_deref().unwrap_or("default"));
    let what = format!(
        "{} {}/{}",
        K::kind(&()),
        ns.clone().unwrap_or_default(),
        name
    );
    let api_err = |action: &'static str, what: &str| {
        let what = what.to_string();
        move |source| ApplyError::Api {
            action,
            what,
            source,
        }
    };

    // The status is written against the version the plan was made from (or the one the
    // finalizer patch produced): a status the job wrote meanwhile makes it fail with 409 and
    // the reconcile starts over on fresh data.
    let mut resource_version = obj.resource_version();
    if plan.finalizer == FinalizerAction::Add {
        let mut finalizers = obj.finalizers().to_vec();
        finalizers.push(finalizer_for(&K::kind(&())).to_string());
        let patch =
            json!({"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}});
        let updated = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err("AddFinalizer", &what))?;
        resource_version = updated.resource_version();
    }

    let params = PatchParams::apply(FIELD_MANAGER).force();
    for object in &plan.apply {
        let (api_version, kind, obj_name, obj_ns) = identity(object)?;
        let key = ObjectKey {
            api_version: api_version.clone(),
            kind: kind.clone(),
            namespace: obj_ns.clone(),
            name: obj_name.clone(),
        };
        let body = hash_of(&object.to_string());
        if let Some(live) = live {
            if ctx.applied.current(&key, body, live.get(&key)) {
                continue;
            }
        }
        let child = dynamic_api(ctx, &api_version, &kind, obj_ns.as_deref());
        let label = format!("{kind} {}/{obj_name}", obj_ns.clone().unwrap_or_default());
        // Under way (no resourceVersion yet): the child's watch event may come first.
        ctx.applied.record(&key, body, Some(String::new()));
        let applied = match child.patch(&obj_name, &params, &Patch::Apply(object)).await {
            Ok(applied) => applied,
            Err(e) => {
                ctx.applied.record(&key, body, None);
                return Err(api_err("Apply", &label)(e));
            }
        };
        ctx.applied.record(&key, body, applied.resource_version());
    }

    for key in &plan.delete {
        delete(ctx, key).await?;
    }

    if let Some(status) = &plan.status {
        let patch = json!({"metadata": {"resourceVersion": resource_version}, "status": status});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err("UpdateStatus", &what))?;
    }

    if plan.finalizer == FinalizerAction::Remove {
        let keep: Vec<String> = obj
            .finalizers()
            .iter()
            .filter(|f| f.as_str() != finalizer_for(&K::kind(&())))
            .cloned()
            .collect();
        let patch = json!({"metadata": {"finalizers": keep}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err("RemoveFinalizer", &what))?;
    }

    let reference = object_reference(obj);
    for e in &plan.events {
        if let Some(name) = &e.name {
            // An event that must exist (a session's end) fails the reconcile, which plans it
            // again; its name keeps the repeat from adding a second one.
            ctx.once_events
                .publish(&ctx.client, name, e, &reference)
                .await
                .map_err(api_err("PublishEvent", &what))?;
            continue;
        }
        // Other events are best effort: a lost event must not fail the reconcile.
        if let Err(err) = ctx.recorder.publish(&kube_event(e), &reference).await {
            tracing::warn!(object = %what, error = %err, "event not published");
        }
    }
    Ok(())
}

/// A planned event as the Events API takes it (reasons and actions without spaces).
pub fn kube_event(e: &EventSpec) -> Event {
    Event {
        type_: if e.type_ == "Warning" {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: e.reason.replace(' ', ""),
        note: Some(e.message.chars().take(1000).collect()),
        action: e.source.replace(' ', ""),
        secondary: None,
    }
}

/// Deletes one object with background propagation; a missing object is fine.
pub async fn delete(ctx: &Context, key: &ObjectKey) -> Result<(), ApplyError> {
    let api = dynamic_api(ctx, &key.api_version, &key.kind, key.namespace.as_deref());
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(&key.name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(ApplyError::Api {
            action: "Delete",
            what: format!(
                "{} {}/{}",
                key.kind,
                key.namespace.clone().unwrap_or_default(),
                key.name
            ),
            source,
        }),
    }
}

fn identity(object: &Value) -> Result<(String, String, String, Option<String>), ApplyError> {
    let s = |p: &str| object.pointer(p).and_then(Value::as_str).map(String::from);
    match (s("/apiVersion"), s("/kind"), s("/metadata/name")) {
        (Some(a), Some(k), Some(n)) => Ok((a, k, n, s("/metadata/namespace"))),
        _ => Err(ApplyError::Malformed(
            object.to_string().chars().take(200).collect(),
        )),
    }
}

fn object_reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).to_string()),
        kind: Some(K::kind(&()).to_string()),
        name: obj.meta().name.clone(),
        namespace: obj.meta().namespace.clone(),
        uid: obj.meta().uid.clone(),
        resource_version: obj.meta().resource_version.clone(),
        ..Default::default()
    }
}
