//! The API server's semantics, independent of HTTP: reads, writes, deletes and their rules.
//!
//! The HTTP layer and the built-in controllers both call these functions, so every write
//! goes through one pipeline (status split, generation, managedFields, no-op detection,
//! revision, watch event).

mod delete;
mod metadata;
pub mod present;
mod read;
mod schema;
mod strategy;
mod write;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::clock::VirtualClock;
use crate::registry::{Registry, ResourceInfo};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{ApiError, ApiResult};
use crate::store::{Key, Store};

pub use delete::{DeleteOptions, DeleteOutcome, Propagation};
pub use present::Shape;
pub use read::{ListOptions, ListPage};
pub use write::{FieldValidation, PatchKind, Warnings, WriteOptions, Written};

/// Captured container output: `(namespace, pod, container)` → text.
pub type PodLogs = Arc<Mutex<HashMap<(String, String, String), String>>>;

/// The fake API server's core. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Apiserver {
    /// The object store.
    pub store: Store,
    /// Served resources.
    pub registry: Registry,
    /// The virtual clock every timestamp comes from.
    pub clock: VirtualClock,
    /// Pod logs written by the kubelet.
    pub logs: PodLogs,
}

impl Apiserver {
    /// A server with the built-in resources and the default namespaces.
    pub fn new(clock: VirtualClock) -> Self {
        let api = Self {
            store: Store::new(20_000),
            registry: Registry::new(),
            clock,
            logs: PodLogs::default(),
        };
        api.bootstrap();
        api
    }

    fn bootstrap(&self) {
        let Some(ns) = self.registry.get("", "v1", "namespaces") else {
            return;
        };
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let body = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            // The namespaces are fixed, valid and created on an empty store; failure is impossible
            // short of a bug, and then the server still works without them.
            let _ = self.create(&ns, "", body, &WriteOptions::manager("kube-apiserver"));
        }
        if let Some(sa) = self.registry.get("", "v1", "serviceaccounts") {
            let body = serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
            let _ = self.create(
                &sa,
                "default",
                body,
                &WriteOptions::manager("kube-controller-manager"),
            );
        }
    }

    /// The storage key of an object.
    pub fn key(info: &ResourceInfo, namespace: &str, name: &str) -> Key {
        let ns = if info.namespaced { namespace } else { "" };
        Key::new(info.storage_prefix(), ns, name)
    }

    /// Resolves a resource by apiVersion and plural, e.g. for controllers.
    pub fn resource(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> ApiResult<Arc<ResourceInfo>> {
        self.registry
            .get(group, version, plural)
            .ok_or_else(ApiError::no_route)
    }

    /// Lists every object of a resource (all namespaces) at the current revision.
    pub fn objects_of(&self, info: &ResourceInfo) -> Vec<Arc<Value>> {
        let prefix = info.storage_prefix();
        let objects = self.store.lock().objects().clone();
        let start = Key::new(prefix.clone(), "", "");
        objects
            .range(start..)
            .take_while(|(k, _)| k.resource == prefix)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Parses list selectors for a resource.
    pub fn selectors(
        info: &ResourceInfo,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> ApiResult<(LabelSelector, FieldSelector)> {
        Ok((
            LabelSelector::parse(labels.unwrap_or_default())?,
            FieldSelector::parse(fields.unwrap_or_default(), &info.field_selectors)?,
        ))
    }
}

/// `metadata.name` of an object.
pub fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

/// `metadata.namespace` of an object.
pub fn namespace_of(obj: &Value) -> &str {
    obj["metadata"]["namespace"].as_str().unwrap_or_default()
}

/// `metadata.uid` of an object.
pub fn uid_of(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or_default()
}
