//! Commands the operator's own pods run: `create-backupsession` (the trigger CronJob),
//! `update-status` (the last step of every backup and restore Job) and `run-hook` (the hook
//! containers of hooked Jobs), plus `run`.

pub mod create_backupsession;
#[cfg(feature = "embedded")]
pub mod database_pod;
#[cfg(feature = "embedded")]
pub mod demo;
pub(crate) mod retry;
pub mod run;
pub mod run_hook;
pub mod session_status;
pub mod update_status;

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
