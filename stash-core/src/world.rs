//! A set of objects (what `stash render` reads, what fixtures hold) and the plans the operator
//! would make for it. Parsing only: the caller reads the files and passes their text.

use crate::api::{
    AppBinding, BackupConfiguration, BackupSession, Function, Repository, RestoreSession, Task,
};
use crate::gather;
use crate::plan::{self, ObjectKey, Plan, Settings};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// A document that cannot be used, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{source_name}: document {document}: {message}")]
pub struct LoadError {
    /// File (or other source) name.
    pub source_name: String,
    /// 1-based index of the YAML document in the source.
    pub document: usize,
    /// What is wrong, naming the field where known.
    pub message: String,
}

/// What loading a text found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Objects read (the items of a `List` one by one; empty documents not at all).
    pub objects: usize,
    /// One error per object with fields its kind's schema does not know. A real API server
    /// rejects these under strict field validation; the objects were added without them.
    pub unknown_fields: Vec<LoadError>,
}

/// `unknown field "a"` or `unknown fields "a", "b"`, in the API server's words.
fn unknown_fields_message(paths: &[String]) -> String {
    let quoted: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
    let noun = if paths.len() == 1 { "field" } else { "fields" };
    format!("unknown {noun} {}", quoted.join(", "))
}

/// `Kind name` of an object, for messages.
fn describe(value: &Value) -> String {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("object");
    match value.pointer("/metadata/name").and_then(Value::as_str) {
        Some(name) => format!("{kind} {name}"),
        None => kind.to_string(),
    }
}

/// Everything known about a set of objects.
#[derive(Debug, Clone, Default)]
pub struct World {
    repositories: BTreeMap<(String, String), Repository>,
    backup_configurations: BTreeMap<(String, String), BackupConfiguration>,
    backup_sessions: BTreeMap<(String, String), BackupSession>,
    restore_sessions: BTreeMap<(String, String), RestoreSession>,
    appbindings: BTreeMap<(String, String), AppBinding>,
    secret_keys: BTreeMap<(String, String), BTreeSet<String>>,
    namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    tasks: BTreeMap<String, Task>,
    functions: BTreeMap<String, Function>,
    jobs: BTreeMap<(String, String), Job>,
    pods: Vec<Pod>,
    others: Vec<Value>,
}

impl World {
    /// A world holding the default catalog for `image` (given Tasks/Functions replace these).
    pub fn with_catalog(image: &str) -> World {
        let (tasks, functions) = crate::catalog::default_catalog(image);
        let mut w = World::default();
        for t in tasks {
            w.tasks
                .insert(t.metadata.name.clone().unwrap_or_default(), t);
        }
        for f in functions {
            w.functions
                .insert(f.metadata.name.clone().unwrap_or_default(), f);
        }
        w
    }

    /// Adds every object of a multi-document YAML text (a `List` is flattened). Values of the
    /// wrong type are an error; fields the kind's schema does not know are returned for the
    /// caller to judge (the object is added without them), as kubectl's `--validate` does.
    pub fn load_yaml(&mut self, source_name: &str, text: &str) -> Result<Loaded, LoadError> {
        let mut loaded = Loaded::default();
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let err = |message: String| LoadError {
                source_name: source_name.to_string(),
                document: i + 1,
                message,
            };
            let value: Value = serde_path_to_error::deserialize(doc).map_err(|e| {
                err(format!(
                    "not valid YAML: {}",
                    crate::strict::yaml_wording(&e.to_string())
                ))
            })?;
            if value.is_null() {
                continue;
            }
            let items = match value.get("kind").and_then(Value::as_str) {
                Some(k) if k.ends_with("List") => value
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                _ => vec![value],
            };
            for item in items {
                if let Some(findings) = crate::strict::check(&item) {
                    let what = describe(&item);
                    if !findings.wrong_types.is_empty() {
                        return Err(err(format!("{what}: {}", findings.wrong_types.join("; "))));
                    }
                    if !findings.unknown_fields.is_empty() {
                        loaded.unknown_fields.push(err(format!(
                            "{what}: {}",
                            unknown_fields_message(&findings.unknown_fields)
                        )));
                    }
                }
                self.add(item).map_err(err)?;
                loaded.objects += 1;
            }
        }
        Ok(loaded)
    }

    /// Adds one object.
    pub fn add(&mut self, value: Value) -> Result<(), String> {
        let Some(obj) = value.as_object() else {
            return Err("expected a mapping with apiVersion and kind".into());
        };
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .ok_or("apiVersion is missing")?
            .to_string();
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .ok_or("kind is missing")?
            .to_string();
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            return Err(format!("{kind}: metadata.name is missing"));
        }
        if let Err(why) = crate::names::check_subdomain(&name) {
            // The API server refuses such an object before any controller sees it.
            return Err(format!("{kind} {name:?}: metadata.name is invalid: {why}"));
        }
        let ns = value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let key = (ns.clone(), name.clone());
        let what = format!("{kind} {name}");
        match (api_version.as_str(), kind.as_str()) {
            ("stash.appscode.com/v1alpha1", "Repository") => {
                self.repositories.insert(key, typed(&what, value)?);
            }
            ("stash.appscode.com/v1beta1", "BackupConfiguration") => {
                self.backup_configurations.insert(key, typed(&what, value)?);
            }
            ("stash.appscode.com/v1beta1", "BackupSession") => {
                self.backup_sessions.insert(key, typed(&what, value)?);
            }
            ("stash.appscode.com/v1beta1", "RestoreSession") => {
                self.restore_sessions.insert(key, typed(&what, value)?);
            }
            ("stash.appscode.com/v1beta1", "Task") => {
                self.tasks.insert(name, typed(&what, value)?);
            }
            ("stash.appscode.com/v1beta1", "Function") => {
                self.functions.insert(name, typed(&what, value)?);
            }
            ("appcatalog.appscode.com/v1alpha1", "AppBinding") => {
                self.appbindings.insert(key, typed(&what, value)?);
            }
            ("v1", "Secret") => {
                let keys_of = |field: &str| {
                    value
                        .get(field)
                        .and_then(Value::as_object)
                        .map(|m| m.keys().cloned().collect::<Vec<_>>())
                        .unwrap_or_default()
                };
                let keys = gather::secret_key_names(&keys_of("data"), &keys_of("stringData"));
                self.secret_keys.insert(key, keys);
            }
            ("v1", "Namespace") => {
                let labels: BTreeMap<String, String> = value
                    .pointer("/metadata/labels")
                    .map(|l| {
                        serde_json::from_value(l.clone())
                            .map_err(|e| format!("{what}: metadata.labels: {e}"))
                    })
                    .transpose()?
                    .unwrap_or_default();
                self.namespace_labels.insert(name, labels);
            }
            ("batch/v1", "Job") => {
                self.jobs.insert(key, typed(&what, value)?);
            }
            ("v1", "Pod") => self.pods.push(typed(&what, value)?),
            _ => self.others.push(value),
        }
        Ok(())
    }

    /// The plans for every reconciled object, BackupConfigurations first, in name order.
    pub fn plan_all(&self, settings: &Settings, now: &Time) -> Vec<Plan> {
        self.inputs_all(settings, now)
            .iter()
            .map(Inputs::plan)
            .collect()
    }

    /// The planner inputs of every reconciled object, BackupConfigurations first, in name
    /// order. A session sees its BackupConfiguration with the status planned here when the set
    /// gives none, as it would after the operator's first pass.
    pub fn inputs_all(&self, settings: &Settings, now: &Time) -> Vec<Inputs> {
        let mut all = Vec::new();
        let mut planned_bcs = BTreeMap::new();
        for (key, bc) in &self.backup_configurations {
            let inputs = self.backup_configuration_inputs(bc, settings, now);
            let mut seen = bc.clone();
            if seen.status.is_none() {
                seen.status = plan::backup_configuration::plan(&inputs)
                    .status
                    .and_then(|s| serde_json::from_value(s).ok());
            }
            planned_bcs.insert(key.clone(), seen);
            all.push(Inputs::BackupConfiguration(Box::new(inputs)));
        }
        for (key, s) in &self.backup_sessions {
            let invoker = plan::backup_session::configuration_of(s)
                .and_then(|bc| planned_bcs.get(&(key.0.clone(), bc.to_string())))
                .cloned();
            all.push(Inputs::BackupSession(Box::new(
                self.backup_session_inputs(s, invoker, settings, now),
            )));
        }
        for rs in self.restore_sessions.values() {
            all.push(Inputs::RestoreSession(Box::new(
                self.restore_session_inputs(rs, settings, now),
            )));
        }
        for repo in self.repositories.values() {
            all.push(Inputs::Repository(Box::new(
                self.repository_inputs(repo, settings, now),
            )));
        }
        all
    }

    fn repository_of(
        &self,
        ns: &str,
        r: Option<&crate::api::ObjectRef>,
    ) -> (Option<Repository>, Option<BTreeSet<String>>) {
        let Some(key) = gather::repository_key(ns, r) else {
            return (None, None);
        };
        let repo = self.repositories.get(&key).cloned();
        let keys = repo
            .as_ref()
            .and_then(|x| gather::storage_secret_key(&key, x))
            .and_then(|s| self.secret_keys.get(&s).cloned());
        (repo, keys)
    }

    fn appbinding_of(&self, ns: &str, r: Option<&crate::api::TargetRef>) -> Option<AppBinding> {
        self.appbindings
            .get(&gather::appbinding_key(ns, r)?)
            .cloned()
    }

    fn children_of(&self, ns: &str, kind: &str, name: &str) -> Vec<ObjectKey> {
        let mut out = Vec::new();
        for v in &self.others {
            let labels: BTreeMap<String, String> = v
                .pointer("/metadata/labels")
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default();
            let Some(k) = plan::ObjectKey::of(v) else {
                continue;
            };
            if k.namespace.as_deref().unwrap_or("default") == ns
                && gather::is_child(&k.api_version, &k.kind, &labels, kind, name)
            {
                out.push(ObjectKey {
                    namespace: Some(ns.to_string()),
                    ..k
                });
            }
        }
        out.sort();
        out
    }

    /// Inputs of the BackupConfiguration planner for `bc`.
    pub fn backup_configuration_inputs(
        &self,
        bc: &BackupConfiguration,
        settings: &Settings,
        now: &Time,
    ) -> plan::backup_configuration::BackupConfigurationInputs {
        let ns = bc
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let (repository, storage_secret_keys) =
            self.repository_of(&ns, bc.spec.repository.as_ref());
        plan::backup_configuration::BackupConfigurationInputs {
            bc: bc.clone(),
            repository,
            storage_secret_keys,
            storage_secret_forbidden: false,
            target: self.appbinding_of(&ns, bc.spec.target.as_ref().and_then(|t| t.r#ref.as_ref())),
            namespace_labels: gather::namespace_labels(&ns, self.namespace_labels.get(&ns)),
            tasks: self.tasks.clone(),
            functions: self.functions.clone(),
            children: self.children_of(
                &ns,
                "BackupConfiguration",
                bc.metadata.name.as_deref().unwrap_or_default(),
            ),
            settings: settings.clone(),
            now: Some(now.clone()),
        }
    }

    /// Inputs of the BackupSession planner for `s` with its invoker as given.
    pub fn backup_session_inputs(
        &self,
        s: &BackupSession,
        invoker: Option<BackupConfiguration>,
        settings: &Settings,
        now: &Time,
    ) -> plan::backup_session::BackupSessionInputs {
        let ns = s
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = s.metadata.name.clone().unwrap_or_default();
        let (repository, _) = self.repository_of(
            &ns,
            invoker.as_ref().and_then(|bc| bc.spec.repository.as_ref()),
        );
        let target = self.appbinding_of(
            &ns,
            invoker
                .as_ref()
                .and_then(|bc| bc.spec.target.as_ref())
                .and_then(|t| t.r#ref.as_ref()),
        );
        let (job, pods) = self.job_and_pods(&ns, &crate::names::backup_job_name(&name, 0));
        // By spec.invoker, as the operator gathers them (labels are optional on a session).
        let siblings = match plan::backup_session::configuration_of(s) {
            Some(bc) => plan::backup_session::siblings_of(self.backup_sessions.values(), &ns, bc),
            None => Vec::new(),
        };
        plan::backup_session::BackupSessionInputs {
            session: s.clone(),
            invoker,
            repository,
            target,
            tasks: self.tasks.clone(),
            functions: self.functions.clone(),
            job,
            pods,
            siblings,
            settings: settings.clone(),
            now: Some(now.clone()),
        }
    }

    /// Inputs of the RestoreSession planner for `rs`.
    pub fn restore_session_inputs(
        &self,
        rs: &RestoreSession,
        settings: &Settings,
        now: &Time,
    ) -> plan::restore_session::RestoreSessionInputs {
        let ns = rs
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let (repository, storage_secret_keys) =
            self.repository_of(&ns, rs.spec.repository.as_ref());
        let (job, pods) = self.job_and_pods(
            &ns,
            &crate::names::restore_job_name(rs.metadata.name.as_deref().unwrap_or_default()),
        );
        plan::restore_session::RestoreSessionInputs {
            session: rs.clone(),
            repository,
            storage_secret_keys,
            storage_secret_forbidden: false,
            target: self.appbinding_of(&ns, rs.spec.target.as_ref().and_then(|t| t.r#ref.as_ref())),
            tasks: self.tasks.clone(),
            functions: self.functions.clone(),
            job,
            pods,
            settings: settings.clone(),
            now: Some(now.clone()),
        }
    }

    /// Inputs of the Repository planner for `repo`: the invokers in the set that use it.
    pub fn repository_inputs(
        &self,
        repo: &Repository,
        settings: &Settings,
        now: &Time,
    ) -> plan::repository::RepositoryInputs {
        let ns = repo
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = repo.metadata.name.clone().unwrap_or_default();
        let uses = |inv_ns: &str, r: Option<&crate::api::ObjectRef>| {
            plan::repository::references_repository(inv_ns, r, &ns, &name)
        };
        let mut references = Vec::new();
        for ((inv_ns, inv), bc) in &self.backup_configurations {
            if uses(inv_ns, bc.spec.repository.as_ref()) {
                references.push(plan::repository::invoker_reference(
                    "BackupConfiguration",
                    inv_ns,
                    inv,
                ));
            }
        }
        for ((inv_ns, inv), rs) in &self.restore_sessions {
            if uses(inv_ns, rs.spec.repository.as_ref()) {
                references.push(plan::repository::invoker_reference(
                    "RestoreSession",
                    inv_ns,
                    inv,
                ));
            }
        }
        let (wipe_out_job, wipe_out_pods) = if gather::wants_wipe_out_job(repo) {
            self.job_and_pods(&ns, &plan::wipe_out::wipe_out_job_name(&name))
        } else {
            (None, Vec::new())
        };
        plan::repository::RepositoryInputs {
            repository: repo.clone(),
            references,
            wipe_out_job,
            wipe_out_pods,
            settings: settings.clone(),
            now: Some(now.clone()),
        }
    }

    /// A Job and its pods (none without the Job, as the operator reads them).
    fn job_and_pods(&self, ns: &str, job_name: &str) -> (Option<Job>, Vec<Pod>) {
        let Some(job) = self.jobs.get(&(ns.to_string(), job_name.to_string())) else {
            return (None, Vec::new());
        };
        let pods = self
            .pods
            .iter()
            .filter(|p| p.metadata.namespace.as_deref().unwrap_or("default") == ns)
            .filter(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| gather::has_labels(l, &gather::job_pod_labels(job_name)))
            })
            .cloned()
            .collect();
        (Some(job.clone()), pods)
    }
}

/// The inputs of one planner run.
#[derive(Debug, Clone)]
pub enum Inputs {
    /// Of the BackupConfiguration planner.
    BackupConfiguration(Box<plan::backup_configuration::BackupConfigurationInputs>),
    /// Of the BackupSession planner.
    BackupSession(Box<plan::backup_session::BackupSessionInputs>),
    /// Of the RestoreSession planner.
    RestoreSession(Box<plan::restore_session::RestoreSessionInputs>),
    /// Of the Repository planner.
    Repository(Box<plan::repository::RepositoryInputs>),
}

impl Inputs {
    /// Runs the planner these inputs are for.
    pub fn plan(&self) -> Plan {
        match self {
            Inputs::BackupConfiguration(i) => plan::backup_configuration::plan(i),
            Inputs::BackupSession(i) => plan::backup_session::plan(i),
            Inputs::RestoreSession(i) => plan::restore_session::plan(i),
            Inputs::Repository(i) => plan::repository::plan(i),
        }
    }
}

/// Deserializes a typed object, naming the field that does not fit.
fn typed<T: DeserializeOwned>(what: &str, value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = crate::strict::yaml_wording(&e.into_inner().to_string());
        if path == "." {
            format!("{what}: {inner}")
        } else {
            format!("{what}: field {path}: {inner}")
        }
    })
}
