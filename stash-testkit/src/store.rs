//! The revisioned in-memory object store: a global resourceVersion, a bounded event log for
//! watch replay, and retained snapshots for consistent pagination.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use imbl::{OrdMap, OrdSet};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

/// Storage key: etcd-like order, `group/plural`, then namespace, then name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// `group/plural` (core group: `/plural`).
    pub resource: String,
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Object name.
    pub name: String,
}

impl Key {
    /// A key.
    pub fn new(
        resource: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// The kind of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl ChangeKind {
    /// The watch event type.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "ADDED",
            ChangeKind::Modified => "MODIFIED",
            ChangeKind::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Debug, Clone)]
pub struct Change {
    /// The revision this change created.
    pub rev: u64,
    /// Which object.
    pub key: Key,
    /// What happened.
    pub kind: ChangeKind,
    /// The new state (for `Deleted`, the last state with the deletion's revision).
    pub object: Arc<Value>,
    /// The state before, if any.
    pub previous: Option<Arc<Value>>,
}

/// Objects by key; cloning is O(1).
pub type Objects = OrdMap<Key, Arc<Value>>;

/// `(group/plural, label key, label value)`: the label index's key.
type LabelKey = (String, String, String);

/// What the garbage collector reads, indexed so that a pass visits the objects that have
/// owners or are being deleted instead of every object. Cloning is O(1).
#[derive(Debug, Clone, Default)]
pub struct Ownership {
    /// Every current object.
    pub objects: Objects,
    /// The key of each object, by `metadata.uid`.
    pub uids: imbl::HashMap<String, Key>,
    /// Objects with a non-empty `metadata.ownerReferences`, in key order.
    pub owned: OrdSet<Key>,
    /// Objects with a `metadata.deletionTimestamp`, in key order.
    pub deleting: OrdSet<Key>,
}

impl Ownership {
    /// The object with this uid.
    pub fn by_uid(&self, uid: &str) -> Option<(&Key, &Arc<Value>)> {
        self.objects.get_key_value(self.uids.get(uid)?)
    }

    /// Whether two states of one object have the same index entries (uid, owned, deleting).
    fn same_entry(a: &Value, b: &Value) -> bool {
        let (a, b) = (&a["metadata"], &b["metadata"]);
        let has_owners = |m: &Value| {
            m["ownerReferences"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        };
        a["uid"] == b["uid"]
            && has_owners(a) == has_owners(b)
            && a.get("deletionTimestamp").is_some() == b.get("deletionTimestamp").is_some()
    }

    fn index(&mut self, key: &Key, object: &Value, add: bool) {
        let meta = &object["metadata"];
        if let Some(uid) = meta["uid"].as_str().filter(|u| !u.is_empty()) {
            if add {
                self.uids.insert(uid.to_string(), key.clone());
            } else if self.uids.get(uid) == Some(key) {
                self.uids.remove(uid);
            }
        }
        let has_owners = meta["ownerReferences"]
            .as_array()
            .is_some_and(|r| !r.is_empty());
        for (set, member) in [
            (&mut self.owned, has_owners),
            (&mut self.deleting, meta.get("deletionTimestamp").is_some()),
        ] {
            if add && member {
                set.insert(key.clone());
            } else if !add {
                set.remove(key);
            }
        }
    }
}

/// The mutable state behind the store lock.
#[derive(Debug)]
pub struct State {
    rev: u64,
    /// Current objects, with the uid, owner and deletion indexes over them.
    current: Ownership,
    /// Current objects by label, so a selector with `key=value` visits only its matches.
    labels: HashMap<LabelKey, BTreeSet<Key>>,
    log: VecDeque<Arc<Change>>,
    log_capacity: usize,
    /// A watch may resume from any revision >= this one.
    floor: u64,
    snapshots: VecDeque<(u64, Objects)>,
    tx: broadcast::Sender<Arc<Change>>,
    /// Changes per `group/plural`: a watch wakes only for its own resource.
    by_resource: HashMap<String, broadcast::Sender<Arc<Change>>>,
}

impl State {
    /// The current global revision.
    pub fn rev(&self) -> u64 {
        self.rev
    }

    /// The current object set.
    pub fn objects(&self) -> &Objects {
        &self.current.objects
    }

    /// The current objects with their uid, owner and deletion indexes.
    pub fn ownership(&self) -> &Ownership {
        &self.current
    }

    /// Whether some object of `resource` (`group/plural`) is being deleted.
    pub fn any_deleting(&self, resource: &str) -> bool {
        self.current
            .deleting
            .range(Key::new(resource, "", "")..)
            .next()
            .is_some_and(|k| k.resource == resource)
    }

    /// One object.
    pub fn get(&self, key: &Key) -> Option<Arc<Value>> {
        self.current.objects.get(key).cloned()
    }

    /// The keys of current objects of `resource` carrying every `key=value` label given, in
    /// key order; `None` when no label is given (the caller scans instead).
    pub fn keys_with_labels<'a>(
        &self,
        resource: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Option<Vec<Key>> {
        let mut smallest: Option<&BTreeSet<Key>> = None;
        for (k, v) in labels {
            let lookup = (resource.to_string(), k.to_string(), v.to_string());
            let Some(set) = self.labels.get(&lookup) else {
                return Some(Vec::new());
            };
            if smallest.is_none_or(|s| set.len() < s.len()) {
                smallest = Some(set);
            }
        }
        smallest.map(|s| s.iter().cloned().collect())
    }

    fn index_labels(&mut self, key: &Key, object: &Value, add: bool) {
        let Some(labels) = object["metadata"]["labels"].as_object() else {
            return;
        };
        for (k, v) in labels {
            let Some(v) = v.as_str() else { continue };
            let lookup = (key.resource.clone(), k.clone(), v.to_string());
            if add {
                self.labels.entry(lookup).or_default().insert(key.clone());
            } else if let Some(set) = self.labels.get_mut(&lookup) {
                set.remove(key);
                if set.is_empty() {
                    self.labels.remove(&lookup);
                }
            }
        }
    }

    /// Stores `object` under `key` with a new revision, logs and broadcasts the change.
    pub fn put(&mut self, key: Key, mut object: Value) -> Arc<Value> {
        self.rev += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.rev.to_string());
        compact_managed_fields(&mut object);
        let object = Arc::new(object);
        let previous = self.current.objects.insert(key.clone(), object.clone());
        // Most writes leave labels, uid, owners and deletion as they were: the indexes (sets
        // of keys, each insert a search) are then left as they are.
        let (same_labels, same_ownership) = match &previous {
            Some(p) => (
                p["metadata"]["labels"] == object["metadata"]["labels"],
                Ownership::same_entry(p, &object),
            ),
            None => (false, false),
        };
        if let Some(p) = &previous {
            if !same_labels {
                self.index_labels(&key, p, false);
            }
            if !same_ownership {
                self.current.index(&key, p, false);
            }
        }
        if !same_labels {
            self.index_labels(&key, &object, true);
        }
        if !same_ownership {
            self.current.index(&key, &object, true);
        }
        let kind = if previous.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        self.record(Change {
            rev: self.rev,
            key,
            kind,
            object: object.clone(),
            previous,
        });
        object
    }

    /// Removes the object under `key` with a new revision; returns its last state.
    pub fn remove(&mut self, key: &Key) -> Option<Arc<Value>> {
        let previous = self.current.objects.remove(key)?;
        self.index_labels(key, &previous, false);
        self.current.index(key, &previous, false);
        self.rev += 1;
        let mut last = (*previous).clone();
        last["metadata"]["resourceVersion"] = Value::String(self.rev.to_string());
        let last = Arc::new(last);
        self.record(Change {
            rev: self.rev,
            key: key.clone(),
            kind: ChangeKind::Deleted,
            object: last.clone(),
            previous: Some(previous),
        });
        Some(last)
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        self.log.push_back(change.clone());
        while self.log.len() > self.log_capacity {
            if let Some(old) = self.log.pop_front() {
                self.floor = old.rev;
            }
        }
        // No receivers is fine: nobody is watching.
        if let Some(tx) = self.by_resource.get(&change.key.resource) {
            let _ = tx.send(change.clone());
        }
        let _ = self.tx.send(change);
    }

    /// Keeps the object set of revision `rev` for later pages of a paginated list.
    pub fn retain_snapshot_at(&mut self, rev: u64, objects: Objects) {
        if self.snapshots.iter().any(|(r, _)| *r == rev) {
            return;
        }
        self.snapshots.push_back((rev, objects));
        while self.snapshots.len() > 16 {
            self.snapshots.pop_front();
        }
    }

    /// A retained snapshot at exactly `rev`.
    pub fn snapshot(&self, rev: u64) -> Option<Objects> {
        if rev == self.rev {
            return Some(self.current.objects.clone());
        }
        self.snapshots
            .iter()
            .find(|(r, _)| *r == rev)
            .map(|(_, o)| o.clone())
    }

    /// The oldest revision a watch can resume from.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Logged changes after `rev` (caller checked `rev >= floor`).
    pub fn changes_after(&self, rev: u64) -> Vec<Arc<Change>> {
        let start = self.log.partition_point(|c| c.rev <= rev);
        self.log.iter().skip(start).cloned().collect()
    }

    /// Subscribes to changes committed after this moment.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
    }

    /// Subscribes to changes of one resource (`group/plural`) committed after this moment.
    pub fn subscribe_resource(&mut self, resource: &str) -> broadcast::Receiver<Arc<Change>> {
        self.by_resource
            .entry(resource.to_string())
            .or_insert_with(|| broadcast::channel(8192).0)
            .subscribe()
    }
}

/// Stores `metadata.managedFields` as one JSON string: the nested field tries are most of an
/// object's in-memory size as `serde_json` maps, and only reads need them expanded.
fn compact_managed_fields(object: &mut Value) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(entries) = meta.get_mut("managedFields").filter(|m| m.is_array()) {
            *entries = Value::String(entries.to_string());
        }
    }
}

/// Undoes the storage compaction of `metadata.managedFields` (see [`State::put`]).
pub fn expand_managed_fields(object: &mut Value) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(entries) = meta.get_mut("managedFields") {
            if let Some(text) = entries.as_str() {
                *entries = serde_json::from_str(text).unwrap_or(Value::Array(Vec::new()));
            }
        }
    }
}

/// The store. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Store {
    state: Arc<Mutex<State>>,
    visited: Arc<AtomicU64>,
    expire: Arc<watch::Sender<u64>>,
}

impl Store {
    /// An empty store whose event log keeps `log_capacity` changes.
    pub fn new(log_capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(8192);
        let (expire, _) = watch::channel(0);
        Self {
            visited: Arc::new(AtomicU64::new(0)),
            state: Arc::new(Mutex::new(State {
                rev: 1,
                current: Ownership::default(),
                labels: HashMap::new(),
                log: VecDeque::new(),
                log_capacity: log_capacity.max(1),
                floor: 1,
                snapshots: VecDeque::new(),
                tx,
                by_resource: HashMap::new(),
            })),
            expire: Arc::new(expire),
        }
    }

    /// Locks the store. Every read-check-write sequence runs under this lock, so writes are
    /// linearizable. Never hold it across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // The state is updated in single steps that cannot leave it half-written, so a poisoned
        // lock (a panic in another thread) still guards consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops the whole event log: every watch resuming from an older revision gets 410.
    pub fn compact(&self) {
        let mut state = self.lock();
        state.floor = state.rev;
        state.log.clear();
        state.snapshots.clear();
    }

    /// Ends every open watch with an in-stream 410 ERROR event.
    pub fn expire_watches(&self) {
        self.compact();
        self.expire.send_modify(|n| *n += 1);
    }

    /// Receives a tick whenever [`Store::expire_watches`] is called.
    pub fn expirations(&self) -> watch::Receiver<u64> {
        self.expire.subscribe()
    }

    /// The current revision.
    pub fn rev(&self) -> u64 {
        self.lock().rev
    }

    /// Counts objects a scan examined (lists and watches report theirs here).
    pub fn count_visits(&self, n: usize) {
        self.visited.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// How many stored objects lists and watches have examined so far: a measure of the work
    /// a request did, which indexes keep proportional to its answer.
    pub fn visited(&self) -> u64 {
        self.visited.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn managed_fields_are_compacted_in_storage_and_expanded_on_read() {
        let store = Store::new(10);
        let entries = json!([{"manager": "m", "fieldsV1": {"f:data": {"f:a": {}}}}]);
        let stored = store.lock().put(
            Key::new("/configmaps", "default", "a"),
            json!({"metadata": {"name": "a", "managedFields": entries}}),
        );
        assert!(stored["metadata"]["managedFields"].is_string());
        let mut read = (*stored).clone();
        expand_managed_fields(&mut read);
        assert_eq!(read["metadata"]["managedFields"], entries);
    }

    #[test]
    fn ownership_indexes_follow_writes_and_removals() {
        let store = Store::new(10);
        let mut s = store.lock();
        let k = Key::new("/configmaps", "default", "a");
        let owned = |uid: &str| {
            json!({"metadata": {"name": "a", "uid": uid,
                "ownerReferences": [{"uid": "owner", "name": "o"}]}})
        };
        s.put(k.clone(), owned("u1"));
        assert_eq!(s.ownership().by_uid("u1").map(|(k, _)| k), Some(&k));
        assert!(s.ownership().owned.contains(&k));
        assert!(!s.any_deleting("/configmaps"));

        let mut deleting = owned("u1");
        deleting["metadata"]["ownerReferences"] = json!([]);
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        s.put(k.clone(), deleting);
        assert!(!s.ownership().owned.contains(&k), "no owners left");
        assert!(s.ownership().deleting.contains(&k));
        assert!(s.any_deleting("/configmaps"));
        assert!(!s.any_deleting("/secrets"));

        s.remove(&k);
        assert!(s.ownership().by_uid("u1").is_none());
        assert!(s.ownership().deleting.is_empty() && s.ownership().owned.is_empty());
    }

    #[test]
    fn revisions_increase_and_log_is_bounded() {
        let store = Store::new(2);
        let mut s = store.lock();
        let k = Key::new("/configmaps", "default", "a");
        let a = s.put(k.clone(), json!({"metadata": {"name": "a"}}));
        assert_eq!(a["metadata"]["resourceVersion"], "2");
        s.put(k.clone(), json!({"metadata": {"name": "a"}}));
        let last = s.remove(&k).unwrap();
        assert_eq!(last["metadata"]["resourceVersion"], "4");
        assert_eq!(s.floor(), 2);
        let after: Vec<u64> = s.changes_after(2).iter().map(|c| c.rev).collect();
        assert_eq!(after, vec![3, 4]);
        assert_eq!(s.changes_after(3)[0].kind, ChangeKind::Deleted);
    }
}
