//! Reflector caches of what reconciles read: the Task/Function catalog, Repositories,
//! AppBindings, Namespaces, and the invokers a Repository counts as references. A reconcile
//! reads these from memory instead of issuing a list or get per object per reconcile (which
//! made the API load grow with the square of the number of BackupConfigurations).
//!
//! Readiness: a reconcile waits once for [`Caches::ready`], a `tokio::sync::watch` flag set
//! when every cache has listed. It never waits on kube-runtime's `Store::wait_until_ready`:
//! that wakes only the last of several concurrent waiters (its oneshot receiver keeps one
//! waker), so reconciles that waited on it next to each other hung forever and kept their
//! controller's concurrency slots (at 2,000 BackupConfigurations, 3 of 4 slots never came back
//! and the last BackupConfigurations never became Ready).

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use stash_core::api::{
    AppBinding, BackupConfiguration, Function, Repository, RestoreSession, Task,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The caches. Readers are cheap to clone.
#[derive(Clone)]
pub struct Caches {
    /// Tasks (cluster-scoped).
    pub tasks: Store<DeserializeGuard<Task>>,
    /// Functions (cluster-scoped).
    pub functions: Store<DeserializeGuard<Function>>,
    /// Repositories (shared with the Repository controller).
    pub repositories: Store<DeserializeGuard<Repository>>,
    /// AppBindings.
    pub appbindings: Store<DeserializeGuard<AppBinding>>,
    /// Namespaces (for their labels).
    pub namespaces: Store<Namespace>,
    /// BackupConfigurations (shared with the BackupConfiguration controller).
    pub backup_configurations: Store<DeserializeGuard<BackupConfiguration>>,
    /// RestoreSessions (shared with the RestoreSession controller).
    pub restore_sessions: Store<DeserializeGuard<RestoreSession>>,
    /// Turns true once every cache above has listed.
    pub ready: tokio::sync::watch::Receiver<bool>,
}

impl Caches {
    /// Waits until every cache has listed (any number of waiters).
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.clone();
        // An error means the caches stopped (shutdown): read what they hold.
        let _ = ready.wait_for(|r| *r).await;
    }
}

/// Counts caches that have listed and flips the shared flag when all have.
#[derive(Clone)]
pub struct Readiness {
    pending: Arc<AtomicUsize>,
    tx: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Readiness {
    /// A gate that opens once `caches` caches have each called [`Readiness::listed`].
    pub fn new(caches: usize) -> (Readiness, tokio::sync::watch::Receiver<bool>) {
        let (tx, rx) = tokio::sync::watch::channel(caches == 0);
        (
            Readiness {
                pending: Arc::new(AtomicUsize::new(caches)),
                tx: Arc::new(tx),
            },
            rx,
        )
    }

    fn listed(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.tx.send_replace(true);
        }
    }
}

/// Drops what reconciles never read from a cached object: its managed fields are most of its
/// size (the caches hold every Repository, AppBinding and BackupConfiguration).
pub trait Slim {
    /// Drops the managed fields.
    fn slim(&mut self);
}

impl<K: Resource> Slim for DeserializeGuard<K> {
    fn slim(&mut self) {
        if let Ok(k) = &mut self.0 {
            k.meta_mut().managed_fields = None;
        }
    }
}

impl Slim for Namespace {
    fn slim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

/// A reflector for `K` over all namespaces: its reader, and the stream of applied objects
/// that keeps it current (poll it until shutdown, or hand it to a controller as its trigger).
/// The first complete list counts towards `readiness`.
pub fn reflect<K>(
    client: &Client,
    readiness: &Readiness,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Slim
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let mut once = Some(readiness.clone());
    let stream = watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(Slim::slim)
        .reflect(writer)
        .inspect(move |event| match event {
            Ok(watcher::Event::InitDone) => {
                if let Some(r) = once.take() {
                    r.listed();
                }
            }
            Err(e) => {
                tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying");
            }
            Ok(_) => {}
        })
        .applied_objects();
    (reader, stream)
}

/// Polls a reflector stream that no controller consumes, until it ends.
pub async fn drive<K>(stream: impl Stream<Item = Result<K, watcher::Error>>) {
    stream.for_each(|_| async {}).await;
}

/// A cached object by namespace (empty for cluster-scoped) and name; `None` when absent or
/// malformed. Callers wait for [`Caches::wait_ready`] first.
pub fn get<K>(store: &Store<DeserializeGuard<K>>, namespace: &str, name: &str) -> Option<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut key = ObjectRef::<DeserializeGuard<K>>::new(name);
    if !namespace.is_empty() {
        key = key.within(namespace);
    }
    store.get(&key).and_then(|g| g.0.as_ref().ok().cloned())
}

/// Every well-formed cached object.
pub fn all<K>(store: &Store<DeserializeGuard<K>>) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok().cloned())
        .collect()
}

/// The references `pick` finds among well-formed cached objects; nothing is cloned but what
/// `pick` returns.
pub fn find<K, T>(
    store: &Store<DeserializeGuard<K>>,
    mut pick: impl FnMut(&K) -> Option<T>,
) -> Vec<T>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok().and_then(&mut pick))
        .collect()
}

/// A cached namespace's labels.
pub fn namespace_labels(
    store: &Store<Namespace>,
    name: &str,
) -> std::collections::BTreeMap<String, String> {
    store
        .get(&ObjectRef::new(name))
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default()
}
