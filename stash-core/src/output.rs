//! `output.json`, the hand-off from a backup or restore container to `update-status`, in
//! Stash's format (`stash.md` §3.7). One type for the writer (the Job's data step) and the
//! reader (`update-status`): a file the reader cannot take whole is an error, never a file with
//! some rows quietly dropped.

use crate::api::{HostBackupStats, HostRestoreStats, SnapshotStats as ApiSnapshotStats};
use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// The target and its host results.
    pub target_status: TargetStatus,
}

/// `targetStatus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetStatus {
    /// The AppBinding.
    #[serde(rename = "ref")]
    pub target_ref: TargetRef,
    /// One entry per host.
    pub stats: Vec<HostStats>,
}

/// `targetStatus.ref`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// Always `appcatalog.appscode.com/v1alpha1` for our Jobs.
    pub api_version: String,
    /// Always `AppBinding` for our Jobs.
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

    /// The same reference as the API spells it in session status.
    pub fn to_api(&self) -> crate::api::TargetRef {
        let some = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        crate::api::TargetRef {
            api_version: some(&self.api_version),
            kind: some(&self.kind),
            name: some(&self.name),
            namespace: some(&self.namespace),
        }
    }
}

/// Host phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostPhase {
    /// The host's backup or restore succeeded.
    Succeeded,
    /// It failed; `error` says why.
    Failed,
}

impl HostPhase {
    /// `Succeeded` or `Failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            HostPhase::Succeeded => "Succeeded",
            HostPhase::Failed => "Failed",
        }
    }
}

/// One host's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostStats {
    /// Host name (`host-0` or the alias).
    pub hostname: String,
    /// Outcome.
    pub phase: HostPhase,
    /// Wall time, Go `time.Duration` format.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub duration: String,
    /// Snapshots written (backup only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<SnapshotStats>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

impl HostStats {
    /// The row as a BackupSession's `status.targets[].stats[]` entry.
    pub fn to_backup_stats(&self) -> HostBackupStats {
        let some = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        HostBackupStats {
            hostname: Some(self.hostname.clone()),
            phase: Some(self.phase.as_str().to_owned()),
            snapshots: (!self.snapshots.is_empty())
                .then(|| self.snapshots.iter().map(SnapshotStats::to_api).collect()),
            duration: some(&self.duration),
            error: some(&self.error),
        }
    }

    /// The row as a RestoreSession's `status.stats[]` entry.
    pub fn to_restore_stats(&self) -> HostRestoreStats {
        let some = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        HostRestoreStats {
            hostname: Some(self.hostname.clone()),
            phase: Some(self.phase.as_str().to_owned()),
            duration: some(&self.duration),
            error: some(&self.error),
        }
    }
}

/// One snapshot's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

impl SnapshotStats {
    fn to_api(&self) -> ApiSnapshotStats {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        ApiSnapshotStats {
            name: Some(self.name.clone()),
            path: Some(self.path.clone()),
            total_size: Some(self.total_size.clone()),
            uploaded: Some(self.uploaded.clone()),
            processing_time: Some(self.processing_time.clone()),
            file_stats: Some(crate::api::FileStats {
                total_files: Some(count(self.file_stats.total_files)),
                new_files: Some(count(self.file_stats.new_files)),
                modified_files: Some(count(self.file_stats.modified_files)),
                unmodified_files: Some(count(self.file_stats.unmodified_files)),
            }),
        }
    }
}

/// File counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// Why `output.json` cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    /// Not JSON of this shape; `path` names the field (`targetStatus.stats[1].phase`).
    #[error("output.json: {path}: {message}")]
    Malformed {
        /// Where in the document.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// No host results at all.
    #[error("output.json has no host results")]
    NoHosts,
}

impl Output {
    /// Parses the file's text. Every row must parse: one bad row fails the whole file, naming
    /// the row, so a host's result is never lost without a trace.
    pub fn parse(text: &str) -> Result<Output, OutputError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let out: Output = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            OutputError::Malformed {
                path,
                message: e.into_inner().to_string(),
            }
        })?;
        if out.target_status.stats.is_empty() {
            return Err(OutputError::NoHosts);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"targetStatus": {"ref": {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding", "name": "sample-mysql", "namespace": "demo"},
      "stats": [{"hostname": "host-0", "phase": "Succeeded", "duration": "5.123s",
        "snapshots": [{"name": "b30beb44", "path": "dumpfile.sql", "totalSize": "3.408 MiB", "uploaded": "1.101 MiB",
                       "processingTime": "0:02", "fileStats": {"totalFiles": 1, "newFiles": 1, "modifiedFiles": 0, "unmodifiedFiles": 0}}]}]}}"#;

    #[test]
    fn stash_example_round_trips() {
        let out = Output::parse(GOOD).unwrap();
        assert_eq!(out.target_status.stats[0].phase, HostPhase::Succeeded);
        let again: serde_json::Value = serde_json::to_value(&out).unwrap();
        let want: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        assert_eq!(again, want);
    }

    #[test]
    fn an_unparsable_row_fails_the_file_and_names_the_row() {
        let bad = r#"{"targetStatus": {"ref": {"apiVersion": "v", "kind": "AppBinding", "name": "a", "namespace": "d"},
          "stats": [{"hostname": "host-0", "phase": "Succeeded"}, {"hostname": "host-1", "phase": "Done"}]}}"#;
        let err = Output::parse(bad).unwrap_err();
        assert!(
            err.to_string().contains("targetStatus.stats[1].phase"),
            "{err}"
        );
        let missing = r#"{"targetStatus": {"ref": {"apiVersion": "v", "kind": "AppBinding", "name": "a", "namespace": "d"},
          "stats": [{"phase": "Succeeded"}]}}"#;
        let err = Output::parse(missing).unwrap_err();
        assert!(err.to_string().contains("targetStatus.stats[0]"), "{err}");
        assert!(err.to_string().contains("hostname"), "{err}");
    }

    #[test]
    fn no_rows_is_an_error() {
        let empty = r#"{"targetStatus": {"ref": {"apiVersion": "v", "kind": "AppBinding", "name": "a", "namespace": "d"}, "stats": []}}"#;
        assert_eq!(Output::parse(empty), Err(OutputError::NoHosts));
    }
}
