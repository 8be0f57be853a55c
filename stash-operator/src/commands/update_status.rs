//! `stash update-status`: the last step of a backup or restore Job. Reads `output.json`, and
//! after a successful backup applies retention, checks the repository and records its size;
//! then writes the host results into the session's status (optimistic concurrency, retried) and
//! the Repository's status, and publishes events. A session always gets a result: a missing or
//! unreadable `output.json` is recorded as a failed host.

use crate::datapath::{RepositoryEngine, RetentionPolicy as EngineRetention};
use crate::jobs::flags::RepositoryFlags;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde::Deserialize;
use stash_core::api::{
    BackupConfiguration, BackupSession, Condition, HostBackupStats, HostRestoreStats, Repository,
    RetentionPolicy, TargetRef,
};
use stash_core::conditions::{self, NewCondition};
use stash_core::plan::backup_session::condition::{
    REPOSITORY_INTEGRITY_VERIFIED, REPOSITORY_METRICS_PUSHED, RETENTION_POLICY_APPLIED,
};
use stash_core::plan::repository::{status_from_report, RepositoryReport};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `update-status` (Stash's flags).
#[derive(Debug, clap::Args)]
pub struct UpdateStatusArgs {
    /// Repository flags, as the backup step got them.
    #[command(flatten)]
    pub repository: RepositoryFlags,
    /// Namespace of the session.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// The BackupSession (backup Jobs).
    #[arg(long, default_value = "")]
    pub backupsession: String,
    /// The RestoreSession (restore Jobs).
    #[arg(long, default_value = "")]
    pub restoresession: String,
    /// Invoker kind.
    #[arg(long, default_value = "")]
    pub invoker_kind: String,
    /// Invoker name.
    #[arg(long, default_value = "")]
    pub invoker_name: String,
    /// Target kind.
    #[arg(long, default_value = "")]
    pub target_kind: String,
    /// Target name.
    #[arg(long, default_value = "")]
    pub target_name: String,
    /// Target namespace.
    #[arg(long, default_value = "")]
    pub target_namespace: String,
    /// Where `output.json` is.
    #[arg(long, default_value = "/stash-tmp/output")]
    pub output_dir: PathBuf,
    /// Accepted for Stash compatibility; metrics are served by the operator.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub metrics_enabled: bool,
    /// Accepted for Stash compatibility.
    #[arg(long, default_value = "")]
    pub metrics_pushgateway_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutputFile {
    target_status: OutputTarget,
}

#[derive(Debug, Deserialize)]
struct OutputTarget {
    #[serde(rename = "ref", default)]
    target_ref: TargetRef,
    #[serde(default)]
    stats: Vec<serde_json::Value>,
}

/// Reads `<dir>/output.json`.
fn read_output(dir: &Path) -> Result<OutputTarget, String> {
    let path = dir.join("output.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e} (the backup or restore step did not finish)",
            path.display()
        )
    })?;
    let file: OutputFile =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(file.target_status)
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
    let result = if !args.backupsession.is_empty() {
        update_backup(args)
    } else if !args.restoresession.is_empty() {
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

fn failed_host(hostname: &str, error: String) -> HostBackupStats {
    HostBackupStats {
        hostname: Some(hostname.into()),
        phase: Some("Failed".into()),
        error: Some(error),
        ..Default::default()
    }
}

fn update_backup(args: &UpdateStatusArgs) -> Result<String, UpdateError> {
    let ns = args.namespace.clone();
    let rt = Runtime::new()?;
    let (client, session, bc) = rt.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| UpdateError::Other(format!("no Kubernetes client: {e}")))?;
        let session = Api::<BackupSession>::namespaced(client.clone(), &ns)
            .get(&args.backupsession)
            .await?;
        let invoker = session
            .spec
            .invoker
            .as_ref()
            .map(|i| i.name.clone())
            .unwrap_or_else(|| args.invoker_name.clone());
        let bc = Api::<BackupConfiguration>::namespaced(client.clone(), &ns)
            .get_opt(&invoker)
            .await?;
        Ok((client, session, bc))
    })?;
    let host = bc
        .as_ref()
        .and_then(|b| b.spec.target.as_ref())
        .and_then(|t| t.alias.clone())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "host-0".into());
    let (target_ref, stats) = match read_output(&args.output_dir) {
        Ok(out) => {
            let stats: Vec<HostBackupStats> = out
                .stats
                .into_iter()
                .filter_map(|v| serde_json::from_value(v).ok())
                .collect();
            let stats = if stats.is_empty() {
                vec![failed_host(&host, "output.json has no host results".into())]
            } else {
                stats
            };
            (out.target_ref, stats)
        }
        Err(e) => (TargetRef::default(), vec![failed_host(&host, e)]),
    };
    let succeeded = stats
        .iter()
        .all(|s| s.phase.as_deref() == Some("Succeeded"));
    let now = || {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
    };

    // Post-backup actions, each stopping the rest when it fails (Stash's order).
    let mut session_conds: Vec<Condition> = Vec::new();
    let mut report = RepositoryReport {
        session_created: session.metadata.creation_timestamp.clone(),
        ..Default::default()
    };
    if succeeded {
        let private = tempfile::Builder::new()
            .prefix("update-status-")
            .tempdir_in(std::env::temp_dir())
            .map_err(|e| UpdateError::Other(e.to_string()))?;
        let engine = rt.block_on(async {
            crate::jobs::engine_from_api(&client, &args.repository, private.path())
                .await
                .map_err(|e| UpdateError::Other(e.to_string()))
        });
        match engine {
            Err(e) => conditions::set(
                &mut session_conds,
                NewCondition::no(
                    RETENTION_POLICY_APPLIED,
                    "FailedToApplyRetentionPolicy",
                    format!("Failed to apply retention policy. Reason: {e}"),
                ),
                None,
                &now(),
            ),
            Ok(engine) => post_backup(
                &*engine,
                bc.as_ref().and_then(|b| b.spec.retention_policy.as_ref()),
                &mut session_conds,
                &mut report,
                &now,
            ),
        }
    }

    let target_ref = if target_ref.name.is_none() {
        TargetRef {
            api_version: Some("appcatalog.appscode.com/v1alpha1".into()),
            kind: Some(args.target_kind.clone())
                .filter(|k| !k.is_empty())
                .or(Some("AppBinding".into())),
            name: Some(args.target_name.clone()),
            namespace: Some(if args.target_namespace.is_empty() {
                ns.clone()
            } else {
                args.target_namespace.clone()
            }),
        }
    } else {
        target_ref
    };
    rt.block_on(async {
        write_backup_status(
            &client,
            &ns,
            &args.backupsession,
            &target_ref,
            &stats,
            &session_conds,
        )
        .await?;
        if report.integrity.is_some() || report.snapshot_count.is_some() {
            if let Some(repo_ref) = bc.as_ref().and_then(|b| b.spec.repository.clone()) {
                let repo_ns = repo_ref
                    .namespace
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| ns.clone());
                write_repository_status(&client, &repo_ns, &repo_ref.name, &report).await?;
            }
        }
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "stash-status-updater".into(),
                instance: None,
            },
        );
        let reference = ObjectReference {
            api_version: Some("stash.appscode.com/v1beta1".into()),
            kind: Some("BackupSession".into()),
            name: Some(args.backupsession.clone()),
            namespace: Some(ns.clone()),
            uid: session.metadata.uid.clone(),
            ..Default::default()
        };
        for s in &stats {
            let ok = s.phase.as_deref() == Some("Succeeded");
            let host = s.hostname.clone().unwrap_or_default();
            let note = if ok {
                format!(
                    "backup succeeded for host {host:?} of {:?}/{:?}",
                    target_ref.kind.clone().unwrap_or_default(),
                    target_ref.name.clone().unwrap_or_default()
                )
            } else {
                format!(
                    "backup failed for host {host:?} of {:?}/{:?}. Reason: {}",
                    target_ref.kind.clone().unwrap_or_default(),
                    target_ref.name.clone().unwrap_or_default(),
                    s.error.clone().unwrap_or_default()
                )
            };
            let event = Event {
                type_: if ok {
                    EventType::Normal
                } else {
                    EventType::Warning
                },
                reason: if ok {
                    "HostBackupSucceeded".into()
                } else {
                    "HostBackupFailed".into()
                },
                note: Some(note.chars().take(1000).collect()),
                action: "UpdateStatus".into(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&event, &reference).await {
                eprintln!("update-status: event not published: {e}");
            }
        }
        Ok(())
    })?;
    let snapshots: Vec<String> = stats
        .iter()
        .flat_map(|s| s.snapshots.iter().flatten())
        .filter_map(|s| s.name.clone())
        .collect();
    Ok(format!(
        "BackupSession {ns}/{}: {} (snapshots: {})",
        args.backupsession,
        if succeeded { "Succeeded" } else { "Failed" },
        if snapshots.is_empty() {
            "none".into()
        } else {
            snapshots.join(", ")
        }
    ))
}

fn post_backup(
    engine: &dyn RepositoryEngine,
    policy: Option<&RetentionPolicy>,
    conds: &mut Vec<Condition>,
    report: &mut RepositoryReport,
    now: &dyn Fn() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) {
    let keep = |v: Option<i64>| v.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32;
    let engine_policy = policy.map(|p| EngineRetention {
        keep_last: keep(p.keep_last),
        keep_hourly: keep(p.keep_hourly),
        keep_daily: keep(p.keep_daily),
        keep_weekly: keep(p.keep_weekly),
        keep_monthly: keep(p.keep_monthly),
        keep_yearly: keep(p.keep_yearly),
        keep_tags: p.keep_tags.clone().unwrap_or_default(),
        prune: p.prune.unwrap_or(false),
    });
    match engine_policy {
        // Unlike Stash (whose restic call fails on an empty policy), no keep rule keeps all.
        Some(p) if !p.is_empty() && policy.and_then(|x| x.dry_run) != Some(true) => {
            match engine.apply_retention(&p) {
                Ok(outcome) => {
                    report.snapshots_removed = Some(outcome.removed as i64);
                    conditions::set(
                        conds,
                        NewCondition::yes(
                            RETENTION_POLICY_APPLIED,
                            "SuccessfullyAppliedRetentionPolicy",
                            "Successfully applied retention policy.",
                        ),
                        None,
                        &now(),
                    );
                }
                Err(e) => {
                    conditions::set(
                        conds,
                        NewCondition::no(
                            RETENTION_POLICY_APPLIED,
                            "FailedToApplyRetentionPolicy",
                            format!("Failed to apply retention policy. Reason: {e}"),
                        ),
                        None,
                        &now(),
                    );
                    return;
                }
            }
        }
        _ => conditions::set(
            conds,
            NewCondition::yes(
                RETENTION_POLICY_APPLIED,
                "SuccessfullyAppliedRetentionPolicy",
                "Retention policy keeps every snapshot (no keep rule, or dry run).",
            ),
            None,
            &now(),
        ),
    }
    match engine.check(false) {
        Ok(()) => {
            report.integrity = Some(true);
            conditions::set(
                conds,
                NewCondition::yes(
                    REPOSITORY_INTEGRITY_VERIFIED,
                    "SuccessfullyVerifiedRepositoryIntegrity",
                    "Repository integrity verification succeeded.",
                ),
                None,
                &now(),
            );
        }
        Err(e) => {
            report.integrity = Some(false);
            conditions::set(
                conds,
                NewCondition::no(
                    REPOSITORY_INTEGRITY_VERIFIED,
                    "FailedToVerifyRepositoryIntegrity",
                    format!("Repository integrity verification failed. Reason: {e}"),
                ),
                None,
                &now(),
            );
            return;
        }
    }
    match engine.stats() {
        Ok(stats) => {
            report.total_size_bytes = Some(stats.total_size);
            report.snapshot_count = Some(stats.snapshot_count as i64);
            conditions::set(
                conds,
                NewCondition::yes(
                    REPOSITORY_METRICS_PUSHED,
                    "SuccessfullyPushedRepositoryMetrics",
                    "Repository size and snapshot count recorded.",
                ),
                None,
                &now(),
            );
        }
        Err(e) => conditions::set(
            conds,
            NewCondition::no(
                REPOSITORY_METRICS_PUSHED,
                "FailedToPushRepositoryMetrics",
                format!("Failed to push repository metrics. Reason: {e}"),
            ),
            None,
            &now(),
        ),
    }
}

/// Upserts host stats and conditions into the session's target, retrying on conflicts.
async fn write_backup_status(
    client: &kube::Client,
    ns: &str,
    name: &str,
    target: &TargetRef,
    stats: &[HostBackupStats],
    conds: &[Condition],
) -> Result<(), UpdateError> {
    super::session_status::modify_backup_session(client, ns, name, |status| {
        let entry = super::session_status::target_entry(status, target);
        let host_stats = entry.stats.get_or_insert_with(Vec::new);
        for s in stats {
            match host_stats.iter_mut().find(|h| h.hostname == s.hostname) {
                Some(h) => *h = s.clone(),
                None => host_stats.push(s.clone()),
            }
        }
        let mut session_conds = status.conditions.clone().unwrap_or_default();
        for c in conds {
            session_conds.retain(|x| x.type_ != c.type_);
            session_conds.push(c.clone());
        }
        status.conditions = (!session_conds.is_empty()).then_some(session_conds);
    })
    .await?;
    Ok(())
}

async fn write_repository_status(
    client: &kube::Client,
    ns: &str,
    name: &str,
    report: &RepositoryReport,
) -> Result<(), UpdateError> {
    let api = Api::<Repository>::namespaced(client.clone(), ns);
    for attempt in 0.. {
        let repo = api.get(name).await?;
        let status = status_from_report(repo.status.as_ref(), report);
        let patch = serde_json::json!({"metadata": {"resourceVersion": repo.metadata.resource_version}, "status": status});
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 10 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn update_restore(args: &UpdateStatusArgs) -> Result<String, UpdateError> {
    let ns = args.namespace.clone();
    let name = args.restoresession.clone();
    let stats: Vec<HostRestoreStats> = match read_output(&args.output_dir) {
        Ok(out) => out
            .stats
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect(),
        Err(e) => vec![HostRestoreStats {
            hostname: Some(String::new()),
            phase: Some("Failed".into()),
            error: Some(e),
            ..Default::default()
        }],
    };
    let succeeded = !stats.is_empty()
        && stats
            .iter()
            .all(|s| s.phase.as_deref() == Some("Succeeded"));
    Runtime::new()?.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| UpdateError::Other(format!("no Kubernetes client: {e}")))?;
        super::session_status::modify_restore_session(&client, &ns, &name, |status| {
            let list = status.stats.get_or_insert_with(Vec::new);
            for s in &stats {
                match list.iter_mut().find(|h| h.hostname == s.hostname) {
                    Some(h) => *h = s.clone(),
                    None => list.push(s.clone()),
                }
            }
        })
        .await?;
        Ok(())
    })?;
    Ok(format!(
        "RestoreSession {ns}/{name}: {}",
        if succeeded { "Succeeded" } else { "Failed" }
    ))
}
