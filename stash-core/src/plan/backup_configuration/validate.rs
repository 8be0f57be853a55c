//! BackupConfiguration, validate step: look at what the configuration references (Repository,
//! storage Secret, target, Task and Functions) and at its spec, and record the verdict as the
//! conditions RepositoryFound, BackendSecretFound, BackupTargetFound and ValidationPassed.

use super::condition::*;
use super::{BackupConfigurationInputs, REQUEUE_FORBIDDEN_SECS, REQUEUE_MISSING_SECS};
use crate::api::{Condition, Repository};
use crate::conditions::{self, NewCondition};
use crate::cron::Schedule;
use crate::plan::backend::{
    backend_info, missing_secret_keys, secret_forbidden_message, BackendInfo,
};
use crate::plan::job::task_name;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;

/// What validation found, beyond the conditions it set.
pub(super) struct Validated {
    /// Look again this soon: something referenced is missing or may not be read.
    pub requeue: Option<u64>,
    /// The storage Secret's name (empty when there is no Repository or it names none).
    pub storage_secret: String,
    /// Repository, storage Secret and target exist and the spec is valid: the trigger CronJob
    /// may exist.
    pub ready_to_schedule: bool,
}

/// Validates the configuration, setting its conditions in `conds` (in Stash's order).
pub(super) fn validate(
    inputs: &BackupConfigurationInputs,
    namespace: &str,
    conds: &mut Vec<Condition>,
    now: &Time,
) -> Validated {
    let mut check = Check {
        inputs,
        namespace,
        conds,
        generation: inputs.bc.metadata.generation,
        now,
        errors: validate_spec(inputs),
        requeue: None,
    };
    let backend = check.repository();
    let storage_secret = check.storage_secret(backend.as_ref());
    check.target();
    if let Err(e) = resolve_task_functions(inputs) {
        check.errors.push(e);
    }
    check.verdict();
    let conds = &*check.conds;
    Validated {
        requeue: check.requeue,
        storage_secret,
        ready_to_schedule: conditions::is_true(conds, REPOSITORY_FOUND)
            && conditions::is_true(conds, BACKEND_SECRET_FOUND)
            && conditions::is_true(conds, VALIDATION_PASSED)
            && conditions::is_true(conds, BACKUP_TARGET_FOUND),
    }
}

/// The state of one validation: the conditions being set and the errors found so far.
struct Check<'a> {
    inputs: &'a BackupConfigurationInputs,
    namespace: &'a str,
    conds: &'a mut Vec<Condition>,
    generation: Option<i64>,
    now: &'a Time,
    errors: Vec<String>,
    requeue: Option<u64>,
}

impl Check<'_> {
    fn set(&mut self, condition: NewCondition<'_>) {
        conditions::set(self.conds, condition, self.generation, self.now);
    }

    /// `namespace/name` of the referenced Repository.
    fn repository_ref(&self) -> (String, String) {
        let bc = &self.inputs.bc;
        let repo_ns = bc
            .spec
            .repository
            .as_ref()
            .and_then(|r| r.namespace.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.namespace.to_string());
        let repo_name = bc
            .spec
            .repository
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default();
        (repo_ns, repo_name)
    }

    /// RepositoryFound; a Repository that exists must have a usable backend and allow this
    /// namespace.
    fn repository(&mut self) -> Option<BackendInfo> {
        let (repo_ns, repo_name) = self.repository_ref();
        let mut backend = None;
        match &self.inputs.repository {
            Some(repo) => {
                self.set(NewCondition::yes(
                    REPOSITORY_FOUND,
                    "RepositoryAvailable",
                    format!("Repository {repo_ns}/{repo_name} exist."),
                ));
                match backend_info(&repo.spec.backend) {
                    Ok(info) => backend = Some(info),
                    Err(e) => self
                        .errors
                        .push(format!("Repository {repo_ns}/{repo_name}: {e}")),
                }
                if let Err(e) = usage_allowed(repo, self.namespace, &self.inputs.namespace_labels) {
                    self.errors.push(e);
                }
            }
            None => {
                self.set(NewCondition::no(
                    REPOSITORY_FOUND,
                    "RepositoryNotAvailable",
                    format!("Repository {repo_ns}/{repo_name} does not exist."),
                ));
                self.requeue = Some(REQUEUE_MISSING_SECS);
            }
        }
        backend
    }

    /// BackendSecretFound: the storage Secret exists (and may be read) with the keys the
    /// provider needs. Returns the Secret's name.
    fn storage_secret(&mut self, backend: Option<&BackendInfo>) -> String {
        let (repo_ns, repo_name) = self.repository_ref();
        let inputs = self.inputs;
        let secret_name = inputs
            .repository
            .as_ref()
            .and_then(|r| r.spec.backend.storage_secret_name.clone())
            .unwrap_or_default();
        match (&inputs.repository, &inputs.storage_secret_keys) {
            (None, _) => self.set(NewCondition::unknown(
                BACKEND_SECRET_FOUND,
                "UnableToCheckBackendSecretAvailability",
                "Repository does not exist.",
            )),
            (Some(_), _) if secret_name.is_empty() => self.set(NewCondition::no(
                BACKEND_SECRET_FOUND,
                "BackendSecretNotAvailable",
                format!(
                    "Repository {repo_ns}/{repo_name}: spec.backend.storageSecretName is not set."
                ),
            )),
            (Some(_), None) if inputs.storage_secret_forbidden => {
                self.set(NewCondition::unknown(
                    BACKEND_SECRET_FOUND,
                    "UnableToCheckBackendSecretAvailability",
                    secret_forbidden_message(&repo_ns, &secret_name),
                ));
                self.requeue = Some(REQUEUE_FORBIDDEN_SECS);
            }
            (Some(_), None) => {
                self.set(NewCondition::no(
                    BACKEND_SECRET_FOUND,
                    "BackendSecretNotAvailable",
                    format!("Backend Secret {repo_ns}/{secret_name} does not exist."),
                ));
                self.requeue = Some(REQUEUE_MISSING_SECS);
            }
            (Some(_), Some(keys)) => {
                let missing = backend
                    .map(|b| missing_secret_keys(b.provider, keys))
                    .unwrap_or_default();
                if missing.is_empty() {
                    self.set(NewCondition::yes(
                        BACKEND_SECRET_FOUND,
                        "BackendSecretAvailable",
                        format!("Backend Secret {repo_ns}/{secret_name} exist."),
                    ));
                } else {
                    self.set(NewCondition::no(
                        BACKEND_SECRET_FOUND,
                        "BackendSecretNotAvailable",
                        format!(
                            "Backend Secret {repo_ns}/{secret_name} lacks the key(s) {}.",
                            missing.join(", ")
                        ),
                    ));
                }
            }
        }
        secret_name
    }

    /// BackupTargetFound: the AppBinding exists.
    fn target(&mut self) {
        let target_ref = crate::plan::target_ref_in(
            self.inputs
                .bc
                .spec
                .target
                .as_ref()
                .and_then(|t| t.r#ref.as_ref()),
            self.namespace,
        );
        let target_ns = target_ref.namespace.clone().unwrap_or_default();
        let target_kind = target_ref.kind.clone().unwrap_or_default();
        let target_name = target_ref.name.clone().unwrap_or_default();
        if self.inputs.target.is_some() {
            self.set(NewCondition::yes(
                BACKUP_TARGET_FOUND,
                "TargetAvailable",
                format!("Backup target {target_kind} {target_ns}/{target_name} found."),
            ));
        } else {
            self.set(NewCondition::no(
                BACKUP_TARGET_FOUND,
                "TargetNotAvailable",
                format!("Backup target {target_kind} {target_ns}/{target_name} does not exist."),
            ));
            self.requeue = Some(REQUEUE_MISSING_SECS);
        }
    }

    /// ValidationPassed, from every error found.
    fn verdict(&mut self) {
        if self.errors.is_empty() {
            self.set(NewCondition::yes(
                VALIDATION_PASSED,
                "ResourceValidationPassed",
                "Successfully validated.",
            ));
        } else {
            let message = self.errors.join("; ");
            self.set(NewCondition::no(
                VALIDATION_PASSED,
                "ResourceValidationFailed",
                message,
            ));
        }
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
        .as_deref()
        .and_then(crate::plan::job::interim_template_error)
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
