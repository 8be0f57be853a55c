//! BackupSession, first step: whether the session may run (skip it when its configuration is
//! missing or not ready, or another session of the same configuration runs), and if so the
//! start: the backup Job to apply and the target's first status.

use super::condition::BACKUP_EXECUTOR_ENSURED;
use super::invoker::resolved_target_ref;
use super::job::build_job;
use super::{event, BackupSessionInputs, REQUEUE_RUNNING_SECS};
use crate::api::{BackupConfiguration, BackupSessionStatus, BackupTargetStatus};
use crate::conditions::{self, NewCondition};
use crate::plan::{to_value, EventSpec, Plan};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What to do with a session that has not started.
pub(super) enum Start<'a> {
    /// The configuration has not been evaluated yet: wait for the operator's first pass.
    Wait,
    /// Skip the session, for this reason.
    Skip(String),
    /// Run the backup of this configuration.
    Run(&'a BackupConfiguration),
}

/// Decides whether a session that has not started runs, waits or is skipped.
pub(super) fn decide<'a>(
    inputs: &'a BackupSessionInputs,
    name: &str,
    namespace: &str,
) -> Start<'a> {
    let s = &inputs.session;
    let bc_ns_name = format!(
        "{namespace}/{}",
        s.spec
            .invoker
            .as_ref()
            .map(|i| i.name.clone())
            .unwrap_or_default()
    );
    let Some(bc) = inputs.invoker.as_ref() else {
        return Start::Skip(format!(
            "Skipped taking backup. Reason: BackupConfiguration {bc_ns_name} does not exist."
        ));
    };
    if !crate::plan::backup_configuration::evaluated(bc) {
        // The configuration has not been looked at yet (created in the same apply): its
        // missing phase is no reason to skip.
        return Start::Wait;
    }
    if bc.status.as_ref().and_then(|x| x.phase.as_deref()) != Some("Ready") {
        return Start::Skip(format!(
            "Skipped taking backup. Reason: BackupConfiguration {bc_ns_name} is not ready."
        ));
    }
    match inputs
        .siblings
        .iter()
        .filter(|o| o.name != name && o.phase == "Running")
        .min_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)))
    {
        Some(o) => Start::Skip(format!(
            "Skipped taking new backup. Reason: Previous BackupSession: {} is \"Running\".",
            o.name
        )),
        None => Start::Run(bc),
    }
}

/// Starts the backup: applies the Job (and its claim), and returns the target's status:
/// Running with BackupExecutorEnsured, or Failed with the reason the Job cannot be built.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    inputs: &BackupSessionInputs,
    bc: &BackupConfiguration,
    name: &str,
    namespace: &str,
    job_name: &str,
    now: &Time,
    st: &mut BackupSessionStatus,
    plan: &mut Plan,
    events: &mut Vec<EventSpec>,
) -> BackupTargetStatus {
    let mut target = BackupTargetStatus {
        r#ref: resolved_target_ref(bc, namespace),
        pre_backup_actions: Some(vec!["InitializeBackendRepository".into()]),
        post_backup_actions: Some(vec![
            "ApplyRetentionPolicy".into(),
            "VerifyRepositoryIntegrity".into(),
            "SendRepositoryMetrics".into(),
        ]),
        ..Default::default()
    };
    let mut tconds = Vec::new();
    match build_job(inputs, bc, name, namespace, job_name) {
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
                now,
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
                now,
            );
            events.push(event("Warning", "Backup Executor Failed", msg));
            target.phase = Some("Failed".into());
        }
    }
    target.conditions = Some(tconds);
    target
}
