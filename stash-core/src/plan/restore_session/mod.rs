//! RestoreSession planner: requirements into conditions, the restore Job
//! `stash-restore-<rs>-0` with the snapshot rule resolved, and the phase from the Job and the
//! reported host stats (a failed or vanished Job ends the restore Failed with a reason).

use super::backend::{backend_info, local_volume, missing_secret_keys, repository_variables};
use super::backup_configuration::{key_of, service_account_role_binding, task_name};
use super::backup_session::job_failure;
use super::job::{build_pod_spec, interim_volume, HookContainers, PodInputs, INTERIM_DIR};
use super::labels::invoker_labels;
use super::{
    add_seconds, controller_ref, to_value, unix, EventSpec, FinalizerAction, ObjectKey, Plan,
    Settings, FINALIZER,
};
use crate::api::{
    AppBinding, Function, HostRestoreStats, Param, Repository, RestoreRule, RestoreSession, Task,
};
use crate::conditions::{self, NewCondition};
use crate::duration::{format_go_duration_secs, parse_go_duration_millis};
use crate::hooks::{self, HookType};
use crate::names::{restore_job_name, restore_job_rbac_name};
use crate::resolve::Variables;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use std::collections::{BTreeMap, BTreeSet};

/// Source of this planner's events.
pub const EVENT_SOURCE: &str = "RestoreSession Controller";

/// What the RestoreSession planner looks at.
#[derive(Debug, Clone, Default)]
pub struct RestoreSessionInputs {
    /// The session.
    pub session: RestoreSession,
    /// The Repository, if it exists.
    pub repository: Option<Repository>,
    /// Key names of the storage Secret, if it exists.
    pub storage_secret_keys: Option<BTreeSet<String>>,
    /// The operator was refused reading the storage Secret (RBAC).
    pub storage_secret_forbidden: bool,
    /// The target AppBinding, if it exists.
    pub target: Option<AppBinding>,
    /// Tasks by name.
    pub tasks: BTreeMap<String, Task>,
    /// Functions by name.
    pub functions: BTreeMap<String, Function>,
    /// The restore Job, if it exists.
    pub job: Option<Job>,
    /// Its pods.
    pub pods: Vec<Pod>,
    /// Operator settings.
    pub settings: Settings,
    /// The time of this reconcile.
    pub now: Option<Time>,
}

/// The snapshot selection of a restore for a host: (snapshots, source host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Comma-joined snapshot ids or `latest` (RESTORE_SNAPSHOTS).
    pub snapshots: String,
    /// The host whose snapshots are read (SOURCE_HOSTNAME).
    pub source_host: String,
}

fn is_snapshot_ref(s: &str) -> bool {
    s == "latest" || ((4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Stash's `RestoreOptionsForHost`: the first rule listing `host` wins, else the rule with no
/// target hosts; no rule means the latest snapshot. Source host defaults to `host`.
pub fn select_rule(rules: &[RestoreRule], host: &str) -> Result<Selection, String> {
    let empty_rules = rules
        .iter()
        .filter(|r| r.target_hosts.as_ref().is_none_or(|h| h.is_empty()))
        .count();
    if empty_rules > 1 {
        return Err("spec.target.rules: at most one rule may have empty targetHosts".into());
    }
    for (i, r) in rules.iter().enumerate() {
        if r.snapshots.as_ref().is_some_and(|s| !s.is_empty())
            && r.paths.as_ref().is_some_and(|p| !p.is_empty())
        {
            return Err(format!(
                "spec.target.rules[{i}]: snapshots and paths are mutually exclusive"
            ));
        }
        if r.snapshots.as_ref().is_some_and(|s| s.len() > 1) {
            return Err(format!(
                "spec.target.rules[{i}].snapshots: a database restore takes one snapshot"
            ));
        }
        // Passed verbatim to the repository as a snapshot id: restic takes `latest` or an id
        // prefix, so anything else could only fail later, inside the Job.
        if let Some(bad) = r.snapshots.iter().flatten().find(|s| !is_snapshot_ref(s)) {
            return Err(format!(
                "spec.target.rules[{i}].snapshots: {bad:?} is neither latest nor a snapshot id \
                 (4 to 64 hexadecimal digits)"
            ));
        }
    }
    let rule = rules
        .iter()
        .find(|r| r.target_hosts.iter().flatten().any(|h| h == host))
        .or_else(|| {
            rules
                .iter()
                .find(|r| r.target_hosts.as_ref().is_none_or(|h| h.is_empty()))
        });
    let snapshots = rule
        .and_then(|r| r.snapshots.clone())
        .unwrap_or_default()
        .join(",");
    let source_host = rule
        .and_then(|r| r.source_host.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| host.to_string());
    Ok(Selection {
        snapshots: if snapshots.is_empty() {
            "latest".into()
        } else {
            snapshots
        },
        source_host,
    })
}

/// Plans one reconcile of a RestoreSession.
pub fn plan(inputs: &RestoreSessionInputs) -> Plan {
    let rs = &inputs.session;
    let (name, namespace, now, mut plan) = super::begin(
        "stash.appscode.com/v1beta1",
        "RestoreSession",
        &rs.metadata,
        &inputs.now,
    );
    let has_finalizer = rs
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER);
    if rs.metadata.deletion_timestamp.is_some() {
        plan.finalizer = if has_finalizer {
            FinalizerAction::Remove
        } else {
            FinalizerAction::Keep
        };
        return plan;
    }
    if !has_finalizer {
        plan.finalizer = FinalizerAction::Add;
    }
    let old = rs.status.clone().unwrap_or_default();
    let phase = old.phase.clone().unwrap_or_default();
    if ["Succeeded", "Failed", "Unknown", "Invalid"].contains(&phase.as_str()) {
        return plan;
    }
    let mut st = old.clone();
    let mut conds = st.conditions.clone().unwrap_or_default();
    let generation = rs.metadata.generation;
    let created = rs
        .metadata
        .creation_timestamp
        .as_ref()
        .map(unix)
        .unwrap_or_else(|| unix(&now));
    let job_name = restore_job_name(&name);
    let job_key = ObjectKey {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        namespace: Some(namespace.clone()),
        name: job_name.clone(),
    };
    let host = rs
        .spec
        .target
        .as_ref()
        .and_then(|t| t.alias.clone())
        .unwrap_or_default();

    // Requirements.
    let repo_name = rs
        .spec
        .repository
        .as_ref()
        .map(|r| r.name.clone())
        .unwrap_or_default();
    let repo_ns = rs
        .spec
        .repository
        .as_ref()
        .and_then(|r| r.namespace.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| namespace.clone());
    let mut errors = Vec::new();
    let mut missing = false;
    if repo_name.is_empty() {
        errors.push("spec.repository.name is required".to_owned());
    }
    match &inputs.repository {
        Some(_) => conditions::set(
            &mut conds,
            NewCondition::yes(
                "RepositoryFound",
                "RepositoryAvailable",
                format!("Repository {repo_ns}/{repo_name} exist."),
            ),
            generation,
            &now,
        ),
        None => {
            missing = true;
            conditions::set(
                &mut conds,
                NewCondition::no(
                    "RepositoryFound",
                    "RepositoryNotAvailable",
                    format!("Repository {repo_ns}/{repo_name} does not exist."),
                ),
                generation,
                &now,
            );
        }
    }
    let backend = inputs
        .repository
        .as_ref()
        .map(|r| backend_info(&r.spec.backend));
    if let Some(Err(e)) = &backend {
        errors.push(format!("Repository {repo_ns}/{repo_name}: {e}"));
    }
    if let Some(repo) = &inputs.repository {
        let secret = repo
            .spec
            .backend
            .storage_secret_name
            .clone()
            .unwrap_or_default();
        let missing_keys = match (&inputs.storage_secret_keys, &backend) {
            (Some(keys), Some(Ok(info))) => missing_secret_keys(info.provider, keys),
            _ => vec![],
        };
        if inputs.storage_secret_keys.is_none() && inputs.storage_secret_forbidden {
            missing = true;
            conditions::set(
                &mut conds,
                NewCondition::unknown(
                    "BackendSecretFound",
                    "UnableToCheckBackendSecretAvailability",
                    super::backup_configuration::secret_forbidden_message(&repo_ns, &secret),
                ),
                generation,
                &now,
            );
        } else if inputs.storage_secret_keys.is_none() {
            missing = true;
            conditions::set(
                &mut conds,
                NewCondition::no(
                    "BackendSecretFound",
                    "BackendSecretNotAvailable",
                    format!("Backend Secret {repo_ns}/{secret} does not exist."),
                ),
                generation,
                &now,
            );
        } else if !missing_keys.is_empty() {
            conditions::set(
                &mut conds,
                NewCondition::no(
                    "BackendSecretFound",
                    "BackendSecretNotAvailable",
                    format!(
                        "Backend Secret {repo_ns}/{secret} lacks the key(s) {}.",
                        missing_keys.join(", ")
                    ),
                ),
                generation,
                &now,
            );
            errors.push(format!(
                "storage Secret {repo_ns}/{secret} lacks {}",
                missing_keys.join(", ")
            ));
        } else {
            conditions::set(
                &mut conds,
                NewCondition::yes(
                    "BackendSecretFound",
                    "BackendSecretAvailable",
                    format!("Backend Secret {repo_ns}/{secret} exist."),
                ),
                generation,
                &now,
            );
        }
    }
    let target_ref = rs
        .spec
        .target
        .as_ref()
        .and_then(|t| t.r#ref.clone())
        .unwrap_or_default();
    let target_ns = target_ref
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| namespace.clone());
    let target_desc = format!(
        "{} {target_ns}/{}",
        target_ref.kind.clone().unwrap_or_default(),
        target_ref.name.clone().unwrap_or_default()
    );
    if target_ref.kind.as_deref() != Some("AppBinding") {
        errors.push(format!(
            "spec.target.ref.kind {:?} is not supported (only AppBinding)",
            target_ref.kind.clone().unwrap_or_default()
        ));
    }
    if inputs.target.is_some() {
        conditions::set(
            &mut conds,
            NewCondition::yes(
                "RestoreTargetFound",
                "TargetAvailable",
                format!("Restore target {target_desc} found."),
            ),
            generation,
            &now,
        );
    } else {
        missing = true;
        conditions::set(
            &mut conds,
            NewCondition::no(
                "RestoreTargetFound",
                "TargetNotAvailable",
                format!("Restore target {target_desc} does not exist."),
            ),
            generation,
            &now,
        );
    }
    let mut rules = rs
        .spec
        .target
        .as_ref()
        .and_then(|t| t.rules.clone())
        .unwrap_or_default();
    if rules.is_empty() {
        rules = rs.spec.rules.clone().unwrap_or_default();
    }
    let selection = select_rule(&rules, &host);
    if let Err(e) = &selection {
        errors.push(e.clone());
    }
    if let Some(t) = &rs.spec.time_out {
        if let Err(e) = parse_go_duration_millis(t) {
            errors.push(format!("spec.timeOut: {e}"));
        }
    }
    if let Some(e) = rs
        .spec
        .interim_volume_template
        .as_ref()
        .and_then(super::job::interim_template_error)
    {
        errors.push(e);
    }
    if let Some(post) = rs.spec.hooks.as_ref().and_then(|h| h.post_restore.as_ref()) {
        match hooks::ExecutionPolicy::parse(post.execution_policy.as_deref()) {
            Err(e) => errors.push(format!("spec.hooks.postRestore.{e}")),
            Ok(hooks::ExecutionPolicy::OnFinalRetryFailure) => errors.push(
                "spec.hooks.postRestore.executionPolicy OnFinalRetryFailure applies to backups only"
                    .into(),
            ),
            Ok(_) => {}
        }
    }
    let mut events = Vec::new();
    if !errors.is_empty() {
        let msg = errors.join("; ");
        conditions::set(
            &mut conds,
            NewCondition::no("ValidationPassed", "ResourceValidationFailed", msg.clone()),
            generation,
            &now,
        );
        events.push(EventSpec {
            type_: "Warning".into(),
            reason: "ResourceValidationFailed".into(),
            message: msg,
            source: EVENT_SOURCE.into(),
        });
        st.phase = Some("Invalid".into());
        st.session_duration = Some(format_go_duration_secs((unix(&now) - created).max(0) as u64));
        st.conditions = Some(conds);
        plan.events = events;
        plan.status = Some(to_value(&st));
        return plan;
    }
    conditions::set(
        &mut conds,
        NewCondition::yes(
            "ValidationPassed",
            "ResourceValidationPassed",
            "Successfully validated.",
        ),
        generation,
        &now,
    );
    if missing {
        st.phase = Some("Pending".into());
        st.conditions = Some(conds);
        plan.requeue_after_seconds = Some(5);
        if st != old {
            plan.status = Some(to_value(&st));
        }
        return plan;
    }

    // Deadline.
    if let Some(t) = rs
        .spec
        .time_out
        .as_deref()
        .and_then(|t| parse_go_duration_millis(t).ok())
    {
        if st.session_deadline.is_none() {
            st.session_deadline = Some(add_seconds(
                &Time(k8s_openapi::jiff::Timestamp::from_second(created).unwrap_or(now.0)),
                (t / 1000) as i64,
            ));
        }
    }
    let deadline_passed = st
        .session_deadline
        .as_ref()
        .is_some_and(|d| unix(&now) >= unix(d));

    let ensured = conditions::is_true(&conds, "RestoreExecutorEnsured");
    if !ensured && !deadline_passed {
        let selection = selection.unwrap_or(Selection {
            snapshots: "latest".into(),
            source_host: host.clone(),
        });
        match build_job(inputs, &namespace, &job_name, &host, &selection) {
            Ok(objects) => {
                plan.apply.extend(objects);
                conditions::set(&mut conds, NewCondition::yes("RestoreExecutorEnsured", "SuccessfullyEnsuredRestoreExecutor", format!("Restorer job/init-container has been ensured successfully for {target_desc}.")), generation, &now);
                st.total_hosts = Some(1);
                st.phase = Some("Running".into());
            }
            Err(e) => {
                let msg = format!("Failed to ensure restore executor. Reason: {e}");
                conditions::set(
                    &mut conds,
                    NewCondition::no(
                        "RestoreExecutorEnsured",
                        "FailedToEnsureRestoreExecutor",
                        msg.clone(),
                    ),
                    generation,
                    &now,
                );
                events.push(EventSpec {
                    type_: "Warning".into(),
                    reason: "Restore Executor Failed".into(),
                    message: msg,
                    source: EVENT_SOURCE.into(),
                });
                st.phase = Some("Failed".into());
            }
        }
    }

    let just_applied = plan
        .apply
        .iter()
        .any(|o| key_of(o).as_ref() == Some(&job_key));
    let stats = st.stats.clone().unwrap_or_default();
    let reported: Vec<&HostRestoreStats> = stats
        .iter()
        .filter(|s| matches!(s.phase.as_deref(), Some("Succeeded" | "Failed" | "Unknown")))
        .collect();
    let total = st.total_hosts.unwrap_or(0).max(0) as usize;
    let mut final_phase = None;
    let post_hook = rs
        .spec
        .hooks
        .as_ref()
        .is_some_and(|h| h.post_restore.is_some());
    let pre_hook_failed = hooks::recorded(&conds, HookType::PreRestore)
        .filter(|c| c.status == conditions::FALSE)
        .and_then(|c| c.message.clone());
    let post_hook_result = hooks::recorded(&conds, HookType::PostRestore).map(|c| c.status.clone());
    let all_reported = total > 0 && reported.len() >= total;
    if st.phase.as_deref() == Some("Failed") {
        final_phase = Some("Failed");
    } else if let Some(reason) = pre_hook_failed {
        // The Job stopped before the restore ran; the hook's reason is the host's error.
        if reported.is_empty() {
            let mut stats = stats.clone();
            stats.push(HostRestoreStats {
                hostname: Some(host.clone()),
                phase: Some("Failed".into()),
                error: Some(reason),
                ..Default::default()
            });
            st.stats = Some(stats);
        }
        final_phase = Some("Failed");
    } else if all_reported && post_hook_result.as_deref() == Some(conditions::FALSE) {
        final_phase = Some("Failed");
    } else if all_reported && post_hook && post_hook_result.is_none() && !deadline_passed {
        // Wait for the postRestore hook, unless the Job ended without it.
        let ended = match &inputs.job {
            _ if just_applied || !ensured => None,
            None => Some(format!("restore Job {job_name} no longer exists")),
            Some(job) => {
                job_failure(job, &inputs.pods).map(|f| f.replace("backup Job", "restore Job"))
            }
        };
        if let Some(reason) = ended {
            let reason = reason.replace(
                "completed without reporting results",
                "completed without recording the hook's result",
            );
            conditions::set(
                &mut conds,
                HookType::PostRestore.failed(&format!("the hook did not report: {reason}")),
                generation,
                &now,
            );
            final_phase = Some("Failed");
        }
    } else if all_reported {
        final_phase = Some(
            if reported
                .iter()
                .any(|s| s.phase.as_deref() == Some("Failed"))
            {
                "Failed"
            } else if reported
                .iter()
                .any(|s| s.phase.as_deref() == Some("Unknown"))
            {
                "Unknown"
            } else {
                "Succeeded"
            },
        );
    } else if deadline_passed {
        let msg = format!(
            "Failed to complete restore within {}.",
            rs.spec.time_out.clone().unwrap_or_default()
        );
        conditions::set(
            &mut conds,
            NewCondition::yes(
                "DeadlineExceeded",
                "FailedToCompleteWithinDeadline",
                msg.clone(),
            ),
            generation,
            &now,
        );
        events.push(EventSpec {
            type_: "Warning".into(),
            reason: "RestoreSession Deadline Exceeded".into(),
            message: msg,
            source: EVENT_SOURCE.into(),
        });
        if inputs.job.is_some() {
            plan.delete.push(job_key.clone());
        }
        final_phase = Some("Failed");
    } else if !just_applied && ensured {
        let failure = match &inputs.job {
            None => Some(format!("restore Job {job_name} no longer exists")),
            Some(job) => {
                job_failure(job, &inputs.pods).map(|f| f.replace("backup Job", "restore Job"))
            }
        };
        if let Some(reason) = failure {
            let mut stats = stats.clone();
            stats.retain(|s| s.hostname.as_deref().unwrap_or("") != host);
            stats.push(HostRestoreStats {
                hostname: Some(host.clone()),
                phase: Some("Failed".into()),
                error: Some(reason.clone()),
                ..Default::default()
            });
            st.stats = Some(stats);
            events.push(EventSpec {
                type_: "Warning".into(),
                reason: "Host Restore Failed".into(),
                message: format!(
                    "restore failed for host {host:?} of {target_desc}. Reason: {reason}"
                ),
                source: EVENT_SOURCE.into(),
            });
            final_phase = Some("Failed");
        }
    }
    match final_phase {
        Some(p) => {
            conditions::set(
                &mut conds,
                NewCondition::yes(
                    "MetricsPushed",
                    "SuccessfullyPushedMetrics",
                    "Successfully pushed metrics.",
                ),
                generation,
                &now,
            );
            st.phase = Some(p.into());
            st.session_duration =
                Some(format_go_duration_secs((unix(&now) - created).max(0) as u64));
            events.push(EventSpec {
                type_: if p == "Succeeded" {
                    "Normal"
                } else {
                    "Warning"
                }
                .into(),
                reason: format!("RestoreSession {p}"),
                message: format!("Restore session {namespace}/{name} {}.", p.to_lowercase()),
                source: EVENT_SOURCE.into(),
            });
        }
        None => {
            let mut requeue = 30u64;
            if let Some(d) = &st.session_deadline {
                requeue = requeue.min((unix(d) - unix(&now)).max(1) as u64);
            }
            plan.requeue_after_seconds = Some(requeue);
        }
    }
    st.conditions = Some(conds);
    plan.events.extend(events);
    if st != old {
        plan.status = Some(to_value(&st));
    }
    plan
}

fn build_job(
    inputs: &RestoreSessionInputs,
    namespace: &str,
    job_name: &str,
    host: &str,
    selection: &Selection,
) -> Result<Vec<serde_json::Value>, String> {
    let rs = &inputs.session;
    let name = rs.metadata.name.clone().unwrap_or_default();
    let repo = inputs.repository.as_ref().ok_or("Repository not found")?;
    let target = inputs.target.as_ref().ok_or("restore target not found")?;
    let info = backend_info(&repo.spec.backend)?;
    let addon = target.stash_addon();
    let addon_task = addon.as_ref().and_then(|a| a.restore_task.clone());
    let task_name = task_name(rs.spec.task.as_ref(), addon_task.as_ref())
        .ok_or("no Task: spec.task.name is empty and the AppBinding names no restoreTask")?;
    let task = inputs
        .tasks
        .get(&task_name)
        .ok_or_else(|| format!("spec.task.name: Task {task_name} not found"))?;
    let target_ref = rs
        .spec
        .target
        .as_ref()
        .and_then(|t| t.r#ref.clone())
        .unwrap_or_default();
    let target_ns = target_ref
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| namespace.to_string());

    let mut vars: Variables = repository_variables(repo, &info);
    vars.insert("HOSTNAME".into(), host.into());
    vars.insert("SOURCE_HOSTNAME".into(), selection.source_host.clone());
    vars.insert("RESTORE_SNAPSHOTS".into(), selection.snapshots.clone());
    vars.insert(
        "TARGET_KIND".into(),
        target_ref.kind.clone().unwrap_or_default(),
    );
    vars.insert(
        "TARGET_NAME".into(),
        target_ref.name.clone().unwrap_or_default(),
    );
    vars.insert("TARGET_NAMESPACE".into(), target_ns.clone());
    vars.insert("RESTORE_SESSION".into(), name.clone());
    vars.insert("NAMESPACE".into(), namespace.into());
    vars.insert("INVOKER_KIND".into(), "RestoreSession".into());
    vars.insert("INVOKER_NAME".into(), name.clone());
    let caching = !rs
        .spec
        .temp_dir
        .as_ref()
        .and_then(|t| t.disable_caching)
        .unwrap_or(false);
    vars.insert("ENABLE_CACHE".into(), caching.to_string());
    let interim = if rs.spec.interim_volume_template.is_some() {
        format!("{INTERIM_DIR}/data")
    } else {
        "/stash-tmp/stash-interim-volume/data".into()
    };
    vars.insert("INTERIM_DATA_DIR".into(), interim);
    vars.insert(
        "LICENSE_APISERVICE".into(),
        inputs.settings.license_apiservice.clone(),
    );
    // Only the restore Task's own params: Stash leaks the backup task's params into restores
    // (stash.md §12); we do not.
    let mut params: Vec<Param> = addon_task.and_then(|t| t.params).unwrap_or_default();
    params.extend(
        rs.spec
            .task
            .as_ref()
            .and_then(|t| t.params.clone())
            .unwrap_or_default(),
    );

    let hook_args = |hook_type: &str| {
        vec![
            "run-hook".to_string(),
            format!("--restoresession={name}"),
            "--invoker-kind=RestoreSession".into(),
            format!("--invoker-name={name}"),
            format!(
                "--target-kind={}",
                target_ref.kind.clone().unwrap_or_default()
            ),
            format!("--target-namespace={target_ns}"),
            format!(
                "--target-name={}",
                target_ref.name.clone().unwrap_or_default()
            ),
            format!("--hook-type={hook_type}"),
            format!("--hostname={host}"),
            "--output-dir=/stash-tmp/output".into(),
        ]
    };
    let labels = invoker_labels(
        rs.metadata.labels.as_ref(),
        "stash-restore",
        "RestoreSession",
        &name,
    );
    let owner = controller_ref(
        "stash.appscode.com/v1beta1",
        "RestoreSession",
        &name,
        rs.metadata.uid.as_deref(),
    );
    let mut volumes: Vec<_> = local_volume(&repo.spec.backend).into_iter().collect();
    let claim = match &rs.spec.interim_volume_template {
        Some(t) => {
            let (claim, volume) = interim_volume(t, &name, namespace, owner.clone(), &labels)?;
            volumes.push(volume);
            Some(claim)
        }
        None => None,
    };
    let hooks = rs.spec.hooks.as_ref();
    let rbac_name = restore_job_rbac_name(&name);
    let pod = build_pod_spec(&PodInputs {
        task,
        functions: &inputs.functions,
        variables: &vars,
        params: &params,
        runtime_settings: rs.spec.runtime_settings.as_ref(),
        temp_dir: rs.spec.temp_dir.as_ref(),
        service_account: rbac_name.clone(),
        image_pull_policy: &inputs.settings.image_pull_policy,
        hooks: HookContainers {
            pre: hooks
                .and_then(|h| h.pre_restore.as_ref())
                .map(|_| hook_args("preRestore")),
            post: hooks
                .and_then(|h| h.post_restore.as_ref())
                .map(|_| hook_args("postRestore")),
        },
        operator_image: &inputs.settings.image,
        volumes,
    })?;
    let meta = |n: &str| ObjectMeta {
        name: Some(n.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    };
    let mut secrets: Vec<String> = [
        repo.spec.backend.storage_secret_name.clone(),
        target.spec.secret.as_ref().map(|s| s.name.clone()),
    ]
    .into_iter()
    .flatten()
    .filter(|s| !s.is_empty())
    .collect();
    secrets.sort();
    secrets.dedup();
    let s = |xs: &[&str]| Some(xs.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    let mut rules = vec![
        PolicyRule {
            api_groups: s(&["stash.appscode.com"]),
            resources: s(&[
                "restoresessions",
                "restoresessions/status",
                "repositories",
                "repositories/status",
            ]),
            verbs: vec![
                "get".into(),
                "list".into(),
                "watch".into(),
                "patch".into(),
                "update".into(),
            ],
            ..Default::default()
        },
        PolicyRule {
            api_groups: s(&["appcatalog.appscode.com"]),
            resources: s(&["appbindings"]),
            verbs: vec!["get".into()],
            ..Default::default()
        },
        PolicyRule {
            api_groups: s(&["", "events.k8s.io"]),
            resources: s(&["events"]),
            verbs: vec!["create".into(), "patch".into()],
            ..Default::default()
        },
    ];
    rules.extend(super::backup_configuration::target_pod_rules());
    if !secrets.is_empty() {
        rules.push(PolicyRule {
            api_groups: s(&[""]),
            resources: s(&["secrets"]),
            verbs: vec!["get".into()],
            resource_names: Some(secrets),
            ..Default::default()
        });
    }
    let mut objects = service_account_role_binding(
        meta(&rbac_name),
        rules,
        rs.spec
            .runtime_settings
            .as_ref()
            .and_then(|r| r.pod.as_ref())
            .and_then(|p| p.service_account_annotations.clone()),
    );
    let pod_meta = rs
        .spec
        .runtime_settings
        .as_ref()
        .and_then(|r| r.pod.as_ref());
    let mut pod_labels = labels.clone();
    pod_labels.extend(
        pod_meta
            .and_then(|p| p.pod_labels.clone())
            .unwrap_or_default(),
    );
    let job = Job {
        metadata: meta(job_name),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: pod_meta.and_then(|p| p.pod_annotations.clone()),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    };
    if let Some(claim) = claim {
        objects.push(to_value(&claim));
    }
    objects.push(to_value(&job));
    Ok(objects)
}
