//! BackupConfiguration planner, in three steps: [`validate`] what the configuration references
//! into conditions, build the RBAC of its Jobs ([`rbac`]) and its trigger CronJob
//! ([`cronjob`]), then the phase, events and status ([`status`]).

mod cronjob;
mod rbac;
mod status;
mod validate;

pub use status::{evaluated, phase_of};
pub use validate::selector_matches;

use super::labels::invoker_labels;
use super::rbac::service_account_role_binding;
use super::{controller_ref, to_value, FinalizerAction, ObjectKey, Plan, Settings, FINALIZER};
use crate::api::{AppBinding, BackupConfiguration, Function, Repository, Task};
use crate::conditions::{self, NewCondition};
use crate::names::{backup_job_rbac_name, cronjob_name};
use cronjob::trigger_cronjob;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use rbac::{backup_job_rules, trigger_rules};
use std::collections::{BTreeMap, BTreeSet};
use validate::{validate, Validated};

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

/// Plans one reconcile of a BackupConfiguration: validate what it references, build the RBAC
/// and (when it is ready) the trigger CronJob, delete children no longer wanted, set the status.
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

    let mut conds = bc
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let validated = validate(inputs, &namespace, &mut conds, &now);

    let desired = children(inputs, &name, &namespace, &validated);
    let cronjob = if validated.ready_to_schedule {
        NewCondition::yes(
            CRONJOB_CREATED,
            "CronJobCreationSucceeded",
            "Successfully created backup triggering CronJob.",
        )
    } else {
        NewCondition::no(
            CRONJOB_CREATED,
            "CronJobCreationFailed",
            "The backup triggering CronJob is not created until the BackupConfiguration is ready.",
        )
    };
    conditions::set(&mut conds, cronjob, bc.metadata.generation, &now);

    // Orphans: children that exist but are no longer desired (e.g. the CronJob of a BC that
    // became invalid, or the trigger SA after the user set their own).
    let desired_keys: BTreeSet<ObjectKey> = desired.iter().filter_map(ObjectKey::of).collect();
    plan.delete = inputs
        .children
        .iter()
        .filter(|k| !desired_keys.contains(*k))
        .cloned()
        .collect();
    plan.apply = desired;

    status::publish(bc, conds, &mut plan);
    plan.requeue_after_seconds = validated.requeue;
    plan
}

/// The children to apply: the backup Jobs' RBAC (always, so a manual session can run while
/// the configuration is paused), and once it is ready the trigger CronJob with its RBAC
/// (unless the user names their own ServiceAccount).
fn children(
    inputs: &BackupConfigurationInputs,
    name: &str,
    namespace: &str,
    validated: &Validated,
) -> Vec<serde_json::Value> {
    let bc = &inputs.bc;
    let labels = invoker_labels(
        bc.metadata.labels.as_ref(),
        "stash-backup",
        "BackupConfiguration",
        name,
    );
    let owner = controller_ref(
        "stash.appscode.com/v1beta1",
        "BackupConfiguration",
        name,
        bc.metadata.uid.as_deref(),
    );
    let meta = |object_name: String| ObjectMeta {
        name: Some(object_name),
        namespace: Some(namespace.to_string()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    };

    let appbinding_secret = inputs
        .target
        .as_ref()
        .and_then(|t| t.spec.secret.as_ref())
        .map(|s| s.name.clone());
    let mut secrets: Vec<String> = [Some(validated.storage_secret.clone()), appbinding_secret]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect();
    secrets.sort();
    secrets.dedup();
    let mut desired: Vec<serde_json::Value> = Vec::new();
    desired.extend(service_account_role_binding(
        meta(backup_job_rbac_name(name)),
        backup_job_rules(&secrets),
        bc.spec
            .runtime_settings
            .as_ref()
            .and_then(|r| r.pod.as_ref())
            .and_then(|p| p.service_account_annotations.clone()),
    ));
    if !validated.ready_to_schedule {
        return desired;
    }

    let cron_name = cronjob_name(name);
    let user_sa = bc
        .spec
        .runtime_settings
        .as_ref()
        .and_then(|r| r.pod.as_ref())
        .and_then(|p| p.service_account_name.clone())
        .filter(|s| !s.is_empty());
    if user_sa.is_none() {
        desired.extend(service_account_role_binding(
            meta(cron_name.clone()),
            trigger_rules(name),
            None,
        ));
    }
    let cronjob = trigger_cronjob(
        bc,
        meta(cron_name.clone()),
        &labels,
        user_sa.unwrap_or(cron_name),
        &inputs.settings,
    );
    desired.push(to_value(&cronjob));
    desired
}
