//! `output.json`, the hand-off from a backup or restore container to `update-status`, in
//! Stash's format (`stash.md` §3.7): written here by the data step and read here by
//! `update-status`, through the one contract type `stash_core::output::Output`; also the size
//! and duration strings it holds.

use std::path::Path;
use std::time::Duration;

use crate::datapath::SnapshotSummary;

/// The contract itself lives in stash-core, shared by this writer and `update-status`.
pub use stash_core::output::{
    FileStats, HostPhase, HostStats, Output, OutputError, SnapshotStats, TargetRef, TargetStatus,
};

/// Figures of a backup summary; `processing` is the engine's wall time.
pub fn snapshot_stats(
    summary: &SnapshotSummary,
    path: &str,
    processing: Duration,
) -> SnapshotStats {
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

/// Stash's `formatBytes` and `formatSeconds` (one implementation, in stash-core).
pub use stash_core::duration::{format_bytes, format_processing_time as format_seconds};

/// Go's `time.Duration.String()` (one implementation, in stash-core).
pub use stash_core::duration::format_go_duration as go_duration;

/// Reads `<dir>/output.json`: the whole file or an error saying why not (a missing file means
/// the backup or restore step did not finish; a bad row is named).
pub fn read_output(dir: &Path) -> Result<Output, String> {
    let path = dir.join("output.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e} (the backup or restore step did not finish)",
            path.display()
        )
    })?;
    Output::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

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
                    snapshots: vec![snapshot_stats(
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
        // The reader takes back exactly what the writer wrote.
        let dir = tempfile::tempdir().unwrap();
        write_output(dir.path(), &out).unwrap();
        assert_eq!(read_output(dir.path()).unwrap(), out);
    }

    #[test]
    fn a_bad_row_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("output.json"),
            r#"{"targetStatus": {"ref": {"apiVersion": "v", "kind": "AppBinding", "name": "a", "namespace": "d"},
                "stats": [{"hostname": "host-0", "phase": "Succeeded"}, {"hostname": 7, "phase": "Failed"}]}}"#,
        )
        .unwrap();
        let err = read_output(dir.path()).unwrap_err();
        assert!(err.contains("targetStatus.stats[1].hostname"), "{err}");
        let missing = read_output(&dir.path().join("nowhere")).unwrap_err();
        assert!(missing.contains("did not finish"), "{missing}");
    }
}
