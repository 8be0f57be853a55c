//! `stash restore-mysql`: stream a snapshot into the database.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::backup_mysql::DUMP_FILENAME;
use crate::datapath::loader::{
    load_with_client, load_with_protocol, LoadError, LoadStats, LoaderKind,
};
use crate::datapath::mysql_client::{split_args, wait_for_database, DbTarget, NotReady};
use crate::datapath::parallel_loader::load_by_table;
use crate::datapath::{EngineError, RepositoryEngine};
use crate::job_support::flags::{DatabaseFlags, RepositoryFlags};
use crate::job_support::{finish, open_job, JobError, WAIT_INTERVAL};

/// Row connections of the parallel loader: one per core of the usual 2-core Job.
const PARALLEL_CONNECTIONS: usize = 2;

/// Flags of `stash restore-mysql` (Stash's names).
#[derive(Debug, Clone, clap::Args)]
pub struct RestoreMysqlArgs {
    /// Repository location and credentials.
    #[command(flatten)]
    pub repository: RepositoryFlags,
    /// Database and bookkeeping.
    #[command(flatten)]
    pub database: DatabaseFlags,
    /// Extra `mysql` client arguments, whitespace-split; when set, the client loader is used.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub mysql_args: String,
    /// Host whose snapshot to restore (default: --hostname).
    #[arg(long, default_value = "")]
    pub source_hostname: String,
    /// Snapshot id or `latest`.
    #[arg(long, default_value = "latest")]
    pub snapshot: String,
    /// `protocol` (own statement splitter, rows as `LOAD DATA`, batched transactions, one
    /// connection), `parallel` (same, batches of each table over two connections in turn) or
    /// `client` (the `mysql` program, as Stash).
    // The default is `parallel`: on quiet runs of the 2-core benchmark it restored the
    // 412.6 MB dump in 0.41x (stop 17) and 0.35x (stop 16) of plain `mysql`, against 0.48x and
    // 0.43x for `protocol` (bench/datapath/README.md); its peak RSS is about the same (90 MiB
    // against 87 MiB, examples/load_dump.rs). On a machine loaded by other builds it was no
    // faster (0.81-0.87x against 0.62-0.67x); `--loader=protocol` holds one connection only.
    #[arg(long, default_value = "parallel")]
    pub loader: LoaderKind,
}

/// Resolved inputs of a restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The `mysql` client.
    pub mysql_program: String,
    /// Extra client arguments; when non-empty the client loader is used so they take effect.
    pub mysql_args: Vec<String>,
    /// Snapshot id or `latest`.
    pub snapshot: String,
    /// Host filter; `None` takes any host (Stash with an empty hostname).
    pub host: Option<String>,
    /// Preferred loader.
    pub loader: LoaderKind,
    /// How long to wait for the database.
    pub wait_timeout: Duration,
    /// How often to ask it.
    pub wait_interval: Duration,
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The database never answered.
    #[error(transparent)]
    NotReady(#[from] NotReady),
    /// The repository failed before the stream started.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Loading failed.
    #[error(transparent)]
    Load(#[from] LoadError),
}

impl RestoreError {
    /// Stable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            RestoreError::NotReady(_) => "DatabaseNotReady",
            RestoreError::Engine(e) => e.reason(),
            RestoreError::Load(e) => e.reason(),
        }
    }
}

/// The loader a restore will use: the protocol loader cannot honour client arguments.
pub fn effective_loader(options: &RestoreOptions) -> LoaderKind {
    if options.mysql_args.is_empty() {
        options.loader
    } else {
        LoaderKind::Client
    }
}

/// Waits for the database and loads the snapshot's dump into it.
pub fn run_restore(
    engine: &dyn RepositoryEngine,
    target: &DbTarget,
    options: &RestoreOptions,
) -> Result<LoadStats, RestoreError> {
    wait_for_database(
        &options.mysql_program,
        target,
        &[],
        options.wait_timeout,
        options.wait_interval,
    )?;
    let stream = engine.dump(&options.snapshot, options.host.as_deref(), DUMP_FILENAME)?;
    let stats = match effective_loader(options) {
        LoaderKind::Protocol => load_with_protocol(stream, target)?,
        LoaderKind::Parallel => load_by_table(stream, target, PARALLEL_CONNECTIONS)?,
        LoaderKind::Client => {
            load_with_client(stream, target, &options.mysql_program, &options.mysql_args)?
        }
    };
    Ok(stats)
}

/// Entry point of `stash restore-mysql`.
pub fn run(args: &RestoreMysqlArgs) -> ExitCode {
    let started = Instant::now();
    let result = run_from_api(args).map(|_| Vec::new());
    finish(&args.database, started, result)
}

fn run_from_api(args: &RestoreMysqlArgs) -> Result<LoadStats, JobError> {
    let (_private, engine, target) = open_job(&args.repository, &args.database, "restore-")?;
    let db = &args.database;
    let host = if !args.source_hostname.is_empty() {
        Some(args.source_hostname.clone())
    } else if !db.hostname.is_empty() {
        Some(db.hostname.clone())
    } else {
        None
    };
    let options = RestoreOptions {
        mysql_program: db.mysql.clone(),
        mysql_args: split_args(&args.mysql_args),
        snapshot: args.snapshot.clone(),
        host,
        loader: args.loader,
        wait_timeout: Duration::from_secs(db.wait_timeout),
        wait_interval: WAIT_INTERVAL,
    };
    Ok(run_restore(&*engine, &target, &options)?)
}
