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
    /// Whether the job needs the repository alone.
    pub fn exclusive(self) -> bool {
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

/// restic's limit: a lock older than this is stale (a live holder refreshes it every 5 minutes).
pub const STALE_LOCK_AGE_SECS: u64 = 30 * 60;
/// How long a job waits between looks at a repository held by a live conflicting lock.
pub const LOCK_RETRY_SECS: u64 = 10;
/// Condition on the Repository: whether a lock keeps jobs out, or what was done about one.
pub const REPOSITORY_LOCKED: &str = "RepositoryLocked";

/// Whether the process that made a lock still runs, as far as the job can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockHolder {
    /// It runs (same host, its process exists).
    Running,
    /// It is gone (same host, no such process).
    Gone,
    /// Another host: only the lock's age can tell.
    Unknown,
}

/// A lock file of the repository, as a job saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedLock {
    /// The lock file's id.
    pub id: String,
    /// Exclusive (prune, forget, check) or shared (backup, restore).
    pub exclusive: bool,
    /// Host of the holder.
    pub hostname: String,
    /// Process id of the holder.
    pub pid: i64,
    /// The lock's time as written (RFC 3339).
    pub time: String,
    /// Seconds since the lock was made or refreshed; `None` when its time cannot be read.
    pub age_secs: Option<u64>,
    /// Whether its holder still runs.
    pub holder: LockHolder,
}

impl ObservedLock {
    /// restic's rule: older than [`STALE_LOCK_AGE_SECS`], an unreadable time, or made on this
    /// host by a process that is gone.
    pub fn is_stale(&self) -> bool {
        self.age_secs.is_none_or(|a| a > STALE_LOCK_AGE_SECS) || self.holder == LockHolder::Gone
    }

    /// "exclusive lock by PID 7 on host-x (created …)".
    pub fn describe(&self) -> String {
        format!(
            "{} lock by PID {} on {} (created {})",
            if self.exclusive {
                "exclusive"
            } else {
                "shared"
            },
            self.pid,
            self.hostname,
            self.time
        )
    }

    fn as_job(&self) -> RepositoryJob {
        // A lock says only whether it is exclusive; that is all admission needs.
        if self.exclusive {
            RepositoryJob::Prune
        } else {
            RepositoryJob::Backup
        }
    }
}

/// A pod of ours (made by this operator's Jobs) in the namespace of the job that looks at the
/// locks: a lock carries its holder's hostname, which on a node is the pod's
/// ([`crate::names::pod_hostname`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobPod {
    /// The pod's name.
    pub name: String,
    /// The hostname its containers have.
    pub hostname: String,
    /// `status.phase` (`Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`).
    pub phase: String,
}

impl JobPod {
    /// The name, hostname and phase of `pod`.
    pub fn of(pod: &Pod) -> Self {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec_hostname = pod.spec.as_ref().and_then(|s| s.hostname.as_deref());
        JobPod {
            hostname: crate::names::pod_hostname(&name, spec_hostname),
            phase: pod
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Pending".into()),
            name,
        }
    }
}

/// What the job found out about the pods that may hold the repository's locks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolders {
    /// The pods of ours in the job's namespace, whatever their phase.
    pub pods: Vec<JobPod>,
    /// Every pod that may use the repository is in the job's namespace (the Repository is
    /// there and its `usagePolicy` allows no other): a Job pod's lock whose pod is not among
    /// [`LockHolders::pods`] was made by a pod that is gone.
    pub complete: bool,
}

impl LockHolders {
    /// `pods` found in `namespace`, the namespace of the job; complete when `repository` is
    /// there and its `usagePolicy` lets no other namespace use it (Stash's `UsageAllowed`:
    /// no policy, `from: Same`, or no `from`).
    pub fn new(pods: Vec<JobPod>, repository: Option<&Repository>, namespace: &str) -> Self {
        let complete = repository.is_some_and(|r| {
            r.metadata.namespace.as_deref() == Some(namespace)
                && r.spec
                    .usage_policy
                    .as_ref()
                    .and_then(|u| u.allowed_namespaces.as_ref())
                    .is_none_or(|a| matches!(a.from.as_deref(), None | Some("Same")))
        });
        LockHolders { pods, complete }
    }
}

/// Prefixes of the names of our pods that take repository locks (backup and restore Jobs).
const LOCKING_POD_PREFIXES: [&str; 2] = ["stash-backup-", "stash-restore-"];

impl LockHolders {
    /// Why the lock's holder cannot be running: its pod (ours) has ended, or is gone. `None`
    /// when its pod runs, or when the lock is not known to be one of ours (restic's rules
    /// apply then).
    pub fn ended(&self, lock: &ObservedLock) -> Option<String> {
        match self.pods.iter().find(|p| p.hostname == lock.hostname) {
            Some(p) if matches!(p.phase.as_str(), "Succeeded" | "Failed") => {
                Some(format!("its pod {} has ended ({})", p.name, p.phase))
            }
            Some(_) => None,
            None if self.complete
                && LOCKING_POD_PREFIXES
                    .iter()
                    .any(|p| lock.hostname.starts_with(p)) =>
            {
                Some(format!("its pod {} is gone", lock.hostname))
            }
            None => None,
        }
    }
}

/// What a job does next about the locks it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockVerdict {
    /// Start (after removing [`LockAdmission::remove`]).
    Proceed,
    /// A live conflicting lock: look again after this many seconds.
    Wait {
        /// Seconds until the next look.
        retry_after_secs: u64,
    },
    /// Give up: a live lock outlasted the wait.
    Fail {
        /// Stable reason.
        reason: &'static str,
        /// What holds the repository, and for how long the job waited.
        message: String,
    },
}

/// The decision about a repository's locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockAdmission {
    /// Stale locks to remove first (their holders cannot be running).
    pub remove: Vec<String>,
    /// Then: proceed, wait or fail.
    pub verdict: LockVerdict,
    /// The Repository's [`REPOSITORY_LOCKED`] condition: (status, reason, message).
    pub condition: (&'static str, &'static str, String),
}

/// Decides what a `job` does with the `locks` it saw, having waited `waited_secs` of at most
/// `max_wait_secs`: stale locks are removed (a lock of a pod of ours that has ended or is gone,
/// per `holders`; otherwise restic's rule); live ones are admitted by [`may_start`] (shared
/// with shared, exclusive alone); a live conflict is waited out, then fails.
pub fn admit_locks(
    job: RepositoryJob,
    locks: &[ObservedLock],
    holders: &LockHolders,
    waited_secs: u64,
    max_wait_secs: u64,
) -> LockAdmission {
    let (stale, live): (Vec<&ObservedLock>, Vec<&ObservedLock>) = locks
        .iter()
        .partition(|l| l.is_stale() || holders.ended(l).is_some());
    let remove: Vec<String> = stale.iter().map(|l| l.id.clone()).collect();
    let running: Vec<RepositoryJob> = live.iter().map(|l| l.as_job()).collect();
    let conflict = may_start(job, &running).err();
    let blocker = || {
        live.iter()
            .find(|l| l.exclusive || job.exclusive())
            .map(|l| l.describe())
            .unwrap_or_default()
    };
    let removed_note = || match stale.as_slice() {
        [] => String::new(),
        s => format!(
            " Removed {} stale lock(s): {}.",
            s.len(),
            s.iter()
                .map(|l| stale_reason(l, holders))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    };
    let (verdict, condition) = match conflict {
        None if stale.is_empty() => (
            LockVerdict::Proceed,
            (
                crate::conditions::FALSE,
                "NoConflictingLock",
                format!("No lock keeps a {job:?} out."),
            ),
        ),
        None => (
            LockVerdict::Proceed,
            (
                crate::conditions::FALSE,
                "StaleLockRemoved",
                format!("A {job:?} proceeded.{}", removed_note()),
            ),
        ),
        Some(why) if waited_secs < max_wait_secs => (
            LockVerdict::Wait {
                retry_after_secs: LOCK_RETRY_SECS.min(max_wait_secs - waited_secs),
            },
            (
                crate::conditions::TRUE,
                "WaitingForLock",
                format!(
                    "A {job:?} waits (up to {}): {why}: {}.{}",
                    crate::duration::format_go_duration_secs(max_wait_secs),
                    blocker(),
                    removed_note()
                ),
            ),
        ),
        Some(why) => {
            let message = format!(
                "{why}: {}; a {job:?} waited {} and gave up.{}",
                blocker(),
                crate::duration::format_go_duration_secs(waited_secs),
                removed_note()
            );
            (
                LockVerdict::Fail {
                    reason: "RepositoryLocked",
                    message: message.clone(),
                },
                (crate::conditions::TRUE, "LockedByLiveJob", message),
            )
        }
    };
    LockAdmission {
        remove,
        verdict,
        condition,
    }
}

fn stale_reason(l: &ObservedLock, holders: &LockHolders) -> String {
    let why = holders
        .ended(l)
        .unwrap_or_else(|| match (l.holder, l.age_secs) {
            (LockHolder::Gone, _) => "its process is gone".to_owned(),
            (_, None) => "its time is unreadable".to_owned(),
            (_, Some(age)) => format!(
                "older than {} ({} old)",
                crate::duration::format_go_duration_secs(STALE_LOCK_AGE_SECS),
                crate::duration::format_go_duration_secs(age)
            ),
        });
    format!("{} ({why})", l.describe())
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
        name: None,
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

    fn lock(id: &str, exclusive: bool, age: Option<u64>, holder: LockHolder) -> ObservedLock {
        ObservedLock {
            id: id.into(),
            exclusive,
            hostname: "stash-backup-x".into(),
            pid: 7,
            time: "2026-12-04T10:00:00Z".into(),
            age_secs: age,
            holder,
        }
    }

    use LockHolder::{Gone, Running, Unknown};

    #[rstest]
    // Nothing, or only shared live locks: a backup proceeds and nothing is removed.
    #[case(Backup, vec![], 0, "Proceed", 0, "NoConflictingLock")]
    #[case(Backup, vec![lock("a", false, Some(60), Unknown)], 0, "Proceed", 0, "NoConflictingLock")]
    // A crashed job's lock: same host, dead process; or 31 minutes old on another host.
    #[case(Backup, vec![lock("a", false, Some(5), Gone)], 0, "Proceed", 1, "StaleLockRemoved")]
    #[case(Prune, vec![lock("a", false, Some(1860), Unknown)], 0, "Proceed", 1, "StaleLockRemoved")]
    #[case(Backup, vec![lock("a", true, None, Running)], 0, "Proceed", 1, "StaleLockRemoved")]
    // Exactly 30 minutes is not yet stale (restic: older than).
    #[case(Prune, vec![lock("a", false, Some(1800), Unknown)], 0, "Wait", 0, "WaitingForLock")]
    // A live exclusive lock keeps a backup out: wait, then fail.
    #[case(Backup, vec![lock("a", true, Some(60), Running)], 0, "Wait", 0, "WaitingForLock")]
    #[case(Backup, vec![lock("a", true, Some(60), Unknown)], 600, "Fail", 0, "LockedByLiveJob")]
    // Prune needs the repository alone; the stale lock goes, the live one is waited for.
    #[case(Prune, vec![lock("a", false, Some(5), Gone), lock("b", false, Some(5), Running)], 0, "Wait", 1, "WaitingForLock")]
    fn lock_admission(
        #[case] job: RepositoryJob,
        #[case] locks: Vec<ObservedLock>,
        #[case] waited: u64,
        #[case] verdict: &str,
        #[case] removed: usize,
        #[case] reason: &str,
    ) {
        let a = admit_locks(job, &locks, &LockHolders::default(), waited, 600);
        let got = match &a.verdict {
            LockVerdict::Proceed => "Proceed",
            LockVerdict::Wait { .. } => "Wait",
            LockVerdict::Fail { .. } => "Fail",
        };
        assert_eq!(got, verdict, "{a:?}");
        assert_eq!(a.remove.len(), removed, "{a:?}");
        assert_eq!(a.condition.1, reason, "{a:?}");
    }

    #[test]
    fn lock_messages_name_the_holder_and_the_wait() {
        let none = LockHolders::default();
        let live = lock("b", true, Some(60), Unknown);
        let a = admit_locks(Backup, std::slice::from_ref(&live), &none, 590, 600);
        assert_eq!(
            a.verdict,
            LockVerdict::Wait {
                retry_after_secs: 10
            }
        );
        let a = admit_locks(Backup, &[live], &none, 600, 600);
        let LockVerdict::Fail { reason, message } = a.verdict else {
            panic!("{a:?}");
        };
        assert_eq!(reason, "RepositoryLocked");
        assert!(
            message.contains("exclusive lock by PID 7 on stash-backup-x")
                && message.contains("waited 10m0s"),
            "{message}"
        );
        let a = admit_locks(Backup, &[lock("a", false, Some(5), Gone)], &none, 0, 600);
        assert!(a.condition.2.contains("its process is gone"), "{a:?}");
    }

    fn pod(name: &str, phase: &str) -> JobPod {
        JobPod {
            name: name.into(),
            hostname: crate::names::pod_hostname(name, None),
            phase: phase.into(),
        }
    }

    fn held_by(host: &str) -> ObservedLock {
        // Another host (its own pod), fresh: restic alone would call it live.
        ObservedLock {
            hostname: host.into(),
            ..lock("a", false, Some(60), Unknown)
        }
    }

    #[rstest]
    // The lock's pod (ours) has ended: stale at once, whatever its age.
    #[case(vec![pod("stash-backup-s-1-0-abcde", "Failed")], false, "stash-backup-s-1-0-abcde", Some("its pod stash-backup-s-1-0-abcde has ended (Failed)"))]
    #[case(vec![pod("stash-backup-s-1-0-abcde", "Succeeded")], false, "stash-backup-s-1-0-abcde", Some("has ended (Succeeded)"))]
    // It still runs, or may be starting: restic's rule.
    #[case(vec![pod("stash-backup-s-1-0-abcde", "Running")], true, "stash-backup-s-1-0-abcde", None)]
    #[case(vec![pod("stash-backup-s-1-0-abcde", "Pending")], true, "stash-backup-s-1-0-abcde", None)]
    // Gone: only when every pod that may use the repository would be listed.
    #[case(vec![], true, "stash-backup-s-1-0-abcde", Some("its pod stash-backup-s-1-0-abcde is gone"))]
    #[case(vec![], false, "stash-backup-s-1-0-abcde", None)]
    // Not one of our pods (a laptop, another tool): restic's rule.
    #[case(vec![pod("stash-backup-s-1-0-abcde", "Failed")], true, "laptop", None)]
    fn locks_of_ended_pods_are_stale(
        #[case] pods: Vec<JobPod>,
        #[case] complete: bool,
        #[case] host: &str,
        #[case] why: Option<&str>,
    ) {
        let holders = LockHolders { pods, complete };
        let a = admit_locks(Prune, &[held_by(host)], &holders, 0, 600);
        match why {
            Some(why) => {
                assert_eq!(a.remove, vec!["a".to_string()], "{a:?}");
                assert_eq!(a.verdict, LockVerdict::Proceed);
                assert_eq!(a.condition.1, "StaleLockRemoved");
                assert!(a.condition.2.contains(why), "{a:?}");
                assert!(a.condition.2.contains(&format!("on {host}")), "{a:?}");
            }
            None => {
                assert!(a.remove.is_empty(), "{a:?}");
                assert_eq!(a.condition.1, "WaitingForLock", "{a:?}");
            }
        }
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
