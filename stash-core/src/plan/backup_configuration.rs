//! BackupConfiguration planner: validation into conditions and phase, the trigger CronJob and
//! the RBAC its pods and the backup Jobs need.

use super::backend::{backend_info, missing_secret_keys};
use super::labels::{invoker_labels, DELETE_JOB_ON_COMPLETION};
use super::{
    controller_ref, to_value, EventSpec, FinalizerAction, ObjectKey, Plan, Settings, FINALIZER,
};
use crate::api::{
    AppBinding, BackupConfiguration, BackupConfigurationStatus, Function, Repository, Task,
};
use crate::conditions::{self, NewCondition};
use crate::cron::Schedule;
use crate::names::{backup_job_rbac_name, cronjob_name};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, PodTemplateSpec, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use std::collections::{BTreeMap, BTreeSet};

/// Condition types on a BackupConfiguration.
pub mod condition {
    /// The Repository exists.
    pub const REPOSITORY_FOUND: &str = "RepositoryFound";
    /// The storage Secret exists with the keys the provider needs.
    pub const BACKEND_SECRET_FOUND: &str = "BackendSecretFound";
    /// The spec is valid.
    pub const VALIDATION_PASSED: &str = "ValidationPassed";
    /// The target exists.
    pub const BACKUP_TARGET_FOUND: &str = "BackupTargetFound";
    /// The trigger CronJob is in place.
    pub const CRONJOB_CREATED: &str = "CronJobCreated";
}
use condition::*;

/// Source name of this planner's events.
pub const EVENT_SOURCE: &str = "BackupConfiguration Controller";
/// Seconds between looks while something referenced is missing (Stash's 5 s).
pub const REQUEUE_MISSING_SECS: u64 = 5;
/// Seconds between looks while the operator may not read a Secret (waits for an admin).
pub const REQUEUE_FORBIDDEN_SECS: u64 = 30;

/// What to tell the user when the operator may not read a storage Secret.
pub fn secret_forbidden_message(namespace: &str, secret: &str) -> String {
    format!(
        "The operator may not read Secret {namespace}/{secret}: bind the ClusterRole \
         stash-operator-secret-reader to the operator's ServiceAccount in namespace {namespace} \
         (kubectl -n {namespace} create rolebinding stash-operator-secret-reader \
         --clusterrole=stash-operator-secret-reader --serviceaccount=stash:stash-operator)."
    )
}

/// What the BackupConfiguration planner looks at.
#[derive(Debug, Clone, Default)]
pub struct BackupConfigurationInputs {
    /// The object.
    pub bc: BackupConfiguration,
    /// The referenced Repository, if it exists.
    pub repository: Option<Repository>,
    /// Key names of the storage Secret, if it exists (values are never needed here).
    pub storage_secret_keys: Option<BTreeSet<String>>,
    /// The operator was refused reading the storage Secret (RBAC), so its keys are unknown.
    pub storage_secret_forbidden: bool,
    /// The target AppBinding, if it exists.
    pub target: Option<AppBinding>,
    /// Labels of the BackupConfiguration's namespace (for `usagePolicy` selectors).
    pub namespace_labels: BTreeMap<String, String>,
    /// Tasks by name.
    pub tasks: BTreeMap<String, Task>,
    /// Functions by name.
    pub functions: BTreeMap<String, Function>,
    /// Children that exist now (found by the invoker labels).
    pub children: Vec<ObjectKey>,
    /// Operator settings.
    pub settings: Settings,
    /// The time of this reconcile.
    pub now: Option<Time>,
}

/// Plans one reconcile of a BackupConfiguration.
pub fn plan(inputs: &BackupConfigurationInputs) -> Plan {
    let bc = &inputs.bc;
    let (name, namespace, now, mut plan) = super::begin(
        "stash.appscode.com/v1beta1",
        "BackupConfiguration",
        &bc.metadata,
        &inputs.now,
    );
    let has_finalizer = bc
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER);
    if bc.metadata.deletion_timestamp.is_some() {
        // Children go with the owner through GC as well; deleting them here also covers
        // clusters where GC is slow, and nothing may trigger a backup once deletion started.
        plan.delete = inputs.children.clone();
        plan.finalizer = if has_finalizer {
            FinalizerAction::Remove
        } else {
            FinalizerAction::Keep
        };
        return plan;
    }
    if !has_finalizer {
        plan.finalizer = FinalizerAction::Add;
    }

    let generation = bc.metadata.generation;
    let old_status = bc.status.clone().unwrap_or_default();
    let mut conds = old_status.conditions.clone().unwrap_or_default();
    let mut requeue = None;

    // Repository and its secret.
    let repo_ns = bc
        .spec
        .repository
        .as_ref()
        .and_then(|r| r.namespace.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| namespace.clone());
    let repo_name = bc
        .spec
        .repository
        .as_ref()
        .map(|r| r.name.clone())
        .unwrap_or_default();
    let mut errors: Vec<String> = validate_spec(inputs);
    let mut backend = None;
    match &inputs.repository {
        Some(repo) => {
            conditions::set(
                &mut conds,
                NewCondition::yes(
                    REPOSITORY_FOUND,
                    "RepositoryAvailable",
                    format!("Repository {repo_ns}/{repo_name} exist."),
                ),
                generation,
                &now,
            );
            match backend_info(&repo.spec.backend) {
                Ok(info) => backend = Some(info),
                Err(e) => errors.push(format!("Repository {repo_ns}/{repo_name}: {e}")),
            }
            if let Err(e) = usage_allowed(repo, &namespace, &inputs.namespace_labels) {
                errors.push(e);
            }
        }
        None => {
            conditions::set(
                &mut conds,
                NewCondition::no(
                    REPOSITORY_FOUND,
                    "RepositoryNotAvailable",
                    format!("Repository {repo_ns}/{repo_name} does not exist."),
                ),
                generation,
                &now,
            );
            requeue = Some(REQUEUE_MISSING_SECS);
        }
    }
    let secret_name = inputs
        .repository
        .as_ref()
        .and_then(|r| r.spec.backend.storage_secret_name.clone())
        .unwrap_or_default();
    match (&inputs.repository, &inputs.storage_secret_keys) {
        (None, _) => conditions::set(
            &mut conds,
            NewCondition::unknown(
                BACKEND_SECRET_FOUND,
                "UnableToCheckBackendSecretAvailability",
                "Repository does not exist.",
            ),
            generation,
            &now,
        ),
        (Some(_), _) if secret_name.is_empty() => conditions::set(
            &mut conds,
            NewCondition::no(
                BACKEND_SECRET_FOUND,
                "BackendSecretNotAvailable",
                format!(
                    "Repository {repo_ns}/{repo_name}: spec.backend.storageSecretName is not set."
                ),
            ),
            generation,
            &now,
        ),
        (Some(_), None) if inputs.storage_secret_forbidden => {
            conditions::set(
                &mut conds,
                NewCondition::unknown(
                    BACKEND_SECRET_FOUND,
                    "UnableToCheckBackendSecretAvailability",
                    secret_forbidden_message(&repo_ns, &secret_name),
                ),
                generation,
                &now,
            );
            requeue = Some(REQUEUE_FORBIDDEN_SECS);
        }
        (Some(_), None) => {
            conditions::set(
                &mut conds,
                NewCondition::no(
                    BACKEND_SECRET_FOUND,
                    "BackendSecretNotAvailable",
                    format!("Backend Secret {repo_ns}/{secret_name} does not exist."),
                ),
                generation,
                &now,
            );
            requeue = Some(REQUEUE_MISSING_SECS);
        }
        (Some(_), Some(keys)) => {
            let missing = backend
                .as_ref()
                .map(|b| missing_secret_keys(b.provider, keys))
                .unwrap_or_default();
            if missing.is_empty() {
                conditions::set(
                    &mut conds,
                    NewCondition::yes(
                        BACKEND_SECRET_FOUND,
                        "BackendSecretAvailable",
                        format!("Backend Secret {repo_ns}/{secret_name} exist."),
                    ),
                    generation,
                    &now,
                );
            } else {
                conditions::set(
                    &mut conds,
                    NewCondition::no(
                        BACKEND_SECRET_FOUND,
                        "BackendSecretNotAvailable",
                        format!(
                            "Backend Secret {repo_ns}/{secret_name} lacks the key(s) {}.",
                            missing.join(", ")
                        ),
                    ),
                    generation,
                    &now,
                );
            }
        }
    }

    // Target.
    let target_ref = bc
        .spec
        .target
        .as_ref()
        .and_then(|t| t.r#ref.clone())
        .unwrap_or_default();
    let target_ns = target_ref
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| namespace.clone());
    let target_kind = target_ref.kind.clone().unwrap_or_default();
    let target_name = target_ref.name.clone().unwrap_or_default();
    if inputs.target.is_some() {
        conditions::set(
            &mut conds,
            NewCondition::yes(
                BACKUP_TARGET_FOUND,
                "TargetAvailable",
                format!("Backup target {target_kind} {target_ns}/{target_name} found."),
            ),
            generation,
            &now,
        );
    } else {
        conditions::set(
            &mut conds,
            NewCondition::no(
                BACKUP_TARGET_FOUND,
                "TargetNotAvailable",
                format!("Backup target {target_kind} {target_ns}/{target_name} does not exist."),
            ),
            generation,
            &now,
        );
        requeue = Some(REQUEUE_MISSING_SECS);
    }

    // Task and Functions.
    if let Err(e) = resolve_task_functions(inputs) {
        errors.push(e);
    }

    if errors.is_empty() {
        conditions::set(
            &mut conds,
            NewCondition::yes(
                VALIDATION_PASSED,
                "ResourceValidationPassed",
                "Successfully validated.",
            ),
            generation,
            &now,
        );
    } else {
        conditions::set(
            &mut conds,
            NewCondition::no(
                VALIDATION_PASSED,
                "ResourceValidationFailed",
                errors.join("; "),
            ),
            generation,
            &now,
        );
    }

    let ready_to_schedule = conditions::is_true(&conds, REPOSITORY_FOUND)
        && conditions::is_true(&conds, BACKEND_SECRET_FOUND)
        && conditions::is_true(&conds, VALIDATION_PASSED)
        && conditions::is_true(&conds, BACKUP_TARGET_FOUND);

    let labels = invoker_labels(
        bc.metadata.labels.as_ref(),
        "stash-backup",
        "BackupConfiguration",
        &name,
    );
    let owner = controller_ref(
        "stash.appscode.com/v1beta1",
        "BackupConfiguration",
        &name,
        bc.metadata.uid.as_deref(),
    );
    let meta = |object_name: String, ns: &str| ObjectMeta {
        name: Some(object_name),
        namespace: Some(ns.to_string()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    };

    // RBAC for the backup Jobs (always, so a manual session can run while the BC is paused).
    let job_sa = backup_job_rbac_name(&name);
    let appbinding_secret = inputs
        .target
        .as_ref()
        .and_then(|t| t.spec.secret.as_ref())
        .map(|s| s.name.clone());
    let mut secrets: Vec<String> = [Some(secret_name.clone()), appbinding_secret]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect();
    secrets.sort();
    secrets.dedup();
    let mut desired: Vec<serde_json::Value> = Vec::new();
    desired.extend(service_account_role_binding(
        meta(job_sa.clone(), &namespace),
        backup_job_rules(&secrets),
        inputs
            .bc
            .spec
            .runtime_settings
            .as_ref()
            .and_then(|r| r.pod.as_ref())
            .and_then(|p| p.service_account_annotations.clone()),
    ));

    // Trigger CronJob and its RBAC.
    let cron_name = cronjob_name(&name);
    let user_sa = bc
        .spec
        .runtime_settings
        .as_ref()
        .and_then(|r| r.pod.as_ref())
        .and_then(|p| p.service_account_name.clone())
        .filter(|s| !s.is_empty());
    if ready_to_schedule {
        if user_sa.is_none() {
            desired.extend(service_account_role_binding(
                meta(cron_name.clone(), &namespace),
                trigger_rules(&name),
                None,
            ));
        }
        let cronjob = trigger_cronjob(
            bc,
            meta(cron_name.clone(), &namespace),
            &labels,
            user_sa.unwrap_or(cron_name.clone()),
            &inputs.settings,
        );
        desired.push(to_value(&cronjob));
        conditions::set(
            &mut conds,
            NewCondition::yes(
                CRONJOB_CREATED,
                "CronJobCreationSucceeded",
                "Successfully created backup triggering CronJob.",
            ),
            generation,
            &now,
        );
    } else {
        conditions::set(&mut conds, NewCondition::no(CRONJOB_CREATED, "CronJobCreationFailed", "The backup triggering CronJob is not created until the BackupConfiguration is ready."), generation, &now);
    }

    // Orphans: children that exist but are no longer desired (e.g. the CronJob of a BC that
    // became invalid, or the trigger SA after the user set their own).
    let desired_keys: BTreeSet<ObjectKey> = desired.iter().filter_map(key_of).collect();
    plan.delete = inputs
        .children
        .iter()
        .filter(|k| !desired_keys.contains(*k))
        .cloned()
        .collect();
    plan.apply = desired;

    let phase = phase_of(&conds);
    for c in &conds {
        let before = old_status
            .conditions
            .iter()
            .flatten()
            .find(|o| o.type_ == c.type_);
        let changed = before.map(|b| (b.status.as_str(), b.message.as_deref()))
            != Some((c.status.as_str(), c.message.as_deref()));
        if changed && c.status == conditions::FALSE && c.type_ != CRONJOB_CREATED {
            plan.events.push(EventSpec {
                type_: "Warning".into(),
                reason: c.reason.clone().unwrap_or_default(),
                message: c.message.clone().unwrap_or_default(),
                source: EVENT_SOURCE.into(),
            });
        }
    }
    let status = BackupConfigurationStatus {
        observed_generation: generation,
        phase: Some(phase.into()),
        conditions: Some(conds),
    };
    if bc.status.as_ref() != Some(&status) {
        plan.status = Some(to_value(&status));
    }
    plan.requeue_after_seconds = requeue;
    plan
}

/// Whether the operator has evaluated `bc` at its current generation: it has conditions and
/// `observedGeneration` has caught up. Until then its phase says nothing (a session created in
/// the same `kubectl apply` sees a configuration without status).
pub fn evaluated(bc: &BackupConfiguration) -> bool {
    let Some(status) = bc.status.as_ref() else {
        return false;
    };
    let has_conditions = status.conditions.as_ref().is_some_and(|c| !c.is_empty());
    let caught_up = match bc.metadata.generation {
        Some(generation) => status.observed_generation.is_some_and(|o| o >= generation),
        None => true,
    };
    has_conditions && caught_up
}

/// Stash's `CalculateBackupInvokerPhase`.
pub fn phase_of(conds: &[crate::api::Condition]) -> &'static str {
    if !conditions::is_true(conds, REPOSITORY_FOUND)
        || !conditions::is_true(conds, BACKEND_SECRET_FOUND)
    {
        return "NotReady";
    }
    if conditions::is_false(conds, VALIDATION_PASSED) {
        return "Invalid";
    }
    if [VALIDATION_PASSED, CRONJOB_CREATED, BACKUP_TARGET_FOUND]
        .iter()
        .all(|t| conditions::is_true(conds, t))
    {
        "Ready"
    } else {
        "NotReady"
    }
}

/// Field-level validation of the spec; each message names its field.
fn validate_spec(inputs: &BackupConfigurationInputs) -> Vec<String> {
    let spec = &inputs.bc.spec;
    let mut errors = Vec::new();
    match spec.schedule.as_deref().map(str::trim) {
        None | Some("") => errors.push("spec.schedule is required".to_string()),
        Some(s) => {
            if let Err(e) = Schedule::parse(s) {
                errors.push(format!("spec.schedule {s:?} is invalid: {e}"));
            }
        }
    }
    if let Some(driver) = spec
        .driver
        .as_deref()
        .filter(|d| !d.is_empty() && *d != "Restic")
    {
        errors.push(format!(
            "spec.driver {driver:?} is not supported (only Restic)"
        ));
    }
    if spec
        .repository
        .as_ref()
        .map(|r| r.name.is_empty())
        .unwrap_or(true)
    {
        errors.push("spec.repository.name is required".into());
    }
    match spec.target.as_ref().and_then(|t| t.r#ref.as_ref()) {
        None => errors.push("spec.target.ref is required".into()),
        Some(r) => {
            if r.kind.as_deref() != Some("AppBinding") {
                errors.push(format!(
                    "spec.target.ref.kind {:?} is not supported (only AppBinding)",
                    r.kind.clone().unwrap_or_default()
                ));
            }
            if r.name.as_deref().unwrap_or("").is_empty() {
                errors.push("spec.target.ref.name is required".into());
            }
        }
    }
    match &spec.retention_policy {
        None => errors.push("spec.retentionPolicy is required".into()),
        Some(p) => {
            if p.name.is_empty() {
                errors.push("spec.retentionPolicy.name is required".into());
            }
            for (field, v) in [
                ("keepLast", p.keep_last),
                ("keepHourly", p.keep_hourly),
                ("keepDaily", p.keep_daily),
                ("keepWeekly", p.keep_weekly),
                ("keepMonthly", p.keep_monthly),
                ("keepYearly", p.keep_yearly),
            ] {
                if v.unwrap_or(0) < 0 {
                    errors.push(format!("spec.retentionPolicy.{field} must not be negative"));
                }
            }
        }
    }
    if let Some(limit) = spec.backup_history_limit.filter(|l| *l < 0) {
        errors.push(format!(
            "spec.backupHistoryLimit {limit} must not be negative"
        ));
    }
    if let Some(t) = &spec.time_out {
        if let Err(e) = crate::duration::parse_go_duration_millis(t) {
            errors.push(format!("spec.timeOut: {e}"));
        }
    }
    if let Some(rc) = &spec.retry_config {
        if rc.max_retry.unwrap_or(1) < 0 {
            errors.push("spec.retryConfig.maxRetry must not be negative".into());
        }
        if let Some(d) = &rc.delay {
            if let Err(e) = crate::duration::parse_go_duration_millis(d) {
                errors.push(format!("spec.retryConfig.delay: {e}"));
            }
        }
    }
    if let Some(e) = spec
        .interim_volume_template
        .as_ref()
        .and_then(super::job::interim_template_error)
    {
        errors.push(e);
    }
    if let Some(policy) = spec.hooks.as_ref().and_then(|h| h.post_backup.as_ref()) {
        if let Err(e) = crate::hooks::ExecutionPolicy::parse(policy.execution_policy.as_deref()) {
            errors.push(format!("spec.hooks.postBackup.{e}"));
        }
    }
    errors
}

/// The Task name of an invoker: its own, else the AppBinding addon's.
pub fn task_name(
    own: Option<&crate::api::TaskRef>,
    addon: Option<&crate::api::TaskRef>,
) -> Option<String> {
    own.and_then(|t| t.name.clone())
        .filter(|n| !n.is_empty())
        .or_else(|| addon.and_then(|t| t.name.clone()).filter(|n| !n.is_empty()))
}

fn resolve_task_functions(inputs: &BackupConfigurationInputs) -> Result<(), String> {
    let addon = inputs.target.as_ref().and_then(|t| t.stash_addon());
    let Some(task) = task_name(
        inputs.bc.spec.task.as_ref(),
        addon.as_ref().and_then(|a| a.backup_task.as_ref()),
    ) else {
        if inputs.target.is_none() {
            // Without the AppBinding we cannot tell; BackupTargetFound already says why.
            return Ok(());
        }
        return Err("spec.task.name is empty and the AppBinding has no spec.parameters.stash.addon.backupTask".into());
    };
    let Some(t) = inputs.tasks.get(&task) else {
        return Err(format!("spec.task.name: Task {task} not found"));
    };
    for step in t.spec.steps.iter().flatten() {
        if !inputs.functions.contains_key(&step.name) {
            return Err(format!(
                "spec.task.name: Function {} of Task {task} not found",
                step.name
            ));
        }
    }
    Ok(())
}

/// Stash's `Repository.UsageAllowed`.
fn usage_allowed(
    repo: &Repository,
    namespace: &str,
    ns_labels: &BTreeMap<String, String>,
) -> Result<(), String> {
    let repo_ns = repo.metadata.namespace.clone().unwrap_or_default();
    let repo_name = repo.metadata.name.clone().unwrap_or_default();
    let denied = || {
        Err(format!("Repository {repo_ns}/{repo_name}: spec.usagePolicy does not allow namespace {namespace}"))
    };
    let Some(allowed) = repo
        .spec
        .usage_policy
        .as_ref()
        .and_then(|u| u.allowed_namespaces.as_ref())
    else {
        return if repo_ns == namespace {
            Ok(())
        } else {
            denied()
        };
    };
    match allowed.from.as_deref() {
        Some("All") => Ok(()),
        Some("Same") if repo_ns == namespace => Ok(()),
        Some("Selector") => {
            let matches = allowed
                .selector
                .as_ref()
                .map(|s| selector_matches(s, ns_labels))
                .unwrap_or(false);
            if matches {
                Ok(())
            } else {
                denied()
            }
        }
        _ => denied(),
    }
}

/// Whether a LabelSelector matches a label set, by kube's `Selector`. A selector that is not
/// valid (an unknown operator, `In`/`NotIn` without values) matches nothing, as the API server
/// would have rejected it.
pub fn selector_matches(
    s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    use kube::core::{Selector, SelectorExt};
    Selector::try_from(s.clone()).is_ok_and(|selector| selector.matches(labels))
}

fn trigger_cronjob(
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
        super::job::apply_container_settings(&mut container, &limited);
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
        super::job::apply_pod_settings(&mut pod, p);
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

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[String]) -> PolicyRule {
    let s = |xs: &[&str]| Some(xs.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    PolicyRule {
        api_groups: s(groups),
        resources: s(resources),
        verbs: verbs.iter().map(|x| x.to_string()).collect(),
        resource_names: (!names.is_empty()).then(|| names.to_vec()),
        ..Default::default()
    }
}

/// What a backup Job needs: its session and repository, the AppBinding, and only the two
/// Secrets it reads (no namespace-wide Secret access).
fn backup_job_rules(secrets: &[String]) -> Vec<PolicyRule> {
    let mut rules = vec![
        rule(
            &["stash.appscode.com"],
            &[
                "backupsessions",
                "backupsessions/status",
                "repositories",
                "repositories/status",
                "backupconfigurations",
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
        rule(&[""], &["events"], &["create", "patch"], &[]),
        rule(&["events.k8s.io"], &["events"], &["create", "patch"], &[]),
    ];
    rules.extend(target_pod_rules());
    if !secrets.is_empty() {
        rules.push(rule(&[""], &["secrets"], &["get"], secrets));
    }
    rules
}

/// Reaching the database behind the AppBinding's Service (its Endpoints or EndpointSlices)
/// and running exec hooks in its pod, as Stash's job roles allow.
pub(crate) fn target_pod_rules() -> Vec<PolicyRule> {
    vec![
        rule(&[""], &["services", "endpoints", "pods"], &["get"], &[]),
        rule(&["discovery.k8s.io"], &["endpointslices"], &["list"], &[]),
        rule(&[""], &["pods/exec"], &["create", "get"], &[]),
    ]
}

/// What the trigger pod needs: read its BackupConfiguration, create sessions.
fn trigger_rules(bc_name: &str) -> Vec<PolicyRule> {
    vec![
        rule(
            &["stash.appscode.com"],
            &["backupconfigurations"],
            &["get"],
            &[bc_name.to_string()],
        ),
        rule(
            &["stash.appscode.com"],
            &["backupsessions"],
            &["create", "get", "patch"],
            &[],
        ),
        rule(&[""], &["events"], &["create", "patch"], &[]),
    ]
}

/// A ServiceAccount, a Role with `rules` and a RoleBinding between them, all named like `meta`.
pub(crate) fn service_account_role_binding(
    meta: ObjectMeta,
    rules: Vec<PolicyRule>,
    sa_annotations: Option<BTreeMap<String, String>>,
) -> Vec<serde_json::Value> {
    let name = meta.name.clone().unwrap_or_default();
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            annotations: sa_annotations,
            ..meta.clone()
        },
        ..Default::default()
    };
    let role = Role {
        metadata: meta.clone(),
        rules: Some(rules),
    };
    let binding = RoleBinding {
        metadata: meta.clone(),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name,
            namespace: meta.namespace.clone(),
            ..Default::default()
        }]),
    };
    // k8s-openapi serializes apiVersion and kind with every resource.
    vec![to_value(&sa), to_value(&role), to_value(&binding)]
}

/// The key of an object to apply.
pub fn key_of(v: &serde_json::Value) -> Option<ObjectKey> {
    Some(ObjectKey {
        api_version: v.get("apiVersion")?.as_str()?.to_string(),
        kind: v.get("kind")?.as_str()?.to_string(),
        namespace: v
            .pointer("/metadata/namespace")
            .and_then(|n| n.as_str())
            .map(String::from),
        name: v.pointer("/metadata/name")?.as_str()?.to_string(),
    })
}

#[cfg(test)]
mod selector_tests {
    use super::selector_matches;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn selector(yaml: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
        serde_yaml::from_str(yaml).expect("selector yaml")
    }

    #[test]
    fn namespace_selectors_match_as_kubernetes_does() {
        let team_a = labels(&[("team", "a"), ("env", "prod")]);
        let s = selector("matchLabels: {team: a}\nmatchExpressions: [{key: env, operator: In, values: [prod, staging]}]");
        assert!(selector_matches(&s, &team_a));
        let s = selector("matchExpressions: [{key: env, operator: NotIn, values: [prod]}]");
        assert!(!selector_matches(&s, &team_a));
        let s = selector("matchExpressions: [{key: tier, operator: DoesNotExist}]");
        assert!(selector_matches(&s, &team_a));
        // Not valid in Kubernetes: NotIn needs values, operators are a closed set.
        let s = selector("matchExpressions: [{key: tier, operator: NotIn}]");
        assert!(!selector_matches(&s, &team_a));
        let s = selector("matchExpressions: [{key: team, operator: Equals, values: [a]}]");
        assert!(!selector_matches(&s, &team_a));
    }
}
