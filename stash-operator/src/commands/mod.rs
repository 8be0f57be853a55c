//! Every subcommand of `stash`, one module each, named as the subcommand:
//!
//! - user commands: `render`, `crds` (offline) and `trigger`;
//! - the operator: `run` (with `--embedded` / `--demo`);
//! - what the operator's pods run: `create-backupsession` (the trigger CronJob),
//!   `backup-mysql` and `restore-mysql` (backup and restore Jobs), `run-hook` (their hook
//!   containers), `update-status` (the last step of every Job) and `wipe-out-repository`.
//!
//! What the Job-side commands share (flags, API reads, the AppBinding, `output.json`) is in
//! [`crate::job_support`].

pub mod backup_mysql;
pub mod crds;
pub mod create_backupsession;
pub mod render;
pub mod restore_mysql;
pub mod run;
pub mod run_hook;
pub mod trigger;
pub mod update_status;
pub mod wipe_out_repository;

/// The small runtime of a short-lived command: one thread, timers and I/O.
pub(crate) fn small_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Runs `work` on a small runtime (the one `block_on` of every short-lived command: the API
/// reads are async, the data path is not).
pub(crate) fn block_on<T>(work: impl std::future::Future<Output = T>) -> std::io::Result<T> {
    Ok(small_runtime()?.block_on(work))
}

use std::io::{ErrorKind, Write};

/// Writes `text` to stdout. A reader that went away (`stash crds | head -1`) is no error: the
/// rest of the output is simply not wanted.
pub fn print_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
