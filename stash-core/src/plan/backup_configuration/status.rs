//! BackupConfiguration, status step: the phase from the conditions (Stash's
//! `CalculateBackupInvokerPhase`), a Warning event for each condition that newly turned false,
//! and the status to apply when it changed.

use super::condition::*;
use super::EVENT_SOURCE;
use crate::api::{BackupConfiguration, BackupConfigurationStatus, Condition};
use crate::conditions;
use crate::plan::{to_value, EventSpec, Plan};

/// Puts the status and its events into `plan`: `conds` are the new conditions, compared with
/// those of `bc`'s current status.
pub(super) fn publish(bc: &BackupConfiguration, conds: Vec<Condition>, plan: &mut Plan) {
    let old_status = bc.status.clone().unwrap_or_default();
    let phase = phase_of(&conds);
    for c in &conds {
        let before = old_status
            .conditions
            .iter()
            .flatten()
            .find(|o| o.type_ == c.type_);
        let changed = before.map(|b| (b.status.as_str(), b.message.as_deref()))
            != Some((c.status.as_str(), c.message.as_deref()));
        if changed && c.status == conditions::FALSE && c.type_ != CRONJOB_CREATED {
            plan.events.push(EventSpec {
                type_: "Warning".into(),
                reason: c.reason.clone().unwrap_or_default(),
                message: c.message.clone().unwrap_or_default(),
                source: EVENT_SOURCE.into(),
                name: None,
            });
        }
    }
    let status = BackupConfigurationStatus {
        observed_generation: bc.metadata.generation,
        phase: Some(phase.into()),
        conditions: Some(conds),
    };
    if bc.status.as_ref() != Some(&status) {
        plan.status = Some(to_value(&status));
    }
}

/// Whether the operator has evaluated `bc` at its current generation: it has conditions and
/// `observedGeneration` has caught up. Until then its phase says nothing (a session created in
/// the same `kubectl apply` sees a configuration without status).
pub fn evaluated(bc: &BackupConfiguration) -> bool {
    let Some(status) = bc.status.as_ref() else {
        return false;
    };
    let has_conditions = status.conditions.as_ref().is_some_and(|c| !c.is_empty());
    let caught_up = match bc.metadata.generation {
        Some(generation) => status.observed_generation.is_some_and(|o| o >= generation),
        None => true,
    };
    has_conditions && caught_up
}

/// Stash's `CalculateBackupInvokerPhase`.
pub fn phase_of(conds: &[Condition]) -> &'static str {
    if !conditions::is_true(conds, REPOSITORY_FOUND)
        || !conditions::is_true(conds, BACKEND_SECRET_FOUND)
    {
        return "NotReady";
    }
    if conditions::is_false(conds, VALIDATION_PASSED) {
        return "Invalid";
    }
    if [VALIDATION_PASSED, CRONJOB_CREATED, BACKUP_TARGET_FOUND]
        .iter()
        .all(|t| conditions::is_true(conds, t))
    {
        "Ready"
    } else {
        "NotReady"
    }
}
