//! How lists merge: atomic, set, or map keyed by some fields.
//!
//! Built-in types use a curated table (k8s-openapi carries no merge metadata); custom
//! resources read `x-kubernetes-list-type` and `x-kubernetes-list-map-keys` from their schema.

use serde_json::Value;

/// Merge semantics of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole.
    Atomic,
    /// A set of scalars.
    Set,
    /// A map of objects keyed by these fields.
    Map(Vec<String>),
}

/// The merge schema of one resource.
#[derive(Debug, Clone, Copy)]
pub struct MergeSchema<'a> {
    /// The CRD's `openAPIV3Schema`, for custom resources.
    pub custom: Option<&'a Value>,
}

/// A path of field names where `[]` stands for "a list item".
pub type NamePath = Vec<String>;

impl MergeSchema<'_> {
    /// Whether the object at `path` is an atomic map (`x-kubernetes-map-type: atomic`), owned
    /// and replaced as a whole.
    pub fn atomic_map(&self, path: &[String]) -> bool {
        match self.custom {
            Some(schema) if path.first().map(String::as_str) != Some("metadata") => {
                schema_at(schema, path).is_some_and(|s| s["x-kubernetes-map-type"] == "atomic")
            }
            _ => false,
        }
    }

    /// The list type at `path`.
    pub fn list_type(&self, path: &[String]) -> ListType {
        if path.first().map(String::as_str) == Some("metadata") {
            return builtin_list_type(path);
        }
        match self.custom {
            Some(schema) => custom_list_type(schema, path),
            None => builtin_list_type(path),
        }
    }
}

fn keys(k: &[&str]) -> ListType {
    ListType::Map(k.iter().map(|s| s.to_string()).collect())
}

fn builtin_list_type(path: &[String]) -> ListType {
    let joined = path.join(".");
    let mut p = joined.as_str();
    for prefix in ["spec.jobTemplate.spec.template.", "spec.template."] {
        if let Some(rest) = p.strip_prefix(prefix) {
            p = rest;
            break;
        }
    }
    let container_lists = [
        "spec.containers",
        "spec.initContainers",
        "spec.ephemeralContainers",
    ];
    if let Some((list, rest)) = p.split_once(".[].") {
        if container_lists.contains(&list) {
            return match rest {
                "env" => keys(&["name"]),
                "ports" => keys(&["containerPort", "protocol"]),
                "volumeMounts" => keys(&["mountPath"]),
                "volumeDevices" => keys(&["devicePath"]),
                _ => ListType::Atomic,
            };
        }
    }
    match p {
        "metadata.finalizers" => ListType::Set,
        "metadata.ownerReferences" => keys(&["uid"]),
        "spec.containers" | "spec.initContainers" | "spec.ephemeralContainers" => keys(&["name"]),
        "spec.volumes"
        | "spec.imagePullSecrets"
        | "spec.resourceClaims"
        | "spec.schedulingGates" => keys(&["name"]),
        "spec.hostAliases" => keys(&["ip"]),
        "spec.topologySpreadConstraints" => keys(&["topologyKey", "whenUnsatisfiable"]),
        "spec.ports" if joined == "spec.ports" => keys(&["port", "protocol"]),
        "status.conditions" => keys(&["type"]),
        _ => ListType::Atomic,
    }
}

fn schema_at<'a>(schema: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = schema;
    for seg in path {
        cur = if seg == "[]" {
            &cur["items"]
        } else if let Some(p) = cur["properties"].get(seg) {
            p
        } else {
            &cur["additionalProperties"]
        };
        if cur.is_null() {
            return None;
        }
    }
    Some(cur)
}

fn custom_list_type(schema: &Value, path: &[String]) -> ListType {
    let Some(cur) = schema_at(schema, path) else {
        return ListType::Atomic;
    };
    match cur["x-kubernetes-list-type"].as_str() {
        Some("set") => ListType::Set,
        Some("map") => ListType::Map(
            cur["x-kubernetes-list-map-keys"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|k| k.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        _ => ListType::Atomic,
    }
}

/// The compact JSON of an item's key fields, as used in `k:` path elements.
pub fn item_key(item: &Value, keys: &[String]) -> String {
    let mut m = serde_json::Map::new();
    for k in keys {
        if let Some(v) = item.get(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    Value::Object(m).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Vec<String> {
        s.split('.').map(String::from).collect()
    }

    #[test]
    fn builtin_table_covers_job_templates() {
        let s = MergeSchema { custom: None };
        assert_eq!(
            s.list_type(&p("spec.jobTemplate.spec.template.spec.containers")),
            keys(&["name"])
        );
        assert_eq!(
            s.list_type(&p("spec.template.spec.containers.[].env")),
            keys(&["name"])
        );
        assert_eq!(s.list_type(&p("metadata.finalizers")), ListType::Set);
        assert_eq!(s.list_type(&p("spec.containers.[].args")), ListType::Atomic);
    }

    #[test]
    fn crd_annotations_are_read() {
        let schema = json!({"properties": {"spec": {"properties": {"items": {
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"],
            "items": {"type": "object"}}}}}});
        let s = MergeSchema {
            custom: Some(&schema),
        };
        assert_eq!(s.list_type(&p("spec.items")), keys(&["id"]));
        assert_eq!(s.list_type(&p("spec.other")), ListType::Atomic);
        assert_eq!(
            item_key(&json!({"id": 1, "x": 2}), &["id".into()]),
            r#"{"id":1}"#
        );
    }
}
