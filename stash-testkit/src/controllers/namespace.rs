//! Namespace controller: empties a terminating namespace, then finalizes it; like the
//! service-account controller, it also gives every active namespace a `default` account.

use super::gc::info_for as gc_info;
use super::MANAGER;
use crate::apiserver::{Apiserver, DeleteOptions, Propagation, WriteOptions};
use crate::store::Key;

/// One pass over terminating namespaces.
pub(super) fn sync(api: &Apiserver) {
    let Ok(ns_info) = api.resource("", "v1", "namespaces") else {
        return;
    };
    let accounts = api.resource("", "v1", "serviceaccounts").ok();
    for ns in api.objects_of(&ns_info) {
        if ns["metadata"].get("deletionTimestamp").is_none() {
            if let Some(sa) = &accounts {
                let name = ns["metadata"]["name"].as_str().unwrap_or_default();
                let key = Apiserver::key(sa, name, "default");
                if api.store.lock().get(&key).is_none() {
                    let body = serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
                    let _ = api.create(sa, name, body, &WriteOptions::manager(MANAGER));
                }
            }
            continue;
        }
        let name = ns["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let objects = api.store.lock().objects().clone();
        let contents: Vec<Key> = objects
            .keys()
            .filter(|k| k.namespace == name)
            .cloned()
            .collect();
        for key in &contents {
            let Some(info) = gc_info(api, key) else {
                continue;
            };
            let deleting = objects
                .get(key)
                .is_some_and(|o| o["metadata"].get("deletionTimestamp").is_some());
            if !deleting {
                let opts = DeleteOptions {
                    propagation: Some(Propagation::Background),
                    ..DeleteOptions::default()
                };
                let _ = api.delete(&info, &key.namespace, &key.name, &opts);
            }
        }
        if contents.is_empty() {
            let _ = api.modify(&ns_info, "", &name, "", MANAGER, |o| {
                if !o["spec"].is_object() {
                    o["spec"] = serde_json::json!({});
                }
                o["spec"]["finalizers"] = serde_json::json!([]);
                true
            });
        }
    }
}
