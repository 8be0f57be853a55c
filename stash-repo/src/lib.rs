//! A restic repository (format v2) library, written from restic's design document: keys and
//! config, packs, index, trees and snapshots, locks, a streaming backup of one file and a
//! streaming read of one file. Repositories it writes are read, checked and restored by the
//! stock `restic` program, and it reads what `restic` wrote.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod azure;
pub mod b2;
pub mod backend;
pub mod backup;
pub mod check;
pub mod chunker;
pub mod crypto;
pub mod error;
pub mod format;
pub mod gcs;
pub mod http;
pub mod id;
pub mod location;
pub mod lock;
pub mod objects;
pub mod pack;
pub mod repo;
pub mod restore;
pub mod swift;
pub mod timeline;

pub use backend::{Backend, FileKind, LocalBackend};
pub use backup::{backup_stream, backup_stream_locked, BackupOptions, BackupSummary};
pub use error::RepoError;
pub use id::Id;
pub use lock::LockWait;
pub use repo::Repository;
pub use restore::{open_file, FileReader};

/// Forgets snapshots under an exclusive lock (restic's `forget` without `--prune`).
pub fn forget(repo: &Repository, ids: &[Id]) -> Result<(), RepoError> {
    let _lock = lock::Lock::acquire(repo, true)?;
    repo.remove_snapshots(ids)
}
