//! `RestoreSession` (`stash.appscode.com/v1beta1`): one restore.

use super::common::{
    Condition, EmptyDirSettings, HookHandler, ObjectRef, PersistentVolumeClaimTemplate, PostHook,
    RuntimeSettings, TargetRef, TaskRef,
};
use k8s_openapi::api::core::v1::VolumeMount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a RestoreSession asks for: the Repository, the target and which snapshot to restore.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "stash.appscode.com",
    version = "v1beta1",
    kind = "RestoreSession",
    doc = "RestoreSession restores a database (an AppBinding) once from a snapshot in a Repository: the operator runs a restore Job, and the status reports the restore's phase, duration and each host's result.",
    namespaced,
    status = "RestoreSessionStatus",
    shortname = "restore",
    category = "stash",
    category = "appscode",
    category = "all",
    derive = "Default",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Repository","type":"string","jsonPath":".spec.repository.name"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".status.sessionDuration"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSessionSpec {
    /// `Restic` (default) or `VolumeSnapshotter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// The Task to run and its parameter overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskRef>,
    /// The Repository to read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<ObjectRef>,
    /// What to restore into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RestoreTarget>,
    /// Deprecated: moved to `target.rules`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<RestoreRule>>,
    /// Pod and container settings for the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_settings: Option<Box<RuntimeSettings>>,
    /// The scratch emptyDir at `/stash-tmp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_dir: Option<EmptyDirSettings>,
    /// A PVC template mounted at `/stash-interim-volume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interim_volume_template: Option<Box<PersistentVolumeClaimTemplate>>,
    // Boxed, as a BackupConfiguration's.
    /// Hooks around the restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Box<RestoreHooks>>,
    /// Deadline, as a Go duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_out: Option<String>,
}

/// The restore target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreTarget {
    /// The target object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<TargetRef>,
    /// Host name used for the restore (and the default source host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Which snapshots to restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<RestoreRule>>,
    /// Replicas (StatefulSet targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Volume mounts (workload targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<VolumeMount>>,
    /// Volume claim templates (workload targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_templates: Option<Vec<PersistentVolumeClaimTemplate>>,
    /// Extra driver args.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
}

/// A restore rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRule {
    /// Hosts this rule applies to; empty means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_hosts: Option<Vec<String>>,
    /// Host whose snapshots are restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_host: Option<String>,
    /// Snapshot ids, or `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<Vec<String>>,
    /// Paths to restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// Include patterns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
    /// Exclude patterns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Vec<String>>,
}

/// Hooks of a restore.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreHooks {
    /// Runs before the restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_restore: Option<HookHandler>,
    /// Runs after the restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_restore: Option<PostHook>,
}

/// Observed state of a RestoreSession.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSessionStatus {
    /// `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown` or `Invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Hosts that report stats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_hosts: Option<i32>,
    /// Wall time from creation to the final phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_duration: Option<String>,
    /// Creation plus `timeOut`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_deadline: Option<Time>,
    /// Conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// Per-host results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Vec<HostRestoreStats>>,
}

/// Result of one host's restore.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostRestoreStats {
    /// Host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `Succeeded`, `Failed`, `Running` or `Unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Error, when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
