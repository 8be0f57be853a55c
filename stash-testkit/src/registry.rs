//! The resource registry: which group/version/resources exist, their kinds, scope and strategy.
//!
//! Built-in resources are declared statically; custom resources are added when their
//! `CustomResourceDefinition` is stored and removed when it is deleted.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::{json, Value};

/// When `metadata.generation` moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationRule {
    /// The resource has no generation.
    None,
    /// Increments when `spec` changes (built-in workloads).
    Spec,
    /// Increments on any change outside `metadata` (and outside `status` when the status
    /// subresource is enabled): custom resources.
    AllButMetadata,
}

/// Everything the server knows about one served group/version/resource.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    /// API group, `""` for the core group.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Plural resource name used in URLs.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Kind of the list.
    pub list_kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names for kubectl.
    pub short_names: Vec<String>,
    /// Categories (e.g. `all`).
    pub categories: Vec<String>,
    /// Whether `/status` is a subresource that splits writes.
    pub status_subresource: bool,
    /// Generation semantics.
    pub generation: GenerationRule,
    /// Whether this came from a CRD.
    pub custom: bool,
    /// The CRD's `openAPIV3Schema` for this version, if any.
    pub schema: Option<Arc<Value>>,
    /// Extra field selectors this resource supports, beyond `metadata.name`/`metadata.namespace`.
    pub field_selectors: Vec<String>,
    /// A CRD's `additionalPrinterColumns` for this version (served as `Table` to kubectl).
    pub printer_columns: Vec<Value>,
    /// The version objects are stored in (a CRD's storage version; the version itself for
    /// built-ins).
    pub storage_version: String,
}

impl ResourceInfo {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage key prefix: the same for every version of a resource.
    pub fn storage_prefix(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    /// Is this the given group and plural?
    pub fn is(&self, group: &str, plural: &str) -> bool {
        self.group == group && self.plural == plural
    }

    fn builtin(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            list_kind: format!("{kind}List"),
            namespaced,
            short_names: Vec::new(),
            categories: Vec::new(),
            status_subresource: false,
            generation: GenerationRule::None,
            custom: false,
            schema: None,
            field_selectors: Vec::new(),
            printer_columns: Vec::new(),
            storage_version: version.into(),
        }
    }

    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self
    }

    fn all_category(mut self) -> Self {
        self.categories = vec!["all".into()];
        self
    }

    fn generation(mut self, rule: GenerationRule) -> Self {
        self.generation = rule;
        self
    }

    fn fields(mut self, fields: &[&str]) -> Self {
        self.field_selectors = fields.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Discovery's `storageVersionHash`: the first 8 bytes of the SHA-256 of
    /// `group/storageVersion/Kind`, base64-encoded.
    pub fn storage_version_hash(&self) -> String {
        use base64::Engine;
        use sha2::Digest;
        let digest = sha2::Sha256::digest(
            format!("{}/{}/{}", self.group, self.storage_version, self.kind).as_bytes(),
        );
        base64::engine::general_purpose::STANDARD.encode(&digest[..8])
    }

    /// The verbs advertised in discovery.
    pub fn verbs(&self) -> Vec<&'static str> {
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }

    /// Subresource names advertised in discovery.
    pub fn subresources(&self) -> Vec<&'static str> {
        let mut subs = Vec::new();
        if self.status_subresource {
            subs.push("status");
        }
        if self.is("", "pods") {
            subs.push("log");
        }
        if self.is("", "namespaces") {
            subs.push("finalize");
        }
        subs
    }
}

fn builtins() -> Vec<ResourceInfo> {
    use GenerationRule::Spec;
    let event_fields = [
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ];
    vec![
        ResourceInfo::builtin("", "v1", "namespaces", "Namespace", false)
            .short(&["ns"])
            .with_status()
            .fields(&["status.phase"]),
        ResourceInfo::builtin("", "v1", "nodes", "Node", false)
            .short(&["no"])
            .with_status(),
        ResourceInfo::builtin("", "v1", "secrets", "Secret", true).fields(&["type"]),
        ResourceInfo::builtin("", "v1", "configmaps", "ConfigMap", true).short(&["cm"]),
        ResourceInfo::builtin("", "v1", "services", "Service", true)
            .short(&["svc"])
            .with_status()
            .all_category(),
        ResourceInfo::builtin("", "v1", "endpoints", "Endpoints", true).short(&["ep"]),
        ResourceInfo::builtin(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            "EndpointSlice",
            true,
        ),
        ResourceInfo::builtin("", "v1", "serviceaccounts", "ServiceAccount", true).short(&["sa"]),
        ResourceInfo::builtin(
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
        )
        .short(&["pvc"])
        .with_status(),
        ResourceInfo::builtin("", "v1", "pods", "Pod", true)
            .short(&["po"])
            .with_status()
            .all_category()
            .fields(&[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ]),
        ResourceInfo::builtin("", "v1", "events", "Event", true)
            .short(&["ev"])
            .fields(&event_fields),
        ResourceInfo::builtin("events.k8s.io", "v1", "events", "Event", true)
            .short(&["ev"])
            .fields(&[
                "reason",
                "type",
                "regarding.kind",
                "regarding.name",
                "regarding.namespace",
                "regarding.uid",
            ]),
        // Workload kinds are served (CRUD, status, generation) without controllers of their own.
        ResourceInfo::builtin("apps", "v1", "deployments", "Deployment", true)
            .short(&["deploy"])
            .with_status()
            .all_category()
            .generation(Spec),
        ResourceInfo::builtin("apps", "v1", "statefulsets", "StatefulSet", true)
            .short(&["sts"])
            .with_status()
            .all_category()
            .generation(Spec),
        ResourceInfo::builtin("apps", "v1", "daemonsets", "DaemonSet", true)
            .short(&["ds"])
            .with_status()
            .all_category()
            .generation(Spec),
        ResourceInfo::builtin("apps", "v1", "replicasets", "ReplicaSet", true)
            .short(&["rs"])
            .with_status()
            .all_category()
            .generation(Spec),
        ResourceInfo::builtin("batch", "v1", "jobs", "Job", true)
            .with_status()
            .all_category()
            .generation(Spec)
            .fields(&["status.successful"]),
        ResourceInfo::builtin("batch", "v1", "cronjobs", "CronJob", true)
            .short(&["cj"])
            .with_status()
            .all_category()
            .generation(Spec),
        ResourceInfo::builtin("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
        ResourceInfo::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
        ),
        ResourceInfo::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
        ),
        ResourceInfo::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
        ),
        ResourceInfo::builtin("coordination.k8s.io", "v1", "leases", "Lease", true),
        ResourceInfo::builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
        )
        .short(&["crd", "crds"])
        .with_status()
        .generation(GenerationRule::AllButMetadata),
    ]
}

type RegistryKey = (String, String, String);

/// The set of served resources. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<RwLock<BTreeMap<RegistryKey, Arc<ResourceInfo>>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A registry with the built-in resources.
    pub fn new() -> Self {
        let map = builtins()
            .into_iter()
            .map(|r| {
                (
                    (r.group.clone(), r.version.clone(), r.plural.clone()),
                    Arc::new(r),
                )
            })
            .collect();
        Self {
            inner: Arc::new(RwLock::new(map)),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<RegistryKey, Arc<ResourceInfo>>> {
        // A poisoned lock only means a panic elsewhere; the map itself is always consistent.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<RegistryKey, Arc<ResourceInfo>>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks up a resource by group, version and plural.
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.read()
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// Looks up any served version of a group/plural (the first one).
    pub fn any_version(&self, group: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.read().values().find(|r| r.is(group, plural)).cloned()
    }

    /// Looks up a resource by apiVersion and kind (used for owner references).
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        self.read()
            .values()
            .find(|r| r.api_version() == api_version && r.kind == kind)
            .cloned()
    }

    /// All served resources, ordered by group, version, plural.
    pub fn all(&self) -> Vec<Arc<ResourceInfo>> {
        self.read().values().cloned().collect()
    }

    /// Distinct group/plural storage prefixes (one per resource, whatever the versions).
    pub fn storage_resources(&self) -> Vec<Arc<ResourceInfo>> {
        let mut seen = std::collections::BTreeSet::new();
        self.all()
            .into_iter()
            .filter(|r| seen.insert(r.storage_prefix()))
            .collect()
    }

    /// Registers (or re-registers) the versions served by a CRD object.
    pub fn register_crd(&self, crd: &Value) {
        let infos = crd_resources(crd);
        let (group, plural) = crd_group_plural(crd);
        let mut map = self.write();
        map.retain(|_, r| !(r.custom && r.is(&group, &plural)));
        for info in infos {
            map.insert(
                (
                    info.group.clone(),
                    info.version.clone(),
                    info.plural.clone(),
                ),
                Arc::new(info),
            );
        }
    }

    /// Removes the resources of a deleted CRD.
    pub fn unregister_crd(&self, crd: &Value) {
        let (group, plural) = crd_group_plural(crd);
        self.write()
            .retain(|_, r| !(r.custom && r.is(&group, &plural)));
    }
}

fn crd_group_plural(crd: &Value) -> (String, String) {
    let spec = &crd["spec"];
    (
        spec["group"].as_str().unwrap_or_default().to_string(),
        spec["names"]["plural"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// The resources a CRD object serves (one per served version).
pub fn crd_resources(crd: &Value) -> Vec<ResourceInfo> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (group, plural) = crd_group_plural(crd);
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    let storage_version = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["storage"] == json!(true))
        .and_then(|v| v["name"].as_str())
        .unwrap_or_default()
        .to_string();
    let mut out = Vec::new();
    for version in spec["versions"].as_array().into_iter().flatten() {
        if version["served"] == json!(false) {
            continue;
        }
        let Some(name) = version["name"].as_str() else {
            continue;
        };
        out.push(ResourceInfo {
            group: group.clone(),
            version: name.to_string(),
            plural: plural.clone(),
            singular: names["singular"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| kind.to_lowercase()),
            kind: kind.clone(),
            list_kind: names["listKind"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| format!("{kind}List")),
            namespaced: spec["scope"].as_str() != Some("Cluster"),
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            status_subresource: version["subresources"].get("status").is_some(),
            generation: GenerationRule::AllButMetadata,
            custom: true,
            schema: version["schema"]
                .get("openAPIV3Schema")
                .cloned()
                .map(Arc::new),
            field_selectors: version["selectableFields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| {
                    f["jsonPath"]
                        .as_str()
                        .map(|p| p.trim_start_matches('.').to_string())
                })
                .collect(),
            printer_columns: version["additionalPrinterColumns"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            storage_version: if storage_version.is_empty() {
                name.to_string()
            } else {
                storage_version.clone()
            },
        });
    }
    out
}
