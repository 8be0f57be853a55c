//! BackupSession, follow step: each running target's phase from what the Job reported (its
//! host stats and hook conditions) or from how the Job ended: a failed, vanished or
//! hook-less Job ends the target Failed with a reason, never Running forever.

use super::condition::BACKUP_EXECUTOR_ENSURED;
use super::invoker::invoker_host;
use super::{event, BackupSessionInputs, REQUEUE_RUNNING_SECS};
use crate::api::{BackupTargetStatus, HostBackupStats};
use crate::conditions;
use crate::hooks::{self, HookType};
use crate::plan::job_result::{job_complete, job_failure};
use crate::plan::{EventSpec, Plan};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Follows the backup Job `job_name` for every target not yet final. `job_just_applied`: this
/// reconcile creates the Job, so its absence says nothing yet.
#[allow(clippy::too_many_arguments)]
pub(super) fn follow_job(
    inputs: &BackupSessionInputs,
    targets: &mut [BackupTargetStatus],
    job_name: &str,
    job_just_applied: bool,
    deadline_passed: bool,
    now: &Time,
    plan: &mut Plan,
    events: &mut Vec<EventSpec>,
) {
    let post_hook = inputs
        .invoker
        .as_ref()
        .and_then(|bc| bc.spec.hooks.as_ref())
        .is_some_and(|h| h.post_backup.is_some());
    for target in targets.iter_mut() {
        if target
            .phase
            .as_deref()
            .is_some_and(|p| p == "Succeeded" || p == "Failed")
        {
            continue;
        }
        let ensured = conditions::is_true(
            target.conditions.as_deref().unwrap_or_default(),
            BACKUP_EXECUTOR_ENSURED,
        );
        let host = invoker_host(inputs.invoker.as_ref());
        let tconds = target.conditions.clone().unwrap_or_default();
        // A failed preBackup hook ends the target: the Job stopped before any backup ran.
        if let Some(c) =
            hooks::recorded(&tconds, HookType::PreBackup).filter(|c| c.status == conditions::FALSE)
        {
            let reason = c.message.clone().unwrap_or_default();
            if !target
                .stats
                .iter()
                .flatten()
                .any(|h| h.phase.as_deref() == Some("Failed"))
            {
                upsert_failed_host(target, &host, &reason);
            }
            target.phase = Some("Failed".into());
            events.push(event(
                "Warning",
                "Host Backup Failed",
                format!("backup failed for host {host:?}. Reason: {reason}"),
            ));
            continue;
        }
        // With a postBackup hook the result is final only once the hook has reported.
        let awaiting_post_hook =
            post_hook && hooks::recorded(&tconds, HookType::PostBackup).is_none();
        let reported = reported_phase(target);
        if let Some(p) = reported.filter(|_| !awaiting_post_hook) {
            target.phase = Some(p.into());
            continue;
        }
        if deadline_passed {
            continue;
        }
        if !ensured || job_just_applied {
            continue;
        }
        let failure = match &inputs.job {
            None => Some(format!("backup Job {job_name} no longer exists")),
            Some(job) => job_failure(job, &inputs.pods),
        };
        if let (Some(reason), Some(_)) = (&failure, reported) {
            // The backup reported but the Job ended without the postBackup hook's result.
            let why = match &inputs.job {
                Some(job) if job_complete(job) => {
                    format!("backup Job {job_name} completed without recording the hook's result")
                }
                _ => format!("the hook did not report: {reason}"),
            };
            let mut tc = tconds.clone();
            conditions::set(&mut tc, HookType::PostBackup.failed(&why), None, now);
            target.conditions = Some(tc);
            target.phase = Some("Failed".into());
            continue;
        }
        if let Some(reason) = failure {
            upsert_failed_host(target, &host, &reason);
            target.phase = Some("Failed".into());
            events.push(event(
                "Warning",
                "Host Backup Failed",
                format!(
                    "backup failed for host {host:?} of {:?}/{:?}. Reason: {reason}",
                    target.r#ref.kind.clone().unwrap_or_default(),
                    target.r#ref.name.clone().unwrap_or_default()
                ),
            ));
        } else {
            plan.requeue_after_seconds = Some(REQUEUE_RUNNING_SECS);
        }
    }
}

/// The target's phase from the host stats the job reported, once every host reported.
fn reported_phase(t: &BackupTargetStatus) -> Option<&'static str> {
    let total = t.total_hosts.unwrap_or(0).max(0) as usize;
    let stats = t.stats.as_deref().unwrap_or_default();
    let done: Vec<&HostBackupStats> = stats
        .iter()
        .filter(|s| matches!(s.phase.as_deref(), Some("Succeeded" | "Failed")))
        .collect();
    if total == 0 || done.len() < total {
        return None;
    }
    let failed = done.iter().any(|s| s.phase.as_deref() == Some("Failed"))
        || t.conditions
            .iter()
            .flatten()
            .any(|c| c.status == conditions::FALSE);
    Some(if failed { "Failed" } else { "Succeeded" })
}

fn upsert_failed_host(t: &mut BackupTargetStatus, host: &str, reason: &str) {
    let stats = t.stats.get_or_insert_with(Vec::new);
    let entry = HostBackupStats {
        hostname: Some(host.into()),
        phase: Some("Failed".into()),
        error: Some(reason.into()),
        ..Default::default()
    };
    match stats
        .iter_mut()
        .find(|s| s.hostname.as_deref() == Some(host))
    {
        Some(s) => *s = entry,
        None => stats.push(entry),
    }
}
