//! BackupSession planner: skip or start (the backup Job), follow the Job to a final phase with a
//! reason (a failed, vanished or timed-out Job never leaves the session Running), history
//! cleanup under `backupHistoryLimit`, and retries.

use super::backend::{backend_info, local_volume, repository_variables};
use super::backup_configuration::{key_of, task_name};
use super::job::{build_pod_spec, interim_volume, HookContainers, PodInputs};
use super::labels::{invoker_labels, INVOKER_NAME, INVOKER_TYPE};
use super::{add_seconds, controller_ref, to_value, unix, EventSpec, ObjectKey, Plan, Settings};
use crate::api::{
    AppBinding, BackupConfiguration, BackupSession, BackupSessionSpec, BackupSessionStatus,
    BackupTargetStatus, Condition, Function, HostBackupStats, Param, Repository, TargetRef, Task,
};
use crate::conditions::{self, NewCondition};
use crate::duration::{format_go_duration_secs, parse_go_duration_millis};
use crate::hooks::{self, HookType};
use crate::names::{backup_job_name, backup_job_rbac_name, backup_session_name};
use crate::resolve::Variables;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use std::collections::BTreeMap;

/// Session-level condition types.
pub mod condition {
    /// The session was skipped.
    pub const BACKUP_SKIPPED: &str = "BackupSkipped";
    /// The deadline passed.
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    /// Old sessions were cleaned up.
    pub const BACKUP_HISTORY_CLEANED: &str = "BackupHistoryCleaned";
    /// Metrics recorded.
    pub const METRICS_PUSHED: &str = "MetricsPushed";
    /// Retention ran (written by the job).
    pub const RETENTION_POLICY_APPLIED: &str = "RetentionPolicyApplied";
    /// Integrity verified (written by the job).
    pub const REPOSITORY_INTEGRITY_VERIFIED: &str = "RepositoryIntegrityVerified";
    /// Repository metrics pushed (written by the job).
    pub const REPOSITORY_METRICS_PUSHED: &str = "RepositoryMetricsPushed";
    /// Target: the Job exists.
    pub const BACKUP_EXECUTOR_ENSURED: &str = "BackupExecutorEnsured";
}
use condition::*;

/// Source of this planner's events.
pub const EVENT_SOURCE: &str = "BackupSession Controller";
/// While a Job runs, look again at least this often.
pub const REQUEUE_RUNNING_SECS: u64 = 30;
/// While the configuration has not been evaluated yet, look again this soon.
pub const REQUEUE_WAITING_SECS: u64 = 5;

/// Summary of another session of the same invoker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiblingSession {
    /// Name.
    pub name: String,
    /// Phase (empty when none yet).
    pub phase: String,
    /// Creation time, unix seconds.
    pub created: i64,
}

impl SiblingSession {
    /// The summary of `session`.
    pub fn of(session: &BackupSession) -> SiblingSession {
        SiblingSession {
            name: session.metadata.name.clone().unwrap_or_default(),
            phase: session
                .status
                .as_ref()
                .and_then(|x| x.phase.clone())
                .unwrap_or_default(),
            created: session
                .metadata
                .creation_timestamp
                .as_ref()
                .map(unix)
                .unwrap_or(0),
        }
    }
}

/// API group of Stash's invokers.
pub const INVOKER_API_GROUP: &str = "stash.appscode.com";

/// The name of the BackupConfiguration that `session.spec.invoker` names, if it names one.
/// Sessions are matched by their spec, never by labels: a hand-written session usually has none.
pub fn configuration_of(session: &BackupSession) -> Option<&str> {
    let invoker = session.spec.invoker.as_ref()?;
    let group_ok = matches!(
        invoker.api_group.as_deref(),
        None | Some("") | Some(INVOKER_API_GROUP)
    );
    (group_ok && invoker.kind == "BackupConfiguration" && !invoker.name.is_empty())
        .then_some(invoker.name.as_str())
}

/// The sessions among `sessions` that the BackupConfiguration `namespace/name` invoked.
pub fn siblings_of<'a>(
    sessions: impl IntoIterator<Item = &'a BackupSession>,
    namespace: &str,
    name: &str,
) -> Vec<SiblingSession> {
    sessions
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref().unwrap_or("default") == namespace)
        .filter(|s| configuration_of(s) == Some(name))
        .map(SiblingSession::of)
        .collect()
}

/// What the BackupSession planner looks at.
#[derive(Debug, Clone, Default)]
pub struct BackupSessionInputs {
    /// The session.
    pub session: BackupSession,
    /// Its invoker, if it exists.
    pub invoker: Option<BackupConfiguration>,
    /// The invoker's Repository, if it exists.
    pub repository: Option<Repository>,
    /// The invoker's target, if it exists.
    pub target: Option<AppBinding>,
    /// Tasks by name.
    pub tasks: BTreeMap<String, Task>,
    /// Functions by name.
    pub functions: BTreeMap<String, Function>,
    /// The backup Job, if it exists.
    pub job: Option<Job>,
    /// Pods of the backup Job.
    pub pods: Vec<Pod>,
    /// The other sessions of the same invoker.
    pub siblings: Vec<SiblingSession>,
    /// Operator settings.
    pub settings: Settings,
    /// The time of this reconcile.
    pub now: Option<Time>,
}

const FINAL: [&str; 4] = ["Succeeded", "Failed", "Skipped", "Unknown"];

/// Plans one reconcile of a BackupSession.
pub fn plan(inputs: &BackupSessionInputs) -> Plan {
    let s = &inputs.session;
    let (name, namespace, now, mut plan) = super::begin(
        "stash.appscode.com/v1beta1",
        "BackupSession",
        &s.metadata,
        &inputs.now,
    );
    if s.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    let old = s.status.clone().unwrap_or_default();
    let mut st = old.clone();
    let phase = old.phase.clone().unwrap_or_default();
    let job_name = backup_job_name(&name, 0);
    let job_key = ObjectKey {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        namespace: Some(namespace.clone()),
        name: job_name.clone(),
    };

    if FINAL.contains(&phase.as_str()) {
        plan_retry(inputs, &mut st, &mut plan, &now);
        if st != old {
            plan.status = Some(to_value(&st));
        }
        return plan;
    }

    let created = s
        .metadata
        .creation_timestamp
        .as_ref()
        .map(unix)
        .unwrap_or_else(|| unix(&now));
    let invoker = inputs.invoker.as_ref();
    let mut conds = st.conditions.clone().unwrap_or_default();
    let mut events = Vec::new();

    // Deadline.
    let timeout_secs = invoker
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
    let deadline_passed = st
        .session_deadline
        .as_ref()
        .is_some_and(|d| unix(&now) >= unix(d));

    let mut targets = st.targets.clone().unwrap_or_default();
    let started = !targets.is_empty();

    if !started && !deadline_passed {
        // Skip checks.
        let bc_ns_name = format!(
            "{namespace}/{}",
            s.spec
                .invoker
                .as_ref()
                .map(|i| i.name.clone())
                .unwrap_or_default()
        );
        if invoker.is_some_and(|bc| !super::backup_configuration::evaluated(bc)) {
            // The configuration has not been looked at yet (created in the same apply): its
            // missing phase is no reason to skip. Wait for the operator's first pass.
            if st.phase.is_none() {
                st.phase = Some("Pending".into());
            }
            plan.requeue_after_seconds = Some(REQUEUE_WAITING_SECS);
            if st != old {
                plan.status = Some(to_value(&st));
            }
            return plan;
        }
        let skip_reason = match invoker {
            None => Some(format!("Skipped taking backup. Reason: BackupConfiguration {bc_ns_name} does not exist.")),
            Some(bc) if bc.status.as_ref().and_then(|x| x.phase.as_deref()) != Some("Ready") => {
                Some(format!("Skipped taking backup. Reason: BackupConfiguration {bc_ns_name} is not ready."))
            }
            Some(_) => inputs
                .siblings
                .iter()
                .filter(|o| o.name != name && o.phase == "Running")
                .min_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)))
                .map(|o| format!("Skipped taking new backup. Reason: Previous BackupSession: {} is \"Running\".", o.name)),
        };
        if let Some(msg) = skip_reason {
            conditions::set(
                &mut conds,
                NewCondition::yes(BACKUP_SKIPPED, "SkippedTakingNewBackup", msg.clone()),
                None,
                &now,
            );
            events.push(event("Normal", "BackupSession Skipped", msg));
            finish(
                inputs, "Skipped", &mut conds, &mut st, &mut plan, &now, created,
            );
            st.conditions = Some(conds);
            plan.events.extend(events);
            plan.status = Some(to_value(&st));
            return plan;
        }
        // Start: build and apply the Job.
        // The skip checks above return whenever the invoker is missing.
        let Some(bc) = invoker else { return plan };
        let target_ref = resolved_target_ref(bc, &namespace);
        let mut target = BackupTargetStatus {
            r#ref: target_ref.clone(),
            pre_backup_actions: Some(vec!["InitializeBackendRepository".into()]),
            post_backup_actions: Some(vec![
                "ApplyRetentionPolicy".into(),
                "VerifyRepositoryIntegrity".into(),
                "SendRepositoryMetrics".into(),
            ]),
            ..Default::default()
        };
        let mut tconds = Vec::new();
        match build_job(inputs, bc, &name, &namespace, &job_name) {
            Ok((job, claim)) => {
                if let Some(claim) = claim {
                    plan.apply.push(to_value(&claim));
                }
                plan.apply.push(to_value(&job));
                conditions::set(
                    &mut tconds,
                    NewCondition::yes(
                        BACKUP_EXECUTOR_ENSURED,
                        "SuccessfullyEnsuredBackupExecutor",
                        format!("Backup job {job_name} has been ensured successfully."),
                    ),
                    None,
                    &now,
                );
                target.total_hosts = Some(1);
                target.phase = Some("Running".into());
                st.phase = Some("Running".into());
                plan.requeue_after_seconds = Some(REQUEUE_RUNNING_SECS);
            }
            Err(e) => {
                let msg = format!("Failed to ensure backup executor. Reason: {e}");
                conditions::set(
                    &mut tconds,
                    NewCondition::no(
                        BACKUP_EXECUTOR_ENSURED,
                        "FailedToEnsureBackupExecutor",
                        msg.clone(),
                    ),
                    None,
                    &now,
                );
                events.push(event("Warning", "Backup Executor Failed", msg));
                target.phase = Some("Failed".into());
            }
        }
        target.conditions = Some(tconds);
        targets = vec![target];
    }

    // Follow the Job.
    let post_hook = invoker
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
        let host = invoker_host(invoker);
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
        if !ensured
            || plan
                .apply
                .iter()
                .any(|o| key_of(o).as_ref() == Some(&job_key))
        {
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
            conditions::set(&mut tc, HookType::PostBackup.failed(&why), None, &now);
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

    if deadline_passed
        && !targets
            .iter()
            .all(|t| matches!(t.phase.as_deref(), Some("Succeeded" | "Failed")))
    {
        let msg = format!(
            "Failed to complete backup within {}.",
            format_go_duration_secs(timeout_secs.unwrap_or(0).max(0) as u64)
        );
        conditions::set(
            &mut conds,
            NewCondition::yes(
                DEADLINE_EXCEEDED,
                "FailedToCompleteWithinDeadline",
                msg.clone(),
            ),
            None,
            &now,
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
    st.targets = Some(targets.clone());

    let all_final = !targets.is_empty()
        && targets
            .iter()
            .all(|t| matches!(t.phase.as_deref(), Some("Succeeded" | "Failed")));
    if all_final {
        let failed = targets.iter().any(|t| t.phase.as_deref() == Some("Failed"))
            || [
                RETENTION_POLICY_APPLIED,
                REPOSITORY_INTEGRITY_VERIFIED,
                REPOSITORY_METRICS_PUSHED,
                DEADLINE_EXCEEDED,
            ]
            .iter()
            .any(|c| {
                if *c == DEADLINE_EXCEEDED {
                    conditions::is_true(&conds, c)
                } else {
                    conditions::is_false(&conds, c)
                }
            });
        let final_phase = if failed { "Failed" } else { "Succeeded" };
        events.push(event(
            if failed { "Warning" } else { "Normal" },
            if failed {
                "BackupSession Failed"
            } else {
                "BackupSession Succeeded"
            },
            format!(
                "Backup session {namespace}/{name} {}.",
                final_phase.to_lowercase()
            ),
        ));
        finish(
            inputs,
            final_phase,
            &mut conds,
            &mut st,
            &mut plan,
            &now,
            created,
        );
        st.conditions = Some(conds);
        plan_retry(inputs, &mut st, &mut plan, &now);
    } else {
        if st.phase.is_none() {
            st.phase = Some("Pending".into());
        }
        st.conditions = (!conds.is_empty()).then_some(conds);
        if plan.requeue_after_seconds.is_none() {
            plan.requeue_after_seconds = Some(REQUEUE_RUNNING_SECS);
        }
    }
    if let Some(d) = &st.session_deadline {
        if !all_final {
            let until = (unix(d) - unix(&now)).max(1) as u64;
            plan.requeue_after_seconds =
                Some(plan.requeue_after_seconds.map_or(until, |r| r.min(until)));
        }
    }
    plan.events.extend(events);
    if st != old {
        plan.status = Some(to_value(&st));
    }
    plan
}

fn event(type_: &str, reason: &str, message: String) -> EventSpec {
    EventSpec {
        type_: type_.into(),
        reason: reason.into(),
        message,
        source: EVENT_SOURCE.into(),
    }
}

/// Sets the final phase, duration, history cleanup and metrics conditions.
fn finish(
    inputs: &BackupSessionInputs,
    final_phase: &str,
    conds: &mut Vec<Condition>,
    st: &mut BackupSessionStatus,
    plan: &mut Plan,
    now: &Time,
    created: i64,
) {
    let limit = inputs
        .invoker
        .as_ref()
        .and_then(|bc| bc.spec.backup_history_limit)
        .unwrap_or(1)
        .max(0) as usize;
    let name = inputs.session.metadata.name.clone().unwrap_or_default();
    let namespace = inputs
        .session
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut all: Vec<SiblingSession> = inputs
        .siblings
        .iter()
        .filter(|x| x.name != name)
        .cloned()
        .collect();
    all.push(SiblingSession {
        name: name.clone(),
        phase: final_phase.into(),
        created,
    });
    for victim in history_to_delete(&all, limit) {
        plan.delete.push(ObjectKey {
            api_version: "stash.appscode.com/v1beta1".into(),
            kind: "BackupSession".into(),
            namespace: Some(namespace.clone()),
            name: victim,
        });
    }
    conditions::set(
        conds,
        NewCondition::yes(
            BACKUP_HISTORY_CLEANED,
            "SuccessfullyCleanedBackupHistory",
            "Successfully cleaned up backup history according to backupHistoryLimit.",
        ),
        None,
        now,
    );
    conditions::set(
        conds,
        NewCondition::yes(
            METRICS_PUSHED,
            "SuccessfullyPushedMetrics",
            "Successfully pushed metrics.",
        ),
        None,
        now,
    );
    st.phase = Some(final_phase.into());
    st.session_duration = Some(format_go_duration_secs((unix(now) - created).max(0) as u64));
}

/// Finished sessions beyond `limit` (newest first), never the newest Succeeded/Failed one when
/// `limit > 0`, never a session still running (Stash's `cleanupBackupHistory`).
pub fn history_to_delete(sessions: &[SiblingSession], limit: usize) -> Vec<String> {
    let mut sorted: Vec<&SiblingSession> = sessions.iter().collect();
    sorted.sort_by(|a, b| b.created.cmp(&a.created).then(b.name.cmp(&a.name)));
    let last_completed = sorted
        .iter()
        .find(|s| s.phase == "Succeeded" || s.phase == "Failed")
        .map(|s| s.name.clone());
    sorted
        .iter()
        .enumerate()
        .filter(|(i, s)| *i >= limit && FINAL.contains(&s.phase.as_str()))
        .filter(|(_, s)| !(limit > 0 && Some(&s.name) == last_completed.as_ref()))
        .map(|(_, s)| s.name.clone())
        .collect()
}

/// Creates the retry session once `nextRetry` has passed.
fn plan_retry(
    inputs: &BackupSessionInputs,
    st: &mut BackupSessionStatus,
    plan: &mut Plan,
    now: &Time,
) {
    let s = &inputs.session;
    let retry_left = s.spec.retry_left.unwrap_or(0);
    let Some(rc) = inputs
        .invoker
        .as_ref()
        .and_then(|bc| bc.spec.retry_config.as_ref())
    else {
        return;
    };
    if st.phase.as_deref() != Some("Failed") || retry_left <= 0 || st.retried == Some(true) {
        return;
    }
    let delay = rc
        .delay
        .as_deref()
        .and_then(|d| parse_go_duration_millis(d).ok())
        .unwrap_or(0)
        / 1000;
    let next = st
        .next_retry
        .clone()
        .unwrap_or_else(|| add_seconds(now, delay as i64));
    if unix(now) < unix(&next) {
        st.next_retry = Some(next.clone());
        plan.requeue_after_seconds = Some((unix(&next) - unix(now)).max(1) as u64);
        return;
    }
    st.next_retry = Some(next);
    st.retried = Some(true);
    if let Some(bc) = &inputs.invoker {
        plan.apply
            .push(to_value(&new_session(bc, unix(now), retry_left - 1)));
    }
}

/// A new BackupSession for `bc` named `<bc>-<unix>` (what `create-backupsession` creates).
pub fn new_session(bc: &BackupConfiguration, unix_now: i64, retry_left: i32) -> BackupSession {
    let bc_name = bc.metadata.name.clone().unwrap_or_default();
    let namespace = bc.metadata.namespace.clone();
    let target = bc
        .spec
        .target
        .as_ref()
        .and_then(|t| t.r#ref.clone())
        .unwrap_or_default();
    let mut labels = invoker_labels(
        bc.metadata.labels.as_ref(),
        "stash-backup",
        "BackupConfiguration",
        &bc_name,
    );
    labels.insert(
        "stash.appscode.com/target-kind".into(),
        target.kind.clone().unwrap_or_default(),
    );
    labels.insert(
        "stash.appscode.com/target-name".into(),
        crate::names::label_value(&target.name.clone().unwrap_or_default()),
    );
    labels.insert(
        "stash.appscode.com/target-namespace".into(),
        target.namespace.clone().unwrap_or_default(),
    );
    let mut session = invoked_session(bc, &backup_session_name(&bc_name, unix_now));
    session.spec.retry_left = Some(retry_left);
    session.metadata.namespace = namespace;
    session.metadata.labels = Some(labels);
    session
}

/// The BackupSession `kubectl stash trigger` creates for `bc`: `generateName: <bc>-` (the API
/// server picks the name), labels `app: stash` and the invoker labels, `spec.invoker`, owned
/// by `bc` as its controller. Like Stash's, it sets no `retryLeft`.
pub fn manual_session(bc: &BackupConfiguration) -> BackupSession {
    let bc_name = bc.metadata.name.clone().unwrap_or_default();
    let mut session = invoked_session(bc, "");
    session.metadata.name = None;
    session.metadata.generate_name = Some(format!("{bc_name}-"));
    session.metadata.namespace = bc.metadata.namespace.clone();
    session.metadata.labels = Some(BTreeMap::from([
        ("app".to_string(), "stash".to_string()),
        (INVOKER_TYPE.to_string(), "BackupConfiguration".to_string()),
        (
            INVOKER_NAME.to_string(),
            crate::names::label_value(&bc_name),
        ),
    ]));
    session
}

/// A session named `name` whose `spec.invoker` is `bc` and whose controller is `bc`.
fn invoked_session(bc: &BackupConfiguration, name: &str) -> BackupSession {
    let bc_name = bc.metadata.name.clone().unwrap_or_default();
    let mut session = BackupSession::new(
        name,
        BackupSessionSpec {
            invoker: Some(crate::api::BackupInvokerRef {
                api_group: Some(INVOKER_API_GROUP.into()),
                kind: "BackupConfiguration".into(),
                name: bc_name.clone(),
            }),
            retry_left: None,
        },
    );
    session.metadata.owner_references = Some(vec![controller_ref(
        "stash.appscode.com/v1beta1",
        "BackupConfiguration",
        &bc_name,
        bc.metadata.uid.as_deref(),
    )]);
    session
}

fn resolved_target_ref(bc: &BackupConfiguration, namespace: &str) -> TargetRef {
    let mut r = bc
        .spec
        .target
        .as_ref()
        .and_then(|t| t.r#ref.clone())
        .unwrap_or_default();
    if r.namespace.as_deref().unwrap_or("").is_empty() {
        r.namespace = Some(namespace.to_string());
    }
    r
}

fn invoker_host(bc: Option<&BackupConfiguration>) -> String {
    bc.and_then(|b| b.spec.target.as_ref())
        .and_then(|t| t.alias.clone())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "host-0".into())
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

fn job_complete(job: &Job) -> bool {
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

/// Builds the backup Job of a session.
fn build_job(
    inputs: &BackupSessionInputs,
    bc: &BackupConfiguration,
    session: &str,
    namespace: &str,
    job_name: &str,
) -> Result<(Job, Option<PersistentVolumeClaim>), String> {
    let repo = inputs.repository.as_ref().ok_or("Repository not found")?;
    let target = inputs
        .target
        .as_ref()
        .ok_or("backup target AppBinding not found")?;
    let info = backend_info(&repo.spec.backend)?;
    let addon = target.stash_addon();
    let addon_task = addon.as_ref().and_then(|a| a.backup_task.clone());
    let task_name = task_name(bc.spec.task.as_ref(), addon_task.as_ref())
        .ok_or("no Task: spec.task.name is empty and the AppBinding names none")?;
    let task = inputs
        .tasks
        .get(&task_name)
        .ok_or_else(|| format!("Task {task_name} not found"))?;
    let bc_name = bc.metadata.name.clone().unwrap_or_default();
    let target_ref = resolved_target_ref(bc, namespace);

    let mut vars: Variables = repository_variables(repo, &info);
    vars.insert("HOSTNAME".into(), invoker_host(Some(bc)));
    vars.insert(
        "TARGET_KIND".into(),
        target_ref.kind.clone().unwrap_or_default(),
    );
    vars.insert(
        "TARGET_NAME".into(),
        target_ref.name.clone().unwrap_or_default(),
    );
    vars.insert(
        "TARGET_NAMESPACE".into(),
        target_ref.namespace.clone().unwrap_or_default(),
    );
    vars.insert(
        "TARGET_PATHS".into(),
        bc.spec
            .target
            .as_ref()
            .and_then(|t| t.paths.clone())
            .unwrap_or_default()
            .join(","),
    );
    vars.insert("BACKUP_SESSION".into(), session.into());
    vars.insert("NAMESPACE".into(), namespace.into());
    vars.insert("INVOKER_KIND".into(), "BackupConfiguration".into());
    vars.insert("INVOKER_NAME".into(), bc_name.clone());
    let caching = !bc
        .spec
        .temp_dir
        .as_ref()
        .and_then(|t| t.disable_caching)
        .unwrap_or(false);
    vars.insert("ENABLE_CACHE".into(), caching.to_string());
    let interim = if bc.spec.interim_volume_template.is_some() {
        "/stash-interim-volume/data"
    } else {
        "/stash-tmp/stash-interim-volume/data"
    };
    vars.insert("INTERIM_DATA_DIR".into(), interim.into());
    vars.insert(
        "LICENSE_APISERVICE".into(),
        inputs.settings.license_apiservice.clone(),
    );
    vars.insert("PROMETHEUS_JOB_NAME".into(), bc_name.clone());
    if let Some(p) = &bc.spec.retention_policy {
        for (k, v) in [
            ("RETENTION_KEEP_LAST", p.keep_last),
            ("RETENTION_KEEP_HOURLY", p.keep_hourly),
            ("RETENTION_KEEP_DAILY", p.keep_daily),
            ("RETENTION_KEEP_WEEKLY", p.keep_weekly),
            ("RETENTION_KEEP_MONTHLY", p.keep_monthly),
            ("RETENTION_KEEP_YEARLY", p.keep_yearly),
        ] {
            if let Some(n) = v.filter(|n| *n > 0) {
                vars.insert(k.into(), n.to_string());
            }
        }
        vars.insert(
            "RETENTION_KEEP_TAGS".into(),
            p.keep_tags.clone().unwrap_or_default().join(","),
        );
        if p.prune == Some(true) {
            vars.insert("RETENTION_PRUNE".into(), "true".into());
        }
        if p.dry_run == Some(true) {
            vars.insert("RETENTION_DRY_RUN".into(), "true".into());
        }
    }
    let mut params: Vec<Param> = addon_task.and_then(|t| t.params).unwrap_or_default();
    params.extend(
        bc.spec
            .task
            .as_ref()
            .and_then(|t| t.params.clone())
            .unwrap_or_default(),
    );

    let hook_args = |hook_type: &str| {
        vec![
            "run-hook".to_string(),
            format!("--backupsession={session}"),
            "--invoker-kind=BackupConfiguration".into(),
            format!("--invoker-name={bc_name}"),
            format!(
                "--target-kind={}",
                target_ref.kind.clone().unwrap_or_default()
            ),
            format!(
                "--target-namespace={}",
                target_ref.namespace.clone().unwrap_or_default()
            ),
            format!(
                "--target-name={}",
                target_ref.name.clone().unwrap_or_default()
            ),
            format!("--hook-type={hook_type}"),
            format!("--hostname={}", invoker_host(Some(bc))),
            "--output-dir=/stash-tmp/output".into(),
        ]
    };
    let mut labels = invoker_labels(
        bc.metadata.labels.as_ref(),
        "stash-backup",
        "BackupConfiguration",
        &bc_name,
    );
    labels.insert(
        "stash.appscode.com/backup-session".into(),
        crate::names::label_value(session),
    );
    let owner = controller_ref(
        "stash.appscode.com/v1beta1",
        "BackupSession",
        session,
        inputs.session.metadata.uid.as_deref(),
    );
    let mut volumes: Vec<_> = local_volume(&repo.spec.backend).into_iter().collect();
    let claim = match &bc.spec.interim_volume_template {
        Some(t) => {
            let (claim, volume) = interim_volume(t, session, namespace, owner.clone(), &labels)?;
            volumes.push(volume);
            Some(claim)
        }
        None => None,
    };
    let hooks = bc.spec.hooks.as_ref();
    let pod = build_pod_spec(&PodInputs {
        task,
        functions: &inputs.functions,
        variables: &vars,
        params: &params,
        runtime_settings: bc.spec.runtime_settings.as_ref(),
        temp_dir: bc.spec.temp_dir.as_ref(),
        service_account: backup_job_rbac_name(&bc_name),
        image_pull_policy: &inputs.settings.image_pull_policy,
        hooks: HookContainers {
            pre: hooks
                .and_then(|h| h.pre_backup.as_ref())
                .map(|_| hook_args("preBackup")),
            post: hooks
                .and_then(|h| h.post_backup.as_ref())
                .map(|_| hook_args("postBackup")),
        },
        operator_image: &inputs.settings.image,
        volumes,
    })?;
    let pod_meta = bc
        .spec
        .runtime_settings
        .as_ref()
        .and_then(|r| r.pod.as_ref());
    let mut pod_labels = labels.clone();
    pod_labels.extend(
        pod_meta
            .and_then(|p| p.pod_labels.clone())
            .unwrap_or_default(),
    );
    debug_assert!(labels.contains_key(INVOKER_TYPE) && labels.contains_key(INVOKER_NAME));
    let job = Job {
        metadata: ObjectMeta {
            name: Some(job_name.into()),
            namespace: Some(namespace.into()),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: pod_meta.and_then(|p| p.pod_annotations.clone()),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    };
    Ok((job, claim))
}
