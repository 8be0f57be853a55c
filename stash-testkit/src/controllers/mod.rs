//! The fake controller-manager and kubelet: level-triggered passes over the store, run
//! whenever something changes or the virtual clock moves.

pub mod cron;
mod cronjob;
pub mod endpoints;
pub(crate) mod exec;
mod gc;
mod job;
pub mod kubelet;
mod namespace;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch, Notify};

use crate::store::{Change, ChangeKind};
use std::collections::BTreeSet;

use crate::apiserver::Apiserver;
pub use kubelet::{Kubelet, KubeletConfig, LogSink, NodeClock};

/// Which controllers run.
#[derive(Debug, Clone)]
pub struct ControllerSet {
    /// Garbage collector (owner references, foreground/orphan finalizers).
    pub gc: bool,
    /// Namespace deletion.
    pub namespace: bool,
    /// Job controller.
    pub job: bool,
    /// CronJob controller.
    pub cronjob: bool,
    /// Kubelet running pods as local processes.
    pub kubelet: bool,
    /// Endpoints and EndpointSlice controllers (Services with a selector).
    pub endpoints: bool,
}

impl ControllerSet {
    /// Every controller.
    pub fn all() -> Self {
        Self {
            gc: true,
            namespace: true,
            job: true,
            cronjob: true,
            kubelet: true,
            endpoints: true,
        }
    }
}

/// The manager's name in `managedFields`.
pub const MANAGER: &str = "kube-controller-manager";

/// Records a core/v1 Event about `involved`, as controllers and the kubelet do, so that
/// `kubectl describe` shows what happened.
pub(crate) fn record_event(
    api: &Apiserver,
    involved: &serde_json::Value,
    kind: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let Ok(events) = api.resource("", "v1", "events") else {
        return;
    };
    let now = api.clock.now_string();
    let meta = &involved["metadata"];
    let namespace = meta["namespace"].as_str().unwrap_or("default");
    let event = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": format!("{}.", meta["name"].as_str().unwrap_or("object")), "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved["apiVersion"], "kind": involved["kind"], "name": meta["name"],
            "namespace": namespace, "uid": meta["uid"], "resourceVersion": meta["resourceVersion"],
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": "",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    let _ = api.create(
        &events,
        namespace,
        event,
        &crate::apiserver::WriteOptions::manager(component),
    );
}

struct Inner {
    api: Apiserver,
    set: ControllerSet,
    kubelet: Kubelet,
    jobs: job::JobController,
    trigger: Notify,
    requested: AtomicU64,
    done: watch::Sender<u64>,
    stop: watch::Sender<bool>,
}

/// A running controller-manager. Cheap to clone (shared); it stops when the runtime stops.
#[derive(Clone)]
pub struct ControllerManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ControllerManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerManager")
            .field("set", &self.inner.set)
            .finish()
    }
}

impl ControllerManager {
    /// Starts the controllers on the current tokio runtime. The kubelet talks to the server
    /// through `client` (in process: a client over the server's router), as it would to any
    /// API server.
    pub fn start(
        api: Apiserver,
        set: ControllerSet,
        kubelet: KubeletConfig,
        client: kube::Client,
    ) -> Self {
        let inner = Arc::new(Inner {
            kubelet: Kubelet::new(
                client,
                NodeClock::Virtual(api.clock.clone()),
                LogSink::Memory(api.logs.clone()),
                kubelet,
            ),
            jobs: job::JobController::default(),
            api,
            set,
            trigger: Notify::new(),
            requested: AtomicU64::new(0),
            done: watch::channel(0).0,
            stop: watch::channel(false).0,
        });
        let cm = Self { inner };
        let runner = cm.clone();
        tokio::spawn(async move { runner.run().await });
        cm
    }

    /// The running container `(namespace, pod, container)` when this controller-manager runs
    /// the kubelet and the kubelet runs that container (for `pods/exec`).
    pub(crate) fn container(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
    ) -> Option<exec::ContainerHandle> {
        if !self.inner.set.kubelet {
            return None;
        }
        self.inner.kubelet.container(ns, pod, container)
    }

    /// Stops the controllers and kills the processes the kubelet is running.
    pub fn stop(&self) {
        self.inner.stop.send_replace(true);
        self.inner.kubelet.kill_all();
    }

    /// Waits until the controllers have run to quiescence after this call (bounded to 10 s).
    /// Processes the kubelet started keep running; their exits trigger further passes.
    pub async fn settle(&self) {
        let ticket = self.inner.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.trigger.notify_one();
        let mut done = self.inner.done.subscribe();
        let wait = done.wait_for(|d| *d >= ticket);
        let _ = tokio::time::timeout(Duration::from_secs(10), wait).await;
    }

    async fn run(self) {
        let inner = &self.inner;
        let mut changes = inner.api.store.lock().subscribe();
        let mut clock = inner.api.clock.subscribe();
        let mut stop = inner.stop.subscribe();
        let mut dirty = Dirty::everything();
        // The clock after the last full pass that wrote nothing, while no change a controller
        // reads has happened since: the controllers depend on nothing else, so a periodic pass
        // would find nothing to do either and is skipped (at scale, a full pass visits every
        // owned object: 50,000 in the control-plane benchmark). Leader-lease renewals and
        // Events, which no controller reads, leave it standing.
        let mut quiet_at = None;
        loop {
            if *stop.borrow() {
                return;
            }
            let seen = inner.requested.load(Ordering::SeqCst);
            let now = inner.api.clock.now();
            let skip = dirty.timer_only() && quiet_at == Some(now);
            for round in 0..50 {
                let before = inner.api.store.rev();
                if !skip {
                    self.pass(&dirty);
                }
                if inner.set.kubelet {
                    // A failed call is retried on the next pass, as a real kubelet would. It
                    // runs every pass: it reads through the API, as it does standalone.
                    let _ = inner.kubelet.sync().await;
                }
                let wrote = inner.api.store.rev() != before;
                if round == 0 && !skip {
                    if dirty.full() && !wrote {
                        quiet_at = Some(now);
                    } else if wrote || dirty.relevant || dirty.all {
                        quiet_at = None;
                    }
                }
                // What the pass and the kubelet wrote is what the next pass looks at.
                dirty = Dirty::default();
                dirty.drain(&mut changes);
                if !wrote {
                    break;
                }
                tokio::task::yield_now().await;
            }
            inner.done.send_replace(seen);
            tokio::select! {
                _ = inner.trigger.notified() => dirty.all = true,
                r = changes.recv() => match r {
                    Ok(change) => dirty.note(&change),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => dirty.all = true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                r = clock.changed() => {
                    if r.is_err() {
                        return;
                    }
                    dirty.all = true;
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => dirty.timer = true,
                _ = stop.changed() => return,
            }
            // Coalesce bursts of writes into one pass.
            tokio::time::sleep(Duration::from_millis(2)).await;
            dirty.drain(&mut changes);
        }
    }

    fn pass(&self, dirty: &Dirty) {
        let inner = &self.inner;
        // Namespace work moves only when namespaces or their `default` accounts change, or
        // while one is terminating (its contents are being deleted).
        if inner.set.namespace
            && (dirty.full()
                || dirty.namespaces
                || inner.api.store.lock().any_deleting("/namespaces"))
        {
            namespace::sync(&inner.api);
        }
        if inner.set.gc
            && (dirty.full() || dirty.deletions || !gc::owners_live(&inner.api, &dirty.owned))
        {
            gc::sync(&inner.api);
        }
        if inner.set.cronjob {
            if dirty.any(&["batch/jobs"]) {
                cronjob::sync(&inner.api, None);
            } else if !dirty.cronjobs.is_empty() {
                cronjob::sync(&inner.api, Some(&dirty.cronjobs));
            }
        }
        if inner.set.job && dirty.any(&["batch/jobs", "/pods"]) {
            inner.jobs.sync(&inner.api);
        }
        if inner.set.endpoints
            && dirty.any(&[
                "/services",
                "/pods",
                "/endpoints",
                "discovery.k8s.io/endpointslices",
            ])
        {
            endpoints::sync(&inner.api);
        }
    }
}

/// What changed since the last pass, so that a write touches only the controllers it concerns
/// instead of a scan of the whole store per write (quadratic when N objects are created).
#[derive(Debug, Default)]
struct Dirty {
    /// Run every controller in full (clock moved, a test asked, or changes were lost).
    all: bool,
    /// The periodic timer fired: a full pass, unless nothing moved since the last quiet one.
    timer: bool,
    /// A change some controller reads: anything but ownerless leases and Events that are
    /// not being deleted.
    relevant: bool,
    /// A namespace or a `default` ServiceAccount was written (other accounts, which operators
    /// create per object, do not concern the namespace controller).
    namespaces: bool,
    /// Storage prefixes (`group/plural`) written to.
    resources: BTreeSet<String>,
    /// CronJobs written to, `(namespace, name)`: the CronJob controller looks at just these
    /// when no Job changed.
    cronjobs: BTreeSet<(String, String)>,
    /// Something was deleted or is being deleted: the garbage collector scans everything.
    deletions: bool,
    /// Written objects that have owners: the garbage collector checks just these.
    owned: Vec<Arc<serde_json::Value>>,
}

impl Dirty {
    fn everything() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }

    fn note(&mut self, change: &Change) {
        if self.all {
            return;
        }
        self.resources.insert(change.key.resource.clone());
        let unread = matches!(
            change.key.resource.as_str(),
            "coordination.k8s.io/leases" | "/events" | "events.k8s.io/events"
        );
        let meta = &change.object["metadata"];
        self.relevant |= !unread
            || change.kind == ChangeKind::Deleted
            || meta.get("deletionTimestamp").is_some()
            || meta["ownerReferences"]
                .as_array()
                .is_some_and(|r| !r.is_empty());
        self.namespaces |= change.key.resource == "/namespaces"
            || (change.key.resource == "/serviceaccounts" && change.key.name == "default");
        if change.key.resource == "batch/cronjobs" {
            self.cronjobs
                .insert((change.key.namespace.clone(), change.key.name.clone()));
        }
        if change.kind == ChangeKind::Deleted || meta.get("deletionTimestamp").is_some() {
            self.deletions = true;
        } else if meta["ownerReferences"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            self.owned.push(change.object.clone());
        }
    }

    fn drain(&mut self, changes: &mut broadcast::Receiver<Arc<Change>>) {
        loop {
            match changes.try_recv() {
                Ok(change) => self.note(&change),
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.all = true,
                Err(_) => return,
            }
        }
    }

    /// Whether every controller runs in full.
    fn full(&self) -> bool {
        self.all || self.timer
    }

    /// Only the timer fired: no change a controller reads and no request since the last pass.
    fn timer_only(&self) -> bool {
        self.timer && !self.all && !self.relevant
    }

    fn any(&self, resources: &[&str]) -> bool {
        self.full() || resources.iter().any(|r| self.resources.contains(*r))
    }
}
