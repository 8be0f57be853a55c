//! `Repository` (`stash.appscode.com/v1alpha1`): where snapshots live.

use super::common::{Condition, TypedObjectReference};
use k8s_openapi::api::core::v1 as core;
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
    doc = "Repository is where backups are kept: a restic repository on a storage backend (S3, GCS, Azure, B2, Swift, REST or a local volume), the Secret holding its credentials and encryption password, and which namespaces may use it.",
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
// The variants are boxed: one is set, and the operator caches every Repository (the JSON and
// the schema are those of the unboxed types).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// Secret with `RESTIC_PASSWORD` and the provider's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_secret_name: Option<String>,
    /// A volume mounted into the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<Box<LocalSpec>>,
    /// S3-compatible object storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<Box<S3Spec>>,
    /// Google Cloud Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<Box<GcsSpec>>,
    /// Azure Blob Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<Box<AzureSpec>>,
    /// OpenStack Swift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swift: Option<Box<SwiftSpec>>,
    /// Backblaze B2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b2: Option<Box<B2Spec>>,
    /// restic REST server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest: Option<Box<RestServerSpec>>,
}

/// Local backend: any Kubernetes volume source plus where it is mounted in the jobs
/// (`objectstore-api` `LocalSpec`, which embeds `core.VolumeSource` inline).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalSpec {
    /// The volume holding the repository, passed to the jobs as is.
    #[serde(flatten)]
    pub volume_source: VolumeSource,
    /// Where the volume is mounted in the job.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mount_path: String,
    /// Sub path inside the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

/// Kubernetes' `core/v1` `VolumeSource`: a `Volume` without its name. Exactly one is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSource {
    /// An AWS EBS disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_elastic_block_store: Option<core::AWSElasticBlockStoreVolumeSource>,
    /// An Azure data disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_disk: Option<core::AzureDiskVolumeSource>,
    /// An Azure File share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_file: Option<core::AzureFileVolumeSource>,
    /// A CephFS mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cephfs: Option<core::CephFSVolumeSource>,
    /// An OpenStack Cinder volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cinder: Option<core::CinderVolumeSource>,
    /// A ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<core::ConfigMapVolumeSource>,
    /// An inline CSI volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi: Option<core::CSIVolumeSource>,
    /// Downward API files.
    #[serde(
        default,
        rename = "downwardAPI",
        skip_serializing_if = "Option::is_none"
    )]
    pub downward_api: Option<core::DownwardAPIVolumeSource>,
    /// An emptyDir (the data goes away with the pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<core::EmptyDirVolumeSource>,
    /// A generic ephemeral volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral: Option<core::EphemeralVolumeSource>,
    /// A Fibre Channel disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fc: Option<core::FCVolumeSource>,
    /// A FlexVolume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flex_volume: Option<core::FlexVolumeSource>,
    /// A Flocker volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flocker: Option<core::FlockerVolumeSource>,
    /// A GCE persistent disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gce_persistent_disk: Option<core::GCEPersistentDiskVolumeSource>,
    /// A git repository (deprecated by Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_repo: Option<core::GitRepoVolumeSource>,
    /// A Glusterfs mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glusterfs: Option<core::GlusterfsVolumeSource>,
    /// A directory on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<core::HostPathVolumeSource>,
    /// An OCI image or artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<core::ImageVolumeSource>,
    /// An iSCSI disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iscsi: Option<core::ISCSIVolumeSource>,
    /// An NFS export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<core::NFSVolumeSource>,
    /// A PersistentVolumeClaim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<core::PersistentVolumeClaimVolumeSource>,
    /// A Photon Controller disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photon_persistent_disk: Option<core::PhotonPersistentDiskVolumeSource>,
    /// A Portworx volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portworx_volume: Option<core::PortworxVolumeSource>,
    /// A projected volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projected: Option<core::ProjectedVolumeSource>,
    /// A Quobyte mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quobyte: Option<core::QuobyteVolumeSource>,
    /// A Rados block device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rbd: Option<core::RBDVolumeSource>,
    /// A ScaleIO volume.
    #[serde(default, rename = "scaleIO", skip_serializing_if = "Option::is_none")]
    pub scale_io: Option<core::ScaleIOVolumeSource>,
    /// A Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<core::SecretVolumeSource>,
    /// A StorageOS volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storageos: Option<core::StorageOSVolumeSource>,
    /// A vSphere disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsphere_volume: Option<core::VsphereVirtualDiskVolumeSource>,
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
