//! `stash`: the operator binary, the commands its Jobs run, and user commands.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// jemalloc, not the system allocator: the operator allocates and frees many small objects
/// (watch events, caches, request bodies), where glibc's malloc/free took a fifth of its CPU
/// and left more of its heap resident (bench/controlplane/README.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// stash-rs: Stash-compatible MySQL backup and restore for Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "stash", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print every object the operator would create, change or delete for a set of objects.
    Render(stash_operator::commands::render::RenderArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crds,
    /// Back up now: create a BackupSession for a BackupConfiguration (as `kubectl stash trigger`).
    Trigger(stash_operator::commands::trigger::TriggerArgs),
    /// Dump a MySQL database into the repository (run by backup Jobs).
    BackupMysql(Box<stash_operator::commands::backup_mysql::BackupMysqlArgs>),
    /// Restore a MySQL database from the repository (run by restore Jobs).
    RestoreMysql(Box<stash_operator::commands::restore_mysql::RestoreMysqlArgs>),
    /// Delete a repository's files from its backend (run when a Repository with wipeOut goes).
    WipeOutRepository(Box<stash_operator::commands::wipe_out_repository::WipeOutArgs>),
    /// Create a BackupSession for a BackupConfiguration (run by the trigger CronJob).
    CreateBackupsession(stash_operator::commands::create_backupsession::CreateBackupSessionArgs),
    /// Record a Job's results in the session and Repository status (last step of every Job).
    UpdateStatus(Box<stash_operator::commands::update_status::UpdateStatusArgs>),
    /// Run a backup or restore hook and record its condition (the hook containers of Jobs).
    RunHook(Box<stash_operator::commands::run_hook::RunHookArgs>),
    /// Run the operator (against the current cluster, or --embedded / --demo).
    Run(Box<stash_operator::commands::run::RunArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Render(args) => stash_operator::commands::render::run(&args),
        Command::Crds => stash_operator::commands::crds::run(),
        Command::Trigger(args) => stash_operator::commands::trigger::run(&args),
        Command::BackupMysql(args) => stash_operator::commands::backup_mysql::run(&args),
        Command::RestoreMysql(args) => stash_operator::commands::restore_mysql::run(&args),
        Command::WipeOutRepository(args) => {
            stash_operator::commands::wipe_out_repository::run(&args)
        }
        Command::CreateBackupsession(args) => {
            stash_operator::commands::create_backupsession::run(&args)
        }
        Command::UpdateStatus(args) => stash_operator::commands::update_status::run(&args),
        Command::RunHook(args) => stash_operator::commands::run_hook::run(&args),
        Command::Run(args) => stash_operator::commands::run::run(&args),
    }
}
