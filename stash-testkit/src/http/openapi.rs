//! OpenAPI v3 for custom resources: the `/openapi/v3` index and one document per
//! group-version a CRD serves, carrying the CRD's schema and descriptions, which is what
//! `kubectl explain` reads. Built-in group-versions are not described (clients then fall back
//! to OpenAPI v2, which is the 5-byte empty document).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use serde_json::{json, Map, Value};

use crate::registry::{Registry, ResourceInfo};

const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// Group-versions served by custom resources, each with its resources.
fn custom_group_versions(registry: &Registry) -> BTreeMap<(String, String), Vec<ResourceInfo>> {
    let mut out: BTreeMap<(String, String), Vec<ResourceInfo>> = BTreeMap::new();
    for r in registry.all().into_iter().filter(|r| r.custom) {
        out.entry((r.group.clone(), r.version.clone()))
            .or_default()
            .push((*r).clone());
    }
    out
}

/// The schema name of a kind: the group reversed, then version and kind
/// (`serve.lab.example.org` v1 `Widget` → `org.example.lab.serve.v1.Widget`).
pub fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// `GET /openapi/v3`: the group-versions that have a document, each with a content hash.
pub fn index(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, version) in custom_group_versions(registry).keys() {
        let doc = group_version(registry, group, version).unwrap_or(Value::Null);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        doc.to_string().hash(&mut hasher);
        paths.insert(
            format!("apis/{group}/{version}"),
            json!({"serverRelativeURL": format!("/openapi/v3/apis/{group}/{version}?hash={:016X}", hasher.finish())}),
        );
    }
    json!({ "paths": paths })
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!([{"group": group, "kind": kind, "version": version}])
}

fn object_schema(r: &ResourceInfo) -> Value {
    let mut schema = r
        .schema
        .as_deref()
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({"type": "object"}));
    if !schema["properties"].is_object() {
        schema["properties"] = json!({});
    }
    let props = &mut schema["properties"];
    props["apiVersion"] = json!({"description": API_VERSION_DESCRIPTION, "type": "string"});
    props["kind"] = json!({"description": KIND_DESCRIPTION, "type": "string"});
    props["metadata"] = json!({
        "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
        "allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}],
    });
    schema["x-kubernetes-group-version-kind"] = gvk(&r.group, &r.version, &r.kind);
    schema
}

fn list_schema(r: &ResourceInfo) -> Value {
    json!({
        "description": format!("{} is a list of {}", r.list_kind, r.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"description": API_VERSION_DESCRIPTION, "type": "string"},
            "items": {
                "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", r.plural),
                "type": "array",
                "items": {"$ref": format!("#/components/schemas/{}", schema_name(&r.group, &r.version, &r.kind))},
            },
            "kind": {"description": KIND_DESCRIPTION, "type": "string"},
            "metadata": {
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "allOf": [{"$ref": format!("#/components/schemas/{LIST_META}")}],
            },
        },
        "x-kubernetes-group-version-kind": gvk(&r.group, &r.version, &r.list_kind),
    })
}

/// The metadata schemas the documents refer to (the fields clients commonly read).
fn meta_schemas() -> Vec<(&'static str, Value)> {
    let string = |d: &str| json!({"description": d, "type": "string"});
    let map = |d: &str| json!({"description": d, "type": "object", "additionalProperties": {"type": "string", "default": ""}});
    vec![
        (
            OBJECT_META,
            json!({
                "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
                "type": "object",
                "properties": {
                    "annotations": map("Annotations is an unstructured key value map stored with a resource that may be set by external tools to store and retrieve arbitrary metadata. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/annotations"),
                    "creationTimestamp": string("CreationTimestamp is a timestamp representing the server time when this object was created."),
                    "deletionTimestamp": string("DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted."),
                    "finalizers": {"description": "Must be empty before the object is deleted from the registry.", "type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "set"},
                    "generateName": string("GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF the Name field has not been provided."),
                    "generation": {"description": "A sequence number representing a specific generation of the desired state.", "type": "integer", "format": "int64"},
                    "labels": map("Map of string keys and values that can be used to organize and categorize (scope and select) objects. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels"),
                    "name": string("Name must be unique within a namespace. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"),
                    "namespace": string("Namespace defines the space within which each name must be unique. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces"),
                    "resourceVersion": string("An opaque value that represents the internal version of this object."),
                    "uid": string("UID is the unique in time and space value for this object. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#uids"),
                },
            }),
        ),
        (
            LIST_META,
            json!({
                "description": "ListMeta describes metadata that synthetic resources must have, including lists and various status objects.",
                "type": "object",
                "properties": {
                    "continue": string("continue may be set if the user set a limit on the number of items returned."),
                    "remainingItemCount": {"description": "The number of subsequent items in the list which are not included in this list response.", "type": "integer", "format": "int64"},
                    "resourceVersion": string("String that identifies the server's internal version of this object."),
                },
            }),
        ),
    ]
}

fn patch_operation(r: &ResourceInfo) -> Value {
    let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    json!({
        "patch": {
            "description": format!("partially update the specified {}", r.kind),
            "operationId": format!("patch{}", r.kind),
            "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation"), query("force")],
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        }
    })
}

/// `GET /openapi/v3/apis/<group>/<version>`, for group-versions served by CRDs.
pub fn group_version(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let gvs = custom_group_versions(registry);
    let resources = gvs.get(&(group.to_string(), version.to_string()))?;
    let mut schemas = Map::new();
    let mut paths = Map::new();
    for r in resources {
        schemas.insert(schema_name(group, version, &r.kind), object_schema(r));
        schemas.insert(schema_name(group, version, &r.list_kind), list_schema(r));
        let item = if r.namespaced {
            format!(
                "/apis/{group}/{version}/namespaces/{{namespace}}/{}/{{name}}",
                r.plural
            )
        } else {
            format!("/apis/{group}/{version}/{}/{{name}}", r.plural)
        };
        paths.insert(item, patch_operation(r));
    }
    for (name, schema) in meta_schemas() {
        schemas.insert(name.to_string(), schema);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_group_versions_get_a_document_with_their_schema() {
        let registry = Registry::new();
        assert_eq!(index(&registry), json!({"paths": {}}));
        registry.register_crd(&json!({"spec": {"group": "serve.lab.example.org", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema":
                {"type": "object", "properties": {"spec": {"type": "object", "description": "The spec.",
                    "properties": {"size": {"type": "integer"}}}}}}}]}}));
        let idx = index(&registry);
        let url = idx["paths"]["apis/serve.lab.example.org/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(
            url.starts_with("/openapi/v3/apis/serve.lab.example.org/v1?hash="),
            "{url}"
        );
        let doc = group_version(&registry, "serve.lab.example.org", "v1").unwrap();
        let widget = &doc["components"]["schemas"]["org.example.lab.serve.v1.Widget"];
        assert_eq!(widget["properties"]["spec"]["description"], "The spec.");
        assert_eq!(
            widget["x-kubernetes-group-version-kind"][0]["kind"],
            "Widget"
        );
        let list = &doc["components"]["schemas"]["org.example.lab.serve.v1.WidgetList"];
        assert_eq!(list["required"], json!(["items"]));
        assert!(group_version(&registry, "apps", "v1").is_none());
    }
}
