//! RestoreSession, validate step: what the session references (Repository, storage Secret,
//! target) into the conditions RepositoryFound, BackendSecretFound, RestoreTargetFound and
//! ValidationPassed, the spec's errors, and the snapshot each host restores.

use super::RestoreSessionInputs;
use crate::api::{Condition, RestoreRule};
use crate::conditions::{self, NewCondition};
use crate::duration::parse_go_duration_millis;
use crate::hooks;
use crate::plan::backend::{backend_info, missing_secret_keys, secret_forbidden_message};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What validation found, beyond the conditions it set.
pub(super) struct Validated {
    /// Everything wrong with the spec or its Repository (empty when valid).
    pub errors: Vec<String>,
    /// Something referenced does not exist (yet) or may not be read: wait for it.
    pub missing: bool,
    /// `Kind namespace/name` of the target.
    pub target_desc: String,
    /// The snapshot rule for the session's host.
    pub selection: Result<Selection, String>,
}

/// Validates the session, setting its conditions in `conds`; ValidationPassed is set only
/// when the spec is valid (an invalid session gets it from the caller, with its event).
pub(super) fn validate(
    inputs: &RestoreSessionInputs,
    namespace: &str,
    host: &str,
    conds: &mut Vec<Condition>,
    now: &Time,
) -> Validated {
    let mut check = Check {
        inputs,
        namespace,
        host,
        conds,
        generation: inputs.session.metadata.generation,
        now,
        errors: Vec::new(),
        missing: false,
    };
    check.repository();
    let target_desc = check.target();
    let selection = check.spec();
    Validated {
        errors: check.errors,
        missing: check.missing,
        target_desc,
        selection,
    }
}

/// The state of one validation: the conditions being set and what was found so far.
struct Check<'a> {
    inputs: &'a RestoreSessionInputs,
    namespace: &'a str,
    host: &'a str,
    conds: &'a mut Vec<Condition>,
    generation: Option<i64>,
    now: &'a Time,
    errors: Vec<String>,
    missing: bool,
}

impl Check<'_> {
    fn set(&mut self, condition: NewCondition<'_>) {
        conditions::set(self.conds, condition, self.generation, self.now);
    }

    /// RepositoryFound and BackendSecretFound; the Repository's backend must be usable.
    fn repository(&mut self) {
        let inputs = self.inputs;
        let rs = &inputs.session;
        let repo_name = rs
            .spec
            .repository
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let repo_ns = rs
            .spec
            .repository
            .as_ref()
            .and_then(|r| r.namespace.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.namespace.to_string());
        if repo_name.is_empty() {
            self.errors
                .push("spec.repository.name is required".to_owned());
        }
        match &inputs.repository {
            Some(_) => self.set(NewCondition::yes(
                "RepositoryFound",
                "RepositoryAvailable",
                format!("Repository {repo_ns}/{repo_name} exist."),
            )),
            None => {
                self.missing = true;
                self.set(NewCondition::no(
                    "RepositoryFound",
                    "RepositoryNotAvailable",
                    format!("Repository {repo_ns}/{repo_name} does not exist."),
                ));
            }
        }
        let backend = inputs
            .repository
            .as_ref()
            .map(|r| backend_info(&r.spec.backend));
        if let Some(Err(e)) = &backend {
            self.errors
                .push(format!("Repository {repo_ns}/{repo_name}: {e}"));
        }
        if let Some(repo) = &inputs.repository {
            let secret = repo
                .spec
                .backend
                .storage_secret_name
                .clone()
                .unwrap_or_default();
            let missing_keys = match (&inputs.storage_secret_keys, &backend) {
                (Some(keys), Some(Ok(info))) => missing_secret_keys(info.provider, keys),
                _ => vec![],
            };
            if inputs.storage_secret_keys.is_none() && inputs.storage_secret_forbidden {
                self.missing = true;
                self.set(NewCondition::unknown(
                    "BackendSecretFound",
                    "UnableToCheckBackendSecretAvailability",
                    secret_forbidden_message(&repo_ns, &secret),
                ));
            } else if inputs.storage_secret_keys.is_none() {
                self.missing = true;
                self.set(NewCondition::no(
                    "BackendSecretFound",
                    "BackendSecretNotAvailable",
                    format!("Backend Secret {repo_ns}/{secret} does not exist."),
                ));
            } else if !missing_keys.is_empty() {
                self.set(NewCondition::no(
                    "BackendSecretFound",
                    "BackendSecretNotAvailable",
                    format!(
                        "Backend Secret {repo_ns}/{secret} lacks the key(s) {}.",
                        missing_keys.join(", ")
                    ),
                ));
                self.errors.push(format!(
                    "storage Secret {repo_ns}/{secret} lacks {}",
                    missing_keys.join(", ")
                ));
            } else {
                self.set(NewCondition::yes(
                    "BackendSecretFound",
                    "BackendSecretAvailable",
                    format!("Backend Secret {repo_ns}/{secret} exist."),
                ));
            }
        }
    }

    /// RestoreTargetFound; only AppBinding targets are supported. Returns the target's
    /// description.
    fn target(&mut self) -> String {
        let rs = &self.inputs.session;
        let target_ref = crate::plan::target_ref_in(
            rs.spec.target.as_ref().and_then(|t| t.r#ref.as_ref()),
            self.namespace,
        );
        let target_ns = target_ref.namespace.clone().unwrap_or_default();
        let target_desc = format!(
            "{} {target_ns}/{}",
            target_ref.kind.clone().unwrap_or_default(),
            target_ref.name.clone().unwrap_or_default()
        );
        if target_ref.kind.as_deref() != Some("AppBinding") {
            self.errors.push(format!(
                "spec.target.ref.kind {:?} is not supported (only AppBinding)",
                target_ref.kind.clone().unwrap_or_default()
            ));
        }
        if self.inputs.target.is_some() {
            self.set(NewCondition::yes(
                "RestoreTargetFound",
                "TargetAvailable",
                format!("Restore target {target_desc} found."),
            ));
        } else {
            self.missing = true;
            self.set(NewCondition::no(
                "RestoreTargetFound",
                "TargetNotAvailable",
                format!("Restore target {target_desc} does not exist."),
            ));
        }
        target_desc
    }

    /// The spec's own fields: restore rules, timeOut, interim volume, hooks. Returns the
    /// snapshot selection for the host.
    fn spec(&mut self) -> Result<Selection, String> {
        let rs = &self.inputs.session;
        let mut rules = rs
            .spec
            .target
            .as_ref()
            .and_then(|t| t.rules.clone())
            .unwrap_or_default();
        if rules.is_empty() {
            rules = rs.spec.rules.clone().unwrap_or_default();
        }
        let selection = select_rule(&rules, self.host);
        if let Err(e) = &selection {
            self.errors.push(e.clone());
        }
        if let Some(t) = &rs.spec.time_out {
            if let Err(e) = parse_go_duration_millis(t) {
                self.errors.push(format!("spec.timeOut: {e}"));
            }
        }
        if let Some(e) = rs
            .spec
            .interim_volume_template
            .as_deref()
            .and_then(crate::plan::job::interim_template_error)
        {
            self.errors.push(e);
        }
        if let Some(post) = rs.spec.hooks.as_ref().and_then(|h| h.post_restore.as_ref()) {
            match hooks::ExecutionPolicy::parse(post.execution_policy.as_deref()) {
                Err(e) => self.errors.push(format!("spec.hooks.postRestore.{e}")),
                Ok(hooks::ExecutionPolicy::OnFinalRetryFailure) => self.errors.push(
                    "spec.hooks.postRestore.executionPolicy OnFinalRetryFailure applies to backups only"
                        .into(),
                ),
                Ok(_) => {}
            }
        }
        selection
    }
}

/// The snapshot selection of a restore for a host: (snapshots, source host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Comma-joined snapshot ids or `latest` (RESTORE_SNAPSHOTS).
    pub snapshots: String,
    /// The host whose snapshots are read (SOURCE_HOSTNAME).
    pub source_host: String,
}

fn is_snapshot_ref(s: &str) -> bool {
    s == "latest" || ((4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Stash's `RestoreOptionsForHost`: the first rule listing `host` wins, else the rule with no
/// target hosts; no rule means the latest snapshot. Source host defaults to `host`.
pub fn select_rule(rules: &[RestoreRule], host: &str) -> Result<Selection, String> {
    let empty_rules = rules
        .iter()
        .filter(|r| r.target_hosts.as_ref().is_none_or(|h| h.is_empty()))
        .count();
    if empty_rules > 1 {
        return Err("spec.target.rules: at most one rule may have empty targetHosts".into());
    }
    for (i, r) in rules.iter().enumerate() {
        if r.snapshots.as_ref().is_some_and(|s| !s.is_empty())
            && r.paths.as_ref().is_some_and(|p| !p.is_empty())
        {
            return Err(format!(
                "spec.target.rules[{i}]: snapshots and paths are mutually exclusive"
            ));
        }
        if r.snapshots.as_ref().is_some_and(|s| s.len() > 1) {
            return Err(format!(
                "spec.target.rules[{i}].snapshots: a database restore takes one snapshot"
            ));
        }
        // Passed verbatim to the repository as a snapshot id: restic takes `latest` or an id
        // prefix, so anything else could only fail later, inside the Job.
        if let Some(bad) = r.snapshots.iter().flatten().find(|s| !is_snapshot_ref(s)) {
            return Err(format!(
                "spec.target.rules[{i}].snapshots: {bad:?} is neither latest nor a snapshot id \
                 (4 to 64 hexadecimal digits)"
            ));
        }
    }
    let rule = rules
        .iter()
        .find(|r| r.target_hosts.iter().flatten().any(|h| h == host))
        .or_else(|| {
            rules
                .iter()
                .find(|r| r.target_hosts.as_ref().is_none_or(|h| h.is_empty()))
        });
    let snapshots = rule
        .and_then(|r| r.snapshots.clone())
        .unwrap_or_default()
        .join(",");
    let source_host = rule
        .and_then(|r| r.source_host.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| host.to_string());
    Ok(Selection {
        snapshots: if snapshots.is_empty() {
            "latest".into()
        } else {
            snapshots
        },
        source_host,
    })
}
