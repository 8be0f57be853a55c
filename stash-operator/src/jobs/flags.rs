//! Flags shared by `backup-mysql` and `restore-mysql`, named as in Stash's MySQL addon.

use std::path::PathBuf;

use crate::datapath::backend::{BackendConfig, BackendError, Provider};

/// Where the repository is and how to reach it.
#[derive(Debug, Clone, clap::Args)]
pub struct RepositoryFlags {
    /// Storage provider: local, s3, gcs, azure, swift, b2 or rest.
    #[arg(long)]
    pub provider: String,
    /// Bucket or container (the mount path for `local`).
    #[arg(long, default_value = "")]
    pub bucket: String,
    /// S3 endpoint or REST server URL.
    #[arg(long, default_value = "")]
    pub endpoint: String,
    /// S3 region.
    #[arg(long, default_value = "")]
    pub region: String,
    /// Skip TLS verification of the storage endpoint.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub insecure_tls: bool,
    /// Prefix inside the bucket.
    #[arg(long, default_value = "")]
    pub path: String,
    /// Parallel connections for gcs, azure and b2 (0: engine default).
    #[arg(long, default_value_t = 0)]
    pub max_connections: u32,
    /// Secret holding RESTIC_PASSWORD and the provider's credentials.
    #[arg(long)]
    pub storage_secret_name: String,
    /// Namespace of that Secret.
    #[arg(long)]
    pub storage_secret_namespace: String,
    /// Directory for the cache and credential files.
    #[arg(long, default_value = "/stash-tmp")]
    pub scratch_dir: PathBuf,
    /// Keep restic's cache in `<scratch-dir>/restic-cache`.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub enable_cache: bool,
    /// The restic program.
    #[arg(long, default_value = "restic")]
    pub restic: String,
    /// Repository engine: `auto` (in process where supported, else the restic program),
    /// `in-process`, or `restic`.
    #[arg(long, default_value = "auto")]
    pub engine: EngineKind,
    /// How long a backup waits for another process's exclusive lock on the repository (a
    /// `prune`, `forget` or `check`) before it fails as locked (Go duration; `0s`: fail at
    /// once, as restic 0.14 does). The in-process engine only: the restic program's backup
    /// reads the dump while it locks, so it cannot wait without losing the stream.
    #[arg(long, default_value = "2m", value_parser = parse_lock_wait)]
    pub lock_wait: std::time::Duration,
}

fn parse_lock_wait(text: &str) -> Result<std::time::Duration, String> {
    stash_core::duration::parse_go_duration_millis(text)
        .map(std::time::Duration::from_millis)
        .map_err(|e| format!("--lock-wait: {e}"))
}

/// Which engine talks to the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// In process for local repositories, the restic program for the others.
    Auto,
    /// The `stash-repo` library in this process.
    InProcess,
    /// The stock `restic` program.
    Restic,
}

impl RepositoryFlags {
    /// The backend configuration these flags describe.
    pub fn backend(&self) -> Result<BackendConfig, BackendError> {
        Ok(BackendConfig {
            provider: Provider::parse(&self.provider)?,
            bucket: self.bucket.clone(),
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            prefix: self.path.clone(),
            insecure_tls: self.insecure_tls,
            max_connections: self.max_connections,
        })
    }
}

/// Which database, and the job's bookkeeping.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseFlags {
    /// AppBinding of the database.
    #[arg(long)]
    pub appbinding: String,
    /// Namespace of the AppBinding (default: --namespace).
    #[arg(long, default_value = "")]
    pub appbinding_namespace: String,
    /// Namespace of the job.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Host name the snapshots belong to.
    #[arg(long, default_value = "host-0")]
    pub hostname: String,
    /// Seconds to wait for the database to answer `SELECT 1`.
    #[arg(long, default_value_t = 0)]
    pub wait_timeout: u64,
    /// Where output.json goes.
    #[arg(long, default_value = "/stash-tmp/output")]
    pub output_dir: PathBuf,
    /// The `mysql` client program.
    #[arg(long, default_value = "mysql")]
    pub mysql: String,
    /// Exit 1 when the backup or restore failed (Stash exits 0 and reports only in output.json).
    #[arg(long, default_value_t = false)]
    pub strict_exit: bool,
    /// Stash's license check endpoint: accepted and unused (no licence is needed).
    #[arg(long, default_value = "")]
    pub license_apiservice: String,
}

impl DatabaseFlags {
    /// The AppBinding's namespace.
    pub fn appbinding_namespace(&self) -> &str {
        if self.appbinding_namespace.is_empty() {
            &self.namespace
        } else {
            &self.appbinding_namespace
        }
    }
}

/// The session, invoker and target a Job-side command works for (`update-status`,
/// `run-hook`), and Stash's metrics flags, accepted for compatibility.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SessionFlags {
    /// The BackupSession (backup Jobs).
    #[arg(long, default_value = "")]
    pub backupsession: String,
    /// The RestoreSession (restore Jobs).
    #[arg(long, default_value = "")]
    pub restoresession: String,
    /// Invoker kind.
    #[arg(long, default_value = "")]
    pub invoker_kind: String,
    /// Invoker name.
    #[arg(long, default_value = "")]
    pub invoker_name: String,
    /// Target kind.
    #[arg(long, default_value = "")]
    pub target_kind: String,
    /// Target name.
    #[arg(long, default_value = "")]
    pub target_name: String,
    /// Target namespace (default: the session's).
    #[arg(long, default_value = "")]
    pub target_namespace: String,
    /// Accepted for Stash compatibility; metrics are served by the operator.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub metrics_enabled: bool,
    /// Accepted for Stash compatibility.
    #[arg(long, default_value = "")]
    pub metrics_pushgateway_url: String,
    /// Accepted for Stash compatibility.
    #[arg(long, value_delimiter = ',')]
    pub metrics_labels: Vec<String>,
}

impl SessionFlags {
    /// The target as the flags name it.
    pub fn target(&self) -> stash_core::plan::update_status::FlagTarget {
        stash_core::plan::update_status::FlagTarget {
            kind: self.target_kind.clone(),
            name: self.target_name.clone(),
            namespace: self.target_namespace.clone(),
        }
    }

    /// The invoker of a BackupSession: its `spec.invoker`, else `--invoker-name`.
    pub fn invoker_of(&self, session: &stash_core::api::BackupSession) -> String {
        session
            .spec
            .invoker
            .as_ref()
            .map(|i| i.name.clone())
            .unwrap_or_else(|| self.invoker_name.clone())
    }

    /// The RestoreSession's name: `--restoresession`, else `--invoker-name`.
    pub fn restore_session(&self) -> &str {
        if self.restoresession.is_empty() {
            &self.invoker_name
        } else {
            &self.restoresession
        }
    }
}
