//! `output.json`, the hand-off from a backup or restore container to `update-status`, in
//! Stash's format (`stash.md` §3.7), including its size and duration strings.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::datapath::SnapshotSummary;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// The target and its host results.
    pub target_status: TargetStatus,
}

/// `targetStatus`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetStatus {
    /// The AppBinding.
    #[serde(rename = "ref")]
    pub target_ref: TargetRef,
    /// One entry per host.
    pub stats: Vec<HostStats>,
}

/// `targetStatus.ref`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// Always `appcatalog.appscode.com/v1alpha1`.
    pub api_version: String,
    /// Always `AppBinding`.
    pub kind: String,
    /// AppBinding name.
    pub name: String,
    /// AppBinding namespace.
    pub namespace: String,
}

impl TargetRef {
    /// A reference to an AppBinding.
    pub fn appbinding(name: &str, namespace: &str) -> Self {
        TargetRef {
            api_version: "appcatalog.appscode.com/v1alpha1".to_owned(),
            kind: "AppBinding".to_owned(),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
        }
    }
}

/// Host phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HostPhase {
    /// The host's backup or restore succeeded.
    Succeeded,
    /// It failed; `error` says why.
    Failed,
}

/// One host's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostStats {
    /// Host name (`host-0` or the alias).
    pub hostname: String,
    /// Outcome.
    pub phase: HostPhase,
    /// Wall time, Go `time.Duration` format.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub duration: String,
    /// Snapshots written (backup only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<SnapshotStats>,
    /// Why it failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// One snapshot's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStats {
    /// Snapshot id (short form).
    pub name: String,
    /// The file (`dumpfile.sql`).
    pub path: String,
    /// Bytes processed, formatted.
    pub total_size: String,
    /// Bytes added to the repository, formatted.
    pub uploaded: String,
    /// Engine time, `m:ss`.
    pub processing_time: String,
    /// File counts.
    pub file_stats: FileStats,
}

/// File counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileStats {
    /// Files processed.
    pub total_files: u64,
    /// New files.
    pub new_files: u64,
    /// Changed files.
    pub modified_files: u64,
    /// Unchanged files.
    pub unmodified_files: u64,
}

impl SnapshotStats {
    /// Figures of a backup summary; `processing` is the engine's wall time.
    pub fn from_summary(summary: &SnapshotSummary, path: &str, processing: Duration) -> Self {
        SnapshotStats {
            name: summary.snapshot_id.chars().take(8).collect(),
            path: path.to_owned(),
            total_size: format_bytes(summary.total_bytes_processed),
            uploaded: format_bytes(summary.data_added),
            processing_time: format_seconds(processing.as_secs()),
            file_stats: FileStats {
                total_files: summary.total_files_processed,
                new_files: summary.files_new,
                modified_files: summary.files_changed,
                unmodified_files: summary.files_unmodified,
            },
        }
    }
}

/// Stash's `formatBytes` and `formatSeconds` (one implementation, in stash-core).
pub use stash_core::duration::{format_bytes, format_processing_time as format_seconds};

/// Go's `time.Duration.String()` (one implementation, in stash-core).
pub use stash_core::duration::format_go_duration as go_duration;

/// Writes `<dir>/output.json` (pretty JSON, as Stash does).
pub fn write_output(dir: &Path, output: &Output) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(output).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("output.json"), json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_match_stash_strings() {
        assert_eq!(format_bytes(1024), "1024 B");
        assert_eq!(format_bytes(1025), "1.001 KiB");
        assert_eq!(format_bytes(3_573_547), "3.408 MiB");
        assert_eq!(format_bytes(1 << 20), "1024.000 KiB");
        assert_eq!(format_seconds(2), "0:02");
        assert_eq!(format_seconds(3725), "1:02:05");
        assert_eq!(go_duration(Duration::from_millis(5123)), "5.123s");
        assert_eq!(go_duration(Duration::from_secs(65)), "1m5s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn output_json_has_stash_field_names() {
        let summary = SnapshotSummary {
            snapshot_id: "b30beb44cafe".into(),
            files_new: 1,
            total_files_processed: 1,
            data_added: 1_154_482,
            total_bytes_processed: 3_573_547,
            ..Default::default()
        };
        let out = Output {
            target_status: TargetStatus {
                target_ref: TargetRef::appbinding("sample-mysql", "demo"),
                stats: vec![HostStats {
                    hostname: "host-0".into(),
                    phase: HostPhase::Succeeded,
                    duration: "5.123s".into(),
                    snapshots: vec![SnapshotStats::from_summary(
                        &summary,
                        "dumpfile.sql",
                        Duration::from_secs(2),
                    )],
                    error: String::new(),
                }],
            },
        };
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"targetStatus": {"ref": {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding", "name": "sample-mysql", "namespace": "demo"},
              "stats": [{"hostname": "host-0", "phase": "Succeeded", "duration": "5.123s",
                "snapshots": [{"name": "b30beb44", "path": "dumpfile.sql", "totalSize": "3.408 MiB", "uploaded": "1.101 MiB",
                               "processingTime": "0:02", "fileStats": {"totalFiles": 1, "newFiles": 1, "modifiedFiles": 0, "unmodifiedFiles": 0}}]}]}})
        );
    }
}
