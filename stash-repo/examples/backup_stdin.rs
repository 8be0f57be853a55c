//! Backs up stdin into a local repository (created if missing) and prints the summary and this
//! process's peak RSS, both while opening the repository (scrypt's 32 MiB work buffer) and
//! while streaming: `RESTIC_PASSWORD=… backup_stdin REPO_DIR HOST < dump.sql`. With
//! `STREAM_PEAK=1` the peak is reset in between (through `/proc/self/clear_refs`), so the second
//! figure is the stream's alone; without it the figures are the whole process's, as
//! `/usr/bin/time -v` reports them. `ZSTD_LEVEL=n` compresses at level n instead of the default.

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
    let opening = peak_rss();
    if std::env::var_os("STREAM_PEAK").is_some() {
        // Writing 5 resets VmHWM (Linux 4.0 and later), so the next figure is the stream's own.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }
    let started = std::time::Instant::now();
    let summary = backup_stream(
        &repo,
        &mut std::io::stdin().lock(),
        &BackupOptions {
            hostname: host,
            compression: match std::env::var("ZSTD_LEVEL") {
                Ok(level) => level.parse().ok(),
                Err(_) => BackupOptions::default().compression,
            },
            ..BackupOptions::default()
        },
    )?;
    println!(
        "{summary:?} in {:.2}s; peak RSS after opening {opening}, at the end {}",
        started.elapsed().as_secs_f64(),
        peak_rss()
    );
    Ok(())
}

fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}
