//! Create, update, patch and server-side apply through one write pipeline.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{metadata, schema, strategy, Apiserver};
use crate::patch::json_patch::apply_json_patch;
use crate::patch::schema::MergeSchema;
use crate::patch::strategic::strategic_merge;
use crate::registry::ResourceInfo;
use crate::ssa::{self, ApplyRequest, WriteScope};
use crate::status::{cause, ApiError, ApiResult};
use crate::store::{Key, State};

/// Options shared by every write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: run the pipeline, commit nothing.
    pub dry_run: bool,
    /// The field manager (explicit `fieldManager`, or derived from the User-Agent).
    pub field_manager: String,
    /// Whether `fieldManager` was given explicitly (required for apply).
    pub explicit_manager: bool,
    /// `force=true` (apply only).
    pub force: bool,
    /// `fieldValidation`: what happens to unknown fields of custom resources.
    pub field_validation: FieldValidation,
    /// Warnings for the client (`Warning` headers), collected during the write.
    pub warnings: Warnings,
}

/// What the server does with unknown fields (`fieldValidation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and warn (the server's default).
    #[default]
    Warn,
    /// Reject the request (400 BadRequest naming the fields).
    Strict,
}

impl FieldValidation {
    /// Parses the `fieldValidation` query parameter (empty = the default, `Warn`).
    pub fn parse(value: Option<&str>) -> ApiResult<Self> {
        match value.unwrap_or_default() {
            "" | "Warn" => Ok(Self::Warn),
            "Ignore" => Ok(Self::Ignore),
            "Strict" => Ok(Self::Strict),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other:?}, must be one of \"Ignore\", \"Warn\", or \"Strict\""
            ))),
        }
    }
}

/// Warnings a write collects for its response, shared with the caller.
#[derive(Debug, Clone, Default)]
pub struct Warnings(Arc<std::sync::Mutex<Vec<String>>>);

impl Warnings {
    /// Adds a warning.
    pub fn push(&self, text: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(text);
    }

    /// The warnings so far, in order.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl WriteOptions {
    /// Options for an internal writer (a controller) with an explicit manager.
    pub fn manager(name: &str) -> Self {
        Self {
            field_manager: name.to_string(),
            explicit_manager: true,
            ..Self::default()
        }
    }
}

/// The PATCH content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml`.
    Apply,
}

enum Ownership {
    /// A create, update or patch: the writer owns what it changed.
    Update,
    /// A server-side apply, with the managed fields it computed.
    Applied(Vec<ssa::ManagedEntry>),
}

/// The answer of a write: the stored object (served from storage without a copy), or a view
/// that was never stored (dry run, no-op, or the final state of a finished deletion).
#[derive(Debug)]
pub enum Written {
    /// The object as committed.
    Stored(Arc<Value>),
    /// An object as clients see it, not in storage.
    View(Value),
}

impl Written {
    /// The object as clients see it.
    pub fn into_value(self, info: &ResourceInfo) -> Value {
        match self {
            Written::Stored(stored) => Apiserver::present(info, &stored),
            Written::View(v) => v,
        }
    }

    /// The object as a response body.
    pub fn to_json(&self, info: &ResourceInfo) -> Vec<u8> {
        match self {
            Written::Stored(stored) => super::present::to_json(info, stored, super::Shape::Object),
            Written::View(v) => v.to_string().into_bytes(),
        }
    }
}

const GENERATE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn random_suffix() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| GENERATE_ALPHABET[usize::from(*b) % GENERATE_ALPHABET.len()] as char)
        .collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The merge schema of a resource.
pub fn merge_schema(info: &ResourceInfo) -> MergeSchema<'_> {
    MergeSchema {
        custom: info.schema.as_deref(),
    }
}

/// Whether `new` equals `old` apart from the resourceVersion and the managed fields, which the
/// caller compares apart (as field sets, see [`ssa::same_ownership`]). Compares in place:
/// copying both objects cost more than the rest.
fn unchanged(new: &Value, old: &Value) -> bool {
    let (Some(n), Some(o)) = (new.as_object(), old.as_object()) else {
        return new == old;
    };
    n.len() == o.len()
        && n.iter().all(|(k, v)| match (k.as_str(), o.get(k)) {
            (_, None) => false,
            ("metadata", Some(ov)) => same_metadata(v, ov),
            (_, Some(ov)) => v == ov,
        })
}

fn same_metadata(new: &Value, old: &Value) -> bool {
    let (Some(n), Some(o)) = (new.as_object(), old.as_object()) else {
        return new == old;
    };
    let skipped = |k: &str| k == "resourceVersion" || k == "managedFields";
    let relevant = |m: &'_ Map<String, Value>| m.keys().filter(|k| !skipped(k)).count();
    relevant(n) == relevant(o)
        && n.iter()
            .all(|(k, v)| skipped(k) || o.get(k).is_some_and(|ov| v == ov))
}

fn check_type_meta(info: &ResourceInfo, body: &Value) -> ApiResult<()> {
    if let Some(av) = body.get("apiVersion").and_then(Value::as_str) {
        if av != info.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                info.api_version()
            )));
        }
    }
    if let Some(kind) = body.get("kind").and_then(Value::as_str) {
        if kind != info.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                info.kind
            )));
        }
    }
    Ok(())
}

fn set_meta(obj: &mut Value, field: &str, value: Option<&Value>) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        match value {
            Some(v) => {
                meta.insert(field.to_string(), v.clone());
            }
            None => {
                meta.remove(field);
            }
        }
    }
}

impl Apiserver {
    /// Creates an object (POST).
    pub fn create(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        self.create_written(info, namespace, body, opts)
            .map(|w| w.into_value(info))
    }

    /// [`Apiserver::create`], answering with the stored object.
    pub fn create_written(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let mut state = self.store.lock();
        self.create_locked(&mut state, info, namespace, body, opts, Ownership::Update)
    }

    fn create_locked(
        &self,
        state: &mut State,
        info: &ResourceInfo,
        namespace: &str,
        mut obj: Value,
        opts: &WriteOptions,
        ownership: Ownership,
    ) -> ApiResult<Written> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        check_type_meta(info, &obj)?;
        obj["apiVersion"] = json!(info.api_version());
        obj["kind"] = json!(info.kind);
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let ns = if info.namespaced {
            match obj["metadata"]["namespace"].as_str() {
                Some(n) if !namespace.is_empty() && n != namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                Some(n) if namespace.is_empty() => n.to_string(),
                _ => namespace.to_string(),
            }
        } else {
            String::new()
        };
        if info.namespaced {
            if ns.is_empty() {
                return Err(ApiError::bad_request(
                    "the server could not find the requested resource: namespace is required",
                ));
            }
            let ns_key = Key::new("/namespaces", "", ns.as_str());
            match state.get(&ns_key) {
                None => return Err(ApiError::not_found("", "namespaces", &ns)),
                Some(n) if n["metadata"].get("deletionTimestamp").is_some() => {
                    return Err(ApiError::forbidden(format!(
                        "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        info.plural,
                        obj["metadata"]["name"].as_str().unwrap_or_default()
                    )))
                }
                Some(_) => {}
            }
            obj["metadata"]["namespace"] = json!(ns);
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        let generate = obj["metadata"]["generateName"].as_str().map(String::from);
        let mut name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            match &generate {
                Some(prefix) if !prefix.is_empty() => {
                    let prefix: String = prefix.chars().take(58).collect();
                    loop {
                        name = format!("{prefix}{}", random_suffix());
                        if state.get(&Self::key(info, &ns, &name)).is_none() {
                            break;
                        }
                    }
                }
                _ => {
                    return Err(ApiError::invalid(
                        &info.group,
                        &info.kind,
                        "",
                        vec![cause(
                            "FieldValueRequired",
                            "metadata.name",
                            "Required value: name or generateName is required",
                        )],
                    ))
                }
            }
        }
        if !valid_name(&name) {
            return Err(ApiError::invalid(
                &info.group,
                &info.kind,
                &name,
                vec![cause(
                    "FieldValueInvalid",
                    "metadata.name",
                    format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
                )],
            ));
        }
        obj["metadata"]["name"] = json!(name);
        let key = Self::key(info, &ns, &name);
        if state.get(&key).is_some() {
            return Err(ApiError::already_exists(&info.group, &info.plural, &name));
        }
        let now = self.clock.now_string();
        if let Some(meta) = obj["metadata"].as_object_mut() {
            for f in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                meta.remove(f);
            }
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(now));
            if info.generation != crate::registry::GenerationRule::None {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
            // The managed fields are computed apart and set at the end.
            meta.remove("managedFields");
        }
        if info.status_subresource {
            // Built-in strategies reset status to its empty value; CRs drop it.
            if info.custom {
                if let Some(m) = obj.as_object_mut() {
                    m.remove("status");
                }
            } else {
                obj["status"] = json!({});
            }
        }
        let mut causes = Vec::new();
        metadata::check_metadata(&obj, &mut causes)?;
        if !causes.is_empty() {
            return Err(ApiError::invalid(&info.group, &info.kind, &name, causes));
        }
        strategy::prepare_create(info, &mut obj)?;
        if info.custom {
            schema::process(info, &mut obj, opts)?;
        }
        let schema = merge_schema(info);
        let scope = WriteScope {
            subresource: "",
            status_split: info.status_subresource,
        };
        let entries = match ownership {
            Ownership::Update => ssa::update_entries(
                None,
                Vec::new(),
                &obj,
                &opts.field_manager,
                &info.api_version(),
                scope,
                schema,
                &now,
            ),
            Ownership::Applied(mut entries) => {
                ssa::retain_existing(&obj, &mut entries, schema);
                entries
            }
        };
        ssa::set_managed(&mut obj, &entries);
        strategy::finish_create(info, &mut obj);
        if opts.dry_run {
            return Ok(Written::View(Self::present(info, &obj)));
        }
        let stored = state.put(key.clone(), obj);
        strategy::after_commit(self, state, info, None, Some(&stored));
        if info.is("apiextensions.k8s.io", "customresourcedefinitions") {
            self.establish_crd(state, info, key);
        }
        Ok(Written::Stored(stored))
    }

    /// Accepts a new CRD's names and marks it Established, as the API server's own
    /// controllers do right after the create (a second write, on `status`).
    fn establish_crd(&self, state: &mut State, info: &ResourceInfo, key: Key) {
        let Some(old) = state.get(&key) else {
            return;
        };
        let old_view = Self::present(info, &old);
        let mut new = old_view.clone();
        new["status"] = strategy::crd_established_status(&new, &self.clock.now_string());
        // The object was committed under this lock a moment ago; the status write cannot
        // conflict, and if it failed the CRD would still serve its resources.
        let _ = self.finish_update(
            state,
            info,
            key,
            &old,
            old_view,
            new,
            "status",
            &WriteOptions::manager("kube-apiserver"),
            Ownership::Update,
        );
    }

    /// Replaces an object (PUT), optionally through the `status` subresource.
    pub fn update(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        body: Value,
        subresource: &str,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        self.update_written(info, namespace, name, body, subresource, opts)
            .map(|w| w.into_value(info))
    }

    /// [`Apiserver::update`], answering with the stored object.
    pub fn update_written(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        body: Value,
        subresource: &str,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        check_type_meta(info, &body)?;
        if let Some(n) = body["metadata"]["name"].as_str() {
            if n != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
        let mut state = self.store.lock();
        let key = Self::key(info, namespace, name);
        let old = state
            .get(&key)
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))?;
        match body["metadata"]["resourceVersion"]
            .as_str()
            .filter(|s| !s.is_empty())
        {
            None if info.custom => {
                // The real server names the resource (plural), not the Kind, here.
                return Err(ApiError::invalid(
                    &info.group,
                    &info.plural,
                    name,
                    vec![cause(
                        "FieldValueInvalid",
                        "metadata.resourceVersion",
                        "Invalid value: 0x0: must be specified for an update",
                    )],
                ));
            }
            Some(rv) if Some(rv) != old["metadata"]["resourceVersion"].as_str() => {
                return Err(ApiError::conflict(&info.group, &info.plural, name))
            }
            _ => {}
        }
        let mut new = body;
        new["apiVersion"] = json!(info.api_version());
        new["kind"] = json!(info.kind);
        let old_view = Self::present(info, &old);
        self.finish_update(
            &mut state,
            info,
            key,
            &old,
            old_view,
            new,
            subresource,
            opts,
            Ownership::Update,
        )
    }

    /// Patches an object; returns the result and whether it was created (apply only).
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        kind: PatchKind,
        patch: &Value,
        subresource: &str,
        opts: &WriteOptions,
    ) -> ApiResult<(Value, bool)> {
        self.patch_written(info, namespace, name, kind, patch, subresource, opts)
            .map(|(w, created)| (w.into_value(info), created))
    }

    /// [`Apiserver::patch`], answering with the stored object.
    #[allow(clippy::too_many_arguments)]
    pub fn patch_written(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        kind: PatchKind,
        patch: &Value,
        subresource: &str,
        opts: &WriteOptions,
    ) -> ApiResult<(Written, bool)> {
        if opts.force && kind != PatchKind::Apply {
            return Err(ApiError::bad_request(
                "force flag is only supported for apply patches",
            ));
        }
        if kind == PatchKind::Strategic && info.custom {
            return Err(ApiError::unsupported_media_type(
                "application/strategic-merge-patch+json",
                &[
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml",
                ],
            ));
        }
        if kind == PatchKind::Apply {
            return self.apply(info, namespace, name, patch, subresource, opts);
        }
        let mut state = self.store.lock();
        let key = Self::key(info, namespace, name);
        let old = state
            .get(&key)
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))?;
        let old_view = Self::present(info, &old);
        let mut new = old_view.clone();
        match kind {
            PatchKind::Merge => {
                if !patch.is_object() {
                    return Err(ApiError::bad_request("merge patch must be a JSON object"));
                }
                // RFC 7386.
                ::json_patch::merge(&mut new, patch);
            }
            PatchKind::Strategic => {
                if !patch.is_object() {
                    return Err(ApiError::bad_request(
                        "strategic merge patch must be a JSON object",
                    ));
                }
                strategic_merge(&mut new, patch, merge_schema(info))?;
            }
            PatchKind::Json => apply_json_patch(&mut new, patch)?,
            PatchKind::Apply => {}
        }
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the patched object must be a JSON object",
            ));
        }
        check_type_meta(info, &new)?;
        if new["metadata"]["name"].as_str() != Some(name) {
            return Err(ApiError::bad_request(
                "the name of the object cannot be changed by a patch",
            ));
        }
        if let Some(rv) = new["metadata"]["resourceVersion"].as_str() {
            if Some(rv) != old["metadata"]["resourceVersion"].as_str() {
                return Err(ApiError::conflict(&info.group, &info.plural, name));
            }
        }
        let out = self.finish_update(
            &mut state,
            info,
            key,
            &old,
            old_view,
            new,
            subresource,
            opts,
            Ownership::Update,
        )?;
        Ok((out, false))
    }

    fn apply(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        config: &Value,
        subresource: &str,
        opts: &WriteOptions,
    ) -> ApiResult<(Written, bool)> {
        if !opts.explicit_manager || opts.field_manager.is_empty() {
            let mut e = ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                vec![cause(
                    "FieldValueRequired",
                    "fieldManager",
                    "Required value: is required for apply patch",
                )],
            );
            e.message = "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into();
            e.details.name = None;
            return Err(e);
        }
        if !config.is_object() {
            return Err(ApiError::bad_request("apply patch must be an object"));
        }
        let av = config["apiVersion"].as_str().unwrap_or_default();
        if av != info.api_version() {
            return Err(ApiError::bad_request(format!(
                "Incorrect version specified in apply patch. Specified patch version: {av}, expected: {}",
                info.api_version()
            )));
        }
        let kind = config["kind"].as_str().unwrap_or_default();
        if kind != info.kind {
            return Err(ApiError::bad_request(format!(
                "Incorrect kind specified in apply patch. Specified patch kind: {kind}, expected: {}",
                info.kind
            )));
        }
        if config["metadata"]
            .get("managedFields")
            .is_some_and(|m| !m.is_null())
        {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        if let Some(n) = config["metadata"]["name"].as_str() {
            if n != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
        let mut config = config.clone();
        if !config["metadata"].is_object() {
            config["metadata"] = json!({});
        }
        config["metadata"]["name"] = json!(name);
        if info.custom && opts.field_validation == FieldValidation::Strict {
            // Strict decoding rejects unknown fields before any merge or conflict check.
            if let Err(e) = schema::process(info, &mut config.clone(), opts) {
                if e.code == 400 {
                    return Err(e);
                }
            }
        }
        let precondition = config["metadata"]["resourceVersion"]
            .as_str()
            .map(String::from);
        if let Some(m) = config["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        let now = self.clock.now_string();
        let api_version = info.api_version();
        let req = ApplyRequest {
            manager: &opts.field_manager,
            force: opts.force,
            api_version: &api_version,
            scope: WriteScope {
                subresource,
                status_split: info.status_subresource,
            },
            group: &info.group,
            plural: &info.plural,
            name,
            now: &now,
        };
        let schema = merge_schema(info);
        let mut state = self.store.lock();
        let key = Self::key(info, namespace, name);
        match state.get(&key) {
            None => {
                if !subresource.is_empty() {
                    return Err(ApiError::not_found(&info.group, &info.plural, name));
                }
                let (obj, entries) = ssa::apply_entries(None, Vec::new(), &config, req, schema)?;
                let out = self.create_locked(
                    &mut state,
                    info,
                    namespace,
                    obj,
                    opts,
                    Ownership::Applied(entries),
                )?;
                Ok((out, true))
            }
            Some(old) => {
                if precondition
                    .as_deref()
                    .is_some_and(|rv| Some(rv) != old["metadata"]["resourceVersion"].as_str())
                {
                    return Err(ApiError::conflict(&info.group, &info.plural, name));
                }
                let live = Self::present(info, &old);
                let entries = ssa::parse_managed(&old);
                let (new, entries) =
                    ssa::apply_entries(Some(&live), entries, &config, req, schema)?;
                let out = self.finish_update(
                    &mut state,
                    info,
                    key,
                    &old,
                    live,
                    new,
                    subresource,
                    opts,
                    Ownership::Applied(entries),
                )?;
                Ok((out, false))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_update(
        &self,
        state: &mut State,
        info: &ResourceInfo,
        key: Key,
        old: &Arc<Value>,
        old_view: Value,
        new: Value,
        subresource: &str,
        opts: &WriteOptions,
        ownership: Ownership,
    ) -> ApiResult<Written> {
        let name = key.name.clone();
        // `old_view` is the old object as clients see it (managed fields expanded), made once
        // by the caller, which usually needed it already.
        let mut new = if subresource == "status" {
            let mut merged = old_view.clone();
            match new.get("status") {
                Some(s) if !s.is_null() => merged["status"] = s.clone(),
                _ => {
                    if let Some(m) = merged.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            merged
        } else {
            let mut n = new;
            if info.status_subresource {
                match old.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        if let Some(m) = n.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            n
        };
        if !new["metadata"].is_object() {
            new["metadata"] = json!({});
        }
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "name",
            "namespace",
        ] {
            set_meta(&mut new, f, old["metadata"].get(f));
        }
        set_meta(
            &mut new,
            "resourceVersion",
            old["metadata"].get("resourceVersion"),
        );
        if old["metadata"].get("deletionTimestamp").is_some() {
            let before: Vec<&Value> = old["metadata"]["finalizers"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            let added: Vec<String> = new["metadata"]["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| !before.contains(f))
                .map(|f| f.to_string())
                .collect();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    &info.group,
                    &info.kind,
                    &name,
                    vec![cause(
                        "FieldValueForbidden",
                        "metadata.finalizers",
                        format!("Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}", added.join(", ")),
                    )],
                ));
            }
        }
        if let Some(gen) = old["metadata"]["generation"].as_i64() {
            let changed = match info.generation {
                crate::registry::GenerationRule::None => false,
                crate::registry::GenerationRule::Spec => old.get("spec") != new.get("spec"),
                crate::registry::GenerationRule::AllButMetadata => {
                    let strip = |v: &Value| -> Map<String, Value> {
                        let mut m = v.as_object().cloned().unwrap_or_default();
                        m.remove("metadata");
                        m.remove("apiVersion");
                        m.remove("kind");
                        if info.status_subresource {
                            m.remove("status");
                        }
                        m
                    };
                    strip(old) != strip(&new)
                }
            };
            new["metadata"]["generation"] = json!(if changed { gen + 1 } else { gen });
        }
        let mut causes = Vec::new();
        metadata::check_metadata(&new, &mut causes)?;
        if !causes.is_empty() {
            return Err(ApiError::invalid(&info.group, &info.kind, &name, causes));
        }
        strategy::prepare_update(self, info, old, &mut new)?;
        if info.custom {
            schema::process(info, &mut new, opts)?;
        }
        let schema = merge_schema(info);
        let now = self.clock.now_string();
        let scope = WriteScope {
            subresource,
            status_split: info.status_subresource,
        };
        let entries = match ownership {
            Ownership::Update => ssa::update_entries(
                Some(&old_view),
                ssa::parse_managed(old),
                &new,
                &opts.field_manager,
                &info.api_version(),
                scope,
                schema,
                &now,
            ),
            Ownership::Applied(mut entries) => {
                ssa::retain_existing(&new, &mut entries, schema);
                entries
            }
        };
        if unchanged(&new, &old_view) && ssa::same_ownership(&entries, &ssa::parse_managed(old)) {
            return Ok(Written::View(old_view));
        }
        ssa::set_managed(&mut new, &entries);
        let finished = new["metadata"].get("deletionTimestamp").is_some()
            && new["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty())
            && strategy::may_vanish(info, &new);
        if opts.dry_run {
            crate::store::expand_managed_fields(&mut new);
            return Ok(Written::View(new));
        }
        if finished {
            // The answer is the final content, still at the resourceVersion it had; the
            // DELETED event carries the deletion's own resourceVersion.
            state.remove(&key);
            strategy::after_commit(self, state, info, Some(old), None);
            return Ok(Written::View(Self::present(info, &new)));
        }
        let stored = state.put(key, new);
        strategy::after_commit(self, state, info, Some(old), Some(&stored));
        Ok(Written::Stored(stored))
    }

    /// Read-modify-write for internal writers: applies `f` to the current object and writes it
    /// with manager `manager`, retrying on conflicts. `f` returns `false` to skip the write.
    pub fn modify(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        subresource: &str,
        manager: &str,
        mut f: impl FnMut(&mut Value) -> bool,
    ) -> ApiResult<Option<Value>> {
        let mut state = self.store.lock();
        let key = Self::key(info, namespace, name);
        let old = state
            .get(&key)
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))?;
        let old_view = Self::present(info, &old);
        let mut new = old_view.clone();
        if !f(&mut new) {
            return Ok(None);
        }
        let opts = WriteOptions::manager(manager);
        self.finish_update(
            &mut state,
            info,
            key,
            &old,
            old_view,
            new,
            subresource,
            &opts,
            Ownership::Update,
        )
        .map(|w| Some(w.into_value(info)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write is a no-op when only the resourceVersion differs (managed fields are compared
    /// apart, as field sets); any other difference, in metadata or elsewhere, is a change.
    #[test]
    fn unchanged_ignores_only_resource_version_and_managed_fields() {
        let old = json!({"apiVersion": "v1", "metadata": {"name": "x", "resourceVersion": "5",
            "labels": {"a": "1"},
            "managedFields": [{"manager": "m", "time": "2026-01-01T00:00:00Z", "fieldsV1": {"f:data": {}}}]},
            "data": {"k": "v"}});
        let mut same = old.clone();
        same["metadata"]["resourceVersion"] = json!("9");
        same["metadata"]["managedFields"] = json!("[]");
        assert!(unchanged(&same, &old));
        let mut no_rv = same.clone();
        no_rv["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("resourceVersion");
        no_rv["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        assert!(unchanged(&no_rv, &old));

        for change in [
            json!({"data": {"k": "w"}}),
            json!({"metadata": {"labels": {"a": "2"}}}),
            json!({"metadata": {"annotations": {"b": "1"}}}),
            json!({"spec": {}}),
        ] {
            let mut changed = old.clone();
            ::json_patch::merge(&mut changed, &change);
            assert!(!unchanged(&changed, &old), "{change}");
            assert!(!unchanged(&old, &changed), "{change}");
        }
    }

    /// Ownership is the same when only the entries' times differ; a different manager,
    /// operation or field set, or an entry more, is a change.
    #[test]
    fn same_ownership_ignores_only_entry_times() {
        let entries = |v: Value| ssa::parse_managed(&json!({"metadata": {"managedFields": v}}));
        let base = entries(json!([
            {"manager": "m", "operation": "Apply", "apiVersion": "v1", "time": "t1",
                "fieldsV1": {"f:data": {"f:k": {}}}}]));
        let later = entries(json!([
            {"manager": "m", "operation": "Apply", "apiVersion": "v1", "time": "t2",
                "fieldsV1": {"f:data": {"f:k": {}}}}]));
        assert!(ssa::same_ownership(&base, &later));
        for other in [
            json!([{"manager": "n", "operation": "Apply", "apiVersion": "v1", "time": "t1",
                "fieldsV1": {"f:data": {"f:k": {}}}}]),
            json!([{"manager": "m", "operation": "Update", "apiVersion": "v1", "time": "t1",
                "fieldsV1": {"f:data": {"f:k": {}}}}]),
            json!([{"manager": "m", "operation": "Apply", "apiVersion": "v1", "time": "t1",
                "fieldsV1": {"f:data": {"f:j": {}}}}]),
            json!([{"manager": "m", "operation": "Apply", "apiVersion": "v1", "time": "t1",
                "fieldsV1": {"f:data": {"f:k": {}}}},
                {"manager": "u", "operation": "Update", "apiVersion": "v1", "time": "t1",
                "fieldsV1": {"f:data": {"f:j": {}}}}]),
            json!([]),
        ] {
            assert!(
                !ssa::same_ownership(&base, &entries(other.clone())),
                "{other}"
            );
        }
    }
    /// Through the whole pipeline: an update takes a field another manager applied; that
    /// manager's apply then conflicts, and with force takes it back; each answer's managed
    /// fields are the stored ones, and a repeated apply is a no-op (same resourceVersion).
    #[test]
    fn managed_fields_follow_a_field_changing_hands() {
        use crate::clock::VirtualClock;
        let api = Apiserver::new(VirtualClock::default());
        let cm = api.resource("", "v1", "configmaps").unwrap();
        let applied = |force: bool| {
            let mut opts = WriteOptions::manager("op");
            opts.force = force;
            api.patch(
                &cm,
                "default",
                "c",
                PatchKind::Apply,
                &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                    "data": {"k": "mine", "other": "o"}}),
                "",
                &opts,
            )
        };
        let fields = |obj: &Value| -> Vec<(String, String, Value)> {
            obj["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap().to_string(),
                        e["operation"].as_str().unwrap().to_string(),
                        e["fieldsV1"].clone(),
                    )
                })
                .collect()
        };
        let (created, was_created) = applied(false).unwrap();
        assert!(was_created);
        assert_eq!(
            fields(&created),
            vec![(
                "op".into(),
                "Apply".into(),
                json!({"f:data": {"f:k": {}, "f:other": {}}})
            )]
        );
        let (edited, _) = api
            .patch(
                &cm,
                "default",
                "c",
                PatchKind::Merge,
                &json!({"data": {"k": "theirs"}}),
                "",
                &WriteOptions::manager("editor"),
            )
            .unwrap();
        assert_eq!(
            fields(&edited),
            vec![
                (
                    "op".into(),
                    "Apply".into(),
                    json!({"f:data": {"f:other": {}}})
                ),
                (
                    "editor".into(),
                    "Update".into(),
                    json!({"f:data": {"f:k": {}}})
                ),
            ]
        );
        let err = applied(false).unwrap_err();
        assert_eq!(err.code, 409);
        assert!(
            err.message.contains("conflict with \"editor\""),
            "{}",
            err.message
        );
        let (forced, _) = applied(true).unwrap();
        assert_eq!(forced["data"]["k"], "mine");
        assert_eq!(
            fields(&forced),
            vec![(
                "op".into(),
                "Apply".into(),
                json!({"f:data": {"f:k": {}, "f:other": {}}})
            )],
            "the editor owned only .data.k and its entry is gone"
        );
        let stored = api.get_stored(&cm, "default", "c").unwrap();
        assert_eq!(Apiserver::present(&cm, &stored), forced);
        let (again, _) = applied(false).unwrap();
        assert_eq!(
            again["metadata"]["resourceVersion"], forced["metadata"]["resourceVersion"],
            "the same apply again changes nothing"
        );
    }
}
