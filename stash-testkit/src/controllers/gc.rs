//! Garbage collector: deletes dependents whose owners are gone, and runs the foreground and
//! orphan deletion protocols.

use std::collections::HashMap;
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

/// One garbage-collection pass.
pub(super) fn sync(api: &Apiserver) {
    let objects = api.store.lock().objects().clone();
    let by_uid: HashMap<&str, (&Key, &Arc<Value>)> =
        objects.iter().map(|(k, v)| (uid_of(v), (k, v))).collect();
    let mut has_dependents: HashMap<String, bool> = HashMap::new();
    for (key, obj) in objects.iter() {
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
            let owner = by_uid
                .get(uid)
                .filter(|(ok, _)| ok.namespace.is_empty() || ok.namespace == key.namespace);
            let Some((_, owner)) = owner else { continue };
            let deleting = owner["metadata"].get("deletionTimestamp").is_some();
            if deleting && has_finalizer(owner, "orphan") {
                strip.push(uid.to_string());
                continue;
            }
            live_owner = true;
            has_dependents.insert(uid.to_string(), true);
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
    for (key, obj) in objects.iter() {
        if obj["metadata"].get("deletionTimestamp").is_none() {
            continue;
        }
        let Some(info) = info_for(api, key) else {
            continue;
        };
        if has_dependents.contains_key(uid_of(obj)) {
            continue;
        }
        for f in ["orphan", "foregroundDeletion"] {
            if has_finalizer(obj, f) {
                remove_finalizer(api, &info, key, f);
            }
        }
    }
}
