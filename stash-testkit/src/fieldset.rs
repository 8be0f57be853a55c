//! Field sets and the `FieldsV1` trie encoding used by `metadata.managedFields`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::patch::schema::{item_key, ListType, MergeSchema};

/// One step in a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A struct field or map key (`f:`).
    Field(String),
    /// An associative-list item, by the compact JSON of its key fields (`k:`).
    Key(String),
    /// A set-list item, by its JSON value (`v:`).
    Value(String),
    /// A list index (`i:`), never produced by apply.
    Index(usize),
}

/// A path into an object.
pub type FieldPath = Vec<PathElement>;
/// A set of owned paths.
pub type FieldSet = BTreeSet<FieldPath>;

impl PathElement {
    fn encode(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(k) => format!("k:{k}"),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(s: &str) -> Option<Self> {
        let (tag, rest) = s.split_once(':')?;
        Some(match tag {
            "f" => PathElement::Field(rest.to_string()),
            "k" => PathElement::Key(rest.to_string()),
            "v" => PathElement::Value(rest.to_string()),
            "i" => PathElement::Index(rest.parse().ok()?),
            _ => return None,
        })
    }
}

/// Renders a path the way conflict messages do: `.spec.containers[name="c"].image`.
pub fn path_string(path: &FieldPath) -> String {
    let mut out = String::new();
    for pe in path {
        match pe {
            PathElement::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            PathElement::Key(k) => {
                let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                    .unwrap_or_default();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            PathElement::Value(v) => out.push_str(&format!("[={v}]")),
            PathElement::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Metadata fields that nobody owns.
fn ignored(path: &[PathElement]) -> bool {
    match path {
        [PathElement::Field(f)] if f == "apiVersion" || f == "kind" => true,
        [PathElement::Field(m), PathElement::Field(f), ..] if m == "metadata" => matches!(
            f.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "managedFields"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "selfLink"
                | "generateName"
        ),
        _ => false,
    }
}

/// Collects the owned-path set of an object: leaves, atomic lists, and list items.
pub fn field_set(obj: &Value, schema: MergeSchema<'_>) -> FieldSet {
    let mut out = FieldSet::new();
    collect(obj, schema, &mut Vec::new(), &mut Vec::new(), &mut out);
    out
}

fn collect(
    v: &Value,
    schema: MergeSchema<'_>,
    names: &mut Vec<String>,
    path: &mut FieldPath,
    out: &mut FieldSet,
) {
    if ignored(path) {
        return;
    }
    match v {
        Value::Object(m) if !m.is_empty() && (path.is_empty() || !schema.atomic_map(names)) => {
            for (k, child) in m {
                names.push(k.clone());
                path.push(PathElement::Field(k.clone()));
                collect(child, schema, names, path, out);
                path.pop();
                names.pop();
            }
        }
        Value::Array(items) if !path.is_empty() => match schema.list_type(names) {
            ListType::Atomic => {
                out.insert(path.clone());
            }
            ListType::Set => {
                for item in items {
                    let mut p = path.clone();
                    p.push(PathElement::Value(item.to_string()));
                    out.insert(p);
                }
            }
            ListType::Map(keys) => {
                for item in items {
                    path.push(PathElement::Key(item_key(item, &keys)));
                    out.insert(path.clone());
                    names.push("[]".into());
                    collect(item, schema, names, path, out);
                    names.pop();
                    path.pop();
                }
            }
        },
        _ if !path.is_empty() => {
            out.insert(path.clone());
        }
        _ => {}
    }
}

/// The paths of the maps (objects) inside an object, excluding the root and top-level
/// `metadata`, which always exist. An `Update` owns a map it brings into existence (the `.`
/// entry of a `FieldsV1` node) besides the fields in it.
pub fn map_nodes(obj: &Value, schema: MergeSchema<'_>) -> FieldSet {
    fn walk(
        v: &Value,
        schema: MergeSchema<'_>,
        names: &mut Vec<String>,
        path: &mut FieldPath,
        out: &mut FieldSet,
    ) {
        if ignored(path) {
            return;
        }
        match v {
            Value::Object(m) => {
                let top_metadata =
                    matches!(path.as_slice(), [PathElement::Field(f)] if f == "metadata");
                if !path.is_empty() && !top_metadata {
                    if schema.atomic_map(names) {
                        return;
                    }
                    if !matches!(path.last(), Some(PathElement::Key(_))) {
                        out.insert(path.clone());
                    }
                }
                for (k, child) in m {
                    names.push(k.clone());
                    path.push(PathElement::Field(k.clone()));
                    walk(child, schema, names, path, out);
                    path.pop();
                    names.pop();
                }
            }
            Value::Array(items) if !path.is_empty() => {
                let list_type = schema.list_type(names);
                if !matches!(list_type, ListType::Atomic) {
                    out.insert(path.clone());
                }
                if let ListType::Map(keys) = list_type {
                    for item in items {
                        path.push(PathElement::Key(item_key(item, &keys)));
                        names.push("[]".into());
                        walk(item, schema, names, path, out);
                        names.pop();
                        path.pop();
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = FieldSet::new();
    walk(obj, schema, &mut Vec::new(), &mut Vec::new(), &mut out);
    out
}

/// Maps that a built-in kind's typed form always has (non-pointer structs), so that no write
/// brings them into existence: `spec`, `status` and the common nested templates.
pub fn always_present(path: &[PathElement]) -> bool {
    let names: Vec<&str> = path
        .iter()
        .map(|pe| match pe {
            PathElement::Field(f) => f.as_str(),
            _ => "[]",
        })
        .collect();
    matches!(
        names.as_slice(),
        ["spec" | "status"]
            | ["spec", "names" | "template" | "strategy" | "jobTemplate"]
            | ["spec", "template" | "jobTemplate", "spec" | "metadata"]
            | ["spec", "jobTemplate", "spec", "template"]
            | [
                "spec",
                "jobTemplate",
                "spec",
                "template",
                "spec" | "metadata"
            ]
    ) || matches!(
        names.as_slice(),
        [.., "containers" | "initContainers", "[]", "resources"]
    )
}

/// The value at `path`, if present.
pub fn get_at<'a>(obj: &'a Value, path: &[PathElement]) -> Option<&'a Value> {
    let mut cur = obj;
    for pe in path {
        cur = match pe {
            PathElement::Field(f) => cur.get(f)?,
            PathElement::Key(k) => {
                let want: Map<String, Value> = serde_json::from_str(k).ok()?;
                cur.as_array()?
                    .iter()
                    .find(|item| want.iter().all(|(kk, vv)| item.get(kk) == Some(vv)))?
            }
            PathElement::Value(v) => cur.as_array()?.iter().find(|item| item.to_string() == *v)?,
            PathElement::Index(i) => cur.as_array()?.get(*i)?,
        };
    }
    Some(cur)
}

/// Removes the value at `path`; returns whether something was removed.
pub fn remove_at(obj: &mut Value, path: &[PathElement]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = obj;
    for pe in parents {
        let next = match pe {
            PathElement::Field(f) => cur.get_mut(f),
            PathElement::Key(k) => {
                let Ok(want) = serde_json::from_str::<Map<String, Value>>(k) else {
                    return false;
                };
                cur.as_array_mut().and_then(|a| {
                    a.iter_mut()
                        .find(|item| want.iter().all(|(kk, vv)| item.get(kk) == Some(vv)))
                })
            }
            PathElement::Value(v) => cur
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|item| item.to_string() == *v)),
            PathElement::Index(i) => cur.as_array_mut().and_then(|a| a.get_mut(*i)),
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match last {
        PathElement::Field(f) => cur.as_object_mut().and_then(|m| m.remove(f)).is_some(),
        PathElement::Key(k) => {
            let Ok(want) = serde_json::from_str::<Map<String, Value>>(k) else {
                return false;
            };
            let Some(a) = cur.as_array_mut() else {
                return false;
            };
            let before = a.len();
            a.retain(|item| !want.iter().all(|(kk, vv)| item.get(kk) == Some(vv)));
            a.len() != before
        }
        PathElement::Value(v) => {
            let Some(a) = cur.as_array_mut() else {
                return false;
            };
            let before = a.len();
            a.retain(|item| item.to_string().as_str() != v.as_str());
            a.len() != before
        }
        PathElement::Index(i) => match cur.as_array_mut() {
            Some(a) if *i < a.len() => {
                a.remove(*i);
                true
            }
            _ => false,
        },
    }
}

#[derive(Default)]
struct Node {
    member: bool,
    children: BTreeMap<String, Node>,
}

/// Encodes a set as a `FieldsV1` trie.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Node::default();
    for path in set {
        let mut node = &mut root;
        for pe in path {
            node = node.children.entry(pe.encode()).or_default();
        }
        node.member = true;
    }
    fn render(node: &Node) -> Value {
        let mut m = Map::new();
        if node.member && !node.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, child) in &node.children {
            m.insert(k.clone(), render(child));
        }
        Value::Object(m)
    }
    render(&root)
}

/// Decodes a `FieldsV1` trie; unknown element tags are skipped.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    fn walk(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        if m.is_empty() && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, child) in m {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            let Some(pe) = PathElement::decode(k) else {
                continue;
            };
            path.push(pe);
            walk(child, path, out);
            path.pop();
        }
    }
    walk(v, &mut Vec::new(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trie_round_trip_and_item_nodes() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}},
            "spec": {"containers": [{"name": "c", "image": "i", "args": ["x"]}]}});
        let set = field_set(&pod, MergeSchema { custom: None });
        let trie = to_fields_v1(&set);
        assert_eq!(
            trie,
            json!({
                "f:metadata": {"f:labels": {"f:a": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:args": {}, "f:image": {}, "f:name": {}}}}
            })
        );
        assert_eq!(from_fields_v1(&trie), set);
        let image: FieldPath = vec![
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            PathElement::Key(r#"{"name":"c"}"#.into()),
            PathElement::Field("image".into()),
        ];
        assert_eq!(path_string(&image), r#".spec.containers[name="c"].image"#);
        assert_eq!(get_at(&pod, &image), Some(&json!("i")));
        let mut pod2 = pod.clone();
        assert!(remove_at(&mut pod2, &image[..3]));
        assert_eq!(pod2["spec"]["containers"], json!([]));
    }
}
