//! BackupConfiguration, build step: what the backup Jobs and the trigger pod may do.

use crate::plan::rbac::{rule, target_pod_rules};
use k8s_openapi::api::rbac::v1::PolicyRule;

/// What a backup Job needs: its session and repository, the AppBinding, and only the two
/// Secrets it reads (no namespace-wide Secret access).
pub(super) fn backup_job_rules(secrets: &[String]) -> Vec<PolicyRule> {
    let mut rules = vec![
        rule(
            &["stash.appscode.com"],
            &[
                "backupsessions",
                "backupsessions/status",
                "repositories",
                "repositories/status",
                "backupconfigurations",
            ],
            &["get", "list", "watch", "patch", "update"],
            &[],
        ),
        rule(
            &["appcatalog.appscode.com"],
            &["appbindings"],
            &["get"],
            &[],
        ),
        rule(&[""], &["events"], &["create", "patch"], &[]),
        rule(&["events.k8s.io"], &["events"], &["create", "patch"], &[]),
    ];
    rules.extend(target_pod_rules());
    // A repository lock names its holder's host, a pod's name: the job lists the pods of the
    // namespace to tell a crashed Job's lock (its pod ended) from a live one.
    rules.push(rule(&[""], &["pods"], &["list"], &[]));
    if !secrets.is_empty() {
        rules.push(rule(&[""], &["secrets"], &["get"], secrets));
    }
    rules
}

/// What the trigger pod needs: read its BackupConfiguration, create sessions.
pub(super) fn trigger_rules(bc_name: &str) -> Vec<PolicyRule> {
    vec![
        rule(
            &["stash.appscode.com"],
            &["backupconfigurations"],
            &["get"],
            &[bc_name.to_string()],
        ),
        rule(
            &["stash.appscode.com"],
            &["backupsessions"],
            &["create", "get", "patch"],
            &[],
        ),
        rule(&[""], &["events"], &["create", "patch"], &[]),
    ]
}
