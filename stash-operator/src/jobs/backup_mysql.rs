//! `stash backup-mysql`: dump the database straight into the repository.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::flags::{DatabaseFlags, RepositoryFlags};
use super::output::{snapshot_stats, SnapshotStats};
use super::{block_on, engine_from_api, finish, kube_read, JobError, WAIT_INTERVAL};
use crate::datapath::dump_source::DumpSource;
use crate::datapath::mysql_client::{
    dump_commands, split_args, split_multi_dump_args, wait_for_database, ClientOptionFile,
    DbTarget, NotReady,
};
use crate::datapath::{EngineError, RepositoryEngine, SnapshotSummary};

/// The file each snapshot holds, as Stash names it.
pub const DUMP_FILENAME: &str = "dumpfile.sql";

/// Flags of `stash backup-mysql` (Stash's names).
#[derive(Debug, Clone, clap::Args)]
pub struct BackupMysqlArgs {
    /// Repository location and credentials.
    #[command(flatten)]
    pub repository: RepositoryFlags,
    /// Database and bookkeeping.
    #[command(flatten)]
    pub database: DatabaseFlags,
    /// Arguments for the dump, whitespace-split (no quoting), as in Stash.
    #[arg(long, default_value = "--all-databases", allow_hyphen_values = true)]
    pub mysql_args: String,
    /// Dumps to concatenate, each `$args=<args>`; replaces the single dump.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub multi_dump_args: String,
    /// The BackupSession this run belongs to (recorded by update-status).
    #[arg(long, default_value = "")]
    pub backupsession: String,
    /// The dump program.
    #[arg(long, default_value = "mysqldump")]
    pub mysqldump: String,
    /// Stash's retention flags: accepted and unused, as in Stash (retention runs in
    /// `update-status`, from the BackupConfiguration).
    #[command(flatten)]
    pub retention: RetentionFlags,
}

/// `--retention-*` flags of Stash's backup Function.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RetentionFlags {
    /// Unused.
    #[arg(long, default_value = "0")]
    pub retention_keep_last: String,
    /// Unused.
    #[arg(long, default_value = "0")]
    pub retention_keep_hourly: String,
    /// Unused.
    #[arg(long, default_value = "0")]
    pub retention_keep_daily: String,
    /// Unused.
    #[arg(long, default_value = "0")]
    pub retention_keep_weekly: String,
    /// Unused.
    #[arg(long, default_value = "0")]
    pub retention_keep_monthly: String,
    /// Unused.
    #[arg(long, default_value = "0")]
    pub retention_keep_yearly: String,
    /// Unused.
    #[arg(long, default_value = "")]
    pub retention_keep_tags: String,
    /// Unused.
    #[arg(long, default_value = "false")]
    pub retention_prune: String,
    /// Unused.
    #[arg(long, default_value = "false")]
    pub retention_dry_run: String,
}

/// Resolved inputs of a backup.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The `mysql` client (for the readiness check).
    pub mysql_program: String,
    /// The dump program.
    pub mysqldump_program: String,
    /// Arguments for every dump.
    pub mysql_args: Vec<String>,
    /// One entry per dump when non-empty.
    pub multi_dump_args: Vec<Vec<String>>,
    /// Snapshot host.
    pub hostname: String,
    /// How long to wait for the database.
    pub wait_timeout: Duration,
    /// How often to ask it.
    pub wait_interval: Duration,
}

/// What a backup stored.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The engine's summary.
    pub summary: SnapshotSummary,
    /// True when this run created the repository.
    pub initialized: bool,
    /// True when the repository was locked and stale locks were removed before the retry.
    pub stale_locks_removed: bool,
    /// Wall time of the streaming part.
    pub stream_time: Duration,
}

/// Why a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The database never answered.
    #[error(transparent)]
    NotReady(#[from] NotReady),
    /// The repository or the dump failed (no snapshot counts).
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl BackupError {
    /// Stable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            BackupError::NotReady(_) => "DatabaseNotReady",
            BackupError::Engine(e) => e.reason(),
        }
    }
}

/// Waits for the database, creates the repository if needed, and streams the dump(s) into one
/// new snapshot. Either the whole dump is in the repository, or no snapshot was added.
pub fn run_backup(
    engine: &dyn RepositoryEngine,
    target: &DbTarget,
    options: &BackupOptions,
) -> Result<BackupReport, BackupError> {
    wait_for_database(
        &options.mysql_program,
        target,
        &[],
        options.wait_timeout,
        options.wait_interval,
    )?;
    // One option file for every dump of this backup; removed when the backup ends.
    let client_options = ClientOptionFile::write(target).map_err(|e| {
        EngineError::SourceFailed(format!("cannot write the client option file: {e}"))
    })?;
    let source = || {
        DumpSource::new(dump_commands(
            &options.mysqldump_program,
            target,
            &client_options,
            &options.mysql_args,
            &options.multi_dump_args,
        ))
    };
    let started = Instant::now();
    // No separate existence probe: restic opens the repository before it reads any input, so
    // a missing one costs only the dump's first read, which is thrown away with its process.
    let mut initialized = false;
    let mut tried_init = false;
    let mut stale_locks_removed = false;
    // At most one retry per cause: a missing repository is created, a lock is retried once
    // after removing locks restic can prove stale (older than its limit, or from a dead process
    // of this host); a live lock makes the backup fail.
    let summary = loop {
        match engine.backup_stream(&mut source(), &options.hostname, DUMP_FILENAME) {
            Err(EngineError::RepositoryMissing(_)) if !tried_init => {
                tried_init = true;
                initialized = engine.init_if_missing()?;
            }
            Err(EngineError::Locked(_)) if !stale_locks_removed => {
                engine.unlock_stale()?;
                stale_locks_removed = true;
            }
            other => break other?,
        }
    };
    Ok(BackupReport {
        summary,
        initialized,
        stale_locks_removed,
        stream_time: started.elapsed(),
    })
}

/// Entry point of `stash backup-mysql`.
pub fn run(args: &BackupMysqlArgs) -> ExitCode {
    let started = Instant::now();
    let result = run_from_api(args);
    finish(&args.database, started, result)
}

fn run_from_api(args: &BackupMysqlArgs) -> Result<Vec<SnapshotStats>, JobError> {
    std::fs::create_dir_all(&args.repository.scratch_dir)?;
    // Credential files live here and are removed when the run ends.
    let private = tempfile::Builder::new()
        .prefix("backup-")
        .tempdir_in(&args.repository.scratch_dir)?;
    let db = &args.database;
    let (engine, target) = block_on(async {
        let client = kube_read::client().await?;
        let engine = engine_from_api(&client, &args.repository, private.path()).await?;
        let target = kube_read::read_db_target(
            &client,
            db.appbinding_namespace(),
            &db.appbinding,
            private.path(),
        )
        .await?;
        Ok::<_, JobError>((engine, target))
    })??;
    let options = BackupOptions {
        mysql_program: db.mysql.clone(),
        mysqldump_program: args.mysqldump.clone(),
        mysql_args: split_args(&args.mysql_args),
        multi_dump_args: split_multi_dump_args(&args.multi_dump_args),
        hostname: db.hostname.clone(),
        wait_timeout: Duration::from_secs(db.wait_timeout),
        wait_interval: WAIT_INTERVAL,
    };
    let report = run_backup(&*engine, &target, &options)?;
    Ok(vec![snapshot_stats(
        &report.summary,
        DUMP_FILENAME,
        report.stream_time,
    )])
}
