//! The operator: one controller per kind. Each reconcile gathers what the planner needs, calls
//! the `stash-core` planner and carries out the plan. No policy lives here.

pub mod apply;
pub mod backoff;
pub mod cache;
pub mod catalog;
pub mod children;
pub mod clock;
pub mod events;
pub mod gather;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod preflight;
pub mod pushgateway;
pub mod secrets;

use apply::ApplyError;
use clock::SharedClock;
use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use stash_core::api::{BackupConfiguration, BackupSession, Repository, RestoreSession};
use stash_core::plan::{self, Plan, Settings};
use std::sync::Arc;
use std::time::Duration;

/// Shared state of all controllers.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Settings handed to the planners.
    pub settings: Settings,
    /// Where `now` comes from.
    pub clock: SharedClock,
    /// Event recorder.
    pub recorder: Recorder,
    /// Events that must exist once (named by the planners).
    pub once_events: events::OnceEvents,
    /// Metrics.
    pub metrics: metrics::Metrics,
    /// Longest wait before a requeue (short under a virtual clock, where time jumps).
    pub max_requeue: Duration,
    /// Pushgateway base URL, when metrics are also pushed (Stash's behaviour).
    pub pushgateway_url: Option<String>,
    /// Reflector caches, once the controllers run (before that, reads go to the API).
    pub caches: std::sync::OnceLock<cache::Caches>,
    /// What this process last applied to each child (see [`apply::Applied`]).
    pub applied: apply::Applied,
    /// Waits before retrying objects whose reconcile failed.
    pub error_backoff: backoff::ErrorBackoff,
    /// Storage Secrets' key names, read once per version (see [`secrets`]).
    pub storage_secrets: secrets::StorageSecrets,
}

impl Context {
    /// A context for `client`.
    pub fn new(
        client: Client,
        settings: Settings,
        clock: SharedClock,
        max_requeue: Duration,
    ) -> Context {
        let reporter = Reporter {
            controller: "stash-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            once_events: events::OnceEvents::new(reporter.clone()),
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            clock,
            metrics: metrics::Metrics::default(),
            max_requeue,
            pushgateway_url: None,
            caches: std::sync::OnceLock::new(),
            applied: apply::Applied::default(),
            // Up to the longest requeue in production; a test under a virtual clock (short
            // requeues) still backs off, but to no more than 8 s of real time.
            error_backoff: backoff::ErrorBackoff::new(
                Duration::from_secs(2),
                max_requeue.max(Duration::from_secs(8)),
            ),
            storage_secrets: secrets::StorageSecrets::default(),
        }
    }

    /// The reflector caches once they have listed, when the controllers run (before that,
    /// reads go to the API).
    pub async fn caches(&self) -> Option<&cache::Caches> {
        let caches = self.caches.get()?;
        caches.wait_ready().await;
        Some(caches)
    }

    /// The operator's `now`.
    pub fn now(&self) -> Time {
        Time(self.clock.now())
    }

    /// When to see `obj` again: when its plan asks, else after a periodic resync.
    fn action<K: kube::Resource<DynamicType = ()>>(&self, obj: &K, plan: &Plan) -> Action {
        match plan.requeue_after_seconds {
            Some(s) => Action::requeue(Duration::from_secs(s).min(self.max_requeue)),
            None => Action::requeue(at_rest(
                Duration::from_secs(600).min(self.max_requeue.max(Duration::from_secs(60))),
                obj,
            )),
        }
    }
}

/// The periodic resync of an object at rest: `base`, lengthened by up to a quarter by a hash
/// of the object's key. Objects reconciled together (all of them after a start) then come
/// back spread out, not as one burst of reads every `base`.
fn at_rest<K: kube::Resource<DynamicType = ()>>(base: Duration, obj: &K) -> Duration {
    use std::hash::{Hash, Hasher};
    let meta = obj.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (K::kind(&()), &meta.namespace, &meta.name).hash(&mut h);
    let spread = u32::try_from(h.finish() % 1000).unwrap_or(0);
    base + base * spread / 4000
}

/// Why a reconcile failed; the controller retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A read failed.
    #[error("read: {0}")]
    Read(#[from] kube::Error),
    /// Carrying out the plan failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

impl ReconcileError {
    /// Stable reason for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            ReconcileError::Read(_) => "ReadFailed",
            ReconcileError::Apply(e) => e.reason(),
        }
    }
}

fn unwrap_guard<K: Clone>(guard: &DeserializeGuard<K>, kind: &str) -> Option<K> {
    match &guard.0 {
        Ok(k) => Some(k.clone()),
        Err(invalid) => {
            // A malformed object is logged and skipped; it never stops the watch.
            tracing::warn!(kind, name = ?invalid.metadata.name, namespace = ?invalid.metadata.namespace, error = %invalid.error, "object does not parse; skipped");
            None
        }
    }
}

async fn reconcile_backup_configuration(
    guard: Arc<DeserializeGuard<BackupConfiguration>>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let Some(bc) = unwrap_guard(&guard, "BackupConfiguration") else {
        return Ok(Action::await_change());
    };
    // With `kube_runtime=info` in RUST_LOG, the controller's span says why (object.reason).
    tracing::debug!("reconcile");
    let ns = bc.namespace().unwrap_or_else(|| "default".into());
    let (inputs, live) = gather::backup_configuration_inputs_and_children(&ctx, &bc).await?;
    let plan = plan::backup_configuration::plan(&inputs);
    apply::execute_with(&ctx, &bc, &plan, Some(&live)).await?;
    if plan.finalizer == plan::FinalizerAction::Remove {
        // Deleted: its series go with it.
        let name = bc.name_any();
        ctx.metrics
            .retain(|n, b| (n, b) != (ns.as_str(), name.as_str()), |_, _| true);
    } else if let Some(schedule) = bc.spec.schedule.as_deref() {
        ctx.metrics.set_schedule(&ns, &bc.name_any(), schedule);
    }
    Ok(ctx.action(&bc, &plan))
}

async fn reconcile_backup_session(
    guard: Arc<DeserializeGuard<BackupSession>>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let Some(session) = unwrap_guard(&guard, "BackupSession") else {
        return Ok(Action::await_change());
    };
    let inputs = gather::backup_session_inputs(&ctx, &session).await?;
    let plan = plan::backup_session::plan(&inputs);
    apply::execute(&ctx, &session, &plan).await?;
    ctx.metrics
        .observe_backup_session(&session, plan.status.as_ref(), ctx.clock.now());
    push_session_metrics(
        &ctx,
        &session,
        inputs.invoker.as_ref(),
        plan.status.as_ref(),
    );
    Ok(ctx.action(&session, &plan))
}

async fn reconcile_restore_session(
    guard: Arc<DeserializeGuard<RestoreSession>>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let Some(rs) = unwrap_guard(&guard, "RestoreSession") else {
        return Ok(Action::await_change());
    };
    let inputs = gather::restore_session_inputs(&ctx, &rs).await?;
    let plan = plan::restore_session::plan(&inputs);
    apply::execute(&ctx, &rs, &plan).await?;
    ctx.metrics
        .observe_restore_session(&rs, plan.status.as_ref());
    Ok(ctx.action(&rs, &plan))
}

async fn reconcile_repository(
    guard: Arc<DeserializeGuard<Repository>>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let Some(repo) = unwrap_guard(&guard, "Repository") else {
        return Ok(Action::await_change());
    };
    let inputs = gather::repository_inputs(&ctx, &repo).await?;
    let plan = plan::repository::plan(&inputs);
    apply::execute(&ctx, &repo, &plan).await?;
    Ok(match plan.requeue_after_seconds {
        Some(_) => ctx.action(&repo, &plan),
        None => Action::requeue(at_rest(
            Duration::from_secs(300).min(ctx.max_requeue.max(Duration::from_secs(30))),
            &repo,
        )),
    })
}

/// Pushes a session's metrics when it has just become final and a Pushgateway is configured.
fn push_session_metrics(
    ctx: &Context,
    session: &BackupSession,
    invoker: Option<&BackupConfiguration>,
    planned: Option<&serde_json::Value>,
) {
    let (Some(url), Some(status)) = (ctx.pushgateway_url.clone(), planned) else {
        return;
    };
    let phase = status
        .get("phase")
        .and_then(|p| p.as_str())
        .unwrap_or_default();
    let was = session
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if phase == was || !matches!(phase, "Succeeded" | "Failed") {
        return;
    }
    let ns = session.namespace().unwrap_or_default();
    let invoker_name = session
        .spec
        .invoker
        .as_ref()
        .map(|i| i.name.clone())
        .unwrap_or_default();
    let metrics = pushgateway::BackupSessionMetrics {
        invoker_kind: "BackupConfiguration".into(),
        invoker_name: invoker_name.clone(),
        namespace: ns.clone(),
        repository: invoker
            .and_then(|bc| bc.spec.repository.as_ref())
            .map(|r| r.name.clone())
            .unwrap_or_default(),
        success: phase == "Succeeded",
        duration_seconds: status
            .get("sessionDuration")
            .and_then(|d| d.as_str())
            .and_then(|d| stash_core::duration::parse_go_duration_millis(d).ok())
            .map(|ms| ms as f64 / 1000.0)
            .unwrap_or(0.0),
        targets: status
            .get("targets")
            .and_then(|t| t.as_array())
            .map(|t| t.len() as u64)
            .unwrap_or(0),
        now: ctx.clock.now().as_second(),
    };
    let job = pushgateway::job_name("BackupConfiguration", &ns, &invoker_name);
    tokio::spawn(async move {
        if let Err(e) =
            pushgateway::push(&url, &job, &pushgateway::backup_session_text(&metrics)).await
        {
            tracing::warn!(job = %job, error = %e, "pushing metrics failed");
        }
    });
}

/// The key of an object in the error backoff: kind, namespace and name.
fn backoff_key<K: kube::Resource<DynamicType = ()>>(obj: &DeserializeGuard<K>) -> String {
    use kube::Resource as _;
    let meta = obj.meta();
    format!(
        "{}/{}/{}",
        K::kind(&()),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Runs `reconcile`; a success ends the object's error backoff.
async fn reconcile_and_reset_backoff<K, F, Fut>(
    obj: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
    reconcile: F,
) -> Result<Action, ReconcileError>
where
    K: kube::Resource<DynamicType = ()>,
    F: FnOnce(Arc<DeserializeGuard<K>>, Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, ReconcileError>>,
{
    let key = backoff_key(&obj);
    if let std::borrow::Cow::Borrowed(kind) = K::kind(&()) {
        ctx.metrics.reconcile(kind);
    }
    let result = reconcile(obj, ctx.clone()).await;
    if result.is_ok() {
        ctx.error_backoff.succeeded(&key);
    }
    result
}

/// After a failed reconcile: count it by reason and retry the object after an exponential
/// backoff of its own (2 s, 4 s, 8 s, … up to the longest requeue).
fn error_policy<K: kube::Resource<DynamicType = ()>>(
    obj: Arc<DeserializeGuard<K>>,
    err: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    let wait = ctx.error_backoff.failed(&backoff_key(&obj));
    tracing::warn!(error = %err, reason = err.reason(), retry_in = ?wait, "reconcile failed; retrying");
    ctx.metrics.reconcile_error(err.reason());
    Action::requeue(wait)
}

/// Runs the four controllers until `shutdown` turns true.
pub async fn run_controllers(ctx: Arc<Context>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let client = ctx.client.clone();
    let config = ControllerConfig::default()
        .concurrency(4)
        .debounce(Duration::from_millis(200));
    let wc = watcher::Config::default;
    let secrets_stop = shutdown.clone();
    let stop = move || {
        let mut rx = shutdown.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    // BackupConfigurations, RestoreSessions and Repositories are both controllers' main
    // objects and caches other reconciles read: one reflector each, shared.
    let (readiness, ready) = cache::Readiness::new(7 + stash_core::gather::CHILD_KINDS.len());
    let references = cache::References::default();
    let index = references.clone();
    let (bc_store, bc_stream) = cache::reflect_with(&client, &readiness, move |event| {
        index.observe("BackupConfiguration", event, |bc: &BackupConfiguration| {
            bc.spec.repository.as_ref()
        })
    });
    let index = references.clone();
    let (rs_store, rs_stream) = cache::reflect_with(&client, &readiness, move |event| {
        index.observe("RestoreSession", event, |rs: &RestoreSession| {
            rs.spec.repository.as_ref()
        })
    });
    let (repo_store, repo_stream) = cache::reflect(&client, &readiness);
    let (tasks, tasks_sync) = cache::reflect(&client, &readiness);
    let (functions, functions_sync) = cache::reflect(&client, &readiness);
    let (appbindings, appbindings_sync) = cache::reflect(&client, &readiness);
    let (namespaces, namespaces_sync) = cache::reflect(&client, &readiness);
    // Children of invokers from metadata-only watches; the CronJobs' also trigger their
    // BackupConfiguration's reconcile (as an `owns` watch did), the others are only read.
    let children = children::Children::default();
    let mut cronjobs = None;
    let mut child_syncs = Vec::new();
    for (i, (_, kind, _)) in stash_core::gather::CHILD_KINDS.iter().enumerate() {
        let Ok(i) = u8::try_from(i) else { continue };
        let applied = ctx.clone();
        let own = move |key: &plan::ObjectKey, rv: &str| applied.applied.own_write(key, rv);
        let stream = children::watch(&client, &readiness, children.clone(), i, own);
        if *kind == "CronJob" {
            cronjobs = Some(stream.boxed());
        } else {
            child_syncs.push(cache::drive(stream));
        }
    }
    // A restart of the controllers keeps the caches of the first run (they stay current).
    let _ = ctx.caches.set(cache::Caches {
        tasks,
        functions,
        repositories: repo_store.clone(),
        appbindings,
        namespaces,
        backup_configurations: bc_store.clone(),
        restore_sessions: rs_store.clone(),
        ready,
        references,
        children,
    });

    // Storage Secrets that changed after a reconcile read them: their BackupConfigurations
    // are reconciled again (through the Repositories that name them).
    let (secret_tx, secret_rx) = tokio::sync::mpsc::unbounded_channel();
    ctx.storage_secrets
        .start(client.clone(), secrets_stop, secret_tx);
    let secret_changes = futures_util::stream::unfold(secret_rx, |mut rx| async move {
        rx.recv().await.map(|s| (Ok(s), rx))
    });
    let (repos, refs) = (
        repo_store.clone(),
        ctx.caches.get().map(|c| c.references.clone()),
    );
    let users_of_secret =
        move |s: secrets::SecretMeta| users_of_storage_secret(&repos, refs.as_ref(), &s);

    let cronjob_resource = apply::api_resource("batch/v1", "CronJob", "cronjobs");
    let bc = Controller::for_stream(
        bc_stream.predicate_filter(cache::spec_or_metadata, Default::default()),
        bc_store.clone(),
    )
    .owns_stream_with(
        cronjobs.unwrap_or_else(|| futures_util::stream::empty().boxed()),
        cronjob_resource,
    )
    .watches_stream(secret_changes, users_of_secret)
    .with_config(config.clone())
    .graceful_shutdown_on(stop())
    .run(
        |obj, ctx| reconcile_and_reset_backoff(obj, ctx, reconcile_backup_configuration),
        error_policy,
        ctx.clone(),
    )
    .for_each(|_| async {});
    let bs = Controller::new(
        Api::<DeserializeGuard<BackupSession>>::all(client.clone()),
        wc(),
    )
    .owns(Api::<Job>::all(client.clone()), wc())
    .with_config(config.clone())
    .graceful_shutdown_on(stop())
    .run(
        |obj, ctx| reconcile_and_reset_backoff(obj, ctx, reconcile_backup_session),
        error_policy,
        ctx.clone(),
    )
    .for_each(|_| async {});
    let rs = Controller::for_stream(rs_stream, rs_store.clone())
        .owns(Api::<Job>::all(client.clone()), wc())
        .with_config(config.clone())
        .graceful_shutdown_on(stop())
        .run(
            |obj, ctx| reconcile_and_reset_backoff(obj, ctx, reconcile_restore_session),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let caches = async {
        let stop = stop();
        tokio::select! {
            _ = stop => {}
            _ = futures_util::future::join5(
                cache::drive(tasks_sync),
                cache::drive(functions_sync),
                cache::drive(appbindings_sync),
                cache::drive(namespaces_sync),
                futures_util::future::join_all(child_syncs),
            ) => {}
        }
    };
    let repo = Controller::for_stream(repo_stream, repo_store)
        .owns(Api::<Job>::all(client.clone()), wc())
        .with_config(config)
        .graceful_shutdown_on(stop())
        .run(
            |obj, ctx| reconcile_and_reset_backoff(obj, ctx, reconcile_repository),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let prune = prune_metrics(ctx.clone(), bc_store, rs_store, stop());
    futures_util::join!(bc, bs, rs, repo, prune, caches);
}

/// The BackupConfigurations whose Repository names storage Secret `secret`.
fn users_of_storage_secret(
    repositories: &kube::runtime::reflector::Store<DeserializeGuard<Repository>>,
    references: Option<&cache::References>,
    secret: &secrets::SecretMeta,
) -> Vec<kube::runtime::reflector::ObjectRef<DeserializeGuard<BackupConfiguration>>> {
    use kube::runtime::reflector::ObjectRef;
    let (Some(ns), Some(name), Some(references)) = (
        secret.metadata.namespace.as_deref(),
        secret.metadata.name.as_deref(),
        references,
    ) else {
        return Vec::new();
    };
    repositories
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .filter(|r| {
            r.metadata.namespace.as_deref() == Some(ns)
                && r.spec.backend.storage_secret_name.as_deref() == Some(name)
        })
        .flat_map(|r| references.of(ns, r.metadata.name.as_deref().unwrap_or_default()))
        .filter(|(kind, _, _)| *kind == "BackupConfiguration")
        .map(|(_, invoker_ns, invoker)| ObjectRef::new(&invoker).within(&invoker_ns))
        .collect()
}

/// Every minute, drops metrics of BackupConfigurations and RestoreSessions that are gone, as
/// the controllers' caches see them (no extra API reads).
async fn prune_metrics(
    ctx: Arc<Context>,
    backups: kube::runtime::reflector::Store<DeserializeGuard<BackupConfiguration>>,
    restores: kube::runtime::reflector::Store<DeserializeGuard<RestoreSession>>,
    stop: impl std::future::Future<Output = ()>,
) {
    use kube::runtime::reflector::ObjectRef;
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        // An empty cache may mean "not synced yet", not "nothing exists": wait for the list.
        if ctx.caches().await.is_none() {
            continue;
        }
        ctx.metrics.retain(
            |ns, name| backups.get(&ObjectRef::new(name).within(ns)).is_some(),
            |ns, name| restores.get(&ObjectRef::new(name).within(ns)).is_some(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup_configuration(name: &str) -> Arc<DeserializeGuard<BackupConfiguration>> {
        let bc = serde_json::from_value(serde_json::json!({
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupConfiguration",
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {},
        }))
        .expect("a BackupConfiguration");
        Arc::new(DeserializeGuard(Ok(bc)))
    }

    #[tokio::test]
    async fn error_policy_backs_off_exponentially_per_object() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        let ctx = Arc::new(Context::new(
            client,
            Settings::default(),
            Arc::new(clock::SystemClock),
            Duration::from_secs(300),
        ));
        let err = ReconcileError::Read(kube::Error::Service("unreachable".into()));
        let (a, b) = (backup_configuration("a"), backup_configuration("b"));
        let retry = |obj: &Arc<DeserializeGuard<BackupConfiguration>>| {
            error_policy(obj.clone(), &err, ctx.clone())
        };
        let secs = |s| Action::requeue(Duration::from_secs(s));
        assert_eq!(
            [retry(&a), retry(&a), retry(&a)],
            [secs(2), secs(4), secs(8)]
        );
        assert_eq!(retry(&b), secs(2), "another object has its own backoff");
        let settled = reconcile_and_reset_backoff(a.clone(), ctx.clone(), |_, _| async {
            Ok(Action::await_change())
        })
        .await;
        assert!(settled.is_ok());
        assert_eq!(retry(&a), secs(2), "a success resets the backoff");
        assert_eq!(retry(&b), secs(4));
        assert!(ctx
            .metrics
            .render()
            .contains(r#"stash_operator_reconcile_errors_total{reason="ReadFailed"} 6"#));
    }
}
