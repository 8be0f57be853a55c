//! The children of invokers (the kinds of [`rules::CHILD_KINDS`] that carry the invoker
//! labels), kept from metadata-only watches: a reconcile looks its children up here instead of
//! four label-selected lists per reconcile (12 lists per BackupConfiguration at 10,000).
//!
//! Only what the planner and the apply step read is kept: each child's name, the invoker its
//! labels name, and its resourceVersion (the apply step skips a child this process applied
//! unchanged since). The watches select on the invoker-type label, so on a real cluster they
//! see only Stash's children, not every ServiceAccount, Role, RoleBinding and CronJob.

use super::cache::Readiness;
use futures_util::{Stream, StreamExt};
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use stash_core::gather as rules;
use stash_core::plan::labels::{INVOKER_NAME, INVOKER_TYPE};
use stash_core::plan::ObjectKey;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

/// A child as the watches deliver it.
pub type ChildMeta = PartialObjectMeta<DynamicObject>;

/// `(namespace, invoker-type label, invoker-name label)`, shared by the invoker's children.
type Invoker = Arc<(Arc<str>, Arc<str>, Box<str>)>;

/// `(index in CHILD_KINDS, namespace, name)`.
type Child = (u8, Arc<str>, Arc<str>);

/// `(namespace, name)` of a child of a known kind.
type Named = (Arc<str>, Arc<str>);

/// A resourceVersion: a number without the string's allocation when it is one (as on every
/// API server we know), else the string (it is opaque to clients).
#[derive(PartialEq)]
enum Version {
    Number(u64),
    Text(Box<str>),
}

impl Version {
    fn new(rv: &str) -> Version {
        match rv.parse::<u64>() {
            Ok(n) if n.to_string() == rv => Version::Number(n),
            _ => Version::Text(rv.into()),
        }
    }

    fn text(&self) -> String {
        match self {
            Version::Number(n) => n.to_string(),
            Version::Text(t) => t.to_string(),
        }
    }
}

struct Entry {
    invoker: Invoker,
    resource_version: Version,
    /// Hash of what a change of which is worth a reconcile of the invoker (see [`trigger_hash`]).
    trigger: u64,
}

/// At 10,000 BackupConfigurations the index holds 70,000 children: it is kept compact (each
/// string once, shared; numbers as numbers; a few children per invoker in a `Vec`).
#[derive(Default)]
struct State {
    objects: HashMap<Child, Entry>,
    by_invoker: HashMap<Invoker, Vec<(u8, Arc<str>)>>,
    /// Namespaces and invoker kinds, each held once.
    strings: HashSet<Arc<str>>,
    /// Per kind: the children seen since a re-list started (the others are gone once it ends).
    relisting: HashMap<u8, HashSet<Named>>,
}

impl State {
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(held) = self.strings.get(s) {
            return held.clone();
        }
        let held: Arc<str> = s.into();
        self.strings.insert(held.clone());
        held
    }

    /// The shared key of an invoker.
    fn invoker(&mut self, ns: Arc<str>, kind: &str, name: &str) -> Invoker {
        let kind = self.intern(kind);
        let key = (ns, kind, Box::<str>::from(name));
        match self.by_invoker.get_key_value(&key) {
            Some((held, _)) => held.clone(),
            None => Arc::new(key),
        }
    }

    fn remove(&mut self, child: &Child) {
        let Some(entry) = self.objects.remove(child) else {
            return;
        };
        if let Some(list) = self.by_invoker.get_mut(&entry.invoker) {
            list.retain(|(k, name)| (*k, name) != (child.0, &child.2));
            if list.is_empty() {
                self.by_invoker.remove(&entry.invoker);
            }
        }
    }

    /// Stores `child`; whether it is new or its trigger hash moved.
    fn upsert(&mut self, child: Child, entry: Entry) -> bool {
        let changed = match self.objects.get(&child) {
            Some(old) if old.invoker == entry.invoker => {
                let changed = old.trigger != entry.trigger;
                self.objects.insert(child, entry);
                return changed;
            }
            Some(_) => {
                self.remove(&child);
                true
            }
            None => true,
        };
        self.by_invoker
            .entry(entry.invoker.clone())
            .or_default()
            .push((child.0, child.2.clone()));
        self.objects.insert(child, entry);
        changed
    }
}

/// Invokers' children with their resourceVersions. Readers are cheap to clone.
#[derive(Clone, Default)]
pub struct Children {
    state: Arc<Mutex<State>>,
}

fn hash_of(v: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// What of a child may call for its invoker's reconcile: its spec (generation), labels,
/// annotations and owners. A status update (a CronJob's last schedule time) changes none.
fn trigger_hash(meta: &kube::api::ObjectMeta) -> u64 {
    hash_of(&(
        meta.generation,
        &meta.labels,
        &meta.annotations,
        meta.owner_references.as_ref().map(|o| {
            o.iter()
                .map(|r| (&r.uid, &r.kind, &r.name))
                .collect::<Vec<_>>()
        }),
    ))
}

impl Children {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a single step that leaves the maps consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The children of invoker `kind`/`name` in `namespace`, with their resourceVersions: what
    /// a list by [`rules::child_labels`] over [`rules::CHILD_KINDS`] answers.
    pub fn of(&self, namespace: &str, kind: &str, name: &str) -> BTreeMap<ObjectKey, String> {
        let [(_, kind), (_, name)] = rules::child_labels(kind, name);
        let ns: Arc<str> = namespace.into();
        let invoker = (ns.clone(), Arc::<str>::from(kind), Box::<str>::from(name));
        let state = self.lock();
        let Some(list) = state.by_invoker.get(&invoker) else {
            return BTreeMap::new();
        };
        list.iter()
            .filter_map(|(k, child_name)| {
                let (api_version, child_kind, _) = rules::CHILD_KINDS.get(usize::from(*k))?;
                let entry = state.objects.get(&(*k, ns.clone(), child_name.clone()))?;
                Some((
                    ObjectKey {
                        api_version: (*api_version).into(),
                        kind: (*child_kind).into(),
                        namespace: Some(namespace.into()),
                        name: child_name.to_string(),
                    },
                    entry.resource_version.text(),
                ))
            })
            .collect()
    }

    /// Keeps the index current with one watch event of `CHILD_KINDS[kind]`; whether the event
    /// may matter to the invoker (a child created, deleted, or changed other than its status).
    pub fn observe(&self, kind: u8, event: &watcher::Event<ChildMeta>) -> bool {
        let mut state = self.lock();
        let id = |state: &mut State, o: &ChildMeta| -> Option<Named> {
            let name = o.metadata.name.as_deref()?.into();
            Some((
                state.intern(o.metadata.namespace.as_deref().unwrap_or_default()),
                name,
            ))
        };
        match event {
            watcher::Event::Init => {
                state.relisting.insert(kind, HashSet::new());
                false
            }
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                let Some((ns, name)) = id(&mut state, o) else {
                    return false;
                };
                if matches!(event, watcher::Event::InitApply(_)) {
                    if let Some(seen) = state.relisting.get_mut(&kind) {
                        seen.insert((ns.clone(), name.clone()));
                    }
                }
                let labels = o.metadata.labels.as_ref();
                let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
                let child = (kind, ns.clone(), name);
                match (label(INVOKER_TYPE), label(INVOKER_NAME)) {
                    (Some(t), Some(n)) => {
                        let entry = Entry {
                            invoker: state.invoker(ns, t, n),
                            resource_version: Version::new(
                                o.metadata.resource_version.as_deref().unwrap_or_default(),
                            ),
                            trigger: trigger_hash(&o.metadata),
                        };
                        state.upsert(child, entry)
                    }
                    // No longer labelled as a child: it no longer counts as one.
                    _ => {
                        let known = state.objects.contains_key(&child);
                        state.remove(&child);
                        known
                    }
                }
            }
            watcher::Event::Delete(o) => {
                if let Some((ns, name)) = id(&mut state, o) {
                    state.remove(&(kind, ns, name));
                }
                true
            }
            watcher::Event::InitDone => {
                let seen = state.relisting.remove(&kind).unwrap_or_default();
                let gone: Vec<Child> = state
                    .objects
                    .keys()
                    .filter(|(k, ns, name)| {
                        *k == kind && !seen.contains(&(ns.clone(), name.clone()))
                    })
                    .cloned()
                    .collect();
                let any = !gone.is_empty();
                for child in gone {
                    state.remove(&child);
                }
                any
            }
        }
    }
}

/// A metadata-only watch of `CHILD_KINDS[kind]` (objects with the invoker-type label) that
/// keeps `children` current. Yields the children whose events may matter to their invoker
/// (see [`Children::observe`]), other than the changes `own` says this process made itself
/// (its invoker's reconcile planned them): a controller's trigger, or polled with
/// [`super::cache::drive`]. Its first complete list counts towards `readiness`.
pub fn watch(
    client: &Client,
    readiness: &Readiness,
    children: Children,
    kind: u8,
    own: impl Fn(&ObjectKey, &str) -> bool + Send + 'static,
) -> impl Stream<Item = Result<ChildMeta, watcher::Error>> + Send + 'static {
    let (api_version, child_kind, plural) = rules::CHILD_KINDS[usize::from(kind)];
    let ar = super::apply::api_resource(api_version, child_kind, plural);
    let api = Api::<ChildMeta>::all_with(client.clone(), &ar);
    let config = watcher::Config::default().labels(INVOKER_TYPE);
    let mut once = Some(readiness.clone());
    let own_write = move |o: &ChildMeta| {
        let key = ObjectKey {
            api_version: api_version.into(),
            kind: child_kind.into(),
            namespace: o.metadata.namespace.clone(),
            name: o.metadata.name.clone().unwrap_or_default(),
        };
        own(
            &key,
            o.metadata.resource_version.as_deref().unwrap_or_default(),
        )
    };
    watcher(api, config)
        .default_backoff()
        .filter_map(move |event| {
            let out = match event {
                Ok(event) => {
                    let matters = children.observe(kind, &event);
                    match event {
                        watcher::Event::InitDone => {
                            if let Some(r) = once.take() {
                                r.listed();
                            }
                            None
                        }
                        watcher::Event::Apply(o) if matters && !own_write(&o) => Some(Ok(o)),
                        watcher::Event::InitApply(o) | watcher::Event::Delete(o) if matters => {
                            Some(Ok(o))
                        }
                        _ => None,
                    }
                }
                Err(e) => {
                    tracing::warn!(kind = child_kind, error = %e, "watch failed; retrying");
                    None
                }
            };
            std::future::ready(out)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn child(kind: &str, name: &str, invoker: &str, rv: &str, generation: i64) -> ChildMeta {
        serde_json::from_value(json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": name, "namespace": "demo", "resourceVersion": rv,
                "generation": generation,
                "labels": {INVOKER_TYPE: kind, INVOKER_NAME: invoker}},
        }))
        .unwrap()
    }

    fn names(children: &Children, invoker: &str) -> Vec<String> {
        children
            .of("demo", "BackupConfiguration", invoker)
            .into_iter()
            .map(|(k, rv)| format!("{} {} {rv}", k.kind, k.name))
            .collect()
    }

    #[test]
    fn children_follow_applies_moves_deletes_and_relists() {
        let c = Children::default();
        let cronjob = rules::CHILD_KINDS
            .iter()
            .position(|(_, k, _)| *k == "CronJob")
            .unwrap() as u8;
        let bc = "BackupConfiguration";
        assert!(c.observe(
            cronjob,
            &watcher::Event::Apply(child(bc, "trigger-a", "a", "1", 1))
        ));
        assert!(c.observe(0, &watcher::Event::Apply(child(bc, "sa-a", "a", "2", 1))));
        assert!(c.observe(0, &watcher::Event::Apply(child(bc, "sa-b", "b", "3", 1))));
        assert_eq!(
            names(&c, "a"),
            ["CronJob trigger-a 1", "ServiceAccount sa-a 2"]
        );
        // A status update moves the resourceVersion and matters to nobody.
        assert!(!c.observe(
            cronjob,
            &watcher::Event::Apply(child(bc, "trigger-a", "a", "4", 1))
        ));
        assert_eq!(
            names(&c, "a"),
            ["CronJob trigger-a 4", "ServiceAccount sa-a 2"]
        );
        // A spec change does.
        assert!(c.observe(
            cronjob,
            &watcher::Event::Apply(child(bc, "trigger-a", "a", "5", 2))
        ));
        // Relabelled to another invoker: it leaves the first.
        assert!(c.observe(0, &watcher::Event::Apply(child(bc, "sa-a", "b", "6", 1))));
        assert_eq!(names(&c, "a"), ["CronJob trigger-a 5"]);
        assert_eq!(
            names(&c, "b"),
            ["ServiceAccount sa-a 6", "ServiceAccount sa-b 3"]
        );
        assert!(c.observe(
            cronjob,
            &watcher::Event::Delete(child(bc, "trigger-a", "a", "7", 2))
        ));
        assert!(names(&c, "a").is_empty());
        assert!(names(&c, "nobody").is_empty());
        // A RestoreSession's children are not a BackupConfiguration's of the same name.
        c.observe(
            0,
            &watcher::Event::Apply(child("RestoreSession", "sa-r", "a", "8", 1)),
        );
        assert!(names(&c, "a").is_empty());
        // A re-list of one kind drops what it no longer finds, of that kind only.
        c.observe(
            cronjob,
            &watcher::Event::Apply(child(bc, "trigger-b", "b", "9", 1)),
        );
        c.observe(0, &watcher::Event::Init);
        c.observe(
            0,
            &watcher::Event::InitApply(child(bc, "sa-b", "b", "3", 1)),
        );
        assert!(c.observe(0, &watcher::Event::InitDone));
        assert_eq!(
            names(&c, "b"),
            ["CronJob trigger-b 9", "ServiceAccount sa-b 3"]
        );
    }
}
