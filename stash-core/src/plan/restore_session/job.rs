//! RestoreSession, build step: the restore Job `stash-restore-<rs>-0` (the Task's Functions
//! resolved with the snapshot rule), its interim volume claim, and the RBAC its pod needs.

use super::validate::Selection;
use super::RestoreSessionInputs;
use crate::names::restore_job_rbac_name;
use crate::plan::backend::{backend_info, local_volume, repository_variables};
use crate::plan::job::{
    build_pod_spec, interim_volume, session_job, task_name, task_params, HookContainers, PodInputs,
    SessionRun, INTERIM_DIR,
};
use crate::plan::labels::invoker_labels;
use crate::plan::rbac::{rule, service_account_role_binding, target_pod_rules};
use crate::plan::{controller_ref, to_value};
use crate::resolve::Variables;
use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The objects of a restore: the pod's ServiceAccount, Role and RoleBinding, the interim
/// volume claim if any, and the Job.
pub(super) fn build_job(
    inputs: &RestoreSessionInputs,
    namespace: &str,
    job_name: &str,
    host: &str,
    selection: &Selection,
) -> Result<Vec<serde_json::Value>, String> {
    let rs = &inputs.session;
    let name = rs.metadata.name.clone().unwrap_or_default();
    let repo = inputs.repository.as_ref().ok_or("Repository not found")?;
    let target = inputs.target.as_ref().ok_or("restore target not found")?;
    let info = backend_info(&repo.spec.backend)?;
    let addon = target.stash_addon();
    let addon_task = addon.as_ref().and_then(|a| a.restore_task.clone());
    let task_name = task_name(rs.spec.task.as_ref(), addon_task.as_ref())
        .ok_or("no Task: spec.task.name is empty and the AppBinding names no restoreTask")?;
    let task = inputs
        .tasks
        .get(&task_name)
        .ok_or_else(|| format!("spec.task.name: Task {task_name} not found"))?;
    let target_ref = crate::plan::target_ref_in(
        rs.spec.target.as_ref().and_then(|t| t.r#ref.as_ref()),
        namespace,
    );

    let run = SessionRun {
        session_flag: format!("--restoresession={name}"),
        invoker_kind: "RestoreSession",
        invoker_name: &name,
        namespace,
        target_kind: target_ref.kind.clone().unwrap_or_default(),
        target_name: target_ref.name.clone().unwrap_or_default(),
        target_namespace: target_ref.namespace.clone().unwrap_or_default(),
        host: host.into(),
    };
    let mut vars: Variables = repository_variables(repo, &info);
    run.insert_variables(
        &mut vars,
        rs.spec.temp_dir.as_ref(),
        &inputs.settings.license_apiservice,
    );
    vars.insert("SOURCE_HOSTNAME".into(), selection.source_host.clone());
    vars.insert("RESTORE_SNAPSHOTS".into(), selection.snapshots.clone());
    vars.insert("RESTORE_SESSION".into(), name.clone());
    let interim = if rs.spec.interim_volume_template.is_some() {
        format!("{INTERIM_DIR}/data")
    } else {
        "/stash-tmp/stash-interim-volume/data".into()
    };
    vars.insert("INTERIM_DATA_DIR".into(), interim);
    // Only the restore Task's own params: Stash leaks the backup task's params into restores
    // (stash.md §12); we do not.
    let params = task_params(rs.spec.task.as_ref(), addon_task);

    let labels = invoker_labels(
        rs.metadata.labels.as_ref(),
        "stash-restore",
        "RestoreSession",
        &name,
    );
    let owner = controller_ref(
        "stash.appscode.com/v1beta1",
        "RestoreSession",
        &name,
        rs.metadata.uid.as_deref(),
    );
    let mut volumes: Vec<_> = local_volume(&repo.spec.backend).into_iter().collect();
    let claim = match &rs.spec.interim_volume_template {
        Some(t) => {
            let (claim, volume) = interim_volume(t, &name, namespace, owner.clone(), &labels)?;
            volumes.push(volume);
            Some(claim)
        }
        None => None,
    };
    let hooks = rs.spec.hooks.as_deref();
    let rbac_name = restore_job_rbac_name(&name);
    let pod = build_pod_spec(&PodInputs {
        task,
        functions: &inputs.functions,
        variables: &vars,
        params: &params,
        runtime_settings: rs.spec.runtime_settings.as_deref(),
        temp_dir: rs.spec.temp_dir.as_ref(),
        service_account: rbac_name.clone(),
        image_pull_policy: &inputs.settings.image_pull_policy,
        hooks: HookContainers {
            pre: hooks
                .and_then(|h| h.pre_restore.as_ref())
                .map(|_| run.hook_args("preRestore")),
            post: hooks
                .and_then(|h| h.post_restore.as_ref())
                .map(|_| run.hook_args("postRestore")),
        },
        operator_image: &inputs.settings.image,
        volumes,
    })?;
    let meta = |n: &str| ObjectMeta {
        name: Some(n.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    };
    let mut secrets: Vec<String> = [
        repo.spec.backend.storage_secret_name.clone(),
        target.spec.secret.as_ref().map(|s| s.name.clone()),
    ]
    .into_iter()
    .flatten()
    .filter(|s| !s.is_empty())
    .collect();
    secrets.sort();
    secrets.dedup();
    let rules = restore_job_rules(&secrets);
    let mut objects = service_account_role_binding(
        meta(&rbac_name),
        rules,
        rs.spec
            .runtime_settings
            .as_ref()
            .and_then(|r| r.pod.as_ref())
            .and_then(|p| p.service_account_annotations.clone()),
    );
    let job = session_job(meta(job_name), rs.spec.runtime_settings.as_deref(), pod);
    if let Some(claim) = claim {
        objects.push(to_value(&claim));
    }
    objects.push(to_value(&job));
    Ok(objects)
}

/// What a restore Job needs: its session and repository, the AppBinding, and only the two
/// Secrets it reads.
fn restore_job_rules(secrets: &[String]) -> Vec<PolicyRule> {
    let mut rules = vec![
        rule(
            &["stash.appscode.com"],
            &[
                "restoresessions",
                "restoresessions/status",
                "repositories",
                "repositories/status",
            ],
            &["get", "list", "watch", "patch", "update"],
            &[],
        ),
        rule(
            &["appcatalog.appscode.com"],
            &["appbindings"],
            &["get"],
            &[],
        ),
        rule(
            &["", "events.k8s.io"],
            &["events"],
            &["create", "patch"],
            &[],
        ),
    ];
    rules.extend(target_pod_rules());
    if !secrets.is_empty() {
        rules.push(rule(&[""], &["secrets"], &["get"], secrets));
    }
    rules
}
