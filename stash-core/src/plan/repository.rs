//! Repository planner: status from what the jobs report, and admission of jobs that need the
//! repository (backups and restores share it; prune and check need it alone).

use super::backend::backend_info;
use super::backup_configuration::condition::VALIDATION_PASSED;
use super::wipe_out::{self, WipeOutProgress};
use super::{to_value, EventSpec, FinalizerAction, Plan, Settings, REPOSITORY_FINALIZER};
use crate::api::{Repository, RepositoryStatus, TypedObjectReference};
use crate::conditions::{self, NewCondition};
use crate::duration::format_bytes;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};

/// What a job reports about the repository after a backup (Stash's update-status).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryReport {
    /// Result of the integrity check, if one ran.
    pub integrity: Option<bool>,
    /// Raw data size in bytes.
    pub total_size_bytes: Option<u64>,
    /// Snapshots in the repository after retention.
    pub snapshot_count: Option<i64>,
    /// Snapshots removed by retention.
    pub snapshots_removed: Option<i64>,
    /// Creation time of the session that produced the report.
    pub session_created: Option<Time>,
}

/// The Repository status after a report.
pub fn status_from_report(
    old: Option<&RepositoryStatus>,
    report: &RepositoryReport,
) -> RepositoryStatus {
    let mut st = old.cloned().unwrap_or_default();
    if report.integrity.is_some() {
        st.integrity = report.integrity;
    }
    if let Some(b) = report.total_size_bytes {
        st.total_size = Some(format_bytes(b));
    }
    if report.snapshot_count.is_some() {
        st.snapshot_count = report.snapshot_count;
    }
    if report.snapshots_removed.is_some() {
        st.snapshots_removed_on_last_cleanup = report.snapshots_removed;
    }
    if report.session_created.is_some() {
        st.last_backup_time = report.session_created.clone();
    }
    st
}

/// Kinds of jobs that touch a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RepositoryJob {
    /// A backup (restic's shared lock).
    Backup,
    /// A restore (shared lock).
    Restore,
    /// Retention with prune (exclusive lock).
    Prune,
    /// An integrity check (exclusive in our scheduling: a check under writers reports noise).
    Check,
}

impl RepositoryJob {
    fn exclusive(self) -> bool {
        matches!(self, RepositoryJob::Prune | RepositoryJob::Check)
    }
}

/// Whether `job` may start now given the jobs running on the same repository.
pub fn may_start(job: RepositoryJob, running: &[RepositoryJob]) -> Result<(), String> {
    if running.is_empty() {
        return Ok(());
    }
    if job.exclusive() {
        return Err(format!(
            "{job:?} needs the repository alone; {} job(s) running",
            running.len()
        ));
    }
    match running.iter().find(|r| r.exclusive()) {
        Some(r) => Err(format!("{r:?} holds the repository exclusively")),
        None => Ok(()),
    }
}

/// Whether an invoker in `invoker_ns` whose spec references `r` uses the Repository
/// `repo_ns/repo_name` (an empty namespace in the reference means the invoker's).
pub fn references_repository(
    invoker_ns: &str,
    r: Option<&crate::api::ObjectRef>,
    repo_ns: &str,
    repo_name: &str,
) -> bool {
    r.is_some_and(|r| {
        r.name == repo_name
            && r.namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(invoker_ns)
                == repo_ns
    })
}

/// The `status.references` entry of an invoker.
pub fn invoker_reference(kind: &str, namespace: &str, name: &str) -> TypedObjectReference {
    TypedObjectReference {
        api_group: Some("stash.appscode.com".into()),
        kind: Some(kind.into()),
        namespace: Some(namespace.into()),
        name: name.into(),
    }
}

/// Inputs of a Repository reconcile.
#[derive(Debug, Clone, Default)]
pub struct RepositoryInputs {
    /// The Repository.
    pub repository: Repository,
    /// Invokers (BackupConfigurations, RestoreSessions) that reference it.
    pub references: Vec<TypedObjectReference>,
    /// The wipe-out Job (`spec.wipeOut`), if it exists.
    pub wipe_out_job: Option<Job>,
    /// Pods of the wipe-out Job.
    pub wipe_out_pods: Vec<Pod>,
    /// Operator settings (the wipe-out Job's image).
    pub settings: Settings,
    /// The time of this reconcile.
    pub now: Option<Time>,
}

/// Condition: the backend data was deleted (`spec.wipeOut`), or why not.
pub const REPOSITORY_WIPED_OUT: &str = "RepositoryWipedOut";
/// Requeue while the wipe-out Job runs.
const WIPE_OUT_REQUEUE_SECS: u64 = 5;

fn event(type_: &str, reason: &str, message: String) -> EventSpec {
    EventSpec {
        type_: type_.into(),
        reason: reason.into(),
        message,
        source: "Repository Controller".into(),
    }
}

/// Plans a Repository reconcile: finalizer, validation, observedGeneration,
/// `status.references`, and on deletion with `spec.wipeOut` the Job that deletes its data.
pub fn plan(inputs: &RepositoryInputs) -> Plan {
    let repo = &inputs.repository;
    let (_, _, now, mut plan) = super::begin(
        "stash.appscode.com/v1alpha1",
        "Repository",
        &repo.metadata,
        &inputs.now,
    );
    let has_finalizer = repo
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == REPOSITORY_FINALIZER);
    let old = repo.status.clone().unwrap_or_default();
    let mut st = old.clone();
    let mut conds = st.conditions.clone().unwrap_or_default();
    let generation = repo.metadata.generation;
    let wipe_out = repo.spec.wipe_out == Some(true);
    let validation = backend_info(&repo.spec.backend).and_then(|info| match wipe_out {
        true => wipe_out::refusal(&info).map_or(Ok(()), Err),
        false => Ok(()),
    });

    if repo.metadata.deletion_timestamp.is_some() {
        if !has_finalizer {
            return plan;
        }
        if !wipe_out {
            plan.finalizer = FinalizerAction::Remove;
            return plan;
        }
        if let Err(why) = validation {
            // Stash's validator would have refused the object; the data stays, and holding the
            // finalizer forever would only block the deletion.
            plan.events.push(event(
                "Warning",
                "Repository WipeOut Refused",
                format!("{why}; the backend data is kept."),
            ));
            plan.finalizer = FinalizerAction::Remove;
            return plan;
        }
        match wipe_out::progress(inputs.wipe_out_job.as_ref(), &inputs.wipe_out_pods) {
            WipeOutProgress::Done => {
                plan.events.push(event(
                    "Normal",
                    "Repository Wiped Out",
                    "The repository's data was deleted from the backend.".into(),
                ));
                plan.finalizer = FinalizerAction::Remove;
                return plan;
            }
            WipeOutProgress::NotStarted => match wipe_out::objects(repo, &inputs.settings) {
                Ok(objects) => {
                    plan.apply = objects;
                    conditions::set(
                        &mut conds,
                        NewCondition::unknown(
                            REPOSITORY_WIPED_OUT,
                            "WipingOutRepository",
                            "A Job deletes the repository's data from the backend.",
                        ),
                        generation,
                        &now,
                    );
                    plan.requeue_after_seconds = Some(WIPE_OUT_REQUEUE_SECS);
                }
                Err(e) => {
                    conditions::set(
                        &mut conds,
                        NewCondition::no(REPOSITORY_WIPED_OUT, "FailedToWipeOutRepository", e),
                        generation,
                        &now,
                    );
                }
            },
            WipeOutProgress::Running => {
                plan.requeue_after_seconds = Some(WIPE_OUT_REQUEUE_SECS);
            }
            WipeOutProgress::Failed(why) => {
                // Like Stash, the Repository stays until its data is gone: the user deletes the
                // Job to try again, or sets spec.wipeOut to false to keep the data.
                let message = format!(
                    "Failed to wipe out the repository: {why}. Delete Job {} to retry, or set \
                     spec.wipeOut to false to keep the data.",
                    wipe_out::wipe_out_job_name(&repo.metadata.name.clone().unwrap_or_default())
                );
                if !conditions::is_false(&conds, REPOSITORY_WIPED_OUT) {
                    plan.events.push(event(
                        "Warning",
                        "Repository WipeOut Failed",
                        message.clone(),
                    ));
                }
                conditions::set(
                    &mut conds,
                    NewCondition::no(REPOSITORY_WIPED_OUT, "FailedToWipeOutRepository", message),
                    generation,
                    &now,
                );
            }
        }
        st.conditions = Some(conds);
        if st != old {
            plan.status = Some(to_value(&st));
        }
        return plan;
    }
    if !has_finalizer {
        plan.finalizer = FinalizerAction::Add;
    }
    // Stash's Repository has no conditions (its webhook refuses invalid ones); ours says what
    // is wrong while it is, and nothing otherwise.
    match validation {
        Ok(()) => conds.retain(|c| c.type_ != VALIDATION_PASSED),
        Err(why) => {
            if !conditions::is_false(&conds, VALIDATION_PASSED) {
                plan.events
                    .push(event("Warning", "Invalid Repository", why.clone()));
            }
            conditions::set(
                &mut conds,
                NewCondition::no(VALIDATION_PASSED, "ResourceValidationFailed", why),
                generation,
                &now,
            );
        }
    }
    st.conditions = (!conds.is_empty()).then_some(conds);
    let mut refs = inputs.references.clone();
    refs.sort();
    refs.dedup();
    st.observed_generation = generation;
    st.references = (!refs.is_empty()).then_some(refs);
    if repo.status.as_ref() != Some(&st) {
        plan.status = Some(to_value(&st));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use RepositoryJob::*;

    #[rstest]
    #[case(Backup, &[], true)]
    #[case(Backup, &[Backup, Restore], true)]
    #[case(Restore, &[Backup], true)]
    #[case(Backup, &[Prune], false)]
    #[case(Prune, &[Backup], false)]
    #[case(Prune, &[], true)]
    #[case(Check, &[Restore], false)]
    #[case(Restore, &[Check], false)]
    fn admission(#[case] job: RepositoryJob, #[case] running: &[RepositoryJob], #[case] ok: bool) {
        assert_eq!(may_start(job, running).is_ok(), ok);
    }

    #[test]
    fn report_formats_size_like_stash() {
        let st = status_from_report(
            None,
            &RepositoryReport {
                integrity: Some(true),
                total_size_bytes: Some(7_146_045),
                snapshot_count: Some(5),
                ..Default::default()
            },
        );
        assert_eq!(st.total_size.as_deref(), Some("6.815 MiB"));
        assert_eq!(st.snapshot_count, Some(5));
    }
}
