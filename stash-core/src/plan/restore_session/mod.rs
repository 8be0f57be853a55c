//! RestoreSession planner, step by step: [`validate`] the requirements into conditions, build
//! the restore [`job`] `stash-restore-<rs>-0` with the snapshot rule resolved, then the
//! [`status`]: the phase from the Job and the reported host stats (a failed or vanished Job
//! ends the restore Failed with a reason).

mod job;
mod status;
mod validate;

pub use validate::{select_rule, Selection};

use super::{
    add_seconds, ended_recently, to_value, unix, EventSpec, FinalizerAction, Plan, Settings,
    FINALIZER,
};
use crate::api::{AppBinding, Function, Repository, RestoreSession, Task};
use crate::conditions::{self, NewCondition};
use crate::duration::{format_go_duration_secs, parse_go_duration_millis};
use crate::names::restore_job_name;
use job::build_job;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::{BTreeMap, BTreeSet};
use validate::validate;

/// Source of this planner's events.
pub const EVENT_SOURCE: &str = "RestoreSession Controller";

/// What the RestoreSession planner looks at.
#[derive(Debug, Clone, Default)]
pub struct RestoreSessionInputs {
    /// The session.
    pub session: RestoreSession,
    /// The Repository, if it exists.
    pub repository: Option<Repository>,
    /// Key names of the storage Secret, if it exists.
    pub storage_secret_keys: Option<BTreeSet<String>>,
    /// The operator was refused reading the storage Secret (RBAC).
    pub storage_secret_forbidden: bool,
    /// The target AppBinding, if it exists.
    pub target: Option<AppBinding>,
    /// Tasks by name.
    pub tasks: BTreeMap<String, Task>,
    /// Functions by name.
    pub functions: BTreeMap<String, Function>,
    /// The restore Job, if it exists.
    pub job: Option<Job>,
    /// Its pods.
    pub pods: Vec<Pod>,
    /// Operator settings.
    pub settings: Settings,
    /// The time of this reconcile.
    pub now: Option<Time>,
}

/// Plans one reconcile of a RestoreSession.
pub fn plan(inputs: &RestoreSessionInputs) -> Plan {
    let rs = &inputs.session;
    let (name, namespace, now, mut plan) = super::begin(
        "stash.appscode.com/v1beta1",
        "RestoreSession",
        &rs.metadata,
        &inputs.now,
    );
    let has_finalizer = rs
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER);
    if rs.metadata.deletion_timestamp.is_some() {
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
    let old = rs.status.clone().unwrap_or_default();
    let phase = old.phase.clone().unwrap_or_default();
    if ["Succeeded", "Failed", "Unknown", "Invalid"].contains(&phase.as_str()) {
        // Only its ending event is left to make sure of (the answer to the write that ended
        // it may have been lost).
        let created = rs.metadata.creation_timestamp.as_ref().map(unix);
        if created.is_some_and(|c| ended_recently(c, old.session_duration.as_deref(), &now)) {
            let conds = old.conditions.clone().unwrap_or_default();
            plan.events.extend(status::ending(rs, &old, &conds));
        }
        return plan;
    }
    let mut st = old.clone();
    let mut conds = st.conditions.clone().unwrap_or_default();
    let generation = rs.metadata.generation;
    let created = rs
        .metadata
        .creation_timestamp
        .as_ref()
        .map(unix)
        .unwrap_or_else(|| unix(&now));
    let job_name = restore_job_name(&name);
    let host = rs
        .spec
        .target
        .as_ref()
        .and_then(|t| t.alias.clone())
        .unwrap_or_default();

    let validated = validate(inputs, &namespace, &host, &mut conds, &now);
    let target_desc = &validated.target_desc;
    let mut events = Vec::new();
    if !validated.errors.is_empty() {
        let msg = validated.errors.join("; ");
        conditions::set(
            &mut conds,
            NewCondition::no("ValidationPassed", "ResourceValidationFailed", msg.clone()),
            generation,
            &now,
        );
        st.phase = Some("Invalid".into());
        st.session_duration = Some(format_go_duration_secs((unix(&now) - created).max(0) as u64));
        events.extend(status::ending(rs, &st, &conds));
        st.conditions = Some(conds);
        plan.events = events;
        plan.status = Some(to_value(&st));
        return plan;
    }
    conditions::set(
        &mut conds,
        NewCondition::yes(
            "ValidationPassed",
            "ResourceValidationPassed",
            "Successfully validated.",
        ),
        generation,
        &now,
    );
    if validated.missing {
        st.phase = Some("Pending".into());
        st.conditions = Some(conds);
        plan.requeue_after_seconds = Some(5);
        if st != old {
            plan.status = Some(to_value(&st));
        }
        return plan;
    }

    // Deadline.
    if let Some(t) = rs
        .spec
        .time_out
        .as_deref()
        .and_then(|t| parse_go_duration_millis(t).ok())
    {
        if st.session_deadline.is_none() {
            st.session_deadline = Some(add_seconds(
                &Time(k8s_openapi::jiff::Timestamp::from_second(created).unwrap_or(now.0)),
                (t / 1000) as i64,
            ));
        }
    }
    let deadline_passed = st
        .session_deadline
        .as_ref()
        .is_some_and(|d| unix(&now) >= unix(d));

    let ensured = conditions::is_true(&conds, "RestoreExecutorEnsured");
    if !ensured && !deadline_passed {
        let selection = validated.selection.clone().unwrap_or(Selection {
            snapshots: "latest".into(),
            source_host: host.clone(),
        });
        match build_job(inputs, &namespace, &job_name, &host, &selection) {
            Ok(objects) => {
                plan.apply.extend(objects);
                conditions::set(&mut conds, NewCondition::yes("RestoreExecutorEnsured", "SuccessfullyEnsuredRestoreExecutor", format!("Restorer job/init-container has been ensured successfully for {target_desc}.")), generation, &now);
                st.total_hosts = Some(1);
                st.phase = Some("Running".into());
            }
            Err(e) => {
                let msg = format!("Failed to ensure restore executor. Reason: {e}");
                conditions::set(
                    &mut conds,
                    NewCondition::no(
                        "RestoreExecutorEnsured",
                        "FailedToEnsureRestoreExecutor",
                        msg.clone(),
                    ),
                    generation,
                    &now,
                );
                events.push(EventSpec {
                    type_: "Warning".into(),
                    reason: "Restore Executor Failed".into(),
                    message: msg,
                    source: EVENT_SOURCE.into(),
                    name: None,
                });
                st.phase = Some("Failed".into());
            }
        }
    }

    status::settle(
        inputs,
        &host,
        target_desc,
        created,
        ensured,
        deadline_passed,
        &now,
        &mut st,
        &mut conds,
        &mut plan,
        &mut events,
    );
    st.conditions = Some(conds);
    plan.events.extend(events);
    if st != old {
        plan.status = Some(to_value(&st));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RestoreSessionStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("time"))
    }

    /// A restore created at 1000 that ended in `phase` after 10 seconds, looked at `now`.
    fn ended(phase: &str, now: i64) -> RestoreSessionInputs {
        RestoreSessionInputs {
            session: RestoreSession {
                metadata: ObjectMeta {
                    name: Some("rs".into()),
                    namespace: Some("demo".into()),
                    uid: Some("7e570e00-1111".into()),
                    creation_timestamp: Some(at(1000)),
                    finalizers: Some(vec![FINALIZER.into()]),
                    ..Default::default()
                },
                spec: Default::default(),
                status: Some(RestoreSessionStatus {
                    phase: Some(phase.into()),
                    session_duration: Some("10s".into()),
                    ..Default::default()
                }),
            },
            now: Some(at(now)),
            ..Default::default()
        }
    }

    #[test]
    fn an_ended_restore_plans_its_named_ending_event_for_30_minutes() {
        let p = plan(&ended("Failed", 1010 + 60));
        assert_eq!(p.status, None);
        let names: Vec<_> = p.events.iter().map(|e| e.name.clone()).collect();
        assert_eq!(
            names,
            [Some("rs.7e570e00.restoresession-failed".to_string())]
        );
        assert_eq!(p.events[0].message, "Restore session demo/rs failed.");
        assert!(plan(&ended("Failed", 1010 + 30 * 60)).events.is_empty());
    }
}
