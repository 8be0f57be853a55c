//! `stash backup-mysql`: dump the database straight into the repository.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::block_on;
use crate::datapath::dump_source::DumpSource;
use crate::datapath::mysql_client::{
    dump_commands, split_args, split_multi_dump_args, wait_for_database, ClientOptionFile,
    DbTarget, NotReady,
};
use crate::datapath::{EngineError, RepositoryEngine, SnapshotSummary};
use crate::job_support::flags::{DatabaseFlags, RepositoryFlags};
use crate::job_support::output::{snapshot_stats, SnapshotStats};
use crate::job_support::{finish, kube_read, open_job, repository_lock, JobError, WAIT_INTERVAL};
use stash_core::plan::repository::{LockAdmission, LockHolders, RepositoryJob};
use stash_repo::timeline::mark;

/// The file each snapshot holds, as Stash names it.
pub const DUMP_FILENAME: &str = "dumpfile.sql";
/// The lock wait of [`run_backup`], as `--lock-wait`'s default.
pub const DEFAULT_LOCK_WAIT_SECS: u64 = 120;

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
    /// Stale locks removed before the backup (left by crashed jobs).
    pub stale_locks_removed: usize,
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

/// Waits for the database, creates the repository if needed, settles the repository's locks
/// by the core rule ([`repository_lock::settle`]: stale ones go, a live conflicting one is
/// waited for, then fails the backup), and streams the dump(s) into one new snapshot. Either the
/// whole dump is in the repository, or no snapshot was added. Each lock decision goes to
/// `on_locks`; a live conflicting lock is waited for at most `lock_wait`; `holders` tells which
/// pods of ours hold locks made on other hosts.
pub fn run_backup_with_locks(
    engine: &dyn RepositoryEngine,
    target: &DbTarget,
    options: &BackupOptions,
    lock_wait: Duration,
    holders: &mut dyn FnMut() -> LockHolders,
    on_locks: &mut dyn FnMut(&LockAdmission),
) -> Result<BackupReport, BackupError> {
    mark("backup-mysql: start");
    wait_for_database(
        &options.mysql_program,
        target,
        &[],
        options.wait_timeout,
        options.wait_interval,
    )?;
    mark("database ready");
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
    let mut initialized = false;
    let mut stale_locks_removed = 0;
    let mut waited = Duration::ZERO;
    let mut settle = |engine: &dyn RepositoryEngine, waited: &mut Duration| {
        repository_lock::settle(
            engine,
            RepositoryJob::Backup,
            lock_wait,
            waited,
            holders,
            &mut |a: &LockAdmission| {
                stale_locks_removed += a.remove.len();
                on_locks(a);
            },
        )
    };
    // The dump starts now, as in Stash's `mysqldump | restic backup --stdin`, and runs while
    // the repository's key is derived and its locks are read (~80 ms of scrypt); its output
    // waits in the read-ahead queue. If a lock had to be waited out, that dump is dropped
    // (killed) rather than kept open in its transaction, and a new one starts after.
    let mut first_dump = source();
    first_dump
        .start()
        .map_err(|e| EngineError::SourceFailed(e.to_string()))?;
    // Locks first: a stale lock does not keep a backup out, but it would keep out the
    // retention after it. A missing repository has none and is created below.
    match settle(engine, &mut waited) {
        Err(EngineError::RepositoryMissing(_)) => {
            initialized = engine.init_if_missing()?;
        }
        other => other?,
    }
    mark("locks settled");
    let mut early = waited.is_zero().then_some(first_dump);
    // A missing repository is created once; a lock taken between the look and the backup is
    // settled again by the same rule, within the same wait.
    let mut tried_init = initialized;
    let summary = loop {
        let mut dump = early.take().unwrap_or_else(source);
        match engine.backup_stream(&mut dump, &options.hostname, DUMP_FILENAME) {
            Err(EngineError::RepositoryMissing(_)) if !tried_init => {
                tried_init = true;
                initialized = engine.init_if_missing()?;
            }
            Err(EngineError::Locked(_)) => settle(engine, &mut waited)?,
            other => break other?,
        }
    };
    mark("backup-mysql: done");
    Ok(BackupReport {
        summary,
        initialized,
        stale_locks_removed,
        stream_time: started.elapsed(),
    })
}

/// [`run_backup_with_locks`] with the default lock wait, recording no lock decisions.
pub fn run_backup(
    engine: &dyn RepositoryEngine,
    target: &DbTarget,
    options: &BackupOptions,
) -> Result<BackupReport, BackupError> {
    let wait = Duration::from_secs(DEFAULT_LOCK_WAIT_SECS);
    run_backup_with_locks(
        engine,
        target,
        options,
        wait,
        &mut LockHolders::default,
        &mut |_| {},
    )
}

/// Entry point of `stash backup-mysql`.
pub fn run(args: &BackupMysqlArgs) -> ExitCode {
    let started = Instant::now();
    let result = run_from_api(args);
    finish(&args.database, started, result)
}

fn run_from_api(args: &BackupMysqlArgs) -> Result<Vec<SnapshotStats>, JobError> {
    let (_private, engine, target) = open_job(&args.repository, &args.database, "backup-")?;
    let db = &args.database;
    let options = BackupOptions {
        mysql_program: db.mysql.clone(),
        mysqldump_program: args.mysqldump.clone(),
        mysql_args: split_args(&args.mysql_args),
        multi_dump_args: split_multi_dump_args(&args.multi_dump_args),
        hostname: db.hostname.clone(),
        wait_timeout: Duration::from_secs(db.wait_timeout),
        wait_interval: WAIT_INTERVAL,
    };
    // The Repository shows what was done about its locks; a failed write only loses the note.
    let mut on_locks = |admission: &LockAdmission| {
        if args.backupsession.is_empty() {
            return;
        }
        let written = block_on(async {
            let client = kube_read::client().await?;
            repository_lock::record_condition(
                &client,
                &db.namespace,
                &args.backupsession,
                admission,
            )
            .await
            .map_err(|e| JobError::Kube(e.to_string()))
        });
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("repository lock condition not recorded: {e}"),
            Err(e) => eprintln!("repository lock condition not recorded: {e}"),
        }
    };
    // Which pods of ours hold the locks made on other hosts; without an answer, restic's
    // rules alone decide.
    let mut holders = || {
        if args.backupsession.is_empty() {
            return LockHolders::default();
        }
        let found = block_on(async {
            let client = kube_read::client().await?;
            repository_lock::lock_holders(&client, &db.namespace, &args.backupsession)
                .await
                .map_err(|e| JobError::Kube(e.to_string()))
        });
        match found {
            Ok(Ok(holders)) => holders,
            Ok(Err(e)) => {
                eprintln!("the pods holding repository locks are unknown: {e}");
                LockHolders::default()
            }
            Err(e) => {
                eprintln!("the pods holding repository locks are unknown: {e}");
                LockHolders::default()
            }
        }
    };
    // `--lock-wait` bounds both the wait for a live lock seen before the backup and the
    // engine's own wait when one races in.
    let lock_wait = args.repository.lock_wait;
    let report = run_backup_with_locks(
        &*engine,
        &target,
        &options,
        lock_wait,
        &mut holders,
        &mut on_locks,
    )?;
    if report.stale_locks_removed > 0 {
        eprintln!(
            "removed {} stale repository lock(s) left by crashed jobs",
            report.stale_locks_removed
        );
    }
    Ok(vec![snapshot_stats(
        &report.summary,
        DUMP_FILENAME,
        report.stream_time,
    )])
}
