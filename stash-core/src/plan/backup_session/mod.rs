//! BackupSession planner, step by step: [`start`] (skip, wait, or build the backup [`job`]),
//! [`follow`] the Job to a final phase with a reason (a failed, vanished or timed-out Job never
//! leaves the session Running; see [`deadline`]), then the [`status`]: phase, history cleanup
//! under `backupHistoryLimit`, and the retry ([`new_session`]).

mod deadline;
mod follow;
mod invoker;
mod job;
mod new_session;
mod start;
mod status;

pub use invoker::{configuration_of, siblings_of, SiblingSession, INVOKER_API_GROUP};
pub use new_session::{manual_session, new_session};
pub use status::history_to_delete;

use super::{to_value, unix, EventSpec, ObjectKey, Plan, Settings};
use crate::api::{AppBinding, BackupConfiguration, BackupSession, Function, Repository, Task};
use crate::conditions::{self, NewCondition};
use crate::names::backup_job_name;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use start::Start;
use std::collections::BTreeMap;

/// Session-level condition types.
pub mod condition {
    /// The session was skipped.
    pub const BACKUP_SKIPPED: &str = "BackupSkipped";
    /// The deadline passed.
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    /// Old sessions were cleaned up.
    pub const BACKUP_HISTORY_CLEANED: &str = "BackupHistoryCleaned";
    /// Metrics recorded.
    pub const METRICS_PUSHED: &str = "MetricsPushed";
    /// Retention ran (written by the job).
    pub const RETENTION_POLICY_APPLIED: &str = "RetentionPolicyApplied";
    /// Integrity verified (written by the job).
    pub const REPOSITORY_INTEGRITY_VERIFIED: &str = "RepositoryIntegrityVerified";
    /// Repository metrics pushed (written by the job).
    pub const REPOSITORY_METRICS_PUSHED: &str = "RepositoryMetricsPushed";
    /// Target: the Job exists.
    pub const BACKUP_EXECUTOR_ENSURED: &str = "BackupExecutorEnsured";
}
use condition::*;

/// Source of this planner's events.
pub const EVENT_SOURCE: &str = "BackupSession Controller";
/// While a Job runs, look again at least this often.
pub const REQUEUE_RUNNING_SECS: u64 = 30;
/// While the configuration has not been evaluated yet, look again this soon.
pub const REQUEUE_WAITING_SECS: u64 = 5;

/// What the BackupSession planner looks at.
#[derive(Debug, Clone, Default)]
pub struct BackupSessionInputs {
    /// The session.
    pub session: BackupSession,
    /// Its invoker, if it exists.
    pub invoker: Option<BackupConfiguration>,
    /// The invoker's Repository, if it exists.
    pub repository: Option<Repository>,
    /// The invoker's target, if it exists.
    pub target: Option<AppBinding>,
    /// Tasks by name.
    pub tasks: BTreeMap<String, Task>,
    /// Functions by name.
    pub functions: BTreeMap<String, Function>,
    /// The backup Job, if it exists.
    pub job: Option<Job>,
    /// Pods of the backup Job.
    pub pods: Vec<Pod>,
    /// The other sessions of the same invoker.
    pub siblings: Vec<SiblingSession>,
    /// Operator settings.
    pub settings: Settings,
    /// The time of this reconcile.
    pub now: Option<Time>,
}

const FINAL: [&str; 4] = ["Succeeded", "Failed", "Skipped", "Unknown"];

/// Plans one reconcile of a BackupSession.
pub fn plan(inputs: &BackupSessionInputs) -> Plan {
    let s = &inputs.session;
    let (name, namespace, now, mut plan) = super::begin(
        "stash.appscode.com/v1beta1",
        "BackupSession",
        &s.metadata,
        &inputs.now,
    );
    if s.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    let old = s.status.clone().unwrap_or_default();
    let mut st = old.clone();
    let phase = old.phase.clone().unwrap_or_default();
    if FINAL.contains(&phase.as_str()) {
        // A finished session only has its retry left to create.
        new_session::plan_retry(inputs, &mut st, &mut plan, &now);
        if st != old {
            plan.status = Some(to_value(&st));
        }
        return plan;
    }
    let job_name = backup_job_name(&name, 0);
    let job_key = ObjectKey {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        namespace: Some(namespace.clone()),
        name: job_name.clone(),
    };
    let created = s
        .metadata
        .creation_timestamp
        .as_ref()
        .map(unix)
        .unwrap_or_else(|| unix(&now));
    let mut conds = st.conditions.clone().unwrap_or_default();
    let mut events = Vec::new();
    let deadline = deadline::arm(inputs, &mut st, created, &now);

    let mut targets = st.targets.clone().unwrap_or_default();
    if targets.is_empty() && !deadline.passed {
        match start::decide(inputs, &name, &namespace) {
            Start::Wait => {
                if st.phase.is_none() {
                    st.phase = Some("Pending".into());
                }
                plan.requeue_after_seconds = Some(REQUEUE_WAITING_SECS);
                if st != old {
                    plan.status = Some(to_value(&st));
                }
                return plan;
            }
            Start::Skip(msg) => {
                conditions::set(
                    &mut conds,
                    NewCondition::yes(BACKUP_SKIPPED, "SkippedTakingNewBackup", msg.clone()),
                    None,
                    &now,
                );
                events.push(event("Normal", "BackupSession Skipped", msg));
                status::finish(
                    inputs, "Skipped", &mut conds, &mut st, &mut plan, &now, created,
                );
                st.conditions = Some(conds);
                plan.events.extend(events);
                plan.status = Some(to_value(&st));
                return plan;
            }
            Start::Run(bc) => {
                targets = vec![start::run(
                    inputs,
                    bc,
                    &name,
                    &namespace,
                    &job_name,
                    &now,
                    &mut st,
                    &mut plan,
                    &mut events,
                )];
            }
        }
    }

    let job_just_applied = plan
        .apply
        .iter()
        .any(|o| ObjectKey::of(o).as_ref() == Some(&job_key));
    follow::follow_job(
        inputs,
        &mut targets,
        &job_name,
        job_just_applied,
        deadline.passed,
        &now,
        &mut plan,
        &mut events,
    );
    deadline::enforce(
        &deadline,
        inputs,
        &mut targets,
        &job_key,
        &now,
        &mut conds,
        &mut plan,
        &mut events,
    );
    st.targets = Some(targets);
    status::settle(
        inputs,
        created,
        &now,
        conds,
        &mut st,
        &mut plan,
        &mut events,
    );
    plan.events.extend(events);
    if st != old {
        plan.status = Some(to_value(&st));
    }
    plan
}

fn event(type_: &str, reason: &str, message: String) -> EventSpec {
    EventSpec {
        type_: type_.into(),
        reason: reason.into(),
        message,
        source: EVENT_SOURCE.into(),
    }
}
