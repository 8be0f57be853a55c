//! The `update-status` planner: what the last step of a backup or restore Job does with the
//! host results in `output.json`. For a backup it decides the post-backup sequence (retention,
//! then integrity check, then repository size, stopping at the first failure), which snapshots
//! retention forgets (`retention::select`), the session status patch, the Repository report and
//! the events. The command runs the actions one by one and feeds each result back:
//!
//! ```text
//! let mut update = BackupUpdate::start(&inputs);
//! while let Some(action) = update.next_action() { update.record(run(action)); }
//! let plan = update.finish();   // then write plan.session, plan.repository, plan.events
//! ```

use super::backup_session::condition::{
    REPOSITORY_INTEGRITY_VERIFIED, REPOSITORY_METRICS_PUSHED, RETENTION_POLICY_APPLIED,
};
use super::repository::RepositoryReport;
use super::EventSpec;
use crate::api::{
    BackupConfiguration, BackupSession, BackupSessionStatus, BackupTargetStatus, Condition,
    HostBackupStats, HostRestoreStats, RestoreSession, RestoreSessionStatus, RetentionPolicy,
    TargetRef,
};
use crate::conditions::{self, NewCondition};
use crate::output::Output;
use crate::retention::{self, SnapshotInfo};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::Serialize;

/// Source of the events this planner emits (Stash's).
pub const EVENT_SOURCE: &str = "Status Updater";
/// The host name of a target without an alias (Stash's).
pub const DEFAULT_HOST: &str = "host-0";

/// The target the Job's flags name (`--target-kind`, `--target-name`, `--target-namespace`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagTarget {
    /// Kind (empty: `AppBinding`).
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace (empty: the session's).
    pub namespace: String,
}

/// Inputs of a backup's update-status.
#[derive(Debug, Clone)]
pub struct BackupInputs {
    /// The session's namespace.
    pub namespace: String,
    /// The session.
    pub session: BackupSession,
    /// Its invoker, if it still exists.
    pub configuration: Option<BackupConfiguration>,
    /// `output.json`, or why it could not be read.
    pub output: Result<Output, String>,
    /// The target named by the flags; used when `output.json` names none.
    pub flag_target: FlagTarget,
    /// The time of this update.
    pub now: Time,
}

/// One thing to do to the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum Action {
    /// List every snapshot (retention groups over the whole repository, as restic does).
    ListSnapshots,
    /// Forget exactly these snapshots; prune their data when `prune`.
    #[serde(rename_all = "camelCase")]
    Forget {
        /// Full snapshot ids.
        ids: Vec<String>,
        /// Remove data no snapshot references any more.
        prune: bool,
    },
    /// Verify the repository's structure.
    Check,
    /// Measure the repository.
    Stats,
}

/// What an action gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ActionResult {
    /// The listing (for [`Action::ListSnapshots`]).
    Snapshots(Vec<SnapshotInfo>),
    /// Done (for [`Action::Forget`] and [`Action::Check`]).
    Done,
    /// Repository figures (for [`Action::Stats`]).
    #[serde(rename_all = "camelCase")]
    Stats {
        /// Raw data bytes.
        total_size: u64,
        /// Snapshots in the repository.
        snapshot_count: u64,
    },
    /// The action failed; the text says why (no secrets: engine errors are redacted).
    Failed(String),
}

/// The change to the BackupSession's status: the host rows go into the target's entry, the
/// conditions into the session's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatusPatch {
    /// The target the rows belong to.
    pub target: TargetRef,
    /// Host rows, upserted by host name.
    pub stats: Vec<HostBackupStats>,
    /// Session conditions, upserted by type.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl BackupStatusPatch {
    /// Applies the patch to a (fresh) copy of the status; safe to repeat on conflicts.
    pub fn apply(&self, status: &mut BackupSessionStatus) {
        let entry = target_status_mut(status, &self.target);
        let rows = entry.stats.get_or_insert_with(Vec::new);
        for s in &self.stats {
            match rows.iter_mut().find(|h| h.hostname == s.hostname) {
                Some(h) => *h = s.clone(),
                None => rows.push(s.clone()),
            }
        }
        if !self.conditions.is_empty() {
            let conds = status.conditions.get_or_insert_with(Vec::new);
            for c in &self.conditions {
                conditions::upsert(conds, c.clone());
            }
        }
    }
}

/// A Repository status update.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryUpdate {
    /// Namespace of the Repository.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// What to record (`plan::repository::status_from_report`).
    pub report: RepositoryReport,
}

/// Everything a backup's update-status writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupUpdatePlan {
    /// Whether every host succeeded.
    pub succeeded: bool,
    /// The session status patch.
    pub session: BackupStatusPatch,
    /// The Repository status to record, if the post-backup actions measured anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryUpdate>,
    /// Events on the BackupSession.
    pub events: Vec<EventSpec>,
    /// One line for the Job's log.
    pub summary: String,
}

/// Where the post-backup sequence stands.
#[derive(Debug, Clone)]
enum Stage {
    Retention(RetentionPolicy),
    Forget { ids: Vec<String>, prune: bool },
    Check,
    Stats,
    Done,
}

/// A backup's update-status in progress: ask [`BackupUpdate::next_action`], run it, hand the
/// result to [`BackupUpdate::record`], until no action is left; then [`BackupUpdate::finish`].
#[derive(Debug, Clone)]
pub struct BackupUpdate {
    namespace: String,
    session_name: String,
    session_meta: ObjectMeta,
    now: Time,
    target: TargetRef,
    stats: Vec<HostBackupStats>,
    succeeded: bool,
    stage: Stage,
    conditions: Vec<Condition>,
    report: RepositoryReport,
    repository: Option<(String, String)>,
}

impl BackupUpdate {
    /// Reads the host results and decides the first action: none unless every host succeeded.
    pub fn start(inputs: &BackupInputs) -> BackupUpdate {
        let spec = inputs.configuration.as_ref().map(|bc| &bc.spec);
        let host = spec
            .and_then(|s| s.target.as_ref())
            .and_then(|t| t.alias.clone())
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| DEFAULT_HOST.into());
        let (target, stats) = match &inputs.output {
            Ok(out) => (
                out.target_status.target_ref.to_api(),
                out.target_status
                    .stats
                    .iter()
                    .map(|s| s.to_backup_stats())
                    .collect(),
            ),
            Err(e) => (
                flag_target_ref(&inputs.flag_target, &inputs.namespace),
                vec![HostBackupStats {
                    hostname: Some(host),
                    phase: Some("Failed".into()),
                    error: Some(e.clone()),
                    ..Default::default()
                }],
            ),
        };
        let succeeded = all_succeeded(stats.iter().map(|s| s.phase.as_deref()));
        let policy = spec.and_then(|s| s.retention_policy.clone());
        let stage = if !succeeded {
            Stage::Done
        } else {
            match policy {
                Some(p) if !retention::keeps_everything(&p) => Stage::Retention(p),
                _ => Stage::Check,
            }
        };
        let mut update = BackupUpdate {
            namespace: inputs.namespace.clone(),
            session_name: inputs.session.metadata.name.clone().unwrap_or_default(),
            session_meta: inputs.session.metadata.clone(),
            now: inputs.now.clone(),
            target,
            stats,
            succeeded,
            stage,
            conditions: Vec::new(),
            report: RepositoryReport {
                session_created: inputs.session.metadata.creation_timestamp.clone(),
                ..Default::default()
            },
            repository: spec.and_then(|s| s.repository.as_ref()).map(|r| {
                let ns = r
                    .namespace
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| inputs.namespace.clone());
                (ns, r.name.clone())
            }),
        };
        if succeeded && matches!(update.stage, Stage::Check) {
            // Unlike Stash (whose restic call fails on an empty policy), no keep rule keeps all.
            update.set(NewCondition::yes(
                RETENTION_POLICY_APPLIED,
                "SuccessfullyAppliedRetentionPolicy",
                "Retention policy keeps every snapshot (no keep rule).",
            ));
        }
        update
    }

    /// The next action to run, or None when the sequence is over.
    pub fn next_action(&self) -> Option<Action> {
        match &self.stage {
            Stage::Retention(_) => Some(Action::ListSnapshots),
            Stage::Forget { ids, prune } => Some(Action::Forget {
                ids: ids.clone(),
                prune: *prune,
            }),
            Stage::Check => Some(Action::Check),
            Stage::Stats => Some(Action::Stats),
            Stage::Done => None,
        }
    }

    /// Takes the result of [`BackupUpdate::next_action`] and moves on; a failure ends the
    /// sequence with its condition False.
    pub fn record(&mut self, result: ActionResult) {
        let stage = std::mem::replace(&mut self.stage, Stage::Done);
        self.stage = match (stage, result) {
            (Stage::Retention(policy), ActionResult::Snapshots(list)) => {
                self.retention_selected(&policy, &list)
            }
            (Stage::Retention(_) | Stage::Forget { .. }, result) if result_failed(&result) => {
                self.set(NewCondition::no(
                    RETENTION_POLICY_APPLIED,
                    "FailedToApplyRetentionPolicy",
                    format!(
                        "Failed to apply retention policy. Reason: {}",
                        reason(result)
                    ),
                ));
                Stage::Done
            }
            (Stage::Forget { ids, .. }, ActionResult::Done) => {
                self.report.snapshots_removed = Some(count(ids.len()));
                self.set(NewCondition::yes(
                    RETENTION_POLICY_APPLIED,
                    "SuccessfullyAppliedRetentionPolicy",
                    "Successfully applied retention policy.",
                ));
                Stage::Check
            }
            (Stage::Check, ActionResult::Done) => {
                self.report.integrity = Some(true);
                self.set(NewCondition::yes(
                    REPOSITORY_INTEGRITY_VERIFIED,
                    "SuccessfullyVerifiedRepositoryIntegrity",
                    "Repository integrity verification succeeded.",
                ));
                Stage::Stats
            }
            (Stage::Check, result) => {
                self.report.integrity = Some(false);
                self.set(NewCondition::no(
                    REPOSITORY_INTEGRITY_VERIFIED,
                    "FailedToVerifyRepositoryIntegrity",
                    format!(
                        "Repository integrity verification failed. Reason: {}",
                        reason(result)
                    ),
                ));
                Stage::Done
            }
            (
                Stage::Stats,
                ActionResult::Stats {
                    total_size,
                    snapshot_count,
                },
            ) => {
                self.report.total_size_bytes = Some(total_size);
                self.report.snapshot_count = Some(count(snapshot_count));
                self.set(NewCondition::yes(
                    REPOSITORY_METRICS_PUSHED,
                    "SuccessfullyPushedRepositoryMetrics",
                    "Repository size and snapshot count recorded.",
                ));
                Stage::Done
            }
            (Stage::Stats, result) => {
                self.set(NewCondition::no(
                    REPOSITORY_METRICS_PUSHED,
                    "FailedToPushRepositoryMetrics",
                    format!(
                        "Failed to push repository metrics. Reason: {}",
                        reason(result)
                    ),
                ));
                Stage::Done
            }
            // A result that does not answer the action (a caller's bug) ends the sequence
            // where it stands, leaving no condition claiming success.
            (Stage::Retention(_) | Stage::Forget { .. }, _) | (Stage::Done, _) => Stage::Done,
        };
    }

    fn retention_selected(&mut self, policy: &RetentionPolicy, list: &[SnapshotInfo]) -> Stage {
        let selected = retention::select(list, policy);
        if policy.dry_run == Some(true) {
            self.set(NewCondition::yes(
                RETENTION_POLICY_APPLIED,
                "SuccessfullyAppliedRetentionPolicy",
                format!(
                    "Dry run: retention would forget {} of {} snapshot(s); none was removed.",
                    selected.forget.len(),
                    list.len()
                ),
            ));
            return Stage::Check;
        }
        if selected.forget.is_empty() {
            self.report.snapshots_removed = Some(0);
            self.set(NewCondition::yes(
                RETENTION_POLICY_APPLIED,
                "SuccessfullyAppliedRetentionPolicy",
                "Successfully applied retention policy.",
            ));
            return Stage::Check;
        }
        Stage::Forget {
            ids: selected.forget,
            prune: policy.prune.unwrap_or(false),
        }
    }

    fn set(&mut self, c: NewCondition<'_>) {
        conditions::set(&mut self.conditions, c, None, &self.now);
    }

    /// The status patch, Repository report and events.
    pub fn finish(self) -> BackupUpdatePlan {
        let measured = self.report.integrity.is_some() || self.report.snapshot_count.is_some();
        let repository = self
            .repository
            .filter(|_| measured)
            .map(|(namespace, name)| RepositoryUpdate {
                namespace,
                name,
                report: self.report.clone(),
            });
        let events = host_events(
            "backup",
            &self.session_meta,
            self.stats.iter().map(|s| {
                (
                    s.hostname.as_deref(),
                    s.phase.as_deref(),
                    s.error.as_deref(),
                )
            }),
            &self.target,
        );
        let snapshots: Vec<String> = self
            .stats
            .iter()
            .flat_map(|s| s.snapshots.iter().flatten())
            .filter_map(|s| s.name.clone())
            .collect();
        let summary = format!(
            "BackupSession {}/{}: {} (snapshots: {})",
            self.namespace,
            self.session_name,
            phase_word(self.succeeded),
            if snapshots.is_empty() {
                "none".into()
            } else {
                snapshots.join(", ")
            }
        );
        BackupUpdatePlan {
            succeeded: self.succeeded,
            session: BackupStatusPatch {
                target: self.target,
                stats: self.stats,
                conditions: self.conditions,
            },
            repository,
            events,
            summary,
        }
    }
}

/// Inputs of a restore's update-status.
#[derive(Debug, Clone)]
pub struct RestoreInputs {
    /// The session's namespace.
    pub namespace: String,
    /// The RestoreSession.
    pub session: RestoreSession,
    /// `output.json`, or why it could not be read.
    pub output: Result<Output, String>,
}

/// Everything a restore's update-status writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreUpdatePlan {
    /// Whether every host succeeded.
    pub succeeded: bool,
    /// Host rows, upserted by host name into `status.stats`.
    pub stats: Vec<HostRestoreStats>,
    /// Events on the RestoreSession.
    pub events: Vec<EventSpec>,
    /// One line for the Job's log.
    pub summary: String,
}

impl RestoreUpdatePlan {
    /// Applies the host rows to a (fresh) copy of the status; safe to repeat on conflicts.
    pub fn apply(&self, status: &mut RestoreSessionStatus) {
        let rows = status.stats.get_or_insert_with(Vec::new);
        for s in &self.stats {
            match rows.iter_mut().find(|h| h.hostname == s.hostname) {
                Some(h) => *h = s.clone(),
                None => rows.push(s.clone()),
            }
        }
    }
}

/// A restore's update-status: the host rows and events (no repository actions).
pub fn plan_restore(inputs: &RestoreInputs) -> RestoreUpdatePlan {
    let target = inputs.session.spec.target.as_ref();
    let stats: Vec<HostRestoreStats> = match &inputs.output {
        Ok(out) => out
            .target_status
            .stats
            .iter()
            .map(|s| s.to_restore_stats())
            .collect(),
        Err(e) => vec![HostRestoreStats {
            hostname: Some(
                target
                    .and_then(|t| t.alias.clone())
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| DEFAULT_HOST.into()),
            ),
            phase: Some("Failed".into()),
            error: Some(e.clone()),
            ..Default::default()
        }],
    };
    let succeeded = all_succeeded(stats.iter().map(|s| s.phase.as_deref()));
    let target_ref = match &inputs.output {
        Ok(out) => out.target_status.target_ref.to_api(),
        Err(_) => target.and_then(|t| t.r#ref.clone()).unwrap_or_default(),
    };
    let events = host_events(
        "restore",
        &inputs.session.metadata,
        stats.iter().map(|s| {
            (
                s.hostname.as_deref(),
                s.phase.as_deref(),
                s.error.as_deref(),
            )
        }),
        &target_ref,
    );
    RestoreUpdatePlan {
        succeeded,
        summary: format!(
            "RestoreSession {}/{}: {}",
            inputs.namespace,
            inputs.session.metadata.name.clone().unwrap_or_default(),
            phase_word(succeeded)
        ),
        stats,
        events,
    }
}

/// The session's status entry for `target`, added when missing. An entry matches by kind and
/// name; a lone entry matches any target, because the operator writes the entry from the
/// invoker's reference while the Job names the target as it resolved it.
pub fn target_status_mut<'s>(
    status: &'s mut BackupSessionStatus,
    target: &TargetRef,
) -> &'s mut BackupTargetStatus {
    let targets = status.targets.get_or_insert_with(Vec::new);
    let idx = match target_index(targets, target) {
        Some(i) => i,
        None => {
            targets.push(BackupTargetStatus {
                r#ref: target.clone(),
                total_hosts: Some(1),
                ..Default::default()
            });
            targets.len() - 1
        }
    };
    &mut targets[idx]
}

/// The session's status entry for `target` (the same match as [`target_status_mut`]).
pub fn target_status<'s>(
    status: &'s BackupSessionStatus,
    target: &TargetRef,
) -> Option<&'s BackupTargetStatus> {
    let targets = status.targets.as_deref()?;
    target_index(targets, target).map(|i| &targets[i])
}

fn target_index(targets: &[BackupTargetStatus], target: &TargetRef) -> Option<usize> {
    let same = |t: &TargetRef| t.kind == target.kind && t.name == target.name;
    targets
        .iter()
        .position(|t| same(&t.r#ref))
        .or_else(|| (targets.len() == 1).then_some(0))
}

/// The target the flags name: an AppBinding in the session's namespace unless they say other.
fn flag_target_ref(flags: &FlagTarget, namespace: &str) -> TargetRef {
    let or = |v: &str, default: &str| {
        if v.is_empty() {
            default.to_owned()
        } else {
            v.to_owned()
        }
    };
    TargetRef {
        api_version: Some("appcatalog.appscode.com/v1alpha1".into()),
        kind: Some(or(&flags.kind, "AppBinding")),
        name: Some(flags.name.clone()),
        namespace: Some(or(&flags.namespace, namespace)),
    }
}

fn all_succeeded<'a>(mut phases: impl Iterator<Item = Option<&'a str>>) -> bool {
    phases.all(|p| p == Some("Succeeded"))
}

fn phase_word(succeeded: bool) -> &'static str {
    if succeeded {
        "Succeeded"
    } else {
        "Failed"
    }
}

/// Stash's per-host events: `Host Backup Succeeded` / `Host Backup Failed` (and Restore), one
/// per (hostname, phase, error) row, each named after the session, the reason and the host so
/// that a repeated update-status (a retried Job pod, a lost answer) finds it instead of adding
/// a second.
fn host_events<'a>(
    verb: &str,
    session: &ObjectMeta,
    rows: impl Iterator<Item = (Option<&'a str>, Option<&'a str>, Option<&'a str>)>,
    target: &TargetRef,
) -> Vec<EventSpec> {
    let kind = target.kind.as_deref().unwrap_or_default();
    let name = target.name.as_deref().unwrap_or_default();
    let what = if verb == "backup" {
        "Backup"
    } else {
        "Restore"
    };
    rows.map(|(host, phase, error)| {
        let host = host.unwrap_or_default();
        let ok = phase == Some("Succeeded");
        let reason = format!("Host {what} {}", phase_word(ok));
        EventSpec {
            type_: if ok { "Normal" } else { "Warning" }.into(),
            name: Some(super::once_event_name(session, &[&reason, host])),
            reason,
            message: if ok {
                format!("{verb} succeeded for host {host:?} of {kind:?}/{name:?}")
            } else {
                format!(
                    "{verb} failed for host {host:?} of {kind:?}/{name:?}. Reason: {}",
                    error.unwrap_or_default()
                )
            },
            source: EVENT_SOURCE.into(),
        }
    })
    .collect()
}

fn result_failed(result: &ActionResult) -> bool {
    matches!(result, ActionResult::Failed(_))
}

fn reason(result: ActionResult) -> String {
    match result {
        ActionResult::Failed(e) => e,
        other => format!("unexpected result {other:?}"),
    }
}

fn count(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}
