//! Garbage collector: deletes dependents whose owners are gone, and runs the foreground and
//! orphan deletion protocols.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::MANAGER;
use crate::apiserver::{uid_of, Apiserver, DeleteOptions, Propagation};
use crate::registry::ResourceInfo;
use crate::store::Key;

/// The resource an object key belongs to.
pub(super) fn info_for(api: &Apiserver, key: &Key) -> Option<Arc<ResourceInfo>> {
    let (group, plural) = key.resource.split_once('/')?;
    api.registry.any_version(group, plural)
}

fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|l| l.iter().any(|x| x == f))
}

fn remove_finalizer(api: &Apiserver, info: &ResourceInfo, key: &Key, f: &str) {
    let _ = api.modify(info, &key.namespace, &key.name, "", MANAGER, |o| {
        let Some(list) = o["metadata"]["finalizers"].as_array_mut() else {
            return false;
        };
        let before = list.len();
        list.retain(|x| x != f);
        list.len() != before
    });
}

/// Whether every owner of these objects exists (by name and uid, within the dependent's
/// namespace). When so, and nothing was deleted, a full pass would change nothing.
pub(super) fn owners_live(api: &Apiserver, objects: &[Arc<Value>]) -> bool {
    let state = api.store.lock();
    objects.iter().all(|obj| {
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
        obj["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|r| {
                let (Some(api_version), Some(kind), Some(name)) = (
                    r["apiVersion"].as_str(),
                    r["kind"].as_str(),
                    r["name"].as_str(),
                ) else {
                    return false;
                };
                let Some(info) = api.registry.by_kind(api_version, kind) else {
                    return false;
                };
                state
                    .get(&Apiserver::key(&info, ns, name))
                    .is_some_and(|o| {
                        uid_of(&o) == r["uid"].as_str().unwrap_or_default()
                            && o["metadata"].get("deletionTimestamp").is_none()
                    })
            })
    })
}

/// One garbage-collection pass. It visits the objects that have owners and those being
/// deleted (the store indexes both, and objects by uid), not every object.
pub(super) fn sync(api: &Apiserver) {
    let view = api.store.lock().ownership().clone();
    api.store
        .count_visits(view.owned.len() + view.deleting.len());
    let mut has_dependents: HashSet<String> = HashSet::new();
    for key in view.owned.iter() {
        let Some(obj) = view.objects.get(key) else {
            continue;
        };
        let Some(refs) = obj["metadata"]["ownerReferences"]
            .as_array()
            .filter(|r| !r.is_empty())
        else {
            continue;
        };
        let Some(info) = info_for(api, key) else {
            continue;
        };
        let mut live_owner = false;
        let mut strip = Vec::new();
        for r in refs {
            let uid = r["uid"].as_str().unwrap_or_default();
            let owner = view
                .by_uid(uid)
                .filter(|(ok, _)| ok.namespace.is_empty() || ok.namespace == key.namespace);
            let Some((_, owner)) = owner else { continue };
            let deleting = owner["metadata"].get("deletionTimestamp").is_some();
            if deleting && has_finalizer(owner, "orphan") {
                strip.push(uid.to_string());
                continue;
            }
            live_owner = true;
            has_dependents.insert(uid.to_string());
            if deleting
                && has_finalizer(owner, "foregroundDeletion")
                && obj["metadata"].get("deletionTimestamp").is_none()
            {
                let opts = DeleteOptions {
                    propagation: Some(Propagation::Foreground),
                    ..DeleteOptions::default()
                };
                let _ = api.delete(&info, &key.namespace, &key.name, &opts);
            }
        }
        if !strip.is_empty() {
            let _ = api.modify(&info, &key.namespace, &key.name, "", MANAGER, |o| {
                if let Some(list) = o["metadata"]["ownerReferences"].as_array_mut() {
                    list.retain(|r| !strip.iter().any(|u| r["uid"] == u.as_str()));
                }
                true
            });
        }
        if !live_owner && strip.is_empty() && obj["metadata"].get("deletionTimestamp").is_none() {
            let opts = DeleteOptions {
                propagation: Some(Propagation::Background),
                ..DeleteOptions::default()
            };
            let _ = api.delete(&info, &key.namespace, &key.name, &opts);
        }
    }
    for key in view.deleting.iter() {
        let Some(obj) = view.objects.get(key) else {
            continue;
        };
        let Some(info) = info_for(api, key) else {
            continue;
        };
        if has_dependents.contains(uid_of(obj)) {
            continue;
        }
        for f in ["orphan", "foregroundDeletion"] {
            if has_finalizer(obj, f) {
                remove_finalizer(api, &info, key, f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::WriteOptions;
    use crate::clock::VirtualClock;
    use serde_json::json;

    /// A pass examines the objects that have owners or are being deleted, however many others
    /// exist, and still collects the dependents of a deleted owner and runs the orphan protocol.
    #[test]
    fn a_pass_visits_owned_and_deleting_objects_only() {
        let api = Apiserver::new(VirtualClock::default());
        let cm = api.resource("", "v1", "configmaps").unwrap();
        let w = WriteOptions::manager("test");
        let create = |name: &str, owner: Option<&Value>| {
            let mut body =
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
            if let Some(o) = owner {
                body["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1",
                    "kind": "ConfigMap", "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]}]);
            }
            api.create(&cm, "default", body, &w).unwrap()
        };
        for i in 0..500 {
            create(&format!("bystander-{i}"), None);
        }
        let owner = create("owner", None);
        create("dependent", Some(&owner));
        let kept = create("kept-owner", None);
        create("orphan", Some(&kept));

        let visits = |api: &Apiserver| {
            let before = api.store.visited();
            sync(api);
            api.store.visited() - before
        };
        assert_eq!(visits(&api), 2, "the two dependents");
        assert!(api.get(&cm, "default", "dependent").is_ok());

        api.delete(&cm, "default", "owner", &DeleteOptions::default())
            .unwrap();
        let orphaning = DeleteOptions {
            propagation: Some(Propagation::Orphan),
            ..DeleteOptions::default()
        };
        api.delete(&cm, "default", "kept-owner", &orphaning)
            .unwrap();
        assert_eq!(visits(&api), 3, "two dependents and the orphaning owner");
        assert!(api.get(&cm, "default", "dependent").is_err(), "collected");
        let orphan = api.get(&cm, "default", "orphan").unwrap();
        assert!(orphan["metadata"]
            .get("ownerReferences")
            .is_none_or(|r| r == &json!([])));
        sync(&api);
        assert!(
            api.get(&cm, "default", "kept-owner").is_err(),
            "orphan finalizer removed"
        );
        assert_eq!(visits(&api), 0);
    }
}
