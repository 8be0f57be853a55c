//! `stash update-status`: the last step of a backup or restore Job. Reads `output.json` and
//! carries out what `stash_core::plan::update_status` decides: after a successful backup the
//! repository actions it asks for, one by one (retention forgets exactly the snapshots
//! `retention::select` chose), then the session's status (optimistic concurrency, retried), the
//! Repository's status and the events. A session always gets a result: a missing or unreadable
//! `output.json` is recorded as a failed host.

use crate::datapath::{RepositoryEngine, SnapshotInfo};
use crate::job_support::flags::{RepositoryFlags, SessionFlags};
use crate::job_support::output::read_output;
use crate::operator::apply::kube_event;
use crate::operator::events::OnceEvents;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Recorder, Reporter};
use stash_core::api::{BackupConfiguration, BackupSession, Repository, RestoreSession};
use stash_core::plan::repository::status_from_report;
use stash_core::plan::update_status::{
    plan_restore, Action, ActionResult, BackupInputs, BackupUpdate, RepositoryUpdate, RestoreInputs,
};
use stash_core::plan::EventSpec;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `update-status` (Stash's flags).
#[derive(Debug, clap::Args)]
pub struct UpdateStatusArgs {
    /// Repository flags, as the backup step got them.
    #[command(flatten)]
    pub repository: RepositoryFlags,
    /// Session, invoker and target.
    #[command(flatten)]
    pub session: SessionFlags,
    /// Namespace of the session.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Where `output.json` is.
    #[arg(long, default_value = "/stash-tmp/output")]
    pub output_dir: PathBuf,
}

/// Why update-status failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The API failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// Other.
    #[error("{0}")]
    Other(String),
}

/// Entry point.
pub fn run(args: &UpdateStatusArgs) -> ExitCode {
    let result = if !args.session.backupsession.is_empty() {
        update_backup(args)
    } else if !args.session.restoresession.is_empty() {
        update_restore(args)
    } else {
        Err(UpdateError::Other(
            "one of --backupsession or --restoresession is required".into(),
        ))
    };
    match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("update-status: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One runtime for the whole command: the API client's worker lives on it between steps.
struct Runtime(tokio::runtime::Runtime);

impl Runtime {
    fn new() -> Result<Runtime, UpdateError> {
        super::small_runtime()
            .map(Runtime)
            .map_err(|e| UpdateError::Other(e.to_string()))
    }

    fn block_on<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, UpdateError>>,
    ) -> Result<T, UpdateError> {
        self.0.block_on(work)
    }
}

async fn client() -> Result<kube::Client, UpdateError> {
    kube::Client::try_default()
        .await
        .map_err(|e| UpdateError::Other(format!("no Kubernetes client: {e}")))
}

fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}

fn update_backup(args: &UpdateStatusArgs) -> Result<String, UpdateError> {
    let ns = args.namespace.clone();
    let name = args.session.backupsession.clone();
    let rt = Runtime::new()?;
    let (client, session, configuration) = rt.block_on(async {
        let client = client().await?;
        let session = Api::<BackupSession>::namespaced(client.clone(), &ns)
            .get(&name)
            .await?;
        let invoker = args.session.invoker_of(&session);
        let bc = Api::<BackupConfiguration>::namespaced(client.clone(), &ns)
            .get_opt(&invoker)
            .await?;
        Ok((client, session, bc))
    })?;
    let inputs = BackupInputs {
        namespace: ns.clone(),
        session,
        configuration,
        output: read_output(&args.output_dir),
        flag_target: args.session.target(),
        now: now(),
    };

    let mut update = BackupUpdate::start(&inputs);
    let mut engine = Engine::Unopened;
    while let Some(action) = update.next_action() {
        let result = engine.run(&rt, &client, &args.repository, &action);
        update.record(result);
    }
    let plan = update.finish();

    let reference = ObjectReference {
        api_version: Some("stash.appscode.com/v1beta1".into()),
        kind: Some("BackupSession".into()),
        name: Some(name.clone()),
        namespace: Some(ns.clone()),
        uid: inputs.session.metadata.uid.clone(),
        ..Default::default()
    };
    rt.block_on(async {
        crate::job_support::session_status::modify_backup_session(&client, &ns, &name, |status| {
            plan.session.apply(status)
        })
        .await?;
        if let Some(repository) = &plan.repository {
            write_repository_status(&client, repository).await?;
        }
        publish(&client, &plan.events, &reference).await;
        Ok(())
    })?;
    Ok(plan.summary)
}

/// The repository engine, opened at the first action that needs it.
enum Engine {
    Unopened,
    Open {
        engine: Box<dyn RepositoryEngine>,
        // Holds the engine's private files (cache, credentials) until the command ends.
        _private: tempfile::TempDir,
    },
    Unavailable(String),
}

impl Engine {
    fn run(
        &mut self,
        rt: &Runtime,
        client: &kube::Client,
        flags: &RepositoryFlags,
        action: &Action,
    ) -> ActionResult {
        if let Engine::Unopened = self {
            *self = match Self::open(rt, client, flags) {
                Ok((engine, private)) => Engine::Open {
                    engine,
                    _private: private,
                },
                Err(e) => Engine::Unavailable(e),
            };
        }
        let engine = match self {
            Engine::Open { engine, .. } => engine,
            Engine::Unavailable(e) => return ActionResult::Failed(e.clone()),
            Engine::Unopened => return ActionResult::Failed("no repository engine".into()),
        };
        let result = match action {
            Action::ListSnapshots => engine
                .snapshots(None)
                .and_then(|list| list.iter().map(SnapshotInfo::for_retention).collect())
                .map(ActionResult::Snapshots),
            Action::Forget { ids, prune } => engine
                .forget_snapshots(ids, *prune)
                .map(|()| ActionResult::Done),
            Action::Check => engine.check(false).map(|()| ActionResult::Done),
            Action::Stats => engine.stats().map(|s| ActionResult::Stats {
                total_size: s.total_size,
                snapshot_count: s.snapshot_count as u64,
            }),
        };
        result.unwrap_or_else(|e| ActionResult::Failed(e.to_string()))
    }

    fn open(
        rt: &Runtime,
        client: &kube::Client,
        flags: &RepositoryFlags,
    ) -> Result<(Box<dyn RepositoryEngine>, tempfile::TempDir), String> {
        let private = tempfile::Builder::new()
            .prefix("update-status-")
            .tempdir_in(std::env::temp_dir())
            .map_err(|e| e.to_string())?;
        let engine = rt
            .block_on(async {
                crate::job_support::engine_from_api(client, flags, private.path())
                    .await
                    .map_err(|e| UpdateError::Other(e.to_string()))
            })
            .map_err(|e| e.to_string())?;
        Ok((engine, private))
    }
}

async fn write_repository_status(
    client: &kube::Client,
    update: &RepositoryUpdate,
) -> Result<(), UpdateError> {
    let api = Api::<Repository>::namespaced(client.clone(), &update.namespace);
    for attempt in 0.. {
        let repo = api.get(&update.name).await?;
        let status = status_from_report(repo.status.as_ref(), &update.report);
        let patch = serde_json::json!({"metadata": {"resourceVersion": repo.metadata.resource_version}, "status": status});
        match api
            .patch_status(&update.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 10 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Publishes the planned events; they are best effort. A named event (every host event is)
/// is created under its name, so a repeat of this step finds it instead of adding a second,
/// and a create that failed in a way worth repeating (a 5xx, a 429, a lost answer) is tried
/// again: one that took effect before its answer was lost is then answered AlreadyExists.
pub async fn publish(client: &kube::Client, events: &[EventSpec], reference: &ObjectReference) {
    let reporter = Reporter {
        controller: "stash-status-updater".into(),
        instance: None,
    };
    let once = OnceEvents::new(reporter.clone());
    let recorder = Recorder::new(client.clone(), reporter);
    for e in events {
        let result = match &e.name {
            Some(name) => {
                let mut attempt = 1;
                loop {
                    match once.publish(client, name, e, reference).await {
                        Err(err) if attempt < EVENT_ATTEMPTS && worth_repeating(&err) => {
                            attempt += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(200 * attempt))
                                .await;
                        }
                        other => break other,
                    }
                }
            }
            None => recorder.publish(&kube_event(e), reference).await,
        };
        if let Err(err) = result {
            eprintln!("update-status: event {:?} not published: {err}", e.reason);
        }
    }
}

/// How many times a named event's create is tried.
const EVENT_ATTEMPTS: u64 = 4;

/// Whether a failed create may succeed when repeated: the server's or the network's trouble,
/// not a refusal of the request.
fn worth_repeating(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

fn update_restore(args: &UpdateStatusArgs) -> Result<String, UpdateError> {
    let ns = args.namespace.clone();
    let name = args.session.restoresession.clone();
    let output = read_output(&args.output_dir);
    Runtime::new()?.block_on(async {
        let client = client().await?;
        let session = Api::<RestoreSession>::namespaced(client.clone(), &ns)
            .get(&name)
            .await?;
        let reference = ObjectReference {
            api_version: Some("stash.appscode.com/v1beta1".into()),
            kind: Some("RestoreSession".into()),
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: session.metadata.uid.clone(),
            ..Default::default()
        };
        let plan = plan_restore(&RestoreInputs {
            namespace: ns.clone(),
            session,
            output,
        });
        crate::job_support::session_status::modify_restore_session(&client, &ns, &name, |status| {
            plan.apply(status)
        })
        .await?;
        publish(&client, &plan.events, &reference).await;
        Ok(plan.summary)
    })
}
