//! Hooks (stash.md §9): the four hook types and their conditions, the post hooks' execution
//! policy, the summary a hook sees, and the `{{ .Field }}` templates of exec commands and
//! httpPost bodies. Pure: `stash run-hook` does the I/O, the planners read the conditions.

use crate::api::{BackupSession, Condition, RestoreSession, TargetRef};
use crate::conditions::{self, NewCondition};

/// Condition types written by `run-hook` (backup: on the session's target; restore: on the
/// RestoreSession).
pub mod condition {
    /// The preBackup hook ran (True) or failed (False).
    pub const PRE_BACKUP_HOOK_EXECUTION_SUCCEEDED: &str = "PreBackupHookExecutionSucceeded";
    /// The postBackup hook ran or was skipped by its policy (True), or failed (False).
    pub const POST_BACKUP_HOOK_EXECUTION_SUCCEEDED: &str = "PostBackupHookExecutionSucceeded";
    /// The preRestore hook ran (True) or failed (False).
    pub const PRE_RESTORE_HOOK_EXECUTION_SUCCEEDED: &str = "PreRestoreHookExecutionSucceeded";
    /// The postRestore hook ran or was skipped by its policy (True), or failed (False).
    pub const POST_RESTORE_HOOK_EXECUTION_SUCCEEDED: &str = "PostRestoreHookExecutionSucceeded";
}
use condition::*;

/// Which hook `run-hook` runs (`--hook-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookType {
    /// Before the backup (init container `pre-task-hook`).
    PreBackup,
    /// After the backup (container `post-task-hook`).
    PostBackup,
    /// Before the restore.
    PreRestore,
    /// After the restore.
    PostRestore,
}

impl HookType {
    /// Parses Stash's `--hook-type` value (`preBackup`, `postBackup`, `preRestore`, `postRestore`).
    pub fn parse(s: &str) -> Result<HookType, String> {
        match s {
            "preBackup" => Ok(HookType::PreBackup),
            "postBackup" => Ok(HookType::PostBackup),
            "preRestore" => Ok(HookType::PreRestore),
            "postRestore" => Ok(HookType::PostRestore),
            other => Err(format!(
                "--hook-type {other:?} is not one of preBackup, postBackup, preRestore, postRestore"
            )),
        }
    }

    /// Stash's name of the hook type.
    pub fn as_str(self) -> &'static str {
        match self {
            HookType::PreBackup => "preBackup",
            HookType::PostBackup => "postBackup",
            HookType::PreRestore => "preRestore",
            HookType::PostRestore => "postRestore",
        }
    }

    /// Runs before the backup or restore: its failure stops the Job.
    pub fn is_pre(self) -> bool {
        matches!(self, HookType::PreBackup | HookType::PreRestore)
    }

    /// Belongs to a backup (else a restore).
    pub fn is_backup(self) -> bool {
        matches!(self, HookType::PreBackup | HookType::PostBackup)
    }

    /// The condition type recording this hook's outcome.
    pub fn condition_type(self) -> &'static str {
        match self {
            HookType::PreBackup => PRE_BACKUP_HOOK_EXECUTION_SUCCEEDED,
            HookType::PostBackup => POST_BACKUP_HOOK_EXECUTION_SUCCEEDED,
            HookType::PreRestore => PRE_RESTORE_HOOK_EXECUTION_SUCCEEDED,
            HookType::PostRestore => POST_RESTORE_HOOK_EXECUTION_SUCCEEDED,
        }
    }

    /// The condition after the hook ran (Stash's reason and message).
    pub fn succeeded(self) -> NewCondition<'static> {
        NewCondition::yes(
            self.condition_type(),
            success_reason(self),
            format!("Successfully executed {} hook.", self.as_str()),
        )
    }

    /// The condition after the hook failed with `error`.
    pub fn failed(self, error: &str) -> NewCondition<'static> {
        NewCondition::no(
            self.condition_type(),
            failure_reason(self),
            format!("Failed to execute {} hook. Reason: {error}", self.as_str()),
        )
    }

    /// The condition when the policy says not to run: True, with why (Stash's wording).
    pub fn skipped(self, policy: ExecutionPolicy, phase: &str) -> NewCondition<'static> {
        NewCondition::yes(
            self.condition_type(),
            success_reason(self),
            format!(
                "Skipping executing {}. Reason: executionPolicy is {:?} but phase is {phase:?}.",
                self.as_str(),
                policy.as_str()
            ),
        )
    }
}

fn success_reason(t: HookType) -> &'static str {
    match t {
        HookType::PreBackup => "SuccessfullyExecutedPreBackupHook",
        HookType::PostBackup => "SuccessfullyExecutedPostBackupHook",
        HookType::PreRestore => "SuccessfullyExecutedPreRestoreHook",
        HookType::PostRestore => "SuccessfullyExecutedPostRestoreHook",
    }
}

fn failure_reason(t: HookType) -> &'static str {
    match t {
        HookType::PreBackup => "FailedToExecutePreBackupHook",
        HookType::PostBackup => "FailedToExecutePostBackupHook",
        HookType::PreRestore => "FailedToExecutePreRestoreHook",
        HookType::PostRestore => "FailedToExecutePostRestoreHook",
    }
}

/// `executionPolicy` of a post hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionPolicy {
    /// Run whatever the outcome (the default).
    Always,
    /// Run only when the backup or restore succeeded.
    OnSuccess,
    /// Run only when it failed.
    OnFailure,
    /// Run only when it failed and no retry is left (backup only).
    OnFinalRetryFailure,
}

impl ExecutionPolicy {
    /// Parses the field; absent or empty means `Always`.
    pub fn parse(value: Option<&str>) -> Result<ExecutionPolicy, String> {
        match value.unwrap_or("") {
            "" | "Always" => Ok(ExecutionPolicy::Always),
            "OnSuccess" => Ok(ExecutionPolicy::OnSuccess),
            "OnFailure" => Ok(ExecutionPolicy::OnFailure),
            "OnFinalRetryFailure" => Ok(ExecutionPolicy::OnFinalRetryFailure),
            other => Err(format!(
                "executionPolicy {other:?} is not one of Always, OnSuccess, OnFailure, OnFinalRetryFailure"
            )),
        }
    }

    /// Stash's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionPolicy::Always => "Always",
            ExecutionPolicy::OnSuccess => "OnSuccess",
            ExecutionPolicy::OnFailure => "OnFailure",
            ExecutionPolicy::OnFinalRetryFailure => "OnFinalRetryFailure",
        }
    }

    /// Whether a hook with this policy runs for a target in `phase` with `retry_left` retries
    /// (Stash's `IsAllowedByExecutionPolicy`).
    pub fn allows(self, phase: &str, retry_left: i32) -> bool {
        match self {
            ExecutionPolicy::Always => true,
            ExecutionPolicy::OnSuccess => phase == "Succeeded",
            ExecutionPolicy::OnFailure => phase == "Failed",
            ExecutionPolicy::OnFinalRetryFailure => phase == "Failed" && retry_left == 0,
        }
    }
}

/// What a hook's templates can read (Stash's `v1beta1.Summary`, with its Go field names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Session name.
    pub name: String,
    /// Session namespace.
    pub namespace: String,
    /// Invoker `(apiGroup, kind, name)`.
    pub invoker: (String, String, String),
    /// Target `(apiVersion, kind, name, namespace)`.
    pub target: (String, String, String, String),
    /// `Succeeded` or `Failed`.
    pub phase: String,
    /// Duration of the (first) host.
    pub duration: String,
    /// First error: a failed host's, else a False condition's message.
    pub error: String,
    /// Retries left (BackupSession `spec.retryLeft`).
    pub retry_left: i32,
}

impl Summary {
    /// Field lookup by Go path (`Status.Phase`, `Target.Name`, ...).
    fn field(&self, path: &[&str]) -> Option<String> {
        let s = |v: &String| Some(v.clone());
        match path {
            ["Name"] => s(&self.name),
            ["Namespace"] => s(&self.namespace),
            ["RetryLeft"] => Some(self.retry_left.to_string()),
            ["Invoker", "APIGroup"] => s(&self.invoker.0),
            ["Invoker", "Kind"] => s(&self.invoker.1),
            ["Invoker", "Name"] => s(&self.invoker.2),
            ["Target", "APIVersion"] => s(&self.target.0),
            ["Target", "Kind"] => s(&self.target.1),
            ["Target", "Name"] => s(&self.target.2),
            ["Target", "Namespace"] => s(&self.target.3),
            ["Status", "Phase"] => s(&self.phase),
            ["Status", "Duration"] => s(&self.duration),
            ["Status", "Error"] => s(&self.error),
            _ => None,
        }
    }
}

fn target_tuple(t: &TargetRef) -> (String, String, String, String) {
    (
        t.api_version.clone().unwrap_or_default(),
        t.kind.clone().unwrap_or_default(),
        t.name.clone().unwrap_or_default(),
        t.namespace.clone().unwrap_or_default(),
    )
}

fn first_false(conds: &[Condition]) -> Option<String> {
    conds
        .iter()
        .find(|c| c.status == conditions::FALSE)
        .map(|c| c.message.clone().unwrap_or_default())
}

/// The summary of `target` in a BackupSession (Stash's `GetSummary`): Failed with the first
/// failed host's error or a False target condition's message, else Succeeded.
pub fn backup_summary(session: &BackupSession, target: &TargetRef) -> Summary {
    let invoker = session.spec.invoker.clone().unwrap_or_default();
    let status = session.status.clone().unwrap_or_default();
    let same = |r: &TargetRef| r.kind == target.kind && r.name == target.name;
    let entry = status.targets.iter().flatten().find(|t| same(&t.r#ref));
    let stats = entry.and_then(|t| t.stats.clone()).unwrap_or_default();
    let failed_host = stats
        .iter()
        .find(|h| h.phase.as_deref() == Some("Failed"))
        .map(|h| h.error.clone().unwrap_or_default());
    let failed_cond = entry.and_then(|t| first_false(t.conditions.as_deref().unwrap_or_default()));
    let error = failed_host.clone().or(failed_cond);
    Summary {
        name: session.metadata.name.clone().unwrap_or_default(),
        namespace: session.metadata.namespace.clone().unwrap_or_default(),
        invoker: (
            invoker.api_group.unwrap_or_default(),
            invoker.kind,
            invoker.name,
        ),
        target: target_tuple(entry.map(|t| &t.r#ref).unwrap_or(target)),
        phase: if error.is_some() {
            "Failed"
        } else {
            "Succeeded"
        }
        .into(),
        duration: stats
            .first()
            .and_then(|h| h.duration.clone())
            .unwrap_or_default(),
        error: error.unwrap_or_default(),
        retry_left: session.spec.retry_left.unwrap_or(0),
    }
}

/// The summary of a RestoreSession (its stats and conditions are the target's).
pub fn restore_summary(rs: &RestoreSession, target: &TargetRef) -> Summary {
    let status = rs.status.clone().unwrap_or_default();
    let stats = status.stats.clone().unwrap_or_default();
    let failed_host = stats
        .iter()
        .find(|h| matches!(h.phase.as_deref(), Some("Failed" | "Unknown")))
        .map(|h| h.error.clone().unwrap_or_default());
    let error =
        failed_host.or_else(|| first_false(status.conditions.as_deref().unwrap_or_default()));
    let name = rs.metadata.name.clone().unwrap_or_default();
    Summary {
        name: name.clone(),
        namespace: rs.metadata.namespace.clone().unwrap_or_default(),
        invoker: ("stash.appscode.com".into(), "RestoreSession".into(), name),
        target: target_tuple(target),
        phase: if error.is_some() {
            "Failed"
        } else {
            "Succeeded"
        }
        .into(),
        duration: stats
            .first()
            .and_then(|h| h.duration.clone())
            .unwrap_or_default(),
        error: error.unwrap_or_default(),
        retry_left: 0,
    }
}

/// Renders `{{ .Field.Path }}` references (with optional `{{-`/`-}}` trimming and
/// `{{/* comments */}}`) against `summary`; the result is trimmed, as Stash trims it.
/// Unlike Stash (Go templates with sprig), functions, pipelines and control flow are refused
/// with an error naming the action rather than rendered.
pub fn render(template: &str, summary: &Summary) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let mut before = &rest[..start];
        let after_open = &rest[start + 2..];
        let end = after_open
            .find("}}")
            .ok_or_else(|| format!("unclosed action in template {template:?}"))?;
        let mut action = &after_open[..end];
        let mut tail = &after_open[end + 2..];
        if let Some(a) = action.strip_prefix("- ") {
            before = before.trim_end();
            action = a;
        }
        if let Some(a) = action.strip_suffix(" -") {
            tail = tail.trim_start();
            action = a;
        }
        out.push_str(before);
        let action = action.trim();
        if action.starts_with("/*") && action.ends_with("*/") {
            rest = tail;
            continue;
        }
        let path = action
            .strip_prefix('.')
            .filter(|p| {
                !p.is_empty()
                    && p.split('.')
                        .all(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric()))
            })
            .ok_or_else(|| {
                format!(
                    "template action {{{{{action}}}}} is not supported: only field references such as {{{{ .Status.Phase }}}}"
                )
            })?;
        let segments: Vec<&str> = path.split('.').collect();
        let value = summary
            .field(&segments)
            .ok_or_else(|| format!("template: can't evaluate field {path} of the hook summary"))?;
        out.push_str(&value);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out.trim().to_string())
}

/// Whether `conds` hold a condition of this hook type.
pub fn recorded(conds: &[Condition], hook: HookType) -> Option<&Condition> {
    conds.iter().find(|c| c.type_ == hook.condition_type())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        Summary {
            name: "bs-1".into(),
            namespace: "demo".into(),
            invoker: (
                "stash.appscode.com".into(),
                "BackupConfiguration".into(),
                "bc".into(),
            ),
            target: (
                "appcatalog.appscode.com/v1alpha1".into(),
                "AppBinding".into(),
                "db".into(),
                "demo".into(),
            ),
            phase: "Failed".into(),
            duration: "1.5s".into(),
            error: "boom".into(),
            retry_left: 0,
        }
    }

    #[test]
    fn renders_field_references_like_go_templates() {
        let s = summary();
        assert_eq!(
            render(
                r#"{"text": "{{ .Invoker.Kind }} {{.Namespace}}/{{ .Name }}: {{ .Status.Phase }} ({{ .Status.Error }}) {{ .Target.Name }} {{ .RetryLeft }}"}"#,
                &s
            )
            .unwrap(),
            r#"{"text": "BackupConfiguration demo/bs-1: Failed (boom) db 0"}"#
        );
        assert_eq!(render("  a {{- .Name -}}  b ", &s).unwrap(), "abs-1b");
        assert_eq!(render("x{{/* note */}}y", &s).unwrap(), "xy");
        assert_eq!(render("plain", &s).unwrap(), "plain");
    }

    #[test]
    fn refuses_what_it_cannot_render() {
        let s = summary();
        assert!(render("{{ .Status.Nope }}", &s)
            .unwrap_err()
            .contains("Status.Nope"));
        assert!(render("{{ upper .Name }}", &s)
            .unwrap_err()
            .contains("not supported"));
        assert!(render("{{ .Name", &s).unwrap_err().contains("unclosed"));
    }

    #[test]
    fn policies_follow_stash() {
        use ExecutionPolicy::*;
        let table = [
            (Always, "Succeeded", 1, true),
            (Always, "Failed", 0, true),
            (OnSuccess, "Succeeded", 0, true),
            (OnSuccess, "Failed", 0, false),
            (OnFailure, "Failed", 1, true),
            (OnFailure, "Succeeded", 0, false),
            (OnFinalRetryFailure, "Failed", 1, false),
            (OnFinalRetryFailure, "Failed", 0, true),
            (OnFinalRetryFailure, "Succeeded", 0, false),
        ];
        for (policy, phase, retries, expected) in table {
            assert_eq!(
                policy.allows(phase, retries),
                expected,
                "{policy:?} {phase} {retries}"
            );
        }
        assert_eq!(ExecutionPolicy::parse(None), Ok(Always));
        assert!(ExecutionPolicy::parse(Some("Sometimes")).is_err());
    }

    #[test]
    fn conditions_carry_stash_reasons() {
        let c = HookType::PreBackup.failed("exit 1");
        assert_eq!(c.type_, "PreBackupHookExecutionSucceeded");
        assert_eq!(c.reason, "FailedToExecutePreBackupHook");
        assert_eq!(
            c.message,
            "Failed to execute preBackup hook. Reason: exit 1"
        );
        let c = HookType::PostRestore.succeeded();
        assert_eq!(c.reason, "SuccessfullyExecutedPostRestoreHook");
        assert_eq!(c.message, "Successfully executed postRestore hook.");
        let c = HookType::PostBackup.skipped(ExecutionPolicy::OnFailure, "Succeeded");
        assert_eq!(c.status, "True");
        assert_eq!(
            c.message,
            "Skipping executing postBackup. Reason: executionPolicy is \"OnFailure\" but phase is \"Succeeded\"."
        );
        assert!(HookType::parse("midBackup").is_err());
    }
}
