//! Storage Secrets: a reconcile needs only the key names of its Repository's storage Secret,
//! and reading them with a get per reconcile was the one per-object request left (at 10,000
//! BackupConfigurations, two gets each until converged and ~145 a second at rest, from the
//! periodic resyncs).
//!
//! The key names a get found are remembered with the Secret's resourceVersion, and a
//! metadata-only watch per namespace (started the first time a reconcile needs a Secret
//! there) says whether the Secret is still at that version: while it is, the remembered names
//! stand; once the watch shows it changed or deleted, they are forgotten (the next reconcile
//! reads again) and the BackupConfigurations that use it are reconciled.
//!
//! RBAC: the watches are per namespace, as the operator's Secret access is (the ClusterRole
//! `stash-operator-secret-reader`, bound by the user in each namespace, grants get, list and
//! watch; list and watch reveal no more than get on every name already does). Where a watch
//! is refused (a binding made before it granted list and watch) the reconciles read with a
//! get each time, as before. Nothing of a Secret's values is kept: the get's answer is dropped
//! once its key names are taken, and the watches ask for metadata only.

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

/// A Secret's metadata, as the watches deliver it (and as the triggers carry it).
pub type SecretMeta = PartialObjectMeta<Secret>;

/// What a read of a storage Secret tells a planner: its key names (`None`: it does not exist),
/// or that the operator may not read it.
#[derive(Clone, Debug, PartialEq)]
pub enum Read {
    /// The key names, or `None` when there is no such Secret.
    Keys(Option<BTreeSet<String>>),
    /// 403: the operator may not read Secrets in that namespace.
    Forbidden,
}

/// The state of one namespace's watch.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Watching {
    /// Started, not (or no longer) listed: what it holds may be behind.
    Listing,
    /// Listed and watching: what it holds is current.
    Current,
    /// Refused or stopped: reconciles read with a get.
    Off,
}

/// What the namespace's watch shows of a Secret.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    /// Nothing yet (the Secret became interesting after the watch listed it).
    Unknown,
    /// Not there (deleted, or not found again by a re-list).
    Absent,
    /// At this resourceVersion.
    At(Box<str>),
}

impl Seen {
    fn of(rv: &str) -> Seen {
        if rv.is_empty() {
            Seen::Absent
        } else {
            Seen::At(rv.into())
        }
    }
}

/// What a get found: a resourceVersion and key names.
type Found = (Box<str>, Option<Arc<BTreeSet<String>>>);

/// A Secret a reconcile reads. Only these are kept (not every Secret of a watched namespace).
struct Entry {
    seen: Seen,
    /// What a get found: the resourceVersion and key names, or `("", None)` for no Secret
    /// (then its users are told when it appears). `None` while the get is under way.
    read: Option<Found>,
}

type Key = (Arc<str>, Box<str>);

#[derive(Default)]
struct State {
    namespaces: HashMap<Arc<str>, Watching>,
    secrets: HashMap<Key, Entry>,
    /// Key-name sets, each held once (most storage Secrets have the same keys).
    key_sets: HashSet<Arc<BTreeSet<String>>>,
}

impl State {
    /// Sets what the watch shows of `key` (if a reconcile reads it) and forgets what a get
    /// found when that is no longer the version shown; whether there was something to forget
    /// (then its users should look again).
    fn see(&mut self, key: &Key, seen: Seen) -> bool {
        let Some(entry) = self.secrets.get_mut(key) else {
            return false;
        };
        entry.seen = seen;
        self.check(key)
    }

    fn check(&mut self, key: &Key) -> bool {
        let Some(entry) = self.secrets.get(key) else {
            return false;
        };
        let stale = match (&entry.read, &entry.seen) {
            (None, _) | (_, Seen::Unknown) => false,
            (Some((rv, _)), seen) => *seen != Seen::of(rv),
        };
        if stale {
            // Read again next time (and the entry made again then).
            self.secrets.remove(key);
        }
        stale
    }
}

/// Where the watches run and whom they tell about changes (set once the controllers run).
struct Runtime {
    client: Client,
    stop: tokio::sync::watch::Receiver<bool>,
    changed: tokio::sync::mpsc::UnboundedSender<SecretMeta>,
    /// Namespaces listing their Secrets at once: a start reaches every namespace within
    /// seconds, and a hundred lists in flight together raised the peak memory.
    listing: Arc<tokio::sync::Semaphore>,
}

/// Storage Secrets' key names, remembered while a watch shows them unchanged.
#[derive(Clone, Default)]
pub struct StorageSecrets {
    state: Arc<Mutex<State>>,
    runtime: Arc<OnceLock<Runtime>>,
}

impl StorageSecrets {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a single step that leaves the maps consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets reconciles start watches (until `stop` turns true); the Secrets that change after
    /// a reconcile read them are sent to `changed`. Before this, every read is a get.
    pub fn start(
        &self,
        client: Client,
        stop: tokio::sync::watch::Receiver<bool>,
        changed: tokio::sync::mpsc::UnboundedSender<SecretMeta>,
    ) {
        let _ = self.runtime.set(Runtime {
            client,
            stop,
            changed,
            listing: Arc::new(tokio::sync::Semaphore::new(4)),
        });
    }

    /// The key names of Secret `namespace/name`: remembered when the namespace's watch shows
    /// it unchanged since they were read, else from a get (which starts the namespace's watch
    /// if it has none).
    pub async fn read(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<Read, kube::Error> {
        if let Some(keys) = self.remembered(namespace, name) {
            return Ok(Read::Keys(Some(keys)));
        }
        let api = Api::<Secret>::namespaced(client.clone(), namespace);
        match api.get_opt(name).await {
            Ok(Some(secret)) => {
                let keys = stash_core::gather::secret_key_names(
                    secret.data.iter().flat_map(|d| d.keys()),
                    secret.string_data.iter().flat_map(|d| d.keys()),
                );
                let rv = secret.metadata.resource_version.clone();
                // The values go now, not at the end of the reconcile.
                drop(secret);
                match rv.filter(|rv| !rv.is_empty()) {
                    Some(rv) => self.remember(namespace, name, &rv, Some(&keys)),
                    None => self.forget(namespace, name),
                }
                Ok(Read::Keys(Some(keys)))
            }
            Ok(None) => {
                self.remember(namespace, name, "", None);
                Ok(Read::Keys(None))
            }
            Err(e) => {
                self.forget(namespace, name);
                match e {
                    // A 403 is an answer, not an error: the planner tells the user which
                    // binding is missing.
                    kube::Error::Api(status) if status.code == 403 => Ok(Read::Forbidden),
                    e => Err(e),
                }
            }
        }
    }

    /// The key names read before, if the namespace's watch is current and shows the Secret at
    /// the version they were read at. Else marks a read under way (so the watch keeps what it
    /// sees of the Secret meanwhile), and starts the namespace's watch when it has none.
    fn remembered(&self, namespace: &str, name: &str) -> Option<BTreeSet<String>> {
        let runtime = self.runtime.get()?;
        let mut state = self.lock();
        let ns = match state.namespaces.get_key_value(namespace) {
            Some((_, Watching::Off)) => return None,
            Some((ns, _)) => ns.clone(),
            None => {
                let ns: Arc<str> = namespace.into();
                state.namespaces.insert(ns.clone(), Watching::Listing);
                tokio::spawn(watch_namespace(
                    self.clone(),
                    runtime.client.clone(),
                    ns.clone(),
                ));
                ns
            }
        };
        let current = state.namespaces.get(namespace) == Some(&Watching::Current);
        let entry = state.secrets.entry((ns, name.into())).or_insert(Entry {
            seen: Seen::Unknown,
            read: None,
        });
        match (&entry.read, &entry.seen) {
            (Some((rv, Some(keys))), Seen::At(seen)) if current && rv == seen => {
                Some(BTreeSet::clone(keys))
            }
            _ => None,
        }
    }

    /// Records what a get found (`rv` empty and no keys: no Secret). If the watch has seen
    /// another version meanwhile, the get may have read an older one: its users are told to
    /// look again.
    fn remember(&self, namespace: &str, name: &str, rv: &str, keys: Option<&BTreeSet<String>>) {
        let mut state = self.lock();
        let keys = keys.map(|keys| match state.key_sets.get(keys) {
            Some(held) => held.clone(),
            None => {
                let held = Arc::new(keys.clone());
                state.key_sets.insert(held.clone());
                held
            }
        });
        let key: Key = (namespace.into(), name.into());
        let Some(entry) = state.secrets.get_mut(&key) else {
            // Not started, the namespace's watch is off, or a change came meanwhile (and its
            // users are already told).
            return;
        };
        if entry.seen == Seen::Unknown {
            // What the get found is at least as new as anything the watch showed before.
            entry.seen = Seen::of(rv);
        }
        entry.read = Some((rv.into(), keys));
        if state.check(&key) {
            drop(state);
            self.changed(namespace, name);
        }
    }

    /// Drops a read under way that found nothing to remember.
    fn forget(&self, namespace: &str, name: &str) {
        let mut state = self.lock();
        let key: Key = (namespace.into(), name.into());
        if state.secrets.get(&key).is_some_and(|e| e.read.is_none()) {
            state.secrets.remove(&key);
        }
    }

    fn changed(&self, namespace: &str, name: &str) {
        if let Some(runtime) = self.runtime.get() {
            let mut meta = SecretMeta::default();
            meta.metadata.namespace = Some(namespace.into());
            meta.metadata.name = Some(name.into());
            let _ = runtime.changed.send(meta);
        }
    }

    fn set_watching(&self, namespace: &Arc<str>, to: Watching) {
        let mut state = self.lock();
        state.namespaces.insert(namespace.clone(), to);
        if to == Watching::Off {
            // Reads go to the API from now on: nothing here is needed.
            state.secrets.retain(|(ns, _), _| ns != namespace);
        }
    }

    /// Keeps what namespace `ns`'s watch shows of the Secrets reconciles read current with one
    /// watch event; tells the users of Secrets that changed or went since they were read.
    fn observe(&self, ns: &Arc<str>, event: watcher::Event<SecretMeta>) {
        let mut changed = Vec::new();
        {
            let mut state = self.lock();
            let key = |o: &SecretMeta| -> Option<Key> {
                Some((ns.clone(), o.metadata.name.as_deref()?.into()))
            };
            match event {
                watcher::Event::Init => {
                    // A (re-)list: what it does not find again is gone once it ends.
                    state.namespaces.insert(ns.clone(), Watching::Listing);
                    // (A read under way keeps `Unknown`: its get is as new as the list.)
                    for ((n, _), entry) in state.secrets.iter_mut() {
                        if n == ns && matches!(entry.seen, Seen::At(_)) {
                            entry.seen = Seen::Absent;
                        }
                    }
                }
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                    let Some(key) = key(&o) else { return };
                    let rv = o.metadata.resource_version.as_deref().unwrap_or_default();
                    if state.see(&key, Seen::of(rv)) {
                        changed.push(key);
                    }
                }
                watcher::Event::Delete(o) => {
                    let Some(key) = key(&o) else { return };
                    if state.see(&key, Seen::Absent) {
                        changed.push(key);
                    }
                }
                watcher::Event::InitDone => {
                    let keys: Vec<Key> = state
                        .secrets
                        .keys()
                        .filter(|(n, _)| n == ns)
                        .cloned()
                        .collect();
                    for key in keys {
                        if state.check(&key) {
                            changed.push(key);
                        }
                    }
                    state.namespaces.insert(ns.clone(), Watching::Current);
                }
            }
        }
        for (ns, name) in changed {
            self.changed(&ns, &name);
        }
    }

    /// Namespaces watched and Secrets kept, for tests and debugging.
    pub fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        (state.namespaces.len(), state.secrets.len())
    }
}

/// Watches the Secrets' metadata in `ns` until the operator stops or the watch is refused.
async fn watch_namespace(secrets: StorageSecrets, client: Client, ns: Arc<str>) {
    let Some((mut stop, listing)) = secrets
        .runtime
        .get()
        .map(|r| (r.stop.clone(), r.listing.clone()))
    else {
        return;
    };
    // Held until the first list is done.
    let mut permit = tokio::select! {
        _ = stop.wait_for(|s| *s) => None,
        permit = listing.acquire_owned() => permit.ok(),
    };
    if permit.is_none() {
        secrets.set_watching(&ns, Watching::Off);
        return;
    }
    let api = Api::<SecretMeta>::namespaced(client, &ns);
    let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    loop {
        let next = tokio::select! {
            _ = stop.wait_for(|s| *s) => None,
            next = stream.next() => next,
        };
        match next {
            Some(Ok(event)) => {
                if matches!(event, watcher::Event::InitDone) {
                    drop(permit.take());
                }
                secrets.observe(&ns, event);
            }
            Some(Err(e)) => {
                let status = match &e {
                    watcher::Error::InitialListFailed(kube::Error::Api(s))
                    | watcher::Error::WatchStartFailed(kube::Error::Api(s)) => Some(s.code),
                    watcher::Error::WatchError(s) => Some(s.code),
                    _ => None,
                };
                if status == Some(403) {
                    tracing::warn!(namespace = %ns, "may not list and watch Secrets here; \
                        storage Secrets are read with a get per reconcile (the ClusterRole \
                        stash-operator-secret-reader grants get, list and watch)");
                    break;
                }
                tracing::warn!(namespace = %ns, error = %e, "Secret watch failed; retrying");
                // Until it has listed again, what it holds may be behind.
                secrets.set_watching(&ns, Watching::Listing);
            }
            None => break,
        }
    }
    secrets.set_watching(&ns, Watching::Off);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, rv: &str) -> SecretMeta {
        let mut m = SecretMeta::default();
        m.metadata.namespace = Some("demo".into());
        m.metadata.name = Some(name.into());
        m.metadata.resource_version = Some(rv.into());
        m
    }

    fn keys(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// A `StorageSecrets` whose namespace `demo` is being watched (no API behind it).
    fn started() -> (
        StorageSecrets,
        Arc<str>,
        tokio::sync::mpsc::UnboundedReceiver<SecretMeta>,
    ) {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        let secrets = StorageSecrets::default();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        // Stopped: the watch task the first lookup spawns ends at once and is not needed.
        let (_, stop) = tokio::sync::watch::channel(true);
        secrets.start(client, stop, tx);
        let ns: Arc<str> = "demo".into();
        secrets
            .lock()
            .namespaces
            .insert(ns.clone(), Watching::Listing);
        (secrets, ns, rx)
    }

    fn names(rx: &mut tokio::sync::mpsc::UnboundedReceiver<SecretMeta>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|m| m.metadata.name)
            .collect()
    }

    /// A reconcile's read that finds nothing remembered: a get answering `rv` and `keys`.
    fn get(s: &StorageSecrets, name: &str, rv: &str, keys: Option<&BTreeSet<String>>) {
        assert_eq!(s.remembered("demo", name), None, "{name} read again");
        s.remember("demo", name, rv, keys);
    }

    #[tokio::test]
    async fn remembered_while_the_watch_shows_the_version_read() {
        let (s, ns, mut rx) = started();
        s.observe(&ns, watcher::Event::Init);
        s.observe(&ns, watcher::Event::InitApply(meta("repo", "5")));
        s.observe(&ns, watcher::Event::InitApply(meta("other", "6")));
        s.observe(&ns, watcher::Event::InitDone);
        assert_eq!(
            s.counts(),
            (1, 0),
            "only Secrets that reconciles read are kept"
        );
        get(&s, "repo", "5", Some(&keys(&["A", "B"])));
        assert_eq!(s.remembered("demo", "repo"), Some(keys(&["A", "B"])));
        assert_eq!(s.counts(), (1, 1));
        assert!(names(&mut rx).is_empty());

        // Changed: forgotten, and its users are told.
        s.observe(&ns, watcher::Event::Apply(meta("repo", "7")));
        assert_eq!(names(&mut rx), ["repo"]);
        get(&s, "repo", "7", Some(&keys(&["A"])));
        assert_eq!(s.remembered("demo", "repo"), Some(keys(&["A"])));
        // Another Secret changing matters to nobody.
        s.observe(&ns, watcher::Event::Apply(meta("other", "8")));
        assert!(names(&mut rx).is_empty());

        // Deleted: forgotten, users told.
        s.observe(&ns, watcher::Event::Delete(meta("repo", "9")));
        assert_eq!(names(&mut rx), ["repo"]);
        get(&s, "repo", "", None);
        // Created again: its users are told.
        s.observe(&ns, watcher::Event::Apply(meta("repo", "10")));
        assert_eq!(names(&mut rx), ["repo"]);
        get(&s, "repo", "10", Some(&keys(&["A"])));
        assert!(s.remembered("demo", "repo").is_some());
    }

    #[tokio::test]
    async fn a_read_behind_the_watch_or_a_relist_that_misses_it_is_not_trusted() {
        let (s, ns, mut rx) = started();
        s.observe(&ns, watcher::Event::Init);
        s.observe(&ns, watcher::Event::InitApply(meta("repo", "5")));
        s.observe(&ns, watcher::Event::InitDone);
        // The watch shows version 6 while a get under way answers version 5.
        assert_eq!(s.remembered("demo", "repo"), None);
        s.observe(&ns, watcher::Event::Apply(meta("repo", "6")));
        s.remember("demo", "repo", "5", Some(&keys(&["A"])));
        assert_eq!(names(&mut rx), ["repo"], "its users look again");
        get(&s, "repo", "6", Some(&keys(&["A"])));
        assert!(s.remembered("demo", "repo").is_some());

        // While re-listing (after a lost watch) nothing is trusted; a Secret the re-list does
        // not find again is gone.
        s.observe(&ns, watcher::Event::Init);
        assert_eq!(s.remembered("demo", "repo"), None);
        s.observe(&ns, watcher::Event::InitDone);
        assert_eq!(names(&mut rx), ["repo"]);
        assert_eq!(s.counts(), (1, 0), "nothing kept of a Secret that went");

        // A read under way when a (re-)list starts is not taken for gone.
        assert_eq!(s.remembered("demo", "repo"), None);
        s.observe(&ns, watcher::Event::Init);
        s.remember("demo", "repo", "11", Some(&keys(&["A"])));
        s.observe(&ns, watcher::Event::InitApply(meta("repo", "11")));
        s.observe(&ns, watcher::Event::InitDone);
        assert!(names(&mut rx).is_empty());
        assert!(s.remembered("demo", "repo").is_some());
    }

    #[tokio::test]
    async fn a_namespace_whose_watch_is_refused_reads_every_time() {
        let (s, ns, _rx) = started();
        s.observe(&ns, watcher::Event::Init);
        s.observe(&ns, watcher::Event::InitApply(meta("repo", "5")));
        s.observe(&ns, watcher::Event::InitDone);
        get(&s, "repo", "5", Some(&keys(&["A"])));
        s.set_watching(&ns, Watching::Off);
        assert_eq!(s.remembered("demo", "repo"), None);
        s.remember("demo", "repo", "5", Some(&keys(&["A"])));
        assert_eq!(s.remembered("demo", "repo"), None);
        assert_eq!(s.counts(), (1, 0));
    }
}
