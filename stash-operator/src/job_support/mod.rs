//! What the commands run inside Jobs share (`backup-mysql`, `restore-mysql`,
//! `wipe-out-repository`, `update-status`, `run-hook`): their flags, reads from the API, the
//! AppBinding and its Secret, the repository engine, `output.json` and the session status.
//!
//! Each command has a core that takes resolved inputs (engine, database, options) and does the
//! work, and a thin layer that reads the storage Secret and the AppBinding from the API (here)
//! and writes `output.json`.

pub mod appbinding;
pub mod flags;
pub mod kube_read;
pub mod output;
pub mod repository_lock;
pub(crate) mod retry;
pub mod service_address;
pub mod session_status;

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::datapath::backend::{engine_env, BackendError};
use crate::datapath::in_process::InProcess;
use crate::datapath::mysql_client::DbTarget;
use crate::datapath::restic_cli::{CacheMode, ResticCli};
use crate::datapath::RepositoryEngine;
use output::{HostPhase, HostStats, Output, SnapshotStats, TargetRef, TargetStatus};

/// Why a job command failed, with a stable reason for conditions and metrics.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Reading from the Kubernetes API failed.
    #[error("{0}")]
    Kube(String),
    /// The repository flags or storage Secret are wrong.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The AppBinding or its Secret are wrong.
    #[error(transparent)]
    AppBinding(#[from] appbinding::AppBindingError),
    /// The backup failed.
    #[error(transparent)]
    Backup(#[from] crate::commands::backup_mysql::BackupError),
    /// The restore failed.
    #[error(transparent)]
    Restore(#[from] crate::commands::restore_mysql::RestoreError),
    /// Deleting the repository's files failed.
    #[error(transparent)]
    WipeOut(#[from] crate::datapath::wipe_out::WipeOutError),
    /// The chosen engine cannot serve this repository.
    #[error(transparent)]
    Engine(#[from] crate::datapath::in_process::Unsupported),
    /// Local files (scratch directory) failed.
    #[error("scratch directory: {0}")]
    Io(#[from] std::io::Error),
}

impl JobError {
    /// Stable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            JobError::Kube(_) => "KubernetesReadFailed",
            JobError::Backend(e) => e.reason(),
            JobError::AppBinding(e) => e.reason(),
            JobError::Backup(e) => e.reason(),
            JobError::Restore(e) => e.reason(),
            JobError::WipeOut(e) => e.reason(),
            JobError::Engine(_) => "EngineUnsupported",
            JobError::Io(_) => "ScratchDirUnwritable",
        }
    }
}

/// Exit codes of the job commands.
pub mod exit {
    /// Succeeded, or (without `--strict-exit`) failed with the failure recorded in output.json.
    pub const OK: u8 = 0;
    /// Failed (only with `--strict-exit`); output.json says why.
    pub const FAILED: u8 = 1;
    /// output.json could not be written.
    pub const NO_OUTPUT: u8 = 2;
}

/// The repository engine for the repository flags and storage Secret; credential files go in
/// `private` (a per-run directory).
pub async fn engine_from_api(
    client: &kube::Client,
    repo: &flags::RepositoryFlags,
    private: &Path,
) -> Result<Box<dyn RepositoryEngine>, JobError> {
    let backend = repo.backend()?;
    let secret = kube_read::read_secret(
        client,
        &repo.storage_secret_namespace,
        &repo.storage_secret_name,
    )
    .await?;
    let env = engine_env(&backend, &secret, private)?;
    let cache = if repo.enable_cache {
        CacheMode::Dir(repo.scratch_dir.join("restic-cache"))
    } else {
        CacheMode::Disabled
    };
    let cli = ResticCli::new(&repo.restic, env.clone(), cache);
    select_engine_waiting(
        repo.engine,
        &env,
        cli,
        stash_repo::LockWait::up_to(repo.lock_wait),
    )
}

/// What a database Job opens before it starts: a private per-run directory under the scratch
/// directory (credential files live there and go with it), the repository engine and the
/// database target, both read from the API.
pub fn open_job(
    repo: &flags::RepositoryFlags,
    db: &flags::DatabaseFlags,
    prefix: &str,
) -> Result<(tempfile::TempDir, Box<dyn RepositoryEngine>, DbTarget), JobError> {
    std::fs::create_dir_all(&repo.scratch_dir)?;
    let private = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&repo.scratch_dir)?;
    let (engine, target) = crate::commands::block_on(async {
        let client = kube_read::client().await?;
        let engine = engine_from_api(&client, repo, private.path()).await?;
        let target = kube_read::read_db_target(
            &client,
            db.appbinding_namespace(),
            &db.appbinding,
            private.path(),
        )
        .await?;
        Ok::<_, JobError>((engine, target))
    })??;
    Ok((private, engine, target))
}

/// The engine `kind` asks for; `auto` runs in process where the library reaches the storage.
pub fn select_engine(
    kind: flags::EngineKind,
    env: &crate::datapath::backend::EngineEnv,
    cli: ResticCli,
) -> Result<Box<dyn RepositoryEngine>, JobError> {
    select_engine_waiting(kind, env, cli, stash_repo::LockWait::default())
}

/// [`select_engine`] whose in-process backups wait up to `lock_wait` for a conflicting lock.
pub fn select_engine_waiting(
    kind: flags::EngineKind,
    env: &crate::datapath::backend::EngineEnv,
    cli: ResticCli,
    lock_wait: stash_repo::LockWait,
) -> Result<Box<dyn RepositoryEngine>, JobError> {
    Ok(match kind {
        flags::EngineKind::Restic => Box::new(cli),
        flags::EngineKind::Auto if !InProcess::supports(env) => Box::new(cli),
        flags::EngineKind::Auto | flags::EngineKind::InProcess => {
            Box::new(InProcess::new(env, cli)?.with_lock_wait(lock_wait))
        }
    })
}

/// Writes output.json for one host and picks the exit code.
pub(crate) fn finish(
    db: &flags::DatabaseFlags,
    started: Instant,
    result: Result<Vec<SnapshotStats>, JobError>,
) -> ExitCode {
    let failed = result.is_err();
    let stats = match result {
        Ok(snapshots) => HostStats {
            hostname: db.hostname.clone(),
            phase: HostPhase::Succeeded,
            duration: output::go_duration(started.elapsed()),
            snapshots,
            error: String::new(),
        },
        Err(err) => {
            eprintln!("{} ({})", err, err.reason());
            HostStats {
                hostname: db.hostname.clone(),
                phase: HostPhase::Failed,
                duration: output::go_duration(started.elapsed()),
                snapshots: Vec::new(),
                error: err.to_string(),
            }
        }
    };
    let out = Output {
        target_status: TargetStatus {
            target_ref: TargetRef::appbinding(&db.appbinding, db.appbinding_namespace()),
            stats: vec![stats],
        },
    };
    if let Err(err) = output::write_output(&db.output_dir, &out) {
        eprintln!(
            "cannot write {}/output.json: {err}",
            db.output_dir.display()
        );
        return ExitCode::from(exit::NO_OUTPUT);
    }
    if failed && db.strict_exit {
        ExitCode::from(exit::FAILED)
    } else {
        ExitCode::from(exit::OK)
    }
}

/// Poll interval while waiting for the database.
pub(crate) const WAIT_INTERVAL: Duration = Duration::from_secs(2);
