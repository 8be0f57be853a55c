//! `Repository` (`stash.appscode.com/v1alpha1`): where snapshots live.

use super::common::{Condition, TypedObjectReference};
use k8s_openapi::api::core::v1::{
    CSIVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource, NFSVolumeSource,
    PersistentVolumeClaimVolumeSource,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Repository spec: a backend plus who may use it.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "stash.appscode.com",
    version = "v1alpha1",
    kind = "Repository",
    namespaced,
    status = "RepositoryStatus",
    shortname = "repo",
    category = "stash",
    category = "appscode",
    category = "all",
    derive = "Default",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Integrity","type":"boolean","jsonPath":".status.integrity"}"#,
    printcolumn = r#"{"name":"Size","type":"string","jsonPath":".status.totalSize"}"#,
    printcolumn = r#"{"name":"Snapshot-Count","type":"integer","jsonPath":".status.snapshotCount"}"#,
    printcolumn = r#"{"name":"Last-Successful-Backup","type":"date","format":"date-time","jsonPath":".status.lastBackupTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RepositorySpec {
    /// The storage backend.
    #[serde(default)]
    pub backend: Backend,
    /// Delete the backend data when the Repository is deleted (not for local or B2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wipe_out: Option<bool>,
    /// Which namespaces may use this Repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_policy: Option<UsagePolicy>,
}

/// Observed state of a Repository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryStatus {
    /// Generation last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Time of the first backup (declared by Stash, never set by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_backup_time: Option<Time>,
    /// Creation time of the session that last updated the Repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup_time: Option<Time>,
    /// Result of the last integrity check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<bool>,
    /// Total size, formatted like Stash (`6.815 MiB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_size: Option<String>,
    /// Number of snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_count: Option<i64>,
    /// Snapshots removed by the last retention run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots_removed_on_last_cleanup: Option<i64>,
    /// Invokers that use this Repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<Vec<TypedObjectReference>>,
    /// Conditions (ours: stale lock handling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
}

/// Usage policy of a Repository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsagePolicy {
    /// Allowed namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_namespaces: Option<AllowedNamespaces>,
}

/// Allowed namespaces of a usage policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedNamespaces {
    /// `All`, `Selector` or `Same` (CRD default `Same`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Namespace selector, used when `from: Selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// A backend (`objectstore-api` `Backend`): exactly one variant plus the storage secret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// Secret with `RESTIC_PASSWORD` and the provider's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_secret_name: Option<String>,
    /// A volume mounted into the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalSpec>,
    /// S3-compatible object storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
    /// Google Cloud Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsSpec>,
    /// Azure Blob Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureSpec>,
    /// OpenStack Swift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swift: Option<SwiftSpec>,
    /// Backblaze B2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b2: Option<B2Spec>,
    /// restic REST server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest: Option<RestServerSpec>,
}

/// Local backend: any volume source plus a mount path.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalSpec {
    /// A PersistentVolumeClaim holding the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
    /// An NFS export holding the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<NFSVolumeSource>,
    /// A directory on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolumeSource>,
    /// A CSI volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi: Option<CSIVolumeSource>,
    /// An emptyDir (tests only: the data goes away with the pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
    /// Where the volume is mounted in the job.
    #[serde(default)]
    pub mount_path: String,
    /// Sub path inside the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

/// S3 backend.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Spec {
    /// Endpoint, e.g. `s3.amazonaws.com` or `http://minio:9000`.
    #[serde(default)]
    pub endpoint: String,
    /// Bucket.
    #[serde(default)]
    pub bucket: String,
    /// Prefix inside the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Skip TLS verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_tls: Option<bool>,
}

/// GCS backend.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcsSpec {
    /// Bucket.
    #[serde(default)]
    pub bucket: String,
    /// Prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Connection limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i64>,
}

/// Azure backend.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureSpec {
    /// Container.
    #[serde(default)]
    pub container: String,
    /// Prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Connection limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i64>,
}

/// Swift backend.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwiftSpec {
    /// Container.
    #[serde(default)]
    pub container: String,
    /// Prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// B2 backend.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct B2Spec {
    /// Bucket.
    #[serde(default)]
    pub bucket: String,
    /// Prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Connection limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i64>,
}

/// REST server backend.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestServerSpec {
    /// URL of the REST server; the path is the repository.
    #[serde(default)]
    pub url: String,
}
