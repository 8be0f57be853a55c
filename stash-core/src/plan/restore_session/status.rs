//! RestoreSession, status step: the phase from what the restore Job reported (host stats and
//! hook conditions) or from how it ended (failed, vanished, past the deadline), with the events
//! and duration of a final phase; until then when to look again.

use super::{RestoreSessionInputs, EVENT_SOURCE};
use crate::api::{Condition, HostRestoreStats, RestoreSessionStatus};
use crate::conditions::{self, NewCondition};
use crate::duration::format_go_duration_secs;
use crate::hooks::{self, HookType};
use crate::names::restore_job_name;
use crate::plan::job_result::job_failure;
use crate::plan::{unix, EventSpec, ObjectKey, Plan};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The event of the session's end (Succeeded, Failed, Unknown, Invalid; `conds` are its
/// conditions), named so that it is sent once.
pub(super) fn ending(
    rs: &crate::api::RestoreSession,
    st: &RestoreSessionStatus,
    conds: &[Condition],
) -> Option<EventSpec> {
    let name = rs.metadata.name.clone().unwrap_or_default();
    let namespace = rs
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let (type_, reason, message) = match st.phase.as_deref()? {
        p @ ("Succeeded" | "Failed" | "Unknown") => (
            if p == "Succeeded" {
                "Normal"
            } else {
                "Warning"
            },
            format!("RestoreSession {p}"),
            format!("Restore session {namespace}/{name} {}.", p.to_lowercase()),
        ),
        "Invalid" => (
            "Warning",
            "ResourceValidationFailed".to_string(),
            conds
                .iter()
                .find(|c| c.type_ == "ValidationPassed")
                .and_then(|c| c.message.clone())
                .unwrap_or_default(),
        ),
        _ => return None,
    };
    Some(crate::plan::ending_event(
        &rs.metadata,
        type_,
        &reason,
        message,
        EVENT_SOURCE,
    ))
}

/// Follows the restore Job of the session and settles its phase. `ensured`: the Job was
/// ensured before this reconcile.
#[allow(clippy::too_many_arguments)]
pub(super) fn settle(
    inputs: &RestoreSessionInputs,
    host: &str,
    target_desc: &str,
    created: i64,
    ensured: bool,
    deadline_passed: bool,
    now: &Time,
    st: &mut RestoreSessionStatus,
    conds: &mut Vec<Condition>,
    plan: &mut Plan,
    events: &mut Vec<EventSpec>,
) {
    let rs = &inputs.session;
    let generation = rs.metadata.generation;
    let name = rs.metadata.name.clone().unwrap_or_default();
    let namespace = rs
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let job_name = restore_job_name(&name);
    let job_key = ObjectKey {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        namespace: Some(namespace.clone()),
        name: job_name.clone(),
    };
    let just_applied = plan
        .apply
        .iter()
        .any(|o| ObjectKey::of(o).as_ref() == Some(&job_key));
    let stats = st.stats.clone().unwrap_or_default();
    let reported: Vec<&HostRestoreStats> = stats
        .iter()
        .filter(|s| matches!(s.phase.as_deref(), Some("Succeeded" | "Failed" | "Unknown")))
        .collect();
    let total = st.total_hosts.unwrap_or(0).max(0) as usize;
    let mut final_phase = None;
    let post_hook = rs
        .spec
        .hooks
        .as_ref()
        .is_some_and(|h| h.post_restore.is_some());
    let pre_hook_failed = hooks::recorded(conds, HookType::PreRestore)
        .filter(|c| c.status == conditions::FALSE)
        .and_then(|c| c.message.clone());
    let post_hook_result = hooks::recorded(conds, HookType::PostRestore).map(|c| c.status.clone());
    let all_reported = total > 0 && reported.len() >= total;
    if st.phase.as_deref() == Some("Failed") {
        final_phase = Some("Failed");
    } else if let Some(reason) = pre_hook_failed {
        // The Job stopped before the restore ran; the hook's reason is the host's error.
        if reported.is_empty() {
            let mut stats = stats.clone();
            stats.push(HostRestoreStats {
                hostname: Some(host.to_string()),
                phase: Some("Failed".into()),
                error: Some(reason),
                ..Default::default()
            });
            st.stats = Some(stats);
        }
        final_phase = Some("Failed");
    } else if all_reported && post_hook_result.as_deref() == Some(conditions::FALSE) {
        final_phase = Some("Failed");
    } else if all_reported && post_hook && post_hook_result.is_none() && !deadline_passed {
        // Wait for the postRestore hook, unless the Job ended without it.
        let ended = match &inputs.job {
            _ if just_applied || !ensured => None,
            None => Some(format!("restore Job {job_name} no longer exists")),
            Some(job) => {
                job_failure(job, &inputs.pods).map(|f| f.replace("backup Job", "restore Job"))
            }
        };
        if let Some(reason) = ended {
            let reason = reason.replace(
                "completed without reporting results",
                "completed without recording the hook's result",
            );
            conditions::set(
                conds,
                HookType::PostRestore.failed(&format!("the hook did not report: {reason}")),
                generation,
                now,
            );
            final_phase = Some("Failed");
        }
    } else if all_reported {
        final_phase = Some(
            if reported
                .iter()
                .any(|s| s.phase.as_deref() == Some("Failed"))
            {
                "Failed"
            } else if reported
                .iter()
                .any(|s| s.phase.as_deref() == Some("Unknown"))
            {
                "Unknown"
            } else {
                "Succeeded"
            },
        );
    } else if deadline_passed {
        let msg = format!(
            "Failed to complete restore within {}.",
            rs.spec.time_out.clone().unwrap_or_default()
        );
        conditions::set(
            conds,
            NewCondition::yes(
                "DeadlineExceeded",
                "FailedToCompleteWithinDeadline",
                msg.clone(),
            ),
            generation,
            now,
        );
        events.push(EventSpec {
            type_: "Warning".into(),
            reason: "RestoreSession Deadline Exceeded".into(),
            message: msg,
            source: EVENT_SOURCE.into(),
            name: None,
        });
        if inputs.job.is_some() {
            plan.delete.push(job_key);
        }
        final_phase = Some("Failed");
    } else if !just_applied && ensured {
        let failure = match &inputs.job {
            None => Some(format!("restore Job {job_name} no longer exists")),
            Some(job) => {
                job_failure(job, &inputs.pods).map(|f| f.replace("backup Job", "restore Job"))
            }
        };
        if let Some(reason) = failure {
            let mut stats = stats.clone();
            stats.retain(|s| s.hostname.as_deref().unwrap_or("") != host);
            stats.push(HostRestoreStats {
                hostname: Some(host.to_string()),
                phase: Some("Failed".into()),
                error: Some(reason.clone()),
                ..Default::default()
            });
            st.stats = Some(stats);
            events.push(EventSpec {
                type_: "Warning".into(),
                reason: "Host Restore Failed".into(),
                message: format!(
                    "restore failed for host {host:?} of {target_desc}. Reason: {reason}"
                ),
                source: EVENT_SOURCE.into(),
                name: None,
            });
            final_phase = Some("Failed");
        }
    }
    match final_phase {
        Some(p) => {
            conditions::set(
                conds,
                NewCondition::yes(
                    "MetricsPushed",
                    "SuccessfullyPushedMetrics",
                    "Successfully pushed metrics.",
                ),
                generation,
                now,
            );
            st.phase = Some(p.into());
            st.session_duration =
                Some(format_go_duration_secs((unix(now) - created).max(0) as u64));
            events.extend(ending(rs, st, conds));
        }
        None => {
            let mut requeue = 30u64;
            if let Some(d) = &st.session_deadline {
                requeue = requeue.min((unix(d) - unix(now)).max(1) as u64);
            }
            plan.requeue_after_seconds = Some(requeue);
        }
    }
}
