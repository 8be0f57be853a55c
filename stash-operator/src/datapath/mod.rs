//! The data path: a MySQL dump streamed into a restic-format repository, and back.
//!
//! One small interface, [`RepositoryEngine`], hides which program or library talks to the
//! repository: [`in_process::InProcess`] (the `stash-repo` library, in this process) or
//! [`restic_cli::ResticCli`] (the stock `restic` program); see `bench/datapath/README.md`. Around it: [`backend`] turns Stash's backend flags and storage Secret into the
//! engine's environment, [`dump_source`] runs the dump and refuses to end cleanly on a failed
//! or truncated dump, [`statements`] splits a dump into statements, and [`loader`] sends them
//! to the database.

pub mod backend;
pub mod deferred_stats;
pub mod dump_source;
pub mod in_process;
pub mod load_data;
pub mod loader;
pub mod mysql_client;
pub mod parallel_loader;
pub mod restic_cli;
pub mod statements;
pub mod wipe_out;

use std::io::Read;

/// What a finished backup stored (restic's `summary` message).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct SnapshotSummary {
    /// Full id of the new snapshot.
    pub snapshot_id: String,
    /// Files new in this snapshot.
    #[serde(default)]
    pub files_new: u64,
    /// Files changed since the parent snapshot.
    #[serde(default)]
    pub files_changed: u64,
    /// Files unchanged since the parent snapshot.
    #[serde(default)]
    pub files_unmodified: u64,
    /// Files processed.
    #[serde(default)]
    pub total_files_processed: u64,
    /// Bytes newly written to the repository (after dedup and compression).
    #[serde(default)]
    pub data_added: u64,
    /// Bytes read from the source.
    #[serde(default)]
    pub total_bytes_processed: u64,
}

/// A snapshot as listed by the engine.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct SnapshotInfo {
    /// Full id.
    pub id: String,
    /// Creation time (RFC 3339, as the engine wrote it).
    pub time: String,
    /// Host the snapshot belongs to.
    #[serde(default)]
    pub hostname: String,
    /// Paths it holds.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
}

impl SnapshotInfo {
    /// The snapshot as `stash_core::retention` sees it (its time split into seconds and
    /// nanoseconds, so snapshots of the same second keep their order).
    pub fn for_retention(&self) -> Result<stash_core::retention::SnapshotInfo, EngineError> {
        let time: k8s_openapi::jiff::Timestamp =
            self.time.parse().map_err(|e| EngineError::Output {
                command: "snapshots".into(),
                detail: format!(
                    "snapshot {} has an unreadable time {:?}: {e}",
                    self.id, self.time
                ),
            })?;
        Ok(stash_core::retention::SnapshotInfo {
            id: self.id.clone(),
            time: time.as_second(),
            nanos: time.subsec_nanosecond().unsigned_abs(),
            host: self.hostname.clone(),
            paths: self.paths.clone(),
            tags: self.tags.clone().unwrap_or_default(),
        })
    }
}

/// Repository size figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepoStats {
    /// Bytes stored (restic `stats --mode raw-data`).
    pub total_size: u64,
    /// Snapshots in the repository.
    pub snapshot_count: usize,
}

/// Errors of a repository engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The source stream failed (the dump failed or was truncated); nothing was stored.
    #[error("backup aborted, no snapshot stored: {0}")]
    SourceFailed(String),
    /// The repository does not exist.
    #[error("repository does not exist: {0}")]
    RepositoryMissing(String),
    /// The repository is locked by another process.
    #[error("repository is locked: {0}")]
    Locked(String),
    /// The repository password opens none of the repository's keys.
    #[error("wrong repository password: RESTIC_PASSWORD opens no key of this repository")]
    WrongPassword,
    /// A command of the engine failed.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The subcommand.
        command: String,
        /// Exit status as text.
        status: String,
        /// The end of its error output.
        stderr: String,
    },
    /// The snapshot does not hold the whole stream; it was forgotten.
    #[error("snapshot {snapshot} holds {stored} bytes, {fed} were sent; it was forgotten")]
    Incomplete {
        /// The snapshot id.
        snapshot: String,
        /// Bytes sent.
        fed: u64,
        /// Bytes recorded.
        stored: u64,
    },
    /// The snapshot or its file cannot be read (absent, damaged, or not indexed).
    #[error("cannot read the snapshot: {0}")]
    Unreadable(String),
    /// The engine's output could not be understood.
    #[error("unexpected output from {command}: {detail}")]
    Output {
        /// The subcommand.
        command: String,
        /// What was wrong.
        detail: String,
    },
}

impl EngineError {
    /// Stable reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            EngineError::Spawn { .. } => "EngineUnavailable",
            EngineError::SourceFailed(_) => "DumpFailed",
            EngineError::RepositoryMissing(_) => "RepositoryNotFound",
            EngineError::Locked(_) => "RepositoryLocked",
            EngineError::WrongPassword => "WrongRepositoryPassword",
            EngineError::Failed { .. } => "RepositoryCommandFailed",
            EngineError::Incomplete { .. } => "SnapshotIncomplete",
            EngineError::Unreadable(_) => "SnapshotReadFailed",
            EngineError::Output { .. } => "UnexpectedEngineOutput",
        }
    }
}

/// The one interface between the job commands and the repository. With the `mock` feature,
/// mockall's `MockRepositoryEngine` stands in for it in tests.
#[cfg_attr(feature = "mock", mockall::automock)]
pub trait RepositoryEngine {
    /// Creates the repository (format v2) unless it exists; true when it was created.
    fn init_if_missing(&self) -> Result<bool, EngineError>;

    /// Stores everything `source` yields as the file `filename` of a new snapshot of `host`.
    /// When `source` fails, no snapshot is stored. When it succeeds, the snapshot holds exactly
    /// the bytes read.
    fn backup_stream(
        &self,
        source: &mut dyn Read,
        host: &str,
        filename: &str,
    ) -> Result<SnapshotSummary, EngineError>;

    /// Streams `filename` of `snapshot` (an id or `latest`, restricted to `host` if given).
    /// The reader fails rather than ending early if the engine fails.
    // mockall needs the lifetime inside `Option<&str>` named.
    #[allow(clippy::needless_lifetimes)]
    fn dump<'a>(
        &self,
        snapshot: &str,
        host: Option<&'a str>,
        filename: &str,
    ) -> Result<Box<dyn Read + Send>, EngineError>;

    /// Snapshots, optionally of one host only.
    #[allow(clippy::needless_lifetimes)]
    fn snapshots<'a>(&self, host: Option<&'a str>) -> Result<Vec<SnapshotInfo>, EngineError>;

    /// Forgets exactly the given snapshots (full ids), and prunes the data no snapshot
    /// references any more when `prune`. Which snapshots retention forgets is decided by
    /// `stash_core::retention::select`, never by the engine.
    fn forget_snapshots(&self, ids: &[String], prune: bool) -> Result<(), EngineError>;

    /// Verifies the repository structure, and every pack's content when `read_data`.
    fn check(&self, read_data: bool) -> Result<(), EngineError>;

    /// Size and snapshot count.
    fn stats(&self) -> Result<RepoStats, EngineError>;

    /// The repository's lock files that can be read (restic ignores the others too).
    fn locks(&self) -> Result<Vec<LockInfo>, EngineError>;

    /// Removes the given lock files, which the caller found stale
    /// ([`stash_core::plan::repository::admit_locks`]).
    fn remove_locks(&self, ids: &[String]) -> Result<(), EngineError>;
}

/// A lock file's content (restic's format) and id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LockInfo {
    /// The lock file's id.
    #[serde(default)]
    pub id: String,
    /// When it was made or last refreshed (RFC 3339).
    pub time: String,
    /// Exclusive or shared.
    #[serde(default)]
    pub exclusive: bool,
    /// Host of the holder.
    #[serde(default)]
    pub hostname: String,
    /// Process id of the holder.
    #[serde(default)]
    pub pid: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_times_keep_their_fraction() {
        let s = SnapshotInfo {
            id: "abc".into(),
            time: "2026-01-01T01:00:00.25+01:00".into(),
            hostname: "host-0".into(),
            paths: vec!["/dumpfile.sql".into()],
            tags: None,
        };
        let r = s.for_retention().unwrap();
        assert_eq!((r.time, r.nanos), (1_767_225_600, 250_000_000));
        let bad = SnapshotInfo {
            time: "yesterday".into(),
            ..s
        };
        assert!(bad.for_retention().unwrap_err().to_string().contains("abc"));
    }
}
