//! What a Job's status says about how it ended: complete, or failed and why (its Failed
//! condition and the first container that exited non-zero).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

/// Whether the Job has the condition `Complete=True`.
pub(crate) fn job_complete(job: &Job) -> bool {
    job.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Complete" && c.status == "True")
}

/// Why a Job has failed, if it has: Failed condition, failed pods, or completion without
/// results (the status updater runs last; a complete Job with no stats lost them).
pub fn job_failure(job: &Job, pods: &[Pod]) -> Option<String> {
    let status = job.status.clone().unwrap_or_default();
    let failed_cond = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed" && c.status == "True");
    let complete = job_complete(job);
    if failed_cond.is_none() && status.failed.unwrap_or(0) == 0 {
        if complete {
            return Some("backup Job completed without reporting results".into());
        }
        return None;
    }
    let detail = pods.iter().find_map(pod_failure);
    let base = failed_cond
        .map(|c| {
            format!(
                "backup Job failed ({}: {})",
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default()
            )
        })
        .unwrap_or_else(|| "backup Job's pod failed".to_string());
    Some(match detail {
        Some(d) => format!("{base}: {d}"),
        None => base,
    })
}

/// Why a pod failed: the first container that exited non-zero, else the pod's reason.
pub(crate) fn pod_failure(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let all = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for cs in all {
        if let Some(t) = cs.state.as_ref().and_then(|s| s.terminated.as_ref()) {
            if t.exit_code != 0 {
                return Some(format!(
                    "container {} exited with code {}{}",
                    cs.name,
                    t.exit_code,
                    t.reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    status
        .reason
        .clone()
        .map(|r| format!("pod {r}: {}", status.message.clone().unwrap_or_default()))
}
