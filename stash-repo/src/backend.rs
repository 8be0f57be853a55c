//! Where repository files live. [`Backend`] is the small set of operations restic's layout
//! needs; [`LocalBackend`] keeps them in a directory, laid out as restic's local backend does.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::RepoError;

/// The kinds of files in a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// `config`.
    Config,
    /// `keys/`.
    Key,
    /// `snapshots/`.
    Snapshot,
    /// `index/`.
    Index,
    /// `data/` (pack files).
    Pack,
    /// `locks/`.
    Lock,
}

impl FileKind {
    /// The directory of this kind in restic's layout.
    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Config => "",
            FileKind::Key => "keys",
            FileKind::Snapshot => "snapshots",
            FileKind::Index => "index",
            FileKind::Pack => "data",
            FileKind::Lock => "locks",
        }
    }
}

/// Storage operations. Names are hex ids; the config file has the name `config`.
pub trait Backend: Send + Sync {
    /// Human-readable location (no secrets).
    fn location(&self) -> String;
    /// Creates the directory structure of a new repository (may do nothing).
    fn create(&self) -> Result<(), RepoError>;
    /// Whole file.
    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, RepoError>;
    /// `length` bytes at `offset`.
    fn read_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, RepoError>;
    /// Stores a file; it is complete or absent.
    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), RepoError>;
    /// Names and sizes of the files of one kind.
    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>, RepoError>;
    /// Removes a file; absent is fine.
    fn remove(&self, kind: FileKind, name: &str) -> Result<(), RepoError>;
    /// True when the file exists.
    fn exists(&self, kind: FileKind, name: &str) -> Result<bool, RepoError>;
}

/// A repository in a local directory.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
}

fn io_err(path: &Path, e: std::io::Error) -> RepoError {
    RepoError::Storage(format!("{}: {e}", path.display()))
}

impl LocalBackend {
    /// A backend rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend { root: root.into() }
    }

    fn path(&self, kind: FileKind, name: &str) -> PathBuf {
        match kind {
            FileKind::Config => self.root.join("config"),
            FileKind::Pack => self
                .root
                .join("data")
                .join(name.get(..2).unwrap_or("00"))
                .join(name),
            other => self.root.join(other.dir()).join(name),
        }
    }
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<(), RepoError> {
        for kind in [
            FileKind::Key,
            FileKind::Snapshot,
            FileKind::Index,
            FileKind::Lock,
        ] {
            let dir = self.root.join(kind.dir());
            std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        }
        for i in 0..256 {
            let dir = self.root.join("data").join(crate::id::hex(&[i as u8]));
            std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        }
        Ok(())
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, RepoError> {
        let path = self.path(kind, name);
        std::fs::read(&path).map_err(|e| io_err(&path, e))
    }

    fn read_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, RepoError> {
        let path = self.path(kind, name);
        let read = || -> std::io::Result<Vec<u8>> {
            let mut file = std::fs::File::open(&path)?;
            file.seek(SeekFrom::Start(offset))?;
            let mut buf = vec![0u8; usize::try_from(length).map_err(std::io::Error::other)?];
            file.read_exact(&mut buf)?;
            Ok(buf)
        };
        read().map_err(|e| io_err(&path, e))
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), RepoError> {
        let path = self.path(kind, name);
        let Some(dir) = path.parent() else {
            return Err(RepoError::Storage(format!("{}: no parent", path.display())));
        };
        // Written under a temporary name and renamed, so a crash never leaves a partial file
        // under a valid name.
        let tmp = dir.join(format!(".tmp-{name}"));
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(data)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err(&path, e)
        })
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>, RepoError> {
        let dir = self.root.join(kind.dir());
        let mut dirs = vec![dir.clone()];
        if kind == FileKind::Pack {
            dirs.clear();
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io_err(&dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_err(&dir, e))?;
                if entry.file_type().map_err(|e| io_err(&dir, e))?.is_dir() {
                    dirs.push(entry.path());
                }
            }
        }
        let mut out = Vec::new();
        for d in dirs {
            let entries = match std::fs::read_dir(&d) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&d, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_err(&d, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let meta = entry.metadata().map_err(|e| io_err(&d, e))?;
                if meta.is_file() {
                    out.push((name, meta.len()));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<(), RepoError> {
        let path = self.path(kind, name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    fn exists(&self, kind: FileKind, name: &str) -> Result<bool, RepoError> {
        let path = self.path(kind, name);
        path.try_exists().map_err(|e| io_err(&path, e))
    }
}
