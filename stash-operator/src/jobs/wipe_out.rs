//! `wipe-out-repository`: run by the Job the operator creates when a Repository with
//! `spec.wipeOut: true` is deleted; deletes the repository's files from the backend.

use std::process::ExitCode;

use super::flags::RepositoryFlags;
use super::{kube_read, JobError};
use crate::datapath::wipe_out::wipe_out;

/// Arguments of `wipe-out-repository`: the backend, as backup Jobs get it.
#[derive(Debug, Clone, clap::Args)]
pub struct WipeOutArgs {
    /// Where the repository is.
    #[command(flatten)]
    pub repository: RepositoryFlags,
}

/// Deletes the repository's files; exit 1 (with the reason on stderr) if that fails.
pub fn run(args: &WipeOutArgs) -> ExitCode {
    match super::block_on(wipe(args))
        .map_err(JobError::from)
        .and_then(|r| r)
    {
        Ok(n) => {
            println!("wiped out the repository: {n} files deleted");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wipe-out failed ({}): {e}", e.reason());
            ExitCode::FAILURE
        }
    }
}

async fn wipe(args: &WipeOutArgs) -> Result<usize, JobError> {
    let repo = &args.repository;
    let backend = repo.backend()?;
    let client = kube_read::client().await?;
    let secret = kube_read::read_secret(
        &client,
        &repo.storage_secret_namespace,
        &repo.storage_secret_name,
    )
    .await?;
    Ok(wipe_out(&backend, &secret).await?)
}
