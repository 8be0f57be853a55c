//! `stash create-backupsession`: run by the trigger CronJob's pod; creates the BackupSession
//! `<bc>-<unix seconds>` of its BackupConfiguration, named after the Job's scheduled time so
//! that the name does not depend on when the pod happened to start.

use super::retry::retrying;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use stash_core::api::{BackupConfiguration, BackupSession};
use std::process::ExitCode;

/// Annotation the CronJob controller puts on the Jobs it creates (Kubernetes ≥ 1.28).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Arguments of `create-backupsession`.
#[derive(Debug, clap::Args)]
pub struct CreateBackupSessionArgs {
    /// Name of the invoker.
    #[arg(long)]
    pub invoker_name: String,
    /// Kind of the invoker (only BackupConfiguration).
    #[arg(long, default_value = "BackupConfiguration")]
    pub invoker_kind: String,
    /// Namespace; default: $POD_NAMESPACE, else the service account's, else `default`.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
}

/// Why a session could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The invoker kind is not supported.
    #[error("--invoker-kind {0:?} is not supported (only BackupConfiguration)")]
    Kind(String),
    /// The API failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// No client configuration.
    #[error("no Kubernetes client: {0}")]
    Client(String),
}

fn namespace(args: &CreateBackupSessionArgs) -> String {
    args.namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .map(|s| s.trim().to_string())
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into())
        })
}

/// The unix time this trigger stands for: the scheduled time of the Job that runs this pod,
/// else (outside a CronJob's pod) now. A failed read is an error, never "now": a retried pod
/// must name the session it may already have created.
async fn trigger_time(client: &kube::Client, ns: &str) -> Result<i64, kube::Error> {
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let Ok(pod_name) = std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")) else {
        return Ok(now);
    };
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let Some(pod) = retrying(|| pods.get_opt(&pod_name)).await? else {
        return Ok(now);
    };
    let job_name = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("job-name"))
        .cloned();
    let Some(job_name) = job_name else {
        return Ok(now);
    };
    let jobs = Api::<Job>::namespaced(client.clone(), ns);
    let Some(job) = retrying(|| jobs.get_opt(&job_name)).await? else {
        return Ok(now);
    };
    Ok(job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SCHEDULED_TIMESTAMP))
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(|t| t.as_second())
        .unwrap_or(now))
}

/// Creates the session; an existing session of the same name (a retried pod, or a create
/// whose answer was lost) is success. Transient API failures are retried.
pub async fn create(
    client: &kube::Client,
    args: &CreateBackupSessionArgs,
) -> Result<String, CreateError> {
    if args.invoker_kind != "BackupConfiguration" {
        return Err(CreateError::Kind(args.invoker_kind.clone()));
    }
    let ns = namespace(args);
    let configurations = Api::<BackupConfiguration>::namespaced(client.clone(), &ns);
    let bc = retrying(|| configurations.get(&args.invoker_name)).await?;
    let retry_left = bc
        .spec
        .retry_config
        .as_ref()
        .and_then(|r| r.max_retry)
        .unwrap_or(0);
    let session = stash_core::plan::backup_session::new_session(
        &bc,
        trigger_time(client, &ns).await?,
        retry_left,
    );
    let name = session.metadata.name.clone().unwrap_or_default();
    let sessions = Api::<BackupSession>::namespaced(client.clone(), &ns);
    let params = PostParams::default();
    match retrying(|| sessions.create(&params, &session)).await {
        Ok(_) => Ok(name),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(name),
        Err(e) => Err(e.into()),
    }
}

/// Entry point.
pub fn run(args: &CreateBackupSessionArgs) -> ExitCode {
    let result = super::block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| CreateError::Client(e.to_string()))?;
        create(&client, args).await
    });
    match result {
        Ok(Ok(name)) => {
            println!("created BackupSession {name}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("create-backupsession: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("create-backupsession: {e}");
            ExitCode::FAILURE
        }
    }
}
