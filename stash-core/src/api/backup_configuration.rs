//! `BackupConfiguration` (`stash.appscode.com/v1beta1`): what to back up, where and when.

use super::common::{
    Condition, EmptyDirSettings, HookHandler, ObjectRef, PersistentVolumeClaimTemplate, PostHook,
    RetentionPolicy, RetryConfig, RuntimeSettings, TargetRef, TaskRef,
};
use k8s_openapi::api::core::v1::VolumeMount;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a BackupConfiguration asks for: the target, the Repository, the schedule and what to keep.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "stash.appscode.com",
    version = "v1beta1",
    kind = "BackupConfiguration",
    doc = "BackupConfiguration schedules backups of a database (an AppBinding) into a Repository: a CronJob creates a BackupSession at each scheduled time, each session runs a backup Job, and the retention policy decides which snapshots are kept.",
    namespaced,
    status = "BackupConfigurationStatus",
    shortname = "bc",
    category = "stash",
    category = "appscode",
    category = "all",
    derive = "Default",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Task","type":"string","jsonPath":".spec.task.name"}"#,
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Paused","type":"boolean","jsonPath":".spec.paused"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BackupConfigurationSpec {
    /// Five-field cron schedule of the trigger CronJob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// `Restic` (default) or `VolumeSnapshotter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// The Task to run and its parameter overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskRef>,
    /// The Repository to write to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<ObjectRef>,
    /// What to back up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<BackupTarget>,
    /// Which snapshots to keep (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_policy: Option<RetentionPolicy>,
    /// Pod and container settings for the jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_settings: Option<Box<RuntimeSettings>>,
    /// The scratch emptyDir at `/stash-tmp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_dir: Option<EmptyDirSettings>,
    /// A PVC template mounted at `/stash-interim-volume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interim_volume_template: Option<Box<PersistentVolumeClaimTemplate>>,
    // Boxed: two handlers take about 850 bytes inline, and every cached BackupConfiguration
    // would carry them, set or not.
    /// Hooks around the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Box<BackupHooks>>,
    /// Suspend the schedule (manual sessions still run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// How many finished sessions to keep (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_history_limit: Option<i32>,
    /// Deadline of a session, as a Go duration (`2h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_out: Option<String>,
    /// Retry failed sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_config: Option<RetryConfig>,
}

/// The backup target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupTarget {
    /// The target object (an AppBinding for databases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<TargetRef>,
    /// Host name of the snapshots (default `host-0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Paths to back up (workload targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// Volume mounts (workload targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<VolumeMount>>,
    /// Exclude patterns (workload targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Vec<String>>,
    /// Extra driver args.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Replicas (StatefulSet targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// VolumeSnapshotClass (VolumeSnapshotter driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_class_name: Option<String>,
}

/// Hooks of a backup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupHooks {
    /// Runs before the backup; its failure fails the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_backup: Option<HookHandler>,
    /// Runs after the backup, per its execution policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_backup: Option<PostHook>,
}

/// Observed state of a BackupConfiguration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupConfigurationStatus {
    /// Generation last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `NotReady` or `Invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}
