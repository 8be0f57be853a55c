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
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
    /// The invokers (BackupConfigurations, RestoreSessions) by the Repository they reference,
    /// kept by the same reflectors: a Repository reconcile looks up its own, instead of a scan
    /// of every invoker (which made the operator's CPU grow with N² at 10,000).
    pub references: References,
    /// Invokers' children (from metadata-only watches).
    pub children: super::children::Children,
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

    pub(crate) fn listed(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.tx.send_replace(true);
        }
    }
}

/// `kubectl apply`'s copy of the whole object as last applied: as large as the object again,
/// and read by kubectl only.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what reconciles never read from a cached object: its managed fields are most of its
/// size (the caches hold every Repository, AppBinding and BackupConfiguration), and kubectl's
/// last-applied-configuration annotation (on every object created by `kubectl apply`) is a
/// second copy of it. The trigger predicates hash what is left, the same way on every event.
pub trait Slim {
    /// Drops the managed fields and the last-applied-configuration annotation.
    fn slim(&mut self);
}

fn slim_meta(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
    }
}

impl<K: Resource> Slim for DeserializeGuard<K> {
    fn slim(&mut self) {
        if let Ok(k) = &mut self.0 {
            slim_meta(k.meta_mut());
        }
    }
}

impl Slim for Namespace {
    fn slim(&mut self) {
        slim_meta(&mut self.metadata);
    }
}

/// The trigger predicate of the invokers' controllers: what of an object may change its plan.
/// Its spec (generation), labels, annotations and deletion do; an update of its status only
/// (most often the one its own reconcile just wrote) or of its finalizers only (the one its
/// reconcile added, before applying its children in the same pass) does not. A periodic
/// requeue still brings every object back, whatever was filtered.
pub fn spec_or_metadata<K: Resource>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = obj.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        meta.generation,
        &meta.labels,
        &meta.annotations,
        meta.deletion_timestamp.is_some(),
    )
        .hash(&mut h);
    Some(h.finish())
}

/// `(kind, namespace, name)` of an invoker.
type Invoker = (&'static str, String, String);

#[derive(Default)]
struct ReferenceState {
    /// The Repository `(namespace, name)` each invoker references.
    by_invoker: HashMap<Invoker, (String, String)>,
    /// The invokers of each Repository, sorted. A `Vec`, not a `BTreeSet`: most Repositories
    /// have one invoker, and a set's first node holds room for eleven (about 700 bytes each,
    /// 7 MB at 10,000 BackupConfigurations).
    by_repository: HashMap<(String, String), Vec<Invoker>>,
    /// Invokers seen since a re-list started (the others are gone once it ends).
    relisting: HashMap<&'static str, HashSet<(String, String)>>,
}

impl ReferenceState {
    fn remove(&mut self, invoker: &Invoker) {
        if let Some(repo) = self.by_invoker.remove(invoker) {
            if let Some(set) = self.by_repository.get_mut(&repo) {
                if let Ok(i) = set.binary_search(invoker) {
                    set.remove(i);
                }
                if set.is_empty() {
                    self.by_repository.remove(&repo);
                }
            }
        }
    }

    fn set(&mut self, invoker: Invoker, repo: Option<(String, String)>) {
        if self.by_invoker.get(&invoker) == repo.as_ref() {
            return;
        }
        self.remove(&invoker);
        if let Some(repo) = repo {
            let set = self.by_repository.entry(repo.clone()).or_default();
            if let Err(i) = set.binary_search(&invoker) {
                set.insert(i, invoker.clone());
            }
            self.by_invoker.insert(invoker, repo);
        }
    }
}

/// Invokers by the Repository they reference (see [`Caches::references`]).
#[derive(Clone, Default)]
pub struct References {
    state: Arc<Mutex<ReferenceState>>,
}

impl References {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReferenceState> {
        // Every update is a single step that leaves the maps consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The invokers of Repository `namespace/name`, by kind, namespace and name.
    pub fn of(&self, namespace: &str, name: &str) -> Vec<Invoker> {
        self.lock()
            .by_repository
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Keeps the index current with one watch event of invoker kind `kind`; `repository`
    /// reads an invoker's Repository reference.
    pub fn observe<K>(
        &self,
        kind: &'static str,
        event: &watcher::Event<DeserializeGuard<K>>,
        repository: impl Fn(&K) -> Option<&stash_core::api::ObjectRef>,
    ) where
        K: Resource,
    {
        let key = |g: &DeserializeGuard<K>| -> Option<(String, String)> {
            let meta = match &g.0 {
                Ok(k) => k.meta(),
                Err(invalid) => &invalid.metadata,
            };
            Some((
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone()?,
            ))
        };
        let target = |g: &DeserializeGuard<K>, ns: &str| -> Option<(String, String)> {
            let r = repository(g.0.as_ref().ok()?)?;
            let repo_ns = r
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(ns);
            Some((repo_ns.to_string(), r.name.clone()))
        };
        let mut state = self.lock();
        match event {
            watcher::Event::Init => {
                state.relisting.insert(kind, HashSet::new());
            }
            watcher::Event::Apply(g) | watcher::Event::InitApply(g) => {
                let Some((ns, name)) = key(g) else { return };
                let repo = target(g, &ns);
                if matches!(event, watcher::Event::InitApply(_)) {
                    if let Some(seen) = state.relisting.get_mut(kind) {
                        seen.insert((ns.clone(), name.clone()));
                    }
                }
                state.set((kind, ns, name), repo);
            }
            watcher::Event::Delete(g) => {
                if let Some((ns, name)) = key(g) {
                    state.remove(&(kind, ns, name));
                }
            }
            watcher::Event::InitDone => {
                let seen = state.relisting.remove(kind).unwrap_or_default();
                let gone: Vec<Invoker> = state
                    .by_invoker
                    .keys()
                    .filter(|(k, ns, name)| {
                        *k == kind && !seen.contains(&(ns.clone(), name.clone()))
                    })
                    .cloned()
                    .collect();
                for invoker in gone {
                    state.remove(&invoker);
                }
            }
        }
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
    reflect_with(client, readiness, |_: &watcher::Event<K>| {})
}

/// [`reflect`], with `observe` seeing every watch event once the store has it.
pub fn reflect_with<K>(
    client: &Client,
    readiness: &Readiness,
    mut observe: impl FnMut(&watcher::Event<K>) + Send + 'static,
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
            Ok(event) => {
                observe(event);
                if matches!(event, watcher::Event::InitDone) {
                    if let Some(r) = once.take() {
                        r.listed();
                    }
                }
            }
            Err(e) => {
                tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying");
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bc(ns: &str, name: &str, repo: serde_json::Value) -> DeserializeGuard<BackupConfiguration> {
        serde_json::from_value(json!({
            "apiVersion": "stash.appscode.com/v1beta1", "kind": "BackupConfiguration",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"repository": repo},
        }))
        .unwrap()
    }

    #[test]
    fn slim_drops_managed_fields_and_last_applied_only() {
        let mut r: DeserializeGuard<Repository> = serde_json::from_value(json!({
            "apiVersion": "stash.appscode.com/v1alpha1", "kind": "Repository",
            "metadata": {"name": "r", "namespace": "demo",
                "annotations": {LAST_APPLIED: "{\"big\": true}", "team": "db"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"backend": {"s3": {"endpoint": "e", "bucket": "b"}}},
        }))
        .unwrap();
        r.slim();
        let meta = r.0.as_ref().unwrap().meta();
        assert!(meta.managed_fields.is_none());
        let kept: Vec<_> = meta.annotations.iter().flatten().collect();
        assert_eq!(kept, [(&"team".to_string(), &"db".to_string())]);
        assert_eq!(
            r.0.as_ref()
                .unwrap()
                .spec
                .backend
                .s3
                .as_ref()
                .unwrap()
                .bucket,
            "b"
        );
    }

    fn observe(refs: &References, event: watcher::Event<DeserializeGuard<BackupConfiguration>>) {
        refs.observe("BackupConfiguration", &event, |b: &BackupConfiguration| {
            b.spec.repository.as_ref()
        });
    }

    fn names(refs: &References, ns: &str, repo: &str) -> Vec<String> {
        refs.of(ns, repo)
            .into_iter()
            .map(|(_, ns, name)| format!("{ns}/{name}"))
            .collect()
    }

    #[test]
    fn references_follow_applies_moves_deletes_and_relists() {
        let refs = References::default();
        observe(
            &refs,
            watcher::Event::Apply(bc("a", "x", json!({"name": "r"}))),
        );
        observe(
            &refs,
            watcher::Event::Apply(bc("b", "y", json!({"name": "r", "namespace": "a"}))),
        );
        observe(
            &refs,
            watcher::Event::Apply(bc("b", "z", json!({"name": "r"}))),
        );
        assert_eq!(names(&refs, "a", "r"), ["a/x", "b/y"]);
        assert_eq!(names(&refs, "b", "r"), ["b/z"]);
        // Moving to another Repository leaves the first.
        observe(
            &refs,
            watcher::Event::Apply(bc("a", "x", json!({"name": "s"}))),
        );
        assert_eq!(names(&refs, "a", "r"), ["b/y"]);
        assert_eq!(names(&refs, "a", "s"), ["a/x"]);
        observe(
            &refs,
            watcher::Event::Delete(bc("b", "y", json!({"name": "r", "namespace": "a"}))),
        );
        assert!(names(&refs, "a", "r").is_empty());
        // A re-list drops what it no longer finds.
        observe(&refs, watcher::Event::Init);
        observe(
            &refs,
            watcher::Event::InitApply(bc("b", "z", json!({"name": "r"}))),
        );
        observe(&refs, watcher::Event::InitDone);
        assert!(names(&refs, "a", "s").is_empty());
        assert_eq!(names(&refs, "b", "r"), ["b/z"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_concurrent_waiter_wakes_when_the_caches_have_listed() {
        // Waiters polled as separate futures with their own wakers, as a controller's runner
        // polls reconciles: kube-runtime's `Store::wait_until_ready` wakes only the last.
        let (readiness, ready) = Readiness::new(2);
        let mut waiters = futures_util::stream::FuturesUnordered::new();
        for _ in 0..8 {
            let mut rx = ready.clone();
            waiters.push(async move {
                let _ = rx.wait_for(|r| *r).await;
            });
        }
        let all = async { while waiters.next().await.is_some() {} };
        let open = async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            readiness.listed();
            readiness.listed();
        };
        let both = futures_util::future::join(all, open);
        tokio::time::timeout(std::time::Duration::from_secs(5), both)
            .await
            .expect("every waiter woke");
    }
}
