//! BackupConfiguration, build step: the trigger CronJob, whose pod runs `create-backupsession`
//! at each scheduled time.

use crate::api::BackupConfiguration;
use crate::plan::labels::DELETE_JOB_ON_COMPLETION;
use crate::plan::Settings;
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// The CronJob that triggers the configuration's backups, run by `service_account`.
pub(super) fn trigger_cronjob(
    bc: &BackupConfiguration,
    meta: ObjectMeta,
    labels: &BTreeMap<String, String>,
    service_account: String,
    settings: &Settings,
) -> CronJob {
    let name = bc.metadata.name.clone().unwrap_or_default();
    let mut job_labels = labels.clone();
    job_labels.insert(DELETE_JOB_ON_COMPLETION.into(), "true".into());
    let mut container = Container {
        name: "stash-trigger".into(),
        image: Some(settings.image.clone()),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        args: Some(vec![
            "create-backupsession".into(),
            format!("--invoker-name={name}"),
            "--invoker-kind=BackupConfiguration".into(),
        ]),
        env: Some(vec![EnvVar {
            name: "POD_NAMESPACE".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.namespace".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    if let Some(c) = bc
        .spec
        .runtime_settings
        .as_ref()
        .and_then(|r| r.container.as_ref())
    {
        // Only resources, env, envFrom and securityContext reach the trigger (as Stash).
        let limited = crate::api::ContainerRuntimeSettings {
            resources: c.resources.clone(),
            env: c.env.clone(),
            env_from: c.env_from.clone(),
            security_context: c.security_context.clone(),
            ..Default::default()
        };
        crate::plan::job::apply_container_settings(&mut container, &limited);
    }
    let mut pod = PodSpec {
        restart_policy: Some("Never".into()),
        service_account_name: Some(service_account),
        containers: vec![container],
        ..Default::default()
    };
    if let Some(p) = bc
        .spec
        .runtime_settings
        .as_ref()
        .and_then(|r| r.pod.as_ref())
    {
        crate::plan::job::apply_pod_settings(&mut pod, p);
    }
    CronJob {
        metadata: meta,
        spec: CronJobSpec {
            schedule: bc
                .spec
                .schedule
                .clone()
                .unwrap_or_default()
                .trim()
                .to_string(),
            suspend: Some(bc.spec.paused.unwrap_or(false)),
            // One trigger at a time: a slow API server must not pile up session creators.
            concurrency_policy: Some("Forbid".into()),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(job_labels),
                    ..Default::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: Some(0),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(labels.clone()),
                            ..Default::default()
                        }),
                        spec: Some(pod),
                    },
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        status: None,
    }
}
