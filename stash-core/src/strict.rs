//! Strict input, as a real API server checks it under kubectl's default `--validate=strict`:
//! fields a document has that its kind's schema does not know, and values of the wrong YAML
//! type. Stash's kinds are checked against the generated CRDs (plus `metadata` against
//! ObjectMeta), the built-in kinds against k8s-openapi's schemas. A field the CRD preserves
//! (`x-kubernetes-preserve-unknown-fields`, e.g. AppBinding `parameters`) takes anything.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// What a document has that its schema does not allow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Full paths of fields the schema does not know (`spec.retentionPolicy.keepLst`).
    pub unknown_fields: Vec<String>,
    /// Values of the wrong type, each naming its path and the YAML types involved.
    pub wrong_types: Vec<String>,
}

/// The schemas of every kind checked here, and the definitions their `$ref`s point into.
struct Schemas {
    kinds: BTreeMap<(String, String), Value>,
    /// `{"$defs": {...}}`: the root that `#/$defs/...` references resolve against.
    defs_root: Value,
}

/// A `$ref` to `T`'s schema, registering its definitions with `generator`.
fn schema_of<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> Value {
    generator.subschema_for::<T>().to_value()
}

/// Built-in kinds a Stash user's manifests commonly hold, besides Stash's own.
fn builtin_kinds(g: &mut schemars::SchemaGenerator) -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("v1", "Secret", schema_of::<Secret>(g)),
        ("v1", "Namespace", schema_of::<Namespace>(g)),
        ("v1", "Pod", schema_of::<Pod>(g)),
        ("v1", "ConfigMap", schema_of::<ConfigMap>(g)),
        ("v1", "Service", schema_of::<Service>(g)),
        ("v1", "Endpoints", schema_of::<Endpoints>(g)),
        ("v1", "ServiceAccount", schema_of::<ServiceAccount>(g)),
        (
            "v1",
            "PersistentVolumeClaim",
            schema_of::<PersistentVolumeClaim>(g),
        ),
        ("batch/v1", "Job", schema_of::<Job>(g)),
        ("batch/v1", "CronJob", schema_of::<CronJob>(g)),
        ("apps/v1", "Deployment", schema_of::<Deployment>(g)),
        ("apps/v1", "StatefulSet", schema_of::<StatefulSet>(g)),
    ]
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut generator = schemars::SchemaGenerator::default();
        let object_meta = schema_of::<ObjectMeta>(&mut generator);
        let mut kinds = BTreeMap::new();
        for (api_version, kind, schema) in builtin_kinds(&mut generator) {
            kinds.insert((api_version.to_string(), kind.to_string()), schema);
        }
        for crd in crate::crd::crds() {
            let kind = crd.spec.names.kind.clone();
            for version in &crd.spec.versions {
                let Some(schema) = version
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .and_then(|s| serde_json::to_value(s).ok())
                else {
                    continue;
                };
                // The API server checks the type meta and ObjectMeta of a custom resource
                // itself; the CRD's schema covers the rest.
                let mut schema = schema;
                if let Some(props) = schema
                    .as_object_mut()
                    .map(|o| {
                        o.entry("properties")
                            .or_insert_with(|| Value::Object(Map::new()))
                    })
                    .and_then(Value::as_object_mut)
                {
                    props.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
                    props.insert("kind".into(), serde_json::json!({"type": "string"}));
                    props.insert("metadata".into(), object_meta.clone());
                }
                kinds.insert(
                    (format!("{}/{}", crd.spec.group, version.name), kind.clone()),
                    schema,
                );
            }
        }
        let defs = generator.take_definitions(true);
        Schemas {
            kinds,
            defs_root: serde_json::json!({ "$defs": defs }),
        }
    })
}

/// Checks `object` against the schema of its apiVersion and kind; `None` when no schema for
/// that kind is known here (it is then not checked, nor used).
pub fn check(object: &Value) -> Option<Findings> {
    let api_version = object.get("apiVersion")?.as_str()?;
    let kind = object.get("kind")?.as_str()?;
    let all = schemas();
    let schema = all
        .kinds
        .get(&(api_version.to_string(), kind.to_string()))?;
    let mut findings = Findings::default();
    walk(&all.defs_root, schema, object, "", &mut findings);
    findings.unknown_fields.sort();
    findings.wrong_types.sort();
    Some(findings)
}

/// Follows `$ref`s (to `#/$defs/...`) until a schema with content is reached.
fn resolve<'a>(defs_root: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let Some(pointer) = schema.get("$ref").and_then(Value::as_str) else {
            return schema;
        };
        let Some(target) = pointer.strip_prefix('#').and_then(|p| defs_root.pointer(p)) else {
            return schema;
        };
        schema = target;
    }
    schema
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// A value's YAML type, as a user would name it.
pub fn yaml_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

fn shown(value: &Value) -> String {
    match value {
        Value::Array(_) | Value::Object(_) | Value::Null => String::new(),
        other => {
            let text = other.to_string();
            if text.chars().count() > 40 {
                format!(" ({}…)", text.chars().take(40).collect::<String>())
            } else {
                format!(" ({text})")
            }
        }
    }
}

fn walk(defs_root: &Value, schema: &Value, value: &Value, path: &str, out: &mut Findings) {
    let schema = resolve(defs_root, schema);
    // A null is what an empty YAML value reads as; the API server drops it.
    if value.is_null() {
        return;
    }
    let at = if path.is_empty() { "(top level)" } else { path };
    if schema["x-kubernetes-int-or-string"] == Value::Bool(true) {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            out.wrong_types.push(format!(
                "{at}: expected an integer or a string, got {}{}",
                yaml_type(value),
                shown(value)
            ));
        }
        return;
    }
    let expected = match schema.get("type").and_then(Value::as_str) {
        Some("object") => Some(("a mapping", value.is_object())),
        Some("array") => Some(("a sequence", value.is_array())),
        Some("string") => Some(("a string", value.is_string())),
        Some("integer") => Some(("an integer", value.is_i64() || value.is_u64())),
        Some("number") => Some(("a number", value.is_number())),
        Some("boolean") => Some(("a boolean (true or false)", value.is_boolean())),
        _ => None,
    };
    if let Some((word, false)) = expected {
        out.wrong_types.push(format!(
            "{at}: expected {word}, got {}{}",
            yaml_type(value),
            shown(value)
        ));
        return;
    }
    if let (Some("int32"), Some(n)) = (schema["format"].as_str(), value.as_i64()) {
        if i32::try_from(n).is_err() {
            out.wrong_types.push(format!(
                "{at}: expected an integer from {} to {}, got {n}",
                i32::MIN,
                i32::MAX
            ));
        }
    }
    if let (Some("date-time"), Some(text)) = (schema["format"].as_str(), value.as_str()) {
        if text.parse::<k8s_openapi::jiff::Timestamp>().is_err() {
            out.wrong_types.push(format!(
                "{at}: expected a timestamp such as 2026-11-27T15:00:00Z, got {}{}",
                yaml_type(value),
                shown(value)
            ));
        }
    }
    if value.is_u64() && !value.is_i64() && schema["type"] == "integer" {
        out.wrong_types.push(format!(
            "{at}: expected an integer up to {}, got {value}",
            i64::MAX
        ));
    }
    match value {
        Value::Object(map) => {
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (key, child) in map {
                let child_path = join(path, key);
                if let Some(s) = props.and_then(|p| p.get(key)) {
                    walk(defs_root, s, child, &child_path, out);
                } else if let Some(s) = additional.filter(|a| a.is_object()) {
                    walk(defs_root, s, child, &child_path, out);
                } else if preserve || additional == Some(&Value::Bool(true)) {
                    continue;
                } else if props.is_some() || additional == Some(&Value::Bool(false)) {
                    out.unknown_fields.push(child_path);
                }
                // An object schema with neither properties nor additionalProperties (a
                // RawExtension, FieldsV1) is free-form.
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items").filter(|s| s.is_object()) {
                for (i, item) in items.iter().enumerate() {
                    walk(defs_root, item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Rewords a deserializer's message in YAML's terms: `i64` becomes "an integer",
/// `struct ObjectMeta` "a mapping", `map` "mapping", and so on.
pub fn yaml_wording(message: &str) -> String {
    const RUST_TO_YAML: [(&str, &str); 20] = [
        ("expected i8", "expected an integer from -128 to 127"),
        ("expected i16", "expected an integer from -32768 to 32767"),
        (
            "expected i32",
            "expected an integer from -2147483648 to 2147483647",
        ),
        ("expected i64", "expected an integer"),
        ("expected isize", "expected an integer"),
        ("expected u8", "expected an integer from 0 to 255"),
        ("expected u16", "expected an integer from 0 to 65535"),
        ("expected u32", "expected an integer from 0 to 4294967295"),
        ("expected u64", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected f32", "expected a number"),
        ("expected f64", "expected a number"),
        ("expected a map", "expected a mapping"),
        ("expected a boolean", "expected a boolean (true or false)"),
        ("expected a borrowed string", "expected a string"),
        ("expected a character", "expected a one-character string"),
        ("invalid type: map", "invalid type: mapping"),
        ("invalid type: unit value", "invalid type: null"),
        ("invalid type: floating point", "invalid type: number"),
        ("invalid type: newtype struct", "invalid type: value"),
    ];
    let mut text = message.to_string();
    // `expected struct ObjectMeta`, `expected struct RetentionPolicy`.
    while let Some(start) = text.find("expected struct ") {
        let rest = &text[start + "expected struct ".len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        text = format!("{}expected a mapping{}", &text[..start], &rest[end..]);
    }
    for (rust, yaml) in RUST_TO_YAML {
        text = replace_word(&text, rust, yaml);
    }
    text
}

/// Replaces `from` where it is not followed by more of an identifier (so `expected i64` does
/// not touch `expected i640`).
fn replace_word(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(from) {
        let after = &rest[i + from.len()..];
        let boundary = !after.starts_with(|c: char| c.is_alphanumeric() || c == '_');
        out.push_str(&rest[..i]);
        out.push_str(if boundary { to } else { from });
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bc(spec: Value) -> Value {
        json!({
            "apiVersion": "stash.appscode.com/v1beta1", "kind": "BackupConfiguration",
            "metadata": {"name": "x", "namespace": "demo", "labels": {"a.b/c": "d"}},
            "spec": spec
        })
    }

    #[test]
    fn nested_unknown_fields_are_named_by_full_path() {
        let f = check(&bc(json!({
            "schedule": "*/5 * * * *",
            "retentionPolicy": {"name": "k", "keepLst": 5},
            "retentionPolicyy": {},
            "runtimeSettings": {"pod": {"securityContext": {"runAsUsr": 1}}},
        })))
        .expect("known kind");
        assert_eq!(
            f.unknown_fields,
            [
                "spec.retentionPolicy.keepLst",
                "spec.retentionPolicyy",
                "spec.runtimeSettings.pod.securityContext.runAsUsr"
            ]
        );
        assert!(f.wrong_types.is_empty(), "{f:?}");
    }

    #[test]
    fn metadata_and_builtin_kinds_are_checked_too() {
        let mut o = bc(json!({"schedule": "x"}));
        o["metadata"]["lables"] = json!({});
        o["metadata"]["creationTimestamp"] = json!("yesterday");
        let f = check(&o).unwrap();
        assert_eq!(f.unknown_fields, ["metadata.lables"]);
        assert_eq!(
            f.wrong_types,
            ["metadata.creationTimestamp: expected a timestamp such as 2026-11-27T15:00:00Z, got a string (\"yesterday\")"]
        );
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "stringData": {"RESTIC_PASSWORD": "x"}, "strngData": {}});
        assert_eq!(check(&secret).unwrap().unknown_fields, ["strngData"]);
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicyy": "Never"}]}});
        assert_eq!(
            check(&pod).unwrap().unknown_fields,
            ["spec.containers[0].imagePullPolicyy"]
        );
        assert!(check(&json!({"apiVersion": "kubedb.com/v1", "kind": "MySQL"})).is_none());
    }

    #[test]
    fn preserved_fields_take_anything() {
        let ab = json!({
            "apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
            "metadata": {"name": "db"},
            "spec": {"clientConfig": {"url": "tcp(db:3306)/"},
                     "parameters": {"anything": {"goes": [1, "two"]}}}
        });
        assert_eq!(check(&ab).unwrap(), Findings::default());
    }

    #[test]
    fn wrong_types_use_yaml_words() {
        let f = check(&bc(json!({
            "schedule": {"not": "a string"},
            "backupHistoryLimit": 3_000_000_000_i64,
            "paused": "yes please",
            "retentionPolicy": {"name": "k", "keepLast": "five"},
        })))
        .unwrap();
        assert_eq!(
            f.wrong_types,
            [
                "spec.backupHistoryLimit: expected an integer from -2147483648 to 2147483647, got 3000000000",
                "spec.paused: expected a boolean (true or false), got a string (\"yes please\")",
                "spec.retentionPolicy.keepLast: expected an integer, got a string (\"five\")",
                "spec.schedule: expected a string, got a mapping",
            ]
        );
    }

    #[test]
    fn rust_type_names_become_yaml_words() {
        assert_eq!(
            yaml_wording("invalid type: string \"x\", expected i64"),
            "invalid type: string \"x\", expected an integer"
        );
        assert_eq!(
            yaml_wording("invalid type: map, expected struct ObjectMeta at line 1"),
            "invalid type: mapping, expected a mapping at line 1"
        );
        assert_eq!(
            yaml_wording("invalid value: integer `-1`, expected u32"),
            "invalid value: integer `-1`, expected an integer from 0 to 4294967295"
        );
    }
}
