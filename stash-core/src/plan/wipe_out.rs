//! `spec.wipeOut: true`: when the Repository is deleted, a Job deletes every file of the
//! repository in its backend before the finalizer goes (Stash deletes them from the operator;
//! here the operator holds no storage credentials, so a Job with read access to the storage
//! Secret does it).

use super::backend::{backend_info, local_volume, BackendInfo};
use super::job::{SCRATCH_DIR, SCRATCH_VOLUME};
use super::job_result::pod_failure;
use super::labels::MANAGED_BY;
use super::rbac::service_account_role_binding;
use super::{controller_ref, to_value, Settings};
use crate::api::Repository;
use crate::names::{bounded, NAME_MAX};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, Pod, PodSpec, PodTemplateSpec, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// `stash-wipeout-<repository>`: the Job (and its ServiceAccount, Role and RoleBinding).
pub fn wipe_out_job_name(repository: &str) -> String {
    bounded(
        &format!("stash-wipeout-{}", repository.replace('.', "-")),
        NAME_MAX,
    )
}

/// Why the data of this backend is not wiped out, if it is not. Stash's validator refuses
/// wipeOut for local and B2; our wipe command reaches S3 and REST servers only.
pub fn refusal(info: &BackendInfo) -> Option<String> {
    match info.provider {
        "s3" | "rest" => None,
        "local" | "b2" => Some(format!(
            "spec.wipeOut is not supported for the {} backend (Stash refuses it too)",
            info.provider
        )),
        other => Some(format!(
            "spec.wipeOut is not supported for the {other} backend by stash-rs yet"
        )),
    }
}

/// Where the wipe Job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WipeOutProgress {
    /// No Job yet.
    NotStarted,
    /// The Job runs.
    Running,
    /// The data is gone.
    Done,
    /// The Job failed; the reason.
    Failed(String),
}

/// The progress of the wipe Job from its status and its pods.
pub fn progress(job: Option<&Job>, pods: &[Pod]) -> WipeOutProgress {
    let Some(job) = job else {
        return WipeOutProgress::NotStarted;
    };
    let status = job.status.clone().unwrap_or_default();
    let condition = |t: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == t && c.status == "True")
            .cloned()
    };
    if condition("Complete").is_some() || status.succeeded.unwrap_or(0) > 0 {
        return WipeOutProgress::Done;
    }
    if let Some(c) = condition("Failed") {
        let detail = pods.iter().find_map(pod_failure);
        let base = format!(
            "Job {} failed ({})",
            job.metadata.name.clone().unwrap_or_default(),
            c.reason.unwrap_or_default()
        );
        return WipeOutProgress::Failed(match detail {
            Some(d) => format!("{base}: {d}"),
            None => base,
        });
    }
    WipeOutProgress::Running
}

/// The wipe Job of `repo` with its ServiceAccount, Role (read of the storage Secret) and
/// RoleBinding, all owned by the Repository so that they go with it.
pub fn objects(repo: &Repository, settings: &Settings) -> Result<Vec<serde_json::Value>, String> {
    let info = backend_info(&repo.spec.backend)?;
    let repo_name = repo.metadata.name.clone().unwrap_or_default();
    let namespace = repo
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let secret = repo
        .spec
        .backend
        .storage_secret_name
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or("spec.backend.storageSecretName is required to wipe out the repository")?;
    let name = wipe_out_job_name(&repo_name);
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/component".to_string(),
            "stash-wipeout".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGED_BY.to_string(),
        ),
        (
            "stash.appscode.com/repository".to_string(),
            crate::names::label_value(&repo_name),
        ),
    ]);
    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(namespace.clone()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![controller_ref(
            "stash.appscode.com/v1alpha1",
            "Repository",
            &repo_name,
            repo.metadata.uid.as_deref(),
        )]),
        ..Default::default()
    };
    let rules = vec![PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["secrets".into()]),
        verbs: vec!["get".into()],
        resource_names: Some(vec![secret.clone()]),
        ..Default::default()
    }];
    let mut out = service_account_role_binding(meta.clone(), rules, None);

    let args = vec![
        "wipe-out-repository".to_string(),
        format!("--provider={}", info.provider),
        format!("--bucket={}", info.bucket),
        format!("--endpoint={}", info.endpoint),
        format!("--region={}", info.region),
        format!("--path={}", info.prefix),
        format!("--insecure-tls={}", info.insecure_tls),
        format!("--storage-secret-name={secret}"),
        format!("--storage-secret-namespace={namespace}"),
        format!("--scratch-dir={SCRATCH_DIR}"),
    ];
    let mut volumes = vec![Volume {
        name: SCRATCH_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: SCRATCH_VOLUME.into(),
        mount_path: SCRATCH_DIR.into(),
        ..Default::default()
    }];
    if let Some((volume, mount)) = local_volume(&repo.spec.backend) {
        volumes.push(volume);
        mounts.push(mount);
    }
    let job = Job {
        metadata: meta,
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: Some(name),
                    containers: vec![Container {
                        name: "wipe-out".into(),
                        image: Some(settings.image.clone()),
                        image_pull_policy: Some(settings.image_pull_policy.clone()),
                        args: Some(args),
                        volume_mounts: Some(mounts),
                        ..Default::default()
                    }],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    };
    out.push(to_value(&job));
    Ok(out)
}
