//! Streams `/dumpfile.sql` of the latest snapshot of a local repository to stdout, as a restore
//! feeds the loader (for profiles of the read path):
//! `RESTIC_PASSWORD=… dump_file REPO_DIR > dump.sql`.

use std::sync::Arc;

use stash_repo::{open_file, LocalBackend, RepoError, Repository};

fn main() -> Result<(), RepoError> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "repo".into());
    let password = std::env::var("RESTIC_PASSWORD").unwrap_or_default();
    let repo = Repository::open(Arc::new(LocalBackend::new(&dir)), password.as_bytes())?;
    let mut reader = open_file(&repo, "latest", None, "/dumpfile.sql")?;
    let copied = std::io::copy(&mut reader, &mut std::io::stdout().lock())
        .map_err(|e| RepoError::Storage(format!("stdout: {e}")))?;
    eprintln!("{copied} bytes");
    Ok(())
}
