//! BackupSession, build step: the backup Job (and its interim volume claim): the Task's
//! Functions resolved with the session's variables, hook containers, the invoker's runtime
//! settings.

use super::invoker::{invoker_host, resolved_target_ref};
use super::BackupSessionInputs;
use crate::api::BackupConfiguration;
use crate::names::backup_job_rbac_name;
use crate::plan::backend::{backend_info, local_volume, repository_variables};
use crate::plan::controller_ref;
use crate::plan::job::{
    build_pod_spec, interim_volume, session_job, task_name, task_params, HookContainers, PodInputs,
    SessionRun,
};
use crate::plan::labels::{invoker_labels, INVOKER_NAME, INVOKER_TYPE};
use crate::resolve::Variables;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Builds the backup Job of a session.
pub(super) fn build_job(
    inputs: &BackupSessionInputs,
    bc: &BackupConfiguration,
    session: &str,
    namespace: &str,
    job_name: &str,
) -> Result<(Job, Option<PersistentVolumeClaim>), String> {
    let repo = inputs.repository.as_ref().ok_or("Repository not found")?;
    let target = inputs
        .target
        .as_ref()
        .ok_or("backup target AppBinding not found")?;
    let info = backend_info(&repo.spec.backend)?;
    let addon = target.stash_addon();
    let addon_task = addon.as_ref().and_then(|a| a.backup_task.clone());
    let task_name = task_name(bc.spec.task.as_ref(), addon_task.as_ref())
        .ok_or("no Task: spec.task.name is empty and the AppBinding names none")?;
    let task = inputs
        .tasks
        .get(&task_name)
        .ok_or_else(|| format!("Task {task_name} not found"))?;
    let bc_name = bc.metadata.name.clone().unwrap_or_default();
    let target_ref = resolved_target_ref(bc, namespace);

    let run = SessionRun {
        session_flag: format!("--backupsession={session}"),
        invoker_kind: "BackupConfiguration",
        invoker_name: &bc_name,
        namespace,
        target_kind: target_ref.kind.clone().unwrap_or_default(),
        target_name: target_ref.name.clone().unwrap_or_default(),
        target_namespace: target_ref.namespace.clone().unwrap_or_default(),
        host: invoker_host(Some(bc)),
    };
    let mut vars: Variables = repository_variables(repo, &info);
    run.insert_variables(
        &mut vars,
        bc.spec.temp_dir.as_ref(),
        &inputs.settings.license_apiservice,
    );
    vars.insert(
        "TARGET_PATHS".into(),
        bc.spec
            .target
            .as_ref()
            .and_then(|t| t.paths.clone())
            .unwrap_or_default()
            .join(","),
    );
    vars.insert("BACKUP_SESSION".into(), session.into());
    let interim = if bc.spec.interim_volume_template.is_some() {
        "/stash-interim-volume/data"
    } else {
        "/stash-tmp/stash-interim-volume/data"
    };
    vars.insert("INTERIM_DATA_DIR".into(), interim.into());
    vars.insert("PROMETHEUS_JOB_NAME".into(), bc_name.clone());
    if let Some(p) = &bc.spec.retention_policy {
        for (k, v) in [
            ("RETENTION_KEEP_LAST", p.keep_last),
            ("RETENTION_KEEP_HOURLY", p.keep_hourly),
            ("RETENTION_KEEP_DAILY", p.keep_daily),
            ("RETENTION_KEEP_WEEKLY", p.keep_weekly),
            ("RETENTION_KEEP_MONTHLY", p.keep_monthly),
            ("RETENTION_KEEP_YEARLY", p.keep_yearly),
        ] {
            if let Some(n) = v.filter(|n| *n > 0) {
                vars.insert(k.into(), n.to_string());
            }
        }
        vars.insert(
            "RETENTION_KEEP_TAGS".into(),
            p.keep_tags.clone().unwrap_or_default().join(","),
        );
        if p.prune == Some(true) {
            vars.insert("RETENTION_PRUNE".into(), "true".into());
        }
        if p.dry_run == Some(true) {
            vars.insert("RETENTION_DRY_RUN".into(), "true".into());
        }
    }
    let params = task_params(bc.spec.task.as_ref(), addon_task);

    let mut labels = invoker_labels(
        bc.metadata.labels.as_ref(),
        "stash-backup",
        "BackupConfiguration",
        &bc_name,
    );
    labels.insert(
        "stash.appscode.com/backup-session".into(),
        crate::names::label_value(session),
    );
    let owner = controller_ref(
        "stash.appscode.com/v1beta1",
        "BackupSession",
        session,
        inputs.session.metadata.uid.as_deref(),
    );
    let mut volumes: Vec<_> = local_volume(&repo.spec.backend).into_iter().collect();
    let claim = match &bc.spec.interim_volume_template {
        Some(t) => {
            let (claim, volume) = interim_volume(t, session, namespace, owner.clone(), &labels)?;
            volumes.push(volume);
            Some(claim)
        }
        None => None,
    };
    let hooks = bc.spec.hooks.as_deref();
    let pod = build_pod_spec(&PodInputs {
        task,
        functions: &inputs.functions,
        variables: &vars,
        params: &params,
        runtime_settings: bc.spec.runtime_settings.as_deref(),
        temp_dir: bc.spec.temp_dir.as_ref(),
        service_account: backup_job_rbac_name(&bc_name),
        image_pull_policy: &inputs.settings.image_pull_policy,
        hooks: HookContainers {
            pre: hooks
                .and_then(|h| h.pre_backup.as_ref())
                .map(|_| run.hook_args("preBackup")),
            post: hooks
                .and_then(|h| h.post_backup.as_ref())
                .map(|_| run.hook_args("postBackup")),
        },
        operator_image: &inputs.settings.image,
        volumes,
    })?;
    debug_assert!(labels.contains_key(INVOKER_TYPE) && labels.contains_key(INVOKER_NAME));
    let job = session_job(
        ObjectMeta {
            name: Some(job_name.into()),
            namespace: Some(namespace.into()),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        bc.spec.runtime_settings.as_deref(),
        pod,
    );
    Ok((job, claim))
}
