//! [`RepositoryEngine`] in process, on the `stash-repo` library: the dump is chunked, hashed,
//! compressed, encrypted and uploaded by this process's own threads, and restores read packs
//! directly. Pruning (repacking) stays with the restic CLI, which is run only when asked to.

use std::io::Read;
use std::sync::{Arc, Mutex};

use stash_repo::location::TlsSettings;
use stash_repo::{backend::FileKind, Backend, Id, LockWait, RepoError, Repository};

use super::backend::EngineEnv;
use super::restic_cli::ResticCli;
use super::{EngineError, LockInfo, RepoStats, RepositoryEngine, SnapshotInfo, SnapshotSummary};

/// The in-process engine.
pub struct InProcess {
    backend: Arc<dyn Backend>,
    password: String,
    /// Runs `restic prune` after a forget that asks for it.
    pruner: ResticCli,
    /// How long a backup waits for a conflicting (exclusive) lock before it fails.
    lock_wait: LockWait,
    /// The repository as last opened, with the config file as it was read then: a job opens
    /// it several times (locks, backup), and the key derivation (scrypt, about 60 ms of CPU
    /// before the dump may start) need not run again while the config is the same.
    opened: Mutex<Option<(Vec<u8>, Repository)>>,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess")
            .field("location", &self.backend.location())
            .finish_non_exhaustive()
    }
}

/// Why the in-process engine cannot serve a repository.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

impl InProcess {
    /// An engine for the repository `env` names: a local directory, S3, a REST server, GCS,
    /// Azure, B2 or Swift, with the TLS settings of its flags (`--cacert <file>`, the Secret's
    /// `CA_CERT_DATA`, and `--insecure-tls`) as restic would take them.
    pub fn new(env: &EngineEnv, pruner: ResticCli) -> Result<InProcess, Unsupported> {
        let location = env
            .env
            .get("RESTIC_REPOSITORY")
            .cloned()
            .unwrap_or_default();
        if !Self::supports(env) {
            let scheme = location.split(':').next().unwrap_or_default();
            return Err(Unsupported(format!(
                "the in-process engine does not support repository {scheme:?} with these \
                 settings (use --engine=restic)"
            )));
        }
        let tls = tls_settings(&env.flags)?;
        let backend =
            stash_repo::location::open_with(&location, &|k| env.env.get(k).cloned(), &tls)
                .map_err(|e| Unsupported(format!("cannot open the repository: {e}")))?;
        Ok(InProcess {
            backend,
            password: env.env.get("RESTIC_PASSWORD").cloned().unwrap_or_default(),
            pruner,
            lock_wait: LockWait::default(),
            opened: Mutex::new(None),
        })
    }

    /// Backups wait up to `wait` for a conflicting lock instead of failing at once.
    pub fn with_lock_wait(mut self, wait: LockWait) -> Self {
        self.lock_wait = wait;
        self
    }

    /// True when [`InProcess::new`] would accept `env`: a location the library reaches. The
    /// flags are restic's `--cacert`, `--insecure-tls` (both taken here) and `--option
    /// <scheme>.connections=N` (which only bounds restic's own concurrency).
    pub fn supports(env: &EngineEnv) -> bool {
        let location = env.env.get("RESTIC_REPOSITORY").map_or("", String::as_str);
        stash_repo::location::supported(location)
    }

    fn open(&self) -> Result<Repository, EngineError> {
        // A repository created again under the same name has a new config (new id, new
        // random polynomial, encrypted under a new key): then it is opened afresh.
        let config = self.backend.read(FileKind::Config, "config").ok();
        if let (Some(config), Ok(opened)) = (&config, self.opened.lock()) {
            if let Some((_, repo)) = opened.as_ref().filter(|(seen, _)| seen == config) {
                return Ok(repo.clone());
            }
        }
        let repo = Repository::open(Arc::clone(&self.backend), self.password.as_bytes())
            .map_err(|e| engine_error("open", e))?;
        if let (Some(config), Ok(mut opened)) = (config, self.opened.lock()) {
            *opened = Some((config, repo.clone()));
        }
        Ok(repo)
    }
}

/// The TLS settings restic would take from `flags`: the CA file of `--cacert` (written from the
/// Secret's `CA_CERT_DATA` by [`super::backend::engine_env`]) and `--insecure-tls`.
fn tls_settings(flags: &[String]) -> Result<TlsSettings, Unsupported> {
    let mut tls = TlsSettings::default();
    let mut flags = flags.iter();
    while let Some(flag) = flags.next() {
        match flag.as_str() {
            "--cacert" => {
                let path = flags
                    .next()
                    .ok_or_else(|| Unsupported("--cacert without a file".to_owned()))?;
                let pem = std::fs::read(path).map_err(|e| {
                    Unsupported(format!(
                        "repository CA certificate (CA_CERT_DATA, file {path}): {e}"
                    ))
                })?;
                tls.ca_pem = Some(pem);
            }
            "--insecure-tls" => tls.insecure = true,
            _ => {}
        }
    }
    Ok(tls)
}

fn engine_error(command: &str, e: RepoError) -> EngineError {
    match e {
        RepoError::Missing(at) => EngineError::RepositoryMissing(at),
        RepoError::Locked(holder) => {
            EngineError::Locked(format!("repository is already locked {holder}"))
        }
        RepoError::Source(why) => EngineError::SourceFailed(why),
        e @ (RepoError::NotFound(_)
        | RepoError::BlobMissing(_)
        | RepoError::BlobHash { .. }
        | RepoError::Mac) => EngineError::Unreadable(e.to_string()),
        other => EngineError::Failed {
            command: command.to_owned(),
            status: other.reason().to_owned(),
            stderr: other.to_string(),
        },
    }
}

fn parse_ids(ids: &[String]) -> Result<Vec<Id>, EngineError> {
    ids.iter()
        .map(|s| Id::parse(s).map_err(|e| engine_error("forget", e)))
        .collect()
}

impl RepositoryEngine for InProcess {
    fn init_if_missing(&self) -> Result<bool, EngineError> {
        let exists = self
            .backend
            .exists(FileKind::Config, "config")
            .map_err(|e| engine_error("init", e))?;
        if exists {
            return Ok(false);
        }
        let repo = Repository::init(Arc::clone(&self.backend), self.password.as_bytes())
            .map_err(|e| engine_error("init", e))?;
        // The master key is at hand: the backup that follows a first-ever `init` need not
        // derive it again from the password (scrypt, about 90 ms before its dump may start).
        if let (Ok(config), Ok(mut opened)) = (
            self.backend.read(FileKind::Config, "config"),
            self.opened.lock(),
        ) {
            *opened = Some((config, repo));
        }
        Ok(true)
    }

    fn backup_stream(
        &self,
        source: &mut dyn Read,
        host: &str,
        filename: &str,
    ) -> Result<SnapshotSummary, EngineError> {
        stash_repo::timeline::mark("engine: open");
        let repo = self.open()?;
        stash_repo::timeline::mark("engine: opened");
        let options = stash_repo::BackupOptions {
            hostname: host.to_owned(),
            path: format!("/{}", filename.trim_start_matches('/')),
            ..stash_repo::BackupOptions::default()
        };
        let summary = stash_repo::backup_stream_locked(&repo, source, &options, &self.lock_wait)
            .map_err(|e| engine_error("backup", e))?;
        Ok(SnapshotSummary {
            snapshot_id: summary.snapshot_id.to_hex(),
            files_new: 1,
            files_changed: 0,
            files_unmodified: 0,
            total_files_processed: 1,
            data_added: summary.data_added,
            total_bytes_processed: summary.bytes,
        })
    }

    fn dump(
        &self,
        snapshot: &str,
        host: Option<&str>,
        filename: &str,
    ) -> Result<Box<dyn Read + Send>, EngineError> {
        let repo = self.open()?;
        let path = format!("/{}", filename.trim_start_matches('/'));
        let reader = stash_repo::open_file(&repo, snapshot, host, &path)
            .map_err(|e| engine_error("dump", e))?;
        Ok(Box::new(reader))
    }

    fn snapshots(&self, host: Option<&str>) -> Result<Vec<SnapshotInfo>, EngineError> {
        let repo = self.open()?;
        let list = repo.snapshots().map_err(|e| engine_error("snapshots", e))?;
        Ok(list
            .into_iter()
            .filter(|(_, s)| host.is_none_or(|h| s.hostname == h))
            .map(|(id, s)| SnapshotInfo {
                id: id.to_hex(),
                time: s.time,
                hostname: s.hostname,
                paths: s.paths,
                tags: s.tags,
            })
            .collect())
    }

    fn forget_snapshots(&self, ids: &[String], prune: bool) -> Result<(), EngineError> {
        if ids.is_empty() {
            return Ok(());
        }
        let repo = self.open()?;
        stash_repo::forget(&repo, &parse_ids(ids)?).map_err(|e| engine_error("forget", e))?;
        if prune {
            self.pruner.prune()?;
        }
        Ok(())
    }

    fn check(&self, read_data: bool) -> Result<(), EngineError> {
        let repo = self.open()?;
        let problems =
            stash_repo::check::check(&repo, read_data).map_err(|e| engine_error("check", e))?;
        if problems.is_empty() {
            return Ok(());
        }
        Err(EngineError::Failed {
            command: "check".to_owned(),
            status: "RepositoryDamaged".to_owned(),
            stderr: problems.join("\n"),
        })
    }

    fn stats(&self) -> Result<RepoStats, EngineError> {
        let repo = self.open()?;
        let index = repo.load_index().map_err(|e| engine_error("stats", e))?;
        let snapshots = repo.snapshots().map_err(|e| engine_error("stats", e))?;
        Ok(RepoStats {
            total_size: index.blobs.values().map(|l| l.length).sum(),
            snapshot_count: snapshots.len(),
        })
    }

    fn locks(&self) -> Result<Vec<LockInfo>, EngineError> {
        let repo = self.open()?;
        let locks = stash_repo::lock::list_locks(&repo).map_err(|e| engine_error("locks", e))?;
        Ok(locks
            .into_iter()
            .map(|(id, l)| LockInfo {
                id: id.to_hex(),
                time: l.time,
                exclusive: l.exclusive,
                hostname: l.hostname,
                pid: l.pid,
            })
            .collect())
    }

    fn remove_locks(&self, ids: &[String]) -> Result<(), EngineError> {
        for id in ids {
            self.backend
                .remove(FileKind::Lock, id)
                .map_err(|e| engine_error("unlock", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::datapath::restic_cli::CacheMode;

    fn engine(dir: &std::path::Path) -> InProcess {
        let env = EngineEnv {
            env: BTreeMap::from([
                ("RESTIC_REPOSITORY".to_owned(), dir.display().to_string()),
                ("RESTIC_PASSWORD".to_owned(), "pw".to_owned()),
            ]),
            flags: Vec::new(),
        };
        let pruner = ResticCli::new("restic", env.clone(), CacheMode::Disabled);
        InProcess::new(&env, pruner).unwrap()
    }

    #[test]
    fn tls_flags_keep_the_repository_in_process() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("repository-ca.crt");
        std::fs::write(&ca, b"PEM").unwrap();
        let env = EngineEnv {
            env: BTreeMap::from([(
                "RESTIC_REPOSITORY".to_owned(),
                "s3:https://minio.example:9000/bucket/prefix".to_owned(),
            )]),
            flags: [
                "--cacert",
                &ca.display().to_string(),
                "--option",
                "s3.connections=4",
                "--insecure-tls",
            ]
            .map(str::to_owned)
            .to_vec(),
        };
        // `--engine=auto` picks this engine for such a repository (`select_engine`).
        assert!(InProcess::supports(&env));
        let tls = tls_settings(&env.flags).unwrap();
        assert_eq!(tls.ca_pem.as_deref(), Some(&b"PEM"[..]));
        assert!(tls.insecure);
        assert_eq!(tls_settings(&[]).unwrap(), TlsSettings::default());
        let missing = ["--cacert", "/nonexistent/ca.crt"].map(str::to_owned);
        let err = tls_settings(&missing).unwrap_err().to_string();
        assert!(err.contains("CA_CERT_DATA"), "{err}");
        assert!(tls_settings(&["--cacert".to_owned()]).is_err());
    }

    #[test]
    fn the_key_is_derived_once_per_repository_not_per_call() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("repo");
        let engine = engine(&dir);
        assert!(engine.init_if_missing().unwrap());
        // Without its key files the repository cannot be opened again from the password; the
        // engine still holds the key it made at `init`, so the next calls (the backup's) need
        // none.
        std::fs::remove_dir_all(dir.join("keys")).unwrap();
        std::fs::create_dir(dir.join("keys")).unwrap();
        let mut dump = &b"INSERT 1;\n-- Dump completed\n"[..];
        engine
            .backup_stream(&mut dump, "host-0", "dumpfile.sql")
            .unwrap();
        assert_eq!(engine.snapshots(None).unwrap().len(), 1);
        // An engine that did not create the repository derives the key from the password.
        let other = self::engine(&dir);
        assert!(matches!(
            other.snapshots(None),
            Err(EngineError::Failed { .. })
        ));
        // A repository created again under the same name is opened afresh.
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(engine.init_if_missing().unwrap());
        assert!(engine.snapshots(None).unwrap().is_empty());
    }
}
