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

use super::{ended_recently, ending_event, to_value, unix, EventSpec, ObjectKey, Plan, Settings};
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
        // A finished session only has its retry left to create, and its ending event to make
        // sure of (the answer to the write that ended it may have been lost).
        new_session::plan_retry(inputs, &mut st, &mut plan, &now);
        let created = s.metadata.creation_timestamp.as_ref().map(unix);
        if created.is_some_and(|c| ended_recently(c, old.session_duration.as_deref(), &now)) {
            plan.events.extend(ending(s, &old));
        }
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
                status::finish(
                    inputs, "Skipped", &mut conds, &mut st, &mut plan, &now, created,
                );
                st.conditions = Some(conds);
                events.extend(ending(s, &st));
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

/// The event of the session's end (Succeeded, Failed or Skipped), named so that it is sent once.
fn ending(session: &BackupSession, st: &crate::api::BackupSessionStatus) -> Option<EventSpec> {
    let name = session.metadata.name.clone().unwrap_or_default();
    let namespace = session
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let (type_, reason, message) = match st.phase.as_deref()? {
        "Succeeded" => (
            "Normal",
            "BackupSession Succeeded",
            format!("Backup session {namespace}/{name} succeeded."),
        ),
        "Failed" => (
            "Warning",
            "BackupSession Failed",
            format!("Backup session {namespace}/{name} failed."),
        ),
        "Skipped" => (
            "Normal",
            "BackupSession Skipped",
            st.conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == BACKUP_SKIPPED)
                .and_then(|c| c.message.clone())
                .unwrap_or_default(),
        ),
        _ => return None,
    };
    Some(ending_event(
        &session.metadata,
        type_,
        reason,
        message,
        EVENT_SOURCE,
    ))
}

fn event(type_: &str, reason: &str, message: String) -> EventSpec {
    EventSpec {
        type_: type_.into(),
        reason: reason.into(),
        message,
        source: EVENT_SOURCE.into(),
        name: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::BackupSessionStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("time"))
    }

    /// A session created at 1000 that succeeded after 10 seconds, looked at `now`.
    fn finished(now: i64) -> BackupSessionInputs {
        BackupSessionInputs {
            session: BackupSession {
                metadata: ObjectMeta {
                    name: Some("bc-1000".into()),
                    namespace: Some("demo".into()),
                    uid: Some("0F1E2D3C-aaaa-bbbb".into()),
                    creation_timestamp: Some(at(1000)),
                    ..Default::default()
                },
                spec: Default::default(),
                status: Some(BackupSessionStatus {
                    phase: Some("Succeeded".into()),
                    session_duration: Some("10s".into()),
                    ..Default::default()
                }),
            },
            now: Some(at(now)),
            ..Default::default()
        }
    }

    #[test]
    fn a_finished_session_plans_its_named_ending_event_for_30_minutes() {
        // The answer to the write that ended it may be lost: every look plans the event
        // again, under the one name its first sending used.
        let p = plan(&finished(1010 + 60));
        assert_eq!(p.status, None);
        assert_eq!(p.events.len(), 1, "{p:?}");
        let e = &p.events[0];
        assert_eq!(e.reason, "BackupSession Succeeded");
        assert_eq!(e.message, "Backup session demo/bc-1000 succeeded.");
        let name = e.name.clone().expect("named");
        assert_eq!(name, "bc-1000.0f1e2d3c.backupsession-succeeded");
        crate::names::check_subdomain(&name).expect("a valid Event name");
        // Later than the window (well under the Event TTL), nothing more is sent.
        assert_eq!(plan(&finished(1010 + 29 * 60)).events.len(), 1);
        assert!(plan(&finished(1010 + 30 * 60)).events.is_empty());
    }
}
