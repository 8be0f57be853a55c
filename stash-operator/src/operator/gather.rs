//! Reads: everything a planner needs about one object, in one place.

use super::{cache, Context};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use stash_core::api::{
    AppBinding, BackupConfiguration, BackupSession, Function, ObjectRef, Repository,
    RestoreSession, TargetRef, Task, TypedObjectReference,
};
use stash_core::plan::backup_session::SiblingSession;
use stash_core::plan::labels::{INVOKER_NAME, INVOKER_TYPE};
use stash_core::plan::ObjectKey;
use std::collections::{BTreeMap, BTreeSet};

/// A read that failed for a reason other than "not found".
pub type ReadResult<T> = Result<T, kube::Error>;

/// `Ok(None)` on 404.
pub async fn get_opt<K>(api: &Api<K>, name: &str) -> ReadResult<Option<K>>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await
}

/// The Repository an invoker references, and its storage Secret's key names.
pub async fn repository(
    ctx: &Context,
    ns: &str,
    r: Option<&ObjectRef>,
) -> ReadResult<(Option<Repository>, Option<BTreeSet<String>>, bool)> {
    let Some(r) = r.filter(|r| !r.name.is_empty()) else {
        return Ok((None, None, false));
    };
    let repo_ns = r
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| ns.to_string());
    let repo = match ctx.caches().await {
        Some(c) => cache::get(&c.repositories, &repo_ns, &r.name),
        None => {
            get_opt(
                &Api::<Repository>::namespaced(ctx.client.clone(), &repo_ns),
                &r.name,
            )
            .await?
        }
    };
    let secret_name = repo
        .as_ref()
        .and_then(|x| x.spec.backend.storage_secret_name.clone())
        .filter(|s| !s.is_empty());
    // A 403 is an answer, not an error: the planner tells the user which binding is missing.
    let mut forbidden = false;
    let keys = match secret_name {
        Some(name) => match get_opt(
            &Api::<Secret>::namespaced(ctx.client.clone(), &repo_ns),
            &name,
        )
        .await
        {
            Ok(secret) => secret.map(|s| {
                let mut keys: BTreeSet<String> = s.data.unwrap_or_default().into_keys().collect();
                keys.extend(s.string_data.unwrap_or_default().into_keys());
                keys
            }),
            Err(kube::Error::Api(status)) if status.code == 403 => {
                forbidden = true;
                None
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    Ok((repo, keys, forbidden))
}

/// The AppBinding a target references.
pub async fn appbinding(
    ctx: &Context,
    ns: &str,
    r: Option<&TargetRef>,
) -> ReadResult<Option<AppBinding>> {
    let Some(r) = r else { return Ok(None) };
    let Some(name) = r.name.clone().filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if r.kind.as_deref() != Some("AppBinding") {
        return Ok(None);
    }
    let target_ns = r
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| ns.to_string());
    if let Some(c) = ctx.caches().await {
        return Ok(cache::get(&c.appbindings, &target_ns, &name));
    }
    get_opt(
        &Api::<AppBinding>::namespaced(ctx.client.clone(), &target_ns),
        &name,
    )
    .await
}

/// Tasks and Functions by name.
pub async fn catalog(
    ctx: &Context,
) -> ReadResult<(BTreeMap<String, Task>, BTreeMap<String, Function>)> {
    if let Some(c) = ctx.caches().await {
        let tasks = cache::all(&c.tasks);
        let functions = cache::all(&c.functions);
        return Ok((
            tasks.into_iter().map(|t| (t.name_any(), t)).collect(),
            functions.into_iter().map(|f| (f.name_any(), f)).collect(),
        ));
    }
    let tasks = Api::<Task>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?;
    let functions = Api::<Function>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?;
    Ok((
        tasks.items.into_iter().map(|t| (t.name_any(), t)).collect(),
        functions
            .items
            .into_iter()
            .map(|f| (f.name_any(), f))
            .collect(),
    ))
}

/// Labels of a namespace.
pub async fn namespace_labels(ctx: &Context, ns: &str) -> ReadResult<BTreeMap<String, String>> {
    if let Some(c) = ctx.caches().await {
        return Ok(cache::namespace_labels(&c.namespaces, ns));
    }
    Ok(get_opt(&Api::<Namespace>::all(ctx.client.clone()), ns)
        .await?
        .and_then(|n| n.metadata.labels)
        .unwrap_or_default())
}

/// The kinds the BackupConfiguration planner creates, to find orphans among.
const CHILD_KINDS: [(&str, &str, &str); 4] = [
    ("v1", "ServiceAccount", "serviceaccounts"),
    ("rbac.authorization.k8s.io/v1", "Role", "roles"),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
    ),
    ("batch/v1", "CronJob", "cronjobs"),
];

/// Children of an invoker, found by its labels, with their resourceVersions.
pub async fn children(
    ctx: &Context,
    ns: &str,
    kind: &str,
    name: &str,
) -> ReadResult<BTreeMap<ObjectKey, String>> {
    let selector = format!(
        "{INVOKER_TYPE}={kind},{INVOKER_NAME}={}",
        stash_core::names::label_value(name)
    );
    let mut out = BTreeMap::new();
    for (api_version, child_kind, plural) in CHILD_KINDS {
        let ar = super::apply::api_resource(api_version, child_kind, plural);
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
        for o in api
            .list_metadata(&ListParams::default().labels(&selector))
            .await?
            .items
        {
            let key = ObjectKey {
                api_version: api_version.into(),
                kind: child_kind.into(),
                namespace: Some(ns.into()),
                name: o.name_any(),
            };
            out.insert(key, o.resource_version().unwrap_or_default());
        }
    }
    Ok(out)
}

/// The sessions of a BackupConfiguration, found by `spec.invoker` (a hand-written session
/// often lacks the invoker labels): every session of the namespace, filtered by spec.
pub async fn sibling_sessions(
    ctx: &Context,
    ns: &str,
    invoker: &str,
) -> ReadResult<Vec<SiblingSession>> {
    let list = Api::<BackupSession>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default())
        .await?;
    Ok(stash_core::plan::backup_session::siblings_of(
        &list.items,
        ns,
        invoker,
    ))
}

/// A Job and its pods.
pub async fn job_and_pods(
    ctx: &Context,
    ns: &str,
    job_name: &str,
) -> ReadResult<(Option<Job>, Vec<Pod>)> {
    let job = get_opt(&Api::<Job>::namespaced(ctx.client.clone(), ns), job_name).await?;
    let pods = match &job {
        Some(_) => {
            Api::<Pod>::namespaced(ctx.client.clone(), ns)
                .list(&ListParams::default().labels(&format!("job-name={job_name}")))
                .await?
                .items
        }
        None => Vec::new(),
    };
    Ok((job, pods))
}

/// The invokers that reference a Repository.
pub async fn repository_references(
    ctx: &Context,
    repo: &Repository,
) -> ReadResult<Vec<TypedObjectReference>> {
    let ns = repo.namespace().unwrap_or_default();
    let name = repo.name_any();
    use stash_core::plan::repository::{invoker_reference, references_repository};
    // Borrowed names: this runs for every invoker in the cluster, per Repository.
    let refers = |kind: &str, meta: &ObjectMeta, repo: Option<&ObjectRef>| {
        let object_ns = meta.namespace.as_deref().unwrap_or_default();
        let object = meta.name.as_deref().unwrap_or_default();
        references_repository(object_ns, repo, &ns, &name)
            .then(|| invoker_reference(kind, object_ns, object))
    };
    let mut refs: Vec<TypedObjectReference> = match ctx.caches().await {
        Some(c) => c
            .references
            .of(&ns, &name)
            .into_iter()
            .map(|(kind, object_ns, object)| invoker_reference(kind, &object_ns, &object))
            .collect(),
        None => {
            let backups = Api::<BackupConfiguration>::all(ctx.client.clone())
                .list(&ListParams::default())
                .await?
                .items;
            let restores = Api::<RestoreSession>::all(ctx.client.clone())
                .list(&ListParams::default())
                .await?
                .items;
            let backups = backups.into_iter().filter_map(|bc| {
                refers(
                    "BackupConfiguration",
                    &bc.metadata,
                    bc.spec.repository.as_ref(),
                )
            });
            let restores = restores.into_iter().filter_map(|rs| {
                refers("RestoreSession", &rs.metadata, rs.spec.repository.as_ref())
            });
            backups.chain(restores).collect()
        }
    };
    // The caches hold objects in no particular order; a list answers in this one.
    refs.sort_by(|a, b| (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name)));
    Ok(refs)
}
