//! Reads: everything a planner needs about one object, in one place. Which objects count
//! (references, children, a Job's pods) is decided by [`stash_core::gather`], the rules
//! `stash render` follows too.

use super::{cache, Context};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use stash_core::api::{
    AppBinding, BackupConfiguration, BackupSession, Function, ObjectRef, Repository,
    RestoreSession, TargetRef, Task, TypedObjectReference,
};
use stash_core::gather as rules;
use stash_core::plan::backup_configuration::BackupConfigurationInputs;
use stash_core::plan::backup_session::{BackupSessionInputs, SiblingSession};
use stash_core::plan::repository::RepositoryInputs;
use stash_core::plan::restore_session::RestoreSessionInputs;
use stash_core::plan::{self, ObjectKey};
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
    let Some((repo_ns, repo_name)) = rules::repository_key(ns, r) else {
        return Ok((None, None, false));
    };
    let repo = match ctx.caches().await {
        Some(c) => cache::get(&c.repositories, &repo_ns, &repo_name),
        None => {
            get_opt(
                &Api::<Repository>::namespaced(ctx.client.clone(), &repo_ns),
                &repo_name,
            )
            .await?
        }
    };
    let secret = repo
        .as_ref()
        .and_then(|x| rules::storage_secret_key(&(repo_ns, repo_name), x));
    // A 403 is an answer, not an error: the planner tells the user which binding is missing.
    let (keys, forbidden) = match secret {
        Some((secret_ns, name)) => {
            match ctx
                .storage_secrets
                .read(&ctx.client, &secret_ns, &name)
                .await?
            {
                super::secrets::Read::Keys(keys) => (keys, false),
                super::secrets::Read::Forbidden => (None, true),
            }
        }
        None => (None, false),
    };
    Ok((repo, keys, forbidden))
}

/// The AppBinding a target references.
pub async fn appbinding(
    ctx: &Context,
    ns: &str,
    r: Option<&TargetRef>,
) -> ReadResult<Option<AppBinding>> {
    let Some((target_ns, name)) = rules::appbinding_key(ns, r) else {
        return Ok(None);
    };
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
    let stored = match ctx.caches().await {
        Some(c) => cache::namespace_labels(&c.namespaces, ns),
        None => get_opt(&Api::<Namespace>::all(ctx.client.clone()), ns)
            .await?
            .and_then(|n| n.metadata.labels)
            .unwrap_or_default(),
    };
    Ok(rules::namespace_labels(ns, Some(&stored)))
}

/// Children of an invoker, found by its labels, with their resourceVersions.
pub async fn children(
    ctx: &Context,
    ns: &str,
    kind: &str,
    name: &str,
) -> ReadResult<BTreeMap<ObjectKey, String>> {
    if let Some(c) = ctx.caches().await {
        return Ok(c.children.of(ns, kind, name));
    }
    let selector = rules::selector(&rules::child_labels(kind, name));
    let mut out = BTreeMap::new();
    for (api_version, child_kind, plural) in rules::CHILD_KINDS {
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
                .list(
                    &ListParams::default()
                        .labels(&rules::selector(&rules::job_pod_labels(job_name))),
                )
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

/// Inputs of the BackupConfiguration planner for `bc`.
pub async fn backup_configuration_inputs(
    ctx: &Context,
    bc: &BackupConfiguration,
) -> ReadResult<BackupConfigurationInputs> {
    Ok(backup_configuration_inputs_and_children(ctx, bc).await?.0)
}

/// Inputs of the BackupConfiguration planner for `bc`, with its live children and their
/// resourceVersions (so the apply step can skip children it applied unchanged).
pub async fn backup_configuration_inputs_and_children(
    ctx: &Context,
    bc: &BackupConfiguration,
) -> ReadResult<(BackupConfigurationInputs, BTreeMap<ObjectKey, String>)> {
    let ns = bc.namespace().unwrap_or_else(|| "default".into());
    let (repository, storage_secret_keys, storage_secret_forbidden) =
        repository(ctx, &ns, bc.spec.repository.as_ref()).await?;
    let target = appbinding(
        ctx,
        &ns,
        bc.spec.target.as_ref().and_then(|t| t.r#ref.as_ref()),
    )
    .await?;
    let (tasks, functions) = catalog(ctx).await?;
    let live = children(ctx, &ns, "BackupConfiguration", &bc.name_any()).await?;
    let inputs = BackupConfigurationInputs {
        namespace_labels: namespace_labels(ctx, &ns).await?,
        children: live.keys().cloned().collect(),
        bc: bc.clone(),
        repository,
        storage_secret_keys,
        storage_secret_forbidden,
        target,
        tasks,
        functions,
        settings: ctx.settings.clone(),
        now: Some(ctx.now()),
    };
    Ok((inputs, live))
}

/// Inputs of the BackupSession planner for `session`.
pub async fn backup_session_inputs(
    ctx: &Context,
    session: &BackupSession,
) -> ReadResult<BackupSessionInputs> {
    let ns = session.namespace().unwrap_or_else(|| "default".into());
    let invoker_name = plan::backup_session::configuration_of(session).map(str::to_string);
    let invoker = match &invoker_name {
        Some(name) => {
            get_opt(
                &Api::<BackupConfiguration>::namespaced(ctx.client.clone(), &ns),
                name,
            )
            .await?
        }
        None => None,
    };
    let (repository, _, _) = repository(
        ctx,
        &ns,
        invoker.as_ref().and_then(|bc| bc.spec.repository.as_ref()),
    )
    .await?;
    let target = appbinding(
        ctx,
        &ns,
        invoker
            .as_ref()
            .and_then(|bc| bc.spec.target.as_ref())
            .and_then(|t| t.r#ref.as_ref()),
    )
    .await?;
    let (tasks, functions) = catalog(ctx).await?;
    let (job, pods) = job_and_pods(
        ctx,
        &ns,
        &stash_core::names::backup_job_name(&session.name_any(), 0),
    )
    .await?;
    Ok(BackupSessionInputs {
        siblings: match &invoker_name {
            Some(name) => sibling_sessions(ctx, &ns, name).await?,
            None => Vec::new(),
        },
        session: session.clone(),
        invoker,
        repository,
        target,
        tasks,
        functions,
        job,
        pods,
        settings: ctx.settings.clone(),
        now: Some(ctx.now()),
    })
}

/// Inputs of the RestoreSession planner for `rs`.
pub async fn restore_session_inputs(
    ctx: &Context,
    rs: &RestoreSession,
) -> ReadResult<RestoreSessionInputs> {
    let ns = rs.namespace().unwrap_or_else(|| "default".into());
    let (repository, storage_secret_keys, storage_secret_forbidden) =
        repository(ctx, &ns, rs.spec.repository.as_ref()).await?;
    let target = appbinding(
        ctx,
        &ns,
        rs.spec.target.as_ref().and_then(|t| t.r#ref.as_ref()),
    )
    .await?;
    let (tasks, functions) = catalog(ctx).await?;
    let (job, pods) = job_and_pods(
        ctx,
        &ns,
        &stash_core::names::restore_job_name(&rs.name_any()),
    )
    .await?;
    Ok(RestoreSessionInputs {
        session: rs.clone(),
        repository,
        storage_secret_keys,
        storage_secret_forbidden,
        target,
        tasks,
        functions,
        job,
        pods,
        settings: ctx.settings.clone(),
        now: Some(ctx.now()),
    })
}

/// Inputs of the Repository planner for `repo`.
pub async fn repository_inputs(ctx: &Context, repo: &Repository) -> ReadResult<RepositoryInputs> {
    let (wipe_out_job, wipe_out_pods) = if rules::wants_wipe_out_job(repo) {
        job_and_pods(
            ctx,
            &repo.namespace().unwrap_or_default(),
            &plan::wipe_out::wipe_out_job_name(&repo.name_any()),
        )
        .await?
    } else {
        (None, Vec::new())
    };
    Ok(RepositoryInputs {
        references: repository_references(ctx, repo).await?,
        repository: repo.clone(),
        wipe_out_job,
        wipe_out_pods,
        settings: ctx.settings.clone(),
        now: Some(ctx.now()),
    })
}
