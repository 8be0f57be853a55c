//! CronJob controller: creates `<cronjob>-<minutes>` Jobs at scheduled times on the virtual
//! clock, honours suspend, concurrencyPolicy and startingDeadlineSeconds, tracks active Jobs
//! and prunes finished ones beyond the history limits.

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};

use super::cron::Schedule;
use super::job::job_finished;
use super::MANAGER;
use crate::apiserver::{
    name_of, namespace_of, uid_of, Apiserver, DeleteOptions, Propagation, WriteOptions,
};
use crate::clock::{format_time, parse_time};

/// The Job name for a scheduled time: `<cronjob>-<unix minutes>`.
pub fn job_name(cronjob: &str, scheduled_unix_seconds: i64) -> String {
    format!("{cronjob}-{}", scheduled_unix_seconds.div_euclid(60))
}

fn controlled_by(obj: &Value, uid: &str) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["uid"] == uid && r["controller"] == true)
}

fn job_ref(job: &Value) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job", "namespace": namespace_of(job), "name": name_of(job),
        "uid": uid_of(job), "resourceVersion": job["metadata"]["resourceVersion"],
    })
}

/// Objects by the uid of their controller (one lookup per owner instead of a scan).
pub(super) fn by_controller_uid(objects: &[std::sync::Arc<Value>]) -> HashMap<&str, Vec<&Value>> {
    let mut out: HashMap<&str, Vec<&Value>> = HashMap::new();
    for o in objects {
        for r in o["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if r["controller"] == true {
                if let Some(uid) = r["uid"].as_str() {
                    out.entry(uid).or_default().push(o);
                }
            }
        }
    }
    out
}

/// One pass over every CronJob, or over just the CronJobs `only` names (`(namespace, name)`:
/// those written since the last pass, when neither Jobs nor the clock moved).
pub(super) fn sync(api: &Apiserver, only: Option<&BTreeSet<(String, String)>>) {
    let (Ok(cj_info), Ok(jobs_info)) = (
        api.resource("batch", "v1", "cronjobs"),
        api.resource("batch", "v1", "jobs"),
    ) else {
        return;
    };
    let jobs = api.objects_of(&jobs_info);
    let by_controller = by_controller_uid(&jobs);
    let now = api.clock.now();
    let cronjobs = match only {
        None => api.objects_of(&cj_info),
        Some(keys) => {
            let state = api.store.lock();
            keys.iter()
                .filter_map(|(ns, name)| state.get(&Apiserver::key(&cj_info, ns, name)))
                .collect()
        }
    };
    for cj in cronjobs {
        if cj["metadata"].get("deletionTimestamp").is_some() {
            continue;
        }
        let ns = namespace_of(&cj).to_string();
        let name = name_of(&cj).to_string();
        let uid = uid_of(&cj).to_string();
        let spec = &cj["spec"];
        let mine: Vec<&Value> = by_controller
            .get(uid.as_str())
            .into_iter()
            .flatten()
            .copied()
            .filter(|j| namespace_of(j) == ns && controlled_by(j, &uid))
            .collect();
        let mut active: Vec<Value> = mine
            .iter()
            .filter(|j| job_finished(j).is_none())
            .map(|j| job_ref(j))
            .collect();
        let last_success = mine
            .iter()
            .filter(|j| job_finished(j) == Some("Complete"))
            .filter_map(|j| j["status"]["completionTime"].as_str())
            .max()
            .map(String::from);
        let mut last_schedule = cj["status"]["lastScheduleTime"].as_str().map(String::from);

        if spec["suspend"] != true {
            if let Ok(schedule) = super::cron::of_cronjob(spec) {
                let mut earliest = last_schedule
                    .as_deref()
                    .or(cj["metadata"]["creationTimestamp"].as_str())
                    .and_then(parse_time)
                    .unwrap_or(now);
                let deadline = spec["startingDeadlineSeconds"].as_i64();
                if let Some(d) = deadline {
                    if let Ok(floor) = jiff::Timestamp::from_second(now.as_second() - d) {
                        earliest = earliest.max(floor);
                    }
                }
                let (scheduled, _missed) = schedule.most_recent(earliest, now);
                if let Some(t) = scheduled {
                    let too_late = deadline.is_some_and(|d| t.as_second() + d < now.as_second());
                    let policy = spec["concurrencyPolicy"].as_str().unwrap_or("Allow");
                    let blocked = policy == "Forbid" && !active.is_empty();
                    if !too_late && !blocked {
                        if policy == "Replace" {
                            for r in &active {
                                let opts = DeleteOptions {
                                    propagation: Some(Propagation::Background),
                                    ..DeleteOptions::default()
                                };
                                let _ = api.delete(
                                    &jobs_info,
                                    &ns,
                                    r["name"].as_str().unwrap_or_default(),
                                    &opts,
                                );
                            }
                            active.clear();
                        }
                        match create_job(api, &cj, t, &schedule) {
                            Ok(job) => {
                                let message = format!("Created job {}", name_of(&job));
                                super::record_event(
                                    api,
                                    &cj,
                                    "Normal",
                                    "SuccessfulCreate",
                                    &message,
                                    "cronjob-controller",
                                );
                                active.push(job_ref(&job));
                            }
                            Err(e) if e.code == 409 => {}
                            Err(_) => continue,
                        }
                        last_schedule = Some(format_time(t));
                    }
                }
            }
        }

        let update = |status: &mut Value| {
            if !status.is_object() {
                *status = json!({});
            }
            if active.is_empty() {
                if let Some(m) = status.as_object_mut() {
                    m.remove("active");
                }
            } else {
                status["active"] = json!(active);
            }
            if let Some(t) = &last_schedule {
                status["lastScheduleTime"] = json!(t);
            }
            if let Some(t) = &last_success {
                status["lastSuccessfulTime"] = json!(t);
            }
        };
        // Decided on the stored object first: a write (which copies the whole object) only
        // when the status moves.
        let mut status = cj["status"].clone();
        update(&mut status);
        // A new CronJob has no status yet: an empty one is no change (the real API server
        // stores `status: {}` at creation; writing it here cost a write per new CronJob).
        let unchanged = status == cj["status"] || (cj["status"].is_null() && status == json!({}));
        if !unchanged {
            let _ = api.modify(&cj_info, &ns, &name, "status", MANAGER, |o| {
                let before = o["status"].clone();
                update(&mut o["status"]);
                o["status"] != before
            });
        }

        prune_history(api, &jobs_info, &mine, spec, &cj);
    }
}

fn prune_history(
    api: &Apiserver,
    jobs_info: &crate::registry::ResourceInfo,
    mine: &[&Value],
    spec: &Value,
    cj: &Value,
) {
    for (outcome, limit) in [
        (
            "Complete",
            spec["successfulJobsHistoryLimit"].as_i64().unwrap_or(3),
        ),
        (
            "Failed",
            spec["failedJobsHistoryLimit"].as_i64().unwrap_or(1),
        ),
    ] {
        let mut done: Vec<&Value> = mine
            .iter()
            .copied()
            .filter(|j| {
                job_finished(j) == Some(outcome) && j["metadata"].get("deletionTimestamp").is_none()
            })
            .collect();
        done.sort_by_key(|j| {
            (
                j["status"]["startTime"]
                    .as_str()
                    .or(j["metadata"]["creationTimestamp"].as_str())
                    .unwrap_or_default()
                    .to_string(),
                name_of(j).to_string(),
            )
        });
        let excess = done
            .len()
            .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        for j in done.iter().take(excess) {
            let opts = DeleteOptions {
                propagation: Some(Propagation::Background),
                ..DeleteOptions::default()
            };
            if api
                .delete(jobs_info, namespace_of(j), name_of(j), &opts)
                .is_ok()
            {
                let message = format!("Deleted job {}", name_of(j));
                super::record_event(
                    api,
                    cj,
                    "Normal",
                    "SuccessfulDelete",
                    &message,
                    "cronjob-controller",
                );
            }
        }
    }
}

fn create_job(
    api: &Apiserver,
    cj: &Value,
    t: jiff::Timestamp,
    schedule: &Schedule,
) -> Result<Value, crate::status::ApiError> {
    let jobs = api.resource("batch", "v1", "jobs")?;
    let template = &cj["spec"]["jobTemplate"];
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    let mut annotations = template["metadata"]["annotations"].clone();
    if !annotations.is_object() {
        annotations = json!({});
    }
    annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"] = json!(schedule.format(t));
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name_of(cj), t.as_second()),
            "namespace": namespace_of(cj),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "CronJob", "name": name_of(cj), "uid": uid_of(cj),
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": template["spec"],
    });
    api.create(
        &jobs,
        namespace_of(cj),
        job,
        &WriteOptions::manager(MANAGER),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_use_unix_minutes() {
        // 2026-01-01T00:05:00Z = 1767225900 s.
        assert_eq!(job_name("backup", 1_767_225_900), "backup-29453765");
    }
}
