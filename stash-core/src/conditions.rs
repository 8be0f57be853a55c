//! Condition bookkeeping: upsert by type, keeping `lastTransitionTime` unless something changed.

use crate::api::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// `True`.
pub const TRUE: &str = "True";
/// `False`.
pub const FALSE: &str = "False";
/// `Unknown`.
pub const UNKNOWN: &str = "Unknown";

/// A condition to set: type, status, reason, message.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCondition<'a> {
    /// Condition type.
    pub type_: &'a str,
    /// `True`, `False` or `Unknown`.
    pub status: &'a str,
    /// Reason.
    pub reason: &'a str,
    /// Message.
    pub message: String,
}

impl<'a> NewCondition<'a> {
    /// A True condition.
    pub fn yes(type_: &'a str, reason: &'a str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: TRUE,
            reason,
            message: message.into(),
        }
    }
    /// A False condition.
    pub fn no(type_: &'a str, reason: &'a str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: FALSE,
            reason,
            message: message.into(),
        }
    }
    /// An Unknown condition.
    pub fn unknown(type_: &'a str, reason: &'a str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status: UNKNOWN,
            reason,
            message: message.into(),
        }
    }
}

/// Sets `new` in `conditions`: the transition time moves to `now` only if status, reason or
/// message changed (Stash's `SetCondition`). Order of first appearance is kept.
pub fn set(
    conditions: &mut Vec<Condition>,
    new: NewCondition<'_>,
    generation: Option<i64>,
    now: &Time,
) {
    let severity = (new.status == FALSE).then(|| "Error".to_string());
    let fresh = Condition {
        type_: new.type_.to_string(),
        status: new.status.to_string(),
        observed_generation: generation,
        severity,
        last_transition_time: Some(now.clone()),
        reason: Some(new.reason.to_string()),
        message: Some(new.message),
    };
    upsert(conditions, fresh);
}

/// Puts `fresh` in `conditions` by type, keeping the old transition time when status, reason
/// and message are unchanged (what [`set`] does, for a condition built earlier).
pub fn upsert(conditions: &mut Vec<Condition>, fresh: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == fresh.type_) {
        Some(old) => {
            let unchanged = old.status == fresh.status
                && old.reason == fresh.reason
                && old.message == fresh.message;
            let time = if unchanged {
                old.last_transition_time.clone()
            } else {
                fresh.last_transition_time.clone()
            };
            *old = Condition {
                last_transition_time: time,
                ..fresh
            };
        }
        None => conditions.push(fresh),
    }
}

/// The status of condition `type_`, if present.
pub fn status_of<'c>(conditions: &'c [Condition], type_: &str) -> Option<&'c str> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

/// Whether condition `type_` is present with status True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    status_of(conditions, type_) == Some(TRUE)
}

/// Whether condition `type_` is present with status False.
pub fn is_false(conditions: &[Condition], type_: &str) -> bool {
    status_of(conditions, type_) == Some(FALSE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Time {
        Time(s.parse().expect("timestamp"))
    }

    #[test]
    fn transition_time_moves_only_on_change() {
        let mut c = Vec::new();
        set(
            &mut c,
            NewCondition::yes("A", "R", "m"),
            Some(1),
            &t("2026-01-01T00:00:00Z"),
        );
        set(
            &mut c,
            NewCondition::yes("A", "R", "m"),
            Some(2),
            &t("2026-01-02T00:00:00Z"),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, Some(t("2026-01-01T00:00:00Z")));
        assert_eq!(c[0].observed_generation, Some(2));
        set(
            &mut c,
            NewCondition::no("A", "R2", "m2"),
            Some(2),
            &t("2026-01-03T00:00:00Z"),
        );
        assert_eq!(c[0].last_transition_time, Some(t("2026-01-03T00:00:00Z")));
        assert!(is_false(&c, "A"));
        assert_eq!(c[0].severity.as_deref(), Some("Error"));
    }
}
