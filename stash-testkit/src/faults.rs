//! Fault injection: make the next N matching requests fail or wait, or cut open watches.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// What happens to a matching request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum FaultAction {
    /// Answer with a `Status` error.
    #[serde(rename_all = "camelCase")]
    Fail {
        /// HTTP code, e.g. 500 or 429.
        code: u16,
        /// `Status.reason`; defaults from the code when empty.
        #[serde(default)]
        reason: String,
        /// `Status.message`.
        #[serde(default)]
        message: String,
    },
    /// Handle the request (a write is committed), then answer with a `Status` error anyway,
    /// as a real API server does when the client's deadline passes after etcd committed, or
    /// a connection breaks before the answer arrives.
    #[serde(rename_all = "camelCase")]
    FailAfter {
        /// HTTP code, e.g. 500 or 504.
        code: u16,
    },
    /// Wait before handling the request normally.
    #[serde(rename_all = "camelCase")]
    Delay {
        /// How long, in milliseconds.
        millis: u64,
    },
}

/// A rule: requests matching all set fields take `action`, `times` times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    /// Verb: get, list, watch, create, update, patch, delete, deletecollection.
    #[serde(default)]
    pub verb: Option<String>,
    /// Resource plural, e.g. `configmaps`.
    #[serde(default)]
    pub resource: Option<String>,
    /// Namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Object name.
    #[serde(default)]
    pub name: Option<String>,
    /// How many requests the rule applies to.
    #[serde(default = "one")]
    pub times: u32,
    /// What to do.
    #[serde(flatten)]
    pub action: FaultAction,
}

fn one() -> u32 {
    1
}

impl FaultRule {
    /// A rule failing the next `times` requests with `verb` on `resource` with `code`.
    pub fn fail(verb: &str, resource: &str, code: u16, times: u32) -> Self {
        Self {
            verb: Some(verb.into()),
            resource: Some(resource.into()),
            namespace: None,
            name: None,
            times,
            action: FaultAction::Fail {
                code,
                reason: String::new(),
                message: String::new(),
            },
        }
    }

    /// A rule handling the next `times` requests with `verb` on `resource`, then answering
    /// `code` although the request took effect.
    pub fn fail_after(verb: &str, resource: &str, code: u16, times: u32) -> Self {
        Self {
            action: FaultAction::FailAfter { code },
            ..Self::fail(verb, resource, code, times)
        }
    }

    /// A rule delaying the next `times` requests with `verb` on `resource`.
    pub fn delay(verb: &str, resource: &str, by: Duration, times: u32) -> Self {
        Self {
            verb: Some(verb.into()),
            resource: Some(resource.into()),
            namespace: None,
            name: None,
            times,
            action: FaultAction::Delay {
                millis: u64::try_from(by.as_millis()).unwrap_or(u64::MAX),
            },
        }
    }

    fn matches(&self, verb: &str, resource: &str, namespace: &str, name: &str) -> bool {
        let ok = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        self.times > 0
            && ok(&self.verb, verb)
            && ok(&self.resource, resource)
            && ok(&self.namespace, namespace)
            && ok(&self.name, name)
    }
}

/// The fault rules of a server. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Faults {
    rules: Arc<Mutex<Vec<FaultRule>>>,
    cut: Arc<watch::Sender<u64>>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            rules: Arc::default(),
            cut: Arc::new(watch::channel(0).0),
        }
    }
}

impl Faults {
    fn rules(&self) -> std::sync::MutexGuard<'_, Vec<FaultRule>> {
        // Rules are plain data; a panic elsewhere cannot leave them inconsistent.
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a rule.
    pub fn inject(&self, rule: FaultRule) {
        self.rules().push(rule);
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.rules().clear();
    }

    /// The rules with their remaining counts.
    pub fn list(&self) -> Vec<FaultRule> {
        self.rules().clone()
    }

    /// Consumes one use of the first rule matching the request.
    pub fn take(
        &self,
        verb: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Option<FaultAction> {
        let mut rules = self.rules();
        let rule = rules
            .iter_mut()
            .find(|r| r.matches(verb, resource, namespace, name))?;
        rule.times -= 1;
        let action = rule.action.clone();
        rules.retain(|r| r.times > 0);
        Some(action)
    }

    /// Ends every open watch stream (without an error event), as a dropped connection would.
    pub fn cut_watches(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Observes [`Faults::cut_watches`] calls.
    pub fn cuts(&self) -> watch::Receiver<u64> {
        self.cut.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_apply_n_times_and_parse_from_json() {
        let f = Faults::default();
        f.inject(FaultRule::fail("create", "configmaps", 500, 2));
        assert!(f.take("get", "configmaps", "default", "x").is_none());
        assert!(f.take("create", "configmaps", "default", "x").is_some());
        assert!(f.take("create", "configmaps", "default", "y").is_some());
        assert!(f.take("create", "configmaps", "default", "z").is_none());
        let rule: FaultRule =
            serde_json::from_str(r#"{"verb":"get","action":"delay","millis":5}"#).unwrap();
        assert_eq!(rule.times, 1);
        assert_eq!(rule.action, FaultAction::Delay { millis: 5 });
        let rule: FaultRule =
            serde_json::from_str(r#"{"verb":"create","action":"failAfter","code":500}"#).unwrap();
        assert_eq!(rule.action, FaultAction::FailAfter { code: 500 });
    }
}
