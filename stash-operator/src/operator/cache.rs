//! Reflector caches of what reconciles read: the Task/Function catalog, Repositories,
//! AppBindings, Namespaces, and the invokers a Repository counts as references. A reconcile
//! reads these from memory instead of issuing a list or get per object per reconcile (which
//! made the API load grow with the square of the number of BackupConfigurations).

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use stash_core::api::{
    AppBinding, BackupConfiguration, Function, Repository, RestoreSession, Task,
};

/// The caches. Readers are cheap to clone.
#[derive(Clone)]
pub struct Caches {
    /// Tasks (cluster-scoped).
    pub tasks: Store<DeserializeGuard<Task>>,
    /// Functions (cluster-scoped).
    pub functions: Store<DeserializeGuard<Function>>,
    /// Repositories.
    pub repositories: Store<DeserializeGuard<Repository>>,
    /// AppBindings.
    pub appbindings: Store<DeserializeGuard<AppBinding>>,
    /// Namespaces (for their labels).
    pub namespaces: Store<Namespace>,
    /// BackupConfigurations (the BackupConfiguration controller's own cache).
    pub backup_configurations: Store<DeserializeGuard<BackupConfiguration>>,
    /// RestoreSessions (the RestoreSession controller's own cache).
    pub restore_sessions: Store<DeserializeGuard<RestoreSession>>,
}

/// Starts a reflector for `K` over all namespaces; returns its reader and the future that
/// keeps it current (run it until shutdown).
pub fn reflect<K>(
    client: &Client,
) -> (
    Store<K>,
    impl std::future::Future<Output = ()> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(Api::<K>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .for_each(|event| async move {
        if let Err(e) = event {
            tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying");
        }
    });
    (reader, stream)
}

/// A cached object by namespace (empty for cluster-scoped) and name, once the cache has
/// synced; `None` when absent or malformed.
pub async fn get<K>(store: &Store<DeserializeGuard<K>>, namespace: &str, name: &str) -> Option<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let _ = store.wait_until_ready().await;
    let mut key = ObjectRef::<DeserializeGuard<K>>::new(name);
    if !namespace.is_empty() {
        key = key.within(namespace);
    }
    store.get(&key).and_then(|g| g.0.as_ref().ok().cloned())
}

/// Every well-formed cached object, once the cache has synced.
pub async fn all<K>(store: &Store<DeserializeGuard<K>>) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let _ = store.wait_until_ready().await;
    store
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok().cloned())
        .collect()
}

/// The references `pick` finds among well-formed cached objects, once the cache has synced;
/// nothing is cloned but what `pick` returns.
pub async fn find<K, T>(
    store: &Store<DeserializeGuard<K>>,
    mut pick: impl FnMut(&K) -> Option<T>,
) -> Vec<T>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let _ = store.wait_until_ready().await;
    store
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok().and_then(&mut pick))
        .collect()
}

/// A cached namespace's labels, once the cache has synced.
pub async fn namespace_labels(
    store: &Store<Namespace>,
    name: &str,
) -> std::collections::BTreeMap<String, String> {
    let _ = store.wait_until_ready().await;
    store
        .get(&ObjectRef::new(name))
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default()
}
