//! Job controller: creates pods from the template, counts finished pods (through the
//! `batch.kubernetes.io/job-tracking` finalizer), retries with back-off on the virtual clock,
//! and sets the `Complete`/`Failed` conditions.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::MANAGER;
use crate::apiserver::{
    name_of, namespace_of, uid_of, Apiserver, DeleteOptions, Propagation, WriteOptions,
};
use crate::clock::{format_time, parse_time};

const TRACKING: &str = "batch.kubernetes.io/job-tracking";

/// Per-job retry state kept by the controller.
#[derive(Debug, Default)]
pub(super) struct JobController {
    retry_at: Mutex<HashMap<String, i64>>,
}

/// Whether a Job has a `Complete` or `Failed` condition that is `True`.
pub fn job_finished(job: &Value) -> Option<&str> {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|c| {
            let t = c["type"].as_str()?;
            ((t == "Complete" || t == "Failed") && c["status"] == "True").then_some(t)
        })
}

fn condition(kind: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": kind, "status": "True", "lastProbeTime": now, "lastTransitionTime": now, "reason": reason, "message": message})
}

fn owned_by(pod: &Value, uid: &str) -> bool {
    pod["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["uid"] == uid && r["controller"] == true)
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("Pending")
}

impl JobController {
    /// One pass over every Job.
    pub(super) fn sync(&self, api: &Apiserver) {
        let (Ok(jobs_info), Ok(pods_info)) = (
            api.resource("batch", "v1", "jobs"),
            api.resource("", "v1", "pods"),
        ) else {
            return;
        };
        let pods = api.objects_of(&pods_info);
        let now = api.clock.now();
        let now_s = format_time(now);
        let jobs = api.objects_of(&jobs_info);
        release_orphans(api, &pods_info, &pods, &jobs);
        let by_controller = super::cronjob::by_controller_uid(&pods);
        for job in jobs {
            let ns = namespace_of(&job).to_string();
            let name = name_of(&job).to_string();
            let uid = uid_of(&job).to_string();
            let mine: Vec<&Value> = by_controller
                .get(uid.as_str())
                .into_iter()
                .flatten()
                .copied()
                .filter(|p| namespace_of(p) == ns && owned_by(p, &uid))
                .collect();
            // Count finished pods that still carry the tracking finalizer, then release them.
            let newly: Vec<&Value> = mine
                .iter()
                .copied()
                .filter(|p| matches!(phase(p), "Succeeded" | "Failed"))
                .filter(|p| {
                    p["metadata"]["finalizers"]
                        .as_array()
                        .is_some_and(|f| f.iter().any(|x| x == TRACKING))
                })
                .collect();
            let new_succeeded = newly.iter().filter(|p| phase(p) == "Succeeded").count() as i64;
            let new_failed = newly.len() as i64 - new_succeeded;
            let finished = job_finished(&job).is_some();
            let active: Vec<&Value> = mine
                .iter()
                .copied()
                .filter(|p| {
                    !matches!(phase(p), "Succeeded" | "Failed")
                        && p["metadata"].get("deletionTimestamp").is_none()
                })
                .collect();
            let ready = active.iter().filter(|p| phase(p) == "Running").count() as i64;
            let spec = &job["spec"];
            let succeeded = job["status"]["succeeded"].as_i64().unwrap_or(0) + new_succeeded;
            let failed = job["status"]["failed"].as_i64().unwrap_or(0) + new_failed;
            let completions = spec["completions"].as_i64().unwrap_or(1);
            let parallelism = spec["parallelism"].as_i64().unwrap_or(1);
            let backoff_limit = spec["backoffLimit"].as_i64().unwrap_or(6);
            let suspended = spec["suspend"] == true;
            if new_failed > 0 {
                let delay = (10i64 << (failed - 1).clamp(0, 6)).min(360);
                self.retry_at
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(uid.clone(), now.as_second() + delay);
            }

            let mut conditions: Vec<Value> = Vec::new();
            let mut delete_active = false;
            let mut completion_time = None;
            if !finished {
                let start = job["status"]["startTime"].as_str().and_then(parse_time);
                let deadline = spec["activeDeadlineSeconds"].as_i64();
                if succeeded >= completions {
                    conditions.push(condition(
                        "SuccessCriteriaMet",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                        &now_s,
                    ));
                    conditions.push(condition(
                        "Complete",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                        &now_s,
                    ));
                    completion_time = Some(now_s.clone());
                    delete_active = true;
                } else if failed > backoff_limit {
                    conditions.push(condition(
                        "FailureTarget",
                        "BackoffLimitExceeded",
                        "Job has reached the specified backoff limit",
                        &now_s,
                    ));
                    conditions.push(condition(
                        "Failed",
                        "BackoffLimitExceeded",
                        "Job has reached the specified backoff limit",
                        &now_s,
                    ));
                    delete_active = true;
                } else if let (Some(start), Some(d)) = (start, deadline) {
                    if now.as_second() - start.as_second() >= d {
                        conditions.push(condition(
                            "FailureTarget",
                            "DeadlineExceeded",
                            "Job was active longer than specified deadline",
                            &now_s,
                        ));
                        conditions.push(condition(
                            "Failed",
                            "DeadlineExceeded",
                            "Job was active longer than specified deadline",
                            &now_s,
                        ));
                        delete_active = true;
                    }
                }
            }
            let mut created = 0i64;
            if !finished && conditions.is_empty() && !suspended {
                let retry_ok = self
                    .retry_at
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&uid)
                    .is_none_or(|at| now.as_second() >= *at);
                let want = parallelism.min(completions - succeeded) - active.len() as i64;
                if want > 0 && retry_ok {
                    for _ in 0..want {
                        if let Ok(pod) = create_pod(api, &job) {
                            created += 1;
                            let message = format!("Created pod: {}", name_of(&pod));
                            super::record_event(
                                api,
                                &job,
                                "Normal",
                                "SuccessfulCreate",
                                &message,
                                "job-controller",
                            );
                        }
                    }
                }
            }
            if delete_active {
                for p in &active {
                    let opts = DeleteOptions {
                        propagation: Some(Propagation::Background),
                        ..DeleteOptions::default()
                    };
                    let _ = api.delete(&pods_info, &ns, name_of(p), &opts);
                }
            }
            let active_count = if delete_active {
                0
            } else {
                active.len() as i64 + created
            };
            let _ = api.modify(&jobs_info, &ns, &name, "status", MANAGER, |j| {
                let before = j["status"].clone();
                let status = &mut j["status"];
                if !status.is_object() {
                    *status = json!({});
                }
                if status.get("startTime").is_none() && !suspended {
                    status["startTime"] = json!(now_s);
                }
                status["active"] = json!(active_count);
                status["ready"] = json!(if delete_active { 0 } else { ready });
                status["terminating"] = json!(0);
                status["succeeded"] = json!(succeeded);
                status["failed"] = json!(failed);
                status["uncountedTerminatedPods"] = json!({});
                if !conditions.is_empty() {
                    let mut list = status["conditions"].as_array().cloned().unwrap_or_default();
                    list.extend(conditions.iter().cloned());
                    status["conditions"] = json!(list);
                }
                if let Some(t) = &completion_time {
                    status["completionTime"] = json!(t);
                }
                *status != before
            });
            match conditions.last() {
                Some(c) if c["type"] == "Complete" => super::record_event(
                    api,
                    &job,
                    "Normal",
                    "Completed",
                    "Job completed",
                    "job-controller",
                ),
                Some(c) => super::record_event(
                    api,
                    &job,
                    "Warning",
                    c["reason"].as_str().unwrap_or("Failed"),
                    c["message"].as_str().unwrap_or_default(),
                    "job-controller",
                ),
                None => {}
            }
            for p in &newly {
                let _ = api.modify(&pods_info, &ns, name_of(p), "", MANAGER, |o| {
                    if let Some(list) = o["metadata"]["finalizers"].as_array_mut() {
                        list.retain(|x| x != TRACKING);
                    }
                    true
                });
            }
            ttl_cleanup(api, &jobs_info, &job, now.as_second());
        }
    }
}

/// Pods whose Job is gone no longer need the tracking finalizer.
fn release_orphans(
    api: &Apiserver,
    pods_info: &crate::registry::ResourceInfo,
    pods: &[std::sync::Arc<Value>],
    jobs: &[std::sync::Arc<Value>],
) {
    let job_uids: std::collections::HashSet<&str> = jobs.iter().map(|j| uid_of(j)).collect();
    for pod in pods {
        let tracked = pod["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == TRACKING));
        if !tracked {
            continue;
        }
        let owner = pod["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["controller"] == true && r["kind"] == "Job")
            .and_then(|r| r["uid"].as_str());
        let job_exists = owner.is_some_and(|uid| job_uids.contains(uid));
        if !job_exists {
            let _ = api.modify(
                pods_info,
                namespace_of(pod),
                name_of(pod),
                "",
                MANAGER,
                |o| {
                    if let Some(list) = o["metadata"]["finalizers"].as_array_mut() {
                        list.retain(|x| x != TRACKING);
                    }
                    true
                },
            );
        }
    }
}

fn ttl_cleanup(api: &Apiserver, info: &crate::registry::ResourceInfo, job: &Value, now: i64) {
    let Some(ttl) = job["spec"]["ttlSecondsAfterFinished"].as_i64() else {
        return;
    };
    if job_finished(job).is_none() || job["metadata"].get("deletionTimestamp").is_some() {
        return;
    }
    let finished_at = job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["type"] == "Complete" || c["type"] == "Failed")
        .filter_map(|c| c["lastTransitionTime"].as_str().and_then(parse_time))
        .map(|t| t.as_second())
        .max();
    if finished_at.is_some_and(|t| t + ttl <= now) {
        let opts = DeleteOptions {
            propagation: Some(Propagation::Background),
            ..DeleteOptions::default()
        };
        let _ = api.delete(info, namespace_of(job), name_of(job), &opts);
    }
}

fn create_pod(api: &Apiserver, job: &Value) -> Result<Value, crate::status::ApiError> {
    let pods = api.resource("", "v1", "pods")?;
    let template = &job["spec"]["template"];
    let mut metadata = template["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    metadata["generateName"] = json!(format!("{}-", name_of(job)));
    metadata["namespace"] = json!(namespace_of(job));
    metadata["ownerReferences"] = json!([{
        "apiVersion": "batch/v1", "kind": "Job", "name": name_of(job), "uid": uid_of(job),
        "controller": true, "blockOwnerDeletion": true,
    }]);
    metadata["finalizers"] = json!([TRACKING]);
    if let Some(m) = metadata.as_object_mut() {
        m.remove("name");
    }
    let pod =
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]});
    api.create(
        &pods,
        namespace_of(job),
        pod,
        &WriteOptions::manager(MANAGER),
    )
}
