//! BackupSession: the deadline `spec.timeOut` of its configuration sets, and what happens
//! when it passes (the session fails and, unlike Stash, its Job is stopped).

use super::condition::DEADLINE_EXCEEDED;
use super::{event, BackupSessionInputs};
use crate::api::{BackupSessionStatus, BackupTargetStatus, Condition};
use crate::conditions::{self, NewCondition};
use crate::duration::{format_go_duration_secs, parse_go_duration_millis};
use crate::plan::{add_seconds, unix, EventSpec, ObjectKey, Plan};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The session's deadline.
pub(super) struct Deadline {
    /// `spec.timeOut` of the configuration, in seconds.
    pub timeout_secs: Option<i64>,
    /// The deadline has passed.
    pub passed: bool,
}

/// Records the deadline in the status once (from the creation time and the configuration's
/// `spec.timeOut`), and says whether it has passed.
pub(super) fn arm(
    inputs: &BackupSessionInputs,
    st: &mut BackupSessionStatus,
    created: i64,
    now: &Time,
) -> Deadline {
    let timeout_secs = inputs
        .invoker
        .as_ref()
        .and_then(|bc| bc.spec.time_out.as_deref())
        .and_then(|t| parse_go_duration_millis(t).ok())
        .map(|ms| (ms / 1000) as i64);
    if let Some(t) = timeout_secs {
        if st.session_deadline.is_none() {
            st.session_deadline = Some(add_seconds(
                &Time(k8s_openapi::jiff::Timestamp::from_second(created).unwrap_or(now.0)),
                t,
            ));
        }
    }
    let passed = st
        .session_deadline
        .as_ref()
        .is_some_and(|d| unix(now) >= unix(d));
    Deadline {
        timeout_secs,
        passed,
    }
}

/// Once the deadline has passed, every target not final fails, DeadlineExceeded is set and
/// the Job is deleted.
#[allow(clippy::too_many_arguments)]
pub(super) fn enforce(
    deadline: &Deadline,
    inputs: &BackupSessionInputs,
    targets: &mut [BackupTargetStatus],
    job_key: &ObjectKey,
    now: &Time,
    conds: &mut Vec<Condition>,
    plan: &mut Plan,
    events: &mut Vec<EventSpec>,
) {
    if !deadline.passed
        || targets
            .iter()
            .all(|t| matches!(t.phase.as_deref(), Some("Succeeded" | "Failed")))
    {
        return;
    }
    let msg = format!(
        "Failed to complete backup within {}.",
        format_go_duration_secs(deadline.timeout_secs.unwrap_or(0).max(0) as u64)
    );
    conditions::set(
        conds,
        NewCondition::yes(
            DEADLINE_EXCEEDED,
            "FailedToCompleteWithinDeadline",
            msg.clone(),
        ),
        None,
        now,
    );
    events.push(event("Warning", "BackupSession Deadline Exceeded", msg));
    // Unlike Stash, stop the Job: a session that is over must not keep writing.
    if inputs.job.is_some() {
        plan.delete.push(job_key.clone());
    }
    for t in targets.iter_mut() {
        if !matches!(t.phase.as_deref(), Some("Succeeded" | "Failed")) {
            t.phase = Some("Failed".into());
        }
    }
}
