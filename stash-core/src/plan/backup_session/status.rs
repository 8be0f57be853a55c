//! BackupSession, status step: once every target is final, the session's phase (a failed
//! post-backup action fails it too), its events, duration, history cleanup under
//! `backupHistoryLimit` and the retry; until then Pending/Running and when to look again.

use super::condition::*;
use super::invoker::SiblingSession;
use super::new_session::plan_retry;
use super::{ending, BackupSessionInputs, FINAL, REQUEUE_RUNNING_SECS};
use crate::api::{BackupSessionStatus, Condition};
use crate::conditions::{self, NewCondition};
use crate::duration::format_go_duration_secs;
use crate::plan::{unix, EventSpec, ObjectKey, Plan};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Sets the session's phase from its targets (in `st.targets`), with `conds` as its
/// conditions, and when to look again.
#[allow(clippy::too_many_arguments)]
pub(super) fn settle(
    inputs: &BackupSessionInputs,
    created: i64,
    now: &Time,
    mut conds: Vec<Condition>,
    st: &mut BackupSessionStatus,
    plan: &mut Plan,
    events: &mut Vec<EventSpec>,
) {
    let targets = st.targets.clone().unwrap_or_default();
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
        finish(inputs, final_phase, &mut conds, st, plan, now, created);
        st.conditions = Some(conds);
        events.extend(ending(&inputs.session, st));
        plan_retry(inputs, st, plan, now);
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
            let until = (unix(d) - unix(now)).max(1) as u64;
            plan.requeue_after_seconds =
                Some(plan.requeue_after_seconds.map_or(until, |r| r.min(until)));
        }
    }
}

/// Sets the final phase, duration, history cleanup and metrics conditions.
pub(super) fn finish(
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
