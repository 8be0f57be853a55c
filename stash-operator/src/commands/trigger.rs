//! `stash trigger BC [-n NAMESPACE]`: an instant backup, as `kubectl stash trigger` takes one:
//! a BackupSession with `generateName: <bc>-`, the invoker labels, `spec.invoker` and the
//! configuration as its controller. Prints the name the API server gave it.

use clap::Args;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use stash_core::api::{BackupConfiguration, BackupSession};
use std::process::ExitCode;

/// Arguments of `stash trigger`.
#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// The BackupConfiguration to back up now.
    pub backup_configuration: String,
    /// Its namespace; default: the kubeconfig context's.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// Why no session was created.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// The configuration does not exist.
    #[error("BackupConfiguration {namespace}/{name} not found")]
    NotFound {
        /// Namespace looked in.
        namespace: String,
        /// Name looked for.
        name: String,
    },
    /// The API failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// No client configuration.
    #[error("no Kubernetes client: {0}")]
    Client(String),
}

/// Creates the session for `namespace/name` and returns its name.
pub async fn trigger(client: &Client, namespace: &str, name: &str) -> Result<String, TriggerError> {
    let bc = Api::<BackupConfiguration>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?
        .ok_or_else(|| TriggerError::NotFound {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })?;
    let session = stash_core::plan::backup_session::manual_session(&bc);
    // A plain create, never an apply: every trigger is a new session.
    let created = Api::<BackupSession>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &session)
        .await?;
    Ok(created.name_any())
}

/// Entry point: prints the session's name, or an error with exit status 1.
pub fn run(args: &TriggerArgs) -> ExitCode {
    let result = crate::commands::block_on(async {
        let client = Client::try_default()
            .await
            .map_err(|e| TriggerError::Client(e.to_string()))?;
        let namespace = args
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| client.default_namespace().to_string());
        trigger(&client, &namespace, &args.backup_configuration).await
    });
    let error = match result {
        Ok(Ok(name)) => match super::print_stdout(&format!("{name}\n")) {
            Ok(()) => return ExitCode::SUCCESS,
            Err(e) => e.to_string(),
        },
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    eprintln!("stash trigger: {error}");
    ExitCode::FAILURE
}
