//! Field ownership: `managedFields` bookkeeping for updates and server-side apply with
//! conflicts, `force` and removal of fields a manager stops applying.

use serde_json::{json, Map, Value};

use crate::fieldset::{
    always_present, contains_path, field_set, from_fields_v1, get_at, map_nodes, path_string,
    push_json_str, remove_at, write_fields_v1, FieldPath, FieldSet, PathElement,
};
use crate::patch::schema::{item_key, ListType, MergeSchema};
use crate::status::{cause, ApiError};

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedEntry {
    /// Manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// The apiVersion of the write.
    pub api_version: String,
    /// `""` for the main resource, else e.g. `status`.
    pub subresource: String,
    /// When the entry last changed.
    pub time: String,
    /// Owned paths.
    pub fields: FieldSet,
}

impl ManagedEntry {
    fn describe(&self) -> String {
        let mut s = format!("\"{}\"", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource \"{}\"", self.subresource));
        }
        if self.operation != "Apply" {
            s.push_str(&format!(" using {} at {}", self.api_version, self.time));
        }
        s
    }
}

/// Where a write lands, which decides which paths it may own.
#[derive(Debug, Clone, Copy)]
pub struct WriteScope<'a> {
    /// `""` or `status`.
    pub subresource: &'a str,
    /// Whether the resource splits `status` into a subresource.
    pub status_split: bool,
}

impl WriteScope<'_> {
    fn owns(&self, path: &FieldPath) -> bool {
        if !self.status_split {
            return true;
        }
        let is_status = matches!(path.first(), Some(PathElement::Field(f)) if f == "status");
        is_status == (self.subresource == "status")
    }
}

/// Reads `metadata.managedFields`: the entries as clients see them, or the JSON text the store
/// keeps them as (see [`crate::store`]), parsed once.
pub fn parse_managed(obj: &Value) -> Vec<ManagedEntry> {
    match &obj["metadata"]["managedFields"] {
        Value::String(text) => serde_json::from_str::<Value>(text)
            .map(|v| entries_of(&v))
            .unwrap_or_default(),
        v => entries_of(v),
    }
}

fn entries_of(list: &Value) -> Vec<ManagedEntry> {
    let str_of = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    list.as_array()
        .into_iter()
        .flatten()
        .map(|e| ManagedEntry {
            manager: str_of(e, "manager"),
            operation: str_of(e, "operation"),
            api_version: str_of(e, "apiVersion"),
            subresource: str_of(e, "subresource"),
            time: str_of(e, "time"),
            fields: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

/// Sets `metadata.managedFields` to `entries` (those owning something) in the stored form, one
/// JSON text, written straight from the field sets; removes it when none is left.
pub fn set_managed(obj: &mut Value, entries: &[ManagedEntry]) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let mut text = String::new();
    for e in entries.iter().filter(|e| !e.fields.is_empty()) {
        text.push(if text.is_empty() { '[' } else { ',' });
        // Keys in the order `serde_json` writes an object's (sorted).
        text.push_str("{\"apiVersion\":");
        push_json_str(&mut text, &e.api_version);
        text.push_str(",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":");
        write_fields_v1(&mut text, &e.fields);
        text.push_str(",\"manager\":");
        push_json_str(&mut text, &e.manager);
        text.push_str(",\"operation\":");
        push_json_str(&mut text, &e.operation);
        if !e.subresource.is_empty() {
            text.push_str(",\"subresource\":");
            push_json_str(&mut text, &e.subresource);
        }
        text.push_str(",\"time\":");
        push_json_str(&mut text, &e.time);
        text.push('}');
    }
    if text.is_empty() {
        meta.remove("managedFields");
    } else {
        text.push(']');
        meta.insert("managedFields".into(), Value::String(text));
    }
}

/// Whether two entry lists record the same ownership: equal but for the entries' times, with
/// entries that own nothing left out (they are never stored).
pub fn same_ownership(a: &[ManagedEntry], b: &[ManagedEntry]) -> bool {
    let owning = |l: &'_ [ManagedEntry]| l.iter().filter(|e| !e.fields.is_empty()).count();
    owning(a) == owning(b)
        && a.iter()
            .filter(|e| !e.fields.is_empty())
            .zip(b.iter().filter(|e| !e.fields.is_empty()))
            .all(|(x, y)| {
                x.manager == y.manager
                    && x.operation == y.operation
                    && x.api_version == y.api_version
                    && x.subresource == y.subresource
                    && x.fields == y.fields
            })
}

#[cfg(test)]
fn write_managed(obj: &mut Value, entries: Vec<ManagedEntry>) {
    set_managed(obj, &entries);
    crate::store::expand_managed_fields(obj);
}

fn is_item(path: &FieldPath) -> bool {
    matches!(
        path.last(),
        Some(PathElement::Key(_) | PathElement::Value(_))
    )
}

/// Records a non-apply write by `manager` in `new`'s managed fields (see [`update_entries`]).
#[cfg(test)]
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    scope: WriteScope<'_>,
    schema: MergeSchema<'_>,
    now: &str,
) {
    let entries = old.map(parse_managed).unwrap_or_default();
    let entries = update_entries(old, entries, new, manager, api_version, scope, schema, now);
    write_managed(new, entries);
}

/// A non-apply write by `manager` from `old` (with its managed `entries`) to `new`: changed
/// paths move to its `Update` entry. Returns the entries after the write.
#[allow(clippy::too_many_arguments)]
pub fn update_entries(
    old: Option<&Value>,
    mut entries: Vec<ManagedEntry>,
    new: &Value,
    manager: &str,
    api_version: &str,
    scope: WriteScope<'_>,
    schema: MergeSchema<'_>,
    now: &str,
) -> Vec<ManagedEntry> {
    let new_set = field_set(new, schema);
    let new_nodes = map_nodes(new, schema);
    let mut changed: FieldSet = new_set
        .iter()
        .filter(|p| scope.owns(p))
        .filter(|p| match old {
            None => true,
            Some(old) => {
                let before = get_at(old, p);
                before.is_none() || (!is_item(p) && before != get_at(new, p))
            }
        })
        .cloned()
        .collect();
    // Maps this write brings into existence are owned too (typed built-ins always have some).
    changed.extend(
        new_nodes
            .iter()
            .filter(|p| scope.owns(p))
            .filter(|p| schema.custom.is_some() || !always_present(p))
            .filter(|p| old.is_none_or(|o| get_at(o, p).is_none()))
            .cloned(),
    );
    let new_set: FieldSet = new_set.union(&new_nodes).cloned().collect();
    let is_writer = |e: &ManagedEntry| {
        e.manager == manager
            && e.operation == "Update"
            && e.api_version == api_version
            && e.subresource == scope.subresource
    };
    for e in entries.iter_mut() {
        e.fields.retain(|p| new_set.contains(p));
        if !is_writer(e) {
            e.fields.retain(|p| !changed.contains(p));
        }
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| is_writer(e)) {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now.to_string();
            }
            None => entries.push(ManagedEntry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                subresource: scope.subresource.to_string(),
                time: now.to_string(),
                fields: changed,
            }),
        }
    }
    entries
}

/// What an apply request asks for.
#[derive(Debug, Clone, Copy)]
pub struct ApplyRequest<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// Take ownership of conflicting fields.
    pub force: bool,
    /// The apiVersion of the request.
    pub api_version: &'a str,
    /// Which paths this write may own.
    pub scope: WriteScope<'a>,
    /// Group, plural and name for error details.
    pub group: &'a str,
    /// Resource plural for error details.
    pub plural: &'a str,
    /// Object name for error details.
    pub name: &'a str,
    /// Current time for entry timestamps.
    pub now: &'a str,
}

/// Server-side apply of `config` onto `live`, with its managed fields written in (tests).
#[cfg(test)]
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    req: ApplyRequest<'_>,
    schema: MergeSchema<'_>,
) -> Result<Value, ApiError> {
    let entries = live.map(parse_managed).unwrap_or_default();
    let (mut result, entries) = apply_entries(live, entries, config, req, schema)?;
    write_managed(&mut result, entries);
    Ok(result)
}

/// Server-side apply of `config` onto `live` (or onto nothing, for a create), whose managed
/// fields are `entries`. Returns the merged object (its `managedFields` not yet updated) and
/// the entries after the apply.
pub fn apply_entries(
    live: Option<&Value>,
    mut entries: Vec<ManagedEntry>,
    config: &Value,
    req: ApplyRequest<'_>,
    schema: MergeSchema<'_>,
) -> Result<(Value, Vec<ManagedEntry>), ApiError> {
    let applied: FieldSet = field_set(config, schema)
        .into_iter()
        .filter(|p| req.scope.owns(p))
        .collect();
    let is_me = |e: &ManagedEntry| {
        e.manager == req.manager && e.operation == "Apply" && e.subresource == req.scope.subresource
    };
    let empty = Value::Object(Map::new());
    let live_obj = live.unwrap_or(&empty);

    let mut conflicts: Vec<(usize, FieldPath)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if is_me(e) {
            continue;
        }
        for p in applied.intersection(&e.fields) {
            if !is_item(p) && get_at(config, p) != get_at(live_obj, p) {
                conflicts.push((i, p.clone()));
            }
        }
    }
    if !conflicts.is_empty() {
        if !req.force {
            return Err(conflict_error(&entries, &conflicts));
        }
        for (i, p) in &conflicts {
            entries[*i].fields.remove(p);
        }
    }

    let mut result = live_obj.clone();
    merge_applied(&mut result, config, schema, &mut Vec::new());

    let previous = entries
        .iter()
        .find(|e| is_me(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others: Vec<&FieldPath> = entries
        .iter()
        .filter(|e| !is_me(e))
        .flat_map(|e| e.fields.iter())
        .collect();
    for p in previous.difference(&applied) {
        let still_owned = others.iter().any(|o| o.starts_with(p));
        if !still_owned {
            remove_at(&mut result, p);
        }
    }

    entries.retain(|e| !is_me(e));
    entries.push(ManagedEntry {
        manager: req.manager.to_string(),
        operation: "Apply".into(),
        api_version: req.api_version.to_string(),
        subresource: req.scope.subresource.to_string(),
        time: req.now.to_string(),
        fields: applied,
    });
    if !result.is_object() {
        result = Value::Object(Map::new());
    }
    if result.get("metadata").is_none_or(|m| !m.is_object()) {
        result["metadata"] = json!({});
    }
    Ok((result, entries))
}

/// Drops owned paths that no longer exist in `obj` (after pruning or status reset).
pub fn retain_existing(obj: &Value, entries: &mut [ManagedEntry], schema: MergeSchema<'_>) {
    for e in entries.iter_mut() {
        e.fields.retain(|p| contains_path(obj, p, schema));
    }
}

fn merge_applied(
    target: &mut Value,
    config: &Value,
    schema: MergeSchema<'_>,
    names: &mut Vec<String>,
) {
    let Value::Object(c) = config else {
        *target = config.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in c {
        names.push(k.clone());
        match v {
            Value::Object(_) if schema.atomic_map(names) => {
                t.insert(k.clone(), v.clone());
            }
            Value::Object(_) => {
                merge_applied(t.entry(k.clone()).or_insert(Value::Null), v, schema, names)
            }
            Value::Array(items) => {
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                match schema.list_type(names) {
                    ListType::Atomic => *slot = v.clone(),
                    ListType::Set => {
                        let mut list = slot.as_array().cloned().unwrap_or_default();
                        for item in items {
                            if !list.contains(item) {
                                list.push(item.clone());
                            }
                        }
                        *slot = Value::Array(list);
                    }
                    ListType::Map(keys) => {
                        let mut list = slot.as_array().cloned().unwrap_or_default();
                        names.push("[]".into());
                        for item in items {
                            let key = item_key(item, &keys);
                            match list.iter().position(|l| item_key(l, &keys) == key) {
                                Some(i) => merge_applied(&mut list[i], item, schema, names),
                                None => list.push(item.clone()),
                            }
                        }
                        names.pop();
                        *slot = Value::Array(list);
                    }
                }
            }
            other => {
                t.insert(k.clone(), other.clone());
            }
        }
        names.pop();
    }
}

fn conflict_error(entries: &[ManagedEntry], conflicts: &[(usize, FieldPath)]) -> ApiError {
    let mut order: Vec<usize> = Vec::new();
    for (i, _) in conflicts {
        if !order.contains(i) {
            order.push(*i);
        }
    }
    let mut parts = Vec::new();
    let mut causes = Vec::new();
    for i in order {
        let desc = entries[i].describe();
        let paths: Vec<String> = conflicts
            .iter()
            .filter(|(j, _)| *j == i)
            .map(|(_, p)| path_string(p))
            .collect();
        for p in &paths {
            causes.push(cause(
                "FieldManagerConflict",
                p,
                format!("conflict with {desc}"),
            ));
        }
        if paths.len() == 1 {
            parts.push(format!("conflict with {desc}: {}", paths[0]));
        } else {
            parts.push(format!("conflicts with {desc}:\n- {}", paths.join("\n- ")));
        }
    }
    let n = conflicts.len();
    let message = format!(
        "Apply failed with {n} conflict{}: {}",
        if n == 1 { "" } else { "s" },
        parts.join("\n")
    );
    // The real server's apply conflicts carry only the causes in their details.
    let mut e = ApiError::new(409, "Conflict", message);
    e.details.causes = causes;
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(manager: &'a str, force: bool) -> ApplyRequest<'a> {
        ApplyRequest {
            manager,
            force,
            api_version: "v1",
            scope: WriteScope {
                subresource: "",
                status_split: false,
            },
            group: "",
            plural: "configmaps",
            name: "x",
            now: "2026-01-01T00:00:00Z",
        }
    }

    const S: MergeSchema<'static> = MergeSchema { custom: None };

    #[test]
    fn an_update_owns_the_maps_and_lists_it_creates() {
        let scope = WriteScope {
            subresource: "",
            status_split: false,
        };
        let now = "2026-01-01T00:00:00Z";
        let mut created = json!({"metadata": {"name": "x", "labels": {"a": "1"},
            "finalizers": ["f"]}, "spec": {"s": 1}, "data": {"k": "v"}});
        record_update(None, &mut created, "m", "v1", scope, S, now);
        // Typed built-ins always have spec: no "." for it; data, labels and finalizers are new.
        assert_eq!(
            created["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:data": {".": {}, "f:k": {}}, "f:spec": {"f:s": {}},
                "f:metadata": {"f:labels": {".": {}, "f:a": {}},
                    "f:finalizers": {".": {}, "v:\"f\"": {}}}})
        );
        let mut updated = created.clone();
        updated["data"]["k2"] = json!("w");
        if let Some(m) = updated["metadata"].as_object_mut() {
            m.remove("finalizers");
        }
        record_update(Some(&created), &mut updated, "m", "v1", scope, S, now);
        assert_eq!(
            updated["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:data": {".": {}, "f:k": {}, "f:k2": {}}, "f:spec": {"f:s": {}},
                "f:metadata": {"f:labels": {".": {}, "f:a": {}}}})
        );
    }

    #[test]
    fn two_managers_conflict_and_force_transfers() {
        let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "a", "only_a": "1"}});
        let live = apply(None, &a, req("a", false), S).unwrap();
        let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "b"}});
        let err = apply(Some(&live), &b, req("b", false), S).unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"a\": .data.k"
        );
        assert_eq!(err.details.causes[0].field, ".data.k");
        let forced = apply(Some(&live), &b, req("b", true), S).unwrap();
        assert_eq!(forced["data"], json!({"k": "b", "only_a": "1"}));
        let m = parse_managed(&forced);
        let a_fields = &m.iter().find(|e| e.manager == "a").unwrap().fields;
        assert_eq!(a_fields.len(), 1, "a keeps only .data.only_a");
        // Same value: shared ownership, no conflict.
        let same = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"only_a": "1"}});
        apply(Some(&forced), &same, req("c", false), S).unwrap();
    }

    #[test]
    fn dropped_fields_are_removed_unless_someone_else_owns_them() {
        let v1 = json!({"metadata": {"name": "x", "labels": {"a": "1", "b": "2"}}});
        let live = apply(None, &v1, req("m", false), S).unwrap();
        let shared = apply(
            Some(&live),
            &json!({"metadata": {"name": "x", "labels": {"b": "2"}}}),
            req("o", false),
            S,
        )
        .unwrap();
        let v2 = json!({"metadata": {"name": "x"}});
        let after = apply(Some(&shared), &v2, req("m", false), S).unwrap();
        assert_eq!(after["metadata"]["labels"], json!({"b": "2"}));
    }

    #[test]
    fn atomic_maps_are_owned_and_replaced_whole() {
        let schema = json!({"properties": {"spec": {"properties": {
            "sel": {"type": "object", "x-kubernetes-map-type": "atomic"},
            "labels": {"type": "object"}}}}});
        let s = MergeSchema {
            custom: Some(&schema),
        };
        let live = apply(None, &json!({"metadata": {"name": "x"}, "spec": {"sel": {"a": "1", "b": "2"}, "labels": {"a": "1"}}}), req("m", false), s).unwrap();
        let after = apply(
            Some(&live),
            &json!({"metadata": {"name": "x"}, "spec": {"sel": {"c": "3"}, "labels": {"c": "3"}}}),
            req("o", true),
            s,
        )
        .unwrap();
        assert_eq!(after["spec"]["sel"], json!({"c": "3"}), "atomic: replaced");
        assert_eq!(
            after["spec"]["labels"],
            json!({"a": "1", "c": "3"}),
            "granular: merged"
        );
        let o = parse_managed(&after)
            .into_iter()
            .find(|e| e.manager == "o")
            .unwrap();
        assert!(o.fields.contains(&vec![
            PathElement::Field("spec".into()),
            PathElement::Field("sel".into())
        ]));
    }

    #[test]
    fn update_takes_ownership_of_changed_fields() {
        let old = apply(
            None,
            &json!({"metadata": {"name": "x"}, "data": {"k": "a"}}),
            req("a", false),
            S,
        )
        .unwrap();
        let mut new = old.clone();
        new["data"]["k"] = json!("z");
        record_update(
            Some(&old),
            &mut new,
            "editor",
            "v1",
            WriteScope {
                subresource: "",
                status_split: false,
            },
            S,
            "t",
        );
        let m = parse_managed(&new);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].manager, "editor");
        let err = apply(
            Some(&new),
            &json!({"metadata": {"name": "x"}, "data": {"k": "a"}}),
            req("a", false),
            S,
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("conflict with \"editor\" using v1 at t: .data.k"),
            "{}",
            err.message
        );
    }
    /// The stored text is what serializing the entries as JSON values gives (what the store
    /// kept before the text was written straight from the field sets).
    #[test]
    fn stored_text_is_the_entries_serialized() {
        let obj = json!({"metadata": {"name": "x", "labels": {"a\"b": "1"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}, "status": {"phase": "P"}});
        let entries = vec![
            ManagedEntry {
                manager: "m\"q".into(),
                operation: "Apply".into(),
                api_version: "v1".into(),
                subresource: String::new(),
                time: "2026-01-01T00:00:00Z".into(),
                fields: field_set(&obj, S),
            },
            ManagedEntry {
                manager: "empty".into(),
                operation: "Update".into(),
                api_version: "v1".into(),
                subresource: String::new(),
                time: "t".into(),
                fields: FieldSet::new(),
            },
            ManagedEntry {
                manager: "s".into(),
                operation: "Update".into(),
                api_version: "v1".into(),
                subresource: "status".into(),
                time: "t".into(),
                fields: map_nodes(&obj, S),
            },
        ];
        let expected: Vec<Value> = entries
            .iter()
            .filter(|e| !e.fields.is_empty())
            .map(|e| {
                let mut v = json!({"manager": e.manager, "operation": e.operation,
                    "apiVersion": e.api_version, "time": e.time, "fieldsType": "FieldsV1",
                    "fieldsV1": crate::fieldset::to_fields_v1(&e.fields)});
                if !e.subresource.is_empty() {
                    v["subresource"] = json!(e.subresource);
                }
                v
            })
            .collect();
        let mut out = obj.clone();
        set_managed(&mut out, &entries);
        assert_eq!(
            out["metadata"]["managedFields"].as_str(),
            Some(Value::Array(expected).to_string().as_str())
        );
        assert!(same_ownership(&parse_managed(&out), &entries));
        set_managed(&mut out, &[]);
        assert!(out["metadata"].get("managedFields").is_none());
    }
}
