//! Deletes every file of a repository from its backend (`spec.wipeOut`): the files of restic's
//! layout (`config`, `keys/`, `snapshots/`, `index/`, `data/`, `locks/`) under the S3 prefix
//! (Stash deletes every object under `<bucket>/<prefix>/`; other objects stay here), on a
//! REST server, or in a local directory. S3 and REST go through `stash-repo`'s backends, the
//! same client the in-process engine uses; the credentials come from the storage Secret and
//! travel only in request headers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use stash_repo::backend::{Backend, FileKind};
use stash_repo::location::{self, TlsSettings};
use stash_repo::RepoError;

use super::backend::{repository_url, BackendConfig, Provider};

/// Why the data could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum WipeOutError {
    /// This backend cannot be wiped out by this command.
    #[error("wiping out a {0} repository is not supported")]
    Unsupported(String),
    /// A required setting is missing.
    #[error("{0}")]
    Config(String),
    /// The storage answered with an error or could not be reached.
    #[error("{0}")]
    Storage(String),
    /// Local files could not be removed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl WipeOutError {
    /// Stable reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            WipeOutError::Unsupported(_) => "UnsupportedBackend",
            WipeOutError::Config(_) => "InvalidBackend",
            WipeOutError::Storage(_) => "StorageError",
            WipeOutError::Io { .. } => "LocalStorageError",
        }
    }
}

impl From<RepoError> for WipeOutError {
    fn from(e: RepoError) -> Self {
        WipeOutError::Storage(e.to_string())
    }
}

/// Deletes the repository's files; returns how many were deleted.
pub async fn wipe_out(
    config: &BackendConfig,
    secret: &BTreeMap<String, Vec<u8>>,
) -> Result<usize, WipeOutError> {
    match config.provider {
        Provider::Local => wipe_local(Path::new(&config.bucket)),
        Provider::S3 | Provider::Rest => {
            let backend = remote_backend(config, secret)?;
            // The backends block; keep the runtime's threads free.
            tokio::task::spawn_blocking(move || wipe_backend(backend.as_ref()))
                .await
                .map_err(|e| WipeOutError::Storage(format!("wipe-out task: {e}")))?
        }
        other => Err(WipeOutError::Unsupported(
            format!("{other:?}").to_lowercase(),
        )),
    }
}

/// The `stash-repo` backend of an S3 or REST repository, opened as the in-process engine opens
/// it: the Secret's keys, its `CA_CERT_DATA` and the Repository's insecure TLS.
fn remote_backend(
    config: &BackendConfig,
    secret: &BTreeMap<String, Vec<u8>>,
) -> Result<Arc<dyn Backend>, WipeOutError> {
    let url = repository_url(config, secret).map_err(|e| WipeOutError::Config(e.to_string()))?;
    if !(url.starts_with("s3:") || url.starts_with("rest:")) {
        return Err(WipeOutError::Config(
            "the repository is neither on S3 nor on a REST server".into(),
        ));
    }
    let var = |k: &str| match k {
        "AWS_DEFAULT_REGION" => Some(config.region.clone()),
        _ => secret
            .get(k)
            .map(|v| String::from_utf8_lossy(v).into_owned()),
    };
    let tls = TlsSettings {
        ca_pem: secret.get("CA_CERT_DATA").cloned(),
        insecure: config.insecure_tls,
    };
    location::open_with(&url, &var, &tls).map_err(|e| WipeOutError::Config(e.to_string()))
}

/// Removes every file of restic's layout: snapshots first (a wipe-out cut short leaves no
/// snapshot that points at missing data), the config last.
fn wipe_backend(backend: &dyn Backend) -> Result<usize, WipeOutError> {
    let mut removed = 0;
    for kind in [
        FileKind::Snapshot,
        FileKind::Index,
        FileKind::Pack,
        FileKind::Key,
        FileKind::Lock,
    ] {
        for (name, _) in backend.list(kind)? {
            backend.remove(kind, &name)?;
            removed += 1;
        }
    }
    if backend.exists(FileKind::Config, "config")? {
        backend.remove(FileKind::Config, "config")?;
        removed += 1;
    }
    Ok(removed)
}

/// The entries of restic's repository layout.
const LAYOUT: [&str; 6] = ["config", "keys", "snapshots", "index", "data", "locks"];

/// Removes restic's files and folders from a local repository directory, keeping the
/// directory itself (it is usually a mount point) and anything else in it.
fn wipe_local(root: &Path) -> Result<usize, WipeOutError> {
    if root.as_os_str().is_empty() {
        return Err(WipeOutError::Config("the local mount path is empty".into()));
    }
    let mut removed = 0;
    for entry in LAYOUT {
        let path = root.join(entry);
        let io = |source| WipeOutError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                removed += count_files(&path).map_err(io)?;
                std::fs::remove_dir_all(&path).map_err(io)?;
            }
            Ok(_) => {
                std::fs::remove_file(&path).map_err(io)?;
                removed += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(removed)
}

fn count_files(dir: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            n += count_files(&entry.path())?;
        } else {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_wipe_keeps_the_mount_point_and_foreign_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["keys", "data/ab", "snapshots"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        std::fs::write(dir.path().join("config"), b"x").expect("write");
        std::fs::write(dir.path().join("data/ab/abcd"), b"x").expect("write");
        std::fs::write(dir.path().join("lost+found"), b"x").expect("write");
        assert_eq!(wipe_local(dir.path()).expect("wipe"), 2);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["lost+found"]);
    }
}
