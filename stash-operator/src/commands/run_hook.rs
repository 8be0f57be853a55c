//! `stash run-hook`: the `pre-task-hook` / `post-task-hook` containers of hooked Jobs
//! (Stash's `run-hook`, stash.md §9). Reads the hook from the invoker, skips it when it already
//! ran or its `executionPolicy` says so, runs it (in the database pod for AppBinding targets),
//! and records `<Pre|Post><Backup|Restore>HookExecutionSucceeded`. A failed pre hook also
//! records the host as failed and exits non-zero, so the Job stops before the backup or
//! restore; a failed post hook exits 0 and fails the session through its condition.

use std::path::PathBuf;
use std::process::ExitCode;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use stash_core::api::{
    BackupConfiguration, BackupSession, Condition, HookHandler, HostBackupStats, HostRestoreStats,
    RestoreSession, TargetRef,
};
use stash_core::conditions::{self, NewCondition};
use stash_core::hooks::{self, ExecutionPolicy, HookType, Summary};
use stash_core::plan::update_status::{target_status, target_status_mut};

use super::session_status::{modify_backup_session, modify_restore_session};
use crate::hooks::{executor_pod, HookError};
use crate::jobs::flags::SessionFlags;

/// Arguments of `run-hook` (Stash's flags).
#[derive(Debug, clap::Args)]
pub struct RunHookArgs {
    /// Session, invoker and target.
    #[command(flatten)]
    pub session: SessionFlags,
    /// preBackup, postBackup, preRestore or postRestore.
    #[arg(long)]
    pub hook_type: String,
    /// The host being backed up or restored.
    #[arg(long, default_value = "host-0")]
    pub hostname: String,
    /// Accepted for Stash compatibility (status is written through the API).
    #[arg(long, default_value = "")]
    pub output_dir: PathBuf,
    /// Namespace of the session; default: $POD_NAMESPACE, the service account's, the
    /// kubeconfig's.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
}

/// Why `run-hook` could not do its job (as opposed to the hook failing).
#[derive(Debug, thiserror::Error)]
pub enum RunHookError {
    /// Bad flags or objects.
    #[error("{0}")]
    Invalid(String),
    /// The API failed.
    #[error("{0}")]
    Kube(String),
}

impl From<kube::Error> for RunHookError {
    fn from(e: kube::Error) -> Self {
        RunHookError::Kube(e.to_string())
    }
}

/// Entry point.
pub fn run(args: &RunHookArgs) -> ExitCode {
    let result = match super::block_on(execute(args)) {
        Ok(r) => r,
        Err(e) => Err(RunHookError::Invalid(e.to_string())),
    };
    match result {
        Ok(Outcome::Done(note)) => {
            println!("{note}");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Failed { note, stop_job }) => {
            eprintln!("{note}");
            if stop_job {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("run-hook: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What happened.
#[derive(Debug)]
pub enum Outcome {
    /// Ran, skipped, or already done.
    Done(String),
    /// The hook failed; `stop_job` for pre hooks.
    Failed {
        /// What to print.
        note: String,
        /// Exit non-zero so the Job stops.
        stop_job: bool,
    },
}

/// The hook of the invoker, its policy and what it runs against.
struct Loaded {
    handler: HookHandler,
    policy: ExecutionPolicy,
    summary: Summary,
    existing: Option<Condition>,
}

fn namespace(args: &RunHookArgs, client: &kube::Client) -> String {
    args.namespace
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| client.default_namespace().to_string())
}

/// Runs the hook and records the outcome.
pub async fn execute(args: &RunHookArgs) -> Result<Outcome, RunHookError> {
    let hook = HookType::parse(&args.hook_type).map_err(RunHookError::Invalid)?;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| RunHookError::Kube(format!("no Kubernetes client: {e}")))?;
    let ns = namespace(args, &client);
    let flags = &args.session;
    let target = TargetRef {
        api_version: None,
        kind: Some(flags.target_kind.clone()).filter(|k| !k.is_empty()),
        name: Some(flags.target_name.clone()).filter(|n| !n.is_empty()),
        namespace: Some(if flags.target_namespace.is_empty() {
            ns.clone()
        } else {
            flags.target_namespace.clone()
        }),
    };
    let loaded = load(&client, &ns, flags, hook, &target).await?;
    let what = hook.as_str();

    // Idempotent: a hook that already ran is not run again; one that failed stays failed.
    if let Some(c) = &loaded.existing {
        if c.status == conditions::FALSE {
            return Ok(Outcome::Failed {
                note: format!(
                    "{what} hook failed earlier: {}",
                    c.message.clone().unwrap_or_default()
                ),
                stop_job: hook.is_pre(),
            });
        }
        return Ok(Outcome::Done(format!("{what} hook already executed")));
    }
    if !loaded
        .policy
        .allows(&loaded.summary.phase, loaded.summary.retry_left)
    {
        let cond = hook.skipped(loaded.policy, &loaded.summary.phase);
        let note = cond.message.clone();
        record(&client, &ns, args, hook, &target, cond, None).await?;
        return Ok(Outcome::Done(note));
    }

    let result = run_action(&client, &ns, &target, &loaded).await;
    match result {
        Ok(output) => {
            record(&client, &ns, args, hook, &target, hook.succeeded(), None).await?;
            let output = output.trim();
            Ok(Outcome::Done(if output.is_empty() {
                format!("{what} hook executed")
            } else {
                format!("{what} hook executed; output:\n{output}")
            }))
        }
        Err(e) => {
            let error = e.to_string();
            // Stash records a failed pre hook as the host's result too: no backup step runs.
            let host_error = hook.is_pre().then_some(error.as_str());
            record(
                &client,
                &ns,
                args,
                hook,
                &target,
                hook.failed(&error),
                host_error,
            )
            .await?;
            Ok(Outcome::Failed {
                note: format!("{what} hook failed: {error}"),
                stop_job: hook.is_pre(),
            })
        }
    }
}

async fn run_action(
    client: &kube::Client,
    ns: &str,
    target: &TargetRef,
    loaded: &Loaded,
) -> Result<String, HookError> {
    let mut handler = loaded.handler.clone();
    render_templates(&mut handler, &loaded.summary).map_err(HookError::Invalid)?;
    let pod = if crate::hooks::needs_pod(&handler) {
        Some(executor(client, ns, target).await?)
    } else {
        None
    };
    crate::hooks::run(client, &handler, pod.as_ref()).await
}

/// Exec command elements and the httpPost body holding `{{` are templates (Stash renders
/// nothing else).
fn render_templates(handler: &mut HookHandler, summary: &Summary) -> Result<(), String> {
    if let Some(cmd) = handler.exec.as_mut().and_then(|e| e.command.as_mut()) {
        for part in cmd.iter_mut().filter(|p| p.contains("{{")) {
            *part = hooks::render(part, summary)?;
        }
    }
    if let Some(body) = handler
        .http_post
        .as_mut()
        .and_then(|p| p.body.as_mut())
        .filter(|b| b.contains("{{"))
    {
        *body = hooks::render(body, summary)?;
    }
    Ok(())
}

/// The pod a hook runs in: the database pod for AppBinding targets, else this pod.
async fn executor(client: &kube::Client, ns: &str, target: &TargetRef) -> Result<Pod, HookError> {
    let target_ns = target.namespace.clone().unwrap_or_else(|| ns.to_string());
    if target.kind.as_deref() == Some("AppBinding") {
        let name = target.name.clone().unwrap_or_default();
        return executor_pod::for_appbinding(client, &target_ns, &name).await;
    }
    let own =
        std::env::var("POD_NAME").map_err(|_| HookError::NoPod("POD_NAME is not set".into()))?;
    Api::<Pod>::namespaced(client.clone(), ns)
        .get(&own)
        .await
        .map_err(|e| HookError::Kube(format!("pod {ns}/{own}: {e}")))
}

/// The invoker's hook of type `hook`, its policy, the session summary its templates see, and
/// the condition an earlier run recorded: from the BackupConfiguration of the BackupSession,
/// or from the RestoreSession.
async fn load(
    client: &kube::Client,
    ns: &str,
    flags: &SessionFlags,
    hook: HookType,
    target: &TargetRef,
) -> Result<Loaded, RunHookError> {
    let (owner, pre, post, summary, recorded_conditions) = if hook.is_backup() {
        if flags.backupsession.is_empty() {
            return Err(RunHookError::Invalid(format!(
                "--backupsession is required for a {} hook",
                hook.as_str()
            )));
        }
        let session = Api::<BackupSession>::namespaced(client.clone(), ns)
            .get(&flags.backupsession)
            .await?;
        let invoker = flags.invoker_of(&session);
        let bc = Api::<BackupConfiguration>::namespaced(client.clone(), ns)
            .get(&invoker)
            .await?;
        let hooks_spec = bc.spec.hooks.unwrap_or_default();
        let recorded = session
            .status
            .as_ref()
            .and_then(|s| target_status(s, target))
            .and_then(|t| t.conditions.clone());
        (
            format!("BackupConfiguration {ns}/{invoker}"),
            hooks_spec.pre_backup,
            hooks_spec.post_backup,
            hooks::backup_summary(&session, target),
            recorded,
        )
    } else {
        let name = flags.restore_session();
        if name.is_empty() {
            return Err(RunHookError::Invalid(format!(
                "--restoresession is required for a {} hook",
                hook.as_str()
            )));
        }
        let rs = Api::<RestoreSession>::namespaced(client.clone(), ns)
            .get(name)
            .await?;
        let hooks_spec = rs.spec.hooks.clone().unwrap_or_default();
        (
            format!("RestoreSession {ns}/{name}"),
            hooks_spec.pre_restore,
            hooks_spec.post_restore,
            hooks::restore_summary(&rs, target),
            rs.status.as_ref().and_then(|s| s.conditions.clone()),
        )
    };
    let missing = || RunHookError::Invalid(format!("no {} hook found in {owner}", hook.as_str()));
    let (handler, policy) = if hook.is_pre() {
        (pre.ok_or_else(missing)?, None)
    } else {
        let post = post.ok_or_else(missing)?;
        (post.handler, post.execution_policy)
    };
    let policy = ExecutionPolicy::parse(policy.as_deref()).map_err(RunHookError::Invalid)?;
    let existing =
        hooks::recorded(recorded_conditions.as_deref().unwrap_or_default(), hook).cloned();
    Ok(Loaded {
        handler,
        policy,
        summary,
        existing,
    })
}

/// Writes the hook's condition (and, for a failed pre hook, the failed host) to the session.
async fn record(
    client: &kube::Client,
    ns: &str,
    args: &RunHookArgs,
    hook: HookType,
    target: &TargetRef,
    cond: NewCondition<'static>,
    host_error: Option<&str>,
) -> Result<(), RunHookError> {
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    if hook.is_backup() {
        modify_backup_session(client, ns, &args.session.backupsession, |status| {
            let entry = target_status_mut(status, target);
            let conds = entry.conditions.get_or_insert_with(Vec::new);
            conditions::set(conds, cond.clone(), None, &now);
            if let Some(error) = host_error {
                let stats = entry.stats.get_or_insert_with(Vec::new);
                stats.retain(|h| h.hostname.as_deref() != Some(args.hostname.as_str()));
                stats.push(HostBackupStats {
                    hostname: Some(args.hostname.clone()),
                    phase: Some("Failed".into()),
                    error: Some(error.to_string()),
                    ..Default::default()
                });
            }
        })
        .await?;
    } else {
        let name = args.session.restore_session();
        let generation = Api::<RestoreSession>::namespaced(client.clone(), ns)
            .get(name)
            .await?
            .metadata
            .generation;
        modify_restore_session(client, ns, name, |status| {
            let conds = status.conditions.get_or_insert_with(Vec::new);
            conditions::set(conds, cond.clone(), generation, &now);
            if let Some(error) = host_error {
                let stats = status.stats.get_or_insert_with(Vec::new);
                stats.retain(|h| h.hostname.as_deref() != Some(args.hostname.as_str()));
                stats.push(HostRestoreStats {
                    hostname: Some(args.hostname.clone()),
                    phase: Some("Failed".into()),
                    error: Some(error.to_string()),
                    ..Default::default()
                });
            }
        })
        .await?;
    }
    Ok(())
}
