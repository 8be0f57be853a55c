//! Backs up stdin into a local repository (created if missing) and prints the summary and this
//! process's peak RSS: `RESTIC_PASSWORD=… backup_stdin REPO_DIR HOST < dump.sql`.

use std::sync::Arc;

use stash_repo::{backup_stream, BackupOptions, LocalBackend, RepoError, Repository};

fn main() -> Result<(), RepoError> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "repo".into());
    let host = args.next().unwrap_or_else(|| "host-0".into());
    let password = std::env::var("RESTIC_PASSWORD").unwrap_or_default();
    let backend = Arc::new(LocalBackend::new(&dir));
    let repo = match Repository::open(backend.clone(), password.as_bytes()) {
        Err(RepoError::Missing(_)) => Repository::init(backend, password.as_bytes())?,
        other => other?,
    };
    let started = std::time::Instant::now();
    let summary = backup_stream(
        &repo,
        &mut std::io::stdin().lock(),
        &BackupOptions {
            hostname: host,
            ..BackupOptions::default()
        },
    )?;
    let peak = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or_default()
        .to_owned();
    println!(
        "{summary:?} in {:.2}s; {peak}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
