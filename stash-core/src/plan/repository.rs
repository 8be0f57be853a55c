//! Repository planner: status from what the jobs report, and admission of jobs that need the
//! repository (backups and restores share it; prune and check need it alone).

use super::{to_value, FinalizerAction, ObjectKey, Plan, REPOSITORY_FINALIZER};
use crate::api::{Repository, RepositoryStatus, TypedObjectReference};
use crate::duration::format_bytes;
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
}

/// Plans a Repository reconcile: finalizer, observedGeneration and `status.references`.
pub fn plan(inputs: &RepositoryInputs) -> Plan {
    let repo = &inputs.repository;
    let mut plan = Plan {
        object: Some(ObjectKey {
            api_version: "stash.appscode.com/v1alpha1".into(),
            kind: "Repository".into(),
            namespace: repo.metadata.namespace.clone(),
            name: repo.metadata.name.clone().unwrap_or_default(),
        }),
        ..Default::default()
    };
    let has_finalizer = repo
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == REPOSITORY_FINALIZER);
    if repo.metadata.deletion_timestamp.is_some() {
        // wipeOut of backend data is not supported: the data stays (a note in the status
        // would be lost with the object, so this is documented instead).
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
    let mut refs = inputs.references.clone();
    refs.sort();
    refs.dedup();
    let mut st = repo.status.clone().unwrap_or_default();
    st.observed_generation = repo.metadata.generation;
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
