//! `BackupSession` (`stash.appscode.com/v1beta1`): one run of a backup.

use super::common::{Condition, TargetRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which BackupConfiguration a session runs for, and how many retries are left.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "stash.appscode.com",
    version = "v1beta1",
    kind = "BackupSession",
    doc = "BackupSession is one run of a BackupConfiguration's backup, created by its CronJob, by `stash trigger` or by hand. Its status reports the run's phase, duration and each host's snapshot statistics.",
    namespaced,
    status = "BackupSessionStatus",
    category = "stash",
    category = "appscode",
    category = "all",
    derive = "Default",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Invoker-Type","type":"string","jsonPath":".spec.invoker.kind"}"#,
    printcolumn = r#"{"name":"Invoker-Name","type":"string","jsonPath":".spec.invoker.name"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".status.sessionDuration"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BackupSessionSpec {
    /// The object that invoked this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoker: Option<BackupInvokerRef>,
    /// Retries left when this session fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_left: Option<i32>,
}

/// Reference to the invoker of a session.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupInvokerRef {
    /// `stash.appscode.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    /// `BackupConfiguration` or `BackupBatch`.
    #[serde(default)]
    pub kind: String,
    /// Invoker name.
    #[serde(default)]
    pub name: String,
}

/// Observed state of a BackupSession.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSessionStatus {
    /// `Pending`, `Skipped`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Wall time from creation to the final phase (`22s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_duration: Option<String>,
    /// Creation plus `timeOut`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_deadline: Option<Time>,
    /// Whether a retry session was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried: Option<bool>,
    /// When the retry will be created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry: Option<Time>,
    /// Session-level conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// Per-target state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<BackupTargetStatus>>,
}

/// State of one target of a session.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupTargetStatus {
    /// The target.
    #[serde(default)]
    pub r#ref: TargetRef,
    /// How many hosts report stats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_hosts: Option<i32>,
    /// `Pending`, `Running`, `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Per-host results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Vec<HostBackupStats>>,
    /// Target conditions (`BackupExecutorEnsured`, hooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// Actions the job runs before the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_backup_actions: Option<Vec<String>>,
    /// Actions the job runs after the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_backup_actions: Option<Vec<String>>,
}

/// Result of one host's backup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostBackupStats {
    /// Host name (`host-0` or the alias).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Snapshots written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<Vec<SnapshotStats>>,
    /// Duration, as a Go duration string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Error, when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Statistics of one snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStats {
    /// Short snapshot id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Path in the snapshot (`dumpfile.sql`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Bytes processed, formatted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_size: Option<String>,
    /// Bytes added to the repository, formatted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded: Option<String>,
    /// Processing time as `[h:]mm:ss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_time: Option<String>,
    /// File counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_stats: Option<FileStats>,
}

/// File counts of a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileStats {
    /// Files processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_files: Option<i64>,
    /// New files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_files: Option<i64>,
    /// Modified files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_files: Option<i64>,
    /// Unmodified files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmodified_files: Option<i64>,
}
