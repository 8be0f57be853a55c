//! Errors of the repository library, each with a stable reason.

/// What went wrong with a repository.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// Storage failed (file system or network).
    #[error("storage: {0}")]
    Storage(String),
    /// The repository has no config file.
    #[error("no repository at {0}")]
    Missing(String),
    /// A repository already exists where one was to be created.
    #[error("a repository already exists at {0}")]
    Exists(String),
    /// No key file opens with the password.
    #[error("wrong password or no key found")]
    WrongPassword,
    /// Stored data failed authentication (changed, damaged or another key).
    #[error("ciphertext verification failed (data damaged or wrong key)")]
    Mac,
    /// Stored data does not have the expected content or layout.
    #[error("{0}")]
    Format(String),
    /// A blob's content does not match its id.
    #[error("blob {id} is damaged: content hash differs")]
    BlobHash {
        /// The blob id.
        id: String,
    },
    /// A blob is not in any index.
    #[error("blob {0} is not in any index (index missing or incomplete)")]
    BlobMissing(String),
    /// The snapshot or file was not found.
    #[error("{0}")]
    NotFound(String),
    /// Another process holds a conflicting lock.
    #[error("repository is already locked {0}")]
    Locked(String),
    /// The source stream failed; nothing was stored.
    #[error("source failed, nothing stored: {0}")]
    Source(String),
    /// The system's random source failed.
    #[error("random source: {0}")]
    Random(String),
}

impl RepoError {
    /// Stable reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            RepoError::Storage(_) => "StorageFailed",
            RepoError::Missing(_) => "RepositoryNotFound",
            RepoError::Exists(_) => "RepositoryExists",
            RepoError::WrongPassword => "WrongPassword",
            RepoError::Mac | RepoError::BlobHash { .. } => "RepositoryDamaged",
            RepoError::Format(_) => "RepositoryFormat",
            RepoError::BlobMissing(_) => "IndexIncomplete",
            RepoError::NotFound(_) => "SnapshotNotFound",
            RepoError::Locked(_) => "RepositoryLocked",
            RepoError::Source(_) => "DumpFailed",
            RepoError::Random(_) => "RandomSourceFailed",
        }
    }
}
